//! End-to-end tests of the library API (no binary): back up real trees with
//! [`Backup`], restore them with [`Restore`], and check what a user (or an
//! embedding program) would check.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use arch_archiver::{
    Backup, BlobType, CancellationToken, Id, InitOptions, Node, NodeKind, Repository, Restore, Snapshot,
};

use crate::common::*;

/// The node at absolute `path` in `snap`.
fn find_node(repo: &Repository, snap: &Snapshot, path: &Path) -> Node {
    let mut tree = repo.load_tree(&snap.tree).expect("load root tree");
    let comps: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, name) in comps.iter().enumerate() {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name == name.as_bytes())
            .unwrap_or_else(|| panic!("{} not in snapshot", path.display()))
            .clone();
        if i + 1 == comps.len() {
            return node;
        }
        tree = repo.load_tree(&node.subtree.expect("directory has a subtree")).expect("load tree");
    }
    unreachable!("empty path")
}

/// Every data blob id referenced by the file nodes under `tree`.
fn data_blobs_of(repo: &Repository, tree: &Id, out: &mut BTreeSet<Id>) {
    for n in repo.load_tree(tree).expect("load tree").nodes {
        match n.kind {
            NodeKind::Dir => data_blobs_of(repo, &n.subtree.expect("subtree"), out),
            NodeKind::File => out.extend(n.content.iter().copied()),
            _ => {}
        }
    }
}

/// (type, blob, pack) of every blob in the repository's index.
fn index_entries(repo: &Repository) -> BTreeSet<(BlobType, Id, Id)> {
    repo.index().all_blobs().into_iter().map(|l| (l.blob.blob_type, l.blob.id, l.pack)).collect()
}

/// Sets the repository's index options to the defaults changed by `tweak`.
///
/// arch_archiver does not re-export `MasterIndexOptions` (the parameter
/// type of `Repository::set_index_options`), and this test crate cannot
/// name arch_index directly, so the type is inferred from the method's
/// signature instead.
fn tweak_index_options<O: Default, E>(
    repo: &mut Repository,
    set: fn(&mut Repository, O) -> Result<(), E>,
    tweak: impl FnOnce(O) -> O,
) -> Result<(), E> {
    set(repo, tweak(O::default()))
}

#[test]
fn every_node_type_round_trips() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    build_fixture(&src);
    let repo_dir = base.join("repo");
    let repo = init_repo(&repo_dir);

    let backup = Backup::new(&repo, [&src]).run().expect("backup");
    assert!(backup.warnings.is_empty(), "backup warnings: {:?}", backup.warnings);
    assert_eq!(repo.list_snapshots().unwrap().len(), 1);
    assert_eq!(backup.snapshot.paths, vec![src.to_string_lossy().into_owned()]);

    let target = base.join("restore");
    let result = Restore::new(&repo, &backup.snapshot, &target).run().expect("restore");
    assert!(result.warnings.is_empty(), "restore warnings: {:?}", result.warnings);
    let restored = restored_path(&target, &src);
    assert_trees_equal(&src, &restored);

    // The counts the restore reports match the tree.
    let entries = walk(&src);
    let files = entries.iter().filter(|(_, m)| m.is_file()).count() as u64;
    let others = entries.iter().filter(|(_, m)| !m.is_file() && !m.is_dir()).count() as u64;
    assert_eq!(result.files, files, "files restored");
    assert_eq!(result.others, others, "symlinks and fifos restored");

    // All-zero chunks of the sparse file are restored as holes: the 30 MiB
    // file with three small written regions must not occupy 30 MiB.
    let sparse = fs::metadata(restored.join("data/sparse.img")).unwrap();
    assert_eq!(sparse.len(), 30 << 20);
    let allocated = sparse.blocks() * 512;
    assert!(allocated <= 24 << 20, "restored sparse file occupies {allocated} bytes of {}", sparse.len());
}

#[test]
fn a_compression_level_out_of_range_fails_before_anything_is_read() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"some text").unwrap();
    let repo_dir = base.join("repo");
    let repo = init_repo(&repo_dir);
    for level in [0, 23] {
        let opts = arch_archiver::BackupOptions::default().compression_level(level);
        let err = Backup::new(&repo, [&src]).options(opts).run().expect_err("level out of range");
        assert!(err.to_string().contains(&format!("compression level {level} is out of range")), "{err}");
    }
    assert_eq!(object_count(&repo_dir, "snapshots"), 0);
    assert_eq!(dir_size(&repo_dir.join("data")), 0);
}

