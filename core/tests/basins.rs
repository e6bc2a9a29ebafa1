//! Basins over time on hand-made barrier matrices whose answer is known.

use std::collections::BTreeMap;

use lineage_core::methods::basins::{
    BarrierMatrix, BasinEvent, BasinHistory, ClusterMethod, average_linkage, basin_history, basin_tree, cluster_step,
    commitment_step, default_eps, matrices_from_rows, track,
};
use lineage_core::pipeline::basins_over_time::{cluster_rows, timeline_rows, tree_edge_rows};
use lineage_core::pipeline::clusterable::Diverged;

/// Nine seeds in three families interleaved in name order: family of `seed{i}` is `i % 3`.
fn family(run: &str) -> usize {
    run.trim_start_matches("seed").parse::<usize>().unwrap() % 3
}

fn seeds(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("seed{i}")).collect()
}

/// All pairs of the 9-run zoo at `step`, barrier given by `f(run_a, run_b)`.
fn pairs(step: u64, f: impl Fn(&str, &str) -> f64) -> Vec<(u64, String, String, f64)> {
    let runs = seeds(9);
    let mut rows = Vec::new();
    for i in 0..9 {
        for j in i + 1..9 {
            rows.push((step, runs[i].clone(), runs[j].clone(), f(&runs[i], &runs[j])));
        }
    }
    rows
}

/// Small deterministic jitter so barriers are not all equal.
fn jitter(a: &str, b: &str) -> f64 {
    let h = a
        .bytes()
        .chain(b.bytes())
        .fold(7u64, |h, x| h.wrapping_mul(31).wrapping_add(x as u64));
    (h % 100) as f64 * 1e-4
}

/// The zoo over time: step 0 everything connected; step 100 family 0 splits off; step 1000 three
/// families (small barriers within, large across).
fn zoo_rows() -> Vec<(u64, String, String, f64)> {
    let mut rows = pairs(0, |a, b| 0.01 + jitter(a, b));
    rows.extend(pairs(100, |a, b| {
        let (fa, fb) = (family(a), family(b));
        if fa == fb || (fa > 0 && fb > 0) {
            0.02 + jitter(a, b)
        } else {
            1.5 + jitter(a, b)
        }
    }));
    rows.extend(pairs(1000, |a, b| {
        if family(a) == family(b) {
            0.01 + jitter(a, b)
        } else {
            2.0 + 10.0 * jitter(a, b)
        }
    }));
    rows
}

fn families() -> Vec<Vec<String>> {
    vec![
        vec!["seed0".into(), "seed3".into(), "seed6".into()],
        vec!["seed1".into(), "seed4".into(), "seed7".into()],
        vec!["seed2".into(), "seed5".into(), "seed8".into()],
    ]
}

fn methods() -> Vec<ClusterMethod> {
    vec![
        ClusterMethod::Threshold { eps: Some(0.1) },
        ClusterMethod::AverageLinkage { eps: Some(0.1) },
        ClusterMethod::Spectral { k: 3, delta: 1.0 },
    ]
}

fn history(rows: Vec<(u64, String, String, f64)>, method: &ClusterMethod) -> BasinHistory {
    basin_history(&matrices_from_rows(rows).unwrap(), method, &BTreeMap::new()).unwrap()
}

fn members(h: &BasinHistory, step: u64) -> Vec<(u32, Vec<String>)> {
    h.step(step)
        .unwrap()
        .basins
        .iter()
        .map(|b| (b.id, b.members.clone()))
        .collect()
}

#[test]
fn final_step_has_the_three_families_by_every_method() {
    let ms = matrices_from_rows(zoo_rows()).unwrap();
    let last = ms.last().unwrap();
    assert_eq!(last.step, 1000);
    for method in methods() {
        let c = cluster_step(last, &method, None).unwrap();
        assert_eq!(c.n_clusters(), 3, "{method:?}");
        assert_eq!(c.members(), families(), "{method:?}");
        // Labels are numbered by smallest member: seed0's family is 0, seed1's 1, seed2's 2.
        assert_eq!(c.labels, [0, 1, 2, 0, 1, 2, 0, 1, 2], "{method:?}");
    }
}

