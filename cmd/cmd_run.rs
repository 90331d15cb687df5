//! `arch run PROFILE`: the profile's hooks, backup, forget, prune and check,
//! in that order, in this process, through the same code as the commands
//! themselves. Exits with the worst exit code of its steps.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use arch_archiver::{CancellationToken, PruneOptions};
use chrono::{DateTime, FixedOffset};
use clap::{Args, Parser};

use crate::cli::{Cli, Command};
use crate::cmd_backup::Outcome;
use crate::exit;
use crate::profile::{self, ConfigArg, Profile};
use crate::profile_state::{self, LockError};

/// Run a profile from the profile file: before hook, backup, forget with
/// the retention policy, prune and check when due, after/on-failure and
/// finally hooks. Exits with the worst exit code of its steps (a partial
/// backup, 3, is less bad than any failure); 11 at once when the profile
/// is already running (see --wait).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The profile's name.
    #[arg(value_name = "PROFILE")]
    pub profile: String,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Wait for a running instance of the same profile to finish instead
    /// of exiting with code 11.
    #[arg(long)]
    pub wait: bool,
    /// Use TIME as the time of this run: the snapshot's time and the time
    /// recorded in the profile's state ("2026-01-31 23:59:00" local, or
    /// RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = crate::cli::parse_time)]
    pub time: Option<DateTime<FixedOffset>>,
    /// Print one line of JSON summarising the run last (for monitoring).
    #[arg(long)]
    pub json_summary: bool,
}

/// One step's result.
struct Step {
    name: &'static str,
    code: i32,
}

/// How bad an exit code is: success < partial < any failure.
fn severity(code: i32) -> u8 {
    match code {
        exit::OK => 0,
        exit::PARTIAL => 1,
        _ => 2,
    }
}

/// The worst code of `steps` (the first one among equally bad ones).
fn worst(steps: &[Step]) -> i32 {
    let mut w = exit::OK;
    for s in steps {
        if severity(s.code) > severity(w) {
            w = s.code;
        }
    }
    w
}

