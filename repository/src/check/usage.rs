//! Which snapshots and paths need a damaged blob: a walk of each
//! snapshot's trees that only descends into trees leading to damage.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arch_index::{BlobId, BlobType};

use super::BlobKey;
use crate::repo::Repository;
use crate::tree::{NodeKind, Tree};

pub(super) struct Taint<'a> {
    repo: &'a Repository,
    damaged: &'a HashMap<BlobKey, Vec<usize>>,
    /// Tree → whether a damaged blob is reachable from it.
    memo: HashMap<BlobId, bool>,
    /// Decoded trees that are tainted (the path walk descends into them).
    trees: HashMap<BlobId, Tree>,
}

impl<'a> Taint<'a> {
    pub(super) fn new(repo: &'a Repository, damaged: &'a HashMap<BlobKey, Vec<usize>>) -> Taint<'a> {
        Taint { repo, damaged, memo: HashMap::new(), trees: HashMap::new() }
    }

    /// Recursion depth is the directory depth of a snapshot; ids are
    /// content hashes, so the tree graph has no cycles.
    pub(super) fn tainted(&mut self, id: &BlobId) -> bool {
        if let Some(t) = self.memo.get(id) {
            return *t;
        }
        if self.damaged.contains_key(&(BlobType::Tree, *id)) {
            self.memo.insert(*id, true);
            return true;
        }
        let Ok(tree) = self.repo.load_tree(id) else {
            self.memo.insert(*id, false);
            return false;
        };
        let mut t = false;
        for n in &tree.nodes {
            match n.kind {
                NodeKind::File => {
                    t |= n.content.iter().any(|b| self.damaged.contains_key(&(BlobType::Data, *b)))
                }
                NodeKind::Dir => {
                    if let Some(s) = n.subtree {
                        t |= self.tainted(&s);
                    }
                }
                _ => {}
            }
        }
        self.memo.insert(*id, t);
        if t {
            self.trees.insert(*id, tree);
        }
        t
    }

    pub(super) fn walk(
        &self,
        si: usize,
        id: &BlobId,
        path: &str,
        users: &mut HashMap<BlobKey, BTreeMap<usize, BTreeSet<String>>>,
    ) {
        let key = (BlobType::Tree, *id);
        if self.damaged.contains_key(&key) {
            let p = if path.is_empty() { "/".to_string() } else { path.to_string() };
            users.entry(key).or_default().entry(si).or_default().insert(p);
            if !self.trees.contains_key(id) {
                return;
            }
        }
        let Some(tree) = self.trees.get(id) else { return };
        for n in &tree.nodes {
            let child = format!("{path}/{}", String::from_utf8_lossy(&n.name));
            match n.kind {
                NodeKind::File => {
                    for b in &n.content {
                        let k = (BlobType::Data, *b);
                        if self.damaged.contains_key(&k) {
                            users.entry(k).or_default().entry(si).or_default().insert(child.clone());
                        }
                    }
                }
                NodeKind::Dir => {
                    if let Some(s) = n.subtree.filter(|s| self.memo.get(s) == Some(&true)) {
                        self.walk(si, &s, &child, users);
                    }
                }
                _ => {}
            }
        }
    }
}
