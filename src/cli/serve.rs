//! `custody serve`: the gRPC service of `proto/custody/v1` over one vault,
//! and the webhook endpoint for incident tools (README "The service").
//!
//! The service translates and decides who may call; the vault work is the
//! library's and the CLI's own: every write goes through the same
//! [`Session`] as `custody incident ...`, every read is recorded as a
//! custody event naming the caller before the answer leaves, and evidence
//! from agents is re-hashed here before it is sealed.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use custody::config::{Role, ServeConfig};
use custody::hash::{Blake3Id, Sha256Digest};
use custody::keys::VaultSigner;
use custody::proto::{self as pb, custody_server};
use custody::segment::{
    Action, Actor, Entry, FactLearned, Hold, IncidentClosed, IncidentDeclared, Note,
    PreservationFinished, PreservationStarted, ReportFiled, SourceSpec, Status as ItemStatus, Tool,
};
use custody::time::Time;
use sha2::Digest as _;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::incident::{Session, check_filing, non_empty, subject};
use super::{VaultArg, host_name, os_user, outln};

/// Largest pack an agent may send: the writer's 16 MiB target plus a frame,
/// with room to spare (FORMAT.md §6 allows readers up to 128 MiB).
pub const MAX_PACK_BYTES: u64 = 32 << 20;
/// Bytes of packs held in memory at once, over all uploads.
const PACK_BUDGET_BYTES: u64 = 96 << 20;
/// Largest gRPC message (entries of one AddEntries call).
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Entries sealed into one segment at most (by JSON bytes).
const SEAL_JSON_BYTES: usize = 2 << 20;
/// Largest `sources_json` of a run.
const MAX_SOURCES_JSON: usize = 64 << 10;
/// Packs a BeginRun may ask about.
const MAX_PACKS_ASKED: usize = 20_000;
/// Chunk references one AddEntries may make (one artifact may have 150 000).
const MAX_CHUNKS_PER_CALL: usize = 160_000;
/// How long a pack upload may pause between pieces.
const PIECE_DEADLINE: Duration = Duration::from_secs(30);
/// How long one pack upload may take.
const PACK_DEADLINE: Duration = Duration::from_secs(300);
/// Declarations to agents: heartbeat interval.
const WATCH_HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub(super) enum ServeCommand {
    /// Print the SHA-256 of a bearer token read from standard input, for `[[serve.token]]`.
    HashToken,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct ServeArgs {
    #[command(subcommand)]
    cmd: Option<ServeCommand>,
    #[command(flatten)]
    v: VaultArg,
    /// Signing key file [default: from custody.toml, else ~/.config/custody/keys/<origin>.key]
    #[arg(long, env = "CUSTODY_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// gRPC address, over `[serve] listen` [default: 127.0.0.1:7700]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Webhook address, over `[serve] webhook_listen` [default: none]
    #[arg(long, value_name = "ADDR")]
    webhook_listen: Option<String>,
}

pub(super) fn run(a: ServeArgs) -> Result<ExitCode> {
    if let Some(ServeCommand::HashToken) = a.cmd {
        let mut token = String::new();
        std::io::stdin().read_line(&mut token)?;
        let token = token.trim();
        if token.len() < 16 {
            bail!(
                "a bearer token must be at least 16 characters (for example `openssl rand -hex 32`)"
            );
        }
        outln!("{}", hex::encode(sha2::Sha256::digest(token.as_bytes())));
        return Ok(ExitCode::SUCCESS);
    }
    let mut session = Session::open(&a.v)?;
    let cfg = session.cfg.serve.clone().ok_or_else(|| {
        anyhow!("the config has no [serve] table: README \"The service\" shows one")
    })?;
    let signer = session.signer(a.key.clone())?;
    let listen: SocketAddr = a
        .listen
        .clone()
        .or(cfg.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:7700".into())
        .parse()
        .context("listen address")?;
    let webhook_listen: Option<SocketAddr> = a
        .webhook_listen
        .clone()
        .or(cfg.webhook_listen.clone())
        .map(|s| s.parse().context("webhook address"))
        .transpose()?;
    if cfg.tls_cert.is_none() && !(cfg.plaintext && listen.ip().is_loopback()) {
        bail!(
            "[serve] needs `tls_cert` and `tls_key` (plaintext = true is allowed only on a loopback address, for tests and a TLS proxy in front)"
        );
    }
    let webhooks = cfg
        .webhooks
        .iter()
        .map(|w| {
            let secret = custody::localfile::read_secret(&w.secret_file, 4096)
                .map_err(|e| anyhow!("webhook {:?}: {e}", w.name))?;
            let secret = String::from_utf8(secret)
                .map_err(|_| anyhow!("webhook {:?}: the secret is not text", w.name))?;
            Ok((
                w.name.clone(),
                (w.clone(), secret.trim().as_bytes().to_vec()),
            ))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let me = os_user();
    if let Some(n) = cfg
        .clients
        .iter()
        .map(|c| &c.name)
        .chain(cfg.tokens.iter().map(|t| &t.name))
        .find(|n| **n == me)
    {
        bail!(
            "[serve] names a caller {n:?}, the OS user this server runs as: its actions would be recorded as the operator's own"
        );
    }
    let (declarations, _) = broadcast::channel(256);
    let (tls, client_certs) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let (config, verifier) =
                super::tls::server_config(cert, key, cfg.client_ca.as_deref())?;
            (Some(config), verifier)
        }
        _ => (None, None),
    };
    let store = session.vault.store().clone();
    if !super::configured_witnesses(&session.cfg)?.is_empty() {
        // Witnesses are asked on a thread of their own, never under the
        // session lock: a slow or unreachable witness must not hold up
        // every call. Appends while a round runs make one more round.
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        session.witness_later = Some(tx);
        let mut vault = custody::vault::Vault::open_lean(store.clone(), |_, _| {})?;
        let vcfg = session.cfg.clone();
        std::thread::Builder::new()
            .name("custody-witness".into())
            .spawn(move || {
                for () in rx {
                    super::witness::catch_up_and_ask(&mut vault, &vcfg);
                }
            })?;
    }
    let shared = Arc::new(Shared {
        client_certs,
        session: Mutex::new(session),
        store,
        rehash_slots: Arc::new(Semaphore::new(2)),
        verify_slots: Arc::new(Semaphore::new(1)),
        signer,
        runs: Mutex::new(HashMap::new()),
        declarations,
        pack_budget: Arc::new(Semaphore::new((PACK_BUDGET_BYTES >> 10) as usize)),
        cfg: cfg.clone(),
        os_user: os_user(),
        replays: Mutex::new(HashMap::new()),
        webhooks,
        webhook_timeout: Duration::from_secs(cfg.webhook_timeout_secs.unwrap_or(10).clamp(1, 300)),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(serve(shared.clone(), cfg, tls, listen, webhook_listen));
    // The store owns a runtime of its own: the last reference to it must go
    // outside this one.
    drop(rt);
    drop(shared);
    result
}

async fn serve(
    shared: Arc<Shared>,
    cfg: ServeConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    listen: SocketAddr,
    webhook_listen: Option<SocketAddr>,
) -> Result<ExitCode> {
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .timeout(Duration::from_secs(3600))
        .concurrency_limit_per_connection(32)
        .max_concurrent_streams(64);
    let heartbeat = cfg.heartbeat_secs.unwrap_or(300);
    if heartbeat > 0 {
        tokio::spawn(heartbeats(shared.clone(), heartbeat));
    }
    let auth = shared.clone();
    let service = tonic::service::interceptor::InterceptedService::new(
        custody_server::CustodyServer::new(Service(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        move |mut req: Request<()>| {
            let caller = auth.authenticate(&req)?;
            req.extensions_mut().insert(caller);
            Ok(req)
        },
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("couldn't listen on {listen}"))?;
    let bound = listener.local_addr()?;
    if let Some(addr) = webhook_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("couldn't listen on {addr} for webhooks"))?;
        eprintln!(
            "custody serve: webhooks on http://{}/webhook/<name>",
            l.local_addr()?
        );
        tokio::spawn(super::webhook::serve(l, shared.clone()));
    }
    let router = builder.add_service(service);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("custody serve: stopping");
    };
    // Printed last: once it shows, every endpoint accepts connections.
    match tls {
        Some(config) => {
            eprintln!("custody serve: gRPC on https://{bound}");
            router
                .serve_with_incoming_shutdown(super::tls::incoming(listener, config), stop)
                .await?;
        }
        None => {
            eprintln!("custody serve: gRPC on http://{bound}");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router.serve_with_incoming_shutdown(incoming, stop).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends a `heartbeat` (FORMAT.md §9.13) whenever the log stayed the
/// same size for `secs`, so that a quiet log is attested as quiet, not
/// merely unobserved; witnesses cosign it like any other segment.
async fn heartbeats(shared: Arc<Shared>, secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = None;
    loop {
        tick.tick().await;
        let seen = last;
        let r = shared
            .with_session(move |s, signer| {
                if Some(s.vault.size()) == seen {
                    let beat = Entry::Heartbeat(custody::segment::Heartbeat {
                        at: Time::now(),
                        host: host_name(),
                        tool: Tool::this(),
                        interval_secs: secs,
                    });
                    record(s, signer, vec![beat])?;
                }
                Ok(s.vault.size())
            })
            .await;
        match r {
            Ok(size) => last = Some(size),
            Err(e) => eprintln!("custody serve: heartbeat not written: {}", e.message()),
        }
    }
}

/// Artifacts from this size on are re-hashed on two threads.
const SPLIT_REHASH_BYTES: u64 = 16 << 20;

/// About how much of an incident's record one `GetIncident` answer holds.
const PAGE_BYTES: usize = 8 << 20;

/// What every handler shares.
pub(super) struct Shared {
    /// Checks client certificates for every call (mTLS).
    client_certs: Option<Arc<super::tls::Verifier>>,
    session: Mutex<Session>,
    /// The vault's store, for work outside the session lock.
    store: custody::store::Store,
    /// Re-hashing of ingested entries, a few at a time.
    rehash_slots: Arc<Semaphore>,
    /// Verifications through the service, one at a time.
    verify_slots: Arc<Semaphore>,
    signer: VaultSigner,
    runs: Mutex<HashMap<String, RunInfo>>,
    declarations: broadcast::Sender<pb::Declaration>,
    pack_budget: Arc<Semaphore>,
    cfg: ServeConfig,
    os_user: String,
    /// Webhook signatures seen recently, with when they expire (POSIX s).
    pub(super) replays: Mutex<HashMap<String, i64>>,
    /// Webhooks by name, with their secrets.
    pub(super) webhooks: HashMap<String, (custody::config::WebhookConfig, Vec<u8>)>,
    /// How long a webhook request's headers, and then its body, may take
    /// to arrive (`[serve] webhook_timeout_secs`).
    pub(super) webhook_timeout: Duration,
}

/// One agent's preservation run.
#[derive(Debug, Clone)]
struct RunInfo {
    incident: String,
    owner: String,
    host: String,
    /// Names of the run's sources.
    sources: Vec<String>,
    sealed: u64,
    counts: [u64; 3],
    bytes_read: u64,
    bytes_stored: u64,
    /// Where its `preservation_finished` went, once finished.
    finished: Option<pb::Recorded>,
    /// Held by the AddEntries of the run being sealed: one at a time.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl RunInfo {
    fn new(incident: &str, owner: &str, host: &str, sources: Vec<String>) -> Self {
        Self {
            incident: incident.to_owned(),
            owner: owner.to_owned(),
            host: host.to_owned(),
            sources,
            sealed: 0,
            counts: [0; 3],
            bytes_read: 0,
            bytes_stored: 0,
            finished: None,
            lock: Arc::default(),
        }
    }

    /// Counts one sealed artifact or key file.
    fn count(&mut self, e: &Entry) {
        self.sealed += 1;
        if let Entry::Artifact(a) = e {
            self.bytes_read += a.size;
            self.counts[match a.status {
                ItemStatus::Complete => 0,
                ItemStatus::Partial => 1,
                ItemStatus::Failed => 2,
            }] += 1;
        }
    }
}

/// Who called, as the credentials say.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub name: String,
    pub role: Role,
    /// How the caller proved it: `client certificate CN=...`, `bearer token ...`.
    pub how: String,
    pub peer: String,
}

impl Shared {
    fn runs(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, RunInfo>>, Status> {
        self.runs
            .lock()
            .map_err(|_| Status::internal("the runs lock is poisoned"))
    }

    /// The actor recorded for `c`: its name, with the server's OS user and
    /// how the caller authenticated (FORMAT.md §9.6).
    pub(super) fn actor(&self, c: &Caller) -> Actor {
        let as_reason = (c.name != self.os_user).then(|| {
            format!(
                "authenticated to custody serve by {} (role {})",
                c.how,
                c.role.as_str()
            )
        });
        Actor {
            name: c.name.clone(),
            os_user: self.os_user.clone(),
            as_reason,
            host: format!("{} (caller {})", host_name(), c.peer),
            tool: Tool::this(),
        }
    }

    /// Runs `f` on the session, off the async threads.
    async fn with_session<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Session, &VaultSigner) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = me
                .session
                .lock()
                .map_err(|_| Status::internal("the session lock is poisoned"))?;
            // Other writers (the CLI, another server) may have appended.
            s.catch_up()
                .map_err(|e| Status::internal(format!("reading the log: {e:#}")))?;
            f(&mut s, &me.signer)
        })
        .await
        .map_err(|e| Status::internal(format!("the vault task failed: {e}")))?
    }

    /// Declares `d` unless known, and tells the agents either way.
    pub(super) async fn declare(
        self: &Arc<Self>,
        caller: &Caller,
        mut d: IncidentDeclared,
    ) -> Result<pb::DeclareIncidentResponse, Status> {
        let actor = self.actor(caller);
        let me = self.clone();
        let (resp, announce) = self
            .with_session(move |s, signer| {
                let regimes: Vec<String> = s.cfg.regimes.iter().chain(&d.regimes).cloned().collect();
                d.regimes = regimes;
                d.regimes.sort();
                d.regimes.dedup();
                for r in &d.regimes {
                    if custody::clocks::regime(r).is_none() {
                        return Err(Status::invalid_argument(format!("unknown regime {r:?}")));
                    }
                }
                let known = s.book.get(&d.incident).is_some();
                let entry = if known {
                    if s.book.get(&d.incident).and_then(|i| i.closed()).is_some() {
                        return Err(Status::failed_precondition(format!(
                            "incident {} is closed: nothing more is preserved for it",
                            d.incident
                        )));
                    }
                    Entry::Note(Note {
                        incident: d.incident.clone(),
                        text: "declared again through the service: agents were asked to preserve again".into(),
                        at: Time::now(),
                        actor,
                    })
                } else {
                    Entry::IncidentDeclared(d.clone())
                };
                let a = record(s, signer, vec![entry])?;
                let held = s.holds.held(&d.incident);
                let title = s.book.get(&d.incident).map(|i| i.declared.title.clone()).unwrap_or_default();
                let declared_at = s.book.get(&d.incident).map(|i| i.declared.declared_at.to_string()).unwrap_or_default();
                Ok((
                    pb::DeclareIncidentResponse {
                        incident: d.incident.clone(),
                        newly_declared: !known,
                        recorded: Some(recorded(&a)),
                    },
                    pb::Declaration {
                        incident: d.incident.clone(),
                        title,
                        declared_at,
                        held,
                        segment: a.seq,
                    },
                ))
            })
            .await?;
        // No agent listening is not an error: the declaration is on record.
        let _ = me.declarations.send(announce);
        Ok(resp)
    }

    /// Who the credentials of `req` prove the caller is. Runs in the
    /// interceptor, before the request's body is read, so that a caller
    /// without credentials costs nothing; refusals are logged, never with
    /// the credential.
    pub(super) fn authenticate<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let peer = req
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let refuse = |status: Status| {
            eprintln!(
                "custody serve: {} refused a call from {peer}: {}",
                Time::now(),
                status.message()
            );
            status
        };
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
        {
            // Expired, not yet valid, from another CA: refused here, where
            // the caller gets the reason and the refusal is logged.
            let checked = match &self.client_certs {
                Some(v) => v.check(&certs),
                None => Err("client certificates are not accepted here".into()),
            };
            if let Err(why) = checked {
                return Err(refuse(Status::unauthenticated(format!(
                    "client certificate refused: {why}"
                ))));
            }
            let cn = common_name(leaf.as_ref()).ok_or_else(|| {
                refuse(Status::unauthenticated(
                    "the client certificate has no subject CN",
                ))
            })?;
            return match self.cfg.clients.iter().find(|c| c.name == cn) {
                Some(c) => Ok(Caller {
                    name: cn.clone(),
                    role: c.role,
                    how: format!("client certificate CN={cn}"),
                    peer,
                }),
                None => Err(refuse(Status::permission_denied(format!(
                    "client certificate CN={cn} has no role in [[serve.client]]"
                )))),
            };
        }
        let Some(v) = req.metadata().get("authorization") else {
            return Err(refuse(Status::unauthenticated(
                "no credentials: present a client certificate or a bearer token",
            )));
        };
        let token = v
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .ok_or_else(|| {
                refuse(Status::unauthenticated(
                    "authorization must be `Bearer <token>`",
                ))
            })?;
        let hash = sha2::Sha256::digest(token.trim().as_bytes());
        // Constant-time over the configured tokens.
        let found = self.cfg.tokens.iter().find(|t| {
            use subtle::ConstantTimeEq as _;
            hex::decode(&t.sha256).is_ok_and(|h| bool::from(h.ct_eq(hash.as_slice())))
        });
        match found {
            Some(t) => Ok(Caller {
                name: t.name.clone(),
                role: t.role,
                how: format!("bearer token {:?}", t.name),
                peer,
            }),
            None => Err(refuse(Status::unauthenticated("unknown bearer token"))),
        }
    }

    /// The caller (as the interceptor found it) if its role may call
    /// `method`; a refusal is logged.
    pub(super) fn authorize<T>(
        &self,
        req: &Request<T>,
        method: &str,
        allowed: &[Role],
    ) -> Result<Caller, Status> {
        let caller = match req.extensions().get::<Caller>() {
            Some(c) => c.clone(),
            None => self.authenticate(req)?,
        };
        if caller.role != Role::Admin && !allowed.contains(&caller.role) {
            let status = Status::permission_denied(format!(
                "{} has role {}, which may not call {method}",
                caller.name,
                caller.role.as_str()
            ));
            eprintln!(
                "custody serve: {} refused {method} from {}: {}",
                Time::now(),
                caller.peer,
                status.message()
            );
            return Err(status);
        }
        Ok(caller)
    }

    /// Records a custody event for a read, before the answer is sent.
    async fn record_read(
        self: &Arc<Self>,
        caller: &Caller,
        incident: Option<String>,
        method: &'static str,
        subjects_path: Option<String>,
    ) -> Result<(), Status> {
        self.record_event(
            caller,
            incident,
            Action::Accessed,
            method,
            subjects_path,
            None,
        )
        .await
    }

    /// Records a custody event for a call, before the answer is sent:
    /// `subjects_path` names the incident's artifacts of that path as its
    /// subjects, `output` what the call stored.
    async fn record_event(
        self: &Arc<Self>,
        caller: &Caller,
        incident: Option<String>,
        action: Action,
        method: &'static str,
        subjects_path: Option<String>,
        output: Option<String>,
    ) -> Result<(), Status> {
        let actor = self.actor(caller);
        self.with_session(move |s, signer| {
            let mut e = s.event(
                incident.as_deref(),
                action,
                &format!("serve {method}"),
                actor,
                None,
            );
            e.output = output;
            if let (Some(id), Some(p)) = (&incident, &subjects_path) {
                let inc = s.book.require(id).map_err(transition)?;
                e.subjects = inc
                    .artifacts()
                    .filter(|(_, a)| &a.path == p)
                    .map(|(_, a)| subject(a))
                    .collect();
            }
            record(s, signer, vec![Entry::CustodyEvent(e)]).map(|_| ())
        })
        .await
    }
}

/// Subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    use der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3") {
                return x509_cert::der::asn1::Utf8StringRef::try_from(&atv.value)
                    .map(|s| s.as_str().to_owned())
                    .ok()
                    .or_else(|| {
                        x509_cert::der::asn1::PrintableStringRef::try_from(&atv.value)
                            .map(|s| s.as_str().to_owned())
                            .ok()
                    });
            }
        }
    }
    None
}

