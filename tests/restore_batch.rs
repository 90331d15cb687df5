//! Restore memory is bounded: the plan is built and written in batches of
//! at most `max_planned` entries, whatever the snapshot's size, and the
//! result is the same tree (content, modes, file and directory times).

use std::fs;

use arch_archiver::{Backup, Restore, RestoreOptions};

use crate::common::*;

/// 12 directories of 40 files (some empty, some sharing content, one
/// spanning several chunks), with old times on files and directories.
fn many_files(root: &std::path::Path) {
    for d in 0..12u32 {
        let dir = root.join(format!("d{d:02}")).join("inner");
        fs::create_dir_all(&dir).unwrap();
        for f in 0..40u32 {
            let p = dir.join(format!("f{f:02}"));
            let len = match f % 5 {
                0 => 0,
                1 => 10,
                _ => 1000 + u64::from(f) * 37,
            };
            // Every seventh file repeats another directory's content.
            let seed = if f % 7 == 0 { u64::from(f) } else { u64::from(d * 100 + f) };
            write_random_file(&p, seed, len);
            set_times(&p, past_time(d * 40 + f), false);
        }
        set_times(&dir, past_time(d), false);
        set_times(dir.parent().unwrap(), past_time(d + 50), false);
    }
    write_random_file(&root.join("big"), 99, 5 << 20);
    set_times(&root.join("big"), past_time(7), false);
}

#[test]
fn a_small_batch_limit_bounds_the_plan_and_restores_the_same_tree() {
    let (_t, base) = tempdir();
    let src = base.join("src");
    many_files(&src);
    let repo = init_repo(&base.join("repo"));
    let snap = Backup::new(&repo, [&src]).run().expect("backup").snapshot;

    let whole = base.join("whole");
    let r1 = Restore::new(&repo, &snap, &whole).run().expect("restore in one batch");
    assert_trees_equal(&src, &restored_path(&whole, &src));
    let files = 12 * 40 + 1;
    assert_eq!(r1.files, files);
    assert!(r1.peak_planned > 2 * files, "the default limit holds the whole plan: {}", r1.peak_planned);

    let limit = 50;
    let small = base.join("small");
    let r2 = Restore::new(&repo, &snap, &small)
        .options(RestoreOptions::default().max_planned(limit).verify(true))
        .run()
        .expect("restore in batches");
    assert_trees_equal(&src, &restored_path(&small, &src));
    // A batch is written once it reaches the limit; the entry that tips it
    // over may be a whole file (the 5 MiB one has a few chunks).
    assert!(r2.peak_planned as usize <= limit + 16, "peak {} with a limit of {limit}", r2.peak_planned);
    assert_eq!((r2.files, r2.bytes, r2.written), (r1.files, r1.bytes, r1.written));
    assert_eq!(r2.verified, files);
    assert!(r2.verify_failures.is_empty(), "{:?}", r2.verify_failures);
}
