//! `culprit serve`: culprit as a service wired to alerting and telemetry.
//!
//! - `api.rs`: the HTTP routes (axum), authentication and roles, request limits;
//! - `alerts.rs`: Alertmanager and generic alert payloads, fingerprints and groups;
//! - `otlp.rs`: the OTLP/HTTP receiver's decoding (protobuf and JSON);
//! - `sources.rs`: the window around an alert, from Prometheus and the store;
//! - `worker.rs`: investigations in the background (triage, agent, re-ranker), streamed steps;
//! - `writer.rs`: the one writer of received telemetry (group commits, compaction, old versions);
//! - `audit.rs`: the append-only audit log; `notify.rs`: webhooks with retries;
//! - `config.rs`: `culprit.toml`.
//!
//! Alerts are answered at once (deduplicated, grouped, written to the audit log, queued); the
//! investigation runs on worker threads and its steps reach watchers as server-sent events. No
//! endpoint runs a command or reads a path given in a request.

pub use culprit_readers::alerts;
pub mod api;
pub mod audit;
pub mod config;
pub mod load;
pub mod notify;
pub use culprit_readers::otlp;
pub mod sources;
pub mod worker;
pub mod writer;

use crate::model::{Alert, Severity, Ts};
use crate::report::Report;
use crate::rerank::Reranker;
use crate::store::{FeedbackRow, Store};
use config::{Principal, ServeConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

pub fn now_ms() -> Ts {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
    /// Finished without the data to answer: nothing of the alerting service was received in the
    /// window (the report's `data.problems` say what). A new alert in its group re-runs it once
    /// telemetry has arrived.
    #[serde(rename = "no_data")]
    NoData,
    Failed,
}

impl Status {
    /// Whether the investigation has ended (for now: a new alert may re-run it).
    pub fn finished(self) -> bool {
        matches!(self, Status::Done | Status::NoData | Status::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The static triage only.
    Triage,
    /// The triage, then the agent.
    Agent,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Triage => "triage",
            Mode::Agent => "agent",
        }
    }
}

/// The answer an investigation shows first (the pipeline decides which).
pub use crate::pipeline::Top;

/// What the list of investigations shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub title: String,
    pub service: String,
    pub severity: Severity,
    pub status: Status,
    pub mode: Mode,
    pub created_ms: Ts,
    pub updated_ms: Ts,
    /// Alerts that joined it (the first one included).
    pub alerts: usize,
    pub top: Option<Top>,
    /// The latest operator verdict.
    pub feedback: Option<String>,
}

/// One server-sent event of an investigation (`status`, `step`, `done`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    pub data: serde_json::Value,
}

/// An investigation, as kept in memory and saved under `<data_dir>/investigations/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub summary: Summary,
    pub alert: Alert,
    /// Alerts on this service within the group window join this investigation.
    pub group: String,
    pub fingerprints: BTreeSet<String>,
    pub report: Option<Report>,
    pub error: Option<String>,
    pub feedback_items: Vec<FeedbackRow>,
    /// The triage's candidates' features, for the re-ranker's training on feedback.
    pub features: Vec<(String, Vec<f64>)>,
    pub events: Vec<Event>,
    /// When its telemetry was last read (Unix ms; 0 before the first run).
    #[serde(default)]
    pub read_ms: Ts,
    /// How many times a new alert in the group re-ran it.
    #[serde(default)]
    pub reruns: u32,
    /// A new alert with new telemetry arrived while it ran: run it again when it ends.
    #[serde(skip)]
    pub rerun_pending: bool,
    #[serde(skip)]
    pub tx: Option<broadcast::Sender<Event>>,
}

impl Record {
    /// Queues it for another run: its events start again (a watcher replays the new run, not
    /// the last one's `done`).
    pub fn requeue(&mut self) {
        self.summary.status = Status::Queued;
        self.reruns += 1;
        self.events.clear();
    }
}

