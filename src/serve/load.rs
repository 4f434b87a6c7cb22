//! The service's load test (`culprit bench --serve`): a real server on loopback, N concurrent
//! senders posting Alertmanager webhooks for a fixed time while M watchers follow
//! investigations' event streams; then every accepted alert is looked up in the audit log.

use super::config::{Role, ServeConfig, TokenConfig};
use super::App;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub seconds: f64,
    /// Concurrent webhook senders (each posts, waits for the answer, posts again).
    pub senders: usize,
    /// Concurrent event-stream watchers.
    pub watchers: usize,
    /// Distinct services the alerts are spread over.
    pub services: usize,
    /// Webhooks per second each sender sends (paced, as alerting systems send); 0: as fast as
    /// the answers come back (saturation: latency is then concurrency ÷ throughput).
    pub rate_per_sender: f64,
    pub data_dir: std::path::PathBuf,
    /// OTLP export requests per second (all signals, a few records each) fed beside the
    /// alerts: the soak test (0: none).
    pub otlp_rate: f64,
    /// Seconds between samples of memory and the store's files (0: none).
    pub sample_seconds: f64,
}

/// One sample of the soak test.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub seconds: f64,
    /// This process's resident memory (the server and the load together).
    pub rss_mib: f64,
    /// Files under the store's directory.
    pub store_files: usize,
    pub store_mib: f64,
    /// Versions and fragments of the events table.
    pub versions: usize,
    pub fragments: usize,
    pub otlp_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub seconds: f64,
    pub senders: usize,
    pub watchers: usize,
    pub rate_per_sender: f64,
    pub webhooks_sent: u64,
    pub webhooks_per_second: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Accepted alerts missing from the audit log (must be 0).
    pub lost_alerts: u64,
    pub audit_alert_lines: u64,
    pub investigations: usize,
    pub investigations_finished: usize,
    pub sse_events: u64,
    pub sse_streams: u64,
    pub otlp_requests: u64,
    pub otlp_errors: u64,
    pub samples: Vec<Sample>,
}

/// The resident memory of this process in MiB (Linux; 0 elsewhere).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Files and bytes under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> (usize, u64) {
    let mut out = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            let (n, b) = files_under(&p);
            out = (out.0 + n, out.1 + b);
        } else {
            out = (out.0 + 1, out.1 + e.metadata().map_or(0, |m| m.len()));
        }
    }
    out
}

/// One OTLP/JSON logs export request: `n` records of `service` at `now_ns`.
fn otlp_logs(service: &str, now_ns: i128, n: usize, k: u64) -> String {
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({ "timeUnixNano": (now_ns + i as i128).to_string(), "severityText": "INFO",
                "body": { "stringValue": format!("request {k}-{i} served in {} ms", 3 + (k + i as u64) % 40) } })
        })
        .collect();
    serde_json::json!({ "resourceLogs": [{ "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] },
        "scopeLogs": [{ "logRecords": records }] }] })
    .to_string()
}

const TOKEN: &str = "load-test-operator-token";

