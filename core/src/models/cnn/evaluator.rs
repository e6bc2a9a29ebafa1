//! The [`Evaluator`] of the convolutional family: checkpoints become candle networks on the
//! device, images run in batches, theta(a) is blended tensor by tensor and its BatchNorm
//! statistics are then handled as `--bn` says ([`crate::models::cnn::batchnorm`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use lineage_loaders::ParamSet;

use crate::data::eval_data::EvalData;
use crate::data::features::Features;
use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::methods::interpolation::blend;
use crate::models::cnn::batchnorm::{BnMode, BnOptions, Moments, Pass, repair_affine};
use crate::models::cnn::{CnnSpec, Net};
use crate::models::evaluator::{EvalResult, Evaluator, Prepared, check_shapes};
use crate::models::scoring::score_logits;
use crate::names::Named;
use crate::pipeline::keys::hash_parts;

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 128;

/// Evaluates convolutional checkpoints of one architecture on images.
pub struct CnnEvaluator {
    /// Identifies this evaluator, so checkpoints prepared by another one are refused.
    id: u64,
    spec: CnnSpec,
    device: Device,
    /// Eval images in batches of [`EVAL_BATCH`], on the device.
    batches: Vec<Tensor>,
    labels: Vec<u32>,
    /// Reset images in batches of the options' size, on the device (empty without BatchNorm or
    /// with `interpolate`).
    reset: Vec<Tensor>,
    /// The BatchNorm mode (`interpolate` for a model without BatchNorm: nothing to do).
    mode: BnMode,
    /// Names and shapes every parameter set must have (those of the reference checkpoint).
    shapes: BTreeMap<String, Vec<usize>>,
    /// Representations the network gives ([`Net::representations`]).
    representations: usize,
    description: String,
}

/// A checkpoint prepared by a [`CnnEvaluator`].
struct Point {
    evaluator: u64,
    tensors: HashMap<String, Tensor>,
    net: Net,
    /// With `repair`: the moments of each BatchNorm's output on the reset set (eval mode).
    outputs: Vec<Moments>,
}

/// `[N, C, H, W]` f32 images of `data` (`[N, ...]`, reshaped to `shape` when given), checked
/// against the model's input channels.
fn images(data: &EvalData, shape: Option<[usize; 3]>, channels: usize) -> Result<Tensor> {
    let what = |problem: String| CoreError::data(&data.source, problem);
    if data.is_token_ids() {
        return Err(what(
            "a convolutional model needs images in `inputs`, not token ids".into(),
        ));
    }
    let dims: Vec<usize> = match shape {
        Some(s) => s.to_vec(),
        None => data.example_shape.clone(),
    };
    let [c, h, w] = dims[..] else {
        return Err(what(format!(
            "a convolutional model needs images [N, C, H, W]; the examples have shape {:?} (give \
             `input_shape` [C, H, W] in config.json for flattened images)",
            data.example_shape
        )));
    };
    if c * h * w != data.width() {
        return Err(what(format!(
            "input_shape {dims:?} does not hold the {} values of an example",
            data.width()
        )));
    }
    if c != channels {
        return Err(what(format!(
            "the images have {c} channels, the model reads {channels}"
        )));
    }
    data.inputs
        .reshape((data.len(), c, h, w))
        .map_err(|e| what(format!("`inputs`: {e}")))
}

/// `images` cut into batches of `size` on `device`.
fn batches(images: &Tensor, size: usize, device: &Device) -> candle_core::Result<Vec<Tensor>> {
    let n = images.dim(0)?;
    (0..n)
        .step_by(size.max(1))
        .map(|start| images.narrow(0, start, size.min(n - start))?.to_device(device))
        .collect()
}

