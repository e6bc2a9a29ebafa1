//! Broken and unusual zoos: every problem is reported with the file it concerns, nothing panics,
//! and the rest of the zoo is still read.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use lineage_loaders::inspect::{Inspection, inspect};
use lineage_loaders::problem::ProblemKind;
use lineage_loaders::{Schema, discover, load_params_matching, reference_schema, scan_checkpoint};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/digits-mlp")
        .join(rel)
}

/// Copies the safetensors fixture zoo (2 runs x 3 steps) into `dst`.
fn copy_fixture_zoo(dst: &Path) {
    for run in ["init0_order0", "init1_order0"] {
        for step in ["step0", "step100", "step1500"] {
            let to = dst.join(run).join(step);
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(
                fixture(&format!("zoo_safetensors/{run}/{step}/model.safetensors")),
                to.join("model.safetensors"),
            )
            .unwrap();
        }
        std::fs::copy(
            fixture(&format!("zoo_safetensors/{run}/config.json")),
            dst.join(run).join("config.json"),
        )
        .unwrap();
    }
}

fn problems_of(ins: &Inspection, kind: ProblemKind) -> Vec<String> {
    ins.problems
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| p.message.clone())
        .collect()
}

fn steps_of(ins: &Inspection, run: &str) -> Vec<u64> {
    ins.runs
        .iter()
        .find(|r| r.name == run)
        .map(|r| r.steps.iter().map(|s| s.step).collect())
        .unwrap_or_default()
}

fn write_pickle_zip(path: &Path, pickle: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.finish().unwrap();
}

#[test]
fn broken_files_are_reported_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path();
    copy_fixture_zoo(zoo);

    // Truncated safetensors.
    let cut = zoo.join("init0_order0/step100/model.safetensors");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();

    // A header lying about offsets: claims 64 bytes for a 4-element f32 tensor.
    let liar = zoo.join("init1_order0/step100/model.safetensors");
    let header = br#"{"fc1.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,64]}}"#;
    let mut data = (header.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(header);
    data.extend_from_slice(&[0; 64]);
    std::fs::write(&liar, data).unwrap();

    // A pickle calling os.system: refused, never executed.
    std::fs::create_dir_all(zoo.join("evil/step100")).unwrap();
    write_pickle_zip(
        &zoo.join("evil/step100/pytorch_model.bin"),
        b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x85R.",
    );

    let ins = inspect(zoo);
    let malformed = problems_of(&ins, ProblemKind::Malformed);
    assert!(
        malformed
            .iter()
            .any(|m| m.contains("init0_order0/step100") && m.contains("truncated")),
        "{malformed:?}"
    );
    assert!(
        malformed
            .iter()
            .any(|m| m.contains("init1_order0/step100") && m.contains("fc1.weight")),
        "{malformed:?}"
    );
    let unsafe_pickles = problems_of(&ins, ProblemKind::UnsafePickle);
    assert!(
        unsafe_pickles
            .iter()
            .any(|m| m.contains("evil/step100") && m.contains("os.system")),
        "{unsafe_pickles:?}"
    );
    // The rest is still read.
    assert_eq!(steps_of(&ins, "init0_order0"), [0, 1500]);
    assert_eq!(steps_of(&ins, "init1_order0"), [0, 1500]);
    assert_eq!(ins.summary.n_checkpoints, 4);
}

#[test]
fn empty_folder_is_a_clear_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ins = inspect(dir.path());
    assert_eq!(ins.summary.n_runs, 0);
    let none = problems_of(&ins, ProblemKind::NoCheckpoints);
    assert_eq!(none.len(), 1, "{:?}", ins.problems);
    assert!(none[0].contains(&dir.path().display().to_string()));
    let missing = inspect(&dir.path().join("does-not-exist"));
    assert_eq!(problems_of(&missing, ProblemKind::Unreadable).len(), 1);
}

#[test]
fn symlink_loop_is_skipped_with_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    std::os::unix::fs::symlink(dir.path(), dir.path().join("init0_order0/loop")).unwrap();
    let ins = inspect(dir.path());
    let loops = problems_of(&ins, ProblemKind::SymlinkLoop);
    assert_eq!(loops.len(), 1, "{:?}", ins.problems);
    assert!(loops[0].contains("loop"));
    assert_eq!(ins.summary.n_checkpoints, 6);
}

