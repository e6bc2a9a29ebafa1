//! Evaluators: loss and correctness of parameter sets, and of points on the segment between two.
//!
//! An [`Evaluator`] works in two stages so that work shared by every path through a checkpoint is
//! done once: [`Evaluator::prepare`] turns a [`ParamSet`] into an opaque [`Prepared`] checkpoint
//! (for the MLP: weights laid out for the kernels and the first layer's output on the eval set),
//! then [`Evaluator::evaluate_prepared`] gives the endpoint result and
//! [`Evaluator::evaluate_path_prepared`] / [`Evaluator::evaluate_paths`] the interior points
//! theta(a) = (1-a)·A + a·B. Endpoints (alpha 0 and 1) are meant to be evaluated once per checkpoint
//! and reused for every pair, so paths are usually asked for the interior alphas only.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Range;

use lineage_loaders::ParamSet;
use lineage_loaders::params::describe_shape_difference;
use rayon::prelude::*;

use crate::data::features::Features;
use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::matmul::MatmulPrecision;

/// Loss and correctness of one parameter set on the eval set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// Mean cross-entropy over the examples (per-example values in f32, mean accumulated in f64).
    pub loss: f64,
    /// Error rate: fraction of examples whose first maximal logit is not the label.
    pub error: f64,
    /// Cross-entropy of each example.
    pub per_example_loss: Vec<f32>,
    /// Whether each example is classified correctly.
    pub per_example_correct: Vec<bool>,
}

impl EvalResult {
    /// Aggregates per-example losses and correctness (equal lengths) into a result.
    pub fn from_examples(per_example_loss: Vec<f32>, per_example_correct: Vec<bool>) -> Self {
        let n = per_example_loss.len().max(1) as f64;
        let loss = per_example_loss.iter().map(|&l| f64::from(l)).sum::<f64>() / n;
        let wrong = per_example_correct.iter().filter(|c| !**c).count();
        let error = wrong as f64 / per_example_correct.len().max(1) as f64;
        Self {
            loss,
            error,
            per_example_loss,
            per_example_correct,
        }
    }

    /// The result on the examples `examples` only (a range of this result's examples).
    pub fn restricted(&self, examples: Range<usize>) -> Self {
        Self::from_examples(
            self.per_example_loss[examples.clone()].to_vec(),
            self.per_example_correct[examples].to_vec(),
        )
    }
}

/// Per-checkpoint state prepared by an evaluator ([`Evaluator::prepare`]), reused for the
/// checkpoint's own evaluation and for every interpolation path through it. Opaque to callers.
pub struct Prepared {
    state: Box<dyn Any + Send + Sync>,
}

impl Prepared {
    /// Wraps an evaluator's per-checkpoint state.
    pub fn new<T: Any + Send + Sync>(state: T) -> Self {
        Self { state: Box::new(state) }
    }

    /// The state, if it has type `T` (i.e. was prepared by the evaluator asking).
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.state.downcast_ref()
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared { .. }")
    }
}

/// Computes per-example loss and correctness of parameter sets on one eval set.
///
/// Implementations parallelise internally with rayon where useful; all methods may be called
/// concurrently from several threads.
pub trait Evaluator: Send + Sync {
    /// A one-line description (family, architecture, eval set size); part of result cache keys.
    fn describe(&self) -> String;

    /// The whole specification of the model this evaluator runs, every setting that changes what it
    /// computes from the same parameters (two evaluators with equal specifications compute the same
    /// function); by default the description.
    fn model_specification(&self) -> String {
        self.describe()
    }

    /// Sets how the evaluator's CPU matrix products are computed (the transformers'; the other
    /// families keep f32). Called before any evaluation; a precision other than f32 that the
    /// machine computes is named in [`Evaluator::describe`], so results are cached apart.
    fn set_matmul(&mut self, _precision: MatmulPrecision) {}

    /// Number of eval examples.
    fn n_examples(&self) -> usize;

    /// The independent units of the eval set that a bootstrap resamples, as the unit of each example
    /// (numbered from 0 without gaps), when examples are not independent (a language model's
    /// predicted tokens, resampled by sequence); None (the default): every example is its own unit.
    fn resampling_units(&self) -> Option<Vec<u32>> {
        None
    }

    /// Checks that `params` fits the model and precomputes what every evaluation involving this
    /// checkpoint can share.
    fn prepare(&self, params: &ParamSet) -> Result<Prepared>;

    /// Evaluates a prepared checkpoint.
    fn evaluate_prepared(&self, point: &Prepared) -> Result<EvalResult>;

    /// Evaluates theta(alpha) = (1-alpha)·A + alpha·B for each alpha (any values; usually the
    /// interior of the grid), in order. The blend weights are rounded to f32 as PyTorch does.
    fn evaluate_path_prepared(&self, a: &Prepared, b: &Prepared, alphas: &[f64]) -> Result<Vec<EvalResult>>;

