//! Walks the source paths and feeds the FileSaver; builds the directory
//! skeleton that the TreeSaver completes.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use arch_repository::{Node, NodeKind, Timestamp, Xattr};
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::backup::spawn;
use crate::context::Ctx;
use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::file_saver::{open_ahead, Opened};
use crate::metadata::{node_from_metadata, read_xattrs};
use crate::options::BackupOptions;
use crate::parent::{unchanged, ParentDir};
use crate::select::{too_large, walk_selected, Selector};
use crate::stats::add;

/// A regular file for the FileSaver to read.
pub(crate) struct FileJob {
    pub(crate) path: PathBuf,
    pub(crate) node: Node,
    pub(crate) dir: Arc<DirState>,
    /// The parent snapshot has this file, with different metadata.
    pub(crate) changed: bool,
    /// Where the content comes from.
    pub(crate) source: JobSource,
    /// The stream is all the backup saves, so a read error fails the run
    /// (there is no file to skip to).
    pub(crate) stream_is_whole_backup: bool,
}

/// The content of a [`FileJob`].
pub(crate) enum JobSource {
    /// The file at the job's path, opened by the scanner (or why it could
    /// not be).
    File(std::io::Result<Opened>),
    /// A stream instead of a file.
    Stream(Box<dyn std::io::Read + Send>),
}

