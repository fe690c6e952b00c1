//! The webhook endpoint of `custody serve`: incident tools declare
//! incidents by POSTing to `/webhook/<name>` (README "Webhooks").
//!
//! - `generic`: `X-Custody-Timestamp: <POSIX seconds>` and
//!   `X-Custody-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`;
//!   the timestamp must be within 5 minutes, and a signature is accepted once.
//! - `pagerduty`: PagerDuty webhooks v3, `X-PagerDuty-Signature: v1=<hex
//!   HMAC-SHA256(secret, body)>` (several, comma-separated, while a secret
//!   is rotated); `event.occurred_at` must be within an hour, and an event
//!   id is accepted once.
//!
//! Only a triggered incident declares (filtered by `priorities` and
//! `services`); other events are acknowledged and ignored. Refusals are
//! logged without the request's content.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use custody::config::{Role, WebhookConfig, WebhookKind};
use custody::segment::{IncidentDeclared, Tool};
use custody::time::Time;
use hmac::Mac as _;
use serde::Deserialize;

use super::host_name;
use super::serve::{Caller, Shared, forget, seen_before};

/// Largest request body.
const MAX_BODY: usize = 1 << 20;
/// Most webhook connections open at once; further ones are closed as
/// they are accepted, so slow senders cannot exhaust the server's files.
const MAX_CONNECTIONS: usize = 64;
/// How far a generic request's timestamp may be from the server's clock.
const GENERIC_WINDOW_SECS: i64 = 300;
/// How old a PagerDuty event may be.
const PAGERDUTY_WINDOW_SECS: i64 = 3600;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/webhook/{name}", axum::routing::post(hook))
        .with_state(shared)
}

/// Serves webhooks on `listener`: HTTP/1.1, one request per connection.
/// A request's headers must arrive within `webhook_timeout` of the
/// connection opening and its body within as long again; at most
/// [`MAX_CONNECTIONS`] are open at once.
pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let deadline = shared.webhook_timeout;
    let app = router(shared);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, most likely: wait, do not spin.
                eprintln!("custody serve: webhook connection not accepted: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            eprintln!(
                "custody serve: {} closed webhook connection from {peer}: {MAX_CONNECTIONS} are open",
                Time::now()
            );
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(ConnectInfo(peer))),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(deadline)
                .keep_alive(false);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    eprintln!(
                        "custody serve: {} closed webhook connection from {peer}: no request within {} s",
                        Time::now(),
                        deadline.as_secs()
                    );
                }
            }
        });
    }
}

type Answer = (StatusCode, String);

