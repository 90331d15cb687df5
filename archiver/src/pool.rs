//! Recycled byte buffers. Chunk and pack buffers are megabytes each; reusing
//! them keeps a run's memory flat (the allocator otherwise keeps freed large
//! blocks around, and peak RSS grows with the number of allocations).

use crossbeam_channel::{bounded, Receiver, Sender};

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

    /// An empty buffer, recycled if one is idle.
    pub(crate) fn get(&self, capacity: usize) -> Vec<u8> {
        match self.rx.try_recv() {
            Ok(mut v) => {
                v.clear();
                v.reserve(capacity);
                v
            }
            Err(_) => Vec::with_capacity(capacity),
        }
    }

    /// Returns a buffer; dropped if the pool is full.
    pub(crate) fn put(&self, v: Vec<u8>) {
        let _ = self.tx.try_send(v);
    }
}
