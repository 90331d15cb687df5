//! `--mem-limit`: with an index limit far below the repository's index the
//! index spills to a temporary file and everything still works: backup,
//! deduplication against what an earlier backup stored, restore, and
//! check --read-data.

use std::fs;

use crate::common::*;

#[test]
fn a_tiny_index_memory_limit_spills_and_everything_still_works() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base).var("TMPDIR", &base);
    let (src, repo) = (base.join("src"), base.join("repo"));
    build_fixture(&src);
    // Enough blobs that a 4 KiB limit (85 entries) spills many times.
    fs::create_dir(src.join("many")).unwrap();
    for i in 0..300u64 {
        write_random_file(&src.join(format!("many/f{i:03}")), i + 1000, 200 + i * 13);
    }
    let lim = ["--mem-limit", "4K", "--repo"];
    env.run(&args(&[&lim[2], &repo, &"init"])).ok("init");
    env.run(&args(&[&lim[0], &lim[1], &lim[2], &repo, &"backup", &src])).ok("first backup");
    let first = dir_size(&repo);

    // A copy under another path has no parent snapshot: every chunk goes
    // through the (spilled) index and must be found there.
    let copy = base.join("copy");
    fs::create_dir(&copy).unwrap();
    let status = std::process::Command::new("cp").arg("-a").arg(&src).arg(&copy).status().unwrap();
    assert!(status.success());
    env.run(&args(&[&lim[0], &lim[1], &lim[2], &repo, &"backup", &copy])).ok("backup of the copy");
    let grown = dir_size(&repo) - first;
    assert!(grown < 128 << 10, "a copy of backed-up data grew the repository by {grown} bytes");

    let target = base.join("restore");
    env.run(&args(&[&lim[0], &lim[1], &lim[2], &repo, &"restore", &"latest", &"--target", &target]))
        .ok("restore");
    assert_trees_equal(&src, &restored_path(&target, &copy.join("src")));
    env.run(&args(&[&lim[0], &lim[1], &lim[2], &repo, &"check", &"--read-data"])).ok("check --read-data");
    // The spill file is unnamed: nothing is left in TMPDIR.
    let left: Vec<_> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
