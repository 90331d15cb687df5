use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use arch_index::{BlobType, Compression};

use super::*;
use crate::{InitOptions, KdfParams, LocalBackend, PackWriter, Repository};

/// Counts the calls that fetch object bytes from the wrapped backend.
#[derive(Debug)]
struct Counting {
    inner: LocalBackend,
    reads: Mutex<HashMap<FileKind, usize>>,
}

impl Counting {
    fn new(dir: &Path) -> Arc<Counting> {
        Arc::new(Counting { inner: LocalBackend::new(dir), reads: Mutex::new(HashMap::new()) })
    }

    fn reads(&self, kind: FileKind) -> usize {
        self.reads.lock().get(&kind).copied().unwrap_or(0)
    }

    fn count(&self, kind: FileKind) {
        *self.reads.lock().entry(kind).or_default() += 1;
    }
}

impl Backend for Counting {
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
        self.inner.create(kind, name, data)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.count(kind);
        self.inner.read(kind, name)
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.count(kind);
        self.inner.read_range(kind, name, offset, len)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.inner.delete(kind, name)
    }
}

const PW: &[u8] = b"pw";

fn open(repo: &Path, cache: &Path) -> (Repository, Arc<Counting>) {
    let counting = Counting::new(repo);
    let cached = Arc::new(CachedBackend::new(counting.clone(), cache));
    (Repository::open(cached, PW).unwrap(), counting)
}

/// A repository with one tree pack (indexed) and one snapshot; returns the
/// tree blob's id and its bytes.
fn setup(repo: &Path) -> (arch_index::BlobId, Vec<u8>) {
    let opts = InitOptions::default().kdf(KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 });
    let r = Repository::init(Arc::new(LocalBackend::new(repo)), PW, &opts).unwrap();
    let tree = b"a tree blob".to_vec();
    let id = Id::hash(&tree);
    let mut w = PackWriter::new(BlobType::Tree, 1024);
    w.add(r.key(), id, &tree, tree.len() as u32, Compression::None).unwrap();
    r.save_pack(w.finish(r.key()).unwrap()).unwrap();
    r.flush_index().unwrap();
    r.save_object(FileKind::Snapshot, b"{}").unwrap();
    (id, tree)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn browse(r: &Repository) -> Vec<u8> {
    let snaps = r.backend().list(FileKind::Snapshot).unwrap();
    for s in &snaps {
        r.load_object(FileKind::Snapshot, &Id::from_hex(&s.name).unwrap()).unwrap();
    }
    let blobs = r.index().all_blobs();
    assert_eq!(blobs.len(), 1);
    r.read_blob(BlobType::Tree, &blobs[0].blob.id).unwrap()
}

