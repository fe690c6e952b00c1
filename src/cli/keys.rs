//! `custody keys`: key snapshots, their differences and findings, and
//! offline inspection of key files (FORMAT.md §9.12).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use custody::hash::Sha256Digest;
use custody::keyfind::{self, Finding, Rules, Snapshot, Snapshots};
use custody::keymaterial::{self, KeyRecord, MAX_KEY_FILE};
use custody::vault::Vault;

use super::{VaultArg, open_store, outln};

pub const AFTER_HELP: &str = "\
Examples:
  custody keys INC-7                  the latest key snapshot of INC-7, with findings
  custody keys 34e2bbfb...            the snapshot of one run (32 hex digits)
  custody keys diff INC-3 INC-7       keys added, removed, moved and replaced
  custody keys inspect suspect.pem    fingerprints and commitment of a local file

A snapshot is what `declare --keys PATH` (or a `keys` source) recorded: for
every key its type, size or curve, JWK kid/use/alg, RFC 7638 thumbprint,
SHA-256 of its SubjectPublicKeyInfo, OpenSSH fingerprint, certificate fields,
and for a private key a commitment instead of the key. To show that a copy of
a key found elsewhere is the preserved one, run `custody keys inspect` on the
copy and compare the commitment (or the spki fingerprint).

Findings: stale_key (older than --max-age-days by file time, certificate
start or first preservation), private_key_copies, published_without_private,
private_not_published, certificate_expired, certificate_not_yet_valid,
modified_after_discovery.

Exit status:
  0  no findings (list, diff, inspect: done)
  1  findings (list only)
  2  could not run";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct KeysArgs {
    #[command(subcommand)]
    cmd: Option<KeysCommand>,
    /// Incident id (its latest snapshot) or run id
    #[arg(value_name = "ID", required = true)]
    id: Option<String>,
    /// Keys older than this many days are stale [default: `[keys] max_age_days` of custody.toml,
    /// else 365]
    #[arg(long, value_name = "DAYS")]
    max_age_days: Option<u64>,
    /// Print as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    v: VaultArg,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Compare two snapshots (incident ids or run ids): keys added, removed, moved, replaced.
    Diff {
        /// The earlier snapshot
        a: String,
        /// The later snapshot
        b: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        v: VaultArg,
    },
    /// Describe local key files without a vault: fingerprints, and commitments of private keys.
    Inspect {
        /// Files to read
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn keys_cmd(a: KeysArgs) -> Result<ExitCode> {
    match a.cmd {
        Some(KeysCommand::Diff { a, b, json, v }) => diff_cmd(&v, &a, &b, json),
        Some(KeysCommand::Inspect { files, json }) => inspect_cmd(&files, json),
        None => {
            let id =
                a.id.ok_or_else(|| anyhow!("give an incident id or a run id"))?;
            list_cmd(&a.v, &id, a.max_age_days, a.json)
        }
    }
}

/// The snapshots of the vault, and the configured maximum key age.
fn load(v: &VaultArg) -> Result<(Snapshots, Option<u64>)> {
    let (store, cfg) = open_store(v)?;
    let mut snaps = Snapshots::default();
    Vault::open_with(store, |seq, seg| snaps.absorb(seq, seg))?;
    Ok((snaps, cfg.keys.max_age_days))
}

fn pick<'a>(snaps: &'a Snapshots, id: &str) -> Result<&'a Snapshot> {
    snaps.find(id).ok_or_else(|| {
        anyhow!("no key snapshot for {id:?}: no run with that id, and no incident with that id preserved a `keys` source")
    })
}

