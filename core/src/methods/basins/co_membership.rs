//! How sure is a split? Co-membership over bootstrap resamples (ARCHITECTURE.md, "Bootstrap
//! intervals and co-membership"): each resample of the eval examples gives every seed pair of a step
//! its own barrier ([`crate::methods::bootstrap`]); clustering each resample's matrix with the step's
//! method (the eps it used on the whole eval set) and counting how often two runs land together
//! gives their co-membership frequency. 1 means together under every resample, 0 apart under every
//! one; in between, the split depends on which examples were drawn.

use rayon::prelude::*;

use super::cluster::{ClusterMethod, cluster_step};
use super::error::BasinError;
use super::matrix::BarrierMatrix;

/// Co-membership frequencies of the runs of one step: `n x n`, row-major, in the matrix's run
/// order (the diagonal is 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CoMembership {
    /// Training step.
    pub step: u64,
    /// The runs (as the step's barrier matrix).
    pub runs: Vec<String>,
    /// Fraction of resamples clustering runs `i` and `j` together, at `i * n + j`.
    pub values: Vec<f64>,
    /// Number of resamples.
    pub resamples: usize,
}

impl CoMembership {
    /// The frequency of runs `i` and `j` (matrix indices).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.runs.len() + j]
    }
}

/// Clusters every resample of `matrix` with `method` (parameters resolved, as the step used them).
/// `resampled(i, j)` gives the `B` resampled barriers of runs `i < j`, all of one length; a
/// non-finite resampled barrier keeps the matrix's own value (a path that blew up is capped at the
/// zoo's ceiling there, see [`crate::pipeline::clusterable`]).
pub fn co_membership(
    matrix: &BarrierMatrix,
    method: &ClusterMethod,
    resampled: impl Fn(usize, usize) -> Vec<f32>,
) -> Result<CoMembership, BasinError> {
    let n = matrix.len();
    let pairs: Vec<(usize, usize, Vec<f32>)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| (i, j, resampled(i, j)))
        .collect();
    let resamples = pairs.first().map_or(0, |p| p.2.len());
    if let Some((i, j, v)) = pairs.iter().find(|p| p.2.len() != resamples) {
        return Err(BasinError::InvalidMatrix {
            step: matrix.step,
            problem: format!(
                "{} resampled barriers between {} and {}, {resamples} for the other pairs",
                v.len(),
                matrix.runs[*i],
                matrix.runs[*j]
            ),
        });
    }
    let together = (0..resamples)
        .into_par_iter()
        .map(|b| {
            let mut values = matrix.values.clone();
            for (i, j, v) in &pairs {
                let x = f64::from(v[b]);
                if x.is_finite() {
                    values[i * n + j] = x.max(0.0);
                    values[j * n + i] = x.max(0.0);
                }
            }
            let resample = BarrierMatrix::new(matrix.step, matrix.runs.clone(), values)?;
            let labels = cluster_step(&resample, method, None)?.labels;
            let mut same = vec![0u32; n * n];
            for i in 0..n {
                for j in 0..n {
                    same[i * n + j] = u32::from(labels[i] == labels[j]);
                }
            }
            Ok(same)
        })
        .try_reduce(
            || vec![0u32; n * n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                Ok(a)
            },
        )?;
    let denominator = resamples.max(1) as f64;
    Ok(CoMembership {
        step: matrix.step,
        runs: matrix.runs.clone(),
        values: together
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                if k / n == k % n {
                    1.0
                } else {
                    f64::from(c) / denominator
                }
            })
            .collect(),
        resamples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_how_often_runs_are_clustered_together() {
        // a-b always connected, c joins them in 3 resamples of 4 (barrier 0.05 < eps 0.1), else apart.
        let matrix = BarrierMatrix::new(
            7,
            runs(&["a", "b", "c"]),
            vec![0.0, 0.0, 0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0],
        )
        .unwrap();
        let method = ClusterMethod::Threshold { eps: Some(0.1) };
        let c = co_membership(&matrix, &method, |i, j| match (i, j) {
            (0, 1) => vec![0.0; 4],
            (0, 2) => vec![0.05, 0.05, 0.05, 0.5],
            _ => vec![0.5; 4],
        })
        .unwrap();
        assert_eq!(c.resamples, 4);
        assert_eq!(c.get(0, 1), 1.0);
        assert_eq!(c.get(0, 2), 0.75);
        assert_eq!(c.get(2, 0), 0.75);
        // b-c stays above eps itself, but threshold clustering joins it through a.
        assert_eq!(c.get(1, 2), 0.75);
        assert_eq!(c.get(2, 2), 1.0);
    }

    #[test]
    fn non_finite_resamples_keep_the_matrix_value_and_lengths_must_agree() {
        let matrix = BarrierMatrix::new(1, runs(&["a", "b"]), vec![0.0, 0.9, 0.9, 0.0]).unwrap();
        let method = ClusterMethod::Threshold { eps: Some(0.1) };
        let c = co_membership(&matrix, &method, |_, _| vec![f32::NAN, 0.0]).unwrap();
        assert_eq!(c.get(0, 1), 0.5);
        let three = BarrierMatrix::new(1, runs(&["a", "b", "c"]), vec![0.0; 9]).unwrap();
        let err = co_membership(&three, &method, |i, _| vec![0.0; 2 + i]).unwrap_err();
        assert!(err.to_string().contains("resampled barriers between b and c"), "{err}");
    }
}