/// What stops a load test from running.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the load test's server: {0}")]
    Server(#[from] super::ServeError),
    #[error("{what}: {error}")]
    Io { what: &'static str, error: std::io::Error },
    #[error("the server thread ended early")]
    ServerGone,
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs the load test against a fresh server in `cfg.data_dir`.
pub async fn run(cfg: &LoadConfig) -> Result<LoadReport, LoadError> {
    let serve_cfg = ServeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: cfg.data_dir.clone(),
        tokens: vec![TokenConfig {
            name: "load".into(),
            role: Role::Operator,
            token: Some(TOKEN.into()),
            token_env: None,
        }],
        window: super::config::WindowConfig { settle_seconds: 0, ..Default::default() },
        // Short groups, so new investigations keep starting during the test.
        alerts: super::config::AlertConfig { group_seconds: 2, ..Default::default() },
        ..Default::default()
    };
    // The server gets its own runtime, as in `culprit serve`: the load's tasks do not queue
    // with its requests.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(LoadError::Io { what: "starting the server's runtime", error: e }));
                return;
            }
        };
        rt.block_on(async move {
            let started = async {
                let app = App::start(serve_cfg, None, &|_| None).await?;
                let io = |what| move |source| LoadError::Io { what, error: source };
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(io("binding 127.0.0.1:0"))?;
                let addr = listener.local_addr().map_err(io("the listener's address"))?;
                Ok::<_, LoadError>((app, listener, addr))
            }
            .await;
            match started {
                Ok((app, listener, addr)) => {
                    let _ = ready_tx.send(Ok((app.clone(), addr)));
                    let _ = super::run(listener, app, async move {
                        let _ = server_stopped.await;
                    })
                    .await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let (app, addr) = ready_rx.await.map_err(|_| LoadError::ServerGone)??;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(cfg.senders + cfg.watchers).build()?;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let accepted: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let sse_events = Arc::new(AtomicU64::new(0));
    let sse_streams = Arc::new(AtomicU64::new(0));
    let fail = {
        let (errors, first_error) = (errors.clone(), first_error.clone());
        move |e: String| {
            errors.fetch_add(1, Ordering::Relaxed);
            let mut f = super::lock(&first_error);
            if f.is_none() {
                *f = Some(e);
            }
        }
    };

    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..cfg.senders {
        let (client, base, stop, sent, latencies, accepted, fail) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            sent.clone(),
            latencies.clone(),
            accepted.clone(),
            fail.clone(),
        );
        let services = cfg.services.max(1);
        let (rate, senders) = (cfg.rate_per_sender, cfg.senders.max(1));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut local = Vec::new();
            let mut fps = Vec::new();
            let pace = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
            // Senders start spread over one period, not all at once.
            let mut next =
                tokio::time::Instant::now() + pace.map_or(Duration::ZERO, |p| p.mul_f64(s as f64 / senders as f64));
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = pace {
                    tokio::time::sleep_until(next).await;
                    next += p;
                }
                n += 1;
                let fingerprint = format!("load-{s}-{n}");
                let service = format!("svc-{}", (s as u64 + n) % services as u64);
                let severity = if n.is_multiple_of(10) { "critical" } else { "warning" };
                let body = serde_json::json!({
                    "version": "4", "status": "firing", "receiver": "culprit",
                    "commonLabels": { "alertname": "LoadTestErrors" },
                    "alerts": [{ "status": "firing", "labels": { "service": service, "severity": severity },
                                 "annotations": { "summary": "load test" }, "fingerprint": fingerprint,
                                 "startsAt": chrono::Utc::now().to_rfc3339() }]
                });
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/alerts/alertmanager"))
                    .bearer_auth(TOKEN)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match r {
                    Ok(resp) if resp.status().as_u16() == 202 => {
                        let _ = resp.bytes().await;
                        local.push(ms);
                        fps.push(fingerprint);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => fail(format!("HTTP {} from the webhook", resp.status())),
                    Err(e) => fail(format!("webhook request failed: {e}")),
                }
            }
            super::lock(&latencies).extend(local);
            super::lock(&accepted).extend(fps);
        }));
    }
    // The OTLP feed, paced.
    let otlp_sent = Arc::new(AtomicU64::new(0));
    let otlp_errors = Arc::new(AtomicU64::new(0));
    if cfg.otlp_rate > 0.0 {
        let (client, base, stop, otlp_sent, otlp_errors) =
            (client.clone(), base.clone(), stop.clone(), otlp_sent.clone(), otlp_errors.clone());
        let (pace, services) = (Duration::from_secs_f64(1.0 / cfg.otlp_rate), cfg.services.max(1));
        tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next).await;
                next += pace;
                k += 1;
                let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
                let body = otlp_logs(&format!("svc-{}", k % services as u64), now_ns, 20, k);
                let (client, base, otlp_sent, otlp_errors) =
                    (client.clone(), base.clone(), otlp_sent.clone(), otlp_errors.clone());
                // Not waiting for the answer: the feed keeps its pace, as an exporter does.
                tokio::spawn(async move {
                    let r = client
                        .post(format!("{base}/v1/logs"))
                        .bearer_auth(TOKEN)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            otlp_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            otlp_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }));
    }
    // Samples of memory and the store, while the load runs.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    if cfg.sample_seconds > 0.0 {
        let (stop, samples, app, otlp_sent) = (stop.clone(), samples.clone(), app.clone(), otlp_sent.clone());
        let every = Duration::from_secs_f64(cfg.sample_seconds);
        let store_dir = std::path::PathBuf::from(app.store.uri());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let health = app.store.health(crate::store::EVENTS).await.unwrap_or_default();
                let (files, bytes) = files_under(&store_dir);
                let s = Sample {
                    seconds: t0.elapsed().as_secs_f64(),
                    rss_mib: rss_mib(),
                    store_files: files,
                    store_mib: bytes as f64 / (1 << 20) as f64,
                    versions: health.versions,
                    fragments: health.fragments,
                    otlp_requests: otlp_sent.load(Ordering::Relaxed),
                };
                tracing::info!(?s, "soak sample");
                eprintln!(
                    "  {:>6.0} s  RSS {:>6.1} MiB  store {:>5} files {:>7.1} MiB  {:>4} versions {:>4} fragments  {} OTLP requests",
                    s.seconds, s.rss_mib, s.store_files, s.store_mib, s.versions, s.fragments, s.otlp_requests
                );
                super::lock(&samples).push(s);
                let until = tokio::time::Instant::now() + every;
                while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }));
    }
    for w in 0..cfg.watchers {
        let (client, base, stop, sse_events, sse_streams, fail, app) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            sse_events.clone(),
            sse_streams.clone(),
            fail.clone(),
            app.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                // Follow one of the recent investigations; when its stream ends, another.
                let id = {
                    let reg = super::lock(&app.registry);
                    let n = reg.order.len();
                    if n == 0 {
                        None
                    } else {
                        reg.order.get(n - 1 - (k % n.min(20))).cloned()
                    }
                };
                k += 1;
                let Some(id) = id else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let resp = client.get(format!("{base}/v1/investigations/{id}/events")).bearer_auth(TOKEN).send().await;
                let mut resp = match resp {
                    Ok(r) if r.status().is_success() => r,
                    Ok(r) => {
                        fail(format!("HTTP {} from the event stream", r.status()));
                        continue;
                    }
                    Err(e) => {
                        fail(format!("event stream failed: {e}"));
                        continue;
                    }
                };
                sse_streams.fetch_add(1, Ordering::Relaxed);
                loop {
                    let chunk = tokio::select! {
                        c = resp.chunk() => c,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if stop.load(Ordering::Relaxed) { break } else { continue }
                        }
                    };
                    match chunk {
                        Ok(Some(bytes)) => {
                            let text = String::from_utf8_lossy(&bytes);
                            sse_events.fetch_add(text.matches("event:").count() as u64, Ordering::Relaxed);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            if !stop.load(Ordering::Relaxed) {
                                fail(format!("event stream broke: {e}"));
                            }
                            break;
                        }
                    }
                }
                // A finished investigation's stream ends at once: a pause before the next, or
                // the watchers spin (a soak counted millions of streams).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(cfg.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        if let Err(e) = t.await {
            fail(format!("a load task failed: {e}"));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop_server.send(());
    let _ = tokio::task::spawn_blocking(move || server.join()).await;

    // Every accepted alert must be in the audit log.
    let audit = std::fs::read_to_string(app.audit.path())
        .map_err(|source| LoadError::Io { what: "reading the audit log", error: source })?;
    let mut logged = std::collections::HashSet::new();
    for line in audit.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["action"] == "alert.received" {
            if let Some(fp) = v["detail"]["fingerprint"].as_str() {
                logged.insert(fp.to_string());
            }
        }
    }
    let accepted = super::lock(&accepted).clone();
    let lost = accepted.iter().filter(|f| !logged.contains(*f)).count() as u64;
    let mut lat = super::lock(&latencies).clone();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p).round() as usize] };
    let (investigations, finished) = {
        let reg = super::lock(&app.registry);
        (reg.order.len(), reg.records.values().filter(|r| r.summary.status.finished()).count())
    };
    super::worker::stop(&app);
    let sent = sent.load(Ordering::Relaxed);
    let first_error = super::lock(&first_error).clone();
    let samples = std::mem::take(&mut *super::lock(&samples));
    Ok(LoadReport {
        seconds: elapsed,
        senders: cfg.senders,
        watchers: cfg.watchers,
        rate_per_sender: cfg.rate_per_sender,
        webhooks_sent: sent,
        webhooks_per_second: sent as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        latency_p50_ms: q(0.5),
        latency_p99_ms: q(0.99),
        latency_max_ms: lat.last().copied().unwrap_or(0.0),
        lost_alerts: lost,
        audit_alert_lines: logged.len() as u64,
        investigations,
        investigations_finished: finished,
        sse_events: sse_events.load(Ordering::Relaxed),
        sse_streams: sse_streams.load(Ordering::Relaxed),
        otlp_requests: otlp_sent.load(Ordering::Relaxed),
        otlp_errors: otlp_errors.load(Ordering::Relaxed),
        samples,
    })
}

