//! DSSE envelopes (FORMAT.md §7 (segment envelope)): the signed wrapper of every
//! segment. Pure: no I/O.
//!
//! Signatures cover PAE(payloadType, payload) over the exact payload bytes, so
//! verification never re-serialises anything. [`open`] verifies first and only
//! then hands out the payload for parsing. Spec: DSSE v1.0, "Protocol".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, Keyring, VaultSigner};

/// Why an envelope could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    /// Not the JSON shape of a DSSE envelope (or trailing bytes, duplicate or
    /// unknown fields).
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    /// The payload type is not the one expected here.
    #[error("payload type {found:?}, expected {expected:?}")]
    PayloadType {
        /// What the envelope says.
        found: String,
        /// What the caller expects.
        expected: &'static str,
    },
    /// No signature is by a key in the keyring.
    #[error("signed only by unknown keys: {0}")]
    UnknownKey(String),
    /// A signature by a known key does not verify over the envelope's bytes.
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The signer's [`KeyId`] in hex.
    pub keyid: String,
    /// Base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// A DSSE envelope as stored (field order is the order written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// What the payload is; distinct per kind so a signature can never be
    /// replayed as another kind.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// One or more signatures over PAE(payloadType, payload).
    pub signatures: Vec<Signature>,
}

/// The DSSE pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = pae_head(payload_type, payload.len());
    out.extend_from_slice(payload);
    out
}

/// PAE up to the body: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP`.
fn pae_head(payload_type: &str, body_len: usize) -> Vec<u8> {
    format!("DSSEv1 {} {payload_type} {body_len} ", payload_type.len()).into_bytes()
}

/// Signs `payload` and returns the envelope's stored bytes (compact JSON).
///
/// The bytes are those `serde_json` writes for an [`Envelope`] (a test
/// holds them to it), but the payload's base64, most of them, is put in
/// place as it is encoded: it never needs escaping, and a segment's is
/// megabytes long.
pub fn sign(payload_type: &str, payload: &[u8], signers: &[&VaultSigner]) -> Vec<u8> {
    // PAE's head and the payload, signed as one message without joining
    // them (the payload is most of a segment's memory while it is sealed).
    let head = pae_head(payload_type, payload.len());
    let signatures: Vec<Signature> = signers
        .iter()
        .map(|s| Signature {
            keyid: s.key_id().to_string(),
            sig: B64.encode(s.sign_parts(&[&head, payload])),
        })
        .collect();
    // Room for all of it: the base64, the type escaped at worst, and each
    // signature object (a keyid and a signature, about 170 bytes).
    let room = payload.len().div_ceil(3) * 4 + 64 + 6 * payload_type.len() + 256 * signers.len();
    let mut b64 = String::with_capacity(room);
    b64.push_str("{\"payload\":\"");
    B64.encode_string(payload, &mut b64);
    let mut out = b64.into_bytes();
    out.extend_from_slice(b"\",\"payloadType\":");
    serde_json::to_writer(&mut out, payload_type).expect("a string always serialises");
    out.extend_from_slice(b",\"signatures\":");
    serde_json::to_writer(&mut out, &signatures).expect("signatures always serialise");
    out.push(b'}');
    out
}

/// A verified envelope: the payload and the keys whose signatures held.
#[derive(Debug)]
pub struct Opened {
    /// The payload bytes, exactly as signed.
    pub payload: Vec<u8>,
    /// The known keys that signed it (at least one).
    pub signed_by: Vec<KeyId>,
}

/// Parses an envelope strictly and decodes its payload, checking the type.
fn parse(bytes: &[u8], expected_type: &'static str) -> Result<(Envelope, Vec<u8>), DsseError> {
    if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
        return Err(DsseError::Malformed(
            "leading or trailing bytes around the JSON object".into(),
        ));
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| DsseError::Malformed(e.to_string()))?;
    if env.payload_type != expected_type {
        return Err(DsseError::PayloadType {
            found: env.payload_type,
            expected: expected_type,
        });
    }
    let payload = B64
        .decode(&env.payload)
        .map_err(|e| DsseError::Malformed(format!("payload is not base64: {e}")))?;
    Ok((env, payload))
}

/// The payload of an envelope whose signatures are NOT checked: only for
/// finding, inside a self-anchoring document, the proof of which key must
/// have signed it. Anything else must go through [`open`].
///
/// # Errors
/// A malformed envelope or another payload type.
pub fn payload_unverified(bytes: &[u8], expected_type: &'static str) -> Result<Vec<u8>, DsseError> {
    parse(bytes, expected_type).map(|(_, p)| p)
}