/// Makes each path absolute with its parent resolved (the last component
/// is kept as given, so a symlink argument is saved as a symlink), checks it
/// exists, and drops duplicates and paths inside other given paths.
pub(crate) fn prepare_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ArchiveError> {
    if paths.is_empty() {
        return Err(ArchiveError::Invalid("nothing to back up: give at least one path".into()));
    }
    let mut out = Vec::new();
    for p in paths {
        std::fs::symlink_metadata(p).map_err(|e| ArchiveError::io("cannot back up", p, e))?;
        let abs = match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                std::fs::canonicalize(parent).map_err(|e| ArchiveError::io("resolve", parent, e))?.join(name)
            }
            (_, Some(name)) if p.components().count() == 1 => std::env::current_dir()
                .and_then(std::fs::canonicalize)
                .map_err(|e| ArchiveError::io("resolve", ".", e))?
                .join(name),
            _ => std::fs::canonicalize(p).map_err(|e| ArchiveError::io("resolve", p, e))?,
        };
        out.push(abs);
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in out {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// Scans `paths` (prepared). The snapshot root mirrors their absolute
/// paths: intermediate directories get their real metadata.
pub(crate) fn scan(
    ctx: &Ctx<'_>,
    paths: &[PathBuf],
    opts: &BackupOptions,
    selector: &mut Selector,
    file_tx: &Sender<FileJob>,
    tree_tx: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    let root = DirState::new(None, None);
    let root_parent = ParentDir::root(ctx.repo, ctx.parent_tree);
    let mut intermediates: HashMap<PathBuf, (Arc<DirState>, ParentDir)> = HashMap::new();
    let mut order: Vec<Arc<DirState>> = Vec::new();
    for p in paths {
        let mut dir = (Arc::clone(&root), root_parent.clone());
        let mut cur = PathBuf::from("/");
        for comp in p.parent().unwrap_or(Path::new("/")).components() {
            let Component::Normal(name) = comp else { continue };
            cur.push(name);
            if let Some((d, pd)) = intermediates.get(&cur) {
                dir = (Arc::clone(d), pd.clone());
                continue;
            }
            let md = std::fs::metadata(&cur).map_err(|e| ArchiveError::io("stat", &cur, e))?;
            let mut node = node_from_metadata(name, &md, &ctx.names);
            node.xattrs = read_xattrs(&cur);
            if !ctx.with_atime {
                node.atime = Timestamp::default();
            }
            let pd = dir.1.child(ctx.repo, name.as_bytes());
            let d = DirState::new(Some(node), Some(dir.0));
            intermediates.insert(cur.clone(), (Arc::clone(&d), pd.clone()));
            order.push(Arc::clone(&d));
            dir = (d, pd);
        }
        walk(ctx, p, dir, opts, selector, file_tx, tree_tx)?;
    }
    // Children were created after their parents: release deepest first.
    for d in order.iter().rev() {
        ctx.finish_child(d, None, tree_tx)?;
    }
    ctx.finish_child(&root, None, tree_tx)
}

/// Entries the lister hands over at a time: one by one, the two threads
/// would wake each other for every entry of a cached tree.
const LIST_BATCH: usize = 32;

/// Batches the lister may read ahead of the scanner. An entry holds a path
/// and its metadata (a few hundred bytes).
const LIST_AHEAD: usize = 128;

/// One entry of the walk, with its metadata and extended attributes read.
type Listed = walkdir::Result<(walkdir::DirEntry, walkdir::Result<std::fs::Metadata>, Vec<Xattr>)>;

/// Walks `top` on a lister thread and saves what it lists. Reading
/// directories and inodes is what a backup of many small files waits on
/// when they are not cached: the lister does it ahead, in the same order,
/// while this thread compares with the parent, opens files and queues them
/// (docs/PERFORMANCE.md has the timings). A file's metadata is thus read up
/// to a few thousand entries before the file is opened; one that changes
/// in between is caught by the FileSaver's check after reading, as one
/// changed while it was read.
fn walk(
    ctx: &Ctx<'_>,
    top: &Path,
    parent: (Arc<DirState>, ParentDir),
    opts: &BackupOptions,
    selector: &mut Selector,
    file_tx: &Sender<FileJob>,
    tree_tx: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    let saved = std::thread::scope(|s| {
        let (tx, rx) = bounded::<Vec<Listed>>(LIST_AHEAD);
        let selector = &mut *selector;
        let lister = spawn(s, ctx.scope, "arch-list", move || {
            list(ctx, top, opts, selector, &tx);
            Ok(())
        });
        // Returning drops the receiver, which stops the lister.
        let saved = save_listed(ctx, top, parent, opts, rx, file_tx, tree_tx);
        if let Some(l) = lister {
            // The lister catches its own panics (spawn), so join cannot fail.
            let _ = l.join();
        }
        saved
    });
    saved?;
    for (path, problem) in std::mem::take(&mut selector.problems) {
        ctx.file_problem(&path, &std::io::Error::other(problem))?;
    }
    Ok(())
}

/// Sends every selected entry under `top` with its metadata, until done,
/// cancelled, or the scanner stops taking them.
fn list(ctx: &Ctx<'_>, top: &Path, opts: &BackupOptions, selector: &mut Selector, tx: &Sender<Vec<Listed>>) {
    let mut batch = Vec::with_capacity(LIST_BATCH);
    for entry in walk_selected(top, opts, selector) {
        batch.push(entry.map(|e| {
            let md = e.metadata();
            let xattrs = if md.is_ok() { read_xattrs(e.path()) } else { Vec::new() };
            (e, md, xattrs)
        }));
        if batch.len() == LIST_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
            if ctx.scope.send(tx, full).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = ctx.scope.send(tx, batch);
    }
}

fn save_listed(
    ctx: &Ctx<'_>,
    top: &Path,
    parent: (Arc<DirState>, ParentDir),
    opts: &BackupOptions,
    listed: Receiver<Vec<Listed>>,
    file_tx: &Sender<FileJob>,
    tree_tx: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    // stack[d] is the directory holding entries of walk depth d, with the
    // parent snapshot's listing of the same directory.
    let mut stack = vec![parent];
    for entry in std::iter::from_fn(|| ctx.scope.recv(&listed)).flatten() {
        ctx.inject(Stage::Scanner)?;
        let (entry, md, xattrs) = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(top).to_path_buf();
                let io = e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                ctx.file_problem(&path, &io)?;
                continue;
            }
        };
        while stack.len() > entry.depth() + 1 {
            let (done, _) = stack.pop().expect("stack is deeper than the entry");
            ctx.finish_child(&done, None, tree_tx)?;
        }
        let (dir, old_dir) = stack.last().cloned().expect("the top's parent stays on the stack");
        let md = match md {
            Ok(m) => m,
            Err(e) => {
                let io = e.into_io_error().unwrap_or_else(|| std::io::Error::other("stat failed"));
                ctx.file_problem(entry.path(), &io)?;
                continue;
            }
        };
        if too_large(&md, opts.exclude_larger_than) {
            continue;
        }
        let mut node = node_from_metadata(entry.file_name(), &md, &ctx.names);
        node.xattrs = xattrs;
        if !ctx.with_atime {
            node.atime = Timestamp::default();
        }
        match node.kind {
            NodeKind::Dir => {
                let old = old_dir.child(ctx.repo, &node.name);
                stack.push((DirState::new(Some(node), Some(dir)), old));
            }
            NodeKind::File => {
                let old = old_dir.find(&node.name);
                if let Some(old) = old.filter(|o| unchanged(o, &node, ctx.rules, ctx.repo)) {
                    node.content = old.content.clone();
                    add(&ctx.stats.files_unmodified, 1);
                    add(&ctx.stats.bytes_total, node.size);
                    ctx.progress.file_done(entry.path(), node.size);
                    dir.add_pending();
                    ctx.finish_child(&dir, Some(node), tree_tx)?;
                } else {
                    dir.add_pending();
                    let changed = old.is_some();
                    let source = JobSource::File(open_ahead(ctx, entry.path()));
                    let job = FileJob {
                        path: entry.into_path(),
                        node,
                        dir,
                        changed,
                        source,
                        stream_is_whole_backup: false,
                    };
                    ctx.scope.send(file_tx, job)?;
                }
            }
            // A socket is meaningless once its server is gone: not saved.
            NodeKind::Socket => ctx.progress.skipped(entry.path(), "socket"),
            NodeKind::Symlink => match std::fs::read_link(entry.path()) {
                Ok(t) => {
                    node.target = Some(t.as_os_str().as_bytes().to_vec());
                    add_leaf(ctx, &dir, node, entry.path(), tree_tx)?;
                }
                Err(e) => ctx.file_problem(entry.path(), &e)?,
            },
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                add_leaf(ctx, &dir, node, entry.path(), tree_tx)?
            }
        }
    }
    // A cancelled run ends the loop early: the pools are winding down.
    if ctx.scope.is_cancelled() {
        return Err(ArchiveError::Cancelled);
    }
    while stack.len() > 1 {
        let (done, _) = stack.pop().expect("len > 1");
        ctx.finish_child(&done, None, tree_tx)?;
    }
    Ok(())
}

