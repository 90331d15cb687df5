//! Progress on the command line.
//!
//! - On a terminal: one status line on stderr, redrawn four times a second.
//! - Off a terminal: a plain status line on stderr every `--progress-interval`.
//! - `--json`: line-delimited JSON on stdout: `status` objects at the same
//!   cadence (every second on a terminal), `warning` objects as they happen;
//!   the command then prints a `summary` (or `error`) object last.
//! - `--quiet`: nothing but warnings and errors.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arch_archiver::Progress;
use parking_lot::Mutex;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    Terminal,
    Lines(Duration),
    Json(Duration),
}

impl Mode {
    pub fn choose(quiet: bool, json: bool, interval: Option<Duration>) -> Mode {
        let tty = std::io::stderr().is_terminal();
        match (quiet, json) {
            (true, _) => Mode::Quiet,
            (false, true) => {
                Mode::Json(interval.unwrap_or(if tty { Duration::from_secs(1) } else { MINUTE }))
            }
            (false, false) if tty && interval.is_none() => Mode::Terminal,
            (false, false) => Mode::Lines(interval.unwrap_or(MINUTE)),
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    total_known: AtomicBool,
    files_done: AtomicU64,
    bytes_read: AtomicU64,
    bytes_skipped: AtomicU64,
    stored: AtomicU64,
    current: Mutex<BTreeSet<PathBuf>>,
}

struct Sink {
    state: Arc<State>,
    mode: Mode,
}

impl Progress for Sink {
    fn scan_progress(&self, files: u64, bytes: u64, done: bool) {
        self.state.total_files.store(files, Ordering::Relaxed);
        self.state.total_bytes.store(bytes, Ordering::Relaxed);
        self.state.total_known.store(done, Ordering::Relaxed);
    }
    fn file_started(&self, path: &Path) {
        self.state.current.lock().insert(path.to_path_buf());
    }
    fn file_done(&self, path: &Path, bytes: u64) {
        self.state.files_done.fetch_add(1, Ordering::Relaxed);
        // A file that was not read (unchanged since the parent) is done at once.
        if !self.state.current.lock().remove(path) {
            self.state.bytes_skipped.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    fn bytes_processed(&self, n: u64) {
        self.state.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
    fn blob_stored(&self, _raw: u64, stored: u64) {
        self.state.stored.fetch_add(stored, Ordering::Relaxed);
    }
    fn skipped(&self, path: &Path, reason: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json(_) => emit(
                &serde_json::json!({"message_type": "note", "path": path, "message": format!("not saved: {reason}")}),
            ),
            _ => eprintln!("{}note: {} not saved: {reason}", self.clear(), path.display()),
        }
    }
    fn warning(&self, path: &Path, message: &str) {
        match self.mode {
            Mode::Json(_) => {
                emit(&serde_json::json!({"message_type": "warning", "path": path, "message": message}))
            }
            _ => eprintln!("{}warning: {}: {message}", self.clear(), path.display()),
        }
    }
}

impl Sink {
    fn clear(&self) -> &'static str {
        if self.mode == Mode::Terminal {
            "\r\x1b[K"
        } else {
            ""
        }
    }
}

fn emit(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// A running progress display; `finish` stops it.
pub struct Reporter {
    state: Arc<State>,
    mode: Mode,
    /// Dropping the sender wakes the ticker at once, so `finish` does not
    /// wait out a sleep (every command ends with it).
    ticker: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Reporter {
    /// `verb` says what the bytes are ("read", "written").
    pub fn start(mode: Mode, verb: &'static str) -> Reporter {
        let state = Arc::new(State::default());
        let ticker = match mode {
            Mode::Quiet => None,
            Mode::Terminal => Some(Duration::from_millis(250)),
            Mode::Lines(d) | Mode::Json(d) => Some(d),
        }
        .map(|every| {
            let st = Arc::clone(&state);
            let (stop, stopped) = mpsc::channel();
            (stop, std::thread::spawn(move || tick(&st, &stopped, mode, every, verb)))
        });
        Reporter { state, mode, ticker }
    }

    pub fn sink(&self) -> Arc<dyn Progress> {
        Arc::new(Sink { state: Arc::clone(&self.state), mode: self.mode })
    }

    pub fn finish(mut self) {
        if let Some((stop, t)) = self.ticker.take() {
            drop(stop);
            let _ = t.join();
        }
    }
}

fn tick(st: &State, stopped: &mpsc::Receiver<()>, mode: Mode, every: Duration, verb: &str) {
    let start = Instant::now();
    let mut next = start + every;
    loop {
        // Nothing is ever sent: this waits for the interval or for finish().
        if let Err(mpsc::RecvTimeoutError::Disconnected) =
            stopped.recv_timeout(next.saturating_duration_since(Instant::now()))
        {
            if mode == Mode::Terminal {
                eprint!("\r\x1b[K");
            }
            return;
        }
        next += every;
        let elapsed = start.elapsed();
        match mode {
            Mode::Terminal => {
                let line = status_line(st, elapsed, verb);
                eprint!("\r\x1b[K{}", fit(&line, terminal_width()));
                let _ = std::io::stderr().flush();
            }
            Mode::Lines(_) => eprintln!("{}", status_line(st, elapsed, verb)),
            Mode::Json(_) => emit(&status_json(st, elapsed)),
            Mode::Quiet => return,
        }
    }
}

struct Snapshot {
    files_done: u64,
    bytes_done: u64,
    total_files: u64,
    total_bytes: u64,
    total_known: bool,
    current: Vec<PathBuf>,
}

fn read(st: &State) -> Snapshot {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Snapshot {
        files_done: g(&st.files_done),
        bytes_done: g(&st.bytes_read) + g(&st.bytes_skipped),
        total_files: g(&st.total_files),
        total_bytes: g(&st.total_bytes),
        total_known: st.total_known.load(Ordering::Relaxed),
        current: st.current.lock().iter().take(2).cloned().collect(),
    }
}

/// Fraction done and seconds left, once the pre-scan has counted something.
fn eta(s: &Snapshot, elapsed: Duration) -> (Option<f64>, Option<u64>) {
    if s.total_bytes == 0 || s.bytes_done == 0 {
        return (None, None);
    }
    let frac = (s.bytes_done as f64 / s.total_bytes as f64).min(1.0);
    if !s.total_known {
        return (Some(frac), None);
    }
    let left = elapsed.as_secs_f64() * (1.0 - frac) / frac;
    (Some(frac), Some(left.round() as u64))
}

fn status_line(st: &State, elapsed: Duration, verb: &str) -> String {
    let s = read(st);
    let (frac, left) = eta(&s, elapsed);
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut line = format!("[{}]", clock(elapsed.as_secs()));
    if let Some(f) = frac {
        line.push_str(&format!(" {:5.1}%", f * 100.0));
    }
    let of = |n: String, total: String| if s.total_files > 0 { format!("{n} / {total}") } else { n };
    line.push_str(&format!(
        "  {} files  {} {verb}  {}/s",
        of(s.files_done.to_string(), s.total_files.to_string()),
        of(human(s.bytes_done), human(s.total_bytes)),
        human((st.bytes_read.load(Ordering::Relaxed) as f64 / secs) as u64),
    ));
    if let Some(l) = left {
        line.push_str(&format!("  ETA {}", clock(l)));
    }
    if let Some(c) = s.current.first() {
        line.push_str(&format!("  {}", c.display()));
    }
    line
}

fn status_json(st: &State, elapsed: Duration) -> serde_json::Value {
    let s = read(st);
    let (frac, left) = eta(&s, elapsed);
    serde_json::json!({
        "message_type": "status",
        "seconds_elapsed": elapsed.as_secs(),
        "seconds_remaining": left,
        "percent_done": frac,
        "total_files": s.total_files,
        "files_done": s.files_done,
        "total_bytes": s.total_bytes,
        "bytes_done": s.bytes_done,
        "current_files": s.current,
    })
}

fn clock(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; on failure we use 80.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 10 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

/// Cuts a status line to the terminal width (keeping the start, which holds
/// the numbers), so it never wraps and the redraw stays on one line.
fn fit(line: &str, width: usize) -> String {
    let max = width.saturating_sub(1);
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut s: String = line.chars().take(max.saturating_sub(3)).collect();
    s.push_str("...");
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_fit() {
        let s = Snapshot {
            files_done: 5,
            bytes_done: 250,
            total_files: 10,
            total_bytes: 1000,
            total_known: true,
            current: vec![],
        };
        let (frac, left) = eta(&s, Duration::from_secs(10));
        assert_eq!(frac, Some(0.25));
        assert_eq!(left, Some(30));
        assert_eq!(clock(3725), "1:02:05");
        assert_eq!(fit("abcdefghij", 8), "abcd...");
        assert_eq!(fit("abc", 80), "abc");
        assert_eq!(human(1536), "1.50 KiB");
    }
}