#[test]
fn identical_files_are_stored_once() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let data = random_bytes(42, 3 << 20);
    for i in 0..20 {
        fs::write(src.join(format!("copy-{i:02}.bin")), &data).unwrap();
    }
    let repo = init_repo(&base.join("repo"));
    let backup = Backup::new(&repo, [&src]).run().expect("backup");

    let mut cuts = Vec::new();
    repo.chunker().cut(&data, true, &mut cuts);
    assert!(cuts.len() > 1, "3 MB should be more than one chunk");
    assert_eq!(
        repo.index().blob_count(BlobType::Data),
        cuts.len(),
        "data blobs stored for 20 identical files"
    );
    // Every copy lists the same blobs.
    let first = find_node(&repo, &backup.snapshot, &src.join("copy-00.bin"));
    assert_eq!(first.content.len(), cuts.len());
    let last = find_node(&repo, &backup.snapshot, &src.join("copy-19.bin"));
    assert_eq!(first.content, last.content);

    let s = backup.snapshot.summary.clone().expect("summary");
    let one = data.len() as u64;
    assert!(
        s.bytes_added_raw >= one && s.bytes_added_raw < one + (64 << 10),
        "bytes_added_raw {} for 20 copies of {one} bytes",
        s.bytes_added_raw
    );
    assert_eq!(s.bytes_read, 20 * one, "every copy is read");
    let stored = dir_size(&base.join("repo/data"));
    assert!(stored < one + one / 2, "data packs hold {stored} bytes for 20 copies of {one} bytes");

    let target = base.join("restore");
    Restore::new(&repo, &backup.snapshot, &target).run().expect("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn index_is_written_while_the_backup_runs() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("a.bin"), 7, 1 << 20);
    write_random_file(&src.join("sub/b.bin"), 8, 1 << 20);
    fs::write(src.join("sub/small.txt"), b"small").unwrap();

    // Small chunks and packs, so a 2 MB tree makes dozens of blobs.
    let repo_dir = base.join("repo");
    let mut repo = init_repo_with(
        &repo_dir,
        InitOptions::default().pack_size(64 << 10).chunk_sizes(16 << 10, 32 << 10, 64 << 10),
    );
    tweak_index_options(&mut repo, Repository::set_index_options, |o| o.max_blobs_per_file(5))
        .expect("set index options");

    let backup = Backup::new(&repo, [&src]).run().expect("backup");
    let blobs = repo.index().blob_count(BlobType::Data) + repo.index().blob_count(BlobType::Tree);
    assert!(blobs > 20, "only {blobs} blobs; the test needs more than 20");
    let written = repo.index().written_files();
    assert!(
        written.len() >= 4,
        "{} index files written for {blobs} blobs at 5 blobs per file",
        written.len()
    );
    assert_eq!(
        object_count(&repo_dir, "index"),
        written.len(),
        "index files on disk vs written by this backup"
    );
    for id in &written {
        assert!(repo_dir.join("index").join(id.to_hex()).is_file(), "index {} missing", id.short());
    }

    // A fresh open finds every blob, from the index files alone.
    let reopened = open_repo(&repo_dir);
    assert_eq!(index_entries(&reopened), index_entries(&repo));
    let mut needed = BTreeSet::new();
    data_blobs_of(&reopened, &backup.snapshot.tree, &mut needed);
    assert!(needed.len() > 20);
    for id in &needed {
        assert!(
            reopened.index().contains(BlobType::Data, id),
            "blob {} not indexed after reopen",
            id.short()
        );
    }
    let target = base.join("restore");
    Restore::new(&reopened, &backup.snapshot, &target).run().expect("restore from the reopened repository");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

/// Flips one byte of a stored file.
fn flip_byte(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn a_damaged_pack_is_detected_and_named() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("data.bin"), 9, 1 << 20);
    let repo_dir = base.join("repo");
    let repo = init_repo(&repo_dir);
    let backup = Backup::new(&repo, [&src]).run().expect("backup");
    let packs = pack_files(&repo_dir);

    // Damage the middle of the file's first data blob.
    let node = find_node(&repo, &backup.snapshot, &src.join("data.bin"));
    let loc = repo.locate(BlobType::Data, &node.content[0]).unwrap();
    let pack_hex = loc.pack.to_hex();
    let pack_path = packs.get(&pack_hex).expect("data pack on disk");
    flip_byte(pack_path, u64::from(loc.blob.offset) + u64::from(loc.blob.length) / 2);
    let err = Restore::new(&repo, &backup.snapshot, base.join("restore-1"))
        .run()
        .expect_err("restore from a damaged data pack must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&pack_hex[..8]) || msg.contains("damaged"),
        "error does not name pack {}: {msg}",
        &pack_hex[..8]
    );

    // Damage the pack holding the root tree: the restore fails before
    // writing any file content.
    let loc = repo.locate(BlobType::Tree, &backup.snapshot.tree).unwrap();
    let tree_hex = loc.pack.to_hex();
    assert_ne!(tree_hex, pack_hex, "tree and data blobs share no pack");
    flip_byte(packs.get(&tree_hex).expect("tree pack on disk"), u64::from(loc.blob.offset) + 1);
    let err = Restore::new(&repo, &backup.snapshot, base.join("restore-2"))
        .run()
        .expect_err("restore from a damaged tree pack must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&tree_hex[..8]) || msg.contains("damaged"),
        "error does not name pack {}: {msg}",
        &tree_hex[..8]
    );
}

