//! Finding the runs x steps grid of a zoo folder, whatever its layout.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use crate::formats::FileFormat;
use crate::layouts::{self, hf_hub};
use crate::manifest::{self, JsonManifest};
use crate::problem::{Problem, ProblemKind};
use crate::zoo::{Checkpoint, Layout, Run, Zoo};

/// Folders deeper than this below the root are not searched.
const MAX_DEPTH: usize = 8;

/// Step folders: `step1500`, `step_1500`, `global_step1500`, `checkpoint-500`, `ckpt_10`, `iter_7`.
static STEP_DIR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:global_step|step|checkpoint|ckpt|iter|iteration)[-_=]?(\d+)$").unwrap());
/// A step token inside a file name: `epoch=3-step=1000`, `seed0_step100`, `step100`.
static STEP_IN_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:^|[^a-z0-9])(?:global_)?step[-_=]?(\d+)").unwrap());
/// A trailing counter after a generic tag: `ckpt_1000`, `seed1_checkpoint-20`, `model_300`.
static TAGGED_COUNTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^a-z0-9])(?:ckpt|checkpoint|iter|iteration|model|weights)[-_=]?(\d+)$").unwrap()
});
/// Epoch tokens removed when deriving a run name from a file name.
static EPOCH_TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)epoch[-_=]?\d+").unwrap());
/// Shards of a sharded checkpoint: `model-00001-of-00002.safetensors`.
static SHARD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"-\d+-of-\d+\.[a-z]+$").unwrap());

/// Side files that sit next to model weights in checkpoint folders but are not weights.
const NOT_WEIGHTS: [&str; 6] = [
    "optimizer",
    "scheduler",
    "rng_state",
    "training_args",
    "scaler",
    "trainer_state",
];

/// Discovers the zoo under `root`. Never fails: problems are collected in [`Zoo::problems`].
/// `lineage.toml` is authoritative; a `manifest.json` only when it is lineage's (see
/// [`manifest::read_json`]), else it is reported and the layouts are discovered.
pub fn discover(root: &Path) -> Zoo {
    let toml = root.join("lineage.toml");
    if toml.is_file() {
        return manifest::read(root, &toml);
    }
    let json = root.join("manifest.json");
    let mut problems = Vec::new();
    if json.is_file() {
        match manifest::read_json(root, &json) {
            JsonManifest::Lineage(zoo) => return zoo,
            JsonManifest::Foreign(problem) => problems.push(problem),
        }
    }
    let mut walker = Walker {
        root: root.to_path_buf(),
        found: Vec::new(),
        side_files: Vec::new(),
        problems,
        visited: HashSet::new(),
    };
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => walker.walk(root, 0),
        Ok(_) => walker.problems.push(Problem::new(
            root,
            ProblemKind::Unreadable,
            format!("{}: not a folder", root.display()),
        )),
        Err(e) => walker.problems.push(Problem::new(
            root,
            ProblemKind::Unreadable,
            format!("{}: cannot read: {e}", root.display()),
        )),
    }
    walker.into_zoo()
}

