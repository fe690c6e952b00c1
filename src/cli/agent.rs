//! `custody agent`: preserves this host's sources for every incident the
//! server announces, through the same pipeline as `custody declare`, and
//! streams the result to `custody serve` (README "Agents").
//!
//! The pipeline writes packs into a local spool; each pack goes to the
//! server, which hashes it, and then the artifact entries that use it,
//! which the server re-hashes chunk by chunk before sealing them. After a
//! disconnect the agent asks the server what it holds (`BeginRun` with the
//! run) and sends only the rest.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use custody::config::{AgentConfig, Config};
use custody::ingest::Pipeline;
use custody::preserve::{self, SEAL_BYTES};
use custody::proto::{self as pb, custody_client::CustodyClient};
use custody::sources::{self, Found, RunContext};
use custody::store::Store;
use tonic::codegen::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

use super::host_name;

/// Content read before a batch of entries goes to the server, so that the
/// server re-hashes one batch while the agent reads the next.
const SHIP_CONTENT: u64 = 64 << 20;
/// Pieces of a pack on the wire.
const PIECE: usize = 1 << 20;
/// How long the agent keeps trying to reach the server for one call.
const RETRY_FOR: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub(super) struct AgentArgs {
    /// Config file with `[agent]` and the `[[source]]`s of this host [default: ./custody.toml]
    #[arg(long, env = "CUSTODY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Server URL, over `[agent] server`
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Host name recorded on the artifacts [default: this host's name]
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Preserve for the incidents announced now, then exit (cron, tests)
    #[arg(long)]
    once: bool,
    /// Also preserve for incidents declared up to this many seconds ago that are not on hold
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    since: u64,
}

#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Client = CustodyClient<InterceptedService<Channel, Bearer>>;

pub(super) fn run(a: AgentArgs) -> Result<ExitCode> {
    let path = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("custody.toml"));
    let cfg = Config::load(&path)?;
    let ac = cfg.agent.clone().unwrap_or_default();
    if cfg.sources.is_empty() {
        bail!("{}: no [[source]] to preserve on this host", path.display());
    }
    let server = a
        .server
        .clone()
        .or(ac.server.clone())
        .ok_or_else(|| anyhow!("no server: pass --server or set [agent] server"))?;
    let spool = match &ac.spool {
        Some(p) => p.clone(),
        None => std::env::home_dir()
            .ok_or_else(|| anyhow!("no home directory: set [agent] spool"))?
            .join(".local/state/custody/agent"),
    };
    std::fs::create_dir_all(&spool).with_context(|| format!("create {}", spool.display()))?;
    // The spool holds copies of evidence: for this user only.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", spool.display()))?;
    }
    // One agent per spool: another would finish this one's runs as
    // interrupted.
    let lock_path = spool.join("agent.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| {
            anyhow!(
                "another custody agent uses the spool {}: give this one its own ([agent] spool)",
                spool.display()
            )
        })?;
    let host = a.host.clone().unwrap_or_else(host_name);
    // The agent's own credentials are never preserved.
    let refuse: Vec<(u64, u64)> = [&ac.key, &ac.token_file]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            (m.dev(), m.ino())
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = rt.block_on(connect(&server, &ac))?;
    let follow_secs = ac.follow_secs.unwrap_or(60);
    // SIGINT or SIGTERM: finish the runs being followed, then stop.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        flag.store(true, Ordering::Relaxed);
    });
    let agent = Agent {
        rt: rt.handle().clone(),
        client,
        cfg,
        host,
        spool,
        refuse,
        stop,
    };
    agent.watch(a.once, a.since, follow_secs)
}

