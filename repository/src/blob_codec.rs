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
        Ok(BlobEncoder {
            compressor,
            scratch: Vec::new(),
        })
    }

    /// Adds blob `id` with plaintext `data` to `pack`. The blob is stored
    /// compressed only when that saves at least 1/32 of its size:
    /// incompressible data is then stored raw and restores without a
    /// decompression pass. Returns the stored (sealed) length.
    pub fn encode_into(
        &mut self,
        key: &Key,
        id: BlobId,
        data: &[u8],
        pack: &mut PackWriter,
    ) -> usize {
        let before = pack.len();
        let bound = zstd::zstd_safe::compress_bound(data.len());
        self.scratch.clear();
        self.scratch.reserve(bound);
        let pays = match self.compressor.compress_to_buffer(data, &mut self.scratch) {
            Ok(n) => n + data.len() / 32 < data.len(),
            Err(_) => false,
        };
        if pays {
            pack.add(key, id, &self.scratch, data.len() as u32, Compression::Zstd);
        } else {
            pack.add(key, id, data, data.len() as u32, Compression::None);
        }
        pack.len() - before
    }
}

/// Opens, decompresses and verifies one sealed blob read from its pack.
/// Fails with [`RepoError::Corrupt`] naming the pack and blob if the seal,
/// the compression or the content hash is wrong.
pub fn decode_blob(key: &Key, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>, RepoError> {
    let what = || format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short());
    let plain = key
        .open(sealed)
        .map_err(|e| RepoError::corrupt(what(), e.to_string()))?;
    let data = match loc.blob.compression {
        Compression::None => plain,
        Compression::Zstd => zstd::bulk::decompress(&plain, loc.blob.raw_length as usize)
            .map_err(|e| RepoError::corrupt(what(), format!("zstd: {e}")))?,
    };
    if data.len() != loc.blob.raw_length as usize {
        return Err(RepoError::corrupt(
            what(),
            "plaintext length differs from the index",
        ));
    }
    if Id::hash(&data) != loc.blob.id {
        return Err(RepoError::corrupt(what(), "content hash mismatch"));
    }
    Ok(data)
}
