//! forget (the retention policy and the command), tag, and key.
//!
//! The policy is tested table-style on the pure function with snapshots at
//! known times (UTC buckets), against restic's documented examples; the
//! commands run on a repository created with the cheap KDF, with snapshots
//! made by `arch backup --time`.

use std::path::Path;

use arch_archiver::{group_snapshots, ForgetPolicy, GroupBy, Id, RetentionDuration, Snapshot, UNLIMITED};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::{self, ArchEnv, Run};

// ---------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------

fn t(s: &str) -> DateTime<Utc> {
    Utc.from_utc_datetime(&chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
}

/// A snapshot at `time` (built from JSON, as stored, so new optional
/// fields do not break the test).
fn snap_at(time: DateTime<Utc>, host: &str, tags: &[&str]) -> Snapshot {
    serde_json::from_value(json!({
        "time": time.to_rfc3339(),
        "tree": "00".repeat(32),
        "paths": ["/data"],
        "hostname": host,
        "username": "u",
        "uid": 0,
        "gid": 0,
        "tags": tags,
        "program_version": "test",
    }))
    .unwrap()
}

/// Snapshots with ids 1, 2, 3, ... (by position) at the given times.
fn snaps(times: &[DateTime<Utc>]) -> Vec<(Id, Snapshot)> {
    times.iter().enumerate().map(|(i, tm)| (id(i), snap_at(*tm, "h", &[]))).collect()
}

fn id(i: usize) -> Id {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    Id::from_hex(&b.iter().map(|x| format!("{x:02x}")).collect::<String>()).unwrap()
}

fn dur(s: &str) -> RetentionDuration {
    s.parse().unwrap()
}

/// The times of the kept snapshots, oldest first, as "YYYY-MM-DD HH:MM".
fn kept(p: &ForgetPolicy, list: &[(Id, Snapshot)], now: DateTime<Utc>) -> Vec<String> {
    let by_id: std::collections::BTreeMap<Id, &Snapshot> = list.iter().map(|(i, s)| (*i, s)).collect();
    let mut v: Vec<String> = p
        .apply(list, now, &Utc)
        .into_iter()
        .filter(|v| v.keep)
        .map(|v| by_id[&v.id].time.with_timezone(&Utc).format("%Y-%m-%d %H:%M").to_string())
        .collect();
    v.sort();
    v
}

fn reasons_of(p: &ForgetPolicy, list: &[(Id, Snapshot)], now: DateTime<Utc>, which: usize) -> Vec<String> {
    p.apply(list, now, &Utc).into_iter().find(|v| v.id == id(which)).unwrap().reasons
}

fn policy(f: impl FnOnce(&mut ForgetPolicy)) -> ForgetPolicy {
    let mut p = ForgetPolicy::default();
    f(&mut p);
    p
}

fn far_future() -> DateTime<Utc> {
    t("2100-01-01 00:00")
}

#[test]
fn keep_daily_over_weekly_snapshots_is_restics_documented_example() {
    // restic's docs: one backup every Sunday for 12 weeks, --keep-daily 4
    // keeps the last four Sundays.
    let times: Vec<_> = (0..12).map(|w| t("2019-09-01 11:00") + Duration::weeks(w)).collect();
    let list = snaps(&times);
    let p = policy(|p| p.keep_daily = 4);
    assert_eq!(
        kept(&p, &list, far_future()),
        ["2019-10-27 11:00", "2019-11-03 11:00", "2019-11-10 11:00", "2019-11-17 11:00"]
    );
    assert_eq!(reasons_of(&p, &list, far_future(), 11), ["daily snapshot"]);
}

#[test]
fn keep_daily_7_over_30_daily_snapshots() {
    let times: Vec<_> = (0..30).map(|d| t("2026-01-01 03:00") + Duration::days(d)).collect();
    let list = snaps(&times);
    let got = kept(&policy(|p| p.keep_daily = 7), &list, far_future());
    let want: Vec<String> = (24..=30).map(|d| format!("2026-01-{d:02} 03:00")).collect();
    assert_eq!(got, want);
}

#[test]
fn several_per_day_keep_the_newest_of_each_day_and_the_oldest_when_counts_are_left() {
    let list = snaps(&[
        t("2026-02-01 08:00"),
        t("2026-02-01 20:00"),
        t("2026-02-02 08:00"),
        t("2026-02-02 20:00"),
        t("2026-02-03 08:00"),
        t("2026-02-03 20:00"),
    ]);
    let p = policy(|p| p.keep_daily = 7);
    // Only three days have snapshots: the newest of each, plus the oldest
    // snapshot because four daily slots are left (restic 0.17 behaviour).
    assert_eq!(
        kept(&p, &list, far_future()),
        ["2026-02-01 08:00", "2026-02-01 20:00", "2026-02-02 20:00", "2026-02-03 20:00"]
    );
    assert_eq!(reasons_of(&p, &list, far_future(), 0), ["oldest daily snapshot"]);
    // With exactly three slots nothing is left for the oldest.
    assert_eq!(
        kept(&policy(|p| p.keep_daily = 3), &list, far_future()),
        ["2026-02-01 20:00", "2026-02-02 20:00", "2026-02-03 20:00"]
    );
}

#[test]
fn keep_last_and_keep_daily_overlap_and_both_reasons_are_listed() {
    // Every 6 hours for 4 days.
    let times: Vec<_> = (0..16).map(|i| t("2026-03-01 00:00") + Duration::hours(6 * i)).collect();
    let list = snaps(&times);
    let p = policy(|p| {
        p.keep_last = 3;
        p.keep_daily = 3;
    });
    assert_eq!(
        kept(&p, &list, far_future()),
        ["2026-03-02 18:00", "2026-03-03 18:00", "2026-03-04 06:00", "2026-03-04 12:00", "2026-03-04 18:00"]
    );
    assert_eq!(reasons_of(&p, &list, far_future(), 15), ["last snapshot", "daily snapshot"]);
    assert_eq!(reasons_of(&p, &list, far_future(), 14), ["last snapshot"]);
    assert_eq!(reasons_of(&p, &list, far_future(), 11), ["daily snapshot"]);
}

#[test]
fn keep_monthly_with_several_snapshots_per_month() {
    let mut times = Vec::new();
    for m in 1..=6 {
        for d in [1, 10, 20] {
            times.push(t(&format!("2025-{m:02}-{d:02} 12:00")));
        }
    }
    let list = snaps(&times);
    assert_eq!(
        kept(&policy(|p| p.keep_monthly = 3), &list, far_future()),
        ["2025-04-20 12:00", "2025-05-20 12:00", "2025-06-20 12:00"]
    );
    // Unlimited: the newest of every month, and (slots being left) the
    // oldest snapshot, as restic does.
    let all = kept(&policy(|p| p.keep_monthly = UNLIMITED), &list, far_future());
    assert_eq!((all.len(), all[0].as_str()), (7, "2025-01-01 12:00"));
}

#[test]
fn weeks_run_monday_to_sunday() {
    // 2026-01-03 is a Saturday, 01-04 a Sunday (both ISO week 1), 01-05 a
    // Monday (week 2).
    let list = snaps(&[t("2026-01-03 12:00"), t("2026-01-04 12:00"), t("2026-01-05 12:00")]);
    assert_eq!(
        kept(&policy(|p| p.keep_weekly = 2), &list, far_future()),
        ["2026-01-04 12:00", "2026-01-05 12:00"]
    );
}

#[test]
fn keep_yearly_keeps_the_oldest_when_the_history_is_shorter() {
    // Monthly snapshots from March 2023 to December 2025; --keep-yearly 5
    // keeps the last of each year and, as only three years exist, the very
    // first snapshot too (restic issue 3624).
    let mut times = Vec::new();
    for y in 2023..=2025 {
        for m in 1..=12 {
            if y == 2023 && m < 3 {
                continue;
            }
            times.push(t(&format!("{y}-{m:02}-15 12:00")));
        }
    }
    let list = snaps(&times);
    assert_eq!(
        kept(&policy(|p| p.keep_yearly = 5), &list, far_future()),
        ["2023-03-15 12:00", "2023-12-15 12:00", "2024-12-15 12:00", "2025-12-15 12:00"]
    );
}

#[test]
fn keep_within_counts_back_from_the_latest_snapshot_not_from_now() {
    let times: Vec<_> = (0..30).map(|d| t("2026-01-01 12:00") + Duration::days(d)).collect();
    let list = snaps(&times);
    // Latest is 01-30 12:00; 7 days before is 01-23 12:00, which is not
    // strictly newer, so 01-24 .. 01-30 stay.
    let p = policy(|p| p.keep_within = dur("7d"));
    let want: Vec<String> = (24..=30).map(|d| format!("2026-01-{d:02} 12:00")).collect();
    assert_eq!(kept(&p, &list, far_future()), want);
    assert_eq!(reasons_of(&p, &list, far_future(), 29), ["within 7d"]);
    // Hours count too; and a snapshot from the future does not move the
    // window (it is kept, being inside it).
    let mut with_future = list.clone();
    with_future.push((id(99), snap_at(t("2027-01-01 00:00"), "h", &[])));
    let p = policy(|p| p.keep_within = dur("1d12h"));
    assert_eq!(
        kept(&p, &with_future, t("2026-02-01 00:00")),
        ["2026-01-29 12:00", "2026-01-30 12:00", "2027-01-01 00:00"]
    );
    // Months: 01-01 .. 03-01; one month before 03-01 12:00 is 02-01 12:00.
    let times: Vec<_> = (0..60).map(|d| t("2026-01-01 12:00") + Duration::days(d)).collect();
    let got = kept(&policy(|p| p.keep_within = dur("1m")), &snaps(&times), far_future());
    assert_eq!((got.len(), got[0].as_str()), (28, "2026-02-02 12:00"));
}

#[test]
fn keep_within_daily_keeps_one_per_day_inside_the_window() {
    // Every 12 hours for 10 days: 03-01 00:00 .. 03-10 12:00.
    let times: Vec<_> = (0..20).map(|i| t("2026-03-01 00:00") + Duration::hours(12 * i)).collect();
    let list = snaps(&times);
    let p = policy(|p| p.keep_within_daily = dur("3d"));
    assert_eq!(kept(&p, &list, far_future()), ["2026-03-08 12:00", "2026-03-09 12:00", "2026-03-10 12:00"]);
    assert_eq!(reasons_of(&p, &list, far_future(), 19), ["daily within 3d"]);
    // A window longer than the history keeps the oldest snapshot too.
    let p = policy(|p| p.keep_within_weekly = dur("1y"));
    let got = kept(&p, &list, far_future());
    assert_eq!(got.first().map(String::as_str), Some("2026-03-01 00:00"));
}

#[test]
fn keep_tag_keeps_tagged_snapshots_and_empty_matches_untagged() {
    let list = vec![
        (id(0), snap_at(t("2026-01-01 00:00"), "h", &["a", "b"])),
        (id(1), snap_at(t("2026-01-02 00:00"), "h", &["a"])),
        (id(2), snap_at(t("2026-01-03 00:00"), "h", &[])),
        (id(3), snap_at(t("2026-01-04 00:00"), "h", &["c"])),
    ];
    let p = policy(|p| p.keep_tags = vec![vec!["a".into(), "b".into()], vec!["c".into()]]);
    assert_eq!(kept(&p, &list, far_future()), ["2026-01-01 00:00", "2026-01-04 00:00"]);
    assert_eq!(reasons_of(&p, &list, far_future(), 0), ["tagged a,b"]);
    let untagged = policy(|p| p.keep_tags = vec![vec![]]);
    assert_eq!(kept(&untagged, &list, far_future()), ["2026-01-03 00:00"]);
    // A tag nobody has keeps nothing: the CLI refuses such a run.
    assert!(kept(&policy(|p| p.keep_tags = vec![vec!["zzz".into()]]), &list, far_future()).is_empty());
}

#[test]
fn group_by_host_applies_the_policy_per_host() {
    let mut list = Vec::new();
    for (i, host) in ["web", "db", "web", "db", "web"].iter().enumerate() {
        list.push((id(i), snap_at(t("2026-01-01 00:00") + Duration::days(i as i64), host, &[])));
    }
    let p = policy(|p| p.keep_last = 1);
    let groups = group_snapshots(list.clone(), GroupBy::default());
    assert_eq!(groups.len(), 2);
    let mut kept_all: Vec<String> = groups.iter().flat_map(|(_, g)| kept(&p, g, far_future())).collect();
    kept_all.sort();
    assert_eq!(kept_all, ["2026-01-04 00:00", "2026-01-05 00:00"]);
    assert_eq!(groups[0].0.host.as_deref(), Some("db"));
    // One group for everything.
    let one = group_snapshots(list, "".parse().unwrap());
    assert_eq!(one.len(), 1);
    assert_eq!(kept(&p, &one[0].1, far_future()), ["2026-01-05 00:00"]);
}

#[test]
fn an_empty_policy_keeps_everything() {
    let list = snaps(&[t("2026-01-01 00:00"), t("2026-01-02 00:00")]);
    let p = ForgetPolicy::default();
    assert!(p.is_empty());
    assert_eq!(kept(&p, &list, far_future()).len(), 2);
}

// ---------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------

struct Cli {
    env: ArchEnv,
    repo: std::path::PathBuf,
    src: std::path::PathBuf,
    _t: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        let (t, base) = common::tempdir();
        let repo = base.join("repo");
        drop(common::init_repo(&repo));
        let src = base.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), b"tiny\n").unwrap();
        Cli { env: ArchEnv::new(&base), repo, src, _t: t }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), self.repo.clone().into()];
        a.extend(args.iter().map(|s| std::ffi::OsString::from(*s)));
        self.env.run(&a)
    }

    fn backup(&self, time: &str, host: &str, tags: &[&str]) {
        let src = self.src.to_str().unwrap();
        let mut a = vec!["-q", "backup", src, "--time", time, "--host", host];
        for t in tags {
            a.extend(["--tag", t]);
        }
        self.run(&a).ok("backup");
    }

    /// (short id, host, time, tags) of every snapshot, oldest first.
    fn snapshots(&self) -> Vec<Value> {
        let r = self.run(&["--json", "snapshots"]);
        r.ok("snapshots");
        serde_json::from_str::<Vec<Value>>(r.stdout.trim()).unwrap()
    }

    fn times(&self, host: &str) -> Vec<String> {
        self.snapshots()
            .iter()
            .filter(|s| s["hostname"] == host)
            .map(|s| s["time"].as_str().unwrap()[..10].to_string())
            .collect()
    }
}

