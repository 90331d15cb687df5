use std::time::Duration;

use anyhow::Result;
use arch_archiver::{prune, PruneOptions, PruneReport, Repository};
use clap::Args;

use crate::cli::Cli;
use crate::progress::human;

/// Remove data that no snapshot needs.
#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    /// Repack packs with more than this share unused ("5%", "0%" to repack
    /// everything that has any waste, "100%" never to repack).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub max_unused: Option<f64>,
    /// Repack at most this much data in one run (bytes, or K/M/G/T).
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::parse_size)]
    pub max_repack_size: Option<u64>,
    /// Keep packs marked for deletion this long before deleting them
    /// ("24h" default; "0" deletes at once, which is only safe when no
    /// backup can have started before this prune).
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    pub grace: Option<Duration>,
    /// Show what would be done; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn run(cli: &Cli, args: &PruneArgs) -> Result<i32> {
    // Prune reads the index itself once it holds the lease.
    let repo = std::sync::Arc::new(crate::repo::open_unindexed(cli)?);
    let _lease = crate::repo::lease(cli, &repo, true)?;
    prune_locked(cli, &repo, args)
}

/// Prunes with default options while the caller holds an exclusive lease
/// (`forget --prune`).
pub fn run_after_forget(cli: &Cli, repo: &Repository) -> Result<i32> {
    prune_locked(cli, repo, &PruneArgs::default())
}

fn prune_locked(cli: &Cli, repo: &Repository, args: &PruneArgs) -> Result<i32> {
    let mut opts = PruneOptions::default().dry_run(args.dry_run);
    if let Some(u) = args.max_unused {
        opts = opts.max_unused(u);
    }
    if let Some(s) = args.max_repack_size {
        opts = opts.max_repack_size(s);
    }
    if let Some(g) = args.grace {
        opts = opts.grace(g);
    }
    let r = prune(repo, &opts)?;
    if cli.json {
        let mut v = serde_json::to_value(&r)?;
        v["message_type"] = "summary".into();
        v["dry_run"] = args.dry_run.into();
        println!("{v}");
    } else if !cli.quiet {
        print_report(&r, args.dry_run, opts.grace);
    }
    Ok(crate::exit::OK)
}

fn print_report(r: &PruneReport, dry_run: bool, grace: Duration) {
    let would = if dry_run { "would be " } else { "" };
    println!("{} packs, {} blobs needed by snapshots", r.packs, r.blobs_used);
    if r.packs_unindexed + r.packs_missing > 0 {
        println!("{} packs not in the index, {} indexed packs missing", r.packs_unindexed, r.packs_missing);
    }
    println!(
        "{} packs {}marked for deletion ({}); they are deleted by a prune after {}h",
        r.packs_marked,
        would,
        human(r.bytes_marked),
        grace.as_secs() / 3600
    );
    println!(
        "{} packs {}repacked ({} of needed blobs copied), {} new packs",
        r.packs_repacked,
        would,
        human(r.bytes_repacked),
        r.packs_written
    );
    println!("{} packs {}deleted, {} freed", r.packs_deleted, would, human(r.bytes_deleted));
    if r.temp_files_removed > 0 {
        println!("{} temporary files of interrupted writes removed", r.temp_files_removed);
    }
    if r.packs_waiting + r.packs_revived > 0 {
        println!("{} marked packs still in their grace period, {} revived", r.packs_waiting, r.packs_revived);
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v / 100.0),
        _ => Err(format!("invalid share {s:?}: use a percentage like 5%")),
    }
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::cli::parse_duration(s)
}
