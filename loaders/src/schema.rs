//! A zoo's reference schema: the parameter names, shapes and dtypes most of its checkpoints share.
//!
//! One odd checkpoint (a renamed tensor, an extra head, a tensor saved as `int32`) must never become
//! the yardstick the good ones are measured against, whatever its position in the zoo: the reference
//! is chosen by majority ([`reference_schema`]). Loads that take the schema
//! ([`crate::checkpoint::load_checkpoint_matching`]) check every checkpoint against it from headers
//! alone and read only the tensors it names, so a header declaring an enormous extra tensor costs
//! nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::CheckpointScan;
use crate::error::LoadError;
use crate::formats::TensorHeader;
use crate::params::shared_prefix_len;
use crate::selection::TensorFilter;

/// Most differences spelled out in one message.
const SHOWN_DIFFERENCES: usize = 4;

/// Shape and storage dtype of one parameter in a [`Schema`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Lowercase storage dtype (`f32`, `f16`, `bf16`, `f64`).
    pub dtype: String,
}

impl TensorSpec {
    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The parameters of a checkpoint: normalised names (wrapper prefixes such as `module.` stripped, as
/// in [`crate::ParamSet`]) of its floating-point tensors, with their shapes and storage dtypes.
///
/// Integer and boolean buffers (`num_batches_tracked`, masks) are not parameters and not part of a
/// schema. Two schemas have the same *layout* when names and shapes agree; storage dtypes may differ
/// between checkpoints of one zoo (an `f16` copy of an `f32` run loads the same parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Schema {
    tensors: BTreeMap<String, TensorSpec>,
}

impl Schema {
    /// The schema of a scanned checkpoint.
    pub fn of(scan: &CheckpointScan) -> Self {
        Self::from_headers(&scan.tensors)
    }

    /// The schema of a scanned checkpoint's tensors that `tensors` selects.
    pub fn of_selected(scan: &CheckpointScan, tensors: &TensorFilter) -> Self {
        let mut schema = Self::of(scan);
        schema.tensors.retain(|name, _| tensors.keeps(name));
        schema
    }

    /// The schema of the tensors `headers` declare (one checkpoint, all shards).
    pub fn from_headers(headers: &[TensorHeader]) -> Self {
        let tensors = normalise(headers)
            .into_iter()
            .filter(|(_, h)| h.is_float())
            .map(|(name, h)| {
                let spec = TensorSpec {
                    shape: h.shape.clone(),
                    dtype: h.dtype.clone(),
                };
                (name, spec)
            })
            .collect();
        Self { tensors }
    }

    /// The parameter called `name` (normalised), if part of the schema.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.get(name)
    }

    /// Names and specs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TensorSpec)> {
        self.tensors.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the schema holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn n_params(&self) -> usize {
        self.tensors.values().map(TensorSpec::elem_count).sum()
    }

