//! Selecting snapshots by host, tag and path.

use crate::snapshot::Snapshot;

/// Which snapshots a command considers. Empty lists match everything.
///
/// - `hosts`: the snapshot's host is one of them.
/// - `tags`: each entry is a comma-separated group ("a,b" = has a AND b);
///   a snapshot matches if it matches any group (as in restic).
/// - `paths`: the snapshot's paths contain every given path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotFilter {
    /// Accepted hosts.
    pub hosts: Vec<String>,
    /// Tag groups.
    pub tags: Vec<String>,
    /// Required paths.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Adds an accepted host.
    pub fn host(mut self, h: impl Into<String>) -> Self {
        self.hosts.push(h.into());
        self
    }
    /// Adds a tag group ("a,b" requires both).
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.tags.push(t.into());
        self
    }
    /// Adds a required path.
    pub fn path(mut self, p: impl Into<String>) -> Self {
        self.paths.push(p.into());
        self
    }

    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.contains(&s.hostname);
        let tags_ok = self.tags.is_empty()
            || self.tags.iter().any(|group| {
                group
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .all(|t| s.tags.iter().any(|x| x == t))
            });
        let paths_ok = self.paths.iter().all(|p| {
            let p = p.trim_end_matches('/');
            s.paths.iter().any(|x| x.trim_end_matches('/') == p)
        });
        host_ok && tags_ok && paths_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(host: &str, tags: &[&str], paths: &[&str]) -> Snapshot {
        Snapshot {
            time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap(),
            tree: arch_index::Id::default(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            hostname: host.into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            parent: None,
            program_version: String::new(),
            summary: None,
            original: None,
        }
    }

    #[test]
    fn host_tag_groups_and_paths() {
        let s = snap("web", &["daily", "db"], &["/srv", "/etc"]);
        assert!(SnapshotFilter::default().matches(&s));
        assert!(SnapshotFilter::default().host("web").host("x").matches(&s));
        assert!(!SnapshotFilter::default().host("x").matches(&s));
        assert!(SnapshotFilter::default().tag("daily,db").matches(&s));
        assert!(!SnapshotFilter::default().tag("daily,weekly").matches(&s));
        assert!(SnapshotFilter::default().tag("daily,weekly").tag("db").matches(&s));
        assert!(SnapshotFilter::default().path("/srv/").path("/etc").matches(&s));
        assert!(!SnapshotFilter::default().path("/home").matches(&s));
    }
}
