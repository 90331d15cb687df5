//! A local cache in front of a remote backend.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_index::Id;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::backend::{Backend, FileInfo, FileKind};
use crate::error::BackendError;
use crate::staging::StagingFile;

/// The tag that tells backup tools (arch, restic, borg, tar
/// --exclude-caches) that a folder holds only a cache.
const CACHEDIR_TAG: &str =
    "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by arch.\n";

/// A [`Backend`] wrapper that keeps index files, snapshots and the packs
/// that hold tree blobs in a local folder, so that listing snapshots or
/// browsing trees of a remote repository does not download them again.
///
/// Guarantees:
/// - Nothing read from the cache is trusted: an object's name is the
///   blake3 of its stored bytes, and a cached file whose hash does not
///   match its name is deleted and fetched again (packs are checked once
///   per process, before their first range is served).
/// - The cache follows the repository: objects the backend no longer lists
///   (after a prune or forget elsewhere) are removed when their kind is
///   listed, and packs that no longer hold tree blobs when the index is
///   loaded ([`Backend::tree_packs`]). Deleting the whole folder is always
///   safe; it is rebuilt on use.
/// - The cache is an optimisation only: a cache folder that cannot be
///   written or read never fails a call; the object is read from the
///   backend instead.
/// - Whole-pack reads ([`Backend::read`] of a pack, which check and prune
///   use) always come from the backend, so `check --read-data` checks the
///   stored copy, not the cached one.
/// - Each repository has its own folder, named by the blake3 of its
///   (sealed) config object: `<base>/<64 hex>/{index,snapshots,data/<2 hex>}/<name>`.
///   Files are created 0600 and folders 0700, each written to a temporary
///   name and renamed into place.
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    base: PathBuf,
    dir: Mutex<Option<PathBuf>>,
    tree_packs: RwLock<HashSet<String>>,
    verified: Mutex<HashSet<String>>,
    /// Tree packs being downloaded: a second reader waits for the first
    /// instead of downloading the same pack again.
    fetching: Mutex<HashSet<String>>,
    fetched: Condvar,
}

impl std::fmt::Debug for CachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBackend").field("inner", &self.inner).field("base", &self.base).finish()
    }
}

fn cached_kind(kind: FileKind) -> bool {
    matches!(kind, FileKind::Index | FileKind::Snapshot | FileKind::Pack)
}

fn valid_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hash_matches(bytes: &[u8], name: &str) -> bool {
    Id::hash(bytes).to_hex() == name
}

fn mkdir(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}

