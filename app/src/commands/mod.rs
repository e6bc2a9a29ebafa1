//! Headless subcommands.

pub mod inspect;
