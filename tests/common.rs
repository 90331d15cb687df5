//! Shared helpers for the end-to-end tests: a realistic fixture tree, a
//! tree comparator, a way to run the `arch` binary in a sealed-off
//! environment, and small repository inspection helpers.

#![allow(dead_code)] // each helper is used by some, not all, test modules

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arch_archiver::{InitOptions, KdfParams, LocalBackend, Repository};
use filetime::FileTime;

/// The password of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------
// Pseudo-random data
// ---------------------------------------------------------------------------

/// A seeded xorshift64 generator: fast, deterministic, and its output does
/// not compress (zstd cannot find structure in it).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Mix the seed so that small seeds (1, 2, 3) give unrelated streams;
        // xorshift must never start at 0.
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        if s == 0 {
            s = 1;
        }
        XorShift(s)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    XorShift::new(seed).fill(&mut v);
    v
}

/// Writes `len` pseudo-random bytes from `seed` to `path`, in blocks (so a
/// 100 MB file does not need 100 MB of memory).
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = XorShift::new(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// 16 random bytes from the OS, as 32 hex characters (differs every run).
pub fn random_hex() -> String {
    let mut b = [0u8; 16];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Fixture tree
// ---------------------------------------------------------------------------

/// A non-UTF-8 file name (Latin-1 "café").
pub fn non_utf8_name() -> &'static OsStr {
    OsStr::from_bytes(b"caf\xe9")
}

/// A fixed past time with nanoseconds, different for each `i`.
pub fn past_time(i: u32) -> FileTime {
    // 2019-03-14 and later, one day and some nanoseconds apart.
    FileTime::from_unix_time(1_552_521_600 + i64::from(i) * 86_400 + 7, 123_456_789 - i * 1_001)
}

/// Sets atime and mtime of `path` (of a symlink itself unless `follow`)
/// with utimensat. (filetime's set_file_times opens the file, which blocks
/// on a fifo.)
pub fn set_times(path: &Path, t: FileTime, follow: bool) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts =
        libc::timespec { tv_sec: t.unix_seconds() as libc::time_t, tv_nsec: t.nanoseconds() as libc::c_long };
    let times = [ts, ts];
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: c is a valid path and times has two entries.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) };
    assert_eq!(rc, 0, "set times of {}: {}", path.display(), std::io::Error::last_os_error());
}

fn set_mtime(path: &Path, i: u32) {
    set_times(path, past_time(i), true);
}

