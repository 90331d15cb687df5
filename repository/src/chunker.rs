use fastcdc::v2020::{FastCDC, Normalization};

use crate::config::ChunkerParams;

/// Splits data into content-defined chunks with the repository's secret
/// FastCDC parameters.
///
/// Boundaries depend only on the bytes from a chunk's start up to its end
/// (at most `max_size` bytes), which is what lets a streaming reader chunk a
/// file buffer by buffer and get the same chunks as over the whole file.
///
/// With [`ChunkerParams::zero_runs`], a chunk also ends at the first
/// position at least `min_size` into it that follows 64 zero bytes. Over
/// zeros FastCDC's hash settles to a constant that almost never meets the
/// cut mask, so a zero region was swallowed by one chunk of up to
/// `max_size` together with the data before and after it, and that data
/// deduplicated only if its neighbourhood repeated too (disk images, VM
/// images and preallocated files are zeros between repeated blocks). With
/// the rule, the data before a zero region ends in a chunk of its own, the
/// region becomes identical `min_size` chunks, and data without 64 zero
/// bytes in a row is cut exactly as before.
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
        let (min_size, max_size) = (p.min_size as usize, p.max_size as usize);
        // One chunk at a time: where a zero run gives a cut, FastCDC only
        // looks at the bytes before it (its cuts there are the same as over
        // the whole buffer), instead of hashing through the zeros to
        // max_size.
        let mut zeros = ZeroRuns { buf, scanned: 0, run: None };
        // Built once per call (seeded gear tables are copied and allocated),
        // then pointed at each chunk's window.
        let mut cdc = FastCDC::with_level_and_seed(
            buf,
            min_size,
            p.avg_size as usize,
            max_size,
            Normalization::Level1,
            p.seed,
        );
        let mut start = 0;
        while start < buf.len() {
            let zero_cut = if p.zero_runs {
                zeros.first_cut(start + min_size, (start + max_size).min(buf.len()))
            } else {
                None
            };
            let window = &buf[start..zero_cut.unwrap_or(buf.len())];
            let Some(c) = cdc.rechunk(window).next() else { break };
            // A chunk cut by its zero run, or by content before the end of
            // the buffer, is final: it depends only on bytes before its end.
            // One that reaches the end of a non-final buffer might have been
            // cut later with more data: hold it back.
            if zero_cut.is_none() && !at_eof && c.length == buf.len() - start {
                break;
            }
            out.push(c.length);
            start += c.length;
        }
    }
}

/// Zero bytes in a row after which a chunk may end.
const ZERO_RUN: usize = 64;

/// The runs of at least [`ZERO_RUN`] zero bytes of a buffer, found in one
/// pass as the chunks move along it.
struct ZeroRuns<'a> {
    buf: &'a [u8],
    /// Bytes before this were searched.
    scanned: usize,
    /// The first run (start, end) not yet passed.
    run: Option<(usize, usize)>,
}

impl ZeroRuns<'_> {
    /// The first cut point `p` with `from <= p < until` that follows
    /// `ZERO_RUN` zero bytes (`buf[p - ZERO_RUN..p]` all zero), if any.
    /// Calls must not decrease `from`.
    fn first_cut(&mut self, from: usize, until: usize) -> Option<usize> {
        loop {
            match self.run {
                // Ends before any cut this or a later chunk may take.
                Some((_, end)) if end < from => self.run = None,
                Some((start, end)) => {
                    let p = (start + ZERO_RUN).max(from);
                    debug_assert!(p <= end, "runs are at least ZERO_RUN long");
                    return (p < until).then_some(p);
                }
                None => {
                    self.run = self.next_run(until);
                    self.run?;
                }
            }
        }
    }

    /// Searches on from `scanned` for the next run starting before
    /// `until`. A run of 64 zero bytes holds 7 whole words at offsets that
    /// are multiples of 8, and one of any 7 such words in a row is a
    /// multiple of 56 bytes from where the search (re)started: only those
    /// words are tested until one is zero; then the run around it is
    /// measured. Stopping at `until` keeps that stride, so a later call
    /// goes on where this one stopped.
    fn next_run(&mut self, until: usize) -> Option<(usize, usize)> {
        let buf = self.buf;
        let zero_word = |at: usize| buf.get(at..at + 8).is_some_and(|w| w == [0u8; 8]);
        let mut w = self.scanned.next_multiple_of(8);
        while w + 8 <= buf.len() && w < until {
            if !zero_word(w) {
                w += STRIDE;
                continue;
            }
            // Back to the run's true start, which may lie before `scanned`
            // (at most one stride back: the word tested before was not all
            // zero); the cut must not depend on where earlier searches
            // stopped.
            let mut start = w;
            while start > 0 && buf[start - 1] == 0 {
                start -= 1;
            }
            let mut end = w + 8;
            while zero_word(end) {
                end += 8;
            }
            while end < buf.len() && buf[end] == 0 {
                end += 1;
            }
            // A byte that is not zero (or the end of the buffer) ends the
            // run, so no run straddles where the next search starts.
            self.scanned = end;
            if end - start >= ZERO_RUN {
                return Some((start, end));
            }
            w = end.next_multiple_of(8);
        }
        self.scanned = self.scanned.max(w);
        None
    }
}

