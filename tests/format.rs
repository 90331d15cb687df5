//! The on-disk format, version 1: the test vectors printed in
//! docs/FORMAT.md, and the frozen repository in testdata/repo-v1.
//!
//! Every hex vector below is also asserted to appear in docs/FORMAT.md, so
//! the document and the code cannot drift apart. The frozen repository is
//! read both through the library and through a small independent reader
//! written from FORMAT.md (index files, pack headers, key files, config,
//! snapshots), and each of its snapshots is restored and compared with
//! testdata/repo-v1-expected.json.
//!
//! `cargo test --test integration format::generate_frozen_repo -- --ignored`
//! regenerates testdata/repo-v1 and the expected listing. Only do that for
//! a new format version's fixture: the point of a frozen repository is
//! that it does not change.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_archiver::{
    Backup, BackupOptions, BlobId, BlobType, Cipher, FileKind, Id, InitOptions, KdfParams, LocalBackend,
    Node, NodeKind, RepoError, Repository, Restore, Tree,
};
use serde_json::{json, Value};

/// The password of testdata/repo-v1.
const PASSWORD: &[u8] = b"arch-test-vector";

/// The format document; vectors must appear in it verbatim.
const FORMAT_MD: &str = include_str!("../docs/FORMAT.md");

// ---------------------------------------------------------------------------
// Vectors (the same hex is in docs/FORMAT.md)
// ---------------------------------------------------------------------------

/// blake3("abc"), from the BLAKE3 specification.
const BLAKE3_ABC: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
/// blake3(""), the name an empty stored object would have.
const BLAKE3_EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

/// The plaintext of an index file listing one pack (id = blake3("pack"))
/// holding one raw data blob (id = blake3("hello, world\n"), 13 bytes,
/// sealed 53 bytes at offset 0), superseding nothing.
const INDEX_VECTOR: &str = "\
    41494458010000000001000000fd6ad1c2e792f4cb1c7af9be82806a548fffa613a25fed\
    9338903ee8d793b86c01000000623a5460d841b6d1c13d080e85500e0043fd4ba4a8ba9c\
    1aa9b4f6e0d212276c000000000000350000000d000000";

/// The CBOR of a tree with one regular file, "hello.txt" (see
/// `one_file_tree`).
const TREE_VECTOR: &str = "\
    a1656e6f64657381af646e616d654968656c6c6f2e74787464747970656466696c65646d\
    6f64651901a4637569641903e8636769641864647573657265616c6963656567726f7570\
    657573657273656d74696d65821a6553f1001a075bcd15656174696d65821a6553f16400\
    656374696d65821a6553f1001901f46473697a650d65696e6f64651904d2666465766963\
    65190801656c696e6b730167636f6e74656e74815820623a5460d841b6d1c13d080e8550\
    0e0043fd4ba4a8ba9c1aa9b4f6e0d212276c";

/// The CBOR of a tree using every optional key (see `optional_keys_tree`).
const TREE_OPTIONAL_VECTOR: &str = "\
    a1656e6f64657383ad646e616d6547636f6e736f6c656474797065676368617264657664\
    6d6f646519018063756964006367696400656d74696d65820000656174696d6582000065\
    6374696d658200006473697a650065696e6f6465006664657669636500656c696e6b7301\
    6472646576190501ae646e616d6543646972647479706563646972646d6f64651901ed63\
    756964006367696400656d74696d6582201a3b9ac9ff656174696d65820000656374696d\
    658200006473697a650065696e6f6465006664657669636500656c696e6b730266786174\
    74727381a2646e616d654c757365722e636f6d6d656e746576616c756542686967737562\
    74726565582037d0e4a50a0ac1cd69fe2445af91644163cc26979503ccfa7055394af9e6\
    e55cad646e616d65426ce964747970656773796d6c696e6b646d6f64651901ff63756964\
    006367696400656d74696d65820000656174696d65820000656374696d65820000647369\
    7a650065696e6f6465006664657669636500656c696e6b73016674617267657444636166\
    e9";

/// The documented pack header example: a pack of repo-v1 and the hex of its
/// header plaintext.
const PACK_HEADER_VECTOR: (&str, &str) = (
    "1a365a27b574608cfb897985d7c50984d8d085eb510617dc35b5dd6db8da5b63",
    "\
        4150434b0106000000501106e645826bbf5f62e9e1adfa93118e3c65082f35cf5ee3de25\
        29e0bf578b0100e8000000c000000036126c337d268ae1d7e26730b1a2a20a6ba2249ecc\
        2eeff7d3ad34c35b8cfec90101c6020000ee030000b79077d939c52ed78bf166ea681e30\
        72c0ec384581b431e0fef4e3411d51ed500101e9030000d908000074abcf1507a0375f57\
        232a85e08029167d1bf6c7308a83a02c553ccf37c27a690101df000000c100000042b8f9\
        ab035d759f061bd605ee1371d9e0146f9f329455e3eb425de5d6492c530101e7000000d0\
        0000002840362fb6435e9a6f9c1a7d74a09d4a54c6b201f1dff446091a594fbc402c1c01\
        01de000000bd000000",
);

/// The chunk lengths of `big_file(1)` under repo-v1's chunker config.
const BIG_CHUNKS: [usize; 8] = [227391, 152269, 136210, 137376, 174092, 262144, 262144, 148375];

