//! Git Re-Basin weight matching (Ainsworth, Hayase, Srinivasa 2023, Algorithm 1): find the hidden-unit
//! permutations of model B that make its weights most similar to model A's.
//!
//! The objective is `sum over tensors t of <A_t, pi(B)_t>` (Frobenius inner products, in f64). It is
//! maximised by coordinate descent: in each sweep the permutations are visited in a seeded random
//! order, and each one is set to the linear assignment maximising the objective with the others
//! fixed. A new assignment is kept only if it raises the objective by more than [`TOLERANCE`], so
//! the objective never decreases; the search stops after a sweep without such a gain, or after
//! [`MAX_SWEEPS`] sweeps (ARCHITECTURE.md, "Permutation alignment (weight matching)").

use lineage_loaders::ParamSet;
use rayon::prelude::*;

use super::assignment::max_assignment;
use super::spec::{PermutationSpec, Permutations};
use crate::error::{CoreError, Result};
use crate::train::rng::Rng;

/// Sweeps after which the search stops even if it still improves.
pub const MAX_SWEEPS: usize = 100;
/// Smallest objective gain that counts as an improvement.
pub const TOLERANCE: f64 = 1e-12;
/// Names the algorithm and its settings; part of the cache key of aligned results.
pub const ALGORITHM: &str = "git-rebasin weight matching v1: seed 0, random order, max 100 sweeps, tol 1e-12";
/// Seed of the permutation visiting order used by the batch analysis.
pub const DEFAULT_SEED: u64 = 0;

/// The outcome of [`weight_matching`].
#[derive(Debug, Clone, PartialEq)]
pub struct Matching {
    /// One permutation per group of the spec; apply with [`PermutationSpec::apply`] to B.
    pub perms: Permutations,
    /// The objective before the first sweep (identity permutations) and after each sweep.
    pub objective: Vec<f64>,
    /// Whether the search stopped because a sweep found no gain (rather than at [`MAX_SWEEPS`]).
    pub converged: bool,
}

/// A dense f64 tensor: shape and row-major values.
#[derive(Debug, Clone)]
struct Array {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Array {
    /// Reads tensor `name` of `params` (which must exist), refusing non-finite values.
    fn read(params: &ParamSet, name: &str, which: &str) -> Result<Self> {
        let tensor = params
            .get(name)
            .ok_or_else(|| CoreError::Align(format!("`{name}` missing in model {which}")))?;
        let data: Vec<f64> = tensor
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| CoreError::Align(format!("`{name}` of model {which}: {e}")))?
            .into_iter()
            .map(f64::from)
            .collect();
        if data.iter().any(|v| !v.is_finite()) {
            return Err(CoreError::Align(format!(
                "`{name}` of model {which} holds a non-finite value"
            )));
        }
        Ok(Self {
            shape: tensor.dims().to_vec(),
            data,
        })
    }

    /// (product of dims before `axis`, dim of `axis`, product of dims after `axis`).
    fn split(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.shape[..axis].iter().product();
        let inner = self.shape[axis + 1..].iter().product();
        (outer, self.shape[axis], inner)
    }

    /// `out[.., i, ..] = self[.., perm[i], ..]` along `axis`.
    fn permute_axis(&self, axis: usize, perm: &[usize]) -> Self {
        let (outer, n, inner) = self.split(axis);
        let mut data = Vec::with_capacity(self.data.len());
        for o in 0..outer {
            for &p in perm {
                let start = (o * n + p) * inner;
                data.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        Self {
            shape: self.shape.clone(),
            data,
        }
    }

    /// The tensor as an `[n, rest]` row-major matrix with `axis` as rows (columns in a fixed order).
    fn unfold(&self, axis: usize) -> Vec<f64> {
        let (outer, n, inner) = self.split(axis);
        let mut out = vec![0.0; self.data.len()];
        for o in 0..outer {
            for i in 0..n {
                let src = (o * n + i) * inner;
                let dst = i * outer * inner + o * inner;
                out[dst..dst + inner].copy_from_slice(&self.data[src..src + inner]);
            }
        }
        out
    }
}

/// The tensors touched by a spec, in model A and B.
struct Tensors {
    names: Vec<String>,
    a: Vec<Array>,
    b: Vec<Array>,
    /// Per tensor: (axis, group) pairs acting on it.
    axes: Vec<Vec<(usize, usize)>>,
}

impl Tensors {
    /// B's tensor `t` with every group's permutation applied except `skip`'s.
    fn permuted_b(&self, t: usize, perms: &Permutations, skip: Option<usize>) -> Array {
        let mut out = self.b[t].clone();
        for &(axis, g) in &self.axes[t] {
            if Some(g) != skip {
                out = out.permute_axis(axis, &perms[g]);
            }
        }
        out
    }

    /// The objective `sum_t <A_t, pi(B)_t>`.
    fn objective(&self, perms: &Permutations) -> f64 {
        (0..self.a.len())
            .map(|t| dot(&self.a[t].data, &self.permuted_b(t, perms, None).data))
            .sum()
    }

    /// `cost[i * n + j]`: the objective's terms linear in group `g` when unit `j` of B is moved to
    /// position `i`, with the other groups' permutations fixed.
    fn cost(&self, spec: &PermutationSpec, g: usize, perms: &Permutations) -> Vec<f64> {
        let n = spec.groups[g].size;
        let mut cost = vec![0.0; n * n];
        for (t, axes) in self.axes.iter().enumerate() {
            for &(axis, _) in axes.iter().filter(|(_, group)| *group == g) {
                let a = self.a[t].unfold(axis);
                let b = self.permuted_b(t, perms, Some(g)).unfold(axis);
                let m = a.len() / n.max(1);
                cost.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
                    let ai = &a[i * m..(i + 1) * m];
                    for (j, c) in row.iter_mut().enumerate() {
                        *c += dot(ai, &b[j * m..(j + 1) * m]);
                    }
                });
            }
        }
        cost
    }
}

fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Finds the permutations of `b`'s hidden units that best match `a` (see the module doc). `a` and
/// `b` must both fit `spec`; `seed` fixes the order in which permutations are visited.
pub fn weight_matching(spec: &PermutationSpec, a: &ParamSet, b: &ParamSet, seed: u64) -> Result<Matching> {
    spec.check(a)?;
    spec.check(b)?;
    a.check_compatible(b)
        .map_err(|diff| CoreError::Align(format!("models A and B differ: {diff}")))?;
    let by_tensor = spec.axes_by_tensor();
    let mut tensors = Tensors {
        names: Vec::with_capacity(by_tensor.len()),
        a: Vec::with_capacity(by_tensor.len()),
        b: Vec::with_capacity(by_tensor.len()),
        axes: Vec::with_capacity(by_tensor.len()),
    };
    for (name, axes) in by_tensor {
        tensors.a.push(Array::read(a, name, "A")?);
        tensors.b.push(Array::read(b, name, "B")?);
        tensors.names.push(name.to_string());
        tensors.axes.push(axes);
    }
    let mut perms = spec.identity();
    let mut objective = vec![tensors.objective(&perms)];
    let mut rng = Rng::new(seed, "weight-matching");
    let mut order: Vec<usize> = (0..spec.groups.len()).collect();
    let mut converged = false;
    for _ in 0..MAX_SWEEPS {
        rng.shuffle(&mut order);
        let mut improved = false;
        for &g in &order {
            let n = spec.groups[g].size;
            let cost = tensors.cost(spec, g, &perms);
            let gain = |perm: &[usize]| -> f64 { perm.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum() };
            let candidate = max_assignment(&cost, n).map_err(|e| {
                CoreError::Align(format!("{} ({}): {e}", spec.groups[g].name, tensors.names.join(", ")))
            })?;
            if gain(&candidate) > gain(&perms[g]) + TOLERANCE {
                perms[g] = candidate;
                improved = true;
            }
        }
        objective.push(tensors.objective(&perms));
        if !improved {
            converged = true;
            break;
        }
    }
    Ok(Matching {
        perms,
        objective,
        converged,
    })
}

