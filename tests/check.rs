//! `check`: the structure check, `--read-data` and its subsets, and the
//! damage report (pack, blob, snapshots and paths), through the library and
//! the binary.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use arch_archiver::FileKind;
use arch_archiver::{
    check, Backup, BlobType, CheckOptions, CheckReport, Id, InitOptions, NoCheckProgress, ProblemKind,
    ReadData, Repository,
};

use crate::common::*;

/// A repository with two snapshots of `src` and small packs (one chunk of
/// 64–256 KiB per data pack), so damage can be aimed at one file.
struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    repo_dir: PathBuf,
    src: PathBuf,
    /// Snapshot ids, oldest first.
    snaps: Vec<Id>,
}

fn fixture() -> Fixture {
    let (tmp, base) = tempdir();
    let src = base.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("big.bin"), 11, 700_000);
    write_random_file(&src.join("sub/keep.bin"), 12, 300_000);
    fs::write(src.join("small.txt"), b"first version\n").unwrap();
    let repo_dir = base.join("repo");
    let opts = InitOptions::default().chunk_sizes(64 << 10, 128 << 10, 256 << 10).pack_size(64 << 10);
    let repo = init_repo_with(&repo_dir, opts);
    let first = Backup::new(&repo, [&src]).run().unwrap().snapshot_id.unwrap();
    fs::write(src.join("small.txt"), b"second version\n").unwrap();
    write_random_file(&src.join("new.bin"), 13, 200_000);
    let second = Backup::new(&repo, [&src]).run().unwrap().snapshot_id.unwrap();
    Fixture { _tmp: tmp, base, repo_dir, src, snaps: vec![first, second] }
}

fn run_check(dir: &Path, read: ReadData) -> CheckReport {
    let repo = open_repo(dir);
    check(&repo, &CheckOptions::default().read_data(read), &NoCheckProgress).expect("check runs")
}

/// The data blobs of the file at absolute `path` in snapshot `snap`.
fn file_blobs(repo: &Repository, snap: &Id, path: &Path) -> Vec<Id> {
    let s = repo.load_snapshot(snap).unwrap();
    let mut tree = repo.load_tree(&s.tree).unwrap();
    let names: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        let node = tree.nodes.iter().find(|n| &n.name == name).expect("path in snapshot").clone();
        if i + 1 == names.len() {
            return node.content;
        }
        tree = repo.load_tree(&node.subtree.unwrap()).unwrap();
    }
    unreachable!()
}

fn pack_path(repo_dir: &Path, pack: &Id) -> PathBuf {
    pack_files(repo_dir).remove(&pack.to_hex()).expect("pack file exists")
}

fn flip_byte(path: &Path, at: i64) {
    let mut b = fs::read(path).unwrap();
    let i = if at < 0 { (b.len() as i64 + at) as usize } else { at as usize };
    b[i] ^= 0x40;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(path, b).unwrap();
}

fn snapshot_set(p: &arch_archiver::Problem) -> BTreeSet<Id> {
    p.needed_by.iter().map(|u| u.snapshot).collect()
}

fn paths_of(p: &arch_archiver::Problem) -> BTreeSet<String> {
    p.needed_by.iter().flat_map(|u| u.paths.iter().cloned()).collect()
}

#[test]
fn a_clean_repository_passes_structure_and_read_data() {
    let f = fixture();
    let packs = pack_files(&f.repo_dir);
    let r = run_check(&f.repo_dir, ReadData::None);
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.packs, packs.len());
    assert_eq!(r.snapshots, 2);
    assert!(r.trees >= 4, "{r:?}");
    assert!(r.unreferenced_packs.is_empty());
    assert!(r.packs_read.is_empty());

    let r = run_check(&f.repo_dir, ReadData::All);
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.packs_read.len(), packs.len());
    assert_eq!(r.blobs_read, r.blobs);
    assert_eq!(r.bytes_read, packs.values().map(|p| fs::metadata(p).unwrap().len()).sum::<u64>());
}

