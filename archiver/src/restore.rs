//! Restore: the walk plans batches (which blobs of which packs land at
//! which offsets of which files) while the content stage reads and writes
//! the batches already planned, each pack's blobs in pack order, in
//! parallel across packs, with positional writes; metadata after content,
//! directory metadata last (deepest first) so writing children does not
//! disturb it.
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
use arch_repository::{Node, NodeKind, Repository, Snapshot};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backup::spawn;
use crate::browse::{find_node, join_components, path_components};
use crate::budget::ByteBudget;
use crate::context::Warning;
use crate::error::ArchiveError;
use crate::progress::{NoProgress, Progress};
use crate::restore_content::{
    dispatch, read_packs, window_budget, BlobWriter, PackBlobs, Placement, Running,
};
use crate::restore_filter::{RestoreFilter, Selection};
use crate::restore_fs::{
    apply_metadata, create_new, cstr, make_dir, open_for_writing, replace_with, verify_file, FileHandles,
};
use crate::scope::Scope;
use crossbeam_channel::{Receiver, Sender};

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
    /// Threads decrypting, verifying and writing blobs. Default: the number
    /// of CPUs. Packs are read by threads of their own, as many as the
    /// backend's [`connections`](arch_repository::Backend::connections)
    /// and at least 2, so reads overlap the writing.
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
    /// How many entries (blob placements and paths) may be planned and not
    /// yet finished at once, over every batch in flight; memory stays
    /// proportional to this, not to the snapshot. Default 32,768 (a few
    /// MiB; the 4 GiB bench corpus restores in the same peak memory as the
    /// 1 GiB one). A single file with more chunks than this is planned
    /// whole.
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
    /// Blob writer threads (see [`RestoreOptions::workers`]).
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

/// A file's blobs, each with its offset in the file.
type Chunks = Vec<(BlobLocation, u64)>;

/// Which chunks of a compared file must be written (`None`: replace it).
type Compared = Result<Option<Vec<bool>>, ArchiveError>;

/// What one batch restores: everything planned since the last batch was
/// shipped to the content stage. A batch is shipped once it holds its
/// share of `max_planned` entries (small at first, so writing starts
/// early), and finished after its content is written: links, then
/// metadata, then the directories completed in it, deepest first.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) files: Vec<PathBuf>,
    /// Files to create empty at their final size before content is
    /// written (all but those created by their only blob, see
    /// [`Placement::fresh`]): index into `files`, size.
    create: Vec<(u32, u64)>,
    /// pack -> blob location -> placements
    pub(crate) packs: HashMap<PackId, PackBlobs>,
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

