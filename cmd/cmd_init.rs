use std::path::PathBuf;

use anyhow::{Context, Result};
use arch_archiver::{InitOptions, Repository};
use clap::Args;

use crate::cli::Cli;

/// Create a new repository.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Use the chunker parameters of this repository (so that `arch copy`
    /// from it deduplicates); needs its password (ARCH_FROM_PASSWORD...).
    #[arg(long, value_name = "URL", requires = "copy_chunker_params")]
    pub from_repo: Option<std::ffi::OsString>,
    /// Copy the chunker parameters of --from-repo.
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    /// Password file of --from-repo.
    #[arg(long, value_name = "FILE", env = "ARCH_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// zstd level backups use unless they say otherwise: "fast" (1),
    /// "default" (3), "max" (19), or 1 to 22.
    #[arg(long, value_name = "LEVEL", default_value = "default", value_parser = crate::cli::parse_compression)]
    pub compression: crate::cli::Compression,
}

pub fn run(cli: &Cli, args: &InitArgs) -> Result<i32> {
    let loc = crate::repo::location(cli)?;
    let mut opts = InitOptions::default();
    if let Some(level) = args.compression.0 {
        opts = opts.compression_level(level);
    }
    if let (Some(from), true) = (&args.from_repo, args.copy_chunker_params) {
        let pw = crate::password::get_source(args.from_password_file.as_deref())?;
        let from = crate::repo::parse_url(from)?;
        let src = crate::repo::backend_at(cli, &from)
            .and_then(|b| Ok(Repository::open(b, &pw)?))
            .with_context(|| format!("source repository {from}"))?;
        opts = opts.chunker(src.config().chunker.clone());
    }
    let password = crate::password::get(cli, true)?;
    let backend = crate::repo::backend_at(cli, &loc.url)?;
    let repo = Repository::init(backend, &password, &opts)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({ "repository": loc.url.to_string(), "id": repo.config().id.to_hex() })
        );
    } else if !cli.quiet {
        println!("created repository {} at {}", repo.config().id.short(), loc.url);
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(crate::exit::OK)
}
