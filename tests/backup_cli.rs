//! End-to-end tests of `arch backup` features through the binary: per-file
//! errors as an unprivileged user, SIGINT that loses nothing, selection
//! options, --one-file-system, every file type, stdin sources, dry runs,
//! --skip-if-unchanged, --time, progress output (file, JSON, terminal) and
//! --quiet.
//!
//! Repositories are created through the library with the cheap KDF
//! (`init_repo`), so every later `arch` invocation opens them quickly.
//! Tests that need root (setpriv, mount, mknod) skip with a printed note
//! when not run as root; CI runs them as root.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `arch` (behind `wrapper`, e.g. setpriv, if given)
/// in the same sealed-off environment as `ArchEnv`: ARCH_* cleared,
/// HOME/XDG inside `base`, ARCH_PASSWORD set, TZ=UTC, stdin closed.
fn arch_command(base: &Path, wrapper: &[&str], args: &[OsString]) -> Command {
    let arch = env!("CARGO_BIN_EXE_arch");
    let mut c = match wrapper.split_first() {
        None => Command::new(arch),
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(arch);
            c
        }
    };
    c.args(args);
    for k in ["ARCH_PASSWORD_FILE", "ARCH_PASSWORD_COMMAND", "ARCH_REPOSITORY"] {
        c.env_remove(k);
    }
    fs::create_dir_all(base.join("home")).unwrap();
    c.env("ARCH_PASSWORD", PASSWORD)
        .env("HOME", base.join("home"))
        .env("XDG_DATA_HOME", base.join("xdg-data"))
        .env("XDG_CONFIG_HOME", base.join("xdg-config"))
        .env("XDG_CACHE_HOME", base.join("xdg-cache"))
        .env("TZ", "UTC")
        .current_dir(base)
        .stdin(Stdio::null());
    c
}

fn output_of(mut c: Command) -> Run {
    let out = c.output().expect("run the arch binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `arch args...` with `input` on stdin.
fn run_with_stdin(base: &Path, args: &[OsString], input: &[u8]) -> Run {
    let mut c = arch_command(base, &[], args);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("start arch");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    } // closed here: end of input
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Parses the one JSON summary line of `backup --json` (the last line).
fn last_json_line(r: &Run) -> serde_json::Value {
    let line = r.stdout.lines().last().unwrap_or_else(|| panic!("no stdout: {r:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {line:?}"))
}

/// The id of the snapshot a successful `backup --json` wrote.
fn snapshot_id_of(r: &Run) -> String {
    let v = last_json_line(r);
    assert_eq!(v["message_type"], "summary", "{v}");
    v["snapshot_id"].as_str().unwrap_or_else(|| panic!("no snapshot_id in {v}")).to_string()
}

fn snapshots_json(env: &ArchEnv, repo: &Path) -> Vec<serde_json::Value> {
    let r = env.run(&args(&[&"--repo", &repo, &"snapshots", &"--json"]));
    r.ok("snapshots --json");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("snapshots --json ({e}): {}", r.stdout))
}

/// Every entry under `root`, relative, directories with a trailing '/'.
fn entries(root: &Path) -> BTreeSet<String> {
    walk(root)
        .into_iter()
        .map(|(p, md)| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                format!("{rel}/")
            } else {
                rel
            }
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every file in a repository with its size (to prove nothing was written).
fn repo_listing(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut v = files_under(repo);
    v.sort();
    v
}

fn chown_tree(root: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).unwrap();
    for (p, _) in walk(root) {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Length and a streaming 64-bit hash of a file's content that skips the
/// holes the OS reports (SEEK_DATA/SEEK_HOLE): the hash covers every
/// non-zero 8-byte word with its offset, in file order, so two files get the
/// same hash exactly when (up to collisions) they have the same length and
/// bytes, however their data and holes are laid out. A 2 GiB file with a
/// few data regions hashes in milliseconds instead of reading 2 GiB of
/// zeros (which takes ~5 s on this ext4). Falls back to reading everything
/// where SEEK_DATA is unsupported.
fn stream_hash(path: &Path) -> (u64, u64) {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::io::AsRawFd;
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let len = f.metadata().unwrap().len();
    let fd = f.as_raw_fd();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |off: u64, w: u64| {
        for x in [off, w] {
            h = (h ^ x).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        let (start, end) = if data < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENXIO) => break, // only a hole up to the end
                _ => (pos, len),            // no SEEK_DATA: read it all
            }
        } else {
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            (data as u64, if hole < 0 { len } else { hole as u64 })
        };
        // Read [start, end) in 8-byte-aligned steps.
        let mut off = start & !7;
        f.seek(SeekFrom::Start(off)).unwrap();
        while off < end {
            let want = ((end - off) as usize).min(buf.len());
            let n = f.read(&mut buf[..want]).unwrap();
            if n == 0 {
                break;
            }
            buf[n..n.div_ceil(8) * 8].fill(0); // buf.len() is a multiple of 8
            for (i, w) in buf[..n.div_ceil(8) * 8].chunks_exact(8).enumerate() {
                let w = u64::from_le_bytes(w.try_into().unwrap());
                if w != 0 {
                    mix(off + 8 * i as u64, w);
                }
            }
            off += n as u64;
        }
        pos = end.max(pos + 1);
    }
    (len, h)
}

/// Makes `c` run on one CPU (the first this process may use), so a backup
/// of a few hundred megabytes lasts long enough to see progress ticks on a
/// fast machine. Children (tmux's server, its shell) inherit the affinity.
fn pin_to_one_cpu(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: set is a valid cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return;
    }
    // SAFETY: CPU_ISSET reads a valid set.
    let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&i| unsafe { libc::CPU_ISSET(i, &set) }) else {
        return;
    };
    // SAFETY: the closure only calls async-signal-safe sched_setaffinity on
    // a set built before the fork.
    unsafe {
        c.pre_exec(move || {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
            Ok(())
        });
    }
}

