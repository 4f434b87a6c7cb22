//! The HTTP routes. Every route but `/`, `/healthz` and the page's assets needs a bearer token;
//! roles nest (viewer < operator < admin). Bodies are read as bytes and parsed here, so a bad one
//! gets a 400 naming the line, column and field; bodies above `max_body_bytes` get 413.

use super::config::{Role, ServeConfig};
use super::{alerts, lock, now_ms, otlp, sources, worker, App, ChatSession, Mode, Record, Status, Summary};
use crate::model::Incident;
use crate::store::{EventRow, FeedbackRow};
use crate::triage::Triage;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use subtle::ConstantTimeEq;

type AppState = Arc<App>;

/// An error answered as `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
    fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no {what} {id:?}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"culprit\""));
        }
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses (403, audited) a caller below `role`.
    fn require(&self, app: &App, role: Role, action: &str) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        app.metrics.denied.with_label_values(&["403"]).inc();
        app.audit.record(
            &self.name,
            self.role.as_str(),
            "denied",
            action,
            json!({ "status": 403, "needs": role.as_str() }),
        );
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{action} needs the {} role; this token is a {}", role.as_str(), self.role.as_str()),
        ))
    }
}

fn token_from(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut it = h.splitn(2, ' ');
        let scheme = it.next().unwrap_or("");
        return scheme.eq_ignore_ascii_case("bearer").then(|| it.next().unwrap_or("").trim().to_string());
    }
    // EventSource cannot send headers: the event stream alone also takes `?token=`.
    if parts.uri.path().ends_with("/events") {
        return parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=").map(percent_decode)));
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, ApiError> {
        // An IPv6 client is its /64: one host has a whole one.
        let client = match parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
        {
            Some(std::net::IpAddr::V6(v6)) => {
                let s = v6.segments();
                std::net::IpAddr::from(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            Some(ip) => ip,
            None => std::net::IpAddr::from([0, 0, 0, 0]),
        };
        let limit = app.config().http.failed_auth_per_minute;
        // A client over the limit of failed authentications this minute gets 429 for each further
        // failure, unaudited (a valid token still passes: clients behind one proxy share an
        // address).
        let deny = |message: &str| {
            let mut failures = lock(&app.auth_failures);
            if let Some(wait) = failures.blocked(client, limit) {
                app.metrics.auth_limited.inc();
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many failed authentications from {client}: try again in {wait} s"),
                )
                .retry_after(wait);
            }
            let n = failures.fail(client);
            drop(failures);
            app.metrics.denied.with_label_values(&["401"]).inc();
            // The path clipped to 200 characters: a long one cannot grow the audit log.
            let path: String = parts.uri.path().chars().take(200).collect();
            let detail = json!({ "status": 401, "why": message, "client": client.to_string(), "failures": n });
            app.audit.record("anonymous", "none", "denied", &path, detail);
            ApiError::new(StatusCode::UNAUTHORIZED, message.to_string())
        };
        let Some(token) = token_from(parts) else {
            return Err(deny("missing bearer token (Authorization: Bearer <token>)"));
        };
        principal(app, &token).ok_or_else(|| deny("unknown token"))
    }
}

/// The caller a token belongs to. Every token is compared, in constant time, whichever matches.
fn principal(app: &App, token: &str) -> Option<Caller> {
    let principals = match app.principals.read() {
        Ok(p) => p,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut found: Option<Caller> = None;
    for p in principals.iter() {
        if bool::from(p.secret.as_slice().ct_eq(token.as_bytes())) {
            found = Some(Caller { name: p.name.clone(), role: p.role });
        }
    }
    found
}

/// Reads `Content-Encoding`: gzip (any case, `x-gzip` too) is inflated here, within
/// `max_body_bytes` and a ratio bound; `identity` passes; anything else is 415, not read as plain.
async fn encodings(
    State(app): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let Some(enc) = req.headers().get(header::CONTENT_ENCODING) else { return Ok(next.run(req).await) };
    let enc = enc.to_str().unwrap_or("?").trim().to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => return Ok(next.run(req).await),
        "gzip" | "x-gzip" => {}
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?}: culprit reads gzip or an uncompressed body"),
            ))
        }
    }
    let limit = app.config().max_body_bytes;
    let (mut parts, body) = req.into_parts();
    // Only a known caller's body is inflated: an anonymous one goes on as it is, to its 401.
    if token_from(&parts).and_then(|t| principal(&app, &t)).is_none() {
        return Ok(next.run(axum::extract::Request::from_parts(parts, body)).await);
    }
    let compressed = axum::body::to_bytes(body, limit).await.map_err(|e| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is above max_body_bytes ({limit}): {e}"))
    })?;
    let inflated = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(compressed.as_ref()).take(limit as u64 + 1).read_to_end(&mut out).map(|_| out)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::bad(format!("gzip body: {e}")))?;
    if inflated.len() > limit {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the decompressed body is above max_body_bytes"));
    }
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(inflated))).await)
}

