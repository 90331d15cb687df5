//! End-to-end tests that drive the `arch` binary the way a user (or cron)
//! does, and check what that user would check: restored bytes and metadata,
//! exit codes, one-line messages, what ends up in the repository.
//!
//! Every command runs with ARCH_* cleared and HOME/XDG_DATA_HOME inside the
//! test's temp dir (see `ArchEnv`), so the real home is never touched.
//! `arch init` uses the production key derivation (argon2id, 64 MiB), so
//! each command that opens a repository costs a fraction of a second: the
//! tests keep the number of invocations small.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use arch_archiver::BlobType;

use crate::common::*;

fn init(env: &ArchEnv, repo: &Path) {
    let r = env.run(&args(&[&"--repo", &repo, &"init"]));
    r.ok("init");
    assert!(r.stdout.contains("created repository"), "init says what it did: {}", r.stdout);
    assert!(repo.join("config").is_file(), "init wrote no config");
}

fn snapshots_json(env: &ArchEnv, repo: &Path) -> Vec<serde_json::Value> {
    let r = env.run(&args(&[&"--repo", &repo, &"snapshots", &"--json"]));
    r.ok("snapshots --json");
    serde_json::from_str::<Vec<serde_json::Value>>(&r.stdout)
        .unwrap_or_else(|e| panic!("snapshots --json is not a JSON array ({e}): {}", r.stdout))
}

/// The JSON line `backup --json` prints.
fn backup_json(env: &ArchEnv, repo: &Path, src: &Path) -> serde_json::Value {
    let r = env.run(&args(&[&"--repo", &repo, &"backup", &"--json", &src]));
    r.ok("backup --json");
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("backup --json is not JSON ({e}): {}", r.stdout))
}

/// Asserts an error run printed exactly one non-empty line on stderr.
fn one_line_error(r: &Run, what: &str) {
    let lines: Vec<_> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: want one line on stderr, got: {:?}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{what}: panic: {}", r.stderr);
}

fn small_tree(dir: &Path) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("hello.txt"), b"hello\n").unwrap();
    fs::write(dir.join("sub/data.bin"), random_bytes(5, 100_000)).unwrap();
}

