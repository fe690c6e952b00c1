//! Shared helpers: a vault made through the real binary, data generators,
//! and JSON helpers for verify reports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// The `custody` binary under test, with a clean environment for its
/// variables.
pub fn custody() -> Command {
    let mut c = Command::cargo_bin("custody").expect("binary built");
    for v in ["CUSTODY_VAULT", "CUSTODY_KEY", "CUSTODY_CONFIG"] {
        c.env_remove(v);
    }
    c
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough to
/// exercise chunking and packing.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Log-like text of about `n` bytes.
pub fn log_text(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 200);
    let mut i = seed;
    while out.len() < n {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(
            format!(
                "2026-11-27T21:{:02}:{:02}Z web-01 sshd[{}]: Failed password for user{} from 10.0.{}.{} port {}\n",
                (i >> 8) % 60,
                (i >> 16) % 60,
                (i >> 24) % 30000,
                (i >> 32) % 500,
                (i >> 40) % 256,
                (i >> 48) % 256,
                (i >> 20) % 65535
            )
            .as_bytes(),
        );
    }
    out
}

/// A vault in a temporary directory, created with `custody init`.
pub struct TestVault {
    pub tmp: tempfile::TempDir,
    pub vault: PathBuf,
    pub key: PathBuf,
    pub data: PathBuf,
    pub vault_id: String,
}

impl TestVault {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let vault = tmp.path().join("vault");
        let key = tmp.path().join("keys/vault.key");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let out = custody()
            .args(["init", "--json", "--origin", "test.custody.example/vault"])
            .arg("--vault")
            .arg(&vault)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let vault_id = v["vault_id"].as_str().unwrap().to_owned();
        Self {
            tmp,
            vault,
            key,
            data,
            vault_id,
        }
    }

    /// Writes a data file under `data/`.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `custody <args> --vault V`, with the vault's key for every command
    /// that writes (all but `verify`, which records only when asked here),
    /// and a purpose (and recipient) where reading evidence needs one.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = custody();
        c.args(args).arg("--vault").arg(&self.vault);
        match args.first() {
            Some(&"declare") => {
                c.arg("--key").arg(&self.key);
            }
            Some(&"verify") => {}
            Some(&"cat") => {
                c.env("CUSTODY_KEY", &self.key).args(["--purpose", "test"]);
            }
            Some(&"export") => {
                c.env("CUSTODY_KEY", &self.key)
                    .args(["--purpose", "test", "--to", "auditor"]);
            }
            _ => {
                c.env("CUSTODY_KEY", &self.key);
            }
        }
        c
    }

    /// Declares `incident` over `data/` plus extra args; returns the output.
    pub fn declare(&self, incident: &str, extra: &[&str]) -> Output {
        let mut c = self.cmd(&["declare", incident, "--title", "test incident", "--quiet"]);
        c.args(extra);
        c.output().unwrap()
    }

    /// `custody declare` with this vault's key into the vault at `dir` (a
    /// tampered copy), over `data/`.
    pub fn declare_into(&self, dir: &Path, incident: &str) -> Output {
        custody()
            .args(["declare", incident, "--title", "t", "--quiet", "--key"])
            .arg(&self.key)
            .arg("--path")
            .arg(&self.data)
            .arg("--vault")
            .arg(dir)
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap()
    }

    /// Declares over `data/` and asserts success.
    pub fn declare_data(&self, incident: &str) -> serde_json::Value {
        let data = self.data.to_str().unwrap().to_owned();
        let out = self.declare(incident, &["--json", "--path", &data]);
        assert!(
            out.status.success(),
            "declare failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `custody verify --json` on the vault at `dir`; returns exit code and report.
    pub fn verify_dir(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let out = custody()
            .args(["verify", "--json", "--quiet"])
            .arg("--vault")
            .arg(dir)
            .args(extra)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, report)
    }

    pub fn verify(&self) -> (i32, serde_json::Value) {
        Self::verify_dir(&self.vault, &[])
    }

    /// Asserts the vault verifies with no damage.
    pub fn assert_intact(&self) {
        let (code, report) = self.verify();
        assert_eq!(code, 0, "vault should verify: {report:#}");
    }

    /// Copies the vault directory to a new place for tampering.
    pub fn copy(&self, name: &str) -> PathBuf {
        let to = self.tmp.path().join(name);
        copy_dir(&self.vault, &to);
        to
    }

    pub fn keys(&self, dir: &Path, prefix: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = walk(&dir.join(prefix));
        out.sort();
        out
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// The finding kinds in a verify JSON report.
pub fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// `$CUSTODY_PY` (the test venv's python; default `python3`) when it can
/// import `modules`; in CI a missing one fails the test.
pub fn python_with(modules: &[&str]) -> Option<String> {
    let py = std::env::var("CUSTODY_PY").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&py)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success());
    available(has, &format!("python with {}", modules.join(" and "))).then_some(py)
}

/// Whether a tool is on PATH; in CI (or with CUSTODY_REQUIRE_INTEROP=1) a
/// missing tool fails the test instead of skipping it.
pub fn require_tool(name: &str) -> bool {
    available(on_path(name), name)
}

/// Whether `name` is a command on PATH.
pub fn on_path(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `found`, after failing the test when `what` is required here (CI, or
/// CUSTODY_REQUIRE_INTEROP=1) and saying so when it is skipped.
pub fn available(found: bool, what: &str) -> bool {
    if !found {
        let required = std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var("CUSTODY_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{what} is required here (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: {what} not installed; run scripts/test.sh to install it");
    }
    found
}

/// Asserts that a command succeeded, showing its output when not; returns
/// its standard output as text.
#[track_caller]
pub fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `incident hold|release ID` with a fixed name, reason and authorisation.
pub fn hold_args<'a>(verb: &'a str, incident: &'a str) -> [&'a str; 9] {
    [
        "incident",
        verb,
        incident,
        "--name",
        "h",
        "--reason",
        "litigation",
        "--authorisation",
        "counsel",
    ]
}

/// `go run` of `program` with `args`, in GOPATH mode against Debian's
/// golang.org/x/mod (scripts/test.sh installs it), with a fresh build cache.
pub fn go_run<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("main.go");
    std::fs::write(&src, program).unwrap();
    std::process::Command::new("go")
        .arg("run")
        .arg(&src)
        .args(args)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap()
}

/// Verifies the vault at `dir` (exit 1) and asserts a finding of `kind`.
#[track_caller]
pub fn assert_finds(dir: &Path, extra: &[&str], kind: &str) -> serde_json::Value {
    let (code, report) = TestVault::verify_dir(dir, extra);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        kinds(&report).iter().any(|k| k == kind),
        "no {kind}: {report:#}"
    );
    report
}
