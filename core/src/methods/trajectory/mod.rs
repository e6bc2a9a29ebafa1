//! Weight-space trajectories of a run: how far each checkpoint is from the run's first one, the
//! norm of every tensor, and the run's path projected on its first principal components.
//!
//! The PCA uses the T x T Gram matrix of the run's T checkpoints ([`gram::streamed_gram`], built
//! streaming checkpoints from disk) and its eigendecomposition ([`pca::gram_pca`]), so memory
//! never grows with params² and only a bounded number of checkpoints is held at once.

pub mod flat;
pub mod gram;
pub mod pca;

pub use flat::FlatParams;
pub use gram::{StreamedGram, streamed_gram};
pub use pca::{Pca, gram_pca};

use crate::error::Result;

/// The trajectory of one run's T checkpoints (in step order).
#[derive(Debug, Clone)]
pub struct RunTrajectory {
    /// `||θ_t - θ_0||₂` for each checkpoint.
    pub dist_from_init: Vec<f64>,
    /// Coordinates on the first two principal components of the path, and their explained variance.
    pub pca: Pca,
    /// Per checkpoint: (tensor name, L2 norm).
    pub tensor_norms: Vec<Vec<(String, f64)>>,
}

/// The trajectory of `n` checkpoints loaded with `load(i)`, holding at most `block` of them at
/// once (see [`streamed_gram`]).
pub fn run_trajectory(
    n: usize,
    block: usize,
    load: &mut dyn FnMut(usize) -> Result<FlatParams>,
) -> Result<RunTrajectory> {
    let StreamedGram { gram, tensor_norms } = streamed_gram(n, block, load)?;
    let dist_from_init = (0..n).map(|i| gram[(i, i)].max(0.0).sqrt()).collect();
    Ok(RunTrajectory {
        dist_from_init,
        pca: gram_pca(&gram, 2),
        tensor_norms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_norms_of_a_known_path() {
        // θ_t = (3, 4) + t·(0.6, 0.8): distance t from init, on one line.
        let mut load = |t: usize| {
            let mut p = FlatParams::default();
            let t = t as f32;
            p.push("w", &[3.0 + 0.6 * t, 4.0 + 0.8 * t]);
            Ok(p)
        };
        let traj = run_trajectory(4, 2, &mut load).unwrap();
        for (t, d) in traj.dist_from_init.iter().enumerate() {
            assert!((d - t as f64).abs() < 1e-6, "{d}");
        }
        assert!((traj.tensor_norms[0][0].1 - 5.0).abs() < 1e-12);
        assert_eq!(traj.tensor_norms[0][0].0, "w");
        assert!((traj.pca.explained[0] - 1.0).abs() < 1e-9);
        assert!((traj.pca.coords[3][0] - 1.5).abs() < 1e-5);
        let single = run_trajectory(1, 2, &mut load).unwrap();
        assert_eq!(single.dist_from_init, vec![0.0]);
        assert_eq!(single.pca.coords, vec![vec![0.0, 0.0]]);
    }
}
