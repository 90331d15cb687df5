//! Restore options: `<snapshot>:<subpath>`, include/exclude patterns,
//! overwrite modes, `--delete`, `--dry-run`, `--verify`, and resuming a
//! restore killed with SIGKILL.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arch_archiver::{
    Backup, NoProgress, OverwriteMode, Progress, Repository, Restore, RestoreOptions, RestoreResult, Snapshot,
};

use crate::common::*;

struct Fixture {
    _t: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    repo: Repository,
    snap: Snapshot,
}

fn fixture() -> Fixture {
    let (t, base) = tempdir();
    let src = base.join("src");
    build_fixture(&src);
    let repo = init_repo(&base.join("repo"));
    let snap = Backup::new(&repo, [&src]).run().expect("backup").snapshot;
    Fixture { _t: t, base, src, repo, snap }
}

fn restore(f: &Fixture, target: &Path, opts: RestoreOptions) -> RestoreResult {
    Restore::new(&f.repo, &f.snap, target).options(opts).run().expect("restore")
}

fn snap_path(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// Regular files under `dir`, relative, sorted.
fn rel_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .filter(|(_, md)| !md.is_dir())
        .map(|(p, _)| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn subpath_restores_a_directory_content_into_the_target() {
    let f = fixture();
    let target = f.base.join("t-docs");
    let r = restore(&f, &target, RestoreOptions::default().subpath(snap_path(&f.src.join("docs"))));
    assert_trees_equal(&f.src.join("docs"), &target);
    assert_eq!(r.files, 4, "{r:?}");

    // A file lands at target/<its name>.
    let target = f.base.join("t-file");
    restore(&f, &target, RestoreOptions::default().subpath(snap_path(&f.src.join("docs/hello.txt"))));
    assert_eq!(fs::read(target.join("hello.txt")).unwrap(), b"hello, world\n");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 1);

    // A path that is not in the snapshot is an error naming it.
    let err = Restore::new(&f.repo, &f.snap, f.base.join("t-none"))
        .options(RestoreOptions::default().subpath(snap_path(&f.src.join("nope"))))
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("does not exist"), "{err}");
}

#[test]
fn include_and_exclude_patterns() {
    let f = fixture();
    // Excludes: by name at any depth, and anchored at the snapshot root.
    let target = f.base.join("t-exc");
    let anchored = format!("{}/links", f.src.display());
    restore(&f, &target, RestoreOptions::default().exclude("data").exclude(&anchored).iexclude("*.MD"));
    let restored = restored_path(&target, &f.src);
    assert!(!restored.join("data").exists() && !restored.join("links").exists());
    assert!(!restored.join("docs/nested/deeper/deepest/leaf.md").exists());
    assert!(restored.join("docs/nested/deeper/deepest").is_dir());
    assert_trees_equal_except(&f.src.join("bin"), &restored.join("bin"), &[]);
    assert_eq!(fs::read(restored.join("docs/hello.txt")).unwrap(), b"hello, world\n");

    // Includes: matching entries plus their parents, nothing else.
    let target = f.base.join("t-inc");
    let r = restore(&f, &target, RestoreOptions::default().include("*.txt"));
    let restored = restored_path(&target, &f.src);
    let files = rel_files(&restored);
    assert!(files.iter().all(|p| p.ends_with(".txt")), "{files:?}");
    for want in ["docs/hello.txt", "docs/lines.txt", "private/secret.txt", "empty.txt", "readonly.txt"] {
        assert!(files.contains(&want.to_string()), "{want} missing from {files:?}");
    }
    assert!(!restored.join("data").exists() && !restored.join("empty_dir").exists());
    assert_eq!(r.files as usize, files.len());
    // A parent directory that was created gets its metadata.
    let (a, b) =
        (fs::metadata(f.src.join("private")).unwrap(), fs::metadata(restored.join("private")).unwrap());
    assert_eq!((a.mode(), a.mtime(), a.mtime_nsec()), (b.mode(), b.mtime(), b.mtime_nsec()));

    // A matching directory comes with everything below; case-insensitive
    // variants; an exclude wins over an include.
    let target = f.base.join("t-dir");
    restore(&f, &target, RestoreOptions::default().iinclude("DOCS").include("tool.sh").exclude("lines.txt"));
    let restored = restored_path(&target, &f.src);
    assert_eq!(
        rel_files(&restored),
        ["bin/tool.sh", "docs/empty-too", "docs/hello.txt", "docs/nested/deeper/deepest/leaf.md"]
    );

    let bad = Restore::new(&f.repo, &f.snap, f.base.join("t-bad"))
        .options(RestoreOptions::default().include("a["))
        .run();
    assert!(bad.unwrap_err().to_string().contains("include pattern"));
}

