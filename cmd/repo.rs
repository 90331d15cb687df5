use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arch_archiver::{InitOptions, Lease, LocalBackend, Repository};

use crate::cli::Cli;

/// Where the repository is, and whether it is the implicit default.
pub struct Location {
    pub path: PathBuf,
    pub is_default: bool,
}

pub fn location(cli: &Cli) -> Result<Location> {
    if let Some(p) = &cli.repo {
        return Ok(Location { path: p.clone(), is_default: false });
    }
    let base = dirs::data_dir().context(
        "no --repo or ARCH_REPOSITORY given, and no user data directory to hold a default repository",
    )?;
    Ok(Location { path: base.join("arch").join("repo"), is_default: true })
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
    let loc = location(cli)?;
    let backend = Arc::new(LocalBackend::new(&loc.path));
    let password = crate::password::get(cli.password_file.as_deref(), false)?;
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
    let loc = location(cli)?;
    let backend = Arc::new(LocalBackend::new(&loc.path));
    if loc.is_default && !arch_archiver::Backend::exists(&*backend)? {
        let password = crate::password::get(cli.password_file.as_deref(), true)?;
        let repo = index_options(cli, Repository::init(backend, &password, &InitOptions::default())?);
        if !cli.quiet {
            eprintln!("created the default repository at {}", loc.path.display());
        }
        let repo = Arc::new(repo);
        let lease = lease(cli, &repo, false)?;
        return Ok((repo, lease));
    }
    open_locked(cli, false)
}
