//! Browsing snapshots: ls, find, diff, dump, cat and stats, through the
//! library (fast) and the binary (output formats, JSON, exit codes).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use arch_archiver::{
    diff_trees, dump_archive, dump_file, escape_path, find_node, stats, walk_tree, ArchiveFormat, Backup,
    BlobType, DiffOptions, FindQuery, Finder, Id, NodeKind, Repository, Snapshot, WalkControl,
};

use crate::common::*;

fn backup(repo: &Repository, src: &Path) -> (Id, Snapshot) {
    let r = Backup::new(repo, [src]).run().expect("backup");
    assert!(r.warnings.is_empty(), "backup warnings: {:?}", r.warnings);
    (r.snapshot_id.expect("snapshot written"), r.snapshot)
}

/// The path of `rel` below `src` inside a snapshot of `src`.
fn in_snap(src: &Path, rel: &str) -> Vec<u8> {
    let mut p = src.as_os_str().as_bytes().to_vec();
    if !rel.is_empty() {
        p.push(b'/');
        p.extend_from_slice(rel.as_bytes());
    }
    p
}

fn diff_lines(repo: &Repository, a: &Snapshot, b: &Snapshot, metadata: bool) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    diff_trees(repo, &a.tree, &b.tree, &DiffOptions::default().metadata(metadata), &mut |c, path, _, _| {
        lines.insert(format!("{} {}", c.marker(), escape_path(path)));
        Ok(())
    })
    .expect("diff");
    lines
}

fn set_dir_time(dir: &Path) {
    set_times(dir, past_time(7), true);
}

