//! Leases: shared (backup, restore) and exclusive (prune) locks on a
//! repository that survive nothing: a lease whose holder stopped refreshing
//! it, or whose process is gone, is ignored and removed.
//!
//! Objects are write-once, so a refresh writes a new lock object and then
//! deletes the old one.

use std::sync::Arc;
use std::time::Duration;

use arch_index::Id;
use chrono::{DateTime, Utc};
use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::error::RepoError;
use crate::repo::{hostname, username, Repository};

/// A lease not refreshed for this long is stale. Refreshes happen every
/// [`REFRESH_EVERY`], so a live holder is never mistaken for a dead one
/// unless it is stalled for half an hour (restic uses the same bound).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lease is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// What a lock object says (sealed JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (prune) or shared (backup, restore).
    pub exclusive: bool,
    /// Last refresh.
    pub time: DateTime<Utc>,
    /// Host of the holder.
    pub hostname: String,
    /// User of the holder.
    pub username: String,
    /// Process id of the holder.
    pub pid: u32,
}

impl LockInfo {
    /// Whether the holder is gone: no refresh for [`STALE_AFTER`], or a
    /// process on this host that no longer exists.
    pub fn is_stale(&self) -> bool {
        let age = Utc::now().signed_duration_since(self.time);
        if age.to_std().is_ok_and(|a| a > STALE_AFTER) {
            return true;
        }
        self.hostname == hostname() && !process_exists(self.pid)
    }

    fn describe(&self, id: &Id) -> String {
        format!(
            "{} lock {} held by {}@{} (pid {}), refreshed {}",
            if self.exclusive { "an exclusive" } else { "a shared" },
            id.short(),
            self.username,
            self.hostname,
            self.pid,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A held lease. Refreshed in the background; released (its lock object
/// deleted) when dropped.
pub struct Lease {
    current: Arc<Mutex<Id>>,
    stop: Option<Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
    repo: Arc<Repository>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.current.lock().short())
    }
}

impl Lease {
    /// Takes a shared (`exclusive == false`) or exclusive lease, retrying
    /// for up to `retry` while another holder is in the way.
    ///
    /// Shared leases exclude only exclusive ones; an exclusive lease
    /// excludes every other lease. Stale leases are removed on the way.
    pub fn acquire(repo: &Arc<Repository>, exclusive: bool, retry: Duration) -> Result<Lease, RepoError> {
        Self::acquire_refreshing(repo, exclusive, retry, REFRESH_EVERY)
    }

    /// As [`Lease::acquire`], refreshing every `refresh` instead of
    /// [`REFRESH_EVERY`] (which must stay well below [`STALE_AFTER`]).
    pub fn acquire_refreshing(
        repo: &Arc<Repository>,
        exclusive: bool,
        retry: Duration,
        refresh: Duration,
    ) -> Result<Lease, RepoError> {
        let deadline = std::time::Instant::now() + retry;
        let mut wait = Duration::from_millis(200);
        loop {
            match Self::try_acquire(repo, exclusive, refresh) {
                Err(RepoError::Locked { .. }) if std::time::Instant::now() + wait < deadline => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                r => return r,
            }
        }
    }

    fn try_acquire(repo: &Arc<Repository>, exclusive: bool, refresh: Duration) -> Result<Lease, RepoError> {
        check_conflicts(repo, exclusive, None)?;
        let id = write_lock(repo, exclusive)?;
        // Another process may have locked between our check and our write:
        // look again with our lock in place; whoever sees a conflict backs off.
        if let Err(e) = check_conflicts(repo, exclusive, Some(id)) {
            let _ = repo.backend().delete(FileKind::Lock, &id.to_hex());
            return Err(e);
        }
        let current = Arc::new(Mutex::new(id));
        let (stop, stopped) = bounded::<()>(0);
        let (r, cur) = (Arc::clone(repo), Arc::clone(&current));
        let refresher = std::thread::Builder::new()
            .name("arch-lease".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(refresh) {
                    if let Ok(new) = write_lock(&r, exclusive) {
                        let old = std::mem::replace(&mut *cur.lock(), new);
                        let _ = r.backend().delete(FileKind::Lock, &old.to_hex());
                    }
                }
            })
            .map_err(|e| RepoError::InvalidOption(format!("cannot start the lease refresher: {e}")))?;
        Ok(Lease { current, stop: Some(stop), refresher: Some(refresher), repo: Arc::clone(repo) })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let id = *self.current.lock();
        let _ = self.repo.backend().delete(FileKind::Lock, &id.to_hex());
    }
}

fn write_lock(repo: &Repository, exclusive: bool) -> Result<Id, RepoError> {
    let info = LockInfo {
        exclusive,
        time: Utc::now(),
        hostname: hostname(),
        username: username(),
        pid: std::process::id(),
    };
    repo.save_object(FileKind::Lock, &serde_json::to_vec(&info).expect("lock serializes"))
}

/// Every lock of the repository that is readable, with its id.
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, LockInfo)>, RepoError> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileKind::Lock)? {
        let Some(id) = Id::from_hex(&f.name) else { continue };
        // A lock deleted while we list it is simply gone.
        let plain = match repo.load_object(FileKind::Lock, &id) {
            Ok(p) => p,
            Err(RepoError::Backend(crate::BackendError::NotFound { .. })) => continue,
            Err(e) => return Err(e),
        };
        let info: LockInfo = serde_json::from_slice(&plain)
            .map_err(|e| RepoError::corrupt(format!("lock {}", id.short()), e.to_string()))?;
        out.push((id, info));
    }
    Ok(out)
}

