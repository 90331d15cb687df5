use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fast, encrypted, deduplicating backups.
#[derive(Parser, Debug)]
#[command(name = "arch", version, about, max_term_width = 100)]
pub struct Cli {
    /// Repository location (default: ARCH_REPOSITORY, else a repository in
    /// the user's data directory, created by the first backup).
    #[arg(long, short = 'r', global = true, env = "ARCH_REPOSITORY", value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// Read the password from this file (first line).
    #[arg(long, global = true, env = "ARCH_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init,
    /// Back up files and directories into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots,
    /// Restore a snapshot into a directory.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Snapshot to compare with (default: the latest with the same host and paths).
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub force: bool,
    /// Do not compare inode numbers to detect changes (snapshot filesystems, network mounts).
    #[arg(long)]
    pub ignore_inode: bool,
    /// Do not compare ctimes to detect changes.
    #[arg(long)]
    pub ignore_ctime: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Overwrite {
    /// Refuse a non-empty target.
    Never,
    /// Replace whatever the target holds at the snapshot's paths.
    Always,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id prefix, or "latest".
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Whether to restore into a non-empty target.
    #[arg(long, value_enum, default_value = "never")]
    pub overwrite: Overwrite,
}
