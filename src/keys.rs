//! The vault's Ed25519 keys (FORMAT.md §5 (keys)): the signing key file, public
//! keys as recorded in the log, key ids, and the keyring verification judges
//! signatures with.
//!
//! A signing key file holds one line, the C2SP signed-note private key
//! encoding `PRIVATE+KEY+<origin>+<hex key hash>+<base64(0x01 || seed)>`, so
//! the same file works with Go's `golang.org/x/mod/sumdb/note`. It is created
//! with mode 0600 and refused when group or others can read it. Its contents
//! never appear in an error or a log line.
//!
//! Not here: rotation and revocation (later entries in the log).

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hash::Sha256Digest;

/// The algorithm byte C2SP signed notes use for Ed25519.
const NOTE_ALG_ED25519: u8 = 0x01;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or creating the file failed.
    #[error("couldn't {action} key file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "key file {path} has mode {mode:o}: group or others can access it; run `chmod 600 {path}`"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a signing key in the expected encoding.
    #[error("key file {path} is not a custody signing key ({why})")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong, without any key bytes.
        why: &'static str,
    },
    /// A passphrase-encrypted key file that could not be opened.
    #[error("key file {path} is passphrase-encrypted and could not be opened: {why}")]
    Encrypted {
        /// The key file.
        path: PathBuf,
        /// What went wrong (never the passphrase).
        why: String,
    },
    /// The key belongs to another vault.
    #[error("key file {path} holds key {found}, but this vault's key is {expected}")]
    WrongKey {
        /// The key file.
        path: PathBuf,
        /// The id of the key in the file.
        found: KeyId,
        /// The id the vault expects.
        expected: KeyId,
    },
}

/// A key id: the lowercase hex SHA-256 of the raw 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub Sha256Digest);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        Self(Sha256Digest::of(key.as_bytes()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0.short())
    }
}

/// A public key as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// [`KeyId`] of `public`; checked on every read.
    pub id: KeyId,
    /// Always `ed25519` in format 1.
    pub alg: String,
    /// Base64 of the 32-byte public key.
    pub public: String,
}

impl PublicKey {
    /// The verifying key, after checking the algorithm, the encoding and that
    /// the id matches.
    ///
    /// # Errors
    /// A description of what is wrong.
    pub fn verifying_key(&self) -> Result<VerifyingKey, String> {
        if self.alg != "ed25519" {
            return Err(format!("unknown key algorithm {:?}", self.alg));
        }
        let raw = B64
            .decode(&self.public)
            .map_err(|_| "public key is not base64".to_string())?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| "public key is not 32 bytes".to_string())?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| "not an Ed25519 point".to_string())?;
        if KeyId::of(&key) != self.id {
            return Err(format!("key id {} does not match the key", self.id));
        }
        Ok(key)
    }

    /// The C2SP signed-note verifier key `<name>+<hash>+<base64>` for `name`.
    pub fn note_verifier_key(key: &VerifyingKey, name: &str) -> String {
        signed_note::new_ed25519_verifier_key(name, key)
    }
}

/// The vault's signing key, named by the vault's origin.
pub struct VaultSigner {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for VaultSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "VaultSigner({}, {})", self.name, self.key_id())
    }
}

