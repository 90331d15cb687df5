//! `arch run PROFILE`: profiles from a TOML file drive backup, forget,
//! prune, check and hooks; runs of one profile exclude each other.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{self, ArchEnv, Run, PASSWORD};

/// A test setup: repository, source tree, password file, profile file.
struct Setup {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    repo: PathBuf,
    src: PathBuf,
    config: PathBuf,
    env: ArchEnv,
}

impl Setup {
    /// Writes `profile` (TOML lines for `[profiles.home]`, `$BASE`
    /// replaced) after the common keys.
    fn new(profile: &str) -> Setup {
        Setup::with_source("paths = [\"${BASE}/src\"]", profile)
    }

    /// As [`Setup::new`] with `source` instead of the `paths` line.
    fn with_source(source: &str, profile: &str) -> Setup {
        let (tmp, base) = common::tempdir();
        let repo = base.join("repo");
        common::init_repo(&repo);
        let src = base.join("src");
        fs::create_dir_all(&src).unwrap();
        common::write_random_file(&src.join("big"), 1, 3 << 20);
        fs::write(src.join("small.txt"), b"hello").unwrap();
        fs::write(base.join("pass"), format!("{PASSWORD}\n")).unwrap();
        let config = base.join("profiles.toml");
        let text = format!(
            "[profiles.home]\nrepository = \"${{BASE}}/repo\"\npassword-file = \"${{BASE}}/pass\"\n{source}\n{profile}\n"
        );
        fs::write(&config, text).unwrap();
        // Only the profile's password file can open the repository: no
        // ARCH_PASSWORD in the environment.
        let env = ArchEnv::new(&base)
            .unset("ARCH_PASSWORD")
            .var("BASE", &base)
            .var("ARCH_STATE_DIR", base.join("state"))
            .var("ARCH_CONFIG", &config);
        Setup { _tmp: tmp, base, repo, src, config, env }
    }

    fn run(&self, extra: &[&str]) -> Run {
        let mut a = vec!["run", "home"];
        a.extend_from_slice(extra);
        self.env.run(&a)
    }

    fn state(&self) -> serde_json::Value {
        let text = fs::read(self.base.join("state/home.json")).expect("state file written");
        serde_json::from_slice(&text).unwrap()
    }

