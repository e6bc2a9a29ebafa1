//! Explicit zoo manifests: `lineage.toml` or `manifest.json` naming runs, steps, files and fork parents.
//!
//! ```toml
//! [[runs]]
//! name = "parent"
//! checkpoints = [ { step = 0, path = "parent/step0" }, { step = 100, path = "parent/step100.safetensors" } ]
//!
//! [[runs]]
//! name = "child_k100_a"
//! parent = { run = "parent", step = 100 }
//! config = "parent/config.json"     # optional
//! logs = ["child_k100_a/metrics.jsonl"]  # optional
//! checkpoints = [ { step = 200, path = "child_k100_a/step200" } ]
//! ```
//! Paths are relative to the manifest's folder; a path may name a file or a checkpoint folder.
//!
//! `lineage.toml` is always lineage's. Many tools write a `manifest.json`, so one is read as lineage's only
//! when it declares itself: a top-level `"lineage": 1` key (the manifest format version; the rest as above),
//! or, without that key, when it has exactly the schema above. Any other `manifest.json` is reported
//! ([`ProblemKind::ForeignManifest`]) and the zoo's layouts are discovered instead ([`read_json`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::discover::model_files;
use crate::formats::FileFormat;
use crate::problem::{Problem, ProblemKind};
use crate::zoo::{Checkpoint, ForkParent, Layout, Run, Zoo};

/// The manifest file's schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The runs of the zoo.
    pub runs: Vec<ManifestRun>,
}

/// One run in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRun {
    /// Unique run name.
    pub name: String,
    /// Fork parent, for Frankle-style instability analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ManifestParent>,
    /// Architecture `config.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// Training logs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<PathBuf>,
    /// Checkpoints of the run.
    pub checkpoints: Vec<ManifestCheckpoint>,
}

/// A fork parent in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestParent {
    /// Parent run name.
    pub run: String,
    /// Step of the parent the child was forked from.
    pub step: u64,
}

/// One checkpoint in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestCheckpoint {
    /// Training step.
    pub step: u64,
    /// File or checkpoint folder, relative to the manifest.
    pub path: PathBuf,
}

impl Manifest {
    /// Parses TOML (`.toml`) or JSON (anything else) text.
    pub fn parse(text: &str, is_toml: bool) -> Result<Self, String> {
        if is_toml {
            toml::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(text).map_err(|e| e.to_string())
        }
    }

    /// Writes the manifest as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a manifest always serialises")
    }
}

/// The manifest format version a `manifest.json` declares with its `"lineage"` key.
pub const JSON_MANIFEST_VERSION: u64 = 1;

/// What a `manifest.json` turned out to be.
#[derive(Debug)]
pub enum JsonManifest {
    /// Lineage's manifest: the zoo it describes (with its problems, an invalid manifest among them).
    Lineage(Zoo),
    /// Not lineage's (or unreadable): the warning to report before discovering the layouts.
    Foreign(Problem),
}

/// Reads a `manifest.json` if it declares itself lineage's (see the module documentation).
pub fn read_json(root: &Path, path: &Path) -> JsonManifest {
    let foreign = |kind, reason: String| {
        JsonManifest::Foreign(Problem::new(
            path,
            kind,
            format!(
                "{}: ignored, the layouts were discovered instead: {reason}",
                path.display()
            ),
        ))
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return foreign(ProblemKind::Unreadable, format!("cannot read: {e}")),
    };
    let mut json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(e) => return foreign(ProblemKind::ForeignManifest, format!("not JSON ({e})")),
    };
    let declared = json.as_object_mut().and_then(|o| o.remove("lineage"));
    let parsed = serde_json::from_value::<Manifest>(json).map_err(|e| e.to_string());
    match (declared, parsed) {
        (None, Ok(manifest)) => JsonManifest::Lineage(build(root, path, manifest)),
        (None, Err(reason)) => foreign(
            ProblemKind::ForeignManifest,
            format!(
                "not a lineage manifest (no `\"lineage\": {JSON_MANIFEST_VERSION}` key, and not lineage's schema: \
                 {reason})"
            ),
        ),
        (Some(version), _) if version.as_u64() != Some(JSON_MANIFEST_VERSION) => JsonManifest::Lineage(invalid(
            root,
            path,
            format!("unsupported `lineage` version {version} (this lineage reads {JSON_MANIFEST_VERSION})"),
        )),
        (Some(_), Ok(manifest)) => JsonManifest::Lineage(build(root, path, manifest)),
        (Some(_), Err(reason)) => JsonManifest::Lineage(invalid(root, path, reason)),
    }
}