/// A checkpoint found during the walk, before grouping into runs.
pub(crate) struct Found {
    /// Run name.
    pub run: String,
    /// The run's folder.
    pub run_dir: PathBuf,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

struct Walker {
    root: PathBuf,
    found: Vec<Found>,
    /// `config.json`, `metrics.jsonl`, `*.csv` and `trainer_state.json` seen anywhere.
    side_files: Vec<PathBuf>,
    problems: Vec<Problem>,
    visited: HashSet<PathBuf>,
}

/// The entries of one folder, split by kind; names already checked to be UTF-8.
#[derive(Default)]
pub(crate) struct Listing {
    /// Files (symbolic links followed), sorted.
    pub files: Vec<PathBuf>,
    /// Folders (symbolic links followed), sorted.
    pub dirs: Vec<PathBuf>,
}

impl Walker {
    fn walk(&mut self, dir: &Path, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match std::fs::canonicalize(dir) {
            Ok(canonical) => {
                if !self.visited.insert(canonical.clone()) {
                    self.problems.push(Problem::new(
                        dir,
                        ProblemKind::SymlinkLoop,
                        format!(
                            "{}: skipped: leads back to {} (symlink loop or second link to the same folder)",
                            dir.display(),
                            canonical.display()
                        ),
                    ));
                    return;
                }
            }
            Err(e) => {
                self.problems.push(Problem::new(
                    dir,
                    ProblemKind::SymlinkLoop,
                    format!("{}: skipped: cannot resolve: {e}", dir.display()),
                ));
                return;
            }
        }
        if depth == 0 && hf_hub::is_repo(dir) {
            self.add_hub_repos(&[dir.to_path_buf()]);
            return;
        }
        let Some(listing) = self.list(dir) else { return };
        for file in &listing.files {
            let name = file_name(file);
            if matches!(name, "config.json" | "metrics.jsonl" | "trainer_state.json") || name.ends_with(".csv") {
                self.side_files.push(file.clone());
            }
        }
        if depth > 0
            && let Some(step_folder) = layouts::step_folder(dir, &listing.files, &listing.dirs).transpose()
        {
            match (step_folder, model_files(dir, &listing.files)) {
                (Ok(folder), Ok(Some((files, format)))) => {
                    let run_dir = dir.parent().unwrap_or(dir).to_path_buf();
                    self.found.push(Found {
                        run: self.run_name(&run_dir, folder.run.as_deref()),
                        run_dir,
                        checkpoint: Checkpoint {
                            step: folder.step,
                            files,
                            format,
                            layout: folder.layout,
                            tokens: folder.tokens,
                        },
                    });
                    return;
                }
                (Err(reason), Ok(Some(_))) => {
                    self.problems.push(Problem::new(
                        dir,
                        ProblemKind::AmbiguousName,
                        format!("{}: skipped: holds weights but {reason}", dir.display()),
                    ));
                    return;
                }
                (_, Ok(None)) => {}
                (_, Err(problem)) => {
                    self.problems.push(problem);
                    return;
                }
            }
        }
        for file in &listing.files {
            let Some(format) = FileFormat::from_path(file) else {
                continue;
            };
            if is_side_file(file) {
                continue;
            }
            let Some((step, prefix)) = step_of_file(file) else {
                continue;
            };
            let run_dir = dir.to_path_buf();
            self.found.push(Found {
                run: self.run_name(&run_dir, prefix.as_deref()),
                run_dir,
                checkpoint: Checkpoint {
                    step,
                    files: vec![file.clone()],
                    format,
                    layout: Layout::FilePerStep,
                    tokens: None,
                },
            });
        }
        self.add_final_save(dir, &listing);
        let (repos, mut subdirs): (Vec<PathBuf>, Vec<PathBuf>) =
            listing.dirs.into_iter().partition(|d| hf_hub::is_repo(d));
        self.add_hub_repos(&repos);
        // Real folders first, so that an alias (OLMo's `latest-unsharded` link) is the copy skipped.
        subdirs.sort_by_key(|d| d.is_symlink());
        for sub in &subdirs {
            self.walk(sub, depth + 1);
        }
    }

    /// A Hugging Face Trainer's final save: weights without a step in their names beside the run's
    /// `checkpoint-N` folders (`trainer.save_model(output_dir)` after training), at the step that
    /// `trainer_state.json` beside them records (`global_step`). Nothing is added when a step folder
    /// of that step exists (the same weights: training ended on a save step); without a readable
    /// `global_step`, a problem says why the weights are not analysed.
    fn add_final_save(&mut self, dir: &Path, listing: &Listing) {
        let steps: Vec<u64> = listing.dirs.iter().filter_map(|d| step_of_dir(d)).collect();
        let unnamed = listing
            .files
            .iter()
            .any(|f| FileFormat::from_path(f).is_some() && !is_side_file(f) && step_of_file(f).is_none());
        if steps.is_empty() || !unnamed {
            return;
        }
        let Ok(Some((files, format))) = model_files(dir, &listing.files) else {
            return;
        };
        match trainer_global_step(&dir.join("trainer_state.json")) {
            Ok(step) if steps.contains(&step) => {}
            Ok(step) => self.found.push(Found {
                run: self.run_name(dir, None),
                run_dir: dir.to_path_buf(),
                checkpoint: Checkpoint {
                    step,
                    files,
                    format,
                    layout: Layout::HfTrainer,
                    tokens: None,
                },
            }),
            Err(why) => self.problems.push(Problem::new(
                &files[0],
                ProblemKind::AmbiguousName,
                format!(
                    "{}: skipped: weights without a step beside step folders (a final save?), and {why}",
                    files[0].display()
                ),
            )),
        }
    }

