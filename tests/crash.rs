//! Crash consistency: `arch backup`, `forget`, `prune` and `copy` killed
//! with SIGKILL at seeded random moments spread over their whole run.
//! After every kill `arch check` (sometimes `--read-data`) must pass, no
//! snapshot that existed before the kill may be missing (except those the
//! killed `forget` was told to remove), and every snapshot must restore
//! byte for byte to the source it was made from.
//!
//! CI runs a short version; `crash_harness_soak` (ignored) runs 200+ kills:
//! `cargo test --test integration crash::crash_harness_soak -- --ignored --nocapture`.
//! `ARCH_CRASH_SEED` and `ARCH_CRASH_KILLS` override seed and count.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use arch_archiver::{Id, Restore, Snapshot};

use crate::common::{self, ArchEnv};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Backup,
    Forget,
    Prune,
    Copy,
}

const KEEP: usize = 3;

#[derive(Debug, Default)]
struct Tally {
    /// Runs killed while still running.
    kills: u32,
    /// Runs that finished before their kill moment came.
    finished_first: u32,
    invalid_repos: u32,
    lost_snapshots: u32,
    bad_restores: u32,
    unlocks: u32,
    per_op: std::collections::BTreeMap<String, u32>,
    failures: Vec<String>,
}

struct Harness {
    work: PathBuf,
    env: ArchEnv,
    repo: PathBuf,
    dst: PathBuf,
    rng: common::XorShift,
    next_src: u64,
    /// Longest unkilled run seen per operation.
    duration: std::collections::BTreeMap<Op, Duration>,
    tally: Tally,
    restores: u64,
}

impl Harness {
    fn new(seed: u64) -> (tempfile::TempDir, Harness) {
        let (t, work) = common::tempdir();
        let repo = work.join("repo");
        let opts = arch_archiver::InitOptions::default()
            .chunk_sizes(16 << 10, 32 << 10, 64 << 10)
            .pack_size(128 << 10);
        let r = common::init_repo_with(&repo, opts.clone());
        let dst = work.join("dst");
        common::init_repo_with(&dst, opts.chunker(r.config().chunker.clone()));
        let env = ArchEnv::new(&work).var("ARCH_FROM_PASSWORD", common::PASSWORD);
        let h = Harness {
            work,
            env,
            repo,
            dst,
            rng: common::XorShift::new(seed),
            next_src: 0,
            duration: Default::default(),
            tally: Tally::default(),
            restores: 0,
        };
        (t, h)
    }

    /// A new source tree: 8 files shared by every tree (dedup) and 8 new.
    fn new_source(&mut self) -> PathBuf {
        let n = self.next_src;
        self.next_src += 1;
        let src = self.work.join(format!("src-{n}"));
        for i in 0..16u64 {
            let p = src.join(format!("d{}/f{i}", i % 4));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let seed = if i < 8 { 7_000 + i } else { n * 100 + i };
            common::write_random_file(&p, seed, 24 << 10 | (seed % 4096));
        }
        src
    }

    fn args(&mut self, op: Op) -> Vec<std::ffi::OsString> {
        let repo = self.repo.clone();
        match op {
            Op::Backup => {
                let src = self.new_source();
                common::args(&[&"backup", &"--repo", &repo, &src])
            }
            Op::Forget => common::args(&[
                &"forget",
                &"--repo",
                &repo,
                &"--keep-last",
                &KEEP.to_string(),
                &"--group-by",
                &"host",
            ]),
            Op::Prune => {
                common::args(&[&"prune", &"--repo", &repo, &"--grace", &"0", &"--max-unused", &"0%"])
            }
            Op::Copy => common::args(&[&"copy", &"--repo", &self.dst.clone(), &"--from-repo", &repo]),
        }
    }

    fn snapshots(dir: &Path) -> Vec<(Id, Snapshot)> {
        common::open_repo(dir).list_snapshots().unwrap()
    }

    fn spawn(&mut self, op: Op) -> Child {
        let args = self.args(op);
        self.env.spawn(&args)
    }

    /// Runs `op` to completion (measuring it).
    fn run_whole(&mut self, op: Op) {
        let t = Instant::now();
        let child = self.spawn(op);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{op:?}: {}", String::from_utf8_lossy(&out.stderr));
        let d = self.duration.entry(op).or_default();
        *d = (*d).max(t.elapsed());
    }

    /// `arch check` (with `--read-data` when asked) on `dir`; a lease left
    /// by the killed process that blocks it is removed with `arch unlock`.
    fn check(&mut self, dir: &Path, read_data: bool, what: &str) {
        let mut a = common::args(&[&"check", &"--repo", &dir]);
        if read_data {
            a.push("--read-data".into());
        }
        let mut r = self.env.run(&a);
        if r.code == 11 {
            self.tally.unlocks += 1;
            self.env.run(&common::args(&[&"unlock", &"--repo", &dir])).ok("unlock");
            r = self.env.run(&a);
        }
        if r.code != 0 {
            self.tally.invalid_repos += 1;
            self.tally.failures.push(format!("{what}: check exit {}: {}{}", r.code, r.stdout, r.stderr));
        }
    }

    /// Every snapshot of `dir` restores to exactly its source tree.
    fn restore_all(&mut self, dir: &Path, what: &str) {
        let repo = common::open_repo(dir);
        for (id, snap) in repo.list_snapshots().unwrap() {
            let out = self.work.join(format!("restore-{}", self.restores));
            self.restores += 1;
            let src = PathBuf::from(&snap.paths[0]);
            let ok = Restore::new(&repo, &snap, &out).run().map_err(|e| e.to_string()).and_then(|_| {
                std::panic::catch_unwind(|| {
                    common::assert_trees_equal(&src, &common::restored_path(&out, &src))
                })
                .map_err(|_| "restored tree differs".to_string())
            });
            if let Err(e) = ok {
                self.tally.bad_restores += 1;
                self.tally.failures.push(format!("{what}: snapshot {} does not restore: {e}", id.short()));
            }
            let _ = std::fs::remove_dir_all(&out);
        }
    }

