//! `custody.toml`: where the vault is, which key signs, and the sources to
//! preserve (README §Configuration; example in `sample/custody.toml`).
//!
//! Parsing is strict (unknown fields are errors, with line and column).
//! Relative source paths are resolved against the config file's directory,
//! so a config means the same thing from any working directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::segment::{SourceKind, SourceSpec};

/// Largest config file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why a config file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("couldn't read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not valid TOML or has wrong fields (the message names the line).
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
}

/// The parsed config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Vault location: a directory, a `file://` URL or `s3://bucket/prefix`.
    pub vault: Option<String>,
    /// Signing key file.
    pub key: Option<PathBuf>,
    /// Name recorded on artifacts as their collector (default: host name).
    pub collector: Option<String>,
    /// Regulatory regimes applied to every incident declared without
    /// `--regime` (ids as `custody incident status` lists them).
    #[serde(default)]
    pub regimes: Vec<String>,
    /// Settings of an `s3://` vault (endpoint, region, plain http), over the
    /// `AWS_*` environment.
    pub s3: Option<crate::store::S3Settings>,
    /// This is the only writer of the vault: required on a backend that
    /// `custody doctor` found not to enforce create-once (FORMAT.md §11.1).
    pub single_writer: Option<bool>,
    /// Rules for `custody keys` findings.
    #[serde(default)]
    pub keys: KeyRules,
    /// Witnesses that cosign checkpoints (FORMAT.md §10a).
    #[serde(default, rename = "witness")]
    pub witnesses: Vec<WitnessConfig>,
    /// How many witnesses must cosign a checkpoint (default: all listed).
    pub witness_quorum: Option<usize>,
    /// Sources to preserve on `declare` (and, for `custody agent`, on
    /// every declaration the server announces).
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSpec>,
    /// `custody serve`: the service (README "The service").
    pub serve: Option<ServeConfig>,
    /// `custody agent`: which server, and how to prove who it is.
    pub agent: Option<AgentConfig>,
}

impl Config {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`ConfigError`], naming the line for syntax errors.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.into(),
            message,
        };
        let (_, bytes) =
            crate::localfile::read_small(path, MAX_CONFIG_BYTES).map_err(|e| match e {
                crate::localfile::SmallFileError::Io(e) => io(e),
                e => invalid(e.to_string()),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base).map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })
    }

    /// Parses config text; relative paths are resolved against `base`.
    ///
    /// # Errors
    /// A message naming the line and what is wrong.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        let mut names = std::collections::HashSet::new();
        for (i, s) in cfg.sources.iter_mut().enumerate() {
            let at = format!("source #{} ({:?})", i + 1, s.name);
            if s.name.trim().is_empty() {
                return Err(format!("source #{}: `name` must not be empty", i + 1));
            }
            if !names.insert(s.name.clone()) {
                return Err(format!("{at}: two sources have this name"));
            }
            check_source(s).map_err(|m| format!("{at}: {m}"))?;
            for p in &mut s.paths {
                if !Path::new(p).is_absolute() {
                    let joined = base.join(&*p);
                    *p = std::path::absolute(&joined)
                        .unwrap_or(joined)
                        .to_string_lossy()
                        .into_owned();
                }
            }
        }
        if let Some(k) = &cfg.key {
            if k.is_relative() {
                cfg.key = Some(base.join(k));
            }
        }
        if let Some(v) = &cfg.vault {
            if !v.contains("://") && Path::new(v).is_relative() {
                cfg.vault = Some(base.join(v).to_string_lossy().into_owned());
            }
        }
        let rebase = |p: &mut Option<PathBuf>| {
            if let Some(x) = p
                && x.is_relative()
            {
                *x = base.join(&*x);
            }
        };
        if let Some(s) = &mut cfg.serve {
            rebase(&mut s.tls_cert);
            rebase(&mut s.tls_key);
            rebase(&mut s.client_ca);
            for w in &mut s.webhooks {
                let mut p = Some(w.secret_file.clone());
                rebase(&mut p);
                w.secret_file = p.unwrap_or_default();
            }
            s.check()?;
        }
        if let Some(a) = &mut cfg.agent {
            rebase(&mut a.ca);
            rebase(&mut a.cert);
            rebase(&mut a.key);
            rebase(&mut a.token_file);
            rebase(&mut a.spool);
        }
        Ok(cfg)
    }
}