/// The chunk lengths of the zero-run vector (section 18.6) under repo-v1's
/// chunker sizes and seed with `zero_runs`.
const ZERO_RUN_CHUNKS: [usize; 9] = [227391, 152269, 65536, 65536, 65536, 65536, 174066, 137376, 46754];

/// Asserts the format document contains `hex` (whitespace ignored, so the
/// document may wrap long vectors).
fn assert_documented(name: &str, hex: &str) {
    let doc: String = FORMAT_MD.split_whitespace().collect();
    assert!(doc.contains(hex), "vector {name} is not in docs/FORMAT.md (or differs from it):\n{hex}");
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn id_hex(s: &str) -> Id {
    Id::from_hex(s).expect("64 hex characters")
}

/// The tree of `TREE_VECTOR`: one file with every required field set.
fn one_file_tree() -> Tree {
    let mut f = Node::new(b"hello.txt".to_vec(), NodeKind::File);
    f.mode = 0o644;
    f.uid = 1000;
    f.gid = 100;
    f.user = "alice".into();
    f.group = "users".into();
    f.mtime.0 = 1_700_000_000;
    f.mtime.1 = 123_456_789;
    f.atime.0 = 1_700_000_100;
    f.ctime.0 = 1_700_000_000;
    f.ctime.1 = 500;
    f.size = 13;
    f.inode = 1234;
    f.device = 2049;
    f.links = 1;
    f.content = vec![BlobId::hash(b"hello, world\n")];
    Tree { nodes: vec![f] }
}

/// The tree of `TREE_OPTIONAL_VECTOR`: a character device (rdev), a
/// directory (subtree, xattrs, a pre-1970 time) and a symlink whose name
/// and target are not UTF-8; user and group names unknown (omitted).
fn optional_keys_tree() -> Tree {
    let mut c = Node::new(b"console".to_vec(), NodeKind::Chardev);
    c.mode = 0o600;
    c.rdev = 0x0501;
    c.links = 1;
    let mut d = Node::new(b"dir".to_vec(), NodeKind::Dir);
    d.mode = 0o755;
    d.mtime.0 = -1;
    d.mtime.1 = 999_999_999;
    d.links = 2;
    d.xattrs = vec![xattr(b"user.comment", b"hi")];
    d.subtree = Some(Id::hash(b"subtree"));
    let mut l = Node::new(b"l\xe9".to_vec(), NodeKind::Symlink);
    l.mode = 0o777;
    l.links = 1;
    l.target = Some(b"caf\xe9".to_vec());
    Tree { nodes: vec![c, d, l] }
}

/// An extended attribute, built through serde because the Xattr type is not
/// re-exported by arch_archiver (its CBOR shape is part of the format).
fn xattr<T: serde::de::DeserializeOwned>(name: &[u8], value: &[u8]) -> T {
    let v = json!({"name": name, "value": value});
    serde_json::from_value(v).expect("xattr from JSON")
}

#[test]
fn blake3_vectors() {
    assert_eq!(Id::hash(b"abc").to_hex(), BLAKE3_ABC);
    assert_eq!(Id::hash(b"").to_hex(), BLAKE3_EMPTY);
    assert_documented("blake3(abc)", BLAKE3_ABC);
    assert_documented("blake3()", BLAKE3_EMPTY);
}

#[test]
fn tree_vectors() {
    for (name, tree, hex) in [
        ("one-file tree", one_file_tree(), TREE_VECTOR),
        ("optional-keys tree", optional_keys_tree(), TREE_OPTIONAL_VECTOR),
    ] {
        let bytes = tree.encode();
        assert_eq!(to_hex(&bytes), hex, "{name}: encoding changed");
        let decoded = Tree::decode(&from_hex(hex), || name.to_string()).expect(name);
        assert_eq!(decoded, tree, "{name}: decoding changed");
        assert_documented(name, hex);
    }
    // The blob id of a tree is the blake3 of exactly these bytes.
    assert_documented("one-file tree id", &Id::hash(&from_hex(TREE_VECTOR)).to_hex());
}

fn fast_kdf() -> KdfParams {
    KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 }
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("temp dir");
    let p = fs::canonicalize(t.path()).expect("canonical temp dir");
    (t, p)
}

fn open(dir: &Path, password: &[u8]) -> Result<Repository, RepoError> {
    Repository::open(Arc::new(LocalBackend::new(dir)), password)
}

