//! Timing and random checkpoints shared by the benchmark binaries.

use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use lineage_core::models::transformer::Architecture;
use lineage_loaders::ParamSet;

/// Best and median of `repeats` timed runs of `f` (after one warm-up run).
#[allow(dead_code)] // every bench but cnn_path, which reports the worst run too
pub fn time<R>(repeats: usize, f: impl FnMut() -> R) -> (Duration, Duration) {
    let (best, median, _) = time_spread(repeats, f);
    (best, median)
}

/// Best, median and worst of `repeats` timed runs of `f` (after one warm-up run).
#[allow(dead_code)] // only cnn_path reports the worst run
pub fn time_spread<R>(repeats: usize, mut f: impl FnMut() -> R) -> (Duration, Duration, Duration) {
    std::hint::black_box(f());
    let mut times: Vec<Duration> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2], times[times.len() - 1])
}

/// A randomly initialised checkpoint with the HF names: the model built on a `VarMap`, which
/// creates every tensor it is asked for.
#[allow(dead_code)] // the transformer benches use it, the MLP sweep bench does not
pub fn checkpoint<A: Architecture>(architecture: &A) -> ParamSet {
    let varmap = VarMap::new();
    architecture
        .load(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
        .unwrap();
    let tensors = varmap.data().lock().unwrap();
    ParamSet::from_raw(
        tensors
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect(),
    )
    .unwrap()
}