fn answer(code: StatusCode, v: serde_json::Value) -> Answer {
    (code, v.to_string())
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let refuse = |code: StatusCode, why: &str| {
        eprintln!(
            "custody serve: {} refused webhook {name:?} from {peer}: {why}",
            Time::now()
        );
        answer(code, serde_json::json!({ "error": why }))
    };
    let Some((cfg, secret)) = shared.webhooks.get(&name) else {
        return refuse(StatusCode::NOT_FOUND, "no such webhook");
    };
    let deadline = shared.webhook_timeout;
    let body: Bytes =
        match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is over 1 MiB or was cut short",
                );
            }
            Err(_) => {
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the body took over {} s to arrive", deadline.as_secs()),
                );
            }
        };
    let event = match cfg.kind {
        WebhookKind::Generic => generic(&shared, secret, &headers, &body),
        WebhookKind::Pagerduty => pagerduty(&shared, secret, &headers, &body),
    };
    let (event, replay_key) = match event {
        Ok(e) => e,
        Err((code, why)) => return refuse(code, &why),
    };
    let Some(event) = event else {
        return answer(
            StatusCode::ACCEPTED,
            serde_json::json!({"declared": false, "why": "not an incident-triggered event"}),
        );
    };
    if let Some(why) = filtered(cfg, &event) {
        return answer(
            StatusCode::ACCEPTED,
            serde_json::json!({"declared": false, "why": why}),
        );
    }
    let incident = format!("{}{}", cfg.prefix(), event.id);
    if let Err(e) = custody::preserve::check_incident_id(&incident) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, &e);
    }
    let caller = Caller {
        name: format!("webhook:{name}"),
        role: Role::Declarer,
        how: format!("webhook {name:?} signature"),
        peer: peer.to_string(),
    };
    let d = IncidentDeclared {
        incident: incident.clone(),
        title: if event.title.trim().is_empty() {
            format!("{} {}", cfg.name, event.id)
        } else {
            event.title.clone()
        },
        severity: event.severity.clone(),
        discovered_at: event.at.clone(),
        declared_at: Time::now(),
        declared_by: caller.name.clone(),
        host: format!("{} (caller {peer})", host_name()),
        tool: Tool::this(),
        description: event.url.clone(),
        detection_source: Some(format!("{} webhook {:?}", kind_name(cfg.kind), cfg.name)),
        regimes: Vec::new(),
    };
    match shared.declare(&caller, d).await {
        Ok(r) => answer(
            StatusCode::OK,
            serde_json::json!({
                "declared": true, "incident": incident, "newly_declared": r.newly_declared,
                "segment": r.recorded.map(|x| x.segment),
            }),
        ),
        Err(st) => {
            // Not declared: the tool's retry must not count as a replay.
            forget(&shared, &replay_key);
            let code = if st.code() == tonic::Code::FailedPrecondition {
                StatusCode::CONFLICT
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            refuse(code, st.message())
        }
    }
}

fn kind_name(k: WebhookKind) -> &'static str {
    match k {
        WebhookKind::Generic => "generic",
        WebhookKind::Pagerduty => "PagerDuty",
    }
}

/// An incident-triggered event, whatever the tool.
#[derive(Debug)]
struct Triggered {
    id: String,
    title: String,
    priority: Option<String>,
    service: Vec<String>,
    severity: Option<String>,
    url: Option<String>,
    at: Option<Time>,
}

fn filtered(cfg: &WebhookConfig, e: &Triggered) -> Option<String> {
    if !cfg.priorities.is_empty()
        && !e
            .priority
            .as_ref()
            .is_some_and(|p| cfg.priorities.contains(p))
    {
        return Some(format!(
            "priority {:?} is not one of {:?}",
            e.priority, cfg.priorities
        ));
    }
    if !cfg.services.is_empty() && !e.service.iter().any(|s| cfg.services.contains(s)) {
        return Some(format!(
            "service {:?} is not one of {:?}",
            e.service, cfg.services
        ));
    }
    None
}

type Refusal = (StatusCode, String);

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, Refusal> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| (StatusCode::UNAUTHORIZED, format!("missing header {name}")))
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m
}

/// Whether one of `hexes` is the HMAC (compared in constant time).
fn signed(secret: &[u8], parts: &[&[u8]], hexes: &[&str]) -> bool {
    hexes.iter().any(|h| {
        hex::decode(h.trim()).is_ok_and(|sig| mac(secret, parts).verify_slice(&sig).is_ok())
    })
}

#[derive(Deserialize)]
struct GenericBody {
    event: String,
    id: String,
    #[serde(default)]
    title: String,
    priority: Option<String>,
    service: Option<String>,
    severity: Option<String>,
    url: Option<String>,
    discovered_at: Option<String>,
}