/// One `[[witness]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its verifier key, `<name>+<hash>+<base64>` (`custody witness keygen`).
    pub key: String,
    /// Its submission prefix, e.g. `http://witness.example:7380`.
    pub url: String,
}

/// What a caller of the service may do (README "The service").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and verifies; writes nothing but the record of its reads.
    Auditor,
    /// Declares incidents and records their lifecycle; reads.
    Declarer,
    /// Receives declarations and ingests evidence for declared incidents.
    Agent,
    /// Everything.
    Admin,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auditor => "auditor",
            Self::Declarer => "declarer",
            Self::Agent => "agent",
            Self::Admin => "admin",
        }
    }
}

/// The `[serve]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// gRPC address (default 127.0.0.1:7700).
    pub listen: Option<String>,
    /// Server certificate chain (PEM); with `tls_key`, the service speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    pub tls_key: Option<PathBuf>,
    /// CA whose client certificates are accepted (mTLS); callers without
    /// one may still present a bearer token.
    pub client_ca: Option<PathBuf>,
    /// Serve without TLS: allowed only on a loopback address.
    #[serde(default)]
    pub plaintext: bool,
    /// Webhook address for incident tools (HTTP; put TLS in front).
    pub webhook_listen: Option<String>,
    /// Seconds a webhook connection may take to deliver its request,
    /// headers and body (default 10); slower senders are disconnected.
    pub webhook_timeout_secs: Option<u64>,
    /// Seconds between heartbeat checkpoints (default 300; 0: none).
    pub heartbeat_secs: Option<u64>,
    /// Client certificates, by subject common name, and their roles.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// Bearer tokens, stored as SHA-256 hashes, and their roles.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// Incident tools that may declare through the webhook.
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
}

impl ServeConfig {
    fn check(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("[serve]: `tls_cert` and `tls_key` go together".into());
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            return Err("[serve]: `client_ca` needs `tls_cert` and `tls_key`".into());
        }
        // One name, one caller: a certificate and a token of one name would
        // share runs and records, and `webhook:` names the webhooks.
        let mut names = std::collections::HashSet::new();
        let mut name_ok = |table: &str, n: &str| {
            if n.trim().is_empty() || n.starts_with("webhook:") || !names.insert(n.to_owned()) {
                Err(format!(
                    "[[serve.{table}]] {n:?}: empty, starting with the reserved `webhook:`, or the name of another client, token or webhook"
                ))
            } else {
                Ok(())
            }
        };
        for c in &self.clients {
            name_ok("client", &c.name)?;
        }
        for t in &self.tokens {
            name_ok("token", &t.name)?;
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return Err(format!(
                    "[[serve.token]] {:?}: `sha256` must be 64 hex digits (`custody serve hash-token`)",
                    t.name
                ));
            }
        }
        for w in &self.webhooks {
            name_ok("webhook", &w.name)?;
            if crate::preserve::check_incident_id(&format!("{}1", w.prefix())).is_err() {
                return Err(format!(
                    "[[serve.webhook]] {:?}: `incident_prefix` must be characters of an incident id",
                    w.name
                ));
            }
        }
        Ok(())
    }
}

/// One `[[serve.client]]`: a client certificate's subject CN and its role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Subject common name of the certificate (issued by `client_ca`).
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// One `[[serve.token]]`: a bearer token by the hex SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Recorded as the caller's name.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Its role.
    pub role: Role,
}

/// The signature scheme of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// `X-Custody-Timestamp` and `X-Custody-Signature: sha256=<hex HMAC>`.
    Generic,
    /// PagerDuty webhooks v3: `X-PagerDuty-Signature: v1=<hex HMAC>`.
    Pagerduty,
}

/// One `[[serve.webhook]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its name: the path is `/webhook/<name>`, and declarations are
    /// recorded as by `webhook:<name>`.
    pub name: String,
    /// Signature scheme.
    pub kind: WebhookKind,
    /// File holding the shared secret (mode 0600).
    pub secret_file: PathBuf,
    /// Only events of these priorities declare (PagerDuty: `P1`, ...;
    /// generic: the `priority` field). Empty: all.
    #[serde(default)]
    pub priorities: Vec<String>,
    /// Only events of these services (PagerDuty service id or name;
    /// generic: the `service` field). Empty: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Prefix of the incident ids it declares (default `<name>-`).
    pub incident_prefix: Option<String>,
}