    /// ARCH_* variables a hook wrote with `env > FILE`.
    fn hook_env(&self, name: &str) -> BTreeMap<String, String> {
        let text = fs::read_to_string(self.base.join(name)).unwrap_or_else(|_| panic!("hook wrote {name}"));
        text.lines()
            .filter(|l| l.starts_with("ARCH_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn snapshots(&self) -> Vec<(String, String)> {
        let repo = common::open_repo(&self.repo);
        repo.list_snapshots().unwrap().into_iter().map(|(id, s)| (id.to_hex(), s.time.to_rfc3339())).collect()
    }
}

/// A timestamp of the state file, normalised.
fn time_of(v: &serde_json::Value) -> String {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp")).unwrap().to_rfc3339()
}

fn dir_bytes(p: &Path) -> u64 {
    common::dir_size(p)
}

#[test]
fn two_runs_back_up_forget_prune_check_and_run_hooks() {
    let s = Setup::new(
        r#"
exclude = ["*.tmp"]
tags = ["nightly"]
[profiles.home.retention]
keep-last = 1
[profiles.home.prune]
every = 2
grace = "0"
[profiles.home.check]
read-data-parts = 2
[profiles.home.hooks]
before = "echo before >> $BASE/hooks.log"
after = "env > $BASE/after.env; echo after >> $BASE/hooks.log"
on-failure = "echo on-failure >> $BASE/hooks.log"
finally = "echo finally $ARCH_EXIT_CODE >> $BASE/hooks.log"
"#,
    );
    fs::write(s.src.join("skip.tmp"), b"excluded").unwrap();
    let log = s.base.join("logs/arch.log");
    let log_arg = log.to_str().unwrap();

    let r1 = s.run(&["--time", "2026-01-01T03:00:00Z", "--log-file", log_arg, "--json-summary"]);
    r1.ok("first run");
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0].1, "2026-01-01T03:00:00+00:00", "the run's --time is the snapshot's time");
    let env = s.hook_env("after.env");
    assert_eq!(env["ARCH_PROFILE"], "home");
    assert_eq!(env["ARCH_EXIT_CODE"], "0");
    assert_eq!(env["ARCH_SNAPSHOT_ID"], snaps[0].0);
    assert!(env["ARCH_BYTES_ADDED"].parse::<u64>().unwrap() > 3 << 20, "{env:?}");
    assert!(env["ARCH_DURATION"].parse::<f64>().unwrap() > 0.0, "{env:?}");
    assert_eq!(env["ARCH_FAILED_STEPS"], "");
    let summary: serde_json::Value = serde_json::from_str(r1.stdout.lines().last().unwrap())
        .expect("last stdout line is the JSON summary");
    assert_eq!(summary["message_type"], "run_summary");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["snapshot_id"], snaps[0].0.as_str());
    let steps: Vec<&str> =
        summary["steps"].as_array().unwrap().iter().map(|v| v["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["backup", "forget", "check"], "prune is due every 2nd run");
    let st = s.state();
    assert_eq!((st["runs"].as_u64(), st["runs_since_prune"].as_u64()), (Some(1), Some(1)));
    assert_eq!(st["checks"], 1);
    assert!(st["last_prune"].is_null());
    // The excluded file is not in the snapshot.
    let ls =
        s.env.run(&["--repo", s.repo.to_str().unwrap(), "--password-file", "pass", "ls", "-R", "latest"]);
    ls.ok("ls");
    assert!(ls.stdout.contains("small.txt") && !ls.stdout.contains("skip.tmp"), "{}", ls.stdout);

    // Second run: the big file is gone from the source, keep-last 1
    // forgets the first snapshot and prune (now due) frees its data.
    let data_before = dir_bytes(&s.repo.join("data"));
    fs::remove_file(s.src.join("big")).unwrap();
    fs::write(s.src.join("new.txt"), b"second").unwrap();
    s.run(&["--time", "2026-01-02T03:00:00Z", "--log-file", log_arg]).ok("second run");
    let snaps2 = s.snapshots();
    assert_eq!(snaps2.len(), 1, "keep-last 1 leaves one snapshot: {snaps2:?}");
    assert_eq!(snaps2[0].1, "2026-01-02T03:00:00+00:00");
    let data_after = dir_bytes(&s.repo.join("data"));
    assert!(
        data_after + (2 << 20) < data_before,
        "prune freed the forgotten file's 3 MiB: {data_before} -> {data_after}"
    );
    let st = s.state();
    assert_eq!((st["runs"].as_u64(), st["runs_since_prune"].as_u64()), (Some(2), Some(0)));
    assert_eq!(time_of(&st["last_prune"]), "2026-01-02T03:00:00+00:00");
    assert_eq!(time_of(&st["last_success"]), "2026-01-02T03:00:00+00:00");
    assert_eq!(st["last_snapshot"], snaps2[0].0.as_str());
    assert_eq!(st["checks"], 2, "the check read data part 1/2, then 2/2");
    let hooks = fs::read_to_string(s.base.join("hooks.log")).unwrap();
    assert_eq!(hooks, "before\nafter\nfinally 0\nbefore\nafter\nfinally 0\n");
    // The repository is clean after forget + prune.
    s.env
        .run(&["--repo", s.repo.to_str().unwrap(), "--password-file", "pass", "check", "--read-data"])
        .ok("check after two runs");

    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("run home: started") && text.contains("prune: starting"), "{text}");
    assert!(!text.contains(PASSWORD), "the log must never contain the password");
    let first = text.lines().next().unwrap();
    assert!(chrono::DateTime::parse_from_str(first.split(' ').next().unwrap(), "%Y-%m-%dT%H:%M:%S%.3f%:z")
        .is_ok());
}

#[test]
fn failing_before_hook_aborts_the_run() {
    let s = Setup::new(
        r#"
[profiles.home.hooks]
before = "echo no >&2; exit 7"
after = "touch $BASE/after-ran"
on-failure = "env > $BASE/failure.env"
finally = "env > $BASE/finally.env"
"#,
    );
    let r = s.run(&[]);
    r.expect_code(1, "before hook fails");
    assert!(r.stderr.contains("before hook failed (exit code 7)"), "{}", r.stderr);
    assert!(r.stderr.contains("before hook: no"), "hook output is shown: {}", r.stderr);
    assert!(s.snapshots().is_empty(), "no backup after a failing before hook");
    assert!(!s.base.join("after-ran").exists());
    let env = s.hook_env("failure.env");
    assert_eq!(env["ARCH_EXIT_CODE"], "1");
    assert_eq!(env["ARCH_FAILED_STEPS"], "before");
    assert_eq!(env["ARCH_SNAPSHOT_ID"], "");
    assert_eq!(s.hook_env("finally.env")["ARCH_EXIT_CODE"], "1");
    assert!(s.state()["last_success"].is_null());
    assert_eq!(s.state()["last_exit_code"], 1);
}

