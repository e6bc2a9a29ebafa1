//! Debiased CKA: CKA computed from the unbiased HSIC estimator of Song et al. (2012), as used by
//! Nguyen, Raghu and Kornblith (2021).

use nalgebra::{DMatrix, DVector};

use super::{check_rows, non_finite};
use crate::error::{CoreError, Result};

/// Debiased linear CKA of `x` `[n, p]` and `y` `[n, q]` (n >= 4):
/// `HSIC_u(K, L) / sqrt(HSIC_u(K, K) · HSIC_u(L, L))` with `K = X Xᵀ`, `L = Y Yᵀ` and
///
/// `HSIC_u(K, L) = [tr(K̃ L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))`,
///
/// where `K̃`, `L̃` are the Gram matrices with their diagonals set to zero. Every term is computed
/// from `Xᵀ Y`, `Xᵀ 1` and the row norms, so no `n x n` matrix is formed. Unlike [`super::linear_cka`]
/// it is not biased upwards when there are few examples per feature; it can be slightly negative.
/// NaN for non-finite input or when a self-HSIC is not positive.
pub fn debiased_cka(x: &DMatrix<f64>, y: &DMatrix<f64>) -> Result<f64> {
    check_rows(x, y, 4)?;
    if non_finite(x) || non_finite(y) {
        return Ok(f64::NAN);
    }
    let (gx, gy) = (GramSummary::new(x), GramSummary::new(y));
    let xy = unbiased_hsic(&gx, &gy, x.tr_mul(y).norm_squared());
    let xx = unbiased_hsic(&gx, &gx, x.tr_mul(x).norm_squared());
    let yy = unbiased_hsic(&gy, &gy, y.tr_mul(y).norm_squared());
    if !(xx > 0.0 && yy > 0.0) {
        return Ok(f64::NAN);
    }
    let value = xy / (xx * yy).sqrt();
    if value.is_finite() {
        Ok(value)
    } else {
        Err(CoreError::InvalidArgument("debiased CKA: overflow".into()))
    }
}

/// What the unbiased estimator needs of a linear Gram matrix `K = X Xᵀ` without forming it.
struct GramSummary {
    /// `diag(K)`: squared row norms.
    diag: DVector<f64>,
    /// `K̃ 1 = X (Xᵀ 1) - diag(K)`.
    row_sums: DVector<f64>,
    /// `1ᵀ K̃ 1`.
    total: f64,
}

impl GramSummary {
    fn new(x: &DMatrix<f64>) -> Self {
        let diag = DVector::from_iterator(x.nrows(), x.row_iter().map(|r| r.norm_squared()));
        let column_sums = x.row_sum().transpose();
        let row_sums = x * &column_sums - &diag;
        let total = column_sums.norm_squared() - diag.sum();
        Self { diag, row_sums, total }
    }
}

/// `HSIC_u` from two summaries and `tr(K L) = ||Xᵀ Y||²_F`.
fn unbiased_hsic(k: &GramSummary, l: &GramSummary, trace_kl: f64) -> f64 {
    let n = k.diag.len() as f64;
    let trace = trace_kl - k.diag.dot(&l.diag);
    let middle = k.total * l.total / ((n - 1.0) * (n - 2.0));
    let last = 2.0 / (n - 2.0) * k.row_sums.dot(&l.row_sums);
    (trace + middle - last) / (n * (n - 3.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimator written with explicit n x n Gram matrices, straight from the formula.
    fn explicit(x: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
        let hsic = |k: &DMatrix<f64>, l: &DMatrix<f64>| {
            let n = k.nrows() as f64;
            let (mut k, mut l) = (k.clone(), l.clone());
            k.fill_diagonal(0.0);
            l.fill_diagonal(0.0);
            let ones = DVector::from_element(k.nrows(), 1.0);
            let trace = (&k * &l).trace();
            let middle = ones.dot(&(&k * &ones)) * ones.dot(&(&l * &ones)) / ((n - 1.0) * (n - 2.0));
            let last = 2.0 / (n - 2.0) * ones.dot(&(&k * (&l * &ones)));
            (trace + middle - last) / (n * (n - 3.0))
        };
        let (k, l) = (x * x.transpose(), y * y.transpose());
        hsic(&k, &l) / (hsic(&k, &k) * hsic(&l, &l)).sqrt()
    }

    #[test]
    fn matches_the_explicit_gram_formula_and_ignores_shifts() {
        let x = DMatrix::from_fn(12, 3, |i, j| ((i * 5 + j * 3) % 7) as f64 + 0.1 * i as f64);
        let y = DMatrix::from_fn(12, 4, |i, j| ((i * i + j) % 5) as f64 - 0.3 * j as f64);
        let got = debiased_cka(&x, &y).unwrap();
        assert!((got - explicit(&x, &y)).abs() < 1e-12, "{got}");
        let shifted = y.map(|v| v + 10.0);
        assert!((debiased_cka(&x, &shifted).unwrap() - got).abs() < 1e-9);
        assert!((debiased_cka(&x, &x).unwrap() - 1.0).abs() < 1e-12);
        assert!(debiased_cka(&x.rows(0, 3).into_owned(), &y.rows(0, 3).into_owned()).is_err());
    }
}