/// Waits for `child` up to `limit`; kills it and panics after that.
fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
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
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_pipe(p: Option<impl Read>) -> String {
    let mut s = String::new();
    if let Some(mut p) = p {
        let _ = p.read_to_string(&mut s);
    }
    s
}

// ---------------------------------------------------------------------------
// 1. Per-file errors as an unprivileged user
// ---------------------------------------------------------------------------

#[test]
fn unreadable_file_and_directory_warn_exit_3_and_keep_the_rest() {
    if !is_root() {
        eprintln!("note: skipped unreadable-file test: needs root to switch to uid 65534");
        return;
    }
    if Command::new("setpriv").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("note: skipped unreadable-file test: setpriv (util-linux) is not installed");
        return;
    }
    let (_t, base) = tempdir();
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    build_fixture(&src);
    let secret = src.join("secret.bin");
    fs::write(&secret, random_bytes(11, 5000)).unwrap();
    let locked = src.join("locked");
    fs::create_dir(&locked).unwrap();
    fs::write(locked.join("inner.txt"), b"cannot be listed\n").unwrap();
    drop(init_repo(&repo));
    fs::create_dir_all(base.join("home")).unwrap();
    chown_tree(&base, 65534, 65534);
    chmod(&secret, 0o000);
    chmod(&locked, 0o000);

    let r = output_of(arch_command(
        &base,
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        &args(&[&"--repo", &repo, &"backup", &src]),
    ));
    r.expect_code(3, "backup with an unreadable file and directory as uid 65534");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 2, "one warning line per problem, got:\n{}", r.stderr);
    for p in [&secret, &locked] {
        let about: Vec<&&str> = warnings.iter().filter(|l| l.contains(p.to_str().unwrap())).collect();
        assert_eq!(about.len(), 1, "one warning naming {}:\n{}", p.display(), r.stderr);
        assert!(
            about[0].to_lowercase().contains("permission denied"),
            "the warning gives the reason: {}",
            about[0]
        );
    }
    assert_eq!(object_count(&repo, "snapshots"), 1, "the snapshot is written despite the warnings");

    // With --json the same problems are warning objects and are listed in
    // the summary (--force: read everything again, not from the parent).
    let j = output_of(arch_command(
        &base,
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        &args(&[&"--repo", &repo, &"backup", &"--json", &"--force", &src]),
    ));
    j.expect_code(3, "backup --json as uid 65534");
    let lines: Vec<serde_json::Value> = j
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let warned: BTreeSet<String> = lines
        .iter()
        .filter(|v| v["message_type"] == "warning")
        .map(|v| v["path"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: BTreeSet<String> = [&secret, &locked].iter().map(|p| p.to_str().unwrap().to_string()).collect();
    assert_eq!(warned, want, "JSON warning objects: {}", j.stdout);
    let last = lines.last().unwrap();
    assert_eq!(last["message_type"], "summary", "{last}");
    assert_eq!(last["warnings"].as_array().map(Vec::len), Some(2), "summary warnings: {last}");
    assert!(last["snapshot_id"].is_string(), "{last}");

    // With --quiet only the warnings are printed.
    let q = output_of(arch_command(
        &base,
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        &args(&[&"--repo", &repo, &"backup", &"--quiet", &src]),
    ));
    q.expect_code(3, "backup --quiet as uid 65534");
    assert_eq!(q.stdout, "", "stdout of a quiet backup with warnings");
    assert_eq!(
        q.stderr.lines().filter(|l| l.contains("warning")).count(),
        2,
        "quiet keeps warnings: {}",
        q.stderr
    );
    assert!(!q.stderr.contains("files:") && !q.stderr.contains('%'), "quiet prints more: {}", q.stderr);

    // Restore as root: everything else is there, byte for byte.
    ArchEnv::new(&base)
        .run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target]))
        .ok("restore");
    let restored = restored_path(&target, &src);
    // The unlistable directory may be kept as an empty directory (as
    // restic does); it must not have content.
    let rlocked = restored.join("locked");
    if rlocked.exists() {
        assert!(rlocked.is_dir(), "locked restored as a non-directory");
        assert_eq!(fs::read_dir(&rlocked).unwrap().count(), 0, "the unlistable directory has content");
        // Removing it must not disturb the parent's mtime, which the
        // comparator checks.
        let md = fs::metadata(&restored).unwrap();
        fs::remove_dir(&rlocked).unwrap();
        set_times(&restored, filetime::FileTime::from_last_modification_time(&md), true);
    }
    assert_trees_equal_except(&src, &restored, &[OsStr::new("secret.bin"), OsStr::new("locked")]);
    assert!(!restored.join("secret.bin").exists(), "the unreadable file is not in the snapshot");
    assert!(!restored.join("locked/inner.txt").exists(), "the unlistable directory has no content");
}

