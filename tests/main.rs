//! End-to-end tests: the `arch` binary and the library, on real files.

mod backend_sftp;
mod backup_cli;
mod browse;
mod browse_agree;
mod check;
mod cli;
mod common;
mod copy;
mod crash;
mod faults;
mod forget;
mod format;
mod json_outputs;
mod library;
mod mem_limit;
mod prune;
mod read_mode;
mod restore;
mod restore_batch;
mod run_profile;
mod schedule;
mod server_sftp;
mod status;
