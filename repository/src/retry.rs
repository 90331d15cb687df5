//! Retrying transient failures of a remote backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, FileInfo, FileKind};
use crate::check::CancelCheck;
use crate::error::BackendError;
use crate::staging::StagingFile;

/// When to give up retrying a call that fails with transient errors.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Most attempts per call (including the first).
    pub max_attempts: u32,
    /// No new attempt starts later than this after the first one.
    pub max_time: Duration,
    /// Wait before the second attempt; doubles with every attempt.
    pub base_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 12 attempts within 5 minutes, waits from 0.25 s doubling up to 30 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 12,
            max_time: Duration::from_secs(300),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Sets [`RetryPolicy::max_attempts`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Sets [`RetryPolicy::max_time`].
    pub fn max_time(mut self, d: Duration) -> Self {
        self.max_time = d;
        self
    }
    /// Sets [`RetryPolicy::base_delay`].
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }
    /// Sets [`RetryPolicy::max_delay`].
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The wait after failed attempt `attempt` (1-based): exponential, with
    /// "equal jitter" (half fixed, half random) so that many threads that
    /// failed together do not come back together.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << (attempt - 1).min(20)).min(self.max_delay);
        let half = exp / 2;
        let mut r = [0u8; 8];
        let frac = match getrandom::fill(&mut r) {
            Ok(()) => (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        half + half.mul_f64(frac)
    }
}

/// A backend that retries the transient failures of another
/// ([`BackendError::is_transient`]) with exponential backoff and jitter,
/// within a [`RetryPolicy`]. Permanent errors (not found, permission
/// denied, malformed requests) are returned at once. When the budget runs
/// out the last error comes back as [`BackendError::RetriesExhausted`].
///
/// A retried call may follow an attempt that succeeded on the server but
/// whose answer was lost; the wrapper makes that harmless: a retried
/// `create` that finds the object already there with the same bytes
/// succeeds, and a retried `delete` that finds it gone succeeds.
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
    cancel: Option<CancelCheck>,
}

impl std::fmt::Debug for RetryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBackend").field("inner", &self.inner).field("policy", &self.policy).finish()
    }
}

impl RetryBackend {
    /// Wraps `inner`; `cancel` (if any) cuts waits short when it returns true.
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy, cancel: Option<CancelCheck>) -> RetryBackend {
        RetryBackend { inner, policy, cancel }
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|f| f())
    }

    /// Sleeps up to `d`, in short steps so that a cancellation is seen
    /// promptly; returns false if cancelled.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// Runs `call` until it succeeds, fails permanently, or the budget is
    /// spent. `call` gets the attempt number (1-based).
    fn run<T>(&self, mut call: impl FnMut(u32) -> Result<T, BackendError>) -> Result<T, BackendError> {
        let start = Instant::now();
        let mut attempt = 1;
        loop {
            let err = match call(attempt) {
                Err(e) if e.is_transient() => e,
                other => return other,
            };
            let remaining = self.policy.max_time.saturating_sub(start.elapsed());
            let wait = self.policy.delay(attempt).min(remaining);
            if attempt >= self.policy.max_attempts || remaining.is_zero() || !self.sleep(wait) {
                if attempt == 1 {
                    return Err(err);
                }
                return Err(BackendError::RetriesExhausted {
                    attempts: attempt,
                    elapsed: start.elapsed(),
                    last: Box::new(err),
                });
            }
            attempt += 1;
        }
    }
}

impl Backend for RetryBackend {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn exists(&self) -> Result<bool, BackendError> {
        self.run(|_| self.inner.exists())
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        self.run(|_| self.inner.create_layout())
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.run(|attempt| match self.inner.create(kind, name, data) {
            // An earlier attempt may have stored it and lost the answer.
            Err(BackendError::AlreadyExists { .. })
                if attempt > 1 && self.inner.read(kind, name)? == data =>
            {
                Ok(())
            }
            r => r,
        })
    }

    fn staging_file(&self, kind: FileKind) -> Result<StagingFile, BackendError> {
        self.run(|_| self.inner.staging_file(kind))
    }

    fn create_from_file(
        &self,
        kind: FileKind,
        name: &str,
        staged: &mut StagingFile,
    ) -> Result<(), BackendError> {
        self.run(|attempt| match self.inner.create_from_file(kind, name, staged) {
            // An earlier attempt may have stored it and lost the answer.
            Err(BackendError::AlreadyExists { .. })
                if attempt > 1 && self.inner.read(kind, name)? == staged.read_all()? =>
            {
                Ok(())
            }
            r => r,
        })
    }