#[test]
fn backup_and_restore_round_trip() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    build_fixture(&src);
    init(&env, &repo);

    let r = env.run(&args(&[&"--repo", &repo, &"backup", &src]));
    r.ok("backup");
    assert!(r.stdout.contains("snapshot "), "backup output: {}", r.stdout);

    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn snapshots_json_lists_tags_and_host() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    small_tree(&src);
    init(&env, &repo);
    let r = env.run(&args(&[
        &"--repo",
        &repo,
        &"backup",
        &"--json",
        &"--tag",
        &"a",
        &"--tag",
        &"b",
        &"--host",
        &"H-test-host",
        &src,
    ]));
    r.ok("backup with tags");
    let made: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("backup --json ({e}): {}", r.stdout));

    let list = snapshots_json(&env, &repo);
    assert_eq!(list.len(), 1, "{list:?}");
    let s = &list[0];
    assert_eq!(s["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(s["hostname"], "H-test-host");
    assert_eq!(s["paths"], serde_json::json!([src.to_str().unwrap()]));
    let id = s["id"].as_str().expect("id is a string");
    assert_eq!(id.len(), 64, "id {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "id {id}");
    assert_eq!(s["short_id"], id[..8]);
    assert_eq!(made["snapshot_id"], id, "backup --json names the snapshot");
    assert_eq!(s["summary"]["files_new"], 2);
    assert_eq!(s["summary"]["bytes_read"], 100_006);

    // The short id selects the snapshot for a restore.
    let target = base.join("restore");
    env.run(&args(&[&"--repo", &repo, &"restore", &&id[..8], &"--target", &target]))
        .ok("restore by short id");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn unchanged_and_duplicate_data_add_almost_nothing() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    build_fixture(&src);
    init(&env, &repo);

    backup_json(&env, &repo, &src);
    let first = dir_size(&repo);
    let again = backup_json(&env, &repo, &src);
    let second = dir_size(&repo);
    assert!(
        second - first < 64 << 10,
        "second backup of an unchanged tree grew the repository by {} bytes",
        second - first
    );
    // The second snapshot still covers every file (whether it re-read them
    // or reused the first snapshot's content lists).
    let file_bytes: u64 = walk(&src).iter().filter(|(_, m)| m.is_file()).map(|(_, m)| m.len()).sum();
    assert_eq!(again["bytes_total"], file_bytes, "{again}");
    assert_eq!(object_count(&repo, "snapshots"), 2);

    // 50 copies of one 2 MB random file cost about one copy.
    let copies = base.join("copies");
    fs::create_dir(&copies).unwrap();
    let one = random_bytes(77, 2 << 20);
    for i in 0..50 {
        fs::write(copies.join(format!("copy-{i:02}.bin")), &one).unwrap();
    }
    let before = dir_size(&repo);
    let s = backup_json(&env, &repo, &copies);
    let grown = dir_size(&repo) - before;
    assert_eq!(s["files_new"], 50, "{s}");
    assert_eq!(s["bytes_read"], 50 * one.len() as u64, "{s}");
    assert!(
        grown < one.len() as u64 * 3 / 2,
        "50 copies of {} bytes grew the repository by {grown} bytes",
        one.len()
    );
}

#[test]
fn repository_holds_no_plaintext() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    let marker = format!("arch-marker-{}", random_hex());
    let m = marker.as_bytes();
    fs::create_dir_all(&src).unwrap();

    // Compressible: the marker repeated in text.
    let text: String = (0..5000).map(|i| format!("{i} {marker}\n")).collect();
    fs::write(src.join("notes.txt"), &text).unwrap();
    // Incompressible: random bytes with the marker planted every 64 KiB.
    let mut noise = random_bytes(11, 2 << 20);
    for off in (0..noise.len() - m.len()).step_by(64 << 10) {
        noise[off..off + m.len()].copy_from_slice(m);
    }
    fs::write(src.join("noise.bin"), &noise).unwrap();
    // In a file name, a directory name and a symlink target.
    fs::write(src.join(format!("{marker}.txt")), b"named").unwrap();
    fs::create_dir(src.join(format!("dir-{marker}"))).unwrap();
    std::os::unix::fs::symlink(format!("../{marker}"), src.join("link")).unwrap();
    // The detector itself works.
    assert!(contains_bytes(&fs::read(src.join("noise.bin")).unwrap(), m));

    init(&env, &repo);
    env.run(&args(&[&"--repo", &repo, &"backup", &src])).ok("backup");
    let files = files_under(&repo);
    assert!(files.len() > 4, "repository files: {files:?}");
    for (path, _) in &files {
        let bytes = fs::read(path).unwrap();
        assert!(!contains_bytes(&bytes, m), "{} contains the plaintext marker", path.display());
    }
    // The data is in there all the same.
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn errors_have_exit_codes_and_one_line_messages() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    small_tree(&src);
    init(&env, &repo);
    env.run(&args(&[&"--repo", &repo, &"backup", &src])).ok("backup");

    // init over an existing repository: 1, and the repository is unchanged.
    let r = env.run(&args(&[&"--repo", &repo, &"init"]));
    r.expect_code(1, "init of an existing repository");
    one_line_error(&r, "init of an existing repository");
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(object_count(&repo, "keys"), 1, "a second init added a key");

    // Wrong password: 12, naming the repository.
    let r =
        env.clone().var("ARCH_PASSWORD", "not the password").run(&args(&[&"--repo", &repo, &"snapshots"]));
    r.expect_code(12, "wrong password");
    one_line_error(&r, "wrong password");
    assert!(
        r.stderr.contains(repo.to_str().unwrap()),
        "wrong password message does not name the repository: {}",
        r.stderr
    );

    // No repository there: 10, and nothing is created.
    let missing = base.join("nonexistent");
    let r = env.run(&args(&[&"--repo", &missing, &"snapshots"]));
    r.expect_code(10, "missing repository");
    one_line_error(&r, "missing repository");
    assert!(r.stderr.contains("nonexistent"), "{}", r.stderr);
    assert!(!missing.exists(), "a failed open created {}", missing.display());

    // Unknown snapshot: 1, clear message, no target created.
    let target = base.join("never-created");
    let r = env.run(&args(&[&"--repo", &repo, &"restore", &"deadbeef", &"--target", &target]));
    r.expect_code(1, "unknown snapshot");
    one_line_error(&r, "unknown snapshot");
    assert!(
        r.stderr.contains("deadbeef") && r.stderr.contains("no snapshot"),
        "unknown snapshot message: {}",
        r.stderr
    );
    assert!(!target.exists(), "a failed restore created its target");

    // Backing up a path that does not exist: 1, naming it; no snapshot.
    let ghost = base.join("no-such-dir");
    let r = env.run(&args(&[&"--repo", &repo, &"backup", &ghost]));
    r.expect_code(1, "backup of a missing path");
    one_line_error(&r, "backup of a missing path");
    assert!(r.stderr.contains(ghost.to_str().unwrap()), "message does not name the path: {}", r.stderr);
    assert_eq!(object_count(&repo, "snapshots"), 1, "a snapshot was written");

    // No password anywhere and no terminal: 1, saying how to give one.
    let r = env.clone().unset("ARCH_PASSWORD").run(&args(&[&"--repo", &repo, &"snapshots"]));
    r.expect_code(1, "no password");
    one_line_error(&r, "no password");
    assert!(r.stderr.contains("ARCH_PASSWORD"), "{}", r.stderr);
}

#[test]
fn restore_refuses_a_non_empty_target_unless_told() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("target"));
    small_tree(&src);
    init(&env, &repo);
    env.run(&args(&[&"--repo", &repo, &"backup", &src])).ok("backup");

    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), b"precious").unwrap();
    // A stale copy of a file the snapshot has, with other content and mode.
    let restored = restored_path(&target, &src);
    fs::create_dir_all(restored.join("sub")).unwrap();
    fs::write(restored.join("hello.txt"), b"stale and longer than the original").unwrap();

    let r = env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target]));
    assert_ne!(r.code, 0, "restore into a non-empty target succeeded");
    one_line_error(&r, "non-empty target");
    assert!(r.stderr.contains(target.to_str().unwrap()), "message does not name the target: {}", r.stderr);
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"precious");
    assert_eq!(
        fs::read(restored.join("hello.txt")).unwrap(),
        b"stale and longer than the original",
        "a refused restore changed the target"
    );
    assert!(!restored.join("sub/data.bin").exists());

    env.run(&args(&[
        &"--repo",
        &repo,
        &"restore",
        &"latest",
        &"--target",
        &target,
        &"--overwrite",
        &"always",
    ]))
    .ok("restore --overwrite always");
    assert_trees_equal(&src, &restored);
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"precious");
}

