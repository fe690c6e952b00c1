//! Witnesses (FORMAT.md §10a): C2SP tlog-cosignature v1 (Ed25519) and the
//! C2SP tlog-witness `add-checkpoint` protocol, both sides.
//!
//! A witness keeps, per log origin, the latest checkpoint it cosigned; it
//! cosigns a new one only when a consistency proof shows it extends that
//! one, so a log cannot show two histories to the same witness, nor roll
//! one back. Its cosignature carries the witness's clock: a third-party
//! bound on when the log had those segments.
//!
//! Not here: configuring witnesses for a vault, verify's quorum (`verify`).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tlog_tiles::Hash;

use crate::hash::Sha256Digest;
use crate::keys::VaultSigner;
use crate::log::Tree;

/// Largest `add-checkpoint` request body a witness reads.
pub const MAX_REQUEST: u64 = 64 << 10;
/// Most consistency proof lines a request may carry (the protocol's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Signature type byte of an Ed25519 cosignature key id.
const COSIG_ALG: u8 = 0x04;

/// A witness as a log client knows it: name and public key.
#[derive(Debug, Clone)]
pub struct Witness {
    /// The key name.
    pub name: String,
    /// Its Ed25519 public key.
    pub key: VerifyingKey,
}

impl Witness {
    /// Parses a verifier key `<name>+<8 hex key id>+<base64(0x04 || key)>`.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(vkey: &str) -> Result<Self, String> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("witness key {vkey:?} is not <name>+<hash>+<key>"));
        };
        if !signed_note::is_key_name_valid(name) {
            return Err(format!("witness name {name:?} is not a valid key name"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| format!("witness key of {name}: not base64"))?;
        if raw.len() != 33 || raw[0] != COSIG_ALG {
            return Err(format!(
                "witness key of {name}: not an Ed25519 cosignature key (type 0x04)"
            ));
        }
        let key = VerifyingKey::from_bytes(raw[1..].try_into().map_err(|_| "32 bytes")?)
            .map_err(|_| format!("witness key of {name}: not an Ed25519 point"))?;
        let w = Self {
            name: name.into(),
            key,
        };
        if hash != format!("{:08x}", w.key_id()) {
            return Err(format!("witness key of {name}: the key id does not match"));
        }
        Ok(w)
    }

    /// The cosignature key id: SHA-256(name || "\n" || 0x04 || key)[:4].
    pub fn key_id(&self) -> u32 {
        let mut h = sha2::Sha256::new();
        h.update(self.name.as_bytes());
        h.update(b"\n");
        h.update([COSIG_ALG]);
        h.update(self.key.as_bytes());
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        let mut raw = vec![COSIG_ALG];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id(), B64.encode(raw))
    }
}

