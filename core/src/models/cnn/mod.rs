//! Convolutional networks on images, run with candle's conv2d on the CPU or a CUDA device:
//! torchvision-style ResNets ([`resnet`]: BasicBlock and Bottleneck, ImageNet and CIFAR stems)
//! and VGG-style stacks with or without BatchNorm ([`vgg`], also the plain conv / pool / linear
//! CNNs written in its `features` / `classifier` layout), with the BatchNorm handling of
//! interpolated models chosen by `--bn` ([`batchnorm`]).
//!
//! The architecture comes from the tensor names and shapes (torchvision / timm naming, see each
//! model's module), checked against `config.json` when it names one:
//!
//! | `config.json` | meaning |
//! |---|---|
//! | `{"arch": "resnet", "depth": 20, "width": 16, "num_classes": 10}` | a ResNet; each key optional, checked when given (`depth` counts the main-path layers: 2 per BasicBlock or 3 per Bottleneck, + 2) |
//! | `{"arch": "resnet18"}` (`resnet34/50/101/152`, ImageNet stem; `resnet20/32/44/56/110`, CIFAR stem) | the named layout |
//! | `{"arch": "vgg", "layers": [64, "M", 128, "M"], "batch_norm": true, "num_classes": 10}` | a VGG / plain CNN; `layers` as torchvision's `cfgs` (needed only when the features do not end with exactly one max pool) |
//! | `{"arch": "vgg11_bn"}` (`vgg11/13/16/19[_bn]`) | torchvision's configurations |
//! | `{"arch": "cnn", ...}` | the same as `vgg` |
//!
//! Any of them may add `"input_shape": [C, H, W]` for eval data whose images are stored flattened
//! (`[N, C*H*W]`, e.g. Parquet lists); otherwise `inputs` must be `[N, C, H, W]` (any numeric
//! dtype, used as f32 as they are: normalisation is the user's). Without `config.json` (or
//! without `arch`), `conv1.weight` + `layer1.0.conv1.weight` make a ResNet and rank-4
//! `features.{i}.weight` + `classifier.{j}.weight` a VGG.

pub mod batchnorm;
mod evaluator;
pub mod im2col;
pub mod layers;
mod permutations;
pub mod resnet;
pub mod vgg;

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use lineage_loaders::ParamSet;
use serde_json::Value;

pub use batchnorm::{BnMode, BnOptions};
pub use evaluator::CnnEvaluator;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::cnn::batchnorm::{BatchNorm, Pass};
use crate::models::cnn::layers::Tensors;
use crate::models::cnn::resnet::{BlockKind, ResNet, ResNetSpec};
use crate::models::cnn::vgg::{Layer, Vgg, VggSpec, torchvision_layers};

/// The architecture of a convolutional checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CnnSpec {
    /// A ResNet.
    ResNet(ResNetSpec),
    /// A VGG or plain CNN.
    Vgg(VggSpec),
}

/// Whether `arch` (a `config.json` value) names a convolutional architecture.
pub fn is_cnn_arch(arch: &str) -> bool {
    arch.starts_with("resnet") || arch.starts_with("vgg") || arch == "cnn"
}

impl CnnSpec {
    /// The architecture the tensor names of `params` show, or `None` when they are not those of a
    /// ResNet or VGG; a ResNet or VGG whose tensors do not fit together is an error.
    pub fn infer(params: &ParamSet) -> Option<Result<Self>> {
        let shapes: HashMap<String, Vec<usize>> = params.shapes().into_iter().collect();
        let model = |e: String| CoreError::Model(format!("convolutional checkpoint: {e}"));
        if let Some(spec) = ResNetSpec::infer(&shapes) {
            return Some(spec.map(Self::ResNet).map_err(model));
        }
        VggSpec::infer(&shapes).map(|spec| spec.map(Self::Vgg).map_err(model))
    }

    /// The architecture of `params` checked against the `config.json` at `path` (parsed as
    /// `value`, whose `arch` satisfies [`is_cnn_arch`]).
    pub fn from_config_json(value: &Value, path: &Path, params: &ParamSet) -> Result<Self> {
        let arch = value.get("arch").and_then(Value::as_str).unwrap_or_default();
        let bad = |problem: String| CoreError::config(path, problem);
        let spec = Self::infer(params).ok_or_else(|| {
            bad(format!(
                "arch `{arch}`, but the checkpoint has no ResNet or VGG tensor names"
            ))
        })??;
        let expect = |key: &str, found: usize| -> Result<()> {
            match value.get(key).map(Value::as_u64) {
                None => Ok(()),
                Some(Some(n)) if n as usize == found => Ok(()),
                Some(Some(n)) => Err(bad(format!("`{key}` is {n} but the checkpoint has {found}"))),
                Some(None) => Err(bad(format!("`{key}` must be a non-negative integer"))),
            }
        };
        let spec = match (spec, arch) {
            (Self::ResNet(r), "resnet") => Self::ResNet(r),
            (Self::ResNet(r), named) if named.starts_with("resnet") => {
                let depth: usize = named["resnet".len()..]
                    .parse()
                    .map_err(|_| bad(format!("unknown arch `{named}`")))?;
                let imagenet = [18, 34, 50, 101, 152].contains(&depth);
                let kind = if depth >= 50 && imagenet {
                    BlockKind::Bottleneck
                } else {
                    BlockKind::Basic
                };
                if !imagenet && ![20, 32, 44, 56, 110].contains(&depth) {
                    return Err(bad(format!("unknown arch `{named}`")));
                }
                if r.imagenet_stem != imagenet || r.kind != kind || r.depth() != depth {
                    return Err(bad(format!("arch `{named}`, but the checkpoint is a {}", r.describe())));
                }
                Self::ResNet(r)
            }
            (Self::Vgg(v), "vgg" | "cnn") => match value.get("layers") {
                Some(layers) => Self::Vgg(v.with_layers(parse_layers(layers).map_err(bad)?).map_err(bad)?),
                None => Self::Vgg(v),
            },
            (Self::Vgg(v), named) if named.starts_with("vgg") => {
                let (depth, bn) = match named.strip_suffix("_bn") {
                    Some(d) => (d, true),
                    None => (named, false),
                };
                let layers = depth["vgg".len()..]
                    .parse()
                    .ok()
                    .and_then(torchvision_layers)
                    .ok_or_else(|| bad(format!("unknown arch `{named}`")))?;
                if v.batch_norm() != bn {
                    return Err(bad(format!("arch `{named}`, but the checkpoint is a {}", v.describe())));
                }
                Self::Vgg(v.with_layers(layers).map_err(bad)?)
            }
            (other, _) => {
                return Err(bad(format!(
                    "arch `{arch}`, but the checkpoint is a {}",
                    other.describe()
                )));
            }
        };
        match &spec {
            Self::ResNet(r) => {
                expect("depth", r.depth())?;
                expect("width", r.width)?;
            }
            Self::Vgg(v) => {
                if let Some(bn) = value.get("batch_norm")
                    && bn.as_bool() != Some(v.batch_norm())
                {
                    return Err(bad(format!(
                        "`batch_norm` is {bn} but the checkpoint is a {}",
                        v.describe()
                    )));
                }
            }
        }
        expect("num_classes", spec.classes())?;
        Ok(spec)
    }

