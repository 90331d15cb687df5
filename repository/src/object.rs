//! The envelope of every stored metadata object (config, snapshot, index):
//! `seal(encoding byte || payload)`, where the encoding byte is 0 for a raw
//! payload and 1 for one zstd frame.

use crate::crypto::Key;
use crate::error::RepoError;

/// Largest plaintext a metadata object may decompress to (1 GiB): bounds
/// memory when reading a damaged or hostile object.
const MAX_OBJECT_PLAINTEXT: usize = 1 << 30;

pub(crate) fn seal_object(key: &Key, payload: &[u8], level: i32) -> Vec<u8> {
    let mut plain = Vec::with_capacity(payload.len() / 2 + 16);
    match zstd::bulk::compress(payload, level) {
        Ok(c) if c.len() < payload.len() => {
            plain.push(1);
            plain.extend_from_slice(&c);
        }
        _ => {
            plain.push(0);
            plain.extend_from_slice(payload);
        }
    }
    key.seal(&plain)
}

pub(crate) fn open_object(key: &Key, sealed: &[u8], what: &str) -> Result<Vec<u8>, RepoError> {
    let plain = key.open(sealed).map_err(|e| RepoError::corrupt(what, e.to_string()))?;
    match plain.split_first() {
        Some((0, rest)) => Ok(rest.to_vec()),
        Some((1, rest)) => {
            let mut d = zstd::bulk::Decompressor::new()
                .map_err(|e| RepoError::corrupt(what, format!("zstd: {e}")))?;
            let cap = zstd::zstd_safe::get_frame_content_size(rest)
                .ok()
                .flatten()
                .map(|n| n as usize)
                .filter(|&n| n <= MAX_OBJECT_PLAINTEXT)
                .ok_or_else(|| RepoError::corrupt(what, "compressed payload has no valid size"))?;
            d.decompress(rest, cap).map_err(|e| RepoError::corrupt(what, format!("zstd: {e}")))
        }
        Some((b, _)) => Err(RepoError::corrupt(what, format!("unknown encoding {b}"))),
        None => Err(RepoError::corrupt(what, "empty")),
    }
}