fn set_symlink_mtime(path: &Path, i: u32) {
    set_times(path, past_time(i), false);
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

pub fn mkfifo(path: &Path, mode: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Builds a realistic tree under `root` (created if missing):
///
/// - regular files: empty, small text, 1–6 MB pseudo-random (incompressible)
/// - empty files and nested and empty directories
/// - symlinks: relative, absolute, dangling
/// - a hardlinked pair (two names, one inode)
/// - a 30 MiB sparse file with three written regions
/// - a file and a directory whose names are not valid UTF-8
/// - modes 0o600, 0o755, 0o444 (file), 0o700 (directory)
/// - a fifo
/// - every mtime set to a past value with nanoseconds (directories last,
///   deepest first, so creating children does not disturb them)
pub fn build_fixture(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let p = |rel: &str| root.join(rel);

    // Directories.
    for d in ["docs", "docs/nested/deeper/deepest", "empty_dir", "data", "links", "private", "bin", "hard"] {
        fs::create_dir_all(p(d)).unwrap();
    }

    // Regular files.
    fs::write(p("empty.txt"), b"").unwrap();
    fs::write(p("docs/empty-too"), b"").unwrap();
    fs::write(p("docs/hello.txt"), b"hello, world\n").unwrap();
    let text: String =
        (0..2000).map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n")).collect();
    fs::write(p("docs/lines.txt"), text.as_bytes()).unwrap();
    fs::write(p("docs/nested/deeper/deepest/leaf.md"), b"# leaf\n\nat the bottom\n").unwrap();
    write_random_file(&p("data/random-1m.bin"), 1, 1_000_003);
    write_random_file(&p("data/random-3m.bin"), 2, 3 * 1024 * 1024 + 17);
    write_random_file(&p("data/random-6m.bin"), 3, 6_000_000);

    // Modes.
    fs::write(p("private/secret.txt"), b"top secret\n").unwrap();
    chmod(&p("private/secret.txt"), 0o600);
    fs::write(p("bin/tool.sh"), b"#!/bin/sh\necho tool\n").unwrap();
    chmod(&p("bin/tool.sh"), 0o755);
    fs::write(p("readonly.txt"), b"do not touch\n").unwrap();
    chmod(&p("readonly.txt"), 0o444);

    // Symlinks.
    std::os::unix::fs::symlink("../docs/hello.txt", p("links/relative")).unwrap();
    std::os::unix::fs::symlink(p("docs/lines.txt"), p("links/absolute")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", p("links/dangling")).unwrap();
    std::os::unix::fs::symlink("../docs", p("links/to-dir")).unwrap();

    // Hardlinks: two names, one inode.
    fs::write(p("hard/first"), b"one inode, two names\n").unwrap();
    fs::hard_link(p("hard/first"), p("hard/second")).unwrap();

    // Sparse file: 30 MiB, three written regions.
    {
        let f = File::create(p("data/sparse.img")).unwrap();
        f.set_len(30 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"start of the sparse file", 0).unwrap();
        f.write_all_at(&random_bytes(4, 100_000), 11 << 20).unwrap();
        f.write_all_at(b"end", (30 << 20) - 3).unwrap();
    }

    // Names that are not valid UTF-8.
    fs::write(root.join(non_utf8_name()), b"latin-1 name\n").unwrap();
    let odd_dir = root.join(OsStr::from_bytes(b"dir-\xff\xfe"));
    fs::create_dir(&odd_dir).unwrap();
    fs::write(odd_dir.join(OsStr::from_bytes(b"na\xefve.txt")), b"naive\n").unwrap();

    // A fifo.
    mkfifo(&p("fifo"), 0o640);

    // Times: files and links first, then directories deepest first.
    let mut i = 0;
    let mut dirs = Vec::new();
    for (path, md) in walk(root) {
        i += 1;
        if md.file_type().is_symlink() {
            set_symlink_mtime(&path, i);
        } else if md.is_dir() {
            dirs.push(path);
        } else {
            set_mtime(&path, i);
        }
    }
    // The private directory's mode is set after its content was written.
    chmod(&p("private"), 0o700);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        i += 1;
        set_mtime(&d, i);
    }
    set_mtime(root, 0);
}

/// Names under `repo` that look like temporary files (`.tmp*`).
pub fn temp_files(repo: &Path) -> Vec<PathBuf> {
    walk(repo)
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n.as_bytes().starts_with(b".tmp")))
        .map(|(p, _)| p)
        .collect()
}

/// Every entry under `root` (not `root` itself), parents before children,
/// with its lstat metadata. Does not follow symlinks.
pub fn walk(root: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<OsString> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let path = dir.join(n);
            // A tree that is being written (a repository polled while a
            // backup runs) loses entries between the listing and the stat:
            // a staging file renamed to its pack name, say.
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("stat {}: {e}", path.display()),
            };
            if md.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, md));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Tree comparator
// ---------------------------------------------------------------------------

fn kind_of(md: &fs::Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char device"
    } else {
        "block device"
    }
}

