//! Restore: plan first, then read each pack once, in parallel across packs,
//! writing blobs with positional writes; metadata after content, directory
//! metadata last (deepest first) so writing children does not disturb it.
//!
//! Options: a subtree (`<snapshot>:<path>`, whose content lands directly in
//! the target), include/exclude patterns, what to do with files already in
//! the target ([`OverwriteMode`]), deleting what the snapshot does not have,
//! a dry run, and re-reading everything written (`verify`).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arch_index::{BlobLocation, BlobType, Id, PackId};
use arch_repository::{BlobDecoder, FileKind, Node, NodeKind, Repository, Snapshot};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backup::spawn;
use crate::browse::{find_node, join_components, path_components};
use crate::context::Warning;
use crate::error::ArchiveError;
use crate::progress::{NoProgress, Progress};
use crate::restore_filter::{RestoreFilter, Selection};
use crate::restore_fs::{
    apply_metadata, cstr, is_zero, make_dir, open_for_writing, replace_with, verify_file, FileHandles,
};
use crate::scope::Scope;

/// What to do with an entry that already exists in the target (only when
/// restoring into a non-empty target is allowed, see
/// [`RestoreOptions::overwrite_mode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverwriteMode {
    /// Replace whatever is there.
    #[default]
    Always,
    /// Compare: an existing regular file is read with the snapshot's chunk
    /// boundaries and only the chunks whose content hash differs are
    /// rewritten (a file that matches entirely is not written at all; its
    /// metadata is still applied). Other entries are replaced unless they
    /// are already the same kind (and, for symlinks, the same target).
    /// This is how an interrupted restore is resumed.
    IfChanged,
    /// Replace an entry only if the snapshot's mtime is newer than the
    /// existing entry's.
    IfNewer,
    /// Keep every existing entry as it is (directories are still entered,
    /// and what is missing in them is restored).
    Never,
}

/// Options of a restore. Zero means automatic.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Allow restoring into a non-empty target; existing entries are
    /// treated according to `mode`.
    pub overwrite: bool,
    /// What to do with existing entries when `overwrite` is set.
    pub mode: OverwriteMode,
    /// Write zero chunks as data instead of holes (default: holes).
    pub dense: bool,
    /// Threads reading packs. Default: the number of CPUs, at least 2, so
    /// decryption of one pack overlaps the read of the next, and at least
    /// the backend's [`connections`](arch_repository::Backend::connections).
    pub workers: usize,
    /// Restore only this path of the snapshot. A directory's content lands
    /// directly in the target (as restic's `snapshot:subpath`); a file or
    /// other entry lands at `target/<its name>`.
    pub subpath: Option<Vec<u8>>,
    /// Include patterns (case-sensitive, then case-insensitive): when any
    /// is given, only matching entries (a matching directory with
    /// everything below) and their parent directories are restored.
    pub includes: Vec<String>,
    /// Case-insensitive include patterns.
    pub iincludes: Vec<String>,
    /// Exclude patterns: matching entries (and everything below) are left out.
    pub excludes: Vec<String>,
    /// Case-insensitive exclude patterns.
    pub iexcludes: Vec<String>,
    /// Remove entries of the target that the snapshot does not have, inside
    /// the directories being restored (and selected by the patterns).
    pub delete: bool,
    /// Write nothing: count what would be written and deleted.
    pub dry_run: bool,
    /// After restoring, re-read every restored file and check each chunk's
    /// content hash; mismatches are in [`RestoreResult::verify_failures`].
    pub verify: bool,
    /// How many entries (blob placements and paths) one batch plans
    /// before it is written; memory stays proportional to this, not to the
    /// snapshot. Default 65,536 (a few MiB). A single file with more
    /// chunks than this is planned whole.
    pub max_planned: usize,
}

