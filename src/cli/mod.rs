//! Command-line definitions and one function per command: call the library,
//! print. No format logic lives here.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use custody::config::{self, Config};
use custody::hash::Sha256Digest;
use custody::keys::{KeyError, VaultSigner};
use custody::preserve::{self, Declaration, DeclareError};
use custody::progress::{Progress, human_bytes as human};
use custody::segment::{Artifact, Entry, SourceKind, SourceSpec, Status};
use custody::store::{self, Store};
use custody::time::Time;
use custody::vault::{InitOptions, Vault, VaultError};
use custody::verify::{self, Severity};

mod agent;
mod case;
mod incident;
mod key;
mod keys;
mod manifest;
mod report;
mod serve;
mod tls;
mod webhook;
mod witness;

use incident::{ActorArgs, Session, subject};

/// `println!` that returns a broken pipe (`custody log | head`) as an error
/// instead of panicking; `main` turns it into a quiet exit.
macro_rules! outln {
    ($($t:tt)*) => {
        writeln!(std::io::stdout(), $($t)*)?
    };
}
pub(crate) use outln;

const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  findings (verify), or some artifacts partial or failed (declare; they are recorded)
  2  could not run (bad arguments, no vault, unreadable key, storage failure)";

/// custody: a tamper-evident evidence vault.
///
/// When an incident is declared, custody preserves logs, command output and key
/// material into an append-only vault, seals them into hash-chained,
/// Ed25519-signed segments under an RFC 6962 Merkle log, and lets anyone verify
/// later, offline, that the evidence is complete and unaltered.
#[derive(Debug, Parser)]
#[command(name = "custody", version, after_help = EXIT_STATUS, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a vault: genesis segment, first checkpoint, and a signing key kept outside it.
    Init(InitArgs),
    /// Declare an incident and preserve every configured source into the vault.
    #[command(after_help = "\
Examples:
  custody declare INC-2026-001 --title 'Forged login tokens' --severity sev1 \\
      --path /var/log/nginx/ --path '/var/log/auth.log*' \\
      --command 'journalctl -o export --since -30d'
  custody declare INC-2026-001 --title 'Forged login tokens' --config /etc/custody/custody.toml
  custody declare INC-2026-001 --title 'Forged login tokens' --keys /etc/app/keys/ \
      --seal-to age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p

The declaration is sealed into the vault before any source is read. Every item
becomes an artifact: complete, partial (it changed while read; the reason is
recorded) or failed (with the error); nothing is skipped silently. Declaring a
known incident again preserves again under it: every file is read again, and
one that is, chunk for chunk, what its path's last artifact holds keeps that
artifact's digests without being hashed whole again. Symbolic links are
recorded as links; the vault itself and its signing key are never preserved. Key files
(--keys, `keys` sources) are described key by key (fingerprints, and a
commitment for a private key); a file holding private keys is never stored in
clear: withheld, or sealed with age to the --seal-to recipients (see `custody
keys --help`).

Exit status:
  0  every artifact and key file complete
  1  some artifacts or key files partial or failed, or a checkpoint update failed (all recorded)
  2  could not run (no vault, bad key or config, storage failure)")]
    Declare(Box<DeclareArgs>),
    /// Check the whole vault and report every finding.
    #[command(after_help = "\
Phases: segments (genesis, signatures, chain), checkpoint (signature, size,
root), packs (exist, magic, hash), content (every chunk decompresses within
its declared size and re-hashes; every artifact re-hashes to its BLAKE3 and
SHA-256, the content of artifacts with the same chunks hashed once), holds
(every object a hold in place covers is protected by the store: an S3 legal
hold, or a read-only file). Without --vault-id, verify proves the vault
self-consistent only: pin the vault id printed by `custody init` to prove it
is the vault you expect.

Exit status:
  0  no damage (information findings, such as unreferenced packs, may exist)
  1  damage found, or a held object is not protected: every finding is listed
  2  verification could not run")]
    Verify(VerifyArgs),
    /// Print the latest signed checkpoint (a C2SP signed note), to save and pin later.
    #[command(after_help = "\
Save it outside the vault, then prove later that nothing it covers was removed
or rewritten:
  custody checkpoint --vault V > pinned.checkpoint
  custody verify --vault V --vault-id ID --trusted pinned.checkpoint")]
    Checkpoint(CheckpointArgs),
    /// Write a proof that an incident's segments are in the log at the current checkpoint.
    #[command(after_help = "\
The proof is a JSON document (FORMAT.md §13a): the genesis segment, the signed
checkpoint, and for each segment its bytes, leaf index and RFC 6962 audit path.
Anyone can check it offline:
  custody prove INC-1 /var/log/auth.log --out auth.proof.json
  custody verify-proof auth.proof.json --vault-id <the id init printed>")]
    Prove(ProveArgs),
    /// Check an inclusion proof offline, against the vault id or the vault's public key.
    #[command(after_help = "\
Exit status:
  0  the proof checks out: the segments are in the vault's log at the signed checkpoint
  1  it does not (the reason is printed)
  2  could not run (unreadable file, bad arguments)")]
    VerifyProof(VerifyProofArgs),
    /// Write a self-contained bundle of an incident for an auditor (tar).
    #[command(after_help = "\
The bundle holds an inclusion proof of the incident's segments (with the vault's
genesis and signed checkpoint), the chunks of its artifacts (each one zstd
frame of that chunk alone: a chunk the vault stores in a frame shared with
other small files is compressed on its own), and a README. Every chunk is
checked before it is written. The auditor needs only
the bundle and the vault id, given to them separately:
  custody export INC-1 --out inc-1.tar
  custody verify-bundle inc-1.tar --vault-id <ID> --extract inc-1/")]
    Export(ExportArgs),
    /// Check an auditor's bundle offline and optionally extract its artifacts.
    #[command(after_help = "\
Nothing but the bundle and the vault id (or the verifier key) is needed. With
--extract DIR every artifact that checks out is written to DIR with SHA256SUMS
and B3SUMS, so `sha256sum -c SHA256SUMS` confirms the files independently.
Hostile archives (paths with .., absolute paths, links, oversized entries)
are refused.

Exit status:
  0  every artifact in the bundle checks out
  1  the proof or an artifact does not (the reason is printed)
  2  could not run (unreadable file, bad arguments)")]
    VerifyBundle(VerifyBundleArgs),
    /// List segments and their entries, oldest first.
    Log(LogArgs),
    /// Show an incident: declaration, preservation runs, artifacts with digests and status.
    Show(ShowArgs),
    /// Restore one artifact byte for byte to standard output, checking every chunk.
    #[command(after_help = "\
Example:
  custody cat INC-1 /var/log/auth.log > auth.log && sha256sum auth.log
The digests printed by `custody show` must match. If any chunk or the whole
fails its check, cat stops with exit status 1: the output is then not evidence.")]
    Cat(CatArgs),
    /// Write a signed manifest of an incident (in-toto Statement v1 in a DSSE envelope).
    #[command(after_help = "\
The subjects are the incident's artifacts (name, sha256 and blake3 digests,
size); the predicate holds the declaration, every lifecycle entry and custody
event, per-source coverage, failures, the regulatory clocks, the checkpoint and
an inclusion proof of every segment involved. Sealing appends a
manifest_sealed entry, so an incident's manifests chain. Anyone checks it
offline with `custody verify-manifest FILE --vault-id ID`, or with any DSSE
implementation and sha256sum (see the README).")]
    Manifest(manifest::ManifestArgs),
    /// Check a manifest offline against the vault id or the vault's public key.
    #[command(after_help = "\
Exit status:
  0  the manifest checks out: signed by the vault key, and its subjects and
     record are exactly what the proven segments say
  1  it does not (the reason is printed)
  2  could not run (unreadable file, bad arguments)")]
    VerifyManifest(manifest::VerifyManifestArgs),
    /// Render an incident's chain of custody as a readable report (Markdown, or one HTML file).
    #[command(after_help = report::AFTER_HELP)]
    Report(report::ReportArgs),
    /// Probe what the storage backend really enforces (create-once, compare-and-swap, retention).
    #[command(after_help = "\
Writes canary objects under doctor/ in the vault and checks that a second
create of a key is refused, that the checkpoint pointer's compare-and-swap
refuses a stale ETag, and whether the backend itself refuses overwrites and
deletes. On S3 it also puts a canary under legal hold and tries to delete
its version for good (legal_hold), then lifts the hold and tries again under
the bucket's default retention (retention). Several S3-compatible servers
accept these settings without enforcing them. The result is recorded in the
log (backend_probed) when a signing key is at hand; writers follow it.

Exit status:
  0  several writers may append safely (create-once and compare-and-swap hold)
  1  they may not: use one writer at a time (the reason is printed)
  2  could not run")]
    Doctor(DoctorArgs),
    /// Record an incident's lifecycle: orders, holds, filings, facts, notes, transfers, closure.
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// Write an incident's record as CASE/UCO JSON-LD (CASE 1.5.0), recording the export first.
    #[command(after_help = "\
Example:
  custody export-case INC-1 --out inc-1.jsonld --to auditor --purpose 'court filing'
  case_validate inc-1.jsonld     (pip install case-utils==0.18.0)

The export is recorded as an `exported` custody event first, so the graph
carries it. Runs and custody events become investigative actions, orders
authorizations, artifacts observables (with SHA-256) and provenance records.
The same vault always exports the same node ids.")]
    ExportCase(case::ExportCaseArgs),
    /// Witnesses: run one, make its key, ask the vault's witnesses to cosign.
    #[command(subcommand, after_help = witness::AFTER_HELP)]
    Witness(witness::WitnessCommand),
    /// Serve the vault over gRPC (proto/custody/v1) to agents, incident tools and auditors.
    #[command(after_help = "\
Roles come from the config's [serve] table: client certificates by subject CN
([[serve.client]]) and bearer tokens by SHA-256 ([[serve.token]], made with
`custody serve hash-token`). auditor reads and verifies; declarer also declares
and records the lifecycle; agent preserves for declared incidents; admin may do
everything. Every write names its caller as actor; every read is recorded as a
custody event before it is answered, and so is every pack an agent sends
(`received`). Refused calls are logged on stderr.

