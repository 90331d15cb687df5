//! Copying snapshots between repositories with different keys.

use arch_archiver::{copy_snapshots, Backup, CancellationToken, Cipher, InitOptions, Restore};

use crate::common::{self, ArchEnv};

#[test]
fn copy_transfers_only_missing_blobs_and_restores_identically() {
    let (_t, work) = common::tempdir();
    let src_repo = common::init_repo(&work.join("a"));
    let tree = work.join("tree");
    common::build_fixture(&tree);
    let extra = work.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    common::write_random_file(&extra.join("big"), 7, 3 << 20);
    let s1 = Backup::new(&src_repo, [&tree]).run().unwrap();
    let s2 = Backup::new(&src_repo, [&extra]).run().unwrap();

    // Same chunker parameters: blobs deduplicate across the two
    // repositories. The other cipher (and so the other format version):
    // copies are opened with one and sealed with the other.
    let other = match src_repo.key().cipher() {
        Cipher::Xaes256Gcm => Cipher::XChaCha20Poly1305,
        Cipher::XChaCha20Poly1305 => Cipher::Xaes256Gcm,
    };
    let dst = common::init_repo_with(
        &work.join("b"),
        InitOptions::default().chunker(src_repo.config().chunker.clone()).cipher(other),
    );
    let all = src_repo.list_snapshots().unwrap();
    let r = copy_snapshots(&src_repo, &dst, &all[..1], &CancellationToken::new()).unwrap();
    assert!(!r.chunker_differs);
    assert_eq!(r.copied.len(), 1);
    let first_bytes = r.bytes_copied;
    // Copying everything again transfers only the second snapshot's data.
    let r2 = copy_snapshots(&src_repo, &dst, &all, &CancellationToken::new()).unwrap();
    assert_eq!((r2.copied.len(), r2.skipped.len()), (1, 1));
    assert!(r2.bytes_copied >= 3 << 20 && r2.bytes_copied < (3 << 20) + first_bytes, "{r2:?}");
    let r3 = copy_snapshots(&src_repo, &dst, &all, &CancellationToken::new()).unwrap();
    assert_eq!((r3.copied.len(), r3.blobs_copied), (0, 0), "nothing left to copy");

    // The copies restore byte for byte from the target, with its own key.
    let dst = common::open_repo(&work.join("b"));
    assert_eq!(dst.key().cipher(), other);
    for (orig, snap) in dst.list_snapshots().unwrap() {
        let source_id = snap.original.expect("a copy records its source");
        assert!(source_id == s1.snapshot_id.unwrap() || source_id == s2.snapshot_id.unwrap());
        let out = work.join(format!("out-{}", orig.short()));
        Restore::new(&dst, &snap, &out).run().unwrap();
        let src_path = std::path::PathBuf::from(&snap.paths[0]);
        common::assert_trees_equal(&src_path, &common::restored_path(&out, &src_path));
    }
    // No plaintext or key reuse: the target's packs do not open with the source key.
    assert_ne!(src_repo.config().id, dst.config().id);
}

#[test]
fn copy_via_the_cli_says_when_chunker_parameters_differ() {
    let (_t, work) = common::tempdir();
    let env =
        ArchEnv::new(&work).var("ARCH_PASSWORD", common::PASSWORD).var("ARCH_FROM_PASSWORD", "other-pass");
    let (a, b) = (work.join("a"), work.join("b"));
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    common::write_random_file(&src.join("f"), 3, 100_000);
    let env_a = ArchEnv::new(&work).var("ARCH_PASSWORD", "other-pass");
    env_a.run(&common::args(&[&"init", &"--repo", &a])).ok("init a");
    env_a.run(&common::args(&[&"backup", &"--repo", &a, &src])).ok("backup a");
    env.run(&common::args(&[&"init", &"--repo", &b])).ok("init b");
    let r = env.run(&common::args(&[&"copy", &"--repo", &b, &"--from-repo", &a]));
    r.ok("copy");
    assert!(r.stderr.contains("different chunker parameters"), "{}", r.stderr);
    let c = work.join("c");
    env.run(&common::args(&[&"init", &"--repo", &c, &"--from-repo", &a, &"--copy-chunker-params"]))
        .ok("init c");
    let r = env.run(&common::args(&[&"copy", &"--repo", &c, &"--from-repo", &a]));
    r.ok("copy to c");
    assert!(!r.stderr.contains("different chunker"), "{}", r.stderr);
    let out = work.join("out");
    env.run(&common::args(&[&"restore", &"latest", &"--repo", &c, &"--target", &out])).ok("restore");
    assert_eq!(
        std::fs::read(common::restored_path(&out, &src).join("f")).unwrap(),
        std::fs::read(src.join("f")).unwrap()
    );
}