// ---------------------------------------------------------------------------
// 2. SIGINT: exit 130 within 2 s, and the next run reuses what was uploaded
// ---------------------------------------------------------------------------

/// Starts a backup of `src`, sends `signal` as soon as a pack that was not
/// there before appears, and checks the interrupted run: exit 130 within
/// 2 s, no snapshot, no lock, no temporary file, its packs indexed, and
/// not everything stored yet. Returns the packs stored afterwards.
fn interrupt_backup(
    env: &ArchEnv,
    repo: &Path,
    src: &Path,
    signal: libc::c_int,
    name: &str,
    uninterrupted: u64,
) -> std::collections::BTreeMap<String, PathBuf> {
    let before = pack_files(repo);
    let snapshots_before = object_count(repo, "snapshots");
    let mut child = env.spawn(&args(&[&"--repo", &repo, &"backup", &src]));
    let start = Instant::now();
    while pack_files(repo).len() <= before.len() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("backup ended ({st}) before a new pack appeared: {}", read_pipe(child.stderr.take()));
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no new pack after 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let signalled = Instant::now();
    let status = wait_limited(&mut child, Duration::from_secs(20), "interrupted backup");
    let took = signalled.elapsed();
    let stderr = read_pipe(child.stderr.take());
    eprintln!("note: {name} ended the backup in {took:?} (after {:?} of backup)", signalled - start);
    assert_eq!(status.code(), Some(130), "exit code after {name} ({status}); stderr: {stderr}");
    assert!(took < Duration::from_secs(2), "{name} took {took:?} to end the backup (limit 2 s)");
    assert!(!stderr.contains("panicked"), "{stderr}");

    assert_eq!(object_count(repo, "snapshots"), snapshots_before, "an interrupted backup wrote a snapshot");
    assert_eq!(files_under(&repo.join("locks")), vec![], "the backup interrupted by {name} left its lock");
    assert_eq!(temp_files(repo), Vec::<PathBuf>::new(), "temporary files left after {name}");
    let packs = pack_files(repo);
    assert!(
        object_count(repo, "index") > 0,
        "the {} packs uploaded before {name} were not indexed",
        packs.len()
    );
    let size = dir_size(repo);
    assert!(
        size < uninterrupted,
        "{name} came after everything was stored ({size} of {uninterrupted} bytes)"
    );
    packs
}

