//! Prune: two-phase deletion, revival, repacking, crash leftovers, refusal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arch_archiver::{
    prune, Backup, FileKind, InitOptions, Lease, PruneOptions, Repository, Restore, Snapshot,
};

use crate::common::{self, ArchEnv};

fn small_packs() -> InitOptions {
    InitOptions::default().chunk_sizes(16 << 10, 32 << 10, 64 << 10).pack_size(64 << 10)
}

/// 30 files of 48 KiB random data in 3 directories.
fn make_tree(root: &Path, seed: u64) -> PathBuf {
    let src = root.join("src");
    for i in 0..30u64 {
        let p = src.join(format!("d{}/f{i}", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        common::write_random_file(&p, seed + i, 48 << 10);
    }
    src
}

fn restores_exactly(repo: &Repository, snap: &Snapshot, src_copy: &Path, work: &Path, name: &str) {
    let out = work.join(name);
    Restore::new(repo, snap, &out).run().unwrap();
    let restored = common::restored_path(&out, &PathBuf::from(&snap.paths[0]));
    common::assert_trees_equal(src_copy, &restored);
}

/// `check --read-data` finds nothing wrong.
fn read_data_clean(repo: &Repository) {
    let opts = arch_archiver::CheckOptions::default().read_data(arch_archiver::ReadData::All);
    let report = arch_archiver::check(repo, &opts, &arch_archiver::NoCheckProgress).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn forget(repo_dir: &Path, id: &arch_archiver::Id) {
    std::fs::remove_file(repo_dir.join("snapshots").join(id.to_hex())).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

#[test]
fn unused_packs_are_marked_first_and_deleted_after_the_grace_period() {
    let (_t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    let repo = common::init_repo_with(&repo_dir, small_packs());
    let src = make_tree(&work, 1);
    let first = Backup::new(&repo, [&src]).run().unwrap();
    // Half the files go away; a second snapshot keeps the rest.
    for i in (0..30).step_by(2) {
        std::fs::remove_file(src.join(format!("d{}/f{i}", i % 3))).unwrap();
    }
    let second = Backup::new(&repo, [&src]).run().unwrap();
    let kept_copy = work.join("kept");
    copy_tree(&src, &kept_copy);
    forget(&repo_dir, &first.snapshot_id.unwrap());

    let before = common::dir_size(&repo_dir.join("data"));
    let dry = prune(&repo, &PruneOptions::default().dry_run(true)).unwrap();
    assert!(dry.packs_marked > 0);
    assert_eq!(common::dir_size(&repo_dir.join("data")), before, "a dry run changes nothing");

    // Phase one: marked, nothing deleted; every snapshot still restores.
    let r1 = prune(&repo, &PruneOptions::default().max_unused(1.0)).unwrap();
    assert!(r1.packs_marked > 0 && r1.packs_deleted == 0, "{r1:?}");
    assert_eq!(common::dir_size(&repo_dir.join("data")), before);
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &second.snapshot, &kept_copy, &work, "out1");

    // Within the grace period a second prune only waits.
    let r2 = prune(&repo, &PruneOptions::default().max_unused(1.0)).unwrap();
    assert_eq!((r2.packs_waiting, r2.packs_deleted), (r1.packs_marked, 0), "{r2:?}");

    // After it (grace 0 here), the marked packs are deleted.
    let repo = common::open_repo(&repo_dir);
    let r3 = prune(&repo, &PruneOptions::default().max_unused(1.0).grace(Duration::ZERO)).unwrap();
    assert_eq!(r3.packs_deleted, r1.packs_marked, "{r3:?}");
    let after = common::dir_size(&repo_dir.join("data"));
    assert_eq!(after, before - r1.bytes_marked, "exactly the marked packs are freed");
    assert_eq!(r3.bytes_deleted, r1.bytes_marked);
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &second.snapshot, &kept_copy, &work, "out2");
    read_data_clean(&repo);
    // A new backup of the removed data stores it again (nothing stale is trusted).
    let again = Backup::new(&repo, [&kept_copy]).run().unwrap();
    restores_exactly(&repo, &again.snapshot, &kept_copy, &work, "out3");
}

#[test]
fn a_snapshot_written_during_the_grace_period_revives_marked_packs() {
    let (_t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    let repo = common::init_repo_with(&repo_dir, small_packs());
    let src = make_tree(&work, 100);
    let snap = Backup::new(&repo, [&src]).run().unwrap();
    let id = snap.snapshot_id.unwrap();
    // A backup that "started before the prune" is simulated by taking its
    // snapshot away during the prune and putting it back afterwards.
    let saved = std::fs::read(repo_dir.join("snapshots").join(id.to_hex())).unwrap();
    forget(&repo_dir, &id);
    let r1 = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(r1.packs_marked > 0);
    std::fs::write(repo_dir.join("snapshots").join(id.to_hex()), saved).unwrap();
    // Marked packs are still readable in the meantime.
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &snap.snapshot, &src, &work, "during");
    let r2 = prune(&repo, &PruneOptions::default().grace(Duration::ZERO)).unwrap();
    assert_eq!((r2.packs_deleted, r2.packs_revived), (0, r1.packs_marked), "{r2:?}");
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &snap.snapshot, &src, &work, "after");
}

#[test]
fn partly_used_packs_are_repacked_and_everything_still_restores() {
    let (_t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    // Big packs, so every pack mixes files of both snapshots.
    let repo = common::init_repo_with(&repo_dir, small_packs().pack_size(1 << 20));
    let src = make_tree(&work, 200);
    let first = Backup::new(&repo, [&src]).run().unwrap();
    for i in (0..30).step_by(3) {
        std::fs::remove_file(src.join(format!("d{}/f{i}", i % 3))).unwrap();
    }
    let second = Backup::new(&repo, [&src]).run().unwrap();
    forget(&repo_dir, &first.snapshot_id.unwrap());
    let before = common::dir_size(&repo_dir.join("data"));
    let r = prune(&repo, &PruneOptions::default().max_unused(0.0).grace(Duration::ZERO)).unwrap();
    assert!(r.packs_repacked > 0 && r.packs_written > 0, "{r:?}");
    let after = common::dir_size(&repo_dir.join("data"));
    assert!(after < before, "{before} -> {after}");
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &second.snapshot, &src, &work, "out");
    read_data_clean(&repo);
    // A second prune finds nothing left to do.
    let again = prune(&repo, &PruneOptions::default().max_unused(0.0).grace(Duration::ZERO)).unwrap();
    assert_eq!(
        (again.packs_repacked, again.packs_deleted, again.index_files_written),
        (0, 0, 0),
        "{again:?}"
    );
}

#[test]
fn an_interrupted_prune_leaves_a_readable_repository() {
    let (_t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    let repo = common::init_repo_with(&repo_dir, small_packs());
    let src = make_tree(&work, 300);
    let snap = Backup::new(&repo, [&src]).run().unwrap();
    let old_index: Vec<(PathBuf, Vec<u8>)> = common::files_under(&repo_dir.join("index"))
        .into_iter()
        .map(|(p, _)| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let src2 = work.join("other");
    std::fs::create_dir_all(&src2).unwrap();
    common::write_random_file(&src2.join("x"), 9, 200 << 10);
    let other = Backup::new(&repo, [&src2]).run().unwrap();
    forget(&repo_dir, &other.snapshot_id.unwrap());
    prune(&repo, &PruneOptions::default()).unwrap();
    // Crash between "new index written" and "old index deleted": the old
    // files are back beside the new one that supersedes them.
    for (p, bytes) in &old_index {
        std::fs::write(p, bytes).unwrap();
    }
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &snap.snapshot, &src, &work, "out");
    // Crash after a new pack but before its index: the pack is unindexed
    // and the next prune still finds what it holds.
    for (p, _) in common::files_under(&repo_dir.join("index")) {
        std::fs::remove_file(p).unwrap();
    }
    let repo = common::open_repo(&repo_dir);
    let r = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(r.packs_unindexed > 0 && r.index_files_written > 0, "{r:?}");
    let repo = common::open_repo(&repo_dir);
    restores_exactly(&repo, &snap.snapshot, &src, &work, "rebuilt");
}

#[test]
fn prune_refuses_when_a_needed_pack_is_missing_and_changes_nothing() {
    let (_t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    let repo = common::init_repo_with(&repo_dir, small_packs());
    let src = make_tree(&work, 400);
    Backup::new(&repo, [&src]).run().unwrap();
    let packs = common::pack_files(&repo_dir);
    std::fs::remove_file(packs.values().next().unwrap()).unwrap();
    let index_before = common::files_under(&repo_dir.join("index"));
    let err = prune(&repo, &PruneOptions::default().grace(Duration::ZERO)).unwrap_err();
    assert!(err.to_string().contains("prune refuses"), "{err}");
    assert_eq!(common::files_under(&repo_dir.join("index")), index_before);
    assert_eq!(common::pack_files(&repo_dir).len(), packs.len() - 1);
}

#[test]
fn prune_waits_for_running_backups_via_the_cli() {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work).var("ARCH_PASSWORD", common::PASSWORD);
    let repo_dir = work.join("repo");
    env.run(&common::args(&[&"init", &"--repo", &repo_dir])).ok("init");
    let repo = Arc::new(
        Repository::open(Arc::new(arch_archiver::LocalBackend::new(&repo_dir)), common::PASSWORD.as_bytes())
            .unwrap(),
    );
    // A backup in progress holds a shared lease.
    let lease = Lease::acquire(&repo, false, Duration::ZERO).unwrap();
    let r = env.run(&common::args(&[&"prune", &"--repo", &repo_dir]));
    r.expect_code(11, "prune during a backup");
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    drop(lease);
    env.run(&common::args(&[&"prune", &"--repo", &repo_dir, &"--grace", &"0"])).ok("prune after the backup");
    assert_eq!(repo.backend().list(FileKind::Lock).unwrap().len(), 0, "prune released its lease");
}

fn kill(child: &mut std::process::Child, sig: i32) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Initialises `repo_dir`, starts a backup of 240 MiB of new data into it
/// and SIGKILLs it once `when` holds (or after 20 s); returns the source.
fn kill_a_backup_when(env: &ArchEnv, work: &Path, repo_dir: &Path, when: impl Fn() -> bool) -> PathBuf {
    common::init_repo(repo_dir);
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        common::write_random_file(&src.join(format!("f{i}")), i, 40 << 20);
    }
    let mut child = env.spawn(&common::args(&[&"backup", &"--repo", &repo_dir, &src]));
    let start = std::time::Instant::now();
    while !when() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(2));
    }
    kill(&mut child, libc::SIGKILL);
    child.wait().unwrap();
    src
}

