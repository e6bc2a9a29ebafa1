//! The Hugging Face hub cache: what `from_pretrained(name, revision="step1000")` downloaded.
//!
//! ```text
//! hub/                                    ($HF_HUB_CACHE; see default_cache_dir)
//!   models--EleutherAI--pythia-160m-seed1/
//!     refs/step1000                       a file holding the commit hash of revision `step1000`
//!     snapshots/HASH/model.safetensors    a symbolic link to ../../blobs/SHA256
//!     blobs/SHA256
//! ```
//! Each repository is a run named after it (`pythia-160m-seed1`; `ORG/NAME` when repositories of two
//! organisations found together share a name). Each revision in `refs/` whose name carries a step (read as
//! in [`super::step_name`]: `step1000`, OLMo's `step1000-tokens4B`; `stage1-step1000-tokens5B` is run
//! `NAME/stage1`) is one checkpoint: the files of its snapshot. Other revisions (`main`) are ignored; a
//! repository without any step revision is reported, as is a snapshot file whose link leads outside
//! its repository folder (it is not read).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::step_name;
use crate::discover::{Found, Listing, file_name, model_files};
use crate::formats::FileFormat;
use crate::problem::{Problem, ProblemKind};
use crate::zoo::{Checkpoint, Layout};

/// Prefix of a model repository's folder in the cache.
const REPO_PREFIX: &str = "models--";
/// A ref file holds a commit hash; anything longer is not one.
const MAX_REF_BYTES: u64 = 256;

/// The hub cache folder, as `huggingface_hub` resolves it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. `None` without any of these variables.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(|name| std::env::var_os(name))
}

/// [`default_cache_dir`] with the environment given by `var`.
fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("HF_HUB_CACHE")
        .or_else(|| set("HF_HOME").map(|home| home.join("hub")))
        .or_else(|| set("XDG_CACHE_HOME").map(|cache| cache.join("huggingface/hub")))
        .or_else(|| set("HOME").map(|home| home.join(".cache/huggingface/hub")))
}

/// True for a model repository's folder in the cache: `models--ORG--NAME` holding `snapshots/`.
pub(crate) fn is_repo(dir: &Path) -> bool {
    file_name(dir).starts_with(REPO_PREFIX) && dir.join("snapshots").is_dir()
}

/// What the repositories hold.
#[derive(Default)]
pub(crate) struct HubFindings {
    /// One checkpoint per step revision.
    pub checkpoints: Vec<Found>,
    /// `config.json` of each snapshot read.
    pub side_files: Vec<PathBuf>,
    /// Everything that could not be read, or was not read.
    pub problems: Vec<Problem>,
}

/// Reads the step revisions of model repositories found together (in one folder, or the zoo root itself).
/// `list` lists a folder and reports its unreadable entries.
pub(crate) fn discover_repos(repos: &[PathBuf], list: &mut dyn FnMut(&Path) -> Option<Listing>) -> HubFindings {
    let ids: Vec<(Option<&str>, &str)> = repos.iter().map(|r| repo_id(file_name(r))).collect();
    let mut findings = HubFindings::default();
    for (repo, (org, name)) in repos.iter().zip(&ids) {
        let shared = ids.iter().filter(|(_, other)| other == name).count() > 1;
        let run = match org {
            Some(org) if shared => format!("{org}/{name}"),
            _ => name.to_string(),
        };
        read_repo(repo, &run, list, &mut findings);
    }
    findings
}

/// `(ORG, NAME)` of a `models--ORG--NAME` folder name (`models--gpt2` has no organisation).
fn repo_id(folder: &str) -> (Option<&str>, &str) {
    let id = folder.strip_prefix(REPO_PREFIX).unwrap_or(folder);
    match id.split_once("--") {
        Some((org, name)) => (Some(org), name),
        None => (None, id),
    }
}

