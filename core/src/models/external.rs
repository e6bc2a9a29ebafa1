//! The `external` model family: any framework can be analysed through a command that evaluates one
//! parameter set on the eval data.
//!
//! # Protocol
//!
//! A run's `config.json` names the command:
//!
//! ```json
//! {"arch": "external", "command": ["python3", "eval.py"]}
//! ```
//!
//! For every parameter set to evaluate (a checkpoint, or a point theta(a) = (1-a)·A + a·B of an
//! interpolation path, blended in f32 by lineage), lineage runs
//!
//! ```text
//! command... PARAMS.safetensors DATA.safetensors
//! ```
//!
//! in the folder holding `config.json`, with an empty stdin. The two files are temporary:
//!
//! - `PARAMS.safetensors`: the parameter set as f32 tensors, with lineage's normalised names
//!   (wrapper prefixes such as `module.` stripped, integer buffers left out).
//! - `DATA.safetensors`: the eval data, whatever file it was read from: `inputs` (F32 `[N, D]`) or
//!   `input_ids` (U32 `[N, D]`), `labels` (U32 `[N]`; absent for language-model data, token ids
//!   without labels; I64 `[N, D]` for per-token labels, -100 = not scored) and, if present,
//!   `attention_mask` and `token_type_ids` (U32 `[N, D]`).
//!
//! The command must exit with status 0 and print exactly `N` lines on stdout, one per example in
//! order, each a JSON object `{"loss": <cross-entropy in nats>, "correct": <bool>}` (other keys are
//! ignored, blank lines skipped, `"loss": null` means NaN). Anything else (non-zero exit, a line that
//! is not such an object, too few or too many lines) is an error naming the command, with the end of
//! its stderr. Several evaluations may run at once, each with its own files.
//!
//! Results are cached like any other: the cache key holds the command and the SHA-256 of every
//! command argument that is a file, so editing the script invalidates old results.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};
use lineage_loaders::ParamSet;

use crate::data::eval_data::{ATTENTION_MASK, EvalData, INPUT_IDS, INPUTS, LABELS, TOKEN_TYPE_IDS};
use crate::error::{CoreError, Result};
use crate::methods::interpolation::blend;
use crate::models::evaluator::{EvalResult, Evaluator, Prepared, check_shapes};
use crate::pipeline::keys::hash_file;

/// Lines of the command's stderr quoted in errors.
const STDERR_LINES: usize = 8;

/// Evaluates parameter sets by running an external command (see the module doc for the protocol).
#[derive(Debug)]
pub struct ExternalEvaluator {
    /// Identifies this evaluator, so checkpoints prepared by another one are refused.
    id: u64,
    /// Program and arguments.
    command: Vec<String>,
    /// Working directory of the command (the folder of `config.json`).
    workdir: PathBuf,
    /// Description, part of cache keys: command and digests of its file arguments.
    description: String,
    /// Temporary folder holding the eval data file and the parameter files.
    tmp: tempfile::TempDir,
    /// The eval data as safetensors.
    data_file: PathBuf,
    /// Number of eval examples.
    n_examples: usize,
    /// Names and shapes every parameter set must have (those of the reference checkpoint).
    shapes: BTreeMap<String, Vec<usize>>,
}

/// A checkpoint prepared by an [`ExternalEvaluator`]: its parameters, checked.
#[derive(Debug)]
struct ExternalPoint {
    evaluator: u64,
    params: ParamSet,
}

impl ExternalEvaluator {
    /// The evaluator named by an already parsed `config.json` at `path` (`{"arch": "external",
    /// "command": [...]}`) for `data`; parameter sets must have the names and shapes of `reference`.
    pub fn from_config_json(
        value: &serde_json::Value,
        path: &Path,
        reference: &ParamSet,
        data: &EvalData,
    ) -> Result<Self> {
        let command: Vec<String> = value
            .get("command")
            .and_then(|c| c.as_array())
            .and_then(|c| c.iter().map(|a| a.as_str().map(String::from)).collect::<Option<_>>())
            .filter(|c: &Vec<String>| c.first().is_some_and(|p| !p.is_empty()))
            .ok_or_else(|| {
                CoreError::config(
                    path,
                    "`command` must be a non-empty list of strings, e.g. [\"python3\", \"eval.py\"]",
                )
            })?;
        let workdir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::new(command, workdir, reference, data)
    }

