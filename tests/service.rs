//! `culprit serve` end to end.
//!
//! - `api_auth_audit_and_feedback`: the HTTP API in process (tokens, roles, limits, alerts,
//!   investigations, event streams, feedback, sessions, changes, OTLP JSON, the audit log);
//! - `live_prometheus_alertmanager_otel_and_web_page`: real Prometheus and Alertmanager on
//!   127.0.0.1 (Debian's packages) with a small exporter, the real OpenTelemetry Python SDK
//!   exporting to culprit's receiver, the `culprit serve` binary, and the web page driven in
//!   headless Chromium (screenshot saved under the target dir);
//! - `an_alertmanager_group_with_one_bad_alert_investigates_the_good_ones`: alert by alert, the
//!   bad one answered and audited with its reason;
//! - `load_test_loses_no_alert`: a short run of `culprit bench --serve`'s load test.
//!
//! The servers come from `scripts/setup.sh --llm` (run by `make test`), which exports their paths
//! in `.venv/culprit-env.sh`.

// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::serve::{audit_lines, start_in_process, Api, ADMIN, OPERATOR, VIEWER};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The service opens its store once and keeps that connection (and the knowledge base over it)
/// for its whole life: agent investigations do not connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_investigations_share_one_store_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (api, app) = start_in_process(dir.path()).await;
    let uri = app.config().store_uri();
    assert_eq!(culprit::store::times_opened(&uri), 1, "the service opens its store at start");
    assert!(app.kb.is_some(), "the knowledge base is ready for the agents");
    let mut ids = Vec::new();
    for service in ["checkout", "payments"] {
        let alert = json!({ "service": service, "signal": "errors", "severity": "critical" }).to_string();
        let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert)).await;
        assert_eq!((s, v["outcome"].as_str()), (202, Some("started")), "{v}");
        ids.push(v["investigation"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let done = api.wait_done(id, Duration::from_secs(60)).await;
        // No telemetry was sent: the agent runs and the answer is "no data".
        assert_eq!((done["status"].as_str(), done["mode"].as_str()), (Some("no_data"), Some("agent")), "{done}");
        assert!(done["report"]["investigation"]["policy"].is_string(), "the agent ran: {done}");
    }
    assert_eq!(culprit::store::times_opened(&uri), 1, "two agent investigations opened the store again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_audit_and_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _app) = start_in_process(dir.path()).await;

    // Authentication and roles.
    assert_eq!(api.call("GET", "/healthz", None, None).await.0, 200);
    assert_eq!(api.call("GET", "/v1/investigations", None, None).await.0, 401);
    assert_eq!(api.call("GET", "/v1/investigations", Some("not-a-token-at-all"), None).await.0, 401);
    assert_eq!(api.call("GET", "/v1/investigations", Some(VIEWER), None).await.0, 200);
    let alert =
        json!({ "service": "checkout", "signal": "errors", "severity": "critical", "title": "checkout errors" })
            .to_string();
    assert_eq!(api.call("POST", "/v1/alerts/generic", Some(VIEWER), Some(alert.clone())).await.0, 403);

    // An alert starts an investigation; the same alert again is a duplicate of it.
    let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert.clone())).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["outcome"], "started");
    let id = v["investigation"].as_str().unwrap().to_string();
    let (_, again) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert.clone())).await;
    assert_eq!((again["outcome"].as_str(), again["investigation"].as_str()), (Some("duplicate"), Some(id.as_str())));
    let other = json!({ "service": "checkout", "signal": "latency", "severity": "high" }).to_string();
    let (_, grouped) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(other)).await;
    assert_eq!((grouped["outcome"].as_str(), grouped["investigation"].as_str()), (Some("grouped"), Some(id.as_str())));

    let done = api.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "no_data", "nothing of checkout was sent: {done}");
    assert_eq!((done["mode"].as_str(), done["alerts"].as_u64()), (Some("agent"), Some(2)));
    assert_eq!(done["report"]["schema"], "culprit.report/v1");

    // The event stream replays the finished investigation (token in the query for EventSource).
    let sse = api.http.get(format!("{}/v1/investigations/{id}/events?token={VIEWER}", api.base)).send().await.unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(10), sse.text())
        .await
        .expect("stream of a finished investigation ends")
        .unwrap();
    assert!(text.contains("event: status") && text.contains("event: done"), "{text}");

    // Feedback: a viewer may not, an operator may; bad verdicts are named.
    let fb = json!({ "verdict": "correct", "service": "payments-db", "kind": "latency", "note": "pool exhausted" })
        .to_string();
    assert_eq!(
        api.call("POST", &format!("/v1/investigations/{id}/feedback"), Some(VIEWER), Some(fb.clone())).await.0,
        403
    );
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/investigations/{id}/feedback"),
            Some(OPERATOR),
            Some(json!({ "verdict": "maybe" }).to_string()),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("not one of confirm, reject, correct"), "{v}");
    let (s, v) = api.call("POST", &format!("/v1/investigations/{id}/feedback"), Some(OPERATOR), Some(fb)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["knowledge_base"], format!("feedback-{id}"));
    let (_, d) = api.call("GET", &format!("/v1/investigations/{id}"), Some(VIEWER), None).await;
    assert_eq!(
        (d["feedback"][0]["service"].as_str(), d["feedback"][0]["author"].as_str()),
        (Some("payments-db"), Some("alertmanager"))
    );
    let store = culprit::store::Store::open(dir.path().join("store").to_str().unwrap()).await.unwrap();
    assert_eq!(store.feedback().await.unwrap().len(), 1);
    assert_eq!(store.count("incidents", None).await.unwrap(), 1, "a corrected cause joins the knowledge base");

    // Bad bodies: named position, size limit.
    let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some("{\"service\": }".into())).await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("line 1 column"), "{v}");
    let (s, v) = api
        .call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(json!({ "service": "a", "sevrity": "x" }).to_string()))
        .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("sevrity"), "{v}");
    let big = format!("{{\"service\": \"{}\"}}", "x".repeat(100 * 1024));
    assert_eq!(api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(big)).await.0, 413);

    // Changes, sessions, OTLP/JSON.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let change = json!({ "time": now_ms - 60_000, "service": "payments-db", "kind": "config", "keys": [{ "key": "pool", "old": "50", "new": "5" }] });
    assert_eq!(api.call("POST", "/v1/changes", Some(OPERATOR), Some(change.to_string())).await.0, 201);
    let (s, v) = api
        .call("POST", "/v1/changes", Some(OPERATOR), Some(json!({ "service": "x", "kind": "deploy" }).to_string()))
        .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().starts_with("change 0: time"), "{v}");
    let (s, v) = api.chat(&id, "timeline").await;
    assert_eq!(s, 200, "{v}");
    assert!(!v["answer"].as_str().unwrap().is_empty());
    let logs = json!({ "resourceLogs": [{ "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "checkout" } }] },
        "scopeLogs": [{ "logRecords": [{ "timeUnixNano": (now_ms as i128 * 1_000_000).to_string(), "severityText": "ERROR", "body": { "stringValue": "payment failed" } }, { "body": {} }] }] }] });
    let (s, v) = api.call("POST", "/v1/logs", Some(OPERATOR), Some(logs.to_string())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], 1);
    assert_eq!(store.count("events", Some("source = 'log'")).await.unwrap(), 1);

    // Admin: the config without token values; metrics for viewers.
    assert_eq!(api.call("GET", "/v1/config", Some(OPERATOR), None).await.0, 403);
    let (s, v) = api.call("GET", "/v1/config", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert!(!v.to_string().contains(OPERATOR), "a token leaked: {v}");
    let (_, m) = api.call("GET", "/metrics", Some(VIEWER), None).await;
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("culprit_investigations_total{mode=\"agent\",status=\"no_data\"} 1"), "{m}");
    assert!(m.contains("culprit_alerts_total{outcome=\"duplicate\",source=\"generic\"} 1"), "{m}");

    // Everything is in the audit log.
    let audit = audit_lines(dir.path());
    let count = |action: &str| audit.iter().filter(|l| l["action"] == action).count();
    assert_eq!(count("alert.received"), 3);
    assert_eq!(count("investigation.started"), 1);
    assert_eq!(count("investigation.finished"), 1);
    assert_eq!(count("feedback"), 1);
    assert!(count("denied") >= 5, "{audit:?}");
    let fb_line = audit.iter().find(|l| l["action"] == "feedback").unwrap();
    assert_eq!((fb_line["who"].as_str(), fb_line["target"].as_str()), (Some("alertmanager"), Some(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_group_with_one_bad_alert_investigates_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _app) = start_in_process(dir.path()).await;
    let group = json!({
        "version": "4", "status": "firing", "receiver": "culprit",
        "commonLabels": { "severity": "warning" },
        "alerts": [
            { "status": "firing", "labels": { "alertname": "CartErrors", "service": "cart" }, "startsAt": "2026-12-07T10:00:00Z" },
            { "status": "firing", "labels": { "alertname": "NodeDown", "instance": "10.0.0.7:9100" }, "startsAt": "2026-12-07T10:00:00Z" },
            { "status": "firing", "labels": { "alertname": "ShippingLatency", "job": "shipping" }, "startsAt": "2026-12-07T10:00:00Z" }
        ]
    });
    let (s, v) = api.call("POST", "/v1/alerts/alertmanager", Some(OPERATOR), Some(group.to_string())).await;
    assert_eq!(s, 202, "{v}");
    let outcomes: Vec<&str> = v["alerts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, vec!["started", "rejected", "started"], "{v}");
    assert!(v["alerts"][1]["error"].as_str().unwrap().contains("no service label"), "{v}");
    for i in [0, 2] {
        let id = v["alerts"][i]["investigation"].as_str().unwrap();
        let done = api.wait_done(id, Duration::from_secs(60)).await;
        // No telemetry of the service reached culprit: "no data", not "no root cause".
        assert_eq!(done["status"], "no_data", "{done}");
        assert_eq!(done["report"]["verdict"], "insufficient_data", "{done}");
    }
    // A group with nothing readable is the sender's error, as a whole; both are audited.
    let bad = json!({ "alerts": [{ "labels": { "alertname": "X" } }] });
    let (s, v) = api.call("POST", "/v1/alerts/alertmanager", Some(OPERATOR), Some(bad.to_string())).await;
    assert_eq!(s, 400, "{v}");
    let audit = audit_lines(dir.path());
    let rejected: Vec<&Value> = audit.iter().filter(|l| l["action"] == "alert.rejected").collect();
    assert_eq!(rejected.len(), 2, "{audit:?}");
    assert_eq!(rejected[0]["detail"]["index"], 1);
    assert_eq!(rejected[0]["detail"]["labels"]["instance"], "10.0.0.7:9100");
    assert!(rejected[0]["detail"]["reason"].as_str().unwrap().contains("no service label"));
    assert_eq!(audit.iter().filter(|l| l["action"] == "alert.received").count(), 2);
}

/// An alert that arrives before any telemetry of its service ends as "no data" (saying so), and
/// the next alert of its group re-runs it once telemetry has arrived; without new telemetry a
/// new alert only joins the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_before_its_telemetry_is_no_data_and_reruns_when_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _app) = start_in_process(dir.path()).await;
    let alert = |signal: &str| json!({ "service": "checkout", "signal": signal, "severity": "warning" }).to_string();
    let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert("errors"))).await;
    assert_eq!((s, v["outcome"].as_str()), (202, Some("started")), "{v}");
    let id = v["investigation"].as_str().unwrap().to_string();
    let first = api.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(first["status"], "no_data", "{first}");
    let problems = first["report"]["data"]["problems"].to_string();
    assert!(problems.contains("no data received for checkout in the window"), "{problems}");
    assert!(first["top"].is_null(), "no cause is named from no data: {first}");

    // Another alert with no new telemetry joins the group and does not re-run it.
    let (_, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert("latency"))).await;
    assert_eq!((v["outcome"].as_str(), v["rerun"].as_bool()), (Some("grouped"), Some(false)), "{v}");

    // Checkout's spans arrive (OTLP JSON), then a third alert: the investigation runs again.
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let spans: Vec<Value> = (0..60)
        .map(|i| {
            let start = now_ns - (60 - i) * 1_000_000_000;
            json!({ "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1), "name": "POST /checkout",
                "kind": 2, "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 40_000_000).to_string(),
                "status": { "code": if i > 50 { 2 } else { 0 } } })
        })
        .collect();
    let traces = json!({ "resourceSpans": [{ "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "checkout" } }] },
        "scopeSpans": [{ "spans": spans }] }] });
    let (s, v) = api.call("POST", "/v1/traces", Some(OPERATOR), Some(traces.to_string())).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert("cpu"))).await;
    assert_eq!((v["outcome"].as_str(), v["rerun"].as_bool()), (Some("grouped"), Some(true)), "{v}");
    let again = api.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(again["status"], "done", "checkout's spans were read: {again}");
    assert_eq!((again["reruns"].as_u64(), again["alerts"].as_u64()), (Some(1), Some(3)), "{again}");
    assert!(again["report"]["data"]["spans"].as_u64().unwrap() >= 60, "{}", again["report"]["data"]);
    assert_ne!(again["report"]["verdict"], "insufficient_data", "{}", again["report"]["data"]);
    let audit = audit_lines(dir.path());
    assert_eq!(audit.iter().filter(|l| l["action"] == "investigation.rerun" && l["target"] == id.as_str()).count(), 1);
    assert_eq!(
        audit.iter().filter(|l| l["action"] == "investigation.finished" && l["target"] == id.as_str()).count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_test_loses_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = culprit::serve::load::LoadConfig {
        seconds: 4.0,
        senders: 40,
        watchers: 10,
        services: 8,
        rate_per_sender: 0.0,
        data_dir: dir.path().to_path_buf(),
        otlp_rate: 20.0,
        sample_seconds: 1.0,
    };
    let r = culprit::serve::load::run(&cfg).await.unwrap();
    assert_eq!(r.errors, 0, "{r:?}");
    assert_eq!(r.lost_alerts, 0, "{r:?}");
    assert!(r.webhooks_sent > 100, "{r:?}");
    assert_eq!(r.audit_alert_lines, r.webhooks_sent, "{r:?}");
    assert!(r.sse_events > 0 && r.investigations > 1, "{r:?}");
    assert!(r.otlp_requests > 20 && r.otlp_errors == 0, "{r:?}");
    assert!(!r.samples.is_empty() && r.samples.iter().all(|s| s.rss_mib > 0.0 && s.store_files > 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_retried_until_delivered() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, b) = (calls.clone(), bodies.clone());
    // A webhook that fails twice (503), then takes the message.
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (c, b) = (c.clone(), b.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    b.lock().unwrap().push(body);
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let http = reqwest::Client::new();
    let attempts = culprit::serve::notify::send(
        &http,
        &format!("http://{addr}/hook"),
        &json!({ "text": "root cause: payments-db (alert: login with db_password=hunter2 failed)" }),
    )
    .await
    .unwrap();
    assert_eq!(attempts, 3);
    // Secrets in what is sent (an alert title) are redacted on the way out.
    assert_eq!(
        bodies.lock().unwrap().as_slice(),
        [r#"{"text":"root cause: payments-db (alert: login with db_password=[REDACTED:secret] failed)"}"#]
    );
    // A 4xx is not retried.
    let err = culprit::serve::notify::send(&http, &format!("http://{addr}/missing"), &json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("404") && err.contains("not retried"), "{err}");
}

// ---- the live test -------------------------------------------------------------------------

/// Child processes killed on drop.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/setup.sh --llm` and `source .venv/culprit-env.sh` (make test does both)")
    })
}