async fn connect(server: &str, ac: &AgentConfig) -> Result<Client> {
    let mut ep = Channel::from_shared(server.to_owned())
        .map_err(|e| anyhow!("server URL {server:?}: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    if server.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &ac.ca {
            let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&ac.cert, &ac.key) {
            let c = std::fs::read(cert).with_context(|| format!("read {}", cert.display()))?;
            let k = custody::localfile::read_secret(key, 1 << 20).map_err(|e| anyhow!(e))?;
            tls = tls.identity(tonic::transport::Identity::from_pem(c, k));
        }
        ep = ep.tls_config(tls).context("TLS settings")?;
    }
    let loopback = url::Url::parse(server)
        .ok()
        .is_some_and(|u| match u.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        });
    if ac.token_file.is_some() && !server.starts_with("https://") && !loopback {
        bail!(
            "a bearer token goes only over https:// (or http:// to a loopback address): {server}"
        );
    }
    let token = match &ac.token_file {
        Some(p) => {
            let t = custody::localfile::read_secret(p, 4096).map_err(|e| anyhow!(e))?;
            let t = String::from_utf8(t).map_err(|_| anyhow!("{}: not text", p.display()))?;
            Some(
                format!("Bearer {}", t.trim())
                    .parse()
                    .map_err(|_| anyhow!("{}: not a valid token", p.display()))?,
            )
        }
        None => None,
    };
    // Connect lazily: the first call (and every call after a disconnect)
    // connects, so a server that is down at start is waited for.
    let channel = ep.connect_lazy();
    Ok(CustodyClient::with_interceptor(channel, Bearer(token))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20))
}

struct Agent {
    rt: tokio::runtime::Handle,
    client: Client,
    cfg: Config,
    host: String,
    spool: PathBuf,
    refuse: Vec<(u64, u64)>,
    stop: Arc<AtomicBool>,
}

