//! Layouts found by name beyond the plain ones of [`crate::discover`]: sibling folders named by run and
//! step (MultiBERTs, OLMo; [`step_name`]) and the Hugging Face hub cache ([`hf_hub`]).

pub mod hf_hub;
pub mod step_name;

use std::path::{Path, PathBuf};

use crate::discover::{file_name, step_of_dir, step_of_file};
use crate::formats::FileFormat;
use crate::zoo::Layout;

/// What a folder's name says about the checkpoint it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepFolder {
    /// Training step.
    pub step: u64,
    /// Training tokens seen, when the name says.
    pub tokens: Option<u64>,
    /// Run identifier carried by the name, appended to the run folder's name.
    pub run: Option<String>,
    /// The layout the name belongs to.
    pub layout: Layout,
}

/// Reads a folder's name as a checkpoint folder's: `step1500`, `checkpoint-500` (the plain names), then
/// names with a run identifier, a multiplier or OLMo's parts (see [`step_name`]). `Ok(None)` when the name
/// carries no step, or when such a named folder holds step folders or weight files named by step itself
/// (then it is a run folder whose name happens to carry a step, e.g. `warmup_step500/checkpoint-100/`).
/// `Err` says why a name is ambiguous.
pub(crate) fn step_folder(dir: &Path, files: &[PathBuf], subdirs: &[PathBuf]) -> Result<Option<StepFolder>, String> {
    let name = file_name(dir);
    if let Some(step) = step_of_dir(dir) {
        let layout = if name.to_ascii_lowercase().starts_with("checkpoint") {
            Layout::HfTrainer
        } else {
            Layout::FolderPerStep
        };
        return Ok(Some(StepFolder {
            step,
            tokens: None,
            run: None,
            layout,
        }));
    }
    let holds_step_folders = || {
        subdirs
            .iter()
            .any(|d| step_of_dir(d).is_some() || !matches!(step_name::parse(file_name(d)), Ok(None)))
            || files
                .iter()
                .any(|f| FileFormat::from_path(f).is_some() && step_of_file(f).is_some())
    };
    let parsed = match step_name::parse(name) {
        Ok(Some(parsed)) if !holds_step_folders() => parsed,
        Err(reason) if !holds_step_folders() => return Err(reason),
        _ => return Ok(None),
    };
    let layout = match (&parsed.run, parsed.olmo) {
        (_, true) => Layout::Olmo,
        (Some(_), false) => Layout::SiblingFolders,
        (None, false) => Layout::FolderPerStep,
    };
    Ok(Some(StepFolder {
        step: parsed.step,
        tokens: parsed.tokens,
        run: parsed.run,
        layout,
    }))
}