#[test]
fn default_repository_is_created_once_in_the_data_dir() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let src = base.join("src");
    small_tree(&src);
    let default = env.data_home().join("arch/repo");

    let r = env.run(&args(&[&"backup", &src]));
    r.ok("first backup without --repo");
    assert_eq!(r.stderr.matches("created the default repository").count(), 1, "stderr: {}", r.stderr);
    assert!(r.stderr.contains(default.to_str().unwrap()), "{}", r.stderr);
    assert!(default.join("config").is_file(), "no repository at {}", default.display());
    assert!(!base.join("home/.local").exists(), "XDG_DATA_HOME was ignored");

    // The second backup covers the whole temp dir, default repository
    // included (as `arch backup ~` does): the repository is reused, and
    // left out of the snapshot.
    let r = env.run(&args(&[&"backup", &base]));
    r.ok("second backup without --repo");
    assert!(!r.stderr.contains("created"), "stderr: {}", r.stderr);
    assert_eq!(object_count(&default, "snapshots"), 2);
    assert_eq!(object_count(&default, "keys"), 1, "a second key or repository");

    let target = base.join("restore");
    env.run(&args(&[&"restore", &"latest", &"--target", &target])).ok("restore without --repo");
    let restored = restored_path(&target, &base);
    assert_trees_equal(&src, &restored.join("src"));
    assert!(restored.join("xdg-data/arch").is_dir(), "the repository's parent is backed up");
    assert!(
        !restored.join("xdg-data/arch/repo").exists(),
        "the default repository was backed up into itself"
    );
}

#[test]
fn repository_inside_the_source_is_left_out() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let src = base.join("src");
    small_tree(&src);
    // Relative paths (the commands run in `base`): the exclusion must still
    // match the walked, absolute path.
    let repo = Path::new("src/repo");
    init(&env, &base.join(repo));
    env.run(&args(&[&"--repo", &repo, &"backup", &"src"])).ok("backup of a tree holding the repository");
    let target = base.join("restore");
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    let restored = restored_path(&target, &src);
    assert!(restored.join("hello.txt").is_file(), "source not restored");
    assert!(!restored.join("repo").exists(), "the repository was backed up into itself");
    assert_trees_equal_except(&src, &restored, &[OsStr::new("repo")]);
}