pub fn run(cli: &Cli, args: &RunArgs, token: &CancellationToken) -> Result<i32> {
    let name = args.profile.as_str();
    profile::check_name(name)?;
    let file = args.config.path()?;
    let p = profile::load(&file, name)?;
    if cli.log.log_file.is_none() {
        if let Some(path) = &p.log_file {
            let max = match &p.log_max_size {
                Some(s) => arch_archiver::parse_size(s)
                    .ok_or_else(|| anyhow!("profile {name}: invalid log-max-size {s:?}"))?,
                None => crate::log_file::DEFAULT_MAX_SIZE,
            };
            crate::log_file::open(path.as_ref(), max, p.log_keep.unwrap_or(crate::log_file::DEFAULT_KEEP))?;
        }
    }
    let timeout = match &p.hooks.timeout {
        Some(t) => {
            crate::cli::parse_duration(t).map_err(|e| anyhow!("profile {name}: hooks.timeout: {e}"))?
        }
        None => crate::hooks::DEFAULT_TIMEOUT,
    };
    // Every command line is parsed before anything runs, so a bad value
    // fails the run at once, naming the profile.
    let time = args.time.map(|t| t.to_rfc3339());
    let backup = parse(cli, &p, p.backup_args(time.as_deref()).with_context(|| format!("profile {name}"))?)
        .with_context(|| format!("profile {name} in {}", file.display()))?;
    let forget = p.forget_args().map(|a| parse(cli, &p, a)).transpose()?;
    let prune = p.prune.as_ref().map(|_| parse(cli, &p, p.prune_args(false))).transpose()?;
    let prune_threshold = match p.prune.as_ref().and_then(|c| c.when_unused_exceeds.as_ref()) {
        Some(s) => Some(
            arch_archiver::parse_size(s)
                .ok_or_else(|| anyhow!("profile {name}: invalid prune.when-unused-exceeds {s:?}"))?,
        ),
        None => None,
    };
    if let Some(c) = &p.check {
        parse(cli, &p, p.check_args(0).unwrap_or_default())?;
        if c.read_data_parts == Some(0) || c.every == Some(0) {
            return Err(anyhow!("profile {name}: check.every and check.read-data-parts must be at least 1"));
        }
    }
    if p.prune.as_ref().is_some_and(|c| c.every == Some(0)) {
        return Err(anyhow!("profile {name}: prune.every must be at least 1"));
    }

    let _lock = match profile_state::lock(name, args.wait) {
        Ok(l) => l,
        Err(LockError::Busy(pid)) => {
            let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            let msg = format!(
                "profile {name} is already running{who}; not starting a second run (--wait waits for it)"
            );
            eprintln!("arch: {msg}");
            crate::log_file::line(&msg);
            return Ok(exit::LOCKED);
        }
        Err(LockError::Other(e)) => return Err(e),
    };
    let mut state = profile_state::load(name)?;
    let now = args.time.unwrap_or_else(|| chrono::Local::now().fixed_offset());
    let start = Instant::now();
    state.runs += 1;
    say(cli, &format!("run {name}: started (run {})", state.runs));

    let mut env = vec![
        ("ARCH_PROFILE".to_string(), name.to_string()),
        ("ARCH_CONFIG".to_string(), file.display().to_string()),
    ];
    let mut steps: Vec<Step> = Vec::new();
    let mut outcome = Outcome::default();
    let mut errors: Vec<String> = Vec::new();
    let before_ok = match &p.hooks.before {
        Some(cmd) => hook(cli, "before", cmd, &env, timeout, token, &mut steps, &mut errors),
        None => true,
    };
    if before_ok {
        let (code, o) = step(cli, "backup", &backup, token, &mut errors);
        steps.push(Step { name: "backup", code });
        if let Some(o) = o {
            outcome = o;
            say(
                cli,
                &format!(
                    "backup: {} files, {} added, snapshot {}",
                    outcome.files,
                    crate::progress::human(outcome.bytes_added),
                    outcome.snapshot_id.as_deref().map(|s| &s[..8]).unwrap_or("(none)")
                ),
            );
        }
        if code == exit::OK {
            state.last_success = Some(now);
        }
        if outcome.snapshot_id.is_some() {
            state.last_snapshot = outcome.snapshot_id.clone();
        }
        // Maintenance only after a backup that wrote its snapshot: a
        // failing source must not let retention thin out the good ones.
        if severity(code) < 2 && !token.is_cancelled() {
            if let Some(f) = &forget {
                let (code, _) = step(cli, "forget", f, token, &mut errors);
                steps.push(Step { name: "forget", code });
            }
            if let Some(pr) = &prune {
                state.runs_since_prune += 1;
                let cfg = p.prune.clone().unwrap_or_default();
                let by_count = cfg.every.map(|n| state.runs_since_prune >= u64::from(n));
                let by_space = match prune_threshold {
                    Some(limit) => match unused_space(cli, &p) {
                        Ok(unused) => {
                            say(cli, &format!("prune: {} unused", crate::progress::human(unused)));
                            Some(unused > limit)
                        }
                        Err(e) => {
                            report(cli, "prune", &e, &mut errors);
                            steps.push(Step { name: "prune", code: exit::code_for(&e) });
                            None
                        }
                    },
                    None => None,
                };
                let due = match (by_count, by_space, prune_threshold) {
                    (None, None, None) => true,
                    (c, s, _) => c == Some(true) || s == Some(true),
                };
                if due {
                    let (code, _) = step(cli, "prune", pr, token, &mut errors);
                    steps.push(Step { name: "prune", code });
                    if code == exit::OK {
                        state.runs_since_prune = 0;
                        state.last_prune = Some(now);
                    }
                } else {
                    say(cli, "prune: not due");
                }
            }
            if let Some(c) = &p.check {
                state.runs_since_check += 1;
                if state.runs_since_check >= u64::from(c.every.unwrap_or(1)) {
                    let inner = parse(cli, &p, p.check_args(state.checks).unwrap_or_default())?;
                    let (code, _) = step(cli, "check", &inner, token, &mut errors);
                    steps.push(Step { name: "check", code });
                    state.runs_since_check = 0;
                    state.checks = state.checks.wrapping_add(1);
                } else {
                    say(cli, "check: not due");
                }
            }
        }
    }

    let duration = start.elapsed();
    let code = worst(&steps);
    let failed: Vec<&str> = steps.iter().filter(|s| severity(s.code) == 2).map(|s| s.name).collect();
    env.extend([
        ("ARCH_EXIT_CODE".to_string(), code.to_string()),
        ("ARCH_SNAPSHOT_ID".to_string(), outcome.snapshot_id.clone().unwrap_or_default()),
        ("ARCH_BYTES_ADDED".to_string(), outcome.bytes_added.to_string()),
        ("ARCH_DURATION".to_string(), format!("{:.3}", duration.as_secs_f64())),
        ("ARCH_FAILED_STEPS".to_string(), failed.join(",")),
        ("ARCH_ERROR".to_string(), errors.first().cloned().unwrap_or_default()),
    ]);
    // The closing hooks run even after an interrupt (they may unmount or
    // report); their timeout still bounds them, and a second signal exits.
    let closing = CancellationToken::new();
    if before_ok {
        let (which, cmd) =
            if severity(code) < 2 { ("after", &p.hooks.after) } else { ("on-failure", &p.hooks.on_failure) };
        if let Some(cmd) = cmd {
            hook(cli, which, cmd, &env, timeout, &closing, &mut steps, &mut errors);
        }
    } else if let Some(cmd) = &p.hooks.on_failure {
        hook(cli, "on-failure", cmd, &env, timeout, &closing, &mut steps, &mut errors);
    }
    if let Some(cmd) = &p.hooks.finally {
        // The final code includes the after hook's outcome.
        let mut env = env.clone();
        env.retain(|(k, _)| k != "ARCH_EXIT_CODE");
        env.push(("ARCH_EXIT_CODE".to_string(), worst(&steps).to_string()));
        hook(cli, "finally", cmd, &env, timeout, &closing, &mut steps, &mut errors);
    }
    let code = worst(&steps);
    state.last_run = Some(now);
    state.last_exit_code = Some(code);
    profile_state::save(name, &state)?;
    let line = format!("run {name}: finished with exit code {code} in {:.1}s", duration.as_secs_f64());
    say(cli, &line);
    if args.json_summary {
        let v = serde_json::json!({
            "message_type": "run_summary",
            "profile": name,
            "exit_code": code,
            "time": now.to_rfc3339(),
            "snapshot_id": outcome.snapshot_id,
            "bytes_added": outcome.bytes_added,
            "duration_secs": duration.as_secs_f64(),
            "steps": steps.iter().map(|s| serde_json::json!({"step": s.name, "exit_code": s.code})).collect::<Vec<_>>(),
            "errors": errors,
        });
        println!("{v}");
        crate::log_file::line(&v.to_string());
    }
    Ok(code)
}

