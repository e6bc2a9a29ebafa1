//! The MLP architecture: layer sizes and activation, from `config.json` or inferred from tensor
//! names and shapes, and the check that a parameter set fits it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};

/// Activation between Linear layers (none after the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// Exact GELU, x·Φ(x) with the error function (PyTorch's default `approximate="none"`).
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
}

impl Activation {
    /// Parses `relu`, `gelu` or `tanh` (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "relu" => Some(Self::Relu),
            "gelu" => Some(Self::Gelu),
            "tanh" => Some(Self::Tanh),
            _ => None,
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Gelu => "gelu",
            Self::Tanh => "tanh",
        }
    }
}

/// An MLP: a chain of Linear layers `layers[0] -> layers[1] -> ... -> layers[L]` with `activation`
/// after every layer but the last; the last layer's outputs are class logits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MlpSpec {
    /// Widths: input features, hidden widths, classes (at least two entries).
    pub layers: Vec<usize>,
    /// Activation between layers.
    pub activation: Activation,
}

/// One Linear layer found in a parameter set: `{name}.weight` `[n_out, n_in]` and optional
/// `{name}.bias` `[n_out]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearLayer {
    /// Name prefix, e.g. `fc1` or `layers.0` (empty for bare `weight`/`bias`).
    pub name: String,
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Whether a bias is present (absent = zero bias).
    pub has_bias: bool,
}

impl LinearLayer {
    /// Name of the weight tensor.
    pub fn weight_name(&self) -> String {
        join(&self.name, "weight")
    }

    /// Name of the bias tensor.
    pub fn bias_name(&self) -> String {
        join(&self.name, "bias")
    }
}

fn join(prefix: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        leaf.to_string()
    } else {
        format!("{prefix}.{leaf}")
    }
}

impl MlpSpec {
    /// A spec from widths and activation; needs at least two widths, all positive.
    pub fn new(layers: Vec<usize>, activation: Activation) -> Result<Self> {
        if layers.len() < 2 || layers.contains(&0) {
            return Err(CoreError::InvalidArgument(format!(
                "MLP layer widths {layers:?}: need at least two widths, all > 0"
            )));
        }
        Ok(Self { layers, activation })
    }

    /// Reads `{"arch": "mlp", "layers": [...], "activation": "relu"}` from the file `path`.
    pub fn from_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CoreError::config(path, format!("invalid JSON: {e}")))?;
        Self::from_config_json(&value, path)
    }

    /// The spec in an already parsed `config.json` (`path` is named in errors). `activation`
    /// defaults to relu.
    pub fn from_config_json(value: &serde_json::Value, path: &Path) -> Result<Self> {
        match value.get("arch").and_then(|a| a.as_str()) {
            Some("mlp") => {}
            Some(other) => return Err(CoreError::config(path, format!("arch is `{other}`, not `mlp`"))),
            None => return Err(CoreError::config(path, "no `arch` key")),
        }
        let layers = value
            .get("layers")
            .and_then(|l| l.as_array())
            .ok_or_else(|| CoreError::config(path, "`layers` must be a list of widths"))?
            .iter()
            .map(|w| w.as_u64().filter(|&w| w > 0).map(|w| w as usize))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| CoreError::config(path, "`layers` must hold positive integers"))?;
        if layers.len() < 2 {
            return Err(CoreError::config(
                path,
                "`layers` needs at least two widths (inputs, classes)",
            ));
        }
        let activation = match value.get("activation") {
            None | Some(serde_json::Value::Null) => Activation::Relu,
            Some(a) => a.as_str().and_then(Activation::parse).ok_or_else(|| {
                CoreError::config(
                    path,
                    format!("unsupported activation {a} (supported: relu, gelu, tanh)"),
                )
            })?,
        };
        Ok(Self { layers, activation })
    }

    /// Infers the spec from a parameter set's Linear-like tensors (see [`linear_chain`]); the
    /// activation cannot be seen in tensors and defaults to relu.
    pub fn infer(params: &ParamSet) -> Result<Self> {
        let chain = linear_chain(params)?;
        let mut layers = vec![chain[0].n_in];
        layers.extend(chain.iter().map(|l| l.n_out));
        Ok(Self {
            layers,
            activation: Activation::Relu,
        })
    }

    /// Number of input features.
    pub fn n_inputs(&self) -> usize {
        self.layers[0]
    }

    /// Number of classes (width of the last layer).
    pub fn n_classes(&self) -> usize {
        self.layers[self.layers.len() - 1]
    }

    /// `mlp 64-128-128-10 relu`.
    pub fn describe(&self) -> String {
        let widths: Vec<String> = self.layers.iter().map(usize::to_string).collect();
        format!("mlp {} {}", widths.join("-"), self.activation.name())
    }

    /// Checks that `params` is exactly a Linear chain of this spec's widths; returns its layers.
    pub fn check(&self, params: &ParamSet) -> Result<Vec<LinearLayer>> {
        let chain = linear_chain(params)?;
        let mut found = vec![chain[0].n_in];
        found.extend(chain.iter().map(|l| l.n_out));
        if found != self.layers {
            let layers: Vec<String> = chain
                .iter()
                .map(|l| format!("`{}` [{}, {}]", l.weight_name(), l.n_out, l.n_in))
                .collect();
            return Err(CoreError::Model(format!(
                "the spec has widths {:?} but the checkpoint's Linear layers {} give widths {found:?}",
                self.layers,
                layers.join(", ")
            )));
        }
        Ok(chain)
    }
}

