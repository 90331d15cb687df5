//! `arch diff`: what changed between two snapshots.

use std::io::Write;

use anyhow::Result;
use arch_archiver::{diff_trees, escape_path, resolve_snapshot_spec, ArchiveError, DiffOptions, NodeKind};
use clap::Args;

use crate::cli::{Cli, FilterArgs};
use crate::cmd_ls::{kind_name, pipe_marker, quiet_pipe};
use crate::progress::human;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot (id prefix or "latest"; ":PATH" compares a subtree).
    #[arg(value_name = "SNAPSHOT1[:PATH]")]
    pub first: std::ffi::OsString,
    /// The newer snapshot.
    #[arg(value_name = "SNAPSHOT2[:PATH]")]
    pub second: std::ffi::OsString,
    /// Also list entries whose metadata alone changed (mode, owner, mtime, xattrs) as "U".
    #[arg(long)]
    pub metadata: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(cli: &Cli, args: &DiffArgs) -> Result<i32> {
    quiet_pipe(run_inner(cli, args))
}

fn run_inner(cli: &Cli, args: &DiffArgs) -> Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let filter = args.filter.filter();
    let (id_a, _, a) = resolve_snapshot_spec(&repo, args.first.as_bytes(), &filter)?;
    let (id_b, _, b) = resolve_snapshot_spec(&repo, args.second.as_bytes(), &filter)?;
    let (Some(ta), Some(tb)) = (a.subtree, b.subtree) else {
        anyhow::bail!("diff compares directories; one of the paths is not a directory");
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !cli.json && !cli.quiet {
        writeln!(out, "comparing snapshot {} to {}:", id_a.short(), id_b.short())?;
    }
    let opts = DiffOptions::default().metadata(args.metadata);
    let stats = diff_trees(&repo, &ta, &tb, &opts, &mut |change, path, old, new| {
        let node = new.or(old).expect("a change has a node");
        let r = if cli.json {
            let mut v = serde_json::json!({
                "message_type": "change",
                "path": crate::cmd_ls::json_text(path),
                "modifier": change.marker().to_string(),
                "change": change.name(),
                "type": kind_name(node.kind),
            });
            if std::str::from_utf8(path).is_err() {
                v["path_hex"] = crate::cmd_ls::hex(path).into();
            }
            if let Some(o) = old {
                v["old_type"] = kind_name(o.kind).into();
                v["old_size"] = o.size.into();
            }
            if let Some(n) = new {
                v["new_size"] = n.size.into();
            }
            writeln!(out, "{v}")
        } else {
            let slash = if node.kind == NodeKind::Dir { "/" } else { "" };
            writeln!(out, "{}    {}{slash}", change.marker(), escape_path(path))
        };
        r.map_err(|e| ArchiveError::Invalid(pipe_marker(e)))
    })?;
    if cli.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "message_type": "statistics",
                "source_snapshot": id_a.to_hex(), "target_snapshot": id_b.to_hex(),
                "added": {"files": stats.files_added, "dirs": stats.dirs_added, "others": stats.others_added,
                          "bytes": stats.bytes_added},
                "removed": {"files": stats.files_removed, "dirs": stats.dirs_removed,
                            "others": stats.others_removed, "bytes": stats.bytes_removed},
                "changed_files": stats.modified, "type_changed": stats.type_changed,
                "metadata_changed": stats.metadata_changed,
            })
        )?;
    } else if !cli.quiet {
        writeln!(out)?;
        writeln!(
            out,
            "Files:       {:>6} new, {:>6} removed, {:>6} changed",
            stats.files_added, stats.files_removed, stats.modified
        )?;
        writeln!(out, "Dirs:        {:>6} new, {:>6} removed", stats.dirs_added, stats.dirs_removed)?;
        writeln!(out, "Others:      {:>6} new, {:>6} removed", stats.others_added, stats.others_removed)?;
        if stats.type_changed > 0 || args.metadata {
            writeln!(
                out,
                "Type changed: {:>5}, metadata changed: {:>6}",
                stats.type_changed, stats.metadata_changed
            )?;
        }
        writeln!(out, "Added:   {}", human(stats.bytes_added))?;
        writeln!(out, "Removed: {}", human(stats.bytes_removed))?;
    }
    out.flush()?;
    Ok(crate::exit::OK)
}