/// The message a v1 cosignature signs.
fn cosigned_message(body: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// A cosignature line (`— name base64(id || timestamp || signature)\n`)
/// by `key` over the checkpoint `body` at `timestamp`.
pub fn cosign(key: &VaultSigner, body: &[u8], timestamp: u64) -> String {
    let w = Witness {
        name: key.name().into(),
        key: key.verifying_key(),
    };
    let sig = key.sign(&cosigned_message(body, timestamp));
    let mut raw = w.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(&timestamp.to_be_bytes());
    raw.extend_from_slice(&sig);
    format!("\u{2014} {} {}\n", w.name, B64.encode(raw))
}

/// Splits a signed note into its body (with the final newline) and its
/// signature lines.
///
/// # Errors
/// When there is no blank line between them.
pub fn split_note(note: &[u8]) -> Result<(&[u8], Vec<&[u8]>), String> {
    // The last blank line, as signed-note readers (Go's note) split.
    let at = note
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .ok_or("not a signed note: no blank line before the signatures")?;
    let body = &note[..=at];
    let sigs = note[at + 2..]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    Ok((body, sigs))
}

/// The valid cosignatures in `note` by `witnesses`: (witness name,
/// timestamp). Lines by other keys, and bad signatures, are ignored.
pub fn cosignatures(note: &[u8], witnesses: &[Witness]) -> Vec<(String, u64)> {
    let Ok((body, lines)) = split_note(note) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = Vec::new();
    for line in lines {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Some(rest) = text.strip_prefix("\u{2014} ") else {
            continue;
        };
        let Some((name, b64)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(raw) = B64.decode(b64) else { continue };
        if raw.len() != 4 + 8 + 64 {
            continue;
        }
        for w in witnesses.iter().filter(|w| w.name == name) {
            if raw[..4] != w.key_id().to_be_bytes() {
                continue;
            }
            let ts = u64::from_be_bytes(raw[4..12].try_into().expect("8 bytes"));
            let sig = ed25519_dalek::Signature::from_bytes(raw[12..].try_into().expect("64 bytes"));
            if ts <= i64::MAX as u64
                && w.key
                    .verify_strict(&cosigned_message(body, ts), &sig)
                    .is_ok()
                && !out.iter().any(|(n, _)| n == name)
            {
                out.push((name.to_owned(), ts));
            }
        }
    }
    out
}

// ------------------------------------------------------------------ server

/// What a witness remembers of one log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    /// The log's origin.
    pub origin: String,
    /// Size of the latest cosigned checkpoint.
    pub size: u64,
    /// Its root hash.
    pub root: Sha256Digest,
}

/// A witness: its key, the logs it follows (origin to the log's note
/// verifier keys) and its state directory.
pub struct WitnessServer {
    key: VaultSigner,
    logs: BTreeMap<String, Vec<VerifyingKey>>,
    state: PathBuf,
}

/// A response: status, content type, body.
pub type Reply = (u16, &'static str, String);

impl WitnessServer {
    /// A witness with `key`, state in `state` (created 0700), following
    /// `logs`.
    ///
    /// # Errors
    /// The state directory cannot be created.
    pub fn new(
        key: VaultSigner,
        logs: BTreeMap<String, Vec<VerifyingKey>>,
        state: &Path,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state)?;
        Ok(Self {
            key,
            logs,
            state: state.to_owned(),
        })
    }

    fn state_path(&self, origin: &str) -> PathBuf {
        self.state.join(format!(
            "{}.json",
            Sha256Digest::of(origin.as_bytes()).to_hex()
        ))
    }

    /// The recorded state of `origin`, if any.
    ///
    /// # Errors
    /// An unreadable or damaged state file: the witness stops rather than
    /// forget what it cosigned.
    pub fn load(&self, origin: &str) -> Result<Option<LogState>, String> {
        let p = self.state_path(origin);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("state file {} is damaged: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("state file {}: {e}", p.display())),
        }
    }

    /// Writes the state crash-safely: a new file, synced, renamed over the
    /// old one, the directory synced. Either the old or the new state
    /// survives a crash, never a torn one.
    fn store(&self, st: &LogState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(st).map_err(std::io::Error::other)?;
        crate::localfile::write_durably(&self.state_path(&st.origin), &bytes)
    }

    /// Handles one `add-checkpoint` body (C2SP tlog-witness). Requests are
    /// handled one at a time, so the check of the old size and the update
    /// of the state are atomic.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Reply {
        let bad = |msg: &str| (400, "text/plain", format!("{msg}\n"));
        let Some(first_nl) = body.iter().position(|b| *b == b'\n') else {
            return bad("no old size line");
        };
        let Some(old) = std::str::from_utf8(&body[..first_nl])
            .ok()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return bad("the first line must be `old <size>`");
        };
        let rest = &body[first_nl + 1..];
        // Proof lines, each ending in a newline, then an empty line.
        let mut proof = Vec::new();
        let mut at = 0usize;
        loop {
            let Some(nl) = rest[at..].iter().position(|b| *b == b'\n') else {
                return bad("no empty line before the checkpoint");
            };
            let line = &rest[at..at + nl];
            at += nl + 1;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return bad("more than 63 consistency proof lines");
            }
            match B64
                .decode(line)
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
            {
                Some(h) => proof.push(Hash(h)),
                None => return bad("a consistency proof line is not a base64 hash"),
            }
        }
        let note = &rest[at..];
        let Ok(parsed) = signed_note::Note::from_bytes(note) else {
            return bad("the checkpoint is not a signed note");
        };
        let Ok(cp) = tlog_tiles::Checkpoint::from_bytes(parsed.text()) else {
            return bad("the note is not a checkpoint");
        };
        let Some(keys) = self.logs.get(cp.origin()) else {
            return (
                404,
                "text/plain",
                format!("unknown log {:?}\n", cp.origin()),
            );
        };
        if crate::log::open_checkpoint(note, cp.origin(), keys).is_err() {
            return (
                403,
                "text/plain",
                "no signature by a known key of the log\n".into(),
            );
        }
        if old > cp.size() {
            return bad("the old size is larger than the checkpoint's");
        }
        let state = match self.load(cp.origin()) {
            Ok(s) => s,
            Err(e) => return (500, "text/plain", format!("{e}\n")),
        };
        let (known_size, known_root) = state.as_ref().map_or((0, None), |s| (s.size, Some(s.root)));
        if old != known_size {
            return (409, "text/x.tlog.size", format!("{known_size}\n"));
        }
        let root = Sha256Digest(cp.hash().0);
        if old == cp.size() {
            if !proof.is_empty() {
                return bad("the proof must be empty when the old size is the checkpoint's");
            }
            if known_root.is_some_and(|r| r != root) {
                return (409, "text/x.tlog.size", format!("{known_size}\n"));
            }
        } else if old > 0 {
            let Some(known_root) = known_root else {
                return (500, "text/plain", "state without a root\n".into());
            };
            if tlog_tiles::check_tree(&proof, cp.size(), *cp.hash(), old, Hash(known_root.0))
                .is_err()
            {
                return (
                    422,
                    "text/plain",
                    "the consistency proof does not lead from the cosigned checkpoint to this one\n"
                        .into(),
                );
            }
        } else if !proof.is_empty() {
            return bad("the proof must be empty when the old size is 0");
        }
        let new = LogState {
            origin: cp.origin().into(),
            size: cp.size(),
            root,
        };
        if let Err(e) = self.store(&new) {
            return (
                500,
                "text/plain",
                format!("couldn't persist the state: {e}\n"),
            );
        }
        (200, "text/plain", cosign(&self.key, parsed.text(), now))
    }

    /// Serves `add-checkpoint` on `listen` (plain HTTP) until the process
    /// ends. Each request is read on its own thread (a slow client holds up
    /// no other, and is cut off after [`READ_DEADLINE`]); checking and
    /// updating the state happen under one lock, so they are atomic. The
    /// state directory is locked against a second witness process.
    ///
    /// # Errors
    /// The address cannot be bound, or another process serves this state.
    pub fn serve(
        self,
        listen: &str,
        on_request: impl Fn(&str, u16) + Send + Sync + 'static,
    ) -> Result<(), String> {
        let lock_path = self.state.join("witness.lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| format!("another witness process serves {}", self.state.display()))?;
        let server = tiny_http::Server::http(listen)
            .map_err(|e| format!("couldn't listen on {listen}: {e}"))?;
        let me = std::sync::Arc::new(std::sync::Mutex::new(self));
        let on_request = std::sync::Arc::new(on_request);
        for req in server.incoming_requests() {
            let me = me.clone();
            let on_request = on_request.clone();
            std::thread::spawn(move || handle(&me, req, &*on_request));
        }
        Ok(())
    }
}