impl RestoreOptions {
    /// Allow a non-empty target, replacing existing entries.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self.mode = OverwriteMode::Always;
        self
    }
    /// Allow a non-empty target, treating existing entries as `mode` says.
    pub fn overwrite_mode(mut self, mode: OverwriteMode) -> Self {
        self.overwrite = true;
        self.mode = mode;
        self
    }
    /// Write zero chunks as data instead of holes.
    pub fn dense(mut self, yes: bool) -> Self {
        self.dense = yes;
        self
    }
    /// Pack reader threads.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    /// Restore only this path of the snapshot (see [`RestoreOptions::subpath`]).
    pub fn subpath(mut self, path: impl Into<Vec<u8>>) -> Self {
        self.subpath = Some(path.into());
        self
    }
    /// Adds an include pattern.
    pub fn include(mut self, p: impl Into<String>) -> Self {
        self.includes.push(p.into());
        self
    }
    /// Adds a case-insensitive include pattern.
    pub fn iinclude(mut self, p: impl Into<String>) -> Self {
        self.iincludes.push(p.into());
        self
    }
    /// Adds an exclude pattern.
    pub fn exclude(mut self, p: impl Into<String>) -> Self {
        self.excludes.push(p.into());
        self
    }
    /// Adds a case-insensitive exclude pattern.
    pub fn iexclude(mut self, p: impl Into<String>) -> Self {
        self.iexcludes.push(p.into());
        self
    }
    /// Remove what the snapshot does not have.
    pub fn delete(mut self, yes: bool) -> Self {
        self.delete = yes;
        self
    }
    /// Write nothing.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
    /// Re-read and re-hash after restoring.
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }
    /// Entries planned per batch (see [`RestoreOptions::max_planned`]).
    pub fn max_planned(mut self, n: usize) -> Self {
        self.max_planned = n;
        self
    }
}

/// What a restore did (with `dry_run`: would do).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RestoreResult {
    /// Regular files selected (hardlinks count once per name), including
    /// those left as they were.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks, fifos and devices restored.
    pub others: u64,
    /// Bytes of file content of the selected files.
    pub bytes: u64,
    /// Bytes of file content actually written (holes included): less than
    /// `bytes` when existing files or chunks were kept.
    pub written: u64,
    /// Files whose content was not written at all because the target
    /// already had it, or the overwrite mode kept the existing file.
    pub skipped: u64,
    /// Entries removed from the target (`delete`).
    pub deleted: u64,
    /// Files re-read and checked (`verify`).
    pub verified: u64,
    /// Files whose re-read content differs from the snapshot (`verify`).
    pub verify_failures: Vec<Warning>,
    /// Metadata that could not be applied (e.g. owners when not root).
    pub warnings: Vec<Warning>,
    /// The most entries (blob placements and paths) planned at once: the
    /// restore's memory is proportional to this, whatever the snapshot's
    /// size (see [`RestoreOptions::max_planned`]).
    pub peak_planned: u64,
}

/// One restore run: configure, then [`Restore::run`].
///
/// Guarantees: every blob is authenticated and its content hash verified
/// before it is written; when `run` returns `Ok`, every file has its
/// snapshot content, and mode, times and (as root) owner applied. A
/// restore never writes through a symlink found in the target: symlinks in
/// the way are replaced (or, with [`OverwriteMode::Never`], kept).
pub struct Restore<'a> {
    repo: &'a Repository,
    tree: Id,
    target: PathBuf,
    opts: RestoreOptions,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
}

/// One blob occurrence: where in which file it goes.
#[derive(Clone, Copy)]
struct Placement {
    file: u32,
    file_offset: u64,
    /// The file does not exist yet and this blob is all of it: the worker
    /// writing the blob creates it (one open instead of a create, a
    /// resize and a reopen; most files of a tree are one chunk).
    fresh: bool,
}

/// A file's blobs, each with its offset in the file.
type Chunks = Vec<(BlobLocation, u64)>;

/// Which chunks of a compared file must be written (`None`: replace it).
type Compared = Result<Option<Vec<bool>>, ArchiveError>;

/// The blobs needed from one pack, each with where it goes.
type PackBlobs = Vec<(BlobLocation, Vec<Placement>)>;

/// What one batch restores: everything planned since the last batch was
/// written. A batch is written (content, then links, then metadata, then
/// the directories completed in it, deepest first) once it holds
/// `max_planned` entries, so a restore's memory does not grow with the
/// snapshot.
#[derive(Default)]
struct Batch {
    files: Vec<PathBuf>,
    /// Files to create empty at their final size before content is
    /// written (all but those created by their only blob, see
    /// [`Placement::fresh`]): index into `files`, size.
    create: Vec<(u32, u64)>,
    /// pack -> blob location -> placements
    packs: HashMap<PackId, PackBlobs>,
    /// blob id -> index into its pack's vector, to merge occurrences
    seen: HashMap<(PackId, Id), usize>,
    /// Nodes whose metadata is applied after content.
    meta: Vec<(PathBuf, Node)>,
    /// Directories whose whole subtree is planned, in completion order
    /// (children before their parent).
    dirs_done: Vec<(PathBuf, Node)>,
    hardlinks: Vec<(PathBuf, PathBuf)>,
    /// Existing files to compare (if-changed): path, chunks with their
    /// offsets, size.
    compare: Vec<(PathBuf, Chunks, u64)>,
    /// Files to re-read with `verify`: path, (blob id, length) per chunk.
    verify: Vec<(PathBuf, Vec<(Id, u32)>)>,
    /// Entries held: blob placements and paths.
    entries: usize,
}

