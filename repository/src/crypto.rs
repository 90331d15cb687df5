use std::ops::Range;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes256;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use serde::{Deserialize, Serialize};
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

/// The AEAD a key seals with. Both take a 32-byte key and a random 24-byte
/// nonce and add 40 bytes: `nonce (24) || ciphertext || tag (16)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    /// XChaCha20-Poly1305: format version 1, and always for key files and
    /// the config.
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    /// XAES-256-GCM (C2SP): AES-256-GCM under a per-message key derived
    /// from the nonce's first 12 bytes. About four times XChaCha20-
    /// Poly1305's speed where the CPU has AES instructions.
    #[serde(rename = "xaes-256-gcm")]
    Xaes256Gcm,
}

impl Cipher {
    /// Every cipher, for parsing and listing names.
    pub const ALL: [Cipher; 2] = [Cipher::Xaes256Gcm, Cipher::XChaCha20Poly1305];

    /// XAES-256-GCM where this CPU runs AES and carry-less multiplication
    /// in hardware, XChaCha20-Poly1305 elsewhere (where software AES is the
    /// slower of the two).
    pub fn preferred() -> Cipher {
        #[cfg(target_arch = "x86_64")]
        let hardware =
            std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq");
        #[cfg(target_arch = "aarch64")]
        let hardware = std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull");
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let hardware = false;
        if hardware {
            Cipher::Xaes256Gcm
        } else {
            Cipher::XChaCha20Poly1305
        }
    }

    /// The name used in the config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
            Cipher::Xaes256Gcm => "xaes-256-gcm",
        }
    }
}

/// A 256-bit symmetric key that seals and opens data with its [`Cipher`]
/// and a fresh random 24-byte nonce per message.
///
/// Sealed layout: `nonce (24) || ciphertext || tag (16)`. Random 192-bit
/// nonces never collide in practice, so no nonce state is kept. The key
/// bytes (and the AES key schedule) are zeroized when the key is dropped.
///
/// XChaCha20-Poly1305 is ChaCha20-Poly1305 (RFC 8439) under a per-message
/// subkey: HChaCha20 of the key and the nonce's first 16 bytes, with the
/// nonce's last 8 bytes as the 12-byte nonce (four zero bytes first).
/// XAES-256-GCM (c2sp.org/XAES-256-GCM) is AES-256-GCM under a per-message
/// key derived with AES-256 from the key and the nonce's first 12 bytes,
/// with the nonce's last 12 bytes as the GCM nonce. Either AEAD runs in
/// `ring`'s assembly.
pub struct Key {
    bytes: Zeroizing<[u8; 32]>,
    /// XAES-256-GCM's key-derivation state; `None` for XChaCha20-Poly1305.
    xaes: Option<Xaes>,
}

impl Key {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Key {
        let mut b = Zeroizing::new([0u8; 32]);
        fill_random(&mut b[..]);
        Key::from_bytes(&b)
    }

    /// A key from its 32 bytes, sealing with XChaCha20-Poly1305.
    pub fn from_bytes(b: &[u8; 32]) -> Key {
        Key { bytes: Zeroizing::new(*b), xaes: None }
    }

    /// The same key bytes, sealing with `cipher`.
    pub fn with_cipher(&self, cipher: Cipher) -> Key {
        let xaes = (cipher == Cipher::Xaes256Gcm).then(|| Xaes::new(&self.bytes));
        Key { bytes: self.bytes.clone(), xaes }
    }

    /// The AEAD this key seals and opens with.
    pub fn cipher(&self) -> Cipher {
        if self.xaes.is_some() {
            Cipher::Xaes256Gcm
        } else {
            Cipher::XChaCha20Poly1305
        }
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
        let (aead, n) = self.message_key(&nonce);
        let tag = aead
            .seal_in_place_separate_tag(n, Aad::empty(), &mut out[start..])
            .expect("messages below 256 GiB always encrypt");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens sealed bytes in place: on success the returned slice (inside
    /// `sealed`) is the plaintext. Nothing is copied or allocated.
    pub fn open_in_place<'a>(&self, sealed: &'a mut [u8]) -> Result<&'a mut [u8], AuthError> {
        let (nonce, ct, tag) = split_sealed(sealed)?;
        let ct = &mut sealed[ct];
        self.open_ciphertext(&nonce, ct, tag)?;
        Ok(ct)
    }

