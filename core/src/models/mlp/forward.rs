//! MLP forward passes on blocks of eval rows: for a prepared checkpoint, and for a point
//! theta(a) on the segment between two prepared checkpoints.

use std::cell::RefCell;
use std::ops::Range;

use lineage_loaders::ParamSet;
use rayon::prelude::*;

use super::kernels::{blend, blend_activate, copy_activate, dense, padded};
use super::spec::{LinearLayer, MlpSpec};
use crate::error::{CoreError, Result};
use crate::models::scoring::score_logits;

/// One Linear layer's parameters laid out for the kernels, zero-padded.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    /// Input width: the features for the first layer, else the padded width of the previous layer.
    pub n_in: usize,
    /// Output width, padded to a multiple of the kernel's lanes.
    pub n_out: usize,
    /// Transposed weight `[n_in, n_out]`, row-major, zero outside the real `[in, out]` block.
    pub wt: Vec<f32>,
    /// Bias `[n_out]` (zeros when the layer has none, and in the padding).
    pub b: Vec<f32>,
}

impl Dense {
    /// Reads the layer's tensors from `params` (shapes already checked); `first` tells whether the
    /// layer reads the (unpadded) input features.
    pub fn from_params(params: &ParamSet, layer: &LinearLayer, first: bool) -> Result<Self> {
        let read = |name: &str| -> Result<Vec<f32>> {
            let tensor = params
                .get(name)
                .ok_or_else(|| CoreError::Model(format!("`{name}` missing")))?;
            tensor
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))
        };
        let n_in = if first { layer.n_in } else { padded(layer.n_in) };
        let n_out = padded(layer.n_out);
        let w = read(&layer.weight_name())?;
        let mut wt = vec![0.0f32; n_in * n_out];
        for (o, row) in w.chunks_exact(layer.n_in).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                wt[i * n_out + o] = v;
            }
        }
        let mut b = vec![0.0f32; n_out];
        if layer.has_bias {
            b[..layer.n_out].copy_from_slice(&read(&layer.bias_name())?);
        }
        Ok(Self { n_in, n_out, wt, b })
    }
}

/// A prepared checkpoint: the first layer's output on the whole eval set and the other layers.
#[derive(Debug)]
pub(crate) struct MlpPoint {
    /// Id of the evaluator (eval set) it was prepared by.
    pub evaluator: u64,
    /// The architecture it was prepared for.
    pub spec: MlpSpec,
    /// `X·W1ᵀ + b1`, `[N, padded(layers[1])]` row-major, before the activation.
    pub first: Vec<f32>,
    /// Layers 2.. (empty for a single-layer model, whose `first` are the logits).
    pub rest: Vec<Dense>,
}

/// `X·Wᵀ + b` for all `n` rows of `inputs`, computed in parallel blocks of `block_rows`.
pub(crate) fn first_layer(layer: &Dense, inputs: &[f32], n: usize, block_rows: usize) -> Vec<f32> {
    let (d, w) = (layer.n_in, layer.n_out);
    let mut out = vec![0.0f32; n * w];
    out.par_chunks_mut(block_rows * w).enumerate().for_each(|(i, block)| {
        let rows = block.len() / w;
        let x = &inputs[i * block_rows * d..(i * block_rows + rows) * d];
        dense(rows, d, w, x, &layer.wt, &layer.b, None, block);
    });
    out
}

/// Per-thread buffers reused across forward passes (no allocation once warm).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Blended transposed weights of layers 2.., concatenated.
    weights: Vec<f32>,
    /// Blended biases of layers 2.., concatenated.
    biases: Vec<f32>,
    /// Activations (ping).
    h: Vec<f32>,
    /// Activations (pong).
    z: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are already in use).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Grows `buf` to at least `len` values and returns the first `len`.
