//! Model families: the [`Evaluator`] trait and its implementations, the `mlp` family ([`mlp`]),
//! the Hugging Face transformers ([`transformer`]) and any framework through a command protocol
//! ([`external`]).

pub mod evaluator;
pub mod external;
pub mod mlp;
pub mod transformer;

pub use evaluator::{EvalResult, Evaluator, Prepared, evaluator_for, evaluator_on};
