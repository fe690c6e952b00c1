//! `custody witness`: run a witness (C2SP tlog-witness), make its key, and
//! ask a vault's witnesses to cosign its checkpoint (FORMAT.md §10a).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use custody::keys::VaultSigner;
use custody::vault::Vault;
use custody::witness::{Collected, Witness, WitnessServer};

use super::{VaultArg, configured_witnesses, open_store, outln};

pub const AFTER_HELP: &str = "\
Examples:
  custody witness keygen --name witness.example/w1 --key w1.key     prints its verifier key
  custody witness serve --key w1.key --state /var/lib/w1 --listen 0.0.0.0:7380 \\
      --log 'evidence.example/vault+1a2b3c4d+AbC...'               the vault's verifier key (init prints it)
  custody witness catch-up                                         ask the vault's witnesses again

A witness cosigns a vault's checkpoint only when a consistency proof shows it
extends the last checkpoint it cosigned for that vault: it refuses forks and
roll-backs (409), bad proofs (422), unknown logs (404) and checkpoints not
signed by the log's key (403). Its cosignature carries its clock, a bound on
when the segments existed. A vault lists its witnesses in custody.toml:

  witness_quorum = 2
  [[witness]]
  key = \"witness.example/w1+8a7b6c5d+BP...\"
  url = \"http://witness.example:7380\"

