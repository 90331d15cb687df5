//! Tampering: a changed byte anywhere in any stored object (config, key
//! files, snapshots, index files, packs: blobs and pack headers alike) is
//! detected, and so is swapping two valid objects (names are the blake3 of
//! the stored bytes, and every object is authenticated with the key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_archiver::{check, Backup, CheckOptions, LocalBackend, NoCheckProgress, ReadData, Repository};

use crate::common;

/// Every stored object except locks (which hold no data), with its folder.
fn stored_objects(repo: &Path) -> Vec<(String, PathBuf)> {
    let mut out = vec![("config".to_string(), repo.join("config"))];
    for folder in ["keys", "snapshots", "index"] {
        for e in std::fs::read_dir(repo.join(folder)).unwrap() {
            out.push((folder.to_string(), e.unwrap().path()));
        }
    }
    for (_, p) in common::pack_files(repo) {
        out.push(("data".to_string(), p));
    }
    out.sort();
    out
}

/// Whether a fresh open + `check --read-data` + reading every snapshot's
/// trees notices something wrong. Returns the first complaint.
fn complaint(repo_dir: &Path) -> Option<String> {
    let repo = match Repository::open(Arc::new(LocalBackend::new(repo_dir)), common::PASSWORD.as_bytes()) {
        Ok(r) => r,
        Err(e) => return Some(format!("open: {e}")),
    };
    match check(&repo, &CheckOptions::default().read_data(ReadData::All), &NoCheckProgress) {
        Err(e) => Some(format!("check: {e}")),
        Ok(r) if !r.is_ok() => Some(format!("check: {:?}", r.problems)),
        Ok(_) => None,
    }
}

fn small_repo() -> (tempfile::TempDir, PathBuf) {
    let (t, work) = common::tempdir();
    let repo_dir = work.join("repo");
    let opts =
        arch_archiver::InitOptions::default().chunk_sizes(16 << 10, 32 << 10, 64 << 10).pack_size(64 << 10);
    let repo = common::init_repo_with(&repo_dir, opts);
    let src = work.join("src");
    for i in 0..4u64 {
        let p = src.join(format!("d{i}/f"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        common::write_random_file(&p, i, 50 << 10);
    }
    std::fs::write(src.join("text"), "some text\n".repeat(500)).unwrap();
    // Small incompressible files of one size: single chunks whose sealed
    // blobs have equal lengths, several of them in one pack.
    for i in 0..8u64 {
        common::write_random_file(&src.join(format!("same-{i}")), 100 + i, 3000);
    }
    Backup::new(&repo, [&src]).run().unwrap();
    std::fs::write(src.join("d0/g"), b"second snapshot").unwrap();
    Backup::new(&repo, [&src]).run().unwrap();
    (t, repo_dir)
}

fn set_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_flipped_bit_anywhere_in_any_object_is_detected() {
    let (_t, repo_dir) = small_repo();
    assert_eq!(complaint(&repo_dir), None, "the untouched repository is clean");
    let mut rng = common::XorShift::new(42);
    let mut tried = 0;
    for (folder, path) in stored_objects(&repo_dir) {
        let orig = std::fs::read(&path).unwrap();
        let n = orig.len();
        // Both ends (nonce, pack header, trailer, JSON framing) and
        // random positions in between.
        let mut positions: Vec<usize> = (0..6.min(n)).chain(n.saturating_sub(6)..n).collect();
        positions.extend((0..10).map(|_| (rng.next_u64() % n as u64) as usize));
        set_writable(&path);
        for pos in positions {
            let mut bad = orig.clone();
            bad[pos] ^= 1 << (rng.next_u64() % 8);
            std::fs::write(&path, &bad).unwrap();
            tried += 1;
            assert!(
                complaint(&repo_dir).is_some(),
                "{folder} {}: a flipped bit at byte {pos} of {n} went unnoticed",
                path.display()
            );
        }
        std::fs::write(&path, &orig).unwrap();
    }
    assert_eq!(complaint(&repo_dir), None, "restored bytes make it clean again");
    assert!(tried > 100, "{tried}");
}

#[test]
fn truncated_and_extended_objects_are_detected() {
    let (_t, repo_dir) = small_repo();
    for (folder, path) in stored_objects(&repo_dir) {
        let orig = std::fs::read(&path).unwrap();
        set_writable(&path);
        for bad in [orig[..orig.len() - 1].to_vec(), [&orig[..], b"\0"].concat(), Vec::new()] {
            std::fs::write(&path, &bad).unwrap();
            assert!(
                complaint(&repo_dir).is_some(),
                "{folder} {}: {} bytes unnoticed",
                path.display(),
                bad.len()
            );
        }
        std::fs::write(&path, &orig).unwrap();
    }
    assert_eq!(complaint(&repo_dir), None);
}

#[test]
fn swapping_two_valid_objects_is_detected() {
    let (_t, repo_dir) = small_repo();
    for folder in ["snapshots", "index", "data"] {
        let objs: Vec<PathBuf> =
            stored_objects(&repo_dir).into_iter().filter(|(f, _)| f == folder).map(|(_, p)| p).collect();
        assert!(objs.len() >= 2, "{folder}: need two objects, have {}", objs.len());
        let (a, b) = (&objs[0], &objs[1]);
        let (da, db) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        set_writable(a);
        set_writable(b);
        std::fs::write(a, &db).unwrap();
        std::fs::write(b, &da).unwrap();
        let c = complaint(&repo_dir);
        assert!(c.is_some(), "{folder}: swapping {} and {} went unnoticed", a.display(), b.display());
        std::fs::write(a, &da).unwrap();
        std::fs::write(b, &db).unwrap();
    }
    // Two authentic blobs of equal length swapped inside one pack (the
    // header still lists them in the old order): detected, by the pack's
    // hash and by each blob's id (bound to its plaintext).
    let repo = common::open_repo(&repo_dir);
    let packs = common::pack_files(&repo_dir);
    let (name, path, x, y) = packs
        .iter()
        .find_map(|(name, p)| {
            let id = arch_archiver::Id::from_hex(name).unwrap();
            let blobs = arch_repository::parse_pack(repo.key(), &id, &std::fs::read(p).unwrap()).unwrap();
            for (i, x) in blobs.iter().enumerate() {
                if let Some(y) = blobs[i + 1..].iter().find(|y| y.length == x.length) {
                    return Some((name, p, *x, *y));
                }
            }
            None
        })
        .expect("a pack with two blobs of equal sealed length");
    let data = std::fs::read(path).unwrap();
    let mut swapped = data.clone();
    let (xs, ys, l) = (x.offset as usize, y.offset as usize, x.length as usize);
    swapped[xs..xs + l].copy_from_slice(&data[ys..ys + l]);
    swapped[ys..ys + l].copy_from_slice(&data[xs..xs + l]);
    set_writable(path);
    std::fs::write(path, &swapped).unwrap();
    assert!(complaint(&repo_dir).is_some(), "blobs swapped inside pack {name} went unnoticed");
}
