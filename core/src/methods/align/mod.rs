//! Permutation alignment before interpolation: Git Re-Basin weight matching (Ainsworth et al. 2023).
//!
//! Models trained from different initialisations can compute similar functions with their hidden
//! units in a different order; interpolating them unaligned then shows a barrier that is an artefact
//! of unit order. [`align_to`] permutes model B's hidden units to best match model A (a functionally
//! identical copy of B), so that the barrier measured between A and the aligned B reflects the loss
//! surface rather than the labelling of units.
//!
//! - [`spec`]: [`PermutationSpec`], the tensor axes each permutation of an architecture acts on
//!   (built for MLPs by [`PermutationSpec::mlp`]; other families add their own constructor).
//! - [`weight_matching`]: the coordinate-descent search over permutations.
//! - `tensors`: the f32 tensors it works on and the products it needs (cost matrices as GEMMs).
//! - [`assignment`]: the maximum-weight linear assignment step (Jonker–Volgenant shortest augmenting paths).
//!
//! BatchNorm running statistics are permuted with their channels but left out of the matching
//! ([`PermutationGroup::carried`]); the statistics of interpolated models are then recomputed as
//! `--bn` says ([`crate::models::cnn::batchnorm`]).

pub mod assignment;
pub mod spec;
mod tensors;
pub mod weight_matching;

pub use spec::{PermutationGroup, PermutationSpec, Permutations, TensorAxis};
pub use weight_matching::{ALGORITHM, DEFAULT_SEED, Matching, align_to, weight_matching};
