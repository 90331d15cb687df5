//! Browsing snapshots without restoring them: resolving `<snapshot>[:path]`,
//! finding a node by path, walking a tree depth-first, and reading a file's
//! content as a stream.
//!
//! Everything here is streaming: a walk holds one decoded tree per level of
//! directory depth, never a whole snapshot, and a file is read one blob at
//! a time. Paths inside a snapshot are raw bytes (names need not be UTF-8),
//! absolute (`/home/alice`), with `/` as the only separator.

use std::io::Read;

use arch_index::{BlobId, BlobType, Id};
use arch_repository::{
    FileKind, Node, NodeKind, PrefixMatch, RepoError, Repository, Snapshot, SnapshotFilter,
};

use crate::error::ArchiveError;

pub use crate::browse_diff::{diff_trees, metadata_differs, Change, DiffOptions, DiffStats, DiffVisitor};
pub use crate::browse_dump::{dump_archive, dump_file, ArchiveFormat, DumpStats};
pub use crate::browse_find::{FindQuery, FindVisitor, Finder};
pub use crate::browse_stats::{stats, RepoStats, StatsMode};
pub use arch_index::{Compression, IndexFile, PackEntry, PackedBlob};

/// Splits `<snapshot>[:subpath]` at the first `:`. Snapshot references
/// (`latest`, hex id prefixes) never contain a colon, so everything after
/// it is the path, which may itself contain colons. An empty path after
/// the colon means the root.
///
/// ```
/// use arch_archiver::split_snapshot_spec;
/// assert_eq!(split_snapshot_spec(b"latest"), (&b"latest"[..], None));
/// assert_eq!(split_snapshot_spec(b"1a2b:/etc/a:b"), (&b"1a2b"[..], Some(&b"/etc/a:b"[..])));
/// ```
pub fn split_snapshot_spec(spec: &[u8]) -> (&[u8], Option<&[u8]>) {
    match spec.iter().position(|&b| b == b':') {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec, None),
    }
}

/// Resolves `<snapshot>[:subpath]` (see [`split_snapshot_spec`]) to the
/// snapshot and the node at the path (the root directory when no path is
/// given). `filter` applies to `latest` only, as in
/// [`Repository::find_snapshot_filtered`].
pub fn resolve_snapshot_spec(
    repo: &Repository,
    spec: &[u8],
    filter: &SnapshotFilter,
) -> Result<(Id, Snapshot, Node), ArchiveError> {
    let (snap, path) = split_snapshot_spec(spec);
    let snap = std::str::from_utf8(snap).map_err(|_| {
        ArchiveError::Invalid(format!("snapshot {:?}: not a snapshot id", String::from_utf8_lossy(snap)))
    })?;
    let (id, snapshot) = repo.find_snapshot_filtered(snap, filter)?;
    let node = find_node(repo, &snapshot.tree, path.unwrap_or(b"/"))?;
    Ok((id, snapshot, node))
}

/// A stand-in node for a snapshot's root directory: a directory named `/`
/// whose subtree is `tree`.
pub fn root_node(tree: &Id) -> Node {
    let mut n = Node::new(b"/".to_vec(), NodeKind::Dir);
    n.mode = 0o755;
    n.subtree = Some(*tree);
    n
}

/// The normalised components of a path inside a snapshot: empty and `.`
/// components are dropped and `..` removes the previous component (it
/// never climbs above the root).
pub fn path_components(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Joins components into the absolute form used everywhere in this module
/// (`/` for the root).
pub fn join_components(parts: &[&[u8]]) -> Vec<u8> {
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    out
}

/// The node at `path` below the root tree `root` (see [`root_node`] for
/// the root itself). Loads one tree per path component. Fails with
/// [`ArchiveError::Invalid`] naming the path that does not exist.
pub fn find_node(repo: &Repository, root: &Id, path: &[u8]) -> Result<Node, ArchiveError> {
    let parts = path_components(path);
    let mut node = root_node(root);
    for (i, part) in parts.iter().enumerate() {
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(s)) => s,
            _ => {
                return Err(ArchiveError::Invalid(format!(
                    "{} is not a directory in the snapshot",
                    escape_path(&join_components(&parts[..i]))
                )))
            }
        };
        let tree = repo.load_tree(&sub)?;
        let pos = tree.nodes.binary_search_by(|n| n.name.as_slice().cmp(part)).map_err(|_| {
            ArchiveError::Invalid(format!(
                "{} does not exist in the snapshot",
                escape_path(&join_components(&parts[..=i]))
            ))
        })?;
        node = tree.nodes.into_iter().nth(pos).expect("index from binary search");
    }
    Ok(node)
}

