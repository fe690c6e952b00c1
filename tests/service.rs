//! The service over loopback: `custody serve` with mTLS and bearer tokens,
//! `custody agent`s, webhooks, two-sided hashing, a server restart in the
//! middle of a run, and hostile clients.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custody::proto::{self as pb, custody_client::CustodyClient};
use hmac::Mac as _;
use serde_json::Value;
use sha2::Digest as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::common::{TestVault, available, log_text, noise, ok};

/// The test venv's python when it has pyca/cryptography.
fn cert_python() -> Option<String> {
    crate::common::python_with(&["cryptography"])
}

/// Writes CA, server and client certificates for `names` into `dir`.
fn certs(py: &str, dir: &Path, names: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/service_certs.py");
    ok(&Command::new(py)
        .arg(script)
        .arg(dir)
        .args(names)
        .output()
        .unwrap());
}

fn secret_file(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `custody serve`, killed on drop; its stderr is collected.
struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(config: &Path, key: &Path, grpc: u16, webhook: u16, env: &[(String, String)]) -> Self {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("custody"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["serve", "--config"])
            .arg(config)
            .arg("--key")
            .arg(key)
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--webhook-listen", &format!("127.0.0.1:{webhook}")])
            .env_remove("CUSTODY_VAULT")
            .env_remove("CUSTODY_KEY")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if line.contains("gRPC on") {
                    let _ = tx.send(());
                }
                l.lock().unwrap().push_str(&line);
                l.lock().unwrap().push('\n');
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds the bearer token, if any, to every call.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

type Client = CustodyClient<tonic::codegen::InterceptedService<Channel, Bearer>>;

/// A gRPC client over TLS to the server, with a client certificate
/// (`dir/NAME.pem`) and/or a bearer token.
fn client(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    port: u16,
    cert: Option<&str>,
    token: Option<&str>,
) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(dir.join("ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    if let Some(n) = cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(dir.join(format!("{n}.pem"))).unwrap(),
            std::fs::read(dir.join(format!("{n}.key"))).unwrap(),
        ));
    }
    let _guard = rt.enter();
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    let token = token.map(|t| {
        format!("Bearer {t}")
            .parse::<tonic::metadata::MetadataValue<_>>()
            .unwrap()
    });
    CustodyClient::with_interceptor(channel, Bearer(token))
}

/// Everything one test's server needs: certificates, tokens, secrets,
/// config, and the vault.
struct Setup {
    v: TestVault,
    dir: PathBuf,
    config: PathBuf,
    declarer_token: String,
    pd_secret: String,
    tool_secret: String,
    grpc: u16,
    webhook: u16,
    /// The vault key, and the environment of the server (S3 endpoint).
    key: PathBuf,
    env: Vec<(String, String)>,
}

const CLIENTS: &[&str] = &["agent-a", "agent-b", "auditor", "stranger"];

fn setup(py: &str) -> Setup {
    setup_with(py, "")
}

/// [`setup`] with more lines in `[serve]`.
fn setup_with(py: &str, serve_extra: &str) -> Setup {
    let v = TestVault::new();
    let dir = v.tmp.path().join("svc");
    std::fs::create_dir_all(&dir).unwrap();
    certs(py, &dir, CLIENTS);
    let declarer_token = "declarer-token-0123456789abcdef".to_owned();
    let pd_secret = "pagerduty-secret-0123456789".to_owned();
    let tool_secret = "tool-secret-0123456789".to_owned();
    secret_file(&dir.join("pd.secret"), &pd_secret);
    secret_file(&dir.join("tool.secret"), &tool_secret);
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
vault = "{vault}"
[serve]
tls_cert = "server.pem"
tls_key = "server.key"
client_ca = "ca.pem"
webhook_timeout_secs = 2
{serve_extra}
[[serve.client]]
name = "agent-a"
role = "agent"
[[serve.client]]
name = "agent-b"
role = "agent"
[[serve.client]]
name = "auditor"
role = "auditor"
[[serve.token]]
name = "soc"
sha256 = "{declarer}"
role = "declarer"
[[serve.webhook]]
name = "pd"
kind = "pagerduty"
secret_file = "pd.secret"
priorities = ["P1"]
[[serve.webhook]]
name = "tool"
kind = "generic"
secret_file = "tool.secret"
"#,
            vault = v.vault.display(),
            declarer = sha256_hex(&declarer_token),
        ),
    )
    .unwrap();
    let key = v.key.clone();
    Setup {
        v,
        dir,
        config,
        key,
        env: Vec::new(),
        declarer_token,
        pd_secret,
        tool_secret,
        grpc: free_port(),
        webhook: free_port(),
    }
}

impl Setup {
    fn server(&self) -> Server {
        Server::start(&self.config, &self.key, self.grpc, self.webhook, &self.env)
    }

    /// An agent's config: mTLS as `name`, its own sources and spool.
    fn agent_config(&self, name: &str, sources: &Path) -> PathBuf {
        self.agent_config_with(name, sources, "")
    }

    fn agent_config_with(&self, name: &str, sources: &Path, extra: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                r#"
[agent]
server = "https://127.0.0.1:{port}"
ca = "ca.pem"
cert = "{name}.pem"
key = "{name}.key"
spool = "spool-{name}"
{extra}
[[source]]
name = "logs"
kind = "files"
paths = ["{src}"]
"#,
                port = self.grpc,
                src = sources.display()
            ),
        )
        .unwrap();
        p
    }

    fn agent(&self, config: &Path, host: &str) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("custody"));
        c.args(["agent", "--once", "--host", host, "--config"])
            .arg(config)
            .env_remove("CUSTODY_CONFIG");
        c
    }

    /// POSTs a PagerDuty v3 webhook signed with `secret`.
    fn pagerduty(&self, body: &str, secret: &str) -> (u16, Value) {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(body.as_bytes());
        let sig = format!("v1={}", hex::encode(m.finalize().into_bytes()));
        post(self.webhook, "pd", &[("X-PagerDuty-Signature", &sig)], body)
    }

    /// POSTs a generic webhook signed at `ts`.
    fn generic(&self, body: &str, ts: i64) -> (u16, Value) {
        let mut m =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(self.tool_secret.as_bytes()).unwrap();
        m.update(format!("{ts}.{body}").as_bytes());
        let sig = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
        post(
            self.webhook,
            "tool",
            &[
                ("X-Custody-Timestamp", &ts.to_string()),
                ("X-Custody-Signature", &sig),
            ],
            body,
        )
    }
}

fn post(port: u16, name: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req = ureq::post(&format!("http://127.0.0.1:{port}/webhook/{name}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let (code, text) = match req.send_string(body) {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("webhook request failed: {e}"),
    };
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn pd_event(id: &str, incident: &str, priority: &str, occurred: &str) -> String {
    serde_json::json!({"event": {
        "id": id, "event_type": "incident.triggered", "resource_type": "incident",
        "occurred_at": occurred, "agent": null, "client": null,
        "data": {
            "id": incident, "type": "incident", "number": 7, "status": "triggered",
            "title": "Forged login tokens", "html_url": format!("https://example.pagerduty.com/incidents/{incident}"),
            "created_at": occurred, "urgency": "high",
            "service": {"id": "PSVC01", "summary": "Token service"},
            "priority": {"id": "PRI1", "summary": priority},
        }
    }})
    .to_string()
}

fn now_rfc3339(offset_secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_secs)).to_string()
}

