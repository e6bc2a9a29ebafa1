//! Deterministic k-means (Lloyd) with farthest-point initialisation and restarts.

use super::cluster::canonical_labels;

/// Number of restarts used by spectral clustering (restart `r` starts from point `r`).
pub const RESTARTS: usize = 10;
/// Maximum Lloyd iterations per restart.
pub const MAX_ITER: usize = 300;
/// Squared distance under which two points count as the same point during initialisation.
const SAME_POINT: f64 = 1e-18;

/// A k-means solution.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Canonical label of each point (clusters numbered by first appearance).
    pub labels: Vec<usize>,
    /// Sum of squared distances of the points to their centroids.
    pub inertia: f64,
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index of the nearest centroid (ties go to the lowest index) and the squared distance to it.
fn nearest(p: &[f64], centroids: &[Vec<f64>]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centroid) in centroids.iter().enumerate() {
        let d = sq_dist(p, centroid);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Farthest-point initialisation from point `start`: each next centroid is the point farthest from
/// the centroids chosen so far (ties to the lowest index). Stops early when every point coincides
/// with a centroid, so fewer than `k` distinct points give fewer than `k` clusters.
fn farthest_point_init(points: &[Vec<f64>], k: usize, start: usize) -> Vec<Vec<f64>> {
    let mut centroids = vec![points[start].clone()];
    let mut min_d: Vec<f64> = points.iter().map(|p| sq_dist(p, &points[start])).collect();
    while centroids.len() < k {
        let (far, d) = min_d.iter().enumerate().fold(
            (0, f64::NEG_INFINITY),
            |best, (i, &d)| if d > best.1 { (i, d) } else { best },
        );
        if d <= SAME_POINT {
            break;
        }
        centroids.push(points[far].clone());
        for (m, p) in min_d.iter_mut().zip(points) {
            *m = m.min(sq_dist(p, &points[far]));
        }
    }
    centroids
}

/// Lloyd iterations from `centroids`; returns raw labels and inertia. An emptied cluster keeps its
/// centroid.
fn lloyd(points: &[Vec<f64>], mut centroids: Vec<Vec<f64>>) -> (Vec<usize>, f64) {
    let dim = points[0].len();
    let mut labels: Vec<usize> = points.iter().map(|p| nearest(p, &centroids).0).collect();
    for _ in 0..MAX_ITER {
        let mut sums = vec![vec![0.0; dim]; centroids.len()];
        let mut counts = vec![0usize; centroids.len()];
        for (p, &l) in points.iter().zip(&labels) {
            counts[l] += 1;
            for (s, x) in sums[l].iter_mut().zip(p) {
                *s += x;
            }
        }
        for ((c, s), &count) in centroids.iter_mut().zip(sums).zip(&counts) {
            if count > 0 {
                *c = s.into_iter().map(|x| x / count as f64).collect();
            }
        }
        let next: Vec<usize> = points.iter().map(|p| nearest(p, &centroids).0).collect();
        if next == labels {
            break;
        }
        labels = next;
    }
    let inertia = points
        .iter()
        .zip(&labels)
        .map(|(p, &l)| sq_dist(p, &centroids[l]))
        .sum();
    (labels, inertia)
}

/// Clusters `points` (rows of equal length) into at most `k` clusters.
///
/// Deterministic: restart `r` (for `r < min(restarts, n)`) initialises by farthest-point from point
/// `r`; the restart with the lowest inertia wins (ties: the earliest restart).
pub fn kmeans(points: &[Vec<f64>], k: usize, restarts: usize) -> KMeans {
    let n = points.len();
    if n == 0 || k == 0 {
        return KMeans {
            labels: vec![0; n],
            inertia: 0.0,
        };
    }
    let mut best: Option<(Vec<usize>, f64)> = None;
    for start in 0..restarts.clamp(1, n) {
        let (labels, inertia) = lloyd(points, farthest_point_init(points, k, start));
        // A restart must beat the best so far by more than rounding noise to replace it.
        if best.as_ref().is_none_or(|b| inertia < b.1 - 1e-12 * b.1.abs()) {
            best = Some((labels, inertia));
        }
    }
    let (labels, inertia) = best.expect("at least one restart");
    KMeans {
        labels: canonical_labels(&labels),
        inertia,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_well_separated_groups() {
        let pts: Vec<Vec<f64>> = [
            [0.0, 0.0],
            [0.1, 0.0],
            [10.0, 10.0],
            [10.1, 10.0],
            [0.0, 0.1],
            [-10.0, 5.0],
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        let km = kmeans(&pts, 3, RESTARTS);
        assert_eq!(km.labels, [0, 0, 1, 1, 0, 2]);
        assert!(km.inertia < 0.1);
    }

    #[test]
    fn identical_points_are_never_split() {
        let pts = vec![vec![1.0, 0.0]; 4];
        let km = kmeans(&pts, 2, RESTARTS);
        assert_eq!(km.labels, [0, 0, 0, 0]);
        assert_eq!(km.inertia, 0.0);
    }

    #[test]
    fn is_deterministic() {
        let pts: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![(i as f64 * 0.7).sin(), (i as f64 * 1.3).cos()])
            .collect();
        assert_eq!(kmeans(&pts, 3, RESTARTS), kmeans(&pts, 3, RESTARTS));
    }
}