#[test]
fn a_backup_killed_with_sigkill_does_not_block_the_next_one() {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work).var("ARCH_PASSWORD", common::PASSWORD);
    let repo_dir = work.join("repo");
    let src = kill_a_backup_when(&env, &work, &repo_dir, || common::object_count(&repo_dir, "locks") > 0);
    assert_eq!(common::object_count(&repo_dir, "locks"), 1, "the killed backup left its lease");
    // The holder is gone (its pid is dead on this host): no unlock needed.
    env.run(&common::args(&[&"backup", &"--repo", &repo_dir, &src])).ok("backup after a crash");
    assert_eq!(common::object_count(&repo_dir, "locks"), 0);
}

#[test]
fn a_staging_file_left_by_a_killed_backup_is_ignored_and_pruned_once_stale() {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work).var("ARCH_PASSWORD", common::PASSWORD);
    let repo_dir = work.join("repo");
    let src =
        kill_a_backup_when(&env, &work, &repo_dir, || !common::temp_files(&repo_dir.join("data")).is_empty());
    let mut left = common::temp_files(&repo_dir);
    if left.is_empty() {
        // The kill landed between two packs: leave what it would have.
        let p = repo_dir.join("data/.tmp-staging-0123456789abcdef");
        std::fs::write(&p, common::random_bytes(7, 1 << 20)).unwrap();
        left.push(p);
    }
    let listed = common::open_repo(&repo_dir).backend().list(FileKind::Pack).unwrap();
    assert_eq!(listed.len(), common::pack_files(&repo_dir).len(), "only packs are listed");
    env.run(&common::args(&[&"check", &"--repo", &repo_dir])).ok("check ignores the staging file");
    env.run(&common::args(&[&"backup", &"--repo", &repo_dir, &src])).ok("backup after the crash");
    // Fresh: prune cannot tell it from a running writer's, so it stays.
    env.run(&common::args(&[&"prune", &"--repo", &repo_dir])).ok("prune");
    assert!(left.iter().all(|p| p.exists()), "a fresh temporary file was removed");
    let old = filetime::FileTime::from_unix_time(unix_now() - 2 * 3600, 0);
    for p in &left {
        filetime::set_file_mtime(p, old).unwrap();
    }
    env.run(&common::args(&[&"prune", &"--repo", &repo_dir])).ok("prune");
    assert_eq!(common::temp_files(&repo_dir), Vec::<PathBuf>::new());
    env.run(&common::args(&[&"check", &"--repo", &repo_dir, &"--read-data"])).ok("check after prune");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn prune_waits_for_a_running_backup_and_both_finish() {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work).var("ARCH_PASSWORD", common::PASSWORD);
    let repo_dir = work.join("repo");
    let repo = common::init_repo(&repo_dir);
    let old = work.join("old");
    std::fs::create_dir_all(&old).unwrap();
    common::write_random_file(&old.join("x"), 1, 1 << 20);
    let gone = Backup::new(&repo, [&old]).run().unwrap();
    forget(&repo_dir, &gone.snapshot_id.unwrap());
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        common::write_random_file(&src.join(format!("f{i}")), 10 + i, 30 << 20);
    }
    let backup = env.spawn(&common::args(&[&"backup", &"--repo", &repo_dir, &src]));
    let start = std::time::Instant::now();
    while common::object_count(&repo_dir, "locks") == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let prune =
        env.run(&common::args(&[&"prune", &"--repo", &repo_dir, &"--retry-lock", &"2m", &"--grace", &"0"]));
    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success(), "backup: {}", String::from_utf8_lossy(&out.stderr));
    prune.ok("prune after waiting for the backup");
    let repo = common::open_repo(&repo_dir);
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    restores_exactly(&repo, &snaps[0].1, &src, &work, "out");
}