#[test]
fn early_step_is_one_basin_for_threshold_methods() {
    let ms = matrices_from_rows(zoo_rows()).unwrap();
    for method in &methods()[..2] {
        let c = cluster_step(&ms[0], method, None).unwrap();
        assert_eq!(c.n_clusters(), 1);
    }
}

#[test]
fn default_eps_is_relative_to_endpoint_loss_and_reported() {
    let ms = matrices_from_rows(zoo_rows()).unwrap();
    let method = ClusterMethod::Threshold { eps: None };
    // Mean loss 1.0 -> eps 0.1: three families at the last step.
    let c = cluster_step(&ms[2], &method, Some(1.0)).unwrap();
    assert_eq!(c.eps(), Some(default_eps(1.0)));
    assert_eq!(c.n_clusters(), 3);
    // Mean loss 30 -> eps 3: everything connected.
    let c = cluster_step(&ms[2], &method, Some(30.0)).unwrap();
    assert_eq!(c.eps(), Some(3.0));
    assert_eq!(c.n_clusters(), 1);
    // Per-step losses through the whole pipeline; every tracked step reports its eps.
    let losses = BTreeMap::from([(0, 2.0), (100, 1.0), (1000, 0.5)]);
    let h = basin_history(&ms, &method, &losses).unwrap();
    let eps: Vec<Option<f64>> = h.steps.iter().map(|s| s.method.eps()).collect();
    assert_eq!(eps, [Some(0.2), Some(0.1), Some(0.05)]);
}

#[test]
fn one_basin_splits_into_three_with_stable_ids() {
    for method in &methods()[..2] {
        let h = history(zoo_rows(), method);
        let s0 = &h.steps[0];
        assert_eq!(s0.basins.len(), 1);
        assert_eq!(
            (s0.basins[0].id, s0.basins[0].event, s0.basins[0].parent),
            (0, BasinEvent::Birth, None)
        );

        // Step 100: family 0 splits off. The bigger part (J = 6/9) keeps id 0, family 0 gets id 1.
        let s1 = h.step(100).unwrap();
        let fam = families();
        let rest: Vec<String> = {
            let mut r = [fam[1].clone(), fam[2].clone()].concat();
            r.sort();
            r
        };
        assert_eq!(members(&h, 100), [(0, rest), (1, fam[0].clone())]);
        for b in &s1.basins {
            assert_eq!((b.event, b.parent), (BasinEvent::Split, Some(0)));
        }

        // Step 1000: family 0 continues as id 1; id 0 splits into families 1 (keeps 0) and 2 (new 2).
        assert_eq!(
            members(&h, 1000),
            [(0, fam[1].clone()), (1, fam[0].clone()), (2, fam[2].clone())]
        );
        let s2 = h.step(1000).unwrap();
        let ev: Vec<(u32, BasinEvent, Option<u32>)> = s2.basins.iter().map(|b| (b.id, b.event, b.parent)).collect();
        assert_eq!(
            ev,
            [
                (0, BasinEvent::Split, Some(0)),
                (1, BasinEvent::Continue, Some(1)),
                (2, BasinEvent::Split, Some(0))
            ]
        );
        assert!(h.steps.iter().all(|s| s.deaths.is_empty()));
        assert_eq!(h.n_ids, 3);
        assert_eq!(h.thread("seed5"), [(0, 0), (100, 0), (1000, 2)]);
        assert_eq!(h.basin_of(100, "seed3"), Some(1));

        // The tree: 1 + 2 + 3 nodes; edges carry the runs.
        let tree = basin_tree(&h);
        assert_eq!(tree.graph.node_count(), 6);
        assert_eq!(tree.graph.edge_count(), 5);
        let root = tree.node(0, 0).unwrap();
        let mut out: Vec<(u32, usize)> = tree
            .graph
            .neighbors(root)
            .map(|n| {
                let e = tree.graph.find_edge(root, n).unwrap();
                (tree.graph[n].basin, tree.graph[e].n_runs)
            })
            .collect();
        out.sort();
        assert_eq!(out, [(0, 6), (1, 3)]);
        let e = tree
            .graph
            .find_edge(tree.node(100, 0).unwrap(), tree.node(1000, 2).unwrap())
            .unwrap();
        assert_eq!(tree.graph[e].runs, ["seed2", "seed5", "seed8"]);
        assert_eq!(tree.lane_order(), [0, 1, 2]);

        // Table rows.
        assert_eq!(cluster_rows(&h, &Diverged::new()).len(), 27);
        let timeline: Vec<(u64, u32, u64, BasinEvent, Option<u32>)> = timeline_rows(&h, &Diverged::new())
            .into_iter()
            .map(|r| (r.step, r.basin, r.size, r.event, r.parent_basin))
            .collect();
        assert_eq!(
            timeline,
            [
                (0, 0, 9, BasinEvent::Birth, None),
                (100, 0, 6, BasinEvent::Split, Some(0)),
                (100, 1, 3, BasinEvent::Split, Some(0)),
                (1000, 0, 3, BasinEvent::Split, Some(0)),
                (1000, 1, 3, BasinEvent::Continue, Some(1)),
                (1000, 2, 3, BasinEvent::Split, Some(0)),
            ]
        );
        let edges: Vec<(u64, u32, u64, u32, u64)> = tree_edge_rows(&h, &Default::default())
            .into_iter()
            .map(|r| (r.step_from, r.basin_from, r.step_to, r.basin_to, r.n_runs))
            .collect();
        assert_eq!(
            edges,
            [
                (0, 0, 100, 0, 6),
                (0, 0, 100, 1, 3),
                (100, 0, 1000, 0, 3),
                (100, 0, 1000, 2, 3),
                (100, 1, 1000, 1, 3)
            ]
        );
    }
}

