//! End-to-end tests: the `arch` binary and the library, on real files.

mod backup_cli;
mod browse;
mod check;
mod cli;
mod common;
mod concurrency;
mod copy;
mod crash;
mod faults;
mod forget;
mod format;
mod fuzz_replay;
mod library;
mod prune;
mod restore;
mod security;
mod tamper;