/// Shapes of a layer's `weight` and `bias`, as found.
type WeightAndBias = (Option<Vec<usize>>, Option<Vec<usize>>);

/// The Linear layers of `params`, ordered by name prefix with natural numeric order (`fc2` <
/// `fc10`, `layers.2` < `layers.10`), checked to chain (each layer's inputs = previous outputs).
/// Every tensor must belong to a layer: anything else (normalisation statistics, embeddings) is an
/// error naming it.
pub fn linear_chain(params: &ParamSet) -> Result<Vec<LinearLayer>> {
    let mut groups: BTreeMap<&str, WeightAndBias> = BTreeMap::new();
    for (name, tensor) in params.iter() {
        let (prefix, leaf) = match name.rsplit_once('.') {
            Some((p, l)) => (p, l),
            None => ("", name),
        };
        let entry = groups.entry(prefix).or_default();
        match leaf {
            "weight" => entry.0 = Some(tensor.dims().to_vec()),
            "bias" => entry.1 = Some(tensor.dims().to_vec()),
            _ => {
                return Err(CoreError::Model(format!(
                    "tensor `{name}` is not part of a Linear layer (`*.weight` [out, in] + `*.bias` [out])"
                )));
            }
        }
    }
    if groups.is_empty() {
        return Err(CoreError::Model("the parameter set is empty".into()));
    }
    let mut layers = Vec::with_capacity(groups.len());
    for (prefix, (weight, bias)) in groups {
        let name = |leaf| join(prefix, leaf);
        let Some(weight) = weight else {
            return Err(CoreError::Model(format!(
                "`{}` has no `{}`",
                name("bias"),
                name("weight")
            )));
        };
        let [n_out, n_in] = weight[..] else {
            return Err(CoreError::Model(format!(
                "`{}` has shape {weight:?}, expected [out, in] for a Linear layer",
                name("weight")
            )));
        };
        if let Some(bias) = &bias
            && bias[..] != [n_out]
        {
            return Err(CoreError::Model(format!(
                "`{}` has shape {bias:?}, expected [{n_out}] to match `{}`",
                name("bias"),
                name("weight")
            )));
        }
        if n_out == 0 || n_in == 0 {
            return Err(CoreError::Model(format!("`{}` is empty ({weight:?})", name("weight"))));
        }
        layers.push(LinearLayer {
            name: prefix.to_string(),
            n_in,
            n_out,
            has_bias: bias.is_some(),
        });
    }
    layers.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    for pair in layers.windows(2) {
        if pair[1].n_in != pair[0].n_out {
            return Err(CoreError::Model(format!(
                "Linear layers do not chain: `{}` gives {} outputs but the next layer `{}` takes {} inputs",
                pair[0].weight_name(),
                pair[0].n_out,
                pair[1].weight_name(),
                pair[1].n_in
            )));
        }
    }
    Ok(layers)
}

