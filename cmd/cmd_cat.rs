//! `arch cat`: print a repository object. Metadata objects as pretty JSON,
//! blobs as raw bytes. Never prints key material: the config's chunker
//! seed is shown as "<secret>", and key files are printed as stored (their
//! `data` field is the master key sealed with the password).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Result};
use arch_archiver::{
    escape_path, read_pack_header, resolve_blob_prefix, resolve_object_prefix, resolve_snapshot_spec,
    BlobType, FileKind, Id, PackedBlob, Repository,
};
use clap::{Args, ValueEnum};

use crate::cli::Cli;
use crate::cmd_ls::{node_json, quiet_pipe};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatKind {
    /// The repository config (chunker seed redacted).
    Config,
    /// An index file: ID.
    Index,
    /// A snapshot: ID or "latest".
    Snapshot,
    /// A key file as stored: ID.
    Key,
    /// A directory: SNAPSHOT[:PATH] or a tree blob ID.
    Tree,
    /// A blob's plaintext, raw: ID (a data blob, else a tree blob).
    Blob,
    /// A pack's decoded header: ID.
    Pack,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// What to print.
    #[arg(value_enum)]
    pub kind: CatKind,
    /// Which one (id or unique id prefix; see each kind).
    #[arg(value_name = "ID")]
    pub id: Option<OsString>,
}

pub fn run(cli: &Cli, args: &CatArgs) -> Result<i32> {
    quiet_pipe(run_inner(cli, args))
}

fn run_inner(cli: &Cli, args: &CatArgs) -> Result<i32> {
    let repo = std::sync::Arc::new(crate::repo::open(cli)?);
    let id = match (&args.id, args.kind) {
        (None, CatKind::Config) => String::new(),
        (Some(_), CatKind::Config) => bail!("cat config takes no id"),
        (None, k) => bail!("cat {}: give an id", k.to_possible_value().expect("named").get_name()),
        (Some(s), _) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
    };
    let mut out = std::io::stdout().lock();
    let json = match args.kind {
        CatKind::Config => {
            let mut v = serde_json::to_value(repo.config())?;
            v["chunker"]["seed"] = "<secret>".into();
            v
        }
        CatKind::Snapshot => {
            let (sid, snap) = repo.find_snapshot(&id)?;
            let mut v = serde_json::to_value(&snap)?;
            v["id"] = sid.to_hex().into();
            v
        }
        CatKind::Key => {
            let kid = resolve_object_prefix(&repo, FileKind::Key, &id)?;
            let bytes = repo.backend().read(FileKind::Key, &kid.to_hex())?;
            // Key files are plaintext JSON: print them exactly as stored.
            let _: serde_json::Value = serde_json::from_slice(&bytes)?;
            out.write_all(&bytes)?;
            if !bytes.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            return Ok(crate::exit::OK);
        }
        CatKind::Index => {
            let iid = resolve_object_prefix(&repo, FileKind::Index, &id)?;
            let file = repo.load_index_file(&iid)?;
            serde_json::json!({
                "id": iid.to_hex(),
                "supersedes": file.supersedes.iter().map(Id::to_hex).collect::<Vec<_>>(),
                "marked": file.marked.iter().map(|(p, t)| serde_json::json!({"pack": p.to_hex(), "time": t}))
                    .collect::<Vec<_>>(),
                "packs": file.packs.iter().map(|p| serde_json::json!({
                    "id": p.pack.to_hex(),
                    "blobs": p.blobs.iter().map(blob_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        }
        CatKind::Pack => {
            let pid = resolve_object_prefix(&repo, FileKind::Pack, &id)?;
            let blobs = read_pack_header(&repo, &pid)?;
            serde_json::json!({
                "id": pid.to_hex(),
                "blobs": blobs.iter().map(blob_json).collect::<Vec<_>>(),
            })
        }
        CatKind::Tree => {
            let tid = tree_id(&repo, args.id.as_ref().expect("checked").as_bytes())?;
            let tree = repo.load_tree(&tid)?;
            serde_json::json!({
                "id": tid.to_hex(),
                "nodes": tree.nodes.iter().map(|n| {
                    let mut v = node_json(&n.name, n);
                    if let Some(o) = v.as_object_mut() {
                        o.remove("path");
                        o.remove("path_hex");
                        o.remove("struct_type");
                    }
                    if std::str::from_utf8(&n.name).is_err() {
                        v["name_hex"] = crate::cmd_ls::hex(&n.name).into();
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        }
        CatKind::Blob => {
            let (t, bid) = match resolve_blob_prefix(&repo, BlobType::Data, &id) {
                Ok(b) if repo.index().lookup(BlobType::Data, &b).is_some() => (BlobType::Data, b),
                _ => (BlobType::Tree, resolve_blob_prefix(&repo, BlobType::Tree, &id)?),
            };
            let bytes = repo.read_blob(t, &bid)?;
            out.write_all(&bytes)?;
            out.flush()?;
            return Ok(crate::exit::OK);
        }
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    Ok(crate::exit::OK)
}

fn blob_json(b: &PackedBlob) -> serde_json::Value {
    serde_json::json!({
        "id": b.id.to_hex(),
        "type": match b.blob_type { BlobType::Data => "data", BlobType::Tree => "tree" },
        "offset": b.offset,
        "length": b.length,
        "raw_length": b.raw_length,
        "compression": match b.compression {
            arch_archiver::Compression::None => "none",
            arch_archiver::Compression::Zstd => "zstd",
        },
    })
}

/// A tree blob id (full or prefix of an indexed tree), or the directory at
/// SNAPSHOT[:PATH].
fn tree_id(repo: &Repository, spec: &[u8]) -> Result<Id> {
    let text = String::from_utf8_lossy(spec);
    let looks_like_id = spec.len() >= 8 && spec.iter().all(u8::is_ascii_hexdigit);
    if looks_like_id {
        if let Ok(id) = resolve_blob_prefix(repo, BlobType::Tree, &text) {
            if repo.index().lookup(BlobType::Tree, &id).is_some() {
                return Ok(id);
            }
        }
    }
    let (_, _, node) = resolve_snapshot_spec(repo, spec, &Default::default())?;
    match node.subtree {
        Some(t) => Ok(t),
        None => bail!("{} is not a directory", escape_path(spec)),
    }
}
