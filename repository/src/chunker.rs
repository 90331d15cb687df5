use fastcdc::v2020::{FastCDC, Normalization};

use crate::config::ChunkerParams;

/// Splits data into content-defined chunks with the repository's secret
/// FastCDC parameters.
///
/// Boundaries depend only on the bytes from a chunk's start up to its end
/// (at most `max_size` bytes), which is what lets a streaming reader chunk a
/// file buffer by buffer and get the same chunks as over the whole file.
#[derive(Clone, Debug)]
pub struct Chunker {
    params: ChunkerParams,
}

impl Chunker {
    /// A chunker for these (validated) parameters.
    pub fn new(params: ChunkerParams) -> Chunker {
        Chunker { params }
    }

    /// The largest chunk this chunker produces.
    pub fn max_size(&self) -> usize {
        self.params.max_size as usize
    }

    /// Chunk lengths of `buf`. If `at_eof` is false, the final chunk is cut
    /// by the end of the buffer rather than by content, so it is left out:
    /// the returned lengths sum to the bytes that are final, and the caller
    /// keeps the rest for the next buffer. With `at_eof`, they cover all of
    /// `buf`. A chunk that ends before the end of `buf` is final whatever
    /// the buffer's size; unless `at_eof`, a buffer shorter than
    /// [`Chunker::max_size`] may hold no final chunk, and the caller must
    /// read more before cutting again.
    pub fn cut(&self, buf: &[u8], at_eof: bool, out: &mut Vec<usize>) {
        out.clear();
        let p = &self.params;
        let cdc = FastCDC::with_level_and_seed(
            buf,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            Normalization::Level1,
            p.seed,
        );
        for c in cdc {
            // A chunk that reaches the end of a non-final buffer might have
            // been cut later with more data: hold it back.
            if !at_eof && c.offset + c.length == buf.len() {
                break;
            }
            out.push(c.length);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChunkerParams {
        ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, seed: 42 }
    }

    fn pseudo_random(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn streaming_cuts_equal_whole_buffer_cuts() {
        let data = pseudo_random(300_000);
        let c = Chunker::new(params());
        let mut whole = Vec::new();
        c.cut(&data, true, &mut whole);
        assert_eq!(whole.iter().sum::<usize>(), data.len());
        for window in [20_000usize, 16_384, 50_001] {
            let (mut pos, mut got, mut tmp) = (0usize, Vec::new(), Vec::new());
            while pos < data.len() {
                let end = (pos + window).min(data.len());
                c.cut(&data[pos..end], end == data.len(), &mut tmp);
                pos += tmp.iter().sum::<usize>();
                got.extend_from_slice(&tmp);
            }
            assert_eq!(got, whole, "window {window}");
        }
    }

    #[test]
    fn windows_smaller_than_a_chunk_widen_and_give_the_same_chunks() {
        // What the FileSaver does: start below the largest chunk, widen a
        // window that yields no final cut.
        let data = pseudo_random(300_000);
        let c = Chunker::new(params());
        let mut whole = Vec::new();
        c.cut(&data, true, &mut whole);
        let (mut pos, mut got, mut tmp, mut window) = (0usize, Vec::new(), Vec::new(), 3000usize);
        while pos < data.len() {
            let end = (pos + window).min(data.len());
            c.cut(&data[pos..end], end == data.len(), &mut tmp);
            if tmp.is_empty() {
                window *= 2;
                continue;
            }
            pos += tmp.iter().sum::<usize>();
            got.extend_from_slice(&tmp);
        }
        assert_eq!(got, whole);
        assert!(window > 3000, "no chunk was longer than the first window");
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(200_000);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Chunker::new(params()).cut(&data, true, &mut a);
        Chunker::new(ChunkerParams { seed: 43, ..params() }).cut(&data, true, &mut b);
        assert_ne!(a, b);
    }
}
