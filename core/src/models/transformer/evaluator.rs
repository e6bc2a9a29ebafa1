//! One [`Evaluator`] for every transformer architecture: checkpoints become candle models on the
//! device, the eval set runs in token batches, theta(a) is blended tensor by tensor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lineage_loaders::ParamSet;

use crate::data::eval_data::EvalData;
use crate::data::features::Features;
use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::methods::interpolation::{blend, blend_into};
use crate::models::evaluator::{EvalResult, Evaluator, Prepared, check_shapes};
use crate::models::matmul::{self, MatmulPrecision};
use crate::models::transformer::tokens::{TokenBatch, TokenBatches};

/// What a forward pass over some examples gives, example by example.
#[derive(Debug, Default)]
pub struct Scores {
    /// Cross-entropy of each example.
    pub loss: Vec<f32>,
    /// Whether each example is predicted correctly.
    pub correct: Vec<bool>,
    /// The representation of each example at the layer asked for, rows of
    /// [`Architecture::representation_width`] values (empty when none was asked for).
    pub features: Vec<f32>,
}

/// A transformer architecture lineage can evaluate: how to build it from checkpoint tensors and
/// how to score a batch of token sequences.
pub trait Architecture: std::fmt::Debug + Send + Sync + 'static {
    /// The model built on one parameter set.
    type Model: Send + Sync + 'static;

    /// One line (family and sizes), part of result cache keys.
    fn describe(&self) -> String;

    /// Token ids must be below this.
    fn vocab_size(&self) -> usize;

    /// Longest sequence the model takes (learned position embeddings), if limited.
    fn max_positions(&self) -> Option<usize>;

    /// Checks what else the eval data must satisfy (e.g. labels below the number of classes) and
    /// returns the examples it gives (sequences, or predicted tokens for a language model) as the
    /// index of each example's sequence, in the order [`Architecture::score`] appends them (batch
    /// by batch, as [`TokenBatches::iter`] gives them; a sequence's examples together, in
    /// position order).
    fn examples(&self, data: &EvalData, tokens: &TokenBatches) -> Result<Vec<u32>>;

    /// Width of the representation rows that [`Architecture::score`] appends.
    fn representation_width(&self) -> usize;

    /// Number of layers whose representation [`Architecture::score`] can return; the last one is
    /// the state the output head reads.
    fn representation_layers(&self) -> usize;

    /// Builds the model from tensors named as in the Hugging Face checkpoint.
    fn load(&self, vb: VarBuilder) -> candle_core::Result<Self::Model>;

    /// The permutation symmetries searched by weight matching ([`crate::models::transformer::permutations`]).
    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec;

    /// Runs `model` on one batch and appends, for each of its examples in turn, the loss, the
    /// correctness and, when `layer` is given, the representation row at that layer. `labels` are
    /// the eval set's class labels (all of them; empty for language-model data).
    fn score(
        &self,
        model: &Self::Model,
        batch: &TokenBatch,
        labels: &[u32],
        layer: Option<usize>,
        out: &mut Scores,
    ) -> candle_core::Result<()>;
}

/// Evaluates checkpoints of architecture `A` on tokenised eval data: one model per forward pass over
/// batches of examples, one pass after the other (each uses every core).
pub struct TransformerEvaluator<A: Architecture> {
    /// Identifies this evaluator, so checkpoints prepared by another one are refused.
    id: u64,
    architecture: A,
    device: Device,
    tokens: TokenBatches,
    labels: Vec<u32>,
    n_examples: usize,
    /// The sequence of each example: what a bootstrap resamples.
    sequence_of: Vec<u32>,
    /// For each example (in eval-set order), its position in scoring order, when the two differ
    /// (batches of sequences sorted by length).
    scoring_position: Option<Vec<usize>>,
    /// Names and shapes every parameter set must have (those of the reference checkpoint).
    shapes: BTreeMap<String, Vec<usize>>,
    description: String,
    /// How the CPU products are computed (made effective for this machine).
    matmul: MatmulPrecision,
    /// On the CPU, the parameters of the last interpolated point, kept so that the next point is
    /// blended into them in place rather than into newly allocated tensors (one checkpoint's worth
    /// of memory, held while the evaluator lives). A pass holds the lock while it uses them.
    scratch: Mutex<Option<HashMap<String, Tensor>>>,
}