/// The investigations, in creation order, and the newest of each alert group (so an alert finds
/// its group without a scan of every investigation).
#[derive(Default)]
pub struct Registry {
    pub order: Vec<String>,
    pub records: HashMap<String, Record>,
    latest: HashMap<String, String>,
    next: u64,
}

impl Registry {
    /// Adds a record created after every one already in (creation order).
    pub fn insert(&mut self, r: Record) {
        let id = r.summary.id.clone();
        self.latest.insert(r.group.clone(), id.clone());
        self.order.push(id.clone());
        self.records.insert(id, r);
    }

    /// The newest investigation of an alert group.
    pub fn latest_of(&self, group: &str) -> Option<&Record> {
        self.latest.get(group).and_then(|id| self.records.get(id))
    }

    pub fn new_id(&mut self, now: Ts) -> String {
        self.next += 1;
        format!("inv-{now}-{:04}", self.next)
    }
}

/// Finished investigations whose incident and triage stay in memory for chat. Few: one incident
/// may hold up to `sources::MAX_ROWS` records of each kind, and chat reads any other one again
/// from the store (`worker::case`).
pub const CASES_KEPT: usize = 4;

/// Incidents and triages of recent investigations, for chat sessions (bounded).
pub struct Cases {
    pub entries: VecDeque<(String, Arc<(crate::model::Incident, crate::triage::Triage)>)>,
    pub capacity: usize,
}

impl Cases {
    pub fn put(&mut self, id: String, case: Arc<(crate::model::Incident, crate::triage::Triage)>) {
        self.entries.retain(|(i, _)| *i != id);
        self.entries.push_back((id, case));
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<(crate::model::Incident, crate::triage::Triage)>> {
        self.entries.iter().find(|(i, _)| i == id).map(|(_, c)| c.clone())
    }
}

/// A chat session over one investigation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatSession {
    pub id: String,
    pub investigation: String,
    pub created_by: String,
    pub chat: crate::investigate::chat::SavedChat,
}