    /// Adds the checkpoints of Hugging Face hub repositories (see [`hf_hub`]).
    fn add_hub_repos(&mut self, repos: &[PathBuf]) {
        if repos.is_empty() {
            return;
        }
        let found = hf_hub::discover_repos(repos, &mut |dir| self.list(dir));
        self.found.extend(found.checkpoints);
        self.side_files.extend(found.side_files);
        self.problems.extend(found.problems);
    }

    /// Lists a folder; unreadable entries and non-UTF-8 names become problems.
    fn list(&mut self, dir: &Path) -> Option<Listing> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems.push(Problem::new(
                    dir,
                    ProblemKind::Unreadable,
                    format!("{}: cannot list folder: {e}", dir.display()),
                ));
                return None;
            }
        };
        let mut listing = Listing::default();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.problems.push(Problem::new(
                        dir,
                        ProblemKind::Unreadable,
                        format!("{}: cannot read an entry: {e}", dir.display()),
                    ));
                    continue;
                }
            };
            let path = entry.path();
            if entry.file_name().to_str().is_none() {
                self.problems.push(Problem::new(
                    &path,
                    ProblemKind::NonUtf8Name,
                    format!("{}: skipped: the name is not valid UTF-8", path.display()),
                ));
                continue;
            }
            // Follows symlinks; a dangling link is reported as unreadable.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => listing.dirs.push(path),
                Ok(m) if m.is_file() => listing.files.push(path),
                Ok(_) => {}
                Err(e) => self.problems.push(Problem::new(
                    &path,
                    ProblemKind::Unreadable,
                    format!("{}: skipped: {e}", path.display()),
                )),
            }
        }
        listing.files.sort();
        listing.dirs.sort();
        Some(listing)
    }

    /// Run name: the run folder relative to the root (or the root's own name), plus a file-name prefix.
    fn run_name(&self, run_dir: &Path, prefix: Option<&str>) -> String {
        let rel = run_dir
            .strip_prefix(&self.root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .map(|r| {
                r.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            });
        match (rel, prefix) {
            (Some(rel), Some(prefix)) => format!("{rel}/{prefix}"),
            (Some(rel), None) => rel,
            (None, Some(prefix)) => prefix.to_string(),
            (None, None) => file_name(&self.root).to_string(),
        }
    }

    fn into_zoo(mut self) -> Zoo {
        let mut runs: BTreeMap<String, Run> = BTreeMap::new();
        for found in self.found {
            let run = runs.entry(found.run.clone()).or_insert_with(|| Run {
                name: found.run.clone(),
                dir: found.run_dir.clone(),
                checkpoints: Vec::new(),
                config: None,
                logs: Vec::new(),
                parent: None,
            });
            if let Some(existing) = run.checkpoints.iter_mut().find(|c| c.step == found.checkpoint.step) {
                let (keep, drop) = if preference(&found.checkpoint) < preference(existing) {
                    (found.checkpoint, existing.clone())
                } else {
                    (existing.clone(), found.checkpoint)
                };
                self.problems.push(Problem::new(
                    drop.display_path(),
                    ProblemKind::DuplicateStep,
                    format!(
                        "{}: run `{}` step {} found twice; using {}",
                        drop.display_path().display(),
                        run.name,
                        keep.step,
                        keep.display_path().display()
                    ),
                ));
                *existing = keep;
            } else {
                run.checkpoints.push(found.checkpoint);
            }
        }
        let mut runs: Vec<Run> = runs.into_values().collect();
        for run in &mut runs {
            run.checkpoints.sort_by_key(|c| c.step);
            attach_side_files(run, &self.side_files);
        }
        self.problems.extend(grid_problems(&self.root, &runs));
        if runs.is_empty() {
            self.problems.push(Problem::new(
                &self.root,
                ProblemKind::NoCheckpoints,
                format!(
                    "{}: no checkpoints found (looked for step folders, checkpoint-N folders, folders and files \
                     with a step in their name, Hugging Face hub caches, and lineage.toml / manifest.json)",
                    self.root.display()
                ),
            ));
        }
        Zoo {
            root: self.root,
            runs,
            problems: self.problems,
        }
    }
}

/// The `global_step` an HF Trainer's `trainer_state.json` at `path` records; why not, as text.
fn trainer_global_step(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|_| format!("no readable {}", path.display()))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|state| state.get("global_step")?.as_u64())
        .ok_or_else(|| format!("{} records no `global_step`", path.display()))
}

