//! Clustering one step's barrier matrix into basins: method choice, default eps, canonical labels.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::BasinError;
use super::linkage::average_linkage;
use super::matrix::BarrierMatrix;
use super::spectral::spectral_labels;
use super::threshold::threshold_labels;

/// Default eps as a fraction of the step's mean endpoint loss: `eps = 0.1 * mean loss`.
pub const DEFAULT_EPS_FRACTION: f64 = 0.1;
/// Floor of the default eps, so a near-zero loss late in training does not split runs on noise.
pub const MIN_EPS: f64 = 1e-3;
/// Default eps when no usable endpoint loss is known (missing, non-finite or <= 0).
pub const FALLBACK_EPS: f64 = 0.05;
/// Default RBF bandwidth of spectral clustering (Juneja et al. 2023).
pub const DEFAULT_DELTA: f64 = 1.0;
/// Default number of spectral clusters (Juneja et al. 2023).
pub const DEFAULT_K: usize = 2;

/// The default barrier threshold eps at a step, from the mean endpoint loss of the runs at that step.
///
/// Rule: `max(0.1 * mean_endpoint_loss, 1e-3)` ([`DEFAULT_EPS_FRACTION`], [`MIN_EPS`]); when the loss
/// is not finite or not positive, [`FALLBACK_EPS`] (0.05). Barriers are in the same unit as the loss,
/// so two runs are "connected" when the bump between them is under a tenth of the typical loss.
pub fn default_eps(mean_endpoint_loss: f64) -> f64 {
    if mean_endpoint_loss.is_finite() && mean_endpoint_loss > 0.0 {
        (DEFAULT_EPS_FRACTION * mean_endpoint_loss).max(MIN_EPS)
    } else {
        FALLBACK_EPS
    }
}

/// How to cluster one step's barrier matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum ClusterMethod {
    /// Connected components of the graph with an edge wherever barrier < eps.
    /// `eps: None` uses [`default_eps`] of the step's mean endpoint loss.
    Threshold {
        /// Barrier threshold; `None` for the per-step default.
        eps: Option<f64>,
    },
    /// Average-linkage (UPGMA) dendrogram, merging while the average barrier < eps.
    /// `eps: None` uses [`default_eps`] of the step's mean endpoint loss.
    AverageLinkage {
        /// Barrier threshold; `None` for the per-step default.
        eps: Option<f64>,
    },
    /// Spectral clustering: RBF affinity `exp(-D^2 / (2 delta^2))`, Ng–Jordan–Weiss embedding, k-means.
    /// `k` is capped at the number of runs present at the step.
    Spectral {
        /// Number of clusters.
        k: usize,
        /// RBF bandwidth ([`DEFAULT_DELTA`] = 1.0).
        delta: f64,
    },
}

impl ClusterMethod {
    /// The method's command-line name: `threshold`, `average-linkage` or `spectral`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Threshold { .. } => "threshold",
            Self::AverageLinkage { .. } => "average-linkage",
            Self::Spectral { .. } => "spectral",
        }
    }

    /// Builds a method from its command-line name (`threshold`, `average-linkage` / `average`,
    /// `spectral`) and optional parameters; spectral defaults to `k = 2`, `delta = 1.0`.
    pub fn from_name(name: &str, eps: Option<f64>, k: Option<usize>, delta: Option<f64>) -> Result<Self, BasinError> {
        let method = match name {
            "threshold" => Self::Threshold { eps },
            "average-linkage" | "average_linkage" | "average" | "upgma" => Self::AverageLinkage { eps },
            "spectral" => Self::Spectral {
                k: k.unwrap_or(DEFAULT_K),
                delta: delta.unwrap_or(DEFAULT_DELTA),
            },
            other => {
                return Err(BasinError::InvalidParameter(format!(
                    "unknown clustering method {other:?} (expected threshold, average-linkage or spectral)"
                )));
            }
        };
        method.validate()?;
        Ok(method)
    }

    /// The eps given or resolved, for the threshold-based methods.
    pub fn eps(&self) -> Option<f64> {
        match *self {
            Self::Threshold { eps } | Self::AverageLinkage { eps } => eps,
            Self::Spectral { .. } => None,
        }
    }

    /// Checks the parameters: eps finite and > 0, k >= 1, delta finite and > 0.
    pub fn validate(&self) -> Result<(), BasinError> {
        match *self {
            Self::Threshold { eps: Some(eps) } | Self::AverageLinkage { eps: Some(eps) }
                if !(eps.is_finite() && eps > 0.0) =>
            {
                Err(BasinError::InvalidParameter(format!(
                    "eps must be finite and > 0, got {eps}"
                )))
            }
            Self::Spectral { k: 0, .. } => Err(BasinError::InvalidParameter("spectral k must be >= 1".into())),
            Self::Spectral { delta, .. } if !(delta.is_finite() && delta > 0.0) => Err(BasinError::InvalidParameter(
                format!("spectral delta must be finite and > 0, got {delta}"),
            )),
            _ => Ok(()),
        }
    }

    /// The parameters actually used at a step of `n_runs` runs: eps filled in from
    /// [`default_eps`] (or [`FALLBACK_EPS`] without a loss), k capped at `n_runs`.
    pub fn resolve(&self, n_runs: usize, mean_endpoint_loss: Option<f64>) -> Self {
        let eps = |eps: Option<f64>| Some(eps.unwrap_or_else(|| default_eps(mean_endpoint_loss.unwrap_or(f64::NAN))));
        match *self {
            Self::Threshold { eps: e } => Self::Threshold { eps: eps(e) },
            Self::AverageLinkage { eps: e } => Self::AverageLinkage { eps: eps(e) },
            Self::Spectral { k, delta } => Self::Spectral {
                k: k.min(n_runs).max(1),
                delta,
            },
        }
    }
}

