use anyhow::Result;

use crate::cli::{Cli, SnapshotsArgs};

pub fn run(cli: &Cli, args: &SnapshotsArgs) -> Result<i32> {
    let repo = crate::repo::open_unindexed(cli)?;
    let snaps = repo.list_snapshots_filtered(&args.filter.filter())?;
    if cli.json {
        let list: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).expect("snapshot serializes");
                v["id"] = serde_json::Value::String(id.to_hex());
                v["short_id"] = serde_json::Value::String(id.short());
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(crate::exit::OK);
    }
    println!("{:<8}  {:<19}  {:<16}  {:<12}  paths", "id", "time", "host", "tags");
    for (id, s) in &snaps {
        println!(
            "{:<8}  {:<19}  {:<16}  {:<12}  {}",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            s.tags.join(","),
            s.paths.join(" ")
        );
    }
    if !cli.quiet {
        println!("{} snapshots", snaps.len());
    }
    Ok(crate::exit::OK)
}
