//! The SFTP backend against a real OpenSSH server: the Backend contract,
//! and the CLI on an `sftp:` repository.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_archiver::{Backend, BackendError, FileInfo, FileKind, RemoteErrorClass, SftpBackend, SftpOptions};

use crate::common::*;
use crate::server_sftp::{keygen, SftpServer};

fn name(b: u8) -> String {
    format!("{b:02x}").repeat(32)
}

#[test]
fn sftp_backend_honours_the_contract() {
    let Some(server) = SftpServer::start() else { return };
    let (_t, dir) = tempdir();
    let root = dir.join("nested/repo");
    let b = SftpBackend::new(server.options(&root)).unwrap();
    assert!(!b.exists().unwrap());
    assert!(b.list(FileKind::Snapshot).unwrap().is_empty(), "a missing folder lists as empty");
    b.create_layout().unwrap();
    b.create_layout().unwrap(); // idempotent
    assert!(root.join("data/00").is_dir() && root.join("data/ff").is_dir() && root.join("locks").is_dir());
    assert_eq!(fs::metadata(root.join("data/ab")).unwrap().permissions().mode() & 0o777, 0o700);

    // A pack larger than one SFTP chunk and than the request window, so
    // writes and reads are split and pipelined.
    let big = random_bytes(7, 5 * 1024 * 1024 + 12345);
    let (p1, p2) = (name(0xab), name(0x01));
    b.create(FileKind::Pack, &p1, &big).unwrap();
    b.create(FileKind::Pack, &p2, b"small pack").unwrap();
    let stored = root.join("data/ab").join(&p1);
    assert_eq!(fs::read(&stored).unwrap(), big);
    assert_eq!(fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(b.read(FileKind::Pack, &p1).unwrap(), big);
    let (off, len) = (3 * 1024 * 1024 + 17, 1024 * 1024 + 3);
    assert_eq!(
        b.read_range(FileKind::Pack, &p1, off, len).unwrap(),
        &big[off as usize..(off + len) as usize]
    );
    assert_eq!(b.read_range(FileKind::Pack, &p2, 6, 4).unwrap(), b"pack");
    match b.read_range(FileKind::Pack, &p2, 6, 50) {
        Err(BackendError::ShortRead { want: 50, got: 4, .. }) => {}
        other => panic!("want a short read, got {other:?}"),
    }
    assert_eq!(
        b.list(FileKind::Pack).unwrap(),
        vec![FileInfo { name: p2.clone(), size: 10 }, FileInfo { name: p1.clone(), size: big.len() as u64 }]
    );

    // Write-once: the config refuses a second create; a content-addressed
    // object's second create is harmless and leaves the first bytes.
    b.create(FileKind::Config, "config", b"one").unwrap();
    assert!(b.exists().unwrap());
    assert!(matches!(b.create(FileKind::Config, "config", b"two"), Err(BackendError::AlreadyExists { .. })));
    assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"one");
    assert_eq!(b.list(FileKind::Config).unwrap(), vec![FileInfo { name: "config".into(), size: 3 }]);
    b.create(FileKind::Index, &name(0x33), b"index").unwrap();
    b.create(FileKind::Index, &name(0x33), b"index").unwrap();
    // Temporary and foreign files are never listed; no temp file is left.
    fs::write(root.join("index").join(format!(".tmp-{}-1", name(0x44))), b"x").unwrap();
    assert_eq!(b.list(FileKind::Index).unwrap(), vec![FileInfo { name: name(0x33), size: 5 }]);
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|(p, _)| p.file_name().unwrap().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert_eq!(leftovers.len(), 1, "only the planted temp file: {leftovers:?}");
    assert!(b.create(FileKind::Index, "../escape", b"x").is_err());

    // A folder the layout lacks (a copied repository) is made on demand.
    fs::remove_dir(root.join("data/cd")).unwrap();
    b.create(FileKind::Pack, &name(0xcd), b"x").unwrap();

    b.delete(FileKind::Pack, &p1).unwrap();
    assert!(!stored.exists());
    assert!(matches!(b.read(FileKind::Pack, &p1), Err(BackendError::NotFound { .. })));
    assert!(matches!(b.read_range(FileKind::Pack, &p1, 0, 1), Err(BackendError::NotFound { .. })));
    assert!(matches!(b.delete(FileKind::Pack, &p1), Err(BackendError::NotFound { .. })));
    assert_eq!(b.list(FileKind::Pack).unwrap().len(), 2);
}