/// Every error is a JSON body `{"error": …}`: the routes' own already are; this turns the
/// framework's plain-text ones (413, 405, a rejected extractor) into the same shape.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(r.status().is_client_error() || r.status().is_server_error()) || is_json {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = parts.status.canonical_reason().unwrap_or("error").to_lowercase();
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(json!({ "error": message }).to_string()))
}

/// Failed authentications per client address in the current minute.
#[derive(Default)]
pub struct Failures {
    by_client: std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>,
}

impl Failures {
    /// Seconds until `client` may try again, when it is over `limit` failures this minute.
    fn blocked(&mut self, client: std::net::IpAddr, limit: u32) -> Option<u64> {
        let (start, n) = self.by_client.get(&client).copied()?;
        let age = start.elapsed().as_secs();
        if age >= 60 {
            self.by_client.remove(&client);
            return None;
        }
        (n >= limit).then_some(60 - age)
    }

    /// Counts one failure; returns the count this minute.
    fn fail(&mut self, client: std::net::IpAddr) -> u32 {
        // Bounded: past 100,000 addresses the minute's entries are forgotten (a flood from more
        // addresses than that is not slowed by this limit, and costs nothing more).
        if self.by_client.len() >= 100_000 {
            self.by_client.retain(|_, (start, _)| start.elapsed().as_secs() < 60);
            if self.by_client.len() >= 100_000 {
                self.by_client.clear();
            }
        }
        let e = self.by_client.entry(client).or_insert((std::time::Instant::now(), 0));
        if e.0.elapsed().as_secs() >= 60 {
            *e = (std::time::Instant::now(), 0);
        }
        e.1 += 1;
        e.1
    }
}

/// Parses a JSON body, naming line, column and field on error.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("request body, line {} column {}: {e}", e.line(), e.column())))
}

pub fn router(app: AppState) -> Router {
    let limit = app.config().max_body_bytes;
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("web/app.js")) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", include_str!("web/app.css")) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/alerts/alertmanager", post(alertmanager))
        .route("/v1/alerts/generic", post(generic))
        .route("/v1/investigations", get(list).post(create))
        .route("/v1/investigations/{id}", get(detail))
        .route("/v1/investigations/{id}/events", get(events))
        .route("/v1/investigations/{id}/feedback", post(feedback))
        .route("/v1/sessions", post(new_session))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/sessions/{id}/messages", post(message))
        .route("/v1/changes", post(changes))
        .route("/v1/traces", post(|s, c, h, b| otlp_in(s, c, h, b, otlp::Signal::Traces)))
        .route("/v1/logs", post(|s, c, h, b| otlp_in(s, c, h, b, otlp::Signal::Logs)))
        .route("/v1/metrics", post(|s, c, h, b| otlp_in(s, c, h, b, otlp::Signal::Metrics)))
        .route("/v1/config", get(show_config))
        .route("/v1/config/reload", post(reload))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint (see docs/serve.md)") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), encodings))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// The page's policy: its own script and style files only (no inline code, so injected markup
/// cannot run), talking to this origin only, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The web page, its script and its style sheet.
async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", include_str!("web/index.html"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn metrics(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&app, Role::Viewer, "metrics")?;
    super::writer::refresh(&app).await;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response())
}

