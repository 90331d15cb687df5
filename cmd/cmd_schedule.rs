//! `arch schedule`: the crontab line or systemd user timer that runs a
//! profile, printed or installed (docs/CRON.md shows what is written).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cli::Cli;
use crate::profile::ConfigArg;

/// Print, install, list or remove the schedule of a profile: a crontab
/// entry (default) or a systemd user service + timer (--systemd).
/// Installing is idempotent: it replaces the profile's earlier entry.
/// The crontab is edited through `crontab -l` / `crontab -`, or the plain
/// file named by ARCH_CRONTAB_FILE.
#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// The profile to schedule or remove.
    #[arg(value_name = "PROFILE", required_unless_present = "list")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// When to run: "hourly", "hourly :MM", "daily HH:MM", "weekly DAY
    /// HH:MM", "monthly D HH:MM", or a five-field cron expression
    /// ("30 2 * * 1-5").
    #[arg(long, value_name = "WHEN", required_unless_present_any = ["list", "remove"])]
    pub at: Option<String>,
    /// Use a systemd user timer and service instead of a crontab entry.
    #[arg(long)]
    pub systemd: bool,
    /// Where the systemd units go (default: $XDG_CONFIG_HOME/systemd/user).
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
    /// Write the entry (or units) instead of printing them.
    #[arg(long, conflicts_with_all = ["remove", "list"])]
    pub install: bool,
    /// Remove the profile's crontab entry and systemd units.
    #[arg(long, conflicts_with_all = ["at", "list"])]
    pub remove: bool,
    /// List the scheduled profiles (crontab entries and units).
    #[arg(long, conflicts_with = "at")]
    pub list: bool,
}

/// The comment that marks our crontab entries; the job is the next line.
const MARK: &str = "# arch-schedule:";

/// A schedule in both notations.
#[derive(Debug, PartialEq)]
pub struct When {
    pub cron: String,
    pub on_calendar: String,
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn hh_mm(s: &str) -> Result<(u32, u32)> {
    let (h, m) = s.split_once(':').with_context(|| format!("invalid time {s:?}: use HH:MM"))?;
    match (h.parse::<u32>(), m.parse::<u32>()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok((h, m)),
        _ => bail!("invalid time {s:?}: use HH:MM (00:00 to 23:59)"),
    }
}

/// Parses `--at`.
pub fn parse_when(s: &str) -> Result<When> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let w = |cron: String, on_calendar: String| Ok(When { cron, on_calendar });
    match words.as_slice() {
        ["hourly"] => w("0 * * * *".into(), "*-*-* *:00:00".into()),
        ["hourly", m] => match m.trim_start_matches(':').parse::<u32>() {
            Ok(m) if m < 60 => w(format!("{m} * * * *"), format!("*-*-* *:{m:02}:00")),
            _ => bail!("invalid minute {m:?} in {s:?}: use e.g. \"hourly :15\""),
        },
        ["daily", t] => {
            let (h, m) = hh_mm(t)?;
            w(format!("{m} {h} * * *"), format!("*-*-* {h:02}:{m:02}:00"))
        }
        ["weekly", d, t] => {
            let (h, m) = hh_mm(t)?;
            let day = DAYS
                .iter()
                .position(|x| d.len() >= 3 && x.eq_ignore_ascii_case(&d[..3]))
                .with_context(|| format!("invalid day {d:?} in {s:?}: use Mon, Tue, ... Sun"))?;
            w(format!("{m} {h} * * {day}"), format!("{} *-*-* {h:02}:{m:02}:00", DAYS[day]))
        }
        ["monthly", d, t] => {
            let (h, m) = hh_mm(t)?;
            match d.parse::<u32>() {
                Ok(d) if (1..=28).contains(&d) => {
                    w(format!("{m} {h} {d} * *"), format!("*-*-{d:02} {h:02}:{m:02}:00"))
                }
                _ => bail!("invalid day of month {d:?} in {s:?}: use 1 to 28 (every month has them)"),
            }
        }
        [_, _, _, _, _] => cron_to_calendar(&words),
        _ => bail!(
            "invalid schedule {s:?}: use \"hourly\", \"daily 03:00\", \"weekly Sun 04:00\", \"monthly 1 05:00\" or a five-field cron expression"
        ),
    }
}

