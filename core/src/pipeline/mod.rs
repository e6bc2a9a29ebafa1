//! The analysis pipeline, stage by stage, behind one entry point ([`analysis::analyse`], options in
//! [`options`]): the selection of runs, steps, examples and tensors
//! ([`selection`]), the plan of pairs and shards ([`plan`]), content keys ([`keys`]) and the result store
//! ([`store`]), what every stage of cached units shares ([`units`]), the interpolation sweep
//! ([`sweep`]) with its paths' bootstrap summaries ([`bootstrap`]) and economy mode ([`economy`]), basins over time ([`basins_over_time`]), how basins generalize on each eval set
//! ([`generalization`]), the representation and dynamics analyses
//! ([`representations`]), and the merge of shard outputs ([`merge`]).

pub mod analysis;
pub mod basins_over_time;
pub mod bootstrap;
pub mod clusterable;
pub mod economy;
pub mod generalization;
pub mod keys;
pub mod merge;
pub mod options;
pub mod plan;
pub mod representations;
pub mod selection;
pub mod store;
pub mod sweep;
pub mod units;