/// The incident's entries as JSON.
fn entries(rt: &tokio::runtime::Runtime, c: &mut Client, incident: &str) -> Vec<Value> {
    paged_entries(rt, c, incident, 0).0
}

/// An incident's record, asked for `limit` entries at a time: the entries
/// and the number of pages.
fn paged_entries(
    rt: &tokio::runtime::Runtime,
    c: &mut Client,
    incident: &str,
    limit: u32,
) -> (Vec<Value>, usize) {
    let (mut all, mut pages, mut skip, mut until) = (Vec::new(), 0, 0, 0);
    loop {
        let page = rt
            .block_on(c.get_incident(pb::GetIncidentRequest {
                incident: incident.into(),
                skip,
                limit,
                until,
            }))
            .unwrap()
            .into_inner();
        if until == 0 {
            until = page.total;
        }
        assert!(limit == 0 || page.entries.len() <= limit as usize);
        assert!(!page.entries.is_empty(), "an empty page at {skip}");
        all.extend(
            page.entries
                .iter()
                .map(|e| serde_json::from_str::<Value>(&e.json).unwrap()),
        );
        pages += 1;
        if page.next == 0 {
            assert_eq!(all.len() as u64, until);
            return (all, pages);
        }
        assert_eq!(page.next, skip + page.entries.len() as u64);
        skip = page.next;
    }
}

/// A verification through the service, streamed to its end: the report.
fn verify_report(rt: &tokio::runtime::Runtime, c: &mut Client) -> Value {
    let mut stream = rt
        .block_on(c.verify(pb::VerifyRequest { quick: false }))
        .unwrap()
        .into_inner();
    let mut report = None;
    while let Some(p) = rt.block_on(stream.message()).unwrap() {
        if let Some(pb::verify_progress::What::ReportJson(j)) = p.what {
            report = Some(serde_json::from_str::<Value>(&j).unwrap());
        }
    }
    report.expect("a final report")
}

fn of_type<'a>(entries: &'a [Value], t: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["type"] == t).collect()
}

/// Declares `incident` as the declarer `c`.
fn declare(rt: &tokio::runtime::Runtime, c: &mut Client, incident: &str, title: &str) {
    rt.block_on(c.declare_incident(pb::DeclareIncidentRequest {
        incident: incident.into(),
        title: title.into(),
        ..Default::default()
    }))
    .unwrap();
}

/// Declares `incident` and places a hold on it; returns the hold (to
/// release it later).
fn declare_held(
    rt: &tokio::runtime::Runtime,
    c: &mut Client,
    incident: &str,
    title: &str,
) -> pb::HoldRequest {
    declare(rt, c, incident, title);
    let hold = pb::HoldRequest {
        incident: incident.into(),
        hold: "regulator".into(),
        reason: "preservation order".into(),
        authorisation: "PO-1".into(),
    };
    rt.block_on(c.place_hold(hold.clone())).unwrap();
    hold
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    r.expect_err("the call should have been refused").code()
}