    /// An evaluator running `command` in `workdir`.
    pub fn new(command: Vec<String>, workdir: PathBuf, reference: &ParamSet, data: &EvalData) -> Result<Self> {
        if command.is_empty() {
            return Err(CoreError::InvalidArgument("external evaluator: empty command".into()));
        }
        let mut description = format!("external `{}`", command.join(" "));
        for arg in &command {
            let file = workdir.join(arg);
            if file.is_file() {
                let digest = hash_file(&file)?;
                description.push_str(&format!(" [{arg} sha256 {}]", &digest[..16]));
            }
        }
        description.push_str(&format!(" on {} examples", data.len()));
        let tmp = tempfile::Builder::new()
            .prefix("lineage-external-")
            .tempdir()
            .map_err(|e| CoreError::io(&std::env::temp_dir(), e))?;
        let data_file = tmp.path().join("data.safetensors");
        write_data(data, &data_file)?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            command,
            workdir,
            description,
            tmp,
            data_file,
            n_examples: data.len(),
            shapes: reference.shapes(),
        })
    }

    /// The command as typed, for messages.
    fn command_text(&self) -> String {
        self.command.join(" ")
    }

    fn error(&self, problem: impl Into<String>) -> CoreError {
        CoreError::External {
            command: self.command_text(),
            problem: problem.into(),
        }
    }

    fn point<'a>(&self, prepared: &'a Prepared) -> Result<&'a ExternalPoint> {
        prepared
            .downcast_ref::<ExternalPoint>()
            .filter(|p| p.evaluator == self.id)
            .ok_or_else(|| CoreError::InvalidArgument("checkpoint was prepared by a different evaluator".into()))
    }

    /// Writes `params` to a fresh temporary file, runs the command on it and parses its output.
    fn run(&self, params: &HashMap<String, Tensor>) -> Result<EvalResult> {
        static NEXT_FILE: AtomicU64 = AtomicU64::new(0);
        let file = self.tmp.path().join(format!(
            "params-{}.safetensors",
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        candle_core::safetensors::save(params, &file)
            .map_err(|e| self.error(format!("cannot write {}: {e}", file.display())))?;
        let output = Command::new(&self.command[0])
            .args(&self.command[1..])
            .arg(&file)
            .arg(&self.data_file)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .output();
        // The parameter file is only needed while the command runs; a failed removal only leaves
        // it in the temporary folder, which is removed with the evaluator.
        let _ = std::fs::remove_file(&file);
        let output = output.map_err(|e| self.error(format!("cannot run in {}: {e}", self.workdir.display())))?;
        if !output.status.success() {
            return Err(self.error(format!("{}{}", output.status, stderr_tail(&output.stderr))));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        parse_output(&stdout, self.n_examples).map_err(|problem| self.error(problem))
    }
}

/// The last lines of a command's stderr, as `; stderr: ...`, or nothing.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
    format!("; stderr: {}", tail.join(" | "))
}

/// Parses `n` lines `{"loss": f, "correct": b}` into a result.
fn parse_output(stdout: &str, n: usize) -> std::result::Result<EvalResult, String> {
    let mut losses = Vec::with_capacity(n);
    let mut correct = Vec::with_capacity(n);
    for (number, line) in stdout.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| {
            let shown: String = line.chars().take(80).collect();
            format!("output line {}: {why}: `{shown}`", number + 1)
        };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|_| bad("not JSON"))?;
        let loss = match value.get("loss") {
            Some(serde_json::Value::Null) => f32::NAN,
            Some(v) => v.as_f64().ok_or_else(|| bad("`loss` is not a number"))? as f32,
            None => return Err(bad("no `loss`")),
        };
        let ok = value
            .get("correct")
            .and_then(|c| c.as_bool())
            .ok_or_else(|| bad("`correct` missing or not true/false"))?;
        losses.push(loss);
        correct.push(ok);
    }
    if losses.len() != n {
        return Err(format!(
            "printed {} result lines for {n} eval examples (expected one JSON line per example)",
            losses.len()
        ));
    }
    Ok(EvalResult::from_examples(losses, correct))
}

