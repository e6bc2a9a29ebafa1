//! Timing shared by the benchmark binaries.

use std::time::{Duration, Instant};

/// Best and median of `repeats` timed runs of `f` (after one warm-up run).
pub fn time<R>(repeats: usize, mut f: impl FnMut() -> R) -> (Duration, Duration) {
    std::hint::black_box(f());
    let mut times: Vec<Duration> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}
