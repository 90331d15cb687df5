//! `arch stats`: how big the snapshots are, how much they take in the
//! repository, and the deduplication ratio.

use anyhow::Result;
use arch_archiver::{stats, StatsMode};
use clap::{Args, ValueEnum};

use crate::cli::{Cli, FilterArgs};
use crate::progress::human;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Sum of file sizes a restore would write (hardlinks once).
    RestoreSize,
    /// Sum of the sizes of files with distinct content.
    FilesByContents,
    /// Stored size of the distinct blobs the snapshots use.
    RawData,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Snapshots to count (id prefixes or "latest"); default: every snapshot passing the filters.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Which size to report.
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: Mode,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(cli: &Cli, args: &StatsArgs) -> Result<i32> {
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let filter = args.filter.filter();
    let mut trees = Vec::new();
    if args.snapshots.is_empty() {
        trees.extend(repo.list_snapshots_filtered(&filter)?.into_iter().map(|(_, s)| s.tree));
    } else {
        let mut seen = Vec::new();
        for s in &args.snapshots {
            let (id, snap) = repo.find_snapshot_filtered(s, &filter)?;
            if !seen.contains(&id) {
                seen.push(id);
                trees.push(snap.tree);
            }
        }
    }
    let s = stats(&repo, &trees)?;
    let mode = match args.mode {
        Mode::RestoreSize => StatsMode::RestoreSize,
        Mode::FilesByContents => StatsMode::FilesByContents,
        Mode::RawData => StatsMode::RawData,
    };
    let (mode_name, files, size) = match mode {
        StatsMode::RestoreSize => ("restore-size", s.files, s.restore_size),
        StatsMode::FilesByContents => ("files-by-contents", s.unique_files, s.unique_files_size),
        _ => ("raw-data", s.blobs, s.blobs_stored_size),
    };
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": mode_name,
                "total_size": size,
                "total_file_count": files,
                "snapshots_count": s.snapshots,
                "files": s.files, "dirs": s.dirs, "others": s.others,
                "restore_size": s.restore_size,
                "unique_files": s.unique_files, "unique_files_size": s.unique_files_size,
                "blobs": s.blobs, "blobs_raw_size": s.blobs_raw_size,
                "blobs_stored_size": s.blobs_stored_size,
                "dedup_ratio": s.dedup_ratio,
                "repository": {"blobs": s.repo_blobs, "packs": s.repo_packs, "size": s.repo_size},
            })
        );
        return Ok(crate::exit::OK);
    }
    println!("Stats in {mode_name} mode:");
    println!("  Snapshots:            {}", s.snapshots);
    match mode {
        StatsMode::RawData => {
            println!("  Blobs:                {}", s.blobs);
            println!("  Size (stored):        {}", human(s.blobs_stored_size));
            println!("  Size (uncompressed):  {}", human(s.blobs_raw_size));
        }
        _ => {
            println!("  Files:                {files}");
            println!("  Size:                 {}", human(size));
        }
    }
    println!("  Restore size:         {}", human(s.restore_size));
    println!("  Stored (unique data): {}", human(s.blobs_stored_size));
    println!("  Deduplication ratio:  {:.2}x", s.dedup_ratio);
    println!("Repository:");
    println!("  Blobs:                {}", s.repo_blobs);
    println!("  Packs:                {}", s.repo_packs);
    println!("  Size:                 {}", human(s.repo_size));
    Ok(crate::exit::OK)
}
