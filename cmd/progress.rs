//! Terminal progress: a status line on stderr, redrawn while the engine
//! runs, only when stderr is a terminal. Warnings are printed as they come.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_archiver::Progress;

#[derive(Default)]
pub struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
    stored: AtomicU64,
    stop: AtomicBool,
}

pub struct TermProgress {
    counters: Arc<Counters>,
    quiet: bool,
    ticker: Option<std::thread::JoinHandle<()>>,
}

/// Counters, whether to stay silent, and the line prefix that clears the
/// status line (empty off a terminal).
struct Sink(Arc<Counters>, bool, &'static str);

impl Progress for Sink {
    fn file_done(&self, _path: &Path, _bytes: u64) {
        self.0.files.fetch_add(1, Ordering::Relaxed);
    }
    fn bytes_processed(&self, n: u64) {
        self.0.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn blob_stored(&self, _raw: u64, stored: u64) {
        self.0.stored.fetch_add(stored, Ordering::Relaxed);
    }
    fn skipped(&self, path: &Path, reason: &str) {
        if !self.1 {
            eprintln!("{}note: {} not saved: {reason}", self.2, path.display());
        }
    }
    fn warning(&self, path: &Path, message: &str) {
        if !self.1 {
            eprintln!("{}warning: {}: {message}", self.2, path.display());
        }
    }
}

impl TermProgress {
    /// `verb` names the work ("backed up", "restored").
    pub fn start(quiet: bool, verb: &'static str) -> TermProgress {
        let counters = Arc::new(Counters::default());
        let ticker = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let c = Arc::clone(&counters);
            std::thread::spawn(move || {
                let start = Instant::now();
                while !c.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let secs = start.elapsed().as_secs_f64().max(0.001);
                    let bytes = c.bytes.load(Ordering::Relaxed);
                    eprint!(
                        "\r\x1b[K[{:>5.1}s] {} files, {} {verb}, {}/s, {} stored",
                        secs,
                        c.files.load(Ordering::Relaxed),
                        human(bytes),
                        human((bytes as f64 / secs) as u64),
                        human(c.stored.load(Ordering::Relaxed)),
                    );
                    let _ = std::io::stderr().flush();
                }
                eprint!("\r\x1b[K");
            })
        });
        TermProgress { counters, quiet, ticker }
    }

    pub fn sink(&self) -> Arc<dyn Progress> {
        let clear = if self.ticker.is_some() { "\r\x1b[K" } else { "" };
        Arc::new(Sink(Arc::clone(&self.counters), self.quiet, clear))
    }

    pub fn finish(mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}
