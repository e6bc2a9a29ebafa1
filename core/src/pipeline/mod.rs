//! The analysis pipeline, stage by stage: the plan of pairs and shards ([`plan`]), content keys
//! ([`keys`]) and the result store ([`store`]), the interpolation sweep ([`sweep`]), basins over
//! time ([`basins_over_time`]), the representation and dynamics analyses ([`representations`]), and
//! the merge of shard outputs ([`merge`]).

pub mod basins_over_time;
pub mod keys;
pub mod merge;
pub mod plan;
pub mod representations;
pub mod store;
pub mod sweep;
