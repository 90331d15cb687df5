//! `arch ls`: list a directory of a snapshot; plus the node formatting that
//! `find` and `cat tree` share.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::Result;
use arch_archiver::{
    escape_path, find_node, path_components, resolve_snapshot_spec, walk_tree, Node, NodeKind, Timestamp,
    WalkControl,
};
use clap::Args;

use crate::cli::{Cli, FilterArgs};

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id prefix or "latest", optionally with a path: "latest:/home/alice".
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: OsString,
    /// Directory or file inside the snapshot (relative to the :PATH, if given).
    #[arg(value_name = "PATH")]
    pub path: Option<OsString>,
    /// Long listing: mode, owner, size, modification time, symlink target.
    #[arg(long, short = 'l')]
    pub long: bool,
    /// List everything below the directory, not just its entries.
    #[arg(long, short = 'R')]
    pub recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(cli: &Cli, args: &LsArgs) -> Result<i32> {
    crate::cmd_ls::quiet_pipe(run_inner(cli, args))
}

fn run_inner(cli: &Cli, args: &LsArgs) -> Result<i32> {
    let (repo, _lease) = crate::repo::open_locked(cli, false)?;
    let (_, snap, base) = resolve_snapshot_spec(&repo, args.snapshot.as_bytes(), &args.filter.filter())?;
    let (_, sub) = arch_archiver::split_snapshot_spec(args.snapshot.as_bytes());
    let mut full = sub.unwrap_or(b"/").to_vec();
    let node = match &args.path {
        Some(p) => {
            full.push(b'/');
            full.extend_from_slice(p.as_bytes());
            find_node(&repo, &snap.tree, &full)?
        }
        None => base,
    };
    let full = arch_archiver::join_components(&path_components(&full));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut print = |path: &[u8], n: &Node| -> std::io::Result<()> {
        if cli.json {
            writeln!(out, "{}", node_json(path, n))
        } else if args.long {
            writeln!(out, "{}", long_line(path, n))
        } else {
            writeln!(out, "{}", escape_path(path))
        }
    };
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(tree)) => {
            let prefix = if full == b"/" { Vec::new() } else { full.clone() };
            walk_tree(&repo, &tree, &prefix, &mut |path, n| {
                print(path, n).map_err(|e| arch_archiver::ArchiveError::Invalid(pipe_marker(e)))?;
                Ok(if args.recursive { WalkControl::Continue } else { WalkControl::SkipChildren })
            })?;
        }
        _ => print(&full, &node)?,
    }
    out.flush()?;
    Ok(crate::exit::OK)
}

const BROKEN_PIPE: &str = "\u{0}broken pipe";

/// Carries a write error through the library's error type; a broken pipe
/// (`arch ls | head`) is recognised by [`quiet_pipe`].
pub(crate) fn pipe_marker(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        BROKEN_PIPE.to_string()
    } else {
        format!("write to standard output: {e}")
    }
}

/// A reader that stopped reading our output (`| head`) ends the command
/// quietly and successfully, as with other Unix tools.
pub(crate) fn quiet_pipe(r: Result<i32>) -> Result<i32> {
    match r {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    || c.to_string() == BROKEN_PIPE
            }) =>
        {
            Ok(crate::exit::OK)
        }
        r => r,
    }
}

/// `drwxr-xr-x`-style mode string of a node.
pub(crate) fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
    };
    let m = n.mode;
    let mut s = String::with_capacity(10);
    s.push(t);
    for (shift, special, set, unset) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')]
    {
        let bits = (m >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, m & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Local time, to the second, for listings.
pub(crate) fn time_string(t: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(t.0, t.1) {
        Some(d) => d.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("@{}", t.0),
    }
}

/// RFC 3339 with nanoseconds, for JSON.
pub(crate) fn time_rfc3339(t: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(t.0, t.1) {
        Some(d) => d.with_timezone(&chrono::Local).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        None => format!("@{}", t.0),
    }
}

pub(crate) fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
        NodeKind::Chardev => "chardev",
        NodeKind::Blockdev => "blockdev",
    }
}

fn owner(name: &str, id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

/// One `ls -l` line: mode, owner/group, size, mtime, path (and target).
pub(crate) fn long_line(path: &[u8], n: &Node) -> String {
    let mut s = format!(
        "{} {:<17} {:>12} {} {}",
        mode_string(n),
        format!("{}/{}", owner(&n.user, n.uid), owner(&n.group, n.gid)),
        n.size,
        time_string(n.mtime),
        escape_path(path)
    );
    if let Some(t) = &n.target {
        s.push_str(" -> ");
        s.push_str(&escape_path(t));
    }
    s
}

/// A node as a JSON object for people and scripts: names and targets as
/// (escaped) strings, with the raw bytes in hex when they are not UTF-8.
pub(crate) fn node_json(path: &[u8], n: &Node) -> serde_json::Value {
    let mut v = serde_json::json!({
        "struct_type": "node",
        "path": json_text(path),
        "name": json_text(&n.name),
        "type": kind_name(n.kind),
        "mode": n.mode,
        "permissions": mode_string(n),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mtime": time_rfc3339(n.mtime),
        "ctime": time_rfc3339(n.ctime),
        "inode": n.inode,
        "device": n.device,
        "links": n.links,
    });
    if std::str::from_utf8(path).is_err() {
        v["path_hex"] = hex(path).into();
    }
    if let Some(t) = &n.target {
        v["target"] = json_text(t).into();
        if std::str::from_utf8(t).is_err() {
            v["target_hex"] = hex(t).into();
        }
    }
    if n.atime != Timestamp::default() {
        v["atime"] = time_rfc3339(n.atime).into();
    }
    if n.rdev != 0 {
        v["rdev"] = n.rdev.into();
    }
    if !n.xattrs.is_empty() {
        v["xattrs"] = n
            .xattrs
            .iter()
            .map(|x| serde_json::json!({"name": json_text(&x.name), "value_hex": hex(&x.value)}))
            .collect::<Vec<_>>()
            .into();
    }
    if !n.content.is_empty() {
        v["content"] = n.content.iter().map(|id| id.to_hex()).collect::<Vec<_>>().into();
    }
    if let Some(s) = &n.subtree {
        v["subtree"] = s.to_hex().into();
    }
    v
}

/// A name or path for JSON: as is when it is UTF-8 (JSON strings can hold
/// any Unicode text), else escaped like [`escape_path`] (and the caller adds
/// the raw bytes in hex).
pub(crate) fn json_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => escape_path(b),
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
