//! `check`: verifies that a repository's objects agree with each other and,
//! optionally, that every stored byte is intact.
//!
//! The structure check reads every index file and snapshot, one small range
//! at the end of every pack (its header) and every tree; `--read-data`
//! additionally downloads packs, checks each pack's blake3 against its name
//! and decrypts, decompresses and re-hashes every blob. Damage is reported
//! with the pack and blob it is in and the snapshots and paths that need it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arch_index::{BlobId, BlobLocation, BlobType, Id, PackId, PackedBlob};
use parking_lot::Mutex;

use crate::backend::FileKind;
use crate::blob_codec::decode_blob;
use crate::crypto::SEAL_OVERHEAD;
use crate::error::RepoError;
use crate::pack::decode_pack_header;
use crate::repo::Repository;
use crate::tree::{NodeKind, Tree};

/// Packs up to this size are read whole (one request, one buffer per
/// thread); larger ones (a config with `pack_size` above 64 MiB) are hashed
/// in 16 MiB pieces and their blobs read one by one, so memory stays
/// bounded whatever the pack size.
const WHOLE_PACK_LIMIT: u64 = 64 << 20;
const HASH_PIECE: u64 = 16 << 20;
/// Plaintext pack header: magic, version, count, then 42 bytes per blob.
const HEADER_FIXED: u64 = 9;
const HEADER_ENTRY: u64 = 42;

mod report;
mod select;
mod usage;

use report::type_name;
pub use report::{CheckReport, Problem, ProblemKind, Usage};
use select::select;
pub use select::ReadData;
use usage::Taint;

/// A function a long check polls to learn it should stop.
pub type CancelCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// What [`check`] verifies and how.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Which packs to download and verify byte for byte (default: none).
    pub read_data: ReadData,
    /// Threads reading pack headers and packs. 0 means automatic: the
    /// number of CPUs, at most 8 (decrypting and hashing is CPU-bound on a
    /// local disk; more threads only add memory, one pack each), but at
    /// least the backend's `connections()` (remote reads wait on latency).
    pub threads: usize,
    /// Seed of the random choice of `Percent` and `Size` subsets; `None`
    /// draws one from the OS (a fixed seed makes a check reproducible).
    pub seed: Option<u64>,
    cancel: Option<CancelCheck>,
}

impl fmt::Debug for CheckOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckOptions")
            .field("read_data", &self.read_data)
            .field("threads", &self.threads)
            .field("seed", &self.seed)
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

impl CheckOptions {
    /// Sets [`CheckOptions::read_data`].
    pub fn read_data(mut self, r: ReadData) -> Self {
        self.read_data = r;
        self
    }
    /// Sets [`CheckOptions::threads`].
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
    /// Sets [`CheckOptions::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Stops the check early (with [`CheckReport::cancelled`] set) once `f`
    /// returns true, e.g. `move || token.is_cancelled()`.
    pub fn cancel_when(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.cancel = Some(Arc::new(f));
        self
    }
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|f| f())
    }
    /// Threads, given the backend's connection count (remote reads wait on
    /// latency, so as many as the backend serves at once).
    fn resolved_threads(&self, connections: usize) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8).max(connections)
    }
}

/// The steps of a check, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckPhase {
    /// Reading index files (total: files).
    Index,
    /// Checking that packs exist and their headers agree with the index (total: packs).
    Packs,
    /// Loading snapshots and walking their trees (total: snapshots).
    Snapshots,
    /// Downloading and verifying packs (total: packs; bytes are reported).
    ReadData,
    /// Finding the snapshots and paths that need damaged blobs (total: snapshots).
    Usage,
}

/// Receives a check's progress. Every method has a no-op default; calls
/// may come from several threads.
pub trait CheckProgress: Send + Sync {
    /// A phase starts with `total` items to do.
    fn phase(&self, _phase: CheckPhase, _total: u64) {}
    /// `items` more items of the current phase are done, `bytes` read.
    fn advance(&self, _items: u64, _bytes: u64) {}
}

/// A [`CheckProgress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCheckProgress;

impl CheckProgress for NoCheckProgress {}

type BlobKey = (BlobType, BlobId);
/// Problems found in one pack, each with the blobs it affects.
type Found = Vec<(ProblemKind, Vec<BlobKey>)>;