/// A checkpoint prepared by a [`TransformerEvaluator`]: its tensors on the device and the model.
struct Point<M> {
    evaluator: u64,
    tensors: HashMap<String, Tensor>,
    model: M,
}

impl<A: Architecture> TransformerEvaluator<A> {
    /// An evaluator of `architecture` on `data` (token ids) on `device`. Checks that `reference`
    /// builds the model and that the data fits it (token ids below the vocabulary size, sequences
    /// within the positions, and what the architecture adds).
    pub fn new(architecture: A, reference: &ParamSet, data: &EvalData, device: &Device) -> Result<Self> {
        let tokens = TokenBatches::new(data, device)?;
        let max_id = TokenBatches::max_id(data)?;
        if max_id as usize >= architecture.vocab_size() {
            return Err(CoreError::data(
                &data.source,
                format!(
                    "token id {max_id} is beyond the model's vocabulary of {}",
                    architecture.vocab_size()
                ),
            ));
        }
        if let Some(positions) = architecture.max_positions().filter(|&p| tokens.max_len() > p) {
            return Err(CoreError::data(
                &data.source,
                format!(
                    "sequences have up to {} tokens, more than the model's {positions} positions",
                    tokens.max_len()
                ),
            ));
        }
        let (sequence_of, scoring_position) = eval_set_order(architecture.examples(data, &tokens)?);
        let n_examples = sequence_of.len();
        let mut description = format!("{} on {n_examples} examples", architecture.describe());
        if !device.is_cpu() {
            description.push_str(&format!(" ({device:?})"));
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let evaluator = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            architecture,
            device: device.clone(),
            tokens,
            labels: data.labels.clone(),
            n_examples,
            sequence_of,
            scoring_position,
            shapes: reference.shapes(),
            description,
            matmul: MatmulPrecision::F32,
            scratch: Mutex::new(None),
        };
        evaluator.build(evaluator.on_device(reference.iter())?)?;
        Ok(evaluator)
    }

    /// Copies named tensors to the device.
    fn on_device<'a>(&self, tensors: impl Iterator<Item = (&'a str, &'a Tensor)>) -> Result<HashMap<String, Tensor>> {
        tensors
            .map(|(name, t)| {
                let t = t
                    .to_device(&self.device)
                    .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))?;
                Ok((name.to_string(), t))
            })
            .collect()
    }

    /// The model on `tensors`; a missing or misshapen tensor is an error naming it.
    fn build(&self, tensors: HashMap<String, Tensor>) -> Result<A::Model> {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &self.device);
        self.architecture.load(vb).map_err(|e| {
            CoreError::Model(format!(
                "{}: the checkpoint does not fit: {e}",
                self.architecture.describe()
            ))
        })
    }

    fn point<'a>(&self, prepared: &'a Prepared) -> Result<&'a Point<A::Model>> {
        prepared
            .downcast_ref::<Point<A::Model>>()
            .filter(|p| p.evaluator == self.id)
            .ok_or_else(|| CoreError::InvalidArgument("checkpoint was prepared by a different evaluator".into()))
    }

    /// Runs `model` over the eval set, keeping the representation at `layer` if given; the scores
    /// are in eval-set order.
    fn run(&self, model: &A::Model, layer: Option<usize>) -> Result<Scores> {
        let mut scores = Scores::default();
        matmul::scoped(self.matmul, || {
            self.tokens.iter().try_for_each(|batch| {
                self.architecture
                    .score(model, batch, &self.labels, layer, &mut scores)
                    .map_err(|e| CoreError::Model(format!("{} forward pass: {e}", self.architecture.describe())))
            })
        })?;
        if scores.loss.len() != self.n_examples || scores.correct.len() != self.n_examples {
            return Err(CoreError::Model(format!(
                "{}: scored {} examples, expected {}",
                self.architecture.describe(),
                scores.loss.len(),
                self.n_examples
            )));
        }
        Ok(match &self.scoring_position {
            Some(position) => scores.reordered(position, self.architecture.representation_width()),
            None => scores,
        })
    }
}