impl VaultSigner {
    /// A new random key for the log named `name`.
    pub fn generate(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from a fixed seed: for test vectors and tests only.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The log (origin) name the key signs checkpoints as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.key.verifying_key())
    }

    /// The public key, as recorded in the log.
    pub fn public(&self) -> PublicKey {
        let vk = self.key.verifying_key();
        PublicKey {
            id: KeyId::of(&vk),
            alg: "ed25519".into(),
            public: B64.encode(vk.as_bytes()),
        }
    }

    /// The raw verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// An Ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The Ed25519 signature [`Self::sign`] makes over `parts` joined, made
    /// without joining them: a segment's DSSE message is a short header and
    /// a payload of up to tens of megabytes, which is then not copied once
    /// more to be signed. Ed25519 (RFC 8032) hashes the message twice, so
    /// both passes are fed the parts in order; the key expansion and the
    /// verifying key are the signing key's own, exactly as [`Self::sign`]
    /// takes them (a test holds the two signatures equal). Verifying takes
    /// no such shortcut: the streaming verifier the same crate feature
    /// offers skips `verify_strict`'s checks, so envelopes are verified
    /// over the joined message ([`crate::dsse::open`]).
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 64] {
        use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign_byupdate};
        let expanded = ExpandedSecretKey::from(self.key.as_bytes());
        raw_sign_byupdate::<sha2::Sha512, _>(
            &expanded,
            |h| {
                for p in parts {
                    sha2::Digest::update(h, p);
                }
                Ok(())
            },
            &self.key.verifying_key(),
        )
        .expect("feeding the message cannot fail")
        .to_bytes()
    }

    fn note_pub(&self) -> Vec<u8> {
        let mut v = vec![NOTE_ALG_ED25519];
        v.extend_from_slice(self.key.verifying_key().as_bytes());
        v
    }

    /// The key file's text (one line): secret; write it only with [`Self::save`].
    fn encode(&self) -> String {
        let mut seed = vec![NOTE_ALG_ED25519];
        seed.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}\n",
            self.name,
            signed_note::key_id(&self.name, &self.note_pub()),
            B64.encode(seed)
        )
    }

    /// Writes the key to a new file at `path` with mode 0600, creating parent
    /// directories (mode 0700). Refuses to overwrite an existing file.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file exists or cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_new(path, self.encode().as_bytes())
    }

    /// [`VaultSigner::save`], the key encrypted with age under `passphrase`
    /// (scrypt, ASCII armor; FORMAT.md §5 (signing key file)).
    ///
    /// # Errors
    /// As [`VaultSigner::save`].
    pub fn save_encrypted(&self, path: &Path, passphrase: &str) -> Result<(), KeyError> {
        use std::io::Write as _;
        let fail = |why: String| KeyError::Encrypted {
            path: path.to_owned(),
            why,
        };
        let enc = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
            passphrase.to_owned(),
        ));
        let mut out = Vec::new();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| fail(e.to_string()))?;
        let mut w = enc.wrap_output(armor).map_err(|e| fail(e.to_string()))?;
        w.write_all(self.encode().as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        w.finish()
            .and_then(age::armor::ArmoredWriter::finish)
            .map_err(|e| fail(e.to_string()))?;
        write_new(path, &out)
    }
}

/// The first line of an age-encrypted key file.
const AGE_ARMOR: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// Environment variable holding a key file's passphrase, for automation.
pub const PASSPHRASE_ENV: &str = "CUSTODY_KEY_PASSPHRASE";

/// Creates `path` with mode 0600 (its directory 0700), refusing an existing
/// file, writes `bytes` and syncs file and directory.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |action, source| KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create the directory of", e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    // The directory entry too: the key must survive a power loss that
    // the genesis naming it survives (FORMAT.md §11 (write ordering)).
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync the directory of", e))?;
    Ok(())
}

impl VaultSigner {
    /// Reads a key file, refusing it when group or others can access it.
    ///
    /// # Errors
    /// See [`KeyError`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |action, source| KeyError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let (meta, bytes) = crate::localfile::read_small(path, 4096).map_err(|e| match e {
            crate::localfile::SmallFileError::Io(e) => io("read", e),
            crate::localfile::SmallFileError::NotRegular => KeyError::Malformed {
                path: path.to_owned(),
                why: "not a regular file",
            },
            crate::localfile::SmallFileError::TooLarge(_) => KeyError::Malformed {
                path: path.to_owned(),
                why: "file too large",
            },
        })?;
        // The mode of the file actually read, not of whatever the path names now.
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| KeyError::Malformed {
            path: path.to_owned(),
            why: "not text",
        })?;
        let text = if text.starts_with(AGE_ARMOR) {
            zeroize::Zeroizing::new(decrypt_key_file(path, &text)?)
        } else {
            zeroize::Zeroizing::new(text)
        };
        Self::decode(text.trim_end()).map_err(|why| KeyError::Malformed {
            path: path.to_owned(),
            why,
        })
    }

    fn decode(text: &str) -> Result<Self, &'static str> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or("missing PRIVATE+KEY+ prefix")?;
        // Names never contain '+'; base64 may.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected PRIVATE+KEY+<name>+<hash>+<key>");
        };
        if !signed_note::is_key_name_valid(name) {
            return Err("invalid key name");
        }
        let raw = B64.decode(b64).map_err(|_| "key is not base64")?;
        if raw.len() != 33 || raw[0] != NOTE_ALG_ED25519 {
            return Err("not an Ed25519 key");
        }
        let seed: [u8; 32] = raw[1..].try_into().map_err(|_| "not an Ed25519 key")?;
        let signer = Self::from_seed(name, seed);
        if hash != format!("{:08x}", signed_note::key_id(name, &signer.note_pub())) {
            return Err("key hash does not match the key");
        }
        Ok(signer)
    }
}