fn take(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Evaluates rows `rows` of a prepared checkpoint, writing per-example loss and correctness.
pub(crate) fn endpoint_block(
    point: &MlpPoint,
    rows: Range<usize>,
    labels: &[u32],
    loss: &mut [f32],
    correct: &mut [bool],
    scratch: &mut Scratch,
) {
    let spec = &point.spec;
    let w1 = padded(spec.layers[1]);
    let r = rows.len();
    let src = &point.first[rows.start * w1..rows.end * w1];
    let h = take(&mut scratch.h, r * w1);
    if point.rest.is_empty() {
        h.copy_from_slice(src);
    } else {
        copy_activate(spec.activation, src, h);
    }
    let layers = point.rest.iter().map(|d| (d, d.wt.as_slice(), d.b.as_slice()));
    finish_block(spec, layers, r, labels, loss, correct, &mut scratch.h, &mut scratch.z);
}

/// Evaluates theta(alpha) = (1-alpha)·A + alpha·B on the eval rows `rows` (`labels` are every
/// row's), in blocks of `block_rows`; per-row results in order.
pub(crate) fn path_point(
    a: &MlpPoint,
    b: &MlpPoint,
    alpha: f64,
    labels: &[u32],
    rows: Range<usize>,
    block_rows: usize,
    scratch: &mut Scratch,
) -> (Vec<f32>, Vec<bool>) {
    let spec = &a.spec;
    let (wa, wb) = ((1.0 - alpha) as f32, alpha as f32);
    // Blend the weights of layers 2.. once for all blocks.
    let n_w: usize = a.rest.iter().map(|d| d.wt.len()).sum();
    let n_b: usize = a.rest.iter().map(|d| d.b.len()).sum();
    let weights = take(&mut scratch.weights, n_w);
    let biases = take(&mut scratch.biases, n_b);
    let (mut wo, mut bo) = (0, 0);
    for (da, db) in a.rest.iter().zip(&b.rest) {
        blend(wa, &da.wt, wb, &db.wt, &mut weights[wo..wo + da.wt.len()]);
        blend(wa, &da.b, wb, &db.b, &mut biases[bo..bo + da.b.len()]);
        wo += da.wt.len();
        bo += da.b.len();
    }
    let w1 = padded(spec.layers[1]);
    let mut loss = vec![0.0f32; rows.len()];
    let mut correct = vec![false; rows.len()];
    let Scratch { weights, biases, h, z } = scratch;
    for start in rows.clone().step_by(block_rows.max(1)) {
        let end = (start + block_rows).min(rows.end);
        let r = end - start;
        let (fa, fb) = (&a.first[start * w1..end * w1], &b.first[start * w1..end * w1]);
        let hb = take(h, r * w1);
        if a.rest.is_empty() {
            blend(wa, fa, wb, fb, hb);
        } else {
            blend_activate(spec.activation, wa, fa, wb, fb, hb);
        }
        let (mut wo, mut bo) = (0, 0);
        let layers = a.rest.iter().map(|d| {
            let layer = (d, &weights[wo..wo + d.wt.len()], &biases[bo..bo + d.b.len()]);
            wo += d.wt.len();
            bo += d.b.len();
            layer
        });
        finish_block(
            spec,
            layers,
            r,
            &labels[start..end],
            &mut loss[start - rows.start..end - rows.start],
            &mut correct[start - rows.start..end - rows.start],
            h,
            z,
        );
    }
    (loss, correct)
}

/// Runs layers 2.. (shapes from the [`Dense`], parameters from the slices) on the activated
/// first-layer block in `h` (`r` rows) and scores the logits.
#[allow(clippy::too_many_arguments)]
fn finish_block<'w>(
    spec: &MlpSpec,
    layers: impl ExactSizeIterator<Item = (&'w Dense, &'w [f32], &'w [f32])>,
    r: usize,
    labels: &[u32],
    loss: &mut [f32],
    correct: &mut [bool],
    h: &mut Vec<f32>,
    z: &mut Vec<f32>,
) {
    let n_layers = layers.len();
    let mut width = padded(spec.layers[1]);
    for (l, (shape, wt, b)) in layers.enumerate() {
        let zb = take(z, r * shape.n_out);
        let act = if l + 1 < n_layers { Some(spec.activation) } else { None };
        dense(r, shape.n_in, shape.n_out, &h[..r * shape.n_in], wt, b, act, zb);
        width = shape.n_out;
        std::mem::swap(h, z);
    }
    let classes = spec.n_classes();
    score_logits(&h[..r * width], width, classes, labels, loss, correct);
}

/// The post-activation output of hidden layer `layer` (0-based; `layer + 2 < spec.layers.len()`)
/// on rows `rows` of a prepared checkpoint, written unpadded to `out` (`[rows.len(), width]` with
/// `width = spec.layers[layer + 1]`).
pub(crate) fn hidden_block(point: &MlpPoint, rows: Range<usize>, layer: usize, out: &mut [f32], scratch: &mut Scratch) {
    let spec = &point.spec;
    let w1 = padded(spec.layers[1]);
    let r = rows.len();
    let Scratch { h, z, .. } = scratch;
    copy_activate(
        spec.activation,
        &point.first[rows.start * w1..rows.end * w1],
        take(h, r * w1),
    );
    let mut stride = w1;
    for d in &point.rest[..layer] {
        let zb = take(z, r * d.n_out);
        dense(
            r,
            d.n_in,
            d.n_out,
            &h[..r * d.n_in],
            &d.wt,
            &d.b,
            Some(spec.activation),
            zb,
        );
        stride = d.n_out;
        std::mem::swap(h, z);
    }
    let width = spec.layers[layer + 1];
    for (dst, src) in out.chunks_exact_mut(width).zip(h.chunks_exact(stride)) {
        dst.copy_from_slice(&src[..width]);
    }
}