/// The sequence of each example in eval-set order (sequence by sequence, a sequence's examples in
/// position order) from `scored` (the same in scoring order), and where each example of eval-set
/// order is in scoring order; `None` when the two orders are the same.
fn eval_set_order(scored: Vec<u32>) -> (Vec<u32>, Option<Vec<usize>>) {
    if scored.is_sorted() {
        return (scored, None);
    }
    let mut position: Vec<usize> = (0..scored.len()).collect();
    // Stable: a sequence's examples keep their order.
    position.sort_by_key(|&i| scored[i]);
    (position.iter().map(|&i| scored[i]).collect(), Some(position))
}

impl Scores {
    /// The scores taken at `position` (example i of the result is example `position[i]` of
    /// `self`); representation rows are `width` values.
    fn reordered(self, position: &[usize], width: usize) -> Self {
        let features = if self.features.is_empty() {
            Vec::new()
        } else {
            position
                .iter()
                .flat_map(|&i| self.features[i * width..(i + 1) * width].iter().copied())
                .collect()
        };
        Self {
            loss: position.iter().map(|&i| self.loss[i]).collect(),
            correct: position.iter().map(|&i| self.correct[i]).collect(),
            features,
        }
    }
}

/// Whether [`blend_into`] can read these tensors (contiguous f32).
fn reusable(tensors: &HashMap<String, Tensor>) -> bool {
    tensors.values().all(|t| t.is_contiguous() && t.dtype() == DType::F32)
}

/// theta(alpha) between the tensors `a` and `b` (same names and shapes), written in place into
/// `scratch` ([`blend_into`]), which is first allocated (zeros of each shape) when it does not hold
/// tensors of those names; returns handles to them. The tensors of `scratch` are shared with no one
/// but the handles returned, which must be dropped before the next call. Allocating zeros rather
/// than blending into new tensors ([`blend`]: two scaled temporaries per tensor) kept the
/// `transformer_path` bench's peak memory 1 GB lower on BERT-base (2.56 -> 1.58 GB).
fn blend_reusing(
    scratch: &mut Option<HashMap<String, Tensor>>,
    a: &HashMap<String, Tensor>,
    b: &HashMap<String, Tensor>,
    alpha: f64,
) -> Result<HashMap<String, Tensor>> {
    let fits = |dst: &HashMap<String, Tensor>| dst.len() == a.len() && a.keys().all(|n| dst.contains_key(n));
    if !scratch.as_ref().is_some_and(fits) {
        // Drop the old tensors first: at most one blended point in memory.
        *scratch = None;
        let fresh = a
            .iter()
            .map(|(name, t)| {
                let zeros = Tensor::zeros(t.shape(), DType::F32, &Device::Cpu)
                    .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))?;
                Ok((name.clone(), zeros))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        *scratch = Some(fresh);
    }
    let dst = scratch.clone().unwrap_or_default();
    for (name, t) in &dst {
        let b = b
            .get(name)
            .ok_or_else(|| CoreError::Model(format!("`{name}` missing in model B")))?;
        blend_into(t, &a[name], b, alpha)?;
    }
    Ok(dst)
}

impl<A: Architecture> Evaluator for TransformerEvaluator<A> {
    fn describe(&self) -> String {
        match self.matmul {
            MatmulPrecision::F32 => self.description.clone(),
            precision => format!("{} ({} products)", self.description, precision.name()),
        }
    }

    fn set_matmul(&mut self, precision: MatmulPrecision) {
        if self.device.is_cpu() {
            self.matmul = precision.effective();
        }
    }

    /// Every field of the architecture's configuration (activation, norms' epsilon, rotary
    /// settings, ...), not only those its description names.
    fn model_specification(&self) -> String {
        format!("{:?}", self.architecture)
    }

    fn n_examples(&self) -> usize {
        self.n_examples
    }

    /// Whole sequences: a language model's tokens of one sequence are not independent examples.
    fn resampling_units(&self) -> Option<Vec<u32>> {
        Some(self.sequence_of.clone())
    }

    fn prepare(&self, params: &ParamSet) -> Result<Prepared> {
        check_shapes(&self.shapes, params, &self.architecture.describe())?;
        let tensors = self.on_device(params.iter())?;
        let model = self.build(tensors.clone())?;
        Ok(Prepared::new(Point {
            evaluator: self.id,
            tensors,
            model,
        }))
    }