#[test]
fn index_file_vector() {
    let hex = INDEX_VECTOR;
    assert_documented("index file", hex);
    assert_eq!(&hex[26..90], Id::hash(b"pack").to_hex());
    assert_eq!(&hex[98..162], Id::hash(b"hello, world\n").to_hex());
    let bytes = from_hex(hex);
    let (_t, dir) = tempdir();
    let repo_dir = dir.join("repo");
    let repo = Repository::init(
        Arc::new(LocalBackend::new(&repo_dir)),
        PASSWORD,
        &InitOptions::default().kdf(fast_kdf()),
    )
    .unwrap();
    // Decoding: store the vector as an index object; opening the repository
    // loads it.
    repo.save_object(FileKind::Index, &bytes).unwrap();
    drop(repo);
    let repo = open(&repo_dir, PASSWORD).unwrap();
    let blob = BlobId::hash(b"hello, world\n");
    let loc = repo.locate(BlobType::Data, &blob).expect("vector blob indexed");
    assert_eq!(loc.pack, Id::hash(b"pack"));
    assert_eq!(loc.blob.id, blob);
    assert_eq!(loc.blob.blob_type, BlobType::Data);
    assert_eq!(loc.blob.compression.to_byte(), 0);
    assert_eq!((loc.blob.offset, loc.blob.length, loc.blob.raw_length), (0, 53, 13));
    assert_eq!(repo.index().blob_count(BlobType::Data), 1);
    // Encoding: the same entry written by the library gives the same bytes.
    repo.index().store_pack(loc.pack, &[loc.blob], &repo).unwrap();
    let written = repo.flush_index().unwrap().expect("an index file");
    assert_eq!(to_hex(&repo.load_object(FileKind::Index, &written).unwrap()), hex);
    // The same bytes with an unknown version (3) are refused with a
    // message that says so.
    let mut v2 = bytes.clone();
    v2[4] = 3;
    repo.save_object(FileKind::Index, &v2).unwrap();
    drop(repo);
    let err = open(&repo_dir, PASSWORD).unwrap_err().to_string();
    assert!(err.contains("version 3"), "{err}");
}

#[test]
fn unknown_versions_are_refused() {
    let (_t, dir) = tempdir();
    let repo_dir = dir.join("repo");
    let repo = Repository::init(
        Arc::new(LocalBackend::new(&repo_dir)),
        PASSWORD,
        &InitOptions::default().kdf(fast_kdf()),
    )
    .unwrap();
    let config = serde_json::to_value(repo.config()).unwrap();
    // The config is sealed with XChaCha20-Poly1305 whatever the cipher.
    let key = repo.key().with_cipher(Cipher::XChaCha20Poly1305);
    drop(repo);
    let write_config = |edit: &dyn Fn(&mut Value)| {
        let mut c = config.clone();
        edit(&mut c);
        let mut plain = vec![0u8];
        plain.extend_from_slice(&serde_json::to_vec(&c).unwrap());
        fs::write(repo_dir.join("config"), key.seal(&plain)).unwrap();
    };
    // A newer version is refused as newer, even with values this build
    // cannot parse.
    write_config(&|c| {
        c["version"] = json!(3);
        c["cipher"] = json!("a-future-cipher");
    });
    match open(&repo_dir, PASSWORD) {
        Err(e @ RepoError::UnsupportedVersion { version: 3, .. }) => {
            assert!(e.to_string().contains("upgrade arch"), "{e}")
        }
        other => panic!("config version 3 accepted or wrong error: {other:?}"),
    }
    // A cipher is named in version 2 and only there; an unknown one is refused.
    for (version, cipher) in [(1, json!("xaes-256-gcm")), (2, Value::Null), (2, json!("rot13"))] {
        write_config(&|c| {
            c["version"] = json!(version);
            match &cipher {
                Value::Null => drop(c.as_object_mut().unwrap().remove("cipher")),
                name => c["cipher"] = name.clone(),
            }
        });
        let err = open(&repo_dir, PASSWORD).unwrap_err();
        assert!(matches!(err, RepoError::Corrupt { .. }), "version {version}, cipher {cipher}: {err:?}");
        assert!(err.to_string().contains("config"), "{err}");
    }
}

/// New repositories take this machine's preferred cipher: XAES-256-GCM as
/// format version 2, or XChaCha20-Poly1305 as version 1, which older builds
/// read. Either round-trips a backup.
#[test]
fn the_cipher_decides_the_format_version() {
    for (cipher, version) in [(Cipher::XChaCha20Poly1305, 1), (Cipher::Xaes256Gcm, 2)] {
        let (_t, dir) = tempdir();
        let repo_dir = dir.join("repo");
        let opts = InitOptions::default().kdf(fast_kdf()).cipher(cipher);
        let repo = Repository::init(Arc::new(LocalBackend::new(&repo_dir)), PASSWORD, &opts).unwrap();
        let config = serde_json::to_value(repo.config()).unwrap();
        assert_eq!(config["version"], json!(version));
        assert_eq!(config.get("cipher").is_some(), version == 2, "{config}");
        assert_eq!(repo.key().cipher(), cipher);
        let src = dir.join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f"), big_file(1)).unwrap();
        let done = Backup::new(&repo, [&src]).run().unwrap();
        drop(repo);
        let repo = open(&repo_dir, PASSWORD).unwrap();
        assert_eq!(repo.key().cipher(), cipher);
        let out = dir.join("out");
        Restore::new(&repo, &done.snapshot, &out).run().unwrap();
        assert_eq!(fs::read(out.join(src.strip_prefix("/").unwrap()).join("f")).unwrap(), big_file(1));
    }
    let (_t, dir) = tempdir();
    let backend = Arc::new(LocalBackend::new(dir.join("repo")));
    let repo = Repository::init(backend, PASSWORD, &InitOptions::default().kdf(fast_kdf())).unwrap();
    assert_eq!(repo.config().cipher(), Cipher::preferred());
}

