//! The `forget` retention policy: which snapshots of a group to keep.
//!
//! Pure logic, with restic's documented semantics:
//!
//! - Snapshots are considered newest first. A snapshot is kept if any rule
//!   keeps it; every rule that keeps it is listed as a reason.
//! - `keep_last n`: the n newest snapshots.
//! - `keep_{hourly,daily,weekly,monthly,yearly} n`: calendar buckets in the
//!   given time zone (hours :00–:59, days 00:00–23:59, ISO weeks Monday to
//!   Sunday, months, years). Only buckets that hold a snapshot count: for
//!   the n newest such buckets, the newest snapshot of each is kept. If the
//!   history runs out before n buckets were found, the oldest snapshot is
//!   kept as well ("oldest daily snapshot"), so the longest history
//!   survives.
//! - `keep_within d`: every snapshot newer than the latest snapshot's time
//!   minus d (d = years, months, days, hours: "1y2m3d4h"). "Latest" is the
//!   newest snapshot that is not in the future, so a snapshot with a wrong
//!   future clock cannot push the window forward; future snapshots are
//!   inside every window and so are kept by it.
//! - `keep_within_{hourly,…} d`: within that window, the newest snapshot of
//!   each calendar bucket; if the window reaches past the oldest snapshot,
//!   the oldest is kept too.
//! - `keep_tags`: every snapshot that has all tags of one of the lists; an
//!   empty list matches snapshots without tags (restic's `--keep-tag ''`).
//!
//! A count of [`UNLIMITED`] keeps every bucket. An empty policy keeps
//! everything: callers should refuse it (see [`ForgetPolicy::is_empty`]).

use std::fmt;
use std::str::FromStr;

use arch_index::Id;
use chrono::{DateTime, Datelike, Days, Months, TimeZone, Timelike, Utc};

use crate::snapshot::Snapshot;

/// A `keep_*` count that keeps every bucket (restic's "unlimited").
pub const UNLIMITED: u32 = u32::MAX;

/// A calendar duration for the `keep_within*` rules: years, months, days
/// and hours, written like `1y2m3d4h` (any subset, in this order or not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetentionDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl RetentionDuration {
    /// Whether all parts are zero (the rule is off).
    pub fn is_zero(&self) -> bool {
        *self == RetentionDuration::default()
    }

    /// `t` minus this duration, in calendar terms of `t`'s time zone: months
    /// are subtracted first (a day past the end of the shorter month is
    /// clamped to its last day: 31 March − 1m = 28/29 February), then days,
    /// then hours.
    pub fn before<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> DateTime<Tz> {
        let months = self.years.saturating_mul(12).saturating_add(self.months);
        let fallback = || t.clone() - chrono::Duration::days(i64::from(months) * 31);
        let t = t.clone().checked_sub_months(Months::new(months)).unwrap_or_else(fallback);
        let t2 = t.clone();
        let t = t
            .checked_sub_days(Days::new(u64::from(self.days)))
            .unwrap_or_else(|| t2 - chrono::Duration::days(i64::from(self.days)));
        t - chrono::Duration::hours(i64::from(self.hours))
    }
}

impl fmt::Display for RetentionDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for RetentionDuration {
    type Err = String;

    /// Parses `1y2m3d4h` (each unit at most once; `m` is months).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid duration {s:?}: use years, months, days and hours like 1y2m3d4h");
        let mut d = RetentionDuration::default();
        let mut seen = String::new();
        let mut num = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit = c.to_ascii_lowercase();
            if num.is_empty() || seen.contains(unit) {
                return Err(bad());
            }
            let n: u32 = num.parse().map_err(|_| bad())?;
            match unit {
                'y' => d.years = n,
                'm' => d.months = n,
                'd' => d.days = n,
                'h' => d.hours = n,
                _ => return Err(bad()),
            }
            seen.push(unit);
            num.clear();
        }
        if !num.is_empty() || seen.is_empty() {
            return Err(bad());
        }
        Ok(d)
    }
}

/// Which rules keep snapshots. Build with `Default` and set the fields;
/// zero counts and zero durations are off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForgetPolicy {
    /// Keep the n newest snapshots.
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the n newest hours that have one.
    pub keep_hourly: u32,
    /// … of each of the n newest days.
    pub keep_daily: u32,
    /// … of each of the n newest ISO weeks.
    pub keep_weekly: u32,
    /// … of each of the n newest months.
    pub keep_monthly: u32,
    /// … of each of the n newest years.
    pub keep_yearly: u32,
    /// Keep every snapshot within this duration of the latest one.
    pub keep_within: RetentionDuration,
    /// Keep hourly snapshots within this duration of the latest one.
    pub keep_within_hourly: RetentionDuration,
    /// Keep daily snapshots within this duration.
    pub keep_within_daily: RetentionDuration,
    /// Keep weekly snapshots within this duration.
    pub keep_within_weekly: RetentionDuration,
    /// Keep monthly snapshots within this duration.
    pub keep_within_monthly: RetentionDuration,
    /// Keep yearly snapshots within this duration.
    pub keep_within_yearly: RetentionDuration,
    /// Keep snapshots having all tags of any of these lists (an empty list
    /// matches untagged snapshots).
    pub keep_tags: Vec<Vec<String>>,
}

