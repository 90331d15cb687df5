//! Property tests of the chunker: chunks cover the input exactly, respect
//! the size bounds, and streaming in any buffer size gives the chunks of
//! the whole input.

use proptest::prelude::*;

use crate::chunker::{streamed, Chunker};
use crate::config::ChunkerParams;

fn params(seed: u64, zero_runs: bool) -> ChunkerParams {
    ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096, seed, zero_runs }
}

/// Pseudo-random bytes; with `runs` 1, long zero runs (cut by max_size, or
/// by the zero rule); with 2, runs of 57 to 71 zero bytes at every offset
/// modulo 8, around the 64 the rule needs.
fn data(seed: u64, len: usize, runs: u8) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut d: Vec<u8> =
        (0..len).map(|i| if runs == 1 && (i / 3000) % 2 == 1 { 0 } else { next() as u8 }).collect();
    if runs == 2 {
        let mut at = 0;
        while at < len {
            let r = next();
            let (start, n) = (at + (r % 700) as usize, 57 + (r >> 32) as usize % 15);
            d[start.min(len)..(start + n).min(len)].fill(0);
            at = start + n + 1;
        }
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunks_cover_the_input_within_bounds(seed: u64, len in 0usize..60_000, runs in 0u8..3, zero_runs: bool) {
        let d = data(seed, len, runs);
        let c = Chunker::new(params(seed, zero_runs));
        let mut cuts = Vec::new();
        c.cut(&d, true, &mut cuts);
        prop_assert_eq!(cuts.iter().sum::<usize>(), d.len());
        let mut at = 0;
        for (i, &n) in cuts.iter().enumerate() {
            prop_assert!(n <= 4096, "chunk {} is {} bytes", i, n);
            prop_assert!(n >= 256 || i + 1 == cuts.len(), "chunk {} is {} bytes", i, n);
            if zero_runs {
                // No chunk runs on past 64 zero bytes once it has its minimum.
                let chunk = &d[at..at + n];
                for p in 256..n {
                    prop_assert!(chunk[p - 64..p].iter().any(|&b| b != 0), "chunk {} runs on past zeros at {}", i, p);
                }
            }
            // A chunk not ended by 64 zero bytes ends where FastCDC alone
            // ends it.
            let zero_cut = zero_runs && n >= 256 && d[at + n - 64..at + n].iter().all(|&b| b == 0);
            if !zero_cut {
                let mut cdc = fastcdc::v2020::FastCDC::with_level_and_seed(
                    &d[at..], 256, 1024, 4096, fastcdc::v2020::Normalization::Level1, seed,
                );
                prop_assert_eq!(cdc.next().map(|c| c.length), Some(n), "chunk {}", i);
            }
            at += n;
        }
    }

    #[test]
    fn streaming_in_any_buffer_size_gives_the_same_chunks(
        seed: u64, len in 0usize..40_000, window in 4096usize..12_000, runs in 0u8..3, zero_runs: bool,
    ) {
        let d = data(seed, len, runs);
        let c = Chunker::new(params(seed ^ 7, zero_runs));
        let mut whole = Vec::new();
        c.cut(&d, true, &mut whole);
        prop_assert_eq!(streamed(&c, &d, window), whole);
    }
}
