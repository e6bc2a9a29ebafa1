//! Git Re-Basin weight matching (Ainsworth, Hayase, Srinivasa 2023, Algorithm 1): find the hidden-unit
//! permutations of model B that make its weights most similar to model A's.
//!
//! The objective is `sum over tensors t of <A_t, pi(B)_t>` (Frobenius inner products of the f32
//! weights, summed in f64). It is maximised by coordinate descent: in each sweep the permutations
//! are visited in a seeded random order, and each one is set to the linear assignment maximising the
//! objective with the others fixed. The assignment's cost matrix is built from f32 matrix products
//! (one GEMM per tensor, accumulated in f64); the new assignment is kept only if it raises the
//! objective, recomputed exactly in f64, by more than [`TOLERANCE`], so the objective never
//! decreases. The search stops after a sweep without such a gain, or after [`MAX_SWEEPS`] sweeps
//! (ARCHITECTURE.md, "Permutation alignment (weight matching)").
//!
//! B is kept permuted by the current assignment, so a cost matrix needs no copy of B; each group's
//! assignment is warm-started from its previous one; a group whose neighbours (the groups sharing
//! a tensor with it) have not changed since it was last solved is skipped, as solving it again
//! would give the same result; consecutive groups sharing no tensor (the MLP groups of a
//! transformer) are solved in parallel, with the same result as one after the other.

use lineage_loaders::ParamSet;
use rayon::prelude::*;

use super::assignment::{Assignment, max_assignment};
use super::spec::{PermutationSpec, Permutations};
use super::tensors::TensorPair;
use crate::error::{CoreError, Result};
use crate::train::rng::Rng;

/// Sweeps after which the search stops even if it still improves.
pub const MAX_SWEEPS: usize = 100;
/// Smallest objective gain that counts as an improvement.
pub const TOLERANCE: f64 = 1e-12;
/// Names the algorithm and its settings; part of the cache key of aligned results.
pub const ALGORITHM: &str =
    "git-rebasin weight matching v2 (f32 GEMM costs, exact f64 gains): seed 0, random order, max 100 sweeps, tol 1e-12";
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

/// The search's state: the tensors (B permuted by `perms`) and which group touches which.
struct Search {
    tensors: Vec<TensorPair>,
    /// Per group: the `(tensor, axis)` pairs it acts on.
    touched: Vec<Vec<(usize, usize)>>,
    perms: Permutations,
    /// Per group, the potentials of its last assignment (warm start of the next).
    potentials: Vec<Option<Vec<f64>>>,
}

impl Search {
    /// Reads the tensors of `a` and `b` touched by `spec` (which both fit), refusing a tensor on
    /// which one group acts along two axes (the objective would not be linear in that group).
    fn new(spec: &PermutationSpec, a: &ParamSet, b: &ParamSet) -> Result<Self> {
        let mut tensors = Vec::new();
        let mut touched = vec![Vec::new(); spec.groups.len()];
        for (name, axes) in spec.axes_by_tensor() {
            for (i, &(axis, g)) in axes.iter().enumerate() {
                if axes[..i].iter().any(|&(_, other)| other == g) {
                    return Err(CoreError::Align(format!(
                        "{} acts on two axes of `{name}`: weight matching needs each permutation to act \
                         on a tensor once",
                        spec.groups[g].name
                    )));
                }
                touched[g].push((tensors.len(), axis));
            }
            tensors.push(TensorPair::read(a, b, name)?);
        }
        Ok(Self {
            tensors,
            touched,
            perms: spec.identity(),
            potentials: vec![None; spec.groups.len()],
        })
    }

    /// The objective `sum_t <A_t, pi(B)_t>`.
    fn objective(&self) -> f64 {
        self.tensors.iter().map(|t| t.similarity).sum()
    }

    /// Per group, the other groups acting on a tensor it acts on.
    fn neighbours(&self) -> Vec<Vec<usize>> {
        let groups_of = |t: usize| (0..self.touched.len()).filter(move |&h| self.touched[h].iter().any(|p| p.0 == t));
        (0..self.touched.len())
            .map(|g| {
                let mut near: Vec<usize> = self.touched[g].iter().flat_map(|&(t, _)| groups_of(t)).collect();
                near.sort_unstable();
                near.dedup();
                near.retain(|&h| h != g);
                near
            })
            .collect()
    }

