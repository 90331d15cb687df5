use anyhow::Result;
use arch_archiver::{split_snapshot_spec, CancellationToken, OverwriteMode, Restore, RestoreOptions};
use clap::ValueEnum;

use crate::cli::{Cli, RestoreArgs};
use crate::progress::{human, Mode, Reporter};

/// `--overwrite` modes (see [`OverwriteMode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OverwriteArg {
    /// Replace whatever the target holds at the snapshot's paths.
    Always,
    /// Keep files whose content already matches; rewrite only the chunks
    /// that differ (resumes an interrupted restore).
    IfChanged,
    /// Replace only entries older than the snapshot's (by mtime).
    IfNewer,
    /// Keep every existing entry; restore only what is missing.
    Never,
}

impl From<OverwriteArg> for OverwriteMode {
    fn from(a: OverwriteArg) -> OverwriteMode {
        match a {
            OverwriteArg::Always => OverwriteMode::Always,
            OverwriteArg::IfChanged => OverwriteMode::IfChanged,
            OverwriteArg::IfNewer => OverwriteMode::IfNewer,
            OverwriteArg::Never => OverwriteMode::Never,
        }
    }
}

pub fn run(cli: &Cli, args: &RestoreArgs, token: &CancellationToken) -> Result<i32> {
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let (snap_ref, subpath) = split_snapshot_spec(args.snapshot.as_bytes());
    let (id, snap) = repo.find_snapshot_filtered(std::str::from_utf8(snap_ref)?, &args.filter.filter())?;
    let mut opts = RestoreOptions::default().dry_run(args.dry_run).verify(args.verify).delete(args.delete);
    if let Some(mode) = args.overwrite {
        opts = opts.overwrite_mode(mode.into());
    }
    if let Some(p) = subpath {
        opts = opts.subpath(p.to_vec());
    }
    opts.includes = args.include.clone();
    opts.iincludes = args.iinclude.clone();
    opts.excludes = args.exclude.clone();
    opts.iexcludes = args.iexclude.clone();
    let progress = Reporter::start(Mode::choose(cli.quiet, cli.json, cli.progress_interval), "written");
    let result = Restore::new(&repo, &snap, &args.target)
        .options(opts)
        .progress(progress.sink())
        .cancel_token(token.clone())
        .run();
    progress.finish();
    let r = result?;
    for w in &r.warnings {
        eprintln!("warning: {}: {}", w.path.display(), w.message);
    }
    for f in &r.verify_failures {
        eprintln!("verify failed: {}: {}", f.path.display(), f.message);
    }
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": id.to_hex(), "dry_run": args.dry_run,
                "files": r.files, "dirs": r.dirs, "others": r.others,
                "bytes": r.bytes, "bytes_written": r.written, "files_skipped": r.skipped,
                "deleted": r.deleted, "verified": r.verified,
                "verify_failures": r.verify_failures.iter().map(|f| serde_json::json!({
                    "path": f.path.to_string_lossy(), "message": f.message,
                })).collect::<Vec<_>>(),
                "warnings": r.warnings.len(),
            })
        );
    } else if !cli.quiet {
        let (verb, written) =
            if args.dry_run { ("would restore", "to write") } else { ("restored", "written") };
        println!(
            "{verb} snapshot {} to {}: {} files, {} dirs, {} others, {} ({} {written}, {} files unchanged)",
            id.short(),
            args.target.display(),
            r.files,
            r.dirs,
            r.others,
            human(r.bytes),
            human(r.written),
            r.skipped,
        );
        if args.delete {
            let verb = if args.dry_run { "would delete" } else { "deleted" };
            println!("{verb} {} entries not in the snapshot", r.deleted);
        }
        if args.verify {
            println!("verified {} files: {} differ", r.verified, r.verify_failures.len());
        }
    }
    if !r.verify_failures.is_empty() {
        return Ok(crate::exit::FATAL);
    }
    Ok(crate::exit::OK)
}