// ---------------------------------------------------------------------------
// An independent reader, written from docs/FORMAT.md
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    id: [u8; 32],
    blob_type: u8,
    compression: u8,
    offset: u32,
    length: u32,
    raw_length: u32,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "truncated");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn id(&mut self) -> [u8; 32] {
        self.take(32).try_into().unwrap()
    }
}

type IndexPacks = Vec<([u8; 32], Vec<Entry>)>;

/// Parses an index file's plaintext payload: (supersedes, packs).
fn parse_index(b: &[u8]) -> (Vec<[u8; 32]>, IndexPacks) {
    let mut c = Cursor(b);
    assert_eq!(c.take(4), b"AIDX");
    assert_eq!(c.u8(), 1, "index version");
    let supersedes = (0..c.u32()).map(|_| c.id()).collect();
    let mut packs = Vec::new();
    for _ in 0..c.u32() {
        let pack = c.id();
        let blobs = (0..c.u32())
            .map(|_| Entry {
                id: c.id(),
                blob_type: c.u8(),
                compression: c.u8(),
                offset: c.u32(),
                length: c.u32(),
                raw_length: c.u32(),
            })
            .collect();
        packs.push((pack, blobs));
    }
    assert!(c.0.is_empty(), "trailing bytes in index");
    (supersedes, packs)
}

