//! Linear CKA (Kornblith et al. 2019, eq. for the linear kernel).

use nalgebra::DMatrix;

use super::{check_rows, non_finite};
use crate::error::Result;

/// Linear centred kernel alignment of `x` `[n, p]` and `y` `[n, q]`:
/// `||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F · ||Ycᵀ Yc||_F)` with column-centred `Xc`, `Yc`. In [0, 1];
/// invariant to orthogonal transforms and isotropic scaling. NaN for non-finite input or a
/// representation without variance.
pub fn linear_cka(x: &DMatrix<f64>, y: &DMatrix<f64>) -> Result<f64> {
    check_rows(x, y, 1)?;
    if non_finite(x) || non_finite(y) {
        return Ok(f64::NAN);
    }
    let (xc, yc) = (centre_columns(x), centre_columns(y));
    let cross = xc.tr_mul(&yc).norm_squared();
    let (xx, yy) = (xc.tr_mul(&xc).norm(), yc.tr_mul(&yc).norm());
    let denominator = xx * yy;
    Ok(if denominator > 0.0 {
        cross / denominator
    } else {
        f64::NAN
    })
}

/// `m` with each column's mean subtracted.
fn centre_columns(m: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = m.clone();
    for mut column in out.column_iter_mut() {
        let mean = column.mean();
        column.add_scalar_mut(-mean);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_to_rotation_and_scale_but_not_to_noise() {
        let x = DMatrix::from_fn(30, 3, |i, j| ((i * 7 + j * 13) % 11) as f64 - 5.0 + (i as f64).sin());
        // A rotation in the plane of the first two columns, then a scale and a shift.
        let (c, s) = (0.6f64, 0.8f64);
        let rot = DMatrix::from_row_slice(3, 3, &[c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]);
        let y = (&x * rot) * 3.0 + DMatrix::from_element(30, 3, 2.5);
        assert!((linear_cka(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let noise = DMatrix::from_fn(30, 3, |i, j| ((i * 31 + j * 17) % 23) as f64);
        let z = linear_cka(&x, &noise).unwrap();
        assert!(z > 0.0 && z < 0.9, "{z}");
        let constant = DMatrix::from_element(30, 2, 1.0);
        assert!(linear_cka(&x, &constant).unwrap().is_nan());
    }
}