/// Lower is preferred when a (run, step) is found twice: safetensors over pickles, folders over files.
fn preference(c: &Checkpoint) -> (u8, u8) {
    let format = match c.format {
        FileFormat::Safetensors => 0,
        FileFormat::TorchPickle => 1,
        FileFormat::Npz => 2,
    };
    let layout = match c.layout {
        Layout::Manifest => 0,
        Layout::FolderPerStep | Layout::HfTrainer | Layout::Olmo | Layout::SiblingFolders | Layout::HfHubCache => 1,
        Layout::FilePerStep => 2,
    };
    (format, layout)
}

/// Run-level config and training logs: files in the run folder, else in its checkpoint folders
/// (HF Trainer: the last `trainer_state.json` holds the whole history).
fn attach_side_files(run: &mut Run, side_files: &[PathBuf]) {
    let in_dir = |dir: &Path, name: &str| {
        side_files
            .iter()
            .find(|f| f.parent() == Some(dir) && file_name(f) == name)
            .cloned()
    };
    let checkpoint_dirs: Vec<PathBuf> = run
        .checkpoints
        .iter()
        .filter(|c| c.layout.is_folder())
        .map(Checkpoint::display_path)
        .collect();
    run.config =
        in_dir(&run.dir, "config.json").or_else(|| checkpoint_dirs.iter().rev().find_map(|d| in_dir(d, "config.json")));
    if let Some(log) = in_dir(&run.dir, "metrics.jsonl") {
        run.logs.push(log);
    }
    if let Some(state) = checkpoint_dirs
        .iter()
        .rev()
        .find_map(|d| in_dir(d, "trainer_state.json"))
    {
        run.logs.push(state);
    }
    let run_is_root_level = run.dir.as_os_str().is_empty();
    for csv in side_files.iter().filter(|f| file_name(f).ends_with(".csv")) {
        let inside_run = csv.parent() == Some(run.dir.as_path())
            || (!run_is_root_level && csv.starts_with(&run.dir) && !checkpoint_dirs.iter().any(|d| csv.starts_with(d)));
        if inside_run {
            run.logs.push(csv.clone());
        }
    }
}

/// Ragged-grid and layout problems: runs missing steps other runs have, mixed layouts.
fn grid_problems(root: &Path, runs: &[Run]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut all_steps: Vec<u64> = runs.iter().flat_map(Run::steps).collect();
    all_steps.sort_unstable();
    all_steps.dedup();
    for run in runs {
        let steps = run.steps();
        let missing: Vec<String> = all_steps
            .iter()
            .filter(|s| !steps.contains(s))
            .map(u64::to_string)
            .collect();
        if !missing.is_empty() {
            problems.push(Problem::new(
                &run.dir,
                ProblemKind::MissingSteps,
                format!(
                    "{}: run `{}` lacks step(s) {} that other runs have",
                    run.dir.display(),
                    run.name,
                    missing.join(", ")
                ),
            ));
        }
    }
    let mut layouts: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.checkpoints.iter().map(|c| layout_name(c.layout)))
        .collect();
    layouts.sort_unstable();
    layouts.dedup();
    if layouts.len() > 1 {
        problems.push(Problem::new(
            root,
            ProblemKind::MixedLayouts,
            format!(
                "{}: checkpoints are stored in mixed layouts ({}); all were read",
                root.display(),
                layouts.join(", ")
            ),
        ));
    }
    problems
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::FolderPerStep => "folder per step",
        Layout::HfTrainer => "HF Trainer",
        Layout::FilePerStep => "file per step",
        Layout::Manifest => "manifest",
        Layout::Olmo => "OLMo",
        Layout::SiblingFolders => "sibling folders",
        Layout::HfHubCache => "HF hub cache",
    }
}

/// The step a folder name announces.
pub fn step_of_dir(dir: &Path) -> Option<u64> {
    STEP_DIR.captures(file_name(dir))?.get(1)?.as_str().parse().ok()
}

/// The step a checkpoint file name announces, and the run prefix left once step and epoch are removed.
pub fn step_of_file(file: &Path) -> Option<(u64, Option<String>)> {
    let stem = file.file_stem()?.to_str()?;
    let caps = STEP_IN_NAME.captures(stem).or_else(|| TAGGED_COUNTER.captures(stem))?;
    let whole = caps.get(0)?;
    let step = caps.get(1)?.as_str().parse().ok()?;
    let before = &stem[..whole.start()];
    let prefix = EPOCH_TOKEN.replace_all(before, "");
    let prefix = prefix.trim_matches(|c: char| "-_=. ".contains(c));
    Some((step, (!prefix.is_empty()).then(|| prefix.to_string())))
}