#[test]
fn merge_of_two_basins() {
    let close = |a: &str, b: &str| a.starts_with('a') == b.starts_with('a');
    let runs = ["a1", "a2", "b1", "b2"];
    let mut rows = Vec::new();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            rows.push((1, a.to_string(), b.to_string(), if close(a, b) { 0.01 } else { 1.0 }));
            rows.push((2, a.to_string(), b.to_string(), 0.01));
        }
    }
    let h = history(rows, &ClusterMethod::Threshold { eps: Some(0.1) });
    assert_eq!(h.steps[0].basins.len(), 2);
    let merged = &h.steps[1].basins;
    assert_eq!(merged.len(), 1);
    assert_eq!(
        (merged[0].id, merged[0].event, merged[0].parent),
        (0, BasinEvent::Merge, Some(0))
    );
    let inflow: Vec<(u32, Vec<String>)> = merged[0].inflow.iter().map(|c| (c.from, c.runs.clone())).collect();
    assert_eq!(
        inflow,
        [
            (0, vec!["a1".to_string(), "a2".into()]),
            (1, vec!["b1".to_string(), "b2".into()])
        ]
    );
    assert!(h.steps[1].deaths.is_empty(), "a merged basin is not a death");
    let edges: Vec<(u32, u32, u64)> = tree_edge_rows(&h, &Default::default())
        .iter()
        .map(|r| (r.basin_from, r.basin_to, r.n_runs))
        .collect();
    assert_eq!(edges, [(0, 0, 2), (1, 0, 2)]);
    assert_eq!(basin_tree(&h).graph.edge_count(), 2);
}