/// Restores once, changes the target, restores again with `mode`.
fn over(
    mode: Option<OverwriteMode>,
    change: impl FnOnce(&Path),
) -> (Fixture, PathBuf, Result<RestoreResult, String>) {
    let f = fixture();
    let target = f.base.join("target");
    restore(&f, &target, RestoreOptions::default());
    let restored = restored_path(&target, &f.src);
    change(&restored);
    let mut opts = RestoreOptions::default();
    if let Some(m) = mode {
        opts = opts.overwrite_mode(m);
    }
    let r = Restore::new(&f.repo, &f.snap, &target).options(opts).run().map_err(|e| e.to_string());
    (f, restored, r)
}

fn local_edit(restored: &Path) {
    fs::write(restored.join("docs/hello.txt"), b"local edit").unwrap();
    fs::remove_file(restored.join("docs/lines.txt")).unwrap();
}

#[test]
fn overwrite_modes() {
    // No mode: a non-empty target is refused.
    let (_f, _, r) = over(None, |_| {});
    assert!(r.unwrap_err().contains("not empty"));

    // never: existing files are kept, missing ones restored.
    let (f, restored, r) = over(Some(OverwriteMode::Never), local_edit);
    let r = r.unwrap();
    assert_eq!(fs::read(restored.join("docs/hello.txt")).unwrap(), b"local edit");
    assert_eq!(
        fs::read(restored.join("docs/lines.txt")).unwrap(),
        fs::read(f.src.join("docs/lines.txt")).unwrap()
    );
    assert_eq!(r.written, fs::metadata(f.src.join("docs/lines.txt")).unwrap().len());

    // always: everything is rewritten.
    let (f, restored, r) = over(Some(OverwriteMode::Always), local_edit);
    let r = r.unwrap();
    assert_trees_equal(&f.src, &restored);
    assert_eq!(r.written, r.bytes);

    // if-newer: an edit newer than the snapshot is kept, an older one replaced.
    let (f, restored, r) = over(Some(OverwriteMode::IfNewer), |d| {
        local_edit(d);
        fs::write(d.join("bin/tool.sh"), b"older edit").unwrap();
        set_times(&d.join("bin/tool.sh"), filetime::FileTime::from_unix_time(1000, 0), false);
    });
    r.unwrap();
    assert_eq!(fs::read(restored.join("docs/hello.txt")).unwrap(), b"local edit");
    assert_eq!(fs::read(restored.join("bin/tool.sh")).unwrap(), fs::read(f.src.join("bin/tool.sh")).unwrap());
    assert!(restored.join("docs/lines.txt").exists());

    // if-changed: only the chunks that differ are written, even when size
    // and mtime were kept by the corruption.
    let (f, restored, r) = over(Some(OverwriteMode::IfChanged), |d| {
        let p = d.join("data/random-6m.bin");
        let md = fs::metadata(&p).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&p).unwrap();
        file.write_all_at(b"XXXX", 3_000_000).unwrap();
        drop(file);
        set_times(&p, filetime::FileTime::from_last_modification_time(&md), false);
        local_edit(d);
    });
    let r = r.unwrap();
    assert_trees_equal(&f.src, &restored);
    assert!(r.written > 4 && r.written < 6_000_000 + 200_000, "{r:?}");
    assert!(r.skipped >= r.files - 4, "{r:?}");
}

#[test]
fn delete_removes_what_the_snapshot_does_not_have() {
    let (f, restored, r) = over(None, |_| {});
    drop(r);
    let target = f.base.join("target");
    fs::write(restored.join("docs/extra.txt"), b"x").unwrap();
    fs::write(restored.join("docs/extra.bin"), b"x").unwrap();
    fs::create_dir_all(restored.join("extra-dir/sub")).unwrap();
    fs::write(f.base.join("outside.txt"), b"x").unwrap();

    // Dry run: counted, nothing removed.
    let opts = || RestoreOptions::default().overwrite_mode(OverwriteMode::IfChanged).delete(true);
    let r = restore(&f, &target, opts().include("*.txt").dry_run(true));
    assert_eq!(r.deleted, 1, "{r:?}");
    assert!(restored.join("docs/extra.txt").exists());

    // With an include, only matching extras go.
    let r = restore(&f, &target, opts().include("*.txt"));
    assert_eq!(r.deleted, 1);
    assert!(!restored.join("docs/extra.txt").exists() && restored.join("docs/extra.bin").exists());

    // An excluded extra is outside what is being restored: kept.
    let r = restore(&f, &target, opts().exclude("extra.bin"));
    assert_eq!(r.deleted, 1, "{r:?}");
    assert!(!restored.join("extra-dir").exists() && restored.join("docs/extra.bin").exists());

    let r = restore(&f, &target, opts());
    assert_eq!(r.deleted, 1, "{r:?}");
    assert_eq!(r.written, 0, "{r:?}");
    assert_trees_equal(&f.src, &restored);
    assert!(f.base.join("outside.txt").exists());
}

