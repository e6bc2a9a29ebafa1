//! torchvision-style VGG and plain convolutional stacks: `features` (Conv2d, optional
//! BatchNorm2d, ReLU, and 2x2 max pools), `avgpool` (`AdaptiveAvgPool2d`), `classifier` (Linear
//! layers with ReLU (and Dropout) between them).
//!
//! Reference: torchvision `models/vgg.py` (`make_layers`, `VGG.forward`, the configurations
//! `cfgs` "A", "B", "D", "E" of vgg11/13/16/19).
//!
//! From the tensors: `features.{i}.weight` of rank 4 are the convs (any square kernel, padding
//! `k / 2`; 3x3 with padding 1 in torchvision), `features.{i+1}.running_mean` marks a BatchNorm;
//! each conv is followed by a ReLU (one index), and every index left between two convs by
//! `make_layers` is a `MaxPool2d(2, 2)`. The features end with one max pool (as every torchvision
//! configuration does) unless `config.json` lists the layers. The average pool's size is
//! `sqrt(in_features / channels)` of the first classifier layer (7 in torchvision, 1 for CIFAR
//! variants whose maps are 1x1 at the end).

use std::collections::HashMap;

use candle_core::Tensor;
use candle_nn::Linear;

use crate::methods::align::PermutationSpec;
use crate::models::cnn::batchnorm::{BatchNorm, Pass};
use crate::models::cnn::layers::{Conv, Tensors, adaptive_avg_pool, batch_norm, classifier, dims, linear};
use crate::models::cnn::permutations::Group;

/// One entry of the features: a conv (channels out) or a max pool, as in torchvision's `cfgs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Conv (+ BatchNorm) + ReLU with this many output channels.
    Conv(usize),
    /// `MaxPool2d(2, 2)`.
    Pool,
}

/// torchvision's configurations: `vgg11` "A", `vgg13` "B", `vgg16` "D", `vgg19` "E".
pub fn torchvision_layers(depth: usize) -> Option<Vec<Layer>> {
    let widths: &[usize] = match depth {
        11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13 => &[64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        16 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
        19 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
        ],
        _ => return None,
    };
    Some(
        widths
            .iter()
            .map(|&w| if w == 0 { Layer::Pool } else { Layer::Conv(w) })
            .collect(),
    )
}

/// The architecture of a VGG-style network, inferred from tensor names and shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VggSpec {
    /// Input channels.
    pub in_channels: usize,
    /// The features, in order.
    pub layers: Vec<Layer>,
    /// Index in `features` of each conv, and whether a BatchNorm follows it.
    pub convs: Vec<(usize, bool)>,
    /// Output size of the adaptive average pool.
    pub pool: usize,
    /// Indices of the classifier's Linear layers.
    pub classifier: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

impl VggSpec {
    /// The spec of the tensors `shapes`, or `None` when they do not look like a VGG (no rank-4
    /// `features.{i}.weight` and rank-2 `classifier.{j}.weight`); an inconsistent one is an error.
    pub fn infer(shapes: &HashMap<String, Vec<usize>>) -> Option<Result<Self, String>> {
        let indices = |module: &str, rank: usize| -> Vec<usize> {
            let mut found: Vec<usize> = shapes
                .iter()
                .filter(|(_, d)| d.len() == rank)
                .filter_map(|(name, _)| name.strip_prefix(module)?.strip_suffix(".weight")?.parse().ok())
                .collect();
            found.sort_unstable();
            found
        };
        let conv_indices = indices("features.", 4);
        let linear_indices = indices("classifier.", 2);
        if conv_indices.is_empty() || linear_indices.is_empty() {
            return None;
        }
        Some(Self::from_indices(shapes, &conv_indices, linear_indices))
    }

    fn from_indices(
        shapes: &HashMap<String, Vec<usize>>,
        conv_indices: &[usize],
        classifier: Vec<usize>,
    ) -> Result<Self, String> {
        let weight = |module: &str, i: usize| dims(shapes, &format!("{module}.{i}.weight")).unwrap_or(&[]).to_vec();
        let in_channels = weight("features", conv_indices[0])[1];
        let mut layers = Vec::new();
        let mut convs = Vec::new();
        let mut next = 0;
        for &i in conv_indices {
            if i < next {
                return Err(format!(
                    "`features.{i}` follows the previous conv too closely for Conv2d [BatchNorm2d] ReLU"
                ));
            }
            layers.extend(std::iter::repeat_n(Layer::Pool, i - next));
            let bn = shapes.contains_key(&format!("features.{}.running_mean", i + 1));
            layers.push(Layer::Conv(weight("features", i)[0]));
            convs.push((i, bn));
            next = i + if bn { 3 } else { 2 };
        }
        layers.push(Layer::Pool);
        let channels = weight("features", *conv_indices.last().unwrap_or(&0))[0];
        let first = weight("classifier", classifier[0]);
        let cells = first[1] / channels.max(1);
        let pool = (1..=cells)
            .find(|s| s * s == cells)
            .filter(|_| cells * channels == first[1]);
        let pool = pool.ok_or_else(|| {
            format!(
                "`classifier.{}.weight` reads {} features, not {channels} channels times a square pool",
                classifier[0], first[1]
            )
        })?;
        let classes = weight("classifier", *classifier.last().unwrap_or(&0))[0];
        Ok(Self {
            in_channels,
            layers,
            convs,
            pool,
            classifier,
            classes,
        })
    }

