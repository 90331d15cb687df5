//! The backup pipeline:
//!
//! ```text
//! scanner --files--> FileSaver xN --new blobs--> BlobSaver xN --packs--> Uploader xN --> MasterIndex
//!                        |                                                ^
//!                        +--completed dirs--> TreeSaver --tree packs------+
//! ```
//!
//! Every edge is a bounded channel except "completed dirs", and the graph
//! has no cycle, so no pool can block another into a deadlock. The dirs
//! queue is unbounded because completion happens inside FileSaver workers,
//! which must never wait for the TreeSaver; it holds at most one entry per
//! directory whose last child just finished, and the TreeSaver drains it
//! far faster than files are read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arch_index::Id;
use arch_repository::{hostname, username, FinishedPack, Repository, Snapshot};
use crossbeam_channel::{bounded, unbounded};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::context::{Ctx, Warning};
use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::file_saver::BlobJob;
use crate::metadata::NameCache;
use crate::options::BackupOptions;
use crate::packer::SharedPacker;
use crate::parent::ChangeRules;
use crate::policy::{ErrorPolicy, SkipErrors};
use crate::progress::{NoProgress, Progress};
use crate::scanner::{prepare_paths, scan, scan_stream, FileJob};
use crate::scope::{guarded, Scope};
use crate::select::Selector;
use crate::stats::Stats;
use crate::stream::StreamSource;
use crate::tree_source::{scan_tree, TreeSource};
use crate::{blob_saver, file_saver, prescan, tree_saver, uploader};

/// The outcome of a successful backup.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupResult {
    /// The new snapshot's id; `None` if no snapshot was written (a dry
    /// run, or nothing changed and skipping unchanged backups was asked for).
    pub snapshot_id: Option<Id>,
    /// The snapshot (as written, or as it would have been).
    pub snapshot: Snapshot,
    /// Per-file problems that were skipped (the snapshot lacks those entries).
    pub warnings: Vec<Warning>,
    /// Regular files that were opened and read.
    pub files_read: u64,
}

/// One backup run: configure, then [`Backup::run`].
///
/// Guarantees: when `run` returns `Ok`, every pack, the index listing them
/// and the snapshot are durably stored, in that order. When it returns
/// `Err` (an error, or cancellation through the token), no snapshot was
/// written, every worker thread has been joined, and packs that were stored
/// before the stop are indexed, so the next backup reuses them.
pub struct Backup<'a> {
    repo: &'a Repository,
    paths: Vec<PathBuf>,
    stream: Option<StreamSource>,
    tree: Option<(String, Box<dyn TreeSource>)>,
    opts: BackupOptions,
    progress: Arc<dyn Progress>,
    policy: Arc<dyn ErrorPolicy>,
    cancel: CancellationToken,
    #[cfg(test)]
    fault: Option<crate::fault::Fault>,
    #[cfg(test)]
    on_open: Option<crate::fault::OpenHook>,
    /// Test builds: receives the chunk budget's capacity and peak.
    #[cfg(test)]
    budget_seen: Option<Arc<Mutex<(usize, usize)>>>,
}

