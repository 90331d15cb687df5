use arch_index::BlobId;
use serde::{Deserialize, Serialize};

use crate::error::RepoError;

/// A point in time: seconds since the Unix epoch and nanoseconds. Covers
/// every time a filesystem can store (unlike i64 nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64, pub u32);

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file (content in `content`).
    File,
    /// A directory (children in `subtree`).
    Dir,
    /// A symbolic link (target in `target`).
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket (recorded, never restored).
    Socket,
    /// A character device (`rdev`).
    Chardev,
    /// A block device (`rdev`).
    Blockdev,
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, raw bytes.
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Attribute value, raw bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// One directory entry with its metadata.
///
/// Names and symlink targets are raw bytes, so names that are not valid
/// UTF-8 survive a round trip. Optional fields are omitted when empty, so
/// the encoding stays compact and identical entries encode identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (no slashes), raw bytes.
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Node type.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits and set-id/sticky bits (st_mode & 0o7777).
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, if known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Group name, if known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
    /// Size in bytes (files), 0 otherwise.
    #[serde(default)]
    pub size: u64,
    /// Inode number (change detection, hardlinks).
    #[serde(default)]
    pub inode: u64,
    /// Device id of the filesystem holding the node.
    #[serde(default)]
    pub device: u64,
    /// Hard link count.
    #[serde(default)]
    pub links: u64,
    /// Symlink target, raw bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub target: Option<Vec<u8>>,
    /// Device number of a device node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Data blobs of a file, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    /// Tree blob of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Node {
    /// A node with the given name and kind and every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime: Timestamp::default(),
            atime: Timestamp::default(),
            ctime: Timestamp::default(),
            size: 0,
            inode: 0,
            device: 0,
            links: 0,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }
}

/// One directory: its entries sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, sorted by `name`, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Deterministic CBOR: the same entries always give the same bytes (and
    /// so the same blob id, which is what dedupes unchanged directories).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 160);
        ciborium::into_writer(self, &mut out).expect("writing CBOR to a Vec cannot fail");
        out
    }

    /// Decodes a tree, checking names are sorted, unique and slash-free
    /// (a tree that names `..` or `a/b` could escape a restore target).
    pub fn decode(bytes: &[u8], what: impl Fn() -> String) -> Result<Tree, RepoError> {
        let tree: Tree =
            ciborium::from_reader(bytes).map_err(|e| RepoError::corrupt(what(), format!("tree: {e}")))?;
        for w in tree.nodes.windows(2) {
            if w[0].name >= w[1].name {
                return Err(RepoError::corrupt(what(), "tree entries not sorted or not unique"));
            }
        }
        for n in &tree.nodes {
            if n.name.is_empty()
                || n.name == b"."
                || n.name == b".."
                || n.name.contains(&b'/')
                || n.name.contains(&0)
            {
                return Err(RepoError::corrupt(
                    what(),
                    format!("invalid entry name {:?}", String::from_utf8_lossy(&n.name)),
                ));
            }
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let mut f = Node::new(b"caf\xe9".to_vec(), NodeKind::File);
        f.content = vec![BlobId::hash(b"x")];
        f.mtime = Timestamp(-5, 999_999_999);
        f.xattrs = vec![Xattr { name: b"user.a".to_vec(), value: vec![0, 1] }];
        let mut l = Node::new(b"link".to_vec(), NodeKind::Symlink);
        l.target = Some(b"/t\xff".to_vec());
        let t = Tree { nodes: vec![f, l] };
        let a = t.encode();
        assert_eq!(a, t.clone().encode());
        assert_eq!(Tree::decode(&a, String::new).unwrap(), t);
    }

    #[test]
    fn hostile_names_are_rejected() {
        for bad in [&b".."[..], b"a/b", b"", b"."] {
            let t = Tree { nodes: vec![Node::new(bad.to_vec(), NodeKind::File)] };
            assert!(Tree::decode(&t.encode(), String::new).is_err(), "{bad:?}");
        }
        let dup = Tree { nodes: vec![Node::new(b"a".to_vec(), NodeKind::File); 2] };
        assert!(Tree::decode(&dup.encode(), String::new).is_err());
        assert!(Tree::decode(b"\xff\x00garbage", String::new).is_err());
    }
}
