//! The app driven through egui_kittest (AccessKit), without a window: open the bundled example zoo,
//! let the analysis run on its worker thread, click the basin tree and the heatmap, export.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use lineage_core::AnalysisOptions;
use lineage_core::methods::interpolation::BarrierKind;
use lineage_core::output::report::Report;
use lineage_core::output::schema::{Table, read_table};
use lineage_core::output::tables::{BarrierRow, CheckpointRow, ClusterRow, EvalRow, SimilarityRow, TimelineRow};
use lineage_core::pipeline::options::SweepOptions;
use lineage_core::pipeline::plan::PairKind;

use super::LineageApp;
use super::recent::RecentFolders;
use super::session::Analysed;

/// The example zoo shipped in `assets/` (2 runs from different inits, steps 0, 100, 1500) and its
/// eval data one folder up.
fn example_zoo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/example-zoo")
}

/// Default analysis options with the result store in `cache`.
fn options(cache: &Path) -> AnalysisOptions {
    AnalysisOptions {
        sweep: SweepOptions {
            cache_dir: cache.to_path_buf(),
            ..SweepOptions::default()
        },
        ..AnalysisOptions::default()
    }
}

fn harness(cache: &Path) -> Harness<'static, LineageApp> {
    let app = LineageApp::new(egui::Context::default(), options(cache), RecentFolders::default());
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut LineageApp| app.show(ui), app)
}

/// Steps the UI until `done` holds (jobs run on their own threads meanwhile).
fn step_until(harness: &mut Harness<'static, LineageApp>, what: &str, done: impl Fn(&LineageApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(harness.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {}",
            harness.state().status
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run_ok();
}

/// The analysis of the open folder (the test has waited for it).
fn analysis_of<'h>(harness: &'h Harness<'static, LineageApp>) -> &'h Analysed {
    harness.state().session.as_ref().unwrap().analysis.as_ref().unwrap()
}

fn analysed(app: &LineageApp) -> bool {
    !app.is_busy() && app.session.as_ref().is_some_and(|s| s.analysis.is_some())
}

#[test]
fn open_analyse_click_heatmap_cell_shows_that_pair() {
    let cache = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.get_by_label_contains("Open a folder of checkpoints: File");
    harness.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut harness, "the analysis", analysed);

    let app = harness.state();
    let session = app.session.as_ref().unwrap();
    assert!(
        session.data.as_ref().unwrap().ends_with("digits_eval.safetensors"),
        "eval data found next to the zoo"
    );
    let analysis = session.analysis.as_ref().unwrap();
    let counts = analysis.analysis().sweep.counts;
    assert!(counts.computed > 0, "a first analysis computes");
    assert_eq!(counts.cached, 0, "nothing cached on a first analysis");
    assert_eq!(
        app.selection.step,
        Some(1500),
        "the last step is selected after the analysis"
    );
    assert_eq!(
        app.selection.pair,
        Some(("init0_order0".to_string(), "init1_order0".to_string())),
        "the pair with the highest barrier is shown first"
    );
    assert!(app.status.starts_with("Analysed"), "{}", app.status);

    // The basin tree has a disk per basin and step; clicking one selects its step.
    let basin_at_100 = analysis.basins().history.step(100).unwrap().basins[0].id;
    harness
        .get_by_label(&format!("basin {basin_at_100} at step 100"))
        .click();
    harness.run_ok();
    assert_eq!(harness.state().selection.step, Some(100));

    // Back to step 1500 through its disk, then click the heatmap cell of the two runs.
    let basin_at_1500 = analysis_of(&harness).basins().history.step(1500).unwrap().basins[0].id;
    harness
        .get_by_label(&format!("basin {basin_at_1500} at step 1500"))
        .click();
    harness.state_mut().selection.pair = None;
    harness.run_ok();
    assert_eq!(harness.state().selection.step, Some(1500));
    assert!(harness.query_by_label_contains("Click a heatmap cell").is_some());
    harness.get_by_label("init1_order0 × init0_order0 at step 1500").click();
    harness.run_ok();
    assert_eq!(
        harness.state().selection.pair,
        Some(("init0_order0".to_string(), "init1_order0".to_string()))
    );
    harness.get_by_label("Interpolation init0_order0 → init1_order0 at step 1500");
    // The heatmap explains its bootstrap hatching (1,000 resamples by default).
    harness.get_by_label_contains("co-membership between 0.05 and 0.95 over 1000 bootstrap resamples");
    // The barriers shown are those of the table rows.
    let endpoint = {
        let analysis = analysis_of(&harness);
        analysis
            .analysis()
            .sweep
            .barriers
            .iter()
            .find(|b| b.step == 1500 && b.pair == PairKind::Seeds && b.kind == BarrierKind::Endpoint)
            .unwrap()
            .loss_barrier
    };
    assert!(
        endpoint > 0.1,
        "different inits are separated by a barrier, got {endpoint}"
    );
    harness.get_by_label_contains(&format!("endpoint barrier: loss {endpoint:.4}"));

    // The results table lists the pair; clicking its row keeps the pair selected.
    harness.get_by_label("Results table").click();
    harness.run_ok();
    harness.get_by_label_contains("paths at step 1500");

    // The representation views were computed with the analysis and are shown in their tab.
    let views = analysis_of(&harness)
        .analysis()
        .representations
        .as_ref()
        .expect("views of an MLP zoo");
    assert_eq!(views.trajectories.len(), 6, "2 runs x 3 steps");
    assert!(
        views
            .similarity
            .iter()
            .any(|r| r.pair == PairKind::Seeds && r.step == 1500)
    );
    harness.get_by_label("Representations").click();
    harness.run_ok();
    harness.get_by_label_contains("hidden layer 1: linear CKA");
}