    /// Replaces the layers by those `config.json` lists, which must agree with the tensors on the
    /// convs and the pools between them (the trailing pools are the config's).
    pub fn with_layers(mut self, layers: Vec<Layer>) -> Result<Self, String> {
        let trim = |l: &[Layer]| {
            let end = l.iter().rposition(|x| *x != Layer::Pool).map_or(0, |p| p + 1);
            l[..end].to_vec()
        };
        if trim(&layers) != trim(&self.layers) {
            return Err(format!(
                "the layers {} do not match the checkpoint's features {}",
                show(&layers),
                show(&self.layers)
            ));
        }
        self.layers = layers;
        Ok(self)
    }

    /// Whether the convs have BatchNorm (all or none: a mix is reported by `describe`).
    pub fn batch_norm(&self) -> bool {
        self.convs.iter().any(|&(_, bn)| bn)
    }

    /// One line, e.g. `vgg [4, M, 8, M] bn (avgpool 1, 1 linear, 10 classes)`.
    pub fn describe(&self) -> String {
        format!(
            "vgg {}{} (avgpool {}, {} linear, {} classes)",
            show(&self.layers),
            if self.batch_norm() { " bn" } else { "" },
            self.pool,
            self.classifier.len(),
            self.classes
        )
    }

    /// The permutation symmetries: the output channels of every conv (its weight rows and bias,
    /// its BatchNorm, the next conv's input), and the units of every hidden classifier layer. The
    /// last conv's channels are permuted only when the average pool is 1x1 (the classifier then
    /// reads one value per channel). BatchNorm running statistics follow their channels without
    /// entering the matching.
    pub fn permutation_spec(&self, shapes: &HashMap<String, Vec<usize>>) -> PermutationSpec {
        let mut groups = Vec::new();
        let layer_names: Vec<String> = self
            .convs
            .iter()
            .map(|(i, _)| format!("features.{i}"))
            .chain(self.classifier.iter().map(|j| format!("classifier.{j}")))
            .collect();
        for (k, pair) in layer_names.windows(2).enumerate() {
            let last_conv = k + 1 == self.convs.len();
            if last_conv && self.pool != 1 {
                continue;
            }
            let size = dims(shapes, &format!("{}.weight", pair[0])).map_or(0, |d| d[0]);
            let mut g = Group::new(&format!("P_{}", pair[0]), size);
            let bn = self
                .convs
                .get(k)
                .filter(|c| c.1)
                .map(|(i, _)| format!("features.{}", i + 1));
            g.output(shapes, &pair[0], bn.as_deref());
            g.input(&pair[1]);
            groups.push(g.build());
        }
        PermutationSpec { groups }
    }
}

/// torchvision's notation: `[64, M, 128, ...]`.
fn show(layers: &[Layer]) -> String {
    let items: Vec<String> = layers
        .iter()
        .map(|l| match l {
            Layer::Conv(c) => c.to_string(),
            Layer::Pool => "M".into(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

#[derive(Debug, Clone)]
enum Op {
    /// Conv, index of its BatchNorm, then ReLU.
    Conv(Conv, Option<usize>),
    Pool,
}

/// A VGG built on one checkpoint's tensors.
#[derive(Debug, Clone)]
pub struct Vgg {
    features: Vec<Op>,
    pool: usize,
    classifier: Vec<Linear>,
    /// Every BatchNorm, indexed by the convs.
    pub norms: Vec<BatchNorm>,
}

impl Vgg {
    /// Builds the VGG of `spec` on `tensors`.
    pub fn load(spec: &VggSpec, tensors: &Tensors) -> candle_core::Result<Self> {
        let mut norms = Vec::new();
        let mut convs = spec.convs.iter();
        let mut features = Vec::new();
        for layer in &spec.layers {
            match layer {
                Layer::Pool => features.push(Op::Pool),
                Layer::Conv(_) => {
                    let &(i, bn) = convs
                        .next()
                        .ok_or_else(|| candle_core::Error::Msg("more convs than tensors".into()))?;
                    let norm = if bn {
                        norms.push(batch_norm(tensors, &format!("features.{}", i + 1))?);
                        Some(norms.len() - 1)
                    } else {
                        None
                    };
                    features.push(Op::Conv(Conv::load(tensors, &format!("features.{i}"), 1)?, norm));
                }
            }
        }
        let classifier = spec
            .classifier
            .iter()
            .map(|j| linear(tensors, &format!("classifier.{j}")))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            features,
            pool: spec.pool,
            classifier,
            norms,
        })
    }

    /// Number of linear layers of the classifier.
    pub fn head_layers(&self) -> usize {
        self.classifier.len()
    }

    /// Logits of images `x` (`[N, C, H, W]`).
    pub fn forward(&self, x: &Tensor, pass: &mut Pass) -> candle_core::Result<Tensor> {
        self.forward_to(x, pass, self.classifier.len())
    }

    /// The input of classifier layer `layer` (`layer = 0`: the pooled features, flattened; a
    /// hidden layer's output after its ReLU; the number of layers: the logits).
    pub fn forward_to(&self, x: &Tensor, pass: &mut Pass, layer: usize) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for op in &self.features {
            x = match op {
                Op::Conv(conv, norm) => {
                    let y = conv.forward(&x)?;
                    match norm {
                        Some(n) => self.norms[*n].forward(*n, &y, pass)?,
                        None => y,
                    }
                    .relu()?
                }
                Op::Pool => x.max_pool2d_with_stride(2, 2)?,
            };
        }
        let pooled = adaptive_avg_pool(&x, self.pool)?.flatten_from(1)?;
        classifier(&self.classifier, pooled, layer)
    }
}
