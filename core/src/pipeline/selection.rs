//! Which part of the zoo and of the eval data an analysis reads, without copying folders: run globs,
//! steps, the first N eval examples and the tensors (`lineage_loaders::selection` does the matching).
//!
//! Selection enters cache keys only where it changes a result: runs and steps only choose which
//! units exist (selecting fewer runs reuses the cached paths of the rest); the number of examples is
//! part of the eval data's key and the tensor filter part of each checkpoint's key.

use std::num::NonZeroU64;
use std::path::Path;

use serde::{Deserialize, Serialize};

use lineage_loaders::Zoo;
use lineage_loaders::selection::{RunPatterns, Selection, SelectionError, TensorFilter};

use crate::data::eval_data::EvalData;
use crate::error::CoreError;
use crate::pipeline::keys::{Key, hash_file, hash_parts};

/// What an analysis reads of the zoo and the eval data; the default reads everything. Kept as the
/// text the user gave, so that `report.json` and the plan file say it the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionOptions {
    /// Run-name globs (`pythia-160m-seed*`); a run is kept when any matches. Empty: every run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// Steps to keep: steps and ranges `start:stop[:stride]`, comma-separated (`0,1000:143000:10000`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<String>,
    /// Of the steps left, keep every K-th (and the last), the same steps for every run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Evaluate only the first N examples of the eval data (Juneja et al. use 512).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_examples: Option<usize>,
    /// Tensor-name regexes: only tensors matching one of them are read (empty: every tensor).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Tensor-name regexes: tensors matching one of them are never read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl SelectionOptions {
    /// True when every run, step, example and tensor is read.
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }

    /// True when every run and step is kept (the examples and tensors may still be narrowed).
    pub fn keeps_all_checkpoints(&self) -> bool {
        self.runs.is_empty() && self.steps.is_none() && self.every.is_none()
    }

    /// Checks every pattern, step list and count, so a typo fails before any work.
    pub fn validate(&self) -> Result<(), CoreError> {
        self.checkpoints()?;
        self.tensors()?;
        if self.max_examples == Some(0) {
            return Err(CoreError::InvalidArgument("--max-examples must be at least 1".into()));
        }
        Ok(())
    }

    /// The selected runs and steps of `zoo` (its problems unchanged), and a warning for each run
    /// pattern or step item that matches nothing (probably a typo).
    pub fn select(&self, zoo: &Zoo) -> Result<(Zoo, Vec<String>), CoreError> {
        let selection = self.checkpoints()?;
        if self.keeps_all_checkpoints() {
            return Ok((zoo.clone(), Vec::new()));
        }
        let (selected, summary) = selection.apply(zoo);
        let root = zoo.root.display();
        let mut warnings: Vec<String> = summary
            .unmatched_run_patterns
            .iter()
            .map(|p| format!("{root}: no run matches --runs `{p}`"))
            .collect();
        warnings.extend(
            summary
                .unmatched_step_items
                .iter()
                .map(|s| format!("{root}: no step of the selected runs matches --steps `{s}`")),
        );
        Ok((selected, warnings))
    }

    /// The tensor filter of `include` and `exclude`.
    pub fn tensors(&self) -> Result<TensorFilter, CoreError> {
        TensorFilter::new(&self.include, &self.exclude).map_err(invalid)
    }

    /// Reads the eval data at `path`, keeps its first `max_examples` examples, and gives the key of
    /// what was kept (the file's SHA-256 alone when every example is kept, so caches stay valid).
    pub fn eval_data(&self, path: &Path) -> Result<(EvalData, Key), CoreError> {
        let data = EvalData::load(path)?;
        let file_key = hash_file(path)?;
        match self.max_examples {
            Some(n) if n < data.len() => {
                let key = hash_parts(&[file_key.as_str(), &format!("first {n} examples")]);
                Ok((data.first(n)?, key))
            }
            _ => Ok((data, file_key)),
        }
    }

    /// The run and step part of the selection, compiled.
    fn checkpoints(&self) -> Result<Selection, CoreError> {
        let steps = self.steps.as_deref().map(str::parse).transpose().map_err(invalid)?;
        let every = match self.every {
            None => None,
            Some(k) => Some(
                NonZeroU64::new(k).ok_or_else(|| CoreError::InvalidArgument("--every must be at least 1".into()))?,
            ),
        };
        Ok(Selection {
            runs: RunPatterns::new(&self.runs).map_err(invalid)?,
            steps,
            every,
            tensors: TensorFilter::default(),
        })
    }
}

/// A selection the user gave that cannot be used.
fn invalid(e: SelectionError) -> CoreError {
    CoreError::InvalidArgument(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_steps_and_counts_are_named() {
        let bad = [
            SelectionOptions {
                runs: vec!["seed[".into()],
                ..Default::default()
            },
            SelectionOptions {
                steps: Some("10:x".into()),
                ..Default::default()
            },
            SelectionOptions {
                include: vec!["(".into()],
                ..Default::default()
            },
            SelectionOptions {
                every: Some(0),
                ..Default::default()
            },
            SelectionOptions {
                max_examples: Some(0),
                ..Default::default()
            },
        ];
        for options in bad {
            let err = options.validate().unwrap_err().to_string();
            assert!(
                ["seed[", "10:x", "(", "--every", "--max-examples"]
                    .iter()
                    .any(|s| err.contains(s)),
                "{err}"
            );
        }
        assert!(SelectionOptions::default().validate().is_ok());
        assert!(SelectionOptions::default().is_everything());
    }
}
