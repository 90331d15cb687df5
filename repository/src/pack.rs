use arch_index::{BlobId, BlobType, Compression, Id, PackId, PackedBlob};

use crate::crypto::{Key, SEAL_OVERHEAD};
use crate::error::RepoError;
use crate::staging::StagingFile;

const MAGIC: &[u8; 4] = b"APCK";
const VERSION: u8 = 1;
const ENTRY_LEN: usize = 32 + 1 + 1 + 4 + 4;
/// Largest number of blobs a pack header may list (bounds allocation when
/// reading a damaged header).
const MAX_PACK_BLOBS: usize = 1 << 20;

/// Collects sealed blobs of one type into a pack.
///
/// Pack layout: `sealed blob*  ||  seal(header)  ||  u32 LE length of the
/// sealed header`. The header lists each blob's id, type, compression,
/// sealed length and plaintext length in pack order, so offsets follow from
/// the lengths.
///
/// The bytes go to a [`StagingFile`] as they are added ([`PackWriter::staged`]:
/// a pack then costs no memory however large it is), to memory
/// ([`PackWriter::new`]), or nowhere ([`PackWriter::counting`], for dry
/// runs). They are hashed as they are added, so the pack's name is known at
/// [`PackWriter::finish`] without reading anything back.
#[derive(Debug)]
pub struct PackWriter {
    blob_type: BlobType,
    out: PackBody,
    hasher: blake3::Hasher,
    len: u64,
    blobs: Vec<PackedBlob>,
}

/// A finished pack, ready to store under `id` with
/// [`Repository::save_pack`](crate::Repository::save_pack).
#[derive(Debug)]
pub struct FinishedPack {
    /// blake3 of the pack's bytes: its name.
    pub id: PackId,
    /// Its blobs, with offsets.
    pub blobs: Vec<PackedBlob>,
    len: u64,
    body: PackBody,
}

/// Where a pack's bytes go while it is written, and are once it is
/// finished.
#[derive(Debug)]
pub(crate) enum PackBody {
    /// In memory.
    Memory(Vec<u8>),
    /// In a staging file, to be stored with `create_from_file`.
    File(StagingFile),
    /// Only counted and hashed (a dry run): there is nothing to store.
    Nowhere,
}

impl FinishedPack {
    /// The pack's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the pack has no bytes (never true of a finished pack: it
    /// has at least its header).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn into_body(self) -> (PackId, Vec<PackedBlob>, PackBody) {
        (self.id, self.blobs, self.body)
    }

    /// Test builds: the bytes, wherever they are (empty for counted packs).
    #[cfg(test)]
    pub(crate) fn test_bytes(&self) -> Vec<u8> {
        match &self.body {
            PackBody::Memory(v) => v.clone(),
            PackBody::File(f) => f.read_all().unwrap(),
            PackBody::Nowhere => Vec::new(),
        }
    }
}

impl PackWriter {
    /// An empty in-memory pack for blobs of type `t`, with room for
    /// `capacity` bytes.
    pub fn new(t: BlobType, capacity: usize) -> PackWriter {
        PackWriter::with_sink(t, PackBody::Memory(Vec::with_capacity(capacity)))
    }

    /// An empty pack that appends its bytes to `file` (from
    /// [`Backend::staging_file`](crate::Backend::staging_file)), which must
    /// be empty.
    pub fn staged(t: BlobType, file: StagingFile) -> PackWriter {
        PackWriter::with_sink(t, PackBody::File(file))
    }

    /// An empty pack that keeps no bytes, only their length and hash: what
    /// a dry run needs to report sizes without storing anything.
    pub fn counting(t: BlobType) -> PackWriter {
        PackWriter::with_sink(t, PackBody::Nowhere)
    }

    fn with_sink(t: BlobType, out: PackBody) -> PackWriter {
        PackWriter { blob_type: t, out, hasher: blake3::Hasher::new(), len: 0, blobs: Vec::new() }
    }

    /// Seals `payload` (the blob's plaintext, compressed or not as
    /// `compression` says) into the pack. Tests build packs with it; the
    /// pipelines seal in place and call [`PackWriter::add_sealed`].
    #[cfg(test)]
    pub(crate) fn add(
        &mut self,
        key: &Key,
        id: BlobId,
        payload: &[u8],
        raw_length: u32,
        compression: Compression,
    ) -> Result<(), RepoError> {
        let mut sealed = Vec::with_capacity(payload.len() + SEAL_OVERHEAD);
        key.seal_append(payload, &mut sealed);
        self.add_sealed(id, &sealed, raw_length, compression)
    }

