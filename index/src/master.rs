use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::blob::{BlobLocation, BlobType, PackedBlob};
use crate::error::IndexError;
use crate::id::{BlobId, Id, PackId};
use crate::index_file::{IndexFile, PackEntry};
use crate::table::{Loc, Table};

/// The error type an [`IndexSink`] returns.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where a [`MasterIndex`] writes finished index files.
pub trait IndexSink: Send + Sync {
    /// Durably stores `file` and returns its id. When this returns `Ok` the
    /// file must survive a crash of the calling process.
    fn save_index(&self, file: &IndexFile) -> Result<Id, SinkError>;
}

/// Tuning for [`MasterIndex`]. Zero means "use the default".
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct MasterIndexOptions {
    /// An open index file is written once it lists this many blobs.
    /// Default 50,000: about 2.3 MB before compression, small enough to
    /// rewrite cheaply and large enough that a big repository has few files.
    pub max_blobs_per_file: usize,
    /// An open index file is also written once it is this old, so a long
    /// backup that is killed loses at most this much indexing work.
    /// Default 5 minutes.
    pub max_age: Duration,
    /// Bytes of blob entries kept in memory (about 48 per blob); beyond
    /// it the sorted entries move to an unnamed temporary file and lookups
    /// read them from there. Zero (the default): no limit.
    pub mem_limit: usize,
}

impl MasterIndexOptions {
    /// Sets [`MasterIndexOptions::max_blobs_per_file`].
    pub fn max_blobs_per_file(mut self, n: usize) -> Self {
        self.max_blobs_per_file = n;
        self
    }
    /// Sets [`MasterIndexOptions::max_age`].
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }
    /// Sets [`MasterIndexOptions::mem_limit`].
    pub fn mem_limit(mut self, bytes: usize) -> Self {
        self.mem_limit = bytes;
        self
    }
    fn resolved(mut self) -> Self {
        if self.max_blobs_per_file == 0 {
            self.max_blobs_per_file = 50_000;
        }
        if self.max_age.is_zero() {
            self.max_age = Duration::from_secs(300);
        }
        self
    }
}

/// Blob ids are uniformly random, so their first 8 bytes are a perfect hash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-Id keys; fold bytes in so it stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(crate) type IdMap<V> = HashMap<BlobId, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<BlobId, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Pending {
    data: IdSet,
    tree: IdSet,
}

#[derive(Default)]
struct Inner {
    packs: Vec<PackId>,
    pack_numbers: IdMap<u32>,
    data: Table,
    tree: Table,
    /// Blobs only found in packs marked for deletion: readable (a snapshot
    /// written during the grace period may still need them) but never used
    /// for deduplication.
    marked_data: IdMap<Loc>,
    marked_tree: IdMap<Loc>,
    /// Blobs being stored, per session: a session trusts only its own
    /// pending blobs, since another session may end without storing its own.
    sessions: HashMap<u64, Pending>,
    next_session: u64,
    open: IndexFile,
    open_blobs: usize,
    open_since: Option<Instant>,
    /// The first failure of the spill file, reported by the next
    /// [`MasterIndex::store_pack`] or [`MasterIndex::flush`].
    spill_error: Option<std::io::Error>,
}