/// Writes the eval data as the protocol's safetensors file.
fn write_data(data: &EvalData, path: &Path) -> Result<()> {
    let what = |e: candle_core::Error| CoreError::data(path, format!("cannot write for the external evaluator: {e}"));
    let mut tensors = HashMap::new();
    let name = if data.is_token_ids() { INPUT_IDS } else { INPUTS };
    tensors.insert(name.to_string(), data.inputs.clone());
    if data.has_labels() {
        let labels = Tensor::from_vec(data.labels.clone(), data.labels.len(), &Device::Cpu).map_err(what)?;
        tensors.insert(LABELS.to_string(), labels);
    }
    if let Some(labels) = &data.token_labels {
        tensors.insert(LABELS.to_string(), labels.clone());
    }
    if let Some(mask) = &data.attention_mask {
        tensors.insert(ATTENTION_MASK.to_string(), mask.clone());
    }
    if let Some(types) = &data.token_type_ids {
        tensors.insert(TOKEN_TYPE_IDS.to_string(), types.clone());
    }
    candle_core::safetensors::save(&tensors, path).map_err(what)
}

/// The named tensors of a parameter set.
fn tensors(params: &ParamSet) -> HashMap<String, Tensor> {
    params.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

impl Evaluator for ExternalEvaluator {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn n_examples(&self) -> usize {
        self.n_examples
    }

    fn prepare(&self, params: &ParamSet) -> Result<Prepared> {
        check_shapes(&self.shapes, params, &self.description)?;
        Ok(Prepared::new(ExternalPoint {
            evaluator: self.id,
            params: params.clone(),
        }))
    }

    fn evaluate_prepared(&self, point: &Prepared) -> Result<EvalResult> {
        self.run(&tensors(&self.point(point)?.params))
    }

    fn evaluate_path_prepared(&self, a: &Prepared, b: &Prepared, alphas: &[f64]) -> Result<Vec<EvalResult>> {
        let (a, b) = (&self.point(a)?.params, &self.point(b)?.params);
        alphas
            .iter()
            .map(|&alpha| self.run(&blend(a.iter(), |name| b.get(name), alpha)?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_line_per_example() {
        let r = parse_output(
            "{\"loss\": 0.5, \"correct\": true}\n\n{\"loss\": 1.5, \"correct\": false, \"x\": 1}\n",
            2,
        )
        .unwrap();
        assert_eq!((r.loss, r.error), (1.0, 0.5));
        let r = parse_output("{\"loss\": null, \"correct\": false}", 1).unwrap();
        assert!(r.loss.is_nan());
    }

    #[test]
    fn malformed_output_is_described() {
        let cases = [
            ("hello", 1, "line 1: not JSON"),
            ("{\"correct\": true}", 1, "no `loss`"),
            ("{\"loss\": \"a\", \"correct\": true}", 1, "`loss` is not a number"),
            ("{\"loss\": 1, \"correct\": 1}", 1, "`correct` missing"),
            ("{\"loss\": 1, \"correct\": true}", 2, "printed 1 result lines for 2"),
            ("", 1, "printed 0 result lines"),
        ];
        for (stdout, n, want) in cases {
            let err = parse_output(stdout, n).unwrap_err();
            assert!(err.contains(want), "{stdout}: {err}");
        }
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let text: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let tail = stderr_tail(text.as_bytes());
        assert!(
            tail.starts_with("; stderr: line 12 |") && tail.ends_with("line 19"),
            "{tail}"
        );
        assert_eq!(stderr_tail(b"\n"), "");
    }
}