/// `b` permuted to match `a` by [`weight_matching`]: a functionally identical copy of `b`.
pub fn align_to(spec: &PermutationSpec, a: &ParamSet, b: &ParamSet, seed: u64) -> Result<ParamSet> {
    let matching = weight_matching(spec, a, b, seed)?;
    spec.apply(b, &matching.perms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::eval_data::EvalData;
    use crate::models::evaluator::Evaluator;
    use crate::models::mlp::{Activation, MlpEvaluator, MlpSpec, linear_chain};
    use candle_core::{Device, Tensor};

    fn normal(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| rng.uniform(-1.0, 1.0) + rng.uniform(-1.0, 1.0))
            .collect()
    }

    fn random_mlp(seed: u64, widths: &[usize]) -> ParamSet {
        let mut rng = Rng::new(seed, "test-mlp");
        let mut raw = Vec::new();
        for (l, w) in widths.windows(2).enumerate() {
            let weight = Tensor::from_vec(normal(&mut rng, w[0] * w[1]), (w[1], w[0]), &Device::Cpu).unwrap();
            let bias = Tensor::from_vec(normal(&mut rng, w[1]), w[1], &Device::Cpu).unwrap();
            raw.push((format!("fc{}.weight", l + 1), weight));
            raw.push((format!("fc{}.bias", l + 1), bias));
        }
        ParamSet::from_raw(raw).unwrap()
    }

    fn random_perms(spec: &PermutationSpec, seed: u64) -> Permutations {
        let mut rng = Rng::new(seed, "test-perm");
        let mut perms = spec.identity();
        for p in &mut perms {
            rng.shuffle(p);
        }
        perms
    }

    fn values(p: &ParamSet) -> Vec<(String, Vec<f32>)> {
        p.iter()
            .map(|(n, t)| (n.to_string(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect()
    }

    #[test]
    fn a_permuted_copy_is_recovered_exactly_and_computes_the_same_function() {
        let widths = [12, 32, 24, 16, 5];
        let a = random_mlp(1, &widths);
        let spec = PermutationSpec::mlp(&linear_chain(&a).unwrap());
        assert_eq!(spec.groups.len(), 3);
        let hidden = random_perms(&spec, 7);
        assert_ne!(hidden, spec.identity());
        let b = spec.apply(&a, &hidden).unwrap();
        assert_ne!(values(&a), values(&b));

        let matching = weight_matching(&spec, &a, &b, 3).unwrap();
        assert!(matching.converged);
        // B' = B[perm] = A, so perm is the inverse of the scrambling permutation.
        for (found, scramble) in matching.perms.iter().zip(&hidden) {
            let composed: Vec<usize> = found.iter().map(|&i| scramble[i]).collect();
            assert_eq!(composed, (0..found.len()).collect::<Vec<_>>());
        }
        let aligned = spec.apply(&b, &matching.perms).unwrap();
        assert_eq!(values(&aligned), values(&a));

        // Permuting hidden units never changes the function.
        let mut rng = Rng::new(5, "inputs");
        let x = Tensor::from_vec(normal(&mut rng, 40 * 12), (40, 12), &Device::Cpu).unwrap();
        let labels: Vec<u32> = (0..40).map(|i| i % 5).collect();
        let data = EvalData::from_tensors(x, labels, None, false).unwrap();
        let eval = MlpEvaluator::new(MlpSpec::new(widths.to_vec(), Activation::Relu).unwrap(), &data).unwrap();
        let (ra, rb) = (eval.evaluate(&a).unwrap(), eval.evaluate(&b).unwrap());
        assert_eq!(ra.per_example_correct, rb.per_example_correct);
        for (x, y) in ra.per_example_loss.iter().zip(&rb.per_example_loss) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn the_objective_never_decreases_and_beats_the_identity() {
        let widths = [10, 40, 40, 40, 3];
        let a = random_mlp(11, &widths);
        let b = random_mlp(12, &widths);
        let spec = PermutationSpec::mlp(&linear_chain(&a).unwrap());
        let matching = weight_matching(&spec, &a, &b, 0).unwrap();
        assert!(matching.objective.len() >= 2);
        assert!(
            matching.objective.windows(2).all(|w| w[1] >= w[0]),
            "{:?}",
            matching.objective
        );
        let (first, last) = (matching.objective[0], *matching.objective.last().unwrap());
        assert!(last > first + 1.0, "{first} -> {last}");
        // The reported objective is the similarity of A and the permuted B over the tensors the
        // permutations touch (all but the last layer's bias).
        let aligned = spec.apply(&b, &matching.perms).unwrap();
        let touched = spec.axes_by_tensor();
        assert_eq!(touched.len(), values(&a).len() - 1);
        let direct: f64 = values(&a)
            .iter()
            .zip(values(&aligned))
            .filter(|((name, _), _)| touched.contains_key(name.as_str()))
            .map(|((_, x), (_, y))| {
                x.iter()
                    .zip(&y)
                    .map(|(p, q)| f64::from(*p) * f64::from(*q))
                    .sum::<f64>()
            })
            .sum();
        assert!(
            (direct - last).abs() < 1e-6 * direct.abs().max(1.0),
            "{direct} vs {last}"
        );
        // Deterministic for a seed.
        assert_eq!(weight_matching(&spec, &a, &b, 0).unwrap(), matching);
    }

    #[test]
    fn mismatching_or_non_finite_models_are_errors() {
        let a = random_mlp(1, &[4, 6, 3]);
        let spec = PermutationSpec::mlp(&linear_chain(&a).unwrap());
        let b = random_mlp(2, &[4, 7, 3]);
        assert!(weight_matching(&spec, &a, &b, 0).is_err());
        let mut raw: Vec<(String, Tensor)> = a.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        let weight = raw.iter().position(|(n, _)| n == "fc1.weight").unwrap();
        raw[weight].1 = Tensor::from_vec(vec![f32::NAN; 6 * 4], (6, 4), &Device::Cpu).unwrap();
        let nan = ParamSet::from_raw(raw).unwrap();
        let err = weight_matching(&spec, &a, &nan, 0).unwrap_err().to_string();
        assert!(err.contains("non-finite") && err.contains("model B"), "{err}");
    }
}