/// Converts one cron field to systemd's notation, checking its values.
fn field(f: &str, min: u32, max: u32, what: &str, day_names: bool) -> Result<String> {
    let num = |v: &str| -> Result<u32> {
        match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => bail!("invalid {what} {v:?} in cron field {f:?} ({min} to {max})"),
        }
    };
    let show = |n: u32| if day_names { DAYS[(n % 7) as usize].to_string() } else { format!("{n:02}") };
    let mut parts = Vec::new();
    for item in f.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .ok()
                        .filter(|&n| n > 0)
                        .with_context(|| format!("invalid step {s:?} in cron field {f:?}"))?,
                ),
            ),
            None => (item, None),
        };
        let out = match (range, step) {
            ("*", None) => "*".to_string(),
            ("*", Some(s)) if !day_names => format!("{}/{s}", show(min)),
            (r, None) => match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        bail!("invalid range {r:?} in cron field {f:?}");
                    }
                    format!("{}..{}", show(a), show(b))
                }
                None => show(num(r)?),
            },
            (r, Some(s)) if !day_names && !r.contains('-') => format!("{}/{s}", show(num(r)?)),
            _ => bail!("cron field {f:?} cannot be expressed for systemd; use a simpler form"),
        };
        parts.push(out);
    }
    Ok(parts.join(","))
}

fn cron_to_calendar(w: &[&str]) -> Result<When> {
    let minute = field(w[0], 0, 59, "minute", false)?;
    let hour = field(w[1], 0, 23, "hour", false)?;
    let dom = field(w[2], 1, 31, "day of month", false)?;
    let month = field(w[3], 1, 12, "month", false)?;
    let dow = field(w[4], 0, 7, "day of week", true)?;
    if dom != "*" && dow != "*" {
        // cron runs when either matches, systemd when both do.
        bail!("a cron expression restricting both day of month and day of week is ambiguous; restrict one");
    }
    let dow = if dow == "*" { String::new() } else { format!("{dow} ") };
    Ok(When { cron: w.join(" "), on_calendar: format!("{dow}*-{month}-{dom} {hour}:{minute}:00") })
}

/// The command that runs the profile: this binary, by absolute path.
fn command(config: &Path, profile: &str) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find the arch binary's path")?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    Ok(vec![
        exe.display().to_string(),
        "--config".into(),
        config.display().to_string(),
        "run".into(),
        profile.into(),
    ])
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The two crontab lines: our marker comment and the job.
fn cron_entry(when: &When, cmd: &[String], profile: &str) -> String {
    // cron turns an unescaped % into a newline.
    let job = cmd.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ").replace('%', r"\%");
    format!(
        "{MARK}{profile} (written by `arch schedule`; `arch schedule --remove {profile}` deletes it)\n{} {job}\n",
        when.cron
    )
}

fn systemd_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$"))
}

fn units(when: &When, cmd: &[String], profile: &str) -> (String, String) {
    let exec = cmd.iter().map(|a| systemd_quote(a)).collect::<Vec<_>>().join(" ");
    let header =
        format!("# Written by `arch schedule` for profile {profile}; `arch schedule --remove {profile}` deletes it.\n");
    let service = format!(
        "{header}[Unit]\nDescription=arch backup profile {profile}\n\n[Service]\nType=oneshot\nExecStart={exec}\nNice=10\nIOSchedulingClass=idle\n"
    );
    let timer = format!(
        "{header}[Unit]\nDescription=Run arch backup profile {profile} on schedule\n\n[Timer]\nOnCalendar={}\nPersistent=true\nUnit=arch-{profile}.service\n\n[Install]\nWantedBy=timers.target\n",
        when.on_calendar
    );
    (service, timer)
}

