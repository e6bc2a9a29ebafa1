//! The number of compute threads, settled once per process.
//!
//! Without `RAYON_NUM_THREADS`, candle's CPU matmul works out its thread count on every call, and
//! on x86 Linux that reads and parses `/proc/cpuinfo` each time
//! (`candle_core::utils::get_num_threads` -> `num_cpus::get_physical`, candle-core 0.11). On the
//! small CNN and MLP shapes that was 10-20% of an analysis (measured with `perf` on a 2-core
//! machine), and the file grows with the core count. Setting the variable once makes each call
//! a lookup. The count is candle's own default (one thread per physical core, as PyTorch's
//! default) capped by the CPUs this process may use (affinity and cgroup quotas, e.g. a SLURM
//! allocation), which candle's default ignores.

use std::num::NonZeroUsize;

/// The environment variable rayon and candle read their thread counts from.
pub const THREADS_VARIABLE: &str = "RAYON_NUM_THREADS";

/// Sets [`THREADS_VARIABLE`] when it is unset or invalid, and returns the thread count in effect.
/// Call it first thing in `main`, before rayon's global pool exists.
///
/// # Safety
///
/// Writes the process environment: no other thread may be running (or reading the environment)
/// while it does, as [`std::env::set_var`] requires.
pub unsafe fn settle_thread_count() -> usize {
    if let Some(n) = std::env::var(THREADS_VARIABLE)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let allowed = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = candle_core::utils::get_num_threads().clamp(1, allowed);
    // SAFETY: the caller guarantees that no other thread exists yet.
    unsafe { std::env::set_var(THREADS_VARIABLE, threads.to_string()) };
    threads
}
