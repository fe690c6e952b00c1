//! Key material as evidence (FORMAT.md §9.12): what a `keys` source finds in
//! one file, described without keeping a private key.
//!
//! [`analyze`] reads a file's bytes as a JWKS or JWK (RFC 7517), PEM blocks
//! (certificates, SPKI and PKCS#1 public keys, PKCS#1, PKCS#8 and SEC1
//! private keys, encrypted keys, OpenSSH private keys), a single DER object,
//! or OpenSSH public key lines, and returns one [`KeyRecord`] per key: its
//! type, size or curve, JWK members, RFC 7638 thumbprint, SHA-256 of its
//! SubjectPublicKeyInfo, OpenSSH fingerprint, certificate fields, and for a
//! private key a [`commitment`] instead of the key. Parsing is done by
//! RustCrypto's `der`, `spki`, `pkcs1`, `pkcs8`, `sec1`, `x509-cert` and
//! `ssh-key`; nothing here decodes ASN.1 by hand.
//!
//! Every input is untrusted: malformed files (truncated PEM, bad base64,
//! DER lengths beyond the data) become notes, never panics, and the input is
//! bounded by [`MAX_KEY_FILE`] before it gets here. Whatever cannot be shown
//! to be public only is treated as secret: a PEM block whose label says
//! `PRIVATE` counts as a private key even when it does not parse.
//!
//! Not here: reading files (`sources`), findings over a snapshot (`keyfind`).

use base64::Engine as _;
use der::{Decode as _, Encode as _};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::hash::Sha256Digest;
use crate::time::Time;

/// Files larger than this are not parsed as key material.
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// Key records kept per file; the rest is noted, and the file is `mixed`.
const MAX_RECORDS: usize = 1000;
/// Notes kept per file.
const MAX_NOTES: usize = 100;

/// Prefix of every key commitment (§9.12).
const COMMITMENT_DOMAIN: &[u8] = b"custody key commitment v1\0";

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_X25519: &str = "1.3.101.110";
const OID_ED448: &str = "1.3.101.113";
const OID_X448: &str = "1.3.101.111";

/// What a key file holds, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// Public keys and certificates only, every byte accounted for.
    Public,
    /// At least one private or secret key in clear.
    Private,
    /// Encrypted private keys (and maybe public ones), none in clear.
    Encrypted,
    /// Public keys beside content that is not understood.
    Mixed,
    /// No key material recognised.
    NotKeyMaterial,
}

impl Form {
    /// The name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Encrypted => "encrypted",
            Self::Mixed => "mixed",
            Self::NotKeyMaterial => "not_key_material",
        }
    }
}

/// Which part of a key a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// A public key or a certificate.
    Public,
    /// An asymmetric private key, in clear.
    Private,
    /// A private key encrypted under a passphrase.
    Encrypted,
    /// A symmetric secret key (JWK `oct`).
    Secret,
}

impl Part {
    /// Whether the file held this key's secret in clear.
    pub fn is_secret(self) -> bool {
        matches!(self, Self::Private | Self::Secret)
    }
}

/// Certificate fields of a key that came from an X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertInfo {
    /// Subject, RFC 4514 string.
    pub subject: String,
    /// Issuer, RFC 4514 string.
    pub issuer: String,
    /// Serial number, lowercase hex of its DER content bytes.
    pub serial: String,
    /// Start of validity.
    pub not_before: Time,
    /// End of validity.
    pub not_after: Time,
    /// Position among the certificates of the file, from 0.
    pub chain_index: u32,
    /// Whether subject and issuer are the same name.
    pub self_signed: bool,
}

/// One key found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Position in the file, from 0.
    pub index: u32,
    /// How it was stored: `jwks`, `jwk`, `pem LABEL`, `der`,
    /// `openssh`, `openssh-public`.
    pub container: String,
    /// Which part of the key the file held.
    pub part: Part,
    /// `rsa`, `ec`, `ed25519`, `x25519`, `ed448`, `x448`, `oct`, an OpenSSH
    /// algorithm name, an OID, or `unknown`.
    pub algorithm: String,
    /// RSA modulus bits, or the length of a secret key in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// EC or EdDSA curve (`P-256`, `P-384`, `P-521`, `secp256k1`, `Ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
    /// JWK `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// JWK `use`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// JWK `alg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// OpenSSH comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// RFC 7638 JWK thumbprint (SHA-256, base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk_thumbprint: Option<String>,
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spki_sha256: Option<Sha256Digest>,
    /// OpenSSH `SHA256:` fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_fingerprint: Option<String>,
    /// For a private or secret key: its commitment (§9.12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<Sha256Digest>,
    /// For a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertInfo>,
    /// What could not be read of this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl KeyRecord {
    fn new(index: usize, container: impl Into<String>, part: Part) -> Self {
        Self {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            container: container.into(),
            part,
            algorithm: "unknown".into(),
            bits: None,
            curve: None,
            kid: None,
            key_use: None,
            alg: None,
            comment: None,
            jwk_thumbprint: None,
            spki_sha256: None,
            ssh_fingerprint: None,
            commitment: None,
            certificate: None,
            problem: None,
        }
    }

    /// The identity used to match the same key across files and snapshots:
    /// the SPKI fingerprint, else the commitment, else the OpenSSH
    /// fingerprint.
    pub fn identity(&self) -> Option<String> {
        self.spki_sha256
            .map(|d| format!("spki:{}", d.to_hex()))
            .or_else(|| self.commitment.map(|d| format!("commit:{}", d.to_hex())))
            .or_else(|| self.ssh_fingerprint.clone())
    }

    /// A short human label: type and size, and the kid or comment.
    pub fn label(&self) -> String {
        let mut s = self.algorithm.clone();
        if let Some(b) = self.bits {
            s.push_str(&format!("-{b}"));
        }
        if let Some(c) = &self.curve {
            if c != &self.algorithm {
                s.push_str(&format!(" {c}"));
            }
        }
        if let Some(k) = &self.kid {
            s.push_str(&format!(" kid={k}"));
        }
        if let Some(c) = self.comment.as_deref().filter(|c| !c.is_empty()) {
            s.push_str(&format!(" \"{c}\""));
        }
        s
    }

    fn set_public(&mut self, key: &PublicKey) {
        match key {
            PublicKey::Rsa { n, .. } => {
                self.algorithm = "rsa".into();
                self.bits = Some(bit_length(n));
            }
            PublicKey::Ec { curve, point } => {
                self.algorithm = "ec".into();
                self.curve = Some(curve.name().into());
                let on_curve = match curve {
                    Curve::P256 => Some(p256::PublicKey::from_sec1_bytes(point).is_ok()),
                    Curve::P384 => Some(p384::PublicKey::from_sec1_bytes(point).is_ok()),
                    Curve::P521 | Curve::Secp256k1 => None,
                };
                if on_curve == Some(false) {
                    self.fail("the EC point is not on its curve");
                }
            }
            PublicKey::Ed25519(_) => {
                self.algorithm = "ed25519".into();
                self.curve = Some("Ed25519".into());
            }
            PublicKey::Other { algorithm, .. } => algorithm.clone_into(&mut self.algorithm),
        }
        self.jwk_thumbprint = key.jwk_thumbprint();
        self.spki_sha256 = key.spki_der().map(|d| Sha256Digest::of(&d));
    }

    fn set_secret(&mut self, secret: &Secret) {
        self.commitment = Some(commitment(secret.algorithm(), secret.bytes()));
    }

    /// Whether a public record was read whole: RSA, EC P-256 or P-384, or
    /// Ed25519, with no problem.
    fn understood(&self) -> bool {
        self.problem.is_none()
            && self.spki_sha256.is_some()
            && match self.algorithm.as_str() {
                "rsa" | "ed25519" => true,
                "ec" => matches!(self.curve.as_deref(), Some("P-256" | "P-384")),
                _ => false,
            }
    }

    fn fail(&mut self, what: impl std::fmt::Display) {
        self.problem = Some(what.to_string());
    }
}

