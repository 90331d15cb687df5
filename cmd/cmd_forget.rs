//! `arch forget`: remove snapshots by id or by a retention policy.

use std::sync::Arc;

use anyhow::{bail, Result};
use arch_archiver::{
    group_snapshots, remove_snapshot, ForgetPolicy, GroupBy, GroupKey, Id, RetentionDuration, Snapshot,
    Verdict, UNLIMITED,
};
use clap::Args;
use serde_json::{json, Value};

use crate::cli::{Cli, FilterArgs};

/// Remove snapshots, by id or by a --keep-* policy. Only the snapshot
/// objects go; run `arch prune` (or pass --prune) to free the data.
///
/// Snapshots are grouped (--group-by, default host,paths) and the policy
/// applies to each group on its own. A snapshot is kept if any rule keeps
/// it. Calendar rules (hourly … yearly) count natural hours, days, ISO weeks
/// (Monday to Sunday), months and years in local time, and only those that
/// have a snapshot: the newest snapshot of each of the N newest buckets is
/// kept (and the group's oldest snapshot too when there are fewer than N).
/// Durations ("1y2m3d4h") count back from the group's newest snapshot.
/// A policy that would remove every snapshot of a group is refused unless
/// --allow-remove-all is given.
#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to remove (id prefixes of at least 4 hex characters);
    /// without them the --keep-* policy decides.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots ("unlimited" keeps all).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest weeks that have one.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within DURATION ("1y2m3d4h") of the newest one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<RetentionDuration>,
    /// Keep hourly snapshots within DURATION of the newest one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<RetentionDuration>,
    /// Keep daily snapshots within DURATION of the newest one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<RetentionDuration>,
    /// Keep weekly snapshots within DURATION of the newest one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<RetentionDuration>,
    /// Keep monthly snapshots within DURATION of the newest one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<RetentionDuration>,
    /// Keep yearly snapshots within DURATION of the newest one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<RetentionDuration>,
    /// Keep snapshots with these tags ("a,b" needs both; repeat for either;
    /// '' keeps untagged snapshots).
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Group snapshots by any of host, paths, tags ('' for one group).
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: GroupBy,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be removed; remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Allow removing every snapshot of a group. Without a --keep-* policy
    /// it removes every snapshot matching --host/--tag/--path (at least one
    /// of them is required).
    #[arg(long)]
    pub allow_remove_all: bool,
    /// Run prune (with default options) after removing snapshots, under the
    /// same exclusive lease (skipped with --dry-run or when nothing was removed).
    #[arg(long)]
    pub prune: bool,
}

/// A count or "unlimited".
fn parse_count(s: &str) -> Result<u32, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(UNLIMITED);
    }
    match s.trim().parse::<u32>() {
        Ok(n) if n < UNLIMITED => Ok(n),
        _ => Err(format!("invalid count {s:?}: use a number or 'unlimited'")),
    }
}

impl ForgetArgs {
    fn policy(&self) -> ForgetPolicy {
        let d = |x: &Option<RetentionDuration>| x.unwrap_or_default();
        let mut p = ForgetPolicy::default();
        p.keep_last = self.keep_last.unwrap_or(0);
        p.keep_hourly = self.keep_hourly.unwrap_or(0);
        p.keep_daily = self.keep_daily.unwrap_or(0);
        p.keep_weekly = self.keep_weekly.unwrap_or(0);
        p.keep_monthly = self.keep_monthly.unwrap_or(0);
        p.keep_yearly = self.keep_yearly.unwrap_or(0);
        p.keep_within = d(&self.keep_within);
        p.keep_within_hourly = d(&self.keep_within_hourly);
        p.keep_within_daily = d(&self.keep_within_daily);
        p.keep_within_weekly = d(&self.keep_within_weekly);
        p.keep_within_monthly = d(&self.keep_within_monthly);
        p.keep_within_yearly = d(&self.keep_within_yearly);
        p.keep_tags = self
            .keep_tag
            .iter()
            .map(|l| l.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect())
            .collect();
        p
    }
}

/// One group's decision.
struct Plan {
    key: Option<GroupKey>,
    keep: Vec<(Id, Snapshot, Vec<String>)>,
    remove: Vec<(Id, Snapshot)>,
}

