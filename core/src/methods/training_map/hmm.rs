//! A Gaussian hidden Markov model with diagonal covariances, fitted by Baum–Welch (scaled
//! forward–backward) on several sequences, and Viterbi decoding.

use crate::train::Rng;

/// Smallest variance per dimension (the data are standardised), so no state collapses on a point.
const VAR_FLOOR: f64 = 1e-3;

/// HMM parameters: `k` states over `d`-dimensional observations.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianHmm {
    /// Initial state probabilities `[k]`.
    pub start: Vec<f64>,
    /// Transition probabilities `trans[i][j]` = P(j at t+1 | i at t).
    pub trans: Vec<Vec<f64>>,
    /// State means `[k][d]`.
    pub means: Vec<Vec<f64>>,
    /// State variances `[k][d]` (diagonal covariances).
    pub vars: Vec<Vec<f64>>,
}

/// A sequence: one observation vector per time step.
pub type Sequence = Vec<Vec<f64>>;

impl GaussianHmm {
    /// A starting point: means at distinct observations picked by `seed`, unit variances, sticky
    /// transitions (0.5 to stay), uniform start.
    fn init(sequences: &[Sequence], k: usize, d: usize, seed: u64) -> Self {
        let points: Vec<&Vec<f64>> = sequences.iter().flatten().collect();
        let mut order: Vec<usize> = (0..points.len()).collect();
        Rng::new(seed, "hmm-init").shuffle(&mut order);
        let means = (0..k).map(|s| points[order[s % order.len()]].clone()).collect();
        let stay = if k == 1 { 1.0 } else { 0.5 };
        let trans = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| if i == j { stay } else { (1.0 - stay) / (k - 1) as f64 })
                    .collect()
            })
            .collect();
        Self {
            start: vec![1.0 / k as f64; k],
            trans,
            means,
            vars: vec![vec![1.0; d]; k],
        }
    }

    /// Number of states.
    pub fn states(&self) -> usize {
        self.start.len()
    }

    /// Number of free parameters: `(k-1) + k(k-1) + 2kd`.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.states(), self.means.first().map_or(0, Vec::len));
        (k - 1) + k * (k - 1) + 2 * k * d
    }

    /// `log N(x | mean_s, diag(var_s))`.
    fn log_emission(&self, s: usize, x: &[f64]) -> f64 {
        x.iter()
            .zip(&self.means[s])
            .zip(&self.vars[s])
            .map(|((x, m), v)| -0.5 * ((2.0 * std::f64::consts::PI * v).ln() + (x - m).powi(2) / v))
            .sum()
    }

    /// Scaled forward–backward on one sequence: state posteriors `gamma[t][s]`, summed pairwise
    /// posteriors `xi[i][j]` and the log-likelihood.
    fn posteriors(&self, seq: &Sequence) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, f64) {
        let (k, t_len) = (self.states(), seq.len());
        // Emissions scaled per step by their maximum (kept in `offset`).
        let mut emit = vec![vec![0.0; k]; t_len];
        let mut log_lik = 0.0;
        for (t, x) in seq.iter().enumerate() {
            let logs: Vec<f64> = (0..k).map(|s| self.log_emission(s, x)).collect();
            let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            log_lik += max;
            for s in 0..k {
                emit[t][s] = (logs[s] - max).exp();
            }
        }
        let mut alpha = vec![vec![0.0; k]; t_len];
        let mut scale = vec![0.0; t_len];
        for t in 0..t_len {
            for j in 0..k {
                let prior = if t == 0 {
                    self.start[j]
                } else {
                    (0..k).map(|i| alpha[t - 1][i] * self.trans[i][j]).sum()
                };
                alpha[t][j] = prior * emit[t][j];
            }
            scale[t] = alpha[t].iter().sum::<f64>().max(f64::MIN_POSITIVE);
            alpha[t].iter_mut().for_each(|a| *a /= scale[t]);
            log_lik += scale[t].ln();
        }
        let mut beta = vec![vec![1.0; k]; t_len];
        for t in (0..t_len.saturating_sub(1)).rev() {
            for i in 0..k {
                beta[t][i] = (0..k)
                    .map(|j| self.trans[i][j] * emit[t + 1][j] * beta[t + 1][j])
                    .sum::<f64>()
                    / scale[t + 1];
            }
        }
        let gamma: Vec<Vec<f64>> = (0..t_len)
            .map(|t| {
                let g: Vec<f64> = (0..k).map(|s| alpha[t][s] * beta[t][s]).collect();
                let sum = g.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                g.into_iter().map(|v| v / sum).collect()
            })
            .collect();
        let mut xi = vec![vec![0.0; k]; k];
        for t in 0..t_len.saturating_sub(1) {
            for i in 0..k {
                for j in 0..k {
                    xi[i][j] += alpha[t][i] * self.trans[i][j] * emit[t + 1][j] * beta[t + 1][j] / scale[t + 1];
                }
            }
        }
        (gamma, xi, log_lik)
    }

    /// One Baum–Welch step; returns the log-likelihood of the parameters before the update.
    fn em_step(&mut self, sequences: &[Sequence]) -> f64 {
        let (k, d) = (self.states(), self.means[0].len());
        let mut start = vec![0.0; k];
        let mut trans = vec![vec![0.0; k]; k];
        let mut weight = vec![0.0; k];
        let mut sum = vec![vec![0.0; d]; k];
        let mut sum_sq = vec![vec![0.0; d]; k];
        let mut log_lik = 0.0;
        for seq in sequences {
            let (gamma, xi, ll) = self.posteriors(seq);
            log_lik += ll;
            for s in 0..k {
                start[s] += gamma[0][s];
                for j in 0..k {
                    trans[s][j] += xi[s][j];
                }
            }
            for (g, x) in gamma.iter().zip(seq) {
                for s in 0..k {
                    weight[s] += g[s];
                    for (c, v) in x.iter().enumerate() {
                        sum[s][c] += g[s] * v;
                        sum_sq[s][c] += g[s] * v * v;
                    }
                }
            }
        }
        let n_seq = sequences.len() as f64;
        self.start = start.iter().map(|v| v / n_seq).collect();
        for s in 0..k {
            let row: f64 = trans[s].iter().sum();
            if row > 0.0 {
                self.trans[s] = trans[s].iter().map(|v| v / row).collect();
            }
            if weight[s] > 1e-10 {
                for c in 0..d {
                    let mean = sum[s][c] / weight[s];
                    self.means[s][c] = mean;
                    self.vars[s][c] = (sum_sq[s][c] / weight[s] - mean * mean).max(0.0) + VAR_FLOOR;
                }
            }
        }
        log_lik
    }

    /// Fits `k` states from the start chosen by `seed`: Baum–Welch until the log-likelihood gains
    /// less than 1e-8 (relative) or 300 iterations. Returns the model and its log-likelihood.
    pub fn fit(sequences: &[Sequence], k: usize, seed: u64) -> (Self, f64) {
        let d = sequences.iter().flatten().next().map_or(0, Vec::len);
        let mut model = Self::init(sequences, k, d, seed);
        let mut previous = f64::NEG_INFINITY;
        for _ in 0..300 {
            let ll = model.em_step(sequences);
            if (ll - previous).abs() <= 1e-8 * ll.abs().max(1.0) {
                break;
            }
            previous = ll;
        }
        let ll = sequences.iter().map(|s| model.posteriors(s).2).sum();
        (model, ll)
    }

    /// The most likely state sequence (Viterbi, in log space; ties to the lower state).
    pub fn viterbi(&self, seq: &Sequence) -> Vec<usize> {
        let k = self.states();
        if seq.is_empty() {
            return Vec::new();
        }
        let ln = |p: f64| if p > 0.0 { p.ln() } else { f64::NEG_INFINITY };
        let mut score: Vec<f64> = (0..k)
            .map(|s| ln(self.start[s]) + self.log_emission(s, &seq[0]))
            .collect();
        let mut back = Vec::with_capacity(seq.len());
        for x in &seq[1..] {
            let mut next = vec![f64::NEG_INFINITY; k];
            let mut from = vec![0; k];
            for j in 0..k {
                for (i, previous) in score.iter().enumerate() {
                    let v = previous + ln(self.trans[i][j]);
                    if v > next[j] {
                        next[j] = v;
                        from[j] = i;
                    }
                }
                next[j] += self.log_emission(j, x);
            }
            back.push(from);
            score = next;
        }
        let mut state = (0..k).fold(0, |best, s| if score[s] > score[best] { s } else { best });
        let mut path = vec![state];
        for from in back.iter().rev() {
            state = from[state];
            path.push(state);
        }
        path.reverse();
        path
    }
}