#[test]
fn agents_preserve_what_a_webhook_declares_and_roles_hold() {
    let Some(py) = cert_python() else { return };
    let s = setup(&py);
    let server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // PagerDuty declares; replays, bad signatures, old events and other
    // priorities do not.
    let occurred = now_rfc3339(-5);
    let body = pd_event("01EVT1", "Q1ABC", "P1", &occurred);
    let (c, v) = s.pagerduty(&body, &s.pd_secret);
    assert_eq!((c, v["incident"].as_str()), (200, Some("pd-Q1ABC")), "{v}");
    assert_eq!(v["newly_declared"], true);
    assert_eq!(
        s.pagerduty(&body, &s.pd_secret).0,
        409,
        "a replay is refused"
    );
    let other = pd_event("01EVT2", "Q2XYZ", "P1", &occurred);
    assert_eq!(s.pagerduty(&other, "not-the-secret").0, 401);
    let mut tampered = other.clone().into_bytes();
    tampered[20] ^= 1;
    let sig_of_other = {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(s.pd_secret.as_bytes()).unwrap();
        m.update(other.as_bytes());
        format!("v1={}", hex::encode(m.finalize().into_bytes()))
    };
    let (c, _) = post(
        s.webhook,
        "pd",
        &[("X-PagerDuty-Signature", &sig_of_other)],
        std::str::from_utf8(&tampered).unwrap(),
    );
    assert_eq!(c, 401, "a body changed after signing is refused");
    let old = pd_event("01EVT3", "Q3OLD", "P1", &now_rfc3339(-7200));
    assert_eq!(
        s.pagerduty(&old, &s.pd_secret).0,
        401,
        "an old event is refused"
    );
    let low = pd_event("01EVT4", "Q4LOW", "P3", &occurred);
    let (c, v) = s.pagerduty(&low, &s.pd_secret);
    assert_eq!((c, &v["declared"]), (202, &Value::Bool(false)), "{v}");
    let now = jiff::Timestamp::now().as_second();
    let generic = r#"{"event":"triggered","id":"77","title":"generic","priority":"P2"}"#;
    assert_eq!(
        s.generic(generic, now - 900).0,
        401,
        "a stale timestamp is refused"
    );
    assert_eq!(s.generic(generic, now).0, 200);
    assert_eq!(s.generic(generic, now).0, 409);
    // The same MAC in capitals is the same request.
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(s.tool_secret.as_bytes()).unwrap();
    m.update(format!("{now}.{generic}").as_bytes());
    let upper = format!("sha256={}", hex::encode_upper(m.finalize().into_bytes()));
    let (c, _) = post(
        s.webhook,
        "tool",
        &[
            ("X-Custody-Timestamp", &now.to_string()),
            ("X-Custody-Signature", &upper),
        ],
        generic,
    );
    assert_eq!(c, 409, "a replay in other case is still a replay");

    // Slow senders are cut off, and do not hold up a prompt one: headers
    // that never end, and a body that stops short.
    use std::io::{Read as _, Write as _};
    let mut no_end = std::net::TcpStream::connect(("127.0.0.1", s.webhook)).unwrap();
    no_end
        .write_all(b"POST /webhook/tool HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut short = std::net::TcpStream::connect(("127.0.0.1", s.webhook)).unwrap();
    short
        .write_all(b"POST /webhook/tool HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let prompt = r#"{"event":"triggered","id":"78","title":"prompt"}"#;
    assert_eq!(
        s.generic(prompt, now).0,
        200,
        "a prompt sender is served meanwhile"
    );
    for (name, mut c) in [("unended headers", no_end), ("short body", short)] {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let r = c.read_to_end(&mut got);
        assert!(
            r.is_ok(),
            "{name}: the server should close the connection within the deadline: {r:?}"
        );
        if name == "short body" {
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 408"), "{name}: {text}");
        }
    }
    // The server logs after it has closed the connection.
    let logged = Instant::now();
    while !server.log().contains("no request within 2 s") {
        assert!(
            logged.elapsed() < Duration::from_secs(10),
            "{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log().contains("refused webhook \"pd\""),
        "{}",
        server.log()
    );

    // Two agents preserve their hosts' logs at once.
    let a_src = s.v.tmp.path().join("host-a");
    let b_src = s.v.tmp.path().join("host-b");
    for (dir, n) in [(&a_src, 3u64), (&b_src, 2)] {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..n {
            std::fs::write(dir.join(format!("app{i}.log")), log_text(200_000, i + n)).unwrap();
        }
    }
    std::fs::write(a_src.join("blob.bin"), noise(3 << 20, 9)).unwrap();
    let a = s
        .agent(&s.agent_config("agent-a", &a_src), "web-a")
        .output();
    let b = s
        .agent(&s.agent_config("agent-b", &b_src), "web-b")
        .output();
    for o in [a.unwrap(), b.unwrap()] {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "agent failed: {err}");
        assert!(err.contains("sealed:"), "{err}");
    }

    // The auditor reads the record: both runs, every file, by whom.
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let all = entries(&rt, &mut auditor, "pd-Q1ABC");
    let runs = of_type(&all, "preservation_started");
    let mut by: Vec<_> = runs.iter().map(|r| r["by"].as_str().unwrap()).collect();
    by.sort_unstable();
    assert_eq!(by, ["agent-a", "agent-b"]);
    let arts = of_type(&all, "artifact");
    assert_eq!(arts.len(), 6, "3 + 1 files from a, 2 from b");
    for art in &arts {
        assert_eq!(art["status"], "complete", "{art}");
        let host = art["host"].as_str().unwrap();
        let collector = art["collector"].as_str().unwrap();
        assert_eq!((host == "web-a"), (collector == "agent-a"), "{art}");
    }
    assert_eq!(of_type(&all, "preservation_finished").len(), 2);
    let declared = of_type(&all, "incident_declared");
    assert_eq!(declared[0]["declared_by"], "webhook:pd");
    assert_eq!(declared[0]["title"], "Forged login tokens");

    // What was preserved is what the hosts had.
    let blob = arts
        .iter()
        .find(|a| a["path"].as_str().unwrap().ends_with("blob.bin"))
        .unwrap();
    let out =
        s.v.cmd(&["cat", "pd-Q1ABC", blob["path"].as_str().unwrap()])
            .output()
            .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, noise(3 << 20, 9));

    // Roles: the auditor reads but cannot write; strangers, other CAs,
    // expired certificates and bad tokens get nothing.
    let declare = |incident: &str| pb::DeclareIncidentRequest {
        incident: incident.into(),
        title: "t".into(),
        ..Default::default()
    };
    assert_eq!(
        code(rt.block_on(auditor.declare_incident(declare("AUD-1")))),
        tonic::Code::PermissionDenied
    );
    let hold = pb::HoldRequest {
        incident: "pd-Q1ABC".into(),
        hold: "legal".into(),
        reason: "litigation".into(),
        authorisation: "GC-1".into(),
    };
    assert_eq!(
        code(rt.block_on(auditor.place_hold(hold.clone()))),
        tonic::Code::PermissionDenied
    );
    let mut stranger = client(&rt, &s.dir, s.grpc, Some("stranger"), None);
    assert_eq!(
        code(rt.block_on(stranger.get_checkpoint(pb::GetCheckpointRequest {}))),
        tonic::Code::PermissionDenied
    );
    let mut anonymous = client(&rt, &s.dir, s.grpc, None, None);
    assert_eq!(
        code(rt.block_on(anonymous.get_checkpoint(pb::GetCheckpointRequest {}))),
        tonic::Code::Unauthenticated
    );
    let mut forged = client(&rt, &s.dir, s.grpc, None, Some("not-a-token-0123456789"));
    assert_eq!(
        code(rt.block_on(forged.get_checkpoint(pb::GetCheckpointRequest {}))),
        tonic::Code::Unauthenticated
    );
    for bad in ["expired", "rogue"] {
        let mut c = client(&rt, &s.dir, s.grpc, Some(bad), None);
        let r = rt.block_on(c.get_checkpoint(pb::GetCheckpointRequest {}));
        let e = r.expect_err(&format!("{bad} certificate accepted"));
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}: {e:?}");
        assert!(
            e.message().contains("client certificate refused"),
            "{bad}: {e:?}"
        );
    }
    let agent_a = |rt: &tokio::runtime::Runtime| client(rt, &s.dir, s.grpc, Some("agent-a"), None);
    assert_eq!(
        code(
            rt.block_on(agent_a(&rt).get_incident(pb::GetIncidentRequest {
                incident: "pd-Q1ABC".into(),
                ..Default::default()
            }))
        ),
        tonic::Code::PermissionDenied,
        "an agent does not read the record"
    );
    let log = server.log();
    for why in [
        "has role auditor",
        "no role in [[serve.client]]",
        "no credentials",
        "unknown bearer token",
        "client certificate refused",
    ] {
        assert!(log.contains(why), "refusal {why:?} not logged: {log}");
    }
    assert!(
        !log.contains("not-a-token-0123456789"),
        "a token was logged"
    );

    // The declarer (a bearer token) places a hold and records a note.
    let mut soc = client(&rt, &s.dir, s.grpc, None, Some(&s.declarer_token));
    rt.block_on(soc.place_hold(hold)).unwrap();
    rt.block_on(soc.record(pb::RecordRequest {
        incident: "pd-Q1ABC".into(),
        what: Some(pb::record_request::What::Note("agents done".into())),
    }))
    .unwrap();
    assert_eq!(
        code(rt.block_on(soc.declare_incident(declare("bad id with spaces")))),
        tonic::Code::InvalidArgument
    );

    // Reads were recorded, naming the auditor, before they were answered.
    let all = entries(&rt, &mut auditor, "pd-Q1ABC");
    let reads: Vec<_> = of_type(&all, "custody_event")
        .into_iter()
        .filter(|e| e["via"] == "serve GetIncident")
        .collect();
    assert!(!reads.is_empty());
    assert_eq!(reads[0]["actor"]["name"], "auditor");
    assert!(
        reads[0]["actor"]["as_reason"]
            .as_str()
            .unwrap()
            .contains("client certificate CN=auditor"),
        "{}",
        reads[0]
    );
    let holds = of_type(&all, "hold_placed");
    assert_eq!(holds[0]["actor"]["name"], "soc");
    // A page at a time: the same record (each page's read is recorded at
    // its end, after what was there before).
    let (paged, pages) = paged_entries(&rt, &mut auditor, "pd-Q1ABC", 3);
    assert!(
        pages >= all.len() / 3,
        "{pages} pages for {} entries",
        all.len()
    );
    assert_eq!(paged[..all.len()], all[..]);
    assert_eq!(
        code(rt.block_on(auditor.get_incident(pb::GetIncidentRequest {
            incident: "pd-Q1ABC".into(),
            skip: 1,
            limit: 1,
            until: 0,
        }))),
        tonic::Code::InvalidArgument,
        "a later page without an end would page forever"
    );
    // One entry a page ends too, although each page's read is recorded.
    let (one_by_one, pages) = paged_entries(&rt, &mut auditor, "pd-Q1ABC", 1);
    assert_eq!(pages, one_by_one.len());
    assert_eq!(one_by_one[..all.len()], all[..]);

    // Proofs and manifests from the service check offline.
    let proof = rt
        .block_on(auditor.get_inclusion_proof(pb::GetInclusionProofRequest {
            incident: "pd-Q1ABC".into(),
            path: blob["path"].as_str().unwrap().into(),
        }))
        .unwrap()
        .into_inner();
    let pf = s.dir.join("proof.json");
    std::fs::write(&pf, &proof.json).unwrap();
    ok(&crate::common::custody()
        .args(["verify-proof", "--vault-id", &s.v.vault_id])
        .arg(&pf)
        .output()
        .unwrap());
    let m = rt
        .block_on(auditor.get_manifest(pb::GetManifestRequest {
            incident: "pd-Q1ABC".into(),
        }))
        .unwrap()
        .into_inner();
    let mf = s.dir.join("manifest.json");
    std::fs::write(&mf, &m.envelope).unwrap();
    ok(&crate::common::custody()
        .args(["verify-manifest", "--vault-id", &s.v.vault_id])
        .arg(&mf)
        .output()
        .unwrap());
    let cp = rt
        .block_on(auditor.get_checkpoint(pb::GetCheckpointRequest {}))
        .unwrap()
        .into_inner();
    let cons = rt
        .block_on(
            auditor.get_consistency_proof(pb::GetConsistencyProofRequest {
                old_size: 2,
                new_size: 0,
            }),
        )
        .unwrap()
        .into_inner();
    assert_eq!(cons.new_size, cons.checkpoint.as_ref().unwrap().size);
    assert!(cons.new_size >= cp.size && !cons.hashes.is_empty());

    // A verification through the service streams its report.
    let report = verify_report(&rt, &mut auditor);
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] != "damage"),
        "{report}\n{}",
        String::from_utf8_lossy(&s.v.cmd(&["log"]).output().unwrap().stdout)
    );
    drop(server);
    s.v.assert_intact();
}