/// How long a witness waits for a request's body.
pub const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request's body: at most [`MAX_REQUEST`] bytes within
/// [`READ_DEADLINE`].
fn read_body(req: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    let started = std::time::Instant::now();
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if started.elapsed() > READ_DEADLINE {
            return Err((408, "text/plain", "request body too slow\n".into()));
        }
        match req.as_reader().read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => {
                body.extend_from_slice(&chunk[..n]);
                if body.len() as u64 > MAX_REQUEST {
                    return Err((413, "text/plain", "request too large\n".into()));
                }
            }
            Err(_) => return Err((400, "text/plain", "unreadable body\n".into())),
        }
    }
}

fn handle(
    me: &std::sync::Mutex<WitnessServer>,
    mut req: tiny_http::Request,
    on_request: &dyn Fn(&str, u16),
) {
    let path = req.url().to_owned();
    let (status, ctype, body) =
        if req.method() != &tiny_http::Method::Post || !path.ends_with("/add-checkpoint") {
            (404, "text/plain", "not found\n".into())
        } else {
            match read_body(&mut req) {
                Err(r) => r,
                Ok(body) => {
                    let now = u64::try_from(crate::time::Time::now().timestamp().as_second())
                        .unwrap_or(0);
                    // One at a time: the old size is checked and the state
                    // updated under the lock.
                    match me.lock() {
                        Ok(w) => w.add_checkpoint(&body, now),
                        Err(_) => (500, "text/plain", "witness state lock poisoned\n".into()),
                    }
                }
            }
        };
    on_request(&path, status);
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes())
        .expect("a valid header");
    let _ = req.respond(
        tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header),
    );
}