fn files_equal(a: &Path, b: &Path) -> Result<(), String> {
    let mut fa = File::open(a).map_err(|e| format!("open {}: {e}", a.display()))?;
    let mut fb = File::open(b).map_err(|e| format!("open {}: {e}", b.display()))?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            let first = ba[..na].iter().zip(&bb[..nb]).position(|(x, y)| x != y).unwrap_or(na.min(nb));
            return Err(format!(
                "content differs at byte {} ({} vs {} bytes read in this block)",
                offset + first as u64,
                na,
                nb
            ));
        }
        if na == 0 {
            return Ok(());
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Compares the tree at `src` with its restore at `dst` and panics with a
/// list of every difference. For every entry (lstat, symlinks not followed):
/// same type, same bytes for files, same symlink target, same permission
/// bits (not for symlinks, whose mode Linux fixes at 0o777), same mtime to
/// the nanosecond (for symlinks: the link's own mtime), and the same set of
/// names in every directory. Files that are hardlinked in `src` must be one
/// inode in `dst` too, with the same link count. Names in `skip_top` are
/// left out of the comparison of `src`'s top directory.
pub fn assert_trees_equal_except(src: &Path, dst: &Path, skip_top: &[&OsStr]) {
    let mut problems = Vec::new();
    // (src dev, src ino) -> restored inodes of its names.
    let mut links: HashMap<(u64, u64), Vec<(PathBuf, u64)>> = HashMap::new();
    let mut count = 0usize;
    compare_entry(src, dst, Path::new("."), &mut problems, &mut links, &mut count);
    compare_dir(src, dst, Path::new(""), skip_top, &mut problems, &mut links, &mut count);
    for (key, names) in &links {
        let inodes: BTreeSet<u64> = names.iter().map(|(_, ino)| *ino).collect();
        if inodes.len() != 1 {
            problems.push(format!(
                "hardlinked names {:?} (source inode {}) are {} different inodes in the restore",
                names.iter().map(|(p, _)| p).collect::<Vec<_>>(),
                key.1,
                inodes.len()
            ));
        }
    }
    assert!(count > 0, "comparator saw no entries under {}", src.display());
    if !problems.is_empty() {
        let shown: Vec<_> = problems.iter().take(40).cloned().collect();
        panic!(
            "restore of {} at {} has {} difference(s):\n  {}",
            src.display(),
            dst.display(),
            problems.len(),
            shown.join("\n  ")
        );
    }
}

/// [`assert_trees_equal_except`] with nothing skipped.
pub fn assert_trees_equal(src: &Path, dst: &Path) {
    assert_trees_equal_except(src, dst, &[]);
}

fn names_of(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name())
        .collect()
}

fn compare_dir(
    src: &Path,
    dst: &Path,
    rel: &Path,
    skip: &[&OsStr],
    problems: &mut Vec<String>,
    links: &mut HashMap<(u64, u64), Vec<(PathBuf, u64)>>,
    count: &mut usize,
) {
    let mut a = names_of(src);
    for s in skip {
        a.remove(*s);
    }
    let b = names_of(dst);
    if a != b {
        let missing: Vec<_> = a.difference(&b).collect();
        let extra: Vec<_> = b.difference(&a).collect();
        problems.push(format!(
            "{}: names differ; missing in restore {missing:?}, extra in restore {extra:?}",
            rel.display()
        ));
    }
    for name in a.intersection(&b) {
        let (s, d, r) = (src.join(name), dst.join(name), rel.join(name));
        if compare_entry(&s, &d, &r, problems, links, count) {
            compare_dir(&s, &d, &r, &[], problems, links, count);
        }
    }
}

