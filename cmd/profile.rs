//! Profiles: named backup jobs in a TOML file (`--config`, default
//! `<config dir>/arch/profiles.toml`). docs/CRON.md lists every key.
//!
//! A profile only produces command lines: `arch run` parses them with the
//! same parser as the command line, so a profile means exactly what the
//! equivalent `arch backup` / `forget` / `prune` / `check` would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Deserialize;

/// `--config`, shared by run, schedule and status.
#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// Profile file (default: ARCH_CONFIG, else profiles.toml in the user's
    /// config directory under arch/).
    #[arg(long, env = "ARCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The profile file's path (absolute when it exists, so a scheduled
    /// command does not depend on its working directory).
    pub fn path(&self) -> Result<PathBuf> {
        let p = match &self.config {
            Some(p) => p.clone(),
            None => dirs::config_dir()
                .context("no --config given and no user config directory to look in")?
                .join("arch")
                .join("profiles.toml"),
        };
        Ok(std::fs::canonicalize(&p).unwrap_or(p))
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One profile, as written in the file (after environment expansion).
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    pub repository: Option<String>,
    pub password_file: Option<String>,
    pub password_command: Option<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub files_from: Vec<String>,
    #[serde(default)]
    pub stdin_command: Vec<String>,
    pub stdin_filename: Option<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub iexclude: Vec<String>,
    #[serde(default)]
    pub exclude_file: Vec<String>,
    #[serde(default)]
    pub iexclude_file: Vec<String>,
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    #[serde(default)]
    pub exclude_caches: bool,
    pub exclude_larger_than: Option<String>,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default)]
    pub git_ignore: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub with_atime: bool,
    #[serde(default)]
    pub skip_if_unchanged: bool,
    #[serde(default)]
    pub ignore_inode: bool,
    #[serde(default)]
    pub ignore_ctime: bool,
    pub log_file: Option<String>,
    pub log_max_size: Option<String>,
    pub log_keep: Option<u32>,
    pub retention: Option<Retention>,
    pub prune: Option<PruneCfg>,
    pub check: Option<CheckCfg>,
    #[serde(default)]
    pub hooks: Hooks,
}

/// `[profiles.NAME.retention]`: the forget policy run after each backup.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<String>,
    pub keep_within_hourly: Option<String>,
    pub keep_within_daily: Option<String>,
    pub keep_within_weekly: Option<String>,
    pub keep_within_monthly: Option<String>,
    pub keep_within_yearly: Option<String>,
    #[serde(default)]
    pub keep_tag: Vec<String>,
    pub group_by: Option<String>,
}

/// `[profiles.NAME.prune]`: when and how to prune after forgetting.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PruneCfg {
    /// Prune on every Nth run (counted since the last prune).
    pub every: Option<u32>,
    /// Prune when this much space (a SIZE) is unused.
    pub when_unused_exceeds: Option<String>,
    pub max_unused: Option<String>,
    pub max_repack_size: Option<String>,
    pub grace: Option<String>,
}

/// `[profiles.NAME.check]`: a check after the backup, optionally reading
/// a rotating part of the data.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckCfg {
    /// Check on every Nth run (default 1: every run).
    pub every: Option<u32>,
    /// Read a different part n/T of the packs each check, so T checks
    /// read everything once.
    pub read_data_parts: Option<u32>,
    /// A fixed --read-data-subset ("5%", "500M").
    pub read_data_subset: Option<String>,
    #[serde(default)]
    pub read_data: bool,
}

/// `[profiles.NAME.hooks]`: shell commands around a run.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hooks {
    pub before: Option<String>,
    pub after: Option<String>,
    pub on_failure: Option<String>,
    pub finally: Option<String>,
    /// Longest a hook may run ("30s", "5m"; default 1h); it is then killed
    /// and counts as failed.
    pub timeout: Option<String>,
}

/// Loads profile `name` from `file`.
pub fn load(file: &Path, name: &str) -> Result<Profile> {
    let mut all = load_all(file)?;
    all.remove(name).ok_or_else(|| {
        let known: Vec<&String> = all.keys().collect();
        if known.is_empty() {
            anyhow!("no profile {name:?} in {}: the file defines no profiles", file.display())
        } else {
            anyhow!(
                "no profile {name:?} in {}; it defines: {}",
                file.display(),
                known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    })
}

/// Every profile in `file`, by name.
pub fn load_all(file: &Path) -> Result<BTreeMap<String, Profile>> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!("cannot read profile file {} (create it, or pass --config)", file.display())
    })?;
    parse(&text, file, &|k| std::env::var(k).ok())
}

