//! Real operations (backup, restore, check, prune, forget, copy) facing
//! every fault kind of `FaultBackend`: each ends with an error naming the
//! object, within a time bound, without a panic; afterwards the unfaulted
//! repository passes `check --read-data`, every earlier snapshot restores
//! byte for byte, and the same operation without faults succeeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arch_archiver::{
    check, copy_snapshots, prune, remove_snapshot, Backend, BackendError, Backup, CancellationToken,
    CheckOptions, FaultBackend, FaultEffect, FaultOp, FaultPlan, FaultRule, FileKind, InitOptions,
    LocalBackend, NoCheckProgress, PruneOptions, ReadData, Repository, Restore, Snapshot,
};

use crate::common;

/// The longest any faulted operation may take: a hang fails the test.
const BOUND: Duration = Duration::from_secs(60);

fn small_packs() -> InitOptions {
    InitOptions::default().chunk_sizes(16 << 10, 32 << 10, 64 << 10).pack_size(64 << 10)
}

struct Fixture {
    _t: tempfile::TempDir,
    work: PathBuf,
    repo_dir: PathBuf,
    src: PathBuf,
    /// A snapshot made before any fault, with a copy of what it holds.
    before: Snapshot,
    before_copy: PathBuf,
}

fn write_tree(dir: &Path, seed: u64, files: u64) {
    for i in 0..files {
        let p = dir.join(format!("d{}/f{i}", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        common::write_random_file(&p, seed + i, 40 << 10);
    }
}

fn fixture() -> Fixture {
    let (t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    let repo = common::init_repo_with(&repo_dir, small_packs());
    let src = work.join("src");
    write_tree(&src, 1, 12);
    let before = Backup::new(&repo, [&src]).run().unwrap().snapshot;
    let before_copy = work.join("before");
    let st = std::process::Command::new("cp").arg("-a").arg(&src).arg(&before_copy).status().unwrap();
    assert!(st.success());
    // New content for the faulted backup to store.
    write_tree(&src.join("new"), 100, 9);
    Fixture { _t: t, work, repo_dir, src, before, before_copy }
}

/// Runs `f` on its own thread: a panic or a run longer than [`BOUND`]
/// fails the test.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(v) => {
            h.join().unwrap();
            v
        }
        // The sender was dropped without sending: the closure panicked.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let _ = h.join();
            panic!("{what} panicked");
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {BOUND:?}"),
    }
}

fn faulty(repo_dir: &Path, plan: FaultPlan) -> (Arc<FaultBackend>, Arc<dyn Backend>) {
    let fb = Arc::new(FaultBackend::new(Arc::new(LocalBackend::new(repo_dir)), plan));
    let b: Arc<dyn Backend> = fb.clone();
    (fb, b)
}

/// The error text with all its causes.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether the error names an object of `folder` by its full name
/// (`folder/<64 hex>`, or `data/<2 hex>/<64 hex>` for packs).
fn names_object(msg: &str, folder: &str) -> bool {
    let hex64 = |s: &str| s.len() >= 64 && s.bytes().take(64).all(|b| b.is_ascii_hexdigit());
    msg.match_indices(&format!("{folder}/")).any(|(i, m)| {
        let rest = &msg[i + m.len()..];
        hex64(rest) || (rest.len() > 3 && rest.as_bytes()[2] == b'/' && hex64(&rest[3..]))
    })
}

/// Names a pack by (a prefix of) its hex id.
fn names_a_pack(msg: &str, repo_dir: &Path) -> bool {
    common::pack_files(repo_dir).keys().any(|id| msg.contains(&id[..8]))
}

/// The unfaulted repository is clean (structure and every pack's data),
/// and the snapshot made before the faults restores byte for byte.
fn assert_clean(f: &Fixture, tag: &str) {
    let repo = common::open_repo(&f.repo_dir);
    let report = check(&repo, &CheckOptions::default().read_data(ReadData::All), &NoCheckProgress)
        .expect("check runs");
    assert!(report.is_ok(), "{tag}: check after the fault: {:?}", report.problems);
    let out = f.work.join(format!("restore-{tag}"));
    Restore::new(&repo, &f.before, &out).run().unwrap();
    common::assert_trees_equal(&f.before_copy, &common::restored_path(&out, &f.src));
    std::fs::remove_dir_all(&out).unwrap();
}