#[test]
fn reopening_an_analysed_folder_reads_the_shared_cache() {
    let cache = tempfile::tempdir().unwrap();
    let mut first = harness(cache.path());
    first.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut first, "the first analysis", analysed);
    let computed = analysis_of(&first).analysis().sweep.counts.computed;
    assert!(computed > 0);

    let mut second = harness(cache.path());
    second.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut second, "the second analysis", analysed);
    let counts = analysis_of(&second).analysis().sweep.counts;
    assert_eq!(counts.computed, 0, "nothing recomputed");
    assert_eq!(counts.cached, computed);
}

#[test]
fn the_selection_editor_narrows_the_analysis_and_reuses_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut harness, "the analysis", analysed);
    harness.get_by_label_contains("6 checkpoints (6 selected)");

    harness.get_by_label("Selection").click();
    harness.run_ok();
    harness.state_mut().selection_draft.steps = "100:".into();
    harness.get_by_label("Apply selection").click();
    harness.step();
    assert!(harness.state().is_busy(), "applying starts the analysis");
    step_until(&mut harness, "the analysis of the selection", analysed);
    let analysis = analysis_of(&harness).analysis();
    let mut steps: Vec<u64> = analysis.sweep.evals.iter().map(|e| e.step).collect();
    steps.dedup();
    assert_eq!(steps, [100, 1500, 100, 1500]);
    assert_eq!(analysis.sweep.counts.computed, 0, "every selected unit was cached");
    assert_eq!(analysis.options.sweep.selection.steps.as_deref(), Some("100:"));
    harness.get_by_label_contains("6 checkpoints (4 selected)");

    // A field that cannot be used is named in the status bar; the analysis stays.
    harness.state_mut().selection_draft.every = "two".into();
    harness.get_by_label("Apply selection").click();
    harness.run_ok();
    assert!(harness.state().status.contains("every"), "{}", harness.state().status);
    assert!(analysed(harness.state()));
}

#[test]
fn the_generalization_tab_shows_each_basin_on_each_eval_set() {
    let cache = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut harness, "the analysis", analysed);
    // File > Add eval set… with the same file: a second set, named apart, every number the same.
    let data = harness.state().session.as_ref().unwrap().data.clone().unwrap();
    harness.state_mut().add_eval_set(data);
    assert!(harness.state().is_busy(), "adding a set analyses again");
    step_until(&mut harness, "the analysis on two sets", analysed);
    assert!(harness.query_by_label_contains("eval set digits_eval-2:").is_some());
    harness.get_by_label("Generalization").click();
    harness.run_ok();
    let step = harness.state().selection.step.unwrap();
    let g = analysis_of(&harness).analysis().generalization.clone().unwrap();
    let rows: Vec<_> = g.basins.iter().filter(|r| r.step == step).collect();
    assert_eq!(rows.len(), 2 * rows.iter().filter(|r| r.set == "digits_eval-2").count());
    for label in ["error on digits_eval-2", "error on digits_eval"] {
        assert!(harness.query_all_by_label(label).count() > 0, "{label}");
    }
    // Each basin's cell on each set: the same numbers twice (the same data).
    let first = rows[0];
    let cell = format!(
        "{:.3} [{:.3}, {:.3}]",
        first.mean_error, first.min_error, first.max_error
    );
    assert!(harness.query_all_by_label(&cell).count() >= 2, "{cell}");
}