    /// Opens sealed bytes, returning the plaintext (one copy: the
    /// ciphertext, decrypted in place).
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        let (nonce, ct, tag) = split_sealed(sealed)?;
        let mut buf = sealed[ct].to_vec();
        self.open_ciphertext(&nonce, &mut buf, tag)?;
        Ok(buf)
    }

    fn open_ciphertext(
        &self,
        nonce: &[u8; NONCE_LEN],
        ct: &mut [u8],
        tag: [u8; TAG_LEN],
    ) -> Result<(), AuthError> {
        let (aead, n) = self.message_key(nonce);
        aead.open_in_place_separate_tag(n, Aad::empty(), Tag::from(tag), ct, 0..).map_err(|_| AuthError)?;
        Ok(())
    }

    /// The AEAD key and nonce of the message sealed under the 24-byte
    /// `nonce` (see the type's docs).
    fn message_key(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        if let Some(x) = &self.xaes {
            let (prefix, suffix) = nonce.split_at(12);
            let kx = x.derive(prefix.try_into().expect("12 bytes"));
            let aead =
                LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kx[..]).expect("32-byte key is valid"));
            return (aead, Nonce::assume_unique_for_key(suffix.try_into().expect("12 bytes")));
        }
        let (prefix, suffix) = nonce.split_at(16);
        let sub = hchacha20(&self.bytes, prefix.try_into().expect("16 bytes"));
        let aead =
            LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &sub[..]).expect("32-byte key is valid"));
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(suffix);
        (aead, Nonce::assume_unique_for_key(n))
    }
}

/// XAES-256-GCM's key derivation (c2sp.org/XAES-256-GCM): the AES-256 key
/// schedule of the key and the CMAC subkey K1 = dbl(AES(key, 0¹²⁸)).
struct Xaes {
    aes: Aes256,
    k1: Zeroizing<[u8; 16]>,
}

impl Xaes {
    fn new(key: &[u8; 32]) -> Xaes {
        let aes = Aes256::new(key.into());
        let mut l = Zeroizing::new([0u8; 16]);
        aes.encrypt_block((&mut *l).into());
        // Doubling in GF(2^128): shift left by one bit, and reduce by
        // x^128 + x^7 + x^2 + x + 1 if the top bit fell off.
        let mut k1 = Zeroizing::new([0u8; 16]);
        for i in 0..16 {
            k1[i] = (l[i] << 1) | l.get(i + 1).map_or(0, |b| b >> 7);
        }
        k1[15] ^= 0x87 * (l[0] >> 7);
        Xaes { aes, k1 }
    }

    /// Kx = AES(key, M1 ⊕ K1) || AES(key, M2 ⊕ K1), with
    /// Mi = 0x00 || i || "X" || 0x00 || the nonce's first 12 bytes.
    fn derive(&self, nonce_prefix: &[u8; 12]) -> Zeroizing<[u8; 32]> {
        let mut kx = Zeroizing::new([0u8; 32]);
        for (i, half) in kx.chunks_exact_mut(16).enumerate() {
            let mut m = Zeroizing::new([0u8; 16]);
            m[1] = i as u8 + 1;
            m[2] = b'X';
            m[4..].copy_from_slice(nonce_prefix);
            for (b, k) in m.iter_mut().zip(self.k1.iter()) {
                *b ^= k;
            }
            self.aes.encrypt_block((&mut *m).into());
            half.copy_from_slice(&m[..]);
        }
        kx
    }
}

/// The parts of sealed bytes: nonce, where the ciphertext is, tag.
type Parts = ([u8; NONCE_LEN], Range<usize>, [u8; TAG_LEN]);

fn split_sealed(sealed: &[u8]) -> Result<Parts, AuthError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(AuthError);
    }
    let ct = NONCE_LEN..sealed.len() - TAG_LEN;
    let nonce = sealed[..NONCE_LEN].try_into().map_err(|_| AuthError)?;
    let tag = sealed[ct.end..].try_into().map_err(|_| AuthError)?;
    Ok((nonce, ct, tag))
}