#[test]
fn sigint_exits_130_quickly_and_the_next_backup_reuses_its_packs() {
    let (_t, base) = tempdir_for_many_files();
    let env = ArchEnv::new(&base);
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..6u64 {
        write_random_file(&src.join(format!("big-{i}.bin")), 200 + i, 50_000_000);
    }

    // What an uninterrupted backup stores.
    let reference = base.join("reference");
    drop(init_repo(&reference));
    env.run(&args(&[&"--repo", &reference, &"backup", &"--quiet", &src])).ok("uninterrupted backup");
    let uninterrupted = dir_size(&reference);
    fs::remove_dir_all(&reference).unwrap();

    let repo = base.join("repo");
    drop(init_repo(&repo));
    let packs_after_sigint = interrupt_backup(&env, &repo, &src, libc::SIGINT, "SIGINT", uninterrupted);
    // SIGTERM does the same; this run first reuses the SIGINT run's packs.
    let packs_after_sigterm = interrupt_backup(&env, &repo, &src, libc::SIGTERM, "SIGTERM", uninterrupted);
    for name in packs_after_sigint.keys() {
        assert!(packs_after_sigterm.contains_key(name), "pack {name} from the SIGINT run disappeared");
    }
    let interrupted_size = dir_size(&repo);

    env.run(&args(&[&"--repo", &repo, &"backup", &"--quiet", &src])).ok("backup after the interruption");
    assert_eq!(object_count(&repo, "snapshots"), 1);
    assert_eq!(files_under(&repo.join("locks")), vec![], "lock left after the second backup");
    assert_eq!(temp_files(&repo), Vec::<PathBuf>::new(), "temporary files left after the second backup");
    let packs_now = pack_files(&repo);
    for name in packs_after_sigterm.keys() {
        assert!(packs_now.contains_key(name), "pack {name} from the interrupted run disappeared");
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let slack = (16 << 20) * cpus + (16 << 20);
    let total = dir_size(&repo);
    eprintln!(
        "note: uninterrupted backup {uninterrupted} bytes; after two interruptions {interrupted_size}; \
         after completion {total} (overhead {} bytes, slack {slack})",
        total as i64 - uninterrupted as i64
    );
    assert!(
        total <= uninterrupted + slack,
        "repository holds {total} bytes after interrupted + completed backups; an uninterrupted backup \
         stores {uninterrupted}, allowed slack {slack} ({cpus} CPUs): the interrupted runs' packs were \
         uploaded again ({interrupted_size} bytes were stored at the interruptions)"
    );
}

// ---------------------------------------------------------------------------
// 3. Selection through the CLI
// ---------------------------------------------------------------------------

#[test]
fn compression_levels_trade_size_and_restore_the_same_bytes() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    // Log lines of words drawn at random: level 19 stores them in about a
    // tenth less than level 3 does.
    let mut rng = XorShift::new(7);
    let mut log = String::new();
    for i in 0..60_000 {
        let mut word = || rng.next_u64() % 300;
        let (a, b, c, n) = (word(), word(), word(), rng.next_u64() % 100_000);
        log.push_str(&format!("{} w{a} w{b} w{c} {n}\n", i % 977));
    }
    fs::write(src.join("app.log"), &log).unwrap();

    // init records the level backups use by default.
    let fast = base.join("fast");
    env.run(&args(&[&"--repo", &fast, &"init", &"--compression", &"fast"])).ok("init --compression fast");
    let config = run_ok(&env, &[&"--repo", &fast, &"cat", &"config"]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["compression_level"], 1, "{config}");

    // A backup may use another level than its repository's.
    let (default, max) = (base.join("default"), base.join("max"));
    drop(init_repo(&default));
    drop(init_repo(&max));
    env.run(&args(&[&"--repo", &default, &"backup", &src])).ok("backup at the repository's level");
    env.run(&args(&[&"--repo", &max, &"backup", &"--compression", &"max", &src]))
        .ok("backup --compression max");
    let (default_bytes, max_bytes) = (dir_size(&default.join("data")), dir_size(&max.join("data")));
    assert!(
        max_bytes * 20 < default_bytes * 19,
        "--compression max stored {max_bytes} bytes, the default level {default_bytes}"
    );
    let target = base.join("restore");
    env.run(&args(&[&"--repo", &max, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &src));

    // Out of range: a usage error (2) naming the option, nothing stored.
    let r = env.run(&args(&[&"--repo", &max, &"backup", &"--compression", &"23", &src]));
    r.expect_code(2, "backup --compression 23");
    assert!(r.stderr.contains("invalid compression \"23\""), "{}", r.stderr);
    assert_eq!(dir_size(&max.join("data")), max_bytes);
}

#[test]
fn exclude_options_through_the_cli() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    let put = |rel: &str, data: &[u8]| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    put("keep.txt", b"keep\n");
    put("main.o", b"object");
    put("sub/deep.o", b"object");
    put("sub/keep.c", b"int main;");
    put("Notes.TMP", b"upper-case temp");
    put("lower.tmp", b"temp");
    put("logs/app.log", b"log line\n");
    put("logs/readme.txt", b"about logs\n");
    put("skip/.nobackup", b"");
    put("skip/data.txt", b"skipped with its directory");
    put("cache/CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n");
    put("cache/blob", b"cached");
    put("fakecache/CACHEDIR.TAG", b"not a real tag");
    put("small.bin", &[7u8; 1024]);
    put("big.bin", &[7u8; 1025]);
    let exclude_file = base.join("excludes.txt");
    fs::write(&exclude_file, "# log files\n\n*.log\n   \n").unwrap();
    drop(init_repo(&repo));

    env.run(&args(&[
        &"--repo",
        &repo,
        &"backup",
        &"--exclude",
        &"*.o",
        &"--iexclude",
        &"*.tmp",
        &"--exclude-file",
        &exclude_file,
        &"--exclude-if-present",
        &".nobackup",
        &"--exclude-caches",
        &"--exclude-larger-than",
        &"1K",
        &src,
    ]))
    .ok("backup with excludes");
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_eq!(
        entries(&restored_path(&target, &src)),
        set(&[
            "fakecache/",
            "fakecache/CACHEDIR.TAG",
            "keep.txt",
            "logs/",
            "logs/readme.txt",
            "small.bin",
            "sub/",
            "sub/keep.c"
        ]),
        "restored entries after --exclude *.o --iexclude *.tmp --exclude-file (*.log) \
         --exclude-if-present .nobackup --exclude-caches --exclude-larger-than 1K"
    );
}

#[test]
fn files_from_with_comments_and_blank_lines() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, target) = (base.join("src"), base.join("repo"), base.join("restore"));
    for rel in ["a.txt", "b/c.txt", "b/d.txt", "e.txt", "f/g.txt"] {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rel.as_bytes()).unwrap();
    }
    let list = base.join("list.txt");
    fs::write(
        &list,
        format!(
            "# what to back up\n{}\n\n# a file in a subdirectory\n{}\n\n\n{}\n",
            src.join("a.txt").display(),
            src.join("b/c.txt").display(),
            src.join("f").display()
        ),
    )
    .unwrap();
    drop(init_repo(&repo));
    // A path on the command line and the list together.
    env.run(&args(&[&"--repo", &repo, &"backup", &"--files-from", &list, &src.join("e.txt")]))
        .ok("backup --files-from");
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    let restored = restored_path(&target, &src);
    let files: BTreeSet<String> = walk(&restored)
        .into_iter()
        .filter(|(_, md)| !md.is_dir())
        .map(|(p, _)| p.strip_prefix(&restored).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, set(&["a.txt", "b/c.txt", "e.txt", "f/g.txt"]), "restored files");
    for rel in ["a.txt", "b/c.txt", "e.txt", "f/g.txt"] {
        assert_eq!(fs::read(restored.join(rel)).unwrap(), rel.as_bytes(), "{rel}");
    }
}

// ---------------------------------------------------------------------------
// 4. --one-file-system
// ---------------------------------------------------------------------------