/// The clustering of one step: a canonical label per run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepClusters {
    /// Training step.
    pub step: u64,
    /// Runs present at the step, sorted.
    pub runs: Vec<String>,
    /// Cluster label of each run (same order as `runs`). Labels are `0..n_clusters`, numbered by
    /// each cluster's smallest member run name, so they do not depend on input order.
    pub labels: Vec<usize>,
    /// The method with the parameters actually used (eps resolved, k capped): report it.
    pub method: ClusterMethod,
}

impl StepClusters {
    /// Builds a clustering from any labels (relabelled canonically). `runs` must be sorted.
    pub fn new(step: u64, runs: Vec<String>, labels: &[usize], method: ClusterMethod) -> Self {
        Self {
            step,
            runs,
            labels: canonical_labels(labels),
            method,
        }
    }

    /// Number of clusters.
    pub fn n_clusters(&self) -> usize {
        self.labels.iter().max().map_or(0, |&l| l + 1)
    }

    /// Members of each cluster, indexed by label, each sorted.
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); self.n_clusters()];
        for (run, &l) in self.runs.iter().zip(&self.labels) {
            out[l].push(run.clone());
        }
        out
    }

    /// Label of `run`, if present at this step.
    pub fn label_of(&self, run: &str) -> Option<usize> {
        let i = self.runs.binary_search_by(|r| r.as_str().cmp(run)).ok()?;
        Some(self.labels[i])
    }

    /// The eps used (threshold and average-linkage), to be reported.
    pub fn eps(&self) -> Option<f64> {
        self.method.eps()
    }
}

/// Relabels clusters by first appearance: the cluster of item 0 gets 0, the next new cluster 1, ...
///
/// With items sorted by run name this numbers clusters by their smallest member.
pub fn canonical_labels(raw: &[usize]) -> Vec<usize> {
    let mut map: BTreeMap<usize, usize> = BTreeMap::new();
    raw.iter()
        .map(|&r| {
            let next = map.len();
            *map.entry(r).or_insert(next)
        })
        .collect()
}

/// Clusters one step.
///
/// `mean_endpoint_loss` (mean eval loss of the runs at this step) sets the default eps when the
/// method has none; the eps used is in the result's `method`.
pub fn cluster_step(
    matrix: &BarrierMatrix,
    method: &ClusterMethod,
    mean_endpoint_loss: Option<f64>,
) -> Result<StepClusters, BasinError> {
    method.validate()?;
    if matrix.has_gaps() && !matches!(method, ClusterMethod::Threshold { .. }) {
        return Err(BasinError::InvalidMatrix {
            step: matrix.step,
            problem: format!(
                "some pairs were not computed (--economy pruning), which only threshold clustering can use, not {}",
                method.name()
            ),
        });
    }
    let used = method.resolve(matrix.len(), mean_endpoint_loss);
    let labels = match used {
        _ if matrix.is_empty() => Vec::new(),
        ClusterMethod::Threshold { eps: Some(eps) } => threshold_labels(matrix, eps),
        ClusterMethod::AverageLinkage { eps: Some(eps) } => average_linkage(matrix).cut(eps),
        ClusterMethod::Spectral { k, delta } => spectral_labels(matrix, k, delta),
        ClusterMethod::Threshold { eps: None } | ClusterMethod::AverageLinkage { eps: None } => {
            unreachable!("resolve fills in eps")
        }
    };
    Ok(StepClusters::new(matrix.step, matrix.runs.clone(), &labels, used))
}

