//! Inputs shared by the micro-benchmarks in `benches/` (`cargo bench` in
//! this directory).

/// `len` bytes of seeded pseudo-random (incompressible) data.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `len` bytes of log-like (compressible) text.
pub fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-11-22T10:{:02}:{:02}Z worker[{}] handled request {i} in {}ms\n",
                i / 60 % 60,
                i % 60,
                i % 7,
                i * 37 % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}