/// The passphrase of an encrypted key file: from [`PASSPHRASE_ENV`], else
/// asked on the terminal.
fn passphrase(path: &Path) -> Result<zeroize::Zeroizing<String>, KeyError> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(zeroize::Zeroizing::new(p));
    }
    let no_terminal = || KeyError::Encrypted {
        path: path.to_owned(),
        why: format!("no terminal to ask for the passphrase: set {PASSPHRASE_ENV}"),
    };
    // Never wait on a terminal when input is not one (scripts, services).
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(no_terminal());
    }
    rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
        .map(zeroize::Zeroizing::new)
        .map_err(|_| no_terminal())
}

fn decrypt_key_file(path: &Path, armored: &str) -> Result<String, KeyError> {
    use std::io::Read as _;
    let fail = |why: String| KeyError::Encrypted {
        path: path.to_owned(),
        why,
    };
    let pass = passphrase(path)?;
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let dec = age::Decryptor::new(reader).map_err(|e| fail(e.to_string()))?;
    if !dec.is_scrypt() {
        return Err(fail("not encrypted to a passphrase".into()));
    }
    let id = age::scrypt::Identity::new(age::secrecy::SecretString::from(pass.to_string()));
    let mut r = dec
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .map_err(|_| fail("wrong passphrase, or the file was altered".into()))?;
    let mut out = String::new();
    r.by_ref()
        .take(4096)
        .read_to_string(&mut out)
        .map_err(|_| fail("wrong passphrase, or the file was altered".into()))?;
    Ok(out)
}

impl signed_note::Signer for VaultSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        signed_note::key_id(&self.name, &self.note_pub())
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_vec())
    }
}

/// A vault key's life in the log (FORMAT.md §5 (key lifecycle)).
#[derive(Debug, Clone)]
pub struct KeyState {
    /// Its id.
    pub id: KeyId,
    /// The key as recorded.
    pub public: PublicKey,
    /// The key, checked.
    pub key: VerifyingKey,
    /// First segment it may sign: 0 for the genesis key, else the segment
    /// that rotated it in.
    pub from: u64,
    /// Last segment it may sign: the segment that rotated it out.
    pub until: Option<u64>,
    /// Its revocation, if any.
    pub revoked: Option<Revocation>,
}

impl KeyState {
    /// Whether it may sign segment `seq`.
    pub fn valid_at(&self, seq: u64) -> bool {
        self.from <= seq && self.until.is_none_or(|u| seq <= u)
    }
}

/// A revocation as recorded.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The segment that recorded it.
    pub seq: u64,
    /// Since when the key is to be taken as in other hands.
    pub compromised_since: crate::time::Time,
    /// Why.
    pub reason: String,
}

/// The public keys a verifier accepts signatures from, each with the
/// segments it may sign.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    states: Vec<KeyState>,
}