    /// Appends a blob sealed elsewhere (see [`BlobEncoder::seal_blob`]),
    /// so the expensive work can happen outside a lock on a shared pack.
    /// Fails only if the staging file cannot be written; the pack is then
    /// unusable.
    ///
    /// [`BlobEncoder::seal_blob`]: crate::BlobEncoder::seal_blob
    pub fn add_sealed(
        &mut self,
        id: BlobId,
        sealed: &[u8],
        raw_length: u32,
        compression: Compression,
    ) -> Result<(), RepoError> {
        let offset = self.len as u32;
        self.append(sealed)?;
        self.blobs.push(PackedBlob {
            id,
            blob_type: self.blob_type,
            offset,
            length: sealed.len() as u32,
            raw_length,
            compression,
        });
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), RepoError> {
        match &mut self.out {
            PackBody::Memory(v) => v.extend_from_slice(bytes),
            PackBody::File(f) => {
                f.write_all("write staging file", bytes)?;
            }
            PackBody::Nowhere => {}
        }
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes of sealed blobs so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// The type of blobs in this pack.
    pub fn blob_type(&self) -> BlobType {
        self.blob_type
    }

    /// Appends the sealed header and names the pack.
    pub fn finish(mut self, key: &Key) -> Result<FinishedPack, RepoError> {
        let mut header = Vec::with_capacity(9 + self.blobs.len() * ENTRY_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for b in &self.blobs {
            header.extend_from_slice(&b.id.0);
            header.push(b.blob_type.to_byte());
            header.push(b.compression.to_byte());
            header.extend_from_slice(&b.length.to_le_bytes());
            header.extend_from_slice(&b.raw_length.to_le_bytes());
        }
        let mut trailer = Vec::with_capacity(header.len() + SEAL_OVERHEAD + 4);
        key.seal_append(&header, &mut trailer);
        let sealed_len = trailer.len() as u32;
        trailer.extend_from_slice(&sealed_len.to_le_bytes());
        self.append(&trailer)?;
        Ok(FinishedPack {
            id: Id(*self.hasher.finalize().as_bytes()),
            blobs: self.blobs,
            len: self.len,
            body: self.out,
        })
    }
}

/// Length of the sealed header, from a pack's last 4 bytes.
pub(crate) fn header_length(tail: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*tail)
}

/// Opens and decodes a sealed pack header; `blobs_end` is where the header
/// starts (the total length of the blobs). Every entry is checked to lie
/// inside the blob area.
pub fn decode_pack_header(
    key: &Key,
    pack: &PackId,
    sealed: &[u8],
    blobs_end: u64,
) -> Result<Vec<PackedBlob>, RepoError> {
    let what = || format!("pack {}", pack.short());
    let plain = key.open(sealed).map_err(|e| RepoError::corrupt(what(), format!("header: {e}")))?;
    let bad = |d: &str| RepoError::corrupt(what(), format!("header: {d}"));
    if plain.len() < 9 || &plain[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    if plain[4] != VERSION {
        return Err(RepoError::UnsupportedVersion { what: what(), version: u32::from(plain[4]) });
    }
    let n = u32::from_le_bytes([plain[5], plain[6], plain[7], plain[8]]) as usize;
    if n > MAX_PACK_BLOBS || plain.len() != 9 + n * ENTRY_LEN {
        return Err(bad("entry count does not match header length"));
    }
    let mut out = Vec::with_capacity(n);
    let mut offset = 0u64;
    for e in plain[9..].chunks_exact(ENTRY_LEN) {
        let id = Id::from_slice(&e[..32]).ok_or_else(|| bad("truncated entry"))?;
        let blob_type = BlobType::from_byte(e[32]).ok_or_else(|| bad("unknown blob type"))?;
        let compression = Compression::from_byte(e[33]).ok_or_else(|| bad("unknown compression"))?;
        let length = u32::from_le_bytes([e[34], e[35], e[36], e[37]]);
        let raw_length = u32::from_le_bytes([e[38], e[39], e[40], e[41]]);
        if out.first().is_some_and(|f: &PackedBlob| f.blob_type != blob_type) {
            return Err(bad("data and tree blobs mixed in one pack"));
        }
        if offset + u64::from(length) > blobs_end {
            return Err(bad("blob extends past the blob area"));
        }
        out.push(PackedBlob { id, blob_type, offset: offset as u32, length, raw_length, compression });
        offset += u64::from(length);
    }
    if offset != blobs_end {
        return Err(bad("blob lengths do not add up to the blob area"));
    }
    Ok(out)
}

/// Reads a whole pack's header from its bytes (for tests and check).
pub fn parse_pack(key: &Key, pack: &PackId, data: &[u8]) -> Result<Vec<PackedBlob>, RepoError> {
    let what = format!("pack {}", pack.short());
    if data.len() < 4 {
        return Err(RepoError::corrupt(what, "shorter than its trailer"));
    }
    let tail: [u8; 4] = data[data.len() - 4..].try_into().expect("4 bytes");
    let hlen = header_length(&tail) as usize;
    let Some(start) = (data.len() - 4).checked_sub(hlen) else {
        return Err(RepoError::corrupt(what, "header length exceeds pack size"));
    };
    decode_pack_header(key, pack, &data[start..data.len() - 4], start as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_header_tamper() {
        let key = Key::generate();
        let mut w = PackWriter::new(BlobType::Data, 1024);
        for i in 0..5u8 {
            let data = vec![i; 100 + usize::from(i)];
            w.add(&key, Id::hash(&data), &data, data.len() as u32, Compression::None).unwrap();
        }
        let p = w.finish(&key).unwrap();
        let data = p.test_bytes();
        assert_eq!(p.id, Id::hash(&data));
        assert_eq!(p.len(), data.len() as u64);
        let blobs = parse_pack(&key, &p.id, &data).unwrap();
        assert_eq!(blobs, p.blobs);
        for b in &blobs {
            let sealed = &data[b.offset as usize..(b.offset + b.length) as usize];
            let plain = key.open(sealed).unwrap();
            assert_eq!(Id::hash(&plain), b.id);
        }
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(matches!(parse_pack(&key, &p.id, &bad), Err(RepoError::Corrupt { .. })));
        bad[n - 1] = 0xff;
        assert!(parse_pack(&key, &p.id, &bad).is_err());
        assert!(parse_pack(&key, &p.id, &[1, 2]).is_err());
    }
}