/// A verification whose caller leaves stops at the next artifact and frees
/// its slot, instead of running to the end for nobody.
#[test]
fn a_verification_whose_caller_leaves_is_cancelled() {
    let Some(py) = cert_python() else { return };
    let s = setup(&py);
    // 64 artifacts of 8 MiB: one progress message every 64 MiB.
    for i in 0..64u64 {
        s.v.write(
            &format!("big/{i:02}.bin"),
            // Odd seeds: `noise` sets the low bit, so even ones repeat.
            &crate::common::noise(8 << 20, 1001 + 2 * i),
        );
    }
    s.v.declare_data("INC-V");
    let server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let mut stream = rt
        .block_on(auditor.verify(pb::VerifyRequest { quick: false }))
        .unwrap()
        .into_inner();
    let first = rt.block_on(stream.message()).unwrap().expect("progress");
    assert!(
        matches!(first.what, Some(pb::verify_progress::What::BytesChecked(_))),
        "{first:?}"
    );
    drop(stream);
    wait_for(60, "the cancellation in the server's log", || {
        server
            .log()
            .contains("verification for auditor cancelled: the caller left")
            .then_some(())
    });
    // The slot is free: the next verification runs to its report.
    let report = verify_report(&rt, &mut auditor);
    assert_eq!(report["artifacts"], 64, "{report}");
    assert_eq!(report["bytes_checked"], 64u64 << 23, "{report}");
}

/// The service asks its witnesses off its session lock: a witness that
/// accepts connections and never answers does not hold up calls (each
/// records a read, an append), and the other witness still cosigns.
#[test]
fn a_silent_witness_does_not_hold_up_the_service() {
    let Some(py) = cert_python() else { return };
    let s = setup(&py);
    let key = custody::keys::VaultSigner::load(&s.key).unwrap();
    let log_vkey = custody::keys::PublicKey::note_verifier_key(&key.verifying_key(), key.name());
    let (keys, vkeys) = crate::witness::witness_keys(&s.dir, 2);
    let live = crate::witness::start(&keys[0], &s.dir.join("w1-state"), &[&log_vkey]);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!(
            "witness_quorum = 2\n{text}\n[[witness]]\nkey = \"{}\"\nurl = \"http://127.0.0.1:{}\"\n[[witness]]\nkey = \"{}\"\nurl = \"http://127.0.0.1:{silent_port}\"\n",
            vkeys[0], live.port, vkeys[1]
        ),
    )
    .unwrap();
    let server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    // Each call appends its read; asked under the lock, each would wait
    // out the silent witness's 10 s timeout.
    let t = Instant::now();
    for _ in 0..5 {
        rt.block_on(auditor.get_checkpoint(pb::GetCheckpointRequest {}))
            .unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "5 reads took {:?}: the witnesses held them up",
        t.elapsed()
    );
    wait_for(60, "the live witness's cosignature", || {
        let dir = s.v.vault.join(custody::layout::WITNESSED_DIR);
        (!crate::common::walk(&dir).is_empty()).then_some(())
    });
    wait_for(60, "the silent witness's failure in the log", || {
        server.log().contains("did not cosign").then_some(())
    });
    drop(server);
    s.v.assert_intact();
}

/// A pack with one zstd frame per chunk: (pack id, bytes, chunk refs as JSON).
fn pack_of(chunks: &[&[u8]]) -> (String, Vec<u8>, Vec<Value>) {
    let mut bytes = custody::ingest::PACK_MAGIC.to_vec();
    let mut refs = Vec::new();
    let mut placed = Vec::new();
    for c in chunks {
        let frame = zstd::encode_all(*c, 3).unwrap();
        placed.push((
            bytes.len(),
            frame.len(),
            c.len(),
            blake3::hash(c).to_hex().to_string(),
        ));
        bytes.extend_from_slice(&frame);
    }
    let id = blake3::hash(&bytes).to_hex().to_string();
    for (offset, stored, size, cid) in placed {
        refs.push(serde_json::json!({"id": cid, "pack": id, "offset": offset, "stored": stored, "size": size}));
    }
    (id, bytes, refs)
}

fn artifact(
    incident: &str,
    run: &str,
    path: &str,
    content: &[u8],
    claimed: &[u8],
    chunks: Vec<Value>,
) -> String {
    let now = jiff::Timestamp::now().to_string();
    serde_json::json!({
        "type": "artifact", "incident": incident, "run": run, "source": "logs", "source_kind": "files",
        "kind": "file", "path": path, "status": "complete", "reason": null, "error": null,
        "size": content.len(), "blake3": blake3::hash(claimed).to_hex().to_string(),
        "sha256": hex::encode(sha2::Sha256::digest(claimed)), "chunks": chunks,
        "link_target": null, "file": null, "command": null, "host": "h1", "collector": "whoever",
        "tool": {"name": "custody", "version": env!("CARGO_PKG_VERSION")},
        "started_at": now, "ended_at": now,
    })
    .to_string()
}

fn pieces(run: &str, pack: &str, bytes: &[u8], size: u64) -> Vec<pb::PackPiece> {
    bytes
        .chunks(1000)
        .enumerate()
        .map(|(i, d)| pb::PackPiece {
            run: if i == 0 { run.into() } else { String::new() },
            pack: if i == 0 { pack.into() } else { String::new() },
            size: if i == 0 { size } else { 0 },
            data: d.to_vec(),
        })
        .collect()
}