#[test]
fn cancelled_backup_writes_no_snapshot_and_indexes_its_packs() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let file_size: u64 = 16 << 20;
    let n_files = 12u64;
    for i in 0..n_files {
        write_random_file(&src.join(format!("big-{i:02}.bin")), 100 + i, file_size);
    }
    let total = file_size * n_files;
    let repo_dir = base.join("repo");
    // 1 MiB packs: many packs are stored within the first fraction of a second.
    let repo = init_repo_with(&repo_dir, InitOptions::default().pack_size(1 << 20));

    let token = CancellationToken::new();
    let (result, cancel_to_return, packs_at_cancel) = std::thread::scope(|s| {
        let t = token.clone();
        let h = s.spawn(|| Backup::new(&repo, [&src]).cancel_token(t).run());
        let start = Instant::now();
        // ~200 ms in, and only once a pack exists (so there is something
        // that must be indexed).
        while (start.elapsed() < Duration::from_millis(200) || pack_files(&repo_dir).is_empty())
            && !h.is_finished()
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let packs_at_cancel = pack_files(&repo_dir).len();
        let cancelled_at = Instant::now();
        token.cancel();
        let r = h.join().expect("backup thread panicked");
        (r, cancelled_at.elapsed(), packs_at_cancel)
    });
    let err = match result {
        Ok(_) => panic!("backup finished before it was cancelled; make the tree bigger"),
        Err(e) => e,
    };
    eprintln!("backup returned {cancel_to_return:?} after cancel, {packs_at_cancel} packs stored");
    assert!(err.is_cancelled(), "error is not a cancellation: {err}");
    assert!(cancel_to_return < Duration::from_secs(2), "backup returned {cancel_to_return:?} after cancel");
    assert!(packs_at_cancel > 0, "no pack was stored before the cancel");
    assert!(repo.list_snapshots().unwrap().is_empty(), "snapshot written");
    assert_eq!(object_count(&repo_dir, "snapshots"), 0);

    // Every pack on disk is indexed, and every indexed pack is on disk.
    let reopened = open_repo(&repo_dir);
    let on_disk: BTreeSet<String> = pack_files(&repo_dir).into_keys().collect();
    let indexed: BTreeSet<String> = reopened.index().all_blobs().iter().map(|l| l.pack.to_hex()).collect();
    assert_eq!(
        on_disk.difference(&indexed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "packs on disk that no index lists"
    );
    assert_eq!(
        indexed.difference(&on_disk).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "indexed packs missing on disk"
    );
    let leftovers: Vec<_> = files_under(&repo_dir)
        .into_iter()
        .filter(|(p, _)| p.file_name().unwrap().as_bytes().starts_with(b".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let kept: u64 = reopened
        .index()
        .all_blobs()
        .iter()
        .filter(|l| l.blob.blob_type == BlobType::Data)
        .map(|l| u64::from(l.blob.raw_length))
        .sum();
    assert!(kept > 0);

    // The next backup completes and reuses what the cancelled one stored.
    let backup = Backup::new(&reopened, [&src]).run().expect("second backup");
    assert_eq!(reopened.list_snapshots().unwrap().len(), 1);
    let added = backup.snapshot.summary.expect("summary").bytes_added_raw;
    assert!(
        added < total - kept + (1 << 20),
        "second backup added {added} bytes; {kept} of {total} were already stored"
    );
}

/// Runs `change` on `path` and puts back the mtimes of `path` and its
/// parent, so the change is the only difference.
fn keep_times(path: &Path, change: impl FnOnce()) {
    let parent = path.parent().unwrap().to_path_buf();
    let pm = fs::symlink_metadata(&parent).unwrap();
    let m = fs::symlink_metadata(path).ok();
    change();
    if let Some(m) = m {
        if fs::symlink_metadata(path).is_ok() {
            set_times(path, filetime::FileTime::from_last_modification_time(&m), false);
        }
    }
    set_times(&parent, filetime::FileTime::from_last_modification_time(&pm), false);
}

/// The comparator that every round-trip test relies on notices each kind
/// of difference it promises to check (a comparator that passes anything
/// would make those tests worthless).
#[test]
fn comparator_catches_every_kind_of_difference() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    build_fixture(&src);
    let copy = |name: &str| {
        let dst = base.join(name);
        let st = std::process::Command::new("cp").arg("-a").arg(&src).arg(&dst).status().unwrap();
        assert!(st.success());
        dst
    };
    let same = copy("same");
    assert_trees_equal(&src, &same);

    type Mutation = (&'static str, &'static str, usize, fn(&Path));
    let mutations: [Mutation; 9] = [
        ("flip a byte", "content differs", 1, |d| {
            let p = d.join("docs/lines.txt");
            keep_times(&p, || flip_byte(&p, 1000));
        }),
        ("change a mode", "mode", 1, |d| {
            let p = d.join("bin/tool.sh");
            keep_times(&p, || {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap()
            });
        }),
        ("change a directory's mtime by 1 ns", "mtime", 1, |d| {
            let p = d.join("docs/nested");
            let m = fs::metadata(&p).unwrap();
            let t = filetime::FileTime::from_unix_time(m.mtime(), m.mtime_nsec() as u32 + 1);
            set_times(&p, t, true);
        }),
        ("change a symlink's own mtime", "mtime", 1, |d| {
            set_times(&d.join("links/dangling"), past_time(999), false);
        }),
        ("retarget a symlink", "symlink target", 1, |d| {
            let p = d.join("links/relative");
            keep_times(&p, || {
                fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink("../docs/lines.txt", &p).unwrap();
            });
        }),
        ("break a hardlink", "link count", 3, |d| {
            let p = d.join("hard/second");
            keep_times(&p, || {
                let bytes = fs::read(&p).unwrap();
                fs::remove_file(&p).unwrap();
                fs::write(&p, bytes).unwrap();
            });
        }),
        ("add a file", "names differ", 1, |d| {
            let p = d.join("docs/extra");
            keep_times(&p, || fs::write(&p, b"extra").unwrap());
        }),
        ("replace the fifo by a file", "type fifo restored as file", 1, |d| {
            let p = d.join("fifo");
            keep_times(&p, || {
                fs::remove_file(&p).unwrap();
                fs::write(&p, b"").unwrap();
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            });
        }),
        ("remove the non-UTF-8 file", "names differ", 1, |d| {
            let p = d.join(non_utf8_name());
            keep_times(&p, || fs::remove_file(&p).unwrap());
        }),
    ];
    for (i, (what, expect, count, mutate)) in mutations.into_iter().enumerate() {
        let dst = copy(&format!("mutated-{i}"));
        mutate(&dst);
        let caught = std::panic::catch_unwind(|| assert_trees_equal(&src, &dst));
        let msg = match caught {
            Ok(()) => panic!("comparator missed: {what}"),
            Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_else(|| "<non-string panic>".into()),
        };
        assert!(msg.contains(expect), "{what}: expected {expect:?} in: {msg}");
        assert!(
            msg.contains(&format!(" has {count} difference(s)")),
            "{what}: want exactly {count} difference(s): {msg}"
        );
    }
}

/// A snapshot of `src/{dir/inside.txt, plain.txt}` and a target whose
/// restore location already holds something, made by `prepare`.
fn restore_over(
    prepare: impl FnOnce(&Path, &Path),
) -> (tempfile::TempDir, PathBuf, PathBuf, Result<(), String>) {
    let (t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/inside.txt"), b"inside").unwrap();
    fs::write(src.join("plain.txt"), b"plain").unwrap();
    let repo = init_repo(&base.join("repo"));
    let backup = Backup::new(&repo, [&src]).run().expect("backup");
    let target = base.join("target");
    let restored = restored_path(&target, &src);
    fs::create_dir_all(&restored).unwrap();
    prepare(&restored, &base);
    let r = Restore::new(&repo, &backup.snapshot, &target)
        .options(arch_archiver::RestoreOptions::default().overwrite(true))
        .run()
        .map(|_| ())
        .map_err(|e| e.to_string());
    (t, src, restored, r)
}

/// With overwrite, a directory in the snapshot replaces a file in the way.
#[test]
fn overwrite_replaces_a_file_where_a_directory_belongs() {
    let (_t, src, restored, r) = restore_over(|dst, _| {
        fs::write(dst.join("dir"), b"a file where a directory belongs").unwrap();
    });
    r.expect("restore with overwrite");
    assert_trees_equal(&src, &restored);
}

/// With overwrite, a file in the snapshot replaces a directory in the way.
#[test]
fn overwrite_replaces_a_directory_where_a_file_belongs() {
    let (_t, src, restored, r) = restore_over(|dst, _| {
        fs::create_dir_all(dst.join("plain.txt/child")).unwrap();
    });
    r.expect("restore with overwrite");
    assert_trees_equal(&src, &restored);
}

/// With overwrite, symlinks where the snapshot has a directory or a file
/// are replaced, never followed: nothing outside the target is written.
#[test]
fn overwrite_never_follows_a_symlink_out_of_the_target() {
    let (_t, src, restored, r) = restore_over(|dst, base| {
        fs::create_dir(base.join("outside")).unwrap();
        fs::write(base.join("outside-file"), b"victim").unwrap();
        std::os::unix::fs::symlink(base.join("outside"), dst.join("dir")).unwrap();
        std::os::unix::fs::symlink(base.join("outside-file"), dst.join("plain.txt")).unwrap();
    });
    let base = src.parent().unwrap();
    let outside = base.join("outside");
    assert_eq!(
        fs::read(base.join("outside-file")).unwrap(),
        b"victim",
        "restore wrote through a file symlink"
    );
    let written: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        written.is_empty(),
        "restore followed a symlink out of the target and wrote {written:?} into {}",
        outside.display()
    );
    r.expect("restore with overwrite");
    assert_trees_equal(&src, &restored);
}

/// A symlink given as a backup path is saved as the symlink, not as a
/// copy of what it points to (the snapshot records the path given).
#[test]
fn a_symlink_argument_is_saved_as_a_symlink() {
    let (_t, base) = tempdir();
    let real = base.join("real");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("file.txt"), b"through the link").unwrap();
    let link = base.join("link");
    std::os::unix::fs::symlink("real", &link).unwrap();
    let repo = init_repo(&base.join("repo"));
    let backup = Backup::new(&repo, [&link]).run().expect("backup");
    assert_eq!(backup.snapshot.paths, vec![link.to_string_lossy().into_owned()]);
    let node = find_node(&repo, &backup.snapshot, &link);
    assert_eq!(node.kind, NodeKind::Symlink, "the link was saved as a {:?}", node.kind);
    assert_eq!(node.target.as_deref(), Some(&b"real"[..]));

    let target = base.join("restore");
    Restore::new(&repo, &backup.snapshot, &target).run().expect("restore");
    let restored = restored_path(&target, &link);
    assert!(fs::symlink_metadata(&restored).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&restored).unwrap(), Path::new("real"));
    // Nothing else: the link's target was not backed up (it was not asked
    // for), neither inside the link nor beside it.
    let beside: Vec<_> =
        fs::read_dir(restored.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("link")], "restored next to the link");
}
