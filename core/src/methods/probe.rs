//! Linear probes: how linearly decodable the labels are from a layer's features. A multinomial
//! logistic regression (softmax, L2 penalty on the weights, not the biases) is fitted with L-BFGS
//! on a deterministic 70/30 split of the eval examples, on features standardised with the
//! training part's mean and standard deviation.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use crate::data::features::Features;
use crate::error::{CoreError, Result};
use crate::train::Rng;

/// Options of [`linear_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeOptions {
    /// Fraction of examples (after a seeded shuffle) used for fitting; the rest is held out.
    pub train_fraction: f64,
    /// Seed of the shuffle.
    pub seed: u64,
    /// L2 penalty `λ/2 ||W||²` added to the mean cross-entropy.
    pub l2: f64,
    /// L-BFGS stops when the largest gradient component is below this.
    pub tolerance: f64,
    /// L-BFGS iteration limit.
    pub max_iterations: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            train_fraction: 0.7,
            seed: 0,
            l2: 1e-3,
            tolerance: 1e-6,
            max_iterations: 500,
        }
    }
}

/// Accuracies of a fitted probe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Accuracy on the fitting part.
    pub train_accuracy: f64,
    /// Accuracy on the held-out part.
    pub heldout_accuracy: f64,
    /// Whether L-BFGS reached the gradient tolerance.
    pub converged: bool,
}

/// Fits and scores a linear probe of `labels` on `features` (same examples). Needs at least one
/// example on each side of the split. Non-finite features give NaN accuracies.
pub fn linear_probe(features: &Features, labels: &[u32], options: &ProbeOptions) -> Result<ProbeResult> {
    let n = features.rows();
    if labels.len() != n {
        return Err(CoreError::InvalidArgument(format!(
            "probe: {n} feature rows but {} labels",
            labels.len()
        )));
    }
    let n_train = ((n as f64 * options.train_fraction).round() as usize).min(n);
    if n_train == 0 || n_train == n {
        return Err(CoreError::InvalidArgument(format!(
            "probe: a {}/{} split of {n} examples leaves one side empty",
            n_train,
            n - n_train
        )));
    }
    if !features.is_finite() {
        return Ok(ProbeResult {
            train_accuracy: f64::NAN,
            heldout_accuracy: f64::NAN,
            converged: false,
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(options.seed, "probe-split").shuffle(&mut order);
    let (train, heldout) = order.split_at(n_train);
    let classes = labels.iter().max().map_or(1, |&m| m as usize + 1);
    let (x_train, y_train) = select(features, labels, train);
    let (x_held, y_held) = select(features, labels, heldout);
    let (mean, scale) = standardiser(&x_train);
    let (x_train, x_held) = (standardise(x_train, &mean, &scale), standardise(x_held, &mean, &scale));
    let problem = Softmax {
        x: &x_train,
        y: &y_train,
        classes,
        l2: options.l2,
    };
    let (theta, converged) = lbfgs(&problem, options);
    Ok(ProbeResult {
        train_accuracy: problem.accuracy(&theta, &x_train, &y_train),
        heldout_accuracy: problem.accuracy(&theta, &x_held, &y_held),
        converged,
    })
}

/// Rows `rows` of the features as an f64 matrix, and their labels.
fn select(features: &Features, labels: &[u32], rows: &[usize]) -> (DMatrix<f64>, Vec<usize>) {
    let x = DMatrix::from_fn(rows.len(), features.cols(), |i, j| f64::from(features.row(rows[i])[j]));
    (x, rows.iter().map(|&r| labels[r] as usize).collect())
}

/// Column means and standard deviations (1 where a column is constant).
fn standardiser(x: &DMatrix<f64>) -> (Vec<f64>, Vec<f64>) {
    x.column_iter()
        .map(|c| {
            let mean = c.mean();
            let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
            (mean, if sd > 0.0 { sd } else { 1.0 })
        })
        .unzip()
}

fn standardise(mut x: DMatrix<f64>, mean: &[f64], scale: &[f64]) -> DMatrix<f64> {
    for (j, mut c) in x.column_iter_mut().enumerate() {
        c.iter_mut().for_each(|v| *v = (*v - mean[j]) / scale[j]);
    }
    x
}

/// The probe's objective: mean softmax cross-entropy + `l2/2 ||W||²`, over `θ = [W (C x d,
/// row-major), b (C)]`.
struct Softmax<'a> {
    x: &'a DMatrix<f64>,
    y: &'a [usize],
    classes: usize,
    l2: f64,
}

impl Softmax<'_> {
    fn dims(&self) -> usize {
        self.classes * (self.x.ncols() + 1)
    }

    /// Logits `[n, C]` of `x`.
    fn logits(&self, theta: &DVector<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
        let (c, d) = (self.classes, x.ncols());
        let w = DMatrix::from_row_slice(c, d, &theta.as_slice()[..c * d]);
        let mut z = x * w.transpose();
        for mut row in z.row_iter_mut() {
            for (k, v) in row.iter_mut().enumerate() {
                *v += theta[c * d + k];
            }
        }
        z
    }

    /// Objective value and gradient.
    fn value_and_gradient(&self, theta: &DVector<f64>) -> (f64, DVector<f64>) {
        let (c, d, n) = (self.classes, self.x.ncols(), self.x.nrows() as f64);
        let mut z = self.logits(theta, self.x);
        let mut loss = 0.0;
        for (mut row, &label) in z.row_iter_mut().zip(self.y) {
            let max = row.max();
            row.iter_mut().for_each(|v| *v = (*v - max).exp());
            let sum = row.sum();
            loss += sum.ln() - row[label].ln();
            row /= sum;
            row[label] -= 1.0;
        }
        let w = &theta.as_slice()[..c * d];
        let penalty = 0.5 * self.l2 * w.iter().map(|v| v * v).sum::<f64>();
        let gw = z.tr_mul(self.x) / n;
        let mut grad = DVector::zeros(self.dims());
        for k in 0..c {
            for j in 0..d {
                grad[k * d + j] = gw[(k, j)] + self.l2 * w[k * d + j];
            }
            grad[c * d + k] = z.column(k).sum() / n;
        }
        (loss / n + penalty, grad)
    }

    /// Fraction of rows of `x` whose first maximal logit is the label.
    fn accuracy(&self, theta: &DVector<f64>, x: &DMatrix<f64>, y: &[usize]) -> f64 {
        let z = self.logits(theta, x);
        let right = z
            .row_iter()
            .zip(y)
            .filter(|(row, label)| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |best, (k, &v)| if v > row[best] { k } else { best });
                best == **label
            })
            .count();
        right as f64 / y.len().max(1) as f64
    }
}