/// Parses the envelope in `bytes`, checks its type, and verifies its
/// signatures against `keyring`; only then returns the payload.
///
/// Every signature by a known key must verify; signatures by unknown keys
/// are an error when no known key signed at all.
///
/// # Errors
/// See [`DsseError`].
pub fn open(
    bytes: &[u8],
    expected_type: &'static str,
    keyring: &Keyring,
) -> Result<Opened, DsseError> {
    let (env, payload) = parse(bytes, expected_type)?;
    if env.signatures.is_empty() {
        return Err(DsseError::Malformed("no signatures".into()));
    }
    let msg = pae(&env.payload_type, &payload);
    let mut signed_by = Vec::new();
    let mut unknown = Vec::new();
    for s in &env.signatures {
        let Some((id, key)) = keyring.find(&s.keyid) else {
            unknown.push(s.keyid.clone());
            continue;
        };
        let sig = B64
            .decode(&s.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok());
        let ok = sig.is_some_and(|sig| {
            key.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok()
        });
        if !ok {
            return Err(DsseError::BadSignature(s.keyid.clone()));
        }
        if !signed_by.contains(&id) {
            signed_by.push(id);
        }
    }
    if signed_by.is_empty() {
        return Err(DsseError::UnknownKey(unknown.join(", ")));
    }
    Ok(Opened { payload, signed_by })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = "application/vnd.custody.test+json";

    #[test]
    fn pae_matches_the_spec_example() {
        // DSSE protocol.md test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn envelopes_are_written_as_serde_writes_them() {
        let signers = [
            VaultSigner::from_seed("test", [7; 32]),
            VaultSigner::from_seed("test", [8; 32]),
        ];
        for (payload_type, payload) in [
            (T, &b""[..]),
            (T, b"{\"a\":1}"),
            ("a \"quoted\"\ttype\u{e9}", b"\x00\xff\n\"\\ any bytes"),
        ] {
            for n in 1..=2 {
                let signers: Vec<_> = signers[..n].iter().collect();
                let bytes = sign(payload_type, payload, &signers);
                let msg = pae(payload_type, payload);
                let expected = Envelope {
                    payload: B64.encode(payload),
                    payload_type: payload_type.to_owned(),
                    signatures: signers
                        .iter()
                        .map(|s| Signature {
                            keyid: s.key_id().to_string(),
                            sig: B64.encode(s.sign(&msg)),
                        })
                        .collect(),
                };
                assert_eq!(bytes, serde_json::to_vec(&expected).unwrap());
            }
        }
    }

    #[test]
    fn open_rejects_tampering() {
        let signer = VaultSigner::from_seed("test", [7; 32]);
        let other = VaultSigner::from_seed("test", [8; 32]);
        let ring = Keyring::new(vec![signer.public()]);
        let bytes = sign(T, b"{\"a\":1}", &[&signer]);
        assert_eq!(open(&bytes, T, &ring).unwrap().payload, b"{\"a\":1}");

        let mut env: Envelope = serde_json::from_slice(&bytes).unwrap();
        env.payload = B64.encode(b"{\"a\":2}");
        let forged = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            open(&forged, T, &ring),
            Err(DsseError::BadSignature(_))
        ));

        let by_other = sign(T, b"{}", &[&other]);
        assert!(matches!(
            open(&by_other, T, &ring),
            Err(DsseError::UnknownKey(_))
        ));

        assert!(matches!(
            open(&bytes, "application/other", &ring),
            Err(DsseError::PayloadType { .. })
        ));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b" {}");
        assert!(matches!(
            open(&trailing, T, &ring),
            Err(DsseError::Malformed(_))
        ));
        let dup = br#"{"payload":"e30=","payload":"e30=","payloadType":"x","signatures":[]}"#;
        assert!(matches!(open(dup, T, &ring), Err(DsseError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn open_never_panics_on_junk(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let ring = Keyring::new(vec![VaultSigner::from_seed("t", [1; 32]).public()]);
            let _ = open(&bytes, T, &ring);
            let mut framed = b"{\"payload\":\"".to_vec();
            framed.extend_from_slice(&bytes);
            framed.extend_from_slice(b"\"}");
            let _ = open(&framed, T, &ring);
        }

        #[test]
        fn sign_open_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let signer = VaultSigner::from_seed("test", [1; 32]);
            let ring = Keyring::new(vec![signer.public()]);
            let bytes = sign(T, &payload, &[&signer]);
            let opened = open(&bytes, T, &ring).unwrap();
            prop_assert_eq!(opened.payload, payload);
            prop_assert_eq!(opened.signed_by, vec![signer.key_id()]);
        }
    }
}
