//! The methods of the analysis, each pure computation on numbers already evaluated or loaded:
//! interpolation and barriers, permutation alignment, representation similarity, linear probes,
//! weight-space trajectories, code lengths, training maps, basins over time and how basins generalize.

pub mod align;
pub mod basins;
pub mod bootstrap;
pub mod code_length;
pub mod generalization;
pub mod interpolation;
pub mod probe;
pub mod similarity;
pub mod training_map;
pub mod trajectory;
