//! The convolutional family against PyTorch: the small torchvision zoos of `tests/fixtures/cnn`
//! (written by `make_fixture.py`): a CIFAR-layout ResNet-20 at width 16 on 1x8x8 digits,
//! torchvision's ResNet with its ImageNet stem and Bottleneck blocks at 1/8 width, a VGG-11-BN at
//! 1/16 width and a plain CNN without BatchNorm on 1x32x32 digits. Per-example losses
//! of every checkpoint, the interpolation path under each `--bn` mode, architecture inference, and
//! permutation alignment of every family (the ResNet's against a permutation found in PyTorch).
//! The evaluators run on `LINEAGE_TEST_DEVICE` (default the CPU; `scripts/gpu-check.sh` sets `cuda`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::{
    TORCH_TOLERANCE, assert_checkpoints_match, assert_close, assert_path_matches, barrier11, floats, own_fixture,
    read_json, test_device, widen,
};
use lineage_core::EvalData;
use lineage_core::methods::align::{align_to, weight_matching};
use lineage_core::methods::interpolation::endpoint_barrier;
use lineage_core::models::cnn::{BnMode, BnOptions};
use lineage_core::models::evaluator::Evaluator;
use lineage_core::models::registry::evaluator_on;
use lineage_core::names::Named;
use lineage_loaders::{ParamSet, load_params};
use serde_json::Value;

const FAMILIES: [&str; 4] = ["resnet20", "resnet_bottleneck", "vgg11_bn", "cnn"];

fn cnn_fixture(rel: &str) -> PathBuf {
    own_fixture(&format!("cnn/{rel}"))
}

fn load(family: &str, run: &str, step: u64) -> ParamSet {
    load_params(&cnn_fixture(&format!(
        "zoo/{family}/{run}/step{step}/model.safetensors"
    )))
    .unwrap()
}

fn config(family: &str) -> PathBuf {
    cnn_fixture(&format!("zoo/{family}/seed0/config.json"))
}

fn reference() -> Value {
    read_json(&cnn_fixture("reference.json"))
}

/// The eval set of `family` (`reference.json` names its file: the ResNet's digits are 1x8x8, the
/// others' 1x32x32).
fn data(family: &str) -> EvalData {
    let file = reference()["eval"][family].as_str().unwrap().to_string();
    EvalData::load(&cnn_fixture(&file)).unwrap()
}

/// The BatchNorm options the reference was computed with.
fn bn(mode: BnMode) -> BnOptions {
    let r = reference();
    BnOptions {
        mode,
        data: None,
        examples: r["reset_examples"].as_u64().unwrap() as usize,
        batch: r["reset_batch"].as_u64().unwrap() as usize,
    }
}

fn evaluator(family: &str, mode: BnMode, reference_params: &ParamSet) -> Box<dyn Evaluator> {
    evaluator_on(test_device(), bn(mode), Default::default())(Some(&config(family)), reference_params, &data(family))
        .unwrap()
}

/// The final checkpoints of the two seeds (different initialisations).
fn pair(family: &str) -> (ParamSet, ParamSet) {
    let r = reference();
    let step = |key: &str| -> u64 {
        let text = r["paths"][family][key].as_str().unwrap();
        text.rsplit('/').next().unwrap().parse().unwrap()
    };
    (load(family, "seed0", step("a")), load(family, "seed1", step("b")))
}

#[test]
fn every_checkpoint_matches_pytorch() {
    let reference = reference();
    for family in FAMILIES {
        let checkpoints = &reference["checkpoints"][family];
        let evaluator = evaluator(family, BnMode::Interpolate, &pair(family).0);
        assert_checkpoints_match(evaluator.as_ref(), checkpoints, |run, step| load(family, run, step));
        println!(
            "{family}: {} checkpoints match: {}",
            checkpoints.as_object().unwrap().len(),
            evaluator.describe()
        );
    }
}

