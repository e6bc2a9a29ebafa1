//! The representation and dynamics views on the PyTorch-written fixture zoo (2 runs x steps 0,
//! 100, 1500 of a 64-128-128-10 ReLU MLP on 500 UCI digits), checked against plain candle
//! computations and for caching.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use lineage_core::data::features::Features;
use lineage_core::methods::similarity::{linear_cka, to_matrix};
use lineage_core::pipeline::options::{AnalysisOptions, RepresentationOptions, SweepOptions};
use lineage_core::pipeline::plan::PairKind;
use lineage_core::pipeline::representations::Representations;
use lineage_core::progress::NoProgress;

fn fixtures() -> PathBuf {
    common::fixture("")
}

fn checkpoint(run: &str, step: u64) -> HashMap<String, Tensor> {
    let path = fixtures().join(format!("zoo_safetensors/{run}/step{step}/model.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Post-ReLU output of fc2 (the last hidden layer), in plain candle ops.
fn last_hidden(params: &HashMap<String, Tensor>, x: &Tensor) -> Features {
    let mut h = x.clone();
    for i in 1..=2 {
        let w = &params[&format!("fc{i}.weight")];
        let b = &params[&format!("fc{i}.bias")];
        h = h
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(b)
            .unwrap()
            .relu()
            .unwrap();
    }
    let (n, d) = h.dims2().unwrap();
    Features::new(n, d, h.flatten_all().unwrap().to_vec1().unwrap()).unwrap()
}

fn flat(params: &HashMap<String, Tensor>, name: &str) -> Vec<f64> {
    params[name]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn analyse(cache: &Path, layer: Option<usize>) -> Result<Representations, lineage_core::CoreError> {
    let zoo = lineage_loaders::discover(&fixtures().join("zoo_safetensors"));
    let data = fixtures().join("digits_eval.safetensors");
    let options = AnalysisOptions {
        sweep: SweepOptions {
            alphas: 3,
            cache_dir: cache.to_path_buf(),
            ..SweepOptions::default()
        },
        representations: Some(RepresentationOptions {
            layer,
            trajectory_block: 2,
            ..RepresentationOptions::default()
        }),
        ..AnalysisOptions::default()
    };
    let analysis = lineage_core::analyse(&zoo, &data, &options, &NoProgress)?;
    Ok(analysis.representations.expect("representations of an MLP zoo"))
}

#[test]
fn views_of_the_fixture_zoo() {
    let cache = tempfile::tempdir().unwrap();
    let views = analyse(cache.path(), None).unwrap();
    assert!(views.warnings.is_empty(), "{:?}", views.warnings);
    assert_eq!(views.layer, Some(1));

    // Similarity: one seed pair at each of 3 steps, plus 2 runs x 2 checkpoints vs their final.
    assert_eq!(views.similarity.len(), 7);
    let (a, b) = ("init0_order0", "init1_order0");
    let data = lineage_core::EvalData::load(&fixtures().join("digits_eval.safetensors")).unwrap();
    let x = data.inputs.clone();
    let fa = last_hidden(&checkpoint(a, 1500), &x);
    let fb = last_hidden(&checkpoint(b, 1500), &x);
    let expected = linear_cka(&to_matrix(&fa), &to_matrix(&fb)).unwrap();
    let row = views
        .similarity
        .iter()
        .find(|r| r.pair == PairKind::Seeds && r.step == 1500)
        .unwrap();
    assert_eq!((row.run_a.as_str(), row.run_b.as_str(), row.layer), (a, b, 1));
    assert!(
        (row.linear_cka - expected).abs() < 1e-4,
        "{} vs {expected}",
        row.linear_cka
    );
    for r in &views.similarity {
        assert!((0.0..=1.0 + 1e-9).contains(&r.linear_cka), "{r:?}");
        assert!((0.0..=1.0).contains(&r.mutual_knn), "{r:?}");
        assert!(r.debiased_cka.is_finite());
    }
    for run in [a, b] {
        let to_final = |step| {
            views
                .similarity
                .iter()
                .find(|r| r.pair == PairKind::ToFinal && r.run_a == run && r.step == step)
                .unwrap()
                .clone()
        };
        let (early, late) = (to_final(0), to_final(100));
        assert_eq!(late.step_b, 1500);
        assert!(late.linear_cka > early.linear_cka, "{run}: {late:?} vs {early:?}");
    }

    // Probes: the trained network's last hidden layer decodes digits.
    assert_eq!(views.probes.len(), 6);
    let final_probe = views.probes.iter().find(|p| p.run == a && p.step == 1500).unwrap();
    assert!(final_probe.heldout_accuracy > 0.85, "{final_probe:?}");

    // Trajectories: distance from init against a direct computation.
    let (p0, p1500) = (checkpoint(a, 0), checkpoint(a, 1500));
    let direct: f64 = p0
        .keys()
        .map(|name| {
            flat(&p0, name)
                .iter()
                .zip(flat(&p1500, name))
                .map(|(u, v)| (u - v).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    let points: Vec<_> = views.trajectories.iter().filter(|t| t.run == a).collect();
    assert_eq!(points.iter().map(|t| t.step).collect::<Vec<_>>(), [0, 100, 1500]);
    assert_eq!(points[0].dist_from_init, 0.0);
    assert!((points[2].dist_from_init - direct).abs() < 1e-6 * direct);
    // Three points span at most a plane: two components explain everything.
    assert!((points[0].pc1_explained + points[0].pc2_explained - 1.0).abs() < 1e-9);
    assert!(points[2].pc1 >= points[0].pc1);

    // The joint projection: all six checkpoints on common axes, as a direct SVD of the centred
    // data matrix (rows: checkpoints in zoo order) gives them, up to each component's sign.
    let rows: Vec<Vec<f64>> = [a, b]
        .iter()
        .flat_map(|run| [0, 100, 1500].map(|step| (*run, step)))
        .map(|(run, step)| {
            let params = checkpoint(run, step);
            let mut names: Vec<&String> = params.keys().collect();
            names.sort();
            names.iter().flat_map(|n| flat(&params, n)).collect()
        })
        .collect();
    let cols = rows[0].len();
    let mut x = nalgebra::DMatrix::from_fn(6, cols, |i, j| rows[i][j]);
    for j in 0..cols {
        let mean = x.column(j).mean();
        x.column_mut(j).add_scalar_mut(-mean);
    }
    let svd = x.svd(true, false);
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    let u = svd.u.unwrap();
    let total: f64 = svd.singular_values.iter().map(|s| s * s).sum();
    for (c, &k) in order.iter().take(2).enumerate() {
        let direct: Vec<f64> = (0..6).map(|i| u[(i, k)] * svd.singular_values[k]).collect();
        let joint: Vec<f64> = views
            .trajectories
            .iter()
            .map(|t| if c == 0 { t.joint_pc1 } else { t.joint_pc2 })
            .collect();
        let sign = if direct[5] * joint[5] < 0.0 { -1.0 } else { 1.0 };
        for (d, j) in direct.iter().zip(&joint) {
            assert!(
                (sign * d - j).abs() < 1e-6 * svd.singular_values[k],
                "component {c}: {d} vs {j}"
            );
        }
        let explained = svd.singular_values[k].powi(2) / total;
        let row = &views.trajectories[0];
        let got = if c == 0 {
            row.joint_pc1_explained
        } else {
            row.joint_pc2_explained
        };
        assert!((explained - got).abs() < 1e-9, "{explained} vs {got}");
    }

    // Weight norms: 6 tensors x 6 checkpoints.
    assert_eq!(views.weight_norms.len(), 36);
    let norm = views
        .weight_norms
        .iter()
        .find(|w| w.run == a && w.step == 0 && w.tensor == "fc1.weight")
        .unwrap();
    let direct = flat(&p0, "fc1.weight").iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm.norm - direct).abs() < 1e-9 * direct);

    // Code length: every run has a log (batch size 64) and an eval at step 1500.
    assert_eq!(views.code_length.len(), 2);
    for row in &views.code_length {
        assert_eq!(row.n_examples, Some(64 * 1500));
        assert_eq!(row.final_step, Some(1500));
        let bits = row.prequential_bits_per_example.unwrap();
        assert!(bits > 0.0 && bits < 10f64.log2(), "{row:?}");
        assert!(row.final_eval_bits_per_example.unwrap() > 0.0);
    }

    // Training map: every checkpoint has a state among the selected ones; transitions add up to
    // the state changes along each run.
    assert_eq!(views.training_map.len(), 6);
    let n_states = views.training_map[0].n_states;
    assert!((1..=6).contains(&n_states));
    assert!(views.training_map.iter().all(|r| r.state < n_states));
    let changes: u64 = [a, b]
        .iter()
        .map(|run| {
            let path: Vec<u64> = views
                .training_map
                .iter()
                .filter(|r| r.run == *run)
                .map(|r| r.state)
                .collect();
            path.windows(2).filter(|w| w[0] != w[1]).count() as u64
        })
        .sum();
    assert_eq!(views.map_transitions.iter().map(|t| t.count).sum::<u64>(), changes);

    // A rerun computes nothing and gives the same tables.
    let again = analyse(cache.path(), None).unwrap();
    assert_eq!(again.counts.computed, 0);
    assert_eq!(again.counts.cached, views.counts.computed + views.counts.cached);
    assert_eq!(again.similarity, views.similarity);
    assert_eq!(again.probes, views.probes);
    assert_eq!(again.trajectories, views.trajectories);
    assert_eq!(again.weight_norms, views.weight_norms);
    assert_eq!(again.training_map, views.training_map);

    // Another layer is another unit; a layer beyond the model is an error.
    let first = analyse(cache.path(), Some(0)).unwrap();
    assert!(first.similarity.iter().all(|r| r.layer == 0));
    assert!(first.counts.computed > 0);
    let err = analyse(cache.path(), Some(2)).unwrap_err().to_string();
    assert!(err.contains("hidden layers 0..1"), "{err}");
}