/// Unmounts on drop (lazily, so a busy mount never fails the cleanup).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let c = cstr(&self.0);
        // SAFETY: c is a valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn one_file_system_leaves_out_mounts() {
    if !is_root() {
        eprintln!("note: skipped --one-file-system test: mounting needs root");
        return;
    }
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    let mnt = src.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::write(src.join("outside.txt"), b"on the same file system\n").unwrap();
    let out = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "note: skipped --one-file-system test: mount failed (container?): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("note: skipped --one-file-system test: cannot run mount: {e}");
            return;
        }
    }
    let _mount = Mount(mnt.clone());
    fs::write(mnt.join("inside.txt"), b"on another file system\n").unwrap();
    drop(init_repo(&repo));

    let with_x = env.run(&args(&[&"--repo", &repo, &"backup", &"--json", &"-x", &src]));
    with_x.ok("backup -x");
    let without = env.run(&args(&[&"--repo", &repo, &"backup", &"--json", &"--force", &src]));
    without.ok("backup without -x");
    for (run, inside_expected, what) in [(&with_x, false, "-x"), (&without, true, "without -x")] {
        let target = base.join(format!("restore{}", inside_expected as u8));
        let id = snapshot_id_of(run);
        env.run(&args(&[&"--repo", &repo, &"restore", &id.as_str(), &"--target", &target])).ok("restore");
        let restored = restored_path(&target, &src);
        assert!(restored.join("outside.txt").is_file(), "{what}: outside.txt missing");
        assert_eq!(
            restored.join("mnt/inside.txt").exists(),
            inside_expected,
            "{what}: file inside the tmpfs mount present = {}",
            !inside_expected
        );
    }
}

// ---------------------------------------------------------------------------
// 5. Every file type
// ---------------------------------------------------------------------------

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (cstr(path), CString::new(name).unwrap());
    // SAFETY: valid C strings and a valid buffer.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (cstr(path), CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

#[test]
fn every_file_type_round_trips_and_sparse_files_stay_sparse() {
    if !is_root() {
        eprintln!("note: skipped file-type test: device nodes need root");
        return;
    }
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (misc, sparse_dir, repo) = (base.join("misc"), base.join("sparse"), base.join("repo"));
    fs::create_dir_all(misc.join("sub")).unwrap();
    fs::create_dir_all(&sparse_dir).unwrap();

    // A fifo and a character device like /dev/null.
    mkfifo(&misc.join("fifo"), 0o640);
    chmod(&misc.join("fifo"), 0o640);
    let null = misc.join("null");
    let dev = libc::makedev(1, 3);
    // SAFETY: valid path; mode and dev are plain integers.
    let rc = unsafe { libc::mknod(cstr(&null).as_ptr(), libc::S_IFCHR | 0o620, dev) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    chmod(&null, 0o620);

    // Hardlinks: three names of one inode, across directories.
    fs::write(misc.join("h1"), b"linked content\n").unwrap();
    fs::hard_link(misc.join("h1"), misc.join("h2")).unwrap();
    fs::hard_link(misc.join("h1"), misc.join("sub/h3")).unwrap();

    // Ownership that no user name stands for, on a file and on a symlink.
    fs::write(misc.join("owned.txt"), b"owned by 4321:8765\n").unwrap();
    std::os::unix::fs::lchown(misc.join("owned.txt"), Some(4321), Some(8765)).unwrap();
    std::os::unix::fs::symlink("owned.txt", misc.join("owned-link")).unwrap();
    std::os::unix::fs::lchown(misc.join("owned-link"), Some(111), Some(222)).unwrap();

    // A socket is skipped with a note.
    let sock = misc.join("sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());

    // Extended attributes (the file system may not support user xattrs).
    let xfile = misc.join("xattrs.txt");
    fs::write(&xfile, b"with attributes\n").unwrap();
    let xattrs: [(&str, &[u8]); 2] = [("user.comment", b"hello xattr"), ("user.binary", &[0, 1, 2, 255, 0])];
    let xattrs_ok = match xattrs.iter().try_for_each(|(n, v)| set_xattr(&xfile, n, v)) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("note: xattr part skipped: setting a user xattr failed: {e}");
            false
        }
    };

    // A 2 GiB sparse file with three small data regions.
    let big = sparse_dir.join("big.img");
    {
        use std::os::unix::fs::FileExt;
        let f = File::create(&big).unwrap();
        f.set_len(2 << 30).unwrap();
        f.write_all_at(&random_bytes(21, 4096), 0).unwrap();
        f.write_all_at(&random_bytes(22, 65_536), 1 << 30).unwrap();
        f.write_all_at(b"tail!", (2 << 30) - 5).unwrap();
    }
    drop(init_repo(&repo));

    let started = Instant::now();
    let sparse_run = env.run(&args(&[&"--repo", &repo, &"backup", &"--json", &sparse_dir]));
    let took = started.elapsed();
    sparse_run.ok("backup of the sparse file");
    assert!(took < Duration::from_secs(20), "backing up a 2 GiB sparse file took {took:?} (limit 20 s)");
    let misc_run = env.run(&args(&[&"--repo", &repo, &"backup", &"--json", &misc]));
    misc_run.ok("backup of special files");
    assert!(misc_run.stderr.trim().is_empty(), "warnings on special files: {}", misc_run.stderr);
    let notes: Vec<&str> = misc_run.stdout.lines().filter(|l| l.contains("\"note\"")).collect();
    assert!(
        notes.len() == 1 && notes[0].contains(sock.to_str().unwrap()),
        "want one JSON note naming the skipped socket, got: {}",
        misc_run.stdout
    );

    let target = base.join("restore");
    for run in [&sparse_run, &misc_run] {
        let id = snapshot_id_of(run);
        env.run(&args(&[
            &"--repo",
            &repo,
            &"restore",
            &id.as_str(),
            &"--target",
            &target,
            &"--overwrite",
            &"always",
        ]))
        .ok("restore");
    }

    // Types, modes, times, hardlinks, content.
    let rmisc = restored_path(&target, &misc);
    assert_trees_equal_except(&misc, &rmisc, &[OsStr::new("sock")]);
    assert!(fs::symlink_metadata(rmisc.join("sock")).is_err(), "a socket was restored");
    for (name, uid, gid) in [("owned.txt", 4321, 8765), ("owned-link", 111, 222)] {
        let md = fs::symlink_metadata(rmisc.join(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid), "owner of {name} after a restore as root");
    }
    let md = fs::symlink_metadata(rmisc.join("null")).unwrap();
    assert!(md.file_type().is_char_device(), "null restored as {:?}", md.file_type());
    assert_eq!(md.rdev(), dev, "device numbers of the restored char device");
    assert_eq!(md.mode() & 0o7777, 0o620);
    let md = fs::symlink_metadata(rmisc.join("fifo")).unwrap();
    assert!(md.file_type().is_fifo());
    assert_eq!(md.mode() & 0o7777, 0o640);
    let ino = fs::metadata(rmisc.join("h1")).unwrap().ino();
    assert_eq!(fs::metadata(rmisc.join("sub/h3")).unwrap().ino(), ino, "hardlink across directories");
    assert_eq!(fs::metadata(rmisc.join("h1")).unwrap().nlink(), 3);
    if xattrs_ok {
        for (n, v) in xattrs {
            assert_eq!(
                get_xattr(&rmisc.join("xattrs.txt"), n).as_deref(),
                Some(v),
                "xattr {n} after restore"
            );
        }
    }

    // The sparse file: same bytes, and still sparse on disk.
    let rbig = restored_path(&target, &big);
    let md = fs::metadata(&rbig).unwrap();
    assert_eq!(md.len(), 2 << 30, "size of the restored sparse file");
    let on_disk = md.blocks() * 512;
    assert!(on_disk < 64 << 20, "restored 2 GiB sparse file occupies {on_disk} bytes on disk (limit 64 MiB)");
    let (want, got) = (stream_hash(&big), stream_hash(&rbig));
    assert_eq!(got, want, "content of the restored sparse file");
    // The hash sees the data regions: changing one byte changes it.
    {
        use std::os::unix::fs::FileExt;
        File::options().write(true).open(&rbig).unwrap().write_all_at(b"X", (1 << 30) + 100).unwrap();
    }
    assert_ne!(stream_hash(&rbig), want, "the sparse-aware hash missed a changed byte");
}