#[test]
fn library_ls_find_diff_stats() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let x = random_bytes(1, 1000);
    fs::write(src.join("keep.txt"), b"unchanged\n").unwrap();
    fs::write(src.join("mod.txt"), b"before\n").unwrap();
    fs::write(src.join("gone.txt"), b"to be removed\n").unwrap();
    fs::write(src.join("sub/chm.txt"), b"mode changes\n").unwrap();
    fs::write(src.join("sub/dup1.bin"), &x).unwrap();
    fs::write(src.join("sub/dup2.bin"), &x).unwrap();
    fs::write(src.join(non_utf8_name()), b"latin-1\n").unwrap();
    set_dir_time(&src);
    let repo = init_repo(&base.join("repo"));
    let (_, s1) = backup(&repo, &src);

    // Navigation: root, subpath, a file; a missing path is a clear error.
    let root = find_node(&repo, &s1.tree, b"/").unwrap();
    assert_eq!(root.kind, NodeKind::Dir);
    let sub = find_node(&repo, &s1.tree, &in_snap(&src, "sub")).unwrap();
    let mut names = Vec::new();
    walk_tree(&repo, &sub.subtree.unwrap(), b"", &mut |p, _| {
        names.push(escape_path(p));
        Ok(WalkControl::SkipChildren)
    })
    .unwrap();
    assert_eq!(names, ["/chm.txt", "/dup1.bin", "/dup2.bin"]);
    let f = find_node(&repo, &s1.tree, &in_snap(&src, "keep.txt")).unwrap();
    let mut content = Vec::new();
    dump_file(&repo, &f, &mut content).unwrap();
    assert_eq!(content, b"unchanged\n");
    let odd = find_node(&repo, &s1.tree, &in_snap(&src, "caf\u{e9}"));
    assert!(odd.is_err(), "the UTF-8 spelling is not the Latin-1 name");
    let mut raw = in_snap(&src, "");
    raw.extend_from_slice(b"/caf\xe9");
    assert_eq!(find_node(&repo, &s1.tree, &raw).unwrap().size, 8);
    let err = find_node(&repo, &s1.tree, &in_snap(&src, "nope")).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("does not exist"), "{err}");

    // Second backup: add, remove, modify, chmod (directory mtimes kept).
    fs::write(src.join("new.txt"), b"added\n").unwrap();
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::write(src.join("mod.txt"), b"after, and longer\n").unwrap();
    fs::set_permissions(src.join("sub/chm.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    set_dir_time(&src);
    let (_, s2) = backup(&repo, &src);

    let e = |m: &str, rel: &str| format!("{m} {}", escape_path(&in_snap(&src, rel)));
    let plain: BTreeSet<String> = [e("+", "new.txt"), e("-", "gone.txt"), e("M", "mod.txt")].into();
    assert_eq!(diff_lines(&repo, &s1, &s2, false), plain);
    let mut with_meta = plain.clone();
    with_meta.insert(e("U", "sub/chm.txt"));
    // Other tests create and remove temporary directories next to ours, so
    // /tmp's own mtime may change between the backups: look below src only.
    let mut meta = diff_lines(&repo, &s1, &s2, true);
    meta.retain(|l| l[2..].starts_with(&escape_path(&in_snap(&src, ""))));
    assert_eq!(meta, with_meta);
    assert!(diff_lines(&repo, &s1, &s1, true).is_empty(), "a snapshot equals itself");
    let st =
        diff_trees(&repo, &s1.tree, &s2.tree, &DiffOptions::default(), &mut |_, _, _, _| Ok(())).unwrap();
    assert_eq!((st.files_added, st.files_removed, st.modified), (1, 1, 1));
    assert_eq!(st.bytes_added, 6 + 18);
    assert_eq!(st.bytes_removed, 14 + 7);

    // find: a glob across both snapshots, and by blob id.
    let finder = Finder::new(&repo, &FindQuery::default().pattern("*.txt")).unwrap();
    let hits = |s: &Snapshot| {
        let mut v = Vec::new();
        finder
            .find(&repo, &s.tree, &mut |p, _| {
                v.push(escape_path(p));
                Ok(())
            })
            .unwrap();
        v
    };
    let txt = |rels: &[&str]| rels.iter().map(|r| escape_path(&in_snap(&src, r))).collect::<Vec<_>>();
    assert_eq!(hits(&s1), txt(&["gone.txt", "keep.txt", "mod.txt", "sub/chm.txt"]));
    assert_eq!(hits(&s2), txt(&["keep.txt", "mod.txt", "new.txt", "sub/chm.txt"]));
    let old_mod = find_node(&repo, &s1.tree, &in_snap(&src, "mod.txt")).unwrap();
    let prefix = &old_mod.content[0].to_hex()[..10];
    let by_blob = Finder::new(&repo, &FindQuery::default().blob(prefix)).unwrap();
    let count = |s: &Snapshot| by_blob.find(&repo, &s.tree, &mut |_, _| Ok(())).unwrap();
    assert_eq!((count(&s1), count(&s2)), (1, 0));
    let pack = repo.locate(BlobType::Data, &old_mod.content[0]).unwrap().pack;
    let by_pack = Finder::new(&repo, &FindQuery::default().pack(&pack.to_hex()[..12])).unwrap();
    let mut in_pack = Vec::new();
    by_pack
        .find(&repo, &s1.tree, &mut |p, _| {
            in_pack.push(escape_path(p));
            Ok(())
        })
        .unwrap();
    assert!(in_pack.contains(&escape_path(&in_snap(&src, "mod.txt"))), "{in_pack:?}");
    assert!(Finder::new(&repo, &FindQuery::default()).is_err(), "an empty query is refused");

    // stats over several snapshots: repeated trees (no hardlinks here, so
    // they come from the cache) count again for the restore size only.
    let (one, two) = (stats(&repo, &[s1.tree]).unwrap(), stats(&repo, &[s2.tree]).unwrap());
    let both = stats(&repo, &[s1.tree, s2.tree, s1.tree]).unwrap();
    assert_eq!(both.restore_size, 2 * one.restore_size + two.restore_size);
    assert_eq!(both.files, 2 * one.files + two.files);
    assert_eq!(both.dirs, 2 * one.dirs + two.dirs);
    assert!(both.blobs < one.blobs + two.blobs, "shared blobs count once");
    assert_eq!(stats(&repo, &[s1.tree, s1.tree]).unwrap().blobs, one.blobs);
    assert_eq!(one.unique_files, 6, "dup1.bin and dup2.bin have one content");
}

#[test]
fn stats_modes_count_duplicates_and_hardlinks_once() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let x = random_bytes(11, 1000);
    let y = random_bytes(12, 500);
    fs::write(src.join("a"), &x).unwrap();
    fs::write(src.join("d/b"), &x).unwrap();
    fs::write(src.join("c"), &y).unwrap();
    fs::hard_link(src.join("c"), src.join("d/h")).unwrap();
    let repo = init_repo(&base.join("repo"));
    let (_, s1) = backup(&repo, &src);
    let s = stats(&repo, &[s1.tree]).unwrap();
    assert_eq!(s.snapshots, 1);
    assert_eq!(s.files, 4);
    assert_eq!(s.restore_size, 1000 + 1000 + 500, "the hardlink counts once");
    assert_eq!((s.unique_files, s.unique_files_size), (2, 1500));
    // Unique blobs: the two contents plus one tree per directory.
    let mut trees = vec![s1.tree];
    walk_tree(&repo, &s1.tree, b"", &mut |_, n| {
        trees.extend(n.subtree);
        Ok(WalkControl::Continue)
    })
    .unwrap();
    assert_eq!(s.blobs, 2 + trees.len() as u64);
    let tree_raw: u64 =
        trees.iter().map(|t| u64::from(repo.locate(BlobType::Tree, t).unwrap().blob.raw_length)).sum();
    assert_eq!(s.blobs_raw_size, 1500 + tree_raw);
    assert!(s.blobs_stored_size > 1500, "sealed random data does not shrink");
    assert!((s.dedup_ratio - 2500.0 / s.blobs_stored_size as f64).abs() < 1e-9);
    assert!(s.repo_size >= s.blobs_stored_size && s.repo_packs >= 2);
    // Counting the same snapshot twice doubles the restore size, not the data.
    let twice = stats(&repo, &[s1.tree, s1.tree]).unwrap();
    assert_eq!(twice.restore_size, 5000);
    assert_eq!(twice.blobs_stored_size, s.blobs_stored_size);
}

