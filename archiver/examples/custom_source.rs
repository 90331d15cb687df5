//! Back up a tree that the program describes itself (here: kept in
//! memory, as a sync tool might model a remote folder), then back it up
//! again: unchanged files are not read a second time.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arch_archiver::{
    dump_file, find_node, Backup, InitOptions, KdfParams, LocalBackend, Node, NodeKind, Repository,
    Timestamp, TreeSource,
};

/// Files by path ("dir/name"), directories implied.
struct MemoryTree {
    files: BTreeMap<PathBuf, (Vec<u8>, i64)>,
    opened: Arc<AtomicUsize>,
}

impl TreeSource for MemoryTree {
    fn entries(&mut self, dir: &Path) -> std::io::Result<Vec<Node>> {
        let mut out: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
        for (path, (data, mtime)) in &self.files {
            let Ok(rest) = path.strip_prefix(dir) else { continue };
            let mut parts = rest.components();
            let Some(first) = parts.next() else { continue };
            let name = first.as_os_str().as_encoded_bytes().to_vec();
            let node = if parts.next().is_some() {
                let mut n = Node::new(name.clone(), NodeKind::Dir);
                n.mode = 0o755;
                n
            } else {
                let mut n = Node::new(name.clone(), NodeKind::File);
                n.mode = 0o644;
                n.size = data.len() as u64;
                n.mtime = Timestamp(*mtime, 0);
                n
            };
            out.insert(name, node);
        }
        Ok(out.into_values().collect())
    }

    fn open(&mut self, path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let (data, _) = self.files.get(path).ok_or(std::io::ErrorKind::NotFound)?;
        Ok(Box::new(Cursor::new(data.clone())))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Repository::init(backend, b"example password", &InitOptions::default().kdf(kdf))?;

    let opened = Arc::new(AtomicUsize::new(0));
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("photos/2026/beach.jpg"), (vec![7u8; 500_000], 1_700_000_000));
    files.insert(PathBuf::from("photos/2026/city.jpg"), (vec![9u8; 300_000], 1_700_000_100));
    files.insert(PathBuf::from("readme.txt"), (b"my photos".to_vec(), 1_700_000_200));
    let tree = MemoryTree { files: files.clone(), opened: opened.clone() };
    let first = Backup::tree(&repo, "cloud-folder", tree).run()?;
    assert_eq!(first.snapshot.paths, ["/cloud-folder"]);
    assert_eq!(opened.load(Ordering::Relaxed), 3);

    // The stored tree reads back byte for byte.
    let node = find_node(&repo, &first.snapshot.tree, b"/cloud-folder/photos/2026/city.jpg")?;
    let mut out = Vec::new();
    dump_file(&repo, &node, &mut out)?;
    assert_eq!(out, vec![9u8; 300_000]);

    // Second run: one file changed; the other two keep size and mtime and
    // are taken from the parent snapshot without being opened.
    files.insert(PathBuf::from("readme.txt"), (b"my photos, sorted".to_vec(), 1_700_000_900));
    let tree = MemoryTree { files, opened: opened.clone() };
    let second = Backup::tree(&repo, "cloud-folder", tree).run()?;
    assert_eq!(second.snapshot.parent, first.snapshot_id);
    assert_eq!(opened.load(Ordering::Relaxed), 4, "only the changed file was read again");
    println!("backed up an in-memory tree twice; the second run read 1 of 3 files");
    Ok(())
}

#[test]
fn example_runs() {
    main().unwrap();
}