/// The outcome of [`analyze`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The file as a whole.
    pub form: Form,
    /// The keys found, in file order.
    pub keys: Vec<KeyRecord>,
    /// What was not understood, in file order.
    pub notes: Vec<String>,
}

/// The commitment to a private key (§9.12): SHA-256 over
/// `"custody key commitment v1\0" || algorithm || "\0" || secret`, where the
/// secret is the key's canonical secret bytes: the smaller RSA prime, the EC
/// scalar at the curve's width, the Ed25519 seed, the raw secret of other
/// algorithms. Anyone holding a copy of the key can compute it (`custody keys
/// inspect FILE`) and compare; it reveals nothing of the key.
pub fn commitment(algorithm: &str, secret: &[u8]) -> Sha256Digest {
    let mut h = sha2::Sha256::new();
    h.update(COMMITMENT_DOMAIN);
    h.update(algorithm.as_bytes());
    h.update([0u8]);
    h.update(secret);
    Sha256Digest(h.finalize().into())
}

/// Parses an age X25519 recipient (`age1...`).
///
/// # Errors
/// What is wrong with it.
pub fn parse_recipient(r: &str) -> Result<age::x25519::Recipient, String> {
    r.parse::<age::x25519::Recipient>().map_err(|e| {
        format!("seal-to recipient {r:?} is not an age X25519 recipient (age1...): {e}")
    })
}

/// Encrypts `plain` with age to `recipients` (binary age format).
///
/// # Errors
/// A recipient that does not parse, or an encryption failure.
pub fn seal(plain: &[u8], recipients: &[String]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let parsed = recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<Vec<_>, _>>()?;
    let enc = age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| format!("age: {e}"))?;
    let mut out = Vec::with_capacity(plain.len() + 512);
    let mut w = enc.wrap_output(&mut out).map_err(|e| format!("age: {e}"))?;
    w.write_all(plain).map_err(|e| format!("age: {e}"))?;
    w.finish().map_err(|e| format!("age: {e}"))?;
    Ok(out)
}

/// Reads `bytes` as key material. Never panics; whatever is not understood
/// is a note.
pub fn analyze(bytes: &[u8]) -> Analysis {
    let mut out = Found::default();
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        read_json(trimmed, &mut out);
    } else if contains(bytes, b"-----BEGIN ") {
        read_pem(bytes, &mut out);
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        if text.trim().is_empty() {
            out.unknown("empty file".into());
        } else if !read_openssh_lines(text, &mut out) {
            out.unknown("text that is not key material".into());
        }
    } else {
        read_der(bytes, "der", &mut out);
    }
    out.finish()
}

#[derive(Default)]
struct Found {
    keys: Vec<KeyRecord>,
    notes: Vec<String>,
    unrecognized: bool,
    truncated: bool,
    certificates: u32,
}

impl Found {
    fn unknown(&mut self, note: String) {
        self.unrecognized = true;
        match self.notes.len() {
            n if n < MAX_NOTES => self.notes.push(note),
            MAX_NOTES => self
                .notes
                .push("more that is not understood: notes stop here".into()),
            _ => {}
        }
    }

    fn push(&mut self, r: KeyRecord) {
        if self.keys.len() < MAX_RECORDS {
            self.keys.push(r);
        } else if !self.truncated {
            self.truncated = true;
            self.unknown(format!("more than {MAX_RECORDS} keys: records stop here"));
        }
    }

    fn next(&self) -> usize {
        self.keys.len()
    }