impl<'a> Backup<'a> {
    /// A backup of `paths` into `repo` with default options.
    pub fn new<P: Into<PathBuf>>(repo: &'a Repository, paths: impl IntoIterator<Item = P>) -> Backup<'a> {
        Backup {
            repo,
            paths: paths.into_iter().map(Into::into).collect(),
            stream: None,
            tree: None,
            opts: BackupOptions::default(),
            progress: Arc::new(NoProgress),
            policy: Arc::new(SkipErrors),
            cancel: CancellationToken::new(),
            #[cfg(test)]
            fault: None,
            #[cfg(test)]
            on_open: None,
            #[cfg(test)]
            budget_seen: None,
        }
    }

    /// A backup of one stream (stdin, a command's output) saved as a file
    /// at the snapshot root.
    pub fn stream(repo: &'a Repository, source: StreamSource) -> Backup<'a> {
        let mut b = Backup::new(repo, Vec::<PathBuf>::new());
        b.stream = Some(source);
        b
    }

    /// A backup of a tree the caller describes (see [`TreeSource`]), saved
    /// as directory `/NAME` in the snapshot (whose `paths` is `["/NAME"]`,
    /// so the next backup of the same name and host finds its parent).
    /// `name` must be one path component; [`Backup::run`] fails with
    /// [`ArchiveError::Invalid`] otherwise.
    pub fn tree(
        repo: &'a Repository,
        name: impl Into<String>,
        source: impl TreeSource + 'static,
    ) -> Backup<'a> {
        let mut b = Backup::new(repo, Vec::<PathBuf>::new());
        b.tree = Some((name.into(), Box::new(source)));
        b
    }

    /// Runs `hook` after each source file is opened (tests of files that
    /// change while read).
    #[cfg(test)]
    pub(crate) fn on_open(mut self, hook: crate::fault::OpenHook) -> Self {
        self.on_open = Some(hook);
        self
    }

    /// Makes `stage` fail on its `after`-th item (tests of error handling).
    #[cfg(test)]
    pub(crate) fn inject_fault(mut self, stage: crate::fault::Stage, after: usize) -> Self {
        self.fault = Some(crate::fault::Fault { stage, after, seen: Default::default() });
        self
    }

    /// Reports the chunk budget's capacity and peak use after the run.
    #[cfg(test)]
    pub(crate) fn report_budget(mut self, to: Arc<Mutex<(usize, usize)>>) -> Self {
        self.budget_seen = Some(to);
        self
    }

    /// Sets the options.
    pub fn options(mut self, opts: BackupOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Sets the progress sink.
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = p;
        self
    }

    /// Sets the per-file error policy (default: [`SkipErrors`]).
    pub fn error_policy(mut self, p: Arc<dyn ErrorPolicy>) -> Self {
        self.policy = p;
        self
    }

    /// Sets the token that cancels the run.
    pub fn cancel_token(mut self, t: CancellationToken) -> Self {
        self.cancel = t;
        self
    }

    /// Runs the backup; see the type's guarantees.
    pub fn run(self) -> Result<BackupResult, ArchiveError> {
        let start = Instant::now();
        let time = self.opts.time.unwrap_or_else(|| chrono::Local::now().fixed_offset());
        let paths = match (&self.stream, &self.tree) {
            (Some(s), _) => vec![PathBuf::from("/").join(&s.name)],
            (None, Some((name, _))) => {
                if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                    return Err(ArchiveError::Invalid(format!(
                        "invalid tree name {name:?}: use one path component"
                    )));
                }
                vec![PathBuf::from("/").join(name)]
            }
            (None, None) => prepare_paths(&self.paths)?,
        };
        let compression_level = self.opts.compression_level.unwrap_or(self.repo.config().compression_level);
        if !arch_repository::COMPRESSION_LEVELS.contains(&compression_level) {
            return Err(ArchiveError::Invalid(format!(
                "compression level {compression_level} is out of range: use 1 (fastest) to 22 (smallest)"
            )));
        }
        let selector = Selector::new(&self.opts)?;
        let path_strings: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let hostname = self.opts.host.clone().unwrap_or_else(hostname);
        let parent = match self.opts.parent {
            Some(id) => Some((id, self.repo.load_snapshot(&id)?)),
            None => latest_with(self.repo, &hostname, &path_strings)?,
        };
        let scope = Scope::new(&self.cancel);
        let (_, blob_workers, _) = self.opts.resolved(self.repo.backend().connections());
        let ctx = Ctx {
            repo: self.repo,
            pending: self.repo.index().session(),
            scope: &scope,
            progress: &*self.progress,
            policy: &*self.policy,
            stats: Stats::default(),
            names: NameCache::default(),
            warnings: Mutex::new(Vec::new()),
            root_tree: Mutex::new(None),
            parent_tree: parent.as_ref().filter(|_| !self.opts.force).map(|(_, s)| s.tree),
            rules: ChangeRules { ignore_inode: self.opts.ignore_inode, ignore_ctime: self.opts.ignore_ctime },
            dry_run: self.opts.dry_run,
            with_atime: self.opts.with_atime,
            read_mode: self.opts.read_mode,
            compression_level,
            chunk_bufs: crate::pool::BufPool::new(2 * blob_workers + 2),
            chunk_budget: crate::budget::ByteBudget::new(chunk_budget(self.repo, blob_workers)),
            #[cfg(test)]
            fault: self.fault,
            #[cfg(test)]
            on_open: self.on_open,
        };
        let input = match (self.stream, self.tree) {
            (Some(s), _) => Input::Stream(s),
            (None, Some((name, source))) => Input::Tree(name, source),
            (None, None) => Input::Paths(&paths, selector),
        };
        run_pools(&ctx, input, &self.opts);
        #[cfg(test)]
        if let Some(seen) = &self.budget_seen {
            *seen.lock() = (ctx.chunk_budget.capacity(), ctx.chunk_budget.peak());
        }

        // Index whatever was stored, even after an error or a cancel: the
        // packs exist, and indexing them lets the next run reuse them.
        let flushed = if self.opts.dry_run { Ok(None) } else { self.repo.flush_index() };
        if let Some(e) = scope.take_error() {
            return Err(e);
        }
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        flushed?;
        let tree = ctx.root_tree.lock().take().ok_or(ArchiveError::WorkerPanic("tree saver"))?;
        let mut tags = self.opts.tags.clone();
        tags.sort();
        tags.dedup();
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let unchanged = parent.as_ref().is_some_and(|(_, p)| p.tree == tree);
        let snapshot = Snapshot {
            time,
            tree,
            paths: path_strings,
            hostname,
            username: username(),
            uid,
            gid,
            tags,
            parent: parent.map(|(id, _)| id),
            program_version: format!("arch {}", env!("CARGO_PKG_VERSION")),
            summary: Some(ctx.stats.summary(start.elapsed().as_secs_f64())),
            original: None,
        };
        let skip = self.opts.dry_run || (self.opts.skip_if_unchanged && unchanged);
        let snapshot_id = if skip { None } else { Some(self.repo.save_snapshot(&snapshot)?) };
        let files_read = ctx.stats.files_opened.load(std::sync::atomic::Ordering::Relaxed);
        Ok(BackupResult { snapshot_id, snapshot, warnings: ctx.warnings.into_inner(), files_read })
    }
}

