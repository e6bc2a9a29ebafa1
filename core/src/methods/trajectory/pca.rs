//! PCA of a path of T points from its T x T Gram matrix (the "Gram trick"): the principal
//! coordinates are the scaled eigenvectors of the double-centred Gram matrix, so the cost is
//! O(T³) whatever the number of parameters.

use nalgebra::DMatrix;

/// Principal coordinates of T points.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// `coords[t][c]`: coordinate of point `t` on component `c` (`dims` components; 0 where there
    /// is no variance left, NaN when the Gram matrix is not finite).
    pub coords: Vec<Vec<f64>>,
    /// Fraction of the total variance along each component.
    pub explained: Vec<f64>,
}

/// PCA of the points whose Gram matrix (`K_ij = <x_i, x_j>`, any common origin) is `gram`,
/// keeping `dims` components. With `H = I - 11ᵀ/T` and `H K H = U Λ Uᵀ` (eigenvalues descending),
/// the coordinates are `U sqrt(Λ)`, the same as `U S` of the SVD of the centred data. Signs are
/// fixed so that the path moves forward along each component (last point's coordinate >= the
/// first's; on a tie the first of the largest-magnitude coordinates is positive).
pub fn gram_pca(gram: &DMatrix<f64>, dims: usize) -> Pca {
    let t = gram.nrows();
    let nan = || Pca {
        coords: vec![vec![f64::NAN; dims]; t],
        explained: vec![f64::NAN; dims],
    };
    if t == 0 || gram.ncols() != t || gram.iter().any(|v| !v.is_finite()) {
        return nan();
    }
    let h = DMatrix::identity(t, t) - DMatrix::from_element(t, t, 1.0 / t as f64);
    let centred = &h * gram * &h;
    let centred = (&centred + centred.transpose()) * 0.5;
    let Some(eigen) = centred.try_symmetric_eigen(1e-14, 10_000) else {
        return nan();
    };
    let mut order: Vec<usize> = (0..t).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let total: f64 = eigen.eigenvalues.iter().filter(|v| **v > 0.0).sum();
    let mut coords = vec![vec![0.0; dims]; t];
    let mut explained = vec![0.0; dims];
    for (c, &e) in order.iter().take(dims).enumerate() {
        let lambda = eigen.eigenvalues[e];
        // Components at the rounding level of the total carry no variance.
        if lambda <= total * 1e-12 || total <= 0.0 {
            continue;
        }
        let u = eigen.eigenvectors.column(e);
        let forward = u[t - 1] - u[0];
        let max_abs = u.amax();
        let largest = u
            .iter()
            .copied()
            .find(|v| v.abs() >= max_abs * (1.0 - 1e-9))
            .unwrap_or(1.0);
        let sign = if forward.abs() > 1e-9 {
            forward.signum()
        } else {
            largest.signum()
        };
        for (row, &v) in coords.iter_mut().zip(u.iter()) {
            row[c] = sign * v * lambda.sqrt();
        }
        explained[c] = lambda / total;
    }
    Pca { coords, explained }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `T x P` points -> Gram matrix.
    fn gram_of(x: &DMatrix<f64>) -> DMatrix<f64> {
        x * x.transpose()
    }

    /// Orthonormal directions e_a, e_b in R^p, embedded obliquely.
    fn directions(p: usize) -> (Vec<f64>, Vec<f64>) {
        let mut u: Vec<f64> = (0..p).map(|i| ((i * 7 + 1) % 5) as f64 - 2.0).collect();
        let nu = u.iter().map(|v| v * v).sum::<f64>().sqrt();
        u.iter_mut().for_each(|v| *v /= nu);
        let mut w: Vec<f64> = (0..p).map(|i| ((i * 3 + 2) % 7) as f64 - 3.0).collect();
        let proj: f64 = w.iter().zip(&u).map(|(a, b)| a * b).sum();
        w.iter_mut().zip(&u).for_each(|(a, b)| *a -= proj * b);
        let nw = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        w.iter_mut().for_each(|v| *v /= nw);
        (u, w)
    }

    #[test]
    fn a_straight_path_is_one_component() {
        let (p, t) = (50, 6);
        let (u, _) = directions(p);
        let speed = 2.5;
        let x = DMatrix::from_fn(t, p, |i, j| 3.0 + speed * i as f64 * u[j]);
        let pca = gram_pca(&gram_of(&x), 2);
        assert!((pca.explained[0] - 1.0).abs() < 1e-12);
        assert_eq!(pca.explained[1], 0.0);
        for (i, row) in pca.coords.iter().enumerate() {
            assert!((row[0] - speed * (i as f64 - 2.5)).abs() < 1e-9, "{row:?}");
            assert_eq!(row[1], 0.0);
        }
    }

    #[test]
    fn a_rectangle_in_a_plane_splits_variance_four_to_one() {
        let p = 30;
        let (u, w) = directions(p);
        // PC1 moves forward; PC2 ends where it starts, so its first coordinate is made positive.
        let corners = [(0.0, 0.0), (0.0, 1.0), (2.0, 1.0), (2.0, 0.0)];
        let x = DMatrix::from_fn(4, p, |i, j| corners[i].0 * u[j] + corners[i].1 * w[j] - 1.0);
        let pca = gram_pca(&gram_of(&x), 3);
        assert!((pca.explained[0] - 0.8).abs() < 1e-12 && (pca.explained[1] - 0.2).abs() < 1e-12);
        assert_eq!(pca.explained[2], 0.0);
        let expect = [(-1.0, 0.5), (-1.0, -0.5), (1.0, -0.5), (1.0, 0.5)];
        for (row, (a, b)) in pca.coords.iter().zip(expect) {
            assert!(
                (row[0] - a).abs() < 1e-9 && (row[1] - b).abs() < 1e-9,
                "{:?}",
                pca.coords
            );
        }
    }

    #[test]
    fn equals_the_svd_of_the_centred_data() {
        let (t, p) = (6, 20);
        let x = DMatrix::from_fn(t, p, |i, j| {
            ((i * 13 + j * 7 + i * j) % 11) as f64 * 0.3 - (j as f64).cos()
        });
        let pca = gram_pca(&gram_of(&x), 3);
        let mean = x.row_mean();
        let centred = DMatrix::from_fn(t, p, |i, j| x[(i, j)] - mean[j]);
        let svd = centred.svd(true, false);
        let u = svd.u.unwrap();
        let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
        order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
        let total: f64 = svd.singular_values.iter().map(|s| s * s).sum();
        for c in 0..3 {
            let s = svd.singular_values[order[c]];
            assert!(
                (pca.explained[c] - s * s / total).abs() < 1e-9,
                "{c}: {:?} vs {}",
                pca.explained,
                s * s / total
            );
            let direct: Vec<f64> = (0..t).map(|i| u[(i, order[c])] * s).collect();
            let sign = if direct[t - 1] - direct[0] >= 0.0 { 1.0 } else { -1.0 };
            for (row, d) in pca.coords.iter().zip(&direct) {
                assert!((row[c] - sign * d).abs() < 1e-9, "component {c}");
            }
        }
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let one = gram_pca(&DMatrix::from_element(1, 1, 4.0), 2);
        assert_eq!(one.coords, vec![vec![0.0, 0.0]]);
        assert_eq!(one.explained, vec![0.0, 0.0]);
        assert!(gram_pca(&DMatrix::zeros(0, 0), 2).coords.is_empty());
        let nan = gram_pca(&DMatrix::from_element(2, 2, f64::NAN), 2);
        assert!(nan.coords[0][0].is_nan());
    }
}
