use anyhow::Result;
use arch_archiver::remove_locks;

use crate::cli::{Cli, UnlockArgs};

pub fn run(cli: &Cli, args: &UnlockArgs) -> Result<i32> {
    let repo = crate::repo::open_unindexed(cli)?;
    let n = remove_locks(&repo, args.remove_all)?;
    if cli.json {
        println!("{}", serde_json::json!({"message_type": "summary", "removed": n}));
    } else if !cli.quiet {
        println!("removed {n} {}", if n == 1 { "lock" } else { "locks" });
    }
    Ok(crate::exit::OK)
}
