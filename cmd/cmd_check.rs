//! `arch check`: verify the repository's structure and, with --read-data,
//! every stored byte. Exit 0 when nothing is damaged (unreferenced packs
//! are information, not damage), 1 otherwise, 130 when interrupted.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use arch_archiver::{
    check, CancellationToken, CheckOptions, CheckPhase, CheckProgress, CheckReport, Problem, ReadData,
};
use clap::Args;
use parking_lot::Mutex;

use crate::cli::Cli;
use crate::progress::human;

/// How many paths of one snapshot the human output shows per problem.
const PATHS_SHOWN: usize = 10;
/// How many unreferenced packs the human output lists one by one.
const UNREFERENCED_SHOWN: usize = 20;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also download every pack, check its hash and decrypt, decompress and
    /// re-hash every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// As --read-data for part of the packs: "n/t" (part n of t; running
    /// n = 1..t covers every pack once), "x%" (a random x percent of the
    /// packs) or a SIZE such as 500M (random packs up to that many bytes).
    #[arg(long, value_name = "SUBSET", value_parser = parse_subset)]
    pub read_data_subset: Option<ReadData>,
    /// Threads reading packs (default: the number of CPUs, at most 8).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub threads: usize,
}

fn parse_subset(s: &str) -> Result<ReadData, String> {
    s.parse::<ReadData>().map_err(|e| e.to_string().trim_start_matches("invalid option: ").to_string())
}

pub fn run(cli: &Cli, args: &CheckArgs, token: &CancellationToken) -> Result<i32> {
    // Opened without its index: check reads every index file itself (after
    // the lease is taken) and reports a damaged one instead of failing to
    // open the repository. No cache: check reads the stored objects.
    let (_, backend) = crate::repo::backend_uncached(cli)?;
    let password = crate::password::get(cli, false)?;
    let repo = Arc::new(arch_archiver::Repository::open_unindexed(backend, &password)?);
    let _lease = crate::repo::lease(cli, &repo, false)?;
    let read = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => s,
        (false, None) => ReadData::None,
    };
    let t = token.clone();
    let opts =
        CheckOptions::default().read_data(read).threads(args.threads).cancel_when(move || t.is_cancelled());
    let progress = Status::new(!cli.quiet && !cli.json, cli.progress_interval);
    let report = check(&repo, &opts, &progress)?;
    progress.clear();
    if cli.json {
        println!("{}", json(&report, read));
    } else {
        print_human(&report, read, cli.quiet);
    }
    Ok(if report.cancelled {
        crate::exit::INTERRUPTED
    } else if report.is_ok() {
        crate::exit::OK
    } else {
        crate::exit::FATAL
    })
}

fn json(r: &CheckReport, read: ReadData) -> serde_json::Value {
    let problems: Vec<_> = r.problems.iter().map(problem_json).collect();
    serde_json::json!({
        "message_type": "summary",
        "ok": r.is_ok(),
        "cancelled": r.cancelled,
        "index_files": r.index_files,
        "packs": r.packs,
        "blobs": r.blobs,
        "duplicate_blobs": r.duplicate_blobs,
        "snapshots": r.snapshots,
        "trees": r.trees,
        "read_data": read != ReadData::None,
        "packs_read": r.packs_read.len(),
        "bytes_read": r.bytes_read,
        "blobs_read": r.blobs_read,
        "unreferenced_packs": r.unreferenced_packs.iter()
            .map(|(id, size)| serde_json::json!({"pack": id.to_hex(), "size": size}))
            .collect::<Vec<_>>(),
        "problems": problems,
    })
}

fn problem_json(p: &Problem) -> serde_json::Value {
    let blob_type = |t: arch_archiver::BlobType| match t {
        arch_archiver::BlobType::Data => "data",
        arch_archiver::BlobType::Tree => "tree",
    };
    serde_json::json!({
        "kind": p.kind.name(),
        "message": p.kind.to_string(),
        "pack": p.kind.pack().map(|id| id.to_hex()),
        "blobs": p.blobs.iter()
            .map(|(t, id)| serde_json::json!({"type": blob_type(*t), "id": id.to_hex()}))
            .collect::<Vec<_>>(),
        "needed_by": p.needed_by.iter()
            .map(|u| serde_json::json!({"snapshot": u.snapshot.to_hex(), "paths": u.paths}))
            .collect::<Vec<_>>(),
    })
}

