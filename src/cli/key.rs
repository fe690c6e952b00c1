//! `custody key`: the vault's own signing keys (FORMAT.md §5 (key
//! lifecycle)): rotate, revoke, list.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use custody::keys::{KeyState, VaultSigner};
use custody::segment::{Entry, KeyRevoked, KeyRotated};
use custody::time::Time;
use custody::vault::Vault;

use super::incident::ActorArgs;
use super::{VaultArg, open_store, outln, resolve_key};

pub const AFTER_HELP: &str = "\
Examples:
  custody key list
  custody key rotate --reason 'yearly rotation'          writes the new key file, prints its path
  custody key revoke 3a7f... --compromised-since 2025-04-01T00:00:00+09:00 \\
      --reason 'key copied by a former engineer'

A rotation is one segment signed by the current key and the new one; later
segments must be signed by the new key, and `verify` reports any segment the
old key signs after it (segment_retired_key). A revocation, signed by a valid
key other than the one revoked, states since when the key is in other hands:
`verify` then reports every segment that key alone signed with a seal time at
or after that (signed_in_compromise_window), unless a checkpoint saved before
(`verify --trusted`) covers it. The current key cannot be revoked: rotate
first, then revoke the old key. Point custody.toml's `key` (or CUSTODY_KEY) at
the new key file after a rotation.";

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Rotate the vault's signing key: the rotation is signed by the old and the new key.
    Rotate(RotateArgs),
    /// Revoke a vault key, stating since when it is to be taken as compromised.
    Revoke(RevokeArgs),
    /// List the vault's keys with the segments each may sign and their status.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
    /// Where to write the new key file (mode 0600; must not exist) [default: beside the current
    /// key, named after the origin and the new key id]
    #[arg(long, value_name = "FILE")]
    new_key: Option<PathBuf>,
    /// Why the key is rotated
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Encrypt the new key file with a passphrase (age, scrypt), from CUSTODY_NEW_KEY_PASSPHRASE
    /// (never the old key's CUSTODY_KEY_PASSPHRASE) or asked twice on the terminal
    #[arg(long)]
    encrypt_key: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Key id (hex) of the key to revoke, as `custody key list` shows it
    #[arg(value_name = "KEY-ID")]
    key_id: String,
    /// Since when the key is to be taken as in other hands (RFC 3339)
    #[arg(long, value_name = "TIME")]
    compromised_since: String,
    /// Why
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    v: VaultArg,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(c: KeyCommand) -> Result<ExitCode> {
    match c {
        KeyCommand::Rotate(a) => rotate(a),
        KeyCommand::Revoke(a) => revoke(a),
        KeyCommand::List(a) => list(&a),
    }
}

