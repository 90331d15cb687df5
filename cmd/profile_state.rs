//! Per-profile state between runs (run counters, last success, check
//! rotation) and the lock that keeps two runs of a profile apart. Both live
//! in `ARCH_STATE_DIR`, else `<state dir>/arch/profiles` (data dir when the
//! platform has no state dir).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// What `arch run` remembers about a profile.
#[derive(Serialize, Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct State {
    /// Runs started (that got past the lock).
    pub runs: u64,
    /// Runs since the last prune.
    pub runs_since_prune: u64,
    /// Runs since the last check.
    pub runs_since_check: u64,
    /// Checks done; picks the next `read-data-parts` part.
    pub checks: u32,
    pub last_run: Option<DateTime<FixedOffset>>,
    pub last_exit_code: Option<i32>,
    /// Time of the last run whose backup step succeeded (exit 0).
    pub last_success: Option<DateTime<FixedOffset>>,
    pub last_snapshot: Option<String>,
    pub last_prune: Option<DateTime<FixedOffset>>,
}

pub fn dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("ARCH_STATE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let base = dirs::state_dir()
        .or_else(dirs::data_dir)
        .context("no ARCH_STATE_DIR and no user state or data directory for profile state")?;
    Ok(base.join("arch").join("profiles"))
}

fn state_path(profile: &str) -> Result<PathBuf> {
    Ok(dir()?.join(format!("{profile}.json")))
}

/// The profile's state; a missing file is a profile that never ran.
pub fn load(profile: &str) -> Result<State> {
    let p = state_path(profile)?;
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("profile state {} is damaged; delete it to start over", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read profile state {}", p.display())),
    }
}

/// Writes the state atomically (temp file, fsync, rename).
pub fn save(profile: &str, s: &State) -> Result<()> {
    let p = state_path(profile)?;
    let d = p.parent().context("state path has no directory")?;
    std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    let tmp = d.join(format!(".{profile}.json.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(s)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)?;
        File::open(d)?.sync_all()
    };
    write().with_context(|| format!("cannot write profile state {}", p.display()))
}

/// Held while a profile runs; the OS releases it when the process dies.
pub struct RunLock {
    _file: File,
}

/// Why the lock was not taken.
pub enum LockError {
    /// Another run holds it (its pid, when it wrote one).
    Busy(Option<u32>),
    Other(anyhow::Error),
}

/// Takes the profile's run lock, waiting for it when `wait`.
pub fn lock(profile: &str, wait: bool) -> std::result::Result<RunLock, LockError> {
    let open = || -> Result<File> {
        let d = dir()?;
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let p = d.join(format!("{profile}.lock"));
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .with_context(|| format!("cannot open lock file {}", p.display()))
    };
    let mut f = open().map_err(LockError::Other)?;
    let taken = if wait {
        f.lock().map(|_| true)
    } else {
        match f.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    };
    match taken {
        Ok(true) => {}
        Ok(false) => return Err(LockError::Busy(read_pid(&mut f))),
        Err(e) => return Err(LockError::Other(anyhow::Error::new(e).context("cannot lock the profile"))),
    }
    // The pid is for the message a second run prints.
    let _ = f.set_len(0).and_then(|_| f.seek(SeekFrom::Start(0))).and_then(|_| {
        writeln!(f, "{}", std::process::id())?;
        f.flush()
    });
    Ok(RunLock { _file: f })
}

fn read_pid(f: &mut File) -> Option<u32> {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Every profile with a state file, by name.
pub fn list() -> Result<Vec<String>> {
    let d = dir()?;
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", d.display())),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(p) = name.strip_suffix(".json") {
            if !p.starts_with('.') {
                out.push(p.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}