// ------------------------------------------------------------------ client

/// The outcome of asking one witness.
#[derive(Debug)]
pub enum Asked {
    /// Its cosignature line.
    Cosigned(String),
    /// It refused or failed: why.
    Failed(String),
}

/// Asks the witness at `url` (its submission prefix) to cosign `note` (the
/// signed checkpoint of `tree`), starting from `old` (what it last
/// cosigned, if known) and following a 409 once.
pub fn ask(url: &str, note: &[u8], tree: &Tree, size: u64, mut old: u64) -> Asked {
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    for _ in 0..2 {
        let mut body = format!("old {old}\n").into_bytes();
        if old > 0 && old < size {
            match tlog_tiles::prove_tree(size, old, tree) {
                Ok(p) => {
                    for h in p {
                        body.extend_from_slice(format!("{}\n", B64.encode(h.0)).as_bytes());
                    }
                }
                Err(e) => return Asked::Failed(format!("no consistency proof from {old}: {e}")),
            }
        }
        body.push(b'\n');
        body.extend_from_slice(note);
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(10))
            .build();
        match agent.post(&endpoint).send_bytes(&body) {
            Ok(r) => {
                let mut text = String::new();
                if r.into_reader()
                    .take(64 << 10)
                    .read_to_string(&mut text)
                    .is_err()
                {
                    return Asked::Failed("unreadable response".into());
                }
                return Asked::Cosigned(text);
            }
            Err(ureq::Error::Status(409, r)) => {
                let text = r.into_string().unwrap_or_default();
                match text.trim().parse::<u64>() {
                    Ok(n) if n != old && n <= size => old = n,
                    Ok(n) if n > size => {
                        return Asked::Failed(format!(
                            "409: the witness cosigned a checkpoint of {n} segments and this log has {size}: segments were removed (a roll-back), or this is not the log it follows"
                        ));
                    }
                    _ => {
                        return Asked::Failed(format!(
                            "409: the witness holds a checkpoint this log cannot extend (size {})",
                            text.trim()
                        ));
                    }
                }
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Asked::Failed(format!("{code}: {}", text.trim()));
            }
            Err(e) => return Asked::Failed(e.to_string()),
        }
    }
    Asked::Failed("the witness kept changing its size".into())
}

// ------------------------------------------------------------ vault side

/// A witness a vault asks: its key and its submission prefix.
#[derive(Debug, Clone)]
pub struct Configured {
    /// Name and key.
    pub witness: Witness,
    /// Submission prefix (`http://host:port`).
    pub url: String,
}

/// What one round of asking the witnesses gave.
#[derive(Debug, Default)]
pub struct Collected {
    /// The checkpoint size asked about.
    pub size: u64,
    /// Witnesses that cosigned it (name, timestamp).
    pub cosigned: Vec<(String, u64)>,
    /// Witnesses that did not, with why.
    pub failed: Vec<(String, String)>,
}

/// [`collect`]'s error when the stored checkpoint is beyond the log as the
/// vault read it: another writer appended since; catch up and ask again.
pub const CHECKPOINT_AHEAD: &str =
    "the checkpoint is ahead of the log as read here (appended since): catch up and ask again";

