use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Fast, encrypted, deduplicating backups.
#[derive(Parser, Debug)]
#[command(name = "arch", version, about, max_term_width = 100)]
pub struct Cli {
    /// Repository location: a path, s3:http(s)://host[:port]/bucket[/prefix],
    /// rest:http(s)://[user:pass@]host[:port]/[path] or
    /// sftp:[user@]host[:port]:/path (default: ARCH_REPOSITORY, else a
    /// repository in the user's data directory, created by the first backup).
    #[arg(long, short = 'r', global = true, env = "ARCH_REPOSITORY", value_name = "URL")]
    pub repo: Option<std::ffi::OsString>,
    /// Backend option KEY=VALUE (repeatable): connections=N, timeout=60s,
    /// retry.max-time=5m, retry.max-attempts=N, s3.region=R, s3.profile=P,
    /// s3.list-page-size=N, sftp.key=FILE, sftp.args="SSH ARGS",
    /// sftp.command="COMMAND".
    #[arg(long = "option", short = 'o', global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Keep the local cache of remote repositories (index, snapshots, tree
    /// packs) here (default: arch/ in the user's cache directory).
    #[arg(long, global = true, env = "ARCH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use no local cache for a remote repository.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Read the password from this file (first line).
    #[arg(long, global = true, env = "ARCH_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output (without trailing line
    /// breaks) as the password; ARCH_PASSWORD and --password-file take
    /// precedence over it.
    #[arg(long, global = true, env = "ARCH_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub password_command: Option<String>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only warnings and errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// How often to print a status line when not on a terminal (and with
    /// --json): "30s", "5m", "1h" or seconds (default 60s; 1s for --json on
    /// a terminal).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub progress_interval: Option<std::time::Duration>,
    /// Keep retrying for this long when the repository is locked ("30s",
    /// "10m"); default: fail at once with exit code 11.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_lock: Option<std::time::Duration>,
    #[command(flatten)]
    pub log: crate::log_file::LogArgs,
    /// Memory for the repository index ("512M", "2G"); beyond it the index
    /// spills to a temporary file (TMPDIR) and keeps working, more slowly.
    /// Default: no limit (about 48 bytes per blob).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub mem_limit: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(crate::cmd_init::InitArgs),
    /// Back up files and directories into a new snapshot.
    Backup(Box<BackupArgs>),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// Restore a snapshot into a directory.
    Restore(RestoreArgs),
    /// List the files of a snapshot.
    Ls(crate::cmd_ls::LsArgs),
    /// Find files in snapshots by name, or by blob, tree or pack id.
    Find(crate::cmd_find::FindArgs),
    /// Show what changed between two snapshots.
    Diff(crate::cmd_diff::DiffArgs),
    /// Write a file, or a directory as a tar or zip archive, to standard output.
    Dump(crate::cmd_dump::DumpArgs),
    /// Print a repository object (config, index, snapshot, key, tree, blob, pack).
    Cat(crate::cmd_cat::CatArgs),
    /// Show snapshot sizes, repository size and the deduplication ratio.
    Stats(crate::cmd_stats::StatsArgs),
    /// Remove data that no snapshot needs (marked first, deleted after a grace period).
    Prune(crate::cmd_prune::PruneArgs),
    /// Copy snapshots from another repository (only the data the target lacks).
    Copy(crate::cmd_copy::CopyArgs),
    /// Remove locks left by processes that are gone.
    Unlock(UnlockArgs),
    /// Verify the repository: structure, and with --read-data every byte.
    Check(crate::cmd_check::CheckArgs),
    /// Remove snapshots by id or by a --keep-* retention policy.
    Forget(crate::cmd_forget::ForgetArgs),
    /// Add, remove or replace snapshot tags.
    Tag(crate::cmd_tag::TagArgs),
    /// Manage the repository's passwords (list, add, remove, passwd).
    Key(crate::cmd_key::KeyArgs),
    /// Run a profile: hooks, backup, forget, prune and check (see docs/CRON.md).
    Run(crate::cmd_run::RunArgs),
    /// Print or install the crontab entry or systemd timer that runs a profile.
    Schedule(crate::cmd_schedule::ScheduleArgs),
    /// Show each profile's last run and last successful backup.
    Status(crate::cmd_status::StatusArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(value_name = "PATH", required_unless_present_any = ["files_from", "stdin"])]
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file (named by --stdin-filename).
    #[arg(long, conflicts_with_all = ["paths", "files_from", "stdin_from_command"])]
    pub stdin: bool,
    /// File name for --stdin and --stdin-from-command.
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub stdin_filename: String,
    /// Run the arguments as a command and back up its output as one file
    /// (`arch backup --stdin-from-command -- pg_dump db`); a failing
    /// command fails the backup and no snapshot is written.
    #[arg(long, conflicts_with_all = ["stdin", "files_from"])]
    pub stdin_from_command: bool,
    /// Record access times (off by default: they change whenever a file is
    /// read or a directory listed, which would make every backup store new trees).
    #[arg(long)]
    pub with_atime: bool,
    /// Show what would be stored; store nothing and write no snapshot.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Write no snapshot if nothing changed since the parent snapshot.
    #[arg(long)]
    pub skip_if_unchanged: bool,
    /// How file content is read: "read" (default) or "mmap" (maps each
    /// file; a file truncated during the backup then aborts it).
    #[arg(long, value_name = "MODE", default_value = "read")]
    pub read_mode: arch_archiver::ReadMode,
    /// zstd level of the new data: "auto" (the repository's, set by init),
    /// "fast" (1), "default" (3), "max" (19), or 1 to 22.
    #[arg(long, value_name = "LEVEL", default_value = "auto", value_parser = parse_compression)]
    pub compression: Compression,
    /// Snapshot time instead of now ("2026-01-31 23:59:00" local, or RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Read more paths to back up from FILE (one per line; '#' comments).
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Leave out entries matching PATTERN (`*.o`, `cache`, `/abs/path`; repeatable).
    #[arg(long, short = 'e', value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// As --exclude, ignoring case.
    #[arg(long, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from FILE (one per line; '#' comments).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Read case-insensitive exclude patterns from FILE.
    #[arg(long, value_name = "FILE")]
    pub iexclude_file: Vec<PathBuf>,
    /// Leave out directories that contain a file named NAME.
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Leave out cache directories (marked by a valid CACHEDIR.TAG).
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out files larger than SIZE (bytes, or with K, M, G, T suffix).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Do not cross filesystem boundaries.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Honour .gitignore files (.archignore files are always honoured).
    #[arg(long)]
    pub git_ignore: bool,
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

/// Which snapshots a command considers (flattened into commands that select).
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host", short = 'H', value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags: "a,b" needs both; repeat for either.
    #[arg(long = "tag", value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> arch_archiver::SnapshotFilter {
        let mut f = arch_archiver::SnapshotFilter::default();
        for h in &self.hosts {
            f = f.host(h.clone());
        }
        for t in &self.tags {
            f = f.tag(t.clone());
        }
        for p in &self.paths {
            f = f.path(p.clone());
        }
        f
    }
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, even those of running processes.
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id prefix, or "latest" (the newest passing the filters),
    /// optionally followed by ":PATH" to restore only that path of the
    /// snapshot: a directory's content lands directly in the target, a file
    /// at TARGET/<its name>.
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Restore into a non-empty target, treating existing files as MODE
    /// says; without this option a non-empty target is refused.
    /// if-changed rewrites only the chunks that differ (and resumes an
    /// interrupted restore).
    #[arg(long, value_enum, value_name = "MODE")]
    pub overwrite: Option<crate::cmd_restore::OverwriteArg>,
    /// Restore only entries matching PATTERN, with their parent
    /// directories (`*.txt`, `docs`, `/home/me/docs`; repeatable).
    #[arg(long, short = 'i', value_name = "PATTERN")]
    pub include: Vec<String>,
    /// As --include, ignoring case.
    #[arg(long, value_name = "PATTERN")]
    pub iinclude: Vec<String>,
    /// Leave out entries matching PATTERN (and everything below; repeatable).
    #[arg(long, short = 'e', value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// As --exclude, ignoring case.
    #[arg(long, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// After restoring, re-read every restored file and check its content
    /// against the snapshot; exit code 1 if any differs.
    #[arg(long)]
    pub verify: bool,
    /// Show what would be restored and deleted; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Remove files and directories in the target that the snapshot does
    /// not have (only inside what is being restored).
    #[arg(long)]
    pub delete: bool,
    /// Restore owners by numeric id only. This is always the case (owner
    /// names are never looked up); accepted for restic compatibility.
    #[arg(long)]
    pub numeric_id: bool,
}