#[test]
fn export_writes_tables_figures_report_and_timeline() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut harness, "the analysis", analysed);

    harness.state_mut().export_all(out.path().join("results"));
    step_until(&mut harness, "the export", |app| !app.is_busy());
    assert!(
        harness.state().status.starts_with("Exported"),
        "{}",
        harness.state().status
    );
    for file in [
        "checkpoints.parquet",
        "evals.parquet",
        "interpolation.parquet",
        "barriers.parquet",
        "clusters.parquet",
        "timeline.parquet",
        "tree_edges.parquet",
        "report.json",
        "figures/basin_tree.svg",
        "figures/basin_tree.png",
    ] {
        assert!(out.path().join("results").join(file).is_file(), "{file} missing");
    }

    same_outputs_as_batch(&out.path().join("results"), cache.path());

    let timeline = out.path().join("timeline.parquet");
    harness.state_mut().export_timeline(timeline.clone());
    step_until(&mut harness, "the timeline export", |app| !app.is_busy());
    let frame = lineage_core::output::schema::read_parquet(&timeline).unwrap();
    let analysis = analysis_of(&harness);
    assert_eq!(frame.height(), analysis.basins().clusters.len());
    let columns: Vec<&str> = frame.get_column_names().iter().map(|c| c.as_str()).collect();
    assert_eq!(columns, ["step", "run", "basin", "basin_size", "event", "parent_basin"]);
}

#[test]
fn an_empty_folder_shows_its_problem_and_no_analysis() {
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.state_mut().open_folder(empty.path(), None);
    step_until(&mut harness, "opening", |app| !app.is_busy() && app.session.is_some());
    let app = harness.state();
    assert!(app.session.as_ref().unwrap().analysis.is_none());
    assert!(app.status.contains("0 checkpoints"), "{}", app.status);
    harness.get_by_label_contains("Problems (");
    harness.get_by_label_contains("no eval data");
}

#[test]
fn recent_folders_reopen_from_the_welcome_screen() {
    let cache = tempfile::tempdir().unwrap();
    let mut recent = RecentFolders::default();
    recent.push(&example_zoo());
    let mut app = LineageApp::new(egui::Context::default(), options(cache.path()), recent);
    app.auto_analyse = false;
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_ui_state(|ui, app: &mut LineageApp| app.show(ui), app);
    harness.get_by_label(&example_zoo().display().to_string()).click();
    step_until(&mut harness, "opening", |app| !app.is_busy() && app.session.is_some());
    let app = harness.state();
    assert_eq!(app.session.as_ref().unwrap().zoo.runs.len(), 2);
    assert!(
        app.session.as_ref().unwrap().analysis.is_none(),
        "auto-analysis was off"
    );
    harness.get_by_label("Analyse");
}

#[test]
fn the_align_toggle_adds_aligned_paths_with_a_lower_barrier() {
    let cache = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.state_mut().options.sweep.align = true;
    harness.state_mut().open_folder(&example_zoo(), None);
    step_until(&mut harness, "the analysis", analysed);
    let barrier = |aligned: bool| {
        let analysis = analysis_of(&harness);
        analysis
            .analysis()
            .sweep
            .barriers
            .iter()
            .find(|b| {
                b.step == 1500 && b.pair == PairKind::Seeds && b.kind == BarrierKind::Endpoint && b.aligned == aligned
            })
            .unwrap()
            .loss_barrier
    };
    let (raw, aligned) = (barrier(false), barrier(true));
    assert!(aligned < 0.5 * raw, "aligned {aligned} vs raw {raw}");
    harness.get_by_label_contains(&format!("endpoint barrier (aligned): loss {aligned:.4}"));
}