    fn finish(mut self) -> Analysis {
        // A public key counts as understood only when every byte of it was:
        // a known algorithm, parsed without a problem, a point on its curve.
        if self
            .keys
            .iter()
            .any(|k| k.part == Part::Public && !k.understood())
        {
            self.unrecognized = true;
        }
        let any = |p: fn(Part) -> bool| self.keys.iter().any(|k| p(k.part));
        let form = if any(Part::is_secret) {
            Form::Private
        } else if any(|p| p == Part::Encrypted) {
            Form::Encrypted
        } else if self.keys.is_empty() {
            Form::NotKeyMaterial
        } else if self.unrecognized {
            Form::Mixed
        } else {
            Form::Public
        };
        Analysis {
            form,
            keys: self.keys,
            notes: self.notes,
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------------------ keys

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
    Secp256k1,
}

impl Curve {
    fn from_oid(oid: &str) -> Option<Self> {
        Some(match oid {
            "1.2.840.10045.3.1.7" => Self::P256,
            "1.3.132.0.34" => Self::P384,
            "1.3.132.0.35" => Self::P521,
            "1.3.132.0.10" => Self::Secp256k1,
            _ => return None,
        })
    }

    fn from_jwk(crv: &str) -> Option<Self> {
        Some(match crv {
            "P-256" => Self::P256,
            "P-384" => Self::P384,
            "P-521" => Self::P521,
            "secp256k1" => Self::Secp256k1,
            _ => return None,
        })
    }

    fn oid(self) -> &'static str {
        match self {
            Self::P256 => "1.2.840.10045.3.1.7",
            Self::P384 => "1.3.132.0.34",
            Self::P521 => "1.3.132.0.35",
            Self::Secp256k1 => "1.3.132.0.10",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::Secp256k1 => "secp256k1",
        }
    }

    /// Bytes of a field element or scalar.
    fn width(self) -> usize {
        match self {
            Self::P256 | Self::Secp256k1 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

/// A public key in the forms the fingerprints need.
#[derive(Debug, Clone)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 point encoding, as found.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519([u8; 32]),
    Other {
        algorithm: String,
        spki: Option<Vec<u8>>,
    },
}

impl PublicKey {
    /// The SubjectPublicKeyInfo DER, rebuilt the same way whatever the
    /// container, so that one key has one fingerprint.
    fn spki_der(&self) -> Option<Vec<u8>> {
        use der::asn1::{AnyRef, BitString, ObjectIdentifier, UintRef};
        use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
        let oid = |s: &str| ObjectIdentifier::new(s).ok();
        let (algorithm, key) = match self {
            Self::Rsa { n, e } => {
                let inner = pkcs1::RsaPublicKey {
                    modulus: UintRef::new(n).ok()?,
                    public_exponent: UintRef::new(e).ok()?,
                }
                .to_der()
                .ok()?;
                let null = der::Any::from(AnyRef::NULL);
                let alg = AlgorithmIdentifierOwned {
                    oid: oid(OID_RSA)?,
                    parameters: Some(null),
                };
                (alg, inner)
            }
            Self::Ec { curve, point } => {
                let params = der::Any::encode_from(&oid(curve.oid())?).ok()?;
                let alg = AlgorithmIdentifierOwned {
                    oid: oid(OID_EC)?,
                    parameters: Some(params),
                };
                (alg, point.clone())
            }
            Self::Ed25519(k) => {
                let alg = AlgorithmIdentifierOwned {
                    oid: oid(OID_ED25519)?,
                    parameters: None,
                };
                (alg, k.to_vec())
            }
            Self::Other { spki, .. } => return spki.clone(),
        };
        SubjectPublicKeyInfoOwned {
            algorithm,
            subject_public_key: BitString::from_bytes(&key).ok()?,
        }
        .to_der()
        .ok()
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order,
    /// no whitespace, base64url without padding.
    fn jwk_thumbprint(&self) -> Option<String> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let json = match self {
            Self::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64(strip_zeros(e)),
                b64(strip_zeros(n))
            ),
            Self::Ec { curve, point } => {
                let w = curve.width();
                // Uncompressed points only: 0x04 || x || y.
                if point.len() != 1 + 2 * w || point[0] != 4 {
                    return None;
                }
                format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    curve.name(),
                    b64(&point[1..=w]),
                    b64(&point[1 + w..])
                )
            }
            Self::Ed25519(k) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(k)),
            Self::Other { .. } => return None,
        };
        Some(b64(&sha2::Sha256::digest(json.as_bytes())))
    }
}

/// A private key's canonical secret (see [`commitment`]).
enum Secret {
    Rsa(Zeroizing<Vec<u8>>),
    Ec(Zeroizing<Vec<u8>>),
    Ed25519(Zeroizing<[u8; 32]>),
    Raw(String, Zeroizing<Vec<u8>>),
}

impl Secret {
    fn algorithm(&self) -> &str {
        match self {
            Self::Rsa(_) => "rsa",
            Self::Ec(_) => "ec",
            Self::Ed25519(_) => "ed25519",
            Self::Raw(a, _) => a,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Rsa(b) | Self::Ec(b) | Self::Raw(_, b) => b,
            Self::Ed25519(b) => &b[..],
        }
    }

    /// The smaller of the two primes, without leading zeros.
    fn rsa(p: &[u8], q: &[u8]) -> Self {
        let (p, q) = (strip_zeros(p), strip_zeros(q));
        let smaller = if (p.len(), p) <= (q.len(), q) { p } else { q };
        Self::Rsa(Zeroizing::new(smaller.to_vec()))
    }