#[test]
fn a_flipped_byte_in_a_blob_is_found_by_read_data_and_named() {
    let f = fixture();
    let repo = open_repo(&f.repo_dir);
    let big = f.src.join("big.bin");
    let blob = file_blobs(&repo, &f.snaps[0], &big)[1];
    let loc = repo.locate(BlobType::Data, &blob).unwrap();
    flip_byte(&pack_path(&f.repo_dir, &loc.pack), i64::from(loc.blob.offset) + 100);

    // The header is intact, so the structure check cannot see it.
    let r = run_check(&f.repo_dir, ReadData::None);
    assert!(r.is_ok(), "{:?}", r.problems);

    let r = run_check(&f.repo_dir, ReadData::All);
    assert!(!r.is_ok());
    let damaged: Vec<_> =
        r.problems.iter().filter(|p| matches!(p.kind, ProblemKind::BlobDamaged { .. })).collect();
    assert_eq!(damaged.len(), 1, "{:?}", r.problems);
    let p = damaged[0];
    match &p.kind {
        ProblemKind::BlobDamaged { pack, blob: b, blob_type, .. } => {
            assert_eq!((*pack, *b, *blob_type), (loc.pack, blob, BlobType::Data));
        }
        _ => unreachable!(),
    }
    // big.bin is in both snapshots, and nothing else needs that blob.
    assert_eq!(snapshot_set(p), f.snaps.iter().copied().collect());
    assert_eq!(paths_of(p), BTreeSet::from([big.display().to_string()]));
    assert!(r
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::PackHash { pack, .. } if pack == loc.pack)));
    assert!(p.kind.to_string().contains(&loc.pack.to_hex()) && p.kind.to_string().contains(&blob.to_hex()));
}

#[test]
fn a_flipped_byte_in_a_header_fails_the_structure_check() {
    let f = fixture();
    let repo = open_repo(&f.repo_dir);
    let keep = f.src.join("sub/keep.bin");
    let blob = file_blobs(&repo, &f.snaps[1], &keep)[0];
    let pack = repo.locate(BlobType::Data, &blob).unwrap().pack;
    flip_byte(&pack_path(&f.repo_dir, &pack), -10);
    let r = run_check(&f.repo_dir, ReadData::None);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert!(matches!(p.kind, ProblemKind::PackHeader { pack: q, .. } if q == pack), "{:?}", p.kind);
    assert!(paths_of(p).contains(&keep.display().to_string()), "{:?}", p.needed_by);
    assert_eq!(snapshot_set(p).len(), 2);
}

#[test]
fn a_deleted_pack_names_the_snapshots_and_paths_that_lost_data() {
    let f = fixture();
    let repo = open_repo(&f.repo_dir);
    let new = f.src.join("new.bin");
    let blob = file_blobs(&repo, &f.snaps[1], &new)[0];
    let pack = repo.locate(BlobType::Data, &blob).unwrap().pack;
    fs::remove_file(pack_path(&f.repo_dir, &pack)).unwrap();
    let r = run_check(&f.repo_dir, ReadData::None);
    let missing: Vec<_> = r
        .problems
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::PackMissing { pack: q, .. } if q == pack))
        .collect();
    assert_eq!((missing.len(), r.problems.len()), (1, 1), "{:?}", r.problems);
    // new.bin exists only in the second snapshot.
    assert_eq!(snapshot_set(missing[0]), BTreeSet::from([f.snaps[1]]));
    // The pack may also hold the second version of small.txt (packed
    // with new.bin's last chunk), but nothing the first snapshot has.
    let paths = paths_of(missing[0]);
    assert!(paths.contains(&new.display().to_string()), "{paths:?}");
    assert!(!paths.contains(&f.src.join("big.bin").display().to_string()), "{paths:?}");
    // Reading data skips the missing pack and still reports it once.
    let r = run_check(&f.repo_dir, ReadData::All);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
}

#[test]
fn a_deleted_tree_pack_names_the_directories() {
    let f = fixture();
    let repo = open_repo(&f.repo_dir);
    let root = repo.load_snapshot(&f.snaps[0]).unwrap().tree;
    let pack = repo.locate(BlobType::Tree, &root).unwrap().pack;
    fs::remove_file(pack_path(&f.repo_dir, &pack)).unwrap();
    let r = run_check(&f.repo_dir, ReadData::None);
    let p = r
        .problems
        .iter()
        .find(|p| matches!(p.kind, ProblemKind::PackMissing { pack: q, .. } if q == pack))
        .expect("missing tree pack reported");
    assert!(p.needed_by.iter().any(|u| u.snapshot == f.snaps[0] && u.paths == ["/"]), "{:?}", p.needed_by);
}