/// Kills `arch prune` at seeded random moments, `kills` times, and checks
/// after each kill that every kept snapshot still restores byte for byte.
fn prune_survives_sigkill(kills: u32) {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work).var("ARCH_PASSWORD", common::PASSWORD);
    let repo_dir = work.join("repo");
    let repo = common::init_repo_with(&repo_dir, small_packs());
    let mut kept = Vec::new();
    for round in 0..4u64 {
        let src = work.join(format!("src{round}"));
        let tree = make_tree(&work.join(format!("t{round}")), round * 1000);
        std::fs::rename(&tree, &src).unwrap();
        let r = Backup::new(&repo, [&src]).run().unwrap();
        if round % 2 == 0 {
            forget(&repo_dir, &r.snapshot_id.unwrap());
        } else {
            kept.push((r.snapshot, src));
        }
    }
    let mut rng = common::XorShift::new(0x5eed);
    for k in 0..kills {
        let mut child = env.spawn(&common::args(&[
            &"prune",
            &"--repo",
            &repo_dir,
            &"--grace",
            &"0",
            &"--max-unused",
            &"0%",
        ]));
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 150_000));
        kill(&mut child, libc::SIGKILL);
        child.wait().unwrap();
        let repo = common::open_repo(&repo_dir);
        let report =
            arch_archiver::check(&repo, &Default::default(), &arch_archiver::NoCheckProgress).unwrap();
        assert!(report.is_ok(), "after kill {k}: {:?}", report.problems);
        for (i, (snap, src)) in kept.iter().enumerate() {
            restores_exactly(&repo, snap, src, &work, &format!("out-{k}-{i}"));
            std::fs::remove_dir_all(work.join(format!("out-{k}-{i}"))).unwrap();
        }
        // Between kills, sometimes forget more data so prune has work again.
        if k % 3 == 2 {
            let extra = work.join(format!("extra{k}"));
            std::fs::create_dir_all(&extra).unwrap();
            common::write_random_file(&extra.join("x"), 50 + u64::from(k), 200 << 10);
            let r = Backup::new(&repo, [&extra]).run().unwrap();
            forget(&repo_dir, &r.snapshot_id.unwrap());
        }
    }
    // A prune that is left to finish leaves a repository that a fresh
    // process reads completely.
    env.run(&common::args(&[&"prune", &"--repo", &repo_dir, &"--grace", &"0"])).ok("final prune");
    let repo = common::open_repo(&repo_dir);
    for (i, (snap, src)) in kept.iter().enumerate() {
        restores_exactly(&repo, snap, src, &work, &format!("final-{i}"));
    }
    read_data_clean(&repo);
}

#[test]
fn prune_killed_at_random_moments_loses_nothing() {
    prune_survives_sigkill(6);
}

/// The long version (run by bench/run.sh or by hand with --ignored).
#[test]
#[ignore = "soak test: 40 kills, about a minute"]
fn prune_killed_at_random_moments_loses_nothing_soak() {
    prune_survives_sigkill(40);
}