fn generic(
    shared: &Shared,
    secret: &[u8],
    h: &HeaderMap,
    body: &[u8],
) -> Result<(Option<Triggered>, String), Refusal> {
    let ts = header(h, "x-custody-timestamp")?;
    let sig = header(h, "x-custody-signature")?;
    let hexsig = sig.strip_prefix("sha256=").ok_or((
        StatusCode::UNAUTHORIZED,
        "signature must be sha256=<hex>".into(),
    ))?;
    if !signed(secret, &[ts.as_bytes(), b".", body], &[hexsig]) {
        return Err((StatusCode::UNAUTHORIZED, "bad signature".into()));
    }
    let t: i64 = ts.parse().map_err(|_| {
        (
            StatusCode::UNAUTHORIZED,
            "timestamp is not POSIX seconds".into(),
        )
    })?;
    let off = jiff::Timestamp::now().as_second().saturating_sub(t);
    if off.saturating_abs() > GENERIC_WINDOW_SECS {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("timestamp is {off} s from the server's clock (at most {GENERIC_WINDOW_SECS})"),
        ));
    }
    // The MAC's bytes, not its text: the same MAC in other case is a replay.
    let key = format!(
        "generic {}",
        hex::encode(hex::decode(hexsig.trim()).unwrap_or_default())
    );
    if seen_before(
        shared,
        key.clone(),
        t.saturating_add(GENERIC_WINDOW_SECS + 1),
    ) {
        return Err((StatusCode::CONFLICT, "replayed request".into()));
    }
    let b: GenericBody = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("body: {e}")))?;
    if b.event != "triggered" {
        return Ok((None, key));
    }
    let at = b
        .discovered_at
        .as_deref()
        .map(Time::parse)
        .transpose()
        .map_err(|e| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("discovered_at: {e}"),
            )
        })?;
    let t = Triggered {
        id: b.id,
        title: b.title,
        priority: b.priority,
        service: b.service.into_iter().collect(),
        severity: b.severity,
        url: b.url,
        at,
    };
    Ok((Some(t), key))
}

#[derive(Deserialize)]
struct PdBody {
    event: PdEvent,
}

#[derive(Deserialize)]
struct PdEvent {
    id: String,
    event_type: String,
    occurred_at: String,
    data: serde_json::Value,
}

fn pagerduty(
    shared: &Shared,
    secret: &[u8],
    h: &HeaderMap,
    body: &[u8],
) -> Result<(Option<Triggered>, String), Refusal> {
    let sig = header(h, "x-pagerduty-signature")?;
    let sigs: Vec<&str> = sig
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .collect();
    if !signed(secret, &[body], &sigs) {
        return Err((StatusCode::UNAUTHORIZED, "bad signature".into()));
    }
    let b: PdBody = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("body: {e}")))?;
    let at = Time::parse(&b.event.occurred_at).map_err(|e| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("occurred_at: {e}"),
        )
    })?;
    let t = at.timestamp().as_second();
    let ago = jiff::Timestamp::now().as_second().saturating_sub(t);
    if !(-GENERIC_WINDOW_SECS..=PAGERDUTY_WINDOW_SECS).contains(&ago) {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("event occurred {ago} s ago (at most {PAGERDUTY_WINDOW_SECS})"),
        ));
    }
    let key = format!("pagerduty {}", b.event.id);
    if seen_before(
        shared,
        key.clone(),
        t.saturating_add(PAGERDUTY_WINDOW_SECS + 1),
    ) {
        return Err((
            StatusCode::CONFLICT,
            format!("replayed event {}", b.event.id),
        ));
    }
    if b.event.event_type != "incident.triggered" {
        return Ok((None, key));
    }
    let d = &b.event.data;
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let id = s(&d["id"]).ok_or((
        StatusCode::UNPROCESSABLE_ENTITY,
        "event.data.id is missing".into(),
    ))?;
    let service = [&d["service"]["id"], &d["service"]["summary"]]
        .into_iter()
        .filter_map(s)
        .collect();
    let t = Triggered {
        id,
        title: s(&d["title"]).unwrap_or_default(),
        priority: s(&d["priority"]["summary"]),
        service,
        severity: s(&d["urgency"]),
        url: s(&d["html_url"]),
        at: s(&d["created_at"])
            .and_then(|c| Time::parse(&c).ok())
            .or(Some(at)),
    };
    Ok((Some(t), key))
}
