use arch_index::{BlobId, BlobLocation, Compression, Id};

use crate::crypto::Key;
use crate::error::RepoError;
use crate::pack::PackWriter;

/// Compresses and seals blobs into packs. One per worker thread: it owns
/// reusable zstd contexts and scratch buffers, so steady-state encoding
/// does not allocate.
pub struct BlobEncoder {
    /// One context per input-size class of zstd's parameter tables; see
    /// [`size_class`].
    compressors: [zstd::bulk::Compressor<'static>; 4],
    scratch: Vec<u8>,
    sample: Vec<u8>,
    /// The sealed blob of [`BlobEncoder::encode_into`], reused.
    sealed: Vec<u8>,
}

/// Blobs at least this big are tried on samples before being compressed
/// whole: compressing incompressible data (media, archives, encrypted
/// files: half of a typical home directory) costs as much as compressing
/// text, for nothing.
const TRIAL_MIN: usize = 256 << 10;
/// Bytes taken from the start, the middle and the end of a blob for the
/// trial.
const SAMPLE: usize = 16 << 10;

/// Which of zstd's parameter tables an input of `len` bytes is compressed
/// with (zstd picks table sizes by input size: above 256 KiB, above 128
/// KiB, above 16 KiB, smaller). A context that alternates between them
/// (a tree of small files next to large chunks) reallocates its workspace
/// every time it grows back: fresh pages, faulted in and zeroed, a few
/// hundred KiB per blob. One context per class keeps each workspace at
/// one size; the compressed bytes are the same either way.
fn size_class(len: usize) -> usize {
    usize::from(len <= 256 << 10) + usize::from(len <= 128 << 10) + usize::from(len <= 16 << 10)
}

/// Compresses `data` into `out` (cleared first) with the context of its
/// size class; returns the compressed length.
fn compress(
    compressors: &mut [zstd::bulk::Compressor<'static>; 4],
    data: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    compressors[size_class(data.len())].compress_to_buffer(data, out)
}

/// Whether `compressed` bytes for `raw` bytes of input save enough to be
/// worth a decompression pass on restore (1/32).
fn pays(compressed: usize, raw: usize) -> bool {
    compressed + raw / 32 < raw
}

impl BlobEncoder {
    /// An encoder at zstd `level`.
    pub fn new(level: i32) -> Result<BlobEncoder, RepoError> {
        let new = || {
            zstd::bulk::Compressor::new(level)
                .map_err(|e| RepoError::InvalidOption(format!("zstd level {level}: {e}")))
        };
        let compressors = [new()?, new()?, new()?, new()?];
        Ok(BlobEncoder { compressors, scratch: Vec::new(), sample: Vec::new(), sealed: Vec::new() })
    }

    /// Compresses (when that saves at least 1/32 of the size: incompressible
    /// data is stored raw and restores without a decompression pass) and
    /// seals `data` into `out`, which is cleared first. Returns how the
    /// plaintext was encoded. A large blob whose start, middle and end all
    /// fail to compress is stored raw without compressing the rest.
    pub fn seal_blob(&mut self, key: &Key, data: &[u8], out: &mut Vec<u8>) -> Compression {
        out.clear();
        let compressed = self.samples_compress(data)
            && compress(&mut self.compressors, data, &mut self.scratch).is_ok_and(|n| pays(n, data.len()));
        if compressed {
            key.seal_append(&self.scratch, out);
            Compression::Zstd
        } else {
            key.seal_append(data, out);
            Compression::None
        }
    }

    /// False when `data` is large and three samples of it do not compress.
    fn samples_compress(&mut self, data: &[u8]) -> bool {
        if data.len() < TRIAL_MIN {
            return true;
        }
        let mid = data.len() / 2 - SAMPLE / 2;
        self.sample.clear();
        for from in [0, mid, data.len() - SAMPLE] {
            self.sample.extend_from_slice(&data[from..from + SAMPLE]);
        }
        // An error lets the whole blob decide.
        compress(&mut self.compressors, &self.sample, &mut self.scratch)
            .map_or(true, |n| pays(n, self.sample.len()))
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
        let mut sealed = std::mem::take(&mut self.sealed);
        let c = self.seal_blob(key, data, &mut sealed);
        let added = pack.add_sealed(id, &sealed, data.len() as u32, c).map(|()| sealed.len());
        self.sealed = sealed;
        added
    }
}

/// Largest plaintext one blob may have (1 GiB; chunks are at most 16 MiB,
/// trees of huge directories can be larger).
const MAX_BLOB_PLAINTEXT: u64 = 1 << 30;

/// Opens, decompresses and verifies one sealed blob read from its pack.
/// Fails with [`RepoError::Corrupt`] naming the pack and blob if the seal,
/// the compression or the content hash is wrong.
pub fn decode_blob(key: &Key, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>, RepoError> {
    let what = || describe(loc);
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
            decompress(&plain, raw as usize).map_err(|e| RepoError::corrupt(what(), format!("zstd: {e}")))?
        }
    };
    verify(loc, &data)?;
    Ok(data)
}

/// The blob's name in messages.
fn describe(loc: &BlobLocation) -> String {
    format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short())
}

