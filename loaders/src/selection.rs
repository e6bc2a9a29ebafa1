//! Selecting the runs, steps and tensors of a zoo to analyse, without copying folders.
//!
//! - **Runs**: glob patterns on run names ([`RunPatterns`]; `pythia-160m-seed*`, `*/stage1`; `*` also matches
//!   `/`), repeatable: a run is kept when it matches any of them.
//! - **Steps**: a [`StepSpec`] such as `0,1000:143000:10000`: comma-separated items, each one step (`0`,
//!   `20k`) or a range `start:stop[:stride]` that keeps the steps `s` with `start <= s <= stop` (both ends
//!   inclusive) and `s - start` a multiple of `stride` (default 1). `start` defaults to 0 and `stop` to no
//!   limit (`:5000`, `100k:`). Numbers take the multipliers of names (`k`, `M`, `B`).
//! - **Every K-th step**: of the steps left, the 1st, (K+1)-th, (2K+1)-th, ... and the last, counted over the
//!   union of the runs' steps so that all runs keep the same steps (pairs of seeds compare checkpoints at
//!   equal steps), and the last kept so that every run's final checkpoint stays the end point of its
//!   `to_final` pairs.
//! - **Tensors**: [`TensorFilter`] keeps the normalised tensor names matching an include pattern and no exclude
//!   pattern (e.g. leave out a classifier head); it applies to loaded parameter sets ([`ParamSet::filtered`]).
//!
//! [`Selection::apply`] filters runs and steps and says what it dropped ([`SelectionSummary`]); the zoo's
//! problems are kept as they are. Runs left without any checkpoint are dropped. A fork child whose parent
//! run is not selected keeps its `parent` field but has no fork pairs.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use regex::Regex;

use crate::layouts::step_name::parse_steps;
use crate::params::ParamSet;
use crate::zoo::Zoo;

/// A selection option that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A run pattern is not a valid glob.
    #[error("run pattern `{pattern}`: {reason}")]
    RunPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A step specification cannot be read.
    #[error("steps `{spec}`: {reason}")]
    Steps {
        /// The specification as given.
        spec: String,
        /// What is wrong, naming the item.
        reason: String,
    },
    /// A tensor pattern is not a valid regular expression.
    #[error("tensor pattern `{pattern}`: {reason}")]
    TensorPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
}

/// Glob patterns on run names; empty = every run.
#[derive(Debug, Clone, Default)]
pub struct RunPatterns {
    patterns: Vec<glob::Pattern>,
}

impl RunPatterns {
    /// Compiles glob patterns (`*`, `?`, `[abc]`, `[!abc]`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, SelectionError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                glob::Pattern::new(p.as_ref()).map_err(|e| SelectionError::RunPattern {
                    pattern: p.as_ref().to_string(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// True when no pattern is given, or `run` matches one.
    pub fn matches(&self, run: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(run))
    }
}

/// One item of a [`StepSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepItem {
    /// Exactly this step.
    Step(u64),
    /// `start <= s <= stop` with `s - start` a multiple of `stride` (at least 1).
    Range {
        /// First step (inclusive).
        start: u64,
        /// Last step (inclusive).
        stop: u64,
        /// Distance between kept steps.
        stride: u64,
    },
}

impl StepItem {
    /// True when `step` is one this item keeps.
    pub fn contains(&self, step: u64) -> bool {
        match *self {
            Self::Step(s) => s == step,
            Self::Range { start, stop, stride } => {
                (start..=stop).contains(&step) && (step - start).is_multiple_of(stride)
            }
        }
    }
}

/// A list of steps and step ranges, parsed from text such as `0,1000:143000:10000` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    items: Vec<(String, StepItem)>,
}

impl StepSpec {
    /// The items, as written and as read.
    pub fn items(&self) -> impl Iterator<Item = (&str, StepItem)> {
        self.items.iter().map(|(text, item)| (text.as_str(), *item))
    }