/// Memory of L-BFGS (curvature pairs kept).
const HISTORY: usize = 10;

/// Minimises the objective from θ = 0 with L-BFGS and a backtracking Armijo line search.
/// Returns the parameters and whether the gradient tolerance was reached.
fn lbfgs(problem: &Softmax, options: &ProbeOptions) -> (DVector<f64>, bool) {
    let mut theta = DVector::zeros(problem.dims());
    let (mut value, mut grad) = problem.value_and_gradient(&theta);
    let mut pairs: Vec<(DVector<f64>, DVector<f64>, f64)> = Vec::with_capacity(HISTORY);
    for _ in 0..options.max_iterations {
        if grad.amax() < options.tolerance {
            return (theta, true);
        }
        // Two-loop recursion: direction = -H·grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * s.dot(&q);
            q.axpy(-a, y, 1.0);
            alphas.push(a);
        }
        if let Some((s, y, _)) = pairs.last() {
            q *= s.dot(y) / y.dot(y);
        } else {
            q /= grad.norm().max(1.0);
        }
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * y.dot(&q);
            q.axpy(a - b, s, 1.0);
        }
        let mut direction = -q;
        let mut slope = grad.dot(&direction);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            pairs.clear();
            direction = -&grad / grad.norm().max(1.0);
            slope = grad.dot(&direction);
        }
        let mut step = 1.0;
        let accepted = loop {
            let candidate = &theta + &direction * step;
            let (v, g) = problem.value_and_gradient(&candidate);
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                break Some((candidate, v, g));
            }
            step *= 0.5;
            if step < 1e-20 {
                break None;
            }
        };
        let Some((next, next_value, next_grad)) = accepted else {
            return (theta, grad.amax() < options.tolerance);
        };
        let s = &next - &theta;
        let y = &next_grad - &grad;
        let sy = s.dot(&y);
        if sy > 1e-12 * s.norm() * y.norm() {
            if pairs.len() == HISTORY {
                pairs.remove(0);
            }
            pairs.push((s, y, 1.0 / sy));
        }
        (theta, value, grad) = (next, next_value, next_grad);
    }
    let converged = grad.amax() < options.tolerance;
    (theta, converged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` examples in `d` dims: class `i % classes`, centred at `spread · e_class` plus noise.
    fn blobs(n: usize, d: usize, classes: usize, spread: f32, seed: u64) -> (Features, Vec<u32>) {
        let mut rng = Rng::new(seed, "blobs");
        let labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
        let mut values = Vec::with_capacity(n * d);
        for &label in &labels {
            for j in 0..d {
                let centre = if j == label as usize { spread } else { 0.0 };
                values.push(centre + rng.uniform(-1.0, 1.0));
            }
        }
        (Features::new(n, d, values).unwrap(), labels)
    }

    #[test]
    fn separable_classes_are_decoded_and_the_fit_is_optimal() {
        let (features, labels) = blobs(300, 5, 3, 4.0, 1);
        let options = ProbeOptions::default();
        let result = linear_probe(&features, &labels, &options).unwrap();
        assert!(result.converged);
        assert_eq!(result.train_accuracy, 1.0);
        assert_eq!(result.heldout_accuracy, 1.0);
    }

    #[test]
    fn unrelated_labels_are_at_chance_on_held_out_data() {
        let (features, _) = blobs(600, 8, 2, 0.0, 2);
        let mut rng = Rng::new(3, "labels");
        let labels: Vec<u32> = (0..600).map(|_| rng.below(2) as u32).collect();
        let result = linear_probe(&features, &labels, &ProbeOptions::default()).unwrap();
        assert!(result.converged);
        assert!((result.heldout_accuracy - 0.5).abs() < 0.12, "{result:?}");
        assert!(result.train_accuracy > result.heldout_accuracy - 0.05);
    }

    #[test]
    fn the_gradient_vanishes_at_the_returned_parameters() {
        let (features, labels) = blobs(200, 4, 3, 1.0, 4);
        let (x, y) = select(&features, &labels, &(0..200).collect::<Vec<_>>());
        let problem = Softmax {
            x: &x,
            y: &y,
            classes: 3,
            l2: 0.1,
        };
        let options = ProbeOptions::default();
        let (theta, converged) = lbfgs(&problem, &options);
        assert!(converged);
        let (value, grad) = problem.value_and_gradient(&theta);
        assert!(grad.amax() < 1e-6);
        // A nudge in any coordinate does not lower the objective.
        for i in 0..theta.len() {
            for delta in [-1e-3, 1e-3] {
                let mut moved = theta.clone();
                moved[i] += delta;
                assert!(problem.value_and_gradient(&moved).0 >= value - 1e-8);
            }
        }
    }

    #[test]
    fn degenerate_inputs_are_errors_or_nan() {
        let (features, labels) = blobs(10, 2, 2, 1.0, 5);
        assert!(linear_probe(&features, &labels[..9], &ProbeOptions::default()).is_err());
        let one = Features::new(1, 2, vec![1.0, 2.0]).unwrap();
        assert!(linear_probe(&one, &[0], &ProbeOptions::default()).is_err());
        let nan = Features::new(4, 1, vec![f32::NAN, 1.0, 2.0, 3.0]).unwrap();
        let r = linear_probe(&nan, &[0, 1, 0, 1], &ProbeOptions::default()).unwrap();
        assert!(r.heldout_accuracy.is_nan());
    }
}