struct PackState {
    /// The index's entries, sorted by offset.
    blobs: Vec<PackedBlob>,
    /// The first index file that lists the pack.
    index: Id,
}

struct Checker<'a> {
    repo: &'a Repository,
    opts: &'a CheckOptions,
    progress: &'a dyn CheckProgress,
    threads: usize,
    report: CheckReport,
    packs: BTreeMap<PackId, PackState>,
    /// Sizes of the packs on the backend.
    listed: HashMap<PackId, u64>,
    /// Packs that are missing (their blobs are already reported).
    missing: HashSet<PackId>,
    /// Blob → problems that make it unreadable.
    damaged: HashMap<BlobKey, Vec<usize>>,
    /// Snapshots, oldest first.
    snapshots: Vec<(Id, Id, chrono::DateTime<chrono::FixedOffset>)>,
}

/// Checks the repository; see the module docs for what is verified.
///
/// Takes no lease (callers that may race with prune should hold a shared
/// [`Lease`](crate::Lease)). Returns `Err` only when the check cannot run at
/// all (e.g. a folder cannot be listed); damage of individual objects is
/// reported in [`CheckReport::problems`]. Every readable index file (not
/// superseded) is also loaded into `repo`'s index, so `repo` may come from
/// [`Repository::open_unindexed`] (then a damaged index file is reported
/// rather than stopping the open), and snapshots written by a concurrent
/// backup after `repo` was opened are checked against a current index.
pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn CheckProgress,
) -> Result<CheckReport, RepoError> {
    let mut c = Checker {
        repo,
        opts,
        progress,
        threads: opts.resolved_threads(repo.backend().connections()),
        report: CheckReport::default(),
        packs: BTreeMap::new(),
        listed: HashMap::new(),
        missing: HashSet::new(),
        damaged: HashMap::new(),
        snapshots: Vec::new(),
    };
    // Listing order matters when a backup runs concurrently: it writes
    // packs, then the index, then the snapshot. Listing snapshots first,
    // then index files, then packs means everything a listed snapshot needs
    // is in a listed index file, and every listed index file's packs are listed.
    let snapshot_ids = c.list_ids(FileKind::Snapshot)?;
    c.read_indexes()?;
    if !c.stop() {
        c.check_packs()?;
    }
    if !c.stop() {
        c.walk_snapshots(&snapshot_ids);
    }
    if !c.stop() && c.opts.read_data != ReadData::None {
        c.read_data();
    }
    if !c.stop() && !c.damaged.is_empty() {
        c.attribute();
    }
    c.report.cancelled = c.opts.cancelled();
    Ok(c.report)
}

fn short_detail(e: RepoError) -> String {
    match e {
        RepoError::Corrupt { detail, .. } => detail,
        e => e.to_string(),
    }
}

/// Runs `f` on every item with `threads` threads taking the next item from
/// a shared counter; stops taking items once `stop` returns true. Each
/// thread makes its own `state` and hands it to every call it makes.
fn parallel<T: Sync, S>(
    items: &[T],
    threads: usize,
    stop: &(dyn Fn() -> bool + Sync),
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) + Sync,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                let mut st = state();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() || stop() {
                        break;
                    }
                    f(&mut st, &items[i]);
                }
            });
        }
    });
}

