//! `arch tag`: change the tags of snapshots.

use std::sync::Arc;

use anyhow::{bail, Result};
use arch_archiver::{retag_snapshot, Id, Snapshot, TagChange};
use clap::Args;
use serde_json::json;

use crate::cli::{Cli, FilterArgs};

/// Add, remove or replace tags of snapshots. Each changed snapshot is
/// written anew (its id changes; the new one records the original id) and
/// the old object is removed afterwards.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// Snapshots to change (id prefixes or "latest"); without them, every
    /// snapshot passing --host/--tag/--path.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add these tags (comma-separated or repeated).
    #[arg(long, value_name = "TAGS")]
    pub add: Vec<String>,
    /// Remove these tags (comma-separated or repeated).
    #[arg(long, value_name = "TAGS")]
    pub remove: Vec<String>,
    /// Replace all tags with these (comma-separated or repeated; '' removes all).
    #[arg(long, value_name = "TAGS", conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn split(v: &[String]) -> Vec<String> {
    v.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

pub fn run(cli: &Cli, args: &TagArgs) -> Result<i32> {
    let mut change = TagChange::default();
    change.add = split(&args.add);
    change.remove = split(&args.remove);
    if !args.set.is_empty() {
        change.set = Some(split(&args.set));
    }
    if change.is_empty() {
        bail!("nothing to do: give --add, --remove or --set");
    }
    let repo = Arc::new(crate::repo::open_unindexed(cli)?);
    // Tagging only adds a snapshot and then removes one: a shared lease
    // keeps prune (exclusive) out while backups may go on.
    let _lease = crate::repo::lease(cli, &repo, false)?;
    let filter = args.filter.filter();
    let targets: Vec<(Id, Snapshot)> = if args.snapshots.is_empty() {
        repo.list_snapshots_filtered(&filter)?
    } else {
        let mut v: Vec<(Id, Snapshot)> = Vec::new();
        for spec in &args.snapshots {
            let (id, s) = repo.find_snapshot_filtered(spec, &filter)?;
            if !v.iter().any(|(i, _)| *i == id) {
                v.push((id, s));
            }
        }
        v
    };
    let mut changed = Vec::new();
    for (id, s) in &targets {
        if let Some((new_id, new)) = retag_snapshot(&repo, id, s, &change)? {
            if !cli.json && !cli.quiet {
                println!(
                    "snapshot {} -> {}: tags [{}] -> [{}]",
                    id.short(),
                    new_id.short(),
                    s.tags.join(","),
                    new.tags.join(",")
                );
            }
            changed.push(json!({"old_id": id.to_hex(), "new_id": new_id.to_hex(), "tags": new.tags}));
        }
    }
    if cli.json {
        println!("{}", json!({"message_type": "summary", "changed": changed, "matched": targets.len()}));
    } else if !cli.quiet {
        println!("changed {} of {} snapshots", changed.len(), targets.len());
    }
    Ok(crate::exit::OK)
}