impl Keyring {
    /// A keyring of the given (already checked) keys, each valid from
    /// segment 0 on.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        let mut ring = Self::default();
        for k in keys {
            ring.add(k, 0);
        }
        ring
    }

    fn add(&mut self, public: PublicKey, from: u64) {
        let Ok(key) = public.verifying_key() else {
            return;
        };
        if self.state(&public.id).is_some() {
            return;
        }
        self.states.push(KeyState {
            id: public.id,
            public,
            key,
            from,
            until: None,
            revoked: None,
        });
    }

    /// The key with hex id `keyid`.
    pub fn find(&self, keyid: &str) -> Option<(KeyId, &VerifyingKey)> {
        self.states
            .iter()
            .find(|s| s.id.to_string() == keyid)
            .map(|s| (s.id, &s.key))
    }

    /// All keys, whatever their validity.
    pub fn keys(&self) -> impl Iterator<Item = (KeyId, &VerifyingKey)> {
        self.states.iter().map(|s| (s.id, &s.key))
    }

    /// Every key's life, in the order the log introduced them.
    pub fn states(&self) -> &[KeyState] {
        &self.states
    }

    /// The state of key `id`.
    pub fn state(&self, id: &KeyId) -> Option<&KeyState> {
        self.states.iter().find(|s| s.id == *id)
    }

    /// The key that signs new segments: the one not rotated out.
    pub fn current(&self) -> Option<&KeyState> {
        self.states.iter().rev().find(|s| s.until.is_none())
    }

    /// The keys that may sign segment `seq`.
    pub fn valid_at(&self, seq: u64) -> impl Iterator<Item = &KeyState> {
        self.states.iter().filter(move |s| s.valid_at(seq))
    }

    /// Records a rotation in segment `seq`: `old` signs up to `seq`, `new`
    /// from `seq` on.
    pub fn rotate(&mut self, seq: u64, old: &KeyId, new: PublicKey) {
        if let Some(s) = self.states.iter_mut().find(|s| s.id == *old) {
            s.until = Some(seq);
        }
        self.add(new, seq);
    }

    /// Records a revocation (in segment `revocation.seq`).
    pub fn revoke(&mut self, key: &KeyId, revocation: Revocation) {
        if let Some(s) = self.states.iter_mut().find(|s| s.id == *key) {
            s.revoked = Some(revocation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn key_encode_decode_round_trip(seed in any::<[u8; 32]>(), name in "[a-z0-9./_-]{1,40}") {
            let k = VaultSigner::from_seed(&name, seed);
            let back = VaultSigner::decode(k.encode().trim_end()).unwrap();
            prop_assert_eq!(back.key_id(), k.key_id());
            prop_assert_eq!(back.name(), k.name());
        }

        /// Signing parts is signing them joined: the same bytes, and
        /// they verify (Ed25519 is deterministic, so any difference in
        /// how either pass hashed the message would show).
        #[test]
        fn signing_parts_is_signing_them_joined(
            seed in any::<[u8; 32]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let k = VaultSigner::from_seed("test", seed);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(msg.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for to in at.into_iter().chain([msg.len()]) {
                parts.push(&msg[from..to]);
                from = to;
            }
            let sig = k.sign_parts(&parts);
            prop_assert_eq!(sig, k.sign(&msg));
            prop_assert!(k.verifying_key()
                .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok());
        }

        #[test]
        fn key_decoder_never_panics(s in ".{0,120}") {
            let _ = VaultSigner::decode(&s);
        }
    }

    #[test]
    fn key_file_round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/vault.key");
        let k = VaultSigner::generate("example.org/vault");
        k.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = VaultSigner::load(&path).unwrap();
        assert_eq!(back.key_id(), k.key_id());
        assert_eq!(back.name(), "example.org/vault");
        assert!(
            matches!(k.save(&path), Err(KeyError::Io { .. })),
            "must not overwrite"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = VaultSigner::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::Permissions { mode: 0o644, .. }));
        assert!(!err.to_string().contains("PRIVATE"));
    }

    #[test]
    fn malformed_key_files_name_the_problem_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = VaultSigner::from_seed("n", [3; 32]);
        let good = k.encode();
        let tampered = good.replacen("+n+", "+m+", 1);
        for bad in ["", "hello", tampered.as_str()] {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, bad).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = VaultSigner::load(&path).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{bad:?}: {err}");
            assert!(
                !err.to_string()
                    .contains(good.trim().rsplit('+').next().unwrap())
            );
        }
    }

    #[test]
    fn key_file_is_a_go_note_signer_key() {
        // Interop: the verifier key derived by signed_note matches ours.
        let k = VaultSigner::from_seed("example.org/log", [9; 32]);
        let vkey = PublicKey::note_verifier_key(&k.verifying_key(), "example.org/log");
        let v = signed_note::StandardVerifier::new(&vkey).unwrap();
        assert_eq!(
            signed_note::Verifier::key_id(&v),
            signed_note::Signer::key_id(&k)
        );
        assert!(signed_note::StandardSigner::new(k.encode().trim()).is_ok());
    }

    #[test]
    fn public_key_checks_its_id() {
        let k = VaultSigner::from_seed("n", [5; 32]);
        let mut p = k.public();
        assert!(p.verifying_key().is_ok());
        p.id = KeyId(Sha256Digest::of(b"other"));
        assert!(p.verifying_key().is_err());
    }
}