#[test]
fn mixed_layouts_are_all_read_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for step in [0, 100, 1500] {
        std::fs::copy(
            fixture(&format!("zoo_safetensors/init0_order0/step{step}/model.safetensors")),
            files.join(format!("seed7_step{step}.safetensors")),
        )
        .unwrap();
    }
    let ins = inspect(dir.path());
    assert_eq!(steps_of(&ins, "files/seed7"), [0, 100, 1500]);
    assert_eq!(ins.summary.n_runs, 3);
    assert_eq!(
        problems_of(&ins, ProblemKind::MixedLayouts).len(),
        1,
        "{:?}",
        ins.problems
    );
}

#[test]
fn non_utf8_names_are_skipped_with_a_problem() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    let name = std::ffi::OsStr::from_bytes(b"seed\xff_step5.safetensors");
    std::fs::copy(
        fixture("zoo_safetensors/init0_order0/step0/model.safetensors"),
        dir.path().join(name),
    )
    .unwrap();
    let ins = inspect(dir.path());
    assert_eq!(
        problems_of(&ins, ProblemKind::NonUtf8Name).len(),
        1,
        "{:?}",
        ins.problems
    );
    assert_eq!(ins.summary.n_checkpoints, 6);
    // The JSON report is still written, naming the file lossily.
    let json = serde_json::to_string(&ins).expect("inspect --json with a non-UTF-8 name");
    assert!(
        json.contains("non_utf8_name") && json.contains("seed\u{fffd}_step5"),
        "{json}"
    );
}

#[test]
fn a_renamed_tensor_in_the_first_checkpoint_flags_that_one_only() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    let first = dir.path().join("init0_order0/step0/model.safetensors");
    let mut tensors = candle_core::safetensors::load(&first, &Device::Cpu).unwrap();
    let names: Vec<String> = tensors.keys().filter(|n| n.ends_with(".weight")).cloned().collect();
    let renamed = names.last().unwrap().replace(".weight", ".geight");
    let w = tensors.remove(names.last().unwrap()).unwrap();
    tensors.insert(renamed.clone(), w);
    candle_core::safetensors::save(&tensors, &first).unwrap();

    let ins = inspect(dir.path());
    let mismatch = problems_of(&ins, ProblemKind::ShapeMismatch);
    assert_eq!(mismatch.len(), 1, "only the odd one out: {:?}", ins.problems);
    assert!(
        mismatch[0].contains("init0_order0/step0") && mismatch[0].contains(&renamed),
        "{mismatch:?}"
    );
    assert!(mismatch[0].contains("5 checkpoints"), "{mismatch:?}");
}

