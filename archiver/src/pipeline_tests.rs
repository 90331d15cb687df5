//! Error and cancellation behaviour of the backup pipeline, with faults
//! injected into each pool in turn and into the backend.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_repository::{
    Backend, BackendError, FileInfo, FileKind, InitOptions, KdfParams, LocalBackend, Repository,
};

use crate::fault::Stage;
use crate::{ArchiveError, Backup, Restore};

use crate::test_support::SERIAL;

pub(crate) fn init(backend: Arc<dyn Backend>) -> Repository {
    let opts = InitOptions::default()
        .kdf(KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 })
        .chunk_sizes(64 << 10, 128 << 10, 256 << 10)
        .pack_size(256 << 10);
    Repository::init(backend, b"pw", &opts).unwrap()
}

/// `n` incompressible bytes from the xorshift state `x` (advanced).
pub(crate) fn noise(x: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x as u8
        })
        .collect()
}

/// 8 directories of 5 pseudo-random 512 KiB files: about 160 blobs,
/// 80 packs and 9 trees, so every pool sees several items.
pub(crate) fn make_source(root: &Path) -> PathBuf {
    let src = root.join("src");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for d in 0..8 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..5 {
            std::fs::write(dir.join(format!("f{f}")), noise(&mut x, 512 * 1024)).unwrap();
        }
    }
    src
}

/// The tree id of `path` in `snap` (the root tree also holds the temp
/// dir's ancestors, which other processes may touch).
fn subtree(repo: &Repository, snap: &arch_repository::Snapshot, path: &Path) -> arch_index::Id {
    let mut id = snap.tree;
    for comp in path.strip_prefix("/").unwrap().components() {
        let tree = repo.load_tree(&id).unwrap();
        let name = comp.as_os_str().as_encoded_bytes();
        id = tree.nodes.iter().find(|n| n.name == name).and_then(|n| n.subtree).expect("path in snapshot");
    }
    id
}

fn arch_threads() -> Vec<String> {
    let mut names = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(n) = std::fs::read_to_string(t.path().join("comm")) {
            if n.starts_with("arch-") {
                names.push(n.trim().to_string());
            }
        }
    }
    names
}

/// Runs `f` on a thread and fails the test if it does not finish in time
/// (a hang would otherwise block the suite forever).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let v = rx.recv_timeout(limit).expect("the run hung");
    (v, start.elapsed())
}

#[test]
fn an_error_in_any_pool_cancels_the_whole_backup() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    for stage in [Stage::Scanner, Stage::FileSaver, Stage::BlobSaver, Stage::TreeSaver, Stage::Uploader] {
        let repo_dir = tmp.path().join(format!("repo-{stage:?}"));
        let repo = Arc::new(init(Arc::new(LocalBackend::new(&repo_dir))));
        let (r, src2) = (Arc::clone(&repo), src.clone());
        let (result, took) = within(Duration::from_secs(60), move || {
            Backup::new(&r, [&src2]).inject_fault(stage, 2).run().map(|_| ())
        });
        match result {
            Err(ArchiveError::Io { op: "injected fault in", path, .. }) => {
                assert_eq!(path, PathBuf::from(format!("{stage:?}")))
            }
            other => panic!("{stage:?}: expected the injected error, got {other:?}"),
        }
        assert!(took < Duration::from_secs(20), "{stage:?}: took {took:?}");
        assert!(repo.list_snapshots().unwrap().is_empty(), "{stage:?}: no snapshot after an error");
        assert_eq!(arch_threads(), Vec::<String>::new(), "{stage:?}: threads left running");
        // Whatever was stored before the error is indexed, so it is reused.
        let reopened = Repository::open(Arc::new(LocalBackend::new(&repo_dir)), b"pw").unwrap();
        let packs_on_disk = reopened.backend().list(FileKind::Pack).unwrap().len();
        let mut indexed: Vec<_> = reopened.index().all_blobs().into_iter().map(|l| l.pack).collect();
        indexed.sort();
        indexed.dedup();
        assert_eq!(indexed.len(), packs_on_disk, "{stage:?}: every stored pack is indexed");
        let ok = Backup::new(&reopened, [&src]).run().unwrap();
        let out = tmp.path().join(format!("out-{stage:?}"));
        Restore::new(&reopened, &ok.snapshot, &out).run().unwrap();
        let restored = out.join(src.strip_prefix("/").unwrap()).join("d7/f4");
        assert_eq!(std::fs::read(restored).unwrap(), std::fs::read(src.join("d7/f4")).unwrap());
    }
}