#[test]
fn failing_source_and_failing_after_hook_set_the_exit_code() {
    let s = Setup::new(
        r#"
[profiles.home.retention]
keep-last = 1
[profiles.home.hooks]
after = "touch $BASE/after-ran"
on-failure = "env > $BASE/failure.env"
"#,
    );
    fs::remove_dir_all(&s.src).unwrap();
    let r = s.run(&[]);
    r.expect_code(1, "a missing source fails the backup");
    assert!(r.stderr.contains("backup:") && r.stderr.contains("src"), "{}", r.stderr);
    assert!(!s.base.join("after-ran").exists());
    let env = s.hook_env("failure.env");
    assert_eq!((env["ARCH_EXIT_CODE"].as_str(), env["ARCH_FAILED_STEPS"].as_str()), ("1", "backup"));
    assert!(env["ARCH_ERROR"].contains("src"), "{env:?}");

    // With the source back, a failing after hook still fails the run
    // (the snapshot is written).
    fs::create_dir_all(&s.src).unwrap();
    fs::write(s.src.join("a"), b"a").unwrap();
    let text = fs::read_to_string(&s.config).unwrap().replace("touch $BASE/after-ran", "exit 3");
    fs::write(&s.config, text).unwrap();
    let r = s.run(&[]);
    r.expect_code(1, "after hook fails");
    assert!(r.stderr.contains("after hook failed (exit code 3)"), "{}", r.stderr);
    assert_eq!(s.snapshots().len(), 1);
}

#[test]
fn hook_timeout_kills_the_hook() {
    let s = Setup::new(
        r#"
[profiles.home.hooks]
before = "sleep 30"
timeout = "1s"
"#,
    );
    let t = Instant::now();
    let r = s.run(&[]);
    r.expect_code(1, "hook times out");
    assert!(t.elapsed() < Duration::from_secs(10), "killed after its timeout, took {:?}", t.elapsed());
    assert!(r.stderr.contains("before hook timed out after 1s"), "{}", r.stderr);
}

#[test]
fn a_second_run_of_a_profile_exits_11_or_waits() {
    let s = Setup::new(
        r#"
[profiles.home.hooks]
before = "touch $BASE/started; sleep 2"
"#,
    );
    let mut first = s.env.spawn(&["run", "home"]);
    let started = s.base.join("started");
    let t = Instant::now();
    while !started.exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "first run never started its hook");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = s.run(&[]);
    second.expect_code(11, "profile already running");
    let line = format!("profile home is already running (pid {})", first.id());
    assert!(second.stderr.contains(&line), "{}", second.stderr);
    assert_eq!(second.stderr.lines().count(), 1, "{}", second.stderr);
    let waited = s.run(&["--wait"]);
    let status = first.wait().unwrap();
    assert!(status.success(), "first run: {status:?}");
    waited.ok("--wait runs after the first one");
    assert_eq!(s.snapshots().len(), 2);
    assert_eq!(s.state()["runs"], 2, "the refused run does not count");
}