/// HChaCha20 (draft-irtf-cfrg-xchacha, section 2.2): the ChaCha20 block
/// function without the final addition, keeping state words 0..4 and
/// 12..16. Derives XChaCha20's per-message subkey.
fn hchacha20(key: &[u8; 32], input: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut st = Zeroizing::new([0u32; 16]);
    st[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    for i in 0..8 {
        st[4 + i] = word(&key[4 * i..]);
    }
    for i in 0..4 {
        st[12 + i] = word(&input[4 * i..]);
    }
    let quarter = |s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize| {
        s[a] = s[a].wrapping_add(s[b]);
        s[d] = (s[d] ^ s[a]).rotate_left(16);
        s[c] = s[c].wrapping_add(s[d]);
        s[b] = (s[b] ^ s[c]).rotate_left(12);
        s[a] = s[a].wrapping_add(s[b]);
        s[d] = (s[d] ^ s[a]).rotate_left(8);
        s[c] = s[c].wrapping_add(s[d]);
        s[b] = (s[b] ^ s[c]).rotate_left(7);
    };
    for _ in 0..10 {
        quarter(&mut st, 0, 4, 8, 12);
        quarter(&mut st, 1, 5, 9, 13);
        quarter(&mut st, 2, 6, 10, 14);
        quarter(&mut st, 3, 7, 11, 15);
        quarter(&mut st, 0, 5, 10, 15);
        quarter(&mut st, 1, 6, 11, 12);
        quarter(&mut st, 2, 7, 8, 13);
        quarter(&mut st, 3, 4, 9, 14);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, w) in st[..4].iter().chain(&st[12..]).enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
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
        for cipher in [Cipher::XChaCha20Poly1305, Cipher::Xaes256Gcm] {
            round_trip_and_tamper_detection(&Key::generate().with_cipher(cipher));
        }
        // A message sealed with one cipher does not open with the other.
        let k = Key::generate();
        let other = k.with_cipher(Cipher::Xaes256Gcm);
        assert_eq!(other.open(&k.seal(b"m")), Err(AuthError));
        assert_eq!(k.open(&other.seal(b"m")), Err(AuthError));
    }

    fn round_trip_and_tamper_detection(k: &Key) {
        let sealed = k.seal(b"secret message");
        assert_eq!(sealed.len(), 14 + SEAL_OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&sealed).unwrap(), b"secret message");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(k.open(&bad), Err(AuthError), "flip at {i} not detected");
        }
        assert_eq!(Key::generate().with_cipher(k.cipher()).open(&sealed), Err(AuthError));
        assert_eq!(k.open(&sealed[..10]), Err(AuthError));
        // Two seals of the same message differ (random nonces).
        assert_ne!(k.seal(b"x"), k.seal(b"x"));
        // Long messages, across AES and ChaCha block boundaries.
        let long: Vec<u8> = (0..70_001).map(|i| (i * 13) as u8).collect();
        assert_eq!(k.open(&k.seal(&long)).unwrap(), long);
    }

    /// The vectors of c2sp.org/XAES-256-GCM, with its intermediate values:
    /// the first has the top bit of L clear, the second set (the other
    /// branch of the doubling).
    #[test]
    fn xaes_256_gcm_matches_the_c2sp_vectors() {
        let cases = [
            (
                [1u8; 32],
                "c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b",
                "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            ),
            (
                [3u8; 32],
                "e9c621d4cdd9b11b00a6427ad7e559aeedd66b3857646677748f8ca796cb3fd8",
                "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            ),
        ];
        let nonce = *b"ABCDEFGHIJKLMNOPQRSTUVWX";
        let format_md = include_str!("../../docs/FORMAT.md");
        for (i, (key, kx, sealed)) in cases.into_iter().enumerate() {
            assert!(format_md.contains(kx) && format_md.contains(sealed), "vector {i} is in FORMAT.md 18.8");
            let k = Key::from_bytes(&key).with_cipher(Cipher::Xaes256Gcm);
            let x = k.xaes.as_ref().unwrap();
            assert_eq!(
                crate::hex::encode(&x.derive(nonce[..12].try_into().unwrap())[..]),
                kx,
                "vector {i}: Kx"
            );
            // The second vector has associated data, which arch never
            // uses; it checks the AEAD under the derived key.
            let aad: &[u8] = if i == 0 { b"" } else { b"c2sp.org/XAES-256-GCM" };
            let (aead, n) = k.message_key(&nonce);
            let mut buf = b"XAES-256-GCM".to_vec();
            let tag = aead.seal_in_place_separate_tag(n, Aad::from(aad), &mut buf).unwrap();
            buf.extend_from_slice(tag.as_ref());
            assert_eq!(crate::hex::encode(&buf), sealed, "vector {i}");
            if aad.is_empty() {
                let mut wire = nonce.to_vec();
                wire.extend_from_slice(&buf);
                assert_eq!(k.open(&wire).unwrap(), b"XAES-256-GCM");
            }
        }
    }

    #[test]
    fn hchacha20_matches_the_draft_test_vector() {
        // draft-irtf-cfrg-xchacha-03, section 2.2.1.
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let input = [0, 0, 0, 0x09, 0, 0, 0, 0x4a, 0, 0, 0, 0, 0x31, 0x41, 0x59, 0x27];
        let expected = "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc";
        assert_eq!(crate::hex::encode(&hchacha20(&key, &input)[..]), expected);
    }

    /// The sealed layout is XChaCha20-Poly1305 exactly: an independent
    /// implementation opens what this one seals, and the other way round,
    /// for empty, odd-sized and multi-block messages.
    #[test]
    fn interoperates_with_an_independent_xchacha20_poly1305() {
        use chacha20poly1305::aead::{AeadInOut, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        for len in [0usize, 1, 15, 16, 63, 64, 65, 1000, 4096, 70_001] {
            let k = Key::generate();
            let other = XChaCha20Poly1305::new_from_slice(k.bytes()).unwrap();
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();

            let sealed = k.seal(&msg);
            let (nonce, rest) = sealed.split_at(NONCE_LEN);
            let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
            let mut buf = ct.to_vec();
            let nonce = XNonce::try_from(nonce).unwrap();
            let tag = chacha20poly1305::Tag::try_from(tag).unwrap();
            other.decrypt_inout_detached(&nonce, b"", (&mut buf[..]).into(), &tag).unwrap();
            assert_eq!(buf, msg, "len {len}: ours sealed, theirs opened");

            let mut theirs = msg.clone();
            let tag = other.encrypt_inout_detached(&nonce, b"", (&mut theirs[..]).into()).unwrap();
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&theirs);
            sealed.extend_from_slice(&tag);
            assert_eq!(k.open(&sealed).unwrap(), msg, "len {len}: theirs sealed, ours opened");
        }
    }
}