fn print_human(r: &CheckReport, read: ReadData, quiet: bool) {
    if !quiet {
        let dup = if r.duplicate_blobs > 0 {
            format!(" ({} stored twice)", r.duplicate_blobs)
        } else {
            String::new()
        };
        println!("index: {} files, {} packs, {} blobs{dup}", r.index_files, r.packs, r.blobs);
        println!("snapshots: {}, {} trees", r.snapshots, r.trees);
        if read != ReadData::None {
            println!(
                "read data: {} of {} packs, {}, {} blobs verified",
                r.packs_read.len(),
                r.packs,
                human(r.bytes_read),
                r.blobs_read
            );
        }
        if !r.unreferenced_packs.is_empty() {
            let bytes: u64 = r.unreferenced_packs.iter().map(|p| p.1).sum();
            println!(
                "{} packs ({}) are not in any index (left by an interrupted or running backup; 'arch prune' removes them):",
                r.unreferenced_packs.len(),
                human(bytes)
            );
            for (id, size) in r.unreferenced_packs.iter().take(UNREFERENCED_SHOWN) {
                println!("  unreferenced pack {id} ({})", human(*size));
            }
            if r.unreferenced_packs.len() > UNREFERENCED_SHOWN {
                println!("  … and {} more", r.unreferenced_packs.len() - UNREFERENCED_SHOWN);
            }
        }
    }
    for p in &r.problems {
        println!("error: {}", p.kind);
        for u in &p.needed_by {
            let shown: Vec<&str> = u.paths.iter().take(PATHS_SHOWN).map(String::as_str).collect();
            let more = u.paths.len().saturating_sub(PATHS_SHOWN);
            let more = if more > 0 { format!(" … and {more} more") } else { String::new() };
            println!("  needed by snapshot {}: {}{more}", u.snapshot.short(), shown.join(", "));
        }
    }
    if r.cancelled {
        println!("check interrupted: the results above are incomplete");
    } else if r.problems.is_empty() {
        if !quiet {
            println!("no errors found");
        }
    } else {
        let lost: std::collections::BTreeSet<_> =
            r.problems.iter().flat_map(|p| p.needed_by.iter().map(|u| u.snapshot)).collect();
        println!(
            "{} {} found; {} {} affected",
            r.problems.len(),
            if r.problems.len() == 1 { "error" } else { "errors" },
            lost.len(),
            if lost.len() == 1 { "snapshot is" } else { "snapshots are" }
        );
    }
}

/// Status on stderr: a line per phase, and during the data check a line
/// redrawn on a terminal (or printed every interval off one).
struct Status {
    enabled: bool,
    tty: bool,
    every: Duration,
    state: Mutex<State>,
}

struct State {
    phase: Option<CheckPhase>,
    total: u64,
    done: u64,
    bytes: u64,
    started: Instant,
    last: Instant,
    drawn: bool,
}

impl Status {
    fn new(enabled: bool, interval: Option<Duration>) -> Status {
        let tty = std::io::stderr().is_terminal();
        let every =
            interval.unwrap_or(if tty { Duration::from_millis(250) } else { Duration::from_secs(60) });
        let now = Instant::now();
        let state = State { phase: None, total: 0, done: 0, bytes: 0, started: now, last: now, drawn: false };
        Status { enabled, tty, every, state: Mutex::new(state) }
    }

    fn clear(&self) {
        let mut s = self.state.lock();
        if self.enabled && self.tty && s.drawn {
            eprint!("\r\x1b[K");
            s.drawn = false;
        }
    }
}

impl CheckProgress for Status {
    fn phase(&self, phase: CheckPhase, total: u64) {
        if !self.enabled {
            return;
        }
        self.clear();
        let mut s = self.state.lock();
        *s = State {
            phase: Some(phase),
            total,
            done: 0,
            bytes: 0,
            started: Instant::now(),
            last: Instant::now(),
            drawn: false,
        };
        let what = match phase {
            CheckPhase::Index => format!("reading {total} index files"),
            CheckPhase::Packs => format!("checking {total} pack headers"),
            CheckPhase::Snapshots => format!("checking {total} snapshots and their trees"),
            CheckPhase::ReadData => format!("reading and verifying {total} packs"),
            CheckPhase::Usage => "finding the snapshots and paths that need damaged data".to_string(),
            _ => return,
        };
        eprintln!("{what}");
    }

    fn advance(&self, items: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        let mut s = self.state.lock();
        s.done += items;
        s.bytes += bytes;
        if s.phase != Some(CheckPhase::ReadData) || s.last.elapsed() < self.every {
            return;
        }
        s.last = Instant::now();
        let secs = s.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "{}/{} packs, {} ({}/s)",
            s.done,
            s.total,
            human(s.bytes),
            human((s.bytes as f64 / secs) as u64)
        );
        if self.tty {
            eprint!("\r\x1b[K{line}");
            s.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }
}