/// A backend that fails `create` of one kind after `ok` successes. It
/// implements only the required methods, like a remote backend would:
/// packs reach it through the default `create_from_file`, from memory.
#[derive(Debug)]
pub(crate) struct FailingBackend {
    pub(crate) inner: LocalBackend,
    pub(crate) kind: FileKind,
    pub(crate) ok: usize,
    pub(crate) calls: AtomicUsize,
}

impl Backend for FailingBackend {
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
        if kind == self.kind && self.calls.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(BackendError::Io {
                op: "write",
                path: PathBuf::from(format!("{kind}/{name}")),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        self.inner.create(kind, name, data)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.read(kind, name)
    }
    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.inner.read_range(kind, name, offset, length)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.inner.delete(kind, name)
    }
}

#[test]
fn a_failing_backend_ends_the_backup_with_an_error_naming_the_object() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    for kind in [FileKind::Pack, FileKind::Index, FileKind::Snapshot] {
        let backend = Arc::new(FailingBackend {
            inner: LocalBackend::new(tmp.path().join(format!("repo-{kind}"))),
            kind,
            ok: if kind == FileKind::Pack { 3 } else { 0 },
            calls: AtomicUsize::new(0),
        });
        let repo = Arc::new(init(backend));
        let (r, s) = (Arc::clone(&repo), src.clone());
        let (result, took) = within(Duration::from_secs(60), move || Backup::new(&r, [&s]).run().map(|_| ()));
        let err = result.expect_err("a failing backend must fail the backup");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{kind}/")) && msg.contains("No space left"), "{kind}: {msg}");
        assert!(took < Duration::from_secs(20));
        assert!(repo.list_snapshots().unwrap().is_empty());
        assert_eq!(arch_threads(), Vec::<String>::new());
    }
}

#[test]
fn an_unchanged_file_is_not_opened_again_and_a_changed_one_is() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo = init(Arc::new(LocalBackend::new(tmp.path().join("repo"))));
    let first = Backup::new(&repo, [&src]).run().unwrap();
    assert_eq!(first.files_read, 40);

    let second = Backup::new(&repo, [&src]).run().unwrap();
    let s = second.snapshot.summary.clone().unwrap();
    assert_eq!(second.files_read, 0, "no file may be opened when nothing changed");
    assert_eq!((s.files_new, s.files_changed, s.files_unmodified), (0, 0, 40));
    // Only the trees above the source may be new: other processes touch
    // /tmp, an ancestor whose mtime the snapshot records.
    let ancestors = src.ancestors().count() as u64 - 1;
    assert!(s.blobs_added <= ancestors, "{} blobs added, at most {ancestors} trees allowed", s.blobs_added);
    assert_eq!(second.snapshot.parent, first.snapshot_id);
    assert_eq!(
        subtree(&repo, &second.snapshot, &src),
        subtree(&repo, &first.snapshot, &src),
        "same content, same metadata, same tree"
    );

    // Same size, new content and mtime: detected and read.
    let f = src.join("d3/f1");
    let mut data = std::fs::read(&f).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&f, &data).unwrap();
    filetime::set_file_mtime(&f, filetime::FileTime::from_unix_time(1_000_000_000, 5)).unwrap();
    std::fs::write(src.join("d0/new"), b"new file").unwrap();
    let third = Backup::new(&repo, [&src]).run().unwrap();
    let s = third.snapshot.summary.clone().unwrap();
    assert_eq!((s.files_new, s.files_changed, s.files_unmodified), (1, 1, 39));
    assert_eq!(third.files_read, 2);

    // --force reads everything.
    let forced =
        Backup::new(&repo, [&src]).options(crate::BackupOptions::default().force(true)).run().unwrap();
    assert_eq!(forced.files_read, 41);

    // A parent whose blobs are no longer indexed is not trusted: with the
    // index files gone, every file is read and stored again.
    for f in repo.backend().list(FileKind::Index).unwrap() {
        repo.backend().delete(FileKind::Index, &f.name).unwrap();
    }
    let bare = Repository::open(Arc::new(LocalBackend::new(tmp.path().join("repo"))), b"pw").unwrap();
    let reread = Backup::new(&bare, [&src]).run().unwrap();
    assert_eq!(reread.files_read, 41);
    assert!(reread.snapshot.summary.unwrap().blobs_added > 80);

    let out = tmp.path().join("out");
    Restore::new(&repo, &third.snapshot, &out).run().unwrap();
    let restored = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored.join("d3/f1")).unwrap(), data);
    assert_eq!(std::fs::read(restored.join("d0/new")).unwrap(), b"new file");
}