#[test]
fn the_server_rehashes_what_agents_send_and_survives_hostile_clients() {
    let Some(py) = cert_python() else { return };
    let s = setup(&py);
    let mut server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut soc = client(&rt, &s.dir, s.grpc, None, Some(&s.declarer_token));
    declare(&rt, &mut soc, "INC-2", "two-sided");
    let mut a = client(&rt, &s.dir, s.grpc, Some("agent-a"), None);
    let run = rt
        .block_on(a.begin_run(pb::BeginRunRequest {
            incident: "INC-2".into(),
            host: "h1".into(),
            sources_json: r#"[{"name":"logs","kind":"files","paths":["/var/log"]}]"#.into(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .run;
    assert_eq!(
        code(rt.block_on(a.begin_run(pb::BeginRunRequest {
            incident: "NOT-DECLARED".into(),
            host: "h1".into(),
            sources_json: r#"[{"name":"logs","kind":"files","paths":["/var/log"]}]"#.into(),
            ..Default::default()
        }))),
        tonic::Code::FailedPrecondition,
        "agents ingest only for declared incidents"
    );

    let hello = b"hello, evidence\n".repeat(1000);
    let (id, bytes, refs) = pack_of(&[&hello]);
    // A pack whose bytes do not hash to its id is refused and not stored.
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() ^= 1;
    let r = rt.block_on(a.put_pack(tokio_stream::iter(pieces(
        &run,
        &id,
        &bad,
        bad.len() as u64,
    ))));
    assert_eq!(code(r), tonic::Code::DataLoss);
    let key = s.v.vault.join(custody::layout::pack_path(
        &custody::hash::Blake3Id::parse(&id).unwrap(),
    ));
    assert!(!key.exists(), "a refused pack was stored");
    // A stream that stops short stores nothing.
    let r = rt.block_on(a.put_pack(tokio_stream::iter(pieces(
        &run,
        &id,
        &bytes[..bytes.len() / 2],
        bytes.len() as u64,
    ))));
    assert_eq!(code(r), tonic::Code::DataLoss);
    assert!(!key.exists());
    let mut send_whole = || {
        rt.block_on(a.put_pack(tokio_stream::iter(pieces(
            &run,
            &id,
            &bytes,
            bytes.len() as u64,
        ))))
        .unwrap()
        .into_inner()
    };
    let stored = send_whole();
    assert!(stored.created && key.exists());
    // Sent again, it is held already, and the call is recorded all the same.
    assert!(!send_whole().created);

    // An entry whose digests are not those of its chunks is recorded as
    // failed, with both sides' digests; a true one as complete.
    let good = artifact(
        "INC-2",
        &run,
        "/var/log/good.log",
        &hello,
        &hello,
        refs.clone(),
    );
    let lie = artifact(
        "INC-2",
        &run,
        "/var/log/lie.log",
        &hello,
        b"something else",
        refs.clone(),
    );
    let sealed = rt
        .block_on(a.add_entries(pb::AddEntriesRequest {
            run: run.clone(),
            first: 0,
            entries_json: vec![good.clone(), lie],
        }))
        .unwrap()
        .into_inner();
    assert_eq!(sealed.entries_sealed, 2);
    assert_eq!(sealed.mismatches.len(), 1, "{:?}", sealed.mismatches);
    assert!(sealed.mismatches[0].contains("lie.log"));
    // Sent again (a retry), nothing is sealed twice.
    let again = rt
        .block_on(a.add_entries(pb::AddEntriesRequest {
            run: run.clone(),
            first: 1,
            entries_json: vec![good.clone()],
        }))
        .unwrap()
        .into_inner();
    assert_eq!(again.entries_sealed, 2);
    assert!(again.recorded.is_none());
    // Two copies of one call at once: sealed once.
    let third = artifact(
        "INC-2",
        &run,
        "/var/log/third.log",
        &hello,
        &hello,
        refs.clone(),
    );
    let call = || {
        let mut c = a.clone();
        let req = pb::AddEntriesRequest {
            run: run.clone(),
            first: 2,
            entries_json: vec![third.clone()],
        };
        async move { c.add_entries(req).await }
    };
    let (x, y) = rt.block_on(async { tokio::join!(call(), call()) });
    assert_eq!(x.unwrap().into_inner().entries_sealed, 3);
    assert_eq!(y.unwrap().into_inner().entries_sealed, 3);
    // A key file that would put private key bytes in clear is refused.
    let leak = serde_json::json!({
        "type": "key_file", "incident": "INC-2", "run": run, "source": "logs", "path": "/var/log/third.log",
        "status": "complete", "reason": null, "error": null, "size": hello.len(),
        "blake3": blake3::hash(&hello).to_hex().to_string(), "sha256": hex::encode(sha2::Sha256::digest(&hello)),
        "file": null, "form": "private", "content": "stored", "sealed_to": [], "keys": [], "notes": [],
        "host": "h1", "collector": "x", "tool": {"name": "custody", "version": env!("CARGO_PKG_VERSION")},
        "started_at": jiff::Timestamp::now().to_string(), "ended_at": jiff::Timestamp::now().to_string(),
    })
    .to_string();
    let r = rt.block_on(a.add_entries(pb::AddEntriesRequest {
        run: run.clone(),
        first: 3,
        entries_json: vec![leak],
    }));
    let e = r.expect_err("a private key in clear was sealed");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("key_file_in_clear"), "{e:?}");
    // A request without credentials is refused before its body counts.
    let mut anonymous = client(&rt, &s.dir, s.grpc, None, None);
    let r = rt.block_on(anonymous.add_entries(pb::AddEntriesRequest {
        run: run.clone(),
        first: 3,
        entries_json: vec!["x".repeat(8 << 20)],
    }));
    assert_eq!(code(r), tonic::Code::Unauthenticated);
    // Entries for another incident, and another agent's run, are refused.
    let elsewhere = artifact("INC-OTHER", &run, "/x", &hello, &hello, refs.clone());
    assert_eq!(
        code(rt.block_on(a.add_entries(pb::AddEntriesRequest {
            run: run.clone(),
            first: 3,
            entries_json: vec![elsewhere],
        }))),
        tonic::Code::InvalidArgument
    );
    let mut b = client(&rt, &s.dir, s.grpc, Some("agent-b"), None);
    assert_eq!(
        code(rt.block_on(b.add_entries(pb::AddEntriesRequest {
            run: run.clone(),
            first: 3,
            entries_json: vec![good.clone()],
        }))),
        tonic::Code::PermissionDenied
    );
    // An oversize message is refused without harming anyone.
    let huge = vec!["x".repeat(1 << 20); 20];
    let r = rt.block_on(a.add_entries(pb::AddEntriesRequest {
        run: run.clone(),
        first: 3,
        entries_json: huge,
    }));
    assert!(r.is_err());
    // Slow and garbage clients do not block others.
    let slow = std::net::TcpStream::connect(("127.0.0.1", s.grpc)).unwrap();
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", s.grpc)).unwrap();
    garbage.write_all(&noise(100_000, 3)).unwrap();
    // After a restart of the server, the run goes on where the log says.
    drop(server);
    server = s.server();
    let fourth = artifact(
        "INC-2",
        &run,
        "/var/log/fourth.log",
        &hello,
        &hello,
        refs.clone(),
    );
    // A large artifact (re-hashed on two threads) whose SHA-256 alone lies
    // is failed too; a true one is complete.
    let big = noise(17 << 20, 11);
    let big_chunks: Vec<&[u8]> = big.chunks(1 << 20).collect();
    let (big_id, big_bytes, big_refs) = pack_of(&big_chunks);
    rt.block_on(a.put_pack(tokio_stream::iter(pieces(
        &run,
        &big_id,
        &big_bytes,
        big_bytes.len() as u64,
    ))))
    .unwrap();
    let big_good = artifact(
        "INC-2",
        &run,
        "/var/log/big.log",
        &big,
        &big,
        big_refs.clone(),
    );
    let mut big_lie: Value = serde_json::from_str(&artifact(
        "INC-2",
        &run,
        "/var/log/big-lie.log",
        &big,
        &big,
        big_refs,
    ))
    .unwrap();
    big_lie["sha256"] = hex::encode(sha2::Sha256::digest(b"not it")).into();
    let r = rt
        .block_on(a.add_entries(pb::AddEntriesRequest {
            run: run.clone(),
            first: 3,
            entries_json: vec![fourth, big_good, big_lie.to_string()],
        }))
        .unwrap()
        .into_inner();
    assert_eq!(r.entries_sealed, 6);
    assert_eq!(r.mismatches.len(), 1, "{:?}", r.mismatches);
    assert!(
        r.mismatches[0].contains("big-lie.log"),
        "{:?}",
        r.mismatches
    );
    // Without `sha256` (as `custody agent` sends them), an artifact is
    // checked by its size and BLAKE3 and recorded with the server's
    // SHA-256; a BLAKE3 that lies fails it.
    let unclaimed = |path: &str, claimed: &[u8]| {
        let mut v: Value = serde_json::from_str(&artifact(
            "INC-2",
            &run,
            path,
            &hello,
            claimed,
            refs.clone(),
        ))
        .unwrap();
        v.as_object_mut().unwrap().remove("sha256");
        v.to_string()
    };
    let r = rt
        .block_on(a.add_entries(pb::AddEntriesRequest {
            run: run.clone(),
            first: 6,
            entries_json: vec![
                unclaimed("/var/log/unclaimed.log", &hello),
                unclaimed("/var/log/unclaimed-lie.log", b"something else"),
            ],
        }))
        .unwrap()
        .into_inner();
    assert_eq!(r.entries_sealed, 8);
    assert_eq!(r.mismatches.len(), 1, "{:?}", r.mismatches);
    assert!(
        r.mismatches[0].contains("unclaimed-lie.log") && r.mismatches[0].contains("blake3"),
        "{:?}",
        r.mismatches
    );
    let done = rt
        .block_on(a.finish_run(pb::FinishRunRequest { run: run.clone() }))
        .unwrap()
        .into_inner();
    // A retry after a lost answer gets the same answer.
    let again = rt
        .block_on(a.finish_run(pb::FinishRunRequest { run: run.clone() }))
        .unwrap()
        .into_inner();
    assert_eq!(done.segment, again.segment);
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let all = entries(&rt, &mut auditor, "INC-2");
    // The retries wrote no entry; each is recorded as a read.
    for via in ["serve AddEntries", "serve FinishRun"] {
        assert!(
            of_type(&all, "custody_event")
                .iter()
                .any(|e| e["via"] == via
                    && e["action"] == "accessed"
                    && e["actor"]["name"] == "agent-a"),
            "no record of a retried {via}"
        );
    }
    drop(slow);
    let arts = of_type(&all, "artifact");
    assert_eq!(arts.len(), 8);
    assert_eq!(
        (arts[4]["status"].as_str(), arts[5]["status"].as_str()),
        (Some("complete"), Some("failed"))
    );
    assert_eq!(
        (arts[6]["status"].as_str(), arts[6]["sha256"].as_str()),
        (
            Some("complete"),
            Some(hex::encode(sha2::Sha256::digest(&hello)).as_str())
        ),
        "the server records the SHA-256 of what it received"
    );
    assert_eq!(arts[7]["status"], "failed");
    // Each pack stored is a `received` event naming the agent; a refused
    // one is not.
    let received: Vec<_> = of_type(&all, "custody_event")
        .into_iter()
        .filter(|e| e["action"] == "received")
        .collect();
    let pack_key =
        |id: &str| custody::layout::pack_path(&custody::hash::Blake3Id::parse(id).unwrap());
    assert_eq!(
        received
            .iter()
            .map(|e| e["output"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [pack_key(&id), pack_key(&id), pack_key(&big_id)],
    );
    assert!(
        received
            .iter()
            .all(|e| e["via"] == "serve PutPack" && e["actor"]["name"] == "agent-a"),
        "{received:?}"
    );
    assert_eq!(arts[0]["status"], "complete");
    assert_eq!(
        arts[0]["collector"], "agent-a",
        "the server names the authenticated collector"
    );
    assert_eq!(arts[1]["status"], "failed");
    assert!(
        arts[1]["error"]
            .as_str()
            .unwrap()
            .contains("two-sided hashing failed")
    );
    let fin = of_type(&all, "preservation_finished");
    assert_eq!(
        (fin[0]["complete"].as_u64(), fin[0]["failed"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(
        code(rt.block_on(a.add_entries(pb::AddEntriesRequest {
            run,
            first: 3,
            entries_json: vec![],
        }))),
        tonic::Code::FailedPrecondition,
        "a finished run takes nothing more"
    );
    drop(server);
    s.v.assert_intact();
}

#[test]
fn an_agent_resumes_after_the_server_restarts_mid_run() {
    let Some(py) = cert_python() else { return };
    let s = setup(&py);
    let mut server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut soc = client(&rt, &s.dir, s.grpc, None, Some(&s.declarer_token));
    declare(&rt, &mut soc, "INC-3", "restart");
    let src = s.v.tmp.path().join("host");
    std::fs::create_dir_all(&src).unwrap();
    let big = noise(80 << 20, 5);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("small{i}.log")), log_text(50_000, i)).unwrap();
    }
    let agent = s
        .agent(&s.agent_config("agent-a", &src), "restart-host")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the first pack is stored, then start it again.
    let packs = s.v.vault.join("packs");
    let t = Instant::now();
    while crate::common::walk(&packs).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(120), "no pack arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    std::thread::sleep(Duration::from_secs(1));
    server = s.server();
    let out = agent.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "agent failed: {err}");
    assert!(
        err.contains("resuming") || err.contains("trying again"),
        "{err}"
    );
    let line = err.lines().find(|l| l.contains("sealed:")).unwrap();
    let sent: u64 = line
        .split(" pack(s) sent")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stored = crate::common::walk(&packs).len() as u64;
    // At most the pack in flight at the kill went twice.
    assert!(
        sent <= stored + 1,
        "{sent} packs sent for {stored} stored: {err}"
    );

    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let all = entries(&rt, &mut auditor, "INC-3");
    let arts = of_type(&all, "artifact");
    assert_eq!(arts.len(), 6);
    assert!(arts.iter().all(|a| a["status"] == "complete"));
    // Every pack stored is in the record as `received` from the agent,
    // also the one whose PutPack the kill may have cut between storing it
    // and recording it (it is sent again).
    let received: std::collections::HashSet<String> = of_type(&all, "custody_event")
        .into_iter()
        .filter(|e| e["action"] == "received" && e["actor"]["name"] == "agent-a")
        .map(|e| e["output"].as_str().unwrap().to_owned())
        .collect();
    // (object_store's staging files, `name#n`, that the kill left are not
    // packs.)
    for p in crate::common::walk(&packs)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains('#'))
    {
        let key = p
            .strip_prefix(&s.v.vault)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            received.contains(&key),
            "{key} has no received event: {received:?}"
        );
    }
    // Resuming asked what the server holds: a read, recorded as one.
    if err.contains("resuming") {
        let resumed: Vec<_> = of_type(&all, "custody_event")
            .into_iter()
            .filter(|e| e["via"] == "serve BeginRun")
            .collect();
        assert!(!resumed.is_empty(), "{err}");
        assert_eq!(resumed[0]["action"], "accessed");
        assert_eq!(resumed[0]["actor"]["name"], "agent-a");
    }
    let out =
        s.v.cmd(&["cat", "INC-3", &src.join("big.bin").to_string_lossy()])
            .output()
            .unwrap();
    assert!(out.status.success());
    assert!(out.stdout == big, "the preserved file differs");
    drop(server);
    s.v.assert_intact();
}

/// Polls `f` until it returns Some, for at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_held_incident_is_followed_through_rotation_until_released() {
    let Some(py) = cert_python() else { return };
    let s = setup_with(&py, "heartbeat_secs = 1");
    let server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut soc = client(&rt, &s.dir, s.grpc, None, Some(&s.declarer_token));
    let hold = declare_held(&rt, &mut soc, "INC-F", "attacker still inside");
    let src = s.v.tmp.path().join("host");
    std::fs::create_dir_all(&src).unwrap();
    let app = src.join("app.log");
    let rot = src.join("rot.log");
    std::fs::write(&app, log_text(100_000, 1)).unwrap();
    std::fs::write(&rot, b"rot: first line\n").unwrap();
    let config = s.agent_config_with("agent-a", &src, "follow_secs = 1");
    let (mut agent, log) = daemon_agent(&config, "follow-host");
    wait_for(120, "following to start", || {
        log.lock()
            .unwrap()
            .contains("following 2 file(s)")
            .then_some(())
    });

    // Appended lines, a rotation (rename, then a new file), and a file
    // emptied in place.
    let appended =
        b"2026-11-29T03:00:00Z web-01 sshd[9]: Accepted publickey for attacker\n".repeat(50);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&app)
        .unwrap()
        .write_all(&appended)
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&rot)
        .unwrap()
        .write_all(b"rot: last line before rotation\n")
        .unwrap();
    std::fs::rename(&rot, src.join("rot.log.1")).unwrap();
    std::fs::write(&rot, b"rot: first line of the new file\n").unwrap();

    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let pieces = wait_for(60, "the appended pieces", || {
        let all = entries(&rt, &mut auditor, "INC-F");
        let arts: Vec<Value> = of_type(&all, "artifact").into_iter().cloned().collect();
        let has = |path: &Path, offset: u64, content: &[u8]| {
            arts.iter().any(|a| {
                a["path"] == path.to_string_lossy().as_ref()
                    && a["offset"] == offset
                    && a["sha256"] == sha(content)
            })
        };
        (has(
            &app,
            100_000u64.max(log_text(100_000, 1).len() as u64),
            &appended,
        ) && has(
            &src.join("rot.log.1"),
            16,
            b"rot: last line before rotation\n",
        ) && has(&rot, 0, b"rot: first line of the new file\n"))
        .then_some(arts)
    });
    assert!(
        pieces.iter().all(|a| a["status"] == "complete"),
        "{pieces:?}"
    );

    // Emptied in place: recorded as partial, followed again from byte 0.
    std::fs::write(&app, b"").unwrap();
    std::fs::write(&app, b"after the wipe\n").unwrap();
    wait_for(60, "the truncation", || {
        let all = entries(&rt, &mut auditor, "INC-F");
        of_type(&all, "artifact")
            .into_iter()
            .find(|a| a["status"] == "partial" && a["offset"] == 0u64)
            .map(|a| {
                assert!(
                    a["reason"].as_str().unwrap().contains("truncated in place"),
                    "{a}"
                )
            })
    });

    // Released: the run is finished.
    rt.block_on(soc.release_hold(hold)).unwrap();
    wait_for(60, "the run to finish", || {
        log.lock().unwrap().contains("run ").then_some(())?;
        let all = entries(&rt, &mut auditor, "INC-F");
        (of_type(&all, "preservation_finished").len() == 1).then_some(())
    });
    // A quiet log gets heartbeats.
    wait_for(30, "a heartbeat", || {
        let out = s.v.cmd(&["log"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains("heartbeat from")
            .then_some(())
    });
    terminate(&mut agent, &log);
    drop(server);
    s.v.assert_intact();
}

/// `custody agent` as a daemon (no `--once`), its standard error
/// collected as it comes.
fn daemon_agent(config: &Path, host: &str) -> (std::process::Child, Arc<Mutex<String>>) {
    let mut agent = Command::new(assert_cmd::cargo::cargo_bin("custody"))
        .args(["agent", "--host", host, "--config"])
        .arg(config)
        .env_remove("CUSTODY_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let l = log.clone();
    let err = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (agent, log)
}

/// SIGTERM, and the agent must end well.
fn terminate(agent: &mut std::process::Child, log: &Mutex<String>) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "{}", log.lock().unwrap());
}