/// True for optimizer states, RNG states and similar files that hold no model weights.
fn is_side_file(file: &Path) -> bool {
    let name = file_name(file).to_ascii_lowercase();
    NOT_WEIGHTS.iter().any(|s| name.starts_with(s))
}

/// The weight files of a checkpoint folder: an index's shards, a single safetensors file, sharded
/// files, or a single pickle / npz. `Ok(None)` when the folder holds no weights.
pub fn model_files(dir: &Path, files: &[PathBuf]) -> Result<Option<(Vec<PathBuf>, FileFormat)>, Problem> {
    if let Some(index) = files.iter().find(|f| file_name(f).ends_with(".index.json")) {
        return read_index(dir, index).map(Some);
    }
    let weights: Vec<(&PathBuf, FileFormat)> = files
        .iter()
        .filter(|f| !is_side_file(f))
        .filter_map(|f| FileFormat::from_path(f).map(|fmt| (f, fmt)))
        .collect();
    for format in [FileFormat::Safetensors, FileFormat::TorchPickle, FileFormat::Npz] {
        let of_format: Vec<&PathBuf> = weights.iter().filter(|(_, f)| *f == format).map(|(p, _)| *p).collect();
        match of_format.as_slice() {
            [] => continue,
            [single] => return Ok(Some((vec![(*single).clone()], format))),
            many => {
                let shards: Vec<PathBuf> = many
                    .iter()
                    .filter(|p| SHARD.is_match(file_name(p)))
                    .map(|p| (*p).clone())
                    .collect();
                if shards.len() == many.len() {
                    return Ok(Some((shards, format)));
                }
                let preferred = ["model", "pytorch_model", "weights"];
                let chosen = many
                    .iter()
                    .find(|p| {
                        p.file_stem()
                            .and_then(|s| s.to_str())
                            .is_some_and(|s| preferred.contains(&s))
                    })
                    .unwrap_or(&many[0]);
                return Ok(Some((vec![(*chosen).clone()], format)));
            }
        }
    }
    Ok(None)
}

/// Reads a `*.index.json` (HF sharded checkpoint) and returns its shards in order.
fn read_index(dir: &Path, index: &Path) -> Result<(Vec<PathBuf>, FileFormat), Problem> {
    let invalid = |reason: String| {
        Problem::new(
            index,
            ProblemKind::InvalidManifest,
            format!("{}: invalid shard index: {reason}", index.display()),
        )
    };
    let text = std::fs::read_to_string(index).map_err(|e| invalid(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("no `weight_map` object".into()))?;
    let mut shards: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err(invalid("`weight_map` names no file".into()));
    }
    let mut paths = Vec::with_capacity(shards.len());
    for shard in &shards {
        if shard.contains("..") || Path::new(shard).is_absolute() {
            return Err(invalid(format!("shard `{shard}` points outside the folder")));
        }
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(invalid(format!("shard `{shard}` is missing")));
        }
        paths.push(path);
    }
    let format =
        FileFormat::from_path(&paths[0]).ok_or_else(|| invalid(format!("unknown shard format `{}`", shards[0])))?;
    Ok((paths, format))
}

/// The final component of a path as UTF-8 (empty when absent or not UTF-8).
pub(crate) fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_run_prefixes_from_file_names() {
        let cases = [
            ("epoch=3-step=1000.ckpt", Some((1000, None))),
            ("seed0_step100.safetensors", Some((100, Some("seed0".to_string())))),
            ("ckpt_1000.pt", Some((1000, None))),
            ("step25.pt", Some((25, None))),
            ("seed1_ckpt-20.pt", Some((20, Some("seed1".to_string())))),
            ("model.safetensors", None),
            ("seed3.pt", None),
        ];
        for (name, want) in cases {
            assert_eq!(step_of_file(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn step_folder_names() {
        for (name, want) in [
            ("step1500", Some(1500)),
            ("step_1500", Some(1500)),
            ("checkpoint-500", Some(500)),
            ("global_step7", Some(7)),
            ("steps", None),
            ("run3", None),
        ] {
            assert_eq!(step_of_dir(Path::new(name)), want, "{name}");
        }
    }
}