/// Bytes between the words [`ZeroRuns::next_run`] tests: 7 words, so that
/// every run of [`ZERO_RUN`] zero bytes holds one of them.
const STRIDE: usize = 56;
const _: () = assert!(STRIDE + 8 <= ZERO_RUN && STRIDE.is_multiple_of(8));

/// The cuts of `data` fed in buffers of `window` bytes, as a FileSaver
/// does (for tests).
#[cfg(test)]
pub(crate) fn streamed(c: &Chunker, data: &[u8], window: usize) -> Vec<usize> {
    let (mut pos, mut got, mut tmp) = (0usize, Vec::new(), Vec::new());
    while pos < data.len() {
        let end = (pos + window).min(data.len());
        c.cut(&data[pos..end], end == data.len(), &mut tmp);
        pos += tmp.iter().sum::<usize>();
        got.extend_from_slice(&tmp);
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChunkerParams {
        ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, seed: 42, zero_runs: false }
    }

    fn cuts(c: &Chunker, data: &[u8]) -> Vec<usize> {
        let mut v = Vec::new();
        c.cut(data, true, &mut v);
        v
    }

    /// The chunks of `data` as (offset, bytes).
    fn chunks<'d>(c: &Chunker, data: &'d [u8]) -> Vec<(usize, &'d [u8])> {
        let mut at = 0;
        cuts(c, data)
            .into_iter()
            .map(|n| {
                at += n;
                (at - n, &data[at - n..at])
            })
            .collect()
    }

    #[test]
    fn without_zero_runs_the_rule_changes_nothing() {
        let data = pseudo_random(400_000);
        let zero = Chunker::new(ChunkerParams { zero_runs: true, ..params() });
        assert_eq!(cuts(&zero, &data), cuts(&Chunker::new(params()), &data));
    }

    #[test]
    fn a_zero_region_ends_the_chunk_before_it_and_becomes_minimal_chunks() {
        let c = Chunker::new(ChunkerParams { zero_runs: true, ..params() });
        let (head, zeros) = (pseudo_random(60_000), 50_000);
        let mut data = head.clone();
        data.resize(head.len() + zeros, 0);
        data.extend_from_slice(&pseudo_random(70_000)[7..]);
        let got = chunks(&c, &data);
        // The chunk holding the end of the data stops 64 bytes into the zeros.
        assert!(got.iter().any(|(at, b)| at + b.len() == head.len() + 64), "{:?}", cuts(&c, &data));
        // Inside the region: chunks of exactly min_size zeros.
        let inside: Vec<_> =
            got.iter().filter(|(at, b)| *at > head.len() && at + b.len() < head.len() + zeros).collect();
        assert_eq!(inside.len(), (zeros - 64) / 1024);
        assert!(inside.iter().all(|(_, b)| b.len() == 1024 && b.iter().all(|&x| x == 0)));
        // Streaming gives the same chunks.
        for window in [16_384usize, 20_000, 33_333] {
            assert_eq!(streamed(&c, &data, window), cuts(&c, &data), "window {window}");
        }
    }

    /// A block followed by zeros, then by different data each time (a disk
    /// image's file followed by free space): with the rule, the block's last
    /// chunk is stored once; without it, it is stored again every time,
    /// merged with what follows the zeros.
    #[test]
    fn a_block_before_zeros_deduplicates_whatever_follows_the_zeros() {
        let block = pseudo_random(100_000);
        let image = |seed: u8| {
            let mut d: Vec<u8> =
                pseudo_random(30_000 + usize::from(seed) * 777).into_iter().map(|b| b ^ seed).collect();
            d.extend_from_slice(&block);
            d.resize(d.len() + 8_000, 0);
            d.extend(pseudo_random(30_000).into_iter().map(|b| b.wrapping_add(seed)));
            d
        };
        let (one, two) = (image(1), image(2));
        let stored_twice = |zero_runs: bool| {
            let c = Chunker::new(ChunkerParams { zero_runs, ..params() });
            let first: std::collections::HashSet<&[u8]> =
                chunks(&c, &one).into_iter().map(|(_, b)| b).collect();
            chunks(&c, &two)
                .into_iter()
                .filter(|(_, b)| !first.contains(b))
                .map(|(_, b)| b.len())
                .sum::<usize>()
        };
        let (with, without) = (stored_twice(true), stored_twice(false));
        assert!(
            with + 5_000 < without,
            "new bytes in the second image: {with} with the rule, {without} without"
        );
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
            assert_eq!(streamed(&c, &data, window), whole, "window {window}");
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