#[test]
fn dry_run_writes_nothing() {
    let f = fixture();
    let target = f.base.join("never-created");
    let r = restore(&f, &target, RestoreOptions::default().dry_run(true));
    assert!(!target.exists());
    assert!(r.files > 10 && r.written == r.bytes && r.bytes > 30 << 20, "{r:?}");

    let full = restore(&f, &target, RestoreOptions::default());
    let restored = restored_path(&target, &f.src);
    local_edit(&restored);
    let r = restore(
        &f,
        &target,
        RestoreOptions::default().overwrite_mode(OverwriteMode::IfChanged).dry_run(true),
    );
    assert_eq!(fs::read(restored.join("docs/hello.txt")).unwrap(), b"local edit");
    assert!(!restored.join("docs/lines.txt").exists());
    let lines = fs::metadata(f.src.join("docs/lines.txt")).unwrap().len();
    assert_eq!(r.written, lines + 13, "{r:?}");
    assert_eq!(r.files, full.files);
}

/// Corrupts a file once every byte has been written, before the verify pass.
struct CorruptAfter {
    total: u64,
    seen: AtomicU64,
    path: PathBuf,
}

impl Progress for CorruptAfter {
    fn bytes_processed(&self, n: u64) {
        if self.seen.fetch_add(n, Ordering::SeqCst) + n == self.total {
            let f = fs::OpenOptions::new().write(true).open(&self.path).unwrap();
            f.write_all_at(b"corrupt", 1000).unwrap();
        }
    }
}

#[test]
fn verify_rereads_and_catches_a_corrupted_file() {
    let f = fixture();
    let target = f.base.join("t-ok");
    let r = restore(&f, &target, RestoreOptions::default().verify(true));
    assert!(r.verify_failures.is_empty(), "{:?}", r.verify_failures);
    assert_eq!(r.verified, r.files - 1, "every file but the second hardlink name");

    let target = f.base.join("t-bad");
    let planned = restore(&f, &f.base.join("dry"), RestoreOptions::default().dry_run(true));
    let victim = restored_path(&target, &f.src).join("data/random-1m.bin");
    let sink =
        Arc::new(CorruptAfter { total: planned.written, seen: AtomicU64::new(0), path: victim.clone() });
    let r = Restore::new(&f.repo, &f.snap, &target)
        .options(RestoreOptions::default().verify(true))
        .progress(sink)
        .run()
        .expect("restore");
    assert_eq!(r.verify_failures.len(), 1, "{:?}", r.verify_failures);
    assert_eq!(r.verify_failures[0].path, victim);
    assert!(r.verify_failures[0].message.contains("differs"), "{:?}", r.verify_failures);
    let _ = NoProgress;
}

