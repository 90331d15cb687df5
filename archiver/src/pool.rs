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