fn render(template: &Path, out: &Path, vars: &[(&str, String)]) {
    let mut text = std::fs::read_to_string(template).unwrap();
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    let unfilled = text.lines().filter(|l| !l.trim_start().starts_with('#')).any(|l| l.contains("{{"));
    assert!(!unfilled, "unfilled placeholder in {}", template.display());
    std::fs::write(out, text).unwrap();
}

fn spawn(procs: &mut Procs, name: &str, cmd: &mut Command, log: &Path) {
    let f = std::fs::File::create(log.join(format!("{name}.log"))).unwrap();
    let child = cmd.stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
    procs.0.push((name.to_string(), child));
}

/// `tests/service/exporter.py` on `port`, its fault on while `fault` exists.
fn spawn_exporter(procs: &mut Procs, python: &str, port: u16, fault: &Path, artefacts: &Path) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/service/exporter.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).args(["--port", &port.to_string(), "--fault-file"]).arg(fault);
    spawn(procs, "exporter", &mut cmd, artefacts);
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !ok().await {
        assert!(t.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_prometheus_alertmanager_otel_and_web_page() {
    let (prometheus, alertmanager, python) =
        (need("CULPRIT_TEST_PROMETHEUS"), need("CULPRIT_TEST_ALERTMANAGER"), need("CULPRIT_TEST_PYTHON"));
    let chromium = need("CULPRIT_TEST_CHROMIUM");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/service");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let artefacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("service");
    std::fs::create_dir_all(&artefacts).unwrap();
    let (exp_port, prom_port, am_port, culprit_port) = (free_port(), free_port(), free_port(), free_port());
    let mut procs = Procs(Vec::new());

    // culprit, as users run it.
    let config = format!(
        r#"listen = "127.0.0.1:{culprit_port}"
data_dir = "{data}"
[window]
before_seconds = 300
after_seconds = 30
analysis_seconds = 15
settle_seconds = 4
[[tokens]]
name = "alertmanager"
role = "operator"
token = "{OPERATOR}"
[[tokens]]
name = "oncall"
role = "viewer"
token = "{VIEWER}"
[prometheus]
url = "http://127.0.0.1:{prom_port}"
step_seconds = 1
[[prometheus.queries]]
name = "latency"
promql = 'max by (service) (demo_latency_seconds{{service=~"{{services}}"}})'
[[prometheus.queries]]
name = "cpu"
promql = 'max by (service) (demo_cpu_ratio{{service=~"{{services}}"}})'
[[prometheus.queries]]
name = "errors"
promql = 'sum by (service) (rate(demo_errors_total{{service=~"{{services}}"}}[5s]))'
"#,
        data = t.join("culprit").display()
    );
    std::fs::write(t.join("culprit.toml"), config).unwrap();
    spawn(
        &mut procs,
        "culprit",
        Command::new(env!("CARGO_BIN_EXE_culprit")).args(["serve", "--config"]).arg(t.join("culprit.toml")),
        &artefacts,
    );

    // The exporter, Prometheus scraping it with the alert rule, Alertmanager calling culprit.
    let fault = t.join("fault-on");
    spawn_exporter(&mut procs, &python, exp_port, &fault, &artefacts);
    render(
        &here.join("prometheus.yml.tmpl"),
        &t.join("prometheus.yml"),
        &[
            ("EXPORTER_ADDR", format!("127.0.0.1:{exp_port}")),
            ("ALERTMANAGER_ADDR", format!("127.0.0.1:{am_port}")),
            ("RULES_FILE", here.join("rules.yml").display().to_string()),
        ],
    );
    render(
        &here.join("alertmanager.yml.tmpl"),
        &t.join("alertmanager.yml"),
        &[("CULPRIT_PORT", culprit_port.to_string()), ("TOKEN", OPERATOR.to_string())],
    );
    spawn(
        &mut procs,
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", t.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", t.join("prom-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg(format!("--web.external-url=http://127.0.0.1:{prom_port}/")),
        &artefacts,
    );
    spawn(
        &mut procs,
        "alertmanager",
        Command::new(&alertmanager)
            .arg(format!("--config.file={}", t.join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", t.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .arg(format!("--web.external-url=http://127.0.0.1:{am_port}/")),
        &artefacts,
    );
    let api = Api { base: format!("http://127.0.0.1:{culprit_port}"), http: reqwest::Client::new() };
    wait_for("culprit serve up", Duration::from_secs(60), async || {
        api.http.get(format!("{}/healthz", api.base)).send().await.is_ok()
    })
    .await;
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_for("Prometheus scraping the exporter", Duration::from_secs(60), async || {
        let r = api.http.get(format!("{prom}/api/v1/query?query=up%7Bjob%3D%22demo%22%7D")).send().await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default().contains("\"1\"]"),
            Err(_) => false,
        }
    })
    .await;

    // The OpenTelemetry SDK exports traces and logs: 35 s normal, then the fault.
    let baseline = 35.0;
    let otel = Command::new(&python)
        .arg(here.join("otel_client.py"))
        .args([
            "--base",
            &api.base,
            &format!("--token={OPERATOR}"),
            "--seconds",
            "60",
            "--fault-after",
            &baseline.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(baseline)).await;
    std::fs::write(&fault, "on").unwrap();

    // Alertmanager delivers the alert; culprit investigates it with Prometheus' data.
    let mut id = String::new();
    wait_for("an investigation from the Alertmanager webhook", Duration::from_secs(60), async || {
        let (_, v) = api.call("GET", "/v1/investigations", Some(VIEWER), None).await;
        match v["investigations"].as_array().and_then(|a| a.first()) {
            Some(i) => {
                id = i["id"].as_str().unwrap().to_string();
                true
            }
            None => false,
        }
    })
    .await;
    let out = otel.wait_with_output().unwrap();
    assert!(out.status.success(), "the OpenTelemetry client failed: {}", String::from_utf8_lossy(&out.stderr));
    let sent: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let done = api.wait_done(&id, Duration::from_secs(120)).await;
    std::fs::write(artefacts.join("investigation.json"), serde_json::to_string_pretty(&done).unwrap()).unwrap();
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        (done["service"].as_str(), done["severity"].as_str(), done["mode"].as_str()),
        (Some("frontend"), Some("critical"), Some("agent"))
    );
    let data = &done["report"]["data"];
    assert!(
        data["metric_series"].as_u64().unwrap() >= 9,
        "Prometheus series expected (3 queries × 3 services): {data}"
    );
    assert!(data["spans"].as_u64().unwrap() > 100, "stored OTLP spans expected: {data} (client sent {sent})");
    assert!(data["log_lines"].as_u64().unwrap() > 100, "stored OTLP logs expected: {data} (client sent {sent})");
    let causes: Vec<&str> =
        done["report"]["root_causes"].as_array().unwrap().iter().map(|c| c["service"].as_str().unwrap()).collect();
    assert!(!causes.is_empty() && causes[0] != "frontend", "the alerting frontend is a symptom; causes: {causes:?}");
    assert_eq!(done["top"]["service"], "payments-db", "the injected fault is in payments-db; causes {causes:?}");
    let audit = audit_lines(&t.join("culprit"));
    assert!(
        audit.iter().any(|l| l["action"] == "alert.received"
            && l["who"] == "alertmanager"
            && l["detail"]["source"] == "alertmanager"),
        "{audit:?}"
    );

    // The web page, in headless Chromium: open it, see graph and causes, send feedback.
    let shot = artefacts.join("web.png");
    let web = Command::new(&python)
        .arg(here.join("web_check.py"))
        .args([
            "--base",
            &api.base,
            &format!("--token={OPERATOR}"),
            "--id",
            &id,
            "--chromium",
            &chromium,
            "--screenshot",
        ])
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        web.status.success(),
        "web check failed: {}\n{}",
        String::from_utf8_lossy(&web.stdout),
        String::from_utf8_lossy(&web.stderr)
    );
    let seen: Value = serde_json::from_str(String::from_utf8_lossy(&web.stdout).lines().last().unwrap()).unwrap();
    assert!(seen["causes"].as_u64().unwrap() >= 1 && seen["nodes"].as_u64().unwrap() >= 2, "{seen}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "screenshot saved at {}", shot.display());
    let (_, d) = api.call("GET", &format!("/v1/investigations/{id}"), Some(VIEWER), None).await;
    assert_eq!(d["feedback"][0]["note"], "checked in chromium", "{}", d["feedback"]);
    let audit = audit_lines(&t.join("culprit"));
    assert!(audit.iter().any(|l| l["action"] == "feedback" && l["target"] == id.as_str()));
    drop(procs);
}

/// `culprit investigate --prometheus` and `culprit collect` against a real Prometheus and a real
/// VictoriaMetrics, both scraping the exporter into which a fault in payments-db is injected:
/// the metrics are found by their service label (no query given) and the injected service named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn investigate_live_from_prometheus_and_victoria_metrics() {
    let (prometheus, victoria, python) =
        (need("CULPRIT_TEST_PROMETHEUS"), need("CULPRIT_TEST_VICTORIA_METRICS"), need("CULPRIT_TEST_PYTHON"));
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let artefacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-cli");
    std::fs::create_dir_all(&artefacts).unwrap();
    let (exp_port, prom_port, vm_port) = (free_port(), free_port(), free_port());
    let mut procs = Procs(Vec::new());
    let fault = t.join("fault-on");
    spawn_exporter(&mut procs, &python, exp_port, &fault, &artefacts);
    // One scrape configuration, read by both servers.
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [\"127.0.0.1:{exp_port}\"]\n"
    );
    std::fs::write(t.join("scrape.yml"), scrape).unwrap();
    spawn(
        &mut procs,
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", t.join("scrape.yml").display()))
            .arg(format!("--storage.tsdb.path={}", t.join("prom-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &artefacts,
    );
    spawn(
        &mut procs,
        "victoria-metrics",
        Command::new(&victoria)
            .arg(format!("-storageDataPath={}", t.join("vm-data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{vm_port}"))
            .arg(format!("-promscrape.config={}", t.join("scrape.yml").display()))
            // Answer queries up to now (by default the last 30 s are held back).
            .arg("-search.latencyOffset=0s"),
        &artefacts,
    );
    let http = reqwest::Client::new();
    let servers = [
        ("prometheus", format!("http://127.0.0.1:{prom_port}")),
        ("victoria-metrics", format!("http://127.0.0.1:{vm_port}")),
    ];
    for (name, base) in &servers {
        wait_for(&format!("{name} holding the exporter's series"), Duration::from_secs(60), async || {
            let url = format!("{base}/api/v1/query?query=demo_cpu_ratio");
            match http.get(url).send().await {
                Ok(r) => r.text().await.unwrap_or_default().contains("payments-db"),
                Err(_) => false,
            }
        })
        .await;
    }
    let start = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(35)).await;
    std::fs::write(&fault, "on").unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let from = start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let culprit = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_culprit")).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (name, base) in &servers {
        let args = [
            "investigate",
            "--prometheus",
            base,
            "--service",
            "frontend",
            "--signal",
            "errors",
            "--from",
            &from,
            "--at",
            &at,
            "--to",
            &at,
            "--step",
            "1",
            "--json",
        ];
        let (code, out, err) = culprit(&args);
        std::fs::write(artefacts.join(format!("{name}.json")), &out).unwrap();
        assert_eq!(code, Some(0), "{name}: {err}\n{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert!(err.contains("found 4 metrics of frontend"), "{name}: the exporter's four metrics are found: {err}");
        assert!(
            report["data"]["metric_series"].as_u64().unwrap() >= 12,
            "{name}: 4 metrics × 3 services: {}",
            report["data"]
        );
        assert_eq!(
            report["root_causes"][0]["service"], "payments-db",
            "{name}: the injected fault; {}",
            report["root_causes"]
        );
    }
    // collect writes the same window as a bundle; investigating it gives the same answer.
    let dir = t.join("bundle");
    let (name, base) = &servers[1];
    let (code, out, err) = culprit(&[
        "collect",
        "--prometheus",
        base,
        "--service",
        "frontend",
        "--from",
        &from,
        "--at",
        &at,
        "--to",
        &at,
        "--step",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "collect from {name}: {err}");
    assert!(out.contains("metric series"), "{out}");
    let (code, out, err) = culprit(&["investigate", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "investigating the collected bundle: {err}\n{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["root_causes"][0]["service"], "payments-db", "{}", report["root_causes"]);
    drop(procs);
}
