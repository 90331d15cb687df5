//! End-to-end tests: the `arch` binary and the library, on real files.

mod backup_cli;
mod browse;
mod browse_agree;
mod check;
mod cli;
mod common;
mod copy;
mod forget;
mod format;
mod json_outputs;
mod library;
mod mem_limit;
mod prune;
mod read_mode;
mod restore;
mod restore_batch;