/// Compares one entry; true if both are directories (to recurse into).
fn compare_entry(
    s: &Path,
    d: &Path,
    rel: &Path,
    problems: &mut Vec<String>,
    links: &mut HashMap<(u64, u64), Vec<(PathBuf, u64)>>,
    count: &mut usize,
) -> bool {
    *count += 1;
    let ms = fs::symlink_metadata(s).unwrap();
    let md = match fs::symlink_metadata(d) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("{}: missing in restore ({e})", rel.display()));
            return false;
        }
    };
    let r = rel.display();
    let (ks, kd) = (kind_of(&ms), kind_of(&md));
    if ks != kd {
        problems.push(format!("{r}: type {ks} restored as {kd}"));
        return false;
    }
    if ks != "symlink" && ms.mode() & 0o7777 != md.mode() & 0o7777 {
        problems.push(format!("{r}: mode {:o} restored as {:o}", ms.mode() & 0o7777, md.mode() & 0o7777));
    }
    if (ms.mtime(), ms.mtime_nsec()) != (md.mtime(), md.mtime_nsec()) {
        problems.push(format!(
            "{r} ({ks}): mtime {}.{:09} restored as {}.{:09}",
            ms.mtime(),
            ms.mtime_nsec(),
            md.mtime(),
            md.mtime_nsec()
        ));
    }
    match ks {
        "file" => {
            if ms.len() != md.len() {
                problems.push(format!("{r}: size {} restored as {}", ms.len(), md.len()));
            } else if let Err(e) = files_equal(s, d) {
                problems.push(format!("{r}: {e}"));
            }
            if ms.nlink() != md.nlink() {
                problems.push(format!("{r}: link count {} restored as {}", ms.nlink(), md.nlink()));
            }
            if ms.nlink() > 1 {
                links.entry((ms.dev(), ms.ino())).or_default().push((rel.to_path_buf(), md.ino()));
            }
        }
        "symlink" => {
            let (ts, td) = (fs::read_link(s).unwrap(), fs::read_link(d).unwrap());
            if ts != td {
                problems.push(format!("{r}: symlink target {ts:?} restored as {td:?}"));
            }
        }
        _ => {}
    }
    ks == "dir"
}

/// Where a restore into `target` puts the backed-up `source` (an absolute
/// path): target/<source without its leading '/'>.
pub fn restored_path(target: &Path, source: &Path) -> PathBuf {
    assert!(source.is_absolute(), "{} is not absolute", source.display());
    target.join(source.strip_prefix("/").unwrap())
}

// ---------------------------------------------------------------------------
// Repository inspection
// ---------------------------------------------------------------------------

/// Every regular file under `dir` (recursively), with its size.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    if !dir.exists() {
        return Vec::new();
    }
    walk(dir).into_iter().filter(|(_, md)| md.is_file()).map(|(p, md)| (p, md.len())).collect()
}

/// Sum of the sizes of every file under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, n)| n).sum()
}

/// Pack files of a local repository (data/<2 hex>/<64 hex>), by name.
pub fn pack_files(repo: &Path) -> BTreeMap<String, PathBuf> {
    files_under(&repo.join("data"))
        .into_iter()
        .filter_map(|(p, _)| {
            let name = p.file_name()?.to_str()?.to_string();
            (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())).then_some((name, p))
        })
        .collect()
}

/// Number of objects (files) in one folder of a repository, e.g. "snapshots".
pub fn object_count(repo: &Path, folder: &str) -> usize {
    files_under(&repo.join(folder))
        .iter()
        .filter(|(p, _)| !p.file_name().unwrap().as_bytes().starts_with(b".tmp"))
        .count()
}

/// Whether `needle` occurs in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Library helpers
// ---------------------------------------------------------------------------

/// Cheap key derivation so library tests spend their time on the engine.
pub fn fast_kdf() -> KdfParams {
    KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 }
}

/// Creates a repository at `dir` with the cheap KDF and `opts`' other
/// settings.
pub fn init_repo_with(dir: &Path, opts: InitOptions) -> Repository {
    Repository::init(Arc::new(LocalBackend::new(dir)), PASSWORD.as_bytes(), &opts.kdf(fast_kdf()))
        .unwrap_or_else(|e| panic!("init {}: {e}", dir.display()))
}

/// Creates a repository at `dir` with default settings and the cheap KDF.
pub fn init_repo(dir: &Path) -> Repository {
    init_repo_with(dir, InitOptions::default())
}

