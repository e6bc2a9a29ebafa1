//! torchvision-style ResNets: `BasicBlock` and `Bottleneck` residual stages after an ImageNet stem
//! (7x7 conv stride 2, max pool) or the CIFAR stem of He et al. 2016 (3x3 conv, ResNet-20/32/56).
//!
//! Reference: torchvision `models/resnet.py` (`BasicBlock.forward`, `Bottleneck.forward` with the
//! stride on the 3x3 conv ("ResNet v1.5"), `ResNet._forward_impl`), and for the CIFAR layout the
//! widely used `resnet20` of akamaster/pytorch_resnet_cifar10 with its option-B (projection)
//! shortcut.
//!
//! Tensor names accepted: `conv1`, `bn1`, `layer{s}.{b}.conv{1,2,3}`, `layer{s}.{b}.bn{1,2,3}`,
//! the projection shortcut as `layer{s}.{b}.downsample.{0,1}` (torchvision) or
//! `layer{s}.{b}.shortcut.{0,1}` (1x1 conv then BatchNorm), and the head `fc` or `linear`. The
//! stem is told by `conv1`'s kernel: 7 = ImageNet (stride 2, padding 3, then `MaxPool2d(3, 2, 1)`),
//! 3 = CIFAR (stride 1, no pool). The first block of every stage after the first has stride 2.
//! Option-A shortcuts (zero-padded identity, no tensors) are not supported.

use std::collections::HashMap;

use candle_core::{Module, Tensor};
use candle_nn::Linear;

use crate::methods::align::PermutationSpec;
use crate::models::cnn::batchnorm::{BatchNorm, Pass};
use crate::models::cnn::layers::{Conv, Tensors, adaptive_avg_pool, batch_norm, dims, linear, max_pool_nonnegative};
use crate::models::cnn::permutations::Group;

/// Block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convs.
    Basic,
    /// 1x1, 3x3, 1x1 convs (expansion 4 in torchvision).
    Bottleneck,
}

/// One residual block, as found in the tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    /// Tensor name prefix, e.g. `layer2.0`.
    pub prefix: String,
    /// Stride of the block (of its 3x3 conv and its projection).
    pub stride: usize,
    /// Projection shortcut prefix (`layer2.0.downsample`), if any.
    pub projection: Option<String>,
}

/// The architecture of a ResNet, inferred from tensor names and shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetSpec {
    /// Whether the stem is the ImageNet one (7x7 stride 2 and max pool) rather than CIFAR's.
    pub imagenet_stem: bool,
    /// Input channels.
    pub in_channels: usize,
    /// Stem width (`conv1` output channels).
    pub width: usize,
    /// Block type.
    pub kind: BlockKind,
    /// Blocks of each stage.
    pub stages: Vec<Vec<BlockSpec>>,
    /// Head name (`fc` or `linear`).
    pub head: String,
    /// Number of classes.
    pub classes: usize,
}

impl ResNetSpec {
    /// The spec of the tensors `shapes`, or `None` when they do not look like a ResNet (no
    /// `conv1.weight` and `layer1.0.conv1.weight`); an inconsistent ResNet is an error.
    pub fn infer(shapes: &HashMap<String, Vec<usize>>) -> Option<Result<Self, String>> {
        let stem = dims(shapes, "conv1.weight")?;
        dims(shapes, "layer1.0.conv1.weight")?;
        Some(Self::infer_resnet(shapes, stem))
    }