#[test]
fn the_value_scan_flags_non_finite_tensors_only() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    let edit = |rel: &str, f: &dyn Fn(f32) -> f32, first_only: bool| {
        let path = dir.path().join(rel);
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(name, t)| {
                let shape = t.dims().to_vec();
                let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let n = if first_only && name.starts_with("fc1.weight") {
                    1
                } else {
                    v.len()
                };
                if !first_only || name.starts_with("fc1.weight") {
                    v[..n].iter_mut().for_each(|x| *x = f(*x));
                }
                (name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
            })
            .collect();
        candle_core::safetensors::save(&tensors, &path).unwrap();
    };
    edit("init1_order0/step1500/model.safetensors", &|_| f32::NAN, true);
    // Huge but finite: not flagged (the sweep finds its loss overflowing instead).
    edit(
        "init0_order0/step100/model.safetensors",
        &|x| x.signum() * 3.0e38,
        false,
    );

    assert!(
        problems_of(&inspect(dir.path()), ProblemKind::NonFinite).is_empty(),
        "headers only by default"
    );
    let ins = lineage_loaders::inspect::inspect_values(dir.path());
    let flagged = problems_of(&ins, ProblemKind::NonFinite);
    assert_eq!(flagged.len(), 1, "{:?}", ins.problems);
    assert!(
        flagged[0].contains("init1_order0/step1500") && flagged[0].contains("`fc1.weight` (1 NaN, 0 infinite of"),
        "{flagged:?}"
    );
    assert!(serde_json::to_string(&ins).unwrap().contains(r#""kind":"non_finite""#));
}

#[test]
fn shape_mismatch_and_missing_steps_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    std::fs::remove_dir_all(dir.path().join("init1_order0/step1500")).unwrap();
    let other = dir.path().join("wide/step0");
    std::fs::create_dir_all(&other).unwrap();
    let tensors: HashMap<String, Tensor> = [
        (
            "fc1.weight".to_string(),
            Tensor::zeros((256, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "fc1.bias".to_string(),
            Tensor::zeros(256, candle_core::DType::F32, &Device::Cpu).unwrap(),
        ),
    ]
    .into();
    candle_core::safetensors::save(&tensors, other.join("model.safetensors")).unwrap();
    let ins = inspect(dir.path());
    let mismatch = problems_of(&ins, ProblemKind::ShapeMismatch);
    assert_eq!(mismatch.len(), 1, "{:?}", ins.problems);
    assert!(
        mismatch[0].contains("wide/step0") && mismatch[0].contains("fc1.weight"),
        "{mismatch:?}"
    );
    let missing = problems_of(&ins, ProblemKind::MissingSteps);
    assert!(
        missing.iter().any(|m| m.contains("init1_order0") && m.contains("1500")),
        "{missing:?}"
    );
}

#[test]
fn sharded_checkpoint_with_index_is_one_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run/checkpoint-100");
    std::fs::create_dir_all(&ckpt).unwrap();
    let full = lineage_loaders::load_params(&fixture("zoo_safetensors/init0_order0/step100")).unwrap();
    let mut shard1 = HashMap::new();
    let mut shard2 = HashMap::new();
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in full.iter().enumerate() {
        let shard = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        if i % 2 == 0 { &mut shard1 } else { &mut shard2 }.insert(name.to_string(), t.clone());
        weight_map.insert(name.to_string(), shard.into());
    }
    candle_core::safetensors::save(&shard1, ckpt.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&shard2, ckpt.join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(
        ckpt.join("model.safetensors.index.json"),
        serde_json::json!({ "weight_map": weight_map }).to_string(),
    )
    .unwrap();
    // HF side files must not be mistaken for weights.
    std::fs::write(ckpt.join("optimizer.pt"), b"not a model").unwrap();
    let ins = inspect(dir.path());
    assert!(ins.problems.is_empty(), "{:?}", ins.problems);
    assert_eq!(ins.runs[0].steps[0].n_files, 2);
    assert_eq!(ins.runs[0].steps[0].n_params, 26_122);
    let loaded = lineage_loaders::load_params(&ckpt).unwrap();
    assert!(loaded.check_compatible(&full).is_ok());
}

#[test]
fn manifest_names_runs_steps_and_fork_parents() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_zoo(dir.path());
    std::fs::write(
        dir.path().join("lineage.toml"),
        r#"
[[runs]]
name = "parent"
checkpoints = [ { step = 0, path = "init0_order0/step0" }, { step = 100, path = "init0_order0/step100/model.safetensors" } ]

[[runs]]
name = "child"
parent = { run = "parent", step = 100 }
checkpoints = [ { step = 1500, path = "init1_order0/step1500" }, { step = 2000, path = "missing/step2000" } ]
"#,
    )
    .unwrap();
    let ins = inspect(dir.path());
    assert_eq!(steps_of(&ins, "parent"), [0, 100]);
    assert_eq!(steps_of(&ins, "child"), [1500]);
    let child = ins.runs.iter().find(|r| r.name == "child").unwrap();
    assert_eq!(
        child.parent.as_ref().map(|p| (p.run.as_str(), p.step)),
        Some(("parent", 100))
    );
    let missing = problems_of(&ins, ProblemKind::Unreadable);
    assert!(
        missing.iter().any(|m| m.contains("missing/step2000")),
        "{:?}",
        ins.problems
    );
}

/// The runs x steps grid of a zoo, by name.
fn grid_of(zoo: &lineage_loaders::Zoo) -> Vec<(String, Vec<u64>)> {
    zoo.runs.iter().map(|r| (r.name.clone(), r.steps())).collect()
}

#[test]
fn a_foreign_manifest_json_is_a_warning_and_the_layouts_are_discovered() {
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path();
    copy_fixture_zoo(zoo);
    let plain = vec![
        ("init0_order0".to_string(), vec![0, 100, 1500]),
        ("init1_order0".to_string(), vec![0, 100, 1500]),
    ];
    let manifest = zoo.join("manifest.json");
    for (text, reason) in [
        (
            r#"{"description": "weights export", "files": ["a.bin"]}"#,
            "unknown field `description`",
        ),
        ("[1, 2]", "not lineage's schema"),
        ("not json", "not JSON"),
    ] {
        std::fs::write(&manifest, text).unwrap();
        let found = discover(zoo);
        assert_eq!(grid_of(&found), plain, "{text}");
        assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
        let problem = &found.problems[0];
        assert_eq!((problem.kind, &problem.path), (ProblemKind::ForeignManifest, &manifest));
        assert!(
            problem.message.contains("ignored, the layouts were discovered instead")
                && problem.message.contains(reason),
            "{}",
            problem.message
        );
    }

    // A manifest that is lineage's: declared by its `lineage` key, or exactly lineage's schema.
    let one_run = r#""runs": [{"name": "only", "checkpoints": [{"step": 7, "path": "init0_order0/step100"}]}]"#;
    for text in [format!(r#"{{"lineage": 1, {one_run}}}"#), format!("{{{one_run}}}")] {
        std::fs::write(&manifest, &text).unwrap();
        let found = discover(zoo);
        assert!(found.problems.is_empty(), "{text}: {:?}", found.problems);
        assert_eq!(grid_of(&found), [("only".to_string(), vec![7])], "{text}");
    }
    // Declared, so its errors are errors: no fallback.
    for (text, reason) in [
        (r#"{"lineage": 1, "runs": 3}"#.to_string(), "invalid type"),
        (
            format!(r#"{{"lineage": 2, {one_run}}}"#),
            "unsupported `lineage` version 2 (this lineage reads 1)",
        ),
    ] {
        std::fs::write(&manifest, &text).unwrap();
        let found = discover(zoo);
        assert!(found.runs.is_empty(), "{text}");
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].kind, ProblemKind::InvalidManifest);
        assert!(found.problems[0].message.contains(reason), "{}", found.problems[0]);
    }
    // `lineage.toml` is authoritative, whatever manifest.json holds.
    std::fs::write(&manifest, r#"{"description": "weights export"}"#).unwrap();
    std::fs::write(
        zoo.join("lineage.toml"),
        "[[runs]]\nname = \"toml\"\ncheckpoints = [{ step = 3, path = \"init1_order0/step0\" }]\n",
    )
    .unwrap();
    let found = discover(zoo);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    assert_eq!(grid_of(&found), [("toml".to_string(), vec![3])]);
}

#[test]
fn identical_checkpoints_are_reported_as_duplicate_content() {
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path();
    copy_fixture_zoo(zoo);
    let original = zoo.join("init0_order0/step1500");
    // A step served with the final checkpoint's weights, in another run.
    std::fs::copy(
        original.join("model.safetensors"),
        zoo.join("init1_order0/step100/model.safetensors"),
    )
    .unwrap();
    let ins = inspect(zoo);
    assert_eq!(ins.summary.n_checkpoints, 6, "duplicates stay in the grid");
    let duplicates: Vec<_> = ins
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::DuplicateContent)
        .collect();
    assert_eq!(duplicates.len(), 1, "{:?}", ins.problems);
    assert_eq!(duplicates[0].path, zoo.join("init1_order0/step100"));
    let message = &duplicates[0].message;
    assert!(
        message.contains("run `init1_order0` step 100 holds the same weights as run `init0_order0` step 1500")
            && message.contains(&original.display().to_string()),
        "{message}"
    );
    assert_eq!(ins.problems.len(), 1, "{:?}", ins.problems);

    // The fingerprint samples the tensor data, not only the header: one byte changed in the last sampled
    // block (tensor data) makes the checkpoints different again.
    let copy = zoo.join("init1_order0/step100/model.safetensors");
    let mut bytes = std::fs::read(&copy).unwrap();
    let last_block = bytes.len() - 4096;
    bytes[last_block + 100] ^= 0x40;
    std::fs::write(&copy, bytes).unwrap();
    let ins = inspect(zoo);
    assert!(ins.problems.is_empty(), "{:?}", ins.problems);
}

/// Writes a safetensors file: `tensors` as (name, dtype, shape, data), then `extra` header entries
/// (name, dtype, shape, byte length) declared after the data without their bytes; the file is
/// extended (sparsely) to `len` when given.
fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &str, Vec<usize>, Vec<u8>)],
    extra: &[(&str, &str, Vec<usize>, u64)],
    len: Option<u64>,
) {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, dtype, shape, data) in tensors {
        let end = offset + data.len() as u64;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    for (name, dtype, shape, bytes) in extra {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let text = serde_json::to_vec(&header).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&text).unwrap();
    for (_, _, _, data) in tensors {
        f.write_all(data).unwrap();
    }
    if let Some(len) = len {
        f.set_len(len).unwrap();
    }
}

