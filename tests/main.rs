//! End-to-end tests: the `arch` binary and the library, on real files.

mod backup_cli;
mod browse;
mod cli;
mod common;
mod format;
mod library;
mod maintenance;
