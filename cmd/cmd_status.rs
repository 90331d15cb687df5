//! `arch status`: each profile's last run and last successful backup, and
//! a health check (`--max-age`).

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::cli::Cli;
use crate::profile::ConfigArg;
use crate::profile_state;

/// Show when each profile last ran and last backed up successfully. With
/// --max-age, exit 1 when a shown profile's last successful backup is
/// older than that (or there is none): a health check for monitoring.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Profiles to show (default: every profile in the profile file and
    /// every profile that has run).
    #[arg(value_name = "PROFILE")]
    pub profiles: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Fail (exit 1) when the last successful backup is older than
    /// DURATION ("26h", "2d", "90m").
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub max_age: Option<Duration>,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    match s.trim().strip_suffix('d').map(|n| n.trim().parse::<u64>()) {
        Some(Ok(n)) if n > 0 => Ok(Duration::from_secs(n * 86_400)),
        Some(_) => Err(format!("invalid duration {s:?}: use e.g. 2d, 26h or 90m")),
        None => crate::cli::parse_duration(s),
    }
}

/// "3h12m ago" for a span of seconds.
fn ago(secs: i64) -> String {
    if secs < 0 {
        return "in the future".to_string();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d{h}h ago")
    } else if h > 0 {
        format!("{h}h{m}m ago")
    } else {
        format!("{m}m{}s ago", secs % 60)
    }
}

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<i32> {
    let mut names = args.profiles.clone();
    if names.is_empty() {
        let file = args.config.path()?;
        if file.exists() {
            names.extend(crate::profile::load_all(&file)?.into_keys());
        }
        names.extend(profile_state::list()?);
        names.sort();
        names.dedup();
    }
    for n in &names {
        crate::profile::check_name(n)?;
    }
    let now = chrono::Local::now().fixed_offset();
    let mut stale = Vec::new();
    let mut json = Vec::new();
    for n in &names {
        let s = profile_state::load(n)?;
        let age = s.last_success.map(|t| (now - t).num_seconds());
        let too_old = match (args.max_age, age) {
            (Some(max), Some(a)) => a > max.as_secs() as i64,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if too_old {
            stale.push(n.clone());
        }
        if cli.json {
            json.push(serde_json::json!({
                "profile": n,
                "runs": s.runs,
                "last_run": s.last_run,
                "last_exit_code": s.last_exit_code,
                "last_success": s.last_success,
                "age_secs": age,
                "last_snapshot": s.last_snapshot,
                "last_prune": s.last_prune,
                "stale": too_old,
            }));
            continue;
        }
        let success = match (s.last_success, age) {
            (Some(t), Some(a)) => format!("{} ({})", t.format("%Y-%m-%d %H:%M:%S"), ago(a)),
            _ => "never".to_string(),
        };
        let last = match (s.last_run, s.last_exit_code) {
            (Some(t), Some(c)) => format!("{} (exit code {c})", t.format("%Y-%m-%d %H:%M:%S")),
            _ => "never".to_string(),
        };
        println!("{n}:");
        println!("  last successful backup: {success}{}", if too_old { "  TOO OLD" } else { "" });
        println!("  last run:               {last}");
        println!("  runs:                   {}", s.runs);
        if let Some(id) = &s.last_snapshot {
            println!("  last snapshot:          {}", &id[..id.len().min(8)]);
        }
    }
    if cli.json {
        println!("{}", serde_json::Value::Array(json));
    } else if names.is_empty() {
        println!("no profiles found");
    }
    if !stale.is_empty() {
        eprintln!(
            "arch: no successful backup within {} for: {}",
            args.max_age.map(|d| format!("{}s", d.as_secs())).unwrap_or_default(),
            stale.join(", ")
        );
        return Ok(crate::exit::FATAL);
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages() {
        assert_eq!(super::parse_age("2d").unwrap().as_secs(), 172_800);
        assert_eq!(super::parse_age("26h").unwrap().as_secs(), 93_600);
        assert!(super::parse_age("xd").is_err());
        assert_eq!(super::ago(3 * 86_400 + 7200), "3d2h ago");
    }
}
