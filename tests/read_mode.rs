//! `ReadMode::Mmap` (`backup --read-mode mmap`) produces the same chunks as
//! reading (files smaller and larger than a read block), and restores.

use arch_archiver::{Backup, BackupOptions, ReadMode, Restore};

use crate::common::*;

#[test]
fn mmap_and_read_give_the_same_snapshot_content() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    build_fixture(&src);
    // Larger than a read block (one maximal chunk + 1 MiB).
    write_random_file(&src.join("large.bin"), 42, 21 << 20);
    let repo = init_repo(&base.join("repo"));
    let read = Backup::new(&repo, [&src]).run().expect("backup with read").snapshot;
    let opts = BackupOptions::default().force(true).read_mode(ReadMode::Mmap);
    let mapped = Backup::new(&repo, [&src]).options(opts).run().expect("backup with mmap");
    let summary = mapped.snapshot.summary.clone().expect("summary");
    assert_eq!(mapped.files_read, read.summary.as_ref().expect("summary").files_new, "every file mapped");
    assert_eq!(summary.bytes_read, read_bytes(&src), "mmap read every byte");
    assert_eq!(summary.blobs_added, 0, "identical chunks: nothing new");
    assert_eq!(mapped.snapshot.tree, read.tree, "identical trees");
    let target = base.join("restore");
    Restore::new(&repo, &mapped.snapshot, &target).run().expect("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));

    let env = ArchEnv::new(&base);
    let r = env.run(&args(&[&"--repo", &base.join("repo"), &"backup", &"--read-mode", &"bogus", &src]));
    r.expect_code(2, "an unknown read mode is a usage error");
    assert!(r.stderr.contains("read"), "{}", r.stderr);
}

fn read_bytes(dir: &std::path::Path) -> u64 {
    walk(dir).iter().filter(|(_, m)| m.is_file()).map(|(_, m)| m.len()).sum()
}