impl CnnEvaluator {
    /// An evaluator of `spec` on `data` on `device`. `shape` is `config.json`'s `input_shape`;
    /// `reset` is the reset set (`None`: the eval set), used as `bn` says. Checks that
    /// `reference` builds the network and that the labels are below its classes.
    pub fn new(
        spec: CnnSpec,
        reference: &ParamSet,
        data: &EvalData,
        shape: Option<[usize; 3]>,
        bn: &BnOptions,
        reset: Option<&EvalData>,
        device: &Device,
    ) -> Result<Self> {
        let eval_images = images(data, shape, spec.in_channels())?;
        if data.min_classes() > spec.classes() {
            return Err(CoreError::data(
                &data.source,
                format!(
                    "label {} is beyond the model's {} classes",
                    data.min_classes() - 1,
                    spec.classes()
                ),
            ));
        }
        let on_device = |e: candle_core::Error| CoreError::Model(format!("images to {device:?}: {e}"));
        let batches_of = |images: &Tensor, size| batches(images, size, device).map_err(on_device);
        let (_, c, h, w) = eval_images.dims4().map_err(on_device)?;
        let mut description = format!("{} on {} images {c}x{h}x{w}", spec.describe(), data.len());
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let mut evaluator = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            batches: batches_of(&eval_images, EVAL_BATCH)?,
            labels: data.labels.clone(),
            spec,
            device: device.clone(),
            reset: Vec::new(),
            mode: BnMode::Interpolate,
            shapes: reference.shapes(),
            representations: 0,
            description: String::new(),
        };
        let net = evaluator.build(&evaluator.on_device(reference)?)?;
        evaluator.representations = net.representations();
        if !net.norms().is_empty() {
            evaluator.mode = bn.mode;
            description.push_str(&format!(", batchnorm {}", bn.mode.name()));
        }
        if evaluator.mode != BnMode::Interpolate {
            if bn.batch < 2 || bn.examples < 2 {
                return Err(CoreError::InvalidArgument(format!(
                    "BatchNorm reset needs at least 2 examples in batches of at least 2 (got {} in batches of {})",
                    bn.examples, bn.batch
                )));
            }
            let source = reset.unwrap_or(data);
            let reset_images = images(source, shape, evaluator.spec.in_channels())?;
            let n = bn.examples.min(source.len());
            let reset_images = reset_images.narrow(0, 0, n).map_err(on_device)?;
            let values = reset_images
                .flatten_all()
                .and_then(|v| v.to_vec1::<f32>())
                .map_err(on_device)?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let key = hash_parts(&[bytes]);
            description.push_str(&format!(
                " (statistics of {n} reset images {} in batches of {})",
                &key[..12],
                bn.batch
            ));
            evaluator.reset = batches_of(&reset_images, bn.batch)?;
        }
        if !device.is_cpu() {
            description.push_str(&format!(" ({device:?})"));
        }
        evaluator.description = description;
        Ok(evaluator)
    }

    /// The tensors of `params` on the device.
    fn on_device(&self, params: &ParamSet) -> Result<HashMap<String, Tensor>> {
        params
            .iter()
            .map(|(name, t)| {
                let t = t
                    .to_device(&self.device)
                    .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))?;
                Ok((name.to_string(), t))
            })
            .collect()
    }

    /// The network on `tensors`; a missing or misshapen tensor is an error naming it.
    fn build(&self, tensors: &HashMap<String, Tensor>) -> Result<Net> {
        self.spec
            .load(tensors)
            .map_err(|e| self.error("the checkpoint does not fit", e))
    }

    fn error(&self, what: &str, e: candle_core::Error) -> CoreError {
        CoreError::Model(format!("{}: {what}: {e}", self.spec.describe()))
    }

    fn point<'a>(&self, prepared: &'a Prepared) -> Result<&'a Point> {
        prepared
            .downcast_ref::<Point>()
            .filter(|p| p.evaluator == self.id)
            .ok_or_else(|| CoreError::InvalidArgument("checkpoint was prepared by a different evaluator".into()))
    }

    /// Runs `net` over the reset batches in `pass` (train or outputs) and averages the moments.
    fn moments(&self, net: &Net, train: bool) -> Result<Vec<Moments>> {
        let fresh: Vec<Moments> = net.norms().iter().map(|n| Moments::new(n.channels())).collect();
        let mut pass = if train {
            Pass::Train(fresh)
        } else {
            Pass::Outputs(fresh)
        };
        for batch in &self.reset {
            net.forward(batch, &mut pass)
                .map_err(|e| self.error("BatchNorm statistics pass", e))?;
        }
        let (Pass::Train(moments) | Pass::Outputs(moments)) = pass else {
            unreachable!("the pass was built as train or outputs");
        };
        Ok(moments.into_iter().map(Moments::average).collect())
    }

    /// `net` (the model at `alpha` between endpoints whose output moments are `ends`) with its
    /// BatchNorm statistics handled as the mode says.
    fn handle_statistics(&self, mut net: Net, ends: (&[Moments], &[Moments]), alpha: f64) -> Result<Net> {
        let fail = |e| self.error("BatchNorm statistics", e);
        if self.mode == BnMode::Repair {
            for (k, norm) in net.norms_mut().iter_mut().enumerate() {
                let (weight, bias) = repair_affine(&norm.weight, &ends.0[k], &ends.1[k], alpha);
                norm.set_affine(weight, bias).map_err(fail)?;
            }
        }
        if self.mode != BnMode::Interpolate {
            let moments = self.moments(&net, true)?;
            for (norm, m) in net.norms_mut().iter_mut().zip(&moments) {
                norm.set_statistics(m).map_err(fail)?;
            }
        }
        Ok(net)
    }

    /// The checkpoint's network as evaluated: its own statistics with `interpolate`, recomputed
    /// as at alpha 0 of a path with `reset` / `repair`.
    fn checkpoint_net(&self, p: &Point) -> Result<Net> {
        self.handle_statistics(p.net.clone(), (&p.outputs, &p.outputs), 0.0)
    }

    /// Loss and correctness of `net` (eval mode) on the eval set.
    fn run(&self, net: &Net) -> Result<EvalResult> {
        let n = self.labels.len();
        let (mut loss, mut correct) = (vec![0.0f32; n], vec![false; n]);
        let mut start = 0;
        for batch in &self.batches {
            let logits = net
                .forward(batch, &mut Pass::Eval)
                .and_then(|l| l.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
                .map_err(|e| self.error("forward pass", e))?;
            let rows = batch.dim(0).unwrap_or(0);
            let classes = self.spec.classes();
            let end = start + rows;
            score_logits(
                &logits,
                classes,
                classes,
                &self.labels[start..end],
                &mut loss[start..end],
                &mut correct[start..end],
            );
            start = end;
        }
        Ok(EvalResult::from_examples(loss, correct))
    }
}

