//! `ReadMode::Mmap` (`backup --read-mode mmap`) produces the same chunks as
//! reading (files smaller and larger than a read block), and restores.

use std::collections::BTreeMap;

use arch_archiver::{Backup, BackupOptions, Id, NodeKind, ReadMode, Repository, Restore};

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
    // Same chunks for every file (directory metadata may differ: the
    // first backup can touch a directory's times).
    assert_eq!(file_contents(&repo, &mapped.snapshot.tree), file_contents(&repo, &read.tree));
    let target = base.join("restore");
    Restore::new(&repo, &mapped.snapshot, &target).run().expect("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));

    let env = ArchEnv::new(&base);
    let r = env.run(&args(&[&"--repo", &base.join("repo"), &"backup", &"--read-mode", &"bogus", &src]));
    r.expect_code(2, "an unknown read mode is a usage error");
    assert!(r.stderr.contains("read"), "{}", r.stderr);
}

/// Path -> content ids of every regular file below `tree`.
fn file_contents(repo: &Repository, tree: &Id) -> BTreeMap<Vec<u8>, Vec<Id>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(Vec::new(), *tree)];
    while let Some((dir, id)) = todo.pop() {
        for n in repo.load_tree(&id).expect("load tree").nodes {
            let mut p = dir.clone();
            p.push(b'/');
            p.extend_from_slice(&n.name);
            match n.kind {
                NodeKind::Dir => todo.push((p, n.subtree.expect("subtree"))),
                NodeKind::File => {
                    out.insert(p, n.content);
                }
                _ => {}
            }
        }
    }
    assert!(out.len() > 3, "the fixture has files");
    out
}

fn read_bytes(dir: &std::path::Path) -> u64 {
    walk(dir).iter().filter(|(_, m)| m.is_file()).map(|(_, m)| m.len()).sum()
}