/// An agent killed while following, or stopped and started again, goes on
/// from where it got to: what was appended meanwhile is taken (also from a
/// file rotated meanwhile), nothing is taken twice, and every run ends.
#[test]
fn a_restarted_agent_follows_on_from_where_it_stopped() {
    let Some(py) = cert_python() else { return };
    let s = setup(&py);
    let server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut soc = client(&rt, &s.dir, s.grpc, None, Some(&s.declarer_token));
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let hold = declare_held(&rt, &mut soc, "INC-R", "agents restart");
    let src = s.v.tmp.path().join("host");
    std::fs::create_dir_all(&src).unwrap();
    let app = src.join("app.log");
    let first = log_text(100_000, 7);
    std::fs::write(&app, &first).unwrap();
    let append = |path: &Path, bytes: &[u8]| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap()
    };
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let mut sealed = |path: &Path, offset: u64, content: &[u8], what: &str| {
        wait_for(60, what, || {
            let all = entries(&rt, &mut auditor, "INC-R");
            of_type(&all, "artifact")
                .iter()
                .any(|a| {
                    a["path"] == path.to_string_lossy().as_ref()
                        && a["offset"].as_u64().unwrap_or(0) == offset
                        && a["sha256"] == sha(content)
                })
                .then_some(all)
        })
    };
    let config = s.agent_config_with("agent-a", &src, "follow_secs = 1");
    let (mut agent, log) = daemon_agent(&config, "restart-host");
    sealed(&app, 0, &first, "the first capture");
    let a1 = b"a1: appended while followed\n".repeat(20);
    append(&app, &a1);
    let mut at = first.len() as u64;
    sealed(&app, at, &a1, "the first appended piece");
    at += a1.len() as u64;
    // The agent keeps its position after the server has sealed the piece
    // (a kill in between takes the piece again, README "Agents"); it says
    // so once kept.
    wait_for(60, "the agent to keep where it got to", || {
        log.lock()
            .unwrap()
            .contains("appended piece(s) sealed")
            .then_some(())
    });

    // Killed; meanwhile the file gets more and is rotated.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let a2 = b"a2: appended while no agent ran\n".repeat(20);
    append(&app, &a2);
    let rotated = src.join("app.log.1");
    std::fs::rename(&app, &rotated).unwrap();
    let b = b"b: the new file after rotation\n".repeat(10);
    std::fs::write(&app, &b).unwrap();
    let (mut agent, log2) = daemon_agent(&config, "restart-host");
    let _ = log;
    sealed(&rotated, at, &a2, "what was appended before the rotation");
    sealed(&app, 0, &b, "the new file");
    let text = log2.lock().unwrap().clone();
    assert!(
        text.contains("was interrupted: finished with what the server had sealed"),
        "{text}"
    );
    assert!(
        text.contains("on from where the last agent stopped"),
        "{text}"
    );

    // A second agent on the same spool is refused.
    let again = s.agent(&config, "restart-host").output().unwrap();
    assert!(!again.status.success(), "a second agent on one spool");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("another custody agent uses the spool"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Stopped (SIGTERM) and started again: the same.
    terminate(&mut agent, &log2);
    let a3 = b"a3: appended between stop and start\n".repeat(20);
    append(&app, &a3);
    let (mut agent, log3) = daemon_agent(&config, "restart-host");
    let all = sealed(&app, b.len() as u64, &a3, "what was appended while stopped");

    // Nothing was taken twice: each file's pieces (by inode, whatever its
    // path) are contiguous.
    let arts = of_type(&all, "artifact");
    let mut ranges: Vec<(u64, u64, u64)> = arts
        .iter()
        .map(|a| {
            let off = a["offset"].as_u64().unwrap_or(0);
            let ino = a["file"]["ino"].as_u64().expect("a file's inode");
            (ino, off, off + a["size"].as_u64().unwrap())
        })
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[0].2 == w[1].1, "bytes taken twice or missed: {w:?}");
        }
    }
    assert_eq!(
        ranges.iter().filter(|r| r.1 == 0).count(),
        2,
        "only app.log's first capture and the new file start at 0: {ranges:?}"
    );

    // Released: every run is finished, and nothing is kept for later.
    rt.block_on(soc.release_hold(hold)).unwrap();
    wait_for(60, "every run to finish", || {
        let all = entries(&rt, &mut auditor, "INC-R");
        let started = of_type(&all, "preservation_started").len();
        (started == 3 && of_type(&all, "preservation_finished").len() == started).then_some(())
    });
    terminate(&mut agent, &log3);
    let spool = s.dir.join("spool-agent-a");
    assert!(!spool.join("follow-INC-R.json").exists());
    drop(server);
    s.v.assert_intact();
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The load test of the issue, bounded: 8 agents stream 256 MiB each at
/// once (`CUSTODY_LOAD_MIB` changes the size), then every artifact must be
/// complete and verify, and the server's peak memory stays under 384 MiB.
#[test]
fn eight_agents_stream_at_once_and_the_server_stays_bounded() {
    let Some(py) = cert_python() else { return };
    let mib: usize = std::env::var("CUSTODY_LOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let s = setup(&py);
    let server = s.server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut soc = client(&rt, &s.dir, s.grpc, None, Some(&s.declarer_token));
    declare(&rt, &mut soc, "LOAD", "eight agents");
    let mut agents = Vec::new();
    for i in 0..8u64 {
        let name = if i % 2 == 0 { "agent-a" } else { "agent-b" };
        let src = s.v.tmp.path().join(format!("load-{i}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("big.bin"), noise(mib << 20, 100 + i)).unwrap();
        for j in 0..20 {
            std::fs::write(
                src.join(format!("small-{j}.log")),
                log_text(4096, i * 100 + j),
            )
            .unwrap();
        }
        let config = s.dir.join(format!("load-{i}.toml"));
        let text = std::fs::read_to_string(s.agent_config(name, &src))
            .unwrap()
            .replace(&format!("spool-{name}"), &format!("spool-load-{i}"));
        std::fs::write(&config, text).unwrap();
        agents.push(
            s.agent(&config, &format!("load-host-{i}"))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for a in agents {
        let out = a.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rss = peak_rss_kib(server.child.id());
    eprintln!("server peak RSS: {} MiB", rss / 1024);
    assert!(rss < 384 << 10, "the server peaked at {} MiB", rss / 1024);
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let all = entries(&rt, &mut auditor, "LOAD");
    let arts = of_type(&all, "artifact");
    assert_eq!(arts.len(), 8 * 21);
    assert!(arts.iter().all(|a| a["status"] == "complete"));
    let bytes: u64 = arts.iter().map(|a| a["size"].as_u64().unwrap()).sum();
    assert!(bytes >= (8 * mib as u64) << 20);
    drop(server);
    s.v.assert_intact();
}

/// The service over an `s3://` vault on the Ceph gateway that
/// scripts/test.sh starts: a webhook declares, two agents preserve, the
/// record and a verification through the service and offline agree.
#[test]
fn the_service_keeps_a_vault_on_the_ceph_gateway() {
    let Some(py) = cert_python() else { return };
    let endpoint = std::env::var("CUSTODY_TEST_CEPH_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    if !available(
        endpoint.is_some(),
        "the ceph S3 server (CUSTODY_TEST_CEPH_ENDPOINT)",
    ) {
        return;
    }
    let mut s = setup(&py);
    let bucket = std::env::var("CUSTODY_TEST_BUCKET").unwrap_or_else(|_| "custody-test".into());
    let vault = format!("s3://{bucket}/service-{:016x}", rand::random::<u64>());
    s.env = vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.unwrap()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
    ];
    s.key = s.dir.join("ceph-vault.key");
    let s3 = |args: &[&str]| {
        let mut c = crate::common::custody();
        c.args(args)
            .arg("--vault")
            .arg(&vault)
            .envs(s.env.iter().map(|(k, v)| (k, v)));
        c
    };
    let key = s.key.to_string_lossy().into_owned();
    ok(&s3(&[
        "init",
        "--origin",
        "s3.custody.example/service",
        "--key",
        &key,
    ])
    .output()
    .unwrap());
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("vault = \"{}\"", s.v.vault.display()),
        &format!("vault = \"{vault}\""),
    );
    std::fs::write(&s.config, text).unwrap();
    let server = s.server();
    let now = jiff::Timestamp::now().as_second();
    let (c, v) = s.generic(
        r#"{"event":"triggered","id":"C1","title":"on ceph","priority":"P1"}"#,
        now,
    );
    assert_eq!(c, 200, "{v}");
    for (name, host) in [("agent-a", "ceph-a"), ("agent-b", "ceph-b")] {
        let src = s.v.tmp.path().join(host);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("app.log"), log_text(300_000, host.len() as u64)).unwrap();
        std::fs::write(src.join("blob.bin"), noise(2 << 20, host.len() as u64)).unwrap();
        let o = s.agent(&s.agent_config(name, &src), host).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut auditor = client(&rt, &s.dir, s.grpc, Some("auditor"), None);
    let all = entries(&rt, &mut auditor, "tool-C1");
    let arts = of_type(&all, "artifact");
    assert_eq!(arts.len(), 4);
    assert!(arts.iter().all(|a| a["status"] == "complete"));
    let report = verify_report(&rt, &mut auditor);
    let damage = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "damage")
        .count();
    assert_eq!(damage, 0, "{report}");
    drop(server);
    let out = s3(&["verify", "--json", "--no-record"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
