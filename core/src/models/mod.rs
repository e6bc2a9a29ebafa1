//! Model families: the [`Evaluator`] trait ([`evaluator`]), the registry that picks a family for a
//! zoo ([`registry`]), scoring logits ([`scoring`]), and the families: the `mlp` family ([`mlp`]),
//! the Hugging Face transformers ([`transformer`]), convolutional networks on images ([`cnn`]) and
//! any framework through a command protocol ([`external`]).

pub mod cnn;
pub mod evaluator;
pub mod external;
pub mod fast_math;
pub mod matmul;
pub mod mlp;
pub mod registry;
pub mod scoring;
pub mod transformer;

pub use evaluator::{EvalResult, Evaluator, Prepared};
pub use registry::{EvaluatorFactory, evaluator_for, evaluator_on};
