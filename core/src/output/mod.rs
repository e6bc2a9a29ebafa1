//! What an analysis writes: the Parquet tables ([`tables`], declared through [`schema`]), `report.json` ([`report`]), the
//! figures ([`figures`]) and the cluster-timeline export ([`export`]).

pub mod export;
pub mod figures;
pub mod report;
pub mod schema;
pub mod tables;
