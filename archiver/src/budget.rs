//! A budget for data in flight between pools: chunk bytes between the
//! FileSaver and the BlobSaver, pack bytes between restore's readers and
//! writers, planned entries between restore's walk and its finisher.
//!
//! A queue bounded by job count holds anything from a few KiB (small files)
//! to count x 8 MiB (maximal chunks); bounding the bytes keeps memory the
//! same whatever the chunk sizes. A job holds a [`Permit`] from the moment
//! its buffer is filled until the BlobSaver has sealed it into a pack.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::ArchiveError;
use crate::scope::Scope;

/// How long a blocked acquire sleeps before looking at the scope again: the
/// longest a cancel can go unnoticed by a FileSaver waiting for room.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Bytes that may be held at once; see the module docs.
pub(crate) struct ByteBudget {
    capacity: usize,
    state: Mutex<Usage>,
    freed: Condvar,
}

#[derive(Default)]
struct Usage {
    held: usize,
    peak: usize,
}

/// Bytes held from a [`ByteBudget`]; given back when dropped (also when a
/// job is dropped unprocessed on cancel).
pub(crate) struct Permit<'a> {
    budget: &'a ByteBudget,
    bytes: usize,
}

impl ByteBudget {
    /// A budget of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> ByteBudget {
        ByteBudget { capacity: capacity.max(1), state: Mutex::new(Usage::default()), freed: Condvar::new() }
    }

    /// Waits until `bytes` fit in the budget, then holds them. A request
    /// larger than the whole budget is granted when nothing else is held,
    /// so one oversized chunk cannot block forever (the peak is then that
    /// chunk alone). Fails with `Cancelled` once the scope is cancelled.
    pub(crate) fn acquire(&self, scope: &Scope, bytes: usize) -> Result<Permit<'_>, ArchiveError> {
        let mut st = self.state.lock();
        while st.held > 0 && st.held + bytes > self.capacity {
            if scope.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            self.freed.wait_for(&mut st, CANCEL_POLL);
        }
        st.held += bytes;
        st.peak = st.peak.max(st.held);
        Ok(Permit { budget: self, bytes })
    }

    /// The bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.state.lock().held
    }

    /// The most bytes held at once so far.
    #[cfg(test)]
    pub(crate) fn peak(&self) -> usize {
        self.state.lock().peak
    }

    /// The budget's size.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.budget.state.lock();
        st.held -= self.bytes;
        drop(st);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn holds_at_most_the_capacity_and_lets_an_oversized_request_through_alone() {
        let scope = Scope::new(&CancellationToken::new());
        let b = ByteBudget::new(100);
        let a = b.acquire(&scope, 60).unwrap();
        let c = b.acquire(&scope, 40).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.acquire(&scope, 10).map(|p| p.bytes));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "a request that does not fit waits");
            drop(a);
            assert_eq!(waiter.join().unwrap().unwrap(), 10);
        });
        drop(c);
        let big = b.acquire(&scope, 500).unwrap();
        assert_eq!(b.peak(), 500);
        drop(big);
    }

    #[test]
    fn a_cancel_wakes_a_blocked_acquire() {
        let token = CancellationToken::new();
        let scope = Scope::new(&token);
        let b = ByteBudget::new(10);
        let _held = b.acquire(&scope, 10).unwrap();
        let start = Instant::now();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.acquire(&scope, 5).map(|_| ()));
            std::thread::sleep(Duration::from_millis(30));
            token.cancel();
            assert!(matches!(waiter.join().unwrap(), Err(ArchiveError::Cancelled)));
        });
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