struct Plan {
    batch: Batch,
    /// Directories created and not yet complete (the walk's stack).
    open_dirs: Vec<(PathBuf, Node)>,
    /// Directories selected only because something below may be: created
    /// when the first entry below them is.
    pending: Vec<(PathBuf, Node)>,
    first_link: HashMap<(u64, u64), PathBuf>,
    limit: usize,
    is_root: bool,
    result: RestoreResult,
}

/// How to treat the entry at a path the restore is about to write.
enum Existing {
    /// Nothing there.
    Absent,
    /// Keep what is there (overwrite mode).
    Keep,
    /// Remove what is there and create anew.
    Replace,
    /// Compare with what is there ([`OverwriteMode::IfChanged`]).
    Compare(std::fs::Metadata),
}

fn corrupt_dir(path: &Path) -> ArchiveError {
    ArchiveError::Repo(arch_repository::RepoError::Corrupt {
        what: format!("directory {}", path.display()),
        detail: "directory node has no subtree".into(),
    })
}

fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

impl<'a> Restore<'a> {
    /// A restore of `snapshot` into `target` (created if missing).
    pub fn new(repo: &'a Repository, snapshot: &Snapshot, target: impl Into<PathBuf>) -> Restore<'a> {
        Restore {
            repo,
            tree: snapshot.tree,
            target: target.into(),
            opts: RestoreOptions::default(),
            progress: Arc::new(NoProgress),
            cancel: CancellationToken::new(),
        }
    }

    /// Sets the options.
    pub fn options(mut self, opts: RestoreOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Sets the progress sink.
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = p;
        self
    }

    /// Sets the token that cancels the run.
    pub fn cancel_token(mut self, t: CancellationToken) -> Self {
        self.cancel = t;
        self
    }

    /// Runs the restore.
    pub fn run(self) -> Result<RestoreResult, ArchiveError> {
        let o = &self.opts;
        let filter = RestoreFilter::new(&o.includes, &o.iincludes, &o.excludes, &o.iexcludes)?;
        let (start, snap_path) = match &o.subpath {
            None => (crate::browse::root_node(&self.tree), b"/".to_vec()),
            Some(p) => (find_node(self.repo, &self.tree, p)?, join_components(&path_components(p))),
        };
        self.check_target()?;
        let mut plan = Plan {
            batch: Batch::default(),
            open_dirs: Vec::new(),
            pending: Vec::new(),
            first_link: HashMap::new(),
            limit: if o.max_planned == 0 { 65_536 } else { o.max_planned },
            is_root: unsafe { libc::geteuid() } == 0,
            result: RestoreResult::default(),
        };
        if start.kind == NodeKind::Dir {
            // A directory's content goes directly into the target.
            let sub = start.subtree.ok_or_else(|| corrupt_dir(&self.target))?;
            let is_sub = o.subpath.as_deref().is_some_and(|p| !path_components(p).is_empty());
            self.plan_tree(&sub, &self.target, &snap_path, false, &filter, &mut plan)?;
            if is_sub {
                // The target stands for the directory: it gets its metadata.
                plan.batch.dirs_done.push((self.target.clone(), Node { subtree: None, ..start }));
            }
        } else {
            let sel = filter.select(&snap_path, false, false);
            if sel != Selection::Skip {
                let path = self.target.join(OsStr::from_bytes(&start.name));
                self.plan_node(start, path, snap_path, sel, &filter, &mut plan)?;
            }
        }
        self.run_batch(&mut plan)?;
        Ok(plan.result)
    }

    /// Adds `n` planned entries; writes the batch once it is full.
    fn planned(&self, plan: &mut Plan, n: usize) -> Result<(), ArchiveError> {
        plan.batch.entries += n;
        if plan.batch.entries >= plan.limit {
            self.run_batch(plan)?;
        }
        Ok(())
    }

    /// Writes everything the batch planned and empties it: compared files,
    /// content, hard links, file metadata, then the metadata of the
    /// directories completed in it (children first, so a parent's mtime is
    /// set after its children exist and nothing later writes below it).
    fn run_batch(&self, plan: &mut Plan) -> Result<(), ArchiveError> {
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let mut batch = std::mem::take(&mut plan.batch);
        self.compare_files(&mut batch, &mut plan.result)?;
        plan.result.peak_planned = plan.result.peak_planned.max(batch.entries as u64);
        if self.opts.dry_run {
            return Ok(());
        }
        self.write_content(&batch)?;
        for (link, original) in &batch.hardlinks {
            replace_with(link, || std::fs::hard_link(original, link))?;
        }
        self.apply_file_metadata(&batch.meta, plan)?;
        let warnings = &mut plan.result.warnings;
        for (path, node) in &batch.dirs_done {
            apply_metadata(path, node, plan.is_root, warnings)?;
        }
        if self.opts.verify {
            let (n, failures) = self.verify(&batch.verify)?;
            plan.result.verified += n;
            plan.result.verify_failures.extend(failures);
        }
        Ok(())
    }

    /// Applies the metadata of the batch's files, links and special
    /// files, a share per thread: one path per syscall makes it a few
    /// microseconds each, which adds up over a tree of small files. Order
    /// among them does not matter (directories come after, in order).
    fn apply_file_metadata(&self, meta: &[(PathBuf, Node)], plan: &mut Plan) -> Result<(), ArchiveError> {
        let threads = cpus().min(8);
        let share = meta.len().div_ceil(threads).max(1024);
        let is_root = plan.is_root;
        let results: Vec<Result<Vec<Warning>, ArchiveError>> = std::thread::scope(|s| {
            let handles: Vec<_> = meta
                .chunks(share)
                .map(|part| {
                    s.spawn(move || {
                        let mut warnings = Vec::new();
                        for (path, node) in part {
                            if self.cancel.is_cancelled() {
                                return Err(ArchiveError::Cancelled);
                            }
                            apply_metadata(path, node, is_root, &mut warnings)?;
                        }
                        Ok(warnings)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        for r in results {
            plan.result.warnings.extend(r?);
        }
        Ok(())
    }

    fn check_target(&self) -> Result<(), ArchiveError> {
        match std::fs::read_dir(&self.target) {
            Ok(mut entries) => {
                if entries.next().is_some() && !self.opts.overwrite {
                    return Err(ArchiveError::TargetNotEmpty { path: self.target.clone() });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.opts.dry_run {
                    return Ok(());
                }
                std::fs::create_dir_all(&self.target)
                    .map_err(|e| ArchiveError::io("create restore target", &self.target, e))
            }
            Err(e) => Err(ArchiveError::io("open restore target", &self.target, e)),
        }
    }

    fn plan_tree(
        &self,
        tree_id: &Id,
        dir: &Path,
        snap_dir: &[u8],
        inherited: bool,
        filter: &RestoreFilter,
        plan: &mut Plan,
    ) -> Result<(), ArchiveError> {
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let tree = self.repo.load_tree(tree_id)?;
        if self.opts.delete {
            let names: HashSet<&[u8]> = tree.nodes.iter().map(|n| n.name.as_slice()).collect();
            self.delete_extra(dir, snap_dir, &names, inherited, filter, plan)?;
        }
        for node in tree.nodes {
            let path = dir.join(OsStr::from_bytes(&node.name));
            let snap = child_path(snap_dir, &node.name);
            let sel = filter.select(&snap, node.kind == NodeKind::Dir, inherited);
            if sel != Selection::Skip {
                self.plan_node(node, path, snap, sel, filter, plan)?;
            }
        }
        Ok(())
    }

    /// Removes the entries of `dir` that the snapshot directory does not
    /// have and that the patterns select. Never follows symlinks.
    fn delete_extra(
        &self,
        dir: &Path,
        snap_dir: &[u8],
        names: &HashSet<&[u8]>,
        inherited: bool,
        filter: &RestoreFilter,
        plan: &mut Plan,
    ) -> Result<(), ArchiveError> {
        match std::fs::symlink_metadata(dir) {
            Ok(md) if md.is_dir() => {}
            _ => return Ok(()),
        }
        let entries = std::fs::read_dir(dir).map_err(|e| ArchiveError::io("list", dir, e))?;
        let mut extra: Vec<(OsString, bool)> = Vec::new();
        for e in entries {
            let e = e.map_err(|e| ArchiveError::io("list", dir, e))?;
            let name = e.file_name();
            if names.contains(name.as_bytes()) {
                continue;
            }
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            extra.push((name, is_dir));
        }
        extra.sort();
        for (name, is_dir) in extra {
            let snap = child_path(snap_dir, name.as_bytes());
            if filter.select(&snap, is_dir, inherited) != Selection::All {
                continue;
            }
            let path = dir.join(&name);
            if !self.opts.dry_run {
                if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }
                    .map_err(|e| ArchiveError::io("delete", &path, e))?;
            }
            plan.result.deleted += 1;
        }
        Ok(())
    }

    /// Creates the directories waiting for a first entry below them.
    fn flush_pending(&self, plan: &mut Plan) -> Result<(), ArchiveError> {
        for (path, node) in std::mem::take(&mut plan.pending) {
            if !self.opts.dry_run {
                make_dir(&path)?;
            }
            plan.result.dirs += 1;
            plan.open_dirs.push((path, node));
        }
        Ok(())
    }

    fn plan_node(
        &self,
        node: Node,
        path: PathBuf,
        snap: Vec<u8>,
        sel: Selection,
        filter: &RestoreFilter,
        plan: &mut Plan,
    ) -> Result<(), ArchiveError> {
        match node.kind {
            NodeKind::Dir => {
                let sub = node.subtree.ok_or_else(|| corrupt_dir(&path))?;
                if self.opts.overwrite && self.opts.mode == OverwriteMode::Never {
                    if let Ok(md) = std::fs::symlink_metadata(&path) {
                        if !md.is_dir() {
                            // Kept: nothing of the snapshot goes below it.
                            return Ok(());
                        }
                    }
                }
                plan.pending.push((path.clone(), Node { subtree: None, ..node }));
                let depth = plan.pending.len();
                if sel == Selection::All {
                    self.flush_pending(plan)?;
                }
                self.plan_tree(&sub, &path, &snap, sel == Selection::All, filter, plan)?;
                if plan.pending.len() == depth {
                    // Nothing below was selected.
                    plan.pending.pop();
                    return Ok(());
                }
                // Created, and everything below is planned: its metadata
                // goes with the batch that holds the last of its content.
                let done = plan.open_dirs.pop().expect("a created directory is on the stack");
                debug_assert_eq!(done.0, path);
                plan.batch.dirs_done.push(done);
                self.planned(plan, 1)
            }
            NodeKind::File => {
                self.flush_pending(plan)?;
                self.plan_file(path, node, plan)?;
                self.planned(plan, 0)
            }
            NodeKind::Symlink | NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                self.flush_pending(plan)?;
                self.plan_special(path, node, plan)?;
                self.planned(plan, 0)
            }
            NodeKind::Socket => Ok(()),
        }
    }

    fn existing(&self, path: &Path, node: &Node) -> Result<Existing, ArchiveError> {
        if !self.opts.overwrite || self.opts.mode == OverwriteMode::Always {
            // No stat per entry: creation replaces whatever is there.
            return Ok(Existing::Replace);
        }
        let md = match std::fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Absent),
            Err(e) => return Err(ArchiveError::io("stat", path, e)),
        };
        Ok(match self.opts.mode {
            OverwriteMode::Always => Existing::Replace,
            OverwriteMode::Never => Existing::Keep,
            OverwriteMode::IfNewer => {
                if (md.mtime(), md.mtime_nsec()) >= (node.mtime.0, i64::from(node.mtime.1)) {
                    Existing::Keep
                } else {
                    Existing::Replace
                }
            }
            OverwriteMode::IfChanged => Existing::Compare(md),
        })
    }

    fn plan_special(&self, path: PathBuf, node: Node, plan: &mut Plan) -> Result<(), ArchiveError> {
        match self.existing(&path, &node)? {
            Existing::Keep => return Ok(()),
            Existing::Compare(md) => {
                let ft = md.file_type();
                use std::os::unix::fs::FileTypeExt;
                let same = match node.kind {
                    NodeKind::Symlink => {
                        ft.is_symlink()
                            && std::fs::read_link(&path).ok().as_deref().map(|p| p.as_os_str().as_bytes())
                                == Some(node.target.as_deref().unwrap_or_default())
                    }
                    NodeKind::Fifo => ft.is_fifo(),
                    NodeKind::Chardev => ft.is_char_device() && md.rdev() == node.rdev,
                    NodeKind::Blockdev => ft.is_block_device() && md.rdev() == node.rdev,
                    _ => false,
                };
                if same {
                    plan.result.others += 1;
                    plan.batch.add_meta(path, node);
                    return Ok(());
                }
            }
            Existing::Absent | Existing::Replace => {}
        }
        if self.opts.dry_run {
            plan.result.others += 1;
            return Ok(());
        }
        if node.kind == NodeKind::Symlink {
            let target = node.target.clone().unwrap_or_default();
            replace_with(&path, || std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path))?;
            plan.result.others += 1;
            plan.batch.add_meta(path, node);
            return Ok(());
        }
        let kind = match node.kind {
            NodeKind::Fifo => libc::S_IFIFO,
            NodeKind::Chardev => libc::S_IFCHR,
            _ => libc::S_IFBLK,
        };
        let c = cstr(&path)?;
        let made = replace_with(&path, || {
            // SAFETY: c is a valid NUL-terminated path.
            let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, node.rdev as libc::dev_t) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        match made {
            Ok(()) => {
                plan.result.others += 1;
                plan.batch.add_meta(path, node);
            }
            Err(e) => plan.result.warnings.push(Warning { path, message: e.to_string() }),
        }
        Ok(())
    }

    fn plan_file(&self, path: PathBuf, node: Node, plan: &mut Plan) -> Result<(), ArchiveError> {
        if node.links > 1 {
            let key = (node.device, node.inode);
            if let Some(first) = plan.first_link.get(&key) {
                plan.result.files += 1;
                if let Existing::Keep = self.existing(&path, &node)? {
                    plan.result.skipped += 1;
                } else {
                    plan.batch.hardlinks.push((path, first.clone()));
                    plan.batch.entries += 1;
                }
                return Ok(());
            }
            plan.first_link.insert(key, path.clone());
        }
        let existing = self.existing(&path, &node)?;
        plan.result.files += 1;
        plan.result.bytes += node.size;
        if let Existing::Keep = existing {
            plan.result.skipped += 1;
            return Ok(());
        }
        let mut chunks = Vec::with_capacity(node.content.len());
        let mut offset = 0u64;
        for id in &node.content {
            let loc = self.repo.locate(BlobType::Data, id)?;
            chunks.push((loc, offset));
            offset += u64::from(loc.blob.raw_length);
        }
        if offset != node.size {
            return Err(ArchiveError::Repo(arch_repository::RepoError::Corrupt {
                what: format!("file {}", path.display()),
                detail: format!("blobs add up to {offset} bytes but the node says {}", node.size),
            }));
        }
        let batch = &mut plan.batch;
        if self.opts.verify {
            batch
                .verify
                .push((path.clone(), chunks.iter().map(|(l, _)| (l.blob.id, l.blob.raw_length)).collect()));
        }
        match existing {
            // Compared when the batch is written, in parallel.
            Existing::Compare(md) if md.is_file() => {
                batch.entries += chunks.len();
                batch.compare.push((path.clone(), chunks, node.size));
            }
            _ => {
                let need = vec![true; chunks.len()];
                batch.place(path.clone(), &chunks, &need, &mut plan.result, Some(node.size));
            }
        }
        plan.batch.add_meta(path, node);
        Ok(())
    }

    /// Creates an empty file of the final size (holes stay holes, and a
    /// reader of a half-restored file sees its full length). Never reached
    /// in a dry run: its batches stop before content.
    fn create_file(&self, path: &Path, size: u64) -> Result<(), ArchiveError> {
        create_new(path)?.set_len(size).map_err(|e| ArchiveError::io("size file", path, e))
    }

    /// Compares the existing files queued by the walk with their snapshot
    /// content (reading several at once) and plans the chunks that differ.
    fn compare_files(&self, batch: &mut Batch, result: &mut RestoreResult) -> Result<(), ArchiveError> {
        let jobs = std::mem::take(&mut batch.compare);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, Compared)>> = Mutex::new(Vec::new());
        let workers = cpus().min(8);
        std::thread::scope(|s| {
            for _ in 0..workers.min(jobs.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, chunks, size)) = jobs.get(i) else { return };
                    let r = self.compare_file(path, chunks, *size);
                    let failed = r.is_err();
                    results.lock().push((i, r));
                    if failed {
                        // Stop the other workers early.
                        next.store(usize::MAX / 2, Ordering::Relaxed);
                        return;
                    }
                });
            }
        });
        let mut results = results.into_inner();
        results.sort_by_key(|(i, _)| *i);
        for (i, r) in results {
            let (path, chunks, size) = &jobs[i];
            match r? {
                Some(need) => {
                    if !batch.place(path.clone(), chunks, &need, result, None) {
                        result.skipped += 1;
                    }
                }
                None => {
                    batch.place(path.clone(), chunks, &vec![true; chunks.len()], result, Some(*size));
                }
            }
        }
        Ok(())
    }

    /// Reads an existing regular file with the snapshot's chunk boundaries:
    /// which chunks must be written (their content hash differs). Makes
    /// the file the right size and writable (unless a dry run). `None`
    /// when the file cannot be read: it is then replaced.
    fn compare_file(
        &self,
        path: &Path,
        chunks: &[(BlobLocation, u64)],
        size: u64,
    ) -> Result<Option<Vec<bool>>, ArchiveError> {
        let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) else {
            return Ok(None);
        };
        let md = f.metadata().map_err(|e| ArchiveError::io("stat", path, e))?;
        if !md.is_file() {
            return Ok(None);
        }
        let len = md.len();
        let mut buf = Vec::new();
        let mut need = Vec::with_capacity(chunks.len());
        for (loc, off) in chunks {
            if self.cancel.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let n = loc.blob.raw_length as usize;
            if off + n as u64 > len {
                need.push(true);
                continue;
            }
            buf.resize(n, 0);
            let same = f.read_exact_at(&mut buf, *off).is_ok() && Id::hash(&buf) == loc.blob.id;
            need.push(!same);
        }
        let writes = len != size || need.iter().any(|&n| n);
        if writes && md.nlink() > 1 {
            // Writing in place would change the other names of the inode,
            // which may be outside the target: replace the file instead.
            return Ok(None);
        }
        if !self.opts.dry_run && writes {
            if md.mode() & 0o200 == 0 {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode((md.mode() & 0o7777) | 0o200))
                    .map_err(|e| ArchiveError::io("make writable", path, e))?;
            }
            if len != size {
                open_for_writing(path)
                    .and_then(|w| w.set_len(size))
                    .map_err(|e| ArchiveError::io("size file", path, e))?;
            }
        }
        Ok(Some(need))
    }

    /// Re-reads every file of `files` and checks each chunk's content hash.
    fn verify(&self, files: &[(PathBuf, Vec<(Id, u32)>)]) -> Result<(u64, Vec<Warning>), ArchiveError> {
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        let workers = cpus().min(8);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    let mut buf = Vec::new();
                    loop {
                        if self.cancel.is_cancelled() {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, chunks)) = files.get(i) else { return };
                        if let Err(message) = verify_file(path, chunks, &mut buf) {
                            failures.lock().push(Warning { path: path.clone(), message });
                        }
                    }
                });
            }
        });
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let mut failures = failures.into_inner();
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((files.len() as u64, failures))
    }

    /// Creates the batch's new files (but those of one chunk, which the
    /// worker writing the chunk creates), then writes their content: each
    /// worker takes whole packs (biggest first), reads what it needs of a
    /// pack in windows of a few MiB, decrypts in place and writes every
    /// blob with positional writes, so workers fill different parts of a
    /// large file at once.
    fn write_content(&self, batch: &Batch) -> Result<(), ArchiveError> {
        let mut packs: Vec<(&PackId, &PackBlobs)> = batch.packs.iter().collect();
        // Bigger packs first so the tail of the run is not one big pack.
        packs.sort_by_key(|(id, blobs)| (std::cmp::Reverse(blobs.len()), **id));
        // Remote reads wait on latency, not CPU: as many as the backend
        // serves at once.
        let workers = match self.opts.workers {
            0 => cpus().max(2).max(self.repo.backend().connections()),
            n => n,
        }
        .min(packs.len().max(batch.create.len()).max(1));
        let scope = Scope::new(&self.cancel);
        let next_file = AtomicUsize::new(0);
        let created = AtomicUsize::new(0);
        let next = AtomicUsize::new(0);
        let handles = FileHandles::default();
        std::thread::scope(|s| {
            let watcher = spawn(s, &scope, "arch-watch", || {
                scope.watch();
                Ok(())
            });
            let mut ws = Vec::new();
            for _ in 0..workers {
                ws.push(spawn(s, &scope, "arch-restore", || {
                    // Creating files is metadata work the kernel serialises
                    // per directory only: spread it over the workers too.
                    loop {
                        if scope.is_cancelled() {
                            return Ok(());
                        }
                        let i = next_file.fetch_add(1, Ordering::Relaxed);
                        let Some(&(file, size)) = batch.create.get(i) else { break };
                        self.create_file(&batch.files[file as usize], size)?;
                        created.fetch_add(1, Ordering::Release);
                    }
                    // Content only once every file exists (a pack may hold
                    // blobs of a file another worker is creating).
                    while created.load(Ordering::Acquire) < batch.create.len() {
                        if scope.is_cancelled() {
                            return Ok(());
                        }
                        std::thread::yield_now();
                    }
                    let mut decoder = BlobDecoder::new()?;
                    loop {
                        if scope.is_cancelled() {
                            return Ok(());
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((pack, blobs)) = packs.get(i) else {
                            return Ok(());
                        };
                        self.restore_pack(pack, blobs, batch, &handles, &mut decoder)?;
                    }
                }));
            }
            for w in ws.into_iter().flatten() {
                let _ = w.join();
            }
            scope.finish();
            if let Some(w) = watcher {
                let _ = w.join();
            }
        });
        if let Some(e) = scope.take_error() {
            return Err(e);
        }
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        Ok(())
    }

    /// Reads the needed blobs of `pack` in pack order, a window of at most
    /// [`READ_WINDOW`] bytes per read (a bigger blob is one read of its
    /// own), so a worker holds a few MiB whatever the pack size, and a run
    /// of unneeded blobs longer than [`READ_GAP`] is skipped, not read.
    fn restore_pack(
        &self,
        pack: &PackId,
        blobs: &[(BlobLocation, Vec<Placement>)],
        batch: &Batch,
        handles: &FileHandles,
        decoder: &mut BlobDecoder,
    ) -> Result<(), ArchiveError> {
        let span = |(l, _): &&(BlobLocation, Vec<Placement>)| {
            (u64::from(l.blob.offset), u64::from(l.blob.offset) + u64::from(l.blob.length))
        };
        let mut order: Vec<_> = blobs.iter().collect();
        order.sort_by_key(|b| span(b).0);
        let mut rest = &order[..];
        while let Some(first) = rest.first() {
            let (start, mut end) = span(first);
            let mut n = 1;
            for b in &rest[1..] {
                let (from, to) = span(b);
                if to - start > READ_WINDOW || from > end + READ_GAP {
                    break;
                }
                end = end.max(to);
                n += 1;
            }
            let mut data = self
                .repo
                .backend()
                .read_range(FileKind::Pack, &pack.to_hex(), start, end - start)
                .map_err(arch_repository::RepoError::from)?;
            for (loc, places) in &rest[..n] {
                let from = (u64::from(loc.blob.offset) - start) as usize;
                let sealed = &mut data[from..from + loc.blob.length as usize];
                let plain = decoder.decode(self.repo.key(), loc, sealed)?;
                self.write_blob(plain, places, batch, handles)?;
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Writes one decoded blob everywhere it goes (an all-zero one stays a
    /// hole unless `dense`).
    fn write_blob(
        &self,
        plain: &[u8],
        places: &[Placement],
        batch: &Batch,
        handles: &FileHandles,
    ) -> Result<(), ArchiveError> {
        let hole = !self.opts.dense && is_zero(plain);
        for p in places {
            let path = &batch.files[p.file as usize];
            if p.fresh {
                let f = create_new(path)?;
                if hole { f.set_len(plain.len() as u64) } else { std::io::Write::write_all(&mut &f, plain) }
                    .map_err(|e| ArchiveError::io("write", path, e))?;
            } else if !hole {
                let f = handles.get(p.file, path)?;
                f.write_all_at(plain, p.file_offset).map_err(|e| ArchiveError::io("write", path, e))?;
            }
            self.progress.bytes_processed(plain.len() as u64);
        }
        Ok(())
    }
}

/// CPUs this process may use (2 when unknown).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The most bytes one pack read covers (see [`Restore::restore_pack`]).
const READ_WINDOW: u64 = 4 << 20;
/// Unneeded bytes between two needed blobs that are read rather than
/// skipped with a new read.
const READ_GAP: u64 = 256 << 10;

/// Creates a file that must not exist yet (one in the way is replaced),
/// private until its metadata is applied.
fn create_new(path: &Path) -> Result<std::fs::File, ArchiveError> {
    replace_with(path, || OpenOptions::new().write(true).create_new(true).mode(0o600).open(path))
}

impl Batch {
    fn add_meta(&mut self, path: PathBuf, node: Node) {
        self.meta.push((path, node));
        self.entries += 1;
    }

    /// Plans the chunks of `path` marked in `need`, and with `create` the
    /// creation of the file at that size first; false if there is nothing
    /// to do.
    fn place(
        &mut self,
        path: PathBuf,
        chunks: &[(BlobLocation, u64)],
        need: &[bool],
        result: &mut RestoreResult,
        create: Option<u64>,
    ) -> bool {
        if create.is_none() && !need.iter().any(|&n| n) {
            return false;
        }
        let file_no = self.files.len() as u32;
        let fresh = create.is_some() && chunks.len() == 1;
        for ((loc, off), n) in chunks.iter().zip(need) {
            if !n {
                continue;
            }
            let entries = self.packs.entry(loc.pack).or_default();
            let slot = *self.seen.entry((loc.pack, loc.blob.id)).or_insert_with(|| {
                entries.push((*loc, Vec::new()));
                entries.len() - 1
            });
            entries[slot].1.push(Placement { file: file_no, file_offset: *off, fresh });
            self.entries += 1;
            result.written += u64::from(loc.blob.raw_length);
        }
        if let Some(size) = create.filter(|_| !fresh) {
            self.create.push((file_no, size));
        }
        self.files.push(path);
        self.entries += 1;
        true
    }
}
