//! Shared set-up of the service tests: tokens, the API client, `culprit serve` in process, and an
//! incident turned into OTLP/JSON export requests.

use culprit::model::Incident;
use culprit::serve::config::{Role, ServeConfig, TokenConfig};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

pub const VIEWER: &str = "viewer-token-0001";
pub const OPERATOR: &str = "operator-token-0002";
pub const ADMIN: &str = "admin-token-0003";

pub fn tokens() -> Vec<TokenConfig> {
    [("grafana", Role::Viewer, VIEWER), ("alertmanager", Role::Operator, OPERATOR), ("root", Role::Admin, ADMIN)]
        .into_iter()
        .map(|(n, r, t)| TokenConfig { name: n.into(), role: r, token: Some(t.into()), token_env: None })
        .collect()
}

pub fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api { base: base.into(), http: reqwest::Client::new() }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<String>) -> (u16, Value) {
        let mut rb = self.http.request(method.parse().expect("a method"), format!("{}{path}", self.base));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().await.expect("the service answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Opens a chat session over `investigation` (asserting 201) and asks `question`: the
    /// message's status and answer.
    pub async fn chat(&self, investigation: &str, question: &str) -> (u16, Value) {
        let body = json!({ "investigation": investigation }).to_string();
        let (s, v) = self.call("POST", "/v1/sessions", Some(OPERATOR), Some(body)).await;
        assert_eq!(s, 201, "a chat session over {investigation}: {v}");
        let session = v["session"].as_str().expect("a session id").to_string();
        let body = json!({ "text": question }).to_string();
        self.call("POST", &format!("/v1/sessions/{session}/messages"), Some(OPERATOR), Some(body)).await
    }

    pub async fn wait_done(&self, id: &str, limit: Duration) -> Value {
        let t = Instant::now();
        loop {
            let (s, v) = self.call("GET", &format!("/v1/investigations/{id}"), Some(VIEWER), None).await;
            assert_eq!(s, 200, "{v}");
            if ["done", "no_data", "failed"].contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(t.elapsed() < limit, "investigation {id} not finished after {limit:?}: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The config the in-process tests use: the three tokens, a 64 KiB body limit, no settle wait.
pub fn test_config(dir: &Path) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        data_dir: dir.to_path_buf(),
        tokens: tokens(),
        max_body_bytes: 64 * 1024,
        window: culprit::serve::config::WindowConfig { settle_seconds: 0, ..Default::default() },
        ..Default::default()
    }
}

pub async fn start_with(cfg: ServeConfig) -> (Api, std::sync::Arc<culprit::serve::App>) {
    let app = culprit::serve::App::start(cfg, None, &|_| None).await.expect("the service starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(culprit::serve::run(listener, app.clone(), std::future::pending()));
    (Api::new(format!("http://{addr}")), app)
}

pub async fn start_in_process(dir: &Path) -> (Api, std::sync::Arc<culprit::serve::App>) {
    start_with(test_config(dir)).await
}

fn attr(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}

fn nanos(ms: i64) -> String {
    (ms as i128 * 1_000_000).to_string()
}

/// `incident`'s spans, logs and metric points as OTLP/JSON export requests (path, body), every
/// time moved by `shift_ms`, in requests of at most `per_request` records.
pub fn otlp_requests(incident: &Incident, shift_ms: i64, per_request: usize) -> Vec<(&'static str, String)> {
    let t = &incident.telemetry;
    let mut out = Vec::new();
    for chunk in t.spans.chunks(per_request) {
        let resources: Vec<Value> = chunk
            .iter()
            .map(|s| {
                let start = s.start + shift_ms;
                json!({"resource": {"attributes": [attr("service.name", &s.service)]}, "scopeSpans": [{"spans": [{
                    "traceId": s.trace_id, "spanId": s.span_id, "parentSpanId": s.parent_id.clone().unwrap_or_default(),
                    "name": s.operation, "startTimeUnixNano": nanos(start),
                    "endTimeUnixNano": (start as i128 * 1_000_000 + (s.duration_ms * 1e6) as i128).to_string(),
                    "status": {"code": if s.error { 2 } else { 0 }}}]}]})
            })
            .collect();
        out.push(("/v1/traces", json!({ "resourceSpans": resources }).to_string()));
    }
    for (c, chunk) in t.logs.records.chunks(per_request).enumerate() {
        let resources: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let attrs: Vec<Value> = r.attributes.iter().map(|(k, v)| attr(k, v)).collect();
                // Nanoseconds, as SDKs stamp them: distinct within a millisecond.
                let sub_ms = r.nanos as i128 + ((c * per_request + i) % 999_983) as i128 + 1;
                let ns = (r.time + shift_ms) as i128 * 1_000_000 + sub_ms % 1_000_000;
                json!({"resource": {"attributes": [attr("service.name", &r.service)]},
                    "scopeLogs": [{"logRecords": [{"timeUnixNano": ns.to_string(),
                        "severityText": format!("{:?}", r.level).to_uppercase(),
                        "body": {"stringValue": r.message}, "attributes": attrs}]}]})
            })
            .collect();
        out.push(("/v1/logs", json!({ "resourceLogs": resources }).to_string()));
    }
    let points: Vec<(&str, &str, i64, f64)> = t
        .metrics
        .iter()
        .flat_map(|s| s.points.iter().map(move |(time, v)| (s.service.as_str(), s.metric.as_str(), *time, *v)))
        .collect();
    for chunk in points.chunks(per_request) {
        let resources: Vec<Value> = chunk
            .iter()
            .map(|(svc, metric, time, v)| {
                json!({"resource": {"attributes": [attr("service.name", svc)]}, "scopeMetrics": [{"metrics": [{
                    "name": metric, "gauge": {"dataPoints": [{"timeUnixNano": nanos(time + shift_ms), "asDouble": v}]}}]}]})
            })
            .collect();
        out.push(("/v1/metrics", json!({ "resourceMetrics": resources }).to_string()));
    }
    out
}
