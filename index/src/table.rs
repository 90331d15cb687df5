//! The blob table behind [`crate::MasterIndex`]: one blob type's id ->
//! location map in 48 bytes per blob.
//!
//! Most entries live in one array sorted by id (no hash-table slack, no
//! per-entry allocation); blobs added since the last merge sit in a small
//! hash map that is merged into the array once it reaches an eighth of it,
//! so the amortised cost of an insert stays constant. With a memory limit,
//! the sorted array is moved to an unnamed temporary file of the same
//! records, and only one id prefix per block of records stays in memory:
//! lookups then read one block (a few KiB, usually from the page cache).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use crate::blob::{Compression, PackedBlob};
use crate::id::{BlobId, Id};
use crate::master::IdMap;

/// Where a blob lives, without the id. The pack is an index into the
/// master index's pack list; its top bit holds the compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) pack: u32,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) raw_length: u32,
    pub(crate) compression: Compression,
}

impl Loc {
    /// Where `b` lives in the pack numbered `pack`.
    pub(crate) fn of(pack: u32, b: &PackedBlob) -> Loc {
        Loc { pack, offset: b.offset, length: b.length, raw_length: b.raw_length, compression: b.compression }
    }
}

/// One record: 32 id bytes and four little-endian u32 words.
const REC: usize = 48;
const ZSTD_BIT: u32 = 1 << 31;
/// Records per block of the spill file: one fence (8 bytes) per 6 KiB.
const BLOCK: usize = 128;

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    id: [u8; 32],
    words: [u32; 4],
}