/// The fixture's tensors as (name, "F32", shape, little-endian bytes).
fn fixture_tensors() -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut tensors: Vec<(String, Tensor)> = candle_core::safetensors::load(
        fixture("zoo_safetensors/init0_order0/step100/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
        .into_iter()
        .map(|(name, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (
                name,
                t.dims().to_vec(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect()
}

fn fixture_schema() -> Schema {
    let scan = lineage_loaders::checkpoint::scan_file(
        &fixture("zoo_safetensors/init0_order0/step100/model.safetensors"),
        lineage_loaders::formats::FileFormat::Safetensors,
    )
    .unwrap();
    Schema::from_headers(&scan.tensors)
}

#[test]
fn the_reference_schema_is_the_majority_and_loads_every_format() {
    let zoo = discover(&fixture("zoo_safetensors"));
    let scans: Vec<_> = zoo
        .runs
        .iter()
        .flat_map(|r| &r.checkpoints)
        .map(|c| scan_checkpoint(c).unwrap())
        .collect();
    let schema = reference_schema(&scans).unwrap();
    assert_eq!(schema, fixture_schema());
    assert_eq!(schema.n_params(), 26_122);
    assert_eq!(schema.get("fc1.weight").unwrap().shape, vec![128, 64]);
    // The same schema reads the pickled, Lightning (`model.` prefix) and f16 copies.
    for rel in [
        "zoo_hf_trainer/run_i0_o0/checkpoint-100/pytorch_model.bin",
        "zoo_lightning/init0_order0/epoch=4-step=100.ckpt",
        "zoo_fp16/init0_order0/step1500/model.safetensors",
        "zoo_safetensors/init0_order0/step100",
    ] {
        let params = load_params_matching(&fixture(rel), &schema).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(params.shapes(), schema.shapes(), "{rel}");
        let all = lineage_loaders::load_params(&fixture(rel)).unwrap();
        assert_eq!(
            params.get("fc2.bias").unwrap().to_vec1::<f32>().unwrap(),
            all.get("fc2.bias").unwrap().to_vec1::<f32>().unwrap()
        );
    }
}

#[test]
fn tensors_outside_the_schema_are_never_read_and_must_fit_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<_> = fixture_tensors();
    let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = good
        .iter()
        .map(|(n, s, d)| (n.as_str(), "F32", s.clone(), d.clone()))
        .collect();
    let data: u64 = good.iter().map(|t| t.2.len() as u64).sum();
    let schema = fixture_schema();

    // Sparse: the file really is 8 GiB long, but only the schema's ~100 KB are read.
    let sparse = dir.path().join("sparse.safetensors");
    let huge = 8u64 << 30;
    write_safetensors(&sparse, &tensors, &[("extra.weight", "F32", vec![1 << 31], huge)], None);
    let header_end = std::fs::metadata(&sparse).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .unwrap()
        .set_len(header_end + huge)
        .unwrap();
    let params = load_params_matching(&sparse, &schema).unwrap();
    assert_eq!(params.shapes(), schema.shapes());
    assert!(data < header_end);

    // Tiny: a declared 1 GiB tensor past the end of a 100 KB file is refused from the header.
    let tiny = dir.path().join("tiny.safetensors");
    write_safetensors(
        &tiny,
        &tensors,
        &[("extra.weight", "F32", vec![1 << 28], 1 << 30)],
        None,
    );
    for err in [
        load_params_matching(&tiny, &schema).unwrap_err().to_string(),
        lineage_loaders::load_params(&tiny).unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("tiny.safetensors") && err.contains("`extra.weight`") && err.contains("past the end"),
            "{err}"
        );
    }
}

#[test]
fn schema_errors_name_the_file_the_tensor_and_the_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let schema = fixture_schema();
    let good = fixture_tensors();
    let write = |name: &str, edit: &dyn Fn(&str, &mut &str, &mut Vec<usize>) -> bool| {
        let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = good
            .iter()
            .filter_map(|(n, s, d)| {
                let mut dtype = "F32";
                let mut shape = s.clone();
                edit(n, &mut dtype, &mut shape).then(|| {
                    let len = shape.iter().product::<usize>() * 4;
                    (n.as_str(), dtype, shape, d[..len.min(d.len())].to_vec())
                })
            })
            .collect();
        let path = dir.path().join(name);
        write_safetensors(&path, &tensors, &[], None);
        path
    };
    let ints = write("ints.safetensors", &|n, dtype, _| {
        if n == "fc1.weight" {
            *dtype = "I32";
        }
        true
    });
    let err = load_params_matching(&ints, &schema).unwrap_err().to_string();
    assert!(
        err.contains("ints.safetensors")
            && err.contains("`fc1.weight`")
            && err.contains("i32")
            && !err.contains("missing"),
        "{err}"
    );
    let missing = write("missing.safetensors", &|n, _, _| n != "fc2.weight");
    let err = load_params_matching(&missing, &schema).unwrap_err().to_string();
    assert!(
        err.contains("missing.safetensors") && err.contains("`fc2.weight` missing"),
        "{err}"
    );
    let narrow = write("narrow.safetensors", &|n, _, shape| {
        if n == "fc3.bias" {
            *shape = vec![5];
        }
        true
    });
    let err = load_params_matching(&narrow, &schema).unwrap_err().to_string();
    assert!(
        err.contains("narrow.safetensors") && err.contains("`fc3.bias` has shape [5], expected [10]"),
        "{err}"
    );
    // Each message says its file once.
    assert_eq!(err.matches("narrow.safetensors").count(), 1, "{err}");

    // inspect says the dtype too, rather than "missing".
    let zoo = tempfile::tempdir().unwrap();
    copy_fixture_zoo(zoo.path());
    std::fs::copy(&ints, zoo.path().join("init0_order0/step0/model.safetensors")).unwrap();
    let mismatch = problems_of(&inspect(zoo.path()), ProblemKind::ShapeMismatch);
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    assert!(mismatch[0].contains("`fc1.weight` is stored as i32"), "{mismatch:?}");
}

#[test]
fn npz_arrays_load_against_a_schema() {
    let path = fixture("digits_eval.npz");
    let scan = lineage_loaders::checkpoint::scan_file(&path, lineage_loaders::formats::FileFormat::Npz).unwrap();
    let schema = Schema::from_headers(&scan.tensors);
    assert_eq!(schema.len(), 1, "the f32 inputs; the i64 labels are not parameters");
    let params = load_params_matching(&path, &schema).unwrap();
    assert_eq!(params.get("inputs").unwrap().dims(), [500, 64]);
    let wrong = fixture_schema();
    let err = load_params_matching(&path, &wrong).unwrap_err().to_string();
    assert!(
        err.contains("digits_eval.npz") && err.contains("`fc1.weight` missing"),
        "{err}"
    );
}

#[test]
fn a_zoo_under_a_non_utf8_folder_still_serializes() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(std::ffi::OsStr::from_bytes(b"zoo\xff"));
    copy_fixture_zoo(&root);
    let zoo = discover(&root);
    assert_eq!(zoo.n_checkpoints(), 6);
    let json = serde_json::to_string(&zoo).expect("zoo JSON");
    assert!(json.contains("zoo\u{fffd}"), "{json}");
    let json = serde_json::to_string(&lineage_loaders::inspect::inspect_zoo(zoo)).expect("inspect JSON");
    assert!(json.contains("zoo\u{fffd}"));
}
