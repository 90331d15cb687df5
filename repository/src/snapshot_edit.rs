//! Changing the set of snapshots: removing one (`forget`) and rewriting
//! one's tags (`tag`).
//!
//! Objects are write-once, so a changed snapshot is a new object. It is
//! written (durably) before the old one is deleted: a crash in between
//! leaves both, never neither, and the two differ only in tags.

use arch_index::Id;

use crate::backend::FileKind;
use crate::error::{BackendError, RepoError};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// How to change a snapshot's tags. `set` (when given) replaces the tags,
/// then `add` and `remove` apply in that order. Tags are kept sorted and
/// unique; empty tags are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TagChange {
    /// Replace all tags with these (`Some(vec![])` removes every tag).
    pub set: Option<Vec<String>>,
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
}

impl TagChange {
    /// Whether the change does nothing to any snapshot.
    pub fn is_empty(&self) -> bool {
        self.set.is_none() && self.add.is_empty() && self.remove.is_empty()
    }

    /// The tags `tags` become.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self.set.clone().unwrap_or_else(|| tags.to_vec());
        out.extend(self.add.iter().cloned());
        out.retain(|t| !t.is_empty() && !self.remove.contains(t));
        out.sort();
        out.dedup();
        out
    }
}

/// Applies `change` to snapshot `id` (whose content is `snap`): writes the
/// changed snapshot as a new object, then deletes the old one. The new
/// snapshot records the id the backup first wrote in `original`. Returns
/// the new id, or `None` when the tags would not change (nothing written).
pub fn retag_snapshot(
    repo: &Repository,
    id: &Id,
    snap: &Snapshot,
    change: &TagChange,
) -> Result<Option<(Id, Snapshot)>, RepoError> {
    let tags = change.apply(&snap.tags);
    if tags == snap.tags {
        return Ok(None);
    }
    let mut new = snap.clone();
    new.tags = tags;
    new.original = Some(snap.original.unwrap_or(*id));
    let new_id = repo.save_snapshot(&new)?;
    remove_snapshot(repo, id)?;
    Ok(Some((new_id, new)))
}

/// Deletes snapshot `id`. A snapshot that is already gone (another
/// process removed it) is not an error. The data it used stays until
/// prune removes what no snapshot needs.
pub fn remove_snapshot(repo: &Repository, id: &Id) -> Result<(), RepoError> {
    match repo.backend().delete(FileKind::Snapshot, &id.to_hex()) {
        Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tag_changes() {
        let add = TagChange { add: v(&["b", "a", ""]), ..Default::default() };
        assert_eq!(add.apply(&v(&["c", "a"])), v(&["a", "b", "c"]));
        let rm = TagChange { remove: v(&["a"]), ..Default::default() };
        assert_eq!(rm.apply(&v(&["a", "c"])), v(&["c"]));
        let set = TagChange { set: Some(v(&["x"])), add: v(&["y"]), remove: v(&["x"]) };
        assert_eq!(set.apply(&v(&["a"])), v(&["y"]));
        assert!(TagChange::default().is_empty());
        assert!(!TagChange { set: Some(vec![]), ..Default::default() }.is_empty());
    }
}