fn count(dir: &Path) -> usize {
    common::object_count(dir, "snapshots")
}

#[test]
fn forget_cli_dry_run_filters_guard_and_explicit_ids() {
    let c = Cli::new();
    for d in 1..=5 {
        c.backup(&format!("2026-01-{d:02}T12:00:00Z"), "web", &[]);
    }
    c.backup("2026-01-03T12:00:00Z", "db", &[]);
    c.backup("2026-01-04T12:00:00Z", "db", &["keep"]);
    assert_eq!(count(&c.repo), 7);

    // A dry run prints the plan and removes nothing.
    let r = c.run(&["forget", "--keep-daily", "2", "--dry-run"]);
    r.ok("dry run");
    assert!(r.stdout.contains("would remove 3 snapshots"), "{}", r.stdout);
    assert!(r.stdout.contains("daily snapshot"), "{}", r.stdout);
    assert_eq!(count(&c.repo), 7);

    // No policy at all is refused.
    let r = c.run(&["forget"]);
    r.expect_code(1, "empty policy");
    assert!(r.stderr.contains("no policy"), "{}", r.stderr);

    // A policy that would empty a group is refused, and removes nothing
    // anywhere.
    let r = c.run(&["forget", "--keep-tag", "keep"]);
    r.expect_code(1, "guard");
    assert!(
        r.stderr.contains("would remove all 5 snapshots") && r.stderr.contains("--allow-remove-all"),
        "{}",
        r.stderr
    );
    assert_eq!(count(&c.repo), 7);

    // Filters limit the scope: only web's group is touched.
    let r = c.run(&["--json", "forget", "--host", "web", "--keep-last", "2"]);
    r.ok("forget web");
    let plan: Vec<Value> = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0]["group"]["host"], "web");
    assert_eq!(plan[0]["keep"].as_array().unwrap().len(), 2);
    assert_eq!(plan[0]["keep"][0]["reasons"], json!(["last snapshot"]));
    assert_eq!(plan[0]["remove"].as_array().unwrap().len(), 3);
    assert_eq!(c.times("web"), ["2026-01-04", "2026-01-05"]);
    assert_eq!(c.times("db"), ["2026-01-03", "2026-01-04"]);

    // keep-tag within db: the untagged one goes.
    c.run(&["forget", "--host", "db", "--keep-tag", "keep"]).ok("keep tag");
    assert_eq!(c.times("db"), ["2026-01-04"]);

    // Explicit ids remove just those; they cannot be mixed with a policy.
    let web = c.snapshots().into_iter().find(|s| s["hostname"] == "web").unwrap();
    let short = web["short_id"].as_str().unwrap();
    c.run(&["forget", short, "--keep-last", "1"]).expect_code(1, "ids and policy");
    let r = c.run(&["forget", short]);
    r.ok("forget id");
    assert!(r.stdout.contains("removed 1 snapshot"), "{}", r.stdout);
    assert_eq!(c.times("web"), ["2026-01-05"]);

    // --allow-remove-all without a policy needs a filter, then empties it.
    c.run(&["forget", "--allow-remove-all"]).expect_code(1, "remove all unfiltered");
    c.run(&["forget", "--allow-remove-all", "--host", "db"]).ok("remove all of db");
    assert!(c.times("db").is_empty());
    assert_eq!(count(&c.repo), 1);

    // --prune runs prune after removing, under the same lease.
    c.backup("2026-01-06T12:00:00Z", "web", &[]);
    let r = c.run(&["forget", "--keep-last", "1", "--prune"]);
    r.ok("forget --prune");
    assert!(
        r.stdout.contains("removed 1 snapshot") && r.stdout.contains("marked for deletion"),
        "{}",
        r.stdout
    );
    assert_eq!(c.times("web"), ["2026-01-06"]);
}

