//! Recycled byte buffers. Chunk buffers are up to megabytes each; a fresh
//! one comes from the kernel as untouched pages that fault in, zeroed, as
//! the chunk is copied in. Reusing them keeps a run's memory flat and
//! spares those faults: a fifth of a first backup's page faults went to
//! fresh chunk buffers before the pool picked buffers by size and kept
//! them through short runs of small files.
//! Small buffers are not pooled: the allocator serves them well, and a
//! recycled large buffer would hold megabytes for a few bytes of data.

use parking_lot::Mutex;

/// Buffers smaller than this are allocated and freed, not pooled.
const MIN_POOLED: usize = 128 << 10;
/// Small requests in a row after which one idle large buffer is let go:
/// a tree of small files after the large ones should not keep their
/// buffers resident, but one small file between two large chunks should
/// not cost the next large chunk a fresh buffer.
const RELEASE_AFTER: usize = 256;

pub(crate) struct BufPool {
    idle: Mutex<Idle>,
    max_idle: usize,
    max_idle_bytes: usize,
}

#[derive(Default)]
struct Idle {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
    small_streak: usize,
}

impl BufPool {
    /// A pool keeping at most `n` idle buffers, of at most `bytes` of
    /// capacity together.
    pub(crate) fn new(n: usize, bytes: usize) -> BufPool {
        BufPool { idle: Mutex::new(Idle::default()), max_idle: n.max(1), max_idle_bytes: bytes }
    }

    /// An empty buffer with room for `capacity` bytes: for a large request,
    /// the smallest idle buffer that holds it (else the largest, grown).
    pub(crate) fn get(&self, capacity: usize) -> Vec<u8> {
        if capacity < MIN_POOLED {
            let released = {
                let mut idle = self.idle.lock();
                idle.small_streak += 1;
                if idle.small_streak >= RELEASE_AFTER {
                    idle.small_streak = 0;
                    idle.take(|bufs| (0..bufs.len()).max_by_key(|&i| bufs[i].capacity()))
                } else {
                    None
                }
            };
            drop(released);
            return Vec::with_capacity(capacity);
        }
        let found = {
            let mut idle = self.idle.lock();
            idle.small_streak = 0;
            idle.take(|bufs| {
                let fits = (0..bufs.len()).filter(|&i| bufs[i].capacity() >= capacity);
                fits.min_by_key(|&i| bufs[i].capacity())
                    .or_else(|| (0..bufs.len()).max_by_key(|&i| bufs[i].capacity()))
            })
        };
        match found {
            Some(mut v) => {
                v.clear();
                v.reserve_exact(capacity);
                v
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Returns a buffer; dropped if it is small or the pool is full.
    pub(crate) fn put(&self, v: Vec<u8>) {
        if v.capacity() < MIN_POOLED {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.bufs.len() < self.max_idle && idle.bytes + v.capacity() <= self.max_idle_bytes {
            idle.bytes += v.capacity();
            idle.bufs.push(v);
            return;
        }
        drop(idle);
        drop(v);
    }
}

impl Idle {
    fn take(&mut self, pick: impl FnOnce(&[Vec<u8>]) -> Option<usize>) -> Option<Vec<u8>> {
        let v = self.bufs.swap_remove(pick(&self.bufs)?);
        self.bytes -= v.capacity();
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_idle_buffer_that_fits_is_reused() {
        let pool = BufPool::new(4, 64 << 20);
        let (small, big) = (pool.get(600 << 10), pool.get(3 << 20));
        let (small_ptr, big_ptr) = (small.as_ptr(), big.as_ptr());
        pool.put(big);
        pool.put(small);
        let fit = pool.get(500 << 10);
        assert_eq!(fit.as_ptr(), small_ptr, "best fit");
        let again = pool.get(2 << 20);
        assert_eq!(again.as_ptr(), big_ptr, "the one that fits");
        assert!(again.capacity() >= 2 << 20);
    }

    #[test]
    fn a_few_small_requests_keep_the_idle_buffers_a_long_run_lets_them_go() {
        let pool = BufPool::new(4, 64 << 20);
        let big = pool.get(1 << 20);
        let ptr = big.as_ptr();
        pool.put(big);
        pool.put(Vec::with_capacity(1 << 20));
        for _ in 0..RELEASE_AFTER - 1 {
            assert!(pool.get(4 << 10).capacity() < MIN_POOLED);
        }
        let again = pool.get(512 << 10);
        assert_eq!(again.as_ptr(), ptr, "small files between large chunks do not cost the pool its buffers");
        pool.put(again);
        for _ in 0..2 * RELEASE_AFTER {
            pool.get(4 << 10);
        }
        assert!(pool.idle.lock().bufs.is_empty(), "a long run of small files releases the idle buffers");
    }

    #[test]
    fn idle_buffers_are_bounded_by_count_and_bytes() {
        let pool = BufPool::new(3, 3 << 20);
        for _ in 0..5 {
            pool.put(Vec::with_capacity(1 << 20));
        }
        pool.put(Vec::with_capacity(4 << 10));
        let idle = pool.idle.lock();
        assert_eq!((idle.bufs.len(), idle.bytes), (3, 3 << 20));
        drop(idle);
        let pool = BufPool::new(8, 3 << 20);
        for _ in 0..5 {
            pool.put(Vec::with_capacity(1 << 20));
        }
        assert_eq!(pool.idle.lock().bytes, 3 << 20);
    }
}