/// Asks every witness to cosign the vault's current checkpoint and stores
/// each cosignature as `witnessed/<size>/<witness>` (created once). A
/// witness that is down or refuses is reported, never fatal: the evidence is
/// preserved already; `custody witness catch-up` asks again.
///
/// # Errors
/// The checkpoint cannot be read or does not match the log
/// ([`CHECKPOINT_AHEAD`] when it is beyond the log as read).
pub fn collect(vault: &crate::vault::Vault, witnesses: &[Configured]) -> Result<Collected, String> {
    let store = vault.store();
    let note = store
        .get(crate::layout::CHECKPOINT, crate::log::MAX_CHECKPOINT_BYTES)
        .map_err(|e| e.to_string())?
        .ok_or("the vault has no checkpoint yet")?;
    let cp = crate::vault::open_checkpoint(&note, vault.root())
        .map_err(|e| format!("the checkpoint does not verify: {e}"))?;
    let tree = &vault.index().tree;
    if cp.size > tree.size() {
        return Err(CHECKPOINT_AHEAD.into());
    }
    if tree.root_at(cp.size) != cp.root {
        return Err("the checkpoint does not match the log; run `custody verify`".into());
    }
    // What each witness cosigned last, as stored.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for o in store
        .list(crate::layout::WITNESSED_DIR)
        .map_err(|e| e.to_string())?
    {
        if let Some(size) = crate::layout::parse_witnessed_path(&o.key) {
            for w in witnesses {
                if crate::layout::witnessed_path(size, &w.witness.name) == o.key {
                    let e = last.entry(w.witness.name.clone()).or_default();
                    *e = (*e).max(size);
                }
            }
        }
    }
    let mut out = Collected {
        size: cp.size,
        ..Collected::default()
    };
    // All at once: one unreachable witness costs its timeout once, not
    // once per witness after it.
    let answers: Vec<Asked> = std::thread::scope(|scope| {
        let asking: Vec<_> = witnesses
            .iter()
            .map(|w| {
                let old = last.get(&w.witness.name).copied().unwrap_or(0).min(cp.size);
                let note = &note;
                scope.spawn(move || ask(&w.url, note, tree, cp.size, old))
            })
            .collect();
        asking
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Asked::Failed("asking it failed".into()))
            })
            .collect()
    });
    for (w, answer) in witnesses.iter().zip(answers) {
        match answer {
            Asked::Cosigned(lines) => {
                let mut cosigned = note.to_vec();
                cosigned.extend_from_slice(lines.as_bytes());
                let valid = cosignatures(&cosigned, std::slice::from_ref(&w.witness));
                let Some((_, ts)) = valid.first() else {
                    out.failed.push((
                        w.witness.name.clone(),
                        "answered without a valid cosignature by its key".into(),
                    ));
                    continue;
                };
                let key = crate::layout::witnessed_path(cp.size, &w.witness.name);
                match store.put_once(&key, bytes::Bytes::from(cosigned)) {
                    Ok(_) => out.cosigned.push((w.witness.name.clone(), *ts)),
                    Err(e) => out.failed.push((
                        w.witness.name.clone(),
                        format!("couldn't store its cosignature: {e}"),
                    )),
                }
            }
            Asked::Failed(why) => out.failed.push((w.witness.name.clone(), why)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cosignature verifies over its checkpoint body and timestamp only,
    /// by its key only; the verifier key round-trips.
    #[test]
    fn cosignatures_bind_body_time_and_key() {
        let k = VaultSigner::from_seed("witness.example/t", [5; 32]);
        let w = Witness {
            name: k.name().into(),
            key: k.verifying_key(),
        };
        let back = Witness::parse(&w.vkey()).unwrap();
        assert_eq!(back.key_id(), w.key_id());
        let body = b"log.example/v\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let mut note = body.to_vec();
        note.extend_from_slice(b"\n\xe2\x80\x94 log.example/v AAAA\n");
        let line = cosign(&k, body, 1_700_000_000);
        let mut good = note.clone();
        good.extend_from_slice(line.as_bytes());
        assert_eq!(
            cosignatures(&good, std::slice::from_ref(&w)),
            [(w.name.clone(), 1_700_000_000)]
        );
        // Another body, or another key: nothing.
        let at = good.windows(3).position(|w| w == b"\n3\n").unwrap();
        let mut other = good.clone();
        other[at + 1] = b'4';
        assert!(cosignatures(&other, std::slice::from_ref(&w)).is_empty());
        let stranger = Witness {
            name: w.name.clone(),
            key: VaultSigner::from_seed("witness.example/t", [6; 32]).verifying_key(),
        };
        assert!(cosignatures(&good, &[stranger]).is_empty());
        assert!(Witness::parse("witness.example/t+00000000+AAAA").is_err());
    }
}