pub fn render(r: &LoadReport) -> String {
    format!(
        "Service load test on loopback: {} webhook senders ({}) and {} event-stream watchers for {:.1} s\n\
         webhooks accepted      {} ({:.0}/s), errors {}{}\n\
         webhook latency        p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms\n\
         audit log              {} alert lines; accepted alerts missing from it: {}\n\
         investigations         {} started, {} finished during the test\n\
         event streams          {} opened, {} events received\n\
         OTLP feed              {} requests stored, {} failed\n{}",
        r.senders,
        if r.rate_per_sender > 0.0 {
            format!("{} webhooks/s each", r.rate_per_sender)
        } else {
            "each as fast as answered".to_string()
        },
        r.watchers,
        r.seconds,
        r.webhooks_sent,
        r.webhooks_per_second,
        r.errors,
        r.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        r.latency_p50_ms,
        r.latency_p99_ms,
        r.latency_max_ms,
        r.audit_alert_lines,
        r.lost_alerts,
        r.investigations,
        r.investigations_finished,
        r.sse_streams,
        r.sse_events,
        r.otlp_requests,
        r.otlp_errors,
        soak_table(&r.samples),
    )
}

/// The samples as a table, with first and last beside each other.
fn soak_table(samples: &[Sample]) -> String {
    if samples.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("samples                seconds    RSS MiB   store files  store MiB  versions  fragments\n");
    for s in samples {
        out.push_str(&format!(
            "                       {:>7.0}  {:>9.1}  {:>12}  {:>9.1}  {:>8}  {:>9}\n",
            s.seconds, s.rss_mib, s.store_files, s.store_mib, s.versions, s.fragments
        ));
    }
    out
}
