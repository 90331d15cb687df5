use anyhow::{Context, Result};
use arch_archiver::{read_list_file, Backup, BackupOptions, CancellationToken, StreamSource};

use crate::cli::{BackupArgs, Cli};
use crate::progress::{human, Mode, Reporter};

/// What `arch run` reports about its backup step.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub snapshot_id: Option<String>,
    pub bytes_added: u64,
    pub files: u64,
}

pub fn run(cli: &Cli, args: &BackupArgs, token: &CancellationToken) -> Result<i32> {
    run_outcome(cli, args, token).map(|(code, _)| code)
}

/// As [`run`], also returning what the backup did.
pub fn run_outcome(cli: &Cli, args: &BackupArgs, token: &CancellationToken) -> Result<(i32, Outcome)> {
    let (repo, _lease) = crate::repo::open_or_create_default(cli)?;
    let mut opts = BackupOptions::default();
    for t in &args.tags {
        opts = opts.tag(t.clone());
    }
    if let Some(h) = &args.host {
        opts = opts.host(h.clone());
    }
    if let Some(p) = &args.parent {
        opts = opts.parent(repo.find_snapshot(p)?.0);
    }
    opts = opts.force(args.force).ignore_inode(args.ignore_inode).ignore_ctime(args.ignore_ctime);
    for p in &args.exclude {
        opts = opts.exclude(p.clone());
    }
    for p in &args.iexclude {
        opts = opts.iexclude(p.clone());
    }
    for f in &args.exclude_file {
        for p in read_list_file(f)? {
            opts = opts.exclude(p);
        }
    }
    for f in &args.iexclude_file {
        for p in read_list_file(f)? {
            opts = opts.iexclude(p);
        }
    }
    for n in &args.exclude_if_present {
        opts = opts.exclude_if_present(n.clone());
    }
    if let Some(limit) = args.exclude_larger_than {
        opts = opts.exclude_larger_than(limit);
    }
    opts = opts
        .exclude_caches(args.exclude_caches)
        .one_file_system(args.one_file_system)
        .git_ignore(args.git_ignore);
    let mut paths = args.paths.clone();
    for f in &args.files_from {
        paths.extend(read_list_file(f)?.into_iter().map(std::path::PathBuf::from));
    }
    // Never back up the repository into itself.
    if let Some(p) = crate::repo::location(cli)?.local_path().and_then(|p| std::fs::canonicalize(p).ok()) {
        opts = opts.exclude_path(p);
    }
    let mode = Mode::choose(cli.quiet, cli.json, cli.progress_interval);
    // The pre-scan only pays when someone watches the percentage.
    opts = opts.prescan(mode != Mode::Quiet);
    let progress = Reporter::start(mode, "read");
    if let Some(t) = args.time {
        opts = opts.time(t);
    }
    opts = opts.dry_run(args.dry_run).skip_if_unchanged(args.skip_if_unchanged).with_atime(args.with_atime);
    opts = opts.read_mode(args.read_mode);
    if let Some(level) = args.compression.0 {
        opts = opts.compression_level(level);
    }
    let backup = if args.stdin {
        let stdin: Box<dyn std::io::Read + Send> = Box::new(std::io::stdin());
        Backup::stream(&repo, StreamSource::new(&args.stdin_filename, stdin))
    } else if args.stdin_from_command {
        let (program, rest) = args.paths.split_first().context("--stdin-from-command needs a command")?;
        let source = StreamSource::command(
            &args.stdin_filename,
            program.as_os_str(),
            &rest.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(),
        )
        .with_context(|| format!("cannot run {}", program.display()))?;
        Backup::stream(&repo, source)
    } else {
        Backup::new(&repo, &paths)
    };
    let result = backup.options(opts).progress(progress.sink()).cancel_token(token.clone()).run();
    progress.finish();
    let result = result?;
    let s = result.snapshot.summary.clone().unwrap_or_default();
    let outcome = Outcome {
        snapshot_id: result.snapshot_id.map(|id| id.to_hex()),
        bytes_added: s.bytes_added_stored,
        files: s.files_new + s.files_changed + s.files_unmodified,
    };
    if cli.json {
        let mut v = serde_json::to_value(&s)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = result.snapshot_id.map(|id| id.to_hex()).into();
        v["dry_run"] = args.dry_run.into();
        v["warnings"] = result
            .warnings
            .iter()
            .map(|w| serde_json::json!({ "path": w.path, "message": w.message }))
            .collect();
        println!("{v}");
    } else if !cli.quiet {
        println!(
            "files: {} new, {} changed, {} unmodified; {} dirs, {} others; {} read of {}",
            s.files_new,
            s.files_changed,
            s.files_unmodified,
            s.dirs,
            s.others,
            human(s.bytes_read),
            human(s.bytes_total)
        );
        println!(
            "added to the repository: {} ({} stored) in {} new blobs",
            human(s.bytes_added_raw),
            human(s.bytes_added_stored),
            s.blobs_added
        );
        match result.snapshot_id {
            Some(id) => println!("snapshot {} saved in {:.2}s", id.short(), s.duration_secs),
            None if args.dry_run => println!("dry run: nothing stored, no snapshot written"),
            None => println!("nothing changed since the parent snapshot: no snapshot written"),
        }
    }
    if !result.warnings.is_empty() {
        eprintln!(
            "arch: {} files or directories could not be read; the snapshot lacks them",
            result.warnings.len()
        );
        return Ok((crate::exit::PARTIAL, outcome));
    }
    Ok((crate::exit::OK, outcome))
}
