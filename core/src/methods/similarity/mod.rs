//! Representation similarity between two models on the same eval examples: rows of both matrices
//! are the same examples, columns are features (widths may differ).
//!
//! - [`linear_cka`]: linear centred kernel alignment (Kornblith et al. 2019).
//! - [`debiased_cka`]: CKA from the unbiased HSIC estimator (Song et al. 2012; Nguyen et al. 2021).
//! - [`mutual_knn`]: mutual k-nearest-neighbour alignment (Huh et al. 2024, the Platonic
//!   Representation Hypothesis).
//!
//! All accumulate in f64 and never form an `n x n` matrix in memory. A matrix holding NaN or
//! infinity gives NaN scores; so does a representation with no variance (a zero denominator).

mod debiased_cka;
mod linear_cka;
mod mutual_knn;

pub use debiased_cka::debiased_cka;
pub use linear_cka::linear_cka;
pub use mutual_knn::mutual_knn;

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::data::features::Features;
use crate::error::{CoreError, Result};

/// Neighbours per example in [`mutual_knn`] (Huh et al. 2024 use k = 10).
pub const DEFAULT_K: usize = 10;

/// The three similarity scores of a pair of representations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// [`linear_cka`].
    pub linear_cka: f64,
    /// [`debiased_cka`] (NaN with fewer than 4 examples).
    pub debiased_cka: f64,
    /// [`mutual_knn`] with [`DEFAULT_K`] neighbours (fewer when there are fewer examples).
    pub mutual_knn: f64,
}

/// All three scores of `a` and `b` (same examples in the same order).
pub fn similarity(a: &Features, b: &Features) -> Result<Similarity> {
    let (a, b) = (to_matrix(a), to_matrix(b));
    check_rows(&a, &b, 2)?;
    let debiased = if a.nrows() >= 4 {
        debiased_cka(&a, &b)?
    } else {
        f64::NAN
    };
    Ok(Similarity {
        linear_cka: linear_cka(&a, &b)?,
        debiased_cka: debiased,
        mutual_knn: mutual_knn(&a, &b, DEFAULT_K.min(a.nrows() - 1))?,
    })
}

/// `features` as an f64 matrix.
pub fn to_matrix(features: &Features) -> DMatrix<f64> {
    DMatrix::from_row_iterator(
        features.rows(),
        features.cols(),
        features.as_slice().iter().map(|&v| f64::from(v)),
    )
}

/// Checks that both matrices describe the same number (at least `min`) of examples.
fn check_rows(a: &DMatrix<f64>, b: &DMatrix<f64>, min: usize) -> Result<()> {
    if a.nrows() != b.nrows() {
        return Err(CoreError::InvalidArgument(format!(
            "similarity: representations of {} and {} examples",
            a.nrows(),
            b.nrows()
        )));
    }
    if a.nrows() < min {
        return Err(CoreError::InvalidArgument(format!(
            "similarity: needs at least {min} examples, got {}",
            a.nrows()
        )));
    }
    Ok(())
}

/// True when some value is NaN or infinite.
fn non_finite(m: &DMatrix<f64>) -> bool {
    m.iter().any(|v| !v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_or_tiny_inputs_are_errors_not_panics() {
        let a = Features::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 7.0]).unwrap();
        let b = Features::new(2, 2, vec![1.0; 4]).unwrap();
        assert!(similarity(&a, &b).is_err());
        let one = Features::new(1, 2, vec![1.0, 2.0]).unwrap();
        assert!(similarity(&one, &one).is_err());
        let empty = Features::new(0, 0, vec![]).unwrap();
        assert!(similarity(&empty, &empty).is_err());
        // Three examples: CKA and kNN are defined, debiased CKA is not.
        let s = similarity(&a, &a).unwrap();
        assert!((s.linear_cka - 1.0).abs() < 1e-12);
        assert!(s.debiased_cka.is_nan());
        assert_eq!(s.mutual_knn, 1.0);
    }

    #[test]
    fn nan_features_give_nan_scores() {
        let mut values: Vec<f32> = (0..40).map(|v| (v * v % 7) as f32).collect();
        let clean = Features::new(10, 4, values.clone()).unwrap();
        values[5] = f32::NAN;
        let dirty = Features::new(10, 4, values).unwrap();
        let s = similarity(&clean, &dirty).unwrap();
        assert!(s.linear_cka.is_nan() && s.debiased_cka.is_nan() && s.mutual_knn.is_nan());
    }
}