fn add_leaf(
    ctx: &Ctx<'_>,
    dir: &Arc<DirState>,
    node: Node,
    path: &Path,
    tree_tx: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    add(&ctx.stats.others, 1);
    ctx.progress.file_done(path, 0);
    dir.add_pending();
    ctx.finish_child(dir, Some(node), tree_tx)
}

/// "Scans" a stream source: one file at the snapshot root.
pub(crate) fn scan_stream(
    ctx: &Ctx<'_>,
    source: crate::stream::StreamSource,
    file_tx: &Sender<FileJob>,
    tree_tx: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    let root = DirState::new(None, None);
    let mut node = Node::new(source.name.clone().into_bytes(), NodeKind::File);
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let now = Timestamp(now.as_secs() as i64, now.subsec_nanos());
    node.mode = 0o644;
    node.uid = uid;
    node.gid = gid;
    node.mtime = now;
    node.ctime = now;
    node.links = 1;
    root.add_pending();
    let path = PathBuf::from("/").join(&source.name);
    let job = FileJob {
        path,
        node,
        dir: Arc::clone(&root),
        changed: false,
        source: JobSource::Stream(source.reader),
        stream_is_whole_backup: true,
    };
    ctx.scope.send(file_tx, job)?;
    ctx.finish_child(&root, None, tree_tx)
}