    /// `cost[i * n + j]`: the objective's terms linear in group `g` when unit `j` of the unpermuted
    /// B is moved to position `i`, with the other groups' permutations fixed.
    fn cost(&self, g: usize) -> Vec<f64> {
        let n = self.perms[g].len();
        let mut cost = vec![0.0; n * n];
        let mut scratch = Vec::new();
        for &(t, axis) in &self.touched[g] {
            self.tensors[t].add_similarities(axis, &self.perms[g], &mut scratch, &mut cost);
        }
        cost
    }

    /// The best assignment of group `g`'s cost matrix, warm-started from its previous one.
    fn solve(&self, g: usize, name: &str) -> Result<Assignment> {
        let n = self.perms[g].len();
        max_assignment(&self.cost(g), n, self.potentials[g].as_deref())
            .map_err(|e| CoreError::Align(format!("{name}: {e}")))
    }

    /// Keeps `solved` as group `g`'s permutation if that raises the objective (in f64) by more than
    /// [`TOLERANCE`]; returns whether it did.
    fn accept(&mut self, g: usize, solved: Assignment) -> bool {
        self.potentials[g] = Some(solved.potentials);
        let candidate = solved.perm;
        if candidate == self.perms[g] {
            return false;
        }
        // Unit i of the new B is unit rows[i] of the current one.
        let mut position = vec![0; candidate.len()];
        for (i, &unit) in self.perms[g].iter().enumerate() {
            position[unit] = i;
        }
        let rows: Vec<usize> = candidate.iter().map(|&unit| position[unit]).collect();
        let touched = &self.touched[g];
        let before: f64 = touched.iter().map(|&(t, _)| self.tensors[t].similarity).sum();
        let after: Vec<f64> = touched
            .iter()
            .map(|&(t, axis)| self.tensors[t].similarity_with(axis, &rows))
            .collect();
        if after.iter().sum::<f64>() <= before + TOLERANCE {
            return false;
        }
        for (&(t, axis), similarity) in touched.iter().zip(after) {
            self.tensors[t].reorder(axis, &rows, similarity);
        }
        self.perms[g] = candidate;
        true
    }

    /// One coordinate-descent step for each group of `batch`, which share no tensor: solved in
    /// parallel (the same result as one after the other), kept in order. Returns the groups changed.
    fn improve(&mut self, batch: &[usize], spec: &PermutationSpec) -> Result<Vec<usize>> {
        let solutions: Vec<Assignment> = batch
            .par_iter()
            .map(|&g| self.solve(g, &spec.groups[g].name))
            .collect::<Result<_>>()?;
        Ok(batch
            .iter()
            .zip(solutions)
            .filter_map(|(&g, solved)| self.accept(g, solved).then_some(g))
            .collect())
    }
}

/// Which groups a sweep solves, and when: a group is skipped when none of its neighbours changed
/// since it was last solved; consecutive independent groups are solved together.
struct Visits {
    /// Per group, the other groups sharing a tensor with it.
    neighbours: Vec<Vec<usize>>,
    /// Steps (group visits, counted from 1) at which each group last changed and was last solved.
    changed: Vec<usize>,
    solved: Vec<usize>,
    step: usize,
    /// Most groups solved together (the number of threads).
    width: usize,
}

impl Visits {
    /// Visits the groups in `order`; returns whether any permutation changed.
    fn sweep(&mut self, search: &mut Search, spec: &PermutationSpec, order: &[usize]) -> Result<bool> {
        let mut improved = false;
        let mut batch: Vec<usize> = Vec::new();
        for &g in order {
            self.step += 1;
            if batch.len() == self.width || batch.iter().any(|h| self.neighbours[g].contains(h)) {
                improved |= self.run(search, spec, &mut batch)?;
            }
            let (neighbours, last) = (&self.neighbours[g], self.solved[g]);
            if last > 0 && neighbours.iter().all(|&h| self.changed[h] < last) {
                continue;
            }
            self.solved[g] = self.step;
            batch.push(g);
        }
        Ok(self.run(search, spec, &mut batch)? || improved)
    }

