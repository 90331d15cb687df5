//! The browse commands agree with the restored trees, through the binary:
//! `diff` between two snapshots with `diff -r` of their two restores,
//! `ls -R --json` and `find --json` with the restored tree, and `dump` of a
//! directory (GNU tar) with a normal restore of it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::*;

fn first_tree(src: &Path) {
    for d in ["keep", "gone", "docs/deep"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("keep/same.txt"), b"unchanged\n").unwrap();
    fs::write(src.join("keep/edited.txt"), b"before\n").unwrap();
    fs::write(src.join("keep/removed.txt"), b"bye\n").unwrap();
    fs::write(src.join("keep/becomes-dir"), b"a file first\n").unwrap();
    fs::write(src.join("gone/a"), b"a\n").unwrap();
    fs::write(src.join("gone/b"), b"b\n").unwrap();
    write_random_file(&src.join("docs/deep/big.bin"), 5, 3 << 20);
    std::os::unix::fs::symlink("same.txt", src.join("keep/link")).unwrap();
}

fn change_tree(src: &Path) {
    fs::write(src.join("keep/edited.txt"), b"after, longer\n").unwrap();
    fs::remove_file(src.join("keep/removed.txt")).unwrap();
    fs::remove_file(src.join("keep/becomes-dir")).unwrap();
    fs::create_dir(src.join("keep/becomes-dir")).unwrap();
    fs::write(src.join("keep/becomes-dir/inside"), b"x\n").unwrap();
    fs::remove_dir_all(src.join("gone")).unwrap();
    fs::create_dir_all(src.join("new/sub")).unwrap();
    fs::write(src.join("new/sub/n.txt"), b"new\n").unwrap();
    fs::remove_file(src.join("keep/link")).unwrap();
    std::os::unix::fs::symlink("edited.txt", src.join("keep/link")).unwrap();
    // One byte changed in the middle of the large file.
    let f = fs::OpenOptions::new().write(true).open(src.join("docs/deep/big.bin")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"!", 1 << 20).unwrap();
}

/// `diff -rq` of two trees as "<c> <relative path>" lines: + only in b,
/// - only in a, M content differs, T type differs.
fn gnu_diff(a: &Path, b: &Path) -> BTreeSet<String> {
    let out = Command::new("diff").arg("-rq").arg("--no-dereference").arg(a).arg(b).output();
    let out = out.expect("GNU diff is installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let rel = |p: &str, root: &Path| p.strip_prefix(&format!("{}/", root.display())).unwrap().to_string();
    let mut set = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Only in ") {
            let (dir, name) = rest.split_once(": ").unwrap();
            let (sign, root) = if Path::new(dir).starts_with(b) { ('+', b) } else { ('-', a) };
            let p = format!("{dir}/{name}");
            set.insert(format!("{sign} {}", rel(&p, root)));
        } else if let Some(rest) =
            line.strip_prefix("Files ").or_else(|| line.strip_prefix("Symbolic links "))
        {
            let (pa, _) = rest.split_once(" and ").unwrap();
            set.insert(format!("M {}", rel(pa, a)));
        } else if let Some(rest) = line.strip_prefix("File ") {
            let (pa, _) = rest.split_once(" is a ").unwrap();
            set.insert(format!("T {}", rel(pa, a)));
        } else {
            panic!("unexpected diff line: {line}");
        }
    }
    set
}

