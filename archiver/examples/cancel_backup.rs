//! Cancel a running backup from another thread through its
//! `CancellationToken`.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_archiver::{
    check, ArchiveError, Backup, CancellationToken, CheckOptions, InitOptions, KdfParams, LocalBackend,
    NoCheckProgress, Repository, StreamSource,
};

/// An endless stream of pseudo-random bytes: a backup of it only ends when
/// cancelled.
struct Endless(u64);

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
        Ok(buf.len())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Repository::init(backend, b"example password", &InitOptions::default().kdf(kdf))?;

    let token = CancellationToken::new();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            token.cancel();
            Instant::now()
        })
    };
    let source = StreamSource::new("endless.bin", Box::new(Endless(0x9E37_79B9_7F4A_7C15)));
    let result = Backup::stream(&repo, source).cancel_token(token).run();
    let stopped = Instant::now();
    let cancelled_at = canceller.join().expect("canceller thread");
    assert!(matches!(result, Err(ArchiveError::Cancelled)), "{result:?}");
    let latency = stopped.duration_since(cancelled_at);
    assert!(latency < Duration::from_secs(2), "stopped {latency:?} after the cancel");
    // No snapshot, and what was stored before the stop is indexed.
    assert!(repo.list_snapshots()?.is_empty());
    assert!(check(&repo, &CheckOptions::default(), &NoCheckProgress)?.is_ok());
    println!("backup cancelled; it stopped {latency:?} after the token was cancelled");
    Ok(())
}

#[test]
fn example_runs() {
    main().unwrap();
}