#[test]
fn paths_match_pytorch_under_every_bn_mode() {
    let reference = reference();
    let alphas = floats(&reference["alphas"]);
    let mid = alphas.iter().position(|&a| a == 0.5).unwrap();
    for family in FAMILIES {
        let (a, b) = pair(family);
        for mode in BnMode::ALL {
            let path = &reference["paths"][family][mode.name()];
            let evaluator = evaluator(family, *mode, &a);
            let results = assert_path_matches(evaluator.as_ref(), &a, &b, &alphas, path);
            assert_close(
                &format!("{family} {}: per-example loss at alpha 0.5", mode.name()),
                &widen(&results[mid].per_example_loss),
                &floats(&path["per_example_loss_mid"]),
                TORCH_TOLERANCE,
            );
            // The endpoints evaluated alone are the path's ends (statistics recomputed alike).
            let alone = evaluator.evaluate(&a).unwrap();
            assert!((alone.loss - results[0].loss).abs() < 1e-6, "{family} {}", mode.name());
            let losses: Vec<f64> = results.iter().map(|r| r.loss).collect();
            println!("{family} {:>11}: loss {losses:.4?}", mode.name());
        }
    }
}

#[test]
fn bn_modes_differ_where_pytorch_says_and_recomputing_lowers_the_barrier() {
    let reference = reference();
    let alphas = floats(&reference["alphas"]);
    for family in ["resnet20", "vgg11_bn"] {
        let barrier = |mode: &str| endpoint_barrier(&alphas, &floats(&reference["paths"][family][mode]["loss"]));
        // The reference itself shows variance collapse: blended statistics give a larger barrier.
        assert!(barrier("interpolate") > barrier("reset"), "{family}");
        let (a, b) = pair(family);
        let descriptions: Vec<String> = BnMode::ALL
            .iter()
            .map(|m| evaluator(family, *m, &a).describe())
            .collect();
        assert!(descriptions[0].contains("batchnorm interpolate") && !descriptions[0].contains("reset images"));
        assert!(
            descriptions[1].contains("batchnorm reset (statistics of 48 reset images"),
            "{}",
            descriptions[1]
        );
        assert!(descriptions[2].contains("batchnorm repair"), "{}", descriptions[2]);
        let _ = b;
    }
    // Without BatchNorm the mode changes nothing, and is not part of the cache key.
    let (a, _) = pair("cnn");
    let plain: Vec<String> = BnMode::ALL
        .iter()
        .map(|m| evaluator("cnn", *m, &a).describe())
        .collect();
    assert!(
        plain.iter().all(|d| d == &plain[0] && !d.contains("batchnorm")),
        "{plain:?}"
    );
}

#[test]
fn the_reset_set_is_part_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let eval = data("resnet20");
    let image: Vec<usize> = [48].into_iter().chain(eval.example_shape.iter().copied()).collect();
    let write = |name: &str, start: usize| {
        let path = dir.path().join(name);
        let inputs = eval
            .inputs
            .narrow(0, start, 48)
            .unwrap()
            .reshape(image.as_slice())
            .unwrap();
        let labels = Tensor::new(&eval.labels[start..start + 48], &Device::Cpu).unwrap();
        let map = HashMap::from([("inputs".to_string(), inputs), ("labels".to_string(), labels)]);
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    };
    let (a, b) = pair("resnet20");
    let with = |path: Option<PathBuf>| {
        let options = BnOptions {
            data: path,
            ..bn(BnMode::Reset)
        };
        evaluator_on(test_device(), options, Default::default())(Some(&config("resnet20")), &a, &eval).unwrap()
    };
    let default = with(None);
    // The same images from a file: the same key and the same results.
    let same = with(Some(write("same.safetensors", 0)));
    assert_eq!(same.describe(), default.describe());
    let other = with(Some(write("other.safetensors", 16)));
    assert_ne!(other.describe(), default.describe());
    let mid = |e: &dyn Evaluator| e.evaluate_path(&a, &b, &[0.5]).unwrap()[0].loss;
    assert_eq!(mid(same.as_ref()), mid(default.as_ref()));
    assert_ne!(mid(other.as_ref()), mid(default.as_ref()));
}

