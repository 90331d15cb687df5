//! Every command against a real REST v2 server (`rclone serve restic`,
//! with basic auth), through the CLI.

use std::time::{Duration, Instant};

use crate::common;
use crate::servers::{
    assert_second_backup_adds_no_data, backup_while_the_server_dies, run, snapshot_count, Server, REST_PASS,
    REST_USER,
};

#[test]
fn backup_restore_check_forget_prune_keys_and_copy_over_rest() {
    let Some(rest) = Server::rest() else { return };
    let (_t, work) = common::tempdir();
    let env = rest.arch_env(&work);
    let url = format!("{}/repo", rest.url);
    run(&env, &url, &["init"]).ok("init");
    assert!(run(&env, &url, &["init"]).stderr.contains("already exists"));

    let src = work.join("src");
    common::build_fixture(&src);
    let src_arg = src.display().to_string();
    run(&env, &url, &["backup", &src_arg]).ok("first backup");
    let packs = common::pack_files(&rest.data.join("repo"));
    assert!(!packs.is_empty(), "packs are stored on the server");
    assert_second_backup_adds_no_data(&env, &url, &src_arg, &rest.data.join("repo"));

    let target = work.join("restored");
    run(&env, &url, &["restore", "latest", "--target", &target.display().to_string()]).ok("restore");
    common::assert_trees_equal(&src, &common::restored_path(&target, &src));
    let r = run(&env, &url, &["check", "--read-data"]);
    r.ok("check --read-data");
    assert!(r.stdout.contains("no errors found"), "{}", r.stdout);

    run(&env, &url, &["forget", "--keep-last", "1", "--prune"]).ok("forget --prune");
    assert_eq!(snapshot_count(&env, &url, &[]), 1);
    run(&env, &url, &["check", "--read-data"]).ok("check after prune");

    let pw2 = work.join("pw2");
    std::fs::write(&pw2, "second password\n").unwrap();
    run(&env, &url, &["key", "add", "--new-password-file", &pw2.display().to_string()]).ok("key add");
    assert_eq!(snapshot_count(&env.clone().var("ARCH_PASSWORD", "second password"), &url, &[]), 1);

    // Copy from a local repository into a second repository on the server.
    let local = work.join("local").display().to_string();
    run(&env, &local, &["init"]).ok("init local");
    run(&env, &local, &["backup", &src_arg]).ok("backup local");
    let url2 = format!("{}/second", rest.url);
    run(&env, &url2, &["init"]).ok("init second");
    run(&env.clone().var("ARCH_FROM_PASSWORD", common::PASSWORD), &url2, &["copy", "--from-repo", &local])
        .ok("copy");
    assert_eq!(snapshot_count(&env, &url2, &[]), 1);
    run(&env, &url2, &["check", "--read-data"]).ok("check the copy");
}

#[test]
fn wrong_rest_password_fails_fast_with_one_line() {
    let Some(rest) = Server::rest() else { return };
    let (_t, work) = common::tempdir();
    let env = rest.arch_env(&work);
    let url = format!("{}/repo", rest.url);
    run(&env, &url, &["init"]).ok("init");
    let bad = url.replace(&format!("{REST_USER}:{REST_PASS}@"), &format!("{REST_USER}:wrong-pass@"));
    let t = Instant::now();
    let r = run(&env, &bad, &["snapshots"]);
    r.expect_code(1, "wrong password");
    assert!(t.elapsed() < Duration::from_secs(10), "not retried");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("401") && r.stderr.contains("user and password"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-pass") && !r.stderr.contains(REST_PASS), "no password in messages");
    // A repository path that holds nothing: exit 10.
    run(&env, &format!("{}/nothing-here", rest.url), &["snapshots"]).expect_code(10, "no repository");
}

#[test]
fn a_rest_server_killed_mid_backup_fails_cleanly_and_the_next_backup_succeeds() {
    let Some(mut rest) = Server::rest() else { return };
    let (_t, work) = common::tempdir();
    let env = rest.arch_env(&work);
    let url = format!("{}/repo", rest.url);
    run(&env, &url, &["init"]).ok("init");
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        common::write_random_file(&src.join(format!("f{i}")), 2000 + i, 8 << 20);
    }
    let repo = rest.data.join("repo");
    let out = backup_while_the_server_dies(&env, &url, &src, &repo, || rest.stop());
    let stderr = out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(stderr.contains("gave up after"), "{stderr}");
    assert!(out.after_stop < Duration::from_secs(30), "bounded: {:?}", out.after_stop);

    rest.start();
    run(&env, &url, &["backup", src.to_str().unwrap()]).ok("backup after restart");
    let r = run(&env, &url, &["check"]);
    r.ok("check after restart");
    assert!(r.stdout.contains("no errors found"), "{}", r.stdout);
}
