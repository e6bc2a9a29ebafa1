//! The Gram matrix of a run's path in weight space, built by streaming checkpoints from disk.

use nalgebra::DMatrix;

use super::flat::{FlatParams, dot};
use crate::error::Result;

/// What one pass over a run's checkpoints gives: the Gram matrix of displacements from the first
/// checkpoint, `K_ij = <θ_i - θ_0, θ_j - θ_0>`, and each checkpoint's per-tensor norms.
#[derive(Debug, Clone)]
pub struct StreamedGram {
    /// `K`, `n x n`.
    pub gram: DMatrix<f64>,
    /// Per checkpoint: (tensor name, L2 norm of the tensor).
    pub tensor_norms: Vec<Vec<(String, f64)>>,
}

/// Builds [`StreamedGram`] for `n` checkpoints, loading checkpoint `i` with `load(i)`.
///
/// At most `block` displacement vectors (plus θ_0 and one streamed vector) are in memory at once:
/// checkpoints are taken in blocks of `block`; a block's inner products with itself are computed
/// in memory, and the checkpoints after it are streamed past it one at a time. Each checkpoint is
/// loaded `1 + (number of earlier blocks)` times (once when `block >= n`). Memory never holds
/// anything of size params², and `K` is `n x n`. `n = 0` gives an empty result.
pub fn streamed_gram(
    n: usize,
    block: usize,
    load: &mut dyn FnMut(usize) -> Result<FlatParams>,
) -> Result<StreamedGram> {
    let mut gram = DMatrix::zeros(n, n);
    let mut tensor_norms = vec![Vec::new(); n];
    if n == 0 {
        return Ok(StreamedGram { gram, tensor_norms });
    }
    let block = block.max(1);
    let origin = load(0)?;
    let displaced =
        |load: &mut dyn FnMut(usize) -> Result<FlatParams>, i: usize| -> Result<(FlatParams, Vec<(String, f64)>)> {
            let mut p = if i == 0 { origin.clone() } else { load(i)? };
            let norms = p.tensor_norms();
            p.subtract(&origin)?;
            Ok((p, norms))
        };
    for start in (0..n).step_by(block) {
        let end = (start + block).min(n);
        let mut members = Vec::with_capacity(end - start);
        for (i, slot) in tensor_norms[start..end].iter_mut().enumerate() {
            let (p, norms) = displaced(load, start + i)?;
            *slot = norms;
            members.push(p);
        }
        for (a, pa) in members.iter().enumerate() {
            for (b, pb) in members.iter().enumerate().skip(a) {
                let v = dot(pa.values(), pb.values());
                gram[(start + a, start + b)] = v;
                gram[(start + b, start + a)] = v;
            }
        }
        for j in end..n {
            let (pj, _) = displaced(load, j)?;
            for (a, pa) in members.iter().enumerate() {
                let v = dot(pa.values(), pj.values());
                gram[(start + a, j)] = v;
                gram[(j, start + a)] = v;
            }
        }
    }
    Ok(StreamedGram { gram, tensor_norms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: usize) -> FlatParams {
        let mut p = FlatParams::default();
        p.push("a", &[i as f32, (i * i) as f32 * 0.5]);
        p.push("b", &[1.0 - i as f32, 2.0, (i % 3) as f32]);
        p
    }

    #[test]
    fn every_block_size_gives_the_same_gram_and_bounded_loads() {
        let n = 7;
        let direct = DMatrix::from_fn(n, n, |i, j| {
            let (mut a, mut b) = (point(i), point(j));
            a.subtract(&point(0)).unwrap();
            b.subtract(&point(0)).unwrap();
            dot(a.values(), b.values())
        });
        for block in [0, 1, 2, 3, 7, 100] {
            let mut loads = 0;
            let got = streamed_gram(n, block, &mut |i| {
                loads += 1;
                Ok(point(i))
            })
            .unwrap();
            assert_eq!(got.gram, direct, "block {block}");
            assert_eq!(got.tensor_norms[3], point(3).tensor_norms());
            let b = block.clamp(1, n);
            let blocks = n.div_ceil(b);
            assert!(loads <= n + n * (blocks - 1), "block {block}: {loads} loads");
            if block >= n {
                assert_eq!(loads, n);
            }
        }
        let empty = streamed_gram(0, 4, &mut |_| unreachable!()).unwrap();
        assert_eq!(empty.gram.nrows(), 0);
    }

    #[test]
    fn mismatched_layouts_are_errors() {
        let err = streamed_gram(2, 2, &mut |i| {
            let mut p = FlatParams::default();
            p.push("a", &vec![0.0; i + 1]);
            Ok(p)
        });
        assert!(err.is_err());
    }
}