#[test]
fn ragged_steps_forks_deaths_and_returns() {
    // Step 1: a, b, c together; z alone. Step 2: b missing, z missing, fork d joins a/c, fork e alone.
    // Step 3: everything back: b rejoins, z alone again.
    let rows: Vec<(u64, &str, &str, f64)> = vec![
        (1, "a", "b", 0.01),
        (1, "a", "c", 0.01),
        (1, "b", "c", 0.01),
        (1, "a", "z", 1.0),
        (1, "b", "z", 1.0),
        (1, "c", "z", 1.0),
        (2, "a", "c", 0.01),
        (2, "a", "d", 0.01),
        (2, "c", "d", 0.01),
        (2, "a", "e", 1.0),
        (2, "c", "e", 1.0),
        (2, "d", "e", 1.0),
        (3, "a", "b", 0.01),
        (3, "a", "c", 0.01),
        (3, "b", "c", 0.01),
        (3, "a", "z", 1.0),
        (3, "b", "z", 1.0),
        (3, "c", "z", 1.0),
    ];
    let ms = matrices_from_rows(rows).unwrap();
    assert_eq!(ms[1].runs, ["a", "c", "d", "e"]);
    let h = basin_history(&ms, &ClusterMethod::Threshold { eps: Some(0.1) }, &BTreeMap::new()).unwrap();

    assert_eq!(
        members(&h, 1),
        [(0, vec!["a".into(), "b".into(), "c".into()]), (1, vec!["z".into()])]
    );
    // Step 2: {a,c,d} keeps id 0; {e} is born with id 2; z's basin 1 dies here.
    let s2 = h.step(2).unwrap();
    assert_eq!(
        members(&h, 2),
        [(0, vec!["a".into(), "c".into(), "d".into()]), (2, vec!["e".into()])]
    );
    assert_eq!(s2.basins[0].event, BasinEvent::Continue);
    assert_eq!((s2.basins[1].event, s2.basins[1].parent), (BasinEvent::Birth, None));
    assert_eq!(s2.deaths, [1]);
    // Step 3: b is back in basin 0; e's basin 2 dies; z returns as a new basin 3.
    let s3 = h.step(3).unwrap();
    assert_eq!(
        members(&h, 3),
        [(0, vec!["a".into(), "b".into(), "c".into()]), (3, vec!["z".into()])]
    );
    assert_eq!(s3.basins[0].event, BasinEvent::Continue);
    assert_eq!(s3.basins[1].event, BasinEvent::Birth);
    assert_eq!(s3.deaths, [2]);
    assert_eq!(h.thread("b"), [(1, 0), (3, 0)]);
    assert_eq!(h.basin_of(2, "b"), None);

    let deaths: Vec<(u64, u32, u64, Option<u32>)> = timeline_rows(&h, &Diverged::new())
        .into_iter()
        .filter(|r| r.event == BasinEvent::Death)
        .map(|r| (r.step, r.basin, r.size, r.parent_basin))
        .collect();
    assert_eq!(deaths, [(2, 1, 0, Some(1)), (3, 2, 0, Some(2))]);
    assert_eq!(basin_tree(&h).lane_order(), [0, 1, 2, 3]);
}

#[test]
fn results_do_not_depend_on_input_order() {
    let rows = zoo_rows();
    // Reverse the rows and swap every pair's endpoints, and rename nothing: same history.
    let permuted: Vec<(u64, String, String, f64)> = rows
        .iter()
        .rev()
        .map(|(s, a, b, v)| (*s, b.clone(), a.clone(), *v))
        .collect();
    // A different deterministic shuffle.
    let mut shuffled = rows.clone();
    let n = shuffled.len();
    for i in 0..n {
        shuffled.swap(i, (i * 37 + 11) % n);
    }
    for method in methods() {
        let h = history(rows.clone(), &method);
        assert_eq!(h, history(permuted.clone(), &method), "{method:?}");
        assert_eq!(h, history(shuffled.clone(), &method), "{method:?}");
        assert_eq!(
            cluster_rows(&h, &Diverged::new()),
            cluster_rows(&history(shuffled.clone(), &method), &Diverged::new())
        );
    }
}

#[test]
fn labels_follow_the_smallest_member_name() {
    // Renaming runs so that family 2 holds the alphabetically first run makes it label 0.
    let m = BarrierMatrix::from_pairs(
        7,
        [("zeta", "yak", 0.01), ("zeta", "alpha", 2.0), ("yak", "alpha", 2.0)],
    )
    .unwrap();
    for method in methods() {
        let method = match method {
            ClusterMethod::Spectral { delta, .. } => ClusterMethod::Spectral { k: 2, delta },
            other => other,
        };
        let c = cluster_step(&m, &method, None).unwrap();
        assert_eq!(c.runs, ["alpha", "yak", "zeta"]);
        assert_eq!(c.labels, [0, 1, 1], "{method:?}");
        assert_eq!(c.label_of("zeta"), Some(1));
    }
}

#[test]
fn dendrogram_order_groups_families_contiguously() {
    let ms = matrices_from_rows(zoo_rows()).unwrap();
    let d = average_linkage(&ms[2]);
    assert_eq!(d.merges.len(), 8);
    assert!(d.merges.windows(2).all(|w| w[0].distance <= w[1].distance));
    let order = d.leaf_order_runs();
    assert_eq!(order.len(), 9);
    for block in order.chunks(3) {
        let f = family(&block[0]);
        assert!(block.iter().all(|r| family(r) == f), "{order:?}");
    }
    // Sorted order interleaves the families, the dendrogram order does not.
    assert_eq!(order[..3], ["seed0", "seed3", "seed6"]);
    // The heatmap reordering puts small barriers in 3x3 diagonal blocks.
    let idx = d.leaf_order();
    let v = ms[2].reordered_values(&idx);
    for i in 0..9 {
        for j in 0..9 {
            assert_eq!(v[i * 9 + j] < 1.0, i / 3 == j / 3);
        }
    }
}

