//! Which packs `--read-data-subset` reads.

use std::str::FromStr;

use arch_index::PackId;

use crate::error::RepoError;

/// Which packs a check downloads and verifies completely.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum ReadData {
    /// None: structure only (the default; cheap on any backend).
    #[default]
    None,
    /// Every pack the index lists.
    All,
    /// Part `n` of `t` (1 ≤ n ≤ t): the packs whose id, read as a big-endian
    /// u64 prefix, is `n - 1` modulo `t`. Runs n = 1, 2, …, t together read
    /// every pack exactly once (for a repository that did not change).
    Part {
        /// Which part, 1-based.
        n: u32,
        /// How many parts.
        t: u32,
    },
    /// A random share of the packs, in percent (0 < x ≤ 100), rounded up
    /// to whole packs.
    Percent(f64),
    /// Random packs until their total size reaches this many bytes (the
    /// last one picked may cross it).
    Size(u64),
}

impl FromStr for ReadData {
    type Err = RepoError;

    /// Parses a subset as `arch check --read-data-subset` takes it: `n/t`,
    /// `x%`, or a size with an optional K, M, G or T suffix (binary units).
    fn from_str(s: &str) -> Result<ReadData, RepoError> {
        let t = s.trim();
        let bad = |why: &str| {
            RepoError::InvalidOption(format!(
                "read-data subset {s:?}: {why}; use n/t (e.g. 2/5), a percentage (10%) or a size (500M)"
            ))
        };
        if let Some((n, total)) = t.split_once('/') {
            let n: u32 = n.trim().parse().map_err(|_| bad("n is not a number"))?;
            let total: u32 = total.trim().parse().map_err(|_| bad("t is not a number"))?;
            if n == 0 || total == 0 || n > total {
                return Err(bad("need 1 <= n <= t"));
            }
            return Ok(ReadData::Part { n, t: total });
        }
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("the percentage must be above 0 and at most 100"));
            }
            return Ok(ReadData::Percent(p));
        }
        match crate::size::parse_size(t) {
            Some(0) => Err(bad("the size must be above 0")),
            Some(n) => Ok(ReadData::Size(n)),
            None => Err(bad("not a size")),
        }
    }
}

/// The packs `spec` selects out of `packs` (id, size).
pub(super) fn select(spec: ReadData, packs: &[(PackId, u64)], seed: u64) -> Vec<(PackId, u64)> {
    let prefix = |id: &PackId| u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"));
    let shuffled = || {
        let mut v = packs.to_vec();
        v.sort_by_cached_key(|(id, _)| {
            let mut h = blake3::Hasher::new();
            h.update(&seed.to_le_bytes());
            h.update(&id.0);
            *h.finalize().as_bytes()
        });
        v
    };
    match spec {
        ReadData::None => Vec::new(),
        ReadData::All => packs.to_vec(),
        ReadData::Part { n, t } => packs
            .iter()
            .filter(|(id, _)| t > 0 && prefix(id) % u64::from(t) == u64::from(n.saturating_sub(1)))
            .copied()
            .collect(),
        ReadData::Percent(p) => {
            let want = ((packs.len() as f64) * p / 100.0).ceil() as usize;
            shuffled().into_iter().take(want.min(packs.len())).collect()
        }
        ReadData::Size(limit) => {
            let mut total = 0u64;
            shuffled()
                .into_iter()
                .take_while(|(_, s)| {
                    let take = total < limit;
                    total += s;
                    take
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch_index::Id;

    fn packs(n: usize) -> Vec<(PackId, u64)> {
        (0..n).map(|i| (Id::hash(&i.to_le_bytes()), 1000 + i as u64)).collect()
    }

    #[test]
    fn subsets_parse() {
        assert_eq!("2/5".parse::<ReadData>().unwrap(), ReadData::Part { n: 2, t: 5 });
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Percent(10.0));
        assert_eq!("500M".parse::<ReadData>().unwrap(), ReadData::Size(500 << 20));
        assert_eq!("1gib".parse::<ReadData>().unwrap(), ReadData::Size(1 << 30));
        assert_eq!("4096".parse::<ReadData>().unwrap(), ReadData::Size(4096));
        for bad in ["0/3", "4/3", "1/0", "x/2", "0%", "101%", "abc", "0", ""] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parts_cover_every_pack_once() {
        let all = packs(200);
        let mut seen = Vec::new();
        for n in 1..=7 {
            seen.extend(select(ReadData::Part { n, t: 7 }, &all, 0));
        }
        seen.sort();
        let mut want = all.clone();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn random_subsets_respect_their_bounds() {
        let all = packs(200);
        assert_eq!(select(ReadData::Percent(10.0), &all, 1).len(), 20);
        assert_eq!(select(ReadData::Percent(0.1), &all, 1).len(), 1);
        assert_eq!(select(ReadData::Percent(100.0), &all, 1).len(), 200);
        assert_ne!(select(ReadData::Percent(10.0), &all, 1), select(ReadData::Percent(10.0), &all, 2));
        let some = select(ReadData::Size(5000), &all, 3);
        let total: u64 = some.iter().map(|p| p.1).sum();
        assert!(total >= 5000 && total - some.last().unwrap().1 < 5000, "{total}");
        assert_eq!(select(ReadData::Size(1), &all, 3).len(), 1);
    }
}