/// One snapshot's fate under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The snapshot.
    pub id: Id,
    /// Whether any rule keeps it.
    pub keep: bool,
    /// Why it is kept, e.g. `["last snapshot", "daily snapshot"]`; empty
    /// when removed.
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    const ALL: [Unit; 5] = [Unit::Hour, Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    fn name(self) -> &'static str {
        match self {
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }

    /// A number that is equal for two times exactly when they share the
    /// calendar bucket.
    fn bucket<Tz: TimeZone>(self, t: &DateTime<Tz>) -> i64 {
        let (y, m, d, h) =
            (i64::from(t.year()), i64::from(t.month()), i64::from(t.day()), i64::from(t.hour()));
        match self {
            Unit::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Unit::Day => (y * 100 + m) * 100 + d,
            Unit::Week => {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Unit::Month => y * 100 + m,
            Unit::Year => y,
        }
    }
}

impl ForgetPolicy {
    /// Whether no rule is set (such a policy keeps everything; the CLI
    /// refuses it rather than silently doing nothing).
    pub fn is_empty(&self) -> bool {
        *self == ForgetPolicy::default()
    }

    fn counts(&self) -> [u32; 5] {
        [self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly]
    }

    fn withins(&self) -> [RetentionDuration; 5] {
        [
            self.keep_within_hourly,
            self.keep_within_daily,
            self.keep_within_weekly,
            self.keep_within_monthly,
            self.keep_within_yearly,
        ]
    }

    /// A one-line description, e.g. "keep 7 daily, 4 weekly snapshots and
    /// all snapshots within 1m of the newest".
    pub fn describe(&self) -> String {
        let count = |n: u32, what: &str| match n {
            0 => None,
            UNLIMITED => Some(format!("all {what}")),
            n => Some(format!("{n} {what}")),
        };
        let mut parts: Vec<String> = Vec::new();
        parts.extend(count(self.keep_last, "latest"));
        for (unit, n) in Unit::ALL.iter().zip(self.counts()) {
            parts.extend(count(n, unit.name()));
        }
        let mut s = if parts.is_empty() { String::new() } else { format!("{} snapshots", parts.join(", ")) };
        let mut more: Vec<String> = Vec::new();
        for (unit, d) in Unit::ALL.iter().zip(self.withins()) {
            if !d.is_zero() {
                more.push(format!("{} snapshots within {d}", unit.name()));
            }
        }
        if !self.keep_within.is_zero() {
            more.push(format!("all snapshots within {} of the newest", self.keep_within));
        }
        for t in &self.keep_tags {
            more.push(format!("all snapshots tagged {}", tag_list(t)));
        }
        for m in more {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&m);
        }
        if s.is_empty() {
            "keep everything (empty policy)".into()
        } else {
            format!("keep {s}")
        }
    }

    /// Decides for each snapshot of one group whether it is kept. `now`
    /// bounds which snapshot counts as the latest (future ones do not);
    /// calendar buckets are taken in `tz` (the CLI passes local time).
    /// Returns one verdict per snapshot, newest first (ties by id,
    /// descending: the reverse of [`Repository::list_snapshots`]'s order).
    ///
    /// [`Repository::list_snapshots`]: crate::Repository::list_snapshots
    pub fn apply<Tz: TimeZone>(&self, snaps: &[(Id, Snapshot)], now: DateTime<Utc>, tz: &Tz) -> Vec<Verdict> {
        let mut order: Vec<&(Id, Snapshot)> = snaps.iter().collect();
        order.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        if self.is_empty() {
            return order
                .iter()
                .map(|(id, _)| Verdict { id: *id, keep: true, reasons: vec!["empty policy".into()] })
                .collect();
        }
        let latest = order
            .iter()
            .map(|(_, s)| s.time.with_timezone(&Utc))
            .find(|t| *t <= now)
            .unwrap_or(now)
            .with_timezone(tz);
        let within_start = |d: &RetentionDuration| d.before(&latest).with_timezone(&Utc);
        let window = (!self.keep_within.is_zero()).then(|| within_start(&self.keep_within));
        let windows: Vec<Option<DateTime<Utc>>> =
            self.withins().iter().map(|d| (!d.is_zero()).then(|| within_start(d))).collect();
        let mut left = self.counts();
        let mut last_seen: [Option<i64>; 5] = [None; 5];
        let mut last_seen_within: [Option<i64>; 5] = [None; 5];
        let oldest = order.len().saturating_sub(1);
        let mut out = Vec::with_capacity(order.len());
        for (nr, (id, snap)) in order.iter().enumerate() {
            let mut reasons = Vec::new();
            let t_utc = snap.time.with_timezone(&Utc);
            let t = snap.time.with_timezone(tz);
            for list in &self.keep_tags {
                if has_all_tags(snap, list) {
                    reasons.push(format!("tagged {}", tag_list(list)));
                }
            }
            if self.keep_last == UNLIMITED || (nr as u64) < u64::from(self.keep_last) {
                reasons.push("last snapshot".to_string());
            }
            for (i, unit) in Unit::ALL.iter().enumerate() {
                if left[i] == 0 {
                    continue;
                }
                let b = unit.bucket(&t);
                let new_bucket = last_seen[i] != Some(b);
                // The history ran out with counts left: keep the oldest too.
                if new_bucket || nr == oldest {
                    last_seen[i] = Some(b);
                    if left[i] != UNLIMITED {
                        left[i] -= 1;
                    }
                    let prefix = if new_bucket { "" } else { "oldest " };
                    reasons.push(format!("{prefix}{} snapshot", unit.name()));
                }
            }
            for (i, unit) in Unit::ALL.iter().enumerate() {
                let Some(start) = windows[i] else { continue };
                if t_utc <= start {
                    continue;
                }
                let b = unit.bucket(&t);
                let new_bucket = last_seen_within[i] != Some(b);
                if new_bucket || nr == oldest {
                    last_seen_within[i] = Some(b);
                    let prefix = if new_bucket { "" } else { "oldest " };
                    reasons.push(format!("{prefix}{} within {}", unit.name(), self.withins()[i]));
                }
            }
            if window.is_some_and(|start| t_utc > start) {
                reasons.push(format!("within {}", self.keep_within));
            }
            out.push(Verdict { id: *id, keep: !reasons.is_empty(), reasons });
        }
        out
    }
}

