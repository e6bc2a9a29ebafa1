//! Pins every Parquet table `lineage batch --align` writes for a four-run zoo built from the PyTorch
//! fixture (its two runs plus a byte-identical copy of each, so the basins split into two families),
//! against `tests/golden/fixture_tables.json`.
//!
//! Refactors must leave the tables unchanged: strings, integers and booleans are compared exactly, floats
//! to 1e-6 (relative above 1), so the pin holds on CPUs whose kernels round differently. Rows are
//! compared as sorted sets, columns by name and order. Regenerate the golden file only for an intended
//! change of the numbers: `LINEAGE_BLESS=1 cargo test -p lineage --test pinned_tables`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{batch, fixture};
use lineage_core::output::schema::read_parquet;
use polars::prelude::{AnyValue, DataFrame};
use serde_json::{Value, json};

/// Every table `lineage batch` writes without `--shard`.
const TABLES: [&str; 17] = [
    "checkpoints",
    "evals",
    "interpolation",
    "barriers",
    "clusters",
    "timeline",
    "tree_edges",
    "co_membership",
    "generalization",
    "generalization_tests",
    "similarity",
    "probes",
    "trajectories",
    "weight_norms",
    "code_length",
    "training_map",
    "training_map_transitions",
];

const GOLDEN: &str = "tests/golden/fixture_tables.json";

/// The fixture's runs, each twice (`<run>` and `<run>_copy`), as a folder-per-step zoo.
fn four_run_zoo(dir: &Path) {
    let source = fixture("zoo_safetensors");
    for run in ["init0_order0", "init1_order0"] {
        for name in [run.to_string(), format!("{run}_copy")] {
            copy_tree(&source.join(run), &dir.join(name));
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A cell as JSON: numbers, strings, booleans, null. Paths are made relative to the zoo.
fn cell(value: AnyValue, zoo: &str) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => json!(b),
        AnyValue::String(s) => json!(s.replace(zoo, "<zoo>")),
        AnyValue::StringOwned(s) => json!(s.as_str().replace(zoo, "<zoo>")),
        AnyValue::Float64(v) => json!(v),
        AnyValue::Float32(v) => json!(f64::from(v)),
        AnyValue::UInt64(v) => json!(v),
        AnyValue::UInt32(v) => json!(v),
        AnyValue::Int64(v) => json!(v),
        AnyValue::Int32(v) => json!(v),
        other => panic!("unexpected cell type {other:?}"),
    }
}

/// A table as `{"columns": [...], "rows": [[...], ...]}` with rows sorted by their JSON text.
fn table_json(df: &DataFrame, zoo: &str) -> Value {
    let columns: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    let series: Vec<_> = df
        .columns()
        .iter()
        .map(|c| c.as_materialized_series().clone())
        .collect();
    let mut rows: Vec<Value> = (0..df.height())
        .map(|i| Value::Array(series.iter().map(|s| cell(s.get(i).unwrap(), zoo)).collect()))
        .collect();
    rows.sort_by_key(|r| r.to_string());
    json!({ "columns": columns, "rows": rows })
}

/// Compares two cells: floats to 1e-6 (relative above 1), everything else exactly.
fn same_cell(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-6 * x.abs().max(1.0)
        }
        _ => a == b,
    }
}

#[test]
fn batch_tables_match_the_pinned_golden_file() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    four_run_zoo(&zoo);
    let out = tmp.path().join("out");
    let output = batch(&zoo, &out, &tmp.path().join("cache"))
        .arg("--align")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let zoo_text = zoo.display().to_string();
    let actual: BTreeMap<&str, Value> = TABLES
        .iter()
        .map(|&name| {
            let df = read_parquet(&out.join(format!("{name}.parquet"))).unwrap();
            (name, table_json(&df, &zoo_text))
        })
        .collect();
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("LINEAGE_BLESS").is_some() {
        std::fs::write(&golden_path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
        eprintln!("wrote {}", golden_path.display());
        return;
    }
    let golden: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless it with LINEAGE_BLESS=1)", golden_path.display())),
    )
    .unwrap();
    assert_eq!(
        golden.keys().map(String::as_str).collect::<Vec<_>>(),
        actual.keys().copied().collect::<Vec<_>>()
    );
    for (name, want) in &golden {
        let got = &actual[name.as_str()];
        assert_eq!(got["columns"], want["columns"], "{name}: columns differ");
        let (got_rows, want_rows) = (got["rows"].as_array().unwrap(), want["rows"].as_array().unwrap());
        assert_eq!(got_rows.len(), want_rows.len(), "{name}: row counts differ");
        assert!(!want_rows.is_empty(), "{name}: the pinned table is empty");
        for (g, w) in got_rows.iter().zip(want_rows) {
            let same = g
                .as_array()
                .unwrap()
                .iter()
                .zip(w.as_array().unwrap())
                .all(|(x, y)| same_cell(x, y));
            assert!(same, "{name}: row differs\n  got  {g}\n  want {w}");
        }
    }
}