/// Parses profile text; `env` looks up variables for `$VAR` / `${VAR}`.
fn parse(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<BTreeMap<String, Profile>> {
    // The typed parse first: its errors carry the line and name the
    // unknown key.
    if let Err(e) = toml::from_str::<ConfigFile>(text) {
        bail!("{}: {}", file.display(), e.to_string().trim_end().replace('\n', " "));
    }
    let mut value: toml::Value = toml::from_str(text).with_context(|| file.display().to_string())?;
    expand_value(&mut value, "", env).with_context(|| format!("{}", file.display()))?;
    let cfg: ConfigFile = value.try_into().with_context(|| file.display().to_string())?;
    for name in cfg.profiles.keys() {
        check_name(name).with_context(|| file.display().to_string())?;
    }
    Ok(cfg.profiles)
}

/// Profile names end up in file names, unit names and cron comments.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("invalid profile name {name:?}: use letters, digits, '-' and '_' (at most 64)");
    }
    Ok(())
}

fn expand_value(v: &mut toml::Value, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    match v {
        toml::Value::String(_) if is_shell_command(key) => {}
        toml::Value::String(s) => *s = expand(s, env).with_context(|| format!("in key {key}"))?,
        toml::Value::Array(a) => {
            for x in a {
                expand_value(x, key, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                let path = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                expand_value(x, &path, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `key` holds a shell command, which the shell expands when it
/// runs (hooks see their ARCH_* outcome variables only then).
fn is_shell_command(key: &str) -> bool {
    let mut parts = key.split('.');
    let (_, _, field) = (parts.next(), parts.next(), parts.next());
    matches!(field, Some("hooks") | Some("password-command"))
}

/// Expands `$VAR` and `${VAR}`; `$$` is a literal `$`. An unset variable is
/// an error (a silently empty path would back up the wrong thing).
fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').ok_or_else(|| anyhow!("unclosed ${{ in {s:?}"))?;
            (&b[..end], end + 2)
        } else if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        let val =
            env(name).ok_or_else(|| anyhow!("environment variable {name} is not set (used in {s:?})"))?;
        out.push_str(&val);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Profile {
    /// Arguments before the subcommand: repository and password source.
    fn global_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(r) = &self.repository {
            a.extend(["--repo".to_string(), r.clone()]);
        }
        if let Some(p) = &self.password_file {
            a.extend(["--password-file".to_string(), p.clone()]);
        }
        if let Some(c) = &self.password_command {
            a.extend(["--password-command".to_string(), c.clone()]);
        }
        a
    }

    /// `arch backup ...` for this profile (without the program name and
    /// global options).
    pub fn backup_args(&self, time: Option<&str>) -> Result<Vec<String>> {
        let mut a = self.global_args();
        a.push("backup".into());
        if !self.stdin_command.is_empty() {
            if !self.paths.is_empty() || !self.files_from.is_empty() {
                bail!("give either stdin-command or paths/files-from, not both");
            }
            a.push("--stdin-from-command".into());
            if let Some(n) = &self.stdin_filename {
                a.extend(["--stdin-filename".into(), n.clone()]);
            }
        } else if self.paths.is_empty() && self.files_from.is_empty() {
            bail!("nothing to back up: set paths, files-from or stdin-command");
        }
        let lists = [
            ("--files-from", &self.files_from),
            ("--exclude", &self.exclude),
            ("--iexclude", &self.iexclude),
            ("--exclude-file", &self.exclude_file),
            ("--iexclude-file", &self.iexclude_file),
            ("--exclude-if-present", &self.exclude_if_present),
            ("--tag", &self.tags),
        ];
        for (flag, values) in lists {
            for v in values {
                a.push(format!("{flag}={v}"));
            }
        }
        let flags = [
            ("--exclude-caches", self.exclude_caches),
            ("--one-file-system", self.one_file_system),
            ("--git-ignore", self.git_ignore),
            ("--with-atime", self.with_atime),
            ("--skip-if-unchanged", self.skip_if_unchanged),
            ("--ignore-inode", self.ignore_inode),
            ("--ignore-ctime", self.ignore_ctime),
        ];
        a.extend(flags.iter().filter(|f| f.1).map(|f| f.0.to_string()));
        if let Some(s) = &self.exclude_larger_than {
            a.push(format!("--exclude-larger-than={s}"));
        }
        if let Some(h) = &self.host {
            a.push(format!("--host={h}"));
        }
        if let Some(t) = time {
            a.push(format!("--time={t}"));
        }
        a.push("--".into());
        if self.stdin_command.is_empty() {
            a.extend(self.paths.iter().cloned());
        } else {
            a.extend(self.stdin_command.iter().cloned());
        }
        Ok(a)
    }

    /// `arch forget ...` applying the retention policy to this profile's
    /// snapshots (its host, and its tags when it has some), or `None`
    /// without a policy.
    pub fn forget_args(&self) -> Option<Vec<String>> {
        let r = self.retention.as_ref()?;
        let mut a = self.global_args();
        a.push("forget".into());
        let counts = [
            ("--keep-last", r.keep_last),
            ("--keep-hourly", r.keep_hourly),
            ("--keep-daily", r.keep_daily),
            ("--keep-weekly", r.keep_weekly),
            ("--keep-monthly", r.keep_monthly),
            ("--keep-yearly", r.keep_yearly),
        ];
        for (flag, n) in counts {
            if let Some(n) = n {
                a.push(format!("{flag}={n}"));
            }
        }
        let durations = [
            ("--keep-within", &r.keep_within),
            ("--keep-within-hourly", &r.keep_within_hourly),
            ("--keep-within-daily", &r.keep_within_daily),
            ("--keep-within-weekly", &r.keep_within_weekly),
            ("--keep-within-monthly", &r.keep_within_monthly),
            ("--keep-within-yearly", &r.keep_within_yearly),
        ];
        for (flag, d) in durations {
            if let Some(d) = d {
                a.push(format!("{flag}={d}"));
            }
        }
        for t in &r.keep_tag {
            a.push(format!("--keep-tag={t}"));
        }
        if let Some(g) = &r.group_by {
            a.push(format!("--group-by={g}"));
        }
        if let Some(h) = &self.host {
            a.push(format!("--host={h}"));
        }
        if !self.tags.is_empty() {
            a.push(format!("--tag={}", self.tags.join(",")));
        }
        Some(a)
    }

    /// `arch prune ...` with the profile's prune options (`dry_run` for the
    /// unused-space probe).
    pub fn prune_args(&self, dry_run: bool) -> Vec<String> {
        let mut a = self.global_args();
        a.push("prune".into());
        if let Some(p) = &self.prune {
            for (flag, v) in [
                ("--max-unused", &p.max_unused),
                ("--max-repack-size", &p.max_repack_size),
                ("--grace", &p.grace),
            ] {
                if let Some(v) = v {
                    a.push(format!("{flag}={v}"));
                }
            }
        }
        if dry_run {
            a.push("--dry-run".into());
        }
        a
    }

    /// `arch check ...`; `part` is this run's n of `read-data-parts`.
    pub fn check_args(&self, part: u32) -> Option<Vec<String>> {
        let c = self.check.as_ref()?;
        let mut a = self.global_args();
        a.push("check".into());
        if c.read_data {
            a.push("--read-data".into());
        } else if let Some(t) = c.read_data_parts {
            a.push(format!("--read-data-subset={}/{t}", part % t.max(1) + 1));
        } else if let Some(s) = &c.read_data_subset {
            a.push(format!("--read-data-subset={s}"));
        }
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/me".into()),
            "X" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables() {
        assert_eq!(expand("${HOME}/a", &env).unwrap(), "/home/me/a");
        assert_eq!(expand("$HOME/a-$X", &env).unwrap(), "/home/me/a-x");
        assert_eq!(expand("cost $$5 $", &env).unwrap(), "cost $5 $");
        let e = expand("${NOPE}/a", &env).unwrap_err().to_string();
        assert!(e.contains("NOPE"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let text = "[profiles.home]\npaths = [\"/a\"]\n[profiles.home.retention]\nkeep-dayly = 3\n";
        let e = parse(text, Path::new("/etc/p.toml"), &env).unwrap_err().to_string();
        assert!(e.contains("keep-dayly") && e.contains("/etc/p.toml"), "{e}");
    }

    #[test]
    fn builds_command_lines() {
        let text = r#"
            [profiles.home]
            repository = "$HOME/repo"
            paths = ["${HOME}/docs"]
            exclude = ["*.tmp"]
            tags = ["nightly", "home"]
            [profiles.home.retention]
            keep-last = 3
            [profiles.home.check]
            read-data-parts = 4
            [profiles.home.hooks]
            after = "echo $ARCH_EXIT_CODE"
        "#;
        let p = parse(text, Path::new("p.toml"), &env).unwrap().remove("home").unwrap();
        let b = p.backup_args(None).unwrap();
        assert_eq!(
            b,
            [
                "--repo",
                "/home/me/repo",
                "backup",
                "--exclude=*.tmp",
                "--tag=nightly",
                "--tag=home",
                "--",
                "/home/me/docs"
            ]
        );
        let f = p.forget_args().unwrap();
        assert!(f.contains(&"--keep-last=3".to_string()) && f.contains(&"--tag=nightly,home".to_string()));
        assert!(p.check_args(5).unwrap().contains(&"--read-data-subset=2/4".to_string()));
        assert_eq!(p.hooks.after.as_deref(), Some("echo $ARCH_EXIT_CODE"), "hooks are left to the shell");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("home-daily_1").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_name("../x").is_err());
    }
}