impl Inner {
    fn table(&self, t: BlobType) -> &Table {
        match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        }
    }
    fn get(&self, t: BlobType, id: &BlobId) -> Result<Option<Loc>, std::io::Error> {
        self.table(t).get(id)
    }
    fn settle(&mut self) {
        for r in [self.data.settle(), self.tree.settle()] {
            if let Err(e) = r {
                self.spill_error.get_or_insert(e);
            }
        }
    }
    fn pending(&mut self, session: u64, t: BlobType) -> &mut IdSet {
        let p = self.sessions.entry(session).or_default();
        match t {
            BlobType::Data => &mut p.data,
            BlobType::Tree => &mut p.tree,
        }
    }
    fn location(&self, t: BlobType, id: &BlobId, loc: &Loc) -> BlobLocation {
        BlobLocation {
            pack: self.packs[loc.pack as usize],
            blob: PackedBlob {
                id: *id,
                blob_type: t,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
                compression: loc.compression,
            },
        }
    }

    fn pack_number(&mut self, pack: PackId) -> u32 {
        if let Some(&n) = self.pack_numbers.get(&pack) {
            return n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }
    fn insert(&mut self, pack: PackId, blobs: &[PackedBlob]) {
        let n = self.pack_number(pack);
        for b in blobs {
            let loc = Loc::of(n, b);
            let r = match b.blob_type {
                BlobType::Data => self.data.insert(&b.id, &loc),
                BlobType::Tree => self.tree.insert(&b.id, &loc),
            };
            if let Err(e) = r {
                self.spill_error.get_or_insert(e);
            }
        }
    }

    fn insert_into(&mut self, pack: PackId, blobs: &[PackedBlob], marked: bool) {
        let n = self.pack_number(pack);
        for b in blobs {
            let loc = Loc::of(n, b);
            match (b.blob_type, marked) {
                (BlobType::Data, false) => self.data.load(&b.id, &loc),
                (BlobType::Tree, false) => self.tree.load(&b.id, &loc),
                (BlobType::Data, true) => {
                    self.marked_data.insert(b.id, loc);
                }
                (BlobType::Tree, true) => {
                    self.marked_tree.insert(b.id, loc);
                }
            };
        }
    }
}

/// The in-memory view of every index file of a repository, plus the blobs a
/// running backup has stored or is about to store.
///
/// Guarantees:
/// - [`PendingSession::add_pending`] is one atomic check-and-add: among any
///   number of threads of one session racing on the same blob, exactly one
///   is told to store it, and none is told to store a blob that is already
///   indexed. Sessions (one per backup) do not trust each other's pending
///   blobs: a backup that is cancelled never stores some of them, and a
///   snapshot must never refer to those. Two concurrent sessions may both
///   store a blob; the duplicate is harmless.
/// - [`MasterIndex::store_pack`] makes a pack's blobs visible to lookups and
///   writes the open index file through the sink as soon as it is full, so a
///   long backup persists its index as it goes, not only at the end.
/// - A blob stays pending until the pack holding it is stored, so a lookup
///   never reports a blob whose pack is not yet written.
pub struct MasterIndex {
    opts: MasterIndexOptions,
    inner: RwLock<Inner>,
    written: Mutex<Vec<Id>>,
}

impl MasterIndex {
    /// An empty index.
    pub fn new(opts: MasterIndexOptions) -> MasterIndex {
        let opts = opts.resolved();
        // The limit is shared by the two tables in proportion: data blobs
        // are nearly all of them.
        let inner = Inner {
            data: Table::with_limit(opts.mem_limit),
            tree: Table::with_limit(opts.mem_limit / 8),
            ..Inner::default()
        };
        MasterIndex { opts, inner: RwLock::new(inner), written: Mutex::default() }
    }