/// Adds the step revisions of one repository, read as run `run` (and `run/PART` for a revision whose name
/// carries a run part, such as OLMo-2's stages).
fn read_repo(repo: &Path, run: &str, list: &mut dyn FnMut(&Path) -> Option<Listing>, findings: &mut HubFindings) {
    let refs = repo.join("refs");
    let canonical = match canonical(repo) {
        Ok(canonical) => canonical,
        Err(problem) => {
            findings.problems.push(problem);
            return;
        }
    };
    let ref_files = if refs.is_dir() {
        list(&refs).map(|l| l.files).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut other_revisions = Vec::new();
    let mut step_revisions = 0;
    for ref_file in &ref_files {
        let revision = file_name(ref_file);
        match step_name::parse(revision) {
            Ok(Some(parsed)) => {
                step_revisions += 1;
                let run = match &parsed.run {
                    Some(part) => format!("{run}/{part}"),
                    None => run.to_string(),
                };
                match read_revision(repo, &canonical, ref_file, list, findings) {
                    Ok((files, format)) => findings.checkpoints.push(Found {
                        run,
                        run_dir: repo.to_path_buf(),
                        checkpoint: Checkpoint {
                            step: parsed.step,
                            files,
                            format,
                            layout: Layout::HfHubCache,
                            tokens: parsed.tokens,
                        },
                    }),
                    Err(problem) => findings.problems.push(problem),
                }
            }
            Ok(None) => other_revisions.push(format!("`{revision}`")),
            Err(reason) => findings.problems.push(Problem::new(
                ref_file,
                ProblemKind::AmbiguousName,
                format!("{}: revision skipped: {reason}", ref_file.display()),
            )),
        }
    }
    if step_revisions == 0 {
        let found = if other_revisions.is_empty() {
            "none".to_string()
        } else {
            other_revisions.join(", ")
        };
        findings.problems.push(Problem::new(
            repo,
            ProblemKind::NoStepRevisions,
            format!(
                "{}: no revision named by a step in {} (revisions: {found}); nothing read from this repository",
                repo.display(),
                refs.display()
            ),
        ));
    }
}

/// The weight files of the snapshot a step revision names; its `config.json` goes to the side files.
fn read_revision(
    repo: &Path,
    canonical_repo: &Path,
    ref_file: &Path,
    list: &mut dyn FnMut(&Path) -> Option<Listing>,
    findings: &mut HubFindings,
) -> Result<(Vec<PathBuf>, FileFormat), Problem> {
    let commit = read_commit(ref_file)?;
    let snapshot = repo.join("snapshots").join(&commit);
    let revision = file_name(ref_file);
    if !snapshot.is_dir() {
        return Err(Problem::new(
            &snapshot,
            ProblemKind::Unreadable,
            format!(
                "{}: revision `{revision}` (commit {commit}) is not downloaded: its snapshot folder is missing",
                snapshot.display()
            ),
        ));
    }
    let mut files = Vec::new();
    for file in list(&snapshot).map(|l| l.files).unwrap_or_default() {
        match canonical(&file) {
            Ok(target) if target.starts_with(canonical_repo) => files.push(file),
            Ok(target) => findings.problems.push(Problem::new(
                &file,
                ProblemKind::Unreadable,
                format!(
                    "{}: skipped: the link leads outside the repository folder, to {}",
                    file.display(),
                    target.display()
                ),
            )),
            Err(problem) => findings.problems.push(problem),
        }
    }
    findings
        .side_files
        .extend(files.iter().filter(|f| file_name(f) == "config.json").cloned());
    model_files(&snapshot, &files)?.ok_or_else(|| {
        Problem::new(
            &snapshot,
            ProblemKind::Empty,
            format!(
                "{}: revision `{revision}` holds no weights file (only part of it was downloaded?)",
                snapshot.display()
            ),
        )
    })
}

/// `path` with every symbolic link resolved.
fn canonical(path: &Path) -> Result<PathBuf, Problem> {
    std::fs::canonicalize(path).map_err(|e| {
        Problem::new(
            path,
            ProblemKind::Unreadable,
            format!("{}: skipped: cannot resolve: {e}", path.display()),
        )
    })
}

/// The commit hash a ref file holds.
fn read_commit(ref_file: &Path) -> Result<String, Problem> {
    let problem = |reason: String| {
        Problem::new(
            ref_file,
            ProblemKind::Malformed,
            format!("{}: revision skipped: {reason}", ref_file.display()),
        )
    };
    let mut text = String::new();
    std::fs::File::open(ref_file)
        .and_then(|f| f.take(MAX_REF_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| problem(format!("cannot read: {e}")))?;
    let commit = text.trim();
    if text.len() as u64 > MAX_REF_BYTES || commit.is_empty() || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(problem("does not hold a commit hash".into()));
    }
    Ok(commit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_ids() {
        assert_eq!(
            repo_id("models--EleutherAI--pythia-160m-seed1"),
            (Some("EleutherAI"), "pythia-160m-seed1")
        );
        assert_eq!(repo_id("models--gpt2"), (None, "gpt2"));
    }

    #[test]
    fn cache_dir_follows_huggingface_hub_precedence() {
        fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        }
        let all = [
            ("HF_HUB_CACHE", "/hub"),
            ("HF_HOME", "/hf"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(cache_dir_from(env(&all)), Some(PathBuf::from("/hub")));
        assert_eq!(cache_dir_from(env(&all[1..])), Some(PathBuf::from("/hf/hub")));
        assert_eq!(
            cache_dir_from(env(&all[2..])),
            Some(PathBuf::from("/xdg/huggingface/hub"))
        );
        assert_eq!(
            cache_dir_from(env(&all[3..])),
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        assert_eq!(cache_dir_from(env(&[("HF_HUB_CACHE", "")])), None);
    }
}