// ---------------------------------------------------------------------------
// 6. stdin sources
// ---------------------------------------------------------------------------

#[test]
fn stdin_and_stdin_from_command() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let repo = base.join("repo");
    drop(init_repo(&repo));

    let r = run_with_stdin(
        &base,
        &args(&[&"--repo", &repo, &"backup", &"--stdin", &"--stdin-filename", &"db.sql"]),
        b"data\n",
    );
    r.ok("backup --stdin");
    assert_eq!(object_count(&repo, "snapshots"), 1);
    let target = base.join("restore1");
    env.run(&args(&[&"--repo", &repo, &"restore", &"latest", &"--target", &target])).ok("restore");
    assert_eq!(fs::read(target.join("db.sql")).unwrap(), b"data\n", "restored db.sql");

    let r = env.run(&args(&[
        &"--repo",
        &repo,
        &"backup",
        &"--stdin-from-command",
        &"--",
        &"sh",
        &"-c",
        &"echo x; exit 3",
    ]));
    r.expect_code(1, "backup from a failing command");
    assert!(r.stderr.contains("exit status: 3"), "error names the failure: {}", r.stderr);
    assert_eq!(object_count(&repo, "snapshots"), 1, "a failing command writes no snapshot");
    assert_eq!(files_under(&repo.join("locks")), vec![], "lock left after the failed backup");

    let r = env.run(&args(&[
        &"--repo",
        &repo,
        &"backup",
        &"--json",
        &"--stdin-from-command",
        &"--",
        &"sh",
        &"-c",
        &"printf abc",
    ]));
    r.ok("backup --stdin-from-command");
    let id = snapshot_id_of(&r);
    let target = base.join("restore2");
    env.run(&args(&[&"--repo", &repo, &"restore", &id.as_str(), &"--target", &target])).ok("restore");
    assert_eq!(
        fs::read(target.join("stdin")).unwrap(),
        b"abc",
        "restored command output (default name 'stdin')"
    );
}

// ---------------------------------------------------------------------------
// 7. --dry-run, --skip-if-unchanged, --time
// ---------------------------------------------------------------------------