/// A backup without faults now succeeds and restores what is on disk.
fn assert_backup_retry_succeeds(f: &Fixture, tag: &str) {
    let repo = common::open_repo(&f.repo_dir);
    let snap = Backup::new(&repo, [&f.src]).run().unwrap().snapshot;
    let out = f.work.join(format!("retry-{tag}"));
    Restore::new(&repo, &snap, &out).run().unwrap();
    common::assert_trees_equal(&f.src, &common::restored_path(&out, &f.src));
    std::fs::remove_dir_all(&out).unwrap();
}

/// A backup through `plan` fails; returns the error text.
fn faulted_backup(f: &Fixture, plan: FaultPlan) -> (String, Arc<FaultBackend>) {
    let (fb, b) = faulty(&f.repo_dir, plan);
    let src = f.src.clone();
    let msg = bounded("faulted backup", move || {
        let repo = Repository::open(b, common::PASSWORD.as_bytes()).map_err(|e| chain(&e))?;
        Backup::new(&repo, [&src]).run().map(|_| ()).map_err(|e| chain(&e))
    })
    .expect_err("the backup must fail");
    (msg, fb)
}

#[test]
fn failed_pack_writes_fail_the_backup_naming_the_pack() {
    let f = fixture();
    let (msg, fb) = faulted_backup(&f, FaultPlan::new().fail_writes(Some(FileKind::Pack)));
    assert!(fb.injected() > 0);
    assert!(names_object(&msg, "data"), "{msg}");
    assert!(msg.contains("injected"), "{msg}");
    assert_eq!(common::object_count(&f.repo_dir, "snapshots"), 1, "no snapshot of a failed backup");
    assert_clean(&f, "pack-writes");
    assert_backup_retry_succeeds(&f, "pack-writes");
}

#[test]
fn failed_index_and_snapshot_writes_fail_the_backup_naming_the_object() {
    let f = fixture();
    for (kind, folder) in [(FileKind::Index, "index"), (FileKind::Snapshot, "snapshots")] {
        let (msg, _) = faulted_backup(&f, FaultPlan::new().fail_writes(Some(kind)));
        assert!(names_object(&msg, folder), "{kind}: {msg}");
        assert_eq!(common::object_count(&f.repo_dir, "snapshots"), 1, "{kind}: no new snapshot");
        assert_clean(&f, folder);
    }
    assert_backup_retry_succeeds(&f, "index-snapshot");
}

#[test]
fn a_backend_failing_after_n_calls_never_leaves_a_damaged_repository() {
    let f = fixture();
    // Count the calls a whole backup makes (a zero delay counts each call),
    // then fail backups at points spread over that count.
    let (fb, b) = faulty(&f.repo_dir, FaultPlan::new().delay(Duration::ZERO));
    let probe = f.work.join("probe");
    write_tree(&probe, 500, 9);
    let repo = Repository::open(b, common::PASSWORD.as_bytes()).unwrap();
    Backup::new(&repo, [&probe]).run().unwrap();
    let calls = fb.injected();
    assert!(calls > 10, "a backup makes many backend calls ({calls})");
    // The probe's backup wrote everything new; the faulted backups below
    // store less, so only points well inside the count are sure to fail.
    for n in [1, 3, calls / 4, calls / 2, calls * 2 / 3] {
        let (msg, _) = faulted_backup(&f, FaultPlan::new().fail_after(n));
        assert!(msg.contains("injected permanent fault"), "after {n} calls: {msg}");
        let folders = ["data", "index", "snapshots", "keys", "locks"];
        assert!(
            folders.iter().any(
                |d| names_object(&msg, d) || msg.contains(&format!("list {}/{d}/", f.repo_dir.display()))
            ) || msg.contains(&format!("{}/config", f.repo_dir.display())),
            "after {n} calls the error names no object: {msg}"
        );
        assert_clean(&f, &format!("after-{n}"));
    }
    assert_backup_retry_succeeds(&f, "fail-after");
}

