use arch_index::{BlobId, BlobType, Compression, Id, PackId, PackedBlob};

use crate::crypto::{Key, SEAL_OVERHEAD};
use crate::error::RepoError;

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
#[derive(Debug)]
pub struct PackWriter {
    blob_type: BlobType,
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

/// A finished pack, ready to store under `id`.
#[derive(Debug)]
pub struct FinishedPack {
    /// blake3 of `data`: the pack's name.
    pub id: PackId,
    /// The bytes to store.
    pub data: Vec<u8>,
    /// Its blobs, with offsets.
    pub blobs: Vec<PackedBlob>,
}

impl PackWriter {
    /// An empty pack for blobs of type `t`, with room for `capacity` bytes.
    pub fn new(t: BlobType, capacity: usize) -> PackWriter {
        PackWriter::with_buffer(t, Vec::with_capacity(capacity))
    }

    /// An empty pack that writes into `buf` (cleared first), so callers can
    /// recycle pack buffers.
    pub fn with_buffer(t: BlobType, mut buf: Vec<u8>) -> PackWriter {
        buf.clear();
        PackWriter { blob_type: t, buf, blobs: Vec::new() }
    }

    /// Seals `payload` (the blob's plaintext, compressed or not as
    /// `compression` says) into the pack.
    pub fn add(&mut self, key: &Key, id: BlobId, payload: &[u8], raw_length: u32, compression: Compression) {
        let offset = self.buf.len() as u32;
        key.seal_append(payload, &mut self.buf);
        self.blobs.push(PackedBlob {
            id,
            blob_type: self.blob_type,
            offset,
            length: (payload.len() + SEAL_OVERHEAD) as u32,
            raw_length,
            compression,
        });
    }

    /// Appends a blob sealed elsewhere (see [`BlobEncoder::seal_blob`]),
    /// so the expensive work can happen outside a lock on a shared pack.
    ///
    /// [`BlobEncoder::seal_blob`]: crate::BlobEncoder::seal_blob
    pub fn add_sealed(&mut self, id: BlobId, sealed: &[u8], raw_length: u32, compression: Compression) {
        let offset = self.buf.len() as u32;
        self.buf.extend_from_slice(sealed);
        self.blobs.push(PackedBlob {
            id,
            blob_type: self.blob_type,
            offset,
            length: sealed.len() as u32,
            raw_length,
            compression,
        });
    }

    /// Bytes of sealed blobs so far.
    pub fn len(&self) -> usize {
        self.buf.len()
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
    pub fn finish(mut self, key: &Key) -> FinishedPack {
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
        let before = self.buf.len();
        key.seal_append(&header, &mut self.buf);
        let sealed_len = (self.buf.len() - before) as u32;
        self.buf.extend_from_slice(&sealed_len.to_le_bytes());
        FinishedPack { id: Id::hash(&self.buf), data: self.buf, blobs: self.blobs }
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
            w.add(&key, Id::hash(&data), &data, data.len() as u32, Compression::None);
        }
        let p = w.finish(&key);
        assert_eq!(p.id, Id::hash(&p.data));
        let blobs = parse_pack(&key, &p.id, &p.data).unwrap();
        assert_eq!(blobs, p.blobs);
        for b in &blobs {
            let sealed = &p.data[b.offset as usize..(b.offset + b.length) as usize];
            let plain = key.open(sealed).unwrap();
            assert_eq!(Id::hash(&plain), b.id);
        }
        let mut bad = p.data.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(matches!(parse_pack(&key, &p.id, &bad), Err(RepoError::Corrupt { .. })));
        bad[n - 1] = 0xff;
        assert!(parse_pack(&key, &p.id, &bad).is_err());
        assert!(parse_pack(&key, &p.id, &[1, 2]).is_err());
    }
}