#[test]
fn cli_ls_cat_find_diff_dump() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    build_fixture(&src);
    let repo_dir = base.join("repo");
    let repo = init_repo(&repo_dir);
    let (id1, s1) = backup(&repo, &src);
    let env = ArchEnv::new(&base);
    let r = &repo_dir;
    let id = id1.to_hex();
    let spec = |rel: &str| format!("{id}:{}", String::from_utf8(in_snap(&src, rel)).unwrap());

    // ls: the root shows the first component; a subpath its entries.
    let first = src.components().nth(1).unwrap().as_os_str().to_str().unwrap().to_string();
    assert_eq!(run_ok(&env, &[&"--repo", r, &"ls", &id]).trim(), format!("/{first}"));
    let listing = run_ok(&env, &[&"--repo", r, &"ls", &spec("")]);
    let top: Vec<&str> = listing.lines().collect();
    assert!(top.contains(&format!("{}/caf\\xe9", src.display()).as_str()), "{listing}");
    assert!(top.contains(&format!("{}/dir-\\xff\\xfe", src.display()).as_str()), "{listing}");
    assert!(!listing.contains("deepest"), "not recursive by default");
    let rec = run_ok(&env, &[&"--repo", r, &"ls", &spec(""), &"--recursive"]);
    assert!(rec.contains("/docs/nested/deeper/deepest/leaf.md"), "{rec}");
    // The optional PATH argument is relative to SNAPSHOT:PATH.
    let links = run_ok(&env, &[&"--repo", r, &"ls", &"-l", &spec(""), &"links"]);
    let rel = links.lines().find(|l| l.ends_with("/links/relative -> ../docs/hello.txt"));
    assert!(rel.is_some_and(|l| l.starts_with("lrwxrwxrwx ")), "{links}");
    let tool = run_ok(&env, &[&"--repo", r, &"ls", &"-l", &spec("bin")]);
    assert!(tool.lines().any(|l| l.starts_with("-rwxr-xr-x ") && l.ends_with("/bin/tool.sh")), "{tool}");
    let js = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"ls", &spec("")]));
    let odd = js.iter().find(|v| v["name"] == "caf\\xe9").expect("non-UTF-8 name listed");
    assert_eq!(odd["type"], "file");
    assert!(odd["path_hex"].as_str().unwrap().ends_with("636166e9"));
    assert!(js.iter().any(|v| v["name"] == "fifo" && v["type"] == "fifo"));

    // ls --recursive agrees with the tree on disk, entry by entry.
    let all = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"ls", &"-R", &spec("")]));
    let listed: BTreeSet<String> = all.iter().map(|v| v["path"].as_str().unwrap().to_string()).collect();
    let on_disk: BTreeSet<String> =
        walk(&src).iter().map(|(p, _)| escape_path(p.as_os_str().as_bytes())).collect();
    assert_eq!(listed, on_disk);
    for v in &all {
        let p = Path::new(OsStr::from_bytes(
            &unhex(v.get("path_hex").and_then(|h| h.as_str()))
                .unwrap_or_else(|| v["path"].as_str().unwrap().as_bytes().to_vec()),
        ))
        .to_path_buf();
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_file() {
            assert_eq!(v["size"], md.len(), "{}", p.display());
        }
        assert_eq!(v["mode"], md.permissions().mode() & 0o7777, "{}", p.display());
    }

    // cat: config with the seed redacted, snapshot, tree.
    let cfg: serde_json::Value =
        serde_json::from_str(&run_ok(&env, &[&"--repo", r, &"cat", &"config"])).unwrap();
    assert_eq!(cfg["chunker"]["seed"], "<secret>");
    let seed = repo.config().chunker.seed.to_string();
    assert!(!serde_json::to_string(&cfg).unwrap().contains(&seed));
    let snap: serde_json::Value =
        serde_json::from_str(&run_ok(&env, &[&"--repo", r, &"cat", &"snapshot", &&id[..8]])).unwrap();
    assert_eq!(snap["tree"], s1.tree.to_hex());
    let tree: serde_json::Value =
        serde_json::from_str(&run_ok(&env, &[&"--repo", r, &"cat", &"tree", &spec("docs")])).unwrap();
    let names: Vec<&str> =
        tree["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["empty-too", "hello.txt", "lines.txt", "nested"]);
    for (kind, folder) in [("index", "index"), ("key", "keys")] {
        let name = fs::read_dir(repo_dir.join(folder)).unwrap().next().unwrap().unwrap().file_name();
        let name = name.to_str().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&run_ok(&env, &[&"--repo", r, &"cat", &kind, &&name[..8]])).unwrap();
        assert!(v.is_object(), "cat {kind}");
    }
    let pack = pack_files(&repo_dir).into_keys().next().unwrap();
    let header: serde_json::Value =
        serde_json::from_str(&run_ok(&env, &[&"--repo", r, &"cat", &"pack", &pack])).unwrap();
    assert!(!header["blobs"].as_array().unwrap().is_empty());
    let hello = find_node(&repo, &s1.tree, &in_snap(&src, "docs/hello.txt")).unwrap();
    let blob = run_ok(&env, &[&"--repo", r, &"cat", &"blob", &hello.content[0].to_hex()]);
    assert_eq!(blob, "hello, world\n");

    // find across two snapshots, as JSON.
    fs::write(src.join("docs/later.txt"), b"second snapshot only\n").unwrap();
    let (id2, _) = backup(&repo, &src);
    let found = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"find", &"hello.txt"]));
    let snaps: BTreeSet<&str> = found.iter().map(|v| v["snapshot"].as_str().unwrap()).collect();
    assert_eq!(snaps, [id1.to_hex(), id2.to_hex()].iter().map(String::as_str).collect());
    assert!(found.iter().all(|v| v["size"] == 13 && v["type"] == "file"));

    // diff through the CLI: exact change lines, and JSON.
    let d = run_ok(&env, &[&"--repo", r, &"diff", &id, &id2.to_hex()]);
    let changes: Vec<&str> = d.lines().filter(|l| l.starts_with(['+', '-', 'M', 'T', 'U'])).collect();
    assert_eq!(changes, [format!("+    {}/docs/later.txt", src.display())], "{d}");
    let dj = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"diff", &id, &id2.to_hex()]));
    assert_eq!(dj.last().unwrap()["added"]["files"], 1);

    // dump: a file's bytes; a directory as tar that GNU tar extracts to the
    // same tree (modes, nanosecond mtimes, symlinks, hard links, fifo,
    // non-UTF-8 names).
    let out = env
        .spawn(&args(&[&"--repo", r, &"dump", &id, &src.join("data/random-3m.bin")]))
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == fs::read(src.join("data/random-3m.bin")).unwrap(), "dumped bytes differ");
    let tarball = base.join("src.tar");
    let latest = format!("{}:{}", id2.to_hex(), src.display());
    run_ok(&env, &[&"--repo", r, &"dump", &latest, &"--target", &tarball]);
    let x = base.join("extracted");
    fs::create_dir(&x).unwrap();
    let st = std::process::Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&x).status().unwrap();
    assert!(st.success());
    set_times(&x, past_time(0), true); // the dumped directory's own entry is not in the tar
    assert_trees_equal(&src, &x);

    // zip: readable by another implementation, with the same file bytes.
    let zipfile = base.join("docs.zip");
    run_ok(&env, &[&"--repo", r, &"dump", &spec("docs"), &"--archive", &"zip", &"--target", &zipfile]);
    let py = "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); print(z.read('nested/deeper/deepest/leaf.md').decode(), end=''); print(sorted(z.namelist())[0])";
    let o = std::process::Command::new("python3").args(["-c", py]).arg(&zipfile).output();
    if let Ok(o) = o {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "# leaf\n\nat the bottom\nempty-too\n");
    }

    // Library dump of a directory as tar (no binary): same entry count.
    let docs = find_node(&repo, &s1.tree, &in_snap(&src, "docs")).unwrap();
    let mut buf = Vec::new();
    let ds = dump_archive(&repo, &docs, ArchiveFormat::Tar, &mut buf).unwrap();
    assert_eq!(ds.entries, 7, "docs has 7 entries below it");
    assert_eq!(ds.bytes, 13 + fs::metadata(src.join("docs/lines.txt")).unwrap().len() + 22);

    // Errors: unknown path, unknown snapshot.
    let bad = env.run(&args(&[&"--repo", r, &"ls", &spec("no/such")]));
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("does not exist"), "{}", bad.stderr);
    let bad = env.run(&args(&[&"--repo", r, &"dump", &"ffffffff", &"/x"]));
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("no snapshot matches"), "{}", bad.stderr);

    // stats as JSON parses and agrees with the library.
    let sj: serde_json::Value = serde_json::from_str(&run_ok(
        &env,
        &[&"--repo", r, &"--json", &"stats", &id, &"--mode", &"raw-data"],
    ))
    .unwrap();
    let lib = stats(&repo, &[s1.tree]).unwrap();
    assert_eq!(sj["total_size"], lib.blobs_stored_size);
    assert_eq!(sj["restore_size"], lib.restore_size);

    // A dump that fails half way leaves no file under the --target name.
    let big = find_node(&repo, &s1.tree, &in_snap(&src, "data/random-6m.bin")).unwrap();
    let pack = repo.locate(BlobType::Data, &big.content[0]).unwrap().pack.to_hex();
    fs::remove_file(&pack_files(&repo_dir)[&pack]).unwrap();
    let failed = base.join("failed.tar");
    let bad = env.run(&args(&[&"--repo", r, &"dump", &spec(""), &"--target", &failed]));
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(!failed.exists(), "a partial archive was left behind");
    let leftovers: Vec<_> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("arch-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn diff_type_change_and_path_globs() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("x"), b"a file first\n").unwrap();
    fs::write(src.join("a/b/notes.txt"), b"n\n").unwrap();
    fs::write(src.join("a/notes.txt"), b"m\n").unwrap();
    let repo = init_repo(&base.join("repo"));
    let (_, s1) = backup(&repo, &src);
    fs::remove_file(src.join("x")).unwrap();
    fs::create_dir(src.join("x")).unwrap();
    fs::write(src.join("x/inside"), b"now a directory\n").unwrap();
    let (_, s2) = backup(&repo, &src);
    let e = |m: &str, rel: &str| format!("{m} {}", escape_path(&in_snap(&src, rel)));
    assert_eq!(diff_lines(&repo, &s1, &s2, false), [e("T", "x"), e("+", "x/inside")].into());
    assert_eq!(diff_lines(&repo, &s2, &s1, false), [e("T", "x"), e("-", "x/inside")].into());

    // A pattern with a slash matches whole paths; without, names.
    let glob = format!("{}/a/*/notes.txt", src.display());
    let f = Finder::new(&repo, &FindQuery::default().pattern(glob)).unwrap();
    let mut hits = Vec::new();
    f.find(&repo, &s2.tree, &mut |p, _| {
        hits.push(escape_path(p));
        Ok(())
    })
    .unwrap();
    assert_eq!(hits, [escape_path(&in_snap(&src, "a/b/notes.txt"))]);
    let f = Finder::new(&repo, &FindQuery::default().pattern("NOTES.*").ignore_case(true)).unwrap();
    assert_eq!(f.find(&repo, &s2.tree, &mut |_, _| Ok(())).unwrap(), 2);
    // Again, and in the other snapshot: trees without matches are skipped
    // from the cache, which must not change the result.
    assert_eq!(f.find(&repo, &s2.tree, &mut |_, _| Ok(())).unwrap(), 2);
    assert_eq!(f.find(&repo, &s1.tree, &mut |_, _| Ok(())).unwrap(), 2);
    let x = Finder::new(&repo, &FindQuery::default().pattern("x")).unwrap();
    assert_eq!(x.find(&repo, &s1.tree, &mut |_, _| Ok(())).unwrap(), 1);
    assert_eq!(x.find(&repo, &s2.tree, &mut |_, _| Ok(())).unwrap(), 1);
    assert_eq!(x.find(&repo, &s1.tree, &mut |_, _| Ok(())).unwrap(), 1);
    // --tree finds the directory using a tree blob.
    let b = find_node(&repo, &s2.tree, &in_snap(&src, "a/b")).unwrap();
    let f = Finder::new(&repo, &FindQuery::default().tree(b.subtree.unwrap().to_hex())).unwrap();
    let mut dirs = Vec::new();
    f.find(&repo, &s2.tree, &mut |p, _| {
        dirs.push(escape_path(p));
        Ok(())
    })
    .unwrap();
    assert_eq!(dirs, [escape_path(&in_snap(&src, "a/b"))]);
}

fn unhex(h: Option<&str>) -> Option<Vec<u8>> {
    let h = h?;
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok()).collect()
}
