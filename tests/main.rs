//! End-to-end tests: the `arch` binary and the library, on real files.

mod cli;
mod common;
mod format;
mod library;
