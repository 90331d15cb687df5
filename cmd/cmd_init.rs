use std::sync::Arc;

use anyhow::Result;
use arch_archiver::{InitOptions, LocalBackend, Repository};

use crate::cli::Cli;

pub fn run(cli: &Cli) -> Result<i32> {
    let loc = crate::repo::location(cli)?;
    let password = crate::password::get(cli.password_file.as_deref(), true)?;
    let repo = Repository::init(Arc::new(LocalBackend::new(&loc.path)), &password, &InitOptions::default())?;
    if cli.json {
        println!("{}", serde_json::json!({ "repository": loc.path, "id": repo.config().id.to_hex() }));
    } else if !cli.quiet {
        println!("created repository {} at {}", repo.config().id.short(), loc.path.display());
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(crate::exit::OK)
}