#[test]
fn failed_short_and_flipped_pack_reads_fail_restore_naming_the_pack() {
    let f = fixture();
    for (tag, plan) in [
        ("fail", FaultPlan::new().fail_reads(Some(FileKind::Pack))),
        ("short", FaultPlan::new().short_reads(Some(FileKind::Pack))),
        ("flip", FaultPlan::new().flip_bits(Some(FileKind::Pack)).seed(9)),
    ] {
        let (fb, b) = faulty(&f.repo_dir, plan);
        let (snap, out) = (f.before.clone(), f.work.join(format!("out-{tag}")));
        let msg = bounded("faulted restore", move || {
            let repo = Repository::open(b, common::PASSWORD.as_bytes()).unwrap();
            Restore::new(&repo, &snap, &out).run().map(|_| ()).map_err(|e| chain(&e))
        })
        .expect_err("restore from a lying backend must fail");
        assert!(fb.injected() > 0, "{tag}");
        assert!(names_a_pack(&msg, &f.repo_dir), "{tag}: {msg}");
        if tag != "fail" {
            assert!(msg.contains("damaged") || msg.contains("short read"), "{tag}: {msg}");
        }
        assert_clean(&f, tag);
    }
}

/// A cancel stops every stage of a restore (the walk, the readers, the
/// writers, the finisher) within a moment, even while reads are slow.
#[test]
fn a_cancelled_restore_stops_promptly_and_says_so() {
    let f = fixture();
    let (_fb, b) = faulty(&f.repo_dir, FaultPlan::new().delay(Duration::from_millis(30)));
    let (snap, out) = (f.before.clone(), f.work.join("out-cancel"));
    let token = CancellationToken::new();
    let cancel = token.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        cancel.cancel();
        std::time::Instant::now()
    });
    let (result, ended) = bounded("cancelled restore", move || {
        let repo = Repository::open(b, common::PASSWORD.as_bytes()).unwrap();
        let r = Restore::new(&repo, &snap, &out).cancel_token(token).run().map(|_| ());
        (r, std::time::Instant::now())
    });
    let cancelled = timer.join().unwrap();
    let err = result.expect_err("a restore cancelled half way must not report success");
    assert!(err.is_cancelled(), "{err}");
    let took = ended.saturating_duration_since(cancelled);
    assert!(took < Duration::from_secs(2), "restore ended {took:?} after the cancel");
    assert_clean(&f, "cancel");
}

#[test]
fn check_read_data_reports_every_pack_a_lying_backend_damages() {
    let f = fixture();
    for (tag, plan) in [
        ("fail", FaultPlan::new().fail_reads(Some(FileKind::Pack))),
        ("short", FaultPlan::new().short_reads(Some(FileKind::Pack))),
        ("flip", FaultPlan::new().flip_bits(Some(FileKind::Pack)).seed(4)),
    ] {
        let (_fb, b) = faulty(&f.repo_dir, plan);
        let report = bounded("faulted check", move || {
            let repo = Repository::open(b, common::PASSWORD.as_bytes()).unwrap();
            check(&repo, &CheckOptions::default().read_data(ReadData::All), &NoCheckProgress)
                .map_err(|e| chain(&e))
        });
        match report {
            Ok(r) => {
                assert!(!r.is_ok(), "{tag}: check --read-data found nothing");
                let text = format!("{:?}", r.problems);
                for id in common::pack_files(&f.repo_dir).keys() {
                    assert!(
                        text.contains(&id[..8]) || text.contains(id.as_str()),
                        "{tag}: pack {id} not named"
                    );
                }
            }
            Err(msg) => assert!(names_a_pack(&msg, &f.repo_dir), "{tag}: {msg}"),
        }
        assert_clean(&f, &format!("check-{tag}"));
    }
}