/// The service's own metrics (`GET /metrics`).
pub struct Metrics {
    pub registry: prometheus::Registry,
    pub alerts: prometheus::IntCounterVec,
    pub investigations: prometheus::IntCounterVec,
    pub latency: prometheus::HistogramVec,
    pub tool_errors: prometheus::IntCounter,
    pub llm_tokens: prometheus::IntCounter,
    pub otlp_records: prometheus::IntCounterVec,
    pub denied: prometheus::IntCounterVec,
    pub queue: prometheus::IntGauge,
    pub notify_failures: prometheus::IntCounter,
    pub store_fragments: prometheus::IntGaugeVec,
    pub store_versions: prometheus::IntGaugeVec,
    pub store_rows: prometheus::IntGaugeVec,
    pub store_bytes: prometheus::IntGaugeVec,
    pub store_maintenance: prometheus::IntCounter,
    pub auth_limited: prometheus::IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        use prometheus::{histogram_opts, opts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
        let registry = prometheus::Registry::new();
        let alerts = IntCounterVec::new(
            opts!(
                "culprit_alerts_total",
                "Alerts received, by source and outcome (started, grouped, duplicate, resolved)."
            ),
            &["source", "outcome"],
        )?;
        let investigations = IntCounterVec::new(
            opts!("culprit_investigations_total", "Investigations finished, by mode and status."),
            &["mode", "status"],
        )?;
        let latency = HistogramVec::new(
            histogram_opts!(
                "culprit_investigation_seconds",
                "Seconds from an alert's arrival to its investigation's end.",
                vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
            ),
            &["mode"],
        )?;
        let tool_errors = IntCounter::new("culprit_tool_errors_total", "Agent tool calls that failed.")?;
        let llm_tokens = IntCounter::new("culprit_llm_tokens_total", "Tokens used by the agent's language model.")?;
        let otlp_records = IntCounterVec::new(
            opts!("culprit_otlp_records_total", "OTLP records received, by signal and outcome (stored, rejected)."),
            &["signal", "outcome"],
        )?;
        let denied = IntCounterVec::new(
            opts!("culprit_requests_denied_total", "Requests refused by authentication (401) or role (403)."),
            &["status"],
        )?;
        let queue = IntGauge::new("culprit_investigations_queued", "Investigations waiting for a worker.")?;
        let notify_failures =
            IntCounter::new("culprit_notify_failures_total", "Notifications that failed after every retry.")?;
        let gauge = |name: &str, help: &str| IntGaugeVec::new(opts!(name, help), &["table"]);
        let store_fragments =
            gauge("culprit_store_fragments", "Fragments of each store table (compaction merges them).")?;
        let store_versions = gauge("culprit_store_versions", "Versions kept of each store table (one manifest each).")?;
        let store_rows = gauge("culprit_store_rows", "Rows of each store table.")?;
        let store_bytes = gauge("culprit_store_bytes", "Bytes of each store table's data and index files.")?;
        let store_maintenance = IntCounter::new(
            "culprit_store_maintenance_total",
            "Store maintenance passes (compaction and old versions).",
        )?;
        let auth_limited = IntCounter::new(
            "culprit_auth_limited_total",
            "Requests answered 429 because their client failed authentication too often.",
        )?;
        for c in [
            Box::new(alerts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(investigations.clone()),
            Box::new(latency.clone()),
            Box::new(tool_errors.clone()),
            Box::new(llm_tokens.clone()),
            Box::new(otlp_records.clone()),
            Box::new(denied.clone()),
            Box::new(queue.clone()),
            Box::new(notify_failures.clone()),
            Box::new(store_fragments.clone()),
            Box::new(store_versions.clone()),
            Box::new(store_rows.clone()),
            Box::new(store_bytes.clone()),
            Box::new(store_maintenance.clone()),
            Box::new(auth_limited.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            alerts,
            investigations,
            latency,
            tool_errors,
            llm_tokens,
            otlp_records,
            denied,
            queue,
            notify_failures,
            store_fragments,
            store_versions,
            store_rows,
            store_bytes,
            store_maintenance,
            auth_limited,
        })
    }

    pub fn render(&self) -> String {
        let enc = prometheus::TextEncoder::new();
        enc.encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

/// A queued investigation.
pub struct Job {
    pub id: String,
    pub received: std::time::Instant,
}

/// Everything the routes and the workers share.
pub struct App {
    pub cfg: RwLock<ServeConfig>,
    pub config_path: Option<PathBuf>,
    pub principals: RwLock<Vec<Principal>>,
    pub audit: audit::Audit,
    pub store: Store,
    /// The knowledge base over `store`, searched on `runtime`: one handle for the service's life
    /// (None when the text embedder is misconfigured; agents then search nothing).
    pub kb: Option<crate::kb::BlockingKb>,
    pub registry: Mutex<Registry>,
    pub cases: Mutex<Cases>,
    pub sessions: Mutex<HashMap<String, ChatSession>>,
    pub reranker: RwLock<Option<Reranker>>,
    pub metrics: Metrics,
    /// The one writer of received telemetry into `store`.
    pub writer: writer::Writer,
    /// Failed authentications per client address, for the limit on them.
    pub auth_failures: Mutex<api::Failures>,
    pub http: reqwest::Client,
    pub jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    pub runtime: tokio::runtime::Handle,
    /// When telemetry (OTLP, changes) was last stored (Unix ms): a grouped alert re-runs an
    /// investigation that read its data before then.
    pub telemetry_ms: std::sync::atomic::AtomicI64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl App {
    /// Opens the data directory, the store and the audit log, reloads saved investigations and
    /// the re-ranker, and starts the workers.
    pub async fn start(
        cfg: ServeConfig,
        config_path: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<App>, ServeError> {
        config::validate(&cfg, &config_path.as_ref().map_or("config".to_string(), |p| p.display().to_string()))?;
        let principals = cfg.principals(env)?;
        let io = |p: &std::path::Path| {
            let path = p.display().to_string();
            move |source| ServeError::Io { path, source }
        };
        for d in [cfg.data_dir.clone(), cfg.data_dir.join("investigations"), cfg.data_dir.join("sessions")] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        let audit_path = cfg.data_dir.join("audit.jsonl");
        let audit = audit::Audit::open(&audit_path).map_err(io(&audit_path))?;
        let store = Store::open(&cfg.store_uri()).await?;
        let kb = crate::kb::BlockingKb::shared(store.clone(), tokio::runtime::Handle::current())
            .map_err(|e| tracing::warn!(error = %e, "knowledge base unavailable to the agent"))
            .ok();
        let metrics = Metrics::new().map_err(|e| ServeError::Setup(format!("metrics: {e}")))?;
        let reranker = match Reranker::load(&cfg.data_dir.join("reranker.json")) {
            Ok(r) => Some(r),
            Err(crate::rerank::RerankError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(error = %e, "re-ranker not loaded; ranking without it until the next feedback");
                None
            }
        };
        let registry = worker::load_records(&cfg.data_dir.join("investigations"));
        let sessions = worker::load_sessions(&cfg.data_dir.join("sessions"));
        let http = reqwest::Client::builder()
            .user_agent(concat!("culprit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServeError::Setup(format!("HTTP client: {e}")))?;
        let workers = cfg.workers;
        let schedule = writer::Schedule::from(&cfg.store_maintenance);
        let app = Arc::new_cyclic(|me| App {
            cfg: RwLock::new(cfg),
            config_path,
            principals: RwLock::new(principals),
            audit,
            store: store.clone(),
            kb,
            registry: Mutex::new(registry),
            cases: Mutex::new(Cases { entries: VecDeque::new(), capacity: CASES_KEPT }),
            sessions: Mutex::new(sessions),
            reranker: RwLock::new(reranker),
            metrics,
            writer: writer::Writer::start(store.clone(), schedule, me.clone()),
            auth_failures: Mutex::new(api::Failures::default()),
            http,
            jobs: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            telemetry_ms: std::sync::atomic::AtomicI64::new(0),
        });
        worker::spawn(&app, workers)?;
        Ok(app)
    }

    /// Notes that telemetry was stored now.
    pub fn telemetry_arrived(&self) {
        self.telemetry_ms.fetch_max(now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether data newer than `read_ms` may be there: telemetry was stored since, or a
    /// Prometheus is configured and a step has passed.
    pub fn new_data_since(&self, read_ms: Ts) -> bool {
        let stored = self.telemetry_ms.load(std::sync::atomic::Ordering::Relaxed);
        let scraped = self.config().prometheus.is_some_and(|p| now_ms() - read_ms >= p.step_seconds as i64 * 1000);
        stored > read_ms || scraped
    }

    pub fn config(&self) -> ServeConfig {
        match self.cfg.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Appends an event to an investigation and sends it to its watchers.
    pub fn emit(&self, id: &str, name: &str, data: serde_json::Value) {
        let mut reg = lock(&self.registry);
        if let Some(r) = reg.records.get_mut(id) {
            let ev = Event { name: name.to_string(), data };
            r.events.push(ev.clone());
            if let Some(tx) = &r.tx {
                // No watcher is not an error.
                let _ = tx.send(ev);
            }
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every critical section
/// leaves the data consistent).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then stops taking work (workers
/// finish the investigation they are on). `culprit serve` passes [`signal`]; tests bind
/// `127.0.0.1:0` and pass a future of their own.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io { path: "listener".into(), source })?;
    tracing::info!(%addr, "culprit serve listening");
    // Our own accept loop on hyper (axum::serve sets no header timeout): a request's headers
    // must arrive within `http.header_timeout_seconds` of the connection or of the previous
    // response, so half-sent requests and idle keep-alive connections do not pile up.
    let header_timeout = std::time::Duration::from_secs(app.config().http.header_timeout_seconds.max(1));
    let router = api::router(app.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Finished connections' tasks are collected as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // In-flight requests finish; event streams are cut after a grace period.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    worker::stop(&app);
    Ok(())
}

/// Resolves at Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