#[test]
fn dry_run_skip_if_unchanged_and_time() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base).var("TZ", "UTC");
    let (src, repo) = (base.join("src"), base.join("repo"));
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/random.bin"), random_bytes(31, 200_000)).unwrap();
    fs::write(src.join("hello.txt"), b"hello\n").unwrap();
    drop(init_repo(&repo));

    // Dry run: reports what would be added, writes nothing.
    let before = repo_listing(&repo);
    let r = env.run(&args(&[&"--repo", &repo, &"backup", &"--dry-run", &"--json", &src]));
    r.ok("backup --dry-run --json");
    let v = last_json_line(&r);
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(v["snapshot_id"].is_null(), "a dry run names no snapshot: {v}");
    let added = v["bytes_added_raw"].as_u64().unwrap_or_else(|| panic!("no bytes_added_raw: {v}"));
    assert!(added >= 200_000, "dry run reports {added} bytes added for 200 kB of new data: {v}");
    let r = env.run(&args(&[&"--repo", &repo, &"backup", &"-n", &src]));
    r.ok("backup -n");
    assert!(r.stdout.contains("added to the repository") && r.stdout.contains("dry run"), "{}", r.stdout);
    assert_eq!(repo_listing(&repo), before, "a dry run changed the repository");

    // --skip-if-unchanged: back to back, an unchanged backup writes nothing.
    // The source's ancestors (the temp dir) are part of the snapshot and
    // other tests may touch them at any moment, which rightly gives a new
    // snapshot: retry until a run sees nothing changed.
    let r = env.run(&args(&[&"--repo", &repo, &"backup", &"--skip-if-unchanged", &src]));
    r.ok("first backup");
    let skipped = (0..5).any(|_| {
        let before = object_count(&repo, "snapshots");
        let r = env.run(&args(&[&"--repo", &repo, &"backup", &"--skip-if-unchanged", &"--json", &src]));
        r.ok("unchanged backup");
        let none = last_json_line(&r)["snapshot_id"].is_null();
        assert_eq!(object_count(&repo, "snapshots") == before, none, "{}", r.stdout);
        none
    });
    assert!(skipped, "--skip-if-unchanged wrote a snapshot five times in a row");
    // A change is noticed.
    fs::write(src.join("hello.txt"), b"hello again\n").unwrap();
    let before = object_count(&repo, "snapshots");
    env.run(&args(&[&"--repo", &repo, &"backup", &"--skip-if-unchanged", &src])).ok("changed backup");
    assert_eq!(object_count(&repo, "snapshots"), before + 1, "a changed file must give a new snapshot");

    // --time.
    let r =
        env.run(&args(&[&"--repo", &repo, &"backup", &"--json", &"--time", &"2020-01-02 03:04:05", &src]));
    r.ok("backup --time");
    let id = snapshot_id_of(&r);
    let list = snapshots_json(&env, &repo);
    let s = list.iter().find(|s| s["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not listed"));
    let time = s["time"].as_str().unwrap();
    assert!(time.starts_with("2020-01-02T03:04:05"), "snapshot time {time} (TZ=UTC)");
}

// ---------------------------------------------------------------------------
// 8. Progress output
// ---------------------------------------------------------------------------

/// Kills a private tmux server on drop.
struct Tmux(PathBuf);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.0).arg("kill-server").output();
    }
}

fn shell_quote(s: &OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"))
}