#[test]
fn unreferenced_packs_are_information_not_errors() {
    let f = fixture();
    let packs = pack_files(&f.repo_dir);
    let (_, some) = packs.iter().next().unwrap();
    // A valid pack under another valid name, as an interrupted backup leaves.
    let name = Id::hash(b"not indexed anywhere").to_hex();
    let dir = f.repo_dir.join("data").join(&name[..2]);
    fs::create_dir_all(&dir).unwrap();
    fs::copy(some, dir.join(&name)).unwrap();
    let r = run_check(&f.repo_dir, ReadData::All);
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.unreferenced_packs.len(), 1);
    assert_eq!(r.unreferenced_packs[0].0.to_hex(), name);
    assert_eq!(r.packs_read.len(), packs.len(), "unreferenced packs are not read");

    let env = ArchEnv::new(&f.base);
    let run = env.run(&args(&[&"--repo", &f.repo_dir, &"check"]));
    run.ok("check with an unreferenced pack");
    assert!(run.stdout.contains(&name), "{}", run.stdout);
}

#[test]
fn a_deleted_index_file_makes_blobs_missing() {
    let f = fixture();
    let indexes = files_under(&f.repo_dir.join("index"));
    assert!(!indexes.is_empty());
    // The second backup's index file: it lists new.bin's packs.
    let repo = open_repo(&f.repo_dir);
    let new_blob = file_blobs(&repo, &f.snaps[1], &f.src.join("new.bin"))[0];
    let pack = repo.locate(BlobType::Data, &new_blob).unwrap().pack;
    drop(repo);
    // The index file that lists new.bin's pack (the payload holds raw pack ids).
    let repo = open_repo(&f.repo_dir);
    let (listing, _) = indexes
        .iter()
        .find(|(p, _)| {
            let id = Id::from_hex(p.file_name().unwrap().to_str().unwrap()).unwrap();
            contains_bytes(&repo.load_object(FileKind::Index, &id).unwrap(), &pack.0)
        })
        .expect("an index file lists the pack");
    fs::remove_file(listing).unwrap();
    drop(repo);
    let r = run_check(&f.repo_dir, ReadData::None);
    assert!(!r.is_ok());
    assert!(r.unreferenced_packs.iter().any(|(p, _)| *p == pack), "its packs become unreferenced");
    // That file also listed the second snapshot's trees, so its root tree
    // is the first thing missing; the first snapshot is untouched.
    assert!(r.problems.iter().all(|p| matches!(p.kind, ProblemKind::BlobMissing { .. })), "{:?}", r.problems);
    let root = open_repo(&f.repo_dir).load_snapshot(&f.snaps[1]).unwrap().tree;
    let p = r
        .problems
        .iter()
        .find(|p| matches!(p.kind, ProblemKind::BlobMissing { blob_type: BlobType::Tree, blob } if blob == root))
        .unwrap_or_else(|| panic!("{:#?}", r.problems));
    assert_eq!(p.needed_by.len(), 1);
    assert_eq!((p.needed_by[0].snapshot, p.needed_by[0].paths.clone()), (f.snaps[1], vec!["/".to_string()]));
    let affected: BTreeSet<Id> = r.problems.iter().flat_map(snapshot_set).collect();
    assert_eq!(affected, BTreeSet::from([f.snaps[1]]));
}

#[test]
fn read_data_subsets_cover_every_pack_exactly_once() {
    let f = fixture();
    let all: BTreeSet<Id> = run_check(&f.repo_dir, ReadData::All).packs_read.into_iter().collect();
    assert!(all.len() > 6, "{} packs", all.len());
    let mut seen = Vec::new();
    for n in 1..=3 {
        let r = run_check(&f.repo_dir, ReadData::Part { n, t: 3 });
        assert!(r.is_ok());
        seen.extend(r.packs_read);
    }
    assert_eq!(seen.len(), all.len(), "no pack is read twice");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    let half = run_check(&f.repo_dir, ReadData::Percent(50.0));
    assert_eq!(half.packs_read.len(), all.len().div_ceil(2));
    let some = run_check(&f.repo_dir, ReadData::Size(200 << 10));
    assert!(some.bytes_read >= 200 << 10 && some.packs_read.len() < all.len(), "{}", some.bytes_read);
}

