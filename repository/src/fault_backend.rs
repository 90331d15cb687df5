//! A [`Backend`] wrapper that injects faults: failed writes, failed reads,
//! short reads, flipped bits, delays, failure after N calls, failed lists.
//!
//! Meant for tests, of arch and of programs built on it: wrap any backend,
//! describe what should go wrong in a [`FaultPlan`], run a real operation,
//! and assert it fails cleanly (an error naming the object, no panic, no
//! hang) and leaves a repository that `check` accepts.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::backend::{Backend, FileInfo, FileKind};
use crate::error::BackendError;
use crate::staging::StagingFile;

/// Which backend calls a [`FaultRule`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// [`Backend::create`] and [`Backend::create_from_file`].
    Create,
    /// [`Backend::read`] and [`Backend::read_range`].
    Read,
    /// [`Backend::list`].
    List,
    /// [`Backend::delete`].
    Delete,
    /// Every call above.
    Any,
}

/// What happens to a call a [`FaultRule`] hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultEffect {
    /// The call fails with an I/O error naming the object; nothing is
    /// stored, read, listed or deleted.
    Fail,
    /// A read returns fewer bytes than the object (or range) holds, as a
    /// lying backend would: about half of them. Other calls are unaffected.
    ShortRead,
    /// A read returns the object with one bit flipped (at a position chosen
    /// by the plan's seed), as a lying disk would.
    FlipBit,
    /// The call waits this long, then proceeds normally.
    Delay(Duration),
}

/// One fault: which calls it hits, after how many matching calls, how
/// often, and whether a retry may help.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// The calls it applies to.
    pub op: FaultOp,
    /// Only objects of this kind (`None`: every kind).
    pub kind: Option<FileKind>,
    /// What it does.
    pub effect: FaultEffect,
    /// Matching calls that pass untouched before the rule fires (0: the
    /// first matching call is hit). "Fails after N calls" is `skip: N`.
    pub skip: u64,
    /// How many matching calls it hits once it fires (`None`: all of them).
    pub times: Option<u64>,
    /// Whether injected errors are marked transient (see [`FaultBackend`]).
    pub transient: bool,
}

impl FaultRule {
    /// A rule hitting every `op` call on every kind with `effect`, from the
    /// first call on, forever, as a permanent fault.
    pub fn new(op: FaultOp, effect: FaultEffect) -> FaultRule {
        FaultRule { op, kind: None, effect, skip: 0, times: None, transient: false }
    }
    /// Restricts the rule to objects of `kind`.
    pub fn kind(mut self, kind: FileKind) -> FaultRule {
        self.kind = Some(kind);
        self
    }
    /// Lets `n` matching calls through before the rule fires.
    pub fn skip(mut self, n: u64) -> FaultRule {
        self.skip = n;
        self
    }
    /// Hits only `n` matching calls, then lets every later one through.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }
    /// Marks the injected errors transient (a retry may succeed).
    pub fn transient(mut self) -> FaultRule {
        self.transient = true;
        self
    }

    fn matches(&self, op: FaultOp, kind: FileKind) -> bool {
        (self.op == FaultOp::Any || self.op == op) && self.kind.is_none_or(|k| k == kind)
    }
}

/// A set of [`FaultRule`]s and the seed that places flipped bits.
/// Deterministic: the same plan and the same sequence of calls inject the
/// same faults.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// The rules, tried in order; the first that hits a call decides it.
    pub rules: Vec<FaultRule>,
    /// Seed for bit positions.
    pub seed: u64,
}