`declare` asks them after preserving; one that is down does not stop
preservation, and `verify` requires the quorum on the latest checkpoint
(checkpoint_unwitnessed) until `custody witness catch-up` gets it. After a
rotation of the vault key, restart each witness with the new verifier key
(--log) in place of the old one: a witness that still trusts a rotated-out
key would cosign a thief's extension signed with it.";

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Make a witness key file (0600) and print its verifier key.
    Keygen(KeygenArgs),
    /// Run a witness: cosign checkpoints of the logs it follows (HTTP, C2SP tlog-witness).
    Serve(ServeArgs),
    /// Ask the vault's witnesses to cosign its current checkpoint.
    CatchUp(CatchUpArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The witness's name (a schema-less URL such as witness.example/w1)
    #[arg(long)]
    name: String,
    /// Where to write the key (must not exist)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The witness key file
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Directory of the state: the latest checkpoint cosigned per log
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Address to listen on (plain HTTP; put TLS in front of it)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
    listen: String,
    /// A log to follow: its current checkpoint verifier key (`origin+hash+base64`, as `custody
    /// init` prints it); repeatable for several logs. After a rotation, replace the old key
    #[arg(long = "log", value_name = "VKEY", required = true)]
    logs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CatchUpArgs {
    #[command(flatten)]
    v: VaultArg,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(c: WitnessCommand) -> Result<ExitCode> {
    match c {
        WitnessCommand::Keygen(a) => {
            if !signed_note::is_key_name_valid(&a.name) {
                bail!(
                    "--name {:?} is not a valid key name (no spaces or '+')",
                    a.name
                );
            }
            let k = VaultSigner::generate(&a.name);
            k.save(&a.key)?;
            let w = Witness {
                name: a.name,
                key: k.verifying_key(),
            };
            outln!("{}", w.vkey());
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Serve(a) => serve(a),
        WitnessCommand::CatchUp(a) => catch_up(&a),
    }
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    let key = VaultSigner::load(&a.key)?;
    let mut logs: BTreeMap<String, Vec<ed25519_dalek::VerifyingKey>> = BTreeMap::new();
    for vkey in &a.logs {
        let v = signed_note::StandardVerifier::new(vkey)
            .map_err(|e| anyhow!("--log {vkey:?}: not a note verifier key ({e:?})"))?;
        let name = signed_note::Verifier::name(&v).to_owned();
        let raw = vkey
            .splitn(3, '+')
            .nth(2)
            .and_then(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .filter(|r| r.len() == 33 && r[0] == 0x01)
            .ok_or_else(|| anyhow!("--log {vkey:?}: not an Ed25519 note key"))?;
        let k = ed25519_dalek::VerifyingKey::from_bytes(raw[1..].try_into().expect("32 bytes"))
            .map_err(|_| anyhow!("--log {vkey:?}: not an Ed25519 point"))?;
        logs.entry(name).or_default().push(k);
    }
    let server = WitnessServer::new(key, logs, &a.state)
        .with_context(|| format!("couldn't create the state directory {}", a.state.display()))?;
    eprintln!("custody witness: listening on http://{}", a.listen);
    server
        .serve(&a.listen, |path, status| {
            eprintln!("custody witness: {path} -> {status}");
        })
        .map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the vault's witnesses and says how it went; `Ok(None)` when none
/// is configured.
pub(crate) fn collect_for(
    vault: &Vault,
    cfg: &custody::config::Config,
) -> Result<Option<(Collected, usize)>> {
    let witnesses = configured_witnesses(cfg)?;
    if witnesses.is_empty() {
        return Ok(None);
    }
    let quorum = cfg.witness_quorum.unwrap_or(witnesses.len());
    let got = custody::witness::collect(vault, &witnesses).map_err(|e| anyhow!(e))?;
    Ok(Some((got, quorum)))
}

/// After any append: ask the witnesses (FORMAT.md §10a); say on standard
/// error, loudly, when the quorum is missing (standard output may be JSON).
pub(crate) fn after_append(vault: &Vault, cfg: &custody::config::Config) {
    if let Err(e) = ask_and_say(vault, cfg) {
        eprintln!("custody: warning: witnesses: {e}");
    }
}

/// [`after_append`] for a view of the log that others append to (the
/// service's witness thread): catches `vault` up first, and again when the
/// checkpoint moved past it meanwhile.
pub(crate) fn catch_up_and_ask(vault: &mut Vault, cfg: &custody::config::Config) {
    for _ in 0..3 {
        if let Err(e) = vault.catch_up(&mut |_, _| {}) {
            eprintln!("custody: warning: witnesses not asked: {e}");
            return;
        }
        match ask_and_say(vault, cfg) {
            Err(e) if e.to_string() == custody::witness::CHECKPOINT_AHEAD => {}
            Err(e) => {
                eprintln!("custody: warning: witnesses: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
    eprintln!(
        "custody: warning: witnesses not asked this round (the log kept growing); the next append asks them"
    );
}

/// Asks the witnesses; says loudly when the quorum is missing.
fn ask_and_say(vault: &Vault, cfg: &custody::config::Config) -> Result<()> {
    if let Some((got, quorum)) = collect_for(vault, cfg)?
        && got.cosigned.len() < quorum
    {
        let _ = say(&got, quorum, &mut std::io::stderr());
    }
    Ok(())
}

/// One line per witness outcome, and a loud one when the quorum is missing.
pub(crate) fn say(
    got: &Collected,
    quorum: usize,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    for (name, ts) in &got.cosigned {
        writeln!(
            out,
            "witness    {name} cosigned checkpoint {} at {ts}",
            got.size
        )?;
    }
    for (name, why) in &got.failed {
        writeln!(out, "witness    {name} did not cosign: {why}")?;
    }
    if got.cosigned.len() < quorum {
        writeln!(
            out,
            "WARNING    checkpoint {} is NOT witnessed: {} of {quorum} cosignatures; the evidence is preserved; run `custody witness catch-up` later",
            got.size,
            got.cosigned.len()
        )?;
    }
    Ok(())
}

fn catch_up(a: &CatchUpArgs) -> Result<ExitCode> {
    let (store, cfg) = open_store(&a.v)?;
    let vault = Vault::open(store)?;
    let Some((got, quorum)) = collect_for(&vault, &cfg)? else {
        bail!(
            "no witnesses configured: add [[witness]] tables to custody.toml (see `custody witness --help`)"
        );
    };
    if a.json {
        let out = serde_json::json!({
            "size": got.size, "quorum": quorum,
            "cosigned": got.cosigned.iter().map(|(n, t)| serde_json::json!({"witness": n, "at": t})).collect::<Vec<_>>(),
            "failed": got.failed.iter().map(|(n, w)| serde_json::json!({"witness": n, "why": w})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        say(&got, quorum, &mut std::io::stdout())?;
    }
    Ok(if got.cosigned.len() >= quorum {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