/// Reads the zoo a manifest describes; problems (missing files, bad entries) are collected.
pub fn read(root: &Path, path: &Path) -> Zoo {
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| Manifest::parse(&text, is_toml))
    {
        Ok(manifest) => build(root, path, manifest),
        Err(reason) => invalid(root, path, reason),
    }
}

/// The empty zoo of a manifest that cannot be read, with the reason.
fn invalid(root: &Path, path: &Path, reason: String) -> Zoo {
    Zoo {
        root: root.to_path_buf(),
        runs: Vec::new(),
        problems: vec![Problem::new(
            path,
            ProblemKind::InvalidManifest,
            format!("{}: invalid manifest: {reason}", path.display()),
        )],
    }
}

/// The zoo a parsed manifest describes.
fn build(root: &Path, path: &Path, manifest: Manifest) -> Zoo {
    let mut zoo = Zoo {
        root: root.to_path_buf(),
        runs: Vec::new(),
        problems: Vec::new(),
    };
    let base = path.parent().unwrap_or(root);
    for entry in manifest.runs {
        if zoo.runs.iter().any(|r| r.name == entry.name) {
            zoo.problems.push(Problem::new(
                path,
                ProblemKind::InvalidManifest,
                format!(
                    "{}: run `{}` is listed twice; the first entry is used",
                    path.display(),
                    entry.name
                ),
            ));
            continue;
        }
        let mut checkpoints: Vec<Checkpoint> = Vec::new();
        for c in &entry.checkpoints {
            match resolve(&base.join(&c.path)) {
                Ok((files, format)) => {
                    if checkpoints.iter().any(|k| k.step == c.step) {
                        zoo.problems.push(Problem::new(
                            path,
                            ProblemKind::DuplicateStep,
                            format!(
                                "{}: run `{}` lists step {} twice; the first is used",
                                path.display(),
                                entry.name,
                                c.step
                            ),
                        ));
                        continue;
                    }
                    checkpoints.push(Checkpoint {
                        step: c.step,
                        files,
                        format,
                        layout: Layout::Manifest,
                        tokens: None,
                    });
                }
                Err(problem) => zoo.problems.push(problem),
            }
        }
        checkpoints.sort_by_key(|c| c.step);
        let dir = checkpoints
            .first()
            .map(|c| c.display_path())
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| base.to_path_buf());
        zoo.runs.push(Run {
            name: entry.name,
            dir,
            checkpoints,
            config: entry.config.map(|c| base.join(c)),
            logs: entry.logs.iter().map(|l| base.join(l)).collect(),
            parent: entry.parent.map(|p| ForkParent {
                run: p.run,
                step: p.step,
            }),
        });
    }
    let names: Vec<String> = zoo.runs.iter().map(|r| r.name.clone()).collect();
    for run in &zoo.runs {
        if let Some(parent) = &run.parent
            && !names.contains(&parent.run)
        {
            zoo.problems.push(Problem::new(
                path,
                ProblemKind::InvalidManifest,
                format!(
                    "{}: run `{}` names an unknown parent `{}`",
                    path.display(),
                    run.name,
                    parent.run
                ),
            ));
        }
    }
    zoo.runs.sort_by(|a, b| a.name.cmp(&b.name));
    zoo
}

/// A manifest path: a weights file, or a checkpoint folder holding one.
fn resolve(path: &Path) -> Result<(Vec<PathBuf>, FileFormat), Problem> {
    if path.is_file() {
        return FileFormat::from_path(path)
            .map(|f| (vec![path.to_path_buf()], f))
            .ok_or_else(|| {
                Problem::new(
                    path,
                    ProblemKind::Malformed,
                    format!("{}: unknown checkpoint format", path.display()),
                )
            });
    }
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| {
                Problem::new(
                    path,
                    ProblemKind::Unreadable,
                    format!("{}: cannot list folder: {e}", path.display()),
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        return model_files(path, &files)?.ok_or_else(|| {
            Problem::new(
                path,
                ProblemKind::Empty,
                format!("{}: the folder holds no weights file", path.display()),
            )
        });
    }
    Err(Problem::new(
        path,
        ProblemKind::Unreadable,
        format!("{}: listed in the manifest but missing", path.display()),
    ))
}