    /// The scalar, left-padded to the curve's width.
    fn ec(curve: Curve, scalar: &[u8]) -> Option<Self> {
        let s = strip_zeros(scalar);
        let w = curve.width();
        if s.len() > w {
            return None;
        }
        let mut v = Zeroizing::new(vec![0u8; w]);
        v[w - s.len()..].copy_from_slice(s);
        Some(Self::Ec(v))
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

fn bit_length(n: &[u8]) -> u32 {
    let n = strip_zeros(n);
    match n.first() {
        None => 0,
        Some(&top) => u32::try_from(n.len() * 8).unwrap_or(u32::MAX) - top.leading_zeros(),
    }
}

/// The public point of an EC scalar, for the curves RustCrypto implements.
fn ec_public(curve: Curve, scalar: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    match curve {
        Curve::P256 => {
            let k = p256::SecretKey::from_slice(scalar).ok()?;
            Some(k.public_key().to_encoded_point(false).as_bytes().to_vec())
        }
        Curve::P384 => {
            let k = p384::SecretKey::from_slice(scalar).ok()?;
            Some(k.public_key().to_encoded_point(false).as_bytes().to_vec())
        }
        Curve::P521 | Curve::Secp256k1 => None,
    }
}

fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

// ------------------------------------------------------------------ DER

/// A SubjectPublicKeyInfo's key.
fn spki_public(spki: &spki::SubjectPublicKeyInfoRef<'_>) -> Result<PublicKey, String> {
    let oid = spki.algorithm.oid.to_string();
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the key's BIT STRING has unused bits")?;
    Ok(match oid.as_str() {
        OID_RSA => {
            let k =
                pkcs1::RsaPublicKey::from_der(bits).map_err(|e| format!("RSA public key: {e}"))?;
            PublicKey::Rsa {
                n: k.modulus.as_bytes().to_vec(),
                e: k.public_exponent.as_bytes().to_vec(),
            }
        }
        OID_EC => {
            let params = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or("EC key without curve parameters")?;
            let curve_oid = params
                .decode_as::<der::asn1::ObjectIdentifier>()
                .map_err(|e| format!("EC curve: {e}"))?;
            match Curve::from_oid(&curve_oid.to_string()) {
                Some(curve) => PublicKey::Ec {
                    curve,
                    point: bits.to_vec(),
                },
                None => PublicKey::Other {
                    algorithm: format!("ec {curve_oid}"),
                    spki: spki.to_der().ok(),
                },
            }
        }
        OID_ED25519 => PublicKey::Ed25519(
            bits.try_into()
                .map_err(|_| format!("Ed25519 key of {} bytes", bits.len()))?,
        ),
        other => PublicKey::Other {
            algorithm: algorithm_name(other),
            spki: spki.to_der().ok(),
        },
    })
}

fn algorithm_name(oid: &str) -> String {
    match oid {
        OID_RSA => "rsa".into(),
        OID_EC => "ec".into(),
        OID_ED25519 => "ed25519".into(),
        OID_X25519 => "x25519".into(),
        OID_ED448 => "ed448".into(),
        OID_X448 => "x448".into(),
        "1.2.840.10040.4.1" => "dsa".into(),
        other => other.into(),
    }
}

fn read_certificate(der: &[u8], container: &str, out: &mut Found) -> Result<(), String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let mut r = KeyRecord::new(out.next(), container, Part::Public);
    let spki_der = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("certificate key: {e}"))?;
    match spki::SubjectPublicKeyInfoRef::from_der(&spki_der)
        .map_err(|e| e.to_string())
        .and_then(|s| spki_public(&s))
    {
        Ok(k) => r.set_public(&k),
        Err(e) => r.fail(e),
    }
    let time = |t: x509_cert::time::Time| {
        let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
        Time::from_unix(secs)
    };
    r.certificate = Some(CertInfo {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial: hex::encode(tbs.serial_number.as_bytes()),
        not_before: time(tbs.validity.not_before),
        not_after: time(tbs.validity.not_after),
        chain_index: out.certificates,
        self_signed: tbs.subject == tbs.issuer,
    });
    out.certificates += 1;
    out.push(r);
    Ok(())
}

fn read_spki(der: &[u8], container: &str, out: &mut Found) -> Result<(), String> {
    let spki =
        spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("public key: {e}"))?;
    let mut r = KeyRecord::new(out.next(), container, Part::Public);
    match spki_public(&spki) {
        Ok(k) => r.set_public(&k),
        Err(e) => r.fail(e),
    }
    out.push(r);
    Ok(())
}

fn read_pkcs1_public(der: &[u8], container: &str, out: &mut Found) -> Result<(), String> {
    let k = pkcs1::RsaPublicKey::from_der(der).map_err(|e| format!("RSA public key: {e}"))?;
    let mut r = KeyRecord::new(out.next(), container, Part::Public);
    r.set_public(&PublicKey::Rsa {
        n: k.modulus.as_bytes().to_vec(),
        e: k.public_exponent.as_bytes().to_vec(),
    });
    out.push(r);
    Ok(())
}

/// A PKCS#1 RSA private key into `r`.
fn fill_pkcs1_private(der: &[u8], r: &mut KeyRecord) -> Result<(), String> {
    let k = pkcs1::RsaPrivateKey::from_der(der).map_err(|e| format!("RSA private key: {e}"))?;
    r.set_public(&PublicKey::Rsa {
        n: k.modulus.as_bytes().to_vec(),
        e: k.public_exponent.as_bytes().to_vec(),
    });
    r.set_secret(&Secret::rsa(k.prime1.as_bytes(), k.prime2.as_bytes()));
    Ok(())
}

/// A SEC1 EC private key into `r`; `curve` from the PKCS#8 wrapper if any.
fn fill_sec1(der: &[u8], curve: Option<Curve>, r: &mut KeyRecord) -> Result<(), String> {
    let k = sec1::EcPrivateKey::from_der(der).map_err(|e| format!("EC private key: {e}"))?;
    r.algorithm = "ec".into();
    let named = k
        .parameters
        .and_then(|p| p.named_curve())
        .map(|o| o.to_string());
    let curve = match (curve, named.as_deref().map(Curve::from_oid)) {
        (Some(c), _) | (None, Some(Some(c))) => c,
        (None, Some(None)) => {
            r.algorithm = format!("ec {}", named.unwrap_or_default());
            return Err("EC private key on a curve custody does not know".into());
        }
        (None, None) => return Err("EC private key without a named curve".into()),
    };
    r.curve = Some(curve.name().into());
    let secret =
        Secret::ec(curve, k.private_key).ok_or("EC private scalar too long for its curve")?;
    let point = match k.public_key {
        Some(p) => Some(p.to_vec()),
        None => ec_public(curve, secret.bytes()),
    };
    match point {
        Some(point) => r.set_public(&PublicKey::Ec { curve, point }),
        None => r.fail("public point absent and not derivable for this curve"),
    }
    r.set_secret(&secret);
    Ok(())
}