    /// One line: architecture and sizes.
    pub fn describe(&self) -> String {
        match self {
            Self::ResNet(r) => r.describe(),
            Self::Vgg(v) => v.describe(),
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match self {
            Self::ResNet(r) => r.in_channels,
            Self::Vgg(v) => v.in_channels,
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            Self::ResNet(r) => r.classes,
            Self::Vgg(v) => v.classes,
        }
    }

    /// The network on `tensors`.
    pub fn load(&self, tensors: &Tensors) -> candle_core::Result<Net> {
        Ok(match self {
            Self::ResNet(r) => Net::ResNet(ResNet::load(r, tensors)?),
            Self::Vgg(v) => Net::Vgg(Vgg::load(v, tensors)?),
        })
    }

    /// The permutation symmetries for `params`.
    pub fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        let shapes: HashMap<String, Vec<usize>> = params.shapes().into_iter().collect();
        match self {
            Self::ResNet(r) => r.permutation_spec(&shapes),
            Self::Vgg(v) => v.permutation_spec(&shapes),
        }
    }
}

/// `config.json`'s `layers`: numbers (conv widths) and `"M"` (max pools).
fn parse_layers(value: &Value) -> std::result::Result<Vec<Layer>, String> {
    let items = value.as_array().ok_or("`layers` must be a list of widths and \"M\"")?;
    items
        .iter()
        .map(|item| match (item.as_u64(), item.as_str()) {
            (Some(w), _) if w > 0 => Ok(Layer::Conv(w as usize)),
            (_, Some("M")) => Ok(Layer::Pool),
            _ => Err(format!("`layers` entry {item} is neither a positive width nor \"M\"")),
        })
        .collect()
}

/// `config.json`'s optional `input_shape` `[C, H, W]`.
pub fn input_shape(value: &Value, path: &Path) -> Result<Option<[usize; 3]>> {
    let Some(shape) = value.get("input_shape") else {
        return Ok(None);
    };
    let dims: Option<Vec<usize>> = shape
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d.as_u64().map(|d| d as usize).filter(|&d| d > 0))
                .collect()
        })
        .unwrap_or(None);
    match dims.as_deref() {
        Some(&[c, h, w]) => Ok(Some([c, h, w])),
        _ => Err(CoreError::config(
            path,
            format!("`input_shape` {shape} is not [C, H, W]"),
        )),
    }
}

/// A convolutional network built on one parameter set.
#[derive(Debug, Clone)]
pub enum Net {
    /// A ResNet.
    ResNet(ResNet),
    /// A VGG or plain CNN.
    Vgg(Vgg),
}

impl Net {
    /// Logits of images `x` (`[N, C, H, W]`), BatchNorms behaving as `pass` says.
    pub fn forward(&self, x: &Tensor, pass: &mut Pass) -> candle_core::Result<Tensor> {
        match self {
            Self::ResNet(r) => r.forward(x, pass),
            Self::Vgg(v) => v.forward(x, pass),
        }
    }

    /// Number of representations [`Net::forward_to`] gives: the inputs of the head's linear layers
    /// (the pooled features, then each hidden linear layer's output after its ReLU).
    pub fn representations(&self) -> usize {
        match self {
            Self::ResNet(_) => 1,
            Self::Vgg(v) => v.head_layers(),
        }
    }

    /// Representation `layer` (below [`Net::representations`]) of images `x`, `[N, width]`.
    pub fn forward_to(&self, x: &Tensor, pass: &mut Pass, layer: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::ResNet(r) => r.forward_to(x, pass, layer),
            Self::Vgg(v) => v.forward_to(x, pass, layer),
        }
    }

    /// Every BatchNorm (the indices of [`Pass`]'s moments).
    pub fn norms(&self) -> &[BatchNorm] {
        match self {
            Self::ResNet(r) => &r.norms,
            Self::Vgg(v) => &v.norms,
        }
    }

    /// Every BatchNorm, to change.
    pub fn norms_mut(&mut self) -> &mut [BatchNorm] {
        match self {
            Self::ResNet(r) => &mut r.norms,
            Self::Vgg(v) => &mut v.norms,
        }
    }
}
