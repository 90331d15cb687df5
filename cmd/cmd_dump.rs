//! `arch dump`: a file's content, or a directory as a tar or zip stream,
//! on standard output.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;

use anyhow::Result;
use arch_archiver::{dump_archive, dump_file, find_node, split_snapshot_spec, ArchiveFormat, NodeKind};
use clap::{Args, ValueEnum};

use crate::cli::{Cli, FilterArgs};
use crate::cmd_ls::quiet_pipe;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Archive {
    /// tar (POSIX/GNU; keeps modes, owners, links, nanosecond mtimes).
    Tar,
    /// zip (deflate; no hard links, fifos or devices).
    Zip,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id prefix or "latest" (optionally "SNAPSHOT:PATH").
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: OsString,
    /// File or directory inside the snapshot (relative to the :PATH, if given).
    #[arg(value_name = "PATH")]
    pub path: Option<OsString>,
    /// Archive format for a directory (a file is written as is unless this is given).
    #[arg(long, short = 'a', value_enum)]
    pub archive: Option<Archive>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 't', value_name = "FILE")]
    pub target: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(cli: &Cli, args: &DumpArgs) -> Result<i32> {
    quiet_pipe(run_inner(cli, args))
}

fn run_inner(cli: &Cli, args: &DumpArgs) -> Result<i32> {
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let (snap_ref, sub) = split_snapshot_spec(args.snapshot.as_bytes());
    let snap_ref = std::str::from_utf8(snap_ref).map_err(|_| anyhow::anyhow!("snapshot id must be text"))?;
    let (_, snap) = repo.find_snapshot_filtered(snap_ref, &args.filter.filter())?;
    let mut path = sub.unwrap_or(b"/").to_vec();
    if let Some(p) = &args.path {
        path.push(b'/');
        path.extend_from_slice(p.as_bytes());
    }
    let node = find_node(&repo, &snap.tree, &path)?;
    let as_archive = args.archive.is_some() || node.kind != NodeKind::File;
    let stdout = std::io::stdout();
    if args.target.is_none() && as_archive && stdout.is_terminal() {
        anyhow::bail!("refusing to write an archive to a terminal; redirect standard output or use --target");
    }
    // A --target file is written under a temporary name and renamed when
    // complete, so a failed dump never leaves a truncated archive behind
    // under the name asked for.
    let tmp = args.target.as_ref().map(|t| {
        let mut name = std::ffi::OsString::from(".");
        name.push(t.file_name().unwrap_or_default());
        name.push(format!(".arch-tmp-{}", std::process::id()));
        t.with_file_name(name)
    });
    let _cleanup = tmp.as_ref().map(|p| RemoveOnDrop(p.clone()));
    let mut sink: Box<dyn Write> = match &tmp {
        Some(t) => {
            Box::new(std::fs::File::create(t).map_err(|e| anyhow::anyhow!("create {}: {e}", t.display()))?)
        }
        None => Box::new(stdout.lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut sink);
    if as_archive {
        let format = match args.archive {
            Some(Archive::Zip) => ArchiveFormat::Zip,
            _ => ArchiveFormat::Tar,
        };
        let stats = dump_archive(&repo, &node, format, &mut out)?;
        if stats.skipped > 0 && !cli.quiet {
            eprintln!("warning: {} entries the archive format cannot hold were left out", stats.skipped);
        }
    } else {
        dump_file(&repo, &node, &mut out)?;
    }
    out.flush()?;
    drop(out);
    sink.flush()?;
    drop(sink);
    if let (Some(tmp), Some(target)) = (&tmp, &args.target) {
        std::fs::rename(tmp, target).map_err(|e| anyhow::anyhow!("rename to {}: {e}", target.display()))?;
    }
    Ok(crate::exit::OK)
}

/// Removes a temporary file unless it was renamed away.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