/// A PKCS#8 PrivateKeyInfo into `r`.
fn fill_pkcs8(der: &[u8], r: &mut KeyRecord) -> Result<(), String> {
    let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| format!("PKCS#8 key: {e}"))?;
    let oid = info.algorithm.oid.to_string();
    r.algorithm = algorithm_name(&oid);
    match oid.as_str() {
        OID_RSA => fill_pkcs1_private(info.private_key, r),
        OID_EC => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                .and_then(|o| Curve::from_oid(&o.to_string()));
            fill_sec1(info.private_key, curve, r)
        }
        OID_ED25519 => {
            let seed = der::asn1::OctetStringRef::from_der(info.private_key)
                .map_err(|e| format!("Ed25519 private key: {e}"))?;
            let seed: [u8; 32] = seed
                .as_bytes()
                .try_into()
                .map_err(|_| format!("Ed25519 seed of {} bytes", seed.as_bytes().len()))?;
            let seed = Zeroizing::new(seed);
            r.set_public(&PublicKey::Ed25519(ed25519_public(&seed)));
            r.set_secret(&Secret::Ed25519(seed));
            Ok(())
        }
        _ => {
            // X25519, Ed448, X448, others: the raw private key octets.
            let raw = der::asn1::OctetStringRef::from_der(info.private_key)
                .map(|o| o.as_bytes())
                .unwrap_or(info.private_key);
            let alg = r.algorithm.clone();
            r.set_secret(&Secret::Raw(alg, Zeroizing::new(raw.to_vec())));
            Ok(())
        }
    }
}

fn read_encrypted_pkcs8(der: &[u8], container: &str, out: &mut Found) {
    let mut r = KeyRecord::new(out.next(), container, Part::Encrypted);
    if let Err(e) = pkcs8::EncryptedPrivateKeyInfo::from_der(der) {
        r.fail(format!("encrypted PKCS#8 key: {e}"));
    }
    out.push(r);
}

/// A private key of the given parser, recorded as private even when it
/// does not parse.
fn read_private(
    der: &[u8],
    container: &str,
    fill: fn(&[u8], &mut KeyRecord) -> Result<(), String>,
    out: &mut Found,
) {
    let mut r = KeyRecord::new(out.next(), container, Part::Private);
    if let Err(e) = fill(der, &mut r) {
        r.fail(e);
    }
    out.push(r);
}

/// One DER object of unknown type: the first parser that takes the whole
/// input wins.
fn read_der(der: &[u8], container: &str, out: &mut Found) {
    if read_certificate(der, container, out).is_ok()
        || read_spki(der, container, out).is_ok()
        || read_pkcs1_public(der, container, out).is_ok()
    {
        return;
    }
    if pkcs8::PrivateKeyInfo::from_der(der).is_ok() {
        return read_private(der, container, fill_pkcs8, out);
    }
    if pkcs8::EncryptedPrivateKeyInfo::from_der(der).is_ok() {
        return read_encrypted_pkcs8(der, container, out);
    }
    if pkcs1::RsaPrivateKey::from_der(der).is_ok() {
        return read_private(der, container, fill_pkcs1_private, out);
    }
    if sec1::EcPrivateKey::from_der(der).is_ok() {
        return read_private(der, container, |d, r| fill_sec1(d, None, r), out);
    }
    out.unknown("binary data that is not a DER key, certificate or key pair".into());
}

// ------------------------------------------------------------------ PEM

/// One PEM block as framed line by line: its label, its lines (BEGIN and END
/// included), and whether it ended with its own END line.
struct Block<'a> {
    label: &'a str,
    lines: Vec<&'a str>,
    closed: bool,
}

/// Cuts PEM blocks out of `text`; the framing is the only authority (a
/// parser that stops at the first END would ignore what follows it).
/// Notes what is outside blocks and every malformed frame.
fn frame_pem<'a>(text: &'a str, out: &mut Found) -> Vec<Block<'a>> {
    let mut blocks: Vec<Block<'a>> = Vec::new();
    let mut open: Option<Block<'a>> = None;
    let mut outside = false;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(label) = pem_label(line, "-----BEGIN ") {
            if let Some(prev) = open.replace(Block {
                label,
                lines: vec![line],
                closed: false,
            }) {
                out.unknown(format!("PEM block {:?} has no END line", prev.label));
                blocks.push(prev);
            }
        } else if let Some(label) = pem_label(line, "-----END ") {
            match open.take() {
                Some(mut b) if b.label == label => {
                    b.lines.push(line);
                    b.closed = true;
                    blocks.push(b);
                }
                Some(b) => {
                    out.unknown(format!("PEM block {:?} ends with another label", b.label));
                    blocks.push(b);
                }
                None => out.unknown("a PEM END line without its BEGIN".into()),
            }
        } else if let Some(b) = open.as_mut() {
            b.lines.push(line);
        } else if !line.is_empty() {
            outside = true;
        }
    }
    if let Some(b) = open {
        out.unknown(format!(
            "PEM block {:?} has no END line (truncated)",
            b.label
        ));
        blocks.push(b);
    }
    if outside {
        out.unknown("text outside PEM blocks".into());
    }
    blocks
}