    /// True when an item keeps `step`.
    pub fn contains(&self, step: u64) -> bool {
        self.items.iter().any(|(_, item)| item.contains(step))
    }
}

impl FromStr for StepSpec {
    type Err = SelectionError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| SelectionError::Steps {
            spec: spec.to_string(),
            reason,
        };
        if spec.trim().is_empty() {
            return Err(error("no step given".into()));
        }
        let items = spec
            .split(',')
            .map(|text| {
                let text = text.trim();
                parse_item(text)
                    .map(|item| (text.to_string(), item))
                    .map_err(|reason| error(format!("item `{text}`: {reason}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { items })
    }
}

impl fmt::Display for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.items.iter().map(|(text, _)| text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

/// One item: `N` or `start:stop[:stride]` with optional ends.
fn parse_item(text: &str) -> Result<StepItem, String> {
    if text.is_empty() {
        return Err("empty item".into());
    }
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    let bound = |part: &str, default: u64| {
        if part.is_empty() {
            Ok(default)
        } else {
            parse_steps(part)
        }
    };
    match parts.as_slice() {
        [step] => parse_steps(step).map(StepItem::Step),
        [start, stop] | [start, stop, _] => {
            let (start, stop) = (bound(start, 0)?, bound(stop, u64::MAX)?);
            let stride = match parts.get(2) {
                Some(stride) => bound(stride, 1)?,
                None => 1,
            };
            if stride == 0 {
                return Err("the stride must be at least 1".into());
            }
            if start > stop {
                return Err(format!("the range starts after it stops ({start} > {stop})"));
            }
            Ok(StepItem::Range { start, stop, stride })
        }
        _ => Err("expected a step or start:stop[:stride]".into()),
    }
}

/// Tensor name patterns: a tensor is kept when it matches an include pattern (or none is given) and
/// no exclude pattern.
#[derive(Debug, Clone, Default)]
pub struct TensorFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl TensorFilter {
    /// Compiles the patterns (regular expressions, unanchored: `^classifier\.` for a prefix).
    pub fn new<S: AsRef<str>>(include: &[S], exclude: &[S]) -> Result<Self, SelectionError> {
        Ok(Self {
            include: any_of(include)?,
            exclude: any_of(exclude)?,
        })
    }

    /// True when the filter keeps every tensor.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    /// True when the tensor with the normalised name `name` is selected.
    pub fn keeps(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|re| re.is_match(name))
            && self.exclude.as_ref().is_none_or(|re| !re.is_match(name))
    }

    /// Keeps the selected tensors of `params`.
    pub fn apply(&self, params: ParamSet) -> ParamSet {
        params.filtered(self.include.as_ref(), self.exclude.as_ref())
    }

    /// A text that identifies the filter, for cache keys (results on filtered tensors differ); `None`
    /// when the filter keeps every tensor.
    pub fn cache_key(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            let pattern = |re: &Option<Regex>| re.as_ref().map_or(String::new(), |re| re.as_str().to_string());
            format!("include={};exclude={}", pattern(&self.include), pattern(&self.exclude))
        })
    }
}

/// One regex matching any of `patterns` (each checked on its own first, for a clear error).
fn any_of<S: AsRef<str>>(patterns: &[S]) -> Result<Option<Regex>, SelectionError> {
    let bad = |pattern: &str, e: regex::Error| SelectionError::TensorPattern {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    };
    let mut alternatives = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let pattern = pattern.as_ref();
        Regex::new(pattern).map_err(|e| bad(pattern, e))?;
        alternatives.push(format!("(?:{pattern})"));
    }
    if alternatives.is_empty() {
        return Ok(None);
    }
    let joined = alternatives.join("|");
    Regex::new(&joined).map(Some).map_err(|e| bad(&joined, e))
}

/// Which runs, steps and tensors to analyse; the default selects everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Runs to keep.
    pub runs: RunPatterns,
    /// Steps to keep, if limited.
    pub steps: Option<StepSpec>,
    /// Keep every K-th step (see the module docs).
    pub every: Option<NonZeroU64>,
    /// Tensors to keep when loading.
    pub tensors: TensorFilter,
}