struct Plan<'p> {
    batch: Batch,
    /// Entries a batch is shipped at; doubles up to `max_batch`.
    batch_limit: usize,
    max_batch: usize,
    /// Planned entries in batches shipped and not yet finished.
    entries: &'p ByteBudget,
    scope: &'p Scope,
    /// Where batches go; `None` once planning is over.
    out: Option<Sender<Arc<Running<'p>>>>,
    seq: u64,
    /// Directories created and not yet complete (the walk's stack).
    open_dirs: Vec<(PathBuf, Node)>,
    /// Directories selected only because something below may be: created
    /// when the first entry below them is.
    pending: Vec<(PathBuf, Node)>,
    first_link: HashMap<(u64, u64), PathBuf>,
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
    ///
    /// The walk plans batches on this thread while the content stage (see
    /// `restore_content`) reads and writes earlier ones and a finisher
    /// applies the metadata of those written, in planning order.
    pub fn run(mut self) -> Result<RestoreResult, ArchiveError> {
        let caller = self.cancel.clone();
        // One token for every stage, the walk included: a failure anywhere
        // stops them all.
        self.cancel = caller.child_token();
        let scope = Scope::sharing(&self.cancel);
        let o = &self.opts;
        let filter = RestoreFilter::new(&o.includes, &o.iincludes, &o.excludes, &o.iexcludes)?;
        let (start, snap_path) = match &o.subpath {
            None => (crate::browse::root_node(&self.tree), b"/".to_vec()),
            Some(p) => (find_node(self.repo, &self.tree, p)?, join_components(&path_components(p))),
        };
        self.check_target()?;
        let limit = if o.max_planned == 0 { 32_768 } else { o.max_planned };
        // The batch being planned holds at most a quarter of the limit,
        // the batches shipped and not yet finished the rest.
        let max_batch = (limit / 4).max(1);
        let entries = ByteBudget::new(limit - max_batch);
        // Remote reads wait on latency, not CPU: as many as the backend
        // serves at once.
        let readers = self.repo.backend().connections().max(2);
        let writers = match o.workers {
            0 => cpus(),
            n => n,
        };
        let bytes = window_budget(readers, writers);
        let writer = BlobWriter {
            repo: self.repo,
            dense: o.dense,
            progress: &*self.progress,
            handles: FileHandles::default(),
        };
        let finished = Mutex::new(RestoreResult::default());
        let (batch_tx, batch_rx) = crossbeam_channel::unbounded();
        let (job_tx, job_rx) = crossbeam_channel::bounded(readers);
        let (window_tx, window_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut plan = Plan {
            batch: Batch::default(),
            batch_limit: FIRST_BATCH.min(max_batch),
            max_batch,
            entries: &entries,
            scope: &scope,
            out: Some(batch_tx),
            seq: 0,
            open_dirs: Vec::new(),
            pending: Vec::new(),
            first_link: HashMap::new(),
            is_root: unsafe { libc::geteuid() } == 0,
            result: RestoreResult::default(),
        };
        std::thread::scope(|s| {
            let watcher = spawn(s, &scope, "arch-watch", || {
                scope.watch();
                Ok(())
            });
            let mut workers = Vec::new();
            let done = done_tx.clone();
            workers.push(spawn(s, &scope, "arch-restore", || {
                dispatch(&scope, self.repo, batch_rx, job_tx, done)
            }));
            for _ in 0..readers {
                let (jobs, windows, done) = (job_rx.clone(), window_tx.clone(), done_tx.clone());
                let (scope, bytes) = (&scope, &bytes);
                workers.push(spawn(s, scope, "arch-restore-read", move || {
                    read_packs(scope, self.repo, bytes, jobs, windows, done)
                }));
            }
            drop((job_rx, window_tx));
            for _ in 0..writers {
                let (windows, done) = (window_rx.clone(), done_tx.clone());
                let (scope, writer) = (&scope, &writer);
                workers.push(spawn(s, scope, "arch-restore-write", move || {
                    writer.write_windows(scope, windows, done)
                }));
            }
            drop((window_rx, done_tx));
            let is_root = plan.is_root;
            let (scope_ref, finished) = (&scope, &finished);
            let this = &self;
            workers.push(spawn(s, &scope, "arch-restore-finish", move || {
                this.finish_batches(scope_ref, done_rx, is_root, finished)
            }));
            if let Err(e) = self.plan_all(start, &snap_path, &filter, &mut plan) {
                scope.fail(e);
            }
            // The content stage drains what was shipped, then ends.
            plan.out = None;
            for w in workers.into_iter().flatten() {
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
        if caller.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let finished = finished.into_inner();
        let mut result = plan.result;
        result.warnings.extend(finished.warnings);
        result.verified = finished.verified;
        result.verify_failures = finished.verify_failures;
        Ok(result)
    }

    /// Plans everything selected below `start` and ships the last batch.
    fn plan_all(
        &self,
        start: Node,
        snap_path: &[u8],
        filter: &RestoreFilter,
        plan: &mut Plan,
    ) -> Result<(), ArchiveError> {
        let o = &self.opts;
        if start.kind == NodeKind::Dir {
            // A directory's content goes directly into the target.
            let sub = start.subtree.ok_or_else(|| corrupt_dir(&self.target))?;
            let is_sub = o.subpath.as_deref().is_some_and(|p| !path_components(p).is_empty());
            self.plan_tree(&sub, &self.target, snap_path, false, filter, plan)?;
            if is_sub {
                // The target stands for the directory: it gets its metadata.
                plan.batch.dirs_done.push((self.target.clone(), Node { subtree: None, ..start }));
            }
        } else {
            let sel = filter.select(snap_path, false, false);
            if sel != Selection::Skip {
                let path = self.target.join(OsStr::from_bytes(&start.name));
                self.plan_node(start, path, snap_path.to_vec(), sel, filter, plan)?;
            }
        }
        self.ship(plan)
    }

    /// Adds `n` planned entries; ships the batch once it is full.
    fn planned(&self, plan: &mut Plan, n: usize) -> Result<(), ArchiveError> {
        plan.batch.entries += n;
        if plan.batch.entries >= plan.batch_limit {
            self.ship(plan)?;
        }
        Ok(())
    }

    /// Compares the batch's existing files (if-changed), creates its files
    /// of more than one chunk at their final size, and hands it to the
    /// content stage once the batches in flight leave room for it. A dry
    /// run stops after comparing.
    fn ship(&self, plan: &mut Plan) -> Result<(), ArchiveError> {
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let mut batch = std::mem::take(&mut plan.batch);
        plan.batch_limit = (plan.batch_limit * 2).min(plan.max_batch);
        self.compare_files(&mut batch, &mut plan.result)?;
        let held = plan.entries.held() + batch.entries;
        plan.result.peak_planned = plan.result.peak_planned.max(held as u64);
        if self.opts.dry_run {
            return Ok(());
        }
        for &(file, size) in &batch.create {
            self.create_file(&batch.files[file as usize], size)?;
        }
        let permit = plan.entries.acquire(plan.scope, batch.entries)?;
        let run = Arc::new(Running::new(plan.seq, batch, permit));
        plan.seq += 1;
        let out = plan.out.as_ref().expect("batches are shipped only while planning");
        plan.scope.send(out, run)
    }

    /// Finishes the batches whose content is written, in planning order.
    fn finish_batches(
        &self,
        scope: &Scope,
        done: Receiver<Arc<Running<'_>>>,
        is_root: bool,
        finished: &Mutex<RestoreResult>,
    ) -> Result<(), ArchiveError> {
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut out = RestoreResult::default();
        while let Some(run) = scope.recv(&done) {
            waiting.insert(run.seq, run);
            while let Some(run) = waiting.remove(&next) {
                self.finish_batch(&run.batch, is_root, &mut out)?;
                next += 1;
            }
        }
        *finished.lock() = out;
        Ok(())
    }

    /// Links, file metadata, then the metadata of the directories
    /// completed in the batch (children first, so a parent's mtime is set
    /// after its children exist and nothing later writes below it), then
    /// `verify`.
    fn finish_batch(
        &self,
        batch: &Batch,
        is_root: bool,
        out: &mut RestoreResult,
    ) -> Result<(), ArchiveError> {
        for (link, original) in &batch.hardlinks {
            replace_with(link, || std::fs::hard_link(original, link))?;
        }
        out.warnings.extend(self.apply_file_metadata(&batch.meta, is_root)?);
        for (path, node) in &batch.dirs_done {
            apply_metadata(path, node, is_root, &mut out.warnings)?;
        }
        if self.opts.verify {
            let (n, failures) = self.verify(&batch.verify)?;
            out.verified += n;
            out.verify_failures.extend(failures);
        }
        Ok(())
    }

    /// Applies the metadata of the batch's files, links and special
    /// files, a share per thread: one path per syscall makes it a few
    /// microseconds each, which adds up over a tree of small files. Order
    /// among them does not matter (directories come after, in order).
    fn apply_file_metadata(
        &self,
        meta: &[(PathBuf, Node)],
        is_root: bool,
    ) -> Result<Vec<Warning>, ArchiveError> {
        let threads = cpus().min(8);
        let share = meta.len().div_ceil(threads).max(1024);
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
        let mut warnings = Vec::new();
        for r in results {
            warnings.extend(r?);
        }
        Ok(warnings)
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
}

/// CPUs this process may use (2 when unknown).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Entries of the first batch: small, so writing starts while the walk
/// goes on (later batches double up to a quarter of the limit).
const FIRST_BATCH: usize = 4096;

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