fn json(out: &str) -> serde_json::Value {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or_else(|| panic!("no summary in {out}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn cli_subpath_filters_verify_and_json() {
    let f = fixture();
    let env = ArchEnv::new(&f.base);
    let repo = f.base.join("repo");
    let spec = format!("latest:{}/docs", f.src.display());
    let t1 = f.base.join("cli-docs");
    let run =
        env.run(&args(&[&"--repo", &repo, &"--json", &"restore", &spec, &"--target", &t1, &"--verify"]));
    run.ok("restore subpath");
    let s = json(&run.stdout);
    assert_eq!(s["files"], 4);
    assert_eq!(s["verified"], 4);
    assert_eq!(s["verify_failures"].as_array().unwrap().len(), 0);
    assert_trees_equal(&f.src.join("docs"), &t1);

    // Non-empty target without --overwrite: refused.
    env.run(&args(&[&"--repo", &repo, &"restore", &spec, &"--target", &t1]))
        .expect_code(1, "non-empty target");

    // --overwrite if-changed after a local edit, with --delete and -e.
    fs::write(t1.join("hello.txt"), b"edited").unwrap();
    fs::write(t1.join("extra"), b"x").unwrap();
    let run = env.run(&args(&[
        &"--repo",
        &repo,
        &"--json",
        &"restore",
        &spec,
        &"--target",
        &t1,
        &"--overwrite",
        &"if-changed",
        &"--delete",
        &"--exclude",
        &"lines.txt",
        &"--dry-run",
    ]));
    run.ok("dry run");
    let s = json(&run.stdout);
    assert_eq!(
        (s["bytes_written"].as_u64(), s["deleted"].as_u64(), s["dry_run"].as_bool()),
        (Some(13), Some(1), Some(true))
    );
    assert!(t1.join("extra").exists());
    let run = env.run(&args(&[
        &"--repo",
        &repo,
        &"restore",
        &spec,
        &"--target",
        &t1,
        &"--overwrite",
        &"if-changed",
        &"--delete",
    ]));
    run.ok("restore over");
    assert!(run.stdout.contains("deleted 1 entries"), "{}", run.stdout);
    assert_trees_equal(&f.src.join("docs"), &t1);

    // Includes from the command line.
    let t2 = f.base.join("cli-inc");
    env.run(&args(&[
        &"--repo",
        &repo,
        &"restore",
        &"latest",
        &"--target",
        &t2,
        &"-i",
        &"*.sh",
        &"--numeric-id",
    ]))
    .ok("include");
    assert_eq!(rel_files(&restored_path(&t2, &f.src)), ["bin/tool.sh"]);
    let _ = OsStr::new("");
}

/// In if-changed mode, a symlink or a hardlink to something outside the
/// target is replaced, never written through.
#[test]
fn if_changed_never_writes_through_links_out_of_the_target() {
    let (f, restored, r) = over(None, |_| {});
    drop(r);
    let target = f.base.join("target");
    fs::write(f.base.join("victim-1"), b"victim").unwrap();
    fs::write(f.base.join("victim-2"), b"victim").unwrap();
    fs::create_dir(f.base.join("victim-dir")).unwrap();
    fs::remove_file(restored.join("docs/hello.txt")).unwrap();
    std::os::unix::fs::symlink(f.base.join("victim-1"), restored.join("docs/hello.txt")).unwrap();
    fs::remove_file(restored.join("bin/tool.sh")).unwrap();
    fs::hard_link(f.base.join("victim-2"), restored.join("bin/tool.sh")).unwrap();
    fs::remove_dir_all(restored.join("docs/nested")).unwrap();
    std::os::unix::fs::symlink(f.base.join("victim-dir"), restored.join("docs/nested")).unwrap();
    restore(&f, &target, RestoreOptions::default().overwrite_mode(OverwriteMode::IfChanged));
    assert_eq!(fs::read(f.base.join("victim-1")).unwrap(), b"victim");
    assert_eq!(fs::read(f.base.join("victim-2")).unwrap(), b"victim");
    assert_eq!(fs::read_dir(f.base.join("victim-dir")).unwrap().count(), 0);
    assert_trees_equal(&f.src, &restored);
}

/// A CLI restore killed with SIGKILL half way is finished by running it
/// again with `--overwrite if-changed`, which writes only what is missing.
#[test]
fn a_killed_restore_is_resumed_with_if_changed() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40u64 {
        write_random_file(&src.join(format!("f{i:02}.bin")), 100 + i, 5 << 20);
    }
    let repo_dir = base.join("repo");
    let repo = init_repo(&repo_dir);
    Backup::new(&repo, [&src]).run().expect("backup");
    let total = 40u64 * (5 << 20);
    let env = ArchEnv::new(&base);
    let target = base.join("target");
    let restore_args = args(&[&"--repo", &repo_dir, &"restore", &"latest", &"--target", &target]);
    let mut child = env.spawn(&restore_args);
    // Kill once some content is on disk (allocated blocks, as files are
    // created at full size up front, sparse).
    let restored = restored_path(&target, &src);
    let started = std::time::Instant::now();
    loop {
        let on_disk: u64 =
            if restored.exists() { walk(&restored).iter().map(|(_, md)| md.blocks() * 512).sum() } else { 0 };
        if on_disk > 20 << 20 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the restore finished before it could be killed");
        assert!(started.elapsed().as_secs() < 60, "restore made no progress");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut resume = restore_args.clone();
    resume.extend(args(&[&"--overwrite", &"if-changed", &"--json", &"--verify"]));
    let run = env.run(&resume);
    run.ok("resumed restore");
    let s = json(&run.stdout);
    assert_trees_equal(&src, &restored);
    let written = s["bytes_written"].as_u64().unwrap();
    assert!(written < total, "the rerun wrote {written} bytes of {total}");
    assert_eq!(s["bytes"].as_u64(), Some(total));
    assert_eq!(s["verified"].as_u64(), Some(40));
}