/// Checks a decoded blob against its index entry: length, then content
/// hash.
fn verify(loc: &BlobLocation, data: &[u8]) -> Result<(), RepoError> {
    if data.len() != loc.blob.raw_length as usize {
        return Err(RepoError::corrupt(describe(loc), "plaintext length differs from the index"));
    }
    if Id::hash(data) != loc.blob.id {
        return Err(RepoError::corrupt(describe(loc), "content hash mismatch"));
    }
    Ok(())
}

thread_local! {
    /// Creating a zstd context costs more than decompressing a small tree,
    /// and a tree walk decodes thousands of them: one per thread.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress(frame: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let d = match &mut *d {
            Some(d) => d,
            none => none.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(frame, capacity)
    })
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
        let what = || describe(loc);
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
        verify(loc, data)?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch_index::{BlobType, PackedBlob};

    /// Seals `data`, then opens it again as a reader would.
    fn round_trip(data: &[u8]) -> Compression {
        let key = Key::generate();
        let mut enc = BlobEncoder::new(3).expect("encoder");
        let mut sealed = Vec::new();
        let compression = enc.seal_blob(&key, data, &mut sealed);
        let blob = PackedBlob {
            id: Id::hash(data),
            blob_type: BlobType::Data,
            offset: 0,
            length: sealed.len() as u32,
            raw_length: data.len() as u32,
            compression,
        };
        let loc = BlobLocation { pack: Id::hash(b"pack"), blob };
        assert_eq!(decode_blob(&key, &loc, &sealed).expect("decodes"), data);
        compression
    }

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 32);
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        let mut r = h.finalize_xof();
        out.resize(n, 0);
        r.fill(&mut out);
        out
    }

    fn text(n: usize) -> Vec<u8> {
        (0..)
            .flat_map(|i: u32| format!("{i} GET /index.html 200 {}\n", i % 97).into_bytes())
            .take(n)
            .collect()
    }

    /// Blobs of every size class, interleaved as two FileSavers would feed
    /// them: the frames are zstd's own for each input, and no class's
    /// workspace is given up and allocated again.
    #[test]
    fn interleaved_sizes_compress_as_zstd_does_without_regrowing_workspaces() {
        let mut enc = BlobEncoder::new(3).expect("encoder");
        let sizes = [2 << 20, 3 << 10, 700 << 10, 200 << 10, 100 << 10, 300, 1 << 20];
        let mut peak = [0usize; 4];
        for round in 0..300 {
            for (i, &n) in sizes.iter().enumerate() {
                if n > 16 << 10 && round % 100 != 0 {
                    continue;
                }
                let data = text(n + round + i);
                let class = size_class(data.len());
                let m = compress(&mut enc.compressors, &data, &mut enc.scratch).expect("compresses");
                if round < 2 {
                    assert_eq!(
                        &enc.scratch[..m],
                        &zstd::bulk::compress(&data, 3).expect("zstd")[..],
                        "{n} bytes"
                    );
                }
                let size = enc.compressors[class].context_mut().sizeof();
                if round >= 100 {
                    assert!(size >= peak[class] / 2, "class {class} shrank from {} to {size}", peak[class]);
                }
                peak[class] = peak[class].max(size);
            }
        }
    }

    #[test]
    fn incompressible_blobs_are_stored_raw_large_or_small() {
        assert_eq!(round_trip(&random(2 << 20, 1)), Compression::None);
        assert_eq!(round_trip(&random(100 << 10, 2)), Compression::None);
    }

    #[test]
    fn a_blob_compressible_where_it_is_sampled_is_compressed() {
        assert_eq!(round_trip(&text(2 << 20)), Compression::Zstd);
        // Incompressible start, text after: the middle and end samples
        // find it.
        let mut mixed = random(300 << 10, 3);
        mixed.extend(text(1 << 20));
        assert_eq!(round_trip(&mixed), Compression::Zstd);
        // Small blobs are never judged by samples.
        assert_eq!(round_trip(&text(64 << 10)), Compression::Zstd);
    }
}