impl FaultPlan {
    /// A plan that injects nothing.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }
    /// Adds a rule.
    pub fn rule(mut self, rule: FaultRule) -> FaultPlan {
        self.rules.push(rule);
        self
    }
    /// Sets the seed for bit positions.
    pub fn seed(mut self, seed: u64) -> FaultPlan {
        self.seed = seed;
        self
    }
    /// Every write of `kind` (or of every kind) fails.
    pub fn fail_writes(self, kind: Option<FileKind>) -> FaultPlan {
        self.rule(FaultRule { kind, ..FaultRule::new(FaultOp::Create, FaultEffect::Fail) })
    }
    /// Every read of `kind` (or of every kind) fails.
    pub fn fail_reads(self, kind: Option<FileKind>) -> FaultPlan {
        self.rule(FaultRule { kind, ..FaultRule::new(FaultOp::Read, FaultEffect::Fail) })
    }
    /// Every read of `kind` (or of every kind) returns too few bytes.
    pub fn short_reads(self, kind: Option<FileKind>) -> FaultPlan {
        self.rule(FaultRule { kind, ..FaultRule::new(FaultOp::Read, FaultEffect::ShortRead) })
    }
    /// Every read of `kind` (or of every kind) returns one flipped bit.
    pub fn flip_bits(self, kind: Option<FileKind>) -> FaultPlan {
        self.rule(FaultRule { kind, ..FaultRule::new(FaultOp::Read, FaultEffect::FlipBit) })
    }
    /// Every call waits `d` first.
    pub fn delay(self, d: Duration) -> FaultPlan {
        self.rule(FaultRule::new(FaultOp::Any, FaultEffect::Delay(d)))
    }
    /// The first `n` calls succeed, every later one fails.
    pub fn fail_after(self, n: u64) -> FaultPlan {
        self.rule(FaultRule::new(FaultOp::Any, FaultEffect::Fail).skip(n))
    }
    /// Every list of `kind` (or of every kind) fails.
    pub fn fail_list(self, kind: Option<FileKind>) -> FaultPlan {
        self.rule(FaultRule { kind, ..FaultRule::new(FaultOp::List, FaultEffect::Fail) })
    }
}

/// A [`Backend`] that forwards to another one and injects the faults of a
/// [`FaultPlan`].
///
/// Injected errors are [`BackendError::Io`] whose path names the object
/// (`<location>/<folder>/<name>`) and whose message says the fault was
/// injected. A transient fault's source has kind
/// [`io::ErrorKind::TimedOut`] (what a network backend reports when a retry
/// may help), so [`BackendError::is_transient`] reports it and a
/// [`RetryBackend`](crate::RetryBackend) around this wrapper retries it; a
/// permanent one has [`io::ErrorKind::Other`]. The wrapper itself never
/// retries.
#[derive(Debug)]
pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    state: Mutex<State>,
    injected: AtomicU64,
}

#[derive(Debug)]
struct State {
    plan: FaultPlan,
    /// Per rule: matching calls seen, and calls hit.
    seen: Vec<(u64, u64)>,
    rng: u64,
}

enum Decision {
    Pass,
    Fail { transient: bool },
    Short,
    Flip(u64),
}

impl FaultBackend {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> FaultBackend {
        FaultBackend { inner, state: Mutex::new(State::new(plan)), injected: AtomicU64::new(0) }
    }