/// What a walk visitor wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalkControl {
    /// Go on (into this node's children if it is a directory).
    Continue,
    /// Do not descend into this directory; go on with its siblings.
    SkipChildren,
    /// End the walk.
    Stop,
}

/// The callback of [`walk_tree`]: a node's absolute path and the node.
pub type WalkVisitor<'v> = dyn FnMut(&[u8], &Node) -> Result<WalkControl, ArchiveError> + 'v;

/// Walks the tree `tree` depth-first in name order (parents before their
/// children), calling `visit` with each node's absolute path (`prefix`
/// joined with the names below it) and the node. Holds one decoded tree
/// per directory level. Returns `Ok(false)` if the visitor stopped the walk.
pub fn walk_tree(
    repo: &Repository,
    tree: &Id,
    prefix: &[u8],
    visit: &mut WalkVisitor<'_>,
) -> Result<bool, ArchiveError> {
    let mut path = prefix.to_vec();
    if path.last() == Some(&b'/') {
        path.pop();
    }
    walk_inner(repo, tree, &mut path, visit)
}

fn walk_inner(
    repo: &Repository,
    tree: &Id,
    path: &mut Vec<u8>,
    visit: &mut WalkVisitor<'_>,
) -> Result<bool, ArchiveError> {
    let t = repo.load_tree(tree)?;
    let len = path.len();
    for node in &t.nodes {
        path.truncate(len);
        path.push(b'/');
        path.extend_from_slice(&node.name);
        match visit(path, node)? {
            WalkControl::Stop => return Ok(false),
            WalkControl::SkipChildren => continue,
            WalkControl::Continue => {}
        }
        if node.kind == NodeKind::Dir {
            let sub = subtree_of(node, path)?;
            if !walk_inner(repo, &sub, path, visit)? {
                return Ok(false);
            }
        }
    }
    path.truncate(len);
    Ok(true)
}

/// The subtree id of a directory node, or a "damaged" error naming `path`.
pub(crate) fn subtree_of(node: &Node, path: &[u8]) -> Result<Id, ArchiveError> {
    node.subtree.ok_or_else(|| {
        ArchiveError::Repo(RepoError::Corrupt {
            what: format!("directory {}", escape_path(path)),
            detail: "no subtree".into(),
        })
    })
}