    fn remove_stale_temp_files(&self, older_than: Duration) -> Result<u64, BackendError> {
        self.run(|_| self.inner.remove_stale_temp_files(older_than))
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.run(|_| self.inner.read(kind, name))
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.run(|_| self.inner.read_range(kind, name, offset, length))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        self.run(|_| self.inner.list(kind))
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.run(|attempt| match self.inner.delete(kind, name) {
            // An earlier attempt may have deleted it and lost the answer.
            Err(BackendError::NotFound { .. }) if attempt > 1 => Ok(()),
            r => r,
        })
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }

    fn tree_packs(&self, packs: &[String], complete: bool) {
        self.inner.tree_packs(packs, complete);
    }
    fn prefetch(&self, kind: FileKind, name: &str, ranges: &[std::ops::Range<u64>]) {
        self.inner.prefetch(kind, name, ranges);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;
    use crate::error::RemoteErrorClass;
    use crate::local::LocalBackend;

    /// A local backend whose first `fail` calls fail with `class`; with
    /// `lose_answer`, a failing create or delete still happens (the answer
    /// is lost on the way back).
    #[derive(Debug)]
    struct Flaky {
        inner: LocalBackend,
        fail: AtomicU32,
        calls: AtomicU32,
        class: RemoteErrorClass,
        lose_answer: bool,
    }

    impl Flaky {
        fn new(dir: &std::path::Path, fail: u32, class: RemoteErrorClass) -> Flaky {
            let inner = LocalBackend::new(dir);
            inner.create_layout().unwrap();
            Flaky { inner, fail: AtomicU32::new(fail), calls: AtomicU32::new(0), class, lose_answer: false }
        }
        fn fault(&self, op: &'static str) -> Result<(), BackendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let left = self.fail.load(Ordering::SeqCst);
            if left == 0 {
                return Ok(());
            }
            self.fail.store(left - 1, Ordering::SeqCst);
            Err(BackendError::Remote {
                op,
                object: "x".into(),
                location: "flaky".into(),
                cause: "connection reset".into(),
                class: self.class,
            })
        }
    }

    impl Backend for Flaky {
        fn location(&self) -> &str {
            "flaky"
        }
        fn exists(&self) -> Result<bool, BackendError> {
            self.fault("stat")?;
            self.inner.exists()
        }
        fn create_layout(&self) -> Result<(), BackendError> {
            self.inner.create_layout()
        }
        fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            if self.lose_answer {
                let r = self.inner.create(kind, name, data);
                self.fault("upload")?;
                return r;
            }
            self.fault("upload")?;
            self.inner.create(kind, name, data)
        }
        fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
            self.fault("read")?;
            self.inner.read(kind, name)
        }
        fn read_range(&self, kind: FileKind, name: &str, o: u64, l: u64) -> Result<Vec<u8>, BackendError> {
            self.fault("read")?;
            self.inner.read_range(kind, name, o, l)
        }
        fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
            self.fault("list")?;
            self.inner.list(kind)
        }
        fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
            if self.lose_answer {
                let r = self.inner.delete(kind, name);
                self.fault("delete")?;
                return r;
            }
            self.fault("delete")?;
            self.inner.delete(kind, name)
        }
        fn connections(&self) -> usize {
            5
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy::default().base_delay(Duration::from_millis(1)).max_delay(Duration::from_millis(4))
    }

    fn wrap(f: &Arc<Flaky>, p: RetryPolicy) -> RetryBackend {
        RetryBackend::new(f.clone(), p, None)
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(Flaky::new(dir.path(), 3, RemoteErrorClass::Transient));
        let b = wrap(&f, quick());
        let name = "ab".repeat(32);
        b.create(FileKind::Pack, &name, b"data").unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 4, "three failures, then the success");
        assert_eq!(b.read_range(FileKind::Pack, &name, 1, 2).unwrap(), b"at");
        assert_eq!(b.list(FileKind::Pack).unwrap().len(), 1);
        assert_eq!(b.connections(), 5, "the wrapper reports the inner backend's connections");
    }

    #[test]
    fn permanent_and_auth_errors_fail_at_once() {
        for class in [RemoteErrorClass::Permanent, RemoteErrorClass::Auth] {
            let dir = tempfile::tempdir().unwrap();
            let f = Arc::new(Flaky::new(dir.path(), 5, class));
            let e = wrap(&f, quick()).list(FileKind::Index).unwrap_err();
            assert_eq!(f.calls.load(Ordering::SeqCst), 1, "{class:?} is not retried");
            assert!(matches!(e, BackendError::Remote { class: c, .. } if c == class), "{e}");
            assert_eq!(e.is_auth(), class == RemoteErrorClass::Auth);
        }
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(Flaky::new(dir.path(), 0, RemoteErrorClass::Transient));
        let e = wrap(&f, quick()).read(FileKind::Snapshot, &"cd".repeat(32)).unwrap_err();
        assert!(matches!(e, BackendError::NotFound { .. }), "not found is final: {e}");
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_budget_bounds_attempts_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(Flaky::new(dir.path(), u32::MAX, RemoteErrorClass::Transient));
        let e = wrap(&f, quick().max_attempts(4)).exists().unwrap_err();
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
        assert!(matches!(e, BackendError::RetriesExhausted { attempts: 4, .. }), "{e}");
        assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
        assert!(e.to_string().contains("connection reset"), "the cause is kept: {e}");

        let f = Arc::new(Flaky::new(dir.path(), u32::MAX, RemoteErrorClass::Transient));
        let policy = RetryPolicy::default()
            .max_attempts(1000)
            .max_time(Duration::from_millis(300))
            .base_delay(Duration::from_millis(20))
            .max_delay(Duration::from_millis(80));
        let t = Instant::now();
        let e = wrap(&f, policy).exists().unwrap_err();
        assert!(matches!(e, BackendError::RetriesExhausted { .. }), "{e}");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
        let calls = f.calls.load(Ordering::SeqCst);
        assert!((3..40).contains(&calls), "backoff spaces out the attempts: {calls}");
    }

    #[test]
    fn delays_grow_with_jitter_and_stay_capped() {
        let p =
            RetryPolicy::default().base_delay(Duration::from_millis(100)).max_delay(Duration::from_secs(1));
        for attempt in 1..30 {
            let exp = (100u64 << (attempt - 1).min(20)).min(1000);
            let d = p.delay(attempt).as_millis() as u64;
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d} ms not in [{}, {exp}]", exp / 2);
        }
        let many: std::collections::HashSet<_> = (0..20).map(|_| p.delay(5)).collect();
        assert!(many.len() > 10, "delays are jittered");
    }

    #[test]
    fn a_lost_answer_does_not_fail_a_retried_create_or_delete() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Flaky::new(dir.path(), 1, RemoteErrorClass::Transient);
        f.lose_answer = true;
        let f = Arc::new(f);
        let b = wrap(&f, quick());
        b.create(FileKind::Config, "config", b"cfg").unwrap();
        // The lost create, the retry that finds it there, the read-back.
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
        assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"cfg");
        // Other bytes under the same name are still refused.
        let e = b.create(FileKind::Config, "config", b"other").unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e}");
        let name = "ef".repeat(32);
        b.create(FileKind::Lock, &name, b"lock").unwrap();
        f.fail.store(1, Ordering::SeqCst);
        b.delete(FileKind::Lock, &name).unwrap();
        assert!(b.list(FileKind::Lock).unwrap().is_empty());
        assert!(matches!(b.delete(FileKind::Lock, &name), Err(BackendError::NotFound { .. })));
    }

    #[test]
    fn cancellation_cuts_the_wait_short() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(Flaky::new(dir.path(), u32::MAX, RemoteErrorClass::Transient));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let policy =
            RetryPolicy::default().base_delay(Duration::from_secs(10)).max_delay(Duration::from_secs(10));
        let b = RetryBackend::new(f.clone(), policy, Some(Arc::new(move || s.load(Ordering::SeqCst))));
        let t = Instant::now();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                stop.store(true, Ordering::SeqCst);
            });
            let e = b.list(FileKind::Pack).unwrap_err();
            assert!(matches!(e, BackendError::RetriesExhausted { .. }) || e.is_transient(), "{e}");
        });
        assert!(t.elapsed() < Duration::from_secs(2), "waited {:?}", t.elapsed());
    }
}
