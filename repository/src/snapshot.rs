use arch_index::Id;
use serde::{Deserialize, Serialize};

/// Counters of one backup, stored in its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotSummary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose content or metadata changed.
    pub files_changed: u64,
    /// Files identical to the parent's.
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Other nodes (symlinks, fifos, devices).
    pub others: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Total size of all files.
    pub bytes_total: u64,
    /// New blobs stored.
    pub blobs_added: u64,
    /// Plaintext bytes of new blobs.
    pub bytes_added_raw: u64,
    /// Bytes written to the repository (sealed, compressed).
    pub bytes_added_stored: u64,
    /// Wall time of the backup, seconds.
    pub duration_secs: f64,
}

/// A snapshot: the root tree of one backup and facts about it.
/// Stored as sealed JSON in `snapshots/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started.
    pub time: chrono::DateTime<chrono::FixedOffset>,
    /// The root tree blob.
    pub tree: Id,
    /// The backed-up paths, absolute.
    pub paths: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Tags, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The snapshot used for change detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Version of the program that wrote it.
    pub program_version: String,
    /// Backup counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
    /// When this snapshot replaced another one whose metadata was changed
    /// (`arch tag`), the id of the snapshot the backup first wrote; kept
    /// across further rewrites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
}
