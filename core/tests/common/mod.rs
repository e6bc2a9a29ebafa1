//! Helpers shared by the integration tests: the PyTorch fixture of `../shared/fixtures/digits-mlp`.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};

use lineage_loaders::{ParamSet, load_params};

/// A file (or folder) of the PyTorch fixture.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/digits-mlp")
        .join(rel)
}

/// The fixture checkpoint of `run` at `step`, from its safetensors layout.
pub fn load(run: &str, step: u64) -> ParamSet {
    load_params(&fixture(&format!("zoo_safetensors/{run}/step{step}/model.safetensors"))).unwrap()
}