    /// Replaces the plan (counters restart); `FaultPlan::new()` turns
    /// injection off.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.state.lock() = State::new(plan);
    }

    /// How many calls had a fault injected so far (delays included).
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn decide(&self, op: FaultOp, kind: FileKind) -> Decision {
        let mut delay = None;
        let decision = {
            let mut st = self.state.lock();
            let mut decision = Decision::Pass;
            for i in 0..st.plan.rules.len() {
                let rule = &st.plan.rules[i];
                if !rule.matches(op, kind) {
                    continue;
                }
                let (skip, times, effect, transient) = (rule.skip, rule.times, rule.effect, rule.transient);
                let (seen, hit) = &mut st.seen[i];
                *seen += 1;
                if *seen <= skip || times.is_some_and(|t| *hit >= t) {
                    continue;
                }
                *hit += 1;
                self.injected.fetch_add(1, Ordering::Relaxed);
                decision = match effect {
                    FaultEffect::Delay(d) => {
                        delay = Some(d);
                        continue;
                    }
                    FaultEffect::Fail => Decision::Fail { transient },
                    FaultEffect::ShortRead if op == FaultOp::Read => Decision::Short,
                    FaultEffect::FlipBit if op == FaultOp::Read => Decision::Flip(st.next_random()),
                    FaultEffect::ShortRead | FaultEffect::FlipBit => continue,
                };
                break;
            }
            decision
        };
        // Sleep outside the lock so a delay does not serialise other threads.
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        decision
    }

    fn error(&self, op: &'static str, kind: FileKind, name: &str, transient: bool) -> BackendError {
        let path = match kind {
            FileKind::Config => PathBuf::from(format!("{}/config", self.inner.location())),
            k => PathBuf::from(format!("{}/{}/{}", self.inner.location(), k.dir(), name)),
        };
        let (ek, what) = if transient {
            (io::ErrorKind::TimedOut, "injected transient fault (a retry may succeed)")
        } else {
            (io::ErrorKind::Other, "injected permanent fault")
        };
        BackendError::Io { op, path, source: io::Error::new(ek, what) }
    }

    fn read_with(
        &self,
        kind: FileKind,
        name: &str,
        read: impl FnOnce() -> Result<Vec<u8>, BackendError>,
    ) -> Result<Vec<u8>, BackendError> {
        match self.decide(FaultOp::Read, kind) {
            Decision::Fail { transient } => Err(self.error("read", kind, name, transient)),
            Decision::Pass => read(),
            Decision::Short => {
                let mut data = read()?;
                data.truncate(data.len() / 2);
                Ok(data)
            }
            Decision::Flip(r) => {
                let mut data = read()?;
                if !data.is_empty() {
                    let bit = r % (data.len() as u64 * 8);
                    data[(bit / 8) as usize] ^= 1 << (bit % 8);
                }
                Ok(data)
            }
        }
    }
}