pub fn run(cli: &Cli, args: &ForgetArgs) -> Result<i32> {
    let policy = args.policy();
    let filtered =
        !(args.filter.hosts.is_empty() && args.filter.tags.is_empty() && args.filter.paths.is_empty());
    if !args.snapshots.is_empty() && (!policy.is_empty() || args.allow_remove_all) {
        bail!("give either snapshot ids or a --keep-* policy, not both");
    }
    if args.snapshots.is_empty() && policy.is_empty() {
        if !args.allow_remove_all {
            bail!("no policy given (--keep-last, --keep-daily, --keep-within, ...) and no snapshot ids: nothing was removed");
        }
        if !filtered {
            bail!("--allow-remove-all without a --keep-* policy removes every matching snapshot; limit it with --host, --tag or --path");
        }
    }
    let repo = Arc::new(crate::repo::open_unindexed(cli)?);
    // Decide and remove under one exclusive lease, so nothing changes the
    // snapshot list in between; a dry run changes nothing and needs none.
    let _lease = if args.dry_run { None } else { Some(crate::repo::lease(cli, &repo, true)?) };

    let plans = if args.snapshots.is_empty() {
        let snaps = repo.list_snapshots_filtered(&args.filter.filter())?;
        let now = chrono::Utc::now();
        let mut plans = Vec::new();
        for (key, list) in group_snapshots(snaps, args.group_by) {
            let verdicts: Vec<Verdict> = if policy.is_empty() {
                list.iter().rev().map(|(id, _)| Verdict { id: *id, keep: false, reasons: vec![] }).collect()
            } else {
                policy.apply(&list, now, &chrono::Local)
            };
            let by_id: std::collections::BTreeMap<Id, &Snapshot> =
                list.iter().map(|(i, s)| (*i, s)).collect();
            let mut plan = Plan { key: Some(key), keep: Vec::new(), remove: Vec::new() };
            // Verdicts are newest first; show oldest first, as `snapshots` does.
            for v in verdicts.into_iter().rev() {
                let s = by_id[&v.id].clone();
                if v.keep {
                    plan.keep.push((v.id, s, v.reasons));
                } else {
                    plan.remove.push((v.id, s));
                }
            }
            plans.push(plan);
        }
        if !args.allow_remove_all {
            for p in &plans {
                if p.keep.is_empty() && !p.remove.is_empty() {
                    bail!(
                        "the policy would remove all {} snapshots of {}; nothing was removed (pass --allow-remove-all if that is intended)",
                        p.remove.len(),
                        p.key.as_ref().map(|k| k.to_string()).unwrap_or_default()
                    );
                }
            }
        }
        plans
    } else {
        let mut remove: Vec<(Id, Snapshot)> = Vec::new();
        for spec in &args.snapshots {
            let (id, s) = repo.find_snapshot(spec)?;
            if !remove.iter().any(|(i, _)| *i == id) {
                remove.push((id, s));
            }
        }
        vec![Plan { key: None, keep: Vec::new(), remove }]
    };

    if cli.json {
        println!("{}", Value::Array(plans.iter().map(plan_json).collect()));
    } else if !cli.quiet {
        if !policy.is_empty() {
            println!("applying policy: {}", policy.describe());
        }
        for p in &plans {
            print_plan(p);
        }
    }
    let total: usize = plans.iter().map(|p| p.remove.len()).sum();
    if args.dry_run {
        if !cli.json && !cli.quiet {
            println!("dry run: would remove {total} {}", plural(total));
        }
        return Ok(crate::exit::OK);
    }
    for p in &plans {
        for (id, _) in &p.remove {
            remove_snapshot(&repo, id)?;
        }
    }
    if !cli.json && !cli.quiet {
        println!("removed {total} {}", plural(total));
    }
    if args.prune && total > 0 {
        return crate::cmd_prune::run_after_forget(cli, &repo);
    }
    Ok(crate::exit::OK)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "snapshot"
    } else {
        "snapshots"
    }
}

fn snap_json(id: &Id, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": s.time,
        "hostname": s.hostname,
        "paths": s.paths,
        "tags": s.tags,
    })
}

fn plan_json(p: &Plan) -> Value {
    let group = p.key.as_ref().map(|k| json!({"host": k.host, "paths": k.paths, "tags": k.tags}));
    let keep: Vec<Value> = p
        .keep
        .iter()
        .map(|(id, s, r)| {
            let mut v = snap_json(id, s);
            v["reasons"] = json!(r);
            v
        })
        .collect();
    let remove: Vec<Value> = p.remove.iter().map(|(id, s)| snap_json(id, s)).collect();
    json!({"group": group, "keep": keep, "remove": remove})
}

fn row(id: &Id, s: &Snapshot, reasons: Option<&[String]>) -> String {
    let mut line = format!(
        "  {:<8}  {:<19}  {:<16}  {:<12}",
        id.short(),
        s.time.format("%Y-%m-%d %H:%M:%S"),
        s.hostname,
        s.tags.join(",")
    );
    if let Some(r) = reasons {
        line.push_str(&format!("  {:<28}", r.join(", ")));
    }
    line.push_str(&format!("  {}", s.paths.join(" ")));
    line
}

fn print_plan(p: &Plan) {
    if let Some(k) = &p.key {
        println!("\nsnapshots of {k}:");
    }
    if !p.keep.is_empty() {
        println!("keep {} {}:", p.keep.len(), plural(p.keep.len()));
        println!("  {:<8}  {:<19}  {:<16}  {:<12}  {:<28}  paths", "id", "time", "host", "tags", "reasons");
        for (id, s, r) in &p.keep {
            println!("{}", row(id, s, Some(r)));
        }
    }
    if !p.remove.is_empty() {
        println!("remove {} {}:", p.remove.len(), plural(p.remove.len()));
        println!("  {:<8}  {:<19}  {:<16}  {:<12}  paths", "id", "time", "host", "tags");
        for (id, s) in &p.remove {
            println!("{}", row(id, s, None));
        }
    }
}