#[test]
fn sftp_backend_serves_many_threads() {
    let Some(server) = SftpServer::start() else { return };
    let (_t, dir) = tempdir();
    let b = Arc::new(SftpBackend::new(server.options(&dir.join("repo")).connections(3)).unwrap());
    b.create_layout().unwrap();
    std::thread::scope(|s| {
        for t in 0..6u8 {
            let b = Arc::clone(&b);
            s.spawn(move || {
                for i in 0..10u8 {
                    let n = name(t * 16 + i);
                    let data = random_bytes(u64::from(t * 16 + i), 100_000 + usize::from(i) * 1000);
                    b.create(FileKind::Pack, &n, &data).unwrap();
                    assert_eq!(b.read(FileKind::Pack, &n).unwrap(), data);
                }
            });
        }
    });
    assert_eq!(b.list(FileKind::Pack).unwrap().len(), 60);
    // Three connections served six threads: sshd logged three logins.
    let sessions = server.log().matches("Accepted publickey").count();
    assert!((1..=3).contains(&sessions), "{sessions} sessions for 3 connections:\n{}", server.log());
}

#[test]
fn sftp_connection_lost_is_transient_and_the_next_call_reconnects() {
    let Some(mut server) = SftpServer::start() else { return };
    let (_t, dir) = tempdir();
    let b = SftpBackend::new(server.options(&dir.join("repo")).connections(1)).unwrap();
    b.create_layout().unwrap();
    b.create(FileKind::Snapshot, &name(1), b"first").unwrap();
    server.kill();
    let e = b.read(FileKind::Snapshot, &name(1)).unwrap_err();
    assert!(e.is_transient(), "a dead connection is transient: {e}");
    let e = b.read(FileKind::Snapshot, &name(1)).unwrap_err();
    assert!(e.is_transient(), "a refused connection (server down) is transient: {e}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    server.restart();
    assert_eq!(b.read(FileKind::Snapshot, &name(1)).unwrap(), b"first");
}

#[test]
fn sftp_wrong_key_is_one_permanent_error() {
    let Some(server) = SftpServer::start() else { return };
    let (_t, dir) = tempdir();
    let other = dir.join("other_key");
    keygen(&other);
    let mut opts = server.options(&dir.join("repo"));
    opts.key = Some(other);
    let b = SftpBackend::new(opts).unwrap();
    let e = b.exists().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, BackendError::Remote { class: RemoteErrorClass::Auth, .. }), "{e:?}");
    assert!(msg.contains("Permission denied") && msg.contains("127.0.0.1"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    // Later calls fail at once with the same error, without running ssh again.
    let sessions_before = server.log().matches("Connection from").count();
    assert!(sessions_before >= 1, "{}", server.log());
    assert!(b.list(FileKind::Key).is_err());
    assert_eq!(server.log().matches("Connection from").count(), sessions_before);
}

#[test]
fn sftp_command_option_replaces_ssh() {
    let Some(server) = SftpServer::start() else { return };
    let (_t, dir) = tempdir();
    let cmd = format!(
        "ssh {} -i '{}' -p {} {}@127.0.0.1 -s sftp",
        server.ssh_args(),
        server.key.display(),
        server.port,
        server.user
    );
    let b = SftpBackend::new(SftpOptions::new("ignored", dir.join("r").display().to_string()).command(cmd))
        .unwrap();
    b.create_layout().unwrap();
    assert!(dir.join("r/data/7f").is_dir());
    let b = SftpBackend::new(SftpOptions::new("h", "/x").command("/nonexistent/ssh -s sftp")).unwrap();
    let e = b.exists().unwrap_err().to_string();
    assert!(e.contains("/nonexistent/ssh"), "{e}");
}

/// `arch --repo URL -o ... args` against `server`.
fn cli(server: &SftpServer, repo: &Path, rest: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--repo".into(), server.url(repo).into()];
    a.extend(server.cli_options().into_iter().map(OsString::from));
    a.extend(rest.iter().map(|x| x.as_ref().to_owned()));
    a
}

fn wait_limited(child: &mut std::process::Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sftp_cli_backup_restore_check_and_a_warm_cache() {
    let Some(server) = SftpServer::start() else { return };
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    build_fixture(&src);
    env.run(&cli(&server, &repo, &[&"init"])).ok("init");
    assert!(repo.join("config").is_file() && repo.join("data/00").is_dir());
    env.run(&cli(&server, &repo, &[&"backup", &src])).ok("backup");
    let packs = pack_files(&repo);
    assert!(!packs.is_empty());
    env.run(&cli(&server, &repo, &[&"backup", &src])).ok("second backup");
    // No data pack: at most the small tree pack of the ancestors (/tmp
    // changes whenever another test makes a temp dir).
    let new: u64 = pack_files(&repo)
        .iter()
        .filter(|(n, _)| !packs.contains_key(*n))
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();
    assert!(new < 16 * 1024, "an unchanged second backup stored {new} bytes of packs");
    env.run(&cli(&server, &repo, &[&"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
    let r = env.run(&cli(&server, &repo, &[&"check", &"--read-data"]));
    r.ok("check --read-data");

    // A cold cache fills with index, snapshots and tree packs; a warm one
    // serves the same listing (that it downloads nothing again is proved
    // by the counting tests of the cache itself).
    let cache = base.join("cold-cache");
    let browse = || {
        env.run(&cli(&server, &repo, &[&"--cache-dir", &cache, &"snapshots"])).ok("snapshots");
        let r = env.run(&cli(&server, &repo, &[&"--cache-dir", &cache, &"ls", &"-R", &"latest"]));
        r.ok("ls");
        r
    };
    let listing = browse().stdout.clone();
    assert_eq!(browse().stdout, listing);
    assert!(listing.contains("random-6m.bin"), "{listing}");
    let cached = files_under(&cache);
    assert!(cached.iter().any(|(p, _)| p.to_string_lossy().contains("/index/")), "{cached:?}");
    for (p, _) in &cached {
        assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
    }
    for folder in ["/index/", "/snapshots/", "/data/"] {
        assert!(cached.iter().any(|(p, _)| p.to_string_lossy().contains(folder)), "{folder}: {cached:?}");
    }
}

#[test]
fn sftp_server_killed_mid_backup_fails_clearly_and_the_next_backup_succeeds() {
    let Some(mut server) = SftpServer::start() else { return };
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_random_file(&src.join(format!("f{i}")), 100 + i, 6 << 20);
    }
    env.run(&cli(&server, &repo, &[&"init"])).ok("init");
    let mut child = env.spawn(&cli(&server, &repo, &[&"-o", &"retry.max-time=2s", &"backup", &src]));
    let start = Instant::now();
    while pack_files(&repo).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "no pack stored within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the backup ended before the first pack was seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let st = wait_limited(&mut child, Duration::from_secs(60), "backup after the server died");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(st.code(), Some(1), "stderr: {stderr}");
    let last = stderr.lines().rfind(|l| l.starts_with("arch:")).unwrap_or_default();
    assert!(last.contains("127.0.0.1"), "the error names the server: {stderr}");
    eprintln!("note: the backup whose server died said: {last}");

    server.restart();
    env.run(&cli(&server, &repo, &[&"backup", &src])).ok("backup after the restart");
    env.run(&cli(&server, &repo, &[&"check"])).ok("check after the restart");
    let target = base.join("restore");
    env.run(&cli(&server, &repo, &[&"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn sftp_cli_wrong_key_is_one_line_and_exit_1() {
    let Some(server) = SftpServer::start() else { return };
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let other = base.join("other_key");
    keygen(&other);
    // The -o options all before the subcommand: clap replaces, not
    // extends, a global option given again after it.
    let mut a = cli(&server, &base.join("repo"), &[&"-o", &format!("sftp.key={}", other.display())]);
    a.push("init".into());
    let start = Instant::now();
    let r = env.run(&a);
    r.expect_code(1, "init with a key the server refuses");
    assert!(start.elapsed() < Duration::from_secs(20), "no long retries for a refused key");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    assert!(lines[0].contains("Permission denied") && lines[0].contains("127.0.0.1"), "{}", r.stderr);
}