/// Natural string order: runs of digits compare as numbers (`fc2` < `fc10`), the rest bytewise.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let order = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    .then_with(|| da.cmp(&db));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn params(shapes: &[(&str, &[usize])]) -> ParamSet {
        let raw = shapes
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    Tensor::zeros(*s, candle_core::DType::F32, &Device::Cpu).unwrap(),
                )
            })
            .collect();
        ParamSet::from_raw(raw).unwrap()
    }

    #[test]
    fn natural_order() {
        let mut names = vec!["fc10", "fc2", "fc1", "layers.10", "layers.9", "layers.0", "a01", "a1"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["a1", "a01", "fc1", "fc2", "fc10", "layers.0", "layers.9", "layers.10"]
        );
    }

    #[test]
    fn infers_the_chain_in_numeric_order() {
        let p = params(&[
            ("net.10.weight", &[3, 8]),
            ("net.10.bias", &[3]),
            ("net.2.weight", &[8, 5]),
            ("net.2.bias", &[8]),
            ("net.0.weight", &[5, 4]),
        ]);
        let spec = MlpSpec::infer(&p).unwrap();
        assert_eq!(spec.layers, vec![4, 5, 8, 3]);
        assert_eq!(spec.activation, Activation::Relu);
        let chain = spec.check(&p).unwrap();
        assert_eq!(chain[0].name, "net.0");
        assert!(!chain[0].has_bias && chain[1].has_bias);
        assert_eq!(spec.describe(), "mlp 4-5-8-3 relu");
    }

    #[test]
    fn clear_errors_for_params_that_do_not_fit() {
        let bn = params(&[("fc1.weight", &[5, 4]), ("bn.running_mean", &[5])]);
        let err = MlpSpec::infer(&bn).unwrap_err().to_string();
        assert!(err.contains("`bn.running_mean` is not part of a Linear layer"), "{err}");

        let broken = params(&[("fc1.weight", &[5, 4]), ("fc2.weight", &[3, 6])]);
        let err = MlpSpec::infer(&broken).unwrap_err().to_string();
        assert!(
            err.contains("`fc1.weight` gives 5 outputs but the next layer `fc2.weight` takes 6"),
            "{err}"
        );

        let bias = params(&[("fc1.weight", &[5, 4]), ("fc1.bias", &[4])]);
        let err = MlpSpec::infer(&bias).unwrap_err().to_string();
        assert!(err.contains("`fc1.bias` has shape [4], expected [5]"), "{err}");

        let ok = params(&[("fc1.weight", &[5, 4]), ("fc2.weight", &[3, 5])]);
        let spec = MlpSpec::new(vec![4, 6, 3], Activation::Tanh).unwrap();
        let err = spec.check(&ok).unwrap_err().to_string();
        assert!(err.contains("widths [4, 6, 3]") && err.contains("[4, 5, 3]"), "{err}");
    }

    #[test]
    fn config_parsing() {
        let path = Path::new("run/config.json");
        let v: serde_json::Value =
            serde_json::from_str(r#"{"arch":"mlp","layers":[64,128,10],"activation":"gelu"}"#).unwrap();
        let spec = MlpSpec::from_config_json(&v, path).unwrap();
        assert_eq!(
            spec,
            MlpSpec {
                layers: vec![64, 128, 10],
                activation: Activation::Gelu
            }
        );
        let v: serde_json::Value =
            serde_json::from_str(r#"{"arch":"mlp","layers":[64,10],"activation":"swish"}"#).unwrap();
        let err = MlpSpec::from_config_json(&v, path).unwrap_err().to_string();
        assert!(
            err.contains("run/config.json") && err.contains("unsupported activation \"swish\""),
            "{err}"
        );
        let v: serde_json::Value = serde_json::from_str(r#"{"arch":"mlp","layers":[64]}"#).unwrap();
        assert!(MlpSpec::from_config_json(&v, path).is_err());
    }
}