#[test]
fn a_file_that_changes_while_read_is_saved_as_read_with_a_warning() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("growing.log"), b"line one\n").unwrap();
    std::fs::write(src.join("steady"), b"steady\n").unwrap();
    let repo = init(Arc::new(LocalBackend::new(tmp.path().join("repo"))));
    let hook: crate::fault::OpenHook = Box::new(|p: &Path| {
        if p.ends_with("growing.log") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(b"line two\n").unwrap();
        }
    });
    let r = Backup::new(&repo, [&src]).on_open(hook).run().unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].path.ends_with("growing.log"));
    assert!(r.warnings[0].message.contains("changed while it was read"));
    // The next backup sees the new size and reads the file again.
    let again = Backup::new(&repo, [&src]).run().unwrap();
    assert!(again.warnings.is_empty());
    assert_eq!(again.files_read, 1);
    let out = tmp.path().join("out");
    Restore::new(&repo, &again.snapshot, &out).run().unwrap();
    let restored = out.join(src.strip_prefix("/").unwrap()).join("growing.log");
    assert_eq!(std::fs::read(restored).unwrap(), b"line one\nline two\n");
}

#[test]
fn streams_dry_runs_and_unchanged_skips() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(Arc::new(LocalBackend::new(tmp.path().join("repo"))));

    // A stream is saved as one file at the snapshot root.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let reader: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(data.clone()));
    let r = Backup::stream(&repo, crate::StreamSource::new("dump.sql", reader)).run().unwrap();
    assert_eq!(r.snapshot.paths, vec!["/dump.sql".to_string()]);
    let out = tmp.path().join("out");
    Restore::new(&repo, &r.snapshot, &out).run().unwrap();
    assert_eq!(std::fs::read(out.join("dump.sql")).unwrap(), data);

    // A command that fails fails the backup: no snapshot.
    let before = repo.list_snapshots().unwrap().len();
    let failing = crate::StreamSource::command("x", "sh", &["-c", "echo partial; exit 7"]).unwrap();
    let err = Backup::stream(&repo, failing).run().unwrap_err();
    assert!(err.to_string().contains("exit status: 7"), "{err}");
    assert_eq!(repo.list_snapshots().unwrap().len(), before);
    let ok = crate::StreamSource::command("y", "sh", &["-c", "echo fine"]).unwrap();
    assert!(Backup::stream(&repo, ok).run().unwrap().snapshot_id.is_some());

    // A dry run computes what would be added and stores nothing.
    let src = make_source(tmp.path());
    let files_before = std::fs::read_dir(tmp.path().join("repo/index")).unwrap().count();
    let dry =
        Backup::new(&repo, [&src]).options(crate::BackupOptions::default().dry_run(true)).run().unwrap();
    assert!(dry.snapshot_id.is_none());
    assert!(dry.snapshot.summary.unwrap().bytes_added_raw >= 20 << 20);
    assert_eq!(repo.list_snapshots().unwrap().len(), before + 1);
    assert_eq!(std::fs::read_dir(tmp.path().join("repo/index")).unwrap().count(), files_before);

    // Skip-if-unchanged writes a snapshot only when something changed.
    let skip = crate::BackupOptions::default().skip_if_unchanged(true);
    assert!(Backup::new(&repo, [&src]).options(skip.clone()).run().unwrap().snapshot_id.is_some());
    // The snapshot includes the temp dir's ancestors, which other processes
    // may change at any moment: a new snapshot is then correct, so retry
    // until one run sees nothing changed.
    let skipped =
        (0..5).any(|_| Backup::new(&repo, [&src]).options(skip.clone()).run().unwrap().snapshot_id.is_none());
    assert!(skipped, "an unchanged tree wrote a snapshot five times in a row");
    std::fs::write(src.join("d1/extra"), b"x").unwrap();
    assert!(Backup::new(&repo, [&src]).options(skip).run().unwrap().snapshot_id.is_some());
}

#[test]
fn a_dry_run_or_cancelled_backup_leaves_nothing_half_stored_for_the_next() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo = init(Arc::new(LocalBackend::new(tmp.path().join("repo"))));
    let dry = crate::BackupOptions::default().dry_run(true);
    let would = Backup::new(&repo, [&src]).options(dry).run().unwrap().snapshot.summary.unwrap();
    // The same Repository value, the same content: everything must really
    // be stored now, and the snapshot must restore.
    let r = Backup::new(&repo, [&src]).run().unwrap();
    assert_eq!(r.snapshot.summary.clone().unwrap().blobs_added, would.blobs_added);
    let out = tmp.path().join("out");
    Restore::new(&repo, &r.snapshot, &out).run().unwrap();
    let restored = out.join(src.strip_prefix("/").unwrap());
    for d in 0..8 {
        for f in 0..5 {
            let rel = format!("d{d}/f{f}");
            assert!(std::fs::read(restored.join(&rel)).unwrap() == std::fs::read(src.join(&rel)).unwrap());
        }
    }
}
