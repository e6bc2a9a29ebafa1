//! Process-wide settings made once at start-up ([`configure_process`]): the number of compute
//! threads and what the allocator does with freed memory.
//!
//! Threads. Without `RAYON_NUM_THREADS`, candle's CPU matmul works out its thread count on every call, and
//! on x86 Linux that reads and parses `/proc/cpuinfo` each time
//! (`candle_core::utils::get_num_threads` -> `num_cpus::get_physical`, candle-core 0.11). On the
//! small CNN and MLP shapes that was 10-20% of an analysis (measured with `perf` on a 2-core
//! machine), and the file grows with the core count. Setting the variable once makes each call
//! a lookup. The count is candle's own default (one thread per physical core, as PyTorch's
//! default) capped by the CPUs this process may use (affinity and cgroup quotas, e.g. a SLURM
//! allocation), which candle's default ignores.
//!
//! Freed memory. A forward pass allocates and frees hundreds of megabytes (a Pythia-160m pass on
//! 8 x 128 tokens: 206 MB of logits alone). With its default purge delay mimalloc (the allocator of
//! `lineage` and the benches) hands freed memory back to the system, and the next pass faults it in
//! again page by page, each page zeroed by the kernel: on the 2-core machine `perf` put 65% of a
//! Pythia-160m path in `clear_page_erms`, and keeping the memory halved the path's time (43.1 s ->
//! 23.5 s, one repeat each, under load) at the same peak memory. [`keep_freed_memory`] sets the
//! purge delay to "never"; the resident memory then stays at its peak until the process ends.

use std::num::NonZeroUsize;

/// mimalloc's `mi_option_purge_delay` (`include/mimalloc.h`, `mi_option_e`, the same index in
/// mimalloc 2 and 3): how long freed memory waits before it is returned to the system, in
/// milliseconds, -1 for never.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies every start-up setting of this module: [`settle_thread_count`] and
/// [`keep_freed_memory`]. Call it first thing in `main`; returns the thread count.
///
/// # Safety
///
/// As [`settle_thread_count`]: no other thread may be running yet.
pub unsafe fn configure_process() -> usize {
    keep_freed_memory();
    // SAFETY: the caller guarantees that no other thread exists yet.
    unsafe { settle_thread_count() }
}

/// Tells mimalloc never to return freed memory to the system (see the module documentation).
/// Harmless when mimalloc is not the global allocator: only its own heaps are affected.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores the option's value (mimalloc's options are plain
    // globals, read when memory is purged).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

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