impl State {
    fn new(plan: FaultPlan) -> State {
        let seen = vec![(0, 0); plan.rules.len()];
        let rng = plan.seed ^ 0x9E37_79B9_7F4A_7C15;
        State { plan, seen, rng: rng.max(1) }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

impl Backend for FaultBackend {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn exists(&self) -> Result<bool, BackendError> {
        match self.decide(FaultOp::Read, FileKind::Config) {
            Decision::Fail { transient } => Err(self.error("stat", FileKind::Config, "config", transient)),
            _ => self.inner.exists(),
        }
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        self.inner.create_layout()
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        match self.decide(FaultOp::Create, kind) {
            Decision::Fail { transient } => Err(self.error("create", kind, name, transient)),
            _ => self.inner.create(kind, name, data),
        }
    }

    fn staging_file(&self, kind: FileKind) -> Result<StagingFile, BackendError> {
        self.inner.staging_file(kind)
    }

    fn create_from_file(
        &self,
        kind: FileKind,
        name: &str,
        staged: &mut StagingFile,
    ) -> Result<(), BackendError> {
        match self.decide(FaultOp::Create, kind) {
            Decision::Fail { transient } => Err(self.error("create", kind, name, transient)),
            _ => self.inner.create_from_file(kind, name, staged),
        }
    }

    fn remove_stale_temp_files(&self, older_than: Duration) -> Result<u64, BackendError> {
        self.inner.remove_stale_temp_files(older_than)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.read_with(kind, name, || self.inner.read(kind, name))
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.read_with(kind, name, || self.inner.read_range(kind, name, offset, length))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        match self.decide(FaultOp::List, kind) {
            Decision::Fail { transient } => Err(self.error("list", kind, "", transient)),
            _ => self.inner.list(kind),
        }
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        match self.decide(FaultOp::Delete, kind) {
            Decision::Fail { transient } => Err(self.error("delete", kind, name, transient)),
            _ => self.inner.delete(kind, name),
        }
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
    use super::*;
    use crate::local::LocalBackend;

    fn backend(plan: FaultPlan) -> (tempfile::TempDir, FaultBackend) {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path());
        local.create_layout().unwrap();
        (dir, FaultBackend::new(Arc::new(local), plan))
    }

    const NAME: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn fail_after_counts_calls_and_names_the_object() {
        let (_d, b) = backend(FaultPlan::new().fail_after(1));
        b.create(FileKind::Snapshot, NAME, b"hello").unwrap();
        let e = b.read(FileKind::Snapshot, NAME).unwrap_err();
        assert!(e.to_string().contains(&format!("snapshots/{NAME}")), "{e}");
        assert!(!e.is_transient());
        assert_eq!(b.injected(), 1);
        b.set_plan(FaultPlan::new());
        assert_eq!(b.read(FileKind::Snapshot, NAME).unwrap(), b"hello");
    }

    #[test]
    fn transient_faults_stop_after_their_count() {
        let rule = FaultRule::new(FaultOp::Create, FaultEffect::Fail).times(2).transient();
        let (_d, b) = backend(FaultPlan::new().rule(rule));
        for _ in 0..2 {
            assert!(b.create(FileKind::Index, NAME, b"x").unwrap_err().is_transient());
        }
        b.create(FileKind::Index, NAME, b"x").unwrap();
    }

    #[test]
    fn a_retry_wrapper_retries_transient_faults_and_not_permanent_ones() {
        use crate::retry::{RetryBackend, RetryPolicy};
        let transient = FaultRule::new(FaultOp::Create, FaultEffect::Fail).times(2).transient();
        let (_d, b) = backend(FaultPlan::new().rule(transient));
        let b = Arc::new(b);
        let policy = RetryPolicy::default().base_delay(Duration::from_millis(1));
        let retrying = RetryBackend::new(b.clone(), policy.clone(), None);
        retrying.create(FileKind::Index, NAME, b"x").unwrap();
        assert_eq!(b.injected(), 2);
        b.set_plan(FaultPlan::new().rule(FaultRule::new(FaultOp::Read, FaultEffect::Fail)));
        assert!(retrying.read(FileKind::Index, NAME).is_err());
        assert_eq!(b.injected(), 3, "a permanent fault is not retried: one more injection");
    }

    #[test]
    fn short_reads_and_bit_flips_change_the_bytes_deterministically() {
        let data = vec![7u8; 1000];
        let (_d, b) = backend(FaultPlan::new().short_reads(Some(FileKind::Pack)).seed(3));
        b.create(FileKind::Pack, NAME, &data).unwrap();
        assert_eq!(b.read(FileKind::Pack, NAME).unwrap().len(), 500);
        assert_eq!(b.read_range(FileKind::Pack, NAME, 100, 10).unwrap().len(), 5);
        b.set_plan(FaultPlan::new().flip_bits(None).seed(3));
        let a = b.read(FileKind::Pack, NAME).unwrap();
        b.set_plan(FaultPlan::new().flip_bits(None).seed(3));
        assert_eq!(b.read(FileKind::Pack, NAME).unwrap(), a);
        let diff: u32 = a.iter().zip(&data).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert_eq!(diff, 1);
    }

    #[test]
    fn list_faults_hit_only_lists_of_their_kind() {
        let (_d, b) = backend(FaultPlan::new().fail_list(Some(FileKind::Lock)));
        assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
        let e = b.list(FileKind::Lock).unwrap_err();
        assert!(e.to_string().contains("locks"), "{e}");
    }

    #[test]
    fn delays_delay_and_then_pass() {
        let (_d, b) = backend(FaultPlan::new().delay(Duration::from_millis(30)));
        let t = std::time::Instant::now();
        b.create(FileKind::Key, NAME, b"k").unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(b.read(FileKind::Key, NAME).unwrap(), b"k");
    }
}