Example custody.toml:
  vault = \"/srv/custody/vault\"
  key = \"/etc/custody/vault.key\"
  [serve]
  listen = \"0.0.0.0:7700\"
  tls_cert = \"server.pem\"
  tls_key = \"server.key\"
  client_ca = \"clients-ca.pem\"
  webhook_listen = \"127.0.0.1:7701\"
  webhook_timeout_secs = 10   # for a request's headers, then its body
  [[serve.client]]
  name = \"agent-web01\"
  role = \"agent\"
  [[serve.token]]
  name = \"soc-declarer\"
  sha256 = \"<custody serve hash-token>\"
  role = \"declarer\"
  [[serve.webhook]]
  name = \"pagerduty\"
  kind = \"pagerduty\"
  secret_file = \"pagerduty.secret\"
  priorities = [\"P1\", \"P2\"]")]
    Serve(serve::ServeArgs),
    /// Preserve this host's sources for every incident the server declares, and stream them to it.
    #[command(after_help = "\
The agent watches the server's declarations. For each one it preserves the
[[source]]s of its config through the same pipeline as `custody declare`, into
a local spool, and sends packs and artifact entries to the server, which
re-hashes everything before sealing it; a difference is recorded as a failed
artifact. The agent hashes the content of files with BLAKE3 only; the server
computes and records their SHA-256 from what it received. After a disconnect
it resumes without sending again what the server holds. Its own key and token
files are never preserved.

Follow mode: while an incident is on hold, the agent keeps its run open and
every follow_secs (default 60) captures what its files appended, as pieces
with an offset; a file renamed within its source is followed under its new
name, one rotated away is read to its end, one truncated in place is recorded
as partial. Releasing the hold, or SIGTERM, ends the run. Where following got
to is kept in the spool: an agent started again (after SIGTERM, a crash or a
reboot) follows on from there in a new run, and finishes the run a killed
agent left open. One agent per spool.

