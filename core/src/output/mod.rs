//! What an analysis writes: the Parquet tables ([`tables`], declared through [`schema`]), `report.json` ([`report`]), the
//! figures ([`figures`]) and the cluster-timeline export ([`export`]); [`lock`] claims the output folder first.

pub mod export;
pub mod figures;
pub mod lock;
pub mod report;
pub mod schema;
pub mod tables;