/// What happened to one received alert.
fn accept(app: &App, caller: &Caller, inc: alerts::Incoming, source: &str) -> Value {
    let (group_seconds, agent_from, max_queue) = match app.cfg.read() {
        Ok(c) => (c.alerts.group_seconds, c.alerts.agent_from, c.alerts.max_queue),
        Err(p) => (p.get_ref().alerts.group_seconds, p.get_ref().alerts.agent_from, p.get_ref().alerts.max_queue),
    };
    let now = now_ms();
    let group = inc.alert.service.clone();
    let (mut rerun, mut queue_now) = (false, false);
    let (id, outcome, start) = {
        let mut reg = lock(&app.registry);
        let window = group_seconds as i64 * 1000;
        let open = reg
            .latest_of(&group)
            .filter(|r| now - r.summary.created_ms <= window && r.summary.status != Status::Failed)
            .map(|r| r.summary.id.clone());
        match (open, inc.firing) {
            (Some(id), _) => {
                let r = reg.records.get_mut(&id);
                let outcome = match r {
                    Some(r) if !inc.firing => {
                        r.summary.updated_ms = now;
                        "resolved"
                    }
                    Some(r) => {
                        r.summary.updated_ms = now;
                        if r.fingerprints.insert(inc.fingerprint.clone()) {
                            r.summary.alerts += 1;
                            // A new alert of the group, with telemetry newer than what the
                            // investigation read: it runs again (after the current run, if any).
                            if r.summary.status != Status::Queued && app.new_data_since(r.read_ms) {
                                rerun = true;
                            }
                            "grouped"
                        } else {
                            "duplicate"
                        }
                    }
                    None => "duplicate",
                };
                if rerun {
                    if let Some(r) = reg.records.get_mut(&id) {
                        if r.summary.status == Status::Running {
                            // Queued again when this run ends.
                            r.rerun_pending = true;
                        } else {
                            r.requeue();
                            queue_now = true;
                        }
                    }
                }
                (Some(id), outcome, false)
            }
            (None, false) => (None, "resolved", false),
            // A full queue: refused (429), so the sender retries later; nothing is recorded.
            (None, true) if app.metrics.queue.get() >= max_queue as i64 => (None, "refused", false),
            (None, true) => {
                let id = reg.new_id(now);
                let mode = if inc.alert.severity >= agent_from { Mode::Agent } else { Mode::Triage };
                reg.insert(new_record(&id, &inc.alert, mode, now, group.clone(), inc.fingerprint.clone()));
                (Some(id), "started", true)
            }
        }
    };
    // What is answered 2xx is on disk before the answer: a crash after it re-runs it. A record
    // that cannot be written is answered 503, so the sender retries (a duplicate then, saved
    // again).
    let mut outcome = outcome;
    if let Some(id) = id.as_deref().filter(|_| outcome != "refused") {
        if !worker::save(app, id) {
            outcome = "unsaved";
        }
    }
    app.metrics.alerts.with_label_values(&[source, outcome]).inc();
    app.audit.record(
        &caller.name,
        caller.role.as_str(),
        "alert.received",
        id.as_deref().unwrap_or("-"),
        json!({ "source": source, "outcome": outcome, "service": inc.alert.service, "signal": inc.alert.signal, "severity": inc.alert.severity, "fingerprint": inc.fingerprint, "title": inc.alert.title }),
    );
    // An investigation queued now (new, or again) is audited, announced and handed to a worker.
    let queue = |id: &str, action: &str, detail: Value| {
        app.audit.record(&caller.name, caller.role.as_str(), action, id, detail);
        app.emit(id, "status", json!({ "status": Status::Queued }));
        worker::enqueue(app, id.to_string());
    };
    if let Some(id) = id.as_deref().filter(|_| queue_now) {
        let why = "a new alert in the group, and telemetry newer than the last read";
        queue(id, "investigation.rerun", json!({ "service": inc.alert.service, "why": why }));
    }
    if let Some(id) = id.as_deref().filter(|_| start) {
        let detail = json!({ "service": inc.alert.service, "severity": inc.alert.severity, "source": source });
        queue(id, "investigation.started", detail);
    }
    json!({ "investigation": id, "outcome": outcome, "service": inc.alert.service, "rerun": rerun })
}

