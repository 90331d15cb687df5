use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Bytes a seal adds to its plaintext: a 24-byte nonce and a 16-byte tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Authentication failed: the bytes were not sealed with this key, or were
/// changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (wrong key or damaged data)")]
pub struct AuthError;

/// A 256-bit symmetric key that seals and opens data with
/// XChaCha20-Poly1305 and a fresh random 24-byte nonce per message.
///
/// Sealed layout: `nonce (24) || ciphertext || tag (16)`. Random 192-bit
/// nonces never collide in practice, so no nonce state is kept. The key
/// bytes are zeroized when the key is dropped.
pub struct Key {
    bytes: Zeroizing<[u8; 32]>,
    cipher: XChaCha20Poly1305,
}

impl Key {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Key {
        let mut b = Zeroizing::new([0u8; 32]);
        fill_random(&mut b[..]);
        Key::from_bytes(&b)
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(b: &[u8; 32]) -> Key {
        let cipher = XChaCha20Poly1305::new_from_slice(b).expect("32-byte key is valid");
        Key { bytes: Zeroizing::new(*b), cipher }
    }

    /// The raw key bytes (for wrapping in a key file).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Seals `plaintext` and returns the sealed bytes.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_append(plaintext, &mut out);
        out
    }

    /// Appends the sealed form of `plaintext` to `out` (no temporary copy:
    /// encryption happens in place in `out`).
    pub fn seal_append(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&XNonce::from(nonce), b"", (&mut out[start..]).into())
            .expect("messages below 256 GiB always encrypt");
        out.extend_from_slice(&tag);
    }

    /// Opens sealed bytes in place: on success the returned slice (inside
    /// `sealed`) is the plaintext. Nothing is copied or allocated.
    pub fn open_in_place<'a>(&self, sealed: &'a mut [u8]) -> Result<&'a mut [u8], AuthError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(AuthError);
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let at = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at_mut(at);
        let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| AuthError)?;
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AuthError)?;
        self.cipher
            .decrypt_inout_detached(&XNonce::from(nonce), b"", (&mut *ct).into(), &Tag::from(tag))
            .map_err(|_| AuthError)?;
        Ok(ct)
    }

    /// Opens sealed bytes, returning the plaintext.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(AuthError);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| AuthError)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| AuthError)?;
        let mut buf = ct.to_vec();
        self.cipher
            .decrypt_inout_detached(&XNonce::from(nonce), b"", (&mut buf[..]).into(), &Tag::from(tag))
            .map_err(|_| AuthError)?;
        Ok(buf)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Fills `buf` from the OS generator. A machine that cannot provide random
/// bytes cannot encrypt safely, so failure is fatal.
pub(crate) fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let k = Key::generate();
        let sealed = k.seal(b"secret message");
        assert_eq!(sealed.len(), 14 + SEAL_OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&sealed).unwrap(), b"secret message");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(k.open(&bad), Err(AuthError), "flip at {i} not detected");
        }
        assert_eq!(Key::generate().open(&sealed), Err(AuthError));
        assert_eq!(k.open(&sealed[..10]), Err(AuthError));
        // Two seals of the same message differ (random nonces).
        assert_ne!(k.seal(b"x"), k.seal(b"x"));
    }
}