    fn infer_resnet(shapes: &HashMap<String, Vec<usize>>, stem: &[usize]) -> Result<Self, String> {
        let [width, in_channels, k, _] = stem[..] else {
            return Err(format!("`conv1.weight` has shape {stem:?}, expected [out, in, k, k]"));
        };
        let imagenet_stem = match k {
            7 => true,
            3 => false,
            _ => {
                return Err(format!(
                    "`conv1.weight` has a {k}x{k} kernel: expected 7 (ImageNet stem) or 3 (CIFAR stem)"
                ));
            }
        };
        let kind = if shapes.contains_key("layer1.0.conv3.weight") {
            BlockKind::Bottleneck
        } else {
            BlockKind::Basic
        };
        let mut stages = Vec::new();
        for s in 1.. {
            let mut blocks = Vec::new();
            for b in 0.. {
                let prefix = format!("layer{s}.{b}");
                if !shapes.contains_key(&format!("{prefix}.conv1.weight")) {
                    break;
                }
                let projection = ["downsample", "shortcut"]
                    .iter()
                    .map(|n| format!("{prefix}.{n}"))
                    .find(|p| shapes.contains_key(&format!("{p}.0.weight")));
                let stride = if s > 1 && b == 0 { 2 } else { 1 };
                blocks.push(BlockSpec {
                    prefix,
                    stride,
                    projection,
                });
            }
            if blocks.is_empty() {
                break;
            }
            stages.push(blocks);
        }
        let head = ["fc", "linear"]
            .into_iter()
            .find(|h| shapes.contains_key(&format!("{h}.weight")))
            .ok_or("no head: expected `fc.weight` or `linear.weight`")?;
        let classes = dims(shapes, &format!("{head}.weight")).map_or(0, |d| d[0]);
        let spec = Self {
            imagenet_stem,
            in_channels,
            width,
            kind,
            stages,
            head: head.to_string(),
            classes,
        };
        spec.check_shortcuts(shapes)?;
        Ok(spec)
    }

    /// Blocks whose input and output differ in shape need a projection shortcut.
    fn check_shortcuts(&self, shapes: &HashMap<String, Vec<usize>>) -> Result<(), String> {
        let mut channels = self.width;
        for block in self.stages.iter().flatten() {
            let last = if self.kind == BlockKind::Basic {
                "conv2"
            } else {
                "conv3"
            };
            let out = dims(shapes, &format!("{}.{last}.weight", block.prefix))
                .and_then(|d| d.first().copied())
                .ok_or_else(|| format!("missing `{}.{last}.weight`", block.prefix))?;
            if (out != channels || block.stride != 1) && block.projection.is_none() {
                return Err(format!(
                    "`{}` changes the shape ({channels} -> {out} channels, stride {}) without a projection \
                     shortcut (`downsample.0` / `shortcut.0`): option-A (zero-padding) shortcuts are not supported",
                    block.prefix, block.stride
                ));
            }
            channels = out;
        }
        Ok(())
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }

    /// Depth as torchvision and He et al. count it: weighted layers on the main path.
    pub fn depth(&self) -> usize {
        let per_block = if self.kind == BlockKind::Basic { 2 } else { 3 };
        per_block * self.blocks() + 2
    }

    /// One line, e.g. `resnet20 (cifar stem, basic blocks 3-3-3, width 8, 10 classes)`.
    pub fn describe(&self) -> String {
        let blocks: Vec<String> = self.stages.iter().map(|s| s.len().to_string()).collect();
        format!(
            "resnet{} ({} stem, {} blocks {}, width {}, {} classes)",
            self.depth(),
            if self.imagenet_stem { "imagenet" } else { "cifar" },
            if self.kind == BlockKind::Basic {
                "basic"
            } else {
                "bottleneck"
            },
            blocks.join("-"),
            self.width,
            self.classes
        )
    }

    /// The permutation symmetries (Git Re-Basin's ResNet spec): one permutation per residual
    /// stream, i.e. of the channels that the stem or a block with a projection writes and every
    /// following identity block adds to (their last conv and BatchNorm, the next blocks' first conv
    /// input, the projection, the head's columns), and one per inner conv output of each block.
    /// BatchNorm running statistics follow their channels without entering the matching.
    pub fn permutation_spec(&self, shapes: &HashMap<String, Vec<usize>>) -> PermutationSpec {
        let mut groups = Vec::new();
        let mut stream = Group::new("P_stem", self.width);
        stream.output(shapes, "conv1", Some("bn1"));
        let inner: &[&str] = if self.kind == BlockKind::Basic {
            &["conv1", "conv2"]
        } else {
            &["conv1", "conv2", "conv3"]
        };
        for block in self.stages.iter().flatten() {
            let p = &block.prefix;
            stream.input(&format!("{p}.conv1"));
            if let Some(proj) = &block.projection {
                stream.input(&format!("{proj}.0"));
                groups.push(std::mem::replace(
                    &mut stream,
                    Group::new(&format!("P_{p}"), channels(shapes, &format!("{proj}.0"))),
                ));
                stream.output(shapes, &format!("{proj}.0"), Some(&format!("{proj}.1")));
            }
            for pair in inner.windows(2) {
                let conv = format!("{p}.{}", pair[0]);
                let mut g = Group::new(&format!("P_{conv}"), channels(shapes, &conv));
                g.output(shapes, &conv, Some(&conv.replace(".conv", ".bn")));
                g.input(&format!("{p}.{}", pair[1]));
                groups.push(g);
            }
            let last = format!("{p}.{}", inner[inner.len() - 1]);
            stream.output(shapes, &last, Some(&last.replace(".conv", ".bn")));
        }
        stream.input(&self.head);
        groups.push(stream);
        PermutationSpec {
            groups: groups.into_iter().map(Group::build).collect(),
        }
    }
}