    fn evaluate_prepared(&self, point: &Prepared) -> Result<EvalResult> {
        let scores = self.run(&self.point(point)?.model, None)?;
        Ok(EvalResult::from_examples(scores.loss, scores.correct))
    }

    fn evaluate_path_prepared(&self, a: &Prepared, b: &Prepared, alphas: &[f64]) -> Result<Vec<EvalResult>> {
        let (a, b) = (&self.point(a)?.tensors, &self.point(b)?.tensors);
        alphas
            .iter()
            .map(|&alpha| {
                // A pass already running on the scratch tensors (or a poisoned lock) leaves this
                // one to allocate its own: never wait for the lock, which a rayon thread holding it
                // could otherwise be asked to take again while it helps with other work.
                let scratch = match self.scratch.try_lock() {
                    Ok(guard) if self.device.is_cpu() && reusable(a) && reusable(b) => Some(guard),
                    _ => None,
                };
                let scores = match scratch {
                    Some(mut scratch) => {
                        let tensors = blend_reusing(&mut scratch, a, b, alpha)?;
                        self.run(&self.build(tensors)?, None)?
                    }
                    None => {
                        let blended = blend(a.iter().map(|(n, t)| (n.as_str(), t)), |name| b.get(name), alpha)?;
                        self.run(&self.build(blended)?, None)?
                    }
                };
                Ok(EvalResult::from_examples(scores.loss, scores.correct))
            })
            .collect()
    }

    fn permutation_spec(&self, params: &ParamSet) -> Result<PermutationSpec> {
        check_shapes(&self.shapes, params, &self.architecture.describe())?;
        let spec = self.architecture.permutation_spec(params);
        spec.check(params)?;
        Ok(spec)
    }

    /// No: each forward pass already uses every core (candle's matmuls and element-wise kernels are
    /// multi-threaded, and its CPU thread pool serves one caller at a time, so passes run at once
    /// only queue for it).
    fn parallel_evaluations(&self) -> bool {
        false
    }

    /// The layers of [`Architecture::representation_layers`]; the last is the state the output
    /// head reads.
    fn n_hidden_layers(&self) -> usize {
        self.architecture.representation_layers()
    }

    fn hidden_activations(&self, point: &Prepared, layer: usize) -> Result<Features> {
        let layers = self.architecture.representation_layers();
        if layer >= layers {
            return Err(CoreError::InvalidArgument(format!(
                "{} has representations at layers 0..{}, not {layer}",
                self.architecture.describe(),
                layers - 1
            )));
        }
        let scores = self.run(&self.point(point)?.model, Some(layer))?;
        Features::new(
            self.n_examples,
            self.architecture.representation_width(),
            scores.features,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_return_to_eval_set_order() {
        // Scoring order: sequence 2 (one example), then sequence 0 (two tokens), then sequence 1.
        let (sequence_of, position) = eval_set_order(vec![2, 0, 0, 1]);
        assert_eq!(sequence_of, vec![0, 0, 1, 2]);
        let position = position.expect("the orders differ");
        assert_eq!(position, vec![1, 2, 3, 0]);
        let scored = Scores {
            loss: vec![2.0, 0.0, 0.5, 1.0],
            correct: vec![true, false, false, true],
            features: vec![20.0, 21.0, 0.0, 1.0, 5.0, 6.0, 10.0, 11.0],
        };
        let back = scored.reordered(&position, 2);
        assert_eq!(back.loss, vec![0.0, 0.5, 1.0, 2.0]);
        assert_eq!(back.correct, vec![false, false, true, true]);
        assert_eq!(back.features, vec![0.0, 1.0, 5.0, 6.0, 10.0, 11.0, 20.0, 21.0]);
        let without_features = Scores {
            loss: vec![1.0, 2.0],
            correct: vec![true, false],
            features: Vec::new(),
        };
        assert!(without_features.reordered(&[1, 0], 3).features.is_empty());
    }

    #[test]
    fn eval_set_order_is_kept_when_scoring_follows_it() {
        assert_eq!(eval_set_order(vec![0, 0, 1, 3]), (vec![0, 0, 1, 3], None));
    }
}
