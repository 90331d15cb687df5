use std::path::PathBuf;

use anyhow::{Context, Result};
use arch_archiver::{Cipher, InitOptions, Repository};
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
    /// Cipher of the repository's data: "auto" (XAES-256-GCM where the CPU
    /// has AES instructions, else XChaCha20-Poly1305), "xaes-256-gcm", or
    /// "xchacha20-poly1305" (also readable by builds older than the first
    /// with XAES-256-GCM).
    #[arg(long, value_name = "CIPHER", default_value = "auto", value_parser = parse_cipher)]
    pub cipher: CipherChoice,
}

/// `--cipher`: a cipher, or none for this machine's preferred one.
#[derive(Clone, Copy, Debug)]
pub struct CipherChoice(Option<Cipher>);

fn parse_cipher(s: &str) -> Result<CipherChoice, String> {
    if s == "auto" {
        return Ok(CipherChoice(None));
    }
    match Cipher::ALL.into_iter().find(|c| c.name() == s) {
        Some(c) => Ok(CipherChoice(Some(c))),
        None => Err(format!("unknown cipher {s:?}: use auto, xaes-256-gcm or xchacha20-poly1305")),
    }
}

pub fn run(cli: &Cli, args: &InitArgs) -> Result<i32> {
    let loc = crate::repo::location(cli)?;
    let mut opts = InitOptions::default();
    if let Some(level) = args.compression.0 {
        opts = opts.compression_level(level);
    }
    if let Some(cipher) = args.cipher.0 {
        opts = opts.cipher(cipher);
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
        println!(
            "created repository {} at {} ({})",
            repo.config().id.short(),
            loc.url,
            repo.config().cipher().name()
        );
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(crate::exit::OK)
}
