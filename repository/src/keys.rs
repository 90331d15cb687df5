//! Key management: list, add, remove and replace the key files that wrap
//! the master key with a password.
//!
//! Every key file opens the same master key, so adding or removing one
//! never touches any other object. The rules that keep a repository
//! openable: the last key file is never removed, nor the one the caller
//! opened the repository with (replace it with [`change_password`], which
//! writes the new key before it deletes the old one, so a crash in between
//! leaves both passwords working, never neither).

use arch_index::Id;

use crate::backend::FileKind;
use crate::error::RepoError;
use crate::key_file::{KdfParams, KeyFile};
use crate::repo::{PrefixMatch, Repository};

/// Every key file of the repository with its id, in name order (the order
/// [`Repository::open`] tries them). A key file whose content does not
/// match its name or does not parse is an error naming it.
pub fn list_keys(repo: &Repository) -> Result<Vec<(Id, KeyFile)>, RepoError> {
    let mut out = Vec::new();
    for info in repo.backend().list(FileKind::Key)? {
        let Some(id) = Id::from_hex(&info.name) else { continue };
        out.push((id, read_key(repo, &id)?));
    }
    Ok(out)
}

fn read_key(repo: &Repository, id: &Id) -> Result<KeyFile, RepoError> {
    let what = format!("key {}", id.short());
    let bytes = repo.backend().read(FileKind::Key, &id.to_hex())?;
    if Id::hash(&bytes) != *id {
        return Err(RepoError::corrupt(what, "content does not match its name (file damaged or replaced)"));
    }
    serde_json::from_slice(&bytes).map_err(|e| RepoError::corrupt(what, e.to_string()))
}

/// Resolves a key id or a unique prefix of at least 4 hex characters.
pub fn find_key(repo: &Repository, spec: &str) -> Result<Id, RepoError> {
    match repo.match_prefix(FileKind::Key, spec)? {
        PrefixMatch::One(id) => Ok(id),
        PrefixMatch::Invalid => Err(RepoError::InvalidOption(format!(
            "key {spec:?}: give at least 4 hex characters of a key id ('arch key list' shows them)"
        ))),
        PrefixMatch::None => Err(RepoError::InvalidOption(format!(
            "no key matches {spec:?} in {}; 'arch key list' shows them",
            repo.backend().location()
        ))),
        PrefixMatch::Many(n) => Err(RepoError::InvalidOption(format!(
            "key prefix {spec:?} is ambiguous ({n} matches); give more characters"
        ))),
    }
}

/// Adds a key file for `password` (wrapping the master key with `params`)
/// and returns its id.
pub fn add_key(repo: &Repository, password: &[u8], params: KdfParams) -> Result<Id, RepoError> {
    repo.add_key(password, params)
}

/// Deletes key file `id`. Refuses to delete the repository's last key
/// file, and the key file `current` (the one the caller opened the
/// repository with: removing it would lock the caller out the next time).
pub fn remove_key(repo: &Repository, id: &Id, current: Option<&Id>) -> Result<(), RepoError> {
    if current == Some(id) {
        return Err(RepoError::InvalidOption(format!(
            "key {} is the one this password opens; to retire it, use 'arch key passwd', or open the repository with another key's password and remove it from there",
            id.short()
        )));
    }
    let all: Vec<Id> =
        repo.backend().list(FileKind::Key)?.into_iter().filter_map(|i| Id::from_hex(&i.name)).collect();
    if !all.contains(id) {
        return Err(RepoError::InvalidOption(format!(
            "no key {} in {}",
            id.short(),
            repo.backend().location()
        )));
    }
    if all.len() <= 1 {
        return Err(RepoError::InvalidOption(format!(
            "key {} is the repository's last key; without it nobody can open the repository",
            id.short()
        )));
    }
    Ok(repo.backend().delete(FileKind::Key, &id.to_hex())?)
}

/// Replaces key file `current` with a new one for `new_password`: the new
/// key file is written (durably) first, then `current` is deleted, so a
/// crash in between leaves both passwords working. Returns the new id.
pub fn change_password(
    repo: &Repository,
    current: &Id,
    new_password: &[u8],
    params: KdfParams,
) -> Result<Id, RepoError> {
    let new = repo.add_key(new_password, params)?;
    if new != *current {
        repo.backend().delete(FileKind::Key, &current.to_hex())?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{InitOptions, LocalBackend};

    fn fast() -> KdfParams {
        KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    #[test]
    fn add_remove_and_change_password() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(LocalBackend::new(dir.path()));
        let repo = Repository::init(backend.clone(), b"one", &InitOptions::default().kdf(fast())).unwrap();
        let first = repo.key_id();
        assert_eq!(list_keys(&repo).unwrap().len(), 1);
        assert!(remove_key(&repo, &first, None).unwrap_err().to_string().contains("last key"));
        assert!(remove_key(&repo, &first, Some(&first)).unwrap_err().to_string().contains("arch key passwd"));

        let second = add_key(&repo, b"two", fast()).unwrap();
        assert_eq!(find_key(&repo, &second.to_hex()[..8]).unwrap(), second);
        let other = Repository::open(backend.clone(), b"two").unwrap();
        assert_eq!(other.key_id(), second);
        assert!(matches!(Repository::open(backend.clone(), b"nope"), Err(RepoError::WrongPassword { .. })));
        remove_key(&repo, &second, Some(&first)).unwrap();
        assert!(Repository::open(backend.clone(), b"two").is_err());

        let third = change_password(&repo, &first, b"three", fast()).unwrap();
        assert_eq!(list_keys(&repo).unwrap().into_iter().map(|(id, _)| id).collect::<Vec<_>>(), vec![third]);
        assert!(matches!(Repository::open(backend.clone(), b"one"), Err(RepoError::WrongPassword { .. })));
        Repository::open(backend, b"three").unwrap();
    }
}
