//! Permutation specs: which axes of which tensors each hidden-unit permutation of an architecture
//! acts on, and applying permutations to a parameter set.
//!
//! A network's function is unchanged when the units of a hidden layer are reordered consistently:
//! for an MLP `fc1 -> fc2 -> fc3`, permutation `P1` reorders the rows of `fc1.weight`, the entries
//! of `fc1.bias` and the columns of `fc2.weight`; `P2` the rows of `fc2.weight`, `fc2.bias` and the
//! columns of `fc3.weight`. New architectures are supported by building their [`PermutationSpec`].

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::models::mlp::LinearLayer;

/// One axis of one tensor: `(tensor name, axis)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TensorAxis {
    /// Tensor name in the parameter set.
    pub tensor: String,
    /// Axis (0 = rows of a `[out, in]` weight).
    pub axis: usize,
}

/// One hidden-unit permutation: its name, size and the tensor axes it reorders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermutationGroup {
    /// Name, e.g. `P_fc1` (the units output by `fc1`).
    pub name: String,
    /// Number of units permuted.
    pub size: usize,
    /// Every tensor axis this permutation reorders and weight matching compares (each of length
    /// `size`).
    pub axes: Vec<TensorAxis>,
    /// Axes reordered with the units but left out of weight matching's objective (BatchNorm
    /// running statistics, whose scale would dominate it).
    pub carried: Vec<TensorAxis>,
}

/// The permutation symmetries of an architecture. Tensors not named by any group are left as they
/// are (they must not depend on unit order, e.g. the input layer's columns or the logits).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermutationSpec {
    /// The permutations, in a fixed order (indices into [`Permutations`]).
    pub groups: Vec<PermutationGroup>,
}

/// One permutation per group of a spec: `perms[g][i]` is the unit of the permuted model taken to
/// position `i`, i.e. permuting a tensor axis gives `W'[.., i, ..] = W[.., perms[g][i], ..]`.
pub type Permutations = Vec<Vec<usize>>;

impl PermutationSpec {
    /// The spec of a Linear chain (see [`crate::models::mlp::linear_chain`]): one permutation per hidden
    /// layer, acting on the producing layer's weight rows and bias and the next layer's weight columns.
    pub fn mlp(chain: &[LinearLayer]) -> Self {
        let groups = chain
            .windows(2)
            .map(|pair| {
                let (layer, next) = (&pair[0], &pair[1]);
                let mut axes = vec![TensorAxis {
                    tensor: layer.weight_name(),
                    axis: 0,
                }];
                if layer.has_bias {
                    axes.push(TensorAxis {
                        tensor: layer.bias_name(),
                        axis: 0,
                    });
                }
                axes.push(TensorAxis {
                    tensor: next.weight_name(),
                    axis: 1,
                });
                PermutationGroup {
                    name: format!("P_{}", if layer.name.is_empty() { "hidden" } else { &layer.name }),
                    size: layer.n_out,
                    axes,
                    carried: Vec::new(),
                }
            })
            .collect();
        Self { groups }
    }

    /// The identity permutation of every group.
    pub fn identity(&self) -> Permutations {
        self.groups.iter().map(|g| (0..g.size).collect()).collect()
    }

    /// For every tensor matched by the spec, the groups acting on it by axis: `tensor -> [(axis,
    /// group)]` (the [`PermutationGroup::axes`], not the carried ones).
    pub fn axes_by_tensor(&self) -> BTreeMap<&str, Vec<(usize, usize)>> {
        self.collect_axes(false)
    }

    /// As [`PermutationSpec::axes_by_tensor`], carried axes included: every axis a permutation moves.
    fn all_axes_by_tensor(&self) -> BTreeMap<&str, Vec<(usize, usize)>> {
        self.collect_axes(true)
    }

    fn collect_axes(&self, carried: bool) -> BTreeMap<&str, Vec<(usize, usize)>> {
        let mut map: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (g, group) in self.groups.iter().enumerate() {
            let extra = if carried { group.carried.as_slice() } else { &[] };
            for a in group.axes.iter().chain(extra) {
                map.entry(a.tensor.as_str()).or_default().push((a.axis, g));
            }
        }
        map
    }

