//! Helpers shared by the integration tests: the PyTorch fixture of `../shared/fixtures/digits-mlp`,
//! the transformer fixtures of `tests/fixtures`, the device the transformer fixture tests run on,
//! and comparisons with reference values.

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

/// A file (or folder) of the transformer fixtures in `tests/fixtures` (written by their
/// `make_fixture.py` with PyTorch and transformers). `LINEAGE_CORE_DIR` names the `core` folder
/// when a prebuilt test executable runs away from the source tree it was built in
/// (`scripts/gpu-check.sh`).
pub fn own_fixture(rel: &str) -> PathBuf {
    let core =
        std::env::var_os("LINEAGE_CORE_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    core.join("tests/fixtures").join(rel)
}

/// The device the transformer and CNN fixture tests run on: `LINEAGE_TEST_DEVICE` (`cpu`, the default,
/// `cuda` or `cuda:N`). A device asked for but not usable (no GPU, or a build without the `cuda`
/// feature) fails the test with the reason: such a run must not pass on the CPU instead.
pub fn test_device() -> candle_core::Device {
    let name = std::env::var("LINEAGE_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    lineage_core::models::transformer::device(&name)
        .unwrap_or_else(|e| panic!("LINEAGE_TEST_DEVICE={name} cannot be used, so this test cannot run: {e}"))
}

/// The evaluator of the registry for `config` on [`test_device`] (default BatchNorm options).
pub fn evaluator_for(
    config: Option<&Path>,
    reference: &ParamSet,
    data: &lineage_core::EvalData,
) -> Result<Box<dyn lineage_core::Evaluator>, lineage_core::CoreError> {
    let factory = lineage_core::models::registry::evaluator_on(test_device(), Default::default(), Default::default());
    factory(config, reference, data)
}

/// The precisions of the CPU products a transformer fixture test runs with: f32, and bf16x3 where
/// this machine computes it (else the reason is printed); on a GPU ([`test_device`]) only f32, the
/// setting being the CPU products'.
pub fn matmul_precisions() -> Vec<lineage_core::models::matmul::MatmulPrecision> {
    use lineage_core::models::matmul::MatmulPrecision;
    let mut precisions = vec![MatmulPrecision::F32];
    if !test_device().is_cpu() {
        eprintln!("bf16x3 products not tested: they are the CPU's, and the tests run on a GPU");
        return precisions;
    }
    match MatmulPrecision::Bf16x3.unavailable_note() {
        None => precisions.push(MatmulPrecision::Bf16x3),
        Some(why) => eprintln!("bf16x3 products not tested here: {why}"),
    }
    precisions
}

/// A JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A JSON array of booleans.
pub fn bools(v: &serde_json::Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

/// f32 values widened, for comparison with reference values.
pub fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// Asserts `got` and `want` have the same length and differ by less than `tolerance` everywhere.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < tolerance, "{what}[{i}]: {g} vs reference {w}");
    }
}

/// Largest difference to PyTorch's float32 values accepted by the transformer fixture tests.
pub const TORCH_TOLERANCE: f64 = 1e-4;

/// Asserts that `evaluator` gives, for every checkpoint `"run/step"` of the reference object
/// `checkpoints`, PyTorch's per-example losses (`loss`) and correctness (`correct`).
pub fn assert_checkpoints_match(
    evaluator: &dyn lineage_core::Evaluator,
    checkpoints: &serde_json::Value,
    load: impl Fn(&str, u64) -> ParamSet,
) {
    for (key, want) in checkpoints.as_object().unwrap() {
        let (run, step) = key.split_once('/').unwrap();
        let got = evaluator.evaluate(&load(run, step.parse().unwrap())).unwrap();
        assert_close(
            key,
            &widen(&got.per_example_loss),
            &floats(&want["loss"]),
            TORCH_TOLERANCE,
        );
        assert_eq!(got.per_example_correct, bools(&want["correct"]), "{key}: correctness");
    }
}

/// Evaluates the path from `a` to `b` at the reference `alphas` and asserts PyTorch's mean loss and
/// error along it (`path.loss`, `path.error`); returns the results.
pub fn assert_path_matches(
    evaluator: &dyn lineage_core::Evaluator,
    a: &ParamSet,
    b: &ParamSet,
    alphas: &[f64],
    path: &serde_json::Value,
) -> Vec<lineage_core::EvalResult> {
    let results = evaluator.evaluate_path(a, b, alphas).unwrap();
    let losses: Vec<f64> = results.iter().map(|r| r.loss).collect();
    let errors: Vec<f64> = results.iter().map(|r| r.error).collect();
    assert_close(
        "mean loss along the path",
        &losses,
        &floats(&path["loss"]),
        TORCH_TOLERANCE,
    );
    assert_close(
        "error along the path",
        &errors,
        &floats(&path["error"]),
        TORCH_TOLERANCE,
    );
    results
}

/// The endpoint loss barrier between `a` and `b` on an 11-point grid.
pub fn barrier11(evaluator: &dyn lineage_core::Evaluator, a: &ParamSet, b: &ParamSet) -> f64 {
    let alphas = lineage_core::methods::interpolation::alpha_grid(11).unwrap();
    let losses: Vec<f64> = evaluator
        .evaluate_path(a, b, &alphas)
        .unwrap()
        .iter()
        .map(|r| r.loss)
        .collect();
    lineage_core::methods::interpolation::endpoint_barrier(&alphas, &losses)
}

/// A copy in `dir` of the right-padded Parquet eval set `path` as a tokenizer without padding writes
/// one: each row's token lists cut to its attended tokens, and no `attention_mask` column.
pub fn unpadded_copy(path: &Path, dir: &Path) -> PathBuf {
    use polars::prelude::{
        Column, DataFrame, IntoColumn, ListChunked, NamedFrom, ParquetReader, ParquetWriter, SerReader, Series,
    };
    let df = ParquetReader::new(std::fs::File::open(path).unwrap()).finish().unwrap();
    let lists = |name: &str| -> Vec<Vec<i64>> {
        let series = df.column(name).unwrap().as_materialized_series().clone();
        let lists: &ListChunked = series.list().unwrap();
        lists
            .series_iter()
            .map(|row| {
                row.unwrap()
                    .cast(&polars::prelude::DataType::Int64)
                    .unwrap()
                    .i64()
                    .unwrap()
                    .into_no_null_iter()
                    .collect()
            })
            .collect()
    };
    let lengths: Vec<usize> = lists("attention_mask")
        .iter()
        .map(|mask| {
            let len = mask.iter().filter(|&&m| m == 1).count();
            assert!(
                mask[..len].iter().all(|&m| m == 1),
                "{}: not right-padded",
                path.display()
            );
            len
        })
        .collect();
    let mut columns: Vec<Column> = Vec::new();
    for column in df.columns() {
        let name = column.name().as_str();
        if name == "attention_mask" {
            continue;
        }
        let column = if matches!(column.dtype(), polars::prelude::DataType::List(_)) {
            let rows: Vec<Series> = lists(name)
                .into_iter()
                .zip(&lengths)
                .map(|(row, &len)| Series::new("".into(), row[..len].to_vec()))
                .collect();
            Series::new(name.into(), rows).into_column()
        } else {
            column.clone()
        };
        columns.push(column);
    }
    let copy = dir.join(path.file_name().unwrap());
    let mut df = DataFrame::new_infer_height(columns).unwrap();
    ParquetWriter::new(std::fs::File::create(&copy).unwrap())
        .finish(&mut df)
        .unwrap();
    copy
}
