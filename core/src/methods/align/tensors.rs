//! The tensors weight matching works on, held in f32: model A's values and model B's with the
//! current permutations applied. Along one unit axis a tensor is seen as `outer x n x inner`
//! (row-major), unit `i` being the `outer x inner` slice at index `i`; the search needs, along
//! such an axis, the similarity of every unit pair (one f32 GEMM), the similarity of A and B
//! after a reordering of B's units (summed in f64), and that reordering.

use gemm::Parallelism;
use lineage_loaders::ParamSet;
use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// Values per parallel task when summing similarities.
const TASK_VALUES: usize = 1 << 16;

/// A tensor of both models, B as currently permuted.
pub(super) struct TensorPair {
    shape: Vec<usize>,
    a: Vec<f32>,
    b: Vec<f32>,
    /// `<A, B>` in f64.
    pub similarity: f64,
}

/// Tensor `name` of `params` (model `which`) as f32 values, refusing non-finite ones.
fn values(params: &ParamSet, name: &str, which: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let tensor = params
        .get(name)
        .ok_or_else(|| CoreError::Align(format!("`{name}` missing in model {which}")))?;
    let data = tensor
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| CoreError::Align(format!("`{name}` of model {which}: {e}")))?;
    if data.iter().any(|v| !v.is_finite()) {
        return Err(CoreError::Align(format!(
            "`{name}` of model {which} holds a non-finite value"
        )));
    }
    Ok((tensor.dims().to_vec(), data))
}

/// `sum_k x[k] * y[k]` in f64 (each product exact).
fn dot(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum()
}

impl TensorPair {
    /// Reads tensor `name` (at least one axis) of models `a` and `b`, B unpermuted.
    pub fn read(a: &ParamSet, b: &ParamSet, name: &str) -> Result<Self> {
        let (shape, a) = values(a, name, "A")?;
        let (shape_b, b) = values(b, name, "B")?;
        if shape != shape_b {
            return Err(CoreError::Align(format!(
                "`{name}` has shape {shape:?} in model A, {shape_b:?} in model B"
            )));
        }
        let mut pair = Self {
            shape,
            a,
            b,
            similarity: 0.0,
        };
        let units: Vec<usize> = (0..pair.shape[0]).collect();
        pair.similarity = pair.similarity_with(0, &units);
        Ok(pair)
    }

    /// `(outer, n, inner)`: the products of the dims before `axis`, its dim, the dims after.
    fn unfold(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.shape[..axis].iter().product();
        let inner = self.shape[axis + 1..].iter().product();
        (outer, self.shape[axis], inner)
    }

    /// Adds `S[i][k] = <unit i of A, unit k of B>` along `axis` (f32 products, one GEMM per block
    /// of the smaller outer or inner extent) to `cost[i * n + to[k]]`. `scratch` is reused memory.
    pub fn add_similarities(&self, axis: usize, to: &[usize], scratch: &mut Vec<f32>, cost: &mut [f64]) {
        let (outer, n, inner) = self.unfold(axis);
        if n == 0 || outer * inner == 0 {
            return;
        }
        assert!(to.len() == n && cost.len() == n * n, "add_similarities: sizes");
        scratch.clear();
        scratch.resize(n * n, 0.0);
        let line = (n * inner) as isize;
        // Contract over `inner` for each outer index, or over `outer` for each inner index:
        // (blocks, depth, block offset, depth stride, unit stride).
        let (blocks, depth, offset, step, unit) = if inner >= outer {
            (outer, inner, n * inner, 1, inner as isize)
        } else {
            (inner, outer, 1, line, inner as isize)
        };
        for block in 0..blocks {
            // SAFETY: A and B hold outer·n·inner values; block·offset + (depth-1)·step + (n-1)·unit
            // is the largest index read, below that length for both layouts. `scratch` holds n·n.
            unsafe {
                gemm::gemm(
                    n,
                    n,
                    depth,
                    scratch.as_mut_ptr(),
                    1,
                    n as isize,
                    block > 0,
                    self.a.as_ptr().add(block * offset),
                    step,
                    unit,
                    self.b.as_ptr().add(block * offset),
                    unit,
                    step,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(0),
                );
            }
        }
        cost.par_chunks_mut(n).zip(scratch.par_chunks(n)).for_each(|(row, s)| {
            for (&k, &v) in to.iter().zip(s) {
                row[k] += f64::from(v);
            }
        });
    }

    /// `<A, B'>` in f64, where unit `i` of B' along `axis` is unit `rows[i]` of B.
    pub fn similarity_with(&self, axis: usize, rows: &[usize]) -> f64 {
        let (outer, n, inner) = self.unfold(axis);
        let lines = outer * n;
        if lines * inner == 0 {
            return 0.0;
        }
        let per_task = (TASK_VALUES / inner.max(1)).max(1);
        let partial: Vec<f64> = (0..lines.div_ceil(per_task))
            .into_par_iter()
            .map(|task| {
                (task * per_task..lines.min((task + 1) * per_task))
                    .map(|l| {
                        let source = (l - l % n + rows[l % n]) * inner;
                        dot(&self.a[l * inner..(l + 1) * inner], &self.b[source..source + inner])
                    })
                    .sum::<f64>()
            })
            .collect();
        partial.iter().sum()
    }

    /// Reorders B's units along `axis` (unit `i` becomes unit `rows[i]`); `similarity` is the new
    /// `<A, B>` (from [`TensorPair::similarity_with`]).
    pub fn reorder(&mut self, axis: usize, rows: &[usize], similarity: f64) {
        let (outer, n, inner) = self.unfold(axis);
        let mut b = Vec::with_capacity(self.b.len());
        for l in 0..outer * n {
            let source = (l - l % n + rows[l % n]) * inner;
            b.extend_from_slice(&self.b[source..source + inner]);
        }
        self.b = b;
        self.similarity = similarity;
    }
}
