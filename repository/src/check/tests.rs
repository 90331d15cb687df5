//! Index-level checks that need hand-made index files: duplicates,
//! conflicts and one pack listed differently by two index files.

use std::sync::Arc;

use arch_index::{BlobType, Compression, Id, IndexFile, PackEntry};

use super::*;
use crate::{InitOptions, KdfParams, LocalBackend, PackWriter};

fn repo(dir: &std::path::Path) -> Repository {
    let opts = InitOptions::default().kdf(KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 });
    Repository::init(Arc::new(LocalBackend::new(dir)), b"pw", &opts).unwrap()
}

/// Stores a data pack of `blobs` (content, claimed raw length) without indexing it.
fn store_pack(repo: &Repository, blobs: &[(&[u8], u32)]) -> PackEntry {
    let mut w = PackWriter::new(BlobType::Data, 1024);
    for (data, raw) in blobs {
        w.add(repo.key(), Id::hash(data), data, *raw, Compression::None).unwrap();
    }
    let p = w.finish(repo.key()).unwrap();
    repo.backend().create(FileKind::Pack, &p.id.to_hex(), &p.test_bytes()).unwrap();
    PackEntry { pack: p.id, blobs: p.blobs }
}

fn save_index(repo: &Repository, packs: Vec<PackEntry>) {
    repo.save_object(FileKind::Index, &IndexFile { packs, ..Default::default() }.encode()).unwrap();
}

fn run(dir: &std::path::Path, read: ReadData) -> CheckReport {
    let repo = Repository::open(Arc::new(LocalBackend::new(dir)), b"pw").unwrap();
    check(&repo, &CheckOptions::default().read_data(read), &NoCheckProgress).unwrap()
}

#[test]
fn duplicates_are_fine_and_conflicts_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let first = store_pack(&r, &[(b"alpha", 5), (b"beta", 4)]);
    save_index(&r, vec![first.clone()]);
    // The same pack listed again, identically: harmless.
    save_index(&r, vec![first.clone()]);
    // A second copy of "alpha" in another pack: a duplicate, harmless.
    let second = store_pack(&r, &[(b"alpha", 5)]);
    save_index(&r, vec![second]);
    let rep = run(dir.path(), ReadData::All);
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!((rep.packs, rep.duplicate_blobs, rep.blobs_read), (2, 1, 3));

    // A pack whose header and index claim a wrong plaintext length for
    // "beta": its entries conflict with the first pack's.
    let bad = store_pack(&r, &[(b"beta", 99)]);
    save_index(&r, vec![bad.clone()]);
    let rep = run(dir.path(), ReadData::None);
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert!(
        matches!(&rep.problems[0].kind, ProblemKind::IndexConflict { blob, .. } if *blob == Id::hash(b"beta")),
        "{:?}",
        rep.problems
    );
    // Reading the data shows which copy is wrong.
    let rep = run(dir.path(), ReadData::All);
    assert!(rep
        .problems
        .iter()
        .any(|p| matches!(&p.kind, ProblemKind::BlobDamaged { pack, .. } if *pack == bad.pack)));
}

#[test]
fn a_pack_listed_differently_by_two_index_files_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let p = store_pack(&r, &[(b"one", 3), (b"two", 3)]);
    save_index(&r, vec![p.clone()]);
    let mut wrong = p.clone();
    wrong.blobs.truncate(1);
    save_index(&r, vec![wrong]);
    let rep = run(dir.path(), ReadData::None);
    assert!(
        rep.problems
            .iter()
            .any(|q| matches!(&q.kind, ProblemKind::PackIndexMismatch { pack, .. } if *pack == p.pack)),
        "{:?}",
        rep.problems
    );
}

#[test]
fn a_header_that_disagrees_with_the_index_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let p = store_pack(&r, &[(b"one", 3), (b"two", 3)]);
    let mut listed = p.clone();
    listed.blobs[1].raw_length = 7;
    save_index(&r, vec![listed]);
    let rep = run(dir.path(), ReadData::None);
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    let ProblemKind::PackIndexMismatch { pack, detail } = &rep.problems[0].kind else {
        panic!("{:?}", rep.problems)
    };
    assert_eq!(*pack, p.pack);
    assert!(detail.contains(&Id::hash(b"two").to_hex()), "{detail}");
}

#[test]
fn superseded_index_files_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let gone = store_pack(&r, &[(b"old", 3)]);
    let old = r.save_object(
        FileKind::Index,
        &IndexFile { packs: vec![gone.clone()], ..Default::default() }.encode(),
    );
    let kept = store_pack(&r, &[(b"new", 3)]);
    let file = IndexFile { supersedes: vec![old.unwrap()], packs: vec![kept], ..Default::default() };
    r.save_object(FileKind::Index, &file.encode()).unwrap();
    // A prune that stopped after writing the new index and deleting the pack.
    r.backend().delete(FileKind::Pack, &gone.pack.to_hex()).unwrap();
    let rep = run(dir.path(), ReadData::All);
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!((rep.index_files, rep.packs, rep.packs_read.len()), (1, 1, 1));
}

#[test]
fn an_unreadable_index_file_is_reported_and_its_packs_look_unreferenced() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let p = store_pack(&r, &[(b"data", 4)]);
    let id =
        r.save_object(FileKind::Index, &IndexFile { packs: vec![p.clone()], ..Default::default() }.encode());
    let id = id.unwrap();
    // Damage it after the repository was opened (opening would refuse it).
    let opened = Repository::open(Arc::new(LocalBackend::new(dir.path())), b"pw").unwrap();
    let path = dir.path().join("index").join(id.to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50] ^= 1;
    r.backend().delete(FileKind::Index, &id.to_hex()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let rep = check(&opened, &CheckOptions::default(), &NoCheckProgress).unwrap();
    assert!(
        matches!(&rep.problems[..], [q] if matches!(&q.kind, ProblemKind::IndexUnreadable { index, .. } if *index == id)),
        "{:?}",
        rep.problems
    );
    assert_eq!(
        rep.unreferenced_packs,
        vec![(
            p.pack,
            std::fs::metadata(dir.path().join("data").join(&p.pack.to_hex()[..2]).join(p.pack.to_hex()))
                .unwrap()
                .len()
        )]
    );
}