impl Evaluator for CnnEvaluator {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn n_examples(&self) -> usize {
        self.labels.len()
    }

    fn prepare(&self, params: &ParamSet) -> Result<Prepared> {
        check_shapes(&self.shapes, params, &self.spec.describe())?;
        let tensors = self.on_device(params)?;
        let net = self.build(&tensors)?;
        let outputs = if self.mode == BnMode::Repair {
            self.moments(&net, false)?
        } else {
            Vec::new()
        };
        Ok(Prepared::new(Point {
            evaluator: self.id,
            tensors,
            net,
            outputs,
        }))
    }

    /// The checkpoint as stored with `interpolate`; with `reset` / `repair`, the point at alpha 0
    /// of any path from it (statistics recomputed), so that endpoints and interior agree.
    fn evaluate_prepared(&self, point: &Prepared) -> Result<EvalResult> {
        self.run(&self.checkpoint_net(self.point(point)?)?)
    }

    /// The inputs of the head's linear layers: 0 is the pooled convolutional features
    /// (flattened), then the output of each hidden linear layer after its ReLU (a VGG's
    /// classifier); a ResNet has only the first. The checkpoint's statistics are those of
    /// [`Evaluator::evaluate_prepared`].
    fn n_hidden_layers(&self) -> usize {
        self.representations
    }

    fn hidden_activations(&self, point: &Prepared, layer: usize) -> Result<Features> {
        if layer >= self.representations {
            return Err(CoreError::InvalidArgument(format!(
                "hidden layer {layer} does not exist: {} has {} (the pooled features, then the classifier's hidden layers)",
                self.spec.describe(),
                self.representations
            )));
        }
        let net = self.checkpoint_net(self.point(point)?)?;
        let mut values = Vec::new();
        let mut width = 0;
        for batch in &self.batches {
            let features = net
                .forward_to(batch, &mut Pass::Eval, layer)
                .and_then(|f| {
                    width = f.dim(1)?;
                    f.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
                })
                .map_err(|e| self.error("forward pass", e))?;
            values.extend(features);
        }
        Features::new(self.labels.len(), width, values)
    }

    fn evaluate_path_prepared(&self, a: &Prepared, b: &Prepared, alphas: &[f64]) -> Result<Vec<EvalResult>> {
        let (a, b) = (self.point(a)?, self.point(b)?);
        alphas
            .iter()
            .map(|&alpha| {
                let blended = blend(
                    a.tensors.iter().map(|(n, t)| (n.as_str(), t)),
                    |name| b.tensors.get(name),
                    alpha,
                )?;
                let net = self.handle_statistics(self.build(&blended)?, (&a.outputs, &b.outputs), alpha)?;
                self.run(&net)
            })
            .collect()
    }

    fn permutation_spec(&self, params: &ParamSet) -> Result<PermutationSpec> {
        check_shapes(&self.shapes, params, &self.spec.describe())?;
        let spec = self.spec.permutation_spec(params);
        spec.check(params)?;
        Ok(spec)
    }

    /// No: each forward pass already uses every core (candle's conv2d and matmul kernels are
    /// multi-threaded).
    fn parallel_evaluations(&self) -> bool {
        false
    }
}