    /// As [`Evaluator::evaluate_path_prepared`], on the eval examples `examples` only (per-example
    /// results in that order). The default evaluates every example and keeps those asked for;
    /// families that compute only what is asked say so with [`Evaluator::evaluates_subsets`].
    fn evaluate_path_on(
        &self,
        a: &Prepared,
        b: &Prepared,
        alphas: &[f64],
        examples: Range<usize>,
    ) -> Result<Vec<EvalResult>> {
        let all = self.evaluate_path_prepared(a, b, alphas)?;
        Ok(all.iter().map(|r| r.restricted(examples.clone())).collect())
    }

    /// Whether [`Evaluator::evaluate_path_on`] costs in proportion to the examples asked for (the
    /// economy mode's sequential examples need it).
    fn evaluates_subsets(&self) -> bool {
        false
    }

    /// The permutation symmetries of this family for `params`, for alignment before interpolation
    /// ([`crate::methods::align`]). Families without a known spec keep the default: an error.
    fn permutation_spec(&self, params: &ParamSet) -> Result<PermutationSpec> {
        let _ = params;
        Err(CoreError::Align(format!(
            "{} has no permutation spec: alignment is not supported for this model family",
            self.describe()
        )))
    }

    /// Number of hidden layers whose activations [`Evaluator::hidden_activations`] can return
    /// (0 when the family does not expose them).
    fn n_hidden_layers(&self) -> usize {
        0
    }

    /// The representation of every eval example at hidden layer `layer` (0-based; for the `mlp`
    /// family the post-activation output of hidden layer `layer`), `[n_examples, width]`.
    /// Families without this view return [`CoreError::Unsupported`].
    fn hidden_activations(&self, point: &Prepared, layer: usize) -> Result<Features> {
        let _ = (point, layer);
        Err(CoreError::Unsupported(format!(
            "{}: hidden activations are not available for this model family",
            self.describe()
        )))
    }

    /// Whether callers should run independent evaluations at the same time on rayon's pool (the
    /// default), or one after the other because each one already uses every core.
    fn parallel_evaluations(&self) -> bool {
        true
    }

    /// Evaluates one parameter set.
    fn evaluate(&self, params: &ParamSet) -> Result<EvalResult> {
        self.evaluate_prepared(&self.prepare(params)?)
    }

    /// Evaluates the path from `a` to `b` at `alphas`. Prefer [`Evaluator::prepare`] +
    /// [`Evaluator::evaluate_paths`] when a checkpoint takes part in several pairs.
    fn evaluate_path(&self, a: &ParamSet, b: &ParamSet, alphas: &[f64]) -> Result<Vec<EvalResult>> {
        let (pa, pb) = rayon::join(|| self.prepare(a), || self.prepare(b));
        self.evaluate_path_prepared(&pa?, &pb?, alphas)
    }

    /// Evaluates many paths at once: for each `(i, j)` in `pairs`, the path from `points[i]` to
    /// `points[j]` at `alphas`. All (pair, alpha) jobs run in parallel (one after the other when
    /// [`Evaluator::parallel_evaluations`] says so); results are in the order of `pairs`, then
    /// `alphas`.
    fn evaluate_paths(
        &self,
        points: &[&Prepared],
        pairs: &[(usize, usize)],
        alphas: &[f64],
    ) -> Result<Vec<Vec<EvalResult>>> {
        if let Some(&(i, j)) = pairs.iter().find(|(i, j)| *i >= points.len() || *j >= points.len()) {
            return Err(CoreError::InvalidArgument(format!(
                "pair ({i}, {j}) refers to a checkpoint beyond the {} prepared",
                points.len()
            )));
        }
        let jobs: Vec<(usize, usize)> = (0..pairs.len())
            .flat_map(|p| (0..alphas.len()).map(move |k| (p, k)))
            .collect();
        // A rayon job that is never split runs its items in order, on one thread.
        let (min_len, max_len) = if self.parallel_evaluations() {
            (1, 1)
        } else {
            (usize::MAX, usize::MAX)
        };
        let mut flat: Vec<EvalResult> = jobs
            .par_iter()
            .with_min_len(min_len)
            .with_max_len(max_len)
            .map(|&(p, k)| {
                let (i, j) = pairs[p];
                let mut one = self.evaluate_path_prepared(points[i], points[j], &alphas[k..=k])?;
                one.pop()
                    .ok_or_else(|| CoreError::Model("evaluator returned no result".into()))
            })
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(pairs.len());
        for _ in 0..pairs.len() {
            let rest = flat.split_off(alphas.len());
            out.push(std::mem::replace(&mut flat, rest));
        }
        Ok(out)
    }
}

/// Checks that `params` has exactly the tensor names and shapes of `expected` (those of the first
/// checkpoint an evaluator was built for); `what` names the evaluator in the error.
pub fn check_shapes(expected: &BTreeMap<String, Vec<usize>>, params: &ParamSet, what: &str) -> Result<()> {
    match describe_shape_difference(expected, &params.shapes()) {
        Some(diff) => Err(CoreError::Model(format!(
            "{what}: the parameter set differs from the first checkpoint: {diff}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_aggregates_in_f64() {
        let r = EvalResult::from_examples(vec![1.0, 2.0, 4.0, 1.0], vec![true, false, true, true]);
        assert_eq!(r.loss, 2.0);
        assert_eq!(r.error, 0.25);
    }
}