/// Now, and how far from now an alert may be timed.
fn clock(app: &App) -> alerts::Clock {
    alerts::Clock { now: now_ms(), reach: app.config().window.accept_hours as i64 * crate::model::HOUR }
}

fn new_record(
    id: &str,
    alert: &crate::model::Alert,
    mode: Mode,
    now: i64,
    group: String,
    fingerprint: String,
) -> Record {
    Record {
        summary: Summary {
            id: id.to_string(),
            title: alert.title.clone(),
            service: alert.service.clone(),
            severity: alert.severity,
            status: Status::Queued,
            mode,
            created_ms: now,
            updated_ms: now,
            alerts: 1,
            top: None,
            feedback: None,
        },
        alert: alert.clone(),
        group,
        fingerprints: BTreeSet::from([fingerprint]),
        report: None,
        error: None,
        feedback_items: Vec::new(),
        features: Vec::new(),
        events: Vec::new(),
        read_ms: 0,
        reruns: 0,
        rerun_pending: false,
        tx: Some(tokio::sync::broadcast::channel(256).0),
    }
}

async fn alertmanager(State(app): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "alerts")?;
    let payload: alerts::AlertmanagerPayload = parse(&body)?;
    // Alert by alert: a bad one is answered and audited with its reason, and the good ones of the
    // same group are investigated (Alertmanager would not resend the group after a 4xx).
    let mut accepted = 0;
    let mut first_error = None;
    let results: Vec<Value> = alerts::from_alertmanager(&payload, clock(&app))
        .into_iter()
        .enumerate()
        .map(|(i, parsed)| match parsed {
            Ok(inc) => {
                accepted += 1;
                accept(&app, &caller, inc, "alertmanager")
            }
            Err(e) => {
                app.metrics.alerts.with_label_values(&["alertmanager", "rejected"]).inc();
                let labels = payload.alerts.get(i).map(|a| json!(a.labels)).unwrap_or(Value::Null);
                app.audit.record(
                    &caller.name,
                    caller.role.as_str(),
                    "alert.rejected",
                    "-",
                    json!({ "source": "alertmanager", "index": i, "reason": e.to_string(), "labels": labels }),
                );
                first_error.get_or_insert_with(|| e.to_string());
                json!({ "index": i, "outcome": "rejected", "error": e.to_string() })
            }
        })
        .collect();
    if results.iter().any(|r| r["outcome"] == "unsaved") {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, UNSAVED).retry_after(5));
    }
    if results.iter().any(|r| r["outcome"] == "refused") {
        // The group again later: the alerts taken now are duplicates then.
        return Ok(queue_full(json!({ "error": QUEUE_FULL, "alerts": results })));
    }
    match first_error {
        // Nothing in the group could be read: the sender's error, as a whole.
        Some(error) if accepted == 0 => {
            Ok((StatusCode::BAD_REQUEST, Json(json!({ "error": error, "alerts": results }))).into_response())
        }
        _ => Ok((StatusCode::ACCEPTED, Json(json!({ "alerts": results }))).into_response()),
    }
}

const UNSAVED: &str = "the investigation could not be written to the data directory: retry";
const QUEUE_FULL: &str = "the investigation queue is full (alerts.max_queue): retry after the Retry-After seconds";
/// Seconds a sender is asked to wait when the queue is full.
const RETRY_AFTER_SECONDS: &str = "30";

fn queue_full(body: Value) -> Response {
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)], Json(body)).into_response()
}

async fn generic(State(app): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "alerts")?;
    let g: alerts::GenericAlert = parse(&body)?;
    let inc = alerts::from_generic(g, clock(&app)).map_err(|e| ApiError::bad(e.to_string()))?;
    let answer = accept(&app, &caller, inc, "generic");
    if answer["outcome"] == "unsaved" {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, UNSAVED).retry_after(5));
    }
    if answer["outcome"] == "refused" {
        let mut body = answer;
        body["error"] = json!(QUEUE_FULL);
        return Ok(queue_full(body));
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    alert: alerts::GenericAlert,
    /// `triage` or `agent`; default by severity.
    #[serde(default)]
    mode: Option<Mode>,
}

