//! Every command against a real S3 server (s3s-fs: SigV4, conditional
//! create), through the CLI.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use crate::servers::{
    assert_second_backup_adds_no_data, backup_while_the_server_dies, run, snapshot_count, Server,
};

/// The repository's folder inside the server's data (bucket/prefix).
fn repo_dir(s: &Server, bucket_prefix: &str) -> std::path::PathBuf {
    s.data.join(bucket_prefix)
}

#[test]
fn backup_restore_check_forget_prune_and_keys_on_s3() {
    let Some(s3) = Server::s3() else { return };
    let (_t, work) = common::tempdir();
    let env = s3.arch_env(&work);
    let url = format!("{}/bucket/some/prefix", s3.url);
    run(&env, &url, &["init"]).ok("init");
    let again = run(&env, &url, &["init"]);
    again.expect_code(1, "second init");
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let src = work.join("src");
    common::build_fixture(&src);
    let src_arg = src.display().to_string();
    run(&env, &url, &["backup", &src_arg]).ok("first backup");
    let packs = common::pack_files(&repo_dir(&s3, "bucket/some/prefix"));
    assert!(!packs.is_empty(), "packs are stored under the bucket and prefix");
    assert_second_backup_adds_no_data(&env, &url, &src_arg, &repo_dir(&s3, "bucket/some/prefix"));

    let target = work.join("restored");
    run(&env, &url, &["restore", "latest", "--target", &target.display().to_string()]).ok("restore");
    common::assert_trees_equal(&src, &common::restored_path(&target, &src));

    // Listings of one key per page: every page is followed.
    assert_eq!(snapshot_count(&env, &url, &["-o", "s3.list-page-size=1"]), 2);
    let r = run(&env, &url, &["-o", "s3.list-page-size=1", "check", "--read-data"]);
    r.ok("check --read-data");
    assert!(r.stdout.contains("no errors found"), "{}", r.stdout);

    run(&env, &url, &["forget", "--keep-last", "1", "--prune"]).ok("forget --prune");
    assert_eq!(snapshot_count(&env, &url, &[]), 1);
    run(&env, &url, &["prune"]).ok("prune");
    run(&env, &url, &["check", "--read-data"]).ok("check after prune");

    let pw2 = work.join("pw2");
    std::fs::write(&pw2, "second password\n").unwrap();
    run(&env, &url, &["key", "add", "--new-password-file", &pw2.display().to_string()]).ok("key add");
    let env2 = env.clone().var("ARCH_PASSWORD", "second password");
    assert_eq!(snapshot_count(&env2, &url, &[]), 1, "the new password opens the repository");
}

#[test]
fn copy_from_a_local_repository_into_s3_and_back() {
    let Some(s3) = Server::s3() else { return };
    let (_t, work) = common::tempdir();
    let env = s3.arch_env(&work).var("ARCH_FROM_PASSWORD", common::PASSWORD);
    let local = work.join("local").display().to_string();
    let src = work.join("src");
    common::build_fixture(&src);
    run(&env, &local, &["init"]).ok("init local");
    run(&env, &local, &["backup", &src.display().to_string()]).ok("backup local");

    let url = format!("{}/copies", s3.url);
    run(&env, &url, &["init", "--from-repo", &local, "--copy-chunker-params"]).ok("init s3");
    let r = run(&env, &url, &["copy", "--from-repo", &local]);
    r.ok("copy local -> s3");
    assert!(r.stdout.contains("copied as"), "{}", r.stdout);
    assert_eq!(snapshot_count(&env, &url, &[]), 1);
    let target = work.join("from-s3");
    run(&env, &url, &["restore", "latest", "--target", &target.display().to_string()]).ok("restore");
    common::assert_trees_equal(&src, &common::restored_path(&target, &src));

    // And back: S3 as the source of a copy into a new local repository.
    let back = work.join("back").display().to_string();
    run(&env, &back, &["init"]).ok("init back");
    run(&env, &back, &["copy", "--from-repo", &url]).ok("copy s3 -> local");
    assert_eq!(snapshot_count(&env, &back, &[]), 1);
    run(&env, &back, &["check", "--read-data"]).ok("check the local copy");
}

#[test]
fn wrong_credentials_fail_fast_with_one_line() {
    let Some(s3) = Server::s3() else { return };
    let (_t, work) = common::tempdir();
    let env = s3.arch_env(&work);
    let url = format!("{}/bucket", s3.url);
    run(&env, &url, &["init"]).ok("init");
    let bad = env.clone().var("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    for args in [&["snapshots"][..], &["backup", work.to_str().unwrap()][..]] {
        let t = Instant::now();
        let r = run(&bad, &url, args);
        r.expect_code(1, "wrong secret");
        assert!(t.elapsed() < Duration::from_secs(10), "not retried: {:?}", t.elapsed());
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stderr.contains("403") && r.stderr.contains("AWS_SECRET_ACCESS_KEY"), "{}", r.stderr);
        assert!(r.stderr.contains(&url), "names the location: {}", r.stderr);
        assert!(!r.stderr.contains("not-the-secret"), "never prints the secret");
    }
    let none = env.clone().unset("AWS_ACCESS_KEY_ID").unset("AWS_SECRET_ACCESS_KEY");
    let r = run(&none, &url, &["snapshots"]);
    r.expect_code(1, "no credentials");
    assert!(r.stderr.contains("no S3 credentials"), "{}", r.stderr);
    // A bucket that does not exist holds no repository (exit 10).
    run(&env, &format!("{}/nobucket", s3.url), &["snapshots"]).expect_code(10, "no repository");
    // Unknown options are refused by name.
    let r = run(&env, &url, &["-o", "s3.regoin=x", "snapshots"]);
    r.expect_code(1, "unknown option");
    assert!(r.stderr.contains("\"s3.regoin\""), "{}", r.stderr);
}

/// Writes `n` files of `size` random bytes under `dir`.
fn random_tree(dir: &Path, n: u64, size: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        common::write_random_file(&dir.join(format!("f{i}")), 1000 + i, size);
    }
}

#[test]
fn a_server_killed_mid_backup_fails_cleanly_and_the_next_backup_succeeds() {
    let Some(mut s3) = Server::s3() else { return };
    let (_t, work) = common::tempdir();
    let env = s3.arch_env(&work);
    let url = format!("{}/bucket", s3.url);
    run(&env, &url, &["init"]).ok("init");
    let src = work.join("src");
    random_tree(&src, 12, 8 << 20);
    let repo = repo_dir(&s3, "bucket");

    // Stop the server once the first pack has landed.
    let out = backup_while_the_server_dies(&env, &url, &src, &repo, || s3.stop());
    let stderr = out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(stderr.contains("gave up after") && stderr.contains(&url), "{stderr}");
    assert!(out.after_stop < Duration::from_secs(30), "bounded retry time: {:?}", out.after_stop);

    s3.start();
    run(&env, &url, &["backup", src.to_str().unwrap()]).ok("backup after restart");
    let r = run(&env, &url, &["check"]);
    r.ok("check after restart");
    assert!(r.stdout.contains("no errors found"), "{}", r.stdout);
    assert_eq!(snapshot_count(&env, &url, &[]), 1);
}