fn encode_index(supersedes: &[[u8; 32]], packs: &IndexPacks) -> Vec<u8> {
    let mut out = b"AIDX\x01".to_vec();
    out.extend_from_slice(&(supersedes.len() as u32).to_le_bytes());
    for s in supersedes {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for (pack, blobs) in packs {
        out.extend_from_slice(pack);
        out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
        for e in blobs {
            out.extend_from_slice(&e.id);
            out.push(e.blob_type);
            out.push(e.compression);
            for v in [e.offset, e.length, e.raw_length] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// Splits a pack into (blob area length, sealed header).
fn split_pack(pack: &[u8]) -> (usize, &[u8]) {
    let n = pack.len();
    let hlen = u32::from_le_bytes(pack[n - 4..].try_into().unwrap()) as usize;
    let start = n - 4 - hlen;
    (start, &pack[start..n - 4])
}

/// Parses a pack header's plaintext; offsets follow from the lengths.
fn parse_pack_header(b: &[u8]) -> Vec<Entry> {
    let mut c = Cursor(b);
    assert_eq!(c.take(4), b"APCK");
    assert_eq!(c.u8(), 1, "pack header version");
    let mut offset = 0u32;
    let out = (0..c.u32())
        .map(|_| {
            let e = Entry {
                id: c.id(),
                blob_type: c.u8(),
                compression: c.u8(),
                offset,
                length: c.u32(),
                raw_length: c.u32(),
            };
            offset += e.length;
            e
        })
        .collect();
    assert!(c.0.is_empty(), "trailing bytes in pack header");
    out
}

// ---------------------------------------------------------------------------
// The frozen repository
// ---------------------------------------------------------------------------

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Copies the regular files under `from` to `to`, creating only the
/// folders that hold a file: what a fresh git clone has (git does not keep
/// empty folders, so most data/<xx> folders and locks/ are missing).
fn copy_like_a_clone(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let md = fs::symlink_metadata(&src).unwrap();
        if md.is_dir() {
            copy_like_a_clone(&src, &dst);
        } else if md.is_file() {
            fs::create_dir_all(to).unwrap();
            fs::copy(&src, &dst).unwrap();
            // git keeps only the executable bit: files come out 0644.
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// A fresh-clone copy of testdata/repo-v1 in a temp dir, opened.
fn frozen_copy() -> (tempfile::TempDir, PathBuf, Repository) {
    frozen_copy_of("repo-v1")
}

/// A fresh-clone copy of testdata/`name` in a temp dir, opened.
fn frozen_copy_of(name: &str) -> (tempfile::TempDir, PathBuf, Repository) {
    let (t, dir) = tempdir();
    let repo_dir = dir.join(name);
    copy_like_a_clone(&testdata().join(name), &repo_dir);
    let repo = open(&repo_dir, PASSWORD).unwrap_or_else(|e| panic!("open frozen repository: {e}"));
    (t, repo_dir, repo)
}

fn expected_of(name: &str) -> Value {
    let path = testdata().join(format!("{name}-expected.json"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected listing is JSON")
}

fn path_key(rel: &[u8]) -> (&'static str, String) {
    match std::str::from_utf8(rel) {
        Ok(s) => ("path", s.to_string()),
        Err(_) => ("path_hex", to_hex(rel)),
    }
}

/// Describes every entry under `root` (not `root` itself), sorted by path
/// bytes: type, size, mode, mtime, blake3 of file content, symlink target.
/// Paths and targets that are not UTF-8 are given as hex.
fn describe(root: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    describe_into(root, Path::new(""), &mut out);
    out
}

fn describe_into(dir: &Path, rel: &Path, out: &mut Vec<Value>) {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let (path, rel) = (dir.join(&name), rel.join(&name));
        let md = fs::symlink_metadata(&path).unwrap();
        let (k, p) = path_key(rel.as_os_str().as_bytes());
        let mut v = json!({ k: p, "mtime": [md.mtime(), md.mtime_nsec()] });
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            let (tk, t) = match target.to_str() {
                Some(s) => ("target", s.to_string()),
                None => ("target_hex", to_hex(target.as_os_str().as_bytes())),
            };
            v["type"] = json!("symlink");
            v[tk] = json!(t);
        } else {
            v["mode"] = json!(format!("{:04o}", md.mode() & 0o7777));
            if ft.is_dir() {
                v["type"] = json!("dir");
            } else {
                assert!(ft.is_file(), "{} is not a file", path.display());
                v["type"] = json!("file");
                v["size"] = json!(md.len());
                v["blake3"] = json!(Id::hash(&fs::read(&path).unwrap()).to_hex());
            }
        }
        out.push(v);
        if ft.is_dir() {
            describe_into(&path, &rel, out);
        }
    }
}

/// Where a restore into `target` puts the snapshot's (only) path.
fn restored_root(target: &Path, snapshot_path: &str) -> PathBuf {
    target.join(snapshot_path.trim_start_matches('/'))
}

#[test]
fn frozen_repo_restores_every_snapshot_exactly() {
    restores_every_snapshot_exactly("repo-v1");
}

/// Format version 2: the same source, sealed with XAES-256-GCM.
#[test]
fn frozen_repo_v2_restores_every_snapshot_exactly() {
    restores_every_snapshot_exactly("repo-v2");
    let (_t, _dir, repo) = frozen_copy_of("repo-v2");
    let config = serde_json::to_value(repo.config()).unwrap();
    assert_eq!((&config["version"], &config["cipher"]), (&json!(2), &json!("xaes-256-gcm")));
    // Everything but key files and the config is sealed with XAES-256-GCM:
    // the same key with XChaCha20-Poly1305 opens none of it.
    let chacha = repo.key().with_cipher(Cipher::XChaCha20Poly1305);
    for kind in [FileKind::Snapshot, FileKind::Index, FileKind::Pack] {
        for info in repo.backend().list(kind).unwrap() {
            let bytes = repo.backend().read(kind, &info.name).unwrap();
            let sealed = if kind == FileKind::Pack { split_pack(&bytes).1 } else { &bytes[..] };
            assert!(repo.key().open(sealed).is_ok(), "{kind} {}", info.name);
            assert!(chacha.open(sealed).is_err(), "{kind} {}", info.name);
        }
    }
    refuses_a_wrong_password("repo-v2");
}

fn restores_every_snapshot_exactly(name: &str) {
    let (_t, repo_dir, repo) = frozen_copy_of(name);
    let expected = expected_of(name);
    let want = expected["snapshots"].as_array().unwrap();
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), want.len(), "snapshot count");
    for (i, ((id, snap), want)) in snaps.iter().zip(want).enumerate() {
        assert_eq!(id.to_hex(), want["id"], "snapshot {i} id");
        assert_eq!(snap.tree.to_hex(), want["tree"], "snapshot {i} tree");
        assert_eq!(json!(snap.tags), want["tags"], "snapshot {i} tags");
        assert_eq!(json!(snap.time.to_rfc3339()), want["time"], "snapshot {i} time");
        assert_eq!(json!(snap.hostname), want["hostname"], "snapshot {i} hostname");
        assert_eq!(snap.paths.len(), 1);
        let target = repo_dir.parent().unwrap().join(format!("restore-{i}"));
        Restore::new(&repo, snap, &target).run().unwrap_or_else(|e| panic!("restore snapshot {i}: {e}"));
        let got = describe(&restored_root(&target, &snap.paths[0]));
        let want_entries = want["entries"].as_array().unwrap();
        for (g, w) in got.iter().zip(want_entries) {
            assert_eq!(g, w, "snapshot {i}: restored entry differs");
        }
        assert_eq!(&got, want_entries, "snapshot {i}: entry lists differ");
    }
    // Listing packs works although most data/<xx> folders are missing.
    let packs = repo.backend().list(FileKind::Pack).unwrap();
    let on_disk = fs::read_dir(repo_dir.join("data"))
        .unwrap()
        .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(packs.len(), on_disk);
    assert!(fs::read_dir(repo_dir.join("data")).unwrap().count() < 256);
}

#[test]
fn frozen_repo_wrong_password_is_refused() {
    refuses_a_wrong_password("repo-v1");
}

fn refuses_a_wrong_password(name: &str) {
    let (_t, dir) = tempdir();
    let repo_dir = dir.join(name);
    copy_like_a_clone(&testdata().join(name), &repo_dir);
    match open(&repo_dir, b"arch-test-vectoR") {
        Err(RepoError::WrongPassword { .. }) => {}
        other => panic!("{name}: wrong password: {other:?}"),
    }
}

/// Reads every object of the frozen repository with the independent reader
/// above and checks it against the library's view.
#[test]
fn frozen_repo_matches_the_written_format() {
    let (_t, _dir, repo) = frozen_copy();
    let backend = repo.backend();
    let key = repo.key();

    // Key files: plaintext JSON named by their blake3.
    let keys = backend.list(FileKind::Key).unwrap();
    assert_eq!(keys.len(), 1);
    for k in &keys {
        let bytes = backend.read(FileKind::Key, &k.name).unwrap();
        assert_eq!(Id::hash(&bytes).to_hex(), k.name, "key file name");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["kdf"], "argon2id");
        assert_eq!(v["params"], json!({"memory_kib": 1024, "iterations": 1, "parallelism": 1}));
        assert_eq!(v["salt"].as_str().unwrap().len(), 64);
        // seal(32-byte master key): 24 nonce + 32 + 16 tag = 72 bytes.
        assert_eq!(v["data"].as_str().unwrap().len(), 144);
        for field in ["created", "hostname", "username"] {
            assert!(v[field].is_string(), "key file field {field}");
        }
    }

    // Config: seal(encoding byte || JSON), not content-addressed.
    let sealed = backend.read(FileKind::Config, "config").unwrap();
    let plain = key.open(&sealed).expect("config opens with the master key");
    let config: Value = match plain[0] {
        0 => serde_json::from_slice(&plain[1..]).unwrap(),
        // zstd: this reader has no zstd, so compare the library's view.
        1 => serde_json::to_value(repo.config()).unwrap(),
        b => panic!("config encoding byte {b}"),
    };
    assert_eq!(config, serde_json::to_value(repo.config()).unwrap());
    assert_eq!(config["version"], 1);
    assert_eq!(
        (&config["chunker"]["min_size"], &config["chunker"]["avg_size"], &config["chunker"]["max_size"]),
        (&json!(65536), &json!(131072), &json!(262144))
    );

    // Index files: the payload decodes and re-encodes to the same bytes,
    // and lists exactly what the pack headers say.
    let mut indexed: BTreeMap<[u8; 32], Vec<Entry>> = BTreeMap::new();
    for info in backend.list(FileKind::Index).unwrap() {
        let id = id_hex(&info.name);
        let bytes = backend.read(FileKind::Index, &info.name).unwrap();
        assert_eq!(Id::hash(&bytes), id, "index file name");
        let payload = repo.load_object(FileKind::Index, &id).unwrap();
        let (supersedes, packs) = parse_index(&payload);
        assert!(supersedes.is_empty());
        assert_eq!(encode_index(&supersedes, &packs), payload);
        for (pack, blobs) in packs {
            assert!(indexed.insert(pack, blobs).is_none(), "pack indexed twice");
        }
    }
    let packs = backend.list(FileKind::Pack).unwrap();
    assert_eq!(packs.len(), indexed.len(), "every pack is indexed");
    let mut types_seen = BTreeSet::new();
    for info in &packs {
        let data = backend.read(FileKind::Pack, &info.name).unwrap();
        assert_eq!(Id::hash(&data).to_hex(), info.name, "pack name");
        let (blobs_end, sealed_header) = split_pack(&data);
        let header = key.open(sealed_header).expect("pack header opens");
        let entries = parse_pack_header(&header);
        assert_eq!(entries.iter().map(|e| e.length as usize).sum::<usize>(), blobs_end);
        assert_eq!(&entries, &indexed[&id_hex(&info.name).0], "pack header vs index");
        let t = entries[0].blob_type;
        assert!(entries.iter().all(|e| e.blob_type == t), "mixed pack");
        types_seen.insert(t);
        for e in &entries {
            let sealed = &data[e.offset as usize..(e.offset + e.length) as usize];
            let plain = key.open(sealed).expect("blob opens");
            let blob_type = if t == 0 { BlobType::Data } else { BlobType::Tree };
            let content = match e.compression {
                0 => plain,
                1 => repo.read_blob(blob_type, &Id(e.id)).unwrap(),
                c => panic!("compression {c}"),
            };
            assert_eq!(content.len(), e.raw_length as usize);
            assert_eq!(Id::hash(&content).0, e.id, "blob id is blake3 of plaintext");
        }
    }
    assert_eq!(types_seen, BTreeSet::from([0, 1]));
    assert_documented("pack header", PACK_HEADER_VECTOR.1);
    let pack = backend.read(FileKind::Pack, PACK_HEADER_VECTOR.0).expect("the documented pack is in repo-v1");
    assert_eq!(to_hex(&key.open(split_pack(&pack).1).unwrap()), PACK_HEADER_VECTOR.1);

    // Snapshots: JSON with hex ids; trees re-encode to the stored bytes.
    for (id, snap) in repo.list_snapshots().unwrap() {
        let v: Value = serde_json::from_slice(&repo.load_object(FileKind::Snapshot, &id).unwrap()).unwrap();
        for field in ["time", "tree", "hostname", "username", "program_version"] {
            assert!(v[field].is_string(), "snapshot field {field}");
        }
        assert_eq!(v["tree"], snap.tree.to_hex());
        assert!(v["paths"].is_array() && v["uid"].is_u64() && v["gid"].is_u64());
        check_trees_canonical(&repo, &snap.tree);
    }

    // Chunking: the big file's chunks are what the repository's chunker
    // cuts today (a chunker change would silently end deduplication
    // against old backups).
    let (_, first) = &repo.list_snapshots().unwrap()[0];
    let node = find_node(&repo, &first.tree, &first.paths[0], b"big.bin");
    let data = big_file(1);
    assert_eq!(Id::hash(&data), node_hash(&repo, &node));
    let mut lengths = Vec::new();
    repo.chunker().cut(&data, true, &mut lengths);
    let mut pos = 0;
    let ids: Vec<Id> = lengths
        .iter()
        .map(|&n| {
            pos += n;
            Id::hash(&data[pos - n..pos])
        })
        .collect();
    assert_eq!(lengths, BIG_CHUNKS, "chunk boundaries changed");
    assert_eq!(ids, node.content, "chunk boundaries changed");
    assert_documented("chunk lengths", &format!("{BIG_CHUNKS:?}").replace(' ', ""));
    assert_documented("chunker seed", &repo.config().chunker.seed.to_string());
}

/// Chunking with `zero_runs` (FORMAT.md 13 and 18.6): the big file's first
/// 400,000 bytes, 300,000 zero bytes, then the next 300,000 bytes.
#[test]
fn zero_run_chunking_vector() {
    let big = big_file(1);
    let mut data = big[..400_000].to_vec();
    data.resize(700_000, 0);
    data.extend_from_slice(&big[400_000..700_000]);
    let chunker = arch_repository::Chunker::new(arch_repository::ChunkerParams {
        min_size: 65536,
        avg_size: 131072,
        max_size: 262144,
        seed: 2687222195023099827,
        zero_runs: true,
    });
    let mut lengths = Vec::new();
    chunker.cut(&data, true, &mut lengths);
    assert_eq!(lengths, ZERO_RUN_CHUNKS, "chunk boundaries changed");
    assert_documented("zero-run chunk lengths", &format!("{ZERO_RUN_CHUNKS:?}").replace(' ', ""));
}

/// Loads every tree under `id` and checks that re-encoding it gives the
/// stored bytes (the encoding is canonical).
fn check_trees_canonical(repo: &Repository, id: &Id) {
    let bytes = repo.read_blob(BlobType::Tree, id).unwrap();
    let tree = Tree::decode(&bytes, || format!("tree {id}")).unwrap();
    assert_eq!(tree.encode(), bytes, "tree {id} does not re-encode identically");
    for n in &tree.nodes {
        if let Some(sub) = &n.subtree {
            check_trees_canonical(repo, sub);
        }
    }
}

/// The node at `<snapshot path>/<name>`.
fn find_node(repo: &Repository, root: &Id, path: &str, name: &[u8]) -> Node {
    let mut tree = repo.load_tree(root).unwrap();
    for comp in Path::new(path).iter().skip(1).chain([OsStr::from_bytes(name)]) {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name == comp.as_bytes())
            .unwrap_or_else(|| panic!("{comp:?} not in tree"))
            .clone();
        match node.subtree {
            Some(sub) => tree = repo.load_tree(&sub).unwrap(),
            None => return node,
        }
    }
    unreachable!("{name:?} is a directory")
}

fn node_hash(repo: &Repository, node: &Node) -> Id {
    let mut all = Vec::new();
    for id in &node.content {
        all.extend_from_slice(&repo.read_blob(BlobType::Data, id).unwrap());
    }
    Id::hash(&all)
}

/// A frozen repository cloned from git can be written to: new packs go to
/// data/<xx> folders that git did not keep.
#[test]
fn frozen_repo_accepts_new_backups() {
    let (_t, repo_dir, repo) = frozen_copy();
    let src = repo_dir.parent().unwrap().join("new-source");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20u32 {
        fs::write(src.join(format!("f{i}")), format!("new file {i}\n").repeat(i as usize)).unwrap();
    }
    let before = repo.backend().list(FileKind::Pack).unwrap().len();
    let result = Backup::new(&repo, [&src]).run().unwrap();
    assert!(repo.backend().list(FileKind::Pack).unwrap().len() > before);
    drop(repo);
    let repo = open(&repo_dir, PASSWORD).unwrap();
    assert_eq!(repo.list_snapshots().unwrap().len(), 3);
    let target = repo_dir.parent().unwrap().join("restore-new");
    Restore::new(&repo, &result.snapshot, &target).run().unwrap();
    assert_eq!(describe(&restored_root(&target, &result.snapshot.paths[0])), describe(&src));
}

// ---------------------------------------------------------------------------
// The generator (ignored: run by hand to create a new frozen repository)
// ---------------------------------------------------------------------------

const BIG_LEN: usize = 1_500_001;

/// The big file: numbered lines, so every chunk is different and
/// content-defined cut points exist, yet it compresses about 20:1 and the
/// repository stays small. Version 2 changes 64 bytes in the middle.
fn big_file(version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(BIG_LEN + 64);
    let mut i = 0u64;
    while out.len() < BIG_LEN {
        out.extend_from_slice(format!("{i:08} the quick brown fox jumps over the lazy dog\n").as_bytes());
        i += 1;
    }
    out.truncate(BIG_LEN);
    if version == 2 {
        out[700_000..700_064].fill(b'#');
    }
    out
}

/// Writes version `version` of the source tree at `root`.
fn build_source(root: &Path, version: u32) {
    let p = |rel: &str| root.join(rel);
    if version == 1 {
        for d in ["dir/nested", "emptydir"] {
            fs::create_dir_all(p(d)).unwrap();
        }
        fs::write(p("hello.txt"), b"hello, world\n").unwrap();
        fs::write(p("empty"), b"").unwrap();
        fs::write(p("dir/nested/deep.txt"), b"at the bottom\n").unwrap();
        fs::write(p("dir/script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(p("dir/script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(p("dir/nested/deep.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(p("emptydir"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(root.join(OsStr::from_bytes(b"caf\xe9.txt")), b"latin-1 name\n").unwrap();
        let dup = "the same bytes in three files\n".repeat(50);
        for d in ["dup-1.txt", "dup-2.txt", "dir/dup-3.txt"] {
            fs::write(p(d), &dup).unwrap();
        }
        fs::write(p("big.bin"), big_file(1)).unwrap();
        fs::write(p("dir/big-copy.bin"), big_file(1)).unwrap();
        std::os::unix::fs::symlink("hello.txt", p("link")).unwrap();
        std::os::unix::fs::symlink("../missing/target", p("dir/dangling")).unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9.txt"), p("link-latin1")).unwrap();
    } else {
        fs::write(p("hello.txt"), b"hello, world, again\n").unwrap();
        fs::write(p("big.bin"), big_file(2)).unwrap();
        fs::write(p("new.txt"), b"added in the second snapshot\n").unwrap();
        fs::remove_file(p("dir/script.sh")).unwrap();
    }
    // Deterministic times: files and links, then directories deepest first.
    let mut all = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (i, (path, is_dir)) in all.iter().enumerate() {
        let t = filetime::FileTime::from_unix_time(
            1_700_000_000 + i as i64 * 3_600,
            ((i as u64 * 123_456_789) % 1_000_000_000) as u32,
        );
        if *is_dir {
            filetime::set_file_times(path, t, t).unwrap();
        } else {
            filetime::set_symlink_file_times(path, t, t).unwrap();
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, bool)>) {
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let is_dir = fs::symlink_metadata(&path).unwrap().is_dir();
        if is_dir {
            collect(&path, out);
        }
        out.push((path, is_dir));
    }
    out.sort();
}

fn remove_empty_dirs(dir: &Path) -> bool {
    let mut empty = true;
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            if remove_empty_dirs(&path) {
                fs::remove_dir(&path).unwrap();
            } else {
                empty = false;
            }
        } else {
            empty = false;
        }
    }
    empty
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                dir_size(&path)
            } else {
                md.len()
            }
        })
        .sum()
}

#[test]
#[ignore = "regenerates testdata/repo-v1; run by hand for a new format version"]
fn generate_frozen_repo() {
    generate("repo-v1", Cipher::XChaCha20Poly1305);
}

#[test]
#[ignore = "regenerates testdata/repo-v2; run by hand for a new format version"]
fn generate_frozen_repo_v2() {
    generate("repo-v2", Cipher::Xaes256Gcm);
}

fn generate(name: &str, cipher: Cipher) {
    let out = testdata().join(name);
    if out.exists() {
        fs::remove_dir_all(&out).unwrap();
    }
    let tmp = tempfile::Builder::new().prefix("arch-vector-").tempdir().unwrap();
    let src = fs::canonicalize(tmp.path()).unwrap().join("src");
    fs::create_dir(&src).unwrap();
    let opts =
        InitOptions::default().chunk_sizes(64 * 1024, 128 * 1024, 256 * 1024).kdf(fast_kdf()).cipher(cipher);
    let repo = Repository::init(Arc::new(LocalBackend::new(&out)), PASSWORD, &opts).unwrap();
    let mut snapshots = Vec::new();
    for (version, time, tags) in [
        (1, "2026-01-01T12:00:00+00:00", vec!["first", "v1"]),
        (2, "2026-01-02T12:00:00.5+01:00", vec!["second"]),
    ] {
        build_source(&src, version);
        let mut bo = BackupOptions::default()
            .host("arch-test-vector")
            .time(chrono::DateTime::parse_from_rfc3339(time).unwrap())
            .file_workers(1)
            .blob_workers(1)
            .upload_workers(1);
        for t in &tags {
            bo = bo.tag(*t);
        }
        let r = Backup::new(&repo, [&src]).options(bo).run().unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        snapshots.push(json!({
            "id": r.snapshot_id.expect("snapshot written").to_hex(),
            "tree": r.snapshot.tree.to_hex(),
            "time": r.snapshot.time.to_rfc3339(),
            "tags": r.snapshot.tags,
            "hostname": r.snapshot.hostname,
            "entries": describe(&src),
        }));
    }
    let expected = json!({
        "format_version": repo.config().version,
        "password": String::from_utf8_lossy(PASSWORD),
        "snapshots": snapshots,
    });
    fs::write(
        testdata().join(format!("{name}-expected.json")),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
    // Print what FORMAT.md quotes: the smallest pack's header.
    let mut packs = repo.backend().list(FileKind::Pack).unwrap();
    packs.sort_by_key(|p| p.size);
    let data = repo.backend().read(FileKind::Pack, &packs[0].name).unwrap();
    let header = repo.key().open(split_pack(&data).1).unwrap();
    println!("smallest pack {} header {}", packs[0].name, to_hex(&header));
    println!("config {}", serde_json::to_string(repo.config()).unwrap());
    for v in [1, 2] {
        let mut lengths = Vec::new();
        repo.chunker().cut(&big_file(v), true, &mut lengths);
        println!("big.bin version {v} chunk lengths {lengths:?}");
    }
    drop(repo);
    remove_empty_dirs(&out);
    let size = dir_size(&out);
    println!("repository size {size} bytes");
    assert!(size < 200 * 1024, "frozen repository too big: {size} bytes");
}
