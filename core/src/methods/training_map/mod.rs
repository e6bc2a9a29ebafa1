//! Training maps (Hu, Chen, Saphra, Cho 2023): a Gaussian HMM over per-checkpoint metric vectors of
//! several runs, whose hidden states are the phases of training. Metrics are standardised per
//! dimension over all runs; the number of states (1..=`max_states`) is chosen by BIC, each with
//! several seeded Baum–Welch restarts; each run's phases come from Viterbi decoding, and the
//! phase-transition graph counts the runs' state changes.

pub mod hmm;

use petgraph::graph::{DiGraph, NodeIndex};

pub use hmm::{GaussianHmm, Sequence};

use crate::error::{CoreError, Result};

/// Options of [`training_map`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapOptions {
    /// Largest number of states tried.
    pub max_states: usize,
    /// Baum–Welch restarts per number of states (the best log-likelihood is kept).
    pub restarts: usize,
    /// Seed of the restarts.
    pub seed: u64,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            max_states: 8,
            restarts: 5,
            seed: 0,
        }
    }
}

/// A fitted training map.
#[derive(Debug, Clone)]
pub struct TrainingMap {
    /// The selected model (on standardised metrics).
    pub model: GaussianHmm,
    /// `(states, BIC)` for every number of states tried; the model has the smallest BIC.
    pub bic: Vec<(usize, f64)>,
    /// Per sequence (run): the Viterbi state of each checkpoint.
    pub states: Vec<Vec<usize>>,
    /// Nodes: states; edges `i -> j` weighted by how many times a run went from state i to j ≠ i.
    pub graph: DiGraph<usize, usize>,
}

/// Fits a training map to `sequences` (one per run; each a list of metric vectors, one per
/// checkpoint in step order, all of the same dimension). Errors on no observation, ragged
/// dimensions or non-finite values.
pub fn training_map(sequences: &[Sequence], options: &MapOptions) -> Result<TrainingMap> {
    let sequences: Vec<Sequence> = sequences.iter().filter(|s| !s.is_empty()).cloned().collect();
    let observations: Vec<&Vec<f64>> = sequences.iter().flatten().collect();
    let d = observations.first().map_or(0, |x| x.len());
    if observations.is_empty() || d == 0 {
        return Err(CoreError::InvalidArgument("training map: no metric vector".into()));
    }
    if observations.iter().any(|x| x.len() != d) {
        return Err(CoreError::InvalidArgument(
            "training map: metric vectors of different lengths".into(),
        ));
    }
    if observations.iter().flat_map(|x| x.iter()).any(|v| !v.is_finite()) {
        return Err(CoreError::InvalidArgument(
            "training map: NaN or infinite metric (drop or impute it first)".into(),
        ));
    }
    let n = observations.len() as f64;
    let (mean, sd): (Vec<f64>, Vec<f64>) = (0..d)
        .map(|c| {
            let m = observations.iter().map(|x| x[c]).sum::<f64>() / n;
            let v = observations.iter().map(|x| (x[c] - m).powi(2)).sum::<f64>() / n;
            (m, if v > 0.0 { v.sqrt() } else { 1.0 })
        })
        .unzip();
    let standard: Vec<Sequence> = sequences
        .iter()
        .map(|s| {
            s.iter()
                .map(|x| x.iter().enumerate().map(|(c, v)| (v - mean[c]) / sd[c]).collect())
                .collect()
        })
        .collect();
    let mut bic = Vec::new();
    let mut best: Option<(f64, GaussianHmm)> = None;
    for k in 1..=options.max_states.max(1).min(observations.len()) {
        let (model, ll) = (0..options.restarts.max(1))
            .map(|r| GaussianHmm::fit(&standard, k, options.seed.wrapping_add(r as u64)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one restart");
        let score = -2.0 * ll + model.n_parameters() as f64 * n.ln();
        bic.push((k, score));
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, model));
        }
    }
    let (_, model) = best.expect("at least one number of states");
    let states: Vec<Vec<usize>> = standard.iter().map(|s| model.viterbi(s)).collect();
    let mut graph = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..model.states()).map(|s| graph.add_node(s)).collect();
    for path in &states {
        for w in path.windows(2).filter(|w| w[0] != w[1]) {
            let (a, b) = (nodes[w[0]], nodes[w[1]]);
            match graph.find_edge(a, b) {
                Some(e) => graph[e] += 1,
                None => {
                    graph.add_edge(a, b, 1);
                }
            }
        }
    }
    Ok(TrainingMap {
        model,
        bic,
        states,
        graph,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Rng;

    /// A run of `early` checkpoints near (0, 0, 0) then `late` near (4, -4, 4), with small noise.
    fn two_phase_run(seed: u64, early: usize, late: usize) -> Sequence {
        let mut rng = Rng::new(seed, "phases");
        (0..early + late)
            .map(|t| {
                let centre = if t < early { [0.0, 0.0, 0.0] } else { [4.0, -4.0, 4.0] };
                centre.iter().map(|c| c + f64::from(rng.uniform(-0.3, 0.3))).collect()
            })
            .collect()
    }

    #[test]
    fn finds_two_phases_and_the_single_transition() {
        let runs = vec![two_phase_run(1, 6, 6), two_phase_run(2, 4, 8), two_phase_run(3, 7, 5)];
        let map = training_map(&runs, &MapOptions::default()).unwrap();
        assert_eq!(map.model.states(), 2, "{:?}", map.bic);
        assert_eq!(map.bic.len(), 8);
        let first = map.states[0][0];
        for (run, early) in map.states.iter().zip([6, 4, 7]) {
            assert!(run[..early].iter().all(|&s| s == first), "{run:?}");
            assert!(run[early..].iter().all(|&s| s != first), "{run:?}");
        }
        assert_eq!(map.graph.edge_count(), 1);
        let edge = map.graph.edge_indices().next().unwrap();
        assert_eq!(map.graph[edge], 3);
        let (from, _) = map.graph.edge_endpoints(edge).unwrap();
        assert_eq!(map.graph[from], first);
    }

    #[test]
    fn one_stationary_cloud_is_one_state() {
        let mut rng = Rng::new(9, "cloud");
        let runs: Vec<Sequence> = (0..3)
            .map(|_| {
                (0..15)
                    .map(|_| (0..2).map(|_| f64::from(rng.uniform(-1.0, 1.0))).collect())
                    .collect()
            })
            .collect();
        let map = training_map(&runs, &MapOptions::default()).unwrap();
        assert_eq!(map.model.states(), 1, "{:?}", map.bic);
        assert_eq!(map.graph.edge_count(), 0);
    }

    #[test]
    fn degenerate_inputs_are_errors_or_trivial() {
        assert!(training_map(&[], &MapOptions::default()).is_err());
        assert!(training_map(&[vec![]], &MapOptions::default()).is_err());
        assert!(training_map(&[vec![vec![1.0], vec![1.0, 2.0]]], &MapOptions::default()).is_err());
        assert!(training_map(&[vec![vec![f64::NAN]]], &MapOptions::default()).is_err());
        let single = training_map(&[vec![vec![2.0, 3.0]]], &MapOptions::default()).unwrap();
        assert_eq!(single.states, vec![vec![0]]);
        assert_eq!(single.bic.len(), 1);
    }
}