    /// Checks that every named tensor exists in `params` with each named axis of the group's size,
    /// and that no tensor axis is claimed twice.
    pub fn check(&self, params: &ParamSet) -> Result<()> {
        for (tensor, axes) in self.all_axes_by_tensor() {
            let t = params
                .get(tensor)
                .ok_or_else(|| CoreError::Align(format!("tensor `{tensor}` of the permutation spec is missing")))?;
            let dims = t.dims();
            for (i, &(axis, g)) in axes.iter().enumerate() {
                let group = &self.groups[g];
                if dims.get(axis) != Some(&group.size) {
                    return Err(CoreError::Align(format!(
                        "`{tensor}` has shape {dims:?}: axis {axis} should have the {} units of {}",
                        group.size, group.name
                    )));
                }
                if axes[..i].iter().any(|(other, _)| *other == axis) {
                    return Err(CoreError::Align(format!(
                        "axis {axis} of `{tensor}` is claimed by two permutations"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks that `perms` holds one valid permutation of the right size per group.
    pub fn check_permutations(&self, perms: &Permutations) -> Result<()> {
        if perms.len() != self.groups.len() {
            return Err(CoreError::Align(format!(
                "{} permutations given for a spec of {}",
                perms.len(),
                self.groups.len()
            )));
        }
        for (group, perm) in self.groups.iter().zip(perms) {
            let mut seen = vec![false; group.size];
            let valid = perm.len() == group.size
                && perm
                    .iter()
                    .all(|&i| i < group.size && !std::mem::replace(&mut seen[i], true));
            if !valid {
                return Err(CoreError::Align(format!(
                    "{} is not a permutation of 0..{}",
                    group.name, group.size
                )));
            }
        }
        Ok(())
    }

    /// `params` with every group's permutation applied to its axes (exact: values are only moved).
    pub fn apply(&self, params: &ParamSet, perms: &Permutations) -> Result<ParamSet> {
        self.check(params)?;
        self.check_permutations(perms)?;
        let by_tensor = self.all_axes_by_tensor();
        let index: Vec<Tensor> = perms
            .iter()
            .map(|p| {
                let p: Vec<u32> = p.iter().map(|&i| i as u32).collect();
                let n = p.len();
                Tensor::from_vec(p, n, &Device::Cpu)
            })
            .collect::<candle_core::Result<_>>()
            .map_err(|e| CoreError::Align(e.to_string()))?;
        let mut raw = Vec::with_capacity(params.len());
        for (name, tensor) in params.iter() {
            let mut t = tensor.clone();
            for &(axis, g) in by_tensor.get(name).map_or(&[][..], Vec::as_slice) {
                t = t
                    .index_select(&index[g], axis)
                    .map_err(|e| CoreError::Align(format!("`{name}`: {e}")))?;
            }
            raw.push((name.to_string(), t));
        }
        ParamSet::from_raw(raw).map_err(|e| CoreError::Align(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::mlp::linear_chain;
    use candle_core::DType;

    /// A group as (name, size, [(tensor, axis)]).
    type GroupAxes<'a> = (&'a str, usize, Vec<(&'a str, usize)>);

    fn zeros(shapes: &[(&str, &[usize])]) -> ParamSet {
        let raw = shapes
            .iter()
            .map(|(n, s)| (n.to_string(), Tensor::zeros(*s, DType::F32, &Device::Cpu).unwrap()))
            .collect();
        ParamSet::from_raw(raw).unwrap()
    }

    #[test]
    fn mlp_spec_names_rows_biases_and_next_columns() {
        let p = zeros(&[
            ("fc1.weight", &[5, 4]),
            ("fc1.bias", &[5]),
            ("fc2.weight", &[6, 5]),
            ("fc3.weight", &[3, 6]),
            ("fc3.bias", &[3]),
        ]);
        let spec = PermutationSpec::mlp(&linear_chain(&p).unwrap());
        let axes: Vec<GroupAxes> = spec
            .groups
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.size,
                    g.axes.iter().map(|a| (a.tensor.as_str(), a.axis)).collect(),
                )
            })
            .collect();
        assert_eq!(
            axes,
            [
                ("P_fc1", 5, vec![("fc1.weight", 0), ("fc1.bias", 0), ("fc2.weight", 1)]),
                ("P_fc2", 6, vec![("fc2.weight", 0), ("fc3.weight", 1)]),
            ]
        );
        spec.check(&p).unwrap();
    }

    #[test]
    fn apply_moves_rows_and_columns() {
        let w1 = Tensor::from_vec(vec![0f32, 1., 2., 10., 11., 12.], (3, 2), &Device::Cpu).unwrap();
        let b1 = Tensor::from_vec(vec![0f32, 1., 2.], 3, &Device::Cpu).unwrap();
        let w2 = Tensor::from_vec(vec![0f32, 1., 2.], (1, 3), &Device::Cpu).unwrap();
        let p = ParamSet::from_raw(vec![
            ("fc1.weight".into(), w1),
            ("fc1.bias".into(), b1),
            ("fc2.weight".into(), w2),
        ])
        .unwrap();
        let spec = PermutationSpec::mlp(&linear_chain(&p).unwrap());
        let out = spec.apply(&p, &vec![vec![2, 0, 1]]).unwrap();
        let get = |n: &str| out.get(n).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(get("fc1.weight"), [11., 12., 0., 1., 2., 10.]);
        assert_eq!(get("fc1.bias"), [2., 0., 1.]);
        assert_eq!(get("fc2.weight"), [2., 0., 1.]);
    }

    #[test]
    fn bad_specs_and_permutations_are_errors() {
        let p = zeros(&[("fc1.weight", &[5, 4]), ("fc2.weight", &[3, 5])]);
        let spec = PermutationSpec::mlp(&linear_chain(&p).unwrap());
        for bad in [
            vec![],
            vec![vec![0, 1, 2, 3]],
            vec![vec![0, 1, 2, 3, 3]],
            vec![vec![0, 1, 2, 3, 5]],
        ] {
            let err = spec.apply(&p, &bad).unwrap_err().to_string();
            assert!(err.contains("permutation"), "{err}");
        }
        let other = zeros(&[("fc1.weight", &[6, 4]), ("fc2.weight", &[3, 6])]);
        let err = spec.check(&other).unwrap_err().to_string();
        assert!(err.contains("`fc1.weight` has shape [6, 4]"), "{err}");
        let missing = zeros(&[("fc1.weight", &[5, 4])]);
        assert!(spec.check(&missing).unwrap_err().to_string().contains("`fc2.weight`"));
        let twice = PermutationSpec {
            groups: vec![spec.groups[0].clone(), spec.groups[0].clone()],
        };
        assert!(twice.check(&p).unwrap_err().to_string().contains("claimed by two"));
    }
}
