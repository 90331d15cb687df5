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
    let hashed = match FreshPages::new(argon.params().block_count()) {
        Some(memory) => argon.hash_password_into_with_memory(password, salt, &mut out[..], memory),
        None => argon.hash_password_into(password, salt, &mut out[..]),
    };
    hashed.map_err(|e| RepoError::InvalidOption(format!("argon2: {e}")))?;
    Ok(Key::from_bytes(&out))
}

/// Argon2's working memory mapped straight from the kernel. Its pages
/// read as zeros until first written, so the lanes filling them fault
/// them in as they go, on every core. The allocator would zero memory
/// aligned as argon2's blocks are with a memset on one thread first: 64
/// MiB of page faults before the derivation starts, about a fifth of its
/// time. Unmapping hands the pages back, and the kernel clears them
/// before anyone else gets them.
struct FreshPages {
    blocks: std::ptr::NonNull<argon2::Block>,
    len: usize,
}

impl FreshPages {
    fn new(len: usize) -> Option<FreshPages> {
        let bytes = len.checked_mul(argon2::Block::SIZE)?;
        if bytes == 0 {
            return None;
        }
        // SAFETY: a private anonymous mapping; the kernel picks the
        // address, which is page-aligned (more than a block needs).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(FreshPages { blocks: std::ptr::NonNull::new(p.cast())?, len })
    }
}

impl AsMut<[argon2::Block]> for FreshPages {
    fn as_mut(&mut self) -> &mut [argon2::Block] {
        // SAFETY: the mapping holds `len` blocks, zero-filled (a valid
        // block), aligned, and lives as long as self.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_ptr(), self.len) }
    }
}

impl Drop for FreshPages {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new.
        unsafe { libc::munmap(self.blocks.as_ptr().cast(), self.len * argon2::Block::SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_in_fresh_pages_matches_the_allocating_one() {
        let p = KdfParams { memory_kib: 1024, iterations: 2, parallelism: 4 };
        let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).unwrap();
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut want = [0u8; 32];
        argon.hash_password_into(b"password", b"a salt of 16+ bytes", &mut want).unwrap();
        let got = derive(b"password", b"a salt of 16+ bytes", &p).unwrap();
        assert_eq!(got.bytes(), &want);
    }

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
