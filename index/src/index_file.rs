use crate::blob::{BlobType, Compression, PackedBlob};
use crate::error::IndexError;
use crate::id::{Id, PackId};

/// Largest number of blob entries one decoded index file may hold. Bounds
/// allocation when reading a hostile or corrupted file.
pub const MAX_INDEX_ENTRIES: usize = 8 << 20;

const MAGIC: &[u8; 4] = b"AIDX";
/// Version 1: supersedes and packs. Version 2 adds the marked-packs
/// section; it is written only when there are marks, so every index file a
/// backup writes stays version 1.
const VERSION: u8 = 1;
const VERSION_MARKED: u8 = 2;
const BLOB_ENTRY_LEN: usize = 32 + 1 + 1 + 4 + 4 + 4;

/// The blobs of one pack, as listed in an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The pack's id (blake3 of its stored bytes).
    pub pack: PackId,
    /// Its blobs, in pack order.
    pub blobs: Vec<PackedBlob>,
}

/// The plaintext content of one index file: a list of packs and their blobs,
/// plus the ids of older index files it replaces (written by prune).
///
/// [`IndexFile::encode`] is deterministic and [`IndexFile::decode`] accepts
/// exactly what it produces, rejecting anything else with
/// [`IndexError::Malformed`] (never a panic, never an unbounded allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files whose content this one supersedes.
    pub supersedes: Vec<Id>,
    /// Packs listed by this file.
    pub packs: Vec<PackEntry>,
    /// Packs (listed in `packs`) that prune marked for deletion, with the
    /// time of marking (Unix seconds). Their blobs stay readable but are
    /// never deduplicated against; a later prune deletes them once the
    /// grace period has passed, unless a snapshot needs them again.
    pub marked: Vec<(PackId, u64)>,
}

impl IndexFile {
    /// Number of blob entries over all packs.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }

    /// The binary encoding described in docs/FORMAT.md (before compression
    /// and sealing, which the repository adds).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + 32 * self.supersedes.len() + self.packs.len() * 36 + self.blob_count() * BLOB_ENTRY_LEN,
        );
        out.extend_from_slice(MAGIC);
        out.push(if self.marked.is_empty() { VERSION } else { VERSION_MARKED });
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for id in &self.supersedes {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.pack.0);
            out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
            for b in &p.blobs {
                out.extend_from_slice(&b.id.0);
                out.push(b.blob_type.to_byte());
                out.push(b.compression.to_byte());
                out.extend_from_slice(&b.offset.to_le_bytes());
                out.extend_from_slice(&b.length.to_le_bytes());
                out.extend_from_slice(&b.raw_length.to_le_bytes());
            }
        }
        if !self.marked.is_empty() {
            out.extend_from_slice(&(self.marked.len() as u32).to_le_bytes());
            for (pack, at) in &self.marked {
                out.extend_from_slice(&pack.0);
                out.extend_from_slice(&at.to_le_bytes());
            }
        }
        out
    }

    /// Decodes what [`IndexFile::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<IndexFile, IndexError> {
        let mut r = Reader { b: bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(malformed("bad magic"));
        }
        let version = r.u8()?;
        if version != VERSION && version != VERSION_MARKED {
            return Err(IndexError::UnsupportedVersion(version));
        }
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(r.id()?);
        }
        let npacks = r.count(36)?;
        let mut packs = Vec::with_capacity(npacks);
        let mut total = 0usize;
        for _ in 0..npacks {
            let pack = r.id()?;
            let nblobs = r.count(BLOB_ENTRY_LEN)?;
            total += nblobs;
            if total > MAX_INDEX_ENTRIES {
                return Err(malformed("too many entries"));
            }
            let mut blobs = Vec::with_capacity(nblobs);
            for _ in 0..nblobs {
                let id = r.id()?;
                let blob_type = BlobType::from_byte(r.u8()?).ok_or_else(|| malformed("unknown blob type"))?;
                let compression =
                    Compression::from_byte(r.u8()?).ok_or_else(|| malformed("unknown compression"))?;
                blobs.push(PackedBlob {
                    id,
                    blob_type,
                    compression,
                    offset: r.u32()?,
                    length: r.u32()?,
                    raw_length: r.u32()?,
                });
            }
            packs.push(PackEntry { pack, blobs });
        }
        let mut marked = Vec::new();
        if version == VERSION_MARKED {
            let n = r.count(40)?;
            // encode writes version 2 only with marks: anything else is
            // not a file arch wrote.
            if n == 0 {
                return Err(malformed("version 2 without marked packs"));
            }
            for _ in 0..n {
                let pack = r.id()?;
                let at = u64::from(r.u32()?) | (u64::from(r.u32()?) << 32);
                marked.push((pack, at));
            }
        }
        if r.pos != bytes.len() {
            return Err(malformed("trailing bytes"));
        }
        Ok(IndexFile { supersedes, packs, marked })
    }
}

fn malformed(what: &str) -> IndexError {
    IndexError::Malformed(what.to_string())
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| malformed("truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, IndexError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn id(&mut self) -> Result<Id, IndexError> {
        Id::from_slice(self.take(32)?).ok_or_else(|| malformed("truncated"))
    }
    /// A count of items of at least `min_item` bytes each, checked against
    /// what is left so a forged count cannot force a huge allocation.
    fn count(&mut self, min_item: usize) -> Result<usize, IndexError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.b.len() - self.pos {
            return Err(malformed("count exceeds file size"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> IndexFile {
        let blob = |i: u8, t| PackedBlob {
            id: Id::hash(&[i]),
            blob_type: t,
            offset: u32::from(i) * 100,
            length: 100,
            raw_length: 250,
            compression: Compression::Zstd,
        };
        IndexFile {
            marked: vec![],
            supersedes: vec![Id::hash(b"old")],
            packs: vec![
                PackEntry {
                    pack: Id::hash(b"p1"),
                    blobs: vec![blob(1, BlobType::Data), blob(2, BlobType::Data)],
                },
                PackEntry { pack: Id::hash(b"p2"), blobs: vec![blob(3, BlobType::Tree)] },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let f = sample();
        assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn marked_packs_round_trip_as_version_2_and_plain_files_stay_version_1() {
        let mut f = sample();
        assert_eq!(f.encode()[4], 1);
        f.marked = vec![(Id::hash(b"p2"), 1_900_000_000)];
        let bytes = f.encode();
        assert_eq!(bytes[4], 2);
        assert_eq!(IndexFile::decode(&bytes).unwrap(), f);
        for n in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..n]).is_err(), "prefix {n} accepted");
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..n]).is_err(), "prefix {n} accepted");
        }
    }

    #[test]
    fn forged_count_does_not_allocate() {
        let mut bytes = b"AIDX\x01".to_vec();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(IndexFile::decode(&bytes), Err(IndexError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&bytes);
        }

        #[test]
        fn arbitrary_round_trip(entries in proptest::collection::vec((any::<[u8; 32]>(), any::<bool>(), any::<u32>(), any::<u32>()), 0..50)) {
            let blobs = entries.iter().map(|(id, tree, off, len)| PackedBlob {
                id: Id(*id),
                blob_type: if *tree { BlobType::Tree } else { BlobType::Data },
                offset: *off, length: *len, raw_length: len / 2,
                compression: if *tree { Compression::Zstd } else { Compression::None },
            }).collect();
            let f = IndexFile { supersedes: vec![], packs: vec![PackEntry { pack: Id::hash(b"x"), blobs }], marked: vec![] };
            prop_assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
        }
    }
}
