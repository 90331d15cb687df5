use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arch_archiver::{copy_snapshots, CancellationToken, Repository};
use clap::Args;

use crate::cli::{Cli, FilterArgs};

/// Copy snapshots from another repository into this one.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy from (a path or URL, as --repo).
    #[arg(long, value_name = "URL", env = "ARCH_FROM_REPOSITORY")]
    pub from_repo: std::ffi::OsString,
    /// Password file of the source repository (first line).
    #[arg(long, value_name = "FILE", env = "ARCH_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Snapshots to copy (id prefixes or "latest"); default: all that pass the filters.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(cli: &Cli, args: &CopyArgs, token: &CancellationToken) -> Result<i32> {
    let (dst, _dst_lease) = crate::repo::open_locked(cli, false)?;
    let password = crate::password::get_source(args.from_password_file.as_deref())?;
    let from = crate::repo::parse_url(&args.from_repo)?;
    let src = Arc::new(
        crate::repo::backend_at(cli, &from)
            .and_then(|b| Ok(Repository::open_unindexed(b, &password)?))
            .with_context(|| format!("source repository {from}"))?,
    );
    let _src_lease = crate::repo::lease(cli, &src, false)?;
    src.load_index()?;
    let filter = args.filter.filter();
    let snaps = if args.snapshots.is_empty() {
        src.list_snapshots_filtered(&filter)?
    } else {
        args.snapshots
            .iter()
            .map(|s| src.find_snapshot_filtered(s, &filter))
            .collect::<Result<Vec<_>, _>>()?
    };
    let r = copy_snapshots(&src, &dst, &snaps, token)?;
    if r.chunker_differs && !cli.quiet {
        eprintln!(
            "note: the repositories use different chunker parameters; copied data will not deduplicate with data \
             backed up into {} directly (create it with 'arch init --copy-chunker-params' to share them)",
            crate::repo::location(cli)?.url
        );
    }
    if cli.json {
        let copied: Vec<_> = r
            .copied
            .iter()
            .map(|(from, to)| serde_json::json!({"source": from.to_hex(), "target": to.to_hex()}))
            .collect();
        let skipped: Vec<_> = r.skipped.iter().map(|id| id.to_hex()).collect();
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary", "copied": copied, "skipped": skipped,
                "blobs_copied": r.blobs_copied, "bytes_copied": r.bytes_copied,
                "chunker_differs": r.chunker_differs,
            })
        );
    } else if !cli.quiet {
        for (from, to) in &r.copied {
            println!("snapshot {} copied as {}", from.short(), to.short());
        }
        for id in &r.skipped {
            println!("snapshot {} already in the target, skipped", id.short());
        }
        println!("{} blobs ({}) transferred", r.blobs_copied, crate::progress::human(r.bytes_copied));
    }
    Ok(crate::exit::OK)
}
