//! Recycled byte buffers. Chunk buffers are up to megabytes each; reusing
//! them keeps a run's memory flat (the allocator otherwise keeps freed large
//! blocks around, and peak RSS grows with the number of allocations).
//! Small buffers are not pooled: the allocator serves them well, and a
//! recycled large buffer would hold megabytes for a few bytes of data.

use crossbeam_channel::{bounded, Receiver, Sender};

/// Buffers smaller than this are allocated and freed, not pooled.
const MIN_POOLED: usize = 128 << 10;

pub(crate) struct BufPool {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl BufPool {
    /// A pool keeping at most `n` idle buffers.
    pub(crate) fn new(n: usize) -> BufPool {
        let (tx, rx) = bounded(n.max(1));
        BufPool { tx, rx }
    }

    /// An empty buffer with room for `capacity` bytes, recycled if one is
    /// idle and the request is not small.
    pub(crate) fn get(&self, capacity: usize) -> Vec<u8> {
        if capacity < MIN_POOLED {
            // Small chunks (a tree of small files) do not need the idle
            // large buffers of the big files before them: let one go, so
            // they do not stay resident under the small files' memory.
            drop(self.rx.try_recv());
            return Vec::with_capacity(capacity);
        }
        match self.rx.try_recv() {
            Ok(mut v) => {
                v.clear();
                v.reserve_exact(capacity);
                v
            }
            Err(_) => Vec::with_capacity(capacity),
        }
    }

    /// Returns a buffer; dropped if it is small or the pool is full.
    pub(crate) fn put(&self, v: Vec<u8>) {
        if v.capacity() >= MIN_POOLED {
            let _ = self.tx.try_send(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_recycled_and_let_go_once_requests_turn_small() {
        let pool = BufPool::new(4);
        let big = pool.get(1 << 20);
        let ptr = big.as_ptr();
        pool.put(big);
        let again = pool.get(512 << 10);
        assert_eq!(again.as_ptr(), ptr, "an idle large buffer is reused");
        pool.put(again);
        pool.put(Vec::with_capacity(1 << 20));
        // Two small requests: each lets one idle large buffer go.
        assert!(pool.get(4 << 10).capacity() < MIN_POOLED);
        assert!(pool.get(4 << 10).capacity() < MIN_POOLED);
        assert!(pool.rx.is_empty(), "idle large buffers are released under small requests");
    }
}
