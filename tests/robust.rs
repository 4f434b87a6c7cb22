//! Issue 18's findings, each as a test: bad times, duplicates, a crash mid-storm, a store that
//! grows with every request. The service runs in process, except in the crash test, which kills the
//! `culprit serve` binary with SIGKILL and starts it again on the same data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::serve::{audit_lines, otlp_requests, start_in_process, start_with, test_config, Api, OPERATOR, VIEWER};
use culprit::{ingest, pipeline, simulate};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn now_ns() -> i128 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap() as i128
}

fn resource(service: &str) -> Value {
    json!({ "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] })
}

/// Far-future and absurd times are rejected as bad input, counted back to the sender with the
/// field, and never sized anything: the service goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_far_from_now_are_rejected_by_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _app) = start_in_process(dir.path()).await;
    let now = now_ns();
    let span = |id: u32, start: String, end: String| {
        json!({ "traceId": format!("{id:032x}"), "spanId": format!("{id:016x}"), "name": "GET /x",
            "startTimeUnixNano": start, "endTimeUnixNano": end })
    };
    let traces = json!({ "resourceSpans": [{ "resource": resource("checkout"), "scopeSpans": [{ "spans": [
        span(1, now.to_string(), (now + 5_000_000).to_string()),
        span(2, now.to_string(), "253402300799000000000".to_string()),
        span(3, "253402300700000000000".to_string(), "253402300799000000000".to_string()),
    ] }] }] });
    let (s, v) = api.call("POST", "/v1/traces", Some(OPERATOR), Some(traces.to_string())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["partialSuccess"]["rejectedSpans"], 2, "{v}");
    let why = v["partialSuccess"]["errorMessage"].as_str().unwrap_or("");
    assert!(why.contains("TimeUnixNano") && why.contains("from now"), "{why}");

    let logs = json!({ "resourceLogs": [{ "resource": resource("checkout"), "scopeLogs": [{ "logRecords": [
        { "timeUnixNano": "253402300799000000000", "body": { "stringValue": "from the far future" } },
        { "timeUnixNano": now.to_string(), "body": { "stringValue": "now" } },
    ] }] }] });
    let (s, v) = api.call("POST", "/v1/logs", Some(OPERATOR), Some(logs.to_string())).await;
    assert_eq!((s, v["partialSuccess"]["rejectedLogRecords"].as_i64()), (200, Some(1)), "{v}");
    let metrics = json!({ "resourceMetrics": [{ "resource": resource("checkout"), "scopeMetrics": [{ "metrics": [
        { "name": "cpu", "gauge": { "dataPoints": [{ "timeUnixNano": "253402300799000000000", "asDouble": 1.0 }] } },
    ] }] }] });
    let (s, v) = api.call("POST", "/v1/metrics", Some(OPERATOR), Some(metrics.to_string())).await;
    assert_eq!((s, v["partialSuccess"]["rejectedDataPoints"].as_i64()), (200, Some(1)), "{v}");

    let am = json!({ "alerts": [{ "labels": { "service": "checkout", "alertname": "X" }, "startsAt": "9999-12-31T23:59:59Z" }] });
    let (s, v) = api.call("POST", "/v1/alerts/alertmanager", Some(OPERATOR), Some(am.to_string())).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("startsAt"), "{v}");
    let generic = json!({ "service": "checkout", "time": 253402300799i64 });
    let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(generic.to_string())).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").starts_with("time:"), "{v}");

    // The service is alive and an agent investigation (metric correlation included) finishes.
    let alert = json!({ "service": "checkout", "signal": "latency", "severity": "critical" });
    let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert.to_string())).await;
    assert_eq!(s, 202, "{v}");
    let done = api.wait_done(v["investigation"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(done["report"]["data"]["spans"], 1, "only the sane span was stored: {}", done["report"]["data"]);
}

/// The demo incident moved to now, posted once to one service and twice (an exporter's retry) to
/// another: both read the same records and give the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_telemetry_twice_gives_the_same_answer() {
    let incident = simulate::simulate(&simulate::demo_config());
    // Ten minutes ago: the window (to five minutes after the alert) has ended for both runs.
    let alert_at = chrono::Utc::now().timestamp_millis() - 10 * 60_000;
    let shift = alert_at - incident.alert.time;
    let requests = otlp_requests(&incident, shift, 2_000);
    let mut answers = Vec::new();
    for times in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = culprit::serve::config::ServeConfig { max_body_bytes: 16 << 20, ..test_config(dir.path()) };
        let (api, _app) = start_with(cfg).await;
        for _ in 0..times {
            for (path, body) in &requests {
                let (s, v) = api.call("POST", path, Some(OPERATOR), Some(body.clone())).await;
                assert_eq!(s, 200, "{path}: {v}");
            }
        }
        let alert = json!({ "service": incident.alert.service, "signal": incident.alert.signal, "severity": "warning",
            "time": alert_at });
        let (s, v) = api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(alert.to_string())).await;
        assert_eq!(s, 202, "{v}");
        let done = api.wait_done(v["investigation"].as_str().unwrap(), Duration::from_secs(120)).await;
        let data = &done["report"]["data"];
        answers.push((
            data["spans"].clone(),
            data["log_lines"].clone(),
            data["metric_series"].clone(),
            done["top"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1], "fed once, then twice");
    assert!(answers[0].3["service"].is_string(), "{:?}", answers[0]);
}

