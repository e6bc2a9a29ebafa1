//! Headless subcommands.

pub mod batch;
pub mod demo;
pub mod export;
pub mod inspect;
pub mod merge;
pub mod views;
