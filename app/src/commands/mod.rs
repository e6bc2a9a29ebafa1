//! The subcommands: `open` starts the desktop app, the others are headless.

pub mod batch;
pub mod demo;
pub mod export;
pub mod inspect;
pub mod merge;
pub mod open;