/// A bundle whose metric and span files hold every line twice is read as the bundle it repeats.
#[test]
fn a_bundle_with_every_line_twice_gives_the_same_answer() {
    let incident = simulate::simulate(&simulate::demo_config());
    let dir = tempfile::tempdir().unwrap();
    let (once, twice) = (dir.path().join("once"), dir.path().join("twice"));
    ingest::write_bundle(&incident, None, &once).unwrap();
    ingest::write_bundle(&incident, None, &twice).unwrap();
    let mut doubled = 0;
    for entry in std::fs::read_dir(&twice).unwrap().flatten() {
        let p = entry.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("metrics") || name.starts_with("spans") || name.starts_with("traces") {
            let text = std::fs::read_to_string(&p).unwrap();
            let mut lines = text.lines();
            // A CSV keeps its header once.
            let head = if name.ends_with(".csv") { lines.next().map(|h| format!("{h}\n")) } else { None };
            let body: String = lines.map(|l| format!("{l}\n{l}\n")).collect();
            std::fs::write(&p, head.unwrap_or_default() + &body).unwrap();
            doubled += 1;
        }
    }
    assert!(doubled >= 2, "the demo bundle has metric and span files");
    let run = |p: &Path| {
        let loaded = ingest::load_bundle(p).unwrap();
        let cfg = pipeline::PipelineConfig::default();
        let out = pipeline::run(&loaded, &cfg, pipeline::Deps::default());
        (
            loaded.telemetry.spans.len(),
            loaded.telemetry.metrics.iter().map(|s| s.points.len()).sum::<usize>(),
            out.top(),
        )
    };
    let (a, b) = (run(&once), run(&twice));
    assert_eq!(a, b, "once, then every line twice");
    assert!(a.2.is_some());
}

fn serve_config(dir: &Path, port: u16) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
workers = 1
[window]
settle_seconds = 0
[alerts]
agent_from = "critical"
[[tokens]]
name = "alertmanager"
role = "operator"
token = "{OPERATOR}"
[[tokens]]
name = "oncall"
role = "viewer"
token = "{VIEWER}"
"#,
        data = dir.join("data").display()
    )
}