/// A path for people: valid UTF-8 is kept, every other byte and every
/// control character is written as `\xNN`, and a backslash as `\\`, so the
/// result is unambiguous and safe to print on a terminal.
pub fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for x in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{x:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reads a file's content blob by blob: at most one blob is held in memory.
/// Every blob is authenticated and hash-checked as it is read.
pub struct ContentReader<'a> {
    repo: &'a Repository,
    blobs: Vec<BlobId>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    /// A reader of the data blobs `blobs`, in order.
    pub fn new(repo: &'a Repository, blobs: Vec<BlobId>) -> ContentReader<'a> {
        ContentReader { repo, blobs, next: 0, buf: Vec::new(), pos: 0 }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.blobs.get(self.next) else {
                return Ok(0);
            };
            self.buf = self.repo.read_blob(BlobType::Data, id).map_err(std::io::Error::other)?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A hex id prefix (any length up to 64, either case), matched against
/// ids without formatting them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPrefix {
    nibbles: Vec<u8>,
}

impl IdPrefix {
    /// Parses a prefix of 1 to 64 hex characters.
    pub fn parse(s: &str) -> Result<IdPrefix, ArchiveError> {
        let nibbles: Option<Vec<u8>> = s.chars().map(|c| c.to_digit(16).map(|d| d as u8)).collect();
        match nibbles {
            Some(n) if !n.is_empty() && n.len() <= 64 => Ok(IdPrefix { nibbles: n }),
            _ => Err(ArchiveError::Invalid(format!(
                "{s:?} is not an id or id prefix (1 to 64 hex characters)"
            ))),
        }
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: &Id) -> bool {
        self.nibbles.iter().enumerate().all(|(i, &n)| {
            let b = id.0[i / 2];
            let have = if i % 2 == 0 { b >> 4 } else { b & 15 };
            have == n
        })
    }
}

/// Resolves a unique id prefix (at least 4 hex characters, or a full id)
/// among the stored objects of `kind`. Errors name the kind and say what
/// to do when nothing or more than one object matches.
pub fn resolve_object_prefix(repo: &Repository, kind: FileKind, prefix: &str) -> Result<Id, ArchiveError> {
    match repo.match_prefix(kind, prefix)? {
        PrefixMatch::One(id) => Ok(id),
        PrefixMatch::Invalid => {
            IdPrefix::parse(prefix)?;
            Err(ArchiveError::Invalid(format!("{kind} id {prefix:?}: give at least 4 hex characters")))
        }
        PrefixMatch::None => Err(ArchiveError::Invalid(format!("no {kind} matches {prefix:?}"))),
        PrefixMatch::Many(_) => Err(ArchiveError::Invalid(format!(
            "{kind} id prefix {prefix:?} is ambiguous; give more characters"
        ))),
    }
}

/// Resolves a unique blob id prefix among the indexed blobs of type `t`.
pub fn resolve_blob_prefix(repo: &Repository, t: BlobType, prefix: &str) -> Result<BlobId, ArchiveError> {
    if let Some(id) = Id::from_hex(prefix) {
        return Ok(id);
    }
    let p = IdPrefix::parse(prefix)?;
    if prefix.len() < 4 {
        return Err(ArchiveError::Invalid(format!("blob id {prefix:?}: give at least 4 hex characters")));
    }
    let mut found: Option<BlobId> = None;
    for loc in repo.index().all_blobs() {
        if loc.blob.blob_type == t && p.matches(&loc.blob.id) && found != Some(loc.blob.id) {
            if found.is_some() {
                return Err(ArchiveError::Invalid(format!(
                    "blob id prefix {prefix:?} is ambiguous; give more characters"
                )));
            }
            found = Some(loc.blob.id);
        }
    }
    found.ok_or_else(|| ArchiveError::Invalid(format!("no indexed blob matches {prefix:?}")))
}

/// Reads a pack's header (only its tail is read, not the blobs) and
/// returns its entries with their offsets.
pub fn read_pack_header(repo: &Repository, pack: &Id) -> Result<Vec<PackedBlob>, ArchiveError> {
    let name = pack.to_hex();
    let size = repo
        .backend()
        .list(FileKind::Pack)
        .map_err(RepoError::from)?
        .into_iter()
        .find(|i| i.name == name)
        .map(|i| i.size)
        .ok_or_else(|| ArchiveError::Invalid(format!("pack {} does not exist", pack.short())))?;
    Ok(repo.read_pack_header(pack, size)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_splitting_and_paths() {
        assert_eq!(split_snapshot_spec(b"latest"), (&b"latest"[..], None));
        assert_eq!(split_snapshot_spec(b"ab12:"), (&b"ab12"[..], Some(&b""[..])));
        assert_eq!(split_snapshot_spec(b"ab12:/a:b/c"), (&b"ab12"[..], Some(&b"/a:b/c"[..])));
        assert_eq!(path_components(b"//a/./b/../c/"), [&b"a"[..], b"c"]);
        assert_eq!(path_components(b"/../.."), Vec::<&[u8]>::new());
        assert_eq!(join_components(&[]), b"/");
        assert_eq!(join_components(&[b"a", b"b\xff"]), b"/a/b\xff");
    }

    #[test]
    fn escaping_is_unambiguous() {
        assert_eq!(escape_path(b"/caf\xc3\xa9"), "/caf\u{e9}");
        assert_eq!(escape_path(b"/caf\xe9"), "/caf\\xe9");
        assert_eq!(escape_path(b"a\\b\nc\x7f"), "a\\\\b\\x0ac\\x7f");
    }

    #[test]
    fn id_prefixes() {
        let id = Id::hash(b"abc"); // 6437b3ac...
        assert!(IdPrefix::parse("6").unwrap().matches(&id));
        assert!(IdPrefix::parse("6437B3A").unwrap().matches(&id));
        assert!(IdPrefix::parse(&id.to_hex()).unwrap().matches(&id));
        assert!(!IdPrefix::parse("6438").unwrap().matches(&id));
        assert!(IdPrefix::parse("").is_err());
        assert!(IdPrefix::parse("xyz").is_err());
        assert!(IdPrefix::parse(&"0".repeat(65)).is_err());
    }
}