fn read_pem(bytes: &[u8], out: &mut Found) {
    let text = String::from_utf8_lossy(bytes);
    for b in frame_pem(&text, out) {
        let container = format!("pem {}", b.label);
        let private = b.label.contains("PRIVATE");
        let body = &b.lines[1..b.lines.len().saturating_sub(usize::from(b.closed))];
        // RFC 1421 headers: only a legacy encrypted private key has them.
        let legacy_encrypted = private
            && body
                .iter()
                .any(|l| l.starts_with("Proc-Type:") && l.contains("ENCRYPTED"));
        if !b.closed || body.iter().any(|l| l.starts_with("-----")) {
            if private {
                let mut r = KeyRecord::new(out.next(), container, Part::Private);
                r.fail("the block could not be decoded");
                out.push(r);
            } else {
                out.unknown(format!("{container}: malformed block"));
            }
            continue;
        }
        if legacy_encrypted {
            let mut r = KeyRecord::new(out.next(), container, Part::Encrypted);
            r.algorithm = match b.label {
                "RSA PRIVATE KEY" => "rsa".into(),
                "EC PRIVATE KEY" => "ec".into(),
                _ => "unknown".into(),
            };
            out.push(r);
            continue;
        }
        let block = Zeroizing::new(b.lines.join("\n"));
        if b.label == "OPENSSH PRIVATE KEY" {
            // ssh-key reads its own armor (70-column lines).
            read_openssh_private(&block, out);
            continue;
        }
        // RFC 7468 strict: no headers, base64 only. Its errors are not
        // echoed: they could quote the body.
        match pem_rfc7468::decode_vec(block.as_bytes()) {
            Ok((_, der)) => {
                let der = Zeroizing::new(der);
                read_pem_block(b.label, &der, &container, out);
            }
            Err(_) if private => {
                let mut r = KeyRecord::new(out.next(), container, Part::Private);
                r.fail("the block is not strict RFC 7468 PEM (headers, or bad base64)");
                out.push(r);
            }
            Err(_) => out.unknown(format!(
                "{container}: not strict RFC 7468 PEM (headers, or bad base64)"
            )),
        }
    }
}

fn pem_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

fn read_pem_block(label: &str, der: &[u8], container: &str, out: &mut Found) {
    let failed = |out: &mut Found, e: String| out.unknown(format!("{container}: {e}"));
    match label {
        "CERTIFICATE" | "X509 CERTIFICATE" => {
            if let Err(e) = read_certificate(der, container, out) {
                failed(out, e);
            }
        }
        "PUBLIC KEY" => {
            if let Err(e) = read_spki(der, container, out) {
                failed(out, e);
            }
        }
        "RSA PUBLIC KEY" => {
            if let Err(e) = read_pkcs1_public(der, container, out) {
                failed(out, e);
            }
        }
        "ENCRYPTED PRIVATE KEY" => read_encrypted_pkcs8(der, container, out),
        "PRIVATE KEY" => read_private(der, container, fill_pkcs8, out),
        "RSA PRIVATE KEY" => read_private(der, container, fill_pkcs1_private, out),
        "EC PRIVATE KEY" => read_private(der, container, |d, r| fill_sec1(d, None, r), out),
        "EC PARAMETERS" => {
            // Only a named curve is understood.
            if der::asn1::ObjectIdentifier::from_der(der).is_err() {
                failed(out, "parameters that are not a named curve".into());
            }
        }
        tag if tag.contains("PRIVATE") => {
            let mut r = KeyRecord::new(out.next(), container, Part::Private);
            r.fail(format!(
                "private key type {tag:?} is not read by this version"
            ));
            out.push(r);
        }
        tag => out.unknown(format!("PEM block {tag:?} is not key material")),
    }
}

// --------------------------------------------------------------- OpenSSH

fn ssh_public(k: &ssh_key::public::KeyData) -> PublicKey {
    use ssh_key::public::{EcdsaPublicKey, KeyData};
    match k {
        KeyData::Rsa(r) => PublicKey::Rsa {
            n: r.n.as_positive_bytes().unwrap_or_default().to_vec(),
            e: r.e.as_positive_bytes().unwrap_or_default().to_vec(),
        },
        KeyData::Ecdsa(e) => {
            let curve = match e {
                EcdsaPublicKey::NistP256(_) => Curve::P256,
                EcdsaPublicKey::NistP384(_) => Curve::P384,
                EcdsaPublicKey::NistP521(_) => Curve::P521,
            };
            PublicKey::Ec {
                curve,
                point: e.as_sec1_bytes().to_vec(),
            }
        }
        KeyData::Ed25519(k) => PublicKey::Ed25519(k.0),
        other => PublicKey::Other {
            algorithm: other.algorithm().as_str().into(),
            spki: None,
        },
    }
}

/// The block with its base64 re-wrapped at 70 columns, as OpenSSH writes
/// it: ssh-key accepts only that width, other writers (pyca, Go) use 64.
fn openssh_rewrapped(block: &str) -> String {
    let body: String = block
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    out
}

fn read_openssh_private(text: &str, out: &mut Found) {
    let container = "openssh";
    use ssh_key::private::{EcdsaKeypair, KeypairData};
    let parsed = ssh_key::PrivateKey::from_openssh(text)
        .or_else(|_| ssh_key::PrivateKey::from_openssh(openssh_rewrapped(text)));
    let key = match parsed {
        Ok(k) => k,
        Err(e) => {
            let mut r = KeyRecord::new(out.next(), container, Part::Private);
            r.fail(format!("OpenSSH private key: {e}"));
            out.push(r);
            return;
        }
    };
    let part = if key.is_encrypted() {
        Part::Encrypted
    } else {
        Part::Private
    };
    let mut r = KeyRecord::new(out.next(), "openssh", part);
    r.set_public(&ssh_public(key.public_key().key_data()));
    r.ssh_fingerprint = Some(key.fingerprint(ssh_key::HashAlg::Sha256).to_string());
    r.comment = Some(key.comment().to_owned()).filter(|c| !c.is_empty());
    let secret = match key.key_data() {
        KeypairData::Rsa(k) => Some(Secret::rsa(
            k.private.p.as_positive_bytes().unwrap_or_default(),
            k.private.q.as_positive_bytes().unwrap_or_default(),
        )),
        KeypairData::Ecdsa(k) => match k {
            EcdsaKeypair::NistP256 { private, .. } => Secret::ec(Curve::P256, private.as_slice()),
            EcdsaKeypair::NistP384 { private, .. } => Secret::ec(Curve::P384, private.as_slice()),
            EcdsaKeypair::NistP521 { private, .. } => Secret::ec(Curve::P521, private.as_slice()),
        },
        KeypairData::Ed25519(k) => Some(Secret::Ed25519(Zeroizing::new(k.private.to_bytes()))),
        _ => None,
    };
    match secret {
        Some(s) => r.set_secret(&s),
        None if part == Part::Private => r.fail("no commitment for this key type"),
        None => {}
    }
    out.push(r);
}

