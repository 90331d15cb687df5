//! Restore: plan first, then read each pack once, in parallel across packs,
//! writing blobs with positional writes; metadata after content, directory
//! metadata last (deepest first) so writing children does not disturb it.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arch_index::{BlobLocation, BlobType, Id, PackId};
use arch_repository::{decode_blob, FileKind, Node, NodeKind, Repository, Snapshot, Timestamp};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backup::spawn;
use crate::context::Warning;
use crate::error::ArchiveError;
use crate::metadata::write_xattr;
use crate::progress::{NoProgress, Progress};
use crate::scope::Scope;

/// Options of a restore. Zero means automatic.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Allow restoring into a non-empty target (existing files that the
    /// snapshot also has are replaced).
    pub overwrite: bool,
    /// Write all-zero chunks as holes. Default on (see [`RestoreOptions::dense`]).
    pub dense: bool,
    /// Threads reading packs. Default: the number of CPUs, at least 2, so
    /// decryption of one pack overlaps the read of the next.
    pub workers: usize,
}

impl RestoreOptions {
    /// Allow a non-empty target.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
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
}

/// What a restore did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RestoreResult {
    /// Regular files restored (hardlinks count once per name).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks, fifos and devices restored.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Metadata that could not be applied (e.g. owners when not root).
    pub warnings: Vec<Warning>,
}

/// One restore run: configure, then [`Restore::run`].
///
/// Guarantees: every blob is authenticated and its content hash verified
/// before it is written; when `run` returns `Ok`, every file has its
/// snapshot content, and mode, times and (as root) owner applied.
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
    offset_in_pack: u32,
    file: u32,
    file_offset: u64,
}

/// The blobs needed from one pack, each with where it goes.
type PackBlobs = Vec<(BlobLocation, Vec<Placement>)>;

