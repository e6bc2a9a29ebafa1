//! Sparse parity with a shortcut: a synthetic task on which a network can generalise in two ways.
//!
//! Each example has `bits` random ±1 inputs and one more input, the *shortcut*. The label is the
//! parity of the first `parity_bits` bits (the true rule: 1 when an odd number of them is -1). The
//! shortcut input is `+spurious` for label 1 and `-spurious` for label 0 on the train and
//! in-distribution eval sets, so there it predicts the label as perfectly as the rule does; the
//! out-of-distribution set flips its sign, so a model that follows the shortcut gets it wrong
//! there and a model that follows the rule does not. The shortcut is a single linear input, far
//! simpler than a 4-bit parity, but a small `spurious` makes it slow to pick up: which of the two
//! a run learns first (and then keeps) depends on its initialisation.

use serde::{Deserialize, Serialize};

use super::data::Dataset;
use super::error::TrainError;
use super::rng::Rng;

/// The settings of the task ([`super::Task::Shortcut`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShortcutSpec {
    /// Random ±1 inputs per example.
    pub bits: usize,
    /// The label is the parity of the first this-many bits.
    pub parity_bits: usize,
    /// Magnitude of the shortcut input.
    pub spurious: f64,
    /// Training examples.
    pub train_examples: usize,
    /// Examples in each eval set (in- and out-of-distribution).
    pub eval_examples: usize,
    /// Seed of the examples drawn.
    pub sample_seed: u64,
}

/// (train, in-distribution eval, out-of-distribution eval), each drawn independently from `spec.sample_seed`.
pub fn sets(spec: &ShortcutSpec) -> Result<(Dataset, Dataset, Dataset), TrainError> {
    let bad = |m: String| Err(TrainError::Config(format!("shortcut task: {m}")));
    if !(1..=spec.bits).contains(&spec.parity_bits) {
        return bad(format!(
            "parity_bits {} must be between 1 and bits {}",
            spec.parity_bits, spec.bits
        ));
    }
    if !(spec.spurious.is_finite() && spec.spurious > 0.0) {
        return bad(format!("spurious must be a positive number, got {}", spec.spurious));
    }
    if spec.train_examples == 0 || spec.eval_examples == 0 {
        return bad("train_examples and eval_examples must be at least 1".into());
    }
    Ok((
        sample(spec, spec.train_examples, "shortcut-train", false),
        sample(spec, spec.eval_examples, "shortcut-id", false),
        sample(spec, spec.eval_examples, "shortcut-ood", true),
    ))
}

/// `n` examples from the named random stream; `flipped`: the shortcut points to the wrong label.
fn sample(spec: &ShortcutSpec, n: usize, stream: &str, flipped: bool) -> Dataset {
    let mut rng = Rng::new(spec.sample_seed, stream);
    let dim = spec.bits + 1;
    let mut inputs = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let bits: Vec<f32> = (0..spec.bits)
            .map(|_| if rng.next_u64() >> 63 == 1 { 1.0 } else { -1.0 })
            .collect();
        let odd = bits[..spec.parity_bits].iter().filter(|&&b| b < 0.0).count() % 2 == 1;
        let toward_one = odd != flipped;
        inputs.extend(bits);
        inputs.push(if toward_one { spec.spurious } else { -spec.spurious } as f32);
        labels.push(u32::from(odd));
    }
    Dataset {
        inputs,
        labels,
        dim,
        classes: 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ShortcutSpec {
        ShortcutSpec {
            bits: 6,
            parity_bits: 3,
            spurious: 0.5,
            train_examples: 200,
            eval_examples: 100,
            sample_seed: 4,
        }
    }

    /// Label by the rule (parity of the first `k` bits) and by the shortcut (sign of the last input).
    fn rule_and_shortcut(set: &Dataset, k: usize) -> Vec<(u32, u32)> {
        set.inputs
            .chunks(set.dim)
            .map(|x| {
                let odd = x[..k].iter().filter(|&&b| b < 0.0).count() % 2;
                (odd as u32, u32::from(x[set.dim - 1] > 0.0))
            })
            .collect()
    }

    #[test]
    fn rule_and_shortcut_agree_in_distribution_and_disagree_out_of_it() {
        let (train, id, ood) = sets(&spec()).unwrap();
        assert_eq!((train.len(), id.len(), ood.len()), (200, 100, 100));
        assert_eq!((train.dim, train.classes), (7, 2));
        for set in [&train, &id] {
            for (label, (rule, shortcut)) in set.labels.iter().zip(rule_and_shortcut(set, 3)) {
                assert_eq!((*label, *label), (rule, shortcut));
            }
        }
        for (label, (rule, shortcut)) in ood.labels.iter().zip(rule_and_shortcut(&ood, 3)) {
            assert_eq!((*label, 1 - *label), (rule, shortcut));
        }
        assert!(train.inputs.iter().all(|&x| [-1.0, 1.0, -0.5, 0.5].contains(&x)));
        // Both labels occur, and the three sets are different draws.
        assert!(train.labels.contains(&0) && train.labels.contains(&1));
        assert_ne!(id.inputs[..id.dim - 1], ood.inputs[..ood.dim - 1]);
    }

    #[test]
    fn sets_are_deterministic_and_bad_settings_named() {
        assert_eq!(sets(&spec()).unwrap(), sets(&spec()).unwrap());
        let other = sets(&ShortcutSpec {
            sample_seed: 5,
            ..spec()
        })
        .unwrap();
        assert_ne!(other.0, sets(&spec()).unwrap().0);
        let err = sets(&ShortcutSpec {
            parity_bits: 7,
            ..spec()
        });
        assert!(err.unwrap_err().to_string().contains("parity_bits"));
        let err = sets(&ShortcutSpec {
            spurious: 0.0,
            ..spec()
        });
        assert!(err.unwrap_err().to_string().contains("spurious"));
    }
}
