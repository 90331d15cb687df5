//! `arch status`: last successful backup per profile, as a health check.

use std::fs;

use crate::common::{self, ArchEnv};

#[test]
fn status_reports_age_and_fails_when_too_old() {
    let (_t, base) = common::tempdir();
    common::init_repo(&base.join("repo"));
    fs::create_dir_all(base.join("src")).unwrap();
    fs::write(base.join("src/a"), b"a").unwrap();
    let config = base.join("p.toml");
    fs::write(
        &config,
        format!(
            "[profiles.home]\nrepository = \"{0}/repo\"\npaths = [\"{0}/src\"]\n[profiles.other]\nrepository = \"{0}/repo\"\npaths = [\"{0}/src\"]\n",
            base.display()
        ),
    )
    .unwrap();
    let env = ArchEnv::new(&base).var("ARCH_STATE_DIR", base.join("state")).var("ARCH_CONFIG", &config);

    let r = env.run(&["status", "home", "--max-age", "1d"]);
    r.expect_code(1, "never backed up");
    assert!(r.stdout.contains("last successful backup: never"), "{}", r.stdout);
    assert!(r.stderr.contains("home"), "{}", r.stderr);

    // A run at a fake time two days ago is too old for --max-age 1d.
    let past = (chrono::Local::now() - chrono::Duration::days(2)).to_rfc3339();
    env.run(&["run", "home", "--time", &past]).ok("run in the past");
    let r = env.run(&["status", "home", "--max-age", "1d"]);
    r.expect_code(1, "two days old");
    assert!(r.stdout.contains("(2d0h ago)") && r.stdout.contains("TOO OLD"), "{}", r.stdout);
    env.run(&["status", "home", "--max-age", "3d"]).ok("within three days");

    env.run(&["run", "home"]).ok("run now");
    let r = env.run(&["status", "home", "--max-age", "1h"]);
    r.ok("fresh");
    assert!(r.stdout.contains("runs:                   2"), "{}", r.stdout);

    // Without names: every profile of the file; `other` never ran.
    let r = env.run(&["--json", "status", "--max-age", "1h"]);
    r.expect_code(1, "other never ran");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|p| p["profile"].as_str().unwrap()).collect();
    assert_eq!(names, ["home", "other"]);
    assert_eq!(v[0]["stale"], false);
    assert_eq!(v[0]["last_exit_code"], 0);
    assert_eq!(v[1]["stale"], true);
    assert!(v[1]["last_success"].is_null());
}