/// Bytes of new chunk data that may wait for or be in the BlobSaver:
/// eight average chunks per BlobSaver worker, and at least two maximal
/// chunks (16 MiB at the default sizes). Half of that left the BlobSaver
/// idle whenever a FileSaver waited on the disk or one maximal chunk
/// filled the budget: on the 1 GiB bench corpus the first backup took
/// 3.60-3.86 s instead of 3.34-3.66 s (7 pairs, cold cache), at the same
/// peak RSS (the key derivation's 64 MiB is the peak either way).
fn chunk_budget(repo: &Repository, blob_workers: usize) -> usize {
    let c = &repo.config().chunker;
    (8 * blob_workers * c.avg_size as usize).max(2 * c.max_size as usize)
}

/// What the scanner walks.
enum Input<'p> {
    Paths(&'p [PathBuf], Selector),
    Stream(StreamSource),
    Tree(String, Box<dyn TreeSource>),
}

/// The newest snapshot of `host` with exactly these paths: the default
/// parent, as in restic.
fn latest_with(
    repo: &Repository,
    host: &str,
    paths: &[String],
) -> Result<Option<(Id, Snapshot)>, ArchiveError> {
    Ok(repo.list_snapshots()?.into_iter().rev().find(|(_, s)| s.hostname == host && s.paths == paths))
}

