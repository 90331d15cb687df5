//! `arch schedule`: crontab entries (in a test-controlled crontab file)
//! and systemd user units, installed idempotently and removed exactly.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{self, ArchEnv};

fn setup() -> (tempfile::TempDir, std::path::PathBuf, ArchEnv) {
    let (t, base) = common::tempdir();
    let config = base.join("profiles.toml");
    fs::write(&config, "[profiles.home]\nrepository = \"/srv/repo\"\npaths = [\"/home\"]\n").unwrap();
    let env = ArchEnv::new(&base).var("ARCH_CRONTAB_FILE", base.join("crontab")).var("ARCH_CONFIG", &config);
    (t, base, env)
}

#[test]
fn crontab_install_is_idempotent_and_remove_is_exact() {
    let (_t, base, env) = setup();
    let crontab = base.join("crontab");
    let foreign = "MAILTO=admin\n# nightly report\n15 6 * * * /usr/local/bin/report\n";
    fs::write(&crontab, foreign).unwrap();

    let printed = env.run(&["schedule", "home", "--at", "daily 03:00"]);
    printed.ok("print");
    assert_eq!(fs::read_to_string(&crontab).unwrap(), foreign, "printing writes nothing");
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_arch")).unwrap();
    let job =
        format!("0 3 * * * {} --config {} run home", exe.display(), base.join("profiles.toml").display());
    assert!(printed.stdout.contains(&job), "{}", printed.stdout);

    env.run(&["schedule", "home", "--at", "daily 03:00", "--install"]).ok("install");
    env.run(&["schedule", "home", "--at", "30 2 * * 1-5", "--install"]).ok("install again");
    let text = fs::read_to_string(&crontab).unwrap();
    assert!(text.starts_with(foreign), "{text}");
    assert_eq!(text.matches("# arch-schedule:home ").count(), 1, "one entry after two installs: {text}");
    assert!(text.contains("\n30 2 * * 1-5 ") && !text.contains("0 3 * * *"), "{text}");

    let list = env.run(&["schedule", "--list"]);
    list.ok("list");
    assert!(list.stdout.contains("home") && list.stdout.contains("30 2 * * 1-5"), "{}", list.stdout);

    env.run(&["schedule", "home", "--remove"]).ok("remove");
    assert_eq!(fs::read_to_string(&crontab).unwrap(), foreign, "only our entry is removed");
    let again = env.run(&["schedule", "home", "--remove"]);
    again.expect_code(1, "nothing left to remove");
    assert!(again.stderr.contains("no schedule"), "{}", again.stderr);
}

#[test]
fn schedule_refuses_bad_input() {
    let (_t, base, env) = setup();
    let r = env.run(&["schedule", "home", "--at", "daily 25:00", "--install"]);
    r.expect_code(1, "bad time");
    assert!(r.stderr.contains("25:00"), "{}", r.stderr);
    let r = env.run(&["schedule", "work", "--at", "daily 03:00", "--install"]);
    r.expect_code(1, "unknown profile");
    assert!(r.stderr.contains("no profile \"work\""), "{}", r.stderr);
    assert!(!base.join("crontab").exists(), "nothing written");
}

#[test]
fn systemd_units_install_and_verify() {
    let (_t, base, env) = setup();
    let units = base.join("units");
    let u = units.to_str().unwrap();
    env.run(&["schedule", "home", "--at", "weekly Sun 04:30", "--systemd", "--install", "--unit-dir", u])
        .ok("install units");
    env.run(&["schedule", "home", "--at", "daily 03:00", "--systemd", "--install", "--unit-dir", u])
        .ok("install units again");
    let mut names: Vec<String> = fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["arch-home.service", "arch-home.timer"]);
    let timer = fs::read_to_string(units.join("arch-home.timer")).unwrap();
    assert!(timer.contains("\nOnCalendar=*-*-* 03:00:00\n") && timer.contains("Persistent=true"), "{timer}");
    let service = fs::read_to_string(units.join("arch-home.service")).unwrap();
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_arch")).unwrap();
    assert!(service.contains(&format!("ExecStart=\"{}\" \"--config\"", exe.display())), "{service}");
    assert!(service.contains("\"run\" \"home\"") && service.contains("Type=oneshot"), "{service}");
    verify_units(&units);

    let list = env.run(&["schedule", "--list", "--unit-dir", u]);
    assert!(list.stdout.contains("systemd") && list.stdout.contains("03:00:00"), "{}", list.stdout);
    env.run(&["schedule", "home", "--remove", "--unit-dir", u]).ok("remove");
    assert_eq!(fs::read_dir(&units).unwrap().count(), 0);
}

/// `systemd-analyze verify` on the units, where it exists.
fn verify_units(dir: &Path) {
    let have = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var("ARCH_REQUIRE_SERVERS").as_deref() != Ok("1"),
            "systemd-analyze is required (ARCH_REQUIRE_SERVERS=1) but missing"
        );
        eprintln!("note: systemd-analyze not found; units not verified");
        return;
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("arch-home.service"))
        .arg(dir.join("arch-home.timer"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about the host's own units are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("arch-home")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify: {stderr}");
}
