//! Long work off the UI thread: a job runs on its own thread, reports progress through a
//! [`SharedProgress`] the UI polls every frame, can be cancelled, and hands back its output once.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Instant;

use lineage_core::progress::SharedProgress;

/// A background job producing one `T`.
pub struct Job<T> {
    /// What the job does, shown next to its progress bar.
    pub label: String,
    /// Progress and cancel flag shared with the worker.
    pub progress: Arc<SharedProgress>,
    /// When it started.
    pub started: Instant,
    output: Receiver<T>,
}

impl<T: Send + 'static> Job<T> {
    /// Starts `work` on a new thread; `wake` is called when it is done (the app asks for a repaint).
    pub fn spawn(
        label: impl Into<String>,
        wake: impl FnOnce() + Send + 'static,
        work: impl FnOnce(&SharedProgress) -> T + Send + 'static,
    ) -> Self {
        let progress = Arc::new(SharedProgress::default());
        let (send, output) = channel();
        let worker_progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            let result = work(&worker_progress);
            // The receiver is gone only if the app dropped the job; nothing to do then.
            let _ = send.send(result);
            wake();
        });
        Self {
            label: label.into(),
            progress,
            started: Instant::now(),
            output,
        }
    }
}

impl<T> Job<T> {
    /// The output, once the job has finished; `Err(())` if the worker died without one (it
    /// panicked).
    pub fn poll(&self) -> Option<Result<T, ()>> {
        match self.output.try_recv() {
            Ok(t) => Some(Ok(t)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(())),
        }
    }

    /// Fraction done of the current stage, and a line describing it.
    pub fn status(&self) -> (f32, String) {
        let (stage, done, total) = self.progress.snapshot();
        let fraction = if total == 0 { 0.0 } else { done as f32 / total as f32 };
        let stage = if stage.is_empty() { self.label.clone() } else { stage };
        (
            fraction.clamp(0.0, 1.0),
            format!(
                "{}: {stage} {done}/{total} ({:.0} s)",
                self.label,
                self.started.elapsed().as_secs_f64()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_core::progress::Progress;

    fn wait<T>(job: &Job<T>) -> Result<T, ()> {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(out) = job.poll() {
                return out;
            }
            assert!(Instant::now() < deadline, "job did not finish");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_off_thread_reports_progress_and_wakes() {
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&woken);
        let job = Job::spawn(
            "count",
            move || flag.store(true, std::sync::atomic::Ordering::SeqCst),
            |p: &SharedProgress| {
                p.start("counting", 4);
                p.advance(3);
                21 * 2
            },
        );
        assert_eq!(wait(&job), Ok(42));
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
        let (fraction, line) = job.status();
        assert_eq!(fraction, 0.75);
        assert!(line.starts_with("count: counting 3/4"), "{line}");
    }

    #[test]
    fn cancel_reaches_the_worker() {
        let job = Job::spawn(
            "spin",
            || {},
            |p: &SharedProgress| {
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                while !p.is_cancelled() && Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                p.is_cancelled()
            },
        );
        job.progress.cancel();
        assert_eq!(wait(&job), Ok(true));
    }

    #[test]
    fn a_panicking_worker_is_reported() {
        let job: Job<()> = Job::spawn("boom", || {}, |_: &SharedProgress| panic!("worker failed"));
        assert_eq!(wait(&job), Err(()));
    }
}
