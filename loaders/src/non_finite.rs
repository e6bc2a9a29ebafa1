//! The opt-in value scan of `lineage inspect --scan`: every tensor of a checkpoint read and checked
//! for NaN and ±inf (a run that diverged, or a file written mid-overflow). Header inspection cannot
//! see values; this reads the whole checkpoint, one checkpoint in memory at a time.

use std::path::Path;

use candle_core::DType;

use crate::checkpoint::load_checkpoint;
use crate::problem::{Problem, ProblemKind};
use crate::zoo::Checkpoint;

/// Most tensors named in one problem's message.
const NAMED_TENSORS: usize = 3;

/// A `non_finite` problem when a tensor of `checkpoint` (shown as `path`) holds NaN or infinite
/// values, naming the tensors and the counts; `None` when every value is finite or the checkpoint
/// cannot be loaded (the header scan reports that).
pub fn scan_non_finite(checkpoint: &Checkpoint, path: &Path) -> Option<Problem> {
    let params = load_checkpoint(checkpoint).ok()?;
    let mut bad: Vec<(String, usize, usize, usize)> = Vec::new();
    for (name, tensor) in params.iter() {
        let Ok(values) = tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        else {
            continue;
        };
        let nan = values.iter().filter(|v| v.is_nan()).count();
        let inf = values.iter().filter(|v| v.is_infinite()).count();
        if nan + inf > 0 {
            bad.push((name.to_string(), nan, inf, values.len()));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let named: Vec<String> = bad
        .iter()
        .take(NAMED_TENSORS)
        .map(|(name, nan, inf, n)| format!("`{name}` ({nan} NaN, {inf} infinite of {n})"))
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
