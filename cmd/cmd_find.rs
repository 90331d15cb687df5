//! `arch find`: search snapshots by name glob, or by blob, tree or pack id.

use std::io::Write;

use anyhow::Result;
use arch_archiver::{escape_path, ArchiveError, FindQuery, Finder};
use clap::Args;

use crate::cli::{Cli, FilterArgs};
use crate::cmd_ls::{kind_name, node_json, pipe_marker, quiet_pipe, time_string};

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Glob on names (`*.txt`), or on whole paths if it has a `/`
    /// (`/home/*/notes.txt`, `**/cache`). Several are ORed.
    #[arg(value_name = "PATTERN", required_unless_present_any = ["blob", "tree", "pack"])]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id prefix or "latest"; repeatable).
    /// Default: every snapshot passing the filters.
    #[arg(long = "snapshot", short = 's', value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Match patterns ignoring case.
    #[arg(long, short = 'i')]
    pub ignore_case: bool,
    /// Find files that contain the data blob with this id (prefix; repeatable).
    #[arg(long, value_name = "ID")]
    pub blob: Vec<String>,
    /// Find directories whose tree blob has this id (prefix; repeatable).
    #[arg(long, value_name = "ID")]
    pub tree: Vec<String>,
    /// Find files and directories with blobs in this pack (id prefix; repeatable).
    #[arg(long, value_name = "ID")]
    pub pack: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(cli: &Cli, args: &FindArgs) -> Result<i32> {
    quiet_pipe(run_inner(cli, args))
}

fn run_inner(cli: &Cli, args: &FindArgs) -> Result<i32> {
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let mut q = FindQuery::default().ignore_case(args.ignore_case);
    for p in &args.patterns {
        q = q.pattern(p.clone());
    }
    for b in &args.blob {
        q = q.blob(b.clone());
    }
    for t in &args.tree {
        q = q.tree(t.clone());
    }
    for p in &args.pack {
        q = q.pack(p.clone());
    }
    let finder = Finder::new(&repo, &q)?;
    let filter = args.filter.filter();
    let snaps = if args.snapshots.is_empty() {
        repo.list_snapshots_filtered(&filter)?
    } else {
        let mut v = Vec::new();
        for s in &args.snapshots {
            let found = repo.find_snapshot_filtered(s, &filter)?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut total = 0u64;
    for (id, snap) in &snaps {
        let short = id.short();
        total += finder.find(&repo, &snap.tree, &mut |path, n| {
            let r = if cli.json {
                let mut v = node_json(path, n);
                v["struct_type"] = "match".into();
                v["snapshot"] = id.to_hex().into();
                writeln!(out, "{v}")
            } else {
                writeln!(
                    out,
                    "{short}  {:<7}  {:>12}  {}  {}",
                    kind_name(n.kind),
                    n.size,
                    time_string(n.mtime),
                    escape_path(path)
                )
            };
            r.map_err(|e| ArchiveError::Invalid(pipe_marker(e)))
        })?;
    }
    out.flush()?;
    if !cli.json && !cli.quiet {
        eprintln!("{total} matches in {} snapshots", snaps.len());
    }
    Ok(crate::exit::OK)
}