#[test]
fn commitment_examples() {
    // Run connects to its end state at step 300 and stays; an excursion at 200 does not count.
    let rows = [(0, 3.0), (100, 0.05), (200, 0.8), (300, 0.04), (400, 0.01), (500, 0.0)];
    assert_eq!(commitment_step(&rows, 500, 0.1), Some(300));
    // A smaller eps commits later.
    assert_eq!(commitment_step(&rows, 500, 0.02), Some(400));
    // Never connected before the end.
    assert_eq!(commitment_step(&[(0, 3.0), (100, 2.0), (200, 0.0)], 200, 0.1), None);
}

#[test]
fn rows_serialize() {
    let h = history(zoo_rows(), &ClusterMethod::Threshold { eps: Some(0.1) });
    let json = serde_json::to_string(&timeline_rows(&h, &Diverged::new())).unwrap();
    assert!(json.contains(r#""event":"birth""#));
    assert!(json.contains(r#""parent_basin":null"#));
    assert!(serde_json::to_string(&h).unwrap().contains(r#""method":"threshold""#));
}

#[test]
fn tracking_an_empty_history() {
    let h = track(&[]).unwrap();
    assert!(h.steps.is_empty());
    assert!(timeline_rows(&h, &Diverged::new()).is_empty());
    assert_eq!(basin_tree(&h).graph.node_count(), 0);
}

// Bootstrap intervals and co-membership on the PyTorch-written fixture zoo.

mod common;

/// The segment barrier straight from its definition (ARCHITECTURE.md, "Loss barriers"): the
/// largest bump above the chord of any sub-segment i < k < j, clipped at 0.
fn segment_by_definition(alphas: &[f64], f: &[f64]) -> f64 {
    let n = f.len();
    let mut best = 0.0f64;
    for i in 0..n {
        for j in i + 2..n {
            for k in i + 1..j {
                let chord = ((alphas[j] - alphas[k]) * f[i] + (alphas[k] - alphas[i]) * f[j]) / (alphas[j] - alphas[i]);
                best = best.max(f[k] - chord);
            }
        }
    }
    best
}

/// The endpoint barrier straight from its definition.
fn endpoint_by_definition(alphas: &[f64], f: &[f64]) -> f64 {
    let n = f.len();
    (0..n)
        .map(|k| f[k] - ((1.0 - alphas[k]) * f[0] + alphas[k] * f[n - 1]))
        .fold(0.0, f64::max)
}

/// NumPy's default (linear) quantile, by sorting.
fn numpy_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

#[test]
fn bootstrap_intervals_match_a_direct_computation_and_identical_runs_always_share_a_basin() {
    use lineage_core::methods::bootstrap::Resampler;
    use lineage_core::methods::interpolation::{BarrierKind, alpha_grid};
    use lineage_core::models::registry::evaluator_for;
    use lineage_core::output::schema::read_table;
    use lineage_core::output::tables::CoMembershipRow;
    use lineage_core::pipeline::options::{AnalysisOptions, SweepOptions};
    use lineage_core::pipeline::plan::PairKind;
    use lineage_core::pipeline::selection::SelectionOptions;
    use lineage_core::progress::NoProgress;

    const EXAMPLES: usize = 60;
    const RESAMPLES: usize = 40;
    const SEED: u64 = 5;
    // The fixture's two runs, plus `twin`: a copy of init0_order0 (zero barrier to it under every
    // resample, so always in its basin).
    let dir = tempfile::tempdir().unwrap();
    let zoo_dir = dir.path().join("zoo");
    for (from, to) in [
        ("init0_order0", "init0_order0"),
        ("init1_order0", "init1_order0"),
        ("init0_order0", "twin"),
    ] {
        for step in [0, 100, 1500] {
            let target = zoo_dir.join(format!("{to}/step{step}"));
            std::fs::create_dir_all(&target).unwrap();
            let source = common::fixture(&format!("zoo_safetensors/{from}/step{step}/model.safetensors"));
            std::fs::copy(source, target.join("model.safetensors")).unwrap();
        }
        let config = common::fixture(&format!("zoo_safetensors/{from}/config.json"));
        std::fs::copy(config, zoo_dir.join(format!("{to}/config.json"))).unwrap();
    }
    let data_path = common::fixture("digits_eval.safetensors");
    let selection = SelectionOptions {
        max_examples: Some(EXAMPLES),
        ..SelectionOptions::default()
    };
    let options = AnalysisOptions {
        sweep: SweepOptions {
            alphas: 5,
            cache_dir: dir.path().join("cache"),
            bootstrap: RESAMPLES,
            bootstrap_seed: SEED,
            selection: selection.clone(),
            ..SweepOptions::default()
        },
        representations: None,
        ..AnalysisOptions::default()
    };
    let zoo = lineage_loaders::discover(&zoo_dir);
    let analysis = lineage_core::analyse(&zoo, &data_path, &options, &NoProgress).unwrap();

    // The reference: per-example losses along the path, resampled and summarised here.
    let (data, _) = selection.eval_data(&data_path).unwrap();
    let alphas = alpha_grid(5).unwrap();
    let (a, b) = (common::load("init0_order0", 100), common::load("init1_order0", 100));
    let config = common::fixture("zoo_safetensors/init0_order0/config.json");
    let evaluator = evaluator_for(Some(&config), &a, &data).unwrap();
    let mut curve = vec![evaluator.evaluate(&a).unwrap()];
    curve.extend(evaluator.evaluate_path(&a, &b, &alphas[1..4]).unwrap());
    curve.push(evaluator.evaluate(&b).unwrap());
    let resampler = Resampler::examples(EXAMPLES, RESAMPLES, SEED);
    let mut barriers: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for r in 0..RESAMPLES {
        let w = resampler.weights(r);
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        assert_eq!(total, EXAMPLES as f64);
        let mean = |value: &dyn Fn(usize, usize) -> f64| -> Vec<f64> {
            (0..curve.len())
                .map(|k| (0..EXAMPLES).map(|i| f64::from(w[i]) * value(k, i)).sum::<f64>() / total)
                .collect()
        };
        let loss = mean(&|k, i| f64::from(curve[k].per_example_loss[i]));
        let error = mean(&|k, i| if curve[k].per_example_correct[i] { 0.0 } else { 1.0 });
        for (what, f) in [("loss", &loss), ("error", &error)] {
            barriers
                .entry(("segment", what))
                .or_default()
                .push(segment_by_definition(&alphas, f));
            barriers
                .entry(("endpoint", what))
                .or_default()
                .push(endpoint_by_definition(&alphas, f));
        }
    }
    let mut checked = 0;
    for row in analysis.sweep.barriers.iter().filter(|r| {
        r.step == 100 && r.pair == PairKind::Seeds && r.run_a == "init0_order0" && r.run_b == "init1_order0"
    }) {
        let kind = match row.kind {
            BarrierKind::Segment => "segment",
            BarrierKind::Endpoint => "endpoint",
        };
        for (what, lo, hi) in [
            ("loss", row.loss_barrier_lo, row.loss_barrier_hi),
            ("error", row.error_barrier_lo, row.error_barrier_hi),
        ] {
            let values = &barriers[&(kind, what)];
            let (want_lo, want_hi) = (numpy_quantile(values, 0.025), numpy_quantile(values, 0.975));
            let (lo, hi) = (lo.unwrap(), hi.unwrap());
            assert!((lo - want_lo).abs() < 1e-12, "{kind} {what} lo {lo} vs {want_lo}");
            assert!((hi - want_hi).abs() < 1e-12, "{kind} {what} hi {hi} vs {want_hi}");
            assert!(lo <= hi, "{kind} {what}: {lo} > {hi}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "both kinds, loss and error");
    // The resamples differ: a barrier between different inits is not the same on every resample.
    let segment_loss = &barriers[&("segment", "loss")];
    assert!(segment_loss.iter().any(|&v| v != segment_loss[0]));

    // Co-membership: the twin is always with the run it copies; every step has a frequency for
    // every pair of its three runs.
    let basins = analysis.basins.as_ref().unwrap();
    assert_eq!(basins.co_membership.len(), 3, "one per step");
    let out = dir.path().join("out");
    analysis.write(&out).unwrap();
    let rows: Vec<CoMembershipRow> = read_table(&out).unwrap();
    assert_eq!(rows.len(), 3 * 3);
    for row in &rows {
        assert_eq!(row.resamples, RESAMPLES as u64);
        assert!((0.0..=1.0).contains(&row.co_membership), "{row:?}");
        if (row.run_a.as_str(), row.run_b.as_str()) == ("init0_order0", "twin") {
            assert_eq!(row.co_membership, 1.0, "{row:?}");
            assert!(row.same_basin);
        }
    }
    // The result store keeps summaries only: no per-example values.
    let stored = std::fs::read_to_string(dir.path().join("cache/bootstrap.jsonl")).unwrap();
    assert!(
        stored.lines().all(|l| l.len() < 2_000),
        "a line per path, each a summary"
    );
    // A second run computes nothing and gives the same rows.
    let again = lineage_core::analyse(&zoo, &data_path, &options, &NoProgress).unwrap();
    assert_eq!(again.sweep.counts.computed, 0);
    assert_eq!(again.sweep.barriers, analysis.sweep.barriers);
}

#[test]
fn without_the_bootstrap_intervals_are_null_and_there_is_no_co_membership() {
    use lineage_core::pipeline::options::{AnalysisOptions, SweepOptions};
    use lineage_core::progress::NoProgress;

    let dir = tempfile::tempdir().unwrap();
    let options = AnalysisOptions {
        sweep: SweepOptions {
            alphas: 3,
            cache_dir: dir.path().join("cache"),
            bootstrap: 0,
            ..SweepOptions::default()
        },
        representations: None,
        ..AnalysisOptions::default()
    };
    let zoo = lineage_loaders::discover(&common::fixture("zoo_safetensors"));
    let data = common::fixture("digits_eval.safetensors");
    let analysis = lineage_core::analyse(&zoo, &data, &options, &NoProgress).unwrap();
    assert!(!analysis.sweep.barriers.is_empty());
    assert!(
        analysis
            .sweep
            .barriers
            .iter()
            .all(|r| r.loss_barrier_lo.is_none() && r.error_barrier_hi.is_none())
    );
    let basins = analysis.basins.unwrap();
    assert!(basins.co_membership.is_empty() && basins.uncertain.is_empty());
    assert!(
        !dir.path().join("cache/bootstrap.jsonl").exists()
            || std::fs::read_to_string(dir.path().join("cache/bootstrap.jsonl"))
                .unwrap()
                .is_empty()
    );
}

/// Each step's basins as sets of member runs (ids aside), from the `clusters` rows.
fn partitions(
    analysis: &lineage_core::pipeline::analysis::Analysis,
) -> BTreeMap<u64, std::collections::BTreeSet<Vec<String>>> {
    let mut by_basin: BTreeMap<(u64, String), Vec<String>> = BTreeMap::new();
    for row in &analysis.basins.as_ref().expect("basins computed").clusters {
        let basin = row
            .basin
            .map_or_else(|| format!("diverged {}", row.run), |b| b.to_string());
        by_basin.entry((row.step, basin)).or_default().push(row.run.clone());
    }
    let mut out: BTreeMap<u64, std::collections::BTreeSet<Vec<String>>> = BTreeMap::new();
    for ((step, _), mut members) in by_basin {
        members.sort();
        out.entry(step).or_default().insert(members);
    }
    out
}

/// Example evaluations of an analysis's sweep, all kinds together.
fn example_evaluations(analysis: &lineage_core::pipeline::analysis::Analysis) -> u64 {
    analysis.sweep.work.values().map(|w| w.example_evaluations).sum()
}

/// Runs `zoo_dir` on `data` exactly and with `--economy` (all parts, then each part alone), checks
/// each finds the same basins at every step, with at most a third of the exact run's example
/// evaluations for all parts together, and that a rerun of the economy analysis computes nothing
/// and changes nothing. Returns the example evaluations: exact, all parts, then alphas, examples and
/// pairs alone.
fn economy_against_exact(zoo_dir: &std::path::Path, data: &std::path::Path, cache: &std::path::Path) -> Vec<u64> {
    use lineage_core::pipeline::economy::EconomyOptions;
    use lineage_core::pipeline::options::{AnalysisOptions, SweepOptions};
    use lineage_core::progress::NoProgress;

    let options = |economy: EconomyOptions, bootstrap: usize| AnalysisOptions {
        sweep: SweepOptions {
            cache_dir: cache.join(economy.describe()),
            bootstrap,
            economy,
            ..SweepOptions::default()
        },
        representations: None,
        ..AnalysisOptions::default()
    };
    let zoo = lineage_loaders::discover(zoo_dir);
    // The bootstrap on as by default (every path's endpoints are then evaluated example by example),
    // and so co-membership meets the pruned pairs too.
    let exact = lineage_core::analyse(&zoo, data, &options(EconomyOptions::default(), 50), &NoProgress).unwrap();
    let economy = lineage_core::analyse(&zoo, data, &options(EconomyOptions::ALL, 50), &NoProgress).unwrap();
    assert!(exact.sweep.pruned.is_empty(), "the exact grid prunes nothing");
    assert_eq!(partitions(&economy), partitions(&exact), "{}", zoo_dir.display());
    let mut work = vec![example_evaluations(&exact), example_evaluations(&economy)];
    assert!(3 * work[1] <= work[0], "{}: economy {work:?}", zoo_dir.display());
    for row in economy.sweep.barriers.iter() {
        assert!(row.loss_barrier_lo.is_some(), "every economy barrier has its interval");
    }
    // Pruned pairs have no rows.
    for (step, a, b) in &economy.sweep.pruned {
        let rows: Vec<_> = economy
            .sweep
            .barriers
            .iter()
            .filter(|r| r.step == *step && &r.run_a == a && &r.run_b == b)
            .collect();
        assert!(rows.is_empty(), "pruned {step} {a} {b} has rows {rows:?}");
    }
    let again = lineage_core::analyse(&zoo, data, &options(EconomyOptions::ALL, 50), &NoProgress).unwrap();
    assert_eq!(example_evaluations(&again), 0, "a rerun computes nothing");
    assert_eq!(again.sweep.barriers, economy.sweep.barriers);
    assert_eq!(again.sweep.pruned, economy.sweep.pruned);
    assert_eq!(partitions(&again), partitions(&economy));
    for part in ["alphas", "examples", "pairs"] {
        let alone = EconomyOptions::parse(part).unwrap();
        let analysis = lineage_core::analyse(&zoo, data, &options(alone, 50), &NoProgress).unwrap();
        assert_eq!(
            partitions(&analysis),
            partitions(&exact),
            "{}: --economy {part}",
            zoo_dir.display()
        );
        let spent = example_evaluations(&analysis);
        assert!(
            spent <= work[0],
            "{}: --economy {part} spent {spent} > {}",
            zoo_dir.display(),
            work[0]
        );
        work.push(spent);
    }
    work
}

#[test]
fn economy_finds_the_exact_basins_with_at_most_a_third_of_the_example_evaluations() {
    use lineage_core::progress::NoProgress;
    use lineage_core::train::{EVAL_FILE, Recipe, TrainConfig, train_zoo};

    let dir = tempfile::tempdir().unwrap();
    // The digits fixture (PyTorch-trained): 2 runs x 3 steps.
    let fixture = common::fixture("zoo_safetensors");
    let work = economy_against_exact(&fixture, &common::fixture("digits_eval.safetensors"), dir.path());
    println!("digits fixture, example evaluations (exact, economy, alphas, examples, pairs alone): {work:?}");
    // The demo's zoo: 3 inits x 3 data orders, 9 checkpoints each, three basins at the end.
    let zoo_dir = dir.path().join("demo-zoo");
    train_zoo(
        &Recipe::Families { inits: 3, orders: 3 },
        &TrainConfig::default(),
        &zoo_dir,
        &NoProgress,
    )
    .unwrap();
    let work = economy_against_exact(&zoo_dir, &zoo_dir.join(EVAL_FILE), &dir.path().join("demo"));
    println!("demo zoo, example evaluations (exact, economy, alphas, examples, pairs alone): {work:?}");
    // Pruning alone is exact: the same barriers for every pair it computes, and fewer pairs.
    assert!(
        work[4] < work[0],
        "pruning saved nothing on a zoo with three-run basins"
    );
}
