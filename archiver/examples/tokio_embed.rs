//! Embed arch in a tokio application: the backup runs on the blocking
//! pool (it uses its own threads and blocking I/O), the async side keeps
//! serving, and a request to stop cancels the backup through its token.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_archiver::{
    check, ArchiveError, Backup, CancellationToken, CheckOptions, InitOptions, KdfParams, LocalBackend,
    NoCheckProgress, Repository, StreamSource,
};

/// A source that never ends (think: a live database dump that is taking
/// too long), so only the cancel can stop the backup.
struct Endless(u64);

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
        Ok(buf.len())
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tmp = tempfile::tempdir()?;
    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Arc::new(Repository::init(backend, b"example password", &InitOptions::default().kdf(kdf))?);

    let token = CancellationToken::new();
    let backup = {
        let (repo, token) = (repo.clone(), token.clone());
        tokio::task::spawn_blocking(move || {
            let source = StreamSource::new("live.dump", Box::new(Endless(42)));
            Backup::stream(&repo, source).cancel_token(token).run()
        })
    };

    // The runtime stays responsive while the backup runs.
    let mut ticks = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    while ticks < 6 {
        interval.tick().await;
        ticks += 1;
    }

    // Stop it; the token is tokio-util's, so `token.cancelled().await`
    // works for other tasks too.
    let cancelled_at = Instant::now();
    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(2), backup).await??;
    let latency = cancelled_at.elapsed();
    assert!(matches!(result, Err(ArchiveError::Cancelled)), "{result:?}");
    assert!(latency < Duration::from_secs(2));

    // The repository is clean: no snapshot, stored packs indexed.
    let repo2 = repo.clone();
    let report =
        tokio::task::spawn_blocking(move || check(&repo2, &CheckOptions::default(), &NoCheckProgress))
            .await??;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(repo.list_snapshots()?.is_empty());
    println!("backup cancelled {latency:?} after the request; repository clean");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    run().await
}

#[test]
fn example_runs() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run()).unwrap();
}