/// Removes stale locks (or every lock with `all`); returns how many.
pub fn remove_locks(repo: &Repository, all: bool) -> Result<usize, RepoError> {
    let mut n = 0;
    for (id, info) in list_locks(repo)? {
        if all || info.is_stale() {
            match repo.backend().delete(FileKind::Lock, &id.to_hex()) {
                Ok(()) | Err(crate::BackendError::NotFound { .. }) => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

fn check_conflicts(repo: &Repository, exclusive: bool, ours: Option<Id>) -> Result<(), RepoError> {
    for (id, info) in list_locks(repo)? {
        if Some(id) == ours {
            continue;
        }
        if info.is_stale() {
            let _ = repo.backend().delete(FileKind::Lock, &id.to_hex());
            continue;
        }
        if exclusive || info.exclusive {
            return Err(RepoError::Locked {
                location: repo.backend().location().to_string(),
                by: info.describe(&id),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InitOptions, KdfParams, LocalBackend};

    fn repo(dir: &std::path::Path) -> Arc<Repository> {
        let opts = InitOptions::default().kdf(KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 });
        Arc::new(Repository::init(Arc::new(LocalBackend::new(dir)), b"pw", &opts).unwrap())
    }

    fn plant(repo: &Repository, exclusive: bool, host: &str, pid: u32, age: Duration) -> Id {
        let info = LockInfo {
            exclusive,
            time: Utc::now() - chrono::Duration::from_std(age).unwrap(),
            hostname: host.into(),
            username: "other".into(),
            pid,
        };
        repo.save_object(FileKind::Lock, &serde_json::to_vec(&info).unwrap()).unwrap()
    }

    #[test]
    fn shared_leases_coexist_and_exclusive_ones_exclude() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let a = Lease::acquire(&r, false, Duration::ZERO).unwrap();
        let b = Lease::acquire(&r, false, Duration::ZERO).unwrap();
        let err = Lease::acquire(&r, true, Duration::ZERO).unwrap_err();
        assert!(matches!(err, RepoError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("a shared lock"), "{err}");
        drop((a, b));
        assert!(list_locks(&r).unwrap().is_empty(), "dropping a lease deletes its lock");
        let x = Lease::acquire(&r, true, Duration::ZERO).unwrap();
        assert!(matches!(Lease::acquire(&r, false, Duration::ZERO), Err(RepoError::Locked { .. })));
        drop(x);
        // Retrying waits for a holder that finishes.
        let held = Lease::acquire(&r, true, Duration::ZERO).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        Lease::acquire(&r, false, Duration::from_secs(10)).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn a_held_lease_is_refreshed_by_a_new_lock_object() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let lease = Lease::acquire_refreshing(&r, false, Duration::ZERO, Duration::from_millis(100)).unwrap();
        let first = list_locks(&r).unwrap();
        std::thread::sleep(Duration::from_millis(450));
        let later = list_locks(&r).unwrap();
        assert_eq!(later.len(), 1, "the old lock object is deleted after the new one is written");
        assert_ne!(first[0].0, later[0].0);
        assert!(later[0].1.time > first[0].1.time);
        drop(lease);
        assert!(list_locks(&r).unwrap().is_empty());
    }

    #[test]
    fn stale_leases_are_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        // A crashed process on this host, and a host that stopped refreshing.
        let dead = plant(&r, true, &hostname(), 0x7fff_fff0, Duration::ZERO);
        let old = plant(&r, true, "elsewhere", 1, STALE_AFTER + Duration::from_secs(60));
        let lease = Lease::acquire(&r, true, Duration::ZERO).unwrap();
        let left: Vec<Id> = list_locks(&r).unwrap().into_iter().map(|(id, _)| id).collect();
        assert!(!left.contains(&dead) && !left.contains(&old), "stale locks are cleaned up");
        drop(lease);
        // A live lock elsewhere is respected; unlock removes only stale ones
        // unless told to remove all.
        plant(&r, true, "elsewhere", 1, Duration::from_secs(60));
        assert!(matches!(Lease::acquire(&r, false, Duration::ZERO), Err(RepoError::Locked { .. })));
        assert_eq!(remove_locks(&r, false).unwrap(), 0);
        assert_eq!(remove_locks(&r, true).unwrap(), 1);
        Lease::acquire(&r, false, Duration::ZERO).unwrap();
    }
}