#[test]
fn the_architecture_is_inferred_from_tensor_names() {
    for family in FAMILIES {
        let (a, _) = pair(family);
        let named = evaluator(family, BnMode::Interpolate, &a);
        let inferred =
            evaluator_on(test_device(), bn(BnMode::Interpolate), Default::default())(None, &a, &data(family)).unwrap();
        assert_eq!(inferred.describe(), named.describe(), "{family}");
        assert_eq!(inferred.evaluate(&a).unwrap(), named.evaluate(&a).unwrap(), "{family}");
    }
    let resnet = evaluator("resnet20", BnMode::Reset, &pair("resnet20").0);
    assert!(
        resnet
            .describe()
            .starts_with("resnet20 (cifar stem, basic blocks 3-3-3, width 16, 10 classes) on 64 images 1x8x8"),
        "{}",
        resnet.describe()
    );
    let bottleneck = evaluator("resnet_bottleneck", BnMode::Reset, &pair("resnet_bottleneck").0);
    assert!(
        bottleneck.describe().starts_with(
            "resnet14 (imagenet stem, bottleneck blocks 1-1-1-1, width 8, 10 classes) on 64 images 1x32x32"
        ),
        "{}",
        bottleneck.describe()
    );
}

/// The ResNet with akamaster/pytorch_resnet_cifar10's names: `shortcut` projections, `linear` head.
#[test]
fn cifar_resnet_names_are_accepted() {
    let (a, _) = pair("resnet20");
    let renamed = ParamSet::from_raw(
        a.iter()
            .map(|(n, t)| (n.replace("downsample", "shortcut").replace("fc.", "linear."), t.clone()))
            .collect(),
    )
    .unwrap();
    assert!(renamed.get("layer2.0.shortcut.0.weight").is_some() && renamed.get("linear.weight").is_some());
    let factory = evaluator_on(test_device(), bn(BnMode::Interpolate), Default::default());
    let got = factory(None, &renamed, &data("resnet20"))
        .unwrap()
        .evaluate(&renamed)
        .unwrap();
    let want = evaluator("resnet20", BnMode::Interpolate, &a).evaluate(&a).unwrap();
    assert_eq!(got, want);
}