    /// Names and shapes, sorted by name (the layout two checkpoints must share to be compared).
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors.iter().map(|(n, s)| (n.clone(), s.shape.clone())).collect()
    }

    /// True when `other` has the same names and shapes (storage dtypes may differ).
    pub fn same_layout(&self, other: &Schema) -> bool {
        self.tensors.len() == other.tensors.len()
            && self
                .tensors
                .iter()
                .zip(&other.tensors)
                .all(|((a, sa), (b, sb))| a == b && sa.shape == sb.shape)
    }

    /// True when the checkpoint `scan` describes can be loaded against this schema.
    pub fn matches(&self, scan: &CheckpointScan) -> bool {
        self.differences(&scan.tensors).is_empty()
    }

    /// How the tensors `headers` declare (one checkpoint, all shards) differ from this schema, in a
    /// few words naming the tensors (`None` when they match): missing tensors, wrong shapes, tensors
    /// stored with a dtype that is not floating point, unexpected extra parameters.
    pub fn difference(&self, headers: &[TensorHeader]) -> Option<String> {
        summarise(self.differences(headers))
    }

    /// Every difference, one phrase each.
    fn differences(&self, headers: &[TensorHeader]) -> Vec<String> {
        let found = normalise(headers);
        let mut diffs = self.unmet(&found);
        diffs.extend(
            found
                .iter()
                .filter(|(n, h)| h.is_float() && !self.tensors.contains_key(n))
                .map(|(n, _)| format!("unexpected `{n}`")),
        );
        diffs
    }

    /// The schema's tensors that `found` (normalised headers) lacks or declares differently.
    fn unmet(&self, found: &[(String, &TensorHeader)]) -> Vec<String> {
        let by_name: BTreeMap<&str, &TensorHeader> = found.iter().map(|(n, h)| (n.as_str(), *h)).collect();
        let mut diffs = Vec::new();
        for (name, spec) in &self.tensors {
            match by_name.get(name.as_str()) {
                None => diffs.push(format!("`{name}` missing")),
                Some(h) if !h.is_float() => diffs.push(format!(
                    "`{name}` is stored as {}, expected a floating-point dtype ({})",
                    h.dtype, spec.dtype
                )),
                Some(h) if h.shape != spec.shape => {
                    diffs.push(format!("`{name}` has shape {:?}, expected {:?}", h.shape, spec.shape))
                }
                Some(_) => {}
            }
        }
        diffs
    }

    /// Checks from headers alone that the checkpoint at `path` declaring `headers` (all shards) can be
    /// loaded against this schema: the error [`crate::checkpoint::load_checkpoint_matching`] would give
    /// before reading anything. Tensors outside the schema are not an error.
    pub fn check(&self, path: &Path, headers: &[TensorHeader]) -> Result<(), LoadError> {
        self.select(path, headers).map(|_| ())
    }

    /// Checks the tensors `headers` declare against the schema, from headers alone, and returns the
    /// stored names of the tensors to read, with their normalised names. Tensors outside the schema
    /// are left out (never an error: they are simply not read). `path` names the checkpoint in errors: a tensor stored with a non-float dtype is
    /// [`LoadError::UnsupportedDtype`] (naming the dtype); missing, misshapen or unexpected tensors
    /// are [`LoadError::Mismatch`] naming them.
    pub(crate) fn select(&self, path: &Path, headers: &[TensorHeader]) -> Result<Vec<(String, String)>, LoadError> {
        let found = normalise(headers);
        for (name, h) in &found {
            if let Some(spec) = self.tensors.get(name).filter(|_| !h.is_float()) {
                return Err(LoadError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: h.name.clone(),
                    dtype: format!("{} (the zoo's checkpoints store it as {})", h.dtype, spec.dtype),
                });
            }
        }
        // Extra tensors are no error, but worth naming next to a missing one (a renamed tensor).
        if let Some(reason) = summarise(self.unmet(&found)).and_then(|_| self.difference(headers)) {
            return Err(LoadError::Mismatch {
                path: path.to_path_buf(),
                reason,
            });
        }
        Ok(found
            .into_iter()
            .filter(|(name, h)| h.is_float() && self.tensors.contains_key(name))
            .map(|(name, h)| (h.name.clone(), name))
            .collect())
    }
}

/// Joins the first few differences, saying how many more there are.
fn summarise(mut diffs: Vec<String>) -> Option<String> {
    if diffs.is_empty() {
        return None;
    }
    let more = diffs.len().saturating_sub(SHOWN_DIFFERENCES);
    diffs.truncate(SHOWN_DIFFERENCES);
    let mut text = diffs.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Some(text)
}

/// Normalised names of `headers`: the wrapper prefix shared by every floating-point tensor is
/// stripped from every name that carries it (as [`crate::ParamSet::from_raw`] does).
pub(crate) fn normalise(headers: &[TensorHeader]) -> Vec<(String, &TensorHeader)> {
    let floats: Vec<&str> = headers
        .iter()
        .filter(|h| h.is_float())
        .map(|h| h.name.as_str())
        .collect();
    let strip = shared_prefix_len(&floats);
    let prefix = floats.first().and_then(|n| n.get(..strip)).unwrap_or("");
    headers
        .iter()
        .map(|h| {
            let name = match h.name.strip_prefix(prefix) {
                Some(rest) if !prefix.is_empty() && !rest.is_empty() => rest,
                _ => h.name.as_str(),
            };
            (name.to_string(), h)
        })
        .collect()
}

/// Counts schemas by layout (names and shapes) in the order they are added.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Each distinct layout: its first schema and how many checkpoints have it.
    groups: Vec<(Schema, usize)>,
}

impl Tally {
    /// Counts `schema`; returns the index of its layout group.
    pub(crate) fn add(&mut self, schema: Schema) -> usize {
        match self.groups.iter().position(|(s, _)| s.same_layout(&schema)) {
            Some(i) => {
                self.groups[i].1 += 1;
                i
            }
            None => {
                self.groups.push((schema, 1));
                self.groups.len() - 1
            }
        }
    }