/// Reads declarations into `tx`, watching again (with a growing pause)
/// after a disconnect. A refusal ends it with the reason.
async fn watch_task(
    client: Client,
    since: u64,
    give_up: Option<Duration>,
    tx: std::sync::mpsc::Sender<Result<pb::Declaration, String>>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let mut c = client.clone();
        let mut stream = match c
            .watch_declarations(pb::WatchRequest {
                since_seconds: since,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) if transient(&s) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if give_up.is_some_and(|g| since.elapsed() > g) {
                    let _ = tx.send(Err(format!(
                        "the server stayed unreachable for {} s: {}",
                        since.elapsed().as_secs(),
                        s.message()
                    )));
                    return;
                }
                eprintln!(
                    "custody agent: server unreachable ({}); retrying in {backoff:?}",
                    s.message()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(s) => {
                let _ = tx.send(Err(format!(
                    "the server refused to announce declarations: {}",
                    s.message()
                )));
                return;
            }
        };
        backoff = Duration::from_secs(1);
        failing_since = None;
        eprintln!("custody agent: watching for declarations");
        loop {
            match stream.message().await {
                Ok(Some(d)) => {
                    if tx.send(Ok(d)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(s) if transient(&s) || s.code() == tonic::Code::DataLoss => {
                    eprintln!(
                        "custody agent: stream ended ({}); watching again",
                        s.message()
                    );
                    break;
                }
                Err(s) => {
                    let _ = tx.send(Err(s.message().to_owned()));
                    return;
                }
            }
        }
    }
}

/// Whether an error is worth trying again (the server or the network), as
/// opposed to a refusal.
fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

/// What a run's spool directory says of it (`<spool>/<run>/run.json`),
/// so that a run an earlier agent left open is finished on start.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunNote {
    incident: String,
}

impl Agent {
    /// Where following `incident` got to, kept across restarts
    /// (`<spool>/follow-<incident>.json`).
    fn follow_path(&self, incident: &str) -> PathBuf {
        self.spool.join(format!("follow-{incident}.json"))
    }

    fn save_follow(&self, incident: &str, f: &custody::sources::Follow) -> Result<()> {
        let p = self.follow_path(incident);
        custody::localfile::write_durably(&p, &serde_json::to_vec(&f.positions())?)
            .with_context(|| format!("write {}", p.display()))
    }

    /// The positions an earlier agent kept for `incident`, if any.
    fn load_follow(&self, incident: &str) -> Option<Vec<custody::sources::FollowPosition>> {
        let p = self.follow_path(incident);
        let bytes = std::fs::read(&p).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!(
                    "custody agent: {} is damaged ({e}): following {incident} starts over",
                    p.display()
                );
                None
            }
        }
    }

    fn forget_follow(&self, incident: &str) {
        let _ = std::fs::remove_file(self.follow_path(incident));
    }

    /// Finishes the runs an earlier agent left open (killed, or the host
    /// went down): the server records what it had sealed of them, and
    /// their spool goes. Their incidents are preserved again, or followed
    /// on from the kept positions, as they are announced.
    fn finish_interrupted(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.spool) else {
            return;
        };
        for d in dirs.filter_map(Result::ok) {
            let Ok(note) = std::fs::read(d.path().join("run.json")) else {
                continue;
            };
            let run = d.file_name().to_string_lossy().into_owned();
            let incident = serde_json::from_slice::<RunNote>(&note)
                .map_or_else(|_| "?".to_owned(), |n| n.incident);
            match self.finish_run(&run) {
                Ok(_) => {
                    eprintln!(
                        "custody agent: run {run} of incident {incident} was interrupted: finished with what the server had sealed"
                    );
                    let _ = std::fs::remove_dir_all(d.path());
                }
                // The server does not know the run, or it cannot be
                // finished: nothing left to do. Anything else is tried
                // again at the next start.
                Err(e)
                    if e.downcast_ref::<tonic::Status>().is_some_and(|s| {
                        matches!(
                            s.code(),
                            tonic::Code::NotFound | tonic::Code::FailedPrecondition
                        )
                    }) =>
                {
                    eprintln!(
                        "custody agent: run {run} of incident {incident} was interrupted; finishing it was refused: {e:#}"
                    );
                    let _ = std::fs::remove_dir_all(d.path());
                }
                // Kept: the next start tries again.
                Err(e) => eprintln!(
                    "custody agent: run {run} of incident {incident} was interrupted and could not be finished now: {e:#}"
                ),
            }
        }
    }

    fn done_path(&self) -> PathBuf {
        self.spool.join("done")
    }

    fn done(&self) -> HashSet<String> {
        std::fs::read_to_string(self.done_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn mark_done(&self, key: &str) -> Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.done_path())?;
        writeln!(f, "{key}")?;
        f.sync_all()?;
        Ok(())
    }

    /// Watches declarations on a task of the runtime and works on this
    /// thread: a preservation run per declared incident, then, while the
    /// incident is held, a tick of follow mode every `follow_secs`.
    fn watch(mut self, once: bool, since: u64, follow_secs: u64) -> Result<ExitCode> {
        self.finish_interrupted();
        let (tx, rx) = std::sync::mpsc::channel::<Result<pb::Declaration, String>>();
        let client = self.client.clone();
        // A one-off run gives up on a server it cannot reach; the daemon
        // waits for it.
        self.rt
            .spawn(watch_task(client, since, once.then_some(RETRY_FOR), tx));
        let mut failures = 0u32;
        let mut following: std::collections::BTreeMap<String, Following> = Default::default();
        let interval = Duration::from_secs(follow_secs.max(1));
        let mut next_tick = std::time::Instant::now() + interval;
        let stop = self.stop.clone();
        loop {
            if stop.load(Ordering::Relaxed) {
                // What was appended up to now is taken, the runs are
                // finished, and the positions stay for the next agent.
                for (incident, f) in std::mem::take(&mut following) {
                    self.last_tick(&incident, f, false);
                }
                eprintln!("custody agent: stopped");
                return Ok(ExitCode::SUCCESS);
            }
            let wait = next_tick
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(500));
            let d = match rx.recv_timeout(wait) {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => bail!("{e}"),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if std::time::Instant::now() >= next_tick {
                        next_tick = std::time::Instant::now() + interval;
                        for (incident, f) in &mut following {
                            if let Err(e) = self.tick(f) {
                                failures += 1;
                                eprintln!("custody agent: following {incident}: {e:#}");
                            }
                        }
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the declaration watcher stopped")
                }
            };
            if d.incident.is_empty() {
                // The heartbeat that follows the incidents announced now.
                if once {
                    return Ok(if failures == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    });
                }
                continue;
            }
            if let Some(f) = following.get(&d.incident) {
                if !d.held {
                    let f = following.remove(&d.incident).expect("present");
                    eprintln!(
                        "custody agent: incident {}: hold released, following ends",
                        d.incident
                    );
                    // What was appended up to now is still taken.
                    if !self.last_tick(&d.incident, f, true) {
                        failures += 1;
                    }
                } else {
                    let _ = f;
                }
                continue;
            }
            // It names files of the spool: never trust it blindly.
            if let Err(e) = custody::preserve::check_incident_id(&d.incident) {
                failures += 1;
                eprintln!("custody agent: the server announced {e}: ignored");
                continue;
            }
            let key = format!("{} {}", d.incident, d.segment);
            let follow = d.held && follow_secs > 0 && !once;
            if !once && let Some(positions) = self.load_follow(&d.incident) {
                // An earlier agent followed it: go on from where it got to
                // in a new run, rather than take every file again.
                match self.resume_following(&d.incident, positions) {
                    Ok(mut f) if follow => {
                        eprintln!(
                            "custody agent: incident {} is held: following {} file(s) on from where the last agent stopped (run {})",
                            d.incident,
                            f.follow.len(),
                            f.ship.run
                        );
                        if let Err(e) = self.tick(&mut f) {
                            failures += 1;
                            eprintln!("custody agent: following {}: {e:#}", d.incident);
                        }
                        following.insert(d.incident.clone(), f);
                    }
                    Ok(f) => {
                        eprintln!(
                            "custody agent: incident {}: hold released meanwhile: taking what was appended, then following ends",
                            d.incident
                        );
                        if !self.last_tick(&d.incident, f, true) {
                            failures += 1;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("custody agent: incident {}: {e:#}", d.incident);
                        continue;
                    }
                }
                if !self.done().contains(&key) {
                    self.mark_done(&key)?;
                }
                continue;
            }
            if self.done().contains(&key) && !follow {
                continue;
            }
            eprintln!(
                "custody agent: incident {} declared: preserving",
                d.incident
            );
            match self.preserve(&d.incident) {
                Ok((mut ship, entries)) => {
                    eprintln!(
                        "custody agent: incident {}: run {} sealed: {} entries, {} failed, {} read; {} pack(s) sent, {} already held by the server",
                        d.incident,
                        ship.run,
                        ship.sealed,
                        ship.failed,
                        custody::progress::human_bytes(ship.bytes),
                        ship.packs_sent,
                        ship.packs_held
                    );
                    if follow {
                        let mut f = custody::sources::Follow::default();
                        f.start_from(&entries);
                        eprintln!(
                            "custody agent: incident {} is held: following {} file(s) every {follow_secs} s",
                            d.incident,
                            f.len()
                        );
                        ship.packs_sent = 0;
                        if let Err(e) = self.save_follow(&d.incident, &f) {
                            eprintln!("custody agent: incident {}: {e:#}", d.incident);
                        }
                        following.insert(d.incident.clone(), Following { ship, follow: f });
                    } else if let Err(e) = self.finish(&ship) {
                        failures += 1;
                        eprintln!("custody agent: incident {}: {e:#}", d.incident);
                        continue;
                    }
                    self.mark_done(&key)?;
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("custody agent: incident {}: {e:#}", d.incident);
                }
            }
        }
    }

    /// Takes what was appended since the last tick and finishes the run.
    /// With `forget` (the hold is over), the kept positions go too, but only
    /// when both worked: otherwise the next agent takes those bytes. Returns
    /// whether both worked.
    fn last_tick(&mut self, incident: &str, mut f: Following, forget: bool) -> bool {
        let ticked = match self.tick(&mut f) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("custody agent: following {incident}: {e:#}");
                false
            }
        };
        let finished = match self.finish(&f.ship) {
            Ok(()) => {
                eprintln!(
                    "custody agent: incident {incident}: run {} finished: {} entries",
                    f.ship.run, f.ship.sealed
                );
                true
            }
            Err(e) => {
                eprintln!("custody agent: incident {incident}: {e:#}");
                false
            }
        };
        if forget && ticked && finished {
            self.forget_follow(incident);
        } else if forget {
            eprintln!(
                "custody agent: incident {incident}: where following got to is kept ({}): the next agent takes what this one could not",
                self.follow_path(incident).display()
            );
        }
        ticked && finished
    }

    /// `FinishRun` (tried again while the server is unreachable).
    fn finish_run(&self, run: &str) -> Result<pb::Recorded> {
        self.call(|mut c| {
            let req = pb::FinishRunRequest {
                run: run.to_owned(),
            };
            async move { c.finish_run(req).await }
        })
    }

    /// `FinishRun`, and the run's spool goes.
    fn finish(&self, ship: &Shipper) -> Result<()> {
        self.finish_run(&ship.run)?;
        if let Some(root) = ship.store.local_root() {
            let _ = std::fs::remove_dir_all(root);
        }
        Ok(())
    }

    /// One tick of follow mode: what the files got since the last, sealed
    /// in (at most) one segment.
    fn tick(&mut self, f: &mut Following) -> Result<()> {
        let ctx = self.context(&f.ship);
        let known = std::collections::HashMap::new();
        let sources = self.cfg.sources.clone();
        let store = f.ship.store.clone();
        let entries = std::thread::scope(|scope| -> Result<Vec<custody::segment::Entry>> {
            let mut pipe = Pipeline::start(scope, store, &known).without_sha256();
            let mut found = Vec::new();
            let mut emit =
                |_: &mut Pipeline<'_, '_>, x: Found| -> Result<(), preserve::DeclareError> {
                    found.push(x);
                    Ok(())
                };
            for spec in &sources {
                f.follow.tick(spec, &ctx, &mut pipe, &mut emit)?;
            }
            pipe.flush()?;
            let entries = preserve::resolve(&pipe, found)?;
            pipe.finish()?;
            Ok(entries)
        })?;
        // Nothing new, and nothing an earlier tick failed to send.
        if entries.is_empty() && f.ship.entries.is_empty() {
            return Ok(());
        }
        let n = entries.len();
        f.ship.add(entries);
        self.ship(&mut f.ship)?;
        // Sealed: the next agent goes on from here (a crash before this
        // line takes this tick's pieces again, never loses them).
        self.save_follow(&f.ship.incident, &f.follow)?;
        eprintln!(
            "custody agent: incident {}: {n} appended piece(s) sealed (run {})",
            f.ship.incident, f.ship.run
        );
        Ok(())
    }

    fn context(&self, ship: &Shipper) -> RunContext {
        RunContext {
            incident: ship.incident.clone(),
            run: ship.run.clone(),
            host: self.host.clone(),
            collector: self.cfg.collector.clone().unwrap_or_else(host_name),
            refuse: self.refuse.clone(),
        }
    }

    /// One run: preserve every source, ship packs and entries. The run is
    /// left open (the caller finishes it, or follows first); returns what
    /// it sealed.
    /// A new run for `incident` (`BeginRun`), with its spool directory.
    fn begin_run(&self, incident: &str) -> Result<Shipper> {
        let sources_json = serde_json::to_string(&self.cfg.sources)?;
        let state = self.call(|mut c| {
            let req = pb::BeginRunRequest {
                incident: incident.to_owned(),
                run: String::new(),
                host: self.host.clone(),
                sources_json: sources_json.clone(),
                packs: Vec::new(),
            };
            async move { c.begin_run(req).await }
        })?;
        let run = state.run;
        // It names a directory of the spool: hex only, never a path.
        if run.is_empty() || run.len() > 64 || !run.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("the server named the run {run:?}: not a run id");
        }
        let dir = self.spool.join(&run);
        std::fs::create_dir_all(&dir)?;
        let note = serde_json::to_vec(&RunNote {
            incident: incident.to_owned(),
        })?;
        custody::localfile::write_durably(&dir.join("run.json"), &note)?;
        let store = Store::open(
            dir.to_str()
                .ok_or_else(|| anyhow!("spool path is not UTF-8"))?,
        )?;
        Ok(Shipper {
            run,
            incident: incident.to_owned(),
            host: self.host.clone(),
            store,
            entries: Vec::new(),
            sealed: 0,
            sent_packs: HashSet::new(),
            failed: 0,
            bytes: 0,
            packs_sent: 0,
            packs_held: 0,
        })
    }

    /// A new run that follows `incident`'s files on from `positions`.
    fn resume_following(
        &mut self,
        incident: &str,
        positions: Vec<custody::sources::FollowPosition>,
    ) -> Result<Following> {
        let ship = self.begin_run(incident)?;
        let mut follow = custody::sources::Follow::default();
        follow.resume(positions);
        self.save_follow(incident, &follow)?;
        Ok(Following { ship, follow })
    }

    fn preserve(&mut self, incident: &str) -> Result<(Shipper, Vec<custody::segment::Entry>)> {
        let mut ship = self.begin_run(incident)?;
        let store = ship.store.clone();
        let ctx = self.context(&ship);
        let known = std::collections::HashMap::new();
        let sources = self.cfg.sources.clone();
        let mut all = Vec::new();
        let me = &*self;
        // Reading and sending overlap: the pipeline hands each batch of
        // entries (its packs flushed) to a shipping thread and goes on
        // reading while the server re-hashes the batch before.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<custody::segment::Entry>>(2);
        let ship = std::thread::scope(|scope| -> Result<Shipper> {
            let shipping = scope.spawn(move || -> Result<Shipper> {
                for entries in rx {
                    ship.add(entries);
                    me.ship(&mut ship)?;
                }
                Ok(ship)
            });
            let read = (|| -> Result<()> {
                let mut pipe = Pipeline::start(scope, store.clone(), &known).without_sha256();
                let mut pending: Vec<Found> = Vec::new();
                let (mut pending_bytes, mut pending_content) = (0usize, 0u64);
                let mut emit = |pipe: &mut Pipeline<'_, '_>,
                                f: Found|
                 -> Result<(), preserve::DeclareError> {
                    pending_bytes += match &f {
                        Found::Artifact(p) => {
                            pending_content += p.artifact.size;
                            1500 + p.chunks.len() * 300
                        }
                        Found::KeyFile(k) => serde_json::to_vec(k).map_or(SEAL_BYTES, |j| j.len()),
                    };
                    pending.push(f);
                    if pending_bytes >= SEAL_BYTES / 2 || pending_content >= SHIP_CONTENT {
                        pipe.flush()?;
                        let entries = preserve::resolve(pipe, std::mem::take(&mut pending))?;
                        all.extend(entries.iter().cloned());
                        tx.send(entries).map_err(|_| {
                            preserve::DeclareError::Invalid("sending to the server failed".into())
                        })?;
                        (pending_bytes, pending_content) = (0, 0);
                    }
                    Ok(())
                };
                for spec in &sources {
                    sources::preserve_source(spec, &ctx, &mut pipe, &custody::Silent, &mut emit)?;
                }
                pipe.flush()?;
                let entries = preserve::resolve(&pipe, pending)?;
                pipe.finish()?;
                all.extend(entries.iter().cloned());
                tx.send(entries)
                    .map_err(|_| anyhow!("sending to the server failed"))?;
                Ok(())
            })();
            drop(tx);
            // The shipping thread's error says why, if it stopped first.
            let shipped = shipping
                .join()
                .map_err(|_| anyhow!("the shipping thread panicked"))?;
            read.and(shipped)
        })?;
        Ok((ship, all))
    }

    /// Sends the packs the server lacks, then the entries it lacks.
    fn ship(&self, s: &mut Shipper) -> Result<()> {
        let deadline = std::time::Instant::now() + RETRY_FOR;
        loop {
            match self.ship_once(s) {
                Ok(()) => return Ok(()),
                Err(e)
                    if std::time::Instant::now() < deadline
                        && e.downcast_ref::<tonic::Status>().is_some_and(transient) =>
                {
                    eprintln!("custody agent: run {}: {e}; resuming", s.run);
                    std::thread::sleep(Duration::from_secs(2));
                    // Ask what the server holds (it may have restarted).
                    let packs = s
                        .local_packs()?
                        .into_iter()
                        .map(|p| p.to_string())
                        .collect();
                    let req = pb::BeginRunRequest {
                        incident: s.incident.clone(),
                        run: s.run.clone(),
                        host: s.host.clone(),
                        sources_json: String::new(),
                        packs,
                    };
                    let mut c = self.client.clone();
                    match self.rt.block_on(c.begin_run(req)) {
                        Ok(state) => {
                            let state = state.into_inner();
                            s.sealed_up_to(state.entries_sealed);
                            for p in state.packs_held {
                                if let Ok(id) = custody::hash::Blake3Id::parse(&p)
                                    && s.sent_packs.insert(id)
                                {
                                    s.packs_held += 1;
                                }
                            }
                        }
                        Err(st) if transient(&st) => {}
                        Err(st) => bail!("resuming run {}: {}", s.run, st.message()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn ship_once(&self, s: &mut Shipper) -> Result<()> {
        for id in s.local_packs()? {
            if s.sent_packs.contains(&id) {
                continue;
            }
            let key = custody::layout::pack_path(&id);
            let bytes = s
                .store
                .get(&key, super::serve::MAX_PACK_BYTES)?
                .ok_or_else(|| anyhow!("pack {} vanished from the spool", id.short()))?;
            let size = bytes.len() as u64;
            let run = s.run.clone();
            let pieces: Vec<pb::PackPiece> = bytes
                .chunks(PIECE)
                .enumerate()
                .map(|(i, d)| pb::PackPiece {
                    run: if i == 0 { run.clone() } else { String::new() },
                    pack: if i == 0 {
                        id.to_string()
                    } else {
                        String::new()
                    },
                    size: if i == 0 { size } else { 0 },
                    data: d.to_vec(),
                })
                .collect();
            let mut c = self.client.clone();
            self.rt
                .block_on(c.put_pack(tokio_stream::iter(pieces)))
                .map_err(anyhow::Error::from)?;
            s.sent_packs.insert(id);
            s.packs_sent += 1;
        }
        while !s.entries.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for e in s.entries.iter().take(2000) {
                if !batch.is_empty() && bytes + e.len() > 8 << 20 {
                    break;
                }
                bytes += e.len();
                batch.push(e.clone());
            }
            let req = pb::AddEntriesRequest {
                run: s.run.clone(),
                first: s.sealed,
                entries_json: batch,
            };
            let mut c = self.client.clone();
            let r = self
                .rt
                .block_on(c.add_entries(req))
                .map_err(anyhow::Error::from)?
                .into_inner();
            for m in &r.mismatches {
                eprintln!(
                    "custody agent: run {}: the server recorded as failed: {m}",
                    s.run
                );
            }
            s.failed += r.mismatches.len() as u64;
            s.sealed_up_to(r.entries_sealed);
        }
        // Sealed packs are the server's now: free the spool.
        for id in &s.sent_packs {
            if let Some(root) = s.store.local_root() {
                let _ = std::fs::remove_file(root.join(custody::layout::pack_path(id)));
            }
        }
        Ok(())
    }

    /// One call, tried again while the server is unreachable.
    fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = std::time::Instant::now() + RETRY_FOR;
        loop {
            match self.rt.block_on(f(self.client.clone())) {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if transient(&s) && std::time::Instant::now() < deadline => {
                    eprintln!("custody agent: {}; trying again", s.message());
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(s) => return Err(anyhow!(s).context("the server refused")),
            }
        }
    }
}

/// An incident followed while it is held: its open run, and the files.
struct Following {
    ship: Shipper,
    follow: custody::sources::Follow,
}

/// What of one run the server holds.
struct Shipper {
    run: String,
    incident: String,
    host: String,
    store: Store,
    /// The run's entries not yet sealed, as JSON, in order.
    entries: Vec<String>,
    /// How many entries of the run the server sealed (the index of
    /// `entries[0]`).
    sealed: u64,
    sent_packs: HashSet<custody::hash::Blake3Id>,
    failed: u64,
    bytes: u64,
    /// Packs sent, and packs not sent because the server held them.
    packs_sent: u64,
    packs_held: u64,
}

impl Shipper {
    /// The server has sealed the run's first `n` entries.
    fn sealed_up_to(&mut self, n: u64) {
        let drop = n.saturating_sub(self.sealed).min(self.entries.len() as u64) as usize;
        self.entries.drain(..drop);
        self.sealed = self.sealed.max(n);
    }

    fn add(&mut self, entries: Vec<custody::segment::Entry>) {
        for e in entries {
            if let custody::segment::Entry::Artifact(a) = &e {
                self.bytes += a.size;
                if a.status == custody::segment::Status::Failed {
                    self.failed += 1;
                }
            }
            let mut json = serde_json::to_value(&e).expect("entries serialize");
            // Artifacts are sent without `sha256`: the pipeline did not
            // compute it, and the server computes it from what it received.
            if matches!(e, custody::segment::Entry::Artifact(_))
                && let Some(o) = json.as_object_mut()
            {
                o.remove("sha256");
            }
            self.entries.push(json.to_string());
        }
    }

    /// Packs in the spool, in a stable order.
    fn local_packs(&self) -> Result<Vec<custody::hash::Blake3Id>> {
        let mut v: Vec<_> = self
            .store
            .list(custody::layout::PACKS_DIR)?
            .iter()
            .filter_map(|o| custody::layout::parse_pack_path(&o.key))
            .collect();
        v.sort_by_key(|p| p.0);
        Ok(v)
    }
}