fn has_all_tags(snap: &Snapshot, list: &[String]) -> bool {
    if list.is_empty() {
        return snap.tags.is_empty();
    }
    list.iter().all(|t| snap.tags.iter().any(|x| x == t))
}

fn tag_list(list: &[String]) -> String {
    if list.is_empty() {
        "(no tags)".into()
    } else {
        list.join(",")
    }
}

/// Which snapshot properties separate groups (restic's `--group-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the set of backed-up paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// host and paths, as restic: a policy never weighs one machine's or
    /// one directory's backups against another's.
    fn default() -> Self {
        GroupBy { host: true, paths: true, tags: false }
    }
}

impl FromStr for GroupBy {
    type Err = String;

    /// Parses a comma-separated subset of `host`, `paths`, `tags`; the
    /// empty string means one group for everything.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut g = GroupBy { host: false, paths: false, tags: false };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                _ => return Err(format!("invalid --group-by {part:?}: use host, paths and/or tags")),
            }
        }
        Ok(g)
    }
}

/// What the snapshots of one group share; `None` for a property that is
/// not grouped on.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// The host name.
    pub host: Option<String>,
    /// The backed-up paths, sorted.
    pub paths: Option<Vec<String>>,
    /// The tags, sorted.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    fn of(s: &Snapshot, by: GroupBy) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            host: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| sorted(&s.paths)),
            tags: by.tags.then(|| sorted(&s.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h:?}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Splits snapshots into groups by `by`, groups sorted by key, each group
/// keeping the input order.
pub fn group_snapshots(snaps: Vec<(Id, Snapshot)>, by: GroupBy) -> Vec<(GroupKey, Vec<(Id, Snapshot)>)> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = Default::default();
    for (id, s) in snaps {
        groups.entry(GroupKey::of(&s, by)).or_default().push((id, s));
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        let d: RetentionDuration = "1y2m3d4h".parse().unwrap();
        assert_eq!(d, RetentionDuration { years: 1, months: 2, days: 3, hours: 4 });
        assert_eq!(d.to_string(), "1y2m3d4h");
        assert_eq!("7d".parse::<RetentionDuration>().unwrap().to_string(), "7d");
        for bad in ["", "7", "d", "1w", "1d1d", "-1d", "1.5d"] {
            assert!(bad.parse::<RetentionDuration>().is_err(), "{bad:?}");
        }
        let t = DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z").unwrap();
        let m: RetentionDuration = "1m".parse().unwrap();
        assert_eq!(m.before(&t).to_rfc3339(), "2026-02-28T12:00:00+00:00");
    }

    #[test]
    fn group_by_parses() {
        assert_eq!("host,paths".parse::<GroupBy>().unwrap(), GroupBy::default());
        assert_eq!("".parse::<GroupBy>().unwrap(), GroupBy { host: false, paths: false, tags: false });
        assert!("hosts,color".parse::<GroupBy>().is_err());
    }
}