fn start_binary(dir: &Path, port: u16, log: &str) -> std::process::Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_culprit"))
        .args(["serve", "--config"])
        .arg(dir.join("culprit.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "culprit serve did not listen within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// `culprit serve` killed with SIGKILL in the middle of a storm of alerts and OTLP posts, then
/// started again on the same data directory: every alert answered 2xx is in the audit log and its
/// investigation finishes; every OTLP record answered 2xx is in the store; a chat on an
/// investigation finished before the crash answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_service_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(t.join("culprit.toml"), serve_config(t, port)).unwrap();
    let mut child = start_binary(t, port, "first.log");
    let api = std::sync::Arc::new(Api::new(format!("http://127.0.0.1:{port}")));

    // One investigation finishes before the storm, for the chat after the restart.
    let (s, v) =
        api.call("POST", "/v1/alerts/generic", Some(OPERATOR), Some(json!({ "service": "early" }).to_string())).await;
    assert_eq!(s, 202, "{v}");
    let early = v["investigation"].as_str().unwrap().to_string();
    api.wait_done(&early, Duration::from_secs(60)).await;

    // The storm: alerts on 200 services and OTLP log posts, concurrently; killed after 1.5 s.
    let mut tasks = Vec::new();
    for k in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let (mut alerts, mut records) = (Vec::new(), Vec::new());
            for i in 0..25 {
                let service = format!("svc-{k}-{i}");
                let body = json!({ "service": service, "signal": "errors", "severity": "warning" }).to_string();
                let r = api.http.post(format!("{}/v1/alerts/generic", api.base)).bearer_auth(OPERATOR).header("content-type", "application/json").body(body).send().await;
                if let Ok(r) = r {
                    if r.status().is_success() {
                        if let Ok(v) = r.json::<Value>().await {
                            alerts.push((service.clone(), v["investigation"].as_str().unwrap_or("").to_string()));
                        }
                    }
                }
                let logs = json!({ "resourceLogs": [{ "resource": resource(&service), "scopeLogs": [{ "logRecords": [
                    { "timeUnixNano": now_ns().to_string(), "body": { "stringValue": format!("record {service}") } }] }] }] });
                let r = api.http.post(format!("{}/v1/logs", api.base)).bearer_auth(OPERATOR).header("content-type", "application/json").body(logs.to_string()).send().await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    records.push(service);
                }
            }
            (alerts, records)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let pid = child.id();
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    child.wait().unwrap();
    let (mut acked, mut stored) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, r) = t.await.unwrap();
        acked.extend(a);
        stored.extend(r);
    }
    assert!(acked.len() >= 20, "the storm was under way when killed: {} alerts answered", acked.len());

    let mut child = start_binary(t, port, "second.log");
    let audit = audit_lines(&t.join("data"));
    let received: BTreeSet<&str> =
        audit.iter().filter(|l| l["action"] == "alert.received").filter_map(|l| l["target"].as_str()).collect();
    let (_, list) = api.call("GET", "/v1/investigations", Some(VIEWER), None).await;
    let listed: BTreeSet<&str> =
        list["investigations"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str()).collect();
    let mut lost = Vec::new();
    for (service, id) in &acked {
        assert!(received.contains(id.as_str()), "{service}: answered {id} but not in the audit log");
        if !listed.contains(id.as_str()) {
            lost.push(id.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} answered investigations are gone after the restart: {lost:?}",
        lost.len(),
        acked.len()
    );
    for (_, id) in &acked {
        let done = api.wait_done(id, Duration::from_secs(300)).await;
        assert_ne!(done["status"], "failed", "{done}");
    }
    let store = culprit::store::Store::open(&t.join("data/store").display().to_string()).await.unwrap();
    for service in &stored {
        let n = store.count(culprit::store::EVENTS, Some(&format!("service = '{service}'"))).await.unwrap();
        assert_eq!(n, 1, "{service}: its log record was answered 200 but is not in the store");
    }

    // A chat on an investigation from before the crash.
    let (s, v) = api.chat(&early, "what is the root cause?").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["answer"].is_string(), "{v}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Files in the store's directory, recursively.
fn files_under(p: &Path) -> usize {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
        .sum()
}

/// 300 one-record OTLP posts: the store compacts and forgets old versions instead of keeping a
/// file set per request, and every record stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_otlp_posts_leave_a_small_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    // Maintained every 10 commits, keeping no old version (the defaults: 100 commits, and the
    // versions of the last 30 s, for readers still on one).
    cfg.store_maintenance.every_commits = 10;
    cfg.store_maintenance.keep_seconds = 0;
    let (api, app) = start_with(cfg).await;
    let api = std::sync::Arc::new(api);
    let now = now_ns();
    // Ten senders at a time, as exporters send.
    for wave in 0..30i128 {
        let mut sends = Vec::new();
        for k in 0..10i128 {
            let (api, i) = (api.clone(), wave * 10 + k);
            sends.push(tokio::spawn(async move {
                let logs = json!({ "resourceLogs": [{ "resource": resource("checkout"), "scopeLogs": [{ "logRecords": [
                    { "timeUnixNano": (now - i * 1_000_000_000).to_string(), "body": { "stringValue": format!("line {i}") } }] }] }] });
                api.call("POST", "/v1/logs", Some(OPERATOR), Some(logs.to_string())).await
            }));
        }
        for s in sends {
            let (s, v) = s.await.unwrap();
            assert_eq!(s, 200, "{v}");
        }
    }
    let store_dir = dir.path().join("store");
    let t = Instant::now();
    let mut files = files_under(&store_dir);
    while files > 120 && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        files = files_under(&store_dir);
    }
    eprintln!("{files} files in the store after 300 one-record posts and maintenance");
    assert!(files <= 120, "{files} files in the store after 300 one-record posts");
    assert_eq!(app.store.count(culprit::store::EVENTS, None).await.unwrap(), 300);
    let (_, metrics) = api.call("GET", "/metrics", Some(VIEWER), None).await;
    let text = metrics.as_str().unwrap_or("");
    assert!(text.contains("culprit_store_versions") && text.contains("culprit_store_fragments"), "{text}");
}