/// OpenSSH public keys, one per line (`.pub`, `authorized_keys`,
/// `known_hosts`-style lines with options); `#` comments and blank lines
/// are allowed. False when no line is a key.
fn read_openssh_lines(text: &str, out: &mut Found) -> bool {
    let mut any = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            out.unknown(format!("line {} is a comment", n + 1));
            continue;
        }
        match line.parse::<ssh_key::authorized_keys::Entry>() {
            Ok(e) => {
                any = true;
                let k = e.public_key();
                let mut r = KeyRecord::new(out.next(), "openssh-public", Part::Public);
                r.set_public(&ssh_public(k.key_data()));
                r.ssh_fingerprint = Some(k.fingerprint(ssh_key::HashAlg::Sha256).to_string());
                r.comment = Some(k.comment().to_owned()).filter(|c| !c.is_empty());
                out.push(r);
            }
            Err(_) => out.unknown(format!("line {} is not an OpenSSH public key", n + 1)),
        }
    }
    any
}

// ------------------------------------------------------------------ JWK

/// A JWK with only the members RFC 7517 and RFC 7518 define; serde refuses
/// any other member and any duplicate, which the lenient reading below
/// would let through (`serde_json::Value` keeps the last of two).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StrictJwk {
    kty: serde::de::IgnoredAny,
    #[serde(rename = "use")]
    key_use: Option<serde::de::IgnoredAny>,
    key_ops: Option<serde::de::IgnoredAny>,
    alg: Option<serde::de::IgnoredAny>,
    kid: Option<serde::de::IgnoredAny>,
    x5u: Option<serde::de::IgnoredAny>,
    x5c: Option<serde::de::IgnoredAny>,
    x5t: Option<serde::de::IgnoredAny>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<serde::de::IgnoredAny>,
    n: Option<serde::de::IgnoredAny>,
    e: Option<serde::de::IgnoredAny>,
    crv: Option<serde::de::IgnoredAny>,
    x: Option<serde::de::IgnoredAny>,
    y: Option<serde::de::IgnoredAny>,
    d: Option<serde::de::IgnoredAny>,
    p: Option<serde::de::IgnoredAny>,
    q: Option<serde::de::IgnoredAny>,
    dp: Option<serde::de::IgnoredAny>,
    dq: Option<serde::de::IgnoredAny>,
    qi: Option<serde::de::IgnoredAny>,
    oth: Option<serde::de::IgnoredAny>,
    k: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StrictJwks {
    keys: Vec<StrictJwk>,
}

fn read_json(bytes: &[u8], out: &mut Found) {
    let strict = serde_json::from_slice::<StrictJwks>(bytes).is_ok()
        || serde_json::from_slice::<StrictJwk>(bytes).is_ok();
    if !strict {
        out.unknown(
            "JSON with members RFC 7517/7518 do not define, or a member twice: not all of it is understood"
                .into(),
        );
    }
    let v: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return out.unknown(format!("JSON: {e}")),
    };
    if let Some(keys) = v.get("keys") {
        let Some(keys) = keys.as_array() else {
            return out.unknown("JWKS \"keys\" is not an array".into());
        };
        for k in keys {
            read_jwk(k, "jwks", out);
        }
    } else if v.get("kty").is_some() {
        read_jwk(&v, "jwk", out);
    } else {
        out.unknown("JSON without \"keys\" or \"kty\"".into());
    }
}