impl Checker<'_> {
    fn stop(&self) -> bool {
        self.opts.cancelled()
    }

    fn list_ids(&self, kind: FileKind) -> Result<Vec<(Id, u64)>, RepoError> {
        let mut out: Vec<(Id, u64)> = self
            .repo
            .backend()
            .list(kind)?
            .into_iter()
            .filter_map(|i| Some((Id::from_hex(&i.name)?, i.size)))
            .collect();
        out.sort();
        Ok(out)
    }

    fn add(&mut self, kind: ProblemKind, blobs: Vec<BlobKey>) {
        let i = self.report.problems.len();
        for b in &blobs {
            self.damaged.entry(*b).or_default().push(i);
        }
        self.report.problems.push(Problem { kind, blobs, needed_by: Vec::new() });
    }

    fn read_indexes(&mut self) -> Result<(), RepoError> {
        let ids = self.list_ids(FileKind::Index)?;
        self.progress.phase(CheckPhase::Index, ids.len() as u64);
        let mut files = Vec::with_capacity(ids.len());
        for (id, _) in ids {
            if self.stop() {
                return Ok(());
            }
            let file = self.repo.load_index_file(&id);
            self.progress.advance(1, 0);
            match file {
                Ok(f) => files.push((id, f)),
                Err(e) => {
                    self.add(ProblemKind::IndexUnreadable { index: id, detail: short_detail(e) }, Vec::new())
                }
            }
        }
        // A prune interrupted after writing its new index file but before
        // deleting the ones it replaces leaves both; the old ones do not
        // count (as when the repository is opened).
        let superseded: HashSet<Id> = files.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
        for (id, file) in files {
            if superseded.contains(&id) {
                continue;
            }
            self.report.index_files += 1;
            self.repo.index().load(&file);
            for p in file.packs {
                let mut blobs = p.blobs;
                blobs.sort_by_key(|b| (b.offset, b.length));
                match self.packs.get(&p.pack) {
                    None => {
                        self.report.blobs += blobs.len();
                        self.packs.insert(p.pack, PackState { blobs, index: id });
                    }
                    Some(old) if old.blobs == blobs => {}
                    Some(old) => {
                        let detail = format!("index files {} and {} list it differently", old.index, id);
                        let keys = blob_keys(&old.blobs);
                        self.add(ProblemKind::PackIndexMismatch { pack: p.pack, detail }, keys);
                    }
                }
            }
        }
        self.report.packs = self.packs.len();
        // Duplicates and conflicts: the master index keeps one location per
        // blob; every other entry of the same blob is an extra copy.
        let mut conflicts = Vec::new();
        let mut seen_conflict = HashSet::new();
        for (pack, st) in &self.packs {
            for b in &st.blobs {
                let Some(loc) = self.repo.index().lookup(b.blob_type, &b.id) else { continue };
                if loc.pack == *pack && loc.blob.offset == b.offset {
                    continue;
                }
                self.report.duplicate_blobs += 1;
                if loc.blob.raw_length != b.raw_length && seen_conflict.insert((b.blob_type, b.id)) {
                    let detail = format!(
                        "{} bytes in pack {} but {} bytes in pack {}",
                        b.raw_length, pack, loc.blob.raw_length, loc.pack
                    );
                    conflicts.push(ProblemKind::IndexConflict { blob_type: b.blob_type, blob: b.id, detail });
                }
            }
        }
        for k in conflicts {
            let key = match &k {
                ProblemKind::IndexConflict { blob_type, blob, .. } => (*blob_type, *blob),
                _ => unreachable!(),
            };
            self.add(k, vec![key]);
        }
        Ok(())
    }

    fn check_packs(&mut self) -> Result<(), RepoError> {
        self.listed = self.list_ids(FileKind::Pack)?.into_iter().collect();
        self.report.unreferenced_packs = self
            .listed
            .iter()
            .filter(|(id, _)| !self.packs.contains_key(id))
            .map(|(id, s)| (*id, *s))
            .collect();
        self.report.unreferenced_packs.sort();
        let ids: Vec<PackId> = self.packs.keys().copied().collect();
        self.progress.phase(CheckPhase::Packs, ids.len() as u64);
        let found: Mutex<Vec<(PackId, ProblemKind)>> = Mutex::new(Vec::new());
        let stop = || self.opts.cancelled();
        parallel(
            &ids,
            self.threads,
            &stop,
            || (),
            |(), pack| {
                let st = &self.packs[pack];
                let problem = match self.listed.get(pack) {
                    None => Some(ProblemKind::PackMissing { pack: *pack, blobs: st.blobs.len() }),
                    Some(&size) => self.check_header(pack, size, &st.blobs).err(),
                };
                if let Some(p) = problem {
                    found.lock().push((*pack, p));
                }
                self.progress.advance(1, 0);
            },
        );
        let mut found = found.into_inner();
        found.sort_by_key(|(p, _)| *p);
        for (pack, kind) in found {
            if matches!(kind, ProblemKind::PackMissing { .. }) {
                self.missing.insert(pack);
            }
            let keys = blob_keys(&self.packs[&pack].blobs);
            self.add(kind, keys);
        }
        Ok(())
    }

    /// Reads a pack's header with one request (its size follows from the
    /// index's blob count) and compares it with the index's entries.
    fn check_header(&self, pack: &PackId, size: u64, blobs: &[PackedBlob]) -> Result<(), ProblemKind> {
        let header_err = |detail: String| ProblemKind::PackHeader { pack: *pack, detail };
        let backend = self.repo.backend();
        let name = pack.to_hex();
        let sealed_len = HEADER_FIXED + HEADER_ENTRY * blobs.len() as u64 + SEAL_OVERHEAD as u64;
        let blobs_end = blobs.iter().map(|b| u64::from(b.offset) + u64::from(b.length)).max().unwrap_or(0);
        let expected = blobs_end + sealed_len + 4;
        let hint = if size == expected {
            String::new()
        } else {
            format!(" (the pack is {size} bytes, the index expects {expected})")
        };
        if size < 4 + SEAL_OVERHEAD as u64 + HEADER_FIXED {
            return Err(header_err(format!("too short to hold a header{hint}")));
        }
        let want = size.min(sealed_len + 4);
        let tail = backend
            .read_range(FileKind::Pack, &name, size - want, want)
            .map_err(|e| ProblemKind::PackUnreadable { pack: *pack, detail: e.to_string() })?;
        let hlen = u64::from(u32::from_le_bytes(tail[tail.len() - 4..].try_into().expect("4 bytes")));
        if hlen + 4 > size {
            return Err(header_err(format!("header length {hlen} exceeds the pack{hint}")));
        }
        let start = size - 4 - hlen;
        let sealed = if hlen + 4 <= want {
            tail[(want - 4 - hlen) as usize..tail.len() - 4].to_vec()
        } else {
            backend
                .read_range(FileKind::Pack, &name, start, hlen)
                .map_err(|e| ProblemKind::PackUnreadable { pack: *pack, detail: e.to_string() })?
        };
        let mut header = decode_pack_header(self.repo.key(), pack, &sealed, start).map_err(|e| {
            let d = short_detail(e);
            header_err(format!("{}{hint}", d.strip_prefix("header: ").unwrap_or(&d)))
        })?;
        header.sort_by_key(|b| (b.offset, b.length));
        if header == blobs {
            return Ok(());
        }
        let mismatch = |detail: String| Err(ProblemKind::PackIndexMismatch { pack: *pack, detail });
        for (h, i) in header.iter().zip(blobs) {
            if h != i {
                return mismatch(format!(
                    "at offset {} the header has {} and the index has {}",
                    i.offset.min(h.offset),
                    describe(h),
                    describe(i)
                ));
            }
        }
        mismatch(format!("the header lists {} blobs, the index {}", header.len(), blobs.len()))
    }

    fn walk_snapshots(&mut self, ids: &[(Id, u64)]) {
        self.progress.phase(CheckPhase::Snapshots, ids.len() as u64);
        for (id, _) in ids {
            match self.repo.load_snapshot(id) {
                Ok(s) => self.snapshots.push((*id, s.tree, s.time)),
                Err(e) => self
                    .add(ProblemKind::SnapshotUnreadable { snapshot: *id, detail: short_detail(e) }, vec![]),
            }
        }
        self.snapshots.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        self.report.snapshots = self.snapshots.len();
        let mut seen: HashSet<BlobId> = HashSet::new();
        let mut reported_missing: HashSet<BlobKey> = HashSet::new();
        let roots: Vec<Id> = self.snapshots.iter().map(|s| s.1).collect();
        for root in roots {
            if self.stop() {
                return;
            }
            let mut stack = Vec::new();
            if seen.insert(root) {
                stack.push(root);
            }
            while let Some(tree_id) = stack.pop() {
                let Some(tree) = self.load_tree_checked(&tree_id, &mut reported_missing) else { continue };
                self.report.trees += 1;
                for node in &tree.nodes {
                    let name = || String::from_utf8_lossy(&node.name).into_owned();
                    match node.kind {
                        NodeKind::Dir => match node.subtree {
                            Some(s) => {
                                if seen.insert(s) {
                                    stack.push(s);
                                }
                            }
                            None => self.add(
                                ProblemKind::TreeInvalid {
                                    tree: tree_id,
                                    detail: format!("directory {:?} has no subtree", name()),
                                },
                                vec![(BlobType::Tree, tree_id)],
                            ),
                        },
                        NodeKind::File => {
                            let mut total = Some(0u64);
                            for b in &node.content {
                                match self.repo.index().lookup(BlobType::Data, b) {
                                    Some(loc) => total = total.map(|t| t + u64::from(loc.blob.raw_length)),
                                    None => {
                                        total = None;
                                        if reported_missing.insert((BlobType::Data, *b)) {
                                            let k = ProblemKind::BlobMissing {
                                                blob_type: BlobType::Data,
                                                blob: *b,
                                            };
                                            self.add(k, vec![(BlobType::Data, *b)]);
                                        }
                                    }
                                }
                            }
                            if let Some(t) = total.filter(|t| *t != node.size) {
                                let detail = format!(
                                    "file {:?} has size {} but its blobs hold {t} bytes",
                                    name(),
                                    node.size
                                );
                                self.add(
                                    ProblemKind::TreeInvalid { tree: tree_id, detail },
                                    vec![(BlobType::Tree, tree_id)],
                                );
                            }
                        }
                        _ => {}
                    }
                }
            }
            self.progress.advance(1, 0);
        }
    }

    /// Loads a tree for the structure walk, reporting why it cannot be.
    fn load_tree_checked(&mut self, id: &BlobId, reported_missing: &mut HashSet<BlobKey>) -> Option<Tree> {
        let key = (BlobType::Tree, *id);
        let Some(loc) = self.repo.index().lookup(BlobType::Tree, id) else {
            if reported_missing.insert(key) {
                self.add(ProblemKind::BlobMissing { blob_type: BlobType::Tree, blob: *id }, vec![key]);
            }
            return None;
        };
        if self.missing.contains(&loc.pack) {
            return None; // reported with its pack
        }
        match self.repo.load_tree(id) {
            Ok(t) => Some(t),
            Err(e) => {
                let kind = ProblemKind::TreeDamaged { tree: *id, pack: loc.pack, detail: short_detail(e) };
                self.add(kind, vec![key]);
                None
            }
        }
    }

    fn read_data(&mut self) {
        let candidates: Vec<(PackId, u64)> = self
            .packs
            .keys()
            .filter(|p| !self.missing.contains(p))
            .filter_map(|p| Some((*p, *self.listed.get(p)?)))
            .collect();
        let seed = self.opts.seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            crate::crypto::fill_random(&mut b);
            u64::from_le_bytes(b)
        });
        let mut selected = select(self.opts.read_data, &candidates, seed);
        selected.sort();
        self.progress.phase(CheckPhase::ReadData, selected.len() as u64);
        let found: Mutex<Vec<(PackId, Found)>> = Mutex::new(Vec::new());
        let done: Mutex<(Vec<PackId>, u64, usize)> = Mutex::new((Vec::new(), 0, 0));
        let stop = || self.opts.cancelled();
        // One read buffer per thread for the whole phase: a new 16 MiB
        // buffer per pack left the allocator's arenas holding freed ones of
        // mixed sizes, and peak RSS grew with the repository.
        parallel(&selected, self.threads, &stop, Vec::new, |buf, (pack, size)| {
            let (problems, blobs_read) = self.verify_pack(pack, *size, &self.packs[pack].blobs, buf);
            {
                let mut d = done.lock();
                d.0.push(*pack);
                d.1 += size;
                d.2 += blobs_read;
            }
            if !problems.is_empty() {
                found.lock().push((*pack, problems));
            }
            self.progress.advance(1, *size);
        });
        let (mut read, bytes, blobs) = done.into_inner();
        read.sort();
        self.report.packs_read = read;
        self.report.bytes_read = bytes;
        self.report.blobs_read = blobs;
        let mut found = found.into_inner();
        found.sort_by_key(|(p, _)| *p);
        // A tree the walk could not load is already reported.
        let tree_damaged: HashSet<BlobId> = self
            .report
            .problems
            .iter()
            .filter_map(|p| match &p.kind {
                ProblemKind::TreeDamaged { tree, .. } => Some(*tree),
                _ => None,
            })
            .collect();
        for (_, problems) in found {
            for (kind, keys) in problems {
                if let ProblemKind::BlobDamaged { blob_type: BlobType::Tree, blob, .. } = &kind {
                    if tree_damaged.contains(blob) {
                        continue;
                    }
                }
                self.add(kind, keys);
            }
        }
    }

    /// Downloads one pack, checks its hash and decodes every blob the index
    /// lists in it. Returns the problems and the number of blobs decoded.
    fn verify_pack(
        &self,
        pack: &PackId,
        size: u64,
        blobs: &[PackedBlob],
        buf: &mut Vec<u8>,
    ) -> (Found, usize) {
        let backend = self.repo.backend();
        let name = pack.to_hex();
        let unreadable = |e: crate::BackendError| {
            vec![(ProblemKind::PackUnreadable { pack: *pack, detail: e.to_string() }, blob_keys(blobs))]
        };
        let mut problems = Vec::new();
        let whole = if size <= WHOLE_PACK_LIMIT {
            match backend.read_into(FileKind::Pack, &name, buf) {
                Ok(()) => Some(&buf[..]),
                Err(e) => return (unreadable(e), 0),
            }
        } else {
            None
        };
        let actual = match &whole {
            Some(d) => Id::hash(d),
            None => {
                let mut h = blake3::Hasher::new();
                let mut off = 0;
                while off < size {
                    let n = HASH_PIECE.min(size - off);
                    match backend.read_range(FileKind::Pack, &name, off, n) {
                        Ok(piece) => h.update(&piece),
                        Err(e) => return (unreadable(e), 0),
                    };
                    off += n;
                }
                Id(*h.finalize().as_bytes())
            }
        };
        if actual != *pack {
            problems.push((ProblemKind::PackHash { pack: *pack, actual }, Vec::new()));
        }
        let mut decoded = 0;
        for b in blobs {
            let (start, end) = (u64::from(b.offset), u64::from(b.offset) + u64::from(b.length));
            let loc = BlobLocation { pack: *pack, blob: *b };
            let result = match &whole {
                Some(d) if end <= d.len() as u64 => {
                    decode_blob(self.repo.key(), &loc, &d[start as usize..end as usize])
                }
                Some(d) => Err(RepoError::corrupt(
                    "",
                    format!("lies beyond the end of the pack ({} bytes)", d.len()),
                )),
                None => backend
                    .read_range(FileKind::Pack, &name, start, end - start)
                    .map_err(RepoError::from)
                    .and_then(|s| decode_blob(self.repo.key(), &loc, &s)),
            };
            match result {
                Ok(_) => decoded += 1,
                Err(e) => problems.push((
                    ProblemKind::BlobDamaged {
                        pack: *pack,
                        blob_type: b.blob_type,
                        blob: b.id,
                        detail: short_detail(e),
                    },
                    vec![(b.blob_type, b.id)],
                )),
            }
        }
        (problems, decoded)
    }

    /// Fills in `needed_by`: walks each snapshot's trees with paths, but
    /// only into trees that lead to a damaged blob.
    fn attribute(&mut self) {
        self.progress.phase(CheckPhase::Usage, self.snapshots.len() as u64);
        let mut taint = Taint::new(self.repo, &self.damaged);
        // (blob) -> snapshot index -> paths
        let mut users: HashMap<BlobKey, BTreeMap<usize, BTreeSet<String>>> = HashMap::new();
        for (si, (_, root, _)) in self.snapshots.iter().enumerate() {
            if self.opts.cancelled() {
                return;
            }
            if taint.tainted(root) {
                taint.walk(si, root, "", &mut users);
            }
            self.progress.advance(1, 0);
        }
        for p in &mut self.report.problems {
            let mut by_snap: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
            for b in &p.blobs {
                for (si, paths) in users.get(b).into_iter().flatten() {
                    by_snap.entry(*si).or_default().extend(paths.iter().cloned());
                }
            }
            p.needed_by = by_snap
                .into_iter()
                .map(|(si, paths)| Usage {
                    snapshot: self.snapshots[si].0,
                    paths: paths.into_iter().collect(),
                })
                .collect();
        }
    }
}

fn blob_keys(blobs: &[PackedBlob]) -> Vec<BlobKey> {
    blobs.iter().map(|b| (b.blob_type, b.id)).collect()
}

fn describe(b: &PackedBlob) -> String {
    format!(
        "{} blob {} ({} bytes stored, {} raw, {:?})",
        type_name(b.blob_type),
        b.id,
        b.length,
        b.raw_length,
        b.compression
    )
}

#[cfg(test)]
mod tests;