fn transition(e: custody::incident::TransitionError) -> Status {
    Status::failed_precondition(e.to_string())
}

/// Appends through the session; refusals by the incident's state are
/// FAILED_PRECONDITION, the rest INTERNAL.
fn record(
    s: &mut Session,
    signer: &VaultSigner,
    entries: Vec<Entry>,
) -> Result<custody::vault::Appended, Status> {
    s.record(signer, entries).map_err(|e| {
        match e.downcast_ref::<custody::incident::TransitionError>() {
            Some(t) => Status::failed_precondition(t.to_string()),
            None => Status::internal(format!("{e:#}")),
        }
    })
}

fn recorded(a: &custody::vault::Appended) -> pb::Recorded {
    pb::Recorded {
        segment: a.seq,
        size: a.size,
        root: a.root.to_string(),
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn opt(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

fn time_field(name: &str, v: &str) -> Result<Option<Time>, Status> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    Time::parse(v)
        .map(Some)
        .map_err(|e| invalid(format!("{name}: {e}")))
}

struct Service(Arc<Shared>);

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

const READERS: &[Role] = &[Role::Auditor, Role::Declarer];
const DECLARERS: &[Role] = &[Role::Declarer];
const AGENTS: &[Role] = &[Role::Agent];

#[tonic::async_trait]
impl custody_server::Custody for Service {
    async fn declare_incident(
        &self,
        req: Request<pb::DeclareIncidentRequest>,
    ) -> Result<Response<pb::DeclareIncidentResponse>, Status> {
        let caller = self.0.authorize(&req, "DeclareIncident", DECLARERS)?;
        let r = req.into_inner();
        custody::preserve::check_incident_id(&r.incident).map_err(invalid)?;
        if r.title.trim().is_empty() {
            return Err(invalid("title must not be empty"));
        }
        let d = IncidentDeclared {
            incident: r.incident,
            title: r.title,
            severity: opt(&r.severity),
            discovered_at: time_field("discovered_at", &r.discovered_at)?,
            declared_at: Time::now(),
            declared_by: caller.name.clone(),
            host: format!("{} (caller {})", host_name(), caller.peer),
            tool: Tool::this(),
            description: opt(&r.description),
            detection_source: opt(&r.detection_source),
            regimes: r.regimes,
        };
        Ok(Response::new(self.0.declare(&caller, d).await?))
    }

    async fn place_hold(
        &self,
        req: Request<pb::HoldRequest>,
    ) -> Result<Response<pb::Recorded>, Status> {
        self.hold(req, true).await
    }

    async fn release_hold(
        &self,
        req: Request<pb::HoldRequest>,
    ) -> Result<Response<pb::Recorded>, Status> {
        self.hold(req, false).await
    }

    async fn record(
        &self,
        req: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::Recorded>, Status> {
        let caller = self.0.authorize(&req, "Record", DECLARERS)?;
        let actor = self.0.actor(&caller);
        let r = req.into_inner();
        let incident = r.incident;
        let what = r.what.ok_or_else(|| {
            invalid("nothing to record: set one of filing, fact, note, transfer, close")
        })?;
        let a = self
            .0
            .with_session(move |s, signer| {
                let at = Time::now();
                let entry = match what {
                    pb::record_request::What::Filing(f) => {
                        for (flag, v) in [
                            ("authority", &f.authority),
                            ("reference", &f.reference),
                            ("channel", &f.channel),
                        ] {
                            non_empty(flag, v).map_err(invalid)?;
                        }
                        check_filing(&f.regime, &f.kind).map_err(invalid)?;
                        Entry::ReportFiled(ReportFiled {
                            incident,
                            regime: f.regime,
                            kind: f.kind,
                            authority: f.authority,
                            filed_at: time_field("filed_at", &f.filed_at)?.unwrap_or_else(Time::now),
                            reference: f.reference,
                            channel: f.channel,
                            late_reason: opt(&f.late_reason),
                            at,
                            actor,
                        })
                    }
                    pb::record_request::What::Fact(f) => {
                        non_empty("text", &f.text).map_err(invalid)?;
                        Entry::FactLearned(FactLearned {
                            incident,
                            learned_at: time_field("learned_at", &f.learned_at)?.unwrap_or_else(Time::now),
                            text: f.text,
                            materiality: f.materiality,
                            at,
                            actor,
                        })
                    }
                    pb::record_request::What::Note(text) => {
                        non_empty("note", &text).map_err(invalid)?;
                        Entry::Note(Note {
                            incident,
                            text,
                            at,
                            actor,
                        })
                    }
                    pb::record_request::What::Close(reason) => {
                        non_empty("close", &reason).map_err(invalid)?;
                        Entry::IncidentClosed(IncidentClosed {
                            incident,
                            reason,
                            at,
                            actor,
                        })
                    }
                    pb::record_request::What::Transfer(t) => {
                        non_empty("to", &t.to).map_err(invalid)?;
                        non_empty("purpose", &t.purpose).map_err(invalid)?;
                        let inc = s.book.require(&incident).map_err(transition)?;
                        let from = match (opt(&t.from), inc.custodian().map(str::to_owned)) {
                            (Some(f), Some(cur)) if f != cur => {
                                return Err(Status::failed_precondition(format!(
                                    "the evidence is with {cur:?} (the last transfer), not {f:?}"
                                )));
                            }
                            (Some(f), _) | (None, Some(f)) => f,
                            (None, None) => {
                                return Err(invalid(
                                    "no transfer is recorded yet: name the first custodian in `from`",
                                ));
                            }
                        };
                        if from == t.to {
                            return Err(invalid("`from` and `to` name the same custodian"));
                        }
                        let mut e = s.event(
                            Some(&incident),
                            Action::Transferred,
                            "serve Record transfer",
                            actor,
                            Some(t.purpose),
                        );
                        e.from = Some(from);
                        e.to = Some(t.to);
                        Entry::CustodyEvent(e)
                    }
                };
                record(s, signer, vec![entry])
            })
            .await?;
        Ok(Response::new(recorded(&a)))
    }

    type WatchDeclarationsStream = Stream<pb::Declaration>;

    async fn watch_declarations(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchDeclarationsStream>, Status> {
        let caller = self.0.authorize(&req, "WatchDeclarations", AGENTS)?;
        let since = req.into_inner().since_seconds;
        self.0
            .record_read(&caller, None, "WatchDeclarations", None)
            .await?;
        // Subscribe before reading the book: nothing declared in between is lost.
        let mut rx = self.0.declarations.subscribe();
        let now = jiff::Timestamp::now();
        let current = self
            .0
            .with_session(move |s, _| {
                Ok(s.book
                    .incidents()
                    .filter(|i| i.closed().is_none())
                    .filter(|i| {
                        s.holds.held(i.id())
                            || now
                                .since(i.declared.declared_at.timestamp())
                                .is_ok_and(|d| d.get_seconds() <= since as i64)
                    })
                    .map(|i| pb::Declaration {
                        incident: i.id().to_owned(),
                        title: i.declared.title.clone(),
                        declared_at: i.declared.declared_at.to_string(),
                        held: s.holds.held(i.id()),
                        segment: i.declared_seq,
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            // The incidents to work on now, then a heartbeat that marks
            // their end (`custody agent --once` stops there).
            for d in current.into_iter().chain([pb::Declaration::default()]) {
                if tx.send(Ok(d)).await.is_err() {
                    return;
                }
            }
            let mut beat = tokio::time::interval(WATCH_HEARTBEAT);
            beat.tick().await;
            loop {
                let msg = tokio::select! {
                    d = rx.recv() => match d {
                        Ok(d) => d,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let _ = tx.send(Err(Status::data_loss(format!("{n} declarations were missed: watch again")))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = beat.tick() => pb::Declaration::default(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn begin_run(
        &self,
        req: Request<pb::BeginRunRequest>,
    ) -> Result<Response<pb::RunState>, Status> {
        let caller = self.0.authorize(&req, "BeginRun", AGENTS)?;
        let r = req.into_inner();
        if r.packs.len() > MAX_PACKS_ASKED {
            return Err(invalid(format!(
                "at most {MAX_PACKS_ASKED} packs per BeginRun"
            )));
        }
        let packs: Vec<Blake3Id> = r
            .packs
            .iter()
            .map(|p| Blake3Id::parse(p).map_err(|e| invalid(format!("pack {p:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        if r.host.trim().is_empty() || r.host.len() > 255 {
            return Err(invalid("host must be 1-255 bytes"));
        }
        if r.sources_json.len() > MAX_SOURCES_JSON {
            return Err(invalid(format!(
                "sources_json is larger than {MAX_SOURCES_JSON} bytes"
            )));
        }
        let run = if r.run.is_empty() {
            let sources: Vec<SourceSpec> = serde_json::from_str(&r.sources_json)
                .map_err(|e| invalid(format!("sources_json: {e}")))?;
            if sources.is_empty() {
                return Err(invalid("a run needs at least one source"));
            }
            for spec in &sources {
                custody::config::check_source(spec)
                    .map_err(|m| invalid(format!("source {:?}: {m}", spec.name)))?;
            }
            let run = super::random_hex(16);
            let names = sources.iter().map(|x| x.name.clone()).collect();
            let info = RunInfo::new(&r.incident, &caller.name, &r.host, names);
            let entry = Entry::PreservationStarted(PreservationStarted {
                incident: r.incident.clone(),
                run: run.clone(),
                started_at: Time::now(),
                by: caller.name.clone(),
                host: r.host.clone(),
                tool: Tool::this(),
                sources,
            });
            self.0
                .with_session(move |s, signer| record(s, signer, vec![entry]))
                .await?;
            self.0.runs()?.insert(run.clone(), info);
            run
        } else {
            let info = self.run_of(&caller, &r.run, false).await?;
            if info.incident != r.incident {
                return Err(Status::permission_denied(format!(
                    "run {} belongs to another incident",
                    r.run
                )));
            }
            // Resuming writes nothing; it reads what the server holds of
            // the run, and is recorded as that read.
            self.0
                .record_read(&caller, Some(info.incident.clone()), "BeginRun", None)
                .await?;
            r.run.clone()
        };
        let sealed = self.0.runs()?.get(&run).map_or(0, |i| i.sealed);
        // A pack counts as held once its `received` event from this caller
        // is in the incident's record: one stored by a PutPack that ended
        // (a crash, a failed append) before its event was recorded is sent
        // again, and recorded then.
        let (incident, name) = (r.incident.clone(), caller.name.clone());
        let recorded: HashSet<String> = self
            .0
            .with_session(move |s, _| {
                let inc = s.book.require(&incident).map_err(transition)?;
                Ok(inc
                    .events()
                    .into_iter()
                    .filter(|(_, e)| e.action == Action::Received && e.actor.name == name)
                    .filter_map(|(_, e)| e.output.clone())
                    .collect())
            })
            .await?;
        // Which packs the server holds, off the session lock.
        let store = self.0.store.clone();
        let held = tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for p in &packs {
                let key = custody::layout::pack_path(p);
                if recorded.contains(&key)
                    && store
                        .head(&key)
                        .map_err(|e| Status::internal(e.to_string()))?
                        .is_some()
                {
                    held.push(p.to_string());
                }
            }
            Ok::<_, Status>(held)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::RunState {
            run,
            entries_sealed: sealed,
            packs_held: held,
            max_pack_bytes: MAX_PACK_BYTES,
        }))
    }

    async fn put_pack(
        &self,
        req: Request<Streaming<pb::PackPiece>>,
    ) -> Result<Response<pb::PackStored>, Status> {
        let caller = self.0.authorize(&req, "PutPack", AGENTS)?;
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| invalid("empty PutPack stream"))?;
        let incident = self.run_of(&caller, &first.run, false).await?.incident;
        let run = first.run.clone();
        if first.size > MAX_PACK_BYTES || first.size < 16 {
            return Err(invalid(format!(
                "pack: size {} is outside 16..={MAX_PACK_BYTES}",
                first.size
            )));
        }
        let id = Blake3Id::parse(&first.pack)
            .map_err(|e| invalid(format!("pack {:?}: {e}", first.pack)))?;
        if first.size > MAX_PACK_BYTES || first.size < 16 {
            return Err(invalid(format!(
                "pack {}: size {} is outside 16..={MAX_PACK_BYTES}",
                id.short(),
                first.size
            )));
        }
        // Memory for the pack is reserved before any of it is read.
        let _permit = self
            .0
            .pack_budget
            .clone()
            .acquire_many_owned(first.size.div_ceil(1024) as u32)
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        let size = first.size as usize;
        let mut buf = Vec::with_capacity(size);
        // A slow sender may not hold its share of the budget for ever.
        let receive = async {
            let mut piece = Some(first);
            while let Some(p) = piece {
                if buf.len() + p.data.len() > size {
                    return Err(invalid(format!(
                        "pack {}: more bytes than its size",
                        id.short()
                    )));
                }
                buf.extend_from_slice(&p.data);
                // A sender that stalls loses its place.
                piece = tokio::time::timeout(PIECE_DEADLINE, stream.message())
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded(format!(
                            "pack {}: no piece for {} s; nothing stored",
                            id.short(),
                            PIECE_DEADLINE.as_secs()
                        ))
                    })??;
            }
            Ok(())
        };
        tokio::time::timeout(PACK_DEADLINE, receive)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "pack {}: not received within {} s; nothing stored",
                    id.short(),
                    PACK_DEADLINE.as_secs()
                ))
            })??;
        if buf.len() != size {
            return Err(Status::data_loss(format!(
                "pack {}: {} of {size} bytes arrived; nothing stored",
                id.short(),
                buf.len(),
            )));
        }
        let got = Blake3Id::of(&buf);
        if got != id || !buf.starts_with(custody::ingest::PACK_MAGIC) {
            eprintln!(
                "custody serve: {} refused pack {} from {}: its bytes hash to {got} or lack the pack magic",
                Time::now(),
                id,
                caller.name
            );
            return Err(Status::data_loss(format!(
                "pack {}: the bytes received hash to {got}, not to the pack id; nothing stored",
                id.short()
            )));
        }
        let store = self.0.store.clone();
        let size = buf.len() as u64;
        let key = custody::layout::pack_path(&id);
        let put = tokio::task::spawn_blocking(move || store.put_once(&key, Bytes::from(buf)))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("storing pack {}: {e}", id.short())))?;
        let created = put == custody::store::Put::Created;
        if created && let Some(r) = self.0.runs()?.get_mut(&run) {
            r.bytes_stored += size;
        }
        // The pack is not an entry: the call is recorded as an event of
        // its own (also when the server held the pack already).
        self.0
            .record_event(
                &caller,
                Some(incident),
                Action::Received,
                "PutPack",
                None,
                Some(custody::layout::pack_path(&id)),
            )
            .await?;
        Ok(Response::new(pb::PackStored {
            pack: id.to_string(),
            created,
        }))
    }

    async fn add_entries(
        &self,
        req: Request<pb::AddEntriesRequest>,
    ) -> Result<Response<pb::EntriesSealed>, Status> {
        let caller = self.0.authorize(&req, "AddEntries", AGENTS)?;
        let r = req.into_inner();
        // One AddEntries at a time per run, so what is sealed is read once.
        let lock = self.run_of(&caller, &r.run, false).await?.lock;
        let _one = lock.lock().await;
        let info = self.run_of(&caller, &r.run, false).await?;
        if r.first > info.sealed {
            return Err(Status::failed_precondition(format!(
                "run {}: entries from {} on are missing (the server sealed {})",
                r.run, info.sealed, info.sealed
            )));
        }
        let skip = (info.sealed - r.first) as usize;
        let mut entries = Vec::new();
        let mut chunks = 0usize;
        for (i, json) in r.entries_json.iter().enumerate().skip(skip) {
            let at = r.first + i as u64;
            let (e, claimed) =
                parse_ingested(json).map_err(|e| invalid(format!("entry {at}: {e}")))?;
            let (incident, run, host, source) = match &e {
                Entry::Artifact(a) => {
                    if a.chunks.len() > custody::segment::MAX_ARTIFACT_CHUNKS {
                        return Err(invalid(format!(
                            "entry {at}: more chunks than an artifact may have"
                        )));
                    }
                    chunks += a.chunks.len();
                    (&a.incident, &a.run, &a.host, &a.source)
                }
                Entry::KeyFile(k) => (&k.incident, &k.run, &k.host, &k.source),
                _ => {
                    return Err(invalid(format!(
                        "entry {at}: only artifact and key_file entries are ingested"
                    )));
                }
            };
            if *incident != info.incident || *run != r.run || *host != info.host {
                return Err(invalid(format!(
                    "entry {at}: its incident, run or host is not those of run {}",
                    r.run
                )));
            }
            if !info.sources.contains(source) {
                return Err(invalid(format!(
                    "entry {at}: source {source:?} is not one of the run's sources"
                )));
            }
            entries.push((e, claimed));
        }
        if chunks > MAX_CHUNKS_PER_CALL {
            return Err(invalid(format!(
                "at most {MAX_CHUNKS_PER_CALL} chunk references per AddEntries: send fewer entries at once"
            )));
        }
        // A call that brings nothing new (a retry whose entries are all
        // sealed) writes no entry; it reads how far the run is sealed, and
        // is recorded as that read.
        if entries.is_empty() {
            self.0
                .record_read(&caller, Some(info.incident.clone()), "AddEntries", None)
                .await?;
        }
        let store = self.0.store.clone();
        let collector = caller.name.clone();
        // Two-sided hashing: re-read and re-hash what the agent sent, a
        // few runs at a time.
        let slot = self
            .0
            .rehash_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        let (entries, mismatches) = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            rehash_all(&store, &collector, entries)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        for m in &mismatches {
            eprintln!(
                "custody serve: {} run {} of {}: {m}",
                Time::now(),
                r.run,
                caller.name
            );
        }
        let run = r.run.clone();
        let shared = self.0.clone();
        let (last, sealed) = self
            .0
            .with_session(move |s, signer| {
                let entries = check_key_files(s, &run, entries)?;
                let mut last = None;
                let mut batch = Vec::new();
                let mut size = 0;
                let mut seal = |s: &mut Session, batch: Vec<Entry>| -> Result<(), Status> {
                    let a = record(s, signer, batch.clone())?;
                    let mut runs = shared.runs()?;
                    let info = runs
                        .get_mut(&run)
                        .ok_or_else(|| Status::internal("run vanished"))?;
                    for e in &batch {
                        info.count(e);
                    }
                    drop(runs);
                    protect_packs(s, &batch);
                    last = Some(a);
                    Ok(())
                };
                for e in entries {
                    let len = serde_json::to_vec(&e).map_or(0, |j| j.len());
                    if !batch.is_empty() && size + len > SEAL_JSON_BYTES {
                        seal(s, std::mem::take(&mut batch))?;
                        size = 0;
                    }
                    size += len;
                    batch.push(e);
                }
                if !batch.is_empty() {
                    seal(s, batch)?;
                }
                let sealed = shared.runs()?.get(&run).map_or(0, |i| i.sealed);
                Ok((last, sealed))
            })
            .await?;
        Ok(Response::new(pb::EntriesSealed {
            recorded: last.as_ref().map(recorded),
            entries_sealed: sealed,
            mismatches,
        }))
    }

    async fn finish_run(
        &self,
        req: Request<pb::FinishRunRequest>,
    ) -> Result<Response<pb::Recorded>, Status> {
        let caller = self.0.authorize(&req, "FinishRun", AGENTS)?;
        let run = req.into_inner().run;
        let lock = self.run_of(&caller, &run, true).await?.lock;
        let _one = lock.lock().await;
        let info = self.run_of(&caller, &run, true).await?;
        // A retry after a lost answer gets the same answer, and is recorded
        // as the read it is.
        if let Some(done) = info.finished {
            self.0
                .record_read(&caller, Some(info.incident), "FinishRun", None)
                .await?;
            return Ok(Response::new(done));
        }
        let shared = self.0.clone();
        let a = self
            .0
            .with_session(move |s, signer| {
                let entry = Entry::PreservationFinished(PreservationFinished {
                    incident: info.incident.clone(),
                    run: run.clone(),
                    ended_at: Time::now(),
                    complete: info.counts[0],
                    partial: info.counts[1],
                    failed: info.counts[2],
                    bytes_read: info.bytes_read,
                    bytes_stored: info.bytes_stored,
                    bytes_deduplicated: 0,
                });
                let a = record(s, signer, vec![entry])?;
                if let Some(i) = shared.runs()?.get_mut(&run) {
                    i.finished = Some(recorded(&a));
                }
                Ok(a)
            })
            .await?;
        Ok(Response::new(recorded(&a)))
    }

    async fn get_incident(
        &self,
        req: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::IncidentRecord>, Status> {
        let caller = self.0.authorize(&req, "GetIncident", READERS)?;
        let pb::GetIncidentRequest {
            incident: id,
            skip,
            limit,
            until,
        } = req.into_inner();
        let limit = if limit == 0 {
            usize::MAX
        } else {
            limit as usize
        };
        // Each page's read is recorded in the record: without a fixed end,
        // paging would never finish.
        if skip > 0 && until == 0 {
            return Err(invalid(
                "a page after the first needs `until` (the first page's `total`)",
            ));
        }
        if until > 0 && skip > until {
            return Err(invalid(format!("skip {skip} is beyond until {until}")));
        }
        self.0
            .record_read(&caller, Some(id.clone()), "GetIncident", None)
            .await?;
        let rec = self
            .0
            .with_session(move |s, _| {
                let inc = s
                    .book
                    .require(&id)
                    .map_err(|e| Status::not_found(e.to_string()))?;
                let declared = Entry::IncidentDeclared(inc.declared.clone());
                let total = 1 + inc.entries.len() as u64;
                let end = if until == 0 { total } else { until.min(total) };
                let mut entries = Vec::new();
                let mut bytes = 0;
                let mut next = 0;
                let all = std::iter::once((inc.declared_seq, &declared))
                    .chain(inc.entries.iter().map(|(seq, e)| (*seq, e)))
                    .take(usize::try_from(end).unwrap_or(usize::MAX));
                for (n, (seq, e)) in (0u64..)
                    .zip(all)
                    .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                {
                    let json =
                        serde_json::to_string(e).map_err(|e| Status::internal(e.to_string()))?;
                    // A page holds at least one entry.
                    if !entries.is_empty()
                        && (entries.len() >= limit || bytes + json.len() > PAGE_BYTES)
                    {
                        next = n;
                        break;
                    }
                    bytes += json.len() + 16;
                    entries.push(pb::RecordEntry { segment: seq, json });
                }
                Ok(pb::IncidentRecord {
                    incident: id.clone(),
                    state: inc.state(),
                    entries,
                    next,
                    total,
                })
            })
            .await?;
        Ok(Response::new(rec))
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::Manifest>, Status> {
        let caller = self.0.authorize(&req, "GetManifest", READERS)?;
        let id = req.into_inner().incident;
        let actor = self.0.actor(&caller);
        let m = self
            .0
            .with_session(move |s, signer| {
                let now = Time::now();
                let inc = s
                    .book
                    .require(&id)
                    .map_err(|e| Status::not_found(e.to_string()))?;
                let clocks =
                    super::clocks_of(inc, &now).map_err(|e| Status::internal(e.to_string()))?;
                let coverage =
                    super::coverage_of(s, inc).map_err(|e| Status::internal(e.to_string()))?;
                let (bytes, statement) = custody::manifest::issue(
                    &s.vault,
                    signer,
                    inc,
                    custody::manifest::Issue {
                        actor,
                        at: now.clone(),
                        coverage,
                        clocks: serde_json::to_value(&clocks)
                            .map_err(|e| Status::internal(e.to_string()))?,
                    },
                )
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
                let (sha256, sealed) = custody::manifest::sealed(&id, &bytes, &statement, now);
                let a = record(s, signer, vec![sealed])?;
                Ok(pb::Manifest {
                    envelope: bytes,
                    sha256: sha256.to_string(),
                    recorded: Some(recorded(&a)),
                })
            })
            .await?;
        Ok(Response::new(m))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let caller = self.0.authorize(&req, "GetCheckpoint", READERS)?;
        self.0
            .record_read(&caller, None, "GetCheckpoint", None)
            .await?;
        Ok(Response::new(
            self.0.with_session(|s, _| checkpoint(s)).await?,
        ))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::Proof>, Status> {
        let caller = self.0.authorize(&req, "GetInclusionProof", READERS)?;
        let r = req.into_inner();
        let path = opt(&r.path);
        self.0
            .record_read(
                &caller,
                Some(r.incident.clone()),
                "GetInclusionProof",
                path.clone(),
            )
            .await?;
        let json = self
            .0
            .with_session(move |s, _| {
                let inc = s
                    .book
                    .require(&r.incident)
                    .map_err(|e| Status::not_found(e.to_string()))?;
                let seqs = inc.proof_segments(path.as_deref()).ok_or_else(|| {
                    Status::not_found(format!(
                        "incident {} has no artifact with path {:?}",
                        r.incident,
                        path.as_deref().unwrap_or_default()
                    ))
                })?;
                let proof = custody::proof::prove(&s.vault, &seqs)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                serde_json::to_vec_pretty(&proof).map_err(|e| Status::internal(e.to_string()))
            })
            .await?;
        Ok(Response::new(pb::Proof { json }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let caller = self.0.authorize(&req, "GetConsistencyProof", READERS)?;
        let r = req.into_inner();
        self.0
            .record_read(&caller, None, "GetConsistencyProof", None)
            .await?;
        let p = self
            .0
            .with_session(move |s, _| {
                let cp = checkpoint(s)?;
                let new = if r.new_size == 0 { cp.size } else { r.new_size };
                if r.old_size == 0 || r.old_size > new || new > cp.size {
                    return Err(invalid(format!(
                        "need 0 < old_size <= new_size <= {} (the checkpoint's size)",
                        cp.size
                    )));
                }
                let hashes = if r.old_size == new {
                    Vec::new()
                } else {
                    tlog_tiles::prove_tree(new, r.old_size, &s.vault.index().tree)
                        .map_err(|e| Status::internal(e.to_string()))?
                        .into_iter()
                        .map(|h| h.0.to_vec())
                        .collect()
                };
                Ok(pb::ConsistencyProof {
                    old_size: r.old_size,
                    new_size: new,
                    hashes,
                    checkpoint: Some(cp),
                })
            })
            .await?;
        Ok(Response::new(p))
    }

    type VerifyStream = Stream<pb::VerifyProgress>;

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<Self::VerifyStream>, Status> {
        let caller = self.0.authorize(&req, "Verify", READERS)?;
        let quick = req.into_inner().quick;
        let slot = self
            .0
            .verify_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted("a verification is running: ask again when it is done")
            })?;
        let (tx, out) = mpsc::channel(16);
        let shared = self.0.clone();
        let store = self.0.store.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let progress = Forward {
                tx: tx.clone(),
                done: std::sync::atomic::AtomicU64::new(0),
                sent: std::sync::atomic::AtomicU64::new(0),
            };
            let opts = custody::verify::Options {
                quick,
                ..Default::default()
            };
            let result = custody::verify::verify(&store, &opts, &progress);
            let msg = match result {
                Ok(report) => {
                    // The verification is on record before its report leaves.
                    let rec = record_verified(&shared, &caller, &report, quick);
                    match (rec, serde_json::to_string(&report)) {
                        (Ok(()), Ok(json)) => Ok(pb::VerifyProgress {
                            what: Some(pb::verify_progress::What::ReportJson(json)),
                        }),
                        (Err(e), _) => Err(e),
                        (_, Err(e)) => Err(Status::internal(e.to_string())),
                    }
                }
                Err(custody::store::StoreError::Cancelled) => {
                    eprintln!(
                        "custody serve: {} verification for {} cancelled: the caller left",
                        Time::now(),
                        caller.name
                    );
                    return;
                }
                Err(e) => Err(Status::unavailable(format!(
                    "the vault could not be read: {e}"
                ))),
            };
            let _ = tx.blocking_send(msg);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

/// Checks key-file entries as `verify` will (FORMAT.md §9.12) against the
/// run's artifacts, sealed and about to be: one that would put private key
/// bytes in clear refuses the whole call; one whose bytes the server
/// cannot vouch for (its artifact failed two-sided hashing) is recorded as
/// `withheld`, with a note.
fn check_key_files(s: &Session, run: &str, mut entries: Vec<Entry>) -> Result<Vec<Entry>, Status> {
    if !entries.iter().any(|e| matches!(e, Entry::KeyFile(_))) {
        return Ok(entries);
    }
    let base = s.vault.size();
    let mut artifacts: Vec<(u64, custody::segment::Artifact)> = s
        .book
        .incidents()
        .flat_map(|i| i.artifacts())
        .filter(|(_, a)| a.run == run)
        .map(|(seq, a)| (seq, a.clone()))
        .collect();
    let mut key_files = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Artifact(a) => artifacts.push((base + i as u64, (**a).clone())),
            Entry::KeyFile(k) => key_files.push((base + i as u64, (**k).clone())),
            _ => {}
        }
    }
    for f in custody::verify::key_file_findings(&key_files, &artifacts) {
        let i = f
            .object
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|n| n.checked_sub(base))
            .map(|n| n as usize);
        match (f.kind, i.and_then(|i| entries.get_mut(i))) {
            (custody::verify::Kind::KeyFileUnbacked, Some(Entry::KeyFile(k))) => {
                k.content = custody::segment::KeyContent::Withheld;
                k.sealed_to.clear();
                k.notes.push(
                    "the server could not vouch for this file's bytes (two-sided hashing failed): recorded as withheld".into(),
                );
            }
            _ => {
                return Err(invalid(format!(
                    "refused: {} ({})",
                    f.message,
                    f.kind.as_str()
                )));
            }
        }
    }
    Ok(entries)
}

/// On a held incident, the packs new artifacts use are protected by the
/// store like the rest of its evidence (FORMAT.md §11.2); segments are
/// protected by [`Session::record`].
fn protect_packs(s: &Session, batch: &[Entry]) {
    let mut packs = std::collections::BTreeSet::new();
    for e in batch {
        if let Entry::Artifact(a) = e
            && s.holds.held(&a.incident)
        {
            packs.extend(a.chunks.iter().map(|c| c.pack));
        }
    }
    for p in packs {
        let key = custody::layout::pack_path(&p);
        if let Err(e) = s.vault.store().set_hold(&key, true) {
            eprintln!(
                "custody serve: warning: {key} of a held incident is not protected by the store: {e}"
            );
        }
    }
}

/// A run as the log has it (after a restart of the server), from any
/// incident.
fn run_from_log(s: &Session, run: &str) -> Option<RunInfo> {
    for inc in s.book.incidents() {
        let mut info: Option<RunInfo> = None;
        for (seq, e) in &inc.entries {
            match e {
                Entry::PreservationStarted(p) if p.run == run => {
                    let names = p.sources.iter().map(|x| x.name.clone()).collect();
                    info = Some(RunInfo::new(inc.id(), &p.by, &p.host, names));
                }
                Entry::Artifact(a) if a.run == run => {
                    if let Some(i) = &mut info {
                        i.count(e);
                    }
                }
                Entry::KeyFile(k) if k.run == run => {
                    if let Some(i) = &mut info {
                        i.count(e);
                    }
                }
                Entry::PreservationFinished(f) if f.run == run => {
                    if let Some(i) = &mut info {
                        i.bytes_stored = f.bytes_stored;
                        i.finished = Some(pb::Recorded {
                            segment: *seq,
                            size: s.vault.size(),
                            root: s.vault.index().tree.root().to_string(),
                        });
                    }
                }
                _ => {}
            }
        }
        if info.is_some() {
            return info;
        }
    }
    None
}

/// Records a `verified` custody event (as `custody verify --key` does).
fn record_verified(
    shared: &Arc<Shared>,
    caller: &Caller,
    report: &custody::verify::Report,
    quick: bool,
) -> Result<(), Status> {
    let result = report.result_line();
    let actor = shared.actor(caller);
    let mut s = shared
        .session
        .lock()
        .map_err(|_| Status::internal("poisoned"))?;
    s.catch_up()
        .map_err(|e| Status::internal(format!("reading the log: {e:#}")))?;
    let via = if quick {
        "serve Verify --quick"
    } else {
        "serve Verify"
    };
    let mut e = s.event(None, Action::Verified, via, actor, None);
    e.result = Some(result);
    if let Some(cp) = &report.checkpoint {
        e.checkpoint = custody::segment::CheckpointRef {
            size: cp.size,
            root: cp.root,
        };
    }
    record(&mut s, &shared.signer, vec![Entry::CustodyEvent(e)]).map(|_| ())
}

/// Verification progress to the stream, at most every 64 MiB.
struct Forward {
    tx: mpsc::Sender<Result<pb::VerifyProgress, Status>>,
    done: std::sync::atomic::AtomicU64,
    sent: std::sync::atomic::AtomicU64,
}

impl custody::progress::Progress for Forward {
    /// The caller left: its stream's receiver is gone.
    fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }
    fn bytes(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = self.done.fetch_add(n, Relaxed) + n;
        if done - self.sent.load(Relaxed) >= 64 << 20 {
            self.sent.store(done, Relaxed);
            let _ = self.tx.try_send(Ok(pb::VerifyProgress {
                what: Some(pb::verify_progress::What::BytesChecked(done)),
            }));
        }
    }
}

/// The stored checkpoint, checked against the session's log.
fn checkpoint(s: &Session) -> Result<pb::Checkpoint, Status> {
    let bytes = s
        .vault
        .store()
        .get(
            custody::layout::CHECKPOINT,
            custody::log::MAX_CHECKPOINT_BYTES,
        )
        .map_err(|e| Status::internal(e.to_string()))?
        .ok_or_else(|| Status::not_found("the vault has no checkpoint yet"))?;
    let cp = custody::vault::open_checkpoint(&bytes, s.vault.root())
        .map_err(|e| Status::data_loss(e.to_string()))?;
    let tree = &s.vault.index().tree;
    if cp.size > tree.size() || tree.root_at(cp.size) != cp.root {
        return Err(Status::aborted(
            "the stored checkpoint is ahead of the server's log (another writer?): ask again",
        ));
    }
    Ok(pb::Checkpoint {
        note: bytes.to_vec(),
        size: cp.size,
        root: cp.root.to_string(),
    })
}

/// Parses an entry an agent sent. An artifact may leave out `sha256`
/// (FORMAT.md §9.6): the server computes it, and the `bool` says whether
/// the agent claimed one.
fn parse_ingested(json: &str) -> Result<(Entry, bool), serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_str(json)?;
    let mut claimed = true;
    if let Some(o) = v.as_object_mut()
        && o.get("type").and_then(|t| t.as_str()) == Some("artifact")
        && !o.contains_key("sha256")
    {
        claimed = false;
        // Replaced by the server's own before anything is recorded.
        o.insert("sha256".into(), Sha256Digest::of(b"").to_hex().into());
    }
    Ok((serde_json::from_value(v)?, claimed))
}

/// Re-hashes every artifact of `entries` ([`rehash`]) on two threads, and
/// names the authenticated `collector` on each entry; returns the entries
/// in their order and the mismatches found.
fn rehash_all(
    store: &custody::store::Store,
    collector: &str,
    entries: Vec<(Entry, bool)>,
) -> (Vec<Entry>, Vec<String>) {
    let queue = Mutex::new(
        entries
            .into_iter()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let done = Mutex::new(Vec::new());
    // The shared frame (FORMAT.md §6) an entry's content begins in: entries
    // of one frame go to one thread together, which decompresses it once.
    let frame = |e: &Entry| match e {
        Entry::Artifact(a) => a
            .chunks
            .first()
            .filter(|c| c.skip.is_some())
            .map(|c| (c.pack, c.offset)),
        _ => None,
    };
    let take = || {
        let mut q = queue.lock().ok()?;
        let first = q.pop_front()?;
        let mut run = vec![first];
        let at = frame(&run[0].1.0);
        while at.is_some() && q.front().is_some_and(|(_, (e, _))| frame(e) == at) {
            run.extend(q.pop_front());
        }
        Some(run)
    };
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut reader = custody::restore::ChunkReader::new();
                for (i, (mut e, claimed)) in std::iter::from_fn(take).flatten() {
                    let mut mismatch = None;
                    match &mut e {
                        Entry::Artifact(a) => {
                            a.collector = collector.to_owned();
                            mismatch = rehash(store, &mut reader, a, claimed)
                                .map(|why| format!("{}: {why}", a.path));
                        }
                        Entry::KeyFile(k) => k.collector = collector.to_owned(),
                        _ => {}
                    }
                    if let Ok(mut d) = done.lock() {
                        d.push((i, e, mismatch));
                    }
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(i, _, _)| *i);
    let mismatches = done.iter().filter_map(|(_, _, m)| m.clone()).collect();
    (done.into_iter().map(|(_, e, _)| e).collect(), mismatches)
}

/// Re-reads every chunk of `a` from the store and re-hashes its content:
/// each chunk against its id, and the whole against the agent's size and
/// BLAKE3 (and SHA-256 if `claimed`; if not, the server's SHA-256 is
/// recorded). On a difference the artifact becomes `failed`, with the
/// server's digests and the agent's in its error; returns why.
fn rehash(
    store: &custody::store::Store,
    reader: &mut custody::restore::ChunkReader,
    a: &mut custody::segment::Artifact,
    claimed: bool,
) -> Option<String> {
    let mut b3 = blake3::Hasher::new();
    let mut size = 0u64;
    let mut problem = None;
    // The SHA-256 (the costlier hash) of a large artifact runs on a thread
    // of its own, so that the last artifact of a run, which nothing else
    // overlaps, is re-hashed on two cores.
    let split = a.size >= SPLIT_REHASH_BYTES;
    let got_sha = std::thread::scope(|scope| {
        let (tx, helper) = if split {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
            let helper = scope.spawn(move || {
                let mut sha = sha2::Sha256::new();
                for plain in rx {
                    sha.update(&plain);
                }
                sha.finalize()
            });
            (Some(tx), Some(helper))
        } else {
            (None, None)
        };
        // Used when there is no helper.
        let mut sha = sha2::Sha256::new();
        for c in &a.chunks {
            match reader.read(store, c) {
                Ok(plain) => {
                    b3.update(plain);
                    size += plain.len() as u64;
                    match &tx {
                        Some(tx) => {
                            if tx.send(plain.to_vec()).is_err() {
                                break;
                            }
                        }
                        None => sha.update(plain),
                    }
                }
                Err(e) => {
                    problem = Some(format!(
                        "chunk {} does not check out on the server: {e}",
                        c.id.short()
                    ));
                    break;
                }
            }
        }
        drop(tx);
        let digest = match helper {
            Some(h) => h.join().ok(),
            None => Some(sha.finalize()),
        };
        match digest {
            Some(d) => Sha256Digest(d.into()),
            None => {
                problem.get_or_insert_with(|| "the server's SHA-256 thread failed".into());
                Sha256Digest::of(b"")
            }
        }
    });
    let got_b3 = Blake3Id(*b3.finalize().as_bytes());
    let differs = size != a.size || got_b3 != a.blake3 || (claimed && got_sha != a.sha256);
    if problem.is_none() && differs {
        problem = Some(if claimed {
            format!(
                "the agent read {} bytes with sha256 {}, the server received {size} bytes with sha256 {got_sha}",
                a.size, a.sha256
            )
        } else {
            format!(
                "the agent read {} bytes with blake3 {}, the server received {size} bytes with blake3 {got_b3}",
                a.size, a.blake3
            )
        });
    }
    if problem.is_none() {
        a.sha256 = got_sha;
    }
    let why = problem?;
    let error = format!(
        "two-sided hashing failed: {why} (agent's blake3 {}); recorded as failed",
        a.blake3
    );
    a.status = ItemStatus::Failed;
    a.reason = None;
    a.error = Some(error.clone());
    // What is recorded is what the server can vouch for: nothing.
    a.chunks.clear();
    a.size = 0;
    a.sha256 = Sha256Digest::of(b"");
    a.blake3 = Blake3Id::of(b"");
    Some(error)
}

impl Service {
    async fn hold(
        &self,
        req: Request<pb::HoldRequest>,
        on: bool,
    ) -> Result<Response<pb::Recorded>, Status> {
        let method = if on { "PlaceHold" } else { "ReleaseHold" };
        let caller = self.0.authorize(&req, method, DECLARERS)?;
        let actor = self.0.actor(&caller);
        let r = req.into_inner();
        for (flag, v) in [
            ("hold", &r.hold),
            ("reason", &r.reason),
            ("authorisation", &r.authorisation),
        ] {
            non_empty(flag, v).map_err(invalid)?;
        }
        let a = self
            .0
            .with_session(move |s, signer| {
                let h = Hold {
                    incident: r.incident.clone(),
                    hold: r.hold,
                    reason: r.reason,
                    authorisation: r.authorisation,
                    at: Time::now(),
                    actor,
                };
                let entry = if on {
                    Entry::HoldPlaced(h)
                } else {
                    Entry::HoldReleased(h)
                };
                let a = record(s, signer, vec![entry])?;
                let applied = if on {
                    custody::hold::place(s.vault.store(), &s.holds, &r.incident)
                } else {
                    custody::hold::lift(s.vault.store(), &s.holds, &r.incident)
                };
                if let Some(why) = applied.unsupported {
                    eprintln!("custody serve: the hold on {} is recorded, but the store does not enforce it: {why}", r.incident);
                }
                for (key, why) in applied.failed {
                    eprintln!("custody serve: {key}: {why}");
                }
                // Agents follow a held incident's files (and stop when
                // released): tell them.
                let inc = s.book.require(&r.incident).map_err(transition)?;
                let announce = pb::Declaration {
                    incident: r.incident.clone(),
                    title: inc.declared.title.clone(),
                    declared_at: inc.declared.declared_at.to_string(),
                    held: s.holds.held(&r.incident),
                    segment: inc.declared_seq,
                };
                Ok((a, announce))
            })
            .await?;
        let (a, announce) = a;
        let _ = self.0.declarations.send(announce);
        Ok(Response::new(recorded(&a)))
    }

    /// The run `run`, which must be the caller's (and not finished, unless
    /// `finished_too`); read from the log when the server restarted since
    /// it began.
    async fn run_of(
        &self,
        caller: &Caller,
        run: &str,
        finished_too: bool,
    ) -> Result<RunInfo, Status> {
        let known = self.0.runs()?.get(run).cloned();
        let info = match known {
            Some(i) => i,
            None => {
                let id = run.to_owned();
                let shared = self.0.clone();
                self.0
                    .with_session(move |s, _| {
                        let info = run_from_log(s, &id).ok_or_else(|| {
                            Status::not_found(format!("no run {id:?}: call BeginRun"))
                        })?;
                        let mut runs = shared.runs()?;
                        Ok(runs.entry(id).or_insert(info).clone())
                    })
                    .await?
            }
        };
        if info.owner != caller.name {
            return Err(Status::permission_denied(format!(
                "run {run} belongs to another agent"
            )));
        }
        if info.finished.is_some() && !finished_too {
            return Err(Status::failed_precondition(format!(
                "run {run} is finished"
            )));
        }
        Ok(info)
    }
}

/// Forgets a webhook request that was not acted on, so that a retry is
/// not taken for a replay.
pub(super) fn forget(shared: &Shared, key: &str) {
    if let Ok(mut m) = shared.replays.lock() {
        m.remove(key);
    }
}

/// Webhook signatures and ids seen recently: a replay within the window is
/// refused. Entries expire with the window.
pub(super) fn seen_before(shared: &Shared, key: String, until: i64) -> bool {
    let now = jiff::Timestamp::now().as_second();
    let Ok(mut m) = shared.replays.lock() else {
        return true;
    };
    m.retain(|_, exp| *exp > now);
    if m.len() > 100_000 {
        // A flood of validly signed requests: refuse rather than grow.
        return true;
    }
    m.insert(key, until).is_some()
}