#[test]
fn a_second_open_downloads_no_index_snapshot_or_tree_pack() {
    let (repo_dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, tree) = setup(repo_dir.path());

    let (r, cold) = open(repo_dir.path(), cache_dir.path());
    assert_eq!(browse(&r), tree);
    assert_eq!((cold.reads(FileKind::Index), cold.reads(FileKind::Snapshot)), (1, 1));
    assert_eq!(cold.reads(FileKind::Pack), 1, "the tree pack is fetched whole, once");

    let (r, warm) = open(repo_dir.path(), cache_dir.path());
    assert_eq!(browse(&r), tree);
    assert_eq!(
        (warm.reads(FileKind::Index), warm.reads(FileKind::Snapshot), warm.reads(FileKind::Pack)),
        (0, 0, 0),
        "everything came from the cache"
    );

    // Layout and permissions: one folder per repository, 0700 / 0600.
    let cached = files(cache_dir.path());
    assert_eq!(cached.len(), 4, "tag, index, snapshot, tree pack: {cached:?}");
    assert!(fs::read_to_string(cache_dir.path().join("CACHEDIR.TAG"))
        .unwrap()
        .starts_with("Signature: 8a477f"));
    for f in cached.iter().filter(|f| !f.ends_with("CACHEDIR.TAG")) {
        assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        let dir = f.parent().unwrap();
        assert_eq!(fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
    }
    // Whole-pack reads (check --read-data, prune) always go to the backend.
    let pack = &r.backend().list(FileKind::Pack).unwrap()[0].name;
    r.backend().read(FileKind::Pack, pack).unwrap();
    assert_eq!(warm.reads(FileKind::Pack), 1);
}

#[test]
fn damaged_or_deleted_cache_entries_are_refetched_never_trusted() {
    let (repo_dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, tree) = setup(repo_dir.path());
    let (r, _) = open(repo_dir.path(), cache_dir.path());
    browse(&r);
    // Flip one byte in every cached object.
    for f in files(cache_dir.path()).iter().filter(|f| !f.ends_with("CACHEDIR.TAG")) {
        let mut b = fs::read(f).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(f, b).unwrap();
    }
    let (r, c) = open(repo_dir.path(), cache_dir.path());
    assert_eq!(browse(&r), tree, "correct bytes despite the damaged cache");
    assert_eq!((c.reads(FileKind::Index), c.reads(FileKind::Snapshot), c.reads(FileKind::Pack)), (1, 1, 1));
    // ... and repaired: the next open reads nothing.
    let (r, c) = open(repo_dir.path(), cache_dir.path());
    browse(&r);
    assert_eq!((c.reads(FileKind::Index), c.reads(FileKind::Snapshot), c.reads(FileKind::Pack)), (0, 0, 0));

    fs::remove_dir_all(cache_dir.path()).unwrap();
    let (r, c) = open(repo_dir.path(), cache_dir.path());
    assert_eq!(browse(&r), tree, "a deleted cache is rebuilt");
    assert_eq!(c.reads(FileKind::Index), 1);
}

#[test]
fn objects_gone_from_the_backend_leave_the_cache() {
    let (repo_dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    setup(repo_dir.path());
    let (r, _) = open(repo_dir.path(), cache_dir.path());
    browse(&r);
    assert_eq!(files(cache_dir.path()).len(), 4);
    // Another machine removes the snapshot, and rewrites the index so the
    // tree pack is no longer listed (what forget and prune do).
    let local = LocalBackend::new(repo_dir.path());
    for kind in [FileKind::Snapshot, FileKind::Index] {
        for f in local.list(kind).unwrap() {
            local.delete(kind, &f.name).unwrap();
        }
    }
    let (r, _) = open(repo_dir.path(), cache_dir.path());
    r.backend().list(FileKind::Snapshot).unwrap();
    assert_eq!(files(cache_dir.path()).len(), 1, "only the tag is left: {:?}", files(cache_dir.path()));

    // A delete through the wrapper removes the cached copy at once.
    let (_, tree) = setup(&repo_dir.path().join("second"));
    let (r, _) = open(&repo_dir.path().join("second"), cache_dir.path());
    assert_eq!(browse(&r), tree);
    let snap = r.backend().list(FileKind::Snapshot).unwrap().remove(0).name;
    let cached_snap = files(cache_dir.path()).into_iter().find(|f| f.ends_with(&snap)).unwrap();
    r.backend().delete(FileKind::Snapshot, &snap).unwrap();
    assert!(!cached_snap.exists());
}

#[test]
fn writes_go_through_to_the_cache() {
    let (repo_dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = InitOptions::default().kdf(KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 });
    let counting = Counting::new(repo_dir.path());
    let cached = Arc::new(CachedBackend::new(counting.clone(), cache_dir.path()));
    let r = Repository::init(cached, PW, &opts).unwrap();
    let tree = b"tree".to_vec();
    let mut w = PackWriter::new(BlobType::Tree, 1024);
    w.add(r.key(), Id::hash(&tree), &tree, 4, Compression::None).unwrap();
    r.save_pack(w.finish(r.key()).unwrap()).unwrap();
    r.flush_index().unwrap();
    r.save_object(FileKind::Snapshot, b"{}").unwrap();
    assert_eq!(browse(&r), tree);
    let (r2, c2) = open(repo_dir.path(), cache_dir.path());
    assert_eq!(browse(&r2), tree);
    assert_eq!(
        counting.reads(FileKind::Pack) + c2.reads(FileKind::Pack),
        0,
        "the new tree pack was cached on upload"
    );
    assert_eq!((c2.reads(FileKind::Index), c2.reads(FileKind::Snapshot)), (0, 0));
}

#[test]
fn threads_reading_one_tree_pack_download_it_once() {
    let (repo_dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (id, tree) = setup(repo_dir.path());
    let (r, c) = open(repo_dir.path(), cache_dir.path());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(r.read_blob(BlobType::Tree, &id).unwrap(), tree));
        }
    });
    assert_eq!(c.reads(FileKind::Pack), 1);
}