#[test]
fn a_pythia_style_language_model_zoo_opens_and_is_analysed() {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/causal_lm/zoo-gpt_neox");
    let cache = tempfile::tempdir().unwrap();
    let mut harness = harness(cache.path());
    harness.state_mut().open_folder(&zoo, None);
    step_until(&mut harness, "the analysis", analysed);

    let session = harness.state().session.as_ref().unwrap();
    assert!(
        session.data.as_ref().unwrap().ends_with("causal_lm/eval.parquet"),
        "token eval data found next to the zoo"
    );
    let analysis = analysis_of(&harness);
    assert!(
        analysis.analysis().sweep.evaluator.starts_with("gpt_neox"),
        "{}",
        analysis.analysis().sweep.evaluator
    );
    // The two inits are one basin at step 0 and two after training, as the barrier says.
    assert_eq!(analysis.basins().history.step(0).unwrap().basins.len(), 1);
    assert_eq!(analysis.basins().history.step(150).unwrap().basins.len(), 2);
    let views = analysis
        .analysis()
        .representations
        .as_ref()
        .expect("views of a language-model zoo");
    assert!(
        views
            .similarity
            .iter()
            .any(|r| r.pair == PairKind::Seeds && r.step == 150)
    );
    assert!(views.probes.is_empty(), "no probes without class labels");
    harness.get_by_label("seed1 × seed0 at step 150").click();
    harness.run_ok();
    harness.get_by_label("Interpolation seed0 → seed1 at step 150");
}

/// Runs `lineage batch` (its real code path, from parsed arguments) on the example zoo with the
/// result store `cache`, and checks that `exported` (the app's export) holds the same files with the
/// same rows, and the same `report.json` but for timing and store use.
fn same_outputs_as_batch(exported: &Path, cache: &Path) {
    use clap::Parser;
    let batch_out = tempfile::tempdir().unwrap();
    let data = example_zoo().parent().unwrap().join("digits_eval.safetensors");
    let cli = crate::Cli::try_parse_from([
        "lineage".as_ref(),
        "batch".as_ref(),
        example_zoo().as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        batch_out.path().as_os_str(),
        "--cache".as_ref(),
        cache.as_os_str(),
    ])
    .unwrap();
    let Some(crate::Command::Batch(args)) = cli.command else {
        panic!("not a batch command")
    };
    crate::commands::batch::run(&args).unwrap();

    let files = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(exported), files(batch_out.path()), "the same files");
    // Fourteen tables, report.json and the figures.
    assert!(files(exported).len() > 15, "{:?}", files(exported));
    fn same_rows<T: Table + PartialEq + std::fmt::Debug>(a: &Path, b: &Path) {
        assert_eq!(read_table::<T>(a).unwrap(), read_table::<T>(b).unwrap(), "{}", T::NAME);
    }
    same_rows::<CheckpointRow>(exported, batch_out.path());
    same_rows::<EvalRow>(exported, batch_out.path());
    same_rows::<BarrierRow>(exported, batch_out.path());
    same_rows::<ClusterRow>(exported, batch_out.path());
    same_rows::<TimelineRow>(exported, batch_out.path());
    same_rows::<SimilarityRow>(exported, batch_out.path());
    let normalised = |dir: &Path| {
        let mut report = Report::read(dir).unwrap();
        report.seconds = 0.0;
        (report.computed, report.cached) = (0, report.computed + report.cached);
        // The work done depends on what was cached, not on what the outputs say.
        report.work.clear();
        if let Some(views) = &mut report.views {
            (views.computed, views.cached) = (0, views.computed + views.cached);
        }
        report
    };
    let (gui, batch) = (normalised(exported), normalised(batch_out.path()));
    assert!(gui.views.is_some(), "the export's report has the representations");
    assert_eq!(gui, batch);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Copies the folder `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn a_diverged_checkpoint_is_marked_in_the_basin_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    copy_dir(&example_zoo(), &zoo);
    let last = zoo.join("init1_order0/step1500/model.safetensors");
    let device = candle_core::Device::Cpu;
    let tensors: std::collections::HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(&last, &device)
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, (t * f64::NAN).unwrap()))
            .collect();
    candle_core::safetensors::save(&tensors, &last).unwrap();

    let mut harness = harness(&tmp.path().join("cache"));
    let data = example_zoo().parent().unwrap().join("digits_eval.safetensors");
    harness.state_mut().open_folder(&zoo, Some(data));
    step_until(&mut harness, "the analysis", analysed);
    let analysis = analysis_of(&harness);
    assert_eq!(
        analysis.basins().diverged.iter().collect::<Vec<_>>(),
        [&(1500, "init1_order0".to_string())]
    );
    let warning = format!(
        "{}: run init1_order0 has diverged at step 1500",
        last.parent().unwrap().display()
    );
    assert!(
        analysis.analysis().warnings.iter().any(|w| w.starts_with(&warning)),
        "{:?}",
        analysis.analysis().warnings
    );
    harness.get_by_label("init1_order0 diverged at step 1500");
}