#[test]
fn profile_errors_name_the_key_and_file() {
    let s = Setup::new("[profiles.home.retention]\nkeep-dayly = 3\n");
    let r = s.run(&[]);
    r.expect_code(1, "unknown key");
    assert!(r.stderr.contains("keep-dayly"), "{}", r.stderr);
    assert!(r.stderr.contains(s.config.to_str().unwrap()), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    let s = Setup::new("exclude = [\"${NOT_SET_ANYWHERE}/x\"]\n");
    let r = s.run(&[]);
    r.expect_code(1, "unset variable");
    assert!(r.stderr.contains("NOT_SET_ANYWHERE"), "{}", r.stderr);

    let s = Setup::new("");
    let r = s.env.run(&["run", "work"]);
    r.expect_code(1, "unknown profile");
    assert!(r.stderr.contains("no profile \"work\"") && r.stderr.contains("home"), "{}", r.stderr);
    assert!(s.snapshots().is_empty());
}

#[test]
fn log_file_rotates_by_size() {
    let s = Setup::new("");
    let log = s.base.join("arch.log");
    for _ in 0..3 {
        s.run(&["--log-file", log.to_str().unwrap(), "--log-max-size", "400", "--log-keep", "2"]).ok("run");
    }
    let rotated: Vec<_> = (1..=3).map(|n| s.base.join(format!("arch.log.{n}"))).collect();
    assert!(rotated[0].exists() && rotated[1].exists(), "two rotated files kept");
    assert!(!rotated[2].exists(), "no more than --log-keep rotated files");
    for p in [&log, &rotated[0], &rotated[1]] {
        let len = fs::metadata(p).unwrap().len();
        assert!(len <= 400 + 200, "{} has {len} bytes", p.display());
        assert!(!fs::read_to_string(p).unwrap().contains(PASSWORD));
    }
}

#[test]
fn a_failing_stream_source_fails_the_run() {
    let s = Setup::with_source(
        r#"stdin-command = ["sh", "-c", "echo partial; exit 4"]"#,
        "[profiles.home.hooks]\non-failure = \"env > $BASE/failure.env\"\n",
    );
    let r = s.run(&[]);
    r.expect_code(1, "the source command fails");
    assert!(r.stderr.contains("backup:") && r.stderr.contains("exit status: 4"), "{}", r.stderr);
    assert!(s.snapshots().is_empty(), "no snapshot of a failed source");
    assert_eq!(s.hook_env("failure.env")["ARCH_FAILED_STEPS"], "backup");
}

#[test]
fn an_interrupted_run_exits_130_and_still_runs_closing_hooks() {
    let s = Setup::with_source(
        r#"stdin-command = ["sh", "-c", "exec cat /dev/urandom"]"#,
        r#"
[profiles.home.retention]
keep-last = 1
[profiles.home.hooks]
before = "touch $BASE/started"
on-failure = "env > $BASE/failure.env"
finally = "env > $BASE/finally.env"
"#,
    );
    let child = s.env.spawn(&["run", "home"]);
    let t = Instant::now();
    while !s.base.join("started").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.snapshots().is_empty());
    let env = s.hook_env("finally.env");
    assert_eq!(env["ARCH_EXIT_CODE"], "130");
    assert_eq!(s.hook_env("failure.env")["ARCH_FAILED_STEPS"], "backup");
    assert_eq!(s.state()["last_exit_code"], 130);
}

#[test]
fn prune_runs_when_unused_space_passes_the_threshold() {
    let s = Setup::new(
        r#"
[profiles.home.retention]
keep-last = 1
[profiles.home.prune]
when-unused-exceeds = "1M"
grace = "0"
"#,
    );
    let steps = |r: &Run| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
        v["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap().to_string()).collect()
    };
    let r = s.run(&["--time", "2026-02-01T03:00:00Z", "--json-summary"]);
    r.ok("first run");
    assert_eq!(steps(&r), ["backup", "forget"], "nothing unused yet: {}", r.stderr);
    assert!(s.state()["last_prune"].is_null());

    // The 3 MiB file leaves the source; forgetting its snapshot leaves
    // 3 MiB unused, past the 1M threshold.
    fs::remove_file(s.src.join("big")).unwrap();
    let r = s.run(&["--time", "2026-02-02T03:00:00Z", "--json-summary"]);
    r.ok("second run");
    assert_eq!(steps(&r), ["backup", "forget", "prune"], "{}", r.stderr);
    assert_eq!(time_of(&s.state()["last_prune"]), "2026-02-02T03:00:00+00:00");
    assert!(common::dir_size(&s.repo.join("data")) < 1 << 20, "the big file's data is gone");

    let r = s.run(&["--time", "2026-02-03T03:00:00Z", "--json-summary"]);
    r.ok("third run");
    assert_eq!(steps(&r), ["backup", "forget"], "little unused again: {}", r.stderr);
}

#[test]
fn a_profile_password_command_opens_the_repository_for_every_step() {
    let s = Setup::new("[profiles.home.retention]\nkeep-last = 1\n");
    // The same profile with a password command instead of the file.
    let text = fs::read_to_string(&s.config)
        .unwrap()
        .replace("password-file = \"${BASE}/pass\"", "password-command = \"cat \\\"$BASE/pass\\\"\"");
    assert!(text.contains("password-command"), "{text}");
    fs::write(&s.config, text).unwrap();
    s.run(&[]).ok("run with a password command");
    s.run(&[]).ok("second run with a password command");
    assert_eq!(s.snapshots().len(), 1, "backup and forget both opened the repository");
}