/// `POST /v1/investigations`: investigate now, whatever the grouping.
async fn create(State(app): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "investigations.create")?;
    let req: CreateRequest = parse(&body)?;
    let inc = alerts::from_generic(req.alert, clock(&app)).map_err(|e| ApiError::bad(e.to_string()))?;
    if app.metrics.queue.get() >= app.config().alerts.max_queue as i64 {
        return Ok(queue_full(json!({ "error": QUEUE_FULL })));
    }
    let now = now_ms();
    let mode = req.mode.unwrap_or(if inc.alert.severity >= app.config().alerts.agent_from {
        Mode::Agent
    } else {
        Mode::Triage
    });
    let id = {
        let mut reg = lock(&app.registry);
        let id = reg.new_id(now);
        // Its own group: later alerts do not join a manual investigation.
        reg.insert(new_record(&id, &inc.alert, mode, now, format!("manual:{id}"), inc.fingerprint.clone()));
        id
    };
    if !worker::save(&app, &id) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, UNSAVED).retry_after(5));
    }
    app.audit.record(
        &caller.name,
        caller.role.as_str(),
        "investigation.started",
        &id,
        json!({ "service": inc.alert.service, "mode": mode.as_str(), "manual": true }),
    );
    app.emit(&id, "status", json!({ "status": Status::Queued }));
    worker::enqueue(&app, id.clone());
    Ok((StatusCode::ACCEPTED, Json(json!({ "investigation": id, "mode": mode }))).into_response())
}

async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&app, Role::Viewer, "investigations.list")?;
    let reg = lock(&app.registry);
    let items: Vec<&Summary> =
        reg.order.iter().rev().filter_map(|id| reg.records.get(id)).map(|r| &r.summary).collect();
    Ok(Json(json!({ "investigations": items })))
}

async fn detail(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(&app, Role::Viewer, "investigations.read")?;
    let reg = lock(&app.registry);
    let r = reg.records.get(&id).ok_or_else(|| ApiError::not_found("investigation", &id))?;
    let mut v = serde_json::to_value(&r.summary).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("alert".into(), json!(r.alert));
        o.insert("report".into(), json!(r.report));
        o.insert("error".into(), json!(r.error));
        o.insert("feedback".into(), json!(r.feedback_items));
        o.insert("latest_feedback".into(), json!(r.summary.feedback));
        o.insert("reruns".into(), json!(r.reruns));
    }
    Ok(Json(v))
}