fn list_cmd(v: &VaultArg, id: &str, max_age_days: Option<u64>, json: bool) -> Result<ExitCode> {
    let (snaps, configured) = load(v)?;
    let max_age_days = max_age_days
        .or(configured)
        .unwrap_or(Rules::default().max_age_days);
    let snap = pick(&snaps, id)?;
    let found = keyfind::findings(snap, snaps.all(), Rules { max_age_days });
    if json {
        let out = serde_json::json!({
            "incident": snap.incident, "run": snap.run, "taken_at": snap.taken_at,
            "discovered_at": snap.discovered_at, "max_age_days": max_age_days,
            "files": snap.files.iter().map(|(seq, f)| serde_json::json!({"segment": seq, "key_file": f})).collect::<Vec<_>>(),
            "findings": found,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "key snapshot of incident {}, run {}, taken {}{}",
            snap.incident,
            snap.run,
            snap.taken_at,
            snap.discovered_at
                .as_ref()
                .map_or_else(String::new, |d| format!("; discovered {d}"))
        );
        for (seq, f) in &snap.files {
            let _ = writeln!(
                s,
                "\n{}  {}, {} [{}] segment {seq}, sha256 {}",
                f.path,
                f.form.as_str(),
                f.content.as_str(),
                f.status.as_str(),
                f.sha256.short()
            );
            if let Some(m) = &f.file {
                let _ = writeln!(
                    s,
                    "  file: mode {} owner {} mtime {} ctime {}",
                    m.mode,
                    m.owner.as_deref().unwrap_or("?"),
                    m.mtime,
                    m.ctime
                );
            }
            for why in f.reason.iter().chain(&f.error).chain(&f.notes) {
                let _ = writeln!(s, "  note: {why}");
            }
            for k in &f.keys {
                write_key(&mut s, k);
            }
        }
        let _ = writeln!(s);
        write_findings(&mut s, &found, max_age_days);
        outln!("{}", s.trim_end());
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_key(s: &mut String, k: &KeyRecord) {
    let _ = writeln!(
        s,
        "  [{}] {:<22} {:<9} {}",
        k.index,
        k.container,
        format!("{:?}", k.part).to_lowercase(),
        k.label()
    );
    if let Some(d) = k.spki_sha256 {
        let _ = writeln!(s, "      spki sha256   {}", d.to_hex());
    }
    if let Some(t) = &k.jwk_thumbprint {
        let _ = writeln!(s, "      jwk thumbprint {t}");
    }
    if let Some(f) = &k.ssh_fingerprint {
        let _ = writeln!(s, "      ssh           {f}");
    }
    if let Some(c) = k.commitment {
        let _ = writeln!(s, "      commitment    {}", c.to_hex());
    }
    if let Some(c) = &k.certificate {
        let _ = writeln!(
            s,
            "      certificate   {} issued by {}{}, serial {}, valid {} to {}, chain position {}",
            c.subject,
            c.issuer,
            if c.self_signed { " (self-signed)" } else { "" },
            c.serial,
            c.not_before,
            c.not_after,
            c.chain_index
        );
    }
    if let Some(p) = &k.problem {
        let _ = writeln!(s, "      problem       {p}");
    }
}

fn write_findings(s: &mut String, found: &[Finding], max_age_days: u64) {
    if found.is_empty() {
        let _ = writeln!(s, "findings: none (maximum key age {max_age_days} days)");
        return;
    }
    let _ = writeln!(s, "findings: {}", found.len());
    for f in found {
        let _ = writeln!(
            s,
            "  {:<26} {}",
            f.kind.as_str(),
            f.key.as_deref().unwrap_or("")
        );
        let _ = writeln!(s, "      {}", f.message);
        for p in &f.places {
            let _ = writeln!(s, "      at {p}");
        }
        for e in &f.evidence {
            let _ = writeln!(s, "      evidence: {e}");
        }
    }
}

fn diff_cmd(v: &VaultArg, a: &str, b: &str, json: bool) -> Result<ExitCode> {
    let (snaps, _) = load(v)?;
    let (sa, sb) = (pick(&snaps, a)?, pick(&snaps, b)?);
    let d = keyfind::diff(sa, sb);
    if json {
        let out = serde_json::json!({
            "a": {"incident": sa.incident, "run": sa.run, "taken_at": sa.taken_at},
            "b": {"incident": sb.incident, "run": sb.run, "taken_at": sb.taken_at},
            "added": d.added.iter().map(|(id, l, p)| serde_json::json!({"identity": id, "key": l, "places": p})).collect::<Vec<_>>(),
            "removed": d.removed.iter().map(|(id, l, p)| serde_json::json!({"identity": id, "key": l, "places": p})).collect::<Vec<_>>(),
            "moved": d.moved.iter().map(|(id, l, x, y)| serde_json::json!({"identity": id, "key": l, "before": x, "after": y})).collect::<Vec<_>>(),
            "replaced": d.replaced.iter().map(|(p, x, y)| serde_json::json!({"place": p, "before": x, "after": y})).collect::<Vec<_>>(),
            "rewritten": d.rewritten,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "keys of {} (run {}, {}) -> {} (run {}, {})",
        sa.incident,
        sa.run.get(..8).unwrap_or(&sa.run),
        sa.taken_at,
        sb.incident,
        sb.run.get(..8).unwrap_or(&sb.run),
        sb.taken_at
    );
    for (what, list) in [("added", &d.added), ("removed", &d.removed)] {
        for (id, label, places) in list {
            let _ = writeln!(s, "{what:<9} {label}  {id}");
            for p in places {
                let _ = writeln!(s, "          at {p}");
            }
        }
    }
    for (id, label, before, after) in &d.moved {
        let _ = writeln!(s, "moved     {label}  {id}");
        let _ = writeln!(s, "          from {}", before.join(", "));
        let _ = writeln!(s, "          to   {}", after.join(", "));
    }
    for (place, before, after) in &d.replaced {
        let _ = writeln!(s, "replaced  at {place}: {before} -> {after}");
    }
    for place in &d.rewritten {
        let _ = writeln!(s, "rewritten {place}: other bytes, the same keys");
    }
    if d.added.is_empty()
        && d.removed.is_empty()
        && d.moved.is_empty()
        && d.replaced.is_empty()
        && d.rewritten.is_empty()
    {
        let _ = writeln!(s, "no change");
    }
    outln!("{}", s.trim_end());
    Ok(ExitCode::SUCCESS)
}

fn inspect_cmd(files: &[PathBuf], json: bool) -> Result<ExitCode> {
    let mut out = Vec::new();
    let mut s = String::new();
    for path in files {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("couldn't open {}", path.display()))?;
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        (&mut f)
            .take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("couldn't read {}", path.display()))?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            bail!(
                "{} is larger than {MAX_KEY_FILE} bytes: not read as key material",
                path.display()
            );
        }
        let a = keymaterial::analyze(&bytes);
        let sha = Sha256Digest::of(&bytes);
        if json {
            out.push(serde_json::json!({
                "path": path, "sha256": sha, "size": bytes.len(), "form": a.form,
                "keys": a.keys, "notes": a.notes,
            }));
        } else {
            let _ = writeln!(
                s,
                "{}  {}, sha256 {}",
                path.display(),
                a.form.as_str(),
                sha.to_hex()
            );
            for n in &a.notes {
                let _ = writeln!(s, "  note: {n}");
            }
            for k in &a.keys {
                write_key(&mut s, k);
            }
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("{}", s.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
