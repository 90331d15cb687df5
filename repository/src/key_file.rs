use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{fill_random, Key};
use crate::error::RepoError;
use crate::hex;

/// Argon2id parameters stored in each key file, so they can be raised for
/// new keys without breaking old ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 4 lanes: RFC 9106's second recommended setting.
    /// The lanes are filled on several cores at once, so a command starts
    /// sooner on a machine with more than one (about 0.05 s instead of 0.1
    /// on two cores here), while a guesser still pays the same memory and
    /// work per guess. OWASP's minimum is 19 MiB / 2 passes.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 4 }
    }
}

/// A key file: the repository's master key wrapped with a password.
/// Stored as plaintext JSON; only `data` is secret, and it is sealed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Host that created the key.
    pub hostname: String,
    /// User that created the key.
    pub username: String,
    /// Always "argon2id" in version 1.
    pub kdf: String,
    /// KDF cost parameters.
    pub params: KdfParams,
    /// 32 random bytes, hex.
    pub salt: String,
    /// The master key sealed with the password-derived key, hex.
    pub data: String,
}

impl KeyFile {
    /// Wraps `master` with `password`.
    pub fn create(
        master: &Key,
        password: &[u8],
        params: KdfParams,
        hostname: &str,
        username: &str,
    ) -> Result<KeyFile, RepoError> {
        let mut salt = [0u8; 32];
        fill_random(&mut salt);
        let wrapping = derive(password, &salt, &params)?;
        Ok(KeyFile {
            version: 1,
            created: chrono::Utc::now().to_rfc3339(),
            hostname: hostname.to_string(),
            username: username.to_string(),
            kdf: "argon2id".to_string(),
            params,
            salt: hex::encode(&salt),
            data: hex::encode(&wrapping.seal(master.bytes())),
        })
    }

    /// Unwraps the master key; `Ok(None)` if the password does not open it.
    pub fn open(&self, password: &[u8], what: &str) -> Result<Option<Key>, RepoError> {
        if self.version != 1 {
            return Err(RepoError::UnsupportedVersion { what: what.to_string(), version: self.version });
        }
        if self.kdf != "argon2id" {
            return Err(RepoError::corrupt(what, format!("unknown kdf {:?}", self.kdf)));
        }
        let salt = hex::decode(&self.salt).ok_or_else(|| RepoError::corrupt(what, "bad salt"))?;
        let sealed = hex::decode(&self.data).ok_or_else(|| RepoError::corrupt(what, "bad data"))?;
        let wrapping = derive(password, &salt, &self.params)?;
        let Ok(plain) = wrapping.open(&sealed) else {
            return Ok(None);
        };
        let plain = Zeroizing::new(plain);
        let bytes: [u8; 32] =
            plain[..].try_into().map_err(|_| RepoError::corrupt(what, "master key has the wrong length"))?;
        Ok(Some(Key::from_bytes(&bytes)))
    }
}

fn derive(password: &[u8], salt: &[u8], p: &KdfParams) -> Result<Key, RepoError> {
    // Refuse absurd stored parameters instead of allocating terabytes.
    if p.memory_kib > 4 * 1024 * 1024 || p.iterations > 100 || p.parallelism > 64 {
        return Err(RepoError::InvalidOption(format!("key derivation parameters out of range: {p:?}")));
    }
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| RepoError::InvalidOption(format!("argon2 parameters {p:?}: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, &mut out[..])
        .map_err(|e| RepoError::InvalidOption(format!("argon2: {e}")))?;
    Ok(Key::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_unwrap() {
        let master = Key::generate();
        let params = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
        let kf = KeyFile::create(&master, b"pw", params, "h", "u").unwrap();
        let json = serde_json::to_string(&kf).unwrap();
        let kf: KeyFile = serde_json::from_str(&json).unwrap();
        let k = kf.open(b"pw", "key").unwrap().unwrap();
        assert_eq!(k.bytes(), master.bytes());
        assert!(kf.open(b"wrong", "key").unwrap().is_none());
    }
}
