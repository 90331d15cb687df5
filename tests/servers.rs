//! Real servers for the remote-backend tests, started on 127.0.0.1 with a
//! free port and their data in a temporary folder; dropping one kills the
//! process and waits for it.
//!
//! A missing server binary fails the test when ARCH_REQUIRE_SERVERS=1 (as
//! `.ci/run` sets, after installing them) and skips it with a note
//! otherwise.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::ffi::OsString;

use crate::common::{self, ArchEnv, Run};

/// A running (or stopped) server.
pub struct Server {
    /// The repository location to pass to `--repo` (a base: append a path).
    pub url: String,
    /// Environment variables a client needs (credentials).
    pub env: Vec<(String, String)>,
    /// Where the server keeps its data.
    pub data: PathBuf,
    /// The port it listens on.
    pub port: u16,
    program: String,
    args: Vec<String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// The S3 test credentials.
pub const S3_ACCESS_KEY: &str = "archtestkey";
/// The S3 test secret.
pub const S3_SECRET_KEY: &str = "archtestsecret";
/// The REST server's basic-auth user and password.
pub const REST_USER: &str = "archuser";
/// See [`REST_USER`].
pub const REST_PASS: &str = "archpass";

impl Server {
    /// `s3s-fs` (SigV4, conditional create); url = `s3:http://127.0.0.1:P`.
    pub fn s3() -> Option<Server> {
        Server::spawn("s3s-fs", "cargo install s3s-fs@0.14.1 --features binary --locked", |port, data| {
            let url = format!("s3:http://127.0.0.1:{port}");
            let args = [
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3_ACCESS_KEY,
                "--secret-key",
                S3_SECRET_KEY,
                &data.display().to_string(),
            ]
            .map(String::from)
            .to_vec();
            let env = vec![
                ("AWS_ACCESS_KEY_ID".to_string(), S3_ACCESS_KEY.to_string()),
                ("AWS_SECRET_ACCESS_KEY".to_string(), S3_SECRET_KEY.to_string()),
                ("AWS_DEFAULT_REGION".to_string(), "us-east-1".to_string()),
            ];
            (url, args, env)
        })
    }

    /// `rclone serve restic` with basic auth; url =
    /// `rest:http://USER:PASS@127.0.0.1:P`.
    pub fn rest() -> Option<Server> {
        Server::spawn("rclone", "apt-get install -y rclone", |port, data| {
            let url = format!("rest:http://{REST_USER}:{REST_PASS}@127.0.0.1:{port}");
            let args = [
                "serve",
                "restic",
                &data.display().to_string(),
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--user",
                REST_USER,
                "--pass",
                REST_PASS,
                "--config",
                "/dev/null",
            ]
            .map(String::from)
            .to_vec();
            (url, args, vec![])
        })
    }

    /// Starts `program` with the arguments `setup(port, data dir)` gives;
    /// None (after a note) if the program is missing and servers are not
    /// required.
    pub fn spawn(
        program: &str,
        install_hint: &str,
        setup: impl FnOnce(u16, &Path) -> (String, Vec<String>, Vec<(String, String)>),
    ) -> Option<Server> {
        if Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            let msg = format!("{program} is not installed ({install_hint}; .ci/run installs it)");
            if std::env::var("ARCH_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
                panic!("{msg}");
            }
            eprintln!("skipping: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = free_port();
        let (url, args, env) = setup(port, &data);
        let mut s = Server { url, env, data, port, program: program.into(), args, child: None, _dir: dir };
        s.start();
        Some(s)
    }

    /// Starts the server (again, on the same port and data) and waits
    /// until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.program);
        let log = self._dir.path().join("server.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited ({status}): {}",
                    self.program,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start listening on port {}",
                self.program,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An `arch` environment rooted at `base` with the server's credentials.
    pub fn arch_env(&self, base: &Path) -> ArchEnv {
        self.env.iter().fold(ArchEnv::new(base), |e, (k, v)| e.var(k, v))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that is free and that no other server of this test run was
/// given. The OS may hand a port it just gave out (and whose listener is
/// closed) to the next caller: two servers started on it at once, and the
/// one that fails to bind leaves its test talking to the other's server.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Runs `arch --repo URL args...`.
pub fn run(env: &ArchEnv, url: &str, args: &[&str]) -> Run {
    let mut a: Vec<OsString> = vec!["--repo".into(), url.into()];
    a.extend(args.iter().map(OsString::from));
    env.run(&a)
}

/// The number of snapshots `arch snapshots` lists (with `extra` options).
pub fn snapshot_count(env: &ArchEnv, url: &str, extra: &[&str]) -> usize {
    let mut a = vec!["--json", "snapshots"];
    a.extend_from_slice(extra);
    let r = run(env, url, &a);
    r.ok("snapshots");
    serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap().as_array().unwrap().len()
}

/// Runs an unchanged second backup and asserts it stored no file data:
/// nothing read, and no new pack but at most the small tree pack for the
/// ancestor folders (/tmp and the test folder change as other tests run).
pub fn assert_second_backup_adds_no_data(env: &ArchEnv, url: &str, src: &str, repo: &Path) {
    let before = common::pack_files(repo);
    let r = run(env, url, &["--json", "backup", src]);
    r.ok("second backup");
    let summary: serde_json::Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["bytes_read"], 0, "{summary}");
    let new: Vec<_> = common::pack_files(repo).into_iter().filter(|(n, _)| !before.contains_key(n)).collect();
    let new_bytes: u64 = new.iter().map(|(_, p)| std::fs::metadata(p).unwrap().len()).sum();
    assert!(new.len() <= 1 && new_bytes < 16 << 10, "only ancestor trees are new: {new:?}");
}

/// How a backup ended whose server died under it.
pub struct Outlived {
    /// Its exit code.
    pub code: Option<i32>,
    /// What it printed on stderr.
    pub stderr: String,
    /// How long it ran on after the server was stopped.
    pub after_stop: Duration,
}

/// Starts a backup of `src` (one connection, a 2 s retry budget), stops
/// the server with `stop` once the first pack is in `repo`, and waits for
/// the backup to end; a backup still running 60 s later fails the test.
pub fn backup_while_the_server_dies(
    env: &ArchEnv,
    url: &str,
    src: &Path,
    repo: &Path,
    stop: impl FnOnce(),
) -> Outlived {
    let mut child = env.spawn(&[
        "--repo",
        url,
        "-o",
        "connections=1",
        "-o",
        "retry.max-time=2s",
        "backup",
        src.to_str().unwrap(),
    ]);
    let t = Instant::now();
    while common::pack_files(repo).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "no pack uploaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop();
    let stopped_at = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped_at.elapsed() < Duration::from_secs(60), "backup hangs after the server died");
        std::thread::sleep(Duration::from_millis(20));
    };
    let after_stop = stopped_at.elapsed();
    let out = child.wait_with_output().unwrap();
    Outlived { code: status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned(), after_stop }
}
