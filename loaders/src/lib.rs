//! Discover and read checkpoint zoos for lineage.
//!
//! A *zoo* is a folder of training runs; each run holds checkpoints at several steps, in one of the
//! layouts described in `ARCHITECTURE.md` ("Layouts to discover") (folder per step, HF Trainer, file per step, manifest) or in [`layouts`]
//! (OLMo, MultiBERTs-style sibling folders, the Hugging Face hub cache). This crate
//! finds them ([`discover`]), reads their headers without touching tensor data ([`inspect`]), loads
//! normalised parameter sets ([`load_params`]; [`load_params_matching`] reads only the tensors of the
//! zoo's reference [`Schema`], the one most checkpoints share) and reads training logs ([`logs`]).
//! It never panics on bad input: every problem becomes a [`Problem`] naming the file.

pub mod checkpoint;
pub mod discover;
pub mod error;
pub mod fingerprint;
pub mod formats;
pub mod inspect;
pub mod layouts;
pub mod logs;
pub mod lossy_path;
pub mod manifest;
pub mod non_finite;
pub mod params;
pub mod problem;
pub mod schema;
pub mod selection;
pub mod zoo;

pub use checkpoint::{load_checkpoint, load_checkpoint_matching, load_params, load_params_matching, scan_checkpoint};
pub use discover::discover;
pub use error::LoadError;
pub use params::ParamSet;
pub use problem::Problem;
pub use schema::{Schema, reference_schema, reference_schema_selected};
pub use zoo::{Checkpoint, Run, Zoo};