/// 20,000 config changes in the window (a runaway pipeline posting to `/v1/changes`): the causal
/// graph takes a bounded number of anomalies, says how many it left out, and the demo's cause
/// still ranks first.
#[test]
fn a_flood_of_changes_is_bounded_before_the_graph() {
    let mut incident = simulate::simulate(&simulate::demo_config());
    let clean = pipeline::run(&incident, &pipeline::PipelineConfig::default(), pipeline::Deps::default()).top();
    let services: Vec<String> = incident.topology.as_ref().unwrap().services.iter().map(|n| n.name.clone()).collect();
    let t0 = incident.alert.time - 10 * 60_000;
    for i in 0..20_000i64 {
        incident.telemetry.changes.push(culprit::model::Change {
            time: t0 + i * 29,
            service: services[i as usize % services.len()].clone(),
            kind: culprit::model::ChangeKind::Flag,
            author: Some("bot".into()),
            version: None,
            previous_version: None,
            keys: vec![culprit::model::KeyChange {
                key: format!("flag-{i}"),
                old: Some("0".into()),
                new: Some("1".into()),
            }],
            description: None,
            instances: Vec::new(),
        });
    }
    let out = pipeline::run(&incident, &pipeline::PipelineConfig::default(), pipeline::Deps::default());
    let nodes = out.triage.graph.node_count();
    assert!(nodes <= culprit::graph::MAX_NODES, "{nodes} anomalies in the causal graph");
    let said = out.report.data.unchecked.join(" ");
    assert!(said.contains("left out of the causal graph"), "{said}");
    assert_eq!(out.top().map(|t| t.service), clean.map(|t| t.service));
}