fn run_pools(ctx: &Ctx<'_>, input: Input<'_>, opts: &BackupOptions) {
    let (file_workers, blob_workers, upload_workers) = opts.resolved(ctx.repo.backend().connections());
    let (file_tx, file_rx) = bounded::<FileJob>(file_workers * 8);
    // The byte budget bounds what this queue holds; the count only keeps
    // a flood of tiny chunks (small files) from queueing without end.
    let (blob_tx, blob_rx) = bounded::<BlobJob<'_>>(blob_workers * 16);
    let (tree_tx, tree_rx) = unbounded::<Arc<DirState>>();
    // A rendezvous: a finished pack waits in its saver until an uploader
    // takes it, so at most (savers + uploaders) finished packs exist. Each
    // is a staging file, not memory.
    let (pack_tx, pack_rx) = bounded::<FinishedPack>(0);
    let scope = ctx.scope;
    let pack_size = ctx.repo.config().pack_size as usize;
    let data_packer = SharedPacker::new(arch_index::BlobType::Data, pack_size, blob_workers);
    std::thread::scope(|s| {
        let watcher = spawn(s, scope, "arch-watch", || {
            scope.watch();
            Ok(())
        });
        let prescan = match (&input, opts.prescan) {
            (Input::Paths(paths, _), true) => {
                let paths: &[PathBuf] = paths;
                spawn(s, scope, "arch-prescan", move || prescan::run(scope, paths, opts, ctx.progress))
            }
            _ => None,
        };
        let mut workers = Vec::new();
        let data_packer = &data_packer;
        for i in 0..upload_workers {
            let rx = pack_rx.clone();
            workers.push(spawn(s, scope, "arch-upload", move || {
                // An uploader has nothing to do until the first pack is full.
                if i == 0 {
                    data_packer.open_ahead(ctx)?;
                }
                uploader::run(ctx, &rx)
            }));
        }
        for _ in 0..blob_workers {
            let (rx, tx) = (blob_rx.clone(), pack_tx.clone());
            workers.push(spawn(s, scope, "arch-blob", move || blob_saver::run(ctx, &rx, data_packer, &tx)));
        }
        let tx = pack_tx.clone();
        workers.push(spawn(s, scope, "arch-tree", move || tree_saver::run(ctx, &tree_rx, &tx)));
        for _ in 0..file_workers {
            let (rx, btx, ttx) = (file_rx.clone(), blob_tx.clone(), tree_tx.clone());
            workers.push(spawn(s, scope, "arch-file", move || file_saver::run(ctx, &rx, &btx, &ttx)));
        }
        // Each pool now holds its own channel ends; dropping ours lets
        // channels close as soon as the pools feeding them finish.
        drop((pack_rx, pack_tx, blob_rx, blob_tx, file_rx));
        guarded(scope, "scanner", || match input {
            Input::Paths(paths, mut selector) => scan(ctx, paths, opts, &mut selector, &file_tx, &tree_tx),
            Input::Stream(source) => scan_stream(ctx, source, &file_tx, &tree_tx),
            Input::Tree(name, mut source) => scan_tree(ctx, &name, &mut *source, &file_tx, &tree_tx),
        });
        drop((file_tx, tree_tx));
        for w in workers.into_iter().flatten() {
            // Workers catch their own panics (guarded), so join cannot fail.
            let _ = w.join();
        }
        // Ends the watcher and a pre-scan that is still counting.
        scope.finish();
        for h in [watcher, prescan].into_iter().flatten() {
            let _ = h.join();
        }
    });
}

/// Spawns a named worker in the thread scope; a failure to create the
/// thread fails the run (the pools already started then wind down).
pub(crate) fn spawn<'s, 'env>(
    s: &'s std::thread::Scope<'s, 'env>,
    scope: &'env Scope,
    name: &'static str,
    f: impl FnOnce() -> Result<(), ArchiveError> + Send + 's,
) -> Option<std::thread::ScopedJoinHandle<'s, ()>> {
    match std::thread::Builder::new().name(name.to_string()).spawn_scoped(s, move || guarded(scope, name, f))
    {
        Ok(h) => Some(h),
        Err(e) => {
            scope.fail(ArchiveError::io("start thread", name, e));
            None
        }
    }
}
