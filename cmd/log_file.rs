//! `--log-file`: timestamped lines for unattended runs, rotated by size.
//!
//! Only messages arch composes go here (steps, summaries, errors, hook
//! output); never a password, which no message contains.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::Args;
use parking_lot::Mutex;

/// Log options (global).
#[derive(Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Append timestamped lines about the command (steps, summaries,
    /// errors, hook output) to FILE.
    #[arg(long, global = true, env = "ARCH_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file when it would grow past SIZE (default 10M):
    /// FILE becomes FILE.1, FILE.1 becomes FILE.2, and so on.
    #[arg(long, global = true, value_name = "SIZE", value_parser = crate::cli::parse_size)]
    pub log_max_size: Option<u64>,
    /// How many rotated files to keep (default 3).
    #[arg(long, global = true, value_name = "N")]
    pub log_keep: Option<u32>,
}

pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
pub const DEFAULT_KEEP: u32 = 3;

struct Log {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    keep: u32,
}

static LOG: OnceLock<Mutex<Log>> = OnceLock::new();

/// Starts logging to `path` (the first call wins).
pub fn open(path: &Path, max: u64, keep: u32) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create log directory {}", d.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = LOG.set(Mutex::new(Log { path: path.to_path_buf(), file, size, max: max.max(1), keep }));
    Ok(())
}

/// Appends one timestamped line (a no-op without a log file). Write errors
/// are reported once on stderr, then ignored: a full disk must not fail
/// the backup it logs.
pub fn line(msg: &str) {
    let Some(log) = LOG.get() else { return };
    let mut l = log.lock();
    let text = format!(
        "{} [{}] {}\n",
        chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z"),
        std::process::id(),
        msg.replace('\n', " ")
    );
    if l.size > 0 && l.size + text.len() as u64 > l.max {
        if let Err(e) = rotate(&mut l) {
            eprintln!("arch: cannot rotate log file {}: {e}", l.path.display());
        }
    }
    match l.file.write_all(text.as_bytes()) {
        Ok(()) => l.size += text.len() as u64,
        Err(e) => eprintln!("arch: cannot write log file {}: {e}", l.path.display()),
    }
}

fn rotate(l: &mut Log) -> std::io::Result<()> {
    let numbered = |n: u32| {
        let mut s = l.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    };
    if l.keep == 0 {
        std::fs::remove_file(&l.path)?;
    } else {
        let _ = std::fs::remove_file(numbered(l.keep));
        for n in (1..l.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&l.path, numbered(1))?;
    }
    l.file = OpenOptions::new().create(true).append(true).open(&l.path)?;
    l.size = 0;
    Ok(())
}