    /// The inner state with everything loaded sorted in (loading appends;
    /// the first reader afterwards sorts once).
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        {
            let inner = self.inner.read();
            if !inner.data.needs_settle() && !inner.tree.needs_settle() {
                return inner;
            }
        }
        let mut inner = self.inner.write();
        inner.settle();
        RwLockWriteGuard::downgrade(inner)
    }

    fn write_settled(&self) -> RwLockWriteGuard<'_, Inner> {
        let mut inner = self.inner.write();
        inner.settle();
        inner
    }

    /// Looks `id` up; a failing spill file reads as "not indexed" (a
    /// backup then stores the blob again, a restore names it missing) and
    /// the failure is reported by the next store or flush.
    fn find(inner: &Inner, t: BlobType, id: &BlobId) -> Option<Loc> {
        inner.get(t, id).unwrap_or_default()
    }

    /// Bytes of memory held by the blob entries (for measuring the index's
    /// footprint per blob; packs and pending sets are not counted).
    pub fn memory_bytes(&self) -> usize {
        let inner = self.read();
        inner.data.memory() + inner.tree.memory()
    }

    /// Adds the entries of an existing index file (read from the repository).
    /// Blobs of packs the file marks for deletion are readable through
    /// [`MasterIndex::lookup`] but do not count as stored for deduplication.
    pub fn load(&self, file: &IndexFile) {
        let mut inner = self.inner.write();
        for p in &file.packs {
            let marked = file.marked.iter().any(|(m, _)| *m == p.pack);
            inner.insert_into(p.pack, &p.blobs, marked);
        }
    }

    /// Where blob `id` of type `t` is stored, if it is indexed.
    pub fn lookup(&self, t: BlobType, id: &BlobId) -> Option<BlobLocation> {
        let inner = self.read();
        let marked = match t {
            BlobType::Data => &inner.marked_data,
            BlobType::Tree => &inner.marked_tree,
        };
        let loc = Self::find(&inner, t, id).or_else(|| marked.get(id).copied())?;
        Some(inner.location(t, id, &loc))
    }

    /// Whether blob `id` of type `t` is indexed (pending blobs do not count).
    pub fn contains(&self, t: BlobType, id: &BlobId) -> bool {
        Self::find(&self.read(), t, id).is_some()
    }

    /// Starts a session (one backup) with its own set of pending blobs,
    /// which is dropped when the session ends.
    pub fn session(&self) -> PendingSession<'_> {
        let mut inner = self.inner.write();
        let id = inner.next_session;
        inner.next_session += 1;
        PendingSession { index: self, id }
    }

    /// Number of indexed blobs of type `t`.
    pub fn blob_count(&self, t: BlobType) -> usize {
        self.read().table(t).len()
    }

    /// Number of packs known to the index.
    pub fn pack_count(&self) -> usize {
        self.inner.read().packs.len()
    }

    /// Every indexed blob with its location (including blobs of packs
    /// marked for deletion), for check and prune.
    pub fn all_blobs(&self) -> Vec<BlobLocation> {
        let inner = self.read();
        let mut out = Vec::with_capacity(inner.data.len() + inner.tree.len());
        for t in [BlobType::Data, BlobType::Tree] {
            let r = inner.table(t).for_each(|id, loc| out.push(inner.location(t, &id, &loc)));
            if r.is_err() {
                // Reported by the next store or flush, as for lookups.
                continue;
            }
        }
        for (t, map) in [(BlobType::Data, &inner.marked_data), (BlobType::Tree, &inner.marked_tree)] {
            out.extend(map.iter().map(|(id, loc)| inner.location(t, id, loc)));
        }
        out
    }

    /// Records that `pack` is durably stored with `blobs`: they become
    /// visible to lookups, leave the pending set and join the open index
    /// file, which is written through `sink` if it is now full.
    pub fn store_pack(
        &self,
        pack: PackId,
        blobs: &[PackedBlob],
        sink: &dyn IndexSink,
    ) -> Result<(), IndexError> {
        let full = {
            let mut inner = self.write_settled();
            inner.insert(pack, blobs);
            if let Some(e) = inner.spill_error.take() {
                return Err(IndexError::Spill(e));
            }
            for p in inner.sessions.values_mut() {
                for b in blobs {
                    match b.blob_type {
                        BlobType::Data => p.data.remove(&b.id),
                        BlobType::Tree => p.tree.remove(&b.id),
                    };
                }
            }
            inner.open.packs.push(PackEntry { pack, blobs: blobs.to_vec() });
            inner.open_blobs += blobs.len();
            let since = *inner.open_since.get_or_insert_with(Instant::now);
            if inner.open_blobs >= self.opts.max_blobs_per_file || since.elapsed() >= self.opts.max_age {
                Some(Self::take_open(&mut inner))
            } else {
                None
            }
        };
        // Written outside the lock: savers keep deduplicating during upload.
        if let Some(file) = full {
            self.write(&file, sink)?;
        }
        Ok(())
    }

    /// Writes the open index file if it lists anything; returns its id.
    pub fn flush(&self, sink: &dyn IndexSink) -> Result<Option<Id>, IndexError> {
        let file = {
            let mut inner = self.write_settled();
            if let Some(e) = inner.spill_error.take() {
                return Err(IndexError::Spill(e));
            }
            if inner.open.packs.is_empty() {
                return Ok(None);
            }
            Self::take_open(&mut inner)
        };
        self.write(&file, sink).map(Some)
    }

    /// Ids of the index files this instance has written, in order.
    pub fn written_files(&self) -> Vec<Id> {
        self.written.lock().clone()
    }

    fn take_open(inner: &mut Inner) -> IndexFile {
        inner.open_blobs = 0;
        inner.open_since = None;
        std::mem::take(&mut inner.open)
    }

    fn write(&self, file: &IndexFile, sink: &dyn IndexSink) -> Result<Id, IndexError> {
        let id = sink.save_index(file).map_err(IndexError::Sink)?;
        self.written.lock().push(id);
        Ok(id)
    }
}