/// Clusters every step (in parallel), in the order of `matrices`.
///
/// `mean_endpoint_losses` maps a step to the mean endpoint loss at that step (for the default eps);
/// steps without an entry use [`FALLBACK_EPS`] when the method has no eps.
pub fn cluster_steps(
    matrices: &[BarrierMatrix],
    method: &ClusterMethod,
    mean_endpoint_losses: &BTreeMap<u64, f64>,
) -> Result<Vec<StepClusters>, BasinError> {
    method.validate()?;
    matrices
        .par_iter()
        .map(|m| cluster_step(m, method, mean_endpoint_losses.get(&m.step).copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_not_computed_is_no_edge_for_threshold_and_refused_by_other_methods() {
        // a-b and b-c connected, a-c pruned: one basin by transitivity.
        let m = BarrierMatrix::from_pairs(1, [("a", "b", 0.01), ("b", "c", 0.02), ("a", "c", f64::NAN)]).unwrap();
        let t = cluster_step(&m, &ClusterMethod::Threshold { eps: Some(0.1) }, None).unwrap();
        assert_eq!(t.labels, [0, 0, 0]);
        let apart = BarrierMatrix::from_pairs(1, [("a", "b", 0.5), ("b", "c", 0.02), ("a", "c", f64::NAN)]).unwrap();
        let t = cluster_step(&apart, &ClusterMethod::Threshold { eps: Some(0.1) }, None).unwrap();
        assert_eq!(t.labels, [0, 1, 1]);
        let refused = cluster_step(&m, &ClusterMethod::AverageLinkage { eps: Some(0.1) }, None);
        assert!(refused.unwrap_err().to_string().contains("not computed"));
    }

    #[test]
    fn default_eps_rule() {
        assert!((default_eps(2.0) - 0.2).abs() < 1e-15);
        assert_eq!(default_eps(1e-6), MIN_EPS);
        assert_eq!(default_eps(f64::NAN), FALLBACK_EPS);
        assert_eq!(default_eps(0.0), FALLBACK_EPS);
        assert_eq!(default_eps(-1.0), FALLBACK_EPS);
    }

    #[test]
    fn canonical_labels_number_by_first_appearance() {
        assert_eq!(canonical_labels(&[7, 3, 7, 9, 3]), [0, 1, 0, 2, 1]);
        assert!(canonical_labels(&[]).is_empty());
    }

    #[test]
    fn resolve_fills_eps_and_caps_k() {
        let t = ClusterMethod::Threshold { eps: None };
        assert_eq!(t.resolve(4, Some(1.0)), ClusterMethod::Threshold { eps: Some(0.1) });
        assert_eq!(
            t.resolve(4, None),
            ClusterMethod::Threshold {
                eps: Some(FALLBACK_EPS)
            }
        );
        let given = ClusterMethod::AverageLinkage { eps: Some(0.3) };
        assert_eq!(given.resolve(4, Some(1.0)), given);
        let s = ClusterMethod::Spectral { k: 5, delta: 1.0 };
        assert_eq!(s.resolve(3, None), ClusterMethod::Spectral { k: 3, delta: 1.0 });
    }

    #[test]
    fn validates_parameters() {
        assert!(ClusterMethod::Threshold { eps: Some(0.0) }.validate().is_err());
        assert!(
            ClusterMethod::AverageLinkage { eps: Some(f64::NAN) }
                .validate()
                .is_err()
        );
        assert!(ClusterMethod::Spectral { k: 0, delta: 1.0 }.validate().is_err());
        assert!(ClusterMethod::Spectral { k: 2, delta: 0.0 }.validate().is_err());
        assert!(ClusterMethod::from_name("kmeans", None, None, None).is_err());
        assert_eq!(
            ClusterMethod::from_name("spectral", None, None, None).unwrap(),
            ClusterMethod::Spectral { k: 2, delta: 1.0 }
        );
        assert_eq!(
            ClusterMethod::from_name("threshold", Some(0.2), None, None)
                .unwrap()
                .name(),
            "threshold"
        );
    }

    #[test]
    fn empty_matrix_has_no_clusters() {
        let m = BarrierMatrix::new(3, vec![], vec![]).unwrap();
        let c = cluster_step(&m, &ClusterMethod::Spectral { k: 2, delta: 1.0 }, None).unwrap();
        assert_eq!(c.n_clusters(), 0);
    }
}