impl CachedBackend {
    /// A cache for `inner` under `base` (e.g. `~/.cache/arch`); the
    /// repository's own folder is made on first use.
    pub fn new(inner: Arc<dyn Backend>, base: impl Into<PathBuf>) -> CachedBackend {
        CachedBackend {
            inner,
            base: base.into(),
            dir: Mutex::new(None),
            tree_packs: RwLock::new(HashSet::new()),
            verified: Mutex::new(HashSet::new()),
            fetching: Mutex::new(HashSet::new()),
            fetched: Condvar::new(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// This repository's cache folder, once known (the config has been
    /// read or written through this wrapper, or can be read now).
    pub fn dir(&self) -> Option<PathBuf> {
        if let Some(d) = self.dir.lock().clone() {
            return Some(d);
        }
        // Repository::open reads the config through us first, so this is
        // reached only by callers that skip it.
        let config = self.inner.read(FileKind::Config, "config").ok()?;
        self.learn_config(&config);
        self.dir.lock().clone()
    }

    fn learn_config(&self, config: &[u8]) {
        let dir = self.base.join(Id::hash(config).to_hex());
        let mut d = self.dir.lock();
        if d.is_none() {
            // Best effort: a cache that cannot be made is no cache.
            if mkdir(&dir).is_ok() {
                let tag = self.base.join("CACHEDIR.TAG");
                if !tag.exists() {
                    let _ = write_atomic(&tag, CACHEDIR_TAG.as_bytes());
                }
                *d = Some(dir);
            }
        }
    }

    fn folder(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        let dir = self.dir()?;
        Some(match kind {
            FileKind::Pack => dir.join("data").join(name.get(..2)?),
            _ => dir.join(kind.dir()),
        })
    }

    fn path(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        if !cached_kind(kind) || !valid_name(name) {
            return None;
        }
        Some(self.folder(kind, name)?.join(name))
    }

    /// A cached object's bytes, if present and intact; a damaged one is removed.
    fn load(&self, path: &Path, name: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(path).ok()?;
        if hash_matches(&bytes, name) {
            return Some(bytes);
        }
        let _ = fs::remove_file(path);
        None
    }

    fn store(&self, kind: FileKind, name: &str, data: &[u8]) {
        if let Some(path) = self.path(kind, name) {
            if hash_matches(data, name) && !path.exists() {
                let _ = path.parent().map(mkdir).transpose().and_then(|_| write_atomic(&path, data));
            }
        }
    }

    fn is_tree_pack(&self, name: &str) -> bool {
        self.tree_packs.read().contains(name)
    }

    /// A range of a cached tree pack, fetching the whole pack first if it
    /// is not cached (or its cached copy is damaged).
    fn tree_pack_range(&self, name: &str, offset: u64, length: u64) -> Option<Vec<u8>> {
        let path = self.path(FileKind::Pack, name)?;
        // The guard must be gone before fetch_tree_pack locks `verified`.
        let verified = self.verified.lock().contains(name);
        if !verified && !self.fetch_tree_pack(name, &path) {
            return None;
        }
        let f = File::open(&path).ok()?;
        let mut buf = vec![0u8; usize::try_from(length).ok()?];
        match f.read_exact_at(&mut buf, offset) {
            Ok(()) => Some(buf),
            Err(_) => {
                // Shorter than asked: let the backend give its own answer.
                self.verified.lock().remove(name);
                None
            }
        }
    }

    /// Makes sure a verified copy of a tree pack is cached (one download
    /// per pack however many threads ask); false if that failed.
    fn fetch_tree_pack(&self, name: &str, path: &Path) -> bool {
        {
            let mut busy = self.fetching.lock();
            while busy.contains(name) {
                self.fetched.wait(&mut busy);
            }
            if self.verified.lock().contains(name) {
                return true;
            }
            busy.insert(name.to_string());
        }
        let ok = self.load(path, name).is_some()
            || match self.inner.read(FileKind::Pack, name) {
                Ok(bytes) => {
                    self.store(FileKind::Pack, name, &bytes);
                    path.exists()
                }
                Err(_) => false,
            };
        if ok {
            self.verified.lock().insert(name.to_string());
        } else {
            // Not cacheable now (disk full, read error): later reads of
            // this pack go straight to the backend instead of downloading
            // it whole again each time.
            self.tree_packs.write().remove(name);
        }
        self.fetching.lock().remove(name);
        self.fetched.notify_all();
        ok
    }

    /// Removes cached objects of `kind` that are not in `keep`.
    fn prune(&self, kind: FileKind, keep: &HashSet<&str>) {
        let Some(dir) = self.dir() else { return };
        let top = dir.join(kind.dir());
        let folders: Vec<PathBuf> = if kind == FileKind::Pack {
            fs::read_dir(&top).into_iter().flatten().flatten().map(|e| e.path()).collect()
        } else {
            vec![top]
        };
        for folder in folders {
            for e in fs::read_dir(&folder).into_iter().flatten().flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                // Temporary files of a crashed writer go too.
                if !keep.contains(name.as_ref()) {
                    let _ = fs::remove_file(e.path());
                    self.verified.lock().remove(name.as_ref());
                }
            }
        }
    }

    /// Whether an object of this kind and name is kept locally: the
    /// config, indexes, snapshots and the packs holding trees.
    fn keeps(&self, kind: FileKind, name: &str) -> bool {
        match kind {
            FileKind::Config | FileKind::Index | FileKind::Snapshot => true,
            FileKind::Pack => self.is_tree_pack(name),
            _ => false,
        }
    }

    /// Keeps the bytes of an object just written or read, if its kind is
    /// kept (the config is only learned, for the cache's own checks).
    fn remember(&self, kind: FileKind, name: &str, data: &[u8]) {
        match kind {
            FileKind::Config => self.learn_config(data),
            _ if self.keeps(kind, name) => self.store(kind, name, data),
            _ => {}
        }
    }
}

/// Writes `data` to a temporary file beside `path` (0600) and renames it
/// into place, so a reader never sees a partial file.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(crate::staging::temp_name(&name)?);
    let r = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

impl Backend for CachedBackend {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn exists(&self) -> Result<bool, BackendError> {
        self.inner.exists()
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        self.inner.create_layout()
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.inner.create(kind, name, data)?;
        self.remember(kind, name, data);
        Ok(())
    }

    fn staging_file(&self, kind: FileKind) -> Result<StagingFile, BackendError> {
        self.inner.staging_file(kind)
    }

    fn create_from_file(
        &self,
        kind: FileKind,
        name: &str,
        staged: &mut StagingFile,
    ) -> Result<(), BackendError> {
        self.inner.create_from_file(kind, name, staged)?;
        // The staging file is still open (even if it was moved into place):
        // read the cached kinds back from it, never from the backend.
        if self.keeps(kind, name) {
            // The cache is an optimisation: a failed read-back only means
            // the object is not cached.
            if let Ok(data) = staged.read_all() {
                self.remember(kind, name, &data);
            }
        }
        Ok(())
    }

    fn remove_stale_temp_files(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        self.inner.remove_stale_temp_files(older_than)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        if matches!(kind, FileKind::Index | FileKind::Snapshot) {
            if let Some(bytes) = self.path(kind, name).and_then(|p| self.load(&p, name)) {
                return Ok(bytes);
            }
        }
        let bytes = self.inner.read(kind, name)?;
        self.remember(kind, name, &bytes);
        Ok(bytes)
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        if kind == FileKind::Pack && self.is_tree_pack(name) {
            if let Some(buf) = self.tree_pack_range(name, offset, length) {
                return Ok(buf);
            }
        }
        self.inner.read_range(kind, name, offset, length)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        let listed = self.inner.list(kind)?;
        if cached_kind(kind) {
            self.prune(kind, &listed.iter().map(|i| i.name.as_str()).collect());
        }
        Ok(listed)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        // Gone from the cache first: even if the backend call fails, a
        // cached copy must not outlive the object.
        if let Some(p) = self.path(kind, name) {
            let _ = fs::remove_file(p);
            self.verified.lock().remove(name);
        }
        self.inner.delete(kind, name)
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }

    fn tree_packs(&self, packs: &[String], complete: bool) {
        let mut set = self.tree_packs.write();
        if complete {
            set.clear();
        }
        set.extend(packs.iter().cloned());
        if complete {
            let keep: HashSet<&str> = set.iter().map(String::as_str).collect();
            self.prune(FileKind::Pack, &keep);
        }
    }
    fn prefetch(&self, kind: FileKind, name: &str, ranges: &[std::ops::Range<u64>]) {
        self.inner.prefetch(kind, name, ranges);
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