/// The pending blobs of one backup; see [`MasterIndex`]'s guarantees.
/// Dropping it forgets the blobs that were never stored.
pub struct PendingSession<'a> {
    index: &'a MasterIndex,
    id: u64,
}

impl PendingSession<'_> {
    /// Returns true if the caller is the first in this session to ask for
    /// this blob and must store it; false if it is indexed or another
    /// caller of this session is storing it.
    pub fn add_pending(&self, t: BlobType, id: BlobId) -> bool {
        // Cheap shared check first: on a re-backup nearly every blob is known.
        if MasterIndex::find(&self.index.read(), t, &id).is_some() {
            return false;
        }
        let mut inner = self.index.write_settled();
        if MasterIndex::find(&inner, t, &id).is_some() {
            return false;
        }
        inner.pending(self.id, t).insert(id)
    }

    /// Blobs this session has been told to store that are not yet in a
    /// stored pack.
    pub fn pending_count(&self) -> usize {
        self.index.inner.read().sessions.get(&self.id).map_or(0, |p| p.data.len() + p.tree.len())
    }
}

impl Drop for PendingSession<'_> {
    fn drop(&mut self) {
        self.index.inner.write().sessions.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Compression;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct MemSink(Mutex<Vec<IndexFile>>);
    impl IndexSink for MemSink {
        fn save_index(&self, file: &IndexFile) -> Result<Id, SinkError> {
            self.0.lock().push(file.clone());
            Ok(Id::hash(&file.encode()))
        }
    }

    fn blob(i: u32) -> PackedBlob {
        PackedBlob {
            id: Id::hash(&i.to_le_bytes()),
            blob_type: BlobType::Data,
            offset: i * 10,
            length: 10,
            raw_length: 10,
            compression: Compression::None,
        }
    }

    #[test]
    fn racing_savers_store_each_blob_exactly_once() {
        let index = Arc::new(MasterIndex::new(Default::default()));
        let session = index.session();
        let winners = Arc::new(AtomicUsize::new(0));
        let ids: Vec<BlobId> = (0..2000u32).map(|i| Id::hash(&i.to_le_bytes())).collect();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (session, winners, ids) = (&session, &winners, &ids);
                s.spawn(move || {
                    for id in ids {
                        if session.add_pending(BlobType::Data, *id) {
                            winners.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(winners.load(Ordering::Relaxed), ids.len());
        // Data and tree are separate name spaces.
        assert!(session.add_pending(BlobType::Tree, ids[0]));
    }

    #[test]
    fn an_ended_session_leaves_nothing_pending_for_the_next() {
        let index = MasterIndex::new(Default::default());
        let sink = MemSink::default();
        let (stored, abandoned) = (blob(1), blob(2));
        {
            let a = index.session();
            assert!(a.add_pending(BlobType::Data, stored.id));
            assert!(a.add_pending(BlobType::Data, abandoned.id));
            // A concurrent session does not trust a's pending blobs.
            let b = index.session();
            assert!(b.add_pending(BlobType::Data, abandoned.id));
            index.store_pack(Id::hash(b"p"), &[stored], &sink).unwrap();
            assert_eq!(a.pending_count(), 1);
            assert!(!b.add_pending(BlobType::Data, stored.id), "stored is indexed for everyone");
        }
        let c = index.session();
        assert!(!c.add_pending(BlobType::Data, stored.id));
        assert!(c.add_pending(BlobType::Data, abandoned.id), "never stored: must be stored again");
    }

    #[test]
    fn stored_blobs_are_found_and_not_stored_again() {
        let index = MasterIndex::new(Default::default());
        let sink = MemSink::default();
        let b = blob(1);
        let session = index.session();
        assert!(session.add_pending(BlobType::Data, b.id));
        assert!(index.lookup(BlobType::Data, &b.id).is_none(), "pending is not indexed");
        let pack = Id::hash(b"pack");
        index.store_pack(pack, &[b], &sink).unwrap();
        let loc = index.lookup(BlobType::Data, &b.id).unwrap();
        assert_eq!((loc.pack, loc.blob), (pack, b));
        assert!(!session.add_pending(BlobType::Data, b.id));
        assert!(sink.0.lock().is_empty(), "not full yet");
        assert!(index.flush(&sink).unwrap().is_some());
        assert_eq!(sink.0.lock()[0].blob_count(), 1);
        assert!(index.flush(&sink).unwrap().is_none(), "nothing left to flush");
    }

    #[test]
    fn full_index_files_are_written_while_packs_are_stored() {
        let index = MasterIndex::new(MasterIndexOptions::default().max_blobs_per_file(10));
        let sink = MemSink::default();
        for p in 0..25u32 {
            let blobs: Vec<_> = (0..3).map(|i| blob(p * 3 + i)).collect();
            index.store_pack(Id::hash(&p.to_le_bytes()), &blobs, &sink).unwrap();
        }
        // 75 blobs, 3 per pack, written every 10+: files of 12 blobs.
        assert_eq!(sink.0.lock().len(), 6);
        index.flush(&sink).unwrap();
        let files = sink.0.lock();
        assert_eq!(files.iter().map(IndexFile::blob_count).sum::<usize>(), 75);
        assert_eq!(index.written_files().len(), 7);
        // Reloading every written file reproduces the same lookups.
        let reloaded = MasterIndex::new(Default::default());
        for f in files.iter() {
            reloaded.load(f);
        }
        for i in 0..75 {
            let b = blob(i);
            assert_eq!(reloaded.lookup(BlobType::Data, &b.id), index.lookup(BlobType::Data, &b.id));
        }
    }

    #[test]
    fn blobs_of_marked_packs_are_readable_but_not_deduplicated() {
        let index = MasterIndex::new(Default::default());
        let (kept, doomed) = (blob(1), blob(2));
        let (p1, p2) = (Id::hash(b"p1"), Id::hash(b"p2"));
        index.load(&IndexFile {
            supersedes: vec![],
            packs: vec![
                PackEntry { pack: p1, blobs: vec![kept] },
                PackEntry { pack: p2, blobs: vec![doomed] },
            ],
            marked: vec![(p2, 1)],
        });
        assert_eq!(index.lookup(BlobType::Data, &doomed.id).unwrap().pack, p2);
        assert!(!index.contains(BlobType::Data, &doomed.id));
        let session = index.session();
        assert!(session.add_pending(BlobType::Data, doomed.id), "a marked blob is stored again");
        assert!(!session.add_pending(BlobType::Data, kept.id));
        assert_eq!(index.all_blobs().len(), 2);
    }

    #[test]
    fn old_open_index_is_written_by_age() {
        let index = MasterIndex::new(MasterIndexOptions::default().max_age(Duration::from_millis(1)));
        let sink = MemSink::default();
        index.store_pack(Id::hash(b"a"), &[blob(1)], &sink).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        index.store_pack(Id::hash(b"b"), &[blob(2)], &sink).unwrap();
        assert_eq!(sink.0.lock().len(), 1);
    }
}
