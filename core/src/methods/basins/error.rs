//! The error type of the basin computations.

/// Errors from building barrier matrices, clustering and tracking basins.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BasinError {
    /// A barrier is NaN, infinite or negative (barriers are >= 0 by definition).
    #[error("step {step}: barrier {run_a} - {run_b} is {value}; barriers must be finite and >= 0")]
    InvalidBarrier {
        /// Step of the pair.
        step: u64,
        /// First run of the pair.
        run_a: String,
        /// Second run of the pair.
        run_b: String,
        /// The offending value.
        value: f64,
    },
    /// The same pair is listed twice with different barriers.
    #[error("step {step}: pair {run_a} - {run_b} is listed twice with different barriers ({first} and {second})")]
    ConflictingPair {
        /// Step of the pair.
        step: u64,
        /// First run of the pair.
        run_a: String,
        /// Second run of the pair.
        run_b: String,
        /// The first barrier seen.
        first: f64,
        /// The conflicting barrier.
        second: f64,
    },
    /// Two runs are present at a step but their pair has no barrier.
    #[error("step {step}: no barrier for pair {run_a} - {run_b} (both runs are present at this step)")]
    MissingPair {
        /// Step of the pair.
        step: u64,
        /// First run of the pair.
        run_a: String,
        /// Second run of the pair.
        run_b: String,
    },
    /// A matrix given directly is malformed (wrong size, unsorted runs, asymmetric, non-zero diagonal).
    #[error("step {step}: invalid barrier matrix: {problem}")]
    InvalidMatrix {
        /// Step of the matrix.
        step: u64,
        /// What is wrong.
        problem: String,
    },
    /// A clustering or tracking parameter is out of range (eps <= 0, k = 0, delta <= 0, ...).
    #[error("invalid basin parameter: {0}")]
    InvalidParameter(String),
    /// Per-step inputs are not in strictly increasing step order.
    #[error("steps must be strictly increasing: step {next} comes after step {previous}")]
    UnorderedSteps {
        /// The earlier step in the input.
        previous: u64,
        /// The step that follows it in the input.
        next: u64,
    },
}