    /// Solves and empties `batch`; returns whether any permutation changed.
    fn run(&mut self, search: &mut Search, spec: &PermutationSpec, batch: &mut Vec<usize>) -> Result<bool> {
        let changed = search.improve(batch, spec)?;
        for &g in &changed {
            self.changed[g] = self.solved[g];
        }
        batch.clear();
        Ok(!changed.is_empty())
    }
}

/// Finds the permutations of `b`'s hidden units that best match `a` (see the module doc). `a` and
/// `b` must both fit `spec`; `seed` fixes the order in which permutations are visited.
pub fn weight_matching(spec: &PermutationSpec, a: &ParamSet, b: &ParamSet, seed: u64) -> Result<Matching> {
    search(spec, a, b, seed, rayon::current_num_threads().max(1))
}

/// [`weight_matching`] solving at most `width` independent groups together.
fn search(spec: &PermutationSpec, a: &ParamSet, b: &ParamSet, seed: u64, width: usize) -> Result<Matching> {
    spec.check(a)?;
    spec.check(b)?;
    a.check_compatible(b)
        .map_err(|diff| CoreError::Align(format!("models A and B differ: {diff}")))?;
    let mut search = Search::new(spec, a, b)?;
    let groups = spec.groups.len();
    let mut visits = Visits {
        neighbours: search.neighbours(),
        changed: vec![0; groups],
        solved: vec![0; groups],
        step: 0,
        width,
    };
    let mut objective = vec![search.objective()];
    let mut rng = Rng::new(seed, "weight-matching");
    let mut order: Vec<usize> = (0..groups).collect();
    let mut converged = false;
    for _ in 0..MAX_SWEEPS {
        rng.shuffle(&mut order);
        let improved = visits.sweep(&mut search, spec, &order)?;
        objective.push(search.objective());
        if !improved {
            converged = true;
            break;
        }
    }
    Ok(Matching {
        perms: search.perms,
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
    use crate::methods::align::{PermutationGroup, TensorAxis};
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

    /// A spec over 3-D tensors whose unit axes sit first, in the middle and last:
    /// `P6` acts on `x[5, 6, 7]` axis 1, `y[9, 6, 2]` axis 1 and `z[6]`; `P7` on `x` axis 2 and
    /// `u[7, 3]` axis 0.
    fn blocks_spec() -> PermutationSpec {
        let group = |name: &str, size, axes: &[(&str, usize)]| PermutationGroup {
            name: name.into(),
            size,
            axes: axes
                .iter()
                .map(|&(tensor, axis)| TensorAxis {
                    tensor: tensor.into(),
                    axis,
                })
                .collect(),
            carried: Vec::new(),
        };
        PermutationSpec {
            groups: vec![
                group("P6", 6, &[("x", 1), ("y", 1), ("z", 0)]),
                group("P7", 7, &[("x", 2), ("u", 0)]),
            ],
        }
    }

    fn random_blocks(seed: u64) -> ParamSet {
        let mut rng = Rng::new(seed, "test-blocks");
        let shapes: [(&str, &[usize]); 4] = [("x", &[5, 6, 7]), ("y", &[9, 6, 2]), ("z", &[6]), ("u", &[7, 3])];
        let raw = shapes
            .iter()
            .map(|(name, shape)| {
                let values = normal(&mut rng, shape.iter().product());
                (
                    name.to_string(),
                    Tensor::from_vec(values, *shape, &Device::Cpu).unwrap(),
                )
            })
            .collect();
        ParamSet::from_raw(raw).unwrap()
    }

    /// `t` unfolded on `axis`: one f64 row per unit (the other axes in a fixed order).
    fn unfolded(t: &Tensor, axis: usize) -> Vec<Vec<f64>> {
        let n = t.dims()[axis];
        let rows = t
            .transpose(0, axis)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((n, ()))
            .unwrap();
        rows.to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(f64::from).collect())
            .collect()
    }

    /// The cost matrix of group `g` by its definition: unit rows of A against unit rows of B
    /// permuted by every group but `g`, in f64.
    fn reference_cost(spec: &PermutationSpec, a: &ParamSet, b: &ParamSet, perms: &Permutations, g: usize) -> Vec<f64> {
        let mut others = perms.clone();
        others[g] = (0..perms[g].len()).collect();
        let b = spec.apply(b, &others).unwrap();
        let n = spec.groups[g].size;
        let mut cost = vec![0.0; n * n];
        for ta in &spec.groups[g].axes {
            let ua = unfolded(a.get(&ta.tensor).unwrap(), ta.axis);
            let ub = unfolded(b.get(&ta.tensor).unwrap(), ta.axis);
            for (i, row) in ua.iter().enumerate() {
                for (j, col) in ub.iter().enumerate() {
                    cost[i * n + j] += row.iter().zip(col).map(|(p, q)| p * q).sum::<f64>();
                }
            }
        }
        cost
    }

    #[test]
    fn the_gemm_cost_matrix_is_the_unfolded_definition() {
        let spec = blocks_spec();
        let (a, b) = (random_blocks(1), random_blocks(2));
        let perms = random_perms(&spec, 3);
        let mut search = Search::new(&spec, &a, &spec.apply(&b, &perms).unwrap()).unwrap();
        search.perms = perms.clone();
        for g in 0..spec.groups.len() {
            let (fast, slow) = (search.cost(g), reference_cost(&spec, &a, &b, &perms, g));
            let largest = slow.iter().fold(0.0f64, |m, c| m.max(c.abs()));
            for (x, y) in fast.iter().zip(&slow) {
                assert!((x - y).abs() <= 1e-6 * largest, "{}: {x} vs {y}", spec.groups[g].name);
            }
        }
        // Mid-tensor unit axes are aligned too: a permuted copy is recovered exactly.
        let b = spec.apply(&a, &perms).unwrap();
        let matching = weight_matching(&spec, &a, &b, 0).unwrap();
        assert_eq!(values(&spec.apply(&b, &matching.perms).unwrap()), values(&a));
        assert!(matching.objective.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn independent_groups_solved_together_give_the_same_matching() {
        // A residual-stream group R and per-layer groups M_l that only share tensors with R.
        let (layers, hidden, inner) = (4, 5, 6);
        let mut rng = Rng::new(4, "test-layers");
        let mut raw = Vec::new();
        let mut residual = Vec::new();
        let mut groups = Vec::new();
        let axis = |tensor: &str, axis| TensorAxis {
            tensor: tensor.into(),
            axis,
        };
        for l in 0..layers {
            let (up, down) = (format!("up{l}"), format!("down{l}"));
            raw.push((
                up.clone(),
                Tensor::from_vec(normal(&mut rng, inner * hidden), (inner, hidden), &Device::Cpu).unwrap(),
            ));
            raw.push((
                down.clone(),
                Tensor::from_vec(normal(&mut rng, hidden * inner), (hidden, inner), &Device::Cpu).unwrap(),
            ));
            residual.extend([axis(&up, 1), axis(&down, 0)]);
            groups.push(PermutationGroup {
                name: format!("M{l}"),
                size: inner,
                axes: vec![axis(&up, 0), axis(&down, 1)],
                carried: Vec::new(),
            });
        }
        groups.push(PermutationGroup {
            name: "R".into(),
            size: hidden,
            axes: residual,
            carried: Vec::new(),
        });
        let spec = PermutationSpec { groups };
        let a = ParamSet::from_raw(raw).unwrap();
        let b = spec.apply(&a, &random_perms(&spec, 5)).unwrap();
        for seed in 0..4 {
            let one = search(&spec, &a, &b, seed, 1).unwrap();
            assert_eq!(search(&spec, &a, &b, seed, 3).unwrap(), one);
            assert_eq!(values(&spec.apply(&b, &one.perms).unwrap()), values(&a));
        }
    }

    #[test]
    fn a_group_on_two_axes_of_one_tensor_is_refused() {
        let w = Tensor::from_vec(vec![1f32; 16], (4, 4), &Device::Cpu).unwrap();
        let p = ParamSet::from_raw(vec![("w".into(), w)]).unwrap();
        let axis = |axis| TensorAxis {
            tensor: "w".into(),
            axis,
        };
        let spec = PermutationSpec {
            groups: vec![PermutationGroup {
                name: "P".into(),
                size: 4,
                axes: vec![axis(0), axis(1)],
                carried: Vec::new(),
            }],
        };
        let err = weight_matching(&spec, &p, &p, 0).unwrap_err().to_string();
        assert!(err.contains("two axes of `w`"), "{err}");
    }
}
