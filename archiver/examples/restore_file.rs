//! Restore one file of a snapshot into a writer, and one directory of it
//! into a target directory.

use std::sync::Arc;

use arch_archiver::{
    dump_file, find_node, Backup, InitOptions, KdfParams, LocalBackend, Repository, Restore, RestoreOptions,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let source = std::fs::canonicalize(tmp.path())?.join("source");
    std::fs::create_dir_all(source.join("etc"))?;
    std::fs::write(source.join("etc/app.conf"), b"threads = 4\n")?;
    std::fs::write(source.join("notes.txt"), b"not restored\n")?;

    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Repository::init(backend, b"example password", &InitOptions::default().kdf(kdf))?;
    Backup::new(&repo, [&source]).run()?;

    // The newest snapshot; snapshots keep their sources' absolute paths.
    let (_, snapshot) = repo.list_snapshots()?.pop().expect("one snapshot");
    let conf = source.join("etc/app.conf");

    // One file into any writer (here a Vec; could be stdout or a socket).
    let node = find_node(&repo, &snapshot.tree, conf.as_os_str().as_encoded_bytes())?;
    let mut out = Vec::new();
    dump_file(&repo, &node, &mut out)?;
    assert_eq!(out, b"threads = 4\n");

    // One directory of the snapshot into a target directory.
    let target = tmp.path().join("restored");
    let opts = RestoreOptions::default().subpath(source.join("etc").as_os_str().as_encoded_bytes());
    Restore::new(&repo, &snapshot, &target).options(opts).run()?;
    assert_eq!(std::fs::read(target.join("app.conf"))?, b"threads = 4\n");
    assert!(!target.join("notes.txt").exists());
    println!("restored {} ({} bytes) and the etc directory", conf.display(), out.len());
    Ok(())
}

#[test]
fn example_runs() {
    main().unwrap();
}