Example custody.toml:
  collector = \"agent-web01\"
  [agent]
  server = \"https://custody.example:7700\"
  ca = \"ca.pem\"
  cert = \"agent-web01.pem\"
  key = \"agent-web01.key\"
  spool = \"/var/lib/custody/agent\"
  follow_secs = 60
  [[source]]
  name = \"nginx\"
  kind = \"files\"
  paths = [\"/var/log/nginx/\"]")]
    Agent(agent::AgentArgs),
    /// The vault's own signing keys: rotate, revoke, list.
    #[command(subcommand, after_help = key::AFTER_HELP)]
    Key(key::KeyCommand),
    /// Key snapshots: list one with its findings, diff two, or inspect local key files.
    #[command(after_help = keys::AFTER_HELP)]
    Keys(keys::KeysArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VaultArg {
    /// Vault location: a directory, a file:// URL or s3://bucket/prefix [default: from custody.toml]
    #[arg(long, env = "CUSTODY_VAULT", value_name = "URL")]
    vault: Option<String>,
    /// Config file [default: ./custody.toml if it exists]
    #[arg(long, env = "CUSTODY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    v: VaultArg,
    /// Log name for checkpoints and the key (no spaces or '+') [default: custody/<host>/<random>]
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// Where to write the new signing key (mode 0600, outside the vault); an existing key file is used as is
    /// [default: ~/.config/custody/keys/<origin>.key]
    #[arg(long, env = "CUSTODY_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Encrypt the new key file with a passphrase (age, scrypt), from CUSTODY_KEY_PASSPHRASE or
    /// asked twice on the terminal; every command that signs then needs the passphrase
    #[arg(long)]
    encrypt_key: bool,
    /// s3:// only: create the bucket if it does not exist, with Object Lock when --object-lock is
    /// given (S3 enables Object Lock only when a bucket is created)
    #[arg(long)]
    create_bucket: bool,
    /// s3:// only: set the bucket's default retention, so that every object version custody
    /// writes is kept --retention-days: governance (users with s3:BypassGovernanceRetention may
    /// still delete) or compliance (nobody may, not even the account's root user)
    #[arg(long, value_name = "MODE", value_parser = ["governance", "compliance"], requires = "retention_days")]
    object_lock: Option<String>,
    /// Days of the default retention (with --object-lock)
    #[arg(long, value_name = "DAYS", requires = "object_lock", value_parser = clap::value_parser!(u32).range(1..=36500))]
    retention_days: Option<u32>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DeclareArgs {
    /// Incident id (letters, digits, - _ . : #), for example INC-2026-001
    incident: String,
    /// Short title of the incident
    #[arg(long)]
    title: String,
    /// Severity, free form (for example sev1)
    #[arg(long)]
    severity: Option<String>,
    /// When the incident was discovered (RFC 3339 with offset, e.g. 2026-11-27T21:14:00Z)
    #[arg(long, value_name = "RFC3339")]
    discovered_at: Option<String>,
    /// Who declares it [default: the OS user]
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// What happened, as known now
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// How it was detected (alert, tool, person)
    #[arg(long, value_name = "TEXT")]
    detection_source: Option<String>,
    /// A regulatory regime whose clocks apply (kr-network-act, gdpr, nis2, sec-8k, hipaa); repeatable;
    /// added to `regimes` in custody.toml
    #[arg(long = "regime", value_name = "ID")]
    regimes: Vec<String>,
    #[command(flatten)]
    v: VaultArg,
    /// Signing key file [default: from custody.toml, else ~/.config/custody/keys/<origin>.key]
    #[arg(long, env = "CUSTODY_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// A file, directory (recursive) or glob to preserve; repeatable
    #[arg(long = "path", value_name = "P")]
    paths: Vec<String>,
    /// A file, directory or glob of key material (JWKS, PEM, DER, OpenSSH): each key is recorded
    /// by its public part, fingerprints and, for a private key, a commitment; files holding
    /// private keys are not stored unless --seal-to is given; repeatable
    #[arg(long = "keys", value_name = "P")]
    keys: Vec<String>,
    /// An age recipient (age1...) that key files holding private keys, encrypted keys or
    /// unrecognised content are sealed to, so that only its identity can read them; repeatable
    #[arg(long = "seal-to", value_name = "RECIPIENT")]
    seal_to: Vec<String>,
    /// A command whose standard output is preserved, e.g. 'journalctl -o export'; repeatable
    #[arg(long = "command", value_name = "CMD ARGS")]
    commands: Vec<String>,
    /// Seconds each --command may run before it is killed and recorded as failed [default: 3600]
    #[arg(long, value_name = "SECS")]
    command_timeout: Option<u64>,
    /// Exclude glob for --path (matched against the full path and the file name); repeatable
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Collector name recorded on artifacts [default: from custody.toml, else the host name]
    #[arg(long)]
    collector: Option<String>,
    /// No progress display
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    v: VaultArg,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Skip re-reading content: check signatures, chain, checkpoint and that packs exist
    #[arg(long, alias = "no-read-data")]
    quick: bool,
    /// The vault id you recorded at init: verify fails unless the genesis matches it
    #[arg(long, value_name = "HEX")]
    vault_id: Option<String>,
    /// A checkpoint you saved earlier (`custody checkpoint > FILE`): verify fails unless the
    /// log is an append-only extension of it (nothing it covered removed or rewritten)
    #[arg(long, value_name = "FILE")]
    trusted: Option<PathBuf>,
    /// Do not record the verification in the vault (read-only copies, frequent scheduled runs)
    #[arg(long)]
    no_record: bool,
    /// A witness whose cosignatures count (its verifier key); repeatable [default: the
    /// [[witness]] tables of custody.toml]
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many witnesses must cosign the latest checkpoint [default: witness_quorum of
    /// custody.toml, else all of them]
    #[arg(long, value_name = "N")]
    quorum: Option<usize>,
    #[command(flatten)]
    actor: ActorArgs,
    /// No progress display
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct CheckpointArgs {
    #[command(flatten)]
    v: VaultArg,
    /// Print size, root and the note as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ProveArgs {
    /// Incident id
    incident: String,
    /// Only the segments holding this artifact path [default: every segment of the incident]
    path: Option<String>,
    /// Write the proof here [default: standard output]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    v: VaultArg,
}

#[derive(Debug, Args)]
struct VerifyProofArgs {
    /// The proof file written by `custody prove`
    proof: PathBuf,
    /// The vault id recorded at init
    #[arg(long, value_name = "HEX")]
    vault_id: Option<String>,
    /// The vault's public key as a C2SP note verifier key (origin+hash+base64)
    #[arg(long, value_name = "KEY")]
    pubkey: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Incident id
    incident: String,
    /// The bundle to write (a tar file; refused if it exists)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Who receives the bundle (recorded in the custody event)
    #[arg(long, value_name = "RECIPIENT")]
    to: String,
    /// Why it is exported, or under which authorisation (recorded)
    #[arg(long, value_name = "WHY")]
    purpose: String,
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
struct VerifyBundleArgs {
    /// The bundle written by `custody export`
    bundle: PathBuf,
    /// The vault id, as given to you separately
    #[arg(long, value_name = "HEX")]
    vault_id: Option<String>,
    /// The vault's public key as a C2SP note verifier key (origin+hash+base64)
    #[arg(long, value_name = "KEY")]
    pubkey: Option<String>,
    /// Write the artifacts that check out here (a new or empty directory), with SHA256SUMS
    /// and B3SUMS
    #[arg(long, value_name = "DIR")]
    extract: Option<PathBuf>,
    /// The incident you expect: artifacts of any other incident fail the check
    #[arg(long)]
    incident: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DoctorArgs {
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
    /// Print the probes as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LogArgs {
    #[command(flatten)]
    v: VaultArg,
    /// One JSON object per segment (the signed payload), one per line
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Incident id
    incident: String,
    #[command(flatten)]
    v: VaultArg,
    /// Why the record is read (recorded in the custody event)
    #[arg(long, value_name = "WHY")]
    purpose: Option<String>,
    #[command(flatten)]
    actor: ActorArgs,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CatArgs {
    /// Incident id
    incident: String,
    /// The artifact's path as shown by `custody show` (or a command line)
    path: String,
    /// Preservation run to take it from [default: the latest]
    #[arg(long)]
    run: Option<String>,
    /// Why the evidence is read, or under which authorisation (recorded in the custody event)
    #[arg(long, value_name = "WHY")]
    purpose: String,
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init(a) => init(a),
        Command::Declare(a) => declare(*a),
        Command::Verify(a) => verify_cmd(a),
        Command::Checkpoint(a) => checkpoint_cmd(a),
        Command::Prove(a) => prove_cmd(a),
        Command::VerifyProof(a) => verify_proof_cmd(a),
        Command::Export(a) => export_cmd(a),
        Command::VerifyBundle(a) => verify_bundle_cmd(a),
        Command::Log(a) => log_cmd(a),
        Command::Show(a) => show(a),
        Command::Cat(a) => cat(a),
        Command::Incident(c) => incident::run(c),
        Command::Doctor(a) => doctor_cmd(a),
        Command::Manifest(a) => manifest::manifest_cmd(a),
        Command::VerifyManifest(a) => manifest::verify_manifest_cmd(a),
        Command::Report(a) => report::report_cmd(a),
        Command::ExportCase(a) => case::export_case_cmd(a),
        Command::Keys(a) => keys::keys_cmd(a),
        Command::Key(c) => key::run(c),
        Command::Witness(c) => witness::run(c),
        Command::Serve(a) => serve::run(a),
        Command::Agent(a) => agent::run(a),
    }
}

/// One line of advice for errors a person can fix.
pub fn advice(e: &anyhow::Error) -> Option<&'static str> {
    for cause in e.chain() {
        if let Some(v) = cause.downcast_ref::<VaultError>() {
            return match v {
                VaultError::NotAVault { .. } => {
                    Some("check --vault, or create a vault with `custody init --vault DIR`")
                }
                VaultError::Damaged { .. } => {
                    Some("run `custody verify` to see every finding; nothing was written")
                }
                VaultError::ForeignKey { .. } => {
                    Some("use the key file written by `custody init` for this vault")
                }
                _ => None,
            };
        }
        if let Some(k) = cause.downcast_ref::<KeyError>() {
            return match k {
                KeyError::Permissions { .. } => {
                    Some("key files must be readable by their owner only")
                }
                KeyError::Io { .. } => Some(
                    "pass the signing key with --key or CUSTODY_KEY, or set `key` in custody.toml",
                ),
                _ => None,
            };
        }
    }
    None
}

fn load_config(v: &VaultArg) -> Result<Config> {
    let path = match &v.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("custody.toml")).filter(|p| p.exists()),
    };
    match path {
        Some(p) => Ok(Config::load(&p)?),
        None => Ok(Config::default()),
    }
}

fn vault_location(v: &VaultArg, cfg: &Config) -> Result<String> {
    v.vault
        .clone()
        .or_else(|| cfg.vault.clone())
        .ok_or_else(|| anyhow!("no vault given: pass --vault DIR, set CUSTODY_VAULT, or set `vault` in custody.toml"))
}

pub(crate) fn open_store(v: &VaultArg) -> Result<(Store, Config)> {
    let cfg = load_config(v)?;
    let loc = vault_location(v, &cfg)?;
    let store =
        Store::open_with(&loc, &cfg.s3.clone().unwrap_or_default()).map_err(|e| match e {
            store::StoreError::Location { .. }
                if store::local_dir(&loc).is_ok_and(|d| !d.exists()) =>
            {
                anyhow::Error::from(VaultError::NotAVault {
                    location: loc.clone(),
                })
            }
            e => e.into(),
        })?;
    let single = cfg.single_writer.unwrap_or(false)
        || std::env::var("CUSTODY_SINGLE_WRITER").is_ok_and(|v| v == "1" || v == "true");
    store.set_single_writer(single);
    Ok((store, cfg))
}

fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn os_user() -> String {
    std::env::var("SUDO_USER")
        .ok()
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| format!("uid:{}", nix::unistd::getuid()))
}

fn default_key_path(origin: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set: pass --key"))?;
    let name: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(base
        .join("custody")
        .join("keys")
        .join(format!("{name}.key")))
}

fn random_hex(n: usize) -> String {
    use rand::RngCore as _;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn init(a: InitArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.v)?;
    let loc = vault_location(&a.v, &cfg)?;
    let s3 = cfg.s3.clone().unwrap_or_default();
    // A local vault is a directory (created here); an s3:// vault is a
    // bucket and prefix that must exist and hold nothing.
    let dir = if loc.starts_with("s3://") {
        None
    } else {
        let d = store::local_dir(&loc)?;
        Some(std::path::absolute(&d).with_context(|| format!("couldn't resolve {}", d.display()))?)
    };
    let shown = dir
        .as_ref()
        .map_or(loc.clone(), |d| d.display().to_string());
    let lock_mode = match a.object_lock.as_deref() {
        Some("compliance") => Some(custody::s3::LockMode::Compliance),
        Some(_) => Some(custody::s3::LockMode::Governance),
        None => None,
    };
    if dir.is_some() && (a.create_bucket || lock_mode.is_some()) {
        bail!(
            "--create-bucket and --object-lock apply to s3:// vaults only; on a local vault a hold makes files read-only (custody incident hold)"
        );
    }
    if dir.is_none() && a.create_bucket {
        let store = Store::open_with(&loc, &s3)?;
        let created = store.create_bucket(lock_mode.is_some())?;
        eprintln!(
            "bucket {}: {}",
            loc.trim_start_matches("s3://")
                .split('/')
                .next()
                .unwrap_or_default(),
            match (created, lock_mode.is_some()) {
                (true, true) => "created with Object Lock",
                (true, false) => "created",
                (false, _) => "already exists and is yours; left as it is",
            }
        );
    }
    if dir.as_ref().is_none_or(|d| d.exists()) {
        let store = Store::open_with(&loc, &s3)?;
        let objects: Vec<_> = store
            .list("")?
            .into_iter()
            .filter(|o| o.key != "checkpoint.lock" && !o.key.starts_with(custody::doctor::PREFIX))
            .collect();
        if let Some(first) = objects.first() {
            let what = if objects.iter().any(|o| o.key.starts_with("segments/")) {
                "a custody vault".into()
            } else {
                format!("other data ({})", first.key)
            };
            return Err(VaultError::AlreadyExists {
                location: shown,
                what,
            }
            .into());
        }
    }
    let key_arg = a.key.clone().or(cfg.key.clone());
    let existing = key_arg.as_ref().filter(|k| k.exists());
    let (signer, key_path, created_key) = if let Some(k) = existing {
        let signer = VaultSigner::load(k)?;
        if let Some(o) = &a.origin {
            if o != signer.name() {
                bail!(
                    "key file {} is named {:?}, not the requested origin {o:?}",
                    k.display(),
                    signer.name()
                );
            }
        }
        (signer, k.clone(), false)
    } else {
        let origin = match &a.origin {
            Some(o) => o.clone(),
            None => {
                let host: String = host_name()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
                    .collect();
                format!(
                    "custody/{}/{}",
                    if host.is_empty() { "host" } else { &host },
                    random_hex(4)
                )
            }
        };
        if !signed_note::is_key_name_valid(&origin) {
            bail!("origin {origin:?} must be non-empty without spaces or '+'");
        }
        let path = match key_arg {
            Some(k) => k,
            None => default_key_path(&origin)?,
        };
        (VaultSigner::generate(&origin), path, true)
    };
    let key_abs = std::path::absolute(&key_path)?;
    if let Some(dir) = dir.as_ref().filter(|d| key_abs.starts_with(d)) {
        bail!(
            "the key file {} would be inside the vault {}: keep it elsewhere (--key)",
            key_abs.display(),
            dir.display()
        );
    }
    // The key is durable before the genesis that names it.
    if created_key {
        save_key(
            &signer,
            &key_path,
            a.encrypt_key,
            custody::keys::PASSPHRASE_ENV,
        )?;
    } else if a.encrypt_key {
        bail!(
            "--encrypt-key applies to a new key file, and {} exists",
            key_path.display()
        );
    }
    let store = match &dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("couldn't create {}", dir.display()))?;
            Store::open(&dir.to_string_lossy())?
        }
        None => Store::open_with(&loc, &s3)?,
    };
    // The default retention is set before the first object is written, so
    // that the genesis segment is kept like every later one.
    if let (Some(mode), Some(days)) = (lock_mode, a.retention_days) {
        let lock = store.bucket_lock()?.unwrap_or(custody::s3::BucketLock {
            enabled: false,
            default_retention: None,
        });
        if !lock.enabled {
            bail!(
                "{shown}: the bucket has no Object Lock, and S3 enables it only when a bucket is created: init a vault in a new bucket with --create-bucket --object-lock {} --retention-days {days}",
                a.object_lock.as_deref().unwrap_or_default()
            );
        }
        store.set_default_retention(mode, days)?;
    }
    let object_lock = store.bucket_lock()?;
    let opts = InitOptions {
        origin: signer.name().to_owned(),
        created_by: os_user(),
        host: host_name(),
        now: Time::now(),
        nonce: random_hex(16),
    };
    let mut vault = Vault::init(store, &signer, opts)?;
    // An object store is probed at once, and the result recorded, so that
    // writers know from the start whether they may run side by side
    // (FORMAT.md §11.1). This process is the vault's only writer so far.
    let probed = if dir.is_none() {
        let r = custody::doctor::probe(vault.store())?;
        vault.store().set_single_writer(true);
        let actor = ActorArgs::default().actor()?;
        vault.append(&signer, vec![probe_entry(&r, actor)], Time::now)?;
        vault.store().set_single_writer(false);
        Some(r)
    } else {
        None
    };
    if a.json {
        let out = serde_json::json!({
            "vault": shown, "vault_id": vault.id(), "origin": signer.name(), "key": key_abs,
            "key_id": signer.key_id(), "key_created": created_key,
            "verifier_key": custody::keys::PublicKey::note_verifier_key(&signer.verifying_key(), signer.name()),
            "object_lock": object_lock,
            "probe": probed,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("created vault {shown}");
        outln!("  origin   {}", signer.name());
        outln!(
            "  key      {} ({})",
            key_abs.display(),
            if created_key {
                "new, mode 0600"
            } else {
                "existing"
            }
        );
        outln!("  key id   {}", signer.key_id());
        outln!("  vault id {}", vault.id());
        outln!(
            "  verifier {}",
            custody::keys::PublicKey::note_verifier_key(&signer.verifying_key(), signer.name())
        );
        match &object_lock {
            None => {}
            Some(l) if !l.enabled => {
                outln!(
                    "  lock     none: the bucket has no Object Lock; anyone with delete rights can"
                );
                outln!("           remove evidence (custody verify detects it, the store does not");
                outln!("           prevent it), and holds are recorded but not enforced");
            }
            Some(l) => match l.default_retention {
                Some((mode, days)) => outln!(
                    "  lock     Object Lock, default retention {mode} {days} days; holds become legal holds"
                ),
                None => outln!(
                    "  lock     Object Lock without default retention; holds become legal holds"
                ),
            },
        }
        if let Some(r) = &probed {
            outln!(
                "  writers  {}",
                if r.multi_writer_safe {
                    "several may append at once (probed: create-once and compare-and-swap hold)"
                } else {
                    "ONE AT A TIME: this backend does not keep concurrent writers apart (see custody doctor);\n           writers refuse it unless CUSTODY_SINGLE_WRITER=1 or single_writer = true"
                }
            );
        }
        outln!();
        outln!("Record the vault id somewhere outside this vault (a ticket, a printed note, an");
        outln!(
            "auditor's file): `custody verify --vault-id {}` proves against it",
            vault.id()
        );
        outln!("that the vault is this one. Keep the key file secret and backed up.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress on a terminal: bytes, items, rate, current item.
struct Bar(Option<indicatif::ProgressBar>, Mutex<u64>);

impl Bar {
    fn new(enabled: bool, what: &str) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self(None, Mutex::new(0));
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {what} {{bytes}} ({{bytes_per_sec}}){{prefix}}  {{wide_msg}}"
            ))
            .expect("valid template"),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(Some(pb), Mutex::new(0))
    }
    fn done(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn item(&self, path: &str) {
        if let Some(pb) = &self.0 {
            let mut n = self.1.lock().expect("not poisoned");
            *n += 1;
            pb.set_prefix(format!(", {n} items"));
            pb.set_message(path.to_owned());
        }
    }
    fn bytes(&self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(n);
        }
    }
}

/// Writes `bytes` to a new temporary file beside `path` and syncs it. The
/// caller renames it into place with `persist_noclobber` once what it
/// records is sealed: an output file appears whole or not at all, and never
/// replaces an existing one.
pub(super) fn stage_beside(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".custody-")
        .tempfile_in(dir)
        .with_context(|| format!("couldn't write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Writes a new key file, encrypted under a passphrase when asked: from the
/// environment variable `env`, else asked twice on the terminal.
pub(crate) fn save_key(signer: &VaultSigner, path: &Path, encrypt: bool, env: &str) -> Result<()> {
    if !encrypt {
        signer.save(path)?;
        return Ok(());
    }
    let pass = match std::env::var(env) {
        Ok(p) => zeroize::Zeroizing::new(p),
        Err(_) => {
            if !std::io::stdin().is_terminal() {
                bail!("no terminal to ask for a passphrase: set {env}");
            }
            let ask = |prompt: &str| {
                rpassword::prompt_password(prompt)
                    .map(zeroize::Zeroizing::new)
                    .with_context(|| format!("no terminal to ask for a passphrase: set {env}"))
            };
            let first = ask("passphrase for the new key file: ")?;
            let second = ask("the same passphrase again: ")?;
            if *first != *second {
                bail!("the two passphrases differ; nothing was written");
            }
            first
        }
    };
    if pass.len() < 12 {
        bail!("a key passphrase needs at least 12 characters");
    }
    signer.save_encrypted(path, &pass)?;
    Ok(())
}

fn resolve_key(
    explicit: Option<PathBuf>,
    cfg: &Config,
    origin: &str,
) -> Result<(VaultSigner, PathBuf)> {
    let path = match explicit.or_else(|| cfg.key.clone()) {
        Some(p) => p,
        None => default_key_path(origin)?,
    };
    Ok((VaultSigner::load(&path)?, path))
}

fn cli_sources(a: &DeclareArgs) -> Result<Vec<SourceSpec>> {
    let mut out = Vec::new();
    if !a.paths.is_empty() {
        // Absolute, without `.` components: the path recorded is the one
        // `custody cat` is later given.
        let paths = a
            .paths
            .iter()
            .map(|p| std::path::absolute(p).map(|a| a.to_string_lossy().into_owned()))
            .collect::<std::io::Result<Vec<_>>>()?;
        out.push(SourceSpec {
            name: "cli-paths".into(),
            kind: SourceKind::Files,
            paths,
            exclude: a.exclude.clone(),
            argv: vec![],
            timeout_secs: None,
            seal_to: vec![],
        });
    } else if !a.exclude.is_empty() {
        bail!("--exclude applies to --path, and no --path was given");
    }
    if !a.keys.is_empty() {
        let paths = a
            .keys
            .iter()
            .map(|p| std::path::absolute(p).map(|a| a.to_string_lossy().into_owned()))
            .collect::<std::io::Result<Vec<_>>>()?;
        out.push(SourceSpec {
            name: "cli-keys".into(),
            kind: SourceKind::Keys,
            paths,
            exclude: vec![],
            argv: vec![],
            timeout_secs: None,
            seal_to: a.seal_to.clone(),
        });
    } else if !a.seal_to.is_empty() {
        bail!("--seal-to applies to --keys, and no --keys was given");
    }
    for (i, c) in a.commands.iter().enumerate() {
        let argv = shell_words::split(c)
            .with_context(|| format!("--command {c:?} is not a valid command line"))?;
        out.push(SourceSpec {
            name: format!("cli-command-{}", i + 1),
            kind: SourceKind::Command,
            paths: vec![],
            exclude: vec![],
            argv,
            timeout_secs: a.command_timeout,
            seal_to: vec![],
        });
    }
    for s in &out {
        config::check_source(s).map_err(|m| anyhow!("{}: {m}", s.name))?;
    }
    Ok(out)
}

fn declare(a: DeclareArgs) -> Result<ExitCode> {
    let (store, cfg) = open_store(&a.v)?;
    let discovered_at = a
        .discovered_at
        .as_deref()
        .map(Time::parse)
        .transpose()
        .map_err(|e| anyhow!("--discovered-at: {e}"))?;
    preserve::check_incident_id(&a.incident).map_err(|e| anyhow!(e))?;
    let mut sources = cfg.sources.clone();
    sources.extend(cli_sources(&a)?);
    if sources.is_empty() {
        bail!(
            "nothing to preserve: pass --path, --keys or --command, or list sources in custody.toml (--config)"
        );
    }
    // Whether the incident is held, read on the way: evidence added to a
    // held incident is protected like the rest of it.
    let mut holds_before = custody::hold::HoldIndex::default();
    let mut vault = Vault::open_with(store, |seq, seg| holds_before.absorb(seq, seg))?;
    let (signer, key_path) = resolve_key(a.key.clone(), &cfg, &vault.root().genesis.origin)?;
    let inode = |p: &Path| {
        std::fs::metadata(p).map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            (m.dev(), m.ino())
        })
    };
    let key_inode = inode(&key_path)?;
    let vault_root = vault.store().local_root().map(Path::to_path_buf);
    let vault_inode = match vault_root {
        Some(root) => inode(&root)?,
        None => (u64::MAX, u64::MAX),
    };
    vault.check_signer(&signer)?;
    // The config's regimes apply to every incident; flags add to them.
    let mut regimes: Vec<String> = cfg.regimes.iter().chain(&a.regimes).cloned().collect();
    regimes.sort();
    regimes.dedup();
    for r in &regimes {
        if custody::clocks::regime(r).is_none() {
            let known: Vec<_> = custody::clocks::REGIMES.iter().map(|r| r.id).collect();
            bail!(
                "unknown regime {r:?}: known regimes are {}",
                known.join(", ")
            );
        }
    }
    let d = Declaration {
        incident: a.incident.clone(),
        title: a.title.clone(),
        severity: a.severity.clone(),
        discovered_at,
        description: a.description.clone(),
        detection_source: a.detection_source.clone(),
        regimes,
        by: a.by.clone().unwrap_or_else(os_user),
        host: host_name(),
        collector: a
            .collector
            .clone()
            .or(cfg.collector.clone())
            .unwrap_or_else(host_name),
        sources,
        refuse: vec![key_inode, vault_inode],
    };
    let bar = Bar::new(!a.quiet && !a.json, "preserving");
    let started = Instant::now();
    let result = preserve::declare(&mut vault, &signer, &d, &bar);
    bar.done();
    let mut s = match result {
        Ok(s) => s,
        Err(DeclareError::Pipeline(e)) => {
            return Err(anyhow!(
                "{e}\nthe declaration and every segment sealed before this point are in the vault; unsealed packs are left unreferenced (verify reports them as information)"
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let secs = started.elapsed().as_secs_f64();
    if holds_before.held(&s.incident) {
        // FORMAT.md §11.2. The run's objects are known only from the log:
        // read it again, which only a held incident pays for.
        let sess = Session::open(&a.v)?;
        let r = custody::hold::place(sess.vault.store(), &sess.holds, &s.incident);
        if let Some(why) = r.unsupported {
            s.warnings.push(format!(
                "the incident is held, but the store does not enforce it: {why}"
            ));
        }
        for (key, why) in r.failed {
            s.warnings.push(format!(
                "{key} of the held incident is not protected: {why}"
            ));
        }
    }
    // FORMAT.md §10a: the witnesses cosign the new checkpoint; one that is
    // down costs a warning, never the evidence.
    let witnessed = match witness::collect_for(&vault, &cfg) {
        Ok(w) => w,
        Err(e) => {
            s.warnings.push(format!("witnesses: {e}"));
            None
        }
    };
    if let Some((got, quorum)) = &witnessed
        && got.cosigned.len() < *quorum
    {
        s.warnings.push(format!(
            "checkpoint {} is not witnessed: {} of {quorum} cosignatures; run `custody witness catch-up` later",
            got.size,
            got.cosigned.len()
        ));
    }
    if a.json {
        let out = serde_json::json!({
            "witnesses": witnessed.as_ref().map(|(got, quorum)| serde_json::json!({
                "size": got.size, "quorum": quorum,
                "cosigned": got.cosigned.iter().map(|(n, t)| serde_json::json!({"witness": n, "at": t})).collect::<Vec<_>>(),
                "failed": got.failed.iter().map(|(n, w)| serde_json::json!({"witness": n, "why": w})).collect::<Vec<_>>(),
            })),
            "incident": s.incident, "run": s.run, "newly_declared": s.newly_declared,
            "complete": s.complete, "partial": s.partial, "failed": s.failed,
            "key_files": s.key_files, "keys": s.keys, "key_files_not_in_clear": s.key_files_not_in_clear,
            "problems": s.problems.iter().map(|p| serde_json::json!({"source": p.source, "path": p.path, "status": p.status.as_str(), "detail": p.detail})).collect::<Vec<_>>(),
            "bytes_read": s.stats.bytes_read, "bytes_stored": s.stats.bytes_stored, "bytes_deduplicated": s.stats.bytes_deduplicated,
            "files_unchanged": s.stats.items_unchanged,
            "packs": s.stats.packs, "segments": s.segments, "checkpoint": {"size": s.last.size, "root": s.last.root},
            "seconds": secs, "warnings": s.warnings,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verb = if s.newly_declared {
            "declared"
        } else {
            "already declared; preserved again"
        };
        outln!("incident {} {verb} (run {})", s.incident, s.run);
        outln!(
            "artifacts  {} complete, {} partial, {} failed",
            s.complete,
            s.partial,
            s.failed
        );
        if s.key_files > 0 {
            outln!(
                "keys       {} key(s) in {} file(s); {} file(s) not stored in clear (see `custody keys {}`)",
                s.keys,
                s.key_files,
                s.key_files_not_in_clear,
                s.incident
            );
        }
        for p in &s.problems {
            outln!(
                "  {:<8} [{}] {}: {}",
                p.status.as_str(),
                p.source,
                p.path,
                p.detail
            );
        }
        outln!(
            "read       {} in {:.1} s ({}/s)",
            human(s.stats.bytes_read),
            secs,
            human((s.stats.bytes_read as f64 / secs.max(1e-9)) as u64)
        );
        outln!(
            "stored     {} in {} new pack(s); deduplicated {}",
            human(s.stats.bytes_stored),
            s.stats.packs,
            human(s.stats.bytes_deduplicated)
        );
        if s.stats.items_unchanged > 0 {
            outln!(
                "unchanged  {} file(s) the same, chunk for chunk, as their last artifact; digests taken from it",
                s.stats.items_unchanged
            );
        }
        let (first, last) = (
            s.segments.first().copied().unwrap_or(0),
            s.segments.last().copied().unwrap_or(0),
        );
        outln!("segments   {first}..={last} ({} written)", s.segments.len());
        outln!("checkpoint size {} root {}", s.last.size, s.last.root);
        if let Some((got, quorum)) = &witnessed {
            witness::say(got, *quorum, &mut std::io::stdout())?;
        }
        for w in &s.warnings {
            outln!("warning    {w}");
        }
    }
    Ok(if !s.problems.is_empty() || !s.warnings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn verify_cmd(a: VerifyArgs) -> Result<ExitCode> {
    let (store, cfg) = open_store(&a.v)?;
    let (witnesses, quorum) = if a.witnesses.is_empty() {
        let w = configured_witnesses(&cfg)?;
        let n = cfg.witness_quorum.unwrap_or(w.len());
        (w.into_iter().map(|c| c.witness).collect::<Vec<_>>(), n)
    } else {
        let w = a
            .witnesses
            .iter()
            .map(|k| custody::witness::Witness::parse(k).map_err(|e| anyhow!("--witness: {e}")))
            .collect::<Result<Vec<_>>>()?;
        let n = a.quorum.unwrap_or(w.len());
        (w, n)
    };
    let quorum = a.quorum.unwrap_or(quorum);
    if !witnesses.is_empty() && (quorum == 0 || quorum > witnesses.len()) {
        bail!(
            "a quorum of {quorum} needs between 1 and {} witnesses",
            witnesses.len()
        );
    }
    let vault_id = a
        .vault_id
        .as_deref()
        .map(Sha256Digest::parse)
        .transpose()
        .map_err(|e| anyhow!("--vault-id: {e}"))?;
    let trusted = match &a.trusted {
        Some(p) => Some(read_checkpoint_file(p)?),
        None => None,
    };
    let opts = verify::Options {
        quick: a.quick,
        vault_id,
        trusted,
        witnesses,
        quorum,
    };
    let bar = Bar::new(!a.quiet && !a.json, "verifying");
    let report = verify::verify(&store, &opts, &bar)?;
    bar.done();
    let recorded = if a.no_record {
        Err("not recorded (--no-record)".to_string())
    } else {
        record_verification(&a, &cfg, &report)
    };
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        match &recorded {
            Ok(seq) => v["recorded_in"] = (*seq).into(),
            Err(why) => v["not_recorded"] = why.clone().into(),
        }
        v["ok"] = serde_json::Value::Bool(!report.damaged());
        v["conclusion"] = report.conclusion().into();
        if let Some(list) = v["findings"].as_array_mut() {
            for (f, finding) in list.iter_mut().zip(&report.findings) {
                f["advice"] = finding_advice(finding.kind).into();
            }
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_report(&report);
        match &recorded {
            Ok(seq) => outln!("recorded as a custody event in segment {seq}"),
            Err(why) => outln!("{why}"),
        }
    }
    Ok(if report.damaged() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The incident's clocks at `now`, or an error naming what the table lacks.
fn clocks_of(inc: &custody::incident::Incident, now: &Time) -> Result<Vec<custody::clocks::Clock>> {
    inc.clocks(now)
        .map_err(|e| anyhow!("incident {}: {e}", inc.id()))
}

/// Prints clocks, one block each.
fn print_clocks(
    out: &mut impl std::io::Write,
    clocks: &[custody::clocks::Clock],
    filings: &[(u64, &custody::segment::ReportFiled)],
    now: &Time,
) -> std::io::Result<()> {
    let filing = |i: &usize| {
        filings
            .get(*i)
            .map_or(format!("filing #{}", i + 1), |(seq, f)| {
                format!("{} {} (segment {seq})", f.filed_at, f.reference)
            })
    };
    use custody::clocks::{State, format_duration};
    if clocks.is_empty() {
        writeln!(
            out,
            "clocks      none (no regime applies; declare with --regime)"
        )?;
        return Ok(());
    }
    writeln!(out, "\nclocks at {now}:")?;
    for c in clocks {
        let deadline = c
            .deadline
            .as_ref()
            .map_or("-".to_string(), ToString::to_string);
        let state = match &c.state {
            State::NotStarted { why } => format!("not started: {why}"),
            State::Open { left } => format!("OPEN, {} left", format_duration(*left)),
            State::Overdue { by } => format!("OVERDUE by {}", format_duration(*by)),
            State::Met { filing: i, margin } => format!(
                "met by the filing of {} with {} to spare",
                filing(i),
                format_duration(*margin)
            ),
            State::Late {
                filing: i,
                by,
                reason_missing,
            } => format!(
                "LATE by {} (filed {}){}",
                format_duration(*by),
                filing(i),
                if *reason_missing {
                    "; no reason for the delay was given"
                } else {
                    ""
                }
            ),
        };
        writeln!(out, "  {:<16} {}", c.regime, c.name)?;
        writeln!(out, "  {:<16} deadline {deadline}: {state}", "")?;
        writeln!(out, "  {:<16} {}", "", c.cite)?;
    }
    Ok(())
}

/// Per-source coverage of an incident (FORMAT.md §13c): what each source
/// yielded, its failures stated explicitly, and, where the content says, the
/// time of the first and last record, the gaps between artifacts, and the
/// part of a preservation order's time range no record reaches. Reads the
/// first and last chunk of each artifact (checked like `cat`).
fn coverage_of(session: &Session, inc: &custody::incident::Incident) -> Result<serde_json::Value> {
    use custody::coverage::{self, Bounds, Hint, Item, WINDOW};
    use custody::restore::ChunkReader;
    let store = session.vault.store();
    let mut reader = ChunkReader::new();
    let mut read = |c: &custody::segment::ChunkRef, tail: bool| -> Result<Vec<u8>> {
        let plain = reader
            .read(store, c)
            .map_err(|e| anyhow!("reading for coverage: {e}"))?;
        Ok(if tail {
            plain[plain.len().saturating_sub(WINDOW)..].to_vec()
        } else {
            plain[..plain.len().min(WINDOW)].to_vec()
        })
    };
    // The widest time range any preservation order names.
    let orders: Vec<&custody::segment::PreservationOrder> = inc
        .entries
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::PreservationOrder(o) => Some(o),
            _ => None,
        })
        .collect();
    let scope_from = orders
        .iter()
        .filter_map(|o| o.from.as_ref())
        .min_by_key(|t| t.timestamp());
    let scope_until = orders
        .iter()
        .filter_map(|o| o.until.as_ref())
        .max_by_key(|t| t.timestamp());
    let mut sources: std::collections::BTreeMap<String, Vec<(&Artifact, Option<Bounds>)>> =
        Default::default();
    for (_, art) in inc.artifacts() {
        let bounds = if art.status != Status::Failed && !art.chunks.is_empty() {
            let head = read(&art.chunks[0], false)?;
            let last = art.chunks.len() - 1;
            let whole = last == 0 && art.size as usize <= WINDOW;
            let tail = if last == 0 {
                head.clone()
            } else {
                read(&art.chunks[last], true)?
            };
            let hint = Hint {
                mtime: art.file.as_ref().map(|f| f.mtime.clone()),
            };
            coverage::record_bounds(&head, &tail, whole, &hint)
        } else {
            None
        };
        sources
            .entry(art.source.clone())
            .or_default()
            .push((art, bounds));
    }
    let mut out = Vec::new();
    for (name, arts) in &sources {
        let with_content: Vec<_> = arts
            .iter()
            .filter(|(a, _)| a.status != Status::Failed && a.size > 0)
            .collect();
        let items: Vec<Item> = with_content
            .iter()
            .map(|(a, b)| Item {
                name: &a.path,
                bounds: b.as_ref(),
            })
            .collect();
        let cov = coverage::coverage(
            &items,
            (scope_from, scope_until),
            jiff::SignedDuration::from_hours(1),
        );
        let count = |s: Status| arts.iter().filter(|(a, _)| a.status == s).count();
        let failures: Vec<_> = arts
            .iter()
            .filter(|(a, _)| a.status != Status::Complete)
            .map(|(a, _)| {
                serde_json::json!({"path": a.path, "status": a.status.as_str(),
                    "why": a.reason.as_ref().or(a.error.as_ref())})
            })
            .collect();
        let mut v = serde_json::to_value(&cov)?;
        let extra = serde_json::json!({
            "source": name, "kind": arts[0].0.source_kind,
            "complete": count(Status::Complete), "partial": count(Status::Partial),
            "failed": count(Status::Failed),
            "bytes": arts.iter().map(|(a, _)| a.size).sum::<u64>(),
            "failures": failures,
            "artifacts": arts.iter().map(|(a, b)| serde_json::json!({
                "path": a.path, "first": b.as_ref().map(|b| &b.first),
                "last": b.as_ref().map(|b| &b.last), "format": b.as_ref().map(|b| b.format)})).collect::<Vec<_>>(),
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        out.push(v);
    }
    Ok(serde_json::Value::Array(out))
}

/// Appends a `verified` custody event when a signing key is at hand; the
/// reason it was not recorded otherwise. A verification is never failed for
/// want of a key: auditors verify read-only copies.
fn record_verification(
    a: &VerifyArgs,
    cfg: &Config,
    report: &verify::Report,
) -> Result<u64, String> {
    let cannot_write =
        |e: anyhow::Error| format!("not recorded: the vault cannot be written ({e:#})");
    // The key is looked for before the log is read again: an auditor
    // without one does not pay for a second read. So without a key, that
    // is the reason given, even for a log that could not be written to.
    let explicit = a.actor.key.is_some() || cfg.key.is_some();
    let no_key = || -> String {
        "not recorded: no signing key (pass --key to record the verification as a custody event)"
            .into()
    };
    let origin = report.origin.as_deref().ok_or_else(|| {
        "not recorded: the vault's genesis could not be read, so neither could its keys".to_owned()
    })?;
    let refused = |e: anyhow::Error| {
        if explicit {
            format!("not recorded: {e:#}")
        } else {
            no_key()
        }
    };
    let (signer, _) = resolve_key(a.actor.key.clone(), cfg, origin).map_err(refused)?;
    let mut session = Session::open_vault_wide(&a.v).map_err(cannot_write)?;
    session
        .vault
        .check_signer(&signer)
        .map_err(|e| refused(e.into()))?;
    let actor = a
        .actor
        .actor()
        .map_err(|e| format!("not recorded: {e:#}"))?;
    let result = report.result_line();
    let mut e = session.event(
        None,
        custody::segment::Action::Verified,
        if a.quick { "verify --quick" } else { "verify" },
        actor,
        None,
    );
    e.result = Some(result);
    if let Some(cp) = &report.checkpoint {
        e.checkpoint = custody::segment::CheckpointRef {
            size: cp.size,
            root: cp.root,
        };
    }
    session
        .record(&signer, vec![Entry::CustodyEvent(e)])
        .map(|ap| ap.seq)
        .map_err(|e| format!("not recorded: {e:#}"))
}

fn doctor_cmd(a: DoctorArgs) -> Result<ExitCode> {
    let (store, _) = open_store(&a.v)?;
    let r = custody::doctor::probe(&store)?;
    let recorded = record_probe(&a, &r);
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        match &recorded {
            Ok(seq) => v["recorded_in"] = (*seq).into(),
            Err(why) => v["not_recorded"] = why.clone().into(),
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("backend {}", r.location);
        for p in &r.probes {
            let mark = match p.holds {
                Some(true) => "holds",
                Some(false) => "DOES NOT HOLD",
                None => "n/a",
            };
            outln!("  {:<18} {:<14} {}", p.name, mark, p.detail);
        }
        outln!(
            "{}",
            if r.multi_writer_safe {
                "several writers may append to this vault at once"
            } else {
                "NOT safe for several writers at once: run one writer at a time"
            }
        );
        outln!(
            "{}",
            if r.immutable {
                "the backend itself refuses to overwrite or delete objects"
            } else {
                "the backend lets objects be overwritten or deleted: custody detects it (verify), it does not prevent it; use Object Lock retention where that matters"
            }
        );
    }
    if !a.json {
        match &recorded {
            Ok(seq) => outln!(
                "recorded in segment {seq}; writers of this vault follow it (FORMAT.md §11.1)"
            ),
            Err(why) => outln!("{why}"),
        }
    }
    Ok(if r.multi_writer_safe {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Appends the probe as a `backend_probed` entry when the location is a
/// vault and a signing key is at hand; why not otherwise.
fn record_probe(a: &DoctorArgs, r: &custody::doctor::Report) -> Result<u64, String> {
    let mut session = match Session::open_vault_wide(&a.v) {
        Ok(s) => s,
        Err(e) => return Err(format!("not recorded: {e:#}")),
    };
    let signer = session
        .signer(a.actor.key.clone())
        .map_err(|e| format!("not recorded (no usable signing key): {e:#}"))?;
    let actor = a
        .actor
        .actor()
        .map_err(|e| format!("not recorded: {e:#}"))?;
    let entry = probe_entry(r, actor);
    session
        .record(&signer, vec![entry])
        .map(|ap| ap.seq)
        .map_err(|e| format!("not recorded: {e:#}"))
}

/// The `backend_probed` entry of a probe (FORMAT.md §9.11).
fn probe_entry(r: &custody::doctor::Report, actor: custody::segment::Actor) -> Entry {
    Entry::BackendProbed(custody::segment::BackendProbed {
        location: r.location.clone(),
        probes: r
            .probes
            .iter()
            .map(|p| custody::segment::ProbeResult {
                name: p.name.into(),
                holds: p.holds,
                detail: p.detail.clone(),
            })
            .collect(),
        multi_writer_safe: r.multi_writer_safe,
        immutable: r.immutable,
        at: Time::now(),
        actor,
    })
}

/// One line of advice per kind of finding.
fn finding_advice(kind: verify::Kind) -> &'static str {
    use verify::Kind as K;
    match kind {
        K::CheckpointMissing => {
            "if this vault had a checkpoint it was deleted; compare with a saved one (--trusted); the next declare writes a new one"
        }
        K::CheckpointMalformed | K::CheckpointBadSignature => {
            "restore `checkpoint` from a backup or a saved copy; do not re-sign it before finding out who changed it"
        }
        K::CheckpointRootMismatch => {
            "segments the checkpoint covers were replaced: restore them from a replica and treat the vault as tampered"
        }
        K::CheckpointBeyondLog => {
            "segments at the end were deleted: restore them from a replica; writers refuse this vault until then"
        }
        K::LogBeyondCheckpoint => {
            "normal after an interrupted write; the next declare re-checkpoints"
        }
        K::TrustedCheckpointInvalid => {
            "the saved checkpoint is not one of this vault's, or it was altered"
        }
        K::LogTruncated => {
            "segments the saved checkpoint covers are gone: restore them from a replica"
        }
        K::LogRewritten => {
            "history the saved checkpoint covers was rewritten, which needs a vault key: treat the key as compromised"
        }
        K::CheckpointRolledBack => {
            "the checkpoint was replaced by an older one: restore the newest from a backup"
        }
        K::GenesisMissing => "not a vault, or its genesis segment was deleted: check --vault",
        K::GenesisInvalid => {
            "the genesis segment was altered: nothing in this vault can be trusted"
        }
        K::VaultIdMismatch => "this is not the vault whose id you recorded",
        K::SegmentMissing => "restore the segment from a replica; writers never fill a gap",
        K::SegmentMalformed
        | K::SegmentUnknownKey
        | K::SegmentBadSignature
        | K::SegmentWrongVault
        | K::SegmentMisplaced
        | K::ChainBroken => {
            "the segment was altered, forged, copied or moved: restore the original from a replica"
        }
        K::UnexpectedObject => "not evidence: find out who put it there, then remove it",
        K::PackMissing => {
            "restore the pack from a replica: the artifacts it holds cannot be read until then"
        }
        K::PackMalformed | K::PackHashMismatch | K::ChunkCorrupt | K::ChunkHashMismatch => {
            "the stored bytes were altered: restore the pack from a replica"
        }
        K::PackUnreferenced => {
            "left by an interrupted run (or named by a damaged segment); it is not evidence by itself"
        }
        K::ArtifactSizeMismatch | K::ArtifactHashMismatch => {
            "restore the packs of this artifact from a replica"
        }
        K::SegmentRetiredKey => {
            "a key that was rotated out signed this segment: someone holds the old key; revoke it (`custody key revoke`) and restore the log from a replica or a saved checkpoint"
        }
        K::KeyEntryInvalid => {
            "a key rotation or revocation breaks the rules (both keys must sign a rotation; another valid key a revocation): the segment was forged or altered"
        }
        K::SignedInCompromiseWindow => {
            "signed by a revoked key after it was compromised: do not rely on it unless a checkpoint saved before the compromise (`verify --trusted`) covers it"
        }
        K::KeyFileInClear => {
            "private key material is readable in the vault: treat those keys as exposed to every reader of the vault, rotate them, and find out which writer stored them"
        }
        K::KeyFileUnbacked => {
            "a key file's description names bytes the log does not hold: the segments were altered or written by another tool; restore them from a replica"
        }
        K::CheckpointUnwitnessed => {
            "the latest checkpoint lacks the witnesses' quorum: run `custody witness catch-up`; if a witness refuses (409, 422), the log it saw is not this one"
        }
        K::HoldMissing => {
            "someone lifted the protection, or it was never placed: run `custody incident hold` again with the same name to re-apply it, and find out who changed it"
        }
    }
}

/// Reads a saved checkpoint (a few hundred bytes; at most 64 KiB).
fn read_checkpoint_file(p: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(p).with_context(|| format!("couldn't open {}", p.display()))?;
    if !f.metadata()?.is_file() {
        bail!("{} is not a regular file", p.display());
    }
    let mut bytes = Vec::new();
    f.take(custody::log::MAX_CHECKPOINT_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > custody::log::MAX_CHECKPOINT_BYTES {
        bail!("{} is larger than a checkpoint can be", p.display());
    }
    Ok(bytes)
}

fn checkpoint_cmd(a: CheckpointArgs) -> Result<ExitCode> {
    let (store, _) = open_store(&a.v)?;
    // Opening checks the log against the checkpoint: only a checkpoint the
    // log agrees with is handed out for pinning.
    let vault = Vault::open(store)?;
    let bytes = vault
        .store()
        .get(
            custody::layout::CHECKPOINT,
            custody::log::MAX_CHECKPOINT_BYTES,
        )?
        .ok_or_else(|| anyhow!("the vault has no checkpoint yet; the next declare writes one"))?;
    // Read again after opening: check this very note against the log read.
    let cp = custody::vault::open_checkpoint(&bytes, vault.root())?;
    let tree = &vault.index().tree;
    if cp.size > tree.size() || tree.root_at(cp.size) != cp.root {
        bail!("the checkpoint changed while it was being read (another writer?); run it again");
    }
    if a.json {
        let out = serde_json::json!({
            "vault_id": vault.id(), "origin": cp.origin, "size": cp.size, "root": cp.root,
            "note": String::from_utf8_lossy(&bytes),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        std::io::stdout().write_all(&bytes)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &verify::Report) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "vault      {}", r.vault);
    if let Some(id) = &r.vault_id {
        let _ = writeln!(
            out,
            "vault id   {id}{}",
            if r.pinned { " (pinned)" } else { "" }
        );
    }
    if let Some(o) = &r.origin {
        let _ = writeln!(out, "origin     {o}");
    }
    let phase_line = |name: &str, detail: String| {
        let n = r
            .findings
            .iter()
            .filter(|f| f.phase == name && f.severity == Severity::Damage)
            .count();
        let status = if n == 0 {
            "ok".to_string()
        } else {
            format!("{n} finding(s)")
        };
        format!("{name:<11}{status:<14}{detail}")
    };
    let _ = writeln!(
        out,
        "{}",
        phase_line(
            "segments",
            format!("{} stored, {} artifacts", r.segments, r.artifacts)
        )
    );
    if r.vault_id.is_none() {
        let _ = writeln!(
            out,
            "checkpoint, packs, content: not checked (no valid genesis segment)"
        );
    } else {
        let cp = r.checkpoint.as_ref().map_or_else(
            || "none valid".into(),
            |c| format!("size {} root {}", c.size, c.root),
        );
        let _ = writeln!(out, "{}", phase_line("checkpoint", cp));
        if let Some(t) = &r.trusted {
            let _ = writeln!(
                out,
                "{:<25}pinned checkpoint: size {} root {}",
                "", t.size, t.root
            );
        }
        let _ = writeln!(
            out,
            "{}",
            phase_line("packs", format!("{} referenced", r.packs))
        );
        if r.content_checked {
            let mut detail = format!(
                "{} chunks, {} re-hashed",
                r.chunks_checked,
                human(r.bytes_checked)
            );
            if r.artifacts_same_chunks > 0 {
                detail += &format!(
                    " ({} artifact(s) with the same chunks as an earlier one: hashed once, each checked)",
                    r.artifacts_same_chunks
                );
            }
            let _ = writeln!(out, "{}", phase_line("content", detail));
        } else {
            let _ = writeln!(out, "content    skipped (--quick)");
        }
        let detail = if r.held_objects == 0 {
            "no hold in place".to_string()
        } else {
            format!(
                "{} object(s) under hold, checked with the store",
                r.held_objects
            )
        };
        let _ = writeln!(out, "{}", phase_line("holds", detail));
    }
    for phase in ["segments", "checkpoint", "packs", "content", "holds"] {
        let found: Vec<_> = r.findings.iter().filter(|f| f.phase == phase).collect();
        if found.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{phase}:");
        for f in found {
            let sev = match f.severity {
                Severity::Damage => "DAMAGE",
                Severity::Information => "info",
            };
            let _ = writeln!(out, "  {sev:<6} {}  {}", f.kind.as_str(), f.object);
            let _ = writeln!(out, "         {}", f.message);
            let _ = writeln!(out, "         advice: {}", finding_advice(f.kind));
        }
    }
    for w in &r.witnessed {
        let names: Vec<String> = w
            .witnesses
            .iter()
            .map(|(n, ts)| {
                format!(
                    "{n} at {}",
                    custody::time::Time::from_unix(i64::try_from(*ts).unwrap_or(i64::MAX))
                )
            })
            .collect();
        let _ = match w.quorum_at {
            Some(t) => writeln!(
                out,
                "witnessed: segments 0..{} existed no later than {} (attested by {} witness(es): {})",
                w.size,
                custody::time::Time::from_unix(i64::try_from(t).unwrap_or(i64::MAX)),
                w.witnesses.len(),
                names.join(", ")
            ),
            None => writeln!(
                out,
                "witnessed: checkpoint size {} cosigned by {} witness(es), below the quorum: {}",
                w.size,
                w.witnesses.len(),
                names.join(", ")
            ),
        };
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "result: {}", r.conclusion());
}

/// The witnesses of custody.toml's `[[witness]]` tables.
pub(crate) fn configured_witnesses(cfg: &Config) -> Result<Vec<custody::witness::Configured>> {
    cfg.witnesses
        .iter()
        .map(|w| {
            Ok(custody::witness::Configured {
                witness: custody::witness::Witness::parse(&w.key)
                    .map_err(|e| anyhow!("custody.toml [[witness]]: {e}"))?,
                url: w.url.clone(),
            })
        })
        .collect()
}

fn entry_line(e: &Entry) -> String {
    match e {
        Entry::Genesis(g) => format!("genesis origin={} key={}", g.origin, g.key.id),
        Entry::Heartbeat(h) => format!(
            "heartbeat from {} (idle for {} s before it)",
            h.host, h.interval_secs
        ),
        Entry::IncidentDeclared(d) => format!(
            "incident_declared {} {:?} by {}",
            d.incident, d.title, d.declared_by
        ),
        Entry::PreservationStarted(p) => format!(
            "preservation_started {} run {} ({} sources)",
            p.incident,
            p.run.get(..8).unwrap_or(&p.run),
            p.sources.len()
        ),
        Entry::Artifact(a) => format!(
            "artifact {} {:<8} {:>10} {}",
            a.incident,
            a.status.as_str(),
            human(a.size),
            a.path
        ),
        Entry::PreservationFinished(p) => format!(
            "preservation_finished {} run {}: {} complete, {} partial, {} failed",
            p.incident,
            p.run.get(..8).unwrap_or(&p.run),
            p.complete,
            p.partial,
            p.failed
        ),
        Entry::PreservationOrder(o) => format!(
            "preservation_order {} from {} ref {:?} received {}",
            o.incident, o.authority, o.reference, o.received_at
        ),
        Entry::HoldPlaced(h) => format!(
            "hold_placed {} {:?} by {}: {}",
            h.incident, h.hold, h.actor.name, h.reason
        ),
        Entry::HoldReleased(h) => format!(
            "hold_released {} {:?} by {}: {}",
            h.incident, h.hold, h.actor.name, h.reason
        ),
        Entry::ReportFiled(r) => format!(
            "report_filed {} {} {} with {} at {}",
            r.incident, r.regime, r.kind, r.authority, r.filed_at
        ),
        Entry::FactLearned(f) => format!(
            "fact_learned {}{} {:?}",
            f.incident,
            if f.materiality { " (materiality)" } else { "" },
            f.text
        ),
        Entry::Note(n) => format!("note {} by {}: {:?}", n.incident, n.actor.name, n.text),
        Entry::IncidentClosed(c) => format!(
            "incident_closed {} by {}: {}",
            c.incident, c.actor.name, c.reason
        ),
        Entry::CustodyEvent(e) => format!(
            "custody_event {} {} via {} by {}{}",
            e.incident.as_deref().unwrap_or("(vault)"),
            e.action.as_str(),
            e.via,
            e.actor.name,
            match e.subjects.len() {
                0 => String::new(),
                n => format!(" ({n} artifact(s))"),
            }
        ),
        Entry::BackendProbed(b) => format!(
            "backend_probed {}: {}, {}",
            b.location,
            if b.multi_writer_safe {
                "several writers safe"
            } else {
                "ONE WRITER AT A TIME"
            },
            if b.immutable {
                "overwrite/delete refused"
            } else {
                "overwrite/delete possible"
            }
        ),
        Entry::ManifestSealed(m) => format!(
            "manifest_sealed {} sha256 {} ({} subjects)",
            m.incident, m.sha256, m.subjects
        ),
        Entry::KeyRotated(r) => format!(
            "key_rotated {} -> {} by {}{}",
            r.old.get(..16).unwrap_or(&r.old),
            r.new.id.to_string().get(..16).unwrap_or_default(),
            r.actor.name,
            r.reason
                .as_deref()
                .map_or_else(String::new, |w| format!(": {w}"))
        ),
        Entry::KeyRevoked(v) => format!(
            "key_revoked {} compromised since {} by {}: {}",
            v.key.get(..16).unwrap_or(&v.key),
            v.compromised_since,
            v.actor.name,
            v.reason
        ),
        Entry::KeyFile(k) => format!(
            "key_file {} {:<8} {} {} key(s) {} {}",
            k.incident,
            k.status.as_str(),
            k.form.as_str(),
            k.keys.len(),
            k.content.as_str(),
            k.path
        ),
    }
}

fn log_cmd(a: LogArgs) -> Result<ExitCode> {
    let (store, _) = open_store(&a.v)?;
    let mut out = std::io::stdout().lock();
    let mut err = None;
    Vault::open_with(store, |seq, seg| {
        if err.is_some() {
            return;
        }
        let r = if a.json {
            serde_json::to_writer(&mut out, seg)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        } else {
            let mut r = writeln!(
                out,
                "segment {seq}  sealed {}  {} entries",
                seg.sealed_at,
                seg.entries.len()
            );
            for e in &seg.entries {
                r = r.and_then(|()| writeln!(out, "  {}", entry_line(e)));
            }
            r
        };
        err = r.err();
    })?;
    if let Some(e) = err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn prove_cmd(a: ProveArgs) -> Result<ExitCode> {
    let session = Session::open(&a.v)?;
    let inc = session.incident(&a.incident)?;
    let vault = &session.vault;
    let Some(seqs) = inc.proof_segments(a.path.as_deref()) else {
        bail!(
            "incident {} has no artifact with path {:?}; `custody show {}` lists them",
            a.incident,
            a.path.as_deref().unwrap_or_default(),
            a.incident
        );
    };
    let proof = custody::proof::prove(vault, &seqs)?;
    let json = serde_json::to_vec_pretty(&proof)?;
    match &a.out {
        Some(out) => {
            std::fs::write(out, &json)
                .with_context(|| format!("couldn't write {}", out.display()))?;
            eprintln!(
                "wrote a proof of {} segment(s) at checkpoint {} to {}",
                seqs.len(),
                proof.checkpoint.lines().nth(1).unwrap_or("?"),
                out.display()
            );
        }
        None => {
            std::io::stdout().write_all(&json)?;
            outln!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn anchor(vault_id: &Option<String>, pubkey: &Option<String>) -> Result<custody::proof::Anchor> {
    Ok(match (vault_id, pubkey) {
        (Some(id), None) => custody::proof::Anchor::VaultId(
            Sha256Digest::parse(id).map_err(|e| anyhow!("--vault-id: {e}"))?,
        ),
        (None, Some(k)) => custody::proof::Anchor::NoteKey(k.clone()),
        _ => {
            bail!("give exactly one of --vault-id (recorded at init) or --pubkey (origin+hash+key)")
        }
    })
}

/// Reports a proof or bundle that failed its check; exit status 1.
fn does_not_check_out(json: bool, what: &str, e: &dyn std::fmt::Display) -> Result<ExitCode> {
    if json {
        outln!(
            "{}",
            serde_json::json!({"ok": false, "error": e.to_string()})
        );
    } else {
        outln!("{what} does NOT check out: {e}");
    }
    Ok(ExitCode::from(1))
}

fn export_cmd(a: ExportArgs) -> Result<ExitCode> {
    let mut session = Session::open(&a.v)?;
    let signer = session.signer(a.actor.key.clone())?;
    if a.out.exists() {
        bail!(
            "{} exists: the bundle is never written over a file",
            a.out.display()
        );
    }
    // The export is recorded first, so the bundle carries its own record.
    let inc = session.incident(&a.incident)?;
    let mut e = session.event(
        Some(&a.incident),
        custody::segment::Action::Exported,
        "export",
        a.actor.actor()?,
        Some(a.purpose.clone()),
    );
    e.subjects = inc.artifacts().map(|(_, art)| subject(art)).collect();
    e.recipient = Some(a.to.clone());
    e.output = Some(a.out.display().to_string());
    let recorded = session.record(&signer, vec![Entry::CustodyEvent(e)])?;
    let inc = session.incident(&a.incident)?;
    let vault = &session.vault;
    let seqs: Vec<u64> = inc.segments.iter().copied().collect();
    let artifacts: Vec<Artifact> = inc.artifacts().map(|(_, art)| art.clone()).collect();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.out)
        .with_context(|| format!("couldn't create {}", a.out.display()))?;
    let result = custody::bundle::export(
        vault,
        &seqs,
        &artifacts,
        &a.incident,
        std::io::BufWriter::new(&file),
    )
    .and_then(|n| Ok((n, file.sync_all()?)));
    match result {
        Ok((chunks, ())) => {
            outln!(
                "wrote {}: {} segment(s), {} artifact(s), {chunks} chunk(s); the auditor checks it with\n  custody verify-bundle {} --vault-id {}",
                a.out.display(),
                seqs.len(),
                artifacts.len(),
                a.out.display(),
                vault.id()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&a.out);
            Err(anyhow::Error::from(e).context(format!(
                "the export to {} is recorded in segment {} but the bundle was not written",
                a.to, recorded.seq
            )))
        }
    }
}

fn verify_bundle_cmd(a: VerifyBundleArgs) -> Result<ExitCode> {
    let anchor = anchor(&a.vault_id, &a.pubkey)?;
    let f = std::fs::File::open(&a.bundle)
        .with_context(|| format!("couldn't open {}", a.bundle.display()))?;
    let check = custody::bundle::BundleCheck {
        incident: a.incident.clone(),
        extract: a.extract.clone(),
    };
    let report = match custody::bundle::verify_bundle(std::io::BufReader::new(f), &anchor, &check) {
        Ok(r) => r,
        Err(custody::bundle::BundleError::Io(e)) => {
            return Err(anyhow!("{}: {e}", a.bundle.display()));
        }
        Err(e) => return does_not_check_out(a.json, "bundle", &e),
    };
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["ok"] = report.ok().into();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let segs: Vec<String> = report.segments.iter().map(ToString::to_string).collect();
        outln!(
            "vault {}: segments {} proven at checkpoint size {}",
            report.vault_id,
            segs.join(", "),
            report.checkpoint_size
        );
        for r in &report.runs {
            let state = if r.problem.is_none() {
                "whole"
            } else {
                "INCOMPLETE"
            };
            outln!(
                "run {} of incident {}: {} artifact(s), {state}",
                r.run,
                r.incident,
                r.artifacts
            );
            if let Some(p) = &r.problem {
                outln!("           {p}");
            }
        }
        for c in &report.artifacts {
            let state = if c.problem.is_none() { "ok" } else { "DAMAGED" };
            outln!(
                "  {state:<8} {:<8} {:>10}  [{}] {}  sha256 {}",
                c.status,
                human(c.size),
                c.incident,
                c.path,
                c.sha256
            );
            if let Some(p) = &c.problem {
                outln!("           {p}");
            }
            if let Some(x) = &c.extracted {
                outln!("           extracted as {x}");
            }
        }
        if let Some(p) = &report.problem {
            outln!("problem: {p}");
        }
        if report.ok() {
            outln!(
                "result: OK; every artifact re-hashes to its recorded SHA-256 and BLAKE3 and every run in the bundle is whole (a run left out entirely cannot be seen from the bundle)"
            );
        } else {
            outln!("result: the bundle does NOT check out");
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify_proof_cmd(a: VerifyProofArgs) -> Result<ExitCode> {
    use std::io::Read as _;
    let anchor = anchor(&a.vault_id, &a.pubkey)?;
    let f = std::fs::File::open(&a.proof)
        .with_context(|| format!("couldn't open {}", a.proof.display()))?;
    let mut bytes = Vec::new();
    f.take(custody::proof::MAX_PROOF_BYTES + 1)
        .read_to_end(&mut bytes)?;
    let verified = match custody::proof::verify_proof(&bytes, &anchor) {
        Ok(v) => v,
        Err(e) => return does_not_check_out(a.json, "proof", &e),
    };
    let artifacts: Vec<&Artifact> = verified.artifacts().collect();
    if a.json {
        let out = serde_json::json!({
            "ok": true, "vault_id": verified.vault_id,
            "checkpoint": {"size": verified.checkpoint.size, "root": verified.checkpoint.root},
            "segments": verified.segments.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            "artifacts": artifacts.iter().map(|a| serde_json::json!({
                "incident": a.incident, "path": a.path, "status": a.status, "size": a.size,
                "sha256": a.sha256, "blake3": a.blake3})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "OK: {} segment(s) are in the log of vault {} at checkpoint size {} root {}",
            verified.segments.len(),
            verified.vault_id,
            verified.checkpoint.size,
            verified.checkpoint.root
        );
        for art in artifacts {
            outln!(
                "  {:<8} {:>10}  {}  sha256 {}",
                art.status.as_str(),
                human(art.size),
                art.path,
                art.sha256
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let mut session = Session::open(&a.v)?;
    let signer = session.signer(a.actor.key.clone())?;
    session.incident(&a.incident)?;
    let e = session.event(
        Some(&a.incident),
        custody::segment::Action::Accessed,
        "show",
        a.actor.actor()?,
        a.purpose.clone(),
    );
    let recorded = session.record(&signer, vec![Entry::CustodyEvent(e)])?;
    let inc = session.incident(&a.incident)?;
    let d = &inc.declared;
    let runs: Vec<_> = inc
        .runs()
        .iter()
        .map(|r| {
            let (seq, p) = r.started;
            serde_json::json!({"run": p.run, "started_at": p.started_at, "by": p.by, "host": p.host, "segment": seq,
                "finished": r.finished.map(|(_, f)| f)})
        })
        .collect();
    if a.json {
        let artifacts: Vec<_> = inc
            .artifacts()
            .map(|(seq, art)| {
                let mut v = serde_json::to_value(art).unwrap_or_default();
                v["segment"] = seq.into();
                v["chunk_count"] = art.chunks.len().into();
                if let Some(o) = v.as_object_mut() {
                    o.remove("chunks");
                }
                v
            })
            .collect();
        let out = serde_json::json!({"incident": d, "state": inc.state(), "runs": runs, "artifacts": artifacts,
            "access_recorded_in": recorded.seq});
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "incident   {}  {}", d.incident, d.title)?;
    writeln!(out, "severity   {}", d.severity.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "discovered {}",
        d.discovered_at
            .as_ref()
            .map_or("-".into(), ToString::to_string)
    )?;
    writeln!(
        out,
        "declared   {} by {} on {}",
        d.declared_at, d.declared_by, d.host
    )?;
    writeln!(out, "state      {}", inc.state())?;
    for r in &runs {
        let fin = &r["finished"];
        let tail = if fin.is_null() {
            "not finished (interrupted?)".to_string()
        } else {
            format!(
                "finished {}: {} complete, {} partial, {} failed",
                fin["ended_at"].as_str().unwrap_or("?"),
                fin["complete"],
                fin["partial"],
                fin["failed"]
            )
        };
        writeln!(
            out,
            "run        {} started {} by {}; {tail}",
            r["run"].as_str().unwrap_or("?"),
            r["started_at"].as_str().unwrap_or("?"),
            r["by"].as_str().unwrap_or("?")
        )?;
    }
    writeln!(out, "\nartifacts ({}):", inc.artifacts().count())?;
    for (_, art) in inc.artifacts() {
        writeln!(
            out,
            "  {:<8} {:>10}  {}",
            art.status.as_str(),
            human(art.size),
            art.path
        )?;
        writeln!(out, "           sha256 {}", art.sha256)?;
        writeln!(out, "           blake3 {}", art.blake3)?;
        if let Some(t) = &art.link_target {
            writeln!(out, "           symlink -> {t}")?;
        }
        if let Some(r) = art.reason.as_ref().or(art.error.as_ref()) {
            writeln!(
                out,
                "           {}: {r}",
                if art.status == Status::Partial {
                    "reason"
                } else {
                    "error"
                }
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cat(a: CatArgs) -> Result<ExitCode> {
    let mut session = Session::open(&a.v)?;
    let signer = session.signer(a.actor.key.clone())?;
    let inc = session.incident(&a.incident)?;
    // A relative path names the file as `declare --path` recorded it.
    let absolute = (!a.path.starts_with('/'))
        .then(|| std::path::absolute(&a.path).ok())
        .flatten()
        .map(|p| p.to_string_lossy().into_owned());
    let mut matches: Vec<&Artifact> = inc
        .artifacts()
        .map(|(_, art)| art)
        .filter(|art| {
            (art.path == a.path || Some(art.path.as_str()) == absolute.as_deref())
                && a.run
                    .as_ref()
                    .is_none_or(|r| art.run.starts_with(r.as_str()))
        })
        .collect();
    let Some(art) = matches.pop() else {
        bail!(
            "incident {} has no artifact with path {:?}{}; `custody show {}` lists them",
            a.incident,
            a.path,
            a.run
                .as_ref()
                .map_or(String::new(), |r| format!(" in run {r}")),
            a.incident
        );
    };
    if art.kind == custody::segment::ItemKind::Missing {
        bail!(
            "{} was not captured: {}",
            art.path,
            art.error.as_deref().unwrap_or("no content")
        );
    }
    if art.kind == custody::segment::ItemKind::Symlink {
        bail!(
            "{} is a symbolic link to {:?}; it has no content",
            art.path,
            art.link_target.as_deref().unwrap_or("")
        );
    }
    if let Some(offset) = art.offset {
        eprintln!(
            "custody: {} was followed while the incident was held: this is its piece of bytes {offset}..{} (run {}); `custody show {} --json` lists every piece",
            art.path,
            offset.saturating_add(art.size),
            art.run,
            a.incident
        );
    }
    // The access is recorded before a byte is written.
    let art = art.clone();
    let mut e = session.event(
        Some(&a.incident),
        custody::segment::Action::Accessed,
        "cat",
        a.actor.actor()?,
        Some(a.purpose.clone()),
    );
    e.subjects = vec![subject(&art)];
    session.record(&signer, vec![Entry::CustodyEvent(e)])?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    match custody::restore::restore(session.vault.store(), &art, &mut out) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(custody::restore::RestoreError::Write(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(custody::restore::RestoreError::Chunk(custody::restore::ChunkError::Store(e))) => {
            let _ = out.flush();
            Err(anyhow!(
                "{e}\nthe output is incomplete: it is NOT the preserved evidence"
            ))
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("custody: error: {e}");
            eprintln!("custody: the output is NOT the preserved evidence; run `custody verify`");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every subcommand (unique names,
    /// valid `requires`), which otherwise only fire when a command runs.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