    /// Index of the group most checkpoints belong to; ties go to the group seen first.
    pub(crate) fn reference_index(&self) -> Option<usize> {
        (0..self.groups.len()).rev().max_by_key(|&i| self.groups[i].1)
    }

    /// The group at `index`: its first schema and its size.
    pub(crate) fn group(&self, index: usize) -> Option<(&Schema, usize)> {
        self.groups.get(index).map(|(s, n)| (s, *n))
    }

    /// The reference schema and how many checkpoints share its layout.
    pub(crate) fn reference(&self) -> Option<(&Schema, usize)> {
        self.reference_index().and_then(|i| self.group(i))
    }
}

/// The reference schema of a zoo from its checkpoints' header scans: the layout (names and shapes)
/// most checkpoints share, never simply the first one's. Ties go to the layout seen first (pass scans
/// in zoo order, runs by name and steps ascending, to make that the earliest path); the dtypes are
/// those of the first checkpoint with that layout. `None` when there is no scan.
pub fn reference_schema<'a>(scans: impl IntoIterator<Item = &'a CheckpointScan>) -> Option<Schema> {
    reference_schema_selected(scans, &TensorFilter::default())
}

/// [`reference_schema`] of the tensors `tensors` selects (`--include` / `--exclude`): layouts are
/// compared on those tensors only, so checkpoints differing only in left-out tensors agree.
pub fn reference_schema_selected<'a>(
    scans: impl IntoIterator<Item = &'a CheckpointScan>,
    tensors: &TensorFilter,
) -> Option<Schema> {
    let mut tally = Tally::default();
    for scan in scans {
        tally.add(Schema::of_selected(scan, tensors));
    }
    tally.reference().map(|(schema, _)| schema.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, dtype: &str, shape: &[usize]) -> TensorHeader {
        TensorHeader {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
        }
    }

    fn scan(tensors: Vec<TensorHeader>) -> CheckpointScan {
        CheckpointScan {
            tensors,
            global_step: None,
            bytes: 0,
        }
    }

    fn good() -> CheckpointScan {
        scan(vec![
            header("fc1.weight", "f32", &[4, 3]),
            header("fc2.weight", "f32", &[2, 4]),
        ])
    }

    #[test]
    fn majority_wins_whatever_comes_first() {
        let odd = scan(vec![
            header("fc1.weight", "f32", &[4, 3]),
            header("fc2.geight", "f32", &[2, 4]),
        ]);
        let scans = [odd.clone(), good(), good()];
        let reference = reference_schema(&scans).unwrap();
        assert_eq!(reference, Schema::of(&good()));
        assert!(!reference.matches(&odd));
        let diff = reference.difference(&odd.tensors).unwrap();
        assert_eq!(diff, "`fc2.weight` missing, unexpected `fc2.geight`");
        // A tie goes to the layout seen first.
        assert_eq!(reference_schema(&[odd.clone(), good()]).unwrap(), Schema::of(&odd));
        assert!(reference_schema(&[]).is_none());
    }

    #[test]
    fn dtypes_do_not_split_a_layout_and_prefixes_are_stripped() {
        let half = scan(vec![
            header("module.fc1.weight", "f16", &[4, 3]),
            header("module.fc2.weight", "f16", &[2, 4]),
            header("module.steps", "i64", &[]),
        ]);
        let reference = reference_schema(&[half.clone(), good(), good()]).unwrap();
        assert_eq!(reference.get("fc1.weight").unwrap().dtype, "f16");
        assert!(reference.matches(&good()));
        assert_eq!(reference.len(), 2);
        assert_eq!(reference.n_params(), 20);
    }

    #[test]
    fn integer_tensor_where_a_float_is_expected_says_the_dtype() {
        let ints = scan(vec![
            header("fc1.weight", "i32", &[4, 3]),
            header("fc2.weight", "f32", &[2, 4]),
        ]);
        let reference = Schema::of(&good());
        let diff = reference.difference(&ints.tensors).unwrap();
        assert!(diff.contains("`fc1.weight` is stored as i32"), "{diff}");
        let err = reference
            .select(Path::new("x.safetensors"), &ints.tensors)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.safetensors") && err.contains("`fc1.weight`") && err.contains("i32"),
            "{err}"
        );
    }
}
