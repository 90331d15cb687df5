//! Profile hooks: shell commands run before and after `arch run`'s steps,
//! with the outcome in ARCH_* environment variables (docs/CRON.md).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arch_archiver::CancellationToken;

/// Default longest a hook may run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs `sh -c command` with `env` added, forwarding its output (prefixed
/// with the hook's name) to stderr and the log file. Returns `Err` with one
/// line saying why the hook failed: a failure status, a timeout (the hook's
/// whole process group is killed), or cancellation.
pub fn run(
    name: &str,
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
    token: &CancellationToken,
) -> Result<(), String> {
    crate::log_file::line(&format!("hook {name}: running"));
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("{name} hook could not start: {e}")),
    };
    let readers: Vec<_> = [
        child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>),
        child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let prefix = format!("{name} hook: ");
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                eprintln!("{prefix}{l}");
                crate::log_file::line(&format!("{prefix}{l}"));
            }
        })
    })
    .collect();
    let start = Instant::now();
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(format!("{name} hook: cannot wait for it: {e}")),
        }
        let why = if token.is_cancelled() {
            Some("interrupted".to_string())
        } else if start.elapsed() >= timeout {
            Some(format!("timed out after {}s and was killed", timeout.as_secs()))
        } else {
            None
        };
        if let Some(why) = why {
            // SAFETY: kill with a negative pid signals the hook's group.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            break Err(format!("{name} hook {why}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A killed hook's grandchildren may hold the pipes open; they died with
    // the group, so the readers end.
    for r in readers {
        let _ = r.join();
    }
    let status = outcome?;
    if status.success() {
        crate::log_file::line(&format!("hook {name}: ok"));
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    };
    Err(format!("{name} hook failed ({how}): {command}"))
}
