//! Several `arch` processes on one repository at once: two backups; a
//! backup with forget and prune. Afterwards every snapshot restores byte
//! for byte and `check --read-data` is clean.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::common::{self, ArchEnv};

fn source(work: &Path, name: &str, seed: u64, files: u64, size: u64) -> PathBuf {
    let src = work.join(name);
    for i in 0..files {
        let p = src.join(format!("d{}/f{i}", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Half the files are shared between sources, so both processes
        // store (and deduplicate) the same blobs at the same time.
        let s = if i % 2 == 0 { 1_000 + i } else { seed + i };
        common::write_random_file(&p, s, size);
    }
    src
}

fn finish(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check --read-data` exits 0 and every snapshot restores to exactly the
/// tree it was made from.
fn assert_everything_restores(env: &ArchEnv, repo_dir: &Path, work: &Path) -> usize {
    env.run(&common::args(&[&"check", &"--repo", &repo_dir, &"--read-data"])).ok("check --read-data");
    let repo = common::open_repo(repo_dir);
    let snaps = repo.list_snapshots().unwrap();
    for (i, (_, snap)) in snaps.iter().enumerate() {
        let out = work.join(format!("out-{i}"));
        arch_archiver::Restore::new(&repo, snap, &out).run().unwrap();
        let src = PathBuf::from(&snap.paths[0]);
        common::assert_trees_equal(&src, &common::restored_path(&out, &src));
    }
    snaps.len()
}

#[test]
fn two_backups_into_one_repository_at_once() {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work);
    let repo_dir = work.join("repo");
    common::init_repo_with(
        &repo_dir,
        arch_archiver::InitOptions::default().chunk_sizes(16 << 10, 32 << 10, 64 << 10).pack_size(256 << 10),
    );
    let a = source(&work, "a", 10, 24, 200 << 10);
    let b = source(&work, "b", 20, 24, 200 << 10);
    for round in 0..2 {
        let ca = env.spawn(&common::args(&[&"backup", &"--repo", &repo_dir, &a]));
        let cb = env.spawn(&common::args(&[&"backup", &"--repo", &repo_dir, &b]));
        finish(ca, "backup a");
        finish(cb, "backup b");
        // Change some files between rounds so the second round stores new data too.
        common::write_random_file(&a.join(format!("new-{round}")), 77 + round, 300 << 10);
        common::write_random_file(&b.join(format!("new-{round}")), 88 + round, 300 << 10);
    }
    // The last changes are not in a snapshot yet: back them up (alone).
    env.run(&common::args(&[&"backup", &"--repo", &repo_dir, &a, &b])).ok("backup a+b");
    // The snapshots of a and b were taken before the last writes; restore
    // them against the final trees only where they still match: the last
    // combined snapshot must match exactly, and the per-source ones must
    // have every file they list.
    let repo = common::open_repo(&repo_dir);
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 5);
    env.run(&common::args(&[&"check", &"--repo", &repo_dir, &"--read-data"])).ok("check --read-data");
    let last = &snaps.last().unwrap().1;
    let out = work.join("out-last");
    arch_archiver::Restore::new(&repo, last, &out).run().unwrap();
    common::assert_trees_equal(&a, &common::restored_path(&out, &a));
    common::assert_trees_equal(&b, &common::restored_path(&out, &b));
    for (i, (_, snap)) in snaps[..4].iter().enumerate() {
        let out = work.join(format!("out-{i}"));
        arch_archiver::Restore::new(&repo, snap, &out).run().unwrap();
        let src = PathBuf::from(&snap.paths[0]);
        for (path, size) in common::files_under(&common::restored_path(&out, &src)) {
            let rel = path.strip_prefix(common::restored_path(&out, &src)).unwrap();
            let orig = std::fs::read(src.join(rel)).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), orig, "snapshot {i}: {}", rel.display());
            assert_eq!(size, orig.len() as u64);
        }
    }
}

#[test]
fn backup_forget_and_prune_at_once() {
    let (_t, work) = common::tempdir();
    let env = ArchEnv::new(&work);
    let repo_dir = work.join("repo");
    let opts =
        arch_archiver::InitOptions::default().chunk_sizes(16 << 10, 32 << 10, 64 << 10).pack_size(256 << 10);
    let repo = common::init_repo_with(&repo_dir, opts);
    // Older snapshots of distinct trees: forget drops some, prune removes
    // their data while a new backup runs.
    let mut olds = Vec::new();
    for i in 0..4 {
        let src = source(&work, &format!("old-{i}"), 100 * (i + 1), 9, 100 << 10);
        arch_archiver::Backup::new(&repo, [&src]).run().unwrap();
        olds.push(src);
    }
    for round in 0..2 {
        // Each round backs up its own tree, so every snapshot's source stays
        // as it was backed up.
        let fresh = source(&work, &format!("fresh-{round}"), 5_000 + 100 * round, 30, 300 << 10);
        // Prune takes an exclusive lease: whoever comes second waits.
        let backup =
            env.spawn(&common::args(&[&"--retry-lock", &"2m", &"backup", &"--repo", &repo_dir, &fresh]));
        let forget = env.spawn(&common::args(&[
            &"--retry-lock",
            &"2m",
            &"forget",
            &"--repo",
            &repo_dir,
            &"--keep-last",
            &"2",
            &"--group-by",
            &"host",
        ]));
        let prune = env.spawn(&common::args(&[
            &"--retry-lock",
            &"2m",
            &"prune",
            &"--repo",
            &repo_dir,
            &"--grace",
            &"0",
            &"--max-unused",
            &"0%",
        ]));
        finish(backup, "backup");
        finish(forget, "forget");
        finish(prune, "prune");
        let n = assert_everything_restores(&env, &repo_dir, &work.join(format!("r{round}")));
        assert!(n >= 2, "round {round}: {n} snapshots");
        let repo = common::open_repo(&repo_dir);
        assert!(
            repo.list_snapshots().unwrap().iter().any(|(_, s)| s.paths[0] == fresh.to_str().unwrap()),
            "round {round}: the concurrent backup's snapshot survived"
        );
    }
    // A final prune, alone, finishes whatever the concurrent ones deferred.
    env.run(&common::args(&[&"prune", &"--repo", &repo_dir, &"--grace", &"0"])).ok("final prune");
    assert_everything_restores(&env, &repo_dir, &work.join("final"));
}

/// Objects deleted while another process lists them (locks released by
/// concurrent commands) are left out of the listing; the listing itself
/// never fails. (Found by `backup_forget_and_prune_at_once`.)
#[test]
fn listing_while_objects_are_deleted_never_fails() {
    use arch_archiver::{Backend, FileKind, LocalBackend};
    let (_t, work) = common::tempdir();
    let b = std::sync::Arc::new(LocalBackend::new(work.join("repo")));
    b.create_layout().unwrap();
    let writer = {
        let b = std::sync::Arc::clone(&b);
        std::thread::spawn(move || {
            for i in 0..3000u32 {
                let name = arch_archiver::Id::hash(&i.to_le_bytes()).to_hex();
                b.create(FileKind::Lock, &name, b"lock").unwrap();
                b.delete(FileKind::Lock, &name).unwrap();
            }
        })
    };
    let mut lists = 0;
    while !writer.is_finished() {
        b.list(FileKind::Lock).expect("list while objects come and go");
        lists += 1;
    }
    writer.join().unwrap();
    assert!(lists > 10, "{lists}");
}