impl Entry {
    fn new(id: &BlobId, loc: &Loc) -> Entry {
        let z = if loc.compression == Compression::Zstd { ZSTD_BIT } else { 0 };
        Entry { id: id.0, words: [loc.pack | z, loc.offset, loc.length, loc.raw_length] }
    }
    fn loc(&self) -> Loc {
        let [p, offset, length, raw_length] = self.words;
        let compression = if p & ZSTD_BIT != 0 { Compression::Zstd } else { Compression::None };
        Loc { pack: p & !ZSTD_BIT, offset, length, raw_length, compression }
    }
    fn to_bytes(self) -> [u8; REC] {
        let mut b = [0u8; REC];
        b[..32].copy_from_slice(&self.id);
        for (i, w) in self.words.iter().enumerate() {
            b[32 + 4 * i..36 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
    fn from_bytes(b: &[u8]) -> Entry {
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let w = |i: usize| u32::from_le_bytes(b[32 + 4 * i..36 + 4 * i].try_into().expect("4 bytes"));
        Entry { id, words: [w(0), w(1), w(2), w(3)] }
    }
}

fn prefix(id: &[u8; 32]) -> u64 {
    u64::from_be_bytes(id[..8].try_into().expect("8 bytes"))
}

/// The sorted records moved to disk.
struct Spill {
    file: File,
    len: usize,
    /// The first id prefix of every block.
    fences: Vec<u64>,
}

impl Spill {
    fn get(&self, id: &[u8; 32]) -> std::io::Result<Option<Entry>> {
        let want = prefix(id);
        // The blocks whose first prefix is <= want, from the last one
        // whose first prefix is < want (ids sharing a prefix may straddle
        // a block boundary).
        let hi = self.fences.partition_point(|&f| f <= want);
        let lo = self.fences[..hi].partition_point(|&f| f < want).saturating_sub(1);
        let mut buf = [0u8; BLOCK * REC];
        for block in lo..hi {
            let start = block * BLOCK;
            let n = BLOCK.min(self.len - start);
            let recs = &mut buf[..n * REC];
            self.file.read_exact_at(recs, (start * REC) as u64)?;
            let (mut a, mut b) = (0, n);
            while a < b {
                let mid = (a + b) / 2;
                match recs[mid * REC..mid * REC + 32].cmp(&id[..]) {
                    std::cmp::Ordering::Less => a = mid + 1,
                    std::cmp::Ordering::Greater => b = mid,
                    std::cmp::Ordering::Equal => {
                        return Ok(Some(Entry::from_bytes(&recs[mid * REC..(mid + 1) * REC])))
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every record in order, read in large positional reads (no shared
    /// file offset, so readers may run concurrently).
    fn reader(&self) -> impl Iterator<Item = std::io::Result<Entry>> + '_ {
        const CHUNK: usize = 1024;
        let mut buf = vec![0u8; CHUNK * REC];
        let (mut next, mut filled, mut at) = (0usize, 0usize, 0usize);
        std::iter::from_fn(move || {
            if at == filled {
                if next == self.len {
                    return None;
                }
                let n = CHUNK.min(self.len - next);
                if let Err(e) = self.file.read_exact_at(&mut buf[..n * REC], (next * REC) as u64) {
                    next = self.len;
                    filled = 0;
                    at = 0;
                    return Some(Err(e));
                }
                next += n;
                filled = n;
                at = 0;
            }
            at += 1;
            Some(Ok(Entry::from_bytes(&buf[(at - 1) * REC..at * REC])))
        })
    }
}

/// A blob table; see the module documentation.
#[derive(Default)]
pub(crate) struct Table {
    sorted: Vec<Entry>,
    /// Entries loaded but not yet sorted into `sorted` (loading many index
    /// files appends here; one sort at the end).
    unsorted: bool,
    recent: IdMap<Loc>,
    /// Where each value of the ids' first two bytes starts in `sorted`
    /// (65,537 entries once built): a lookup searches ~N/65,536 records
    /// instead of all of them, with far fewer cache misses.
    buckets: Vec<u32>,
    spill: Option<Spill>,
    /// Bytes of sorted records allowed in memory (0: no limit).
    limit: usize,
}

impl Table {
    pub(crate) fn with_limit(limit: usize) -> Table {
        Table { limit, ..Table::default() }
    }

    /// Adds entries read from an index file; [`Table::settle`] must run
    /// before the next lookup.
    pub(crate) fn load(&mut self, id: &BlobId, loc: &Loc) {
        self.sorted.push(Entry::new(id, loc));
        self.unsorted = true;
    }

    /// Adds a blob just stored.
    pub(crate) fn insert(&mut self, id: &BlobId, loc: &Loc) -> std::io::Result<()> {
        // Already indexed (two backups stored the same blob): the first
        // location stays, and the count stays right.
        if self.get(id)?.is_some() {
            return Ok(());
        }
        self.recent.insert(*id, *loc);
        if self.recent.len() >= (self.sorted.len() / 8).max(1 << 16) || self.over_limit(self.recent.len()) {
            self.merge_recent()?;
        }
        Ok(())
    }

    pub(crate) fn needs_settle(&self) -> bool {
        self.unsorted
    }

    /// Sorts what was loaded (keeping the first of duplicate ids) and
    /// spills it if it is over the limit.
    pub(crate) fn settle(&mut self) -> std::io::Result<()> {
        if !self.unsorted {
            return Ok(());
        }
        self.unsorted = false;
        self.sorted.sort_by_key(|e| e.id);
        self.sorted.dedup_by(|later, first| later.id == first.id);
        if self.spill.is_some() || self.over_limit(0) {
            self.spill_sorted()?;
        }
        self.buckets.clear();
        if self.sorted.len() >= 1 << 16 {
            let mut at = 0usize;
            for b in 0..=0xffffusize {
                self.buckets.push(at as u32);
                while at < self.sorted.len()
                    && usize::from(u16::from_be_bytes([self.sorted[at].id[0], self.sorted[at].id[1]])) == b
                {
                    at += 1;
                }
            }
            self.buckets.push(at as u32);
        }
        Ok(())
    }

    fn over_limit(&self, extra: usize) -> bool {
        self.limit != 0 && (self.sorted.len() + extra) * REC > self.limit
    }

    fn merge_recent(&mut self) -> std::io::Result<()> {
        let mut fresh: Vec<Entry> = self.recent.drain().map(|(id, loc)| Entry::new(&id, &loc)).collect();
        self.sorted.append(&mut fresh);
        self.unsorted = true;
        // The stable sort finds the two runs and merges them. Recent
        // entries are behind the old ones: an id in both keeps the old
        // location, which is as good (both packs are stored).
        self.settle()
    }

    /// Merges the in-memory sorted records with the spill file into a new
    /// spill file; afterwards nothing sorted is in memory.
    fn spill_sorted(&mut self) -> std::io::Result<()> {
        let mem = std::mem::take(&mut self.sorted);
        let mut out = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
        let mut fences = Vec::new();
        let mut len = 0usize;
        let mut emit = |e: &Entry, out: &mut BufWriter<File>| -> std::io::Result<()> {
            if len.is_multiple_of(BLOCK) {
                fences.push(prefix(&e.id));
            }
            len += 1;
            out.write_all(&e.to_bytes())
        };
        let mut mem = mem.iter().peekable();
        if let Some(old) = &self.spill {
            let mut last: Option<[u8; 32]> = None;
            for e in old.reader() {
                let e = e?;
                while let Some(m) = mem.next_if(|m| m.id < e.id) {
                    emit(m, &mut out)?;
                }
                mem.next_if(|m| m.id == e.id);
                if last != Some(e.id) {
                    emit(&e, &mut out)?;
                    last = Some(e.id);
                }
            }
        }
        for m in mem {
            emit(m, &mut out)?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        self.spill = Some(Spill { file, len, fences });
        Ok(())
    }

    pub(crate) fn get(&self, id: &BlobId) -> std::io::Result<Option<Loc>> {
        debug_assert!(!self.unsorted, "lookup before settle");
        if let Some(loc) = self.recent.get(id) {
            return Ok(Some(*loc));
        }
        let (lo, hi) = if self.buckets.is_empty() {
            (0, self.sorted.len())
        } else {
            let b = usize::from(u16::from_be_bytes([id.0[0], id.0[1]]));
            (self.buckets[b] as usize, self.buckets[b + 1] as usize)
        };
        if let Ok(i) = self.sorted[lo..hi].binary_search_by(|e| e.id.cmp(&id.0)) {
            return Ok(Some(self.sorted[lo + i].loc()));
        }
        match &self.spill {
            Some(s) => Ok(s.get(&id.0)?.map(|e| e.loc())),
            None => Ok(None),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len() + self.spill.as_ref().map_or(0, |s| s.len)
    }

    /// Every entry (order unspecified).
    pub(crate) fn for_each(&self, mut f: impl FnMut(BlobId, Loc)) -> std::io::Result<()> {
        for (id, loc) in &self.recent {
            f(*id, *loc);
        }
        for e in &self.sorted {
            f(Id(e.id), e.loc());
        }
        if let Some(s) = &self.spill {
            for e in s.reader() {
                let e = e?;
                f(Id(e.id), e.loc());
            }
        }
        Ok(())
    }

    /// Bytes of memory the table holds (records, hash map, fences).
    pub(crate) fn memory(&self) -> usize {
        self.sorted.capacity() * REC
            + self.recent.capacity() * (std::mem::size_of::<(BlobId, Loc)>() + 1)
            + self.buckets.capacity() * 4
            + self.spill.as_ref().map_or(0, |s| s.fences.capacity() * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(i: u32) -> Loc {
        let compression = if i.is_multiple_of(3) { Compression::Zstd } else { Compression::None };
        Loc { pack: i / 7, offset: i * 11, length: i + 40, raw_length: i + 1, compression }
    }
    fn id(i: u32) -> BlobId {
        Id::hash(&i.to_le_bytes())
    }

    /// Loads, inserts and overlaps, with and without a limit small enough
    /// that almost everything is on disk: every lookup agrees.
    #[test]
    fn spilled_and_in_memory_tables_agree() {
        for limit in [0, 50 * REC, 1000 * REC] {
            let mut t = Table::with_limit(limit);
            for i in 0..3000 {
                t.load(&id(i), &loc(i));
            }
            t.settle().unwrap();
            for i in 2500..6000 {
                // 2500..3000 are already indexed: the first location stays.
                let l = if i < 3000 { loc(i + 1) } else { loc(i) };
                t.insert(&id(i), &l).unwrap();
            }
            for i in 6000..6100 {
                t.load(&id(i), &loc(i));
            }
            t.settle().unwrap();
            assert_eq!(t.len(), 6100, "limit {limit}");
            for i in 0..6100 {
                let got = t.get(&id(i)).unwrap();
                assert_eq!(got, Some(loc(i)), "limit {limit}, blob {i}");
            }
            assert_eq!(t.get(&id(7_000_000)).unwrap(), None);
            let mut n = 0;
            t.for_each(|_, _| n += 1).unwrap();
            assert_eq!(n, 6100);
            if limit != 0 {
                assert!(t.spill.is_some(), "limit {limit} spills");
                assert!(t.memory() < 6100 * REC / 2, "limit {limit}: {} bytes in memory", t.memory());
            }
        }
    }

    fn rss_kib() -> usize {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// 10 million blobs loaded as from index files: bytes per blob, by the
    /// table's own count and by the process's resident memory.
    /// `cargo test --release -p arch-index ten_million -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn ten_million_blobs_memory() {
        const N: u32 = 10_000_000;
        let before = rss_kib();
        let mut t = Table::default();
        for i in 0..N {
            t.load(&id(i), &loc(i));
        }
        t.settle().unwrap();
        t.sorted.shrink_to_fit();
        let after = rss_kib();
        let per_blob_rss = (after - before) as f64 * 1024.0 / f64::from(N);
        let per_blob = t.memory() as f64 / f64::from(N);
        println!("10M blobs: {per_blob:.1} bytes/blob held, {per_blob_rss:.1} bytes/blob of RSS");
        let started = std::time::Instant::now();
        for i in (0..N).step_by(97) {
            assert!(t.get(&id(i)).unwrap().is_some());
        }
        println!("lookup: {:.0} ns", started.elapsed().as_nanos() as f64 / f64::from(N / 97));
        assert!(per_blob_rss < 52.0, "{per_blob_rss} bytes per blob");
    }
}