#[test]
fn password_file_and_command_work() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let repo = base.join("repo");
    init(&env, &repo);
    let no_pw = env.clone().unset("ARCH_PASSWORD");
    let snapshots = args(&[&"--repo", &repo, &"snapshots"]);

    let good = base.join("good.txt");
    fs::write(&good, format!("{PASSWORD}\nthe second line is not used\n")).unwrap();
    no_pw.clone().var("ARCH_PASSWORD_FILE", &good).run(&snapshots).ok("ARCH_PASSWORD_FILE");
    no_pw.run(&args(&[&"--repo", &repo, &"--password-file", &good, &"snapshots"])).ok("--password-file");
    // Only the first line counts.
    let second = base.join("second-line.txt");
    fs::write(&second, format!("wrong\n{PASSWORD}\n")).unwrap();
    no_pw
        .run(&args(&[&"--repo", &repo, &"--password-file", &second, &"snapshots"]))
        .expect_code(12, "password on the second line of the file");

    no_pw
        .clone()
        .var("ARCH_PASSWORD_COMMAND", format!("echo '{PASSWORD}'"))
        .run(&snapshots)
        .ok("ARCH_PASSWORD_COMMAND");
    no_pw
        .clone()
        .var("ARCH_PASSWORD_COMMAND", "echo wrong")
        .run(&snapshots)
        .expect_code(12, "ARCH_PASSWORD_COMMAND with a wrong password");
}

#[test]
fn large_tree_round_trip() {
    let (_t, base) = tempdir_for_many_files();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    let mut n = 0u64;
    for top in 0..20 {
        for sub in 0..20 {
            let dir = src.join(format!("d{top:02}/s{sub:02}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..50 {
                let content = match f % 10 {
                    0 => String::new(),
                    1 => "the same in every directory\n".to_string(),
                    _ => format!("file {top}/{sub}/{f}\n"),
                };
                fs::write(dir.join(format!("f{f:02}.txt")), content).unwrap();
                n += 1;
            }
        }
        write_random_file(&src.join(format!("d{top:02}/blob-a.bin")), 1000 + top, 100_000);
        write_random_file(&src.join(format!("d{top:02}/blob-b.bin")), 2000 + top, 100_000);
        n += 2;
    }
    assert_eq!(n, 20_040);
    init(&env, &repo);
    let s = backup_json(&env, &repo, &src);
    assert_eq!(s["files_new"], n, "{s}");
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn sigint_stops_a_backup_cleanly() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    fs::create_dir(&src).unwrap();
    let (n, size) = (25u64, 16u64 << 20);
    for i in 0..n {
        write_random_file(&src.join(format!("big-{i:02}.bin")), 500 + i, size);
    }
    let total = n * size;
    init(&env, &repo);

    let mut child = env.spawn(&args(&[&"--repo", &repo, &"backup", &src]));
    let start = Instant::now();
    while pack_files(&repo).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "backup ended before its first pack was seen");
        assert!(start.elapsed() < Duration::from_secs(60), "no pack after 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let signalled = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("backup still running 20 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = signalled.elapsed();
    eprintln!("backup exited {took:?} after SIGINT");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "exit status {status:?}; stderr: {stderr}");
    assert!(took < Duration::from_secs(2), "exit took {took:?} after SIGINT");
    assert!(stderr.contains("interrupted"), "stderr: {stderr}");

    assert!(snapshots_json(&env, &repo).is_empty(), "interrupted backup left a snapshot");
    assert_eq!(object_count(&repo, "snapshots"), 0);

    // The packs it stored are indexed, so the next run reuses them.
    let lib = open_repo(&repo);
    let on_disk: BTreeSet<String> = pack_files(&repo).into_keys().collect();
    let indexed: BTreeSet<String> = lib.index().all_blobs().iter().map(|l| l.pack.to_hex()).collect();
    assert!(!on_disk.is_empty());
    assert_eq!(on_disk, indexed, "packs on disk vs packs in the index");
    let kept: u64 = lib
        .index()
        .all_blobs()
        .iter()
        .filter(|l| l.blob.blob_type == BlobType::Data)
        .map(|l| u64::from(l.blob.raw_length))
        .sum();
    drop(lib);

    let s = backup_json(&env, &repo, &src);
    let added = s["bytes_added_raw"].as_u64().unwrap();
    assert!(
        added < total - kept + (1 << 20),
        "second backup added {added} bytes though {kept} of {total} were stored"
    );
    assert_eq!(snapshots_json(&env, &repo).len(), 1);
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
}
