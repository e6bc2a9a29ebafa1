//! The opt-in value scan of `lineage inspect --scan`: every parameter of a checkpoint read and checked
//! for NaN and ±inf (a run that diverged, or a file written mid-overflow). Header inspection cannot
//! see values; this reads the checkpoint's parameters, one checkpoint in memory at a time and one
//! tensor's values copied at a time. Huge but finite values (3e38) are not flagged.

use std::path::Path;

use crate::checkpoint::{load_checkpoint, load_checkpoint_matching};
use crate::params::ParamSet;
use crate::problem::{Problem, ProblemKind};
use crate::schema::Schema;
use crate::zoo::Checkpoint;

/// Most tensors named in one problem's message.
const NAMED_TENSORS: usize = 3;

/// A tensor holding NaN or infinite values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonFiniteTensor {
    /// Normalised tensor name.
    pub name: String,
    /// Number of NaN values.
    pub nan: usize,
    /// Number of infinite values (either sign).
    pub inf: usize,
    /// Number of values in the tensor.
    pub len: usize,
}

/// The tensors of `params` holding NaN or infinite values, by name (empty when all are finite).
pub fn non_finite_tensors(params: &ParamSet) -> Vec<NonFiniteTensor> {
    params
        .iter()
        .filter_map(|(name, tensor)| {
            let values = tensor.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok()?;
            let nan = values.iter().filter(|v| v.is_nan()).count();
            let inf = values.iter().filter(|v| v.is_infinite()).count();
            (nan + inf > 0).then(|| NonFiniteTensor {
                name: name.to_string(),
                nan,
                inf,
                len: values.len(),
            })
        })
        .collect()
}

/// A `non_finite` problem naming `path`, the tensors of `params` holding NaN or infinite values
/// and their counts; `None` when every value is finite.
pub fn non_finite_problem(params: &ParamSet, path: &Path) -> Option<Problem> {
    let bad = non_finite_tensors(params);
    if bad.is_empty() {
        return None;
    }
    let named: Vec<String> = bad
        .iter()
        .take(NAMED_TENSORS)
        .map(|t| format!("`{}` ({} NaN, {} infinite of {})", t.name, t.nan, t.inf, t.len))
        .collect();
    let more = match bad.len().saturating_sub(NAMED_TENSORS) {
        0 => String::new(),
        k => format!(" and {k} more tensor(s)"),
    };
    Some(Problem::new(
        path,
        ProblemKind::NonFinite,
        format!(
            "{}: non-finite values in {}{more}; the run may have diverged",
            path.display(),
            named.join(", ")
        ),
    ))
}

/// A `non_finite` problem when a tensor of `checkpoint` (shown as `path`) holds NaN or infinite
/// values ([`non_finite_problem`]); `None` when every value is finite or the checkpoint cannot be
/// loaded (the header scan reports that). Reads every tensor the file declares: prefer
/// [`scan_non_finite_matching`] when the zoo's schema is known.
pub fn scan_non_finite(checkpoint: &Checkpoint, path: &Path) -> Option<Problem> {
    non_finite_problem(&load_checkpoint(checkpoint).ok()?, path)
}

/// [`scan_non_finite`] reading only the tensors of the zoo's reference `schema`
/// ([`load_checkpoint_matching`]): memory stays bounded by the schema whatever the header declares.
/// `None` as well when the checkpoint does not match the schema (inspection reports that).
pub fn scan_non_finite_matching(checkpoint: &Checkpoint, path: &Path, schema: &Schema) -> Option<Problem> {
    non_finite_problem(&load_checkpoint_matching(checkpoint, schema).ok()?, path)
}
