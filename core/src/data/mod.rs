//! The data every checkpoint is evaluated on ([`eval_data`]) and the hidden representations models
//! produce from it ([`features`]).

pub mod eval_data;
pub mod features;

pub use eval_data::EvalData;
pub use features::Features;
