//! Digest newtypes: [`Blake3Id`] names content (chunks, packs, artifacts),
//! [`Sha256Digest`] is the artifact digest standard forensic tools check and
//! the hash of the RFC 6962 log (FORMAT.md §3 (hashes)).
//!
//! Both display and serialise as lowercase hex. Parsing rejects anything but
//! exactly 64 lowercase hex digits, so one digest has one encoding.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a hex digest did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 lowercase hex digits, got {0:?}")]
pub struct DigestParseError(pub String);

fn parse_hex32(s: &str) -> Result<[u8; 32], DigestParseError> {
    let ok = s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        let shown: String = s.chars().take(80).collect();
        return Err(DigestParseError(shown));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| DigestParseError(s.to_owned()))?;
    Ok(out)
}

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Parses 64 lowercase hex digits.
            ///
            /// # Errors
            /// Anything else: other lengths, upper case, non-hex characters.
            pub fn parse(s: &str) -> Result<Self, DigestParseError> {
                parse_hex32(s).map(Self)
            }

            /// The full lowercase hex form.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, for messages and progress lines.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // On the stack: a segment holds several digests per entry.
                let mut hex = [0u8; 64];
                hex::encode_to_slice(self.0, &mut hex).map_err(serde::ser::Error::custom)?;
                s.serialize_str(std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_type!(
    /// BLAKE3-256 of some bytes: the name of a chunk (of its plaintext), of a
    /// pack (of its stored bytes), and an artifact's content digest.
    Blake3Id
);
digest_type!(
    /// SHA-256 of some bytes: an artifact's second digest, a log leaf or root
    /// hash, and the vault id.
    Sha256Digest
);

impl Blake3Id {
    /// BLAKE3 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

impl Sha256Digest {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(data).into())
    }
}

impl From<blake3::Hash> for Blake3Id {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        // b3sum and sha256sum of the empty input.
        assert_eq!(
            Blake3Id::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            Sha256Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn rejects_non_canonical_hex() {
        let upper = "AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262";
        assert!(Blake3Id::parse(upper).is_err());
        assert!(Blake3Id::parse("af13").is_err());
        assert!(Blake3Id::parse(&"g".repeat(64)).is_err());
        assert!(serde_json::from_str::<Blake3Id>("\"00\"").is_err());
    }

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let id = Blake3Id(bytes);
            prop_assert_eq!(Blake3Id::parse(&id.to_hex()).unwrap(), id);
            let json = serde_json::to_string(&Sha256Digest(bytes)).unwrap();
            prop_assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), Sha256Digest(bytes));
        }
    }
}