/// Output channels of conv `prefix`.
fn channels(shapes: &HashMap<String, Vec<usize>>, conv: &str) -> usize {
    dims(shapes, &format!("{conv}.weight")).map_or(0, |d| d[0])
}

/// One residual block's layers.
#[derive(Debug, Clone)]
struct Block {
    /// (conv, index of its BatchNorm) on the main path.
    convs: Vec<(Conv, usize)>,
    projection: Option<(Conv, usize)>,
}

/// A ResNet built on one checkpoint's tensors.
#[derive(Debug, Clone)]
pub struct ResNet {
    stem: (Conv, usize),
    imagenet_stem: bool,
    blocks: Vec<Block>,
    head: Linear,
    /// Every BatchNorm, indexed by the layers.
    pub norms: Vec<BatchNorm>,
}

impl ResNet {
    /// Builds the ResNet of `spec` on `tensors`.
    pub fn load(spec: &ResNetSpec, tensors: &Tensors) -> candle_core::Result<Self> {
        let mut norms = Vec::new();
        let mut conv_bn = |conv: &str, bn: &str, stride: usize| -> candle_core::Result<(Conv, usize)> {
            norms.push(batch_norm(tensors, bn)?);
            Ok((Conv::load(tensors, conv, stride)?, norms.len() - 1))
        };
        let stem = conv_bn("conv1", "bn1", if spec.imagenet_stem { 2 } else { 1 })?;
        let n_convs = if spec.kind == BlockKind::Basic { 2 } else { 3 };
        // Basic: stride on conv1 (its first 3x3); Bottleneck v1.5: on conv2 (the 3x3).
        let strided = if spec.kind == BlockKind::Basic { 1 } else { 2 };
        let mut blocks = Vec::new();
        for block in spec.stages.iter().flatten() {
            let p = &block.prefix;
            let convs = (1..=n_convs)
                .map(|i| {
                    let stride = if i == strided { block.stride } else { 1 };
                    conv_bn(&format!("{p}.conv{i}"), &format!("{p}.bn{i}"), stride)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let projection = match &block.projection {
                Some(proj) => Some(conv_bn(&format!("{proj}.0"), &format!("{proj}.1"), block.stride)?),
                None => None,
            };
            blocks.push(Block { convs, projection });
        }
        Ok(Self {
            stem,
            imagenet_stem: spec.imagenet_stem,
            blocks,
            head: linear(tensors, &spec.head)?,
            norms,
        })
    }

    fn conv_bn(&self, (conv, bn): &(Conv, usize), x: &Tensor, pass: &mut Pass) -> candle_core::Result<Tensor> {
        self.norms[*bn].forward(*bn, &conv.forward(x)?, pass)
    }

    /// Logits of images `x` (`[N, C, H, W]`).
    pub fn forward(&self, x: &Tensor, pass: &mut Pass) -> candle_core::Result<Tensor> {
        self.forward_to(x, pass, 1)
    }

    /// The pooled features (`layer = 0`, flattened: the input of `fc`) or the logits (`layer = 1`).
    pub fn forward_to(&self, x: &Tensor, pass: &mut Pass, layer: usize) -> candle_core::Result<Tensor> {
        let mut x = self.conv_bn(&self.stem, x, pass)?.relu()?;
        if self.imagenet_stem {
            x = max_pool_nonnegative(&x, 3, 2, 1)?;
        }
        for block in &self.blocks {
            let mut out = x.clone();
            for (i, layer) in block.convs.iter().enumerate() {
                out = self.conv_bn(layer, &out, pass)?;
                if i + 1 < block.convs.len() {
                    out = out.relu()?;
                }
            }
            let identity = match &block.projection {
                Some(layer) => self.conv_bn(layer, &x, pass)?,
                None => x,
            };
            x = (out + identity)?.relu()?;
        }
        let pooled = adaptive_avg_pool(&x, 1)?.flatten_from(1)?;
        if layer == 0 {
            return Ok(pooled);
        }
        self.head.forward(&pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Adds the four tensors of BatchNorm `p` of `c` channels.
    fn bn(add: &mut dyn FnMut(String, &[usize]), p: &str, c: usize) {
        for s in ["weight", "bias", "running_mean", "running_var"] {
            add(format!("{p}.{s}"), &[c]);
        }
    }

    /// The tensors of a torchvision Bottleneck ResNet with an ImageNet stem of `width` channels,
    /// one block per stage (each with a `downsample`), 3 input channels, 5 classes.
    fn bottleneck_tensors(width: usize, stages: usize) -> Tensors {
        let mut t = Tensors::new();
        let mut add = |name: String, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let var = name.ends_with("running_var");
            let values: Vec<f32> = (0..n)
                .map(|i| {
                    if var {
                        1.0
                    } else {
                        ((i * 7919 % 23) as f32 - 11.0) / 40.0
                    }
                })
                .collect();
            t.insert(name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap());
        };
        add("conv1.weight".into(), &[width, 3, 7, 7]);
        bn(&mut add, "bn1", width);
        let mut inplanes = width;
        for s in 1..=stages {
            let planes = width << (s - 1);
            let p = format!("layer{s}.0");
            add(format!("{p}.conv1.weight"), &[planes, inplanes, 1, 1]);
            bn(&mut add, &format!("{p}.bn1"), planes);
            add(format!("{p}.conv2.weight"), &[planes, planes, 3, 3]);
            bn(&mut add, &format!("{p}.bn2"), planes);
            add(format!("{p}.conv3.weight"), &[4 * planes, planes, 1, 1]);
            bn(&mut add, &format!("{p}.bn3"), 4 * planes);
            add(format!("{p}.downsample.0.weight"), &[4 * planes, inplanes, 1, 1]);
            bn(&mut add, &format!("{p}.downsample.1"), 4 * planes);
            inplanes = 4 * planes;
        }
        add("fc.weight".into(), &[5, inplanes]);
        add("fc.bias".into(), &[5]);
        t
    }

    fn shapes(t: &Tensors) -> HashMap<String, Vec<usize>> {
        t.iter().map(|(n, x)| (n.clone(), x.dims().to_vec())).collect()
    }

    #[test]
    fn a_bottleneck_resnet_with_an_imagenet_stem_is_recognised_and_runs() {
        let t = bottleneck_tensors(4, 4);
        let spec = ResNetSpec::infer(&shapes(&t)).unwrap().unwrap();
        assert!(spec.imagenet_stem && spec.kind == BlockKind::Bottleneck);
        assert_eq!(spec.depth(), 14);
        assert_eq!(
            spec.stages.iter().map(|s| s[0].stride).collect::<Vec<_>>(),
            [1, 2, 2, 2]
        );
        assert!(
            spec.describe()
                .starts_with("resnet14 (imagenet stem, bottleneck blocks 1-1-1-1")
        );
        let net = ResNet::load(&spec, &t).unwrap();
        assert_eq!(net.norms.len(), 1 + 4 * 4);
        // 32x32 -> stem 16x16 -> pool 8x8 -> stages 8, 4, 2, 1.
        let x = Tensor::ones((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let logits = net.forward(&x, &mut Pass::Eval).unwrap();
        assert_eq!(logits.dims(), [2, 5]);
        let values = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
        // Every stage after the stem starts a residual stream (each first block projects).
        let perm = spec.permutation_spec(&shapes(&t));
        let streams = perm.groups.iter().filter(|g| !g.name.contains(".conv")).count();
        assert_eq!(
            streams,
            5,
            "{:?}",
            perm.groups.iter().map(|g| &g.name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_shape_change_without_projection_is_refused() {
        let mut t = bottleneck_tensors(4, 2);
        t.retain(|n, _| !n.starts_with("layer2.0.downsample"));
        let err = ResNetSpec::infer(&shapes(&t)).unwrap().unwrap_err();
        assert!(err.contains("`layer2.0`") && err.contains("option-A"), "{err}");
    }
}