#[test]
fn tag_rewrites_snapshots_and_keeps_the_original_id() {
    let c = Cli::new();
    c.backup("2026-01-01T12:00:00Z", "h", &["a"]);
    c.backup("2026-01-02T12:00:00Z", "h", &[]);
    let first = c.snapshots()[0]["id"].as_str().unwrap().to_string();

    c.run(&["tag", "--add", "x,y", "--tag", "a"]).ok("add");
    let s = c.snapshots();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["tags"], json!(["a", "x", "y"]));
    assert_eq!(s[0]["original"], first.as_str());
    assert!(s[1].get("tags").is_none_or(|t| t == &json!([])), "the filter limits the change: {s:?}");

    let latest = s[1]["short_id"].as_str().unwrap().to_string();
    c.run(&["tag", &latest, "--set", "only"]).ok("set");
    c.run(&["tag", "--remove", "x", "--tag", "x"]).ok("remove");
    let s = c.snapshots();
    assert_eq!(s[0]["tags"], json!(["a", "y"]));
    assert_eq!(s[0]["original"], first.as_str(), "the original id survives a second rewrite");
    assert_eq!(s[1]["tags"], json!(["only"]));
    assert_eq!(count(&c.repo), 2, "old snapshot objects are removed");
    c.run(&["tag"]).expect_code(1, "nothing to do");
}