async fn events(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require(&app, Role::Viewer, "investigations.events")?;
    let (history, rx) = worker::watch(&app, &id).ok_or_else(|| ApiError::not_found("investigation", &id))?;
    let done_already = history.iter().any(|e| e.name == "done");
    let to_sse = |e: super::Event| -> Result<axum::response::sse::Event, std::convert::Infallible> {
        Ok(axum::response::sse::Event::default().event(e.name).data(e.data.to_string()))
    };
    let past = futures::stream::iter(history.into_iter().map(to_sse));
    let live = futures::stream::unfold((rx, done_already), move |(rx, done)| async move {
        if done {
            return None;
        }
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let finished = e.name == "done";
                    return Some((to_sse(e), (Some(rx), finished)));
                }
                // A slow watcher missed events: it goes on with the next ones.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(past.chain(live)).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    /// `confirm`, `reject` or `correct`.
    verdict: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    note: String,
}

async fn feedback(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "feedback")?;
    let req: FeedbackRequest = parse(&body)?;
    let (top, alert, report) = {
        let reg = lock(&app.registry);
        let r = reg.records.get(&id).ok_or_else(|| ApiError::not_found("investigation", &id))?;
        if r.report.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("investigation {id} has no result yet ({:?})", r.summary.status),
            ));
        }
        (r.summary.top.clone(), r.alert.clone(), r.report.clone())
    };
    let (service, kind) = match req.verdict.as_str() {
        "confirm" => {
            let t = top.as_ref().ok_or_else(|| {
                ApiError::bad("nothing to confirm: the investigation named no root cause (use `correct`)")
            })?;
            (
                req.service.clone().unwrap_or_else(|| t.service.clone()),
                req.kind.clone().unwrap_or_else(|| t.kind.clone()),
            )
        }
        "reject" => (top.as_ref().map(|t| t.service.clone()).unwrap_or_default(), String::new()),
        "correct" => {
            let s = req
                .service
                .clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ApiError::bad("verdict `correct` needs `service`: the true root-cause service"))?;
            (s, req.kind.clone().unwrap_or_default())
        }
        other => return Err(ApiError::bad(format!("verdict: {other:?} is not one of confirm, reject, correct"))),
    };
    let now = now_ms();
    let row = FeedbackRow {
        id: format!("fb-{now}-{}", &id),
        investigation_id: id.clone(),
        time_ms: now,
        verdict: req.verdict.clone(),
        service: service.clone(),
        kind: kind.clone(),
        note: req.note.clone(),
        author: caller.name.clone(),
    };
    app.store
        .add_feedback(&row)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("feedback not stored: {e}")))?;
    {
        let mut reg = lock(&app.registry);
        if let Some(r) = reg.records.get_mut(&id) {
            r.feedback_items.push(row.clone());
            r.summary.feedback = Some(req.verdict.clone());
            r.summary.updated_ms = now;
        }
    }
    worker::save(&app, &id);
    // Confirmed and corrected causes join the knowledge base the agent searches.
    let mut kb_id = None;
    if req.verdict != "reject" {
        if let Some(report) = report {
            let entry = crate::store::IncidentRow {
                id: format!("feedback-{id}"),
                time_ms: alert.time,
                title: alert.title.clone(),
                summary: crate::kb::fingerprint_text(&report),
                root_cause_service: service.clone(),
                root_cause_kind: kind.clone(),
                resolution: req.note.clone(),
                postmortem: String::new(),
                tags: vec![alert.service.clone(), "feedback".into()],
                embedder: String::new(),
                vector: Vec::new(),
            };
            match crate::kb::add_embedded(&app.store, vec![entry]).await {
                Ok(()) => kb_id = Some(format!("feedback-{id}")),
                Err(e) => tracing::warn!(error = %e, "feedback not added to the knowledge base"),
            }
        }
    }
    let app2 = app.clone();
    let reranker = tokio::task::spawn_blocking(move || worker::retrain(&app2)).await.ok();
    app.audit.record(
        &caller.name,
        caller.role.as_str(),
        "feedback",
        &id,
        json!({ "verdict": req.verdict, "service": service, "kind": kind, "note": req.note, "knowledge_base": kb_id }),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({ "stored": true, "id": row.id, "knowledge_base": kb_id, "reranker_examples": reranker.as_ref().map(|r| r.examples), "reranker_active": reranker.as_ref().is_some_and(|r| r.is_trained()) })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    investigation: String,
}

/// The data a chat over `investigation` needs: kept in memory, or read again from the store (off
/// the async runtime); 409 when it is unknown or has not finished.
async fn chat_case(app: &AppState, investigation: &str) -> Result<Arc<(Incident, Triage)>, ApiError> {
    let (app2, inv) = (app.clone(), investigation.to_string());
    tokio::task::spawn_blocking(move || worker::case(&app2, &inv)).await.ok().flatten().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("investigation {investigation:?} is unknown or has not finished: chat once it has"),
        )
    })
}

async fn new_session(State(app): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "sessions.create")?;
    let req: SessionRequest = parse(&body)?;
    let case = chat_case(&app, &req.investigation).await?;
    let cfg = super::config::agent_config(&app.config());
    let chat =
        crate::investigate::chat::SavedChat::start(&crate::investigate::Session::new(&case.0, &case.1, None, &cfg));
    let id = format!("chat-{}-{}", now_ms(), req.investigation);
    let s =
        ChatSession { id: id.clone(), investigation: req.investigation.clone(), created_by: caller.name.clone(), chat };
    worker::save_session(&app, &s);
    lock(&app.sessions).insert(id.clone(), s);
    app.audit.record(
        &caller.name,
        caller.role.as_str(),
        "session.created",
        &id,
        json!({ "investigation": req.investigation }),
    );
    Ok((StatusCode::CREATED, Json(json!({ "session": id, "investigation": req.investigation }))).into_response())
}