/// What [`Selection::apply`] kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionSummary {
    /// Runs kept.
    pub runs_kept: usize,
    /// Runs dropped: not matched, or left without any checkpoint.
    pub runs_dropped: Vec<String>,
    /// Checkpoints kept.
    pub checkpoints_kept: usize,
    /// Checkpoints dropped.
    pub checkpoints_dropped: usize,
    /// Run patterns that match no run of the zoo (probably a typo).
    pub unmatched_run_patterns: Vec<String>,
    /// Step items that match no step of the selected runs.
    pub unmatched_step_items: Vec<String>,
}

impl fmt::Display for SelectionSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "selected {} runs and {} checkpoints; dropped {} runs and {} checkpoints",
            self.runs_kept,
            self.checkpoints_kept,
            self.runs_dropped.len(),
            self.checkpoints_dropped
        )?;
        if !self.unmatched_run_patterns.is_empty() {
            write!(f, "; no run matches {}", quoted(&self.unmatched_run_patterns))?;
        }
        if !self.unmatched_step_items.is_empty() {
            write!(f, "; no step matches {}", quoted(&self.unmatched_step_items))?;
        }
        Ok(())
    }
}

fn quoted(items: &[String]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

impl Selection {
    /// True when the selection keeps every run and step.
    pub fn keeps_all_checkpoints(&self) -> bool {
        self.runs.patterns.is_empty() && self.steps.is_none() && self.every.is_none()
    }

    /// The selected part of `zoo` (its problems unchanged) and what was dropped.
    pub fn apply(&self, zoo: &Zoo) -> (Zoo, SelectionSummary) {
        let mut summary = SelectionSummary {
            unmatched_run_patterns: self
                .runs
                .patterns
                .iter()
                .filter(|p| !zoo.runs.iter().any(|r| p.matches(&r.name)))
                .map(|p| p.as_str().to_string())
                .collect(),
            ..SelectionSummary::default()
        };
        let mut runs: Vec<_> = zoo
            .runs
            .iter()
            .filter(|r| self.runs.matches(&r.name))
            .cloned()
            .collect();
        if let Some(spec) = &self.steps {
            summary.unmatched_step_items = spec
                .items()
                .filter(|(_, item)| !runs.iter().flat_map(|r| r.steps()).any(|s| item.contains(s)))
                .map(|(text, _)| text.to_string())
                .collect();
            for run in &mut runs {
                run.checkpoints.retain(|c| spec.contains(c.step));
            }
        }
        if let Some(every) = self.every {
            let mut steps: Vec<u64> = runs.iter().flat_map(|r| r.steps()).collect();
            steps.sort_unstable();
            steps.dedup();
            let last = steps.last().copied();
            let kept: Vec<u64> = steps
                .iter()
                .enumerate()
                .filter(|(i, s)| (*i as u64).is_multiple_of(every.get()) || Some(**s) == last)
                .map(|(_, s)| *s)
                .collect();
            for run in &mut runs {
                run.checkpoints.retain(|c| kept.binary_search(&c.step).is_ok());
            }
        }
        runs.retain(|r| !r.checkpoints.is_empty());
        summary.runs_kept = runs.len();
        summary.runs_dropped = zoo
            .runs
            .iter()
            .filter(|r| !runs.iter().any(|k| k.name == r.name))
            .map(|r| r.name.clone())
            .collect();
        summary.checkpoints_kept = runs.iter().map(|r| r.checkpoints.len()).sum();
        summary.checkpoints_dropped = zoo.n_checkpoints() - summary.checkpoints_kept;
        let selected = Zoo {
            root: zoo.root.clone(),
            runs,
            problems: zoo.problems.clone(),
        };
        (selected, summary)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::formats::FileFormat;
    use crate::zoo::{Checkpoint, Layout, Run};

    fn spec(text: &str) -> StepSpec {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn step_spec_items() {
        assert_eq!(
            spec("0, 1000:143000:10000").items().map(|(_, i)| i).collect::<Vec<_>>(),
            [
                StepItem::Step(0),
                StepItem::Range {
                    start: 1000,
                    stop: 143_000,
                    stride: 10_000
                }
            ]
        );
        let s = spec("0,1000:143000:10000");
        let kept: Vec<u64> = (0..=143_000).filter(|&x| s.contains(x)).collect();
        let want: Vec<u64> = std::iter::once(0).chain((1000..=141_000).step_by(10_000)).collect();
        assert_eq!(kept, want);
        let inclusive = spec("100:300:100");
        assert!(inclusive.contains(100) && inclusive.contains(300) && !inclusive.contains(400));
        assert!(spec(":500").contains(0) && spec(":500").contains(500) && !spec(":500").contains(501));
        assert!(spec("1k:").contains(u64::MAX) && !spec("1k:").contains(999));
        assert!(spec("::1000").contains(3000) && !spec("::1000").contains(3001));
        assert_eq!(
            spec("20k,1M").items().map(|(_, i)| i).collect::<Vec<_>>(),
            [StepItem::Step(20_000), StepItem::Step(1_000_000)]
        );
        assert_eq!(spec(" 0,1k:2k ").to_string(), "0,1k:2k");
    }

    #[test]
    fn step_spec_errors_name_the_item() {
        for (text, reason) in [
            ("", "no step given"),
            ("0,,5", "item ``: empty item"),
            ("0,", "item ``: empty item"),
            ("abc", "item `abc`: `abc` is not a number of steps"),
            ("5:1", "item `5:1`: the range starts after it stops (5 > 1)"),
            ("0:10:0", "item `0:10:0`: the stride must be at least 1"),
            ("1:2:3:4", "item `1:2:3:4`: expected a step or start:stop[:stride]"),
            ("1.5", "item `1.5`: not a whole number of steps"),
        ] {
            let err = text.parse::<StepSpec>().unwrap_err().to_string();
            assert_eq!(err, format!("steps `{text}`: {reason}"));
        }
    }

    fn zoo(runs: &[(&str, &[u64])]) -> Zoo {
        Zoo {
            root: PathBuf::from("zoo"),
            runs: runs
                .iter()
                .map(|(name, steps)| Run {
                    name: name.to_string(),
                    dir: PathBuf::from(name),
                    checkpoints: steps
                        .iter()
                        .map(|&step| Checkpoint {
                            step,
                            files: vec![PathBuf::from(format!("{name}/step{step}/model.safetensors"))],
                            format: FileFormat::Safetensors,
                            layout: Layout::FolderPerStep,
                            tokens: None,
                        })
                        .collect(),
                    config: None,
                    logs: vec![],
                    parent: None,
                })
                .collect(),
            problems: vec![crate::Problem::new(
                "zoo/x",
                crate::problem::ProblemKind::MissingSteps,
                "kept",
            )],
        }
    }

    fn grid(zoo: &Zoo) -> Vec<(String, Vec<u64>)> {
        zoo.runs.iter().map(|r| (r.name.clone(), r.steps())).collect()
    }

    #[test]
    fn default_selection_keeps_everything() {
        let z = zoo(&[("seed1", &[0, 10]), ("seed2", &[0, 10])]);
        let selection = Selection::default();
        assert!(selection.keeps_all_checkpoints());
        let (selected, summary) = selection.apply(&z);
        assert_eq!(selected, z);
        assert_eq!(summary.checkpoints_dropped, 0);
        assert_eq!(summary.runs_kept, 2);
    }

    #[test]
    fn runs_steps_and_every_k() {
        let z = zoo(&[
            ("pythia-160m-seed1", &[0, 1000, 2000, 3000, 4000, 5000]),
            ("pythia-160m-seed2", &[0, 1000, 2000, 3000, 4000, 5000]),
            ("pythia-410m-seed1", &[0, 1000]),
        ]);
        let selection = Selection {
            runs: RunPatterns::new(&["pythia-160m-*", "gpt2-*"]).unwrap(),
            steps: Some(spec("0,1000:5000:1000,7000")),
            every: NonZeroU64::new(2),
            ..Selection::default()
        };
        assert!(!selection.keeps_all_checkpoints());
        let (selected, summary) = selection.apply(&z);
        assert_eq!(
            grid(&selected),
            [
                ("pythia-160m-seed1".to_string(), vec![0, 2000, 4000, 5000]),
                ("pythia-160m-seed2".to_string(), vec![0, 2000, 4000, 5000])
            ]
        );
        assert_eq!(selected.problems, z.problems, "problems are kept");
        assert_eq!(
            summary,
            SelectionSummary {
                runs_kept: 2,
                runs_dropped: vec!["pythia-410m-seed1".into()],
                checkpoints_kept: 8,
                checkpoints_dropped: 6,
                unmatched_run_patterns: vec!["gpt2-*".into()],
                unmatched_step_items: vec!["7000".into()],
            }
        );
        let text = summary.to_string();
        assert!(text.contains("dropped 1 runs and 6 checkpoints"), "{text}");
        assert!(
            text.contains("no run matches `gpt2-*`") && text.contains("no step matches `7000`"),
            "{text}"
        );
    }

    #[test]
    fn every_k_counts_over_the_union_of_steps_and_drops_emptied_runs() {
        let z = zoo(&[("a", &[0, 10, 20, 30]), ("b", &[10, 30]), ("c", &[10])]);
        let selection = Selection {
            every: NonZeroU64::new(2),
            ..Selection::default()
        };
        let (selected, summary) = selection.apply(&z);
        assert_eq!(
            grid(&selected),
            [("a".to_string(), vec![0, 20, 30]), ("b".to_string(), vec![30])]
        );
        assert_eq!(summary.runs_dropped, ["c"]);
        assert_eq!((summary.checkpoints_kept, summary.checkpoints_dropped), (4, 3));
    }

    #[test]
    fn run_patterns_are_globs_over_whole_names() {
        let p = RunPatterns::new(&["OLMo-7B/*", "seed[12]"]).unwrap();
        for (name, want) in [
            ("OLMo-7B/stage1", true),
            ("OLMo-7B", false),
            ("seed1", true),
            ("seed3", false),
            ("seed12", false),
        ] {
            assert_eq!(p.matches(name), want, "{name}");
        }
        let err = RunPatterns::new(&["seed[1"]).unwrap_err().to_string();
        assert!(err.starts_with("run pattern `seed[1`: "), "{err}");
    }

    #[test]
    fn tensor_filter_reuses_the_param_filter() {
        use candle_core::{Device, Tensor};
        let params = || {
            let t = |v: f32| Tensor::new(&[v], &Device::Cpu).unwrap();
            ParamSet::from_raw(vec![
                ("fc1.weight".into(), t(1.0)),
                ("fc2.weight".into(), t(2.0)),
                ("head.weight".into(), t(3.0)),
            ])
            .unwrap()
        };
        let names = |f: &TensorFilter| f.apply(params()).names().map(String::from).collect::<Vec<_>>();
        let none = TensorFilter::default();
        assert!(none.is_empty() && none.cache_key().is_none());
        assert_eq!(names(&none), ["fc1.weight", "fc2.weight", "head.weight"]);
        let f = TensorFilter::new(&["^fc", "^head"], &["^fc2"]).unwrap();
        assert_eq!(names(&f), ["fc1.weight", "head.weight"]);
        assert_eq!(
            f.cache_key().as_deref(),
            Some("include=(?:^fc)|(?:^head);exclude=(?:^fc2)")
        );
        let err = TensorFilter::new(&["("], &[]).unwrap_err().to_string();
        assert!(err.starts_with("tensor pattern `(`: "), "{err}");
    }
}
