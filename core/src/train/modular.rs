//! Synthetic modular addition: predict `(a + b) mod p` from one-hot `a` and `b` (Power et al. 2022).

use super::data::Dataset;
use super::error::TrainError;
use super::rng::Rng;

/// All `p^2` pairs, split into (train, eval) at random by `split_seed`, `train_fraction` for training.
pub fn train_eval(modulus: usize, train_fraction: f64, split_seed: u64) -> Result<(Dataset, Dataset), TrainError> {
    if !(2..=1024).contains(&modulus) {
        return Err(TrainError::Config(format!(
            "modular addition: modulus {modulus} is not in 2..=1024"
        )));
    }
    let n = modulus * modulus;
    let n_train = (train_fraction * n as f64).round() as usize;
    if !(train_fraction > 0.0 && train_fraction < 1.0) || n_train == 0 || n_train == n {
        return Err(TrainError::Config(format!(
            "modular addition: train_fraction {train_fraction} must leave both a train and an eval set \
             out of {n} pairs"
        )));
    }
    let all = all_pairs(modulus);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(split_seed, "modular-split").shuffle(&mut order);
    let (train, eval) = order.split_at(n_train);
    Ok((all.select(train), all.select(eval)))
}

/// Every pair (a, b), a-major: inputs one-hot(a) ++ one-hot(b), label (a + b) mod p.
pub fn all_pairs(modulus: usize) -> Dataset {
    let p = modulus;
    let mut inputs = vec![0.0f32; p * p * 2 * p];
    let mut labels = Vec::with_capacity(p * p);
    for a in 0..p {
        for b in 0..p {
            let row = (a * p + b) * 2 * p;
            inputs[row + a] = 1.0;
            inputs[row + p + b] = 1.0;
            labels.push(((a + b) % p) as u32);
        }
    }
    Dataset {
        inputs,
        labels,
        dim: 2 * p,
        classes: p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_one_hot_and_labelled() {
        let d = all_pairs(5);
        assert_eq!((d.len(), d.dim, d.classes), (25, 10, 5));
        // (a, b) = (3, 4): one-hot 3 and 5 + 4, label 2.
        let row = &d.inputs[(3 * 5 + 4) * 10..(3 * 5 + 5) * 10];
        assert_eq!(row, &[0., 0., 0., 1., 0., 0., 0., 0., 0., 1.]);
        assert_eq!(d.labels[3 * 5 + 4], 2);
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let (t1, e1) = train_eval(23, 0.5, 1).unwrap();
        let (t2, _) = train_eval(23, 0.5, 1).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len() + e1.len(), 529);
        assert!(train_eval(23, 1.0, 1).is_err());
    }
}