#[test]
fn diff_ls_find_and_dump_agree_with_restores() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    first_tree(&src);
    let r = &repo;
    run_ok(&env, &[&"--repo", r, &"init"]);
    let id_of = |out: &str| json_lines(out).last().unwrap()["snapshot_id"].as_str().unwrap().to_string();
    let a = id_of(&run_ok(&env, &[&"--repo", r, &"--json", &"backup", &src]));
    change_tree(&src);
    let b = id_of(&run_ok(&env, &[&"--repo", r, &"--json", &"backup", &src]));

    // Two restores, compared by GNU diff and by arch diff.
    let (ra, rb) = (base.join("ra"), base.join("rb"));
    run_ok(&env, &[&"--repo", r, &"--json", &"restore", &a, &"--target", &ra]);
    let restored = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"restore", &b, &"--target", &rb]));
    assert!(restored.last().unwrap().is_object(), "restore --json ends with its result");
    let (ta, tb) = (restored_path(&ra, &src), restored_path(&rb, &src));
    assert_trees_equal(&src, &tb);
    let expected = gnu_diff(&ta, &tb);
    let prefix = format!("{}/", src.display());
    let mut ours = BTreeSet::new();
    for l in run_ok(&env, &[&"--repo", r, &"diff", &a, &b]).lines() {
        let Some((c, path)) = l.split_once(char::is_whitespace) else { continue };
        let Some(rel) = path.trim_start().strip_prefix(&prefix) else { continue };
        let rel = rel.trim_end_matches('/');
        // diff -r names an added, removed or retyped directory, not what
        // is in it; and it compares content only (no directories, no
        // metadata).
        let parent_listed = |sign: &str| {
            Path::new(rel).ancestors().skip(1).any(|p| {
                let p = p.display();
                ours.contains(&format!("{sign} {p}")) || ours.contains(&format!("T {p}"))
            })
        };
        match c {
            "+" | "-" if !parent_listed(c) => {
                ours.insert(format!("{c} {rel}"));
            }
            "M" if !tb.join(rel).is_dir() => {
                ours.insert(format!("M {rel}"));
            }
            "T" => {
                ours.insert(format!("T {rel}"));
            }
            _ => {}
        }
    }
    assert_eq!(ours, expected, "arch diff vs diff -r of the restores");
    assert!(expected.len() >= 6, "the change set covers every kind: {expected:?}");

    // ls -R --json lists exactly the restored tree, with sizes.
    let listed = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"ls", &"-R", &b]));
    let mut from_ls = BTreeSet::new();
    for v in &listed {
        let p = v["path"].as_str().unwrap();
        let on_disk = rb.join(p.trim_start_matches('/'));
        let md = fs::symlink_metadata(&on_disk).unwrap_or_else(|e| panic!("{p} listed, not restored: {e}"));
        if md.is_file() {
            assert_eq!(v["size"], md.len(), "{p}");
        }
        from_ls.insert(on_disk);
    }
    let on_disk: BTreeSet<_> = walk(&rb).into_iter().map(|(p, _)| p).filter(|p| p != &rb).collect();
    assert_eq!(from_ls, on_disk, "ls -R vs the restored tree");

    // find --json: every *.txt of snapshot b, and only those, exist restored.
    let found = json_lines(&run_ok(&env, &[&"--repo", r, &"--json", &"find", &"*.txt", &"--snapshot", &b]));
    let found: BTreeSet<_> =
        found.iter().map(|v| rb.join(v["path"].as_str().unwrap().trim_start_matches('/'))).collect();
    let txt: BTreeSet<_> =
        on_disk.iter().filter(|p| p.extension() == Some(OsStr::new("txt"))).cloned().collect();
    assert_eq!(found, txt, "find vs the restored tree");

    // dump of a directory as tar, extracted by GNU tar = a restore of it.
    let tarball = base.join("keep.tar");
    let spec = format!("{b}:{}/keep", src.display());
    run_ok(&env, &[&"--repo", r, &"dump", &spec, &"--target", &tarball]);
    let x = base.join("x");
    fs::create_dir(&x).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&x).status().unwrap().success());
    let rk = base.join("rk");
    run_ok(&env, &[&"--repo", r, &"restore", &spec, &"--target", &rk]);
    // The dumped directory's own entry is not in the tar: compare below it.
    set_times(&x, past_time(0), true);
    set_times(&rk, past_time(0), true);
    fs::set_permissions(&x, fs::metadata(&rk).unwrap().permissions()).unwrap();
    assert_trees_equal(&rk, &x);
}
