use arch_index::{BlobId, BlobLocation, Compression, Id};

use crate::crypto::Key;
use crate::error::RepoError;
use crate::pack::PackWriter;

/// Compresses and seals blobs into packs. One per worker thread: it owns a
/// reusable zstd context and scratch buffer, so steady-state encoding does
/// not allocate.
pub struct BlobEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
}

impl BlobEncoder {
    /// An encoder at zstd `level`.
    pub fn new(level: i32) -> Result<BlobEncoder, RepoError> {
        let compressor = zstd::bulk::Compressor::new(level)
            .map_err(|e| RepoError::InvalidOption(format!("zstd level {level}: {e}")))?;
        Ok(BlobEncoder { compressor, scratch: Vec::new() })
    }

    /// Compresses (when that saves at least 1/32 of the size: incompressible
    /// data is stored raw and restores without a decompression pass) and
    /// seals `data` into `out`, which is cleared first. Returns how the
    /// plaintext was encoded.
    pub fn seal_blob(&mut self, key: &Key, data: &[u8], out: &mut Vec<u8>) -> Compression {
        out.clear();
        let bound = zstd::zstd_safe::compress_bound(data.len());
        self.scratch.clear();
        self.scratch.reserve(bound);
        let pays = match self.compressor.compress_to_buffer(data, &mut self.scratch) {
            Ok(n) => n + data.len() / 32 < data.len(),
            Err(_) => false,
        };
        if pays {
            key.seal_append(&self.scratch, out);
            Compression::Zstd
        } else {
            key.seal_append(data, out);
            Compression::None
        }
    }

    /// Seals blob `id` with plaintext `data` straight into `pack`; returns
    /// the stored length. Fails only if the pack's staging file cannot be
    /// written.
    pub fn encode_into(
        &mut self,
        key: &Key,
        id: BlobId,
        data: &[u8],
        pack: &mut PackWriter,
    ) -> Result<usize, RepoError> {
        let mut sealed = Vec::new();
        let c = self.seal_blob(key, data, &mut sealed);
        pack.add_sealed(id, &sealed, data.len() as u32, c)?;
        Ok(sealed.len())
    }
}

/// Largest plaintext one blob may have (1 GiB; chunks are at most 16 MiB,
/// trees of huge directories can be larger).
const MAX_BLOB_PLAINTEXT: u64 = 1 << 30;

/// Opens, decompresses and verifies one sealed blob read from its pack.
/// Fails with [`RepoError::Corrupt`] naming the pack and blob if the seal,
/// the compression or the content hash is wrong.
pub fn decode_blob(key: &Key, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>, RepoError> {
    let what = || format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short());
    let plain = key.open(sealed).map_err(|e| RepoError::corrupt(what(), e.to_string()))?;
    let data = match loc.blob.compression {
        Compression::None => plain,
        Compression::Zstd => {
            // The index's length is trusted only as far as the frame agrees
            // and a blob can be large: a damaged entry must not make us
            // allocate gigabytes for a few compressed bytes.
            let raw = u64::from(loc.blob.raw_length);
            let framed = zstd::zstd_safe::get_frame_content_size(&plain).ok().flatten();
            if framed.is_some_and(|n| n != raw) || raw > MAX_BLOB_PLAINTEXT {
                return Err(RepoError::corrupt(what(), "plaintext length differs from the index"));
            }
            zstd::bulk::decompress(&plain, raw as usize)
                .map_err(|e| RepoError::corrupt(what(), format!("zstd: {e}")))?
        }
    };
    if data.len() != loc.blob.raw_length as usize {
        return Err(RepoError::corrupt(what(), "plaintext length differs from the index"));
    }
    if Id::hash(&data) != loc.blob.id {
        return Err(RepoError::corrupt(what(), "content hash mismatch"));
    }
    Ok(data)
}

/// Opens, decompresses and verifies sealed blobs in place, with a reusable
/// zstd context and output buffer: one per reader thread, so steady-state
/// decoding (restore) neither allocates nor copies an uncompressed blob.
pub struct BlobDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    out: Vec<u8>,
}

impl BlobDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Result<BlobDecoder, RepoError> {
        let decompressor = zstd::bulk::Decompressor::new()
            .map_err(|e| RepoError::InvalidOption(format!("zstd decompression context: {e}")))?;
        Ok(BlobDecoder { decompressor, out: Vec::new() })
    }

    /// As [`decode_blob`], but decrypts inside `sealed` (which is
    /// clobbered) and returns the verified plaintext, borrowed from
    /// `sealed` or from the decoder's buffer. The content hash is checked
    /// even though the seal authenticates the bytes: the seal carries no
    /// associated data, so only the hash proves that the blob at this
    /// place of the pack is the blob the index names.
    pub fn decode<'a>(
        &'a mut self,
        key: &Key,
        loc: &BlobLocation,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], RepoError> {
        let what = || format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short());
        let plain = key.open_in_place(sealed).map_err(|e| RepoError::corrupt(what(), e.to_string()))?;
        let raw = loc.blob.raw_length as usize;
        let data: &[u8] = match loc.blob.compression {
            Compression::None => plain,
            Compression::Zstd => {
                self.out.clear();
                self.out.reserve(raw);
                let n = self
                    .decompressor
                    .decompress_to_buffer(plain, &mut self.out)
                    .map_err(|e| RepoError::corrupt(what(), format!("zstd: {e}")))?;
                &self.out[..n]
            }
        };
        if data.len() != raw {
            return Err(RepoError::corrupt(what(), "plaintext length differs from the index"));
        }
        if Id::hash(data) != loc.blob.id {
            return Err(RepoError::corrupt(what(), "content hash mismatch"));
        }
        Ok(data)
    }
}
