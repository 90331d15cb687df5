//! Back up a directory with a progress bar on stderr.
//!
//! `cargo run -p arch-archiver --example backup_progress [DIR]` backs up DIR
//! (default: a generated sample tree) into a temporary repository.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arch_archiver::{Backup, BackupOptions, InitOptions, KdfParams, LocalBackend, Progress, Repository};

/// A one-line bar: bytes read of the pre-scanned total.
#[derive(Default)]
struct Bar {
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress for Bar {
    fn scan_progress(&self, _files: u64, bytes: u64, _done: bool) {
        self.total.store(bytes, Ordering::Relaxed);
    }
    fn bytes_processed(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let total = self.total.load(Ordering::Relaxed).max(done).max(1);
        let filled = (done * 40 / total) as usize;
        eprint!("\r[{}{}] {:>3}%", "#".repeat(filled), " ".repeat(40 - filled), done * 100 / total);
        let _ = std::io::stderr().flush();
    }
}

fn sample_tree(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("docs"))?;
    for i in 0..20u8 {
        std::fs::write(dir.join(format!("docs/file{i}.txt")), vec![i; 200_000])?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let source = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => {
            let s = tmp.path().join("source");
            sample_tree(&s)?;
            s
        }
    };
    // A cheap key derivation keeps the example fast; use the default in real use.
    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Repository::init(backend, b"example password", &InitOptions::default().kdf(kdf))?;

    let bar = Arc::new(Bar::default());
    // The pre-scan counts the total first, so the bar knows 100 %.
    let result = Backup::new(&repo, [&source])
        .options(BackupOptions::default().prescan(true).tag("example"))
        .progress(bar.clone())
        .run()?;
    eprintln!();
    let id = result.snapshot_id.expect("not a dry run");
    let summary = result.snapshot.summary.expect("a new snapshot has a summary");
    println!(
        "snapshot {} saved: {} bytes read, {} new files",
        id.short(),
        summary.bytes_read,
        summary.files_new
    );
    assert_eq!(bar.done.load(Ordering::Relaxed), summary.bytes_read);
    Ok(())
}

#[test]
fn example_runs() {
    main().unwrap();
}