/// One change with 1,000,000 keys is read with a bounded number of them, and says how many more
/// there were.
#[test]
fn a_change_with_a_million_keys_is_capped() {
    let keys: serde_json::Map<String, Value> = (0..1_000_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let change = json!({ "time": 1_700_000_000_000i64, "service": "api", "kind": "config", "keys": keys });
    let c = ingest::change_from_json(&change).unwrap();
    assert!(c.keys.len() <= culprit::model::MAX_KEYS_PER_CHANGE, "{} keys kept", c.keys.len());
    assert!(c.description.unwrap_or_default().contains("more keys"), "the rest is summarised");
}

/// HTTP hardening: a client that never finishes its headers is cut off; a client that keeps
/// failing authentication is slowed with 429; an encoding the service cannot read is 415 (and
/// `GZIP` is gzip); every error is a JSON body; `/v1/config` shows no notification URL; the page's
/// CSP allows no inline code and no framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hardening() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.notify = vec![culprit::serve::config::NotifyConfig {
        kind: culprit::serve::config::NotifyKind::Slack,
        url: "https://hooks.slack.com/services/T000/B000/SECRETSECRET".into(),
        min_severity: culprit::model::Severity::Critical,
    }];
    let (api, _app) = start_with(cfg).await;
    let addr = api.base.trim_start_matches("http://").to_string();

    // Half-sent headers: the connection is closed within the header timeout.
    let t = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /v1/investigations HTTP/1.1\r\nHost: x\r\n").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        t.elapsed() < Duration::from_secs(35)
    })
    .await
    .unwrap();
    eprintln!("a connection with half-sent headers was closed after {:?}", t.elapsed());
    assert!(closed, "a connection with half-sent headers was held {:?}", t.elapsed());

    // Every error is JSON: unknown route, wrong method, too large, bad token.
    for (method, path, body) in [
        ("GET", "/v1/nothing-here", None),
        ("DELETE", "/v1/investigations", None),
        ("POST", "/v1/alerts/generic", Some("x".repeat(100 * 1024))),
    ] {
        let (s, v) = api.call(method, path, Some(OPERATOR), body).await;
        assert!(s >= 400 && v["error"].is_string(), "{method} {path}: {s} {v}");
    }

    // Encodings.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json!({ "resourceLogs": [] }).to_string().as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    for (encoding, want) in [("GZIP", 200u16), ("gzip", 200), ("zstd", 415), ("br", 415)] {
        let r = api
            .http
            .post(format!("{}/v1/logs", api.base))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "Content-Encoding {encoding}: {text}");
    }

    // Secrets stay out of the config shown to admins.
    let (s, v) = api.call("GET", "/v1/config", Some(common::serve::ADMIN), None).await;
    assert_eq!(s, 200);
    assert!(!v.to_string().contains("SECRETSECRET"), "{v}");

    // The page: no inline code allowed, no framing.
    let r = api.http.get(format!("{}/", api.base)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{csp}");

    // Failed authentication, again and again from one client: 429 with Retry-After.
    let mut last = 0;
    for _ in 0..40 {
        let r = api
            .http
            .get(format!("{}/v1/investigations", api.base))
            .bearer_auth("wrong-token-xyz")
            .send()
            .await
            .unwrap();
        last = r.status().as_u16();
        if last == 429 {
            assert!(r.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(last, 429, "40 failed logins in a row were all answered 401");
    let audit = audit_lines(dir.path());
    assert!(audit.len() < 40, "the audit log took every failed login: {} lines", audit.len());
}

/// A symlink in a bundle that points outside it is refused and named, not followed.
#[cfg(unix)]
#[test]
fn a_symlink_out_of_a_bundle_is_refused() {
    let incident = simulate::simulate(&simulate::demo_config());
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    ingest::write_bundle(&incident, None, &bundle).unwrap();
    let outside = dir.path().join("secret.log");
    let line = json!({ "time": incident.alert.time - 60_000, "service": "auth", "message": "root password hunter2" });
    std::fs::write(&outside, format!("{line}\n")).unwrap();
    std::os::unix::fs::symlink(&outside, bundle.join("extra.log")).unwrap();
    let loaded = ingest::load_bundle(&bundle).unwrap();
    let issues = format!("{:?}", loaded.read_report.issues);
    assert!(issues.contains("extra.log") && issues.contains("symlink"), "{issues}");
}
