use anyhow::Result;
use arch_archiver::{CancellationToken, Restore, RestoreOptions};

use crate::cli::{Cli, Overwrite, RestoreArgs};
use crate::progress::{human, Mode, Reporter};

pub fn run(cli: &Cli, args: &RestoreArgs, token: &CancellationToken) -> Result<i32> {
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let (id, snap) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let progress = Reporter::start(Mode::choose(cli.quiet, cli.json, cli.progress_interval), "written");
    let result = Restore::new(&repo, &snap, &args.target)
        .options(RestoreOptions::default().overwrite(args.overwrite == Overwrite::Always))
        .progress(progress.sink())
        .cancel_token(token.clone())
        .run();
    progress.finish();
    let r = result?;
    for w in &r.warnings {
        eprintln!("warning: {}: {}", w.path.display(), w.message);
    }
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": id.to_hex(), "files": r.files, "dirs": r.dirs, "others": r.others,
                "bytes": r.bytes, "warnings": r.warnings.len(),
            })
        );
    } else if !cli.quiet {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} others, {}",
            id.short(),
            args.target.display(),
            r.files,
            r.dirs,
            r.others,
            human(r.bytes)
        );
    }
    Ok(crate::exit::OK)
}