fn rotate(a: RotateArgs) -> Result<ExitCode> {
    let (store, cfg) = open_store(&a.v)?;
    let mut vault = Vault::open(store)?;
    let origin = vault.root().genesis.origin.clone();
    let (old, old_path) = resolve_key(a.actor.key.clone(), &cfg, &origin)?;
    vault.check_signer(&old)?;
    let new = VaultSigner::generate(&origin);
    let new_path = match a.new_key {
        Some(p) => p,
        None => {
            let dir = old_path
                .parent()
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            let stem = old_path
                .file_stem()
                .map_or_else(|| "vault".into(), |s| s.to_string_lossy().into_owned());
            let id = new.key_id().to_string();
            dir.join(format!("{stem}.{}.key", id.get(..8).unwrap_or(&id)))
        }
    };
    // The new key is on disk (fsynced) before the log names it: a crash in
    // between leaves an unused key file, never a vault whose key is lost.
    // Never the old key's passphrase from the environment: after a theft
    // the thief may know it.
    super::save_key(&new, &new_path, a.encrypt_key, "CUSTODY_NEW_KEY_PASSPHRASE")
        .with_context(|| format!("couldn't write the new key to {}", new_path.display()))?;
    let entry = Entry::KeyRotated(KeyRotated {
        old: old.key_id().to_string(),
        new: new.public(),
        reason: a.reason.clone(),
        at: Time::now(),
        actor: a.actor.actor()?,
    });
    let appended = vault.append_signed(&[&old, &new], vec![entry], Time::now)?;
    // The witnesses follow the old key until told of the new one: they
    // refuse this checkpoint (403) until then, and catch-up asks again.
    super::witness::after_append(&vault, &cfg);
    if a.json {
        let out = serde_json::json!({
            "segment": appended.seq, "old": old.key_id().to_string(),
            "new": new.key_id().to_string(), "new_key_file": new_path,
            "checkpoint": {"size": appended.size, "root": appended.root},
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "key {} rotated out in segment {}; key {} signs from now on",
            old.key_id(),
            appended.seq,
            new.key_id()
        );
        outln!("new key file  {}", new_path.display());
        outln!(
            "next         point `key` in custody.toml (or CUSTODY_KEY) at the new file; keep the old one offline or destroy it"
        );
        if let Some(e) = &appended.checkpoint_error {
            outln!("warning      the checkpoint was not updated: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(a: RevokeArgs) -> Result<ExitCode> {
    let since = Time::parse(&a.compromised_since)
        .map_err(|e| anyhow::anyhow!("--compromised-since: {e}"))?;
    let (store, cfg) = open_store(&a.v)?;
    let mut vault = Vault::open(store)?;
    let origin = vault.root().genesis.origin.clone();
    let (signer, _) = resolve_key(a.actor.key.clone(), &cfg, &origin)?;
    vault.check_signer(&signer)?;
    let ring = &vault.root().keyring;
    let Some(state) = ring.states().iter().find(|s| s.id.to_string() == a.key_id) else {
        bail!(
            "key {} is not a key of this vault; `custody key list` shows them",
            a.key_id
        );
    };
    if state.until.is_none() {
        bail!(
            "key {} is the current key: rotate first (`custody key rotate`), then revoke it",
            a.key_id
        );
    }
    if state.revoked.is_some() {
        bail!("key {} is already revoked", a.key_id);
    }
    let entry = Entry::KeyRevoked(KeyRevoked {
        key: a.key_id.clone(),
        compromised_since: since.clone(),
        reason: a.reason.clone(),
        at: Time::now(),
        actor: a.actor.actor()?,
    });
    let appended = vault.append(&signer, vec![entry], Time::now)?;
    super::witness::after_append(&vault, &cfg);
    if a.json {
        let out = serde_json::json!({
            "segment": appended.seq, "key": a.key_id, "compromised_since": since,
            "checkpoint": {"size": appended.size, "root": appended.root},
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "key {} revoked in segment {}, compromised since {since}",
            a.key_id,
            appended.seq
        );
        outln!("next         run `custody verify` to see every segment it signed since then");
    }
    Ok(ExitCode::SUCCESS)
}

fn status(s: &KeyState) -> String {
    match (&s.revoked, s.until) {
        (Some(r), _) => format!(
            "revoked in segment {} (compromised since {}: {})",
            r.seq, r.compromised_since, r.reason
        ),
        (None, Some(u)) => format!("retired (rotated out in segment {u})"),
        (None, None) => "current".into(),
    }
}

fn list(a: &ListArgs) -> Result<ExitCode> {
    let (store, _) = open_store(&a.v)?;
    let vault = Vault::open(store)?;
    let ring = &vault.root().keyring;
    if a.json {
        let keys: Vec<_> = ring
            .states()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id.to_string(), "public": s.public.public,
                    "from_segment": s.from, "until_segment": s.until,
                    "status": if s.revoked.is_some() { "revoked" } else if s.until.is_some() { "retired" } else { "current" },
                    "compromised_since": s.revoked.as_ref().map(|r| r.compromised_since.clone()),
                    "revoked_in_segment": s.revoked.as_ref().map(|r| r.seq),
                    "reason": s.revoked.as_ref().map(|r| r.reason.clone()),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(ExitCode::SUCCESS);
    }
    for s in ring.states() {
        let until = s.until.map_or_else(|| "now".to_string(), |u| u.to_string());
        outln!("{}  segments {}..={until}  {}", s.id, s.from, status(s));
    }
    Ok(ExitCode::SUCCESS)
}
