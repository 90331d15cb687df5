//! Packs streamed through staging files: what a backup leaves in the
//! repository, with the local backend and with one that uploads from memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arch_repository::{FileKind, LocalBackend, Repository};

use crate::pipeline_tests::{init, make_source, noise, FailingBackend};
use crate::test_support::SERIAL;
use crate::{Backup, BackupOptions, Restore};

/// Every file under `root` whose name starts with `.tmp-`.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(e.path());
            }
        }
    }
    out
}

/// Backs `src` up, restores it and compares one file; returns the repo.
fn round_trip(repo: &Repository, src: &Path, out: &Path) {
    let done = Backup::new(repo, [src]).run().unwrap();
    assert!(done.snapshot_id.is_some());
    Restore::new(repo, &done.snapshot, out).run().unwrap();
    let rel = src.strip_prefix("/").unwrap();
    for f in ["d0/f0", "d7/f4"] {
        assert_eq!(std::fs::read(out.join(rel).join(f)).unwrap(), std::fs::read(src.join(f)).unwrap());
    }
}

#[test]
fn a_local_backup_moves_every_staged_pack_into_place_and_leaves_no_staging_file() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo_dir = tmp.path().join("repo");
    let repo = init(Arc::new(LocalBackend::new(&repo_dir)));
    round_trip(&repo, &src, &tmp.path().join("out"));
    assert!(repo.backend().list(FileKind::Pack).unwrap().len() > 10);
    assert_eq!(temp_files(&repo_dir), Vec::<PathBuf>::new());
    let opts = arch_repository::CheckOptions::default().read_data(arch_repository::ReadData::All);
    let report = arch_repository::check(&repo, &opts, &arch_repository::NoCheckProgress).unwrap();
    assert!(report.is_ok() && report.unreferenced_packs.is_empty(), "{report:?}");
}

/// The first pack is opened as the pools start, before any blob needs it:
/// a backup that stores nothing new adds no pack and leaves no file behind.
#[test]
fn a_backup_with_nothing_new_adds_no_pack_and_leaves_no_staging_file() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo_dir = tmp.path().join("repo");
    let repo = init(Arc::new(LocalBackend::new(&repo_dir)));
    Backup::new(&repo, [&src]).run().unwrap();
    let packs = repo.backend().list(FileKind::Pack).unwrap().len();
    let again = Backup::new(&repo, [&src]).run().unwrap();
    assert!(again.snapshot_id.is_some());
    assert_eq!(repo.backend().list(FileKind::Pack).unwrap().len(), packs);
    assert_eq!(temp_files(&repo_dir), Vec::<PathBuf>::new());
}

#[test]
fn a_backup_through_a_backend_that_stores_from_memory_round_trips() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo_dir = tmp.path().join("repo");
    // Only the required methods: packs are staged in an unnamed temp file
    // and stored by the default create_from_file (read back, then create).
    let backend = Arc::new(FailingBackend {
        inner: LocalBackend::new(&repo_dir),
        kind: FileKind::Pack,
        ok: usize::MAX,
        calls: AtomicUsize::new(0),
    });
    let repo = init(backend);
    round_trip(&repo, &src, &tmp.path().join("out"));
    assert!(repo.backend().list(FileKind::Pack).unwrap().len() > 10);
    assert_eq!(temp_files(&repo_dir), Vec::<PathBuf>::new());
}

#[test]
fn chunk_data_in_flight_is_bounded_by_the_byte_budget_not_the_input() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // 48 MiB of new data, far more than the budget, in files large enough
    // that the FileSavers stream chunks while one BlobSaver seals them.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for f in 0..6 {
        std::fs::write(src.join(format!("f{f}")), noise(&mut x, 8 << 20)).unwrap();
    }
    let repo = init(Arc::new(LocalBackend::new(tmp.path().join("repo"))));
    let seen = Arc::new(parking_lot::Mutex::new((0, 0)));
    let opts = BackupOptions::default().blob_workers(1).file_workers(2);
    let done = Backup::new(&repo, [&src]).options(opts).report_budget(Arc::clone(&seen)).run().unwrap();
    let (capacity, peak) = *seen.lock();
    let added = done.snapshot.summary.unwrap().bytes_added_raw as usize;
    assert!(added >= 48 << 20, "{added}");
    assert!(capacity * 16 < added, "the budget ({capacity}) is small next to the input ({added})");
    assert!(peak > 0 && peak <= capacity, "peak {peak} of {capacity}");
}

#[test]
fn a_dry_run_writes_no_pack_and_no_staging_file() {
    let _serial = SERIAL.lock();
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo_dir = tmp.path().join("repo");
    let repo = init(Arc::new(LocalBackend::new(&repo_dir)));
    let done = Backup::new(&repo, [&src]).options(BackupOptions::default().dry_run(true)).run().unwrap();
    assert!(done.snapshot_id.is_none());
    let summary = done.snapshot.summary.unwrap();
    assert!(summary.bytes_added_stored > 20 * 512 * 1024, "{summary:?}");
    assert!(repo.backend().list(FileKind::Pack).unwrap().is_empty());
    assert_eq!(temp_files(&repo_dir), Vec::<PathBuf>::new());
}
