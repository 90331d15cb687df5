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

/// Pages of the file at `path` resident in the page cache.
fn resident(path: &std::path::Path) -> usize {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).expect("open");
    let len = f.metadata().expect("stat").len() as usize;
    // SAFETY: a read-only shared mapping of the whole file, unmapped below;
    // mincore writes one byte per page into `pages`.
    unsafe {
        let map = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        let mut pages = vec![0u8; len.div_ceil(4096)];
        assert_eq!(libc::mincore(map, len, pages.as_mut_ptr()), 0, "mincore");
        libc::munmap(map, len);
        pages.iter().filter(|p| *p & 1 == 1).count()
    }
}

fn evict(path: &std::path::Path) {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().expect("fsync");
    // SAFETY: a hint on a descriptor we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[test]
fn a_backup_leaves_the_page_cache_as_it_found_it() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let (cold, warm) = (src.join("cold.bin"), src.join("warm.bin"));
    write_random_file(&cold, 1, 6 << 20);
    write_random_file(&warm, 2, 6 << 20);
    for i in 0..40 {
        std::fs::write(src.join(format!("small{i}")), format!("small file {i}\n").repeat(50)).expect("write");
    }
    for f in [&cold, &warm] {
        evict(f);
    }
    for i in 0..40 {
        evict(&src.join(format!("small{i}")));
    }
    if resident(&cold) != 0 {
        eprintln!("this filesystem keeps pages despite DONTNEED (tmpfs?): nothing to check");
        return;
    }
    std::fs::read(&warm).expect("read");
    let warm_pages = resident(&warm);
    assert_eq!(warm_pages, (6 << 20) / 4096);
    let repo = init_repo(&base.join("repo"));
    Backup::new(&repo, [&src]).run().expect("backup");
    assert_eq!(resident(&cold), 0, "a file the machine was not using leaves the page cache again");
    for i in 0..40 {
        assert_eq!(resident(&src.join(format!("small{i}"))), 0, "small file {i} (read ahead by the scan)");
    }
    assert_eq!(resident(&warm), warm_pages, "a file in use stays cached");
}
