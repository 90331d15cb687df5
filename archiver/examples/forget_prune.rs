//! Apply a retention policy (forget) and free the data nobody needs (prune).

use std::sync::Arc;
use std::time::Duration;

use arch_archiver::{
    check, group_snapshots, prune, remove_snapshot, Backup, BackupOptions, CheckOptions, ForgetPolicy,
    GroupBy, InitOptions, KdfParams, Lease, LocalBackend, NoCheckProgress, PruneOptions, Repository,
};
use chrono::TimeZone;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let source = tmp.path().join("source");
    std::fs::create_dir_all(&source)?;
    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Arc::new(Repository::init(backend, b"example password", &InitOptions::default().kdf(kdf))?);

    // Five daily backups, each with a different file.
    for day in 1..=5u32 {
        std::fs::write(source.join("data.bin"), vec![day as u8; 300_000 + day as usize])?;
        let time = chrono::Utc.with_ymd_and_hms(2026, 3, day, 3, 0, 0).unwrap().fixed_offset();
        Backup::new(&repo, [&source]).options(BackupOptions::default().time(time)).run()?;
    }

    // Forget and prune change the repository: hold an exclusive lease.
    let _lease = Lease::acquire(&repo, true, Duration::ZERO)?;
    let mut policy = ForgetPolicy::default();
    policy.keep_last = 2;
    for (_group, snaps) in group_snapshots(repo.list_snapshots()?, GroupBy::default()) {
        for verdict in policy.apply(&snaps, chrono::Utc::now(), &chrono::Utc) {
            if !verdict.keep {
                remove_snapshot(&repo, &verdict.id)?;
            }
        }
    }
    assert_eq!(repo.list_snapshots()?.len(), 2);

    // No grace period: nothing else uses this repository.
    let report = prune(&repo, &PruneOptions::default().grace(Duration::ZERO))?;
    println!(
        "forgot 3 snapshots; prune deleted {} packs ({} bytes)",
        report.packs_deleted, report.bytes_deleted
    );
    assert!(report.bytes_deleted > 0);
    let checked = check(&repo, &CheckOptions::default(), &NoCheckProgress)?;
    assert!(checked.is_ok(), "{:?}", checked.problems);
    Ok(())
}

#[test]
fn example_runs() {
    main().unwrap();
}
