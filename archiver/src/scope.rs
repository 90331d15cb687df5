//! One cancellation scope shared by every pool of a run.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::ArchiveError;

/// Never sent: the channel only closes, which wakes every selector at once.
enum Never {}

/// The shared fate of all workers of one backup or restore.
///
/// The first error is kept and cancels the scope; every blocking send and
/// receive made through the scope also waits on a "done" channel whose
/// sender is dropped on cancel, so every blocked thread wakes at once. The
/// caller's CancellationToken cancels the same scope.
pub(crate) struct Scope {
    token: CancellationToken,
    first_error: Mutex<Option<ArchiveError>>,
    done_tx: Mutex<Option<Sender<Never>>>,
    done_rx: Receiver<Never>,
}

impl Scope {
    /// A scope that is cancelled with `parent` (and on the first error).
    pub(crate) fn new(parent: &CancellationToken) -> Scope {
        Scope::sharing(&parent.child_token())
    }

    /// A scope whose cancellation is `token` itself, not a child of it: a
    /// failure in any pool cancels `token`, so work that only sees the
    /// token (a planner walking a tree) stops too. [`Scope::finish`]
    /// cancels it as well: give it a token of its own.
    pub(crate) fn sharing(token: &CancellationToken) -> Scope {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Scope {
            token: token.clone(),
            first_error: Mutex::new(None),
            done_tx: Mutex::new(Some(tx)),
            done_rx: rx,
        }
    }

    /// Blocks until the scope is cancelled, then wakes every blocked worker.
    /// Run on its own thread for the duration of the run; [`Scope::finish`]
    /// releases it when the run ends normally.
    pub(crate) fn watch(&self) {
        block_on(self.token.cancelled());
        self.done_tx.lock().take();
    }

    /// Ends the scope after a run (releases the watcher thread).
    pub(crate) fn finish(&self) {
        self.token.cancel();
    }

    /// Records `err` if it is the first, and cancels everything.
    pub(crate) fn fail(&self, err: ArchiveError) {
        {
            let mut slot = self.first_error.lock();
            // "Cancelled" is a consequence, never the cause.
            if slot.is_none() && !err.is_cancelled() {
                *slot = Some(err);
            }
        }
        self.token.cancel();
        self.done_tx.lock().take();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Takes the first recorded error, if any.
    pub(crate) fn take_error(&self) -> Option<ArchiveError> {
        self.first_error.lock().take()
    }

    /// Sends unless the scope is cancelled first.
    pub(crate) fn send<T>(&self, tx: &Sender<T>, v: T) -> Result<(), ArchiveError> {
        if self.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        select! {
            send(tx, v) -> r => r.map_err(|_| ArchiveError::Cancelled),
            recv(self.done_rx) -> _ => Err(ArchiveError::Cancelled),
        }
    }

    /// Receives the next item; `None` when the channel is closed and
    /// drained, or the scope is cancelled.
    pub(crate) fn recv<T>(&self, rx: &Receiver<T>) -> Option<T> {
        if self.is_cancelled() {
            return None;
        }
        select! {
            recv(rx) -> r => r.ok(),
            recv(self.done_rx) -> _ => None,
        }
    }
}

/// Runs a worker body, turning a panic into a scope failure so the other
/// pools are cancelled instead of waiting forever for the dead worker.
pub(crate) fn guarded(scope: &Scope, name: &'static str, f: impl FnOnce() -> Result<(), ArchiveError>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => scope.fail(e),
        Err(_) => scope.fail(ArchiveError::WorkerPanic(name)),
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives one future on the current thread (the token's `cancelled()` needs
/// no runtime, only a waker).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn external_cancel_wakes_blocked_senders_and_receivers() {
        let token = CancellationToken::new();
        let scope = Scope::new(&token);
        let (tx, rx) = crossbeam_channel::bounded::<u32>(0);
        let (_tx2, rx2) = crossbeam_channel::bounded::<u32>(0);
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| scope.watch());
            s.spawn(|| assert!(scope.send(&tx, 1).is_err()));
            s.spawn(|| assert!(scope.recv(&rx2).is_none()));
            std::thread::sleep(Duration::from_millis(50));
            token.cancel();
        });
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(scope.take_error().is_none(), "a user cancel is not an error");
        drop(rx);
    }

    #[test]
    fn first_error_wins_and_panics_become_errors() {
        let scope = Scope::new(&CancellationToken::new());
        guarded(&scope, "test", || Err(ArchiveError::Invalid("first".into())));
        guarded(&scope, "test", || Err(ArchiveError::Invalid("second".into())));
        guarded(&scope, "test", || panic!("boom"));
        assert!(scope.is_cancelled());
        assert!(matches!(scope.take_error(), Some(ArchiveError::Invalid(m)) if m == "first"));
    }
}