    fn pick(&mut self) -> Op {
        // Every fifth run goes to an operation not killed yet, so even a
        // short run kills each of them.
        let missing = [Op::Backup, Op::Forget, Op::Prune, Op::Copy]
            .into_iter()
            .find(|op| !self.tally.per_op.contains_key(&format!("{op:?}")));
        if let Some(op) = missing.filter(|_| self.rng.next_u64().is_multiple_of(5)) {
            return op;
        }
        match self.rng.next_u64() % 20 {
            0..=7 => Op::Backup,
            8..=10 => Op::Forget,
            11..=15 => Op::Prune,
            _ => Op::Copy,
        }
    }

    fn one_kill(&mut self, k: u32) {
        let op = self.pick();
        // Keep the number of snapshots (and so of restores) bounded.
        if Self::snapshots(&self.repo).len() > 2 * KEEP {
            self.run_whole(Op::Forget);
        }
        let before: Vec<Id> = Self::snapshots(&self.repo).into_iter().map(|s| s.0).collect();
        let dst_before: BTreeSet<Id> = Self::snapshots(&self.dst).into_iter().map(|s| s.0).collect();
        let dur = self.duration[&op];
        let delay = Duration::from_micros(self.rng.next_u64() % (dur.as_micros() as u64 * 13 / 10 + 1));
        let mut child = self.spawn(op);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            self.tally.kills += 1;
            *self.tally.per_op.entry(format!("{op:?}")).or_default() += 1;
        } else {
            self.tally.finished_first += 1;
        }
        child.wait().unwrap();
        let what = format!("kill {k} ({op:?} after {delay:?})");

        self.check(&self.repo.clone(), k % 4 == 3, &what);
        let after: BTreeSet<Id> = Self::snapshots(&self.repo).into_iter().map(|s| s.0).collect();
        // forget may have removed all but the newest KEEP (snapshots are
        // listed oldest first, one host, so the policy keeps the last ones).
        let must_keep =
            if op == Op::Forget { &before[before.len().saturating_sub(KEEP)..] } else { &before[..] };
        for id in must_keep {
            if !after.contains(id) {
                self.tally.lost_snapshots += 1;
                self.tally.failures.push(format!("{what}: snapshot {} lost", id.short()));
            }
        }
        self.restore_all(&self.repo.clone(), &what);
        if op == Op::Copy {
            self.check(&self.dst.clone(), k % 4 == 3, &format!("{what}, copy target"));
            let dst_after: BTreeSet<Id> = Self::snapshots(&self.dst).into_iter().map(|s| s.0).collect();
            for id in dst_before.difference(&dst_after) {
                self.tally.lost_snapshots += 1;
                self.tally.failures.push(format!("{what}: copied snapshot {} lost", id.short()));
            }
            self.restore_all(&self.dst.clone(), &format!("{what}, copy target"));
        }
    }
}

/// Runs the harness; returns the tally.
fn crash_harness(kills: u32, seed: u64) -> Tally {
    let kills = std::env::var("ARCH_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(kills);
    let seed = std::env::var("ARCH_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed);
    let (_t, mut h) = Harness::new(seed);
    // Measure each operation unkilled (twice for backup: first and
    // incremental), which also gives the later runs something to work on.
    for op in [Op::Backup, Op::Backup, Op::Copy, Op::Forget, Op::Prune, Op::Backup] {
        h.run_whole(op);
    }
    let start = Instant::now();
    let mut k = 0;
    while h.tally.kills < kills || h.tally.per_op.len() < 4 {
        h.one_kill(k);
        k += 1;
        assert!(k < kills * 4 + 20, "kills keep missing: {:?}", h.tally);
    }
    // Finally everything runs to completion on the crashed-into repository.
    for op in [Op::Backup, Op::Copy, Op::Forget, Op::Prune] {
        h.run_whole(op);
    }
    h.check(&h.repo.clone(), true, "final");
    h.check(&h.dst.clone(), true, "final, copy target");
    h.restore_all(&h.repo.clone(), "final");
    h.restore_all(&h.dst.clone(), "final, copy target");
    let t = &h.tally;
    println!(
        "crash harness (seed {seed}): {} kills ({:?}), {} runs finished before their kill, {} invalid repositories, \
         {} lost snapshots, {} bad restores, {} unlocks needed, {} restores, {:.1}s; measured durations {:?}",
        t.kills,
        t.per_op,
        t.finished_first,
        t.invalid_repos,
        t.lost_snapshots,
        t.bad_restores,
        t.unlocks,
        h.restores,
        start.elapsed().as_secs_f64(),
        h.duration
    );
    h.tally
}

fn assert_clean(t: &Tally) {
    assert!(
        t.invalid_repos == 0 && t.lost_snapshots == 0 && t.bad_restores == 0,
        "{} failures:\n{}",
        t.failures.len(),
        t.failures.join("\n")
    );
}

#[test]
fn crash_harness_short() {
    let t = crash_harness(20, 0xC0FFEE);
    assert_clean(&t);
    assert!(t.per_op.len() == 4, "every operation was killed at least once: {:?}", t.per_op);
}

/// The long run: 200+ kills (about ten minutes on a 2-core machine).
#[test]
#[ignore = "soak test: 220 kills"]
fn crash_harness_soak() {
    assert_clean(&crash_harness(220, 0x5EED_2026));
}