#[test]
fn a_cancelled_check_says_so() {
    let f = fixture();
    let repo = open_repo(&f.repo_dir);
    let opts = CheckOptions::default().read_data(ReadData::All).cancel_when(|| true);
    let r = check(&repo, &opts, &NoCheckProgress).unwrap();
    assert!(r.cancelled && !r.is_ok());
}

#[test]
fn the_cli_exits_0_when_clean_and_1_when_damaged_with_json() {
    let f = fixture();
    let env = ArchEnv::new(&f.base);
    let repo = args(&[&"--repo", &f.repo_dir]);
    let with = |more: &[&str]| {
        let mut a = repo.clone();
        a.extend(more.iter().map(|s| s.into()));
        a
    };
    let run = env.run(&with(&["check", "--read-data"]));
    run.ok("clean check");
    assert!(run.stdout.contains("no errors found"), "{}", run.stdout);
    let run = env.run(&with(&["--json", "check", "--read-data-subset", "1/2"]));
    run.ok("clean json check");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["message_type"], "summary");
    assert_eq!(v["ok"], true);
    assert!(v["packs_read"].as_u64().unwrap() < v["packs"].as_u64().unwrap());
    env.run(&with(&["check", "--read-data-subset", "0/2"])).expect_code(2, "bad subset is a usage error");

    let (name, path) = pack_files(&f.repo_dir).into_iter().next().unwrap();
    fs::remove_file(path).unwrap();
    let run = env.run(&with(&["check"]));
    run.expect_code(1, "check of a damaged repository");
    assert!(run.stdout.contains(&name), "{}", run.stdout);
    let run = env.run(&with(&["--json", "check"]));
    run.expect_code(1, "json check of a damaged repository");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["kind"], "pack_missing");
    assert_eq!(v["problems"][0]["pack"], name.as_str());
    assert!(!v["problems"][0]["needed_by"].as_array().unwrap().is_empty());
}

#[test]
fn a_flipped_byte_anywhere_in_a_pack_is_found_by_read_data() {
    let f = fixture();
    let repo = open_repo(&f.repo_dir);
    let blobs = file_blobs(&repo, &f.snaps[0], &f.src.join("big.bin"));
    let root = repo.load_snapshot(&f.snaps[0]).unwrap().tree;
    for loc in [repo.locate(BlobType::Data, &blobs[0]).unwrap(), repo.locate(BlobType::Tree, &root).unwrap()]
    {
        let path = pack_path(&f.repo_dir, &loc.pack);
        let original = fs::read(&path).unwrap();
        let len = original.len() as i64;
        let end = i64::from(loc.blob.offset + loc.blob.length);
        // Nonce, ciphertext and tag of a blob, the sealed header, the trailer.
        for at in [0, 5, 24, 100, end - 1, end, len - 30, len - 5, len - 4, len - 1] {
            flip_byte(&path, at);
            let r = run_check(&f.repo_dir, ReadData::All);
            assert!(!r.is_ok(), "flip at {at} of {len} not found");
            assert!(
                r.problems.iter().all(|p| p.kind.pack() == Some(loc.pack)),
                "flip at {at}: {:?}",
                r.problems
            );
            fs::write(&path, &original).unwrap();
        }
    }
    assert!(run_check(&f.repo_dir, ReadData::All).is_ok());
}

#[test]
fn the_cli_reports_a_damaged_index_file_instead_of_failing_to_open() {
    let f = fixture();
    let (index, _) = files_under(&f.repo_dir.join("index")).into_iter().next().unwrap();
    flip_byte(&index, 60);
    let name = index.file_name().unwrap().to_str().unwrap().to_string();
    let env = ArchEnv::new(&f.base);
    let run = env.run(&args(&[&"--repo", &f.repo_dir, &"--json", &"check"]));
    run.expect_code(1, "check with a damaged index file");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    let kinds: Vec<&str> =
        v["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "index_unreadable", "{kinds:?}");
    assert!(v["problems"][0]["message"].as_str().unwrap().contains(&name));
    assert!(!v["unreferenced_packs"].as_array().unwrap().is_empty(), "its packs are no longer indexed");
}