impl WebhookConfig {
    /// The incident id prefix.
    pub fn prefix(&self) -> String {
        self.incident_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-", self.name))
    }
}

/// The `[agent]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The server, `https://host:port` (or `http://` on loopback).
    pub server: Option<String>,
    /// CA that issued the server's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// The agent's client certificate (PEM), for mTLS.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    pub key: Option<PathBuf>,
    /// A file holding a bearer token instead (mode 0600).
    pub token_file: Option<PathBuf>,
    /// Where packs wait until the server holds them (default
    /// ~/.local/state/custody/agent).
    pub spool: Option<PathBuf>,
    /// While an incident is held, seconds between captures of what the
    /// `files` sources appended (default 60; 0: no follow mode).
    pub follow_secs: Option<u64>,
}

/// The `[keys]` table: rules for key findings (`custody keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRules {
    /// Keys older than this many days are `stale_key` (default 365).
    pub max_age_days: Option<u64>,
}

/// Checks that a source has the fields its kind needs, and only those.
///
/// # Errors
/// What is missing or misplaced.
pub fn check_source(s: &SourceSpec) -> Result<(), String> {
    match s.kind {
        SourceKind::Files | SourceKind::Keys => {
            if s.paths.is_empty() {
                return Err(format!("a `{}` source needs `paths`", s.kind.as_str()));
            }
            if !s.argv.is_empty() || s.timeout_secs.is_some() {
                return Err(format!(
                    "a `{}` source takes no `argv` or `timeout_secs`",
                    s.kind.as_str()
                ));
            }
            for g in &s.exclude {
                globset::Glob::new(g).map_err(|e| format!("exclude {g:?}: {e}"))?;
            }
            if !s.seal_to.is_empty() && s.kind != SourceKind::Keys {
                return Err("only a `keys` source takes `seal_to`".into());
            }
            for r in &s.seal_to {
                crate::keymaterial::parse_recipient(r)?;
            }
        }
        SourceKind::Command => {
            if s.argv.is_empty() || s.argv[0].is_empty() {
                return Err("a `command` source needs a non-empty `argv`".into());
            }
            if s.timeout_secs == Some(0) {
                return Err("`timeout_secs` must be at least 1".into());
            }
            if !s.paths.is_empty() || !s.exclude.is_empty() || !s.seal_to.is_empty() {
                return Err("a `command` source takes no `paths`, `exclude` or `seal_to`".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources_and_resolves_paths() {
        let text = r#"
vault = "vault"
key = "/etc/custody/k.key"
collector = "web-01"

[[source]]
name = "logs"
kind = "files"
paths = ["logs/", "/var/log/*.log"]
exclude = ["*.gz"]

[[source]]
name = "journal"
kind = "command"
argv = ["journalctl", "-o", "export"]
"#;
        let c = Config::parse(text, Path::new("/srv/custody")).unwrap();
        assert_eq!(c.vault.as_deref(), Some("/srv/custody/vault"));
        assert_eq!(
            c.sources[0].paths,
            vec!["/srv/custody/logs/", "/var/log/*.log"]
        );
        assert_eq!(c.sources[1].kind, SourceKind::Command);
        assert_eq!(c.collector.as_deref(), Some("web-01"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = Config::parse(
            "vault = \"v\"\n\n[[source]]\nname = \"x\"\nkind = \"tape\"\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.contains("line 5"), "{err}");
        let err = Config::parse("valt = 1\n", Path::new("/")).unwrap_err();
        assert!(err.contains("line 1") && err.contains("valt"), "{err}");
        let err = Config::parse("[[source]]\nname=\"a\"\nkind=\"command\"\n", Path::new("/"))
            .unwrap_err();
        assert!(err.contains("argv"), "{err}");
        let dup = "[[source]]\nname=\"a\"\nkind=\"keys\"\npaths=[\"k\"]\n[[source]]\nname=\"a\"\nkind=\"keys\"\npaths=[\"k\"]\n";
        assert!(
            Config::parse(dup, Path::new("/"))
                .unwrap_err()
                .contains("two sources")
        );
    }
}