/// Members that make a JWK private (RFC 7518 §6).
const JWK_PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn read_jwk(k: &serde_json::Value, container: &str, out: &mut Found) {
    let Some(obj) = k.as_object() else {
        return out.unknown(format!("{container}: a key that is not an object"));
    };
    let s = |name: &str| obj.get(name).and_then(|v| v.as_str());
    let b64 = |name: &str| -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        match s(name) {
            None => Ok(None),
            Some(t) => B64URL
                .decode(t.trim_end_matches('='))
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|_| format!("member {name:?} is not base64url")),
        }
    };
    let private = JWK_PRIVATE.iter().any(|m| obj.contains_key(*m));
    let kty = s("kty").unwrap_or("");
    let part = match (kty, private) {
        ("oct", _) => Part::Secret,
        (_, true) => Part::Private,
        _ => Part::Public,
    };
    let mut r = KeyRecord::new(out.next(), container, part);
    r.kid = s("kid").map(str::to_owned);
    r.key_use = s("use").map(str::to_owned);
    r.alg = s("alg").map(str::to_owned);
    let filled = (|| -> Result<(), String> {
        let need = |name: &str| -> Result<Zeroizing<Vec<u8>>, String> {
            b64(name)?.ok_or_else(|| format!("member {name:?} missing"))
        };
        match kty {
            "RSA" => {
                r.set_public(&PublicKey::Rsa {
                    n: need("n")?.to_vec(),
                    e: need("e")?.to_vec(),
                });
                if let (Some(p), Some(q)) = (b64("p")?, b64("q")?) {
                    r.set_secret(&Secret::rsa(&p, &q));
                } else if private {
                    return Err("RSA private key without p and q: no commitment".into());
                }
            }
            "EC" => {
                let crv = s("crv").ok_or("member \"crv\" missing")?;
                let curve = Curve::from_jwk(crv).ok_or(format!("unknown curve {crv:?}"))?;
                let (x, y) = (need("x")?, need("y")?);
                let w = curve.width();
                if x.len() != w || y.len() != w {
                    return Err(format!("{crv} coordinates must be {w} bytes"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                r.set_public(&PublicKey::Ec { curve, point });
                if let Some(d) = b64("d")? {
                    r.set_secret(&Secret::ec(curve, &d).ok_or("\"d\" too long for the curve")?);
                }
            }
            "OKP" => {
                let crv = s("crv").ok_or("member \"crv\" missing")?;
                let x = need("x")?;
                if crv == "Ed25519" {
                    let x: [u8; 32] = x[..].try_into().map_err(|_| "Ed25519 x must be 32 bytes")?;
                    r.set_public(&PublicKey::Ed25519(x));
                    if let Some(d) = b64("d")? {
                        let seed: [u8; 32] =
                            d[..].try_into().map_err(|_| "Ed25519 d must be 32 bytes")?;
                        r.set_secret(&Secret::Ed25519(Zeroizing::new(seed)));
                    }
                } else {
                    r.algorithm = crv.to_ascii_lowercase();
                    if let Some(d) = b64("d")? {
                        r.set_secret(&Secret::Raw(crv.to_ascii_lowercase(), d));
                    }
                }
            }
            "oct" => {
                r.algorithm = "oct".into();
                let k = need("k")?;
                r.bits = u32::try_from(k.len() * 8).ok();
                r.set_secret(&Secret::Raw("oct".into(), k));
            }
            other => return Err(format!("key type {other:?} is not read by this version")),
        }
        Ok(())
    })();
    if let Err(e) = filled {
        r.fail(e);
        if part == Part::Public && r.spki_sha256.is_none() {
            out.unrecognized = true;
        }
    }
    out.push(r);
}

/// base64url that accepts what JWKs in the wild carry (no padding).
const B64URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;
        let a = analyze(jwk.as_bytes());
        assert_eq!(a.form, Form::Public, "{a:?}");
        let k = &a.keys[0];
        assert_eq!(
            k.jwk_thumbprint.as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(k.bits, Some(2048));
        assert_eq!(k.kid.as_deref(), Some("2011-04-29"));
        assert_eq!(k.alg.as_deref(), Some("RS256"));
    }

    /// An Ed25519 key has one thumbprint and one SPKI fingerprint whether it
    /// comes as a JWK with `d`, a PKCS#8 PEM or a public key PEM, and the
    /// commitment matches between the two private forms.
    #[test]
    fn one_key_one_identity_across_containers() {
        let seed = [7u8; 32];
        let public = ed25519_public(&seed);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","d":"{}"}}"#,
            b64(&public),
            b64(&seed)
        );
        let from_jwk = analyze(jwk.as_bytes());
        assert_eq!(from_jwk.form, Form::Private);
        use pkcs8::EncodePrivateKey as _;
        use spki::EncodePublicKey as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pkcs8 = sk.to_pkcs8_pem(Default::default()).unwrap();
        let from_pem = analyze(pkcs8.as_bytes());
        let spki = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let from_spki = analyze(spki.as_bytes());
        assert_eq!(from_spki.form, Form::Public);
        let (a, b, c) = (&from_jwk.keys[0], &from_pem.keys[0], &from_spki.keys[0]);
        assert_eq!(a.spki_sha256, b.spki_sha256);
        assert_eq!(a.spki_sha256, c.spki_sha256);
        assert_eq!(
            a.spki_sha256,
            Some(Sha256Digest::of(
                &sk.verifying_key().to_public_key_der().unwrap().into_vec()
            ))
        );
        assert_eq!(a.jwk_thumbprint, c.jwk_thumbprint);
        assert!(a.commitment.is_some());
        assert_eq!(a.commitment, b.commitment);
        assert_eq!(c.commitment, None);
        assert_eq!(a.commitment, Some(commitment("ed25519", &seed)));
    }

    /// Malformed input of every kind is a note or a failed record, never a
    /// panic, and a damaged private block still counts as private.
    #[test]
    fn malformed_input_is_recorded_not_fatal() {
        let cases: [(&[u8], Form); 9] = [
            (
                b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
                Form::Private,
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\n!!!not base64!!!\n-----END PRIVATE KEY-----\n",
                Form::Private,
            ),
            (
                b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
                Form::NotKeyMaterial,
            ),
            (
                b"{\"keys\": [{\"kty\": \"RSA\", \"n\": \"@@\", \"e\": \"AQAB\"}]}",
                Form::Mixed,
            ),
            (b"{\"keys\": 5}", Form::NotKeyMaterial),
            (b"{\"kty\":", Form::NotKeyMaterial),
            // A SEQUENCE declaring 2^32 bytes of content in 6 bytes.
            (&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], Form::NotKeyMaterial),
            (b"\x00\x01garbage\xff", Form::NotKeyMaterial),
            (
                b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI truncated\n",
                Form::NotKeyMaterial,
            ),
        ];
        for (input, form) in cases {
            let a = analyze(input);
            assert_eq!(a.form, form, "{:?}: {a:?}", String::from_utf8_lossy(input));
            assert!(
                !a.notes.is_empty() || a.keys.iter().any(|k| k.problem.is_some()),
                "{:?}: nothing said about what is wrong",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// A file of a million empty keys or text lines gives bounded records
    /// and notes, and is not `public`.
    #[test]
    fn records_and_notes_are_capped() {
        let many = format!("{{\"keys\":[{}{{}}]}}", "{},".repeat(200_000));
        let a = analyze(many.as_bytes());
        assert_eq!(a.keys.len(), MAX_RECORDS);
        assert!(a.notes.len() <= MAX_NOTES + 1, "{}", a.notes.len());
        assert_ne!(a.form, Form::Public);
        let lines = "not a key\n".repeat(100_000);
        let a = analyze(lines.as_bytes());
        assert!(a.notes.len() <= MAX_NOTES + 1, "{}", a.notes.len());
    }

    /// A certificate time past jiff's range (9999-12-31T23:59:59Z) is
    /// clamped, not a panic.
    #[test]
    fn far_future_times_clamp() {
        let t = Time::from_unix(253_402_300_799);
        assert!(t.as_str().starts_with("9999-12-"), "{t}");
    }

    #[test]
    fn rsa_commitment_takes_the_smaller_prime() {
        let a = Secret::rsa(&[0, 5, 1], &[3, 9]);
        let b = Secret::rsa(&[3, 9], &[5, 1]);
        assert_eq!(a.bytes(), &[3, 9]);
        assert_eq!(b.bytes(), &[3, 9]);
        assert_eq!(bit_length(&[0, 0x01, 0]), 9);
    }
}