#[test]
fn flipped_metadata_reads_are_detected_and_name_the_object() {
    let f = fixture();
    // A flipped snapshot: listing snapshots names it.
    let (_fb, b) = faulty(&f.repo_dir, FaultPlan::new().flip_bits(Some(FileKind::Snapshot)).seed(1));
    let msg = bounded("list snapshots", move || {
        let repo = Repository::open(b, common::PASSWORD.as_bytes()).map_err(|e| chain(&e))?;
        repo.list_snapshots().map(|_| ()).map_err(|e| chain(&e))
    })
    .expect_err("a flipped snapshot must be refused");
    let snap_name = std::fs::read_dir(f.repo_dir.join("snapshots")).unwrap().next().unwrap().unwrap();
    let snap_name = snap_name.file_name().into_string().unwrap();
    assert!(msg.contains(&snap_name[..8]), "{msg}");
    // A flipped index or config: opening names it.
    for (kind, name) in [(FileKind::Index, "index"), (FileKind::Config, "config")] {
        let (_fb, b) = faulty(&f.repo_dir, FaultPlan::new().flip_bits(Some(kind)).seed(2));
        let msg = bounded("open", move || {
            Repository::open(b, common::PASSWORD.as_bytes()).map(|_| ()).map_err(|e| chain(&e))
        })
        .expect_err("a flipped object must be refused");
        assert!(msg.contains(name) && msg.contains("damaged"), "{kind}: {msg}");
    }
    assert_clean(&f, "metadata");
}

#[test]
fn failed_lists_fail_forget_prune_and_check_naming_the_folder() {
    let f = fixture();
    // forget: listing snapshots fails.
    let (_fb, b) = faulty(&f.repo_dir, FaultPlan::new().fail_list(Some(FileKind::Snapshot)));
    let msg = bounded("forget", move || {
        let repo = Repository::open(b, common::PASSWORD.as_bytes()).map_err(|e| chain(&e))?;
        let snaps = repo.list_snapshots().map_err(|e| chain(&e))?;
        remove_snapshot(&repo, &snaps[0].0).map_err(|e| chain(&e))
    })
    .expect_err("forget cannot select snapshots it cannot list");
    assert!(msg.contains("snapshots") && msg.contains("injected"), "{msg}");
    // prune and check: listing packs fails.
    for op in ["prune", "check"] {
        let (_fb, b) = faulty(&f.repo_dir, FaultPlan::new().fail_list(Some(FileKind::Pack)));
        let msg = bounded(op, move || {
            let repo = Repository::open(b, common::PASSWORD.as_bytes()).map_err(|e| chain(&e))?;
            if op == "prune" {
                prune(&repo, &PruneOptions::default().grace(Duration::ZERO))
                    .map(|_| ())
                    .map_err(|e| chain(&e))
            } else {
                check(&repo, &CheckOptions::default(), &NoCheckProgress).map(|_| ()).map_err(|e| chain(&e))
            }
        })
        .expect_err("a failed list must fail the operation");
        assert!(msg.contains("data") && msg.contains("injected"), "{op}: {msg}");
    }
    assert_clean(&f, "lists");
}

#[test]
fn prune_failing_part_way_leaves_a_clean_repository_and_a_retry_finishes() {
    let f = fixture();
    // Something to prune: a second snapshot, forgotten.
    let repo = common::open_repo(&f.repo_dir);
    let gone = Backup::new(&repo, [&f.src]).run().unwrap().snapshot_id.unwrap();
    remove_snapshot(&repo, &gone).unwrap();
    drop(repo);
    let opts = || PruneOptions::default().grace(Duration::ZERO).max_unused(0.0);
    for plan in [
        FaultPlan::new().fail_writes(Some(FileKind::Index)),
        FaultPlan::new().fail_writes(Some(FileKind::Pack)),
        FaultPlan::new().rule(FaultRule::new(FaultOp::Delete, FaultEffect::Fail).skip(1)),
        FaultPlan::new().fail_reads(Some(FileKind::Pack)),
    ] {
        let (_fb, b) = faulty(&f.repo_dir, plan.clone());
        let res = bounded("faulted prune", move || {
            let repo = Repository::open(b, common::PASSWORD.as_bytes()).map_err(|e| chain(&e))?;
            prune(&repo, &opts()).map(|_| ()).map_err(|e| chain(&e))
        });
        if let Err(msg) = res {
            assert!(
                names_object(&msg, "data") || names_object(&msg, "index") || names_a_pack(&msg, &f.repo_dir),
                "{plan:?}: {msg}"
            );
        }
        assert_clean(&f, "prune");
    }
    let repo = common::open_repo(&f.repo_dir);
    prune(&repo, &opts()).unwrap();
    let repo = common::open_repo(&f.repo_dir);
    let report = check(&repo, &CheckOptions::default().read_data(ReadData::All), &NoCheckProgress).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(prune(&repo, &opts()).unwrap().packs_deleted == 0, "the retry finished the work");
}