/// Parses a size for clap (see [`arch_archiver::parse_size`]).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    arch_archiver::parse_size(s)
        .ok_or_else(|| format!("invalid size {s:?}: use a number with an optional K, M, G or T suffix"))
}

/// A `--compression` value: a zstd level, or `None` for the repository's.
#[derive(Clone, Copy, Debug)]
pub struct Compression(pub Option<i32>);

/// Parses a compression level: "auto" (the repository's), "fast",
/// "default", "max", or a zstd level from 1 to 22.
pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    let level = match s {
        "auto" => None,
        "fast" => Some(1),
        "default" => Some(3),
        "max" => Some(19),
        _ => match s.parse::<i32>() {
            Ok(n) if arch_archiver::COMPRESSION_LEVELS.contains(&n) => Some(n),
            _ => {
                return Err(format!(
                    "invalid compression {s:?}: use auto, fast, default, max or a level from 1 to 22"
                ))
            }
        },
    };
    Ok(Compression(level))
}

/// Parses "90", "90s", "5m", "1h".
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n * mult)),
        _ => Err(format!("invalid duration {s:?}: use e.g. 30s, 5m or 1h")),
    }
}

/// Parses RFC 3339, or "YYYY-MM-DD HH:MM[:SS]" in local time.
pub(crate) fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s, f) {
            use chrono::TimeZone;
            if let Some(t) = chrono::Local.from_local_datetime(&naive).earliest() {
                return Ok(t.fixed_offset());
            }
        }
    }
    Err(format!("invalid time {s:?}: use \"YYYY-MM-DD HH:MM:SS\" or RFC 3339"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(super::parse_duration("5m").unwrap().as_secs(), 300);
        assert!(super::parse_duration("0s").is_err());
        assert!(super::parse_duration("soon").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(super::parse_time("2020-01-02T03:04:05Z").unwrap().timestamp(), 1577934245);
        assert!(super::parse_time("2020-01-02 03:04").is_ok());
        assert!(super::parse_time("yesterday").is_err());
    }
}
