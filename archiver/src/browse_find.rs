//! `find`: nodes of a snapshot whose name matches a glob, or that use a
//! given blob, tree or pack.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use arch_index::{BlobId, BlobType, Id};
use arch_repository::{Node, NodeKind, Repository};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::browse::{root_node, subtree_of, IdPrefix};
use crate::error::ArchiveError;

/// What `find` looks for. A node is reported if it matches any criterion.
///
/// - `patterns`: globs (`*`, `?`, `[ab]`, `{a,b}`, `**`). A pattern without
///   a `/` is matched against the node's name, one with a `/` against its
///   whole absolute path in the snapshot (`/home/*/notes.txt`, `**/x`).
/// - `blobs`: id prefixes of data blobs; files holding such a blob match.
/// - `trees`: id prefixes of tree blobs; directories with such a subtree
///   match (the root, `/`, too).
/// - `packs`: id prefixes of packs; files with a blob and directories
///   whose tree blob is stored in such a pack match.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct FindQuery {
    /// Name or path globs.
    pub patterns: Vec<String>,
    /// Match globs ignoring case.
    pub ignore_case: bool,
    /// Data blob id prefixes.
    pub blobs: Vec<String>,
    /// Tree blob id prefixes.
    pub trees: Vec<String>,
    /// Pack id prefixes.
    pub packs: Vec<String>,
}

impl FindQuery {
    /// Adds a glob.
    pub fn pattern(mut self, p: impl Into<String>) -> Self {
        self.patterns.push(p.into());
        self
    }
    /// Globs ignore case.
    pub fn ignore_case(mut self, yes: bool) -> Self {
        self.ignore_case = yes;
        self
    }
    /// Adds a data blob id prefix.
    pub fn blob(mut self, id: impl Into<String>) -> Self {
        self.blobs.push(id.into());
        self
    }
    /// Adds a tree blob id prefix.
    pub fn tree(mut self, id: impl Into<String>) -> Self {
        self.trees.push(id.into());
        self
    }
    /// Adds a pack id prefix.
    pub fn pack(mut self, id: impl Into<String>) -> Self {
        self.packs.push(id.into());
        self
    }
}

/// The callback of [`Finder::find`]: a match's absolute path and node.
pub type FindVisitor<'v> = dyn FnMut(&[u8], &Node) -> Result<(), ArchiveError> + 'v;

/// A compiled [`FindQuery`], reusable across snapshots.
pub struct Finder {
    names: GlobSet,
    paths: GlobSet,
    blobs: Vec<IdPrefix>,
    trees: Vec<IdPrefix>,
    /// Blobs stored in the requested packs.
    in_packs: HashSet<(BlobType, BlobId)>,
    /// Trees known to hold no match (see [`Finder::find`]).
    no_match: Mutex<HashSet<Id>>,
}

impl Finder {
    /// Compiles `q`. Pack prefixes are resolved against the repository's
    /// index here (once, not per snapshot). Fails on an empty query, an
    /// invalid glob or id prefix, or a pack prefix no indexed pack has.
    pub fn new(repo: &Repository, q: &FindQuery) -> Result<Finder, ArchiveError> {
        if q.patterns.is_empty() && q.blobs.is_empty() && q.trees.is_empty() && q.packs.is_empty() {
            return Err(ArchiveError::Invalid("find: give a pattern, --blob, --tree or --pack".into()));
        }
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in &q.patterns {
            let glob = GlobBuilder::new(p)
                .case_insensitive(q.ignore_case)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| ArchiveError::Invalid(format!("pattern {p:?}: {e}")))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build =
            |b: GlobSetBuilder| b.build().map_err(|e| ArchiveError::Invalid(format!("patterns: {e}")));
        let parse = |v: &[String]| v.iter().map(|s| IdPrefix::parse(s)).collect::<Result<Vec<_>, _>>();
        let packs = parse(&q.packs)?;
        let mut in_packs = HashSet::new();
        if !packs.is_empty() {
            let mut found = HashSet::new();
            for loc in repo.index().all_blobs() {
                if packs.iter().any(|p| p.matches(&loc.pack)) {
                    found.insert(loc.pack);
                    in_packs.insert((loc.blob.blob_type, loc.blob.id));
                }
            }
            if found.is_empty() {
                return Err(ArchiveError::Invalid(format!("no indexed pack matches {}", q.packs.join(", "))));
            }
        }
        Ok(Finder {
            names: build(names)?,
            paths: build(paths)?,
            blobs: parse(&q.blobs)?,
            trees: parse(&q.trees)?,
            in_packs,
            no_match: Mutex::default(),
        })
    }

    /// Whether the node at `path` matches.
    pub fn matches(&self, path: &[u8], node: &Node) -> bool {
        if !self.names.is_empty() && path != b"/" && self.names.is_match(OsStr::from_bytes(&node.name)) {
            return true;
        }
        if !self.paths.is_empty() && self.paths.is_match(OsStr::from_bytes(path)) {
            return true;
        }
        if node.kind == NodeKind::File
            && (!self.blobs.is_empty() || !self.in_packs.is_empty())
            && node.content.iter().any(|id| {
                self.blobs.iter().any(|p| p.matches(id)) || self.in_packs.contains(&(BlobType::Data, *id))
            })
        {
            return true;
        }
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            if self.trees.iter().any(|p| p.matches(&sub)) || self.in_packs.contains(&(BlobType::Tree, sub)) {
                return true;
            }
        }
        false
    }

    /// Walks the snapshot whose root tree is `tree` and calls `found` with
    /// the path and node of every match (the root is reported as `/` when
    /// its tree matches). Returns the number of matches.
    ///
    /// Unless a pattern matches whole paths, whether a directory holds a
    /// match depends only on its tree id, so trees found to hold none are
    /// remembered and skipped unread in later snapshots: searching many
    /// similar snapshots costs little more than searching one.
    pub fn find(
        &self,
        repo: &Repository,
        tree: &Id,
        found: &mut FindVisitor<'_>,
    ) -> Result<u64, ArchiveError> {
        let mut n = 0;
        let root = root_node(tree);
        if self.matches(b"/", &root) {
            n += 1;
            found(b"/", &root)?;
        }
        let mut path = Vec::new();
        self.walk(repo, tree, &mut path, &mut n, found)?;
        Ok(n)
    }

    /// Walks one tree; returns whether anything in it matched.
    fn walk(
        &self,
        repo: &Repository,
        tree: &Id,
        path: &mut Vec<u8>,
        n: &mut u64,
        found: &mut FindVisitor<'_>,
    ) -> Result<bool, ArchiveError> {
        let cacheable = self.paths.is_empty();
        if cacheable && self.no_match.lock().expect("not poisoned").contains(tree) {
            return Ok(false);
        }
        let t = repo.load_tree(tree)?;
        let len = path.len();
        let mut any = false;
        for node in &t.nodes {
            path.truncate(len);
            path.push(b'/');
            path.extend_from_slice(&node.name);
            if self.matches(path, node) {
                any = true;
                *n += 1;
                found(path, node)?;
            }
            if node.kind == NodeKind::Dir {
                let sub = subtree_of(node, path)?;
                any |= self.walk(repo, &sub, path, n, found)?;
            }
        }
        path.truncate(len);
        if cacheable && !any {
            self.no_match.lock().expect("not poisoned").insert(*tree);
        }
        Ok(any)
    }
}