#[test]
fn copy_into_a_failing_destination_names_the_object_and_a_retry_completes() {
    let f = fixture();
    let dst_dir = f.work.join("dst");
    common::init_repo_with(&dst_dir, small_packs());
    for plan in [
        FaultPlan::new().fail_writes(Some(FileKind::Pack)),
        FaultPlan::new().fail_writes(Some(FileKind::Snapshot)),
        FaultPlan::new().fail_after(6),
    ] {
        let (_fb, b) = faulty(&dst_dir, plan.clone());
        let src_dir = f.repo_dir.clone();
        let msg = bounded("faulted copy", move || {
            let src = common::open_repo(&src_dir);
            let dst = Repository::open(b, common::PASSWORD.as_bytes()).map_err(|e| chain(&e))?;
            let all = src.list_snapshots().unwrap();
            copy_snapshots(&src, &dst, &all, &CancellationToken::new()).map(|_| ()).map_err(|e| chain(&e))
        })
        .expect_err("copy into a failing destination must fail");
        assert!(msg.contains("injected") && msg.contains(dst_dir.to_str().unwrap()), "{plan:?}: {msg}");
        let dst = common::open_repo(&dst_dir);
        let report =
            check(&dst, &CheckOptions::default().read_data(ReadData::All), &NoCheckProgress).unwrap();
        assert!(report.is_ok(), "{plan:?}: {:?}", report.problems);
        assert!(dst.list_snapshots().unwrap().is_empty(), "{plan:?}: no snapshot without its data");
    }
    let src = common::open_repo(&f.repo_dir);
    let dst = common::open_repo(&dst_dir);
    let all = src.list_snapshots().unwrap();
    assert_eq!(copy_snapshots(&src, &dst, &all, &CancellationToken::new()).unwrap().copied.len(), 1);
    let dst = common::open_repo(&dst_dir);
    let (_, snap) = &dst.list_snapshots().unwrap()[0];
    let out = f.work.join("copied");
    Restore::new(&dst, snap, &out).run().unwrap();
    common::assert_trees_equal(&f.before_copy, &common::restored_path(&out, &f.src));
}

#[test]
fn delays_slow_operations_down_but_they_succeed() {
    let f = fixture();
    let (fb, b) = faulty(&f.repo_dir, FaultPlan::new().delay(Duration::from_millis(3)));
    let src = f.src.clone();
    let snap = bounded("delayed backup", move || {
        let repo = Repository::open(b, common::PASSWORD.as_bytes()).unwrap();
        Backup::new(&repo, [&src]).run().unwrap().snapshot
    });
    assert!(fb.injected() > 5);
    let out = f.work.join("delayed");
    Restore::new(&common::open_repo(&f.repo_dir), &snap, &out).run().unwrap();
    common::assert_trees_equal(&f.src, &common::restored_path(&out, &f.src));
    assert_clean(&f, "delay");
}

#[test]
fn transient_faults_reach_the_caller_marked_transient() {
    let f = fixture();
    let rule = FaultRule::new(FaultOp::Create, FaultEffect::Fail).kind(FileKind::Pack).times(1).transient();
    let (_fb, b) = faulty(&f.repo_dir, FaultPlan::new().rule(rule));
    let repo = Repository::open(b.clone(), common::PASSWORD.as_bytes()).unwrap();
    let err = Backup::new(&repo, [&f.src]).run().unwrap_err();
    // The transient I/O error survives in the source chain (error enums
    // that wrap a BackendError transparently expose its source), so a
    // caller can tell it from a permanent one.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut found = false;
    while let Some(e) = cur {
        if let Some(be) = e.downcast_ref::<BackendError>() {
            found |= be.is_transient();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            found |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        cur = e.source();
    }
    assert!(found, "no transient backend error in {}", chain(&err));
    // The fault fired once: the same repository object now backs up fine.
    Backup::new(&repo, [&f.src]).run().unwrap();
    assert_clean(&f, "transient");
}