fn unit_dir(args: &ScheduleArgs) -> Result<PathBuf> {
    match &args.unit_dir {
        Some(d) => Ok(d.clone()),
        None => {
            Ok(dirs::config_dir().context("no --unit-dir and no user config directory")?.join("systemd/user"))
        }
    }
}

// ---- crontab access --------------------------------------------------------

fn read_crontab() -> Result<String> {
    if let Some(f) = std::env::var_os("ARCH_CRONTAB_FILE") {
        return match std::fs::read_to_string(&f) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", Path::new(&f).display())),
        };
    }
    let out = std::process::Command::new("crontab")
        .arg("-l")
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run `crontab -l` (is cron installed? --systemd writes a timer instead)")?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("no crontab") {
        return Ok(String::new());
    }
    bail!("`crontab -l` failed: {}", err.trim())
}

fn write_crontab(text: &str) -> Result<()> {
    if let Some(f) = std::env::var_os("ARCH_CRONTAB_FILE") {
        let p = PathBuf::from(f);
        let tmp = p.with_extension("arch-tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .with_context(|| format!("cannot write {}", p.display()))?;
        return Ok(());
    }
    use std::io::Write;
    let mut child = std::process::Command::new("crontab")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot run `crontab -`")?;
    child.stdin.take().context("crontab has no stdin")?.write_all(text.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("`crontab -` failed ({status}); the crontab was not changed");
    }
    Ok(())
}

/// `text` without `profile`'s entry (marker line and the job after it).
fn without_entry(text: &str, profile: &str) -> (String, bool) {
    let mark = format!("{MARK}{profile} ");
    let mut out = String::new();
    let mut lines = text.lines();
    let mut found = false;
    while let Some(l) = lines.next() {
        if l.starts_with(&mark) {
            found = true;
            lines.next();
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    (out, found)
}

// ---- the command -----------------------------------------------------------

pub fn run(cli: &Cli, args: &ScheduleArgs) -> Result<i32> {
    if args.list {
        return list(cli, args);
    }
    let profile = args.profile.as_deref().context("give a profile")?;
    crate::profile::check_name(profile)?;
    if args.remove {
        return remove(cli, args, profile);
    }
    let file = args.config.path()?;
    // Scheduling a profile that does not load would fail every night.
    crate::profile::load(&file, profile)?;
    let when = parse_when(args.at.as_deref().context("give --at")?)?;
    let cmd = command(&file, profile)?;
    if args.systemd {
        let (service, timer) = units(&when, &cmd, profile);
        if !args.install {
            print!("# arch-{profile}.service\n{service}\n# arch-{profile}.timer\n{timer}");
            return Ok(crate::exit::OK);
        }
        let dir = unit_dir(args)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in
            [(format!("arch-{profile}.service"), service), (format!("arch-{profile}.timer"), timer)]
        {
            let p = dir.join(&name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, &p))
                .with_context(|| format!("cannot write {}", p.display()))?;
            if !cli.quiet {
                println!("wrote {}", p.display());
            }
        }
        if !cli.quiet {
            println!(
                "enable it with: systemctl --user daemon-reload && systemctl --user enable --now arch-{profile}.timer"
            );
        }
        return Ok(crate::exit::OK);
    }
    let entry = cron_entry(&when, &cmd, profile);
    if !args.install {
        print!("{entry}");
        return Ok(crate::exit::OK);
    }
    let (mut text, replaced) = without_entry(&read_crontab()?, profile);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry);
    write_crontab(&text)?;
    if !cli.quiet {
        let verb = if replaced { "replaced" } else { "added" };
        println!("{verb} the crontab entry for profile {profile}: {}", when.cron);
    }
    Ok(crate::exit::OK)
}

fn remove(cli: &Cli, args: &ScheduleArgs, profile: &str) -> Result<i32> {
    let mut removed = Vec::new();
    let current = read_crontab();
    // Without cron (and no ARCH_CRONTAB_FILE) there is no entry to remove.
    if let Ok(current) = current {
        let (text, found) = without_entry(&current, profile);
        if found {
            write_crontab(&text)?;
            removed.push("crontab entry".to_string());
        }
    }
    let dir = unit_dir(args)?;
    for name in [format!("arch-{profile}.timer"), format!("arch-{profile}.service")] {
        let p = dir.join(&name);
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
    }
    if removed.is_empty() {
        eprintln!(
            "arch: profile {profile} has no schedule (no crontab entry, no units in {})",
            dir.display()
        );
        return Ok(crate::exit::FATAL);
    }
    if !cli.quiet {
        println!("removed the schedule of profile {profile}: {}", removed.join(", "));
    }
    Ok(crate::exit::OK)
}

fn list(cli: &Cli, args: &ScheduleArgs) -> Result<i32> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if let Ok(text) = read_crontab() {
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if let Some(rest) = l.strip_prefix(MARK) {
                let name = rest.split_whitespace().next().unwrap_or_default().to_string();
                let job = lines.next().unwrap_or_default();
                let when = job.split_whitespace().take(5).collect::<Vec<_>>().join(" ");
                rows.push((name, "cron".into(), when));
            }
        }
    }
    let dir = unit_dir(args)?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut timers: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                n.starts_with("arch-") && n.ends_with(".timer")
            })
            .collect();
        timers.sort();
        for t in timers {
            let text = std::fs::read_to_string(&t).unwrap_or_default();
            if !text.starts_with("# Written by `arch schedule`") {
                continue;
            }
            let name = t.file_stem().unwrap_or_default().to_string_lossy();
            let name = name.trim_start_matches("arch-").to_string();
            let when = text.lines().find_map(|l| l.strip_prefix("OnCalendar=")).unwrap_or_default();
            rows.push((name, "systemd".into(), when.to_string()));
        }
    }
    if cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, k, w)| serde_json::json!({"profile": p, "kind": k, "schedule": w}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else if rows.is_empty() {
        println!("no scheduled profiles");
    } else {
        for (p, k, w) in rows {
            println!("{p:<20} {k:<8} {w}");
        }
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_schedules() {
        let w = parse_when("daily 03:00").unwrap();
        assert_eq!((w.cron.as_str(), w.on_calendar.as_str()), ("0 3 * * *", "*-*-* 03:00:00"));
        let w = parse_when("weekly sunday 04:30").unwrap();
        assert_eq!((w.cron.as_str(), w.on_calendar.as_str()), ("30 4 * * 0", "Sun *-*-* 04:30:00"));
        let w = parse_when("monthly 1 05:00").unwrap();
        assert_eq!(w.on_calendar, "*-*-01 05:00:00");
        assert_eq!(parse_when("hourly :15").unwrap().cron, "15 * * * *");
        assert!(parse_when("daily 25:00").is_err());
        assert!(parse_when("sometimes").is_err());
    }

    #[test]
    fn cron_expressions() {
        let w = parse_when("30 2 * * 1-5").unwrap();
        assert_eq!(w.on_calendar, "Mon..Fri *-*-* 02:30:00");
        let w = parse_when("*/15 * * * *").unwrap();
        assert_eq!(w.on_calendar, "*-*-* *:00/15:00");
        let w = parse_when("0 4,16 1 */2 *").unwrap();
        assert_eq!(w.on_calendar, "*-01/2-01 04,16:00:00");
        assert!(parse_when("61 * * * *").is_err());
        assert!(parse_when("0 0 1 * 1").is_err());
    }

    #[test]
    fn entries_replace_only_ours() {
        let when = parse_when("daily 03:00").unwrap();
        let cmd = vec!["/usr/bin/arch".to_string(), "run".into(), "home".into()];
        let other = "MAILTO=me\n5 * * * * /usr/bin/true\n";
        let text = format!("{other}{}", cron_entry(&when, &cmd, "home"));
        let (left, found) = without_entry(&text, "home");
        assert!(found);
        assert_eq!(left, other);
        let (same, found) = without_entry(&text, "hom");
        assert!(!found);
        assert_eq!(same, text);
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(systemd_quote("/a b/%h$x"), "\"/a b/%%h$$x\"");
    }
}