#[test]
fn key_add_list_remove_and_passwd() {
    let c = Cli::new();
    let keys = |env: &ArchEnv| -> Vec<Value> {
        let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), c.repo.clone().into()];
        a.extend(["--json", "key", "list"].map(Into::into));
        let r = env.run(&a);
        r.ok("key list");
        serde_json::from_str(r.stdout.trim()).unwrap()
    };
    let k = keys(&c.env);
    assert_eq!(k.len(), 1);
    assert_eq!(k[0]["current"], true);
    let first = k[0]["short_id"].as_str().unwrap().to_string();

    // The only key, which is also the current one, cannot go.
    let r = c.run(&["key", "remove", &first]);
    r.expect_code(1, "remove current");
    // No new password: a clear error before anything is written.
    let r = c.run(&["key", "add"]);
    r.expect_code(1, "no new password");
    assert!(r.stderr.contains("ARCH_NEW_PASSWORD"), "{}", r.stderr);

    let pw2 = c.env.base.join("pw2");
    std::fs::write(&pw2, "second password\n").unwrap();
    let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), c.repo.clone().into()];
    a.extend(["key".into(), "add".into(), "--new-password-file".into(), pw2.clone().into()]);
    c.env.run(&a).ok("key add");
    let second_env = c.env.clone().var("ARCH_PASSWORD", "second password");
    let k2 = keys(&second_env);
    assert_eq!(k2.len(), 2);
    let second = k2.iter().find(|k| k["current"] == true).unwrap()["short_id"].as_str().unwrap().to_string();
    assert_ne!(second, first);

    // The second password removes the first key.
    let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), c.repo.clone().into()];
    a.extend(["key", "remove", &first].map(Into::into));
    second_env.run(&a).ok("remove first");
    c.run(&["snapshots"]).expect_code(12, "the first password no longer opens");

    // passwd replaces the key in use.
    let third_env = second_env.clone().var("ARCH_NEW_PASSWORD", "third password");
    let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), c.repo.clone().into()];
    a.extend(["key", "passwd"].map(Into::into));
    third_env.run(&a).ok("passwd");
    let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), c.repo.clone().into()];
    a.push("snapshots".into());
    second_env.run(&a).expect_code(12, "old password gone");
    let k3 = keys(&c.env.clone().var("ARCH_PASSWORD", "third password"));
    assert_eq!(k3.len(), 1);
    assert_eq!(k3[0]["current"], true);
    // --password-command is a password source too.
    let cmd_env = c.env.clone().unset("ARCH_PASSWORD");
    let mut a: Vec<std::ffi::OsString> = vec!["--repo".into(), c.repo.clone().into()];
    a.extend(["--password-command", "echo 'third password'", "snapshots"].map(Into::into));
    cmd_env.run(&a).ok("--password-command");
}