async fn get_session(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&app, Role::Viewer, "sessions.read")?;
    let s = lock(&app.sessions).get(&id).cloned().ok_or_else(|| ApiError::not_found("session", &id))?;
    Ok(Json(json!(s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    text: String,
}

async fn message(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(&app, Role::Operator, "sessions.message")?;
    let req: MessageRequest = parse(&body)?;
    if req.text.trim().is_empty() {
        return Err(ApiError::bad("text: empty"));
    }
    let session = lock(&app.sessions).get(&id).cloned().ok_or_else(|| ApiError::not_found("session", &id))?;
    let case = chat_case(&app, &session.investigation).await?;
    let cfg = super::config::agent_config(&app.config());
    let text = req.text.clone();
    let updated = tokio::task::spawn_blocking(move || {
        let mut s = session.chat.resume(&case.0, &case.1, None, &cfg);
        let exchange = crate::investigate::chat::answer_offline(&mut s, &text);
        let mut chat = session.chat.clone();
        chat.record(&s, exchange.clone(), Vec::new());
        (ChatSession { chat, ..session }, exchange)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the answer failed: {e}")))?;
    let (s, exchange) = updated;
    worker::save_session(&app, &s);
    lock(&app.sessions).insert(id.clone(), s);
    app.audit.record(
        &caller.name,
        caller.role.as_str(),
        "session.message",
        &id,
        json!({ "question": req.text, "turns": exchange.turns }),
    );
    Ok(Json(json!({ "answer": exchange.answer, "turns": exchange.turns })))
}

/// `POST /v1/changes`: one change event or an array of them, in the bundle's change format.
async fn changes(State(app): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "changes")?;
    let v: Value = parse(&body)?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err(ApiError::bad("request body: a change object or an array of them")),
    };
    let mut rows = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let c = crate::ingest::changes::change_from_json(item)
            .map_err(|(field, msg)| ApiError::bad(format!("change {i}: {field}: {msg}")))?;
        let clock = clock(&app);
        if c.time.abs_diff(clock.now) > clock.reach.unsigned_abs() {
            return Err(ApiError::bad(format!(
                "change {i}: time: more than {} h from now (window.accept_hours)",
                clock.reach / crate::model::HOUR
            )));
        }
        rows.push(EventRow {
            id: format!("change-{}-{}-{i}", c.time, c.service),
            time_ms: c.time,
            source: sources::CHANGE.into(),
            service: c.service.clone(),
            environment: "production".into(),
            attributes: serde_json::to_string(&c).unwrap_or_default(),
            vector: None,
            anomaly_score: None,
        });
    }
    let services: Vec<String> = rows.iter().map(|r| r.service.clone()).collect();
    let count = rows.len();
    app.writer
        .write(rows)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("changes not stored, retry: {e}")))?;
    app.telemetry_arrived();
    app.audit.record(
        &caller.name,
        caller.role.as_str(),
        "changes.recorded",
        "-",
        json!({ "count": count, "services": services }),
    );
    Ok((StatusCode::CREATED, Json(json!({ "stored": count }))).into_response())
}

