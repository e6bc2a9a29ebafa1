//! Normalised parameter sets: the named f32 tensors of one checkpoint.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use regex::Regex;

/// Prefixes stripped from every name when *all* names share them (DDP, Lightning, `torch.compile`).
pub const STRIPPED_PREFIXES: [&str; 3] = ["module.", "model.", "_orig_mod."];

/// The named floating-point tensors of one checkpoint after normalisation.
///
/// Invariants: every tensor is f32, contiguous, on the CPU; names are sorted; shared wrapper prefixes
/// (see [`STRIPPED_PREFIXES`]) are removed. Integer buffers (e.g. `num_batches_tracked`) are not
/// parameters and are left out.
#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    tensors: BTreeMap<String, Tensor>,
}

impl ParamSet {
    /// Normalises raw named tensors as read from a file: upcasts f16/bf16/f64 to f32, drops integer
    /// and boolean buffers, and strips wrapper prefixes shared by every name.
    pub fn from_raw(raw: Vec<(String, Tensor)>) -> candle_core::Result<Self> {
        let mut floats = Vec::with_capacity(raw.len());
        for (name, tensor) in raw {
            if let Some(tensor) = as_f32(tensor)? {
                floats.push((name, tensor));
            }
        }
        let names: Vec<&str> = floats.iter().map(|(n, _)| n.as_str()).collect();
        let strip = shared_prefix_len(&names);
        let tensors = floats
            .into_iter()
            .map(|(name, tensor)| (name[strip..].to_string(), tensor))
            .collect();
        Ok(Self { tensors })
    }

    /// A parameter set from tensors already named as they should be (no prefix stripping): upcasts
    /// f16/bf16/f64 to f32 and drops integer and boolean tensors, as [`ParamSet::from_raw`].
    pub(crate) fn from_named(named: Vec<(String, Tensor)>) -> candle_core::Result<Self> {
        let mut tensors = BTreeMap::new();
        for (name, tensor) in named {
            if let Some(tensor) = as_f32(tensor)? {
                tensors.insert(name, tensor);
            }
        }
        Ok(Self { tensors })
    }

    /// Keeps only the tensors whose names match `include` (if given) and do not match `exclude`
    /// (if given), e.g. to leave out a classifier head.
    pub fn filtered(self, include: Option<&Regex>, exclude: Option<&Regex>) -> Self {
        let tensors = self
            .tensors
            .into_iter()
            .filter(|(name, _)| include.is_none_or(|re| re.is_match(name)))
            .filter(|(name, _)| exclude.is_none_or(|re| !re.is_match(name)))
            .collect();
        Self { tensors }
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Names and tensors, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the set holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn n_params(&self) -> usize {
        self.tensors.values().map(Tensor::elem_count).sum()
    }

    /// Names and shapes, sorted by name.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect()
    }

    /// Checks that `other` has exactly the same names and shapes; describes the first differences.
    pub fn check_compatible(&self, other: &ParamSet) -> Result<(), String> {
        match describe_shape_difference(&self.shapes(), &other.shapes()) {
            None => Ok(()),
            Some(diff) => Err(diff),
        }
    }
}

/// A floating-point tensor as contiguous f32; `None` for integer and boolean tensors.
fn as_f32(tensor: Tensor) -> candle_core::Result<Option<Tensor>> {
    match tensor.dtype() {
        DType::F32 => tensor.contiguous().map(Some),
        DType::F16 | DType::BF16 | DType::F64 => tensor.to_dtype(DType::F32)?.contiguous().map(Some),
        _ => Ok(None),
    }
}

/// The first few differences between two name -> shape maps, or `None` when they are equal.
pub fn describe_shape_difference(
    reference: &BTreeMap<String, Vec<usize>>,
    other: &BTreeMap<String, Vec<usize>>,
) -> Option<String> {
    let mut diffs = Vec::new();
    for (name, shape) in reference {
        match other.get(name) {
            None => diffs.push(format!("`{name}` missing")),
            Some(s) if s != shape => diffs.push(format!("`{name}` has shape {s:?}, expected {shape:?}")),
            Some(_) => {}
        }
    }
    diffs.extend(
        other
            .keys()
            .filter(|n| !reference.contains_key(*n))
            .map(|n| format!("unexpected `{n}`")),
    );
    if diffs.is_empty() {
        return None;
    }
    let more = diffs.len().saturating_sub(4);
    diffs.truncate(4);
    let mut text = diffs.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Some(text)
}

/// Length of the wrapper prefixes (from [`STRIPPED_PREFIXES`], possibly stacked) shared by all names.
pub(crate) fn shared_prefix_len(names: &[&str]) -> usize {
    let mut strip = 0;
    loop {
        let next = STRIPPED_PREFIXES.iter().find(|prefix| {
            !names.is_empty()
                && names
                    .iter()
                    .all(|n| n[strip..].starts_with(*prefix) && n.len() > strip + prefix.len())
        });
        match next {
            Some(prefix) => strip += prefix.len(),
            None => return strip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn strips_prefixes_shared_by_all_names_only() {
        let ps = ParamSet::from_raw(vec![
            ("_orig_mod.model.a".into(), t(&[1.0])),
            ("_orig_mod.model.b".into(), t(&[2.0])),
        ])
        .unwrap();
        assert_eq!(ps.names().collect::<Vec<_>>(), ["a", "b"]);
        let ps = ParamSet::from_raw(vec![("model.a".into(), t(&[1.0])), ("b".into(), t(&[2.0]))]).unwrap();
        assert_eq!(ps.names().collect::<Vec<_>>(), ["b", "model.a"]);
    }

    #[test]
    fn upcasts_half_and_drops_integer_buffers() {
        let half = t(&[0.5, 1.5]).to_dtype(DType::F16).unwrap();
        let ints = Tensor::new(&[3i64], &Device::Cpu).unwrap();
        let ps = ParamSet::from_raw(vec![("w".into(), half), ("n".into(), ints)]).unwrap();
        assert_eq!(ps.len(), 1);
        let w = ps.get("w").unwrap();
        assert_eq!(w.dtype(), DType::F32);
        assert_eq!(w.to_vec1::<f32>().unwrap(), vec![0.5, 1.5]);
    }

    #[test]
    fn compatibility_names_missing_and_misshapen_tensors() {
        let a = ParamSet::from_raw(vec![("w".into(), t(&[1.0, 2.0])), ("b".into(), t(&[1.0]))]).unwrap();
        let b = ParamSet::from_raw(vec![("w".into(), t(&[1.0]))]).unwrap();
        let err = a.check_compatible(&b).unwrap_err();
        assert!(err.contains("`b` missing"), "{err}");
        assert!(err.contains("`w` has shape [1]"), "{err}");
        assert!(a.check_compatible(&a.clone()).is_ok());
    }

    #[test]
    fn filter_by_regex() {
        let ps = ParamSet::from_raw(vec![("fc1.w".into(), t(&[1.0])), ("head.w".into(), t(&[1.0]))]).unwrap();
        let ex = Regex::new("^head").unwrap();
        assert_eq!(ps.filtered(None, Some(&ex)).names().collect::<Vec<_>>(), ["fc1.w"]);
    }
}