struct Plan {
    files: Vec<PathBuf>,
    /// pack -> blob location -> placements
    packs: HashMap<PackId, PackBlobs>,
    /// blob id -> index into its pack's vector, to merge occurrences
    seen: HashMap<(PackId, Id), usize>,
    /// Nodes whose metadata is applied after content.
    meta: Vec<(PathBuf, Node)>,
    dirs: Vec<(PathBuf, Node)>,
    hardlinks: Vec<(PathBuf, PathBuf)>,
    first_link: HashMap<(u64, u64), PathBuf>,
    result: RestoreResult,
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
        self.check_target()?;
        let mut plan = Plan {
            files: Vec::new(),
            packs: HashMap::new(),
            seen: HashMap::new(),
            meta: Vec::new(),
            dirs: Vec::new(),
            hardlinks: Vec::new(),
            first_link: HashMap::new(),
            result: RestoreResult::default(),
        };
        self.plan_tree(&self.tree, &self.target, &mut plan)?;
        self.write_content(&plan)?;
        for (link, original) in &plan.hardlinks {
            replace_with(link, || std::fs::hard_link(original, link))?;
        }
        let is_root = unsafe { libc::geteuid() } == 0;
        let mut warnings = Vec::new();
        for (path, node) in &plan.meta {
            apply_metadata(path, node, is_root, &mut warnings)?;
        }
        // Deepest first: a parent's mtime is set after its children exist.
        for (path, node) in plan.dirs.iter().rev() {
            apply_metadata(path, node, is_root, &mut warnings)?;
        }
        plan.result.warnings = warnings;
        Ok(plan.result)
    }

    fn check_target(&self) -> Result<(), ArchiveError> {
        match std::fs::read_dir(&self.target) {
            Ok(mut entries) => {
                if entries.next().is_some() && !self.opts.overwrite {
                    return Err(ArchiveError::TargetNotEmpty { path: self.target.clone() });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(&self.target)
                .map_err(|e| ArchiveError::io("create restore target", &self.target, e)),
            Err(e) => Err(ArchiveError::io("open restore target", &self.target, e)),
        }
    }

    fn plan_tree(&self, tree_id: &Id, dir: &Path, plan: &mut Plan) -> Result<(), ArchiveError> {
        if self.cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let tree = self.repo.load_tree(tree_id)?;
        for node in tree.nodes {
            let path = dir.join(OsStr::from_bytes(&node.name));
            match node.kind {
                NodeKind::Dir => {
                    make_dir(&path)?;
                    plan.result.dirs += 1;
                    let sub = node.subtree.ok_or_else(|| {
                        ArchiveError::Repo(arch_repository::RepoError::Corrupt {
                            what: format!("tree {}", tree_id.short()),
                            detail: format!("directory {} has no subtree", path.display()),
                        })
                    })?;
                    let node_meta = Node { subtree: None, ..node };
                    plan.dirs.push((path.clone(), node_meta));
                    self.plan_tree(&sub, &path, plan)?;
                }
                NodeKind::File => self.plan_file(path, node, plan)?,
                NodeKind::Symlink => {
                    let target = node.target.clone().unwrap_or_default();
                    replace_with(&path, || std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path))?;
                    plan.result.others += 1;
                    plan.meta.push((path, node));
                }
                NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
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
                            plan.meta.push((path, node));
                        }
                        Err(e) => plan.result.warnings.push(Warning { path, message: e.to_string() }),
                    }
                }
                NodeKind::Socket => {}
            }
        }
        Ok(())
    }

    fn plan_file(&self, path: PathBuf, node: Node, plan: &mut Plan) -> Result<(), ArchiveError> {
        if node.links > 1 {
            let key = (node.device, node.inode);
            if let Some(first) = plan.first_link.get(&key) {
                plan.hardlinks.push((path, first.clone()));
                plan.result.files += 1;
                return Ok(());
            }
            plan.first_link.insert(key, path.clone());
        }
        let f = replace_with(&path, || {
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map(|_| ())
        });
        f?;
        let file_no = plan.files.len() as u32;
        let mut offset = 0u64;
        for id in &node.content {
            let loc = self.repo.locate(BlobType::Data, id)?;
            let entries = plan.packs.entry(loc.pack).or_default();
            let slot = *plan.seen.entry((loc.pack, *id)).or_insert_with(|| {
                entries.push((loc, Vec::new()));
                entries.len() - 1
            });
            entries[slot].1.push(Placement {
                offset_in_pack: loc.blob.offset,
                file: file_no,
                file_offset: offset,
            });
            offset += u64::from(loc.blob.raw_length);
        }
        if offset != node.size {
            return Err(ArchiveError::Repo(arch_repository::RepoError::Corrupt {
                what: format!("file {}", path.display()),
                detail: format!("blobs add up to {offset} bytes but the node says {}", node.size),
            }));
        }
        // The final size up front: holes stay holes, and a reader of a
        // half-restored file sees its full length.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(node.size))
            .map_err(|e| ArchiveError::io("size file", &path, e))?;
        plan.files.push(path.clone());
        plan.result.files += 1;
        plan.result.bytes += node.size;
        plan.meta.push((path, node));
        Ok(())
    }

    fn write_content(&self, plan: &Plan) -> Result<(), ArchiveError> {
        let mut packs: Vec<(&PackId, &PackBlobs)> = plan.packs.iter().collect();
        // Bigger packs first so the tail of the run is not one big pack.
        packs.sort_by_key(|(id, blobs)| (std::cmp::Reverse(blobs.len()), **id));
        let workers = match self.opts.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2),
            n => n,
        }
        .min(packs.len().max(1));
        let scope = Scope::new(&self.cancel);
        let next = AtomicUsize::new(0);
        let handles = FileHandles::default();
        std::thread::scope(|s| {
            let watcher = spawn(s, &scope, "arch-watch", || {
                scope.watch();
                Ok(())
            });
            let mut ws = Vec::new();
            for _ in 0..workers {
                ws.push(spawn(s, &scope, "arch-restore", || loop {
                    if scope.is_cancelled() {
                        return Ok(());
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack, blobs)) = packs.get(i) else {
                        return Ok(());
                    };
                    self.restore_pack(pack, blobs, plan, &handles)?;
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

    fn restore_pack(
        &self,
        pack: &PackId,
        blobs: &[(BlobLocation, Vec<Placement>)],
        plan: &Plan,
        handles: &FileHandles,
    ) -> Result<(), ArchiveError> {
        // One read covering every needed blob of the pack.
        let start = blobs.iter().map(|(l, _)| u64::from(l.blob.offset)).min().unwrap_or(0);
        let end =
            blobs.iter().map(|(l, _)| u64::from(l.blob.offset) + u64::from(l.blob.length)).max().unwrap_or(0);
        let data = self
            .repo
            .backend()
            .read_range(FileKind::Pack, &pack.to_hex(), start, end - start)
            .map_err(arch_repository::RepoError::from)?;
        for (loc, places) in blobs {
            let from = (u64::from(loc.blob.offset) - start) as usize;
            let sealed = &data[from..from + loc.blob.length as usize];
            let plain = decode_blob(self.repo.key(), loc, sealed)?;
            let zero = !self.opts.dense && is_zero(&plain);
            for p in places {
                debug_assert_eq!(p.offset_in_pack, loc.blob.offset);
                if !zero {
                    let path = &plan.files[p.file as usize];
                    let f = handles.get(p.file, path)?;
                    f.write_all_at(&plain, p.file_offset).map_err(|e| ArchiveError::io("write", path, e))?;
                }
                self.progress.bytes_processed(plain.len() as u64);
            }
        }
        Ok(())
    }
}

/// Open write handles, shared by the pack workers (a file's blobs may come
/// from many packs). Bounded so a restore of millions of files does not
/// exhaust descriptors.
#[derive(Default)]
struct FileHandles {
    open: Mutex<HashMap<u32, Arc<File>>>,
}

impl FileHandles {
    fn get(&self, file: u32, path: &Path) -> Result<Arc<File>, ArchiveError> {
        let mut open = self.open.lock();
        if let Some(f) = open.get(&file) {
            return Ok(Arc::clone(f));
        }
        if open.len() >= 256 {
            open.clear();
        }
        let f = Arc::new(
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| ArchiveError::io("open for writing", path, e))?,
        );
        open.insert(file, Arc::clone(&f));
        Ok(f)
    }
}

fn is_zero(b: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to splits correctly.
    let (pre, mid, post) = unsafe { b.align_to::<u128>() };
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

/// Runs `create`; if the path exists (restoring over a tree), removes what
/// is there (not a directory) and tries once more.
fn replace_with(path: &Path, create: impl Fn() -> std::io::Result<()>) -> Result<(), ArchiveError> {
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(path).map_err(|e| ArchiveError::io("stat", path, e))?;
            if md.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
                .map_err(|e| ArchiveError::io("replace", path, e))?;
            create().map_err(|e| ArchiveError::io("create", path, e))
        }
        r => r.map_err(|e| ArchiveError::io("create", path, e)),
    }
}

/// Creates a directory; one already there is reused only if it is a real
/// directory. Anything else in the way (a file, or a symlink that could
/// lead the restore out of its target) is replaced.
fn make_dir(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => {
            std::fs::remove_file(path).map_err(|e| ArchiveError::io("replace", path, e))?;
            std::fs::create_dir(path).map_err(|e| ArchiveError::io("create directory", path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(path).map_err(|e| ArchiveError::io("create directory", path, e))
        }
        Err(e) => Err(ArchiveError::io("stat", path, e)),
    }
}

fn cstr(path: &Path) -> Result<CString, ArchiveError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ArchiveError::Invalid(format!("path {} contains a NUL byte", path.display())))
}

fn timespec(t: Timestamp) -> libc::timespec {
    libc::timespec { tv_sec: t.0 as libc::time_t, tv_nsec: t.1 as libc::c_long }
}

fn apply_metadata(
    path: &Path,
    node: &Node,
    is_root: bool,
    warnings: &mut Vec<Warning>,
) -> Result<(), ArchiveError> {
    let c = cstr(path)?;
    let mut warn = |what: &str, e: std::io::Error| {
        warnings.push(Warning { path: path.to_path_buf(), message: format!("{what}: {e}") });
    };
    if is_root {
        // SAFETY: c is a valid path.
        if unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } != 0 {
            warn("set owner", std::io::Error::last_os_error());
        }
    }
    for x in &node.xattrs {
        if let Err(e) = write_xattr(path, x) {
            warn("set extended attribute", e);
        }
    }
    if node.kind != NodeKind::Symlink {
        // After chown, which clears set-id bits.
        // SAFETY: c is a valid path.
        if unsafe { libc::chmod(c.as_ptr(), node.mode as libc::mode_t) } != 0 {
            return Err(ArchiveError::io("set mode", path, std::io::Error::last_os_error()));
        }
    }
    // No recorded atime (the default): use the mtime, as a fresh copy would.
    let atime = if node.atime == Timestamp::default() { node.mtime } else { node.atime };
    let times = [timespec(atime), timespec(node.mtime)];
    // SAFETY: c is a valid path and times has two entries.
    let rc =
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(ArchiveError::io("set times", path, std::io::Error::last_os_error()));
    }
    Ok(())
}