/// A progress line on stderr (unless quiet) and in the log.
fn say(cli: &Cli, msg: &str) {
    if !cli.quiet && !cli.json {
        eprintln!("arch: {msg}");
    }
    crate::log_file::line(msg);
}

fn report(_cli: &Cli, step: &str, e: &anyhow::Error, errors: &mut Vec<String>) {
    let msg = format!("{step}: {}", exit::one_line(e));
    eprintln!("arch: {msg}");
    crate::log_file::line(&msg);
    errors.push(msg);
}

#[allow(clippy::too_many_arguments)]
fn hook(
    cli: &Cli,
    which: &'static str,
    cmd: &str,
    env: &[(String, String)],
    timeout: Duration,
    token: &CancellationToken,
    steps: &mut Vec<Step>,
    errors: &mut Vec<String>,
) -> bool {
    let _ = cli;
    match crate::hooks::run(which, cmd, env, timeout, token) {
        Ok(()) => true,
        Err(msg) => {
            eprintln!("arch: {msg}");
            crate::log_file::line(&msg);
            errors.push(msg);
            steps.push(Step { name: which, code: exit::FATAL });
            false
        }
    }
}

/// Parses a step's command line with the command-line parser, adding the
/// options of this invocation that every step shares.
fn parse(cli: &Cli, p: &Profile, step: Vec<String>) -> Result<Cli> {
    let mut argv: Vec<OsString> = vec!["arch".into()];
    if cli.quiet {
        argv.push("--quiet".into());
    }
    if cli.json {
        argv.push("--json".into());
    }
    if let Some(d) = cli.progress_interval {
        argv.push(format!("--progress-interval={}s", d.as_secs().max(1)).into());
    }
    if let Some(d) = cli.retry_lock {
        argv.push(format!("--retry-lock={}s", d.as_secs().max(1)).into());
    }
    if p.password_file.is_none() {
        if let Some(f) = &cli.password_file {
            argv.push("--password-file".into());
            argv.push(f.clone().into());
        }
    }
    if p.password_command.is_none() {
        if let Some(c) = &cli.password_command {
            argv.push("--password-command".into());
            argv.push(c.into());
        }
    }
    argv.extend(step.into_iter().map(OsString::from));
    Cli::try_parse_from(&argv).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
        anyhow!("{first}")
    })
}

/// Runs one step; errors are reported here and become the step's code.
fn step(
    cli: &Cli,
    name: &'static str,
    inner: &Cli,
    token: &CancellationToken,
    errors: &mut Vec<String>,
) -> (i32, Option<Outcome>) {
    if token.is_cancelled() {
        return (exit::INTERRUPTED, None);
    }
    say(cli, &format!("{name}: starting"));
    let r = match &inner.command {
        Command::Backup(a) => crate::cmd_backup::run_outcome(inner, a, token).map(|(c, o)| (c, Some(o))),
        Command::Forget(a) => crate::cmd_forget::run(inner, a).map(|c| (c, None)),
        Command::Prune(a) => crate::cmd_prune::run(inner, a).map(|c| (c, None)),
        Command::Check(a) => crate::cmd_check::run(inner, a, token).map(|c| (c, None)),
        _ => Err(anyhow!("internal error: {name} is not a step")),
    };
    match r {
        Ok((code, o)) => {
            crate::log_file::line(&format!("{name}: exit code {code}"));
            (code, o)
        }
        Err(e) => {
            report(cli, name, &e, errors);
            (exit::code_for(&e), None)
        }
    }
}

/// Bytes a prune with no tolerance for waste would free now.
fn unused_space(cli: &Cli, p: &Profile) -> Result<u64> {
    let inner = parse(cli, p, p.prune_args(true))?;
    let repo = Arc::new(crate::repo::open_unindexed(&inner)?);
    let _lease = crate::repo::lease(&inner, &repo, false)?;
    let r = arch_archiver::prune(&repo, &PruneOptions::default().dry_run(true))?;
    Ok(r.bytes_unused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_code() {
        let s =
            |codes: &[i32]| worst(&codes.iter().map(|&code| Step { name: "x", code }).collect::<Vec<_>>());
        assert_eq!(s(&[0, 0]), 0);
        assert_eq!(s(&[0, 3, 0]), 3);
        assert_eq!(s(&[3, 12, 1]), 12);
        assert_eq!(s(&[0, 1, 3]), 1);
    }
}