async fn otlp_in(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
    signal: otlp::Signal,
) -> Result<Response, ApiError> {
    caller.require(&app, Role::Operator, "otlp")?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let enc = otlp::Encoding::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {ct:?}: OTLP/HTTP takes application/x-protobuf or application/json"),
        )
    })?;
    // A gzip body was inflated by the `encodings` layer.
    let reach = app.config().window.accept_hours as i64 * crate::model::HOUR;
    let mut decoded = tokio::task::spawn_blocking(move || otlp::decode(signal, enc, &body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    decoded.bound(signal, now_ms(), reach);
    let mut rows = Vec::new();
    let row = |i: usize, t: i64, source: &str, service: &str, attrs: String| EventRow {
        id: format!("{source}-{t}-{service}-{i}"),
        time_ms: t,
        source: source.to_string(),
        service: service.to_string(),
        environment: "production".into(),
        attributes: attrs,
        vector: None,
        anomaly_score: None,
    };
    for (i, s) in decoded.spans.iter().enumerate() {
        rows.push(row(i, s.start, sources::SPAN, &s.service, serde_json::to_string(s).unwrap_or_default()));
    }
    for (i, l) in decoded.logs.iter().enumerate() {
        rows.push(row(i, l.time, sources::LOG, &l.service, serde_json::to_string(l).unwrap_or_default()));
    }
    for (i, p) in decoded.points.iter().enumerate() {
        rows.push(row(i, p.time, sources::METRIC, &p.service, serde_json::to_string(p).unwrap_or_default()));
    }
    let stored = rows.len() as u64;
    app.writer
        .write(rows)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("not stored, retry: {e}")))?;
    app.telemetry_arrived();
    app.metrics.otlp_records.with_label_values(&[signal.as_str(), "stored"]).inc_by(stored);
    app.metrics.otlp_records.with_label_values(&[signal.as_str(), "rejected"]).inc_by(decoded.rejected());
    if decoded.rejected() > 0 {
        tracing::warn!(signal = signal.as_str(), rejected = decoded.rejected(), first = ?decoded.report.issues.first(), "OTLP records rejected");
    }
    let (bytes, ct) = otlp::response(signal, enc, &decoded);
    Ok(([(header::CONTENT_TYPE, ct)], bytes).into_response())
}

async fn show_config(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&app, Role::Admin, "config.read")?;
    app.audit.record(&caller.name, caller.role.as_str(), "config.read", "-", json!({}));
    // Token values are never serialised (`skip_serializing`); a webhook URL is a secret (a Slack
    // one is its own credential): only its host is shown. Credentials in other URLs are redacted.
    let mut v = json!(app.config());
    if let Some(targets) = v.get_mut("notify").and_then(|n| n.as_array_mut()) {
        for t in targets {
            if let Some(url) = t.get("url").and_then(|u| u.as_str()) {
                let shown = format!("https://{}/… (hidden)", super::notify::host(url));
                t["url"] = json!(shown);
            }
        }
    }
    Ok(Json(crate::redact::guard().apply_json(&v)))
}

/// Re-reads the config file: tokens, agent, window, alert, Prometheus, redaction and notification
/// settings take effect for the next request; `listen`, `data_dir`, `store` and `workers` need a
/// restart.
async fn reload(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&app, Role::Admin, "config.reload")?;
    let path = app
        .config_path
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "started without --config: nothing to reload"))?;
    let result = super::config::load(&path).and_then(|new| {
        let principals = new.principals(&|k| std::env::var(k).ok())?;
        Ok((new, principals))
    });
    match result {
        Ok((new, principals)) => {
            let old = app.config();
            let restart: Vec<&str> = [
                ("listen", old.listen != new.listen),
                ("data_dir", old.data_dir != new.data_dir),
                ("store", old.store != new.store),
                ("workers", old.workers != new.workers),
            ]
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(k, _)| k)
            .collect();
            if let Ok(mut c) = app.cfg.write() {
                *c = ServeConfig {
                    listen: old.listen,
                    data_dir: old.data_dir.clone(),
                    store: old.store.clone(),
                    workers: old.workers,
                    ..new
                };
            }
            if let Ok(mut p) = app.principals.write() {
                *p = principals;
            }
            app.audit.record(
                &caller.name,
                caller.role.as_str(),
                "config.reload",
                &path.display().to_string(),
                json!({ "ok": true, "needs_restart": restart }),
            );
            Ok(Json(json!({ "reloaded": true, "needs_restart": restart })))
        }
        Err(e) => {
            app.audit.record(
                &caller.name,
                caller.role.as_str(),
                "config.reload",
                &path.display().to_string(),
                json!({ "ok": false, "error": e.to_string() }),
            );
            Err(ApiError::bad(format!("config not reloaded: {e}")))
        }
    }
}
