//! Progress reporting and cancellation, without terminal or GUI code: the app plugs in a progress
//! bar (terminal) or a shared counter (GUI).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Receives progress from long computations; implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// A new stage begins with `total` units of work.
    fn start(&self, stage: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The current stage is over.
    fn finish(&self) {}
    /// True when the user asked to stop; long work checks it between units.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Ignores progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Progress kept in atomics, for a GUI to poll, with a cancel flag.
#[derive(Default)]
pub struct SharedProgress {
    stage: Mutex<String>,
    total: AtomicU64,
    done: AtomicU64,
    cancelled: AtomicBool,
}

impl SharedProgress {
    /// (stage, done, total).
    pub fn snapshot(&self) -> (String, u64, u64) {
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        (
            stage,
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// Asks the computation to stop at the next unit boundary.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Progress for SharedProgress {
    fn start(&self, stage: &str, total: u64) {
        if let Ok(mut s) = self.stage.lock() {
            *s = stage.to_string();
        }
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
