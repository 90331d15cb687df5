use std::fmt;

/// A 32-byte blake3 digest naming a blob, a pack or a stored file.
///
/// Ordering is bytewise, so sorted lists of ids are canonical.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

/// The id of a blob: blake3 of its plaintext.
pub type BlobId = Id;
/// The id of a pack file: blake3 of its stored bytes.
pub type PackId = Id;

impl Id {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// blake3 of `data`.
    pub fn hash(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[(b >> 4) as usize]));
            s.push(char::from(HEX[(b & 15) as usize]));
        }
        s
    }

    /// The first 8 hex characters, as shown to people.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }

    /// Parses exactly 64 hex characters (either case); `None` otherwise.
    pub fn from_hex(s: &str) -> Option<Id> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
        }
        Some(Id(out))
    }

    /// Reads an id from the first 32 bytes of `b`; `None` if `b` is shorter.
    pub fn from_slice(b: &[u8]) -> Option<Id> {
        let arr: [u8; 32] = b.get(..32)?.try_into().ok()?;
        Some(Id(arr))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Ids are uniformly random, so hashing their first 8 bytes is enough and
/// lets id-keyed maps use a trivial hasher.
impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// Hex in human-readable formats (JSON), 32 raw bytes in binary ones (CBOR).
impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-byte id as 64 hex characters or 32 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                Id::from_hex(v).ok_or_else(|| E::custom("invalid hex id"))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Id, E> {
                match <[u8; 32]>::try_from(v) {
                    Ok(a) => Ok(Id(a)),
                    Err(_) => Err(E::invalid_length(v.len(), &self)),
                }
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::hash(b"abc");
        assert_eq!(Id::from_hex(&id.to_hex()), Some(id));
        assert_eq!(Id::from_hex(&id.to_hex().to_uppercase()), Some(id));
        assert_eq!(Id::from_hex("00"), None);
        assert_eq!(Id::from_hex(&"g".repeat(64)), None);
        // blake3("abc") test vector from the blake3 specification.
        assert_eq!(id.to_hex(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
    }
}
