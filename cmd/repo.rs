use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use arch_archiver::{
    open_backend, Backend, BackendOptions, BackendUrl, CachedBackend, CancellationToken, InitOptions, Lease,
    Repository,
};

use crate::cli::Cli;

/// Where the repository is, and whether it is the implicit default.
pub struct Location {
    pub url: BackendUrl,
    pub is_default: bool,
}

impl Location {
    /// The folder of a local repository.
    pub fn local_path(&self) -> Option<&Path> {
        match &self.url {
            BackendUrl::Local(p) => Some(p),
            _ => None,
        }
    }
}

/// Parses a repository location argument. A name that is not UTF-8 can
/// only be a local path.
pub fn parse_url(s: &OsStr) -> Result<BackendUrl> {
    match s.to_str() {
        Some(s) => Ok(BackendUrl::parse(s)?),
        None => Ok(BackendUrl::Local(s.into())),
    }
}

pub fn location(cli: &Cli) -> Result<Location> {
    if let Some(s) = &cli.repo {
        return Ok(Location { url: parse_url(s)?, is_default: false });
    }
    let base = dirs::data_dir().context(
        "no --repo or ARCH_REPOSITORY given, and no user data directory to hold a default repository",
    )?;
    Ok(Location { url: BackendUrl::Local(base.join("arch").join("repo")), is_default: true })
}

static CANCEL: OnceLock<CancellationToken> = OnceLock::new();

/// Lets backends cut their retry waits short on Ctrl-C.
pub fn set_cancel(token: &CancellationToken) {
    let _ = CANCEL.set(token.clone());
}

/// The `-o` options, with the command's cancellation.
pub fn backend_options(cli: &Cli) -> Result<BackendOptions> {
    let mut o = BackendOptions::parse(&cli.options)?;
    if let Some(t) = CANCEL.get() {
        let t = t.clone();
        o = o.cancel_when(move || t.is_cancelled());
    }
    Ok(o)
}

/// Opens the backend at `url` with the command line's `-o` options; a
/// remote one behind the local cache (unless --no-cache).
pub fn backend_at(cli: &Cli, url: &BackendUrl) -> Result<Arc<dyn Backend>> {
    let backend = open_backend(url, &backend_options(cli)?)?;
    if url.is_local() || cli.no_cache {
        return Ok(backend);
    }
    match cli.cache_dir.clone().or_else(|| dirs::cache_dir().map(|d| d.join("arch"))) {
        Some(dir) => Ok(Arc::new(CachedBackend::new(backend, dir))),
        None => Ok(backend),
    }
}

/// The repository's backend without the cache: for check, which must read
/// what the repository holds, not a local copy.
pub fn backend_uncached(cli: &Cli) -> Result<(Location, Arc<dyn Backend>)> {
    let loc = location(cli)?;
    let backend = open_backend(&loc.url, &backend_options(cli)?)?;
    Ok((loc, backend))
}

/// The repository's backend (not yet opened as a repository).
pub fn backend(cli: &Cli) -> Result<(Location, Arc<dyn Backend>)> {
    let loc = location(cli)?;
    let backend = backend_at(cli, &loc.url)?;
    Ok((loc, backend))
}

/// Takes a lease for the rest of the command (released when dropped).
pub fn lease(cli: &Cli, repo: &Arc<Repository>, exclusive: bool) -> Result<Lease> {
    Ok(Lease::acquire(repo, exclusive, cli.retry_lock.unwrap_or_default())?)
}

pub fn open(cli: &Cli) -> Result<Repository> {
    let repo = open_unindexed(cli)?;
    repo.load_index()?;
    Ok(repo)
}

/// Opens the repository without reading its index, for commands that only
/// deal with snapshots, keys or locks.
pub fn open_unindexed(cli: &Cli) -> Result<Repository> {
    let (_, backend) = backend(cli)?;
    let password = crate::password::get(cli, false)?;
    Ok(index_options(cli, Repository::open_unindexed(backend, &password)?))
}

/// Applies `--mem-limit` to a repository whose index is not loaded yet.
fn index_options(cli: &Cli, repo: Repository) -> Repository {
    match cli.mem_limit {
        Some(bytes) => repo.with_index_options(
            arch_archiver::MasterIndexOptions::default().mem_limit(bytes.try_into().unwrap_or(usize::MAX)),
        ),
        None => repo,
    }
}

/// Opens the repository, takes a lease, and only then reads the index: an
/// index read before the lease could predate a prune that finished while
/// this command waited, and deduplicating against it could refer to data
/// that prune removed.
pub fn open_locked(cli: &Cli, exclusive: bool) -> Result<(Arc<Repository>, Lease)> {
    let repo = Arc::new(open_unindexed(cli)?);
    let lease = lease(cli, &repo, exclusive)?;
    repo.load_index()?;
    Ok((repo, lease))
}

/// Opens the repository as [`open_locked`] does (shared lease), creating
/// the default one on first use.
pub fn open_or_create_default(cli: &Cli) -> Result<(Arc<Repository>, Lease)> {
    let (loc, backend) = backend(cli)?;
    if loc.is_default && !backend.exists()? {
        let password = crate::password::get(cli, true)?;
        let repo = index_options(cli, Repository::init(backend, &password, &InitOptions::default())?);
        if !cli.quiet {
            eprintln!("created the default repository at {}", loc.url);
        }
        let repo = Arc::new(repo);
        let lease = lease(cli, &repo, false)?;
        return Ok((repo, lease));
    }
    open_locked(cli, false)
}