#[test]
fn bad_configs_and_data_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = pair("resnet20");
    let factory = evaluator_on(test_device(), bn(BnMode::Reset), Default::default());
    let with_config = |text: &str| {
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        factory(Some(&path), &a, &data("resnet20")).err().unwrap().to_string()
    };
    let err = with_config(r#"{"arch": "resnet", "depth": 32}"#);
    assert!(
        err.contains("config.json") && err.contains("`depth` is 32 but the checkpoint has 20"),
        "{err}"
    );
    let err = with_config(r#"{"arch": "resnet18"}"#);
    assert!(
        err.contains("arch `resnet18`, but the checkpoint is a resnet20"),
        "{err}"
    );
    let err = with_config(r#"{"arch": "vgg11"}"#);
    assert!(err.contains("arch `vgg11`"), "{err}");
    let err = with_config(r#"{"arch": "resnet", "input_shape": [1, 32]}"#);
    assert!(err.contains("`input_shape`"), "{err}");

    // Flattened images need `input_shape`.
    let eval = data("resnet20");
    let flat = EvalData::from_tensors(eval.inputs.clone(), eval.labels.clone(), None, false).unwrap();
    let err = factory(Some(&config("resnet20")), &a, &flat).err().unwrap().to_string();
    assert!(
        err.contains("needs images [N, C, H, W]") && err.contains("input_shape"),
        "{err}"
    );
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"arch": "resnet", "input_shape": [1, 8, 8]}"#).unwrap();
    let shaped = factory(Some(&path), &a, &flat).unwrap();
    assert_eq!(
        shaped.evaluate(&a).unwrap(),
        factory(Some(&config("resnet20")), &a, &eval)
            .unwrap()
            .evaluate(&a)
            .unwrap()
    );

    // A checkpoint missing a tensor names it.
    let partial = ParamSet::from_raw(
        a.iter()
            .filter(|(n, _)| *n != "layer3.2.bn2.running_var")
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    )
    .unwrap();
    let err = factory(None, &partial, &eval).err().unwrap().to_string();
    assert!(err.contains("layer3.2.bn2.running_var"), "{err}");
    let err = evaluator_on(
        test_device(),
        BnOptions {
            batch: 1,
            ..bn(BnMode::Reset)
        },
        Default::default(),
    )(None, &a, &eval)
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("batches of at least 2"), "{err}");
}

/// Per-example losses of `params`, widened.
fn losses(evaluator: &dyn Evaluator, params: &ParamSet) -> Vec<f64> {
    widen(&evaluator.evaluate(params).unwrap().per_example_loss)
}

/// `--align` leaves each model's function unchanged: every family, with blended and recomputed
/// BatchNorm statistics. The cross-init barriers before and after are printed (the ResNet's are
/// checked in `aligning_the_resnet_matches_pytorch_and_lowers_its_barrier`).
#[test]
fn alignment_keeps_each_function() {
    for family in FAMILIES {
        let (a, b) = pair(family);
        for mode in [BnMode::Interpolate, BnMode::Reset] {
            let evaluator = evaluator(family, mode, &a);
            let spec = evaluator.permutation_spec(&a).unwrap();
            let matching = weight_matching(&spec, &a, &b, 0).unwrap();
            assert!(matching.converged, "{family}: {:?}", matching.objective);
            let moved = matching
                .perms
                .iter()
                .zip(spec.identity())
                .filter(|(p, id)| **p != *id)
                .count();
            assert!(moved > 0, "{family}: weight matching kept every unit in place");
            let aligned = align_to(&spec, &a, &b, 0).unwrap();
            assert_close(
                &format!("{family} {}: per-example loss of the aligned B", mode.name()),
                &losses(evaluator.as_ref(), &aligned),
                &losses(evaluator.as_ref(), &b),
                TORCH_TOLERANCE,
            );
            if mode == BnMode::Reset && family != "cnn" {
                println!(
                    "{family} cross-init endpoint loss barrier (bn reset): raw {:.4}, aligned {:.4}",
                    barrier11(evaluator.as_ref(), &a, &b),
                    barrier11(evaluator.as_ref(), &a, &aligned)
                );
            }
        }
    }
}

/// Weight matching recovers a random permutation of a ResNet: B = pi(A) is aligned back onto A.
#[test]
fn weight_matching_undoes_a_random_permutation_of_a_resnet() {
    let (a, _) = pair("resnet20");
    let evaluator = evaluator("resnet20", BnMode::Interpolate, &a);
    let spec = evaluator.permutation_spec(&a).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut perms = spec.identity();
    for p in &mut perms {
        for i in (1..p.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            p.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
    let b = spec.apply(&a, &perms).unwrap();
    assert_close(
        "per-example loss of pi(A)",
        &losses(evaluator.as_ref(), &b),
        &losses(evaluator.as_ref(), &a),
        TORCH_TOLERANCE,
    );
    let aligned = align_to(&spec, &a, &b, 0).unwrap();
    for (name, t) in a.iter() {
        let diff = (t - aligned.get(name).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "`{name}` differs after aligning pi(A) onto A");
    }
}

/// The ResNet aligned by the permutation PyTorch's weight matching found (`make_fixture.py`): the
/// spec applies it as PyTorch does (the permuted B's per-example losses and the aligned paths
/// under every `--bn` mode agree within 1e-4), it computes B's function, and it lowers the
/// cross-init barrier under `--bn reset` in PyTorch's numbers and in lineage's own weight
/// matching, whose aligned B also computes B's function.
#[test]
fn aligning_the_resnet_matches_pytorch_and_lowers_its_barrier() {
    let reference = reference();
    let alphas = floats(&reference["alphas"]);
    let expected = &reference["paths"]["resnet20"];
    let (a, b) = pair("resnet20");
    let reset = evaluator("resnet20", BnMode::Reset, &a);
    let spec = reset.permutation_spec(&a).unwrap();
    let torch_perms = expected["aligned"]["perms"].as_object().unwrap();
    let names: Vec<&str> = spec.groups.iter().map(|g| g.name.as_str()).collect();
    let mut torch_names: Vec<&str> = torch_perms.keys().map(String::as_str).collect();
    torch_names.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, torch_names,
        "lineage and the fixture script name the same groups"
    );
    let perms: Vec<Vec<usize>> = names
        .iter()
        .map(|g| {
            let p = torch_perms[*g].as_array().unwrap();
            p.iter().map(|i| i.as_u64().unwrap() as usize).collect()
        })
        .collect();
    let torch_aligned = spec.apply(&b, &perms).unwrap();
    let interpolate = evaluator("resnet20", BnMode::Interpolate, &a);
    assert_close(
        "per-example loss of B permuted by PyTorch's matching",
        &losses(interpolate.as_ref(), &torch_aligned),
        &floats(&expected["aligned"]["per_example_loss_b"]),
        TORCH_TOLERANCE,
    );
    assert_close(
        "per-example loss of B permuted by PyTorch's matching, against B's",
        &losses(interpolate.as_ref(), &torch_aligned),
        &losses(interpolate.as_ref(), &b),
        TORCH_TOLERANCE,
    );
    for mode in BnMode::ALL {
        let path = &expected["aligned"][mode.name()];
        assert_path_matches(
            evaluator("resnet20", *mode, &a).as_ref(),
            &a,
            &torch_aligned,
            &alphas,
            path,
        );
    }
    let torch_barrier = |path: &Value| endpoint_barrier(&alphas, &floats(&path["reset"]["loss"]));
    let (raw, aligned) = (torch_barrier(expected), torch_barrier(&expected["aligned"]));
    println!("PyTorch, bn reset, 5 alphas: endpoint loss barrier raw {raw:.4}, aligned {aligned:.4}");
    assert!(aligned < raw, "PyTorch: aligned {aligned} is not below raw {raw}");

    // lineage's own weight matching.
    let ours = align_to(&spec, &a, &b, 0).unwrap();
    assert_close(
        "per-example loss of B aligned by lineage",
        &losses(reset.as_ref(), &ours),
        &losses(reset.as_ref(), &b),
        TORCH_TOLERANCE,
    );
    let (raw, aligned) = (barrier11(reset.as_ref(), &a, &b), barrier11(reset.as_ref(), &a, &ours));
    println!("lineage, bn reset, 11 alphas: endpoint loss barrier raw {raw:.4}, aligned {aligned:.4}");
    assert!(aligned < raw, "lineage: aligned {aligned} is not below raw {raw}");
}

/// The representations (the inputs of the head's linear layers) are those the logits come from:
/// the last one times the last linear layer gives each example's loss as evaluated, under
/// stored and recomputed statistics; the pooled features come first, a hidden layer's output is
/// after its ReLU.
#[test]
fn representations_are_the_inputs_of_the_head() {
    for family in FAMILIES {
        let (a, _) = pair(family);
        let head = a
            .names()
            .filter(|n| n.ends_with(".weight") && (n.starts_with("classifier.") || *n == "fc.weight"))
            .max_by_key(|n| n.split('.').nth(1).and_then(|i| i.parse::<usize>().ok()))
            .unwrap()
            .trim_end_matches(".weight")
            .to_string();
        let (weight, bias) = (
            a.get(&format!("{head}.weight")).unwrap(),
            a.get(&format!("{head}.bias")).unwrap(),
        );
        for mode in [BnMode::Interpolate, BnMode::Reset] {
            let evaluator = evaluator(family, mode, &a);
            let layers = evaluator.n_hidden_layers();
            assert_eq!(layers, if family == "cnn" { 2 } else { 1 }, "{family}");
            let point = evaluator.prepare(&a).unwrap();
            let features = evaluator.hidden_activations(&point, layers - 1).unwrap();
            let x = Tensor::from_vec(
                features.as_slice().to_vec(),
                (features.rows(), features.cols()),
                &Device::Cpu,
            )
            .unwrap();
            let logits = x
                .matmul(&weight.t().unwrap())
                .unwrap()
                .broadcast_add(bias)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let labels = &data(family).labels;
            let from_head: Vec<f64> = logits
                .iter()
                .zip(labels)
                .map(|(row, &label)| {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
                    max + sum.ln() - row[label as usize] as f64
                })
                .collect();
            assert_close(
                &format!("{family} {}: loss from the last representation", mode.name()),
                &from_head,
                &losses(evaluator.as_ref(), &a),
                TORCH_TOLERANCE,
            );
            if layers == 2 {
                let hidden = evaluator.hidden_activations(&point, 0).unwrap();
                assert_eq!(hidden.cols(), 64, "{family}: 16 channels pooled to 2x2");
                assert!(features.as_slice().iter().all(|&v| v >= 0.0), "after the ReLU");
            }
            assert!(evaluator.hidden_activations(&point, layers).is_err());
        }
    }
}
