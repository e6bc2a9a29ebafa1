//! The data every checkpoint is evaluated on ([`eval_data`], named sets in [`eval_sets`]) and the hidden representations models
//! produce from it ([`features`]).

pub mod eval_data;
pub mod eval_sets;
pub mod features;

pub use eval_data::EvalData;
pub use features::Features;
