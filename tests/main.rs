//! End-to-end tests: the `arch` binary and the library, on real files.

mod backend_rest;
mod backend_s3;
mod backend_sftp;
mod backup_cli;
mod browse;
mod check;
mod cli;
mod common;
mod copy;
mod forget;
mod format;
mod library;
mod prune;
mod restore;
mod server_sftp;
mod servers;