#[test]
fn progress_off_a_terminal_in_json_and_in_a_terminal() {
    let (_t, base) = tempdir_for_many_files();
    let env = ArchEnv::new(&base);
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..6u64 {
        write_random_file(&src.join(format!("part-{i}.bin")), 300 + i, 100_000_000);
    }
    let fresh_repo = |name: &str| {
        let repo = base.join(name);
        drop(init_repo(&repo));
        repo
    };

    // (a) Off a terminal: plain status lines on stderr.
    let repo = fresh_repo("repo-a");
    let started = Instant::now();
    let mut c =
        arch_command(&base, &[], &args(&[&"--repo", &repo, &"backup", &"--progress-interval", &"1s", &src]));
    pin_to_one_cpu(&mut c);
    let r = output_of(c);
    let took = started.elapsed();
    r.ok("backup --progress-interval 1s");
    eprintln!("note: plain-progress backup took {took:?}");
    let status: Vec<&str> = r.stderr.lines().filter(|l| l.contains('%') && l.contains("files")).collect();
    // Ticks come every second from the start; past 1.5 s one has fired.
    if took > Duration::from_millis(1500) {
        assert!(!status.is_empty(), "no status line with % and files in {took:?}; stderr: {}", r.stderr);
        let most = took.as_secs() as usize + 1;
        assert!(status.len() <= most, "{} status lines in {took:?} at one per second", status.len());
    } else {
        eprintln!("note: backup took only {took:?}; status lines: {status:?}");
    }
    assert!(
        !r.stderr.contains('\x1b') && !r.stderr.contains('\r'),
        "terminal codes off a terminal: {:?}",
        r.stderr
    );
    fs::remove_dir_all(&repo).unwrap();

    // (b) --json: every line is JSON, status lines, a final summary.
    let repo = fresh_repo("repo-b");
    let started = Instant::now();
    let mut c = arch_command(
        &base,
        &[],
        &args(&[&"--repo", &repo, &"backup", &"--json", &"--progress-interval", &"1s", &src]),
    );
    pin_to_one_cpu(&mut c);
    let r = output_of(c);
    let took = started.elapsed();
    r.ok("backup --json --progress-interval 1s");
    eprintln!("note: JSON-progress backup took {took:?}");
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}")))
        .collect();
    let statuses: Vec<&serde_json::Value> = lines.iter().filter(|v| v["message_type"] == "status").collect();
    if took > Duration::from_millis(1500) {
        assert!(!statuses.is_empty(), "no status object in {took:?}: {}", r.stdout);
        assert!(
            statuses.iter().any(|v| v["percent_done"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p))),
            "no status with a percent_done in [0, 1]: {}",
            r.stdout
        );
    } else {
        eprintln!("note: JSON backup took only {took:?}, too short to require a status line");
    }
    let last = lines.last().expect("no JSON output");
    assert_eq!(last["message_type"], "summary", "last line: {last}");
    assert_eq!(last["snapshot_id"].as_str().map(str::len), Some(64), "last line: {last}");
    fs::remove_dir_all(&repo).unwrap();
    // A failing command ends with an error object.
    let r = env.run(&args(&[&"--repo", &base.join("no-such-repo"), &"backup", &"--json", &src]));
    assert_ne!(r.code, 0, "backup into a missing repository succeeded: {r:?}");
    for l in r.stdout.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
    }
    let last = last_json_line(&r);
    assert_eq!(last["message_type"], "error", "{last}");
    assert_eq!(last["exit_code"], r.code, "{last}");
    assert!(last["message"].as_str().is_some_and(|m| !m.is_empty()), "{last}");

    // (c) In a real terminal (tmux, 120 columns).
    if Command::new("tmux").arg("-V").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("note: terminal progress part skipped: tmux is not installed");
        return;
    }
    let repo = fresh_repo("repo-c");
    let done = base.join("exit-code");
    let script = base.join("run.sh");
    fs::create_dir_all(base.join("home")).unwrap();
    let q = |p: &Path| shell_quote(p.as_os_str());
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nunset ARCH_REPOSITORY ARCH_PASSWORD_FILE ARCH_PASSWORD_COMMAND\n\
             export ARCH_PASSWORD={} HOME={} XDG_DATA_HOME={} XDG_CONFIG_HOME={} XDG_CACHE_HOME={}\n\
             {} --repo {} backup {} </dev/null\necho $? > {}.tmp && mv {}.tmp {}\nsleep 60\n",
            shell_quote(OsStr::new(PASSWORD)),
            q(&base.join("home")),
            q(&base.join("xdg-data")),
            q(&base.join("xdg-config")),
            q(&base.join("xdg-cache")),
            shell_quote(OsStr::new(env!("CARGO_BIN_EXE_arch"))),
            q(&repo),
            q(&src),
            q(&done),
            q(&done),
            q(&done),
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    let sock = base.join("tmux.sock");
    let _tmux = Tmux(sock.clone());
    let mut c = Command::new("tmux");
    c.arg("-S")
        .arg(&sock)
        .args(["-f", "/dev/null", "new-session", "-d", "-s", "bk", "-x", "120", "-y", "10"])
        .arg(&script)
        .env_remove("TMUX");
    pin_to_one_cpu(&mut c);
    let st = c.status().unwrap();
    assert!(st.success(), "tmux new-session failed");
    let mut captures = Vec::new();
    let start = Instant::now();
    while !done.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "backup in tmux did not finish in 60 s");
        std::thread::sleep(Duration::from_millis(150));
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(["capture-pane", "-p", "-J", "-t", "bk"])
            .output()
            .unwrap();
        if out.status.success() && !done.exists() {
            captures.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
    let code = fs::read_to_string(&done).unwrap();
    eprintln!("note: backup in tmux took about {:?}, {} screen captures", start.elapsed(), captures.len());
    assert_eq!(code.trim(), "0", "backup in tmux exit code; last screen: {:?}", captures.last());
    let with_status: Vec<&String> = captures.iter().filter(|c| c.contains('%')).collect();
    assert!(
        !with_status.is_empty(),
        "no status line with % seen in {} captures: {captures:?}",
        captures.len()
    );
    for c in &captures {
        for l in c.lines() {
            assert!(l.chars().count() <= 120, "a line is wider than the 120-column terminal: {l:?}");
        }
        let bars = c.lines().filter(|l| l.contains('%')).count();
        assert!(bars <= 1, "the status line is drawn on {bars} lines (it should redraw in place):\n{c}");
    }
    assert!(
        with_status
            .iter()
            .any(|c| c.lines().any(|l| l.contains('%') && (l.contains("ETA") || l.contains("files")))),
        "status line lacks ETA/files: {with_status:?}"
    );
    // When it ends, the status line is gone and the summary is shown.
    let out = Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .args(["capture-pane", "-p", "-J", "-t", "bk"])
        .output()
        .unwrap();
    let last = String::from_utf8_lossy(&out.stdout);
    assert!(!last.contains('%'), "the status line stayed on screen after the backup:\n{last}");
    assert!(last.contains("snapshot ") && last.contains("saved"), "no summary on screen:\n{last}");
}

// ---------------------------------------------------------------------------
// 9. --quiet
// ---------------------------------------------------------------------------

#[test]
fn quiet_backup_prints_nothing() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/x.bin"), random_bytes(41, 300_000)).unwrap();
    fs::write(src.join("y.txt"), b"y\n").unwrap();
    drop(init_repo(&repo));
    let r = env.run(&args(&[&"--repo", &repo, &"backup", &"--quiet", &"--progress-interval", &"1s", &src]));
    r.ok("backup --quiet");
    assert_eq!(r.stdout, "", "stdout of a quiet backup");
    assert_eq!(r.stderr, "", "stderr of a quiet backup");
    assert_eq!(object_count(&repo, "snapshots"), 1);
}