/// Opens the repository at `dir` with [`PASSWORD`].
pub fn open_repo(dir: &Path) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD.as_bytes())
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// A temporary directory whose path is canonical (so the absolute paths
/// the engine records equal the paths the test uses).
pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("create temp dir");
    let p = fs::canonicalize(t.path()).unwrap();
    (t, p)
}

/// A temporary directory on a memory file system (/dev/shm) when there is
/// one, else [`tempdir`]. For trees of many small files: on an ext4 root
/// mounted with `discard`, creating 20,000 files across 400 fresh
/// directories takes several seconds of pure file-system time (a Python
/// loop measures the same), which would dwarf the backup being tested.
pub fn tempdir_for_many_files() -> (tempfile::TempDir, PathBuf) {
    let shm = Path::new("/dev/shm");
    if let Ok(t) = tempfile::tempdir_in(shm) {
        let p = fs::canonicalize(t.path()).unwrap();
        return (t, p);
    }
    tempdir()
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// What one run of `arch` did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the full output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &Run {
        assert_eq!(
            self.code, code,
            "{what}: exit code {} (want {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run succeeded.
    pub fn ok(&self, what: &str) -> &Run {
        self.expect_code(0, what)
    }
}

/// An environment for running `arch`: nothing from the caller's ARCH_*
/// variables leaks in, HOME and the XDG directories point into `base`, and
/// stdin is closed (not a terminal). ARCH_PASSWORD is set unless removed.
#[derive(Clone, Debug)]
pub struct ArchEnv {
    pub base: PathBuf,
    vars: Vec<(String, Option<OsString>)>,
}

impl ArchEnv {
    /// An environment rooted at `base` with ARCH_PASSWORD = [`PASSWORD`].
    pub fn new(base: &Path) -> ArchEnv {
        ArchEnv { base: base.to_path_buf(), vars: vec![("ARCH_PASSWORD".into(), Some(PASSWORD.into()))] }
    }

    /// Sets a variable.
    pub fn var(mut self, k: &str, v: impl AsRef<OsStr>) -> ArchEnv {
        self.vars.retain(|(n, _)| n != k);
        self.vars.push((k.into(), Some(v.as_ref().to_owned())));
        self
    }

    /// Unsets a variable.
    pub fn unset(mut self, k: &str) -> ArchEnv {
        self.vars.retain(|(n, _)| n != k);
        self.vars.push((k.into(), None));
        self
    }

    /// The data directory `arch` sees (XDG_DATA_HOME).
    pub fn data_home(&self) -> PathBuf {
        self.base.join("xdg-data")
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_arch"));
        c.args(args);
        for k in ["ARCH_PASSWORD", "ARCH_PASSWORD_FILE", "ARCH_PASSWORD_COMMAND", "ARCH_REPOSITORY"] {
            c.env_remove(k);
        }
        let home = self.base.join("home");
        fs::create_dir_all(&home).unwrap();
        c.env("HOME", &home)
            .env("XDG_DATA_HOME", self.data_home())
            .env("XDG_CONFIG_HOME", self.base.join("xdg-config"))
            .env("XDG_CACHE_HOME", self.base.join("xdg-cache"));
        for (k, v) in &self.vars {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.current_dir(&self.base).stdin(Stdio::null());
        c
    }

    /// Runs `arch args...` to completion.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let out = self.command(args).output().expect("run the arch binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `arch args...` with stdout and stderr piped.
    pub fn spawn<S: AsRef<OsStr>>(&self, args: &[S]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the arch binary")
    }
}

/// Command-line arguments from a mix of strings and paths.
pub fn args(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// Runs `arch args...`, requires exit 0, and returns its stdout.
pub fn run_ok(env: &ArchEnv, a: &[&dyn AsRef<OsStr>]) -> String {
    let r = env.run(&args(a));
    r.ok(&format!("arch {:?}", args(a)));
    r.stdout.clone()
}

/// Every non-empty line of `out`, parsed as JSON (panics on a line that
/// is not).
pub fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
