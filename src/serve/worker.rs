//! Investigations in the background: worker threads take queued investigations, read the window
//! around the alert, run the triage (and the agent for severe alerts), re-rank with the
//! feedback-trained weights, stream each agent step to watchers and save the result.

use super::{lock, now_ms, sources, App, ChatSession, Event, Job, Mode, Record, Registry, Status};
use crate::investigate::policy::{AgentPolicy, BuildError};
use crate::investigate::tools::PastIncidents;
use crate::investigate::Trigger;
use crate::pipeline::{self, Deps, PipelineConfig};
use crate::report::Verdict;
use crate::rerank::{Example, Label, Reranker};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Starts `n` worker threads.
pub fn spawn(app: &Arc<App>, n: usize) -> Result<(), super::ServeError> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..n {
        let (app, rx) = (Arc::downgrade(app), rx.clone());
        std::thread::Builder::new()
            .name(format!("culprit-worker-{i}"))
            .stack_size(16 << 20)
            .spawn(move || loop {
                let job = match lock(&rx).recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let Some(app) = app.upgrade() else { return };
                app.metrics.queue.dec();
                run(&app, job);
            })
            .map_err(|e| super::ServeError::Setup(format!("starting a worker: {e}")))?;
    }
    *lock(&app.jobs) = Some(tx);
    // Investigations a restart interrupted are queued again.
    let pending: Vec<String> = {
        let reg = lock(&app.registry);
        reg.order
            .iter()
            .filter(|id| {
                reg.records.get(*id).is_some_and(|r| matches!(r.summary.status, Status::Queued | Status::Running))
            })
            .cloned()
            .collect()
    };
    for id in pending {
        enqueue(app, id);
    }
    Ok(())
}

/// Closes the queue: workers finish their investigation and stop.
pub fn stop(app: &App) {
    lock(&app.jobs).take();
}

pub fn enqueue(app: &App, id: String) {
    if let Some(tx) = lock(&app.jobs).as_ref() {
        app.metrics.queue.inc();
        if tx.send(Job { id, received: std::time::Instant::now() }).is_err() {
            app.metrics.queue.dec();
        }
    }
}

fn set_status(app: &App, id: &str, status: Status) {
    {
        let mut reg = lock(&app.registry);
        if let Some(r) = reg.records.get_mut(id) {
            r.summary.status = status;
            r.summary.updated_ms = now_ms();
        }
    }
    app.emit(id, "status", json!({ "status": status }));
}

fn run(app: &Arc<App>, job: Job) {
    let id = job.id.clone();
    let Some((alert, mode)) = lock(&app.registry).records.get(&id).map(|r| (r.alert.clone(), r.summary.mode)) else {
        return;
    };
    set_status(app, &id, Status::Running);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| investigate(app, &id, &alert, mode, &job)));
    let outcome =
        result.map_err(|_| "the investigation panicked (a bug: please report it with the audit line)".to_string());
    let seconds = job.received.elapsed().as_secs_f64();
    let status = match &outcome {
        Ok(NoData(true)) => Status::NoData,
        Ok(_) => Status::Done,
        Err(_) => Status::Failed,
    };
    let label = match status {
        Status::NoData => "no_data",
        Status::Done => "done",
        _ => "failed",
    };
    app.metrics.investigations.with_label_values(&[mode.as_str(), label]).inc();
    app.metrics.latency.with_label_values(&[mode.as_str()]).observe(seconds);
    let (top, again) = {
        let mut reg = lock(&app.registry);
        let Some(r) = reg.records.get_mut(&id) else { return };
        r.summary.status = status;
        r.summary.updated_ms = now_ms();
        r.error = outcome.as_ref().err().cloned();
        let again = std::mem::take(&mut r.rerun_pending);
        if again {
            r.requeue();
        }
        (r.summary.top.clone(), again)
    };
    app.audit.record(
        "culprit",
        "system",
        "investigation.finished",
        &id,
        json!({ "status": status, "mode": mode.as_str(), "seconds": seconds, "top": top, "error": outcome.as_ref().err() }),
    );
    app.emit(&id, "done", json!({ "status": status, "top": top }));
    save(app, &id);
    if status == Status::Done {
        super::notify::investigation_done(app, &id);
    }
    if again {
        app.emit(&id, "status", json!({ "status": Status::Queued }));
        enqueue(app, id);
    }
}

/// Whether an investigation found nothing of its alerting service (its report's verdict is then
/// `insufficient_data`).
struct NoData(bool);

/// Reads the window, runs the pipeline and keeps the report.
fn investigate(app: &Arc<App>, id: &str, alert: &crate::model::Alert, mode: Mode, job: &Job) -> NoData {
    let cfg = app.config();
    // Let the moment's telemetry arrive (exported, scraped) before reading it.
    let settle = Duration::from_secs(cfg.window.settle_seconds);
    if let Some(wait) = settle.checked_sub(job.received.elapsed()) {
        std::thread::sleep(wait);
    }
    let read_ms = now_ms();
    let window = window(&cfg, alert, read_ms);
    let incident = gather(app, &cfg, id, alert, window);
    let trigger = if mode == Mode::Agent { Trigger::Always } else { Trigger::Never };
    let pcfg = PipelineConfig { agent: super::config::agent_config(&cfg), trigger, ..Default::default() };
    let mut policy = (mode == Mode::Agent).then(|| {
        super::config::policy_spec(&cfg)
            .map_err(BuildError::from)
            .and_then(|spec| AgentPolicy::build(&spec))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the configured policy is unavailable; using rules");
                AgentPolicy::Rules(crate::investigate::rules::Rules)
            })
    });
    let reranker = app.reranker.read().map(|r| r.clone()).unwrap_or(None);
    let (app2, id2) = (app.clone(), id.to_string());
    let deps = Deps {
        kb: app.kb.as_ref().map(|k| k as &dyn PastIncidents),
        policy: policy.as_mut().map(AgentPolicy::as_policy),
        reranker: reranker.as_ref(),
        on_step: Some(Box::new(move |step| app2.emit(&id2, "step", serde_json::to_value(step).unwrap_or_default()))),
    };
    let out = pipeline::run(&incident, &pcfg, deps);
    if let Some(t) = out.transcript() {
        app.metrics.tool_errors.inc_by(t.tool_errors as u64);
        app.metrics.llm_tokens.inc_by(t.tokens);
    }
    let top = out.top();
    let pipeline::Outcome { triage, mut report, features, .. } = out;
    let t = &incident.telemetry;
    let alert_service_seen = t.metrics.iter().any(|x| x.service == alert.service)
        || t.spans.iter().any(|x| x.service == alert.service)
        || t.logs.records.iter().any(|x| x.service == alert.service);
    let no_data = report.verdict == Verdict::InsufficientData && !alert_service_seen;
    if no_data {
        let time = |t| crate::ingest::time::rfc3339(t, crate::ingest::time::SecondsFormat::Secs).unwrap_or_default();
        report.data.problems.insert(
            0,
            format!(
                "no data received for {} in the window {} to {}: send its telemetry (OTLP to /v1/traces, /v1/logs, \
                 /v1/metrics) or label its Prometheus series with it; the next alert in this group re-runs the \
                 investigation once data has arrived",
                alert.service,
                time(window.from),
                time(window.to)
            ),
        );
    }
    lock(&app.cases).put(id.to_string(), Arc::new((incident, triage)));
    let mut reg = lock(&app.registry);
    if let Some(r) = reg.records.get_mut(id) {
        r.summary.top = top;
        r.report = Some(report);
        r.features = features;
        r.read_ms = read_ms;
    }
    NoData(no_data)
}

/// The window an investigation of `alert` reads when run at `now`.
fn window(cfg: &super::config::ServeConfig, alert: &crate::model::Alert, now: crate::model::Ts) -> sources::Window {
    let w = &cfg.window;
    let to = (alert.time + w.after_seconds as i64 * 1000).min(now.max(alert.time));
    sources::Window {
        from: alert.time - w.before_seconds as i64 * 1000,
        to: to + 1,
        analysis_start: alert.time - w.analysis_seconds as i64 * 1000,
    }
}

/// The telemetry of `window`, from the store and Prometheus, as an incident.
fn gather(
    app: &App,
    cfg: &super::config::ServeConfig,
    id: &str,
    alert: &crate::model::Alert,
    window: sources::Window,
) -> crate::model::Incident {
    let mut gathered = sources::Gathered::default();
    app.runtime.block_on(sources::stored(&app.store, window, &mut gathered));
    if let Some(p) = &cfg.prometheus {
        let services = sources::services(alert, None, &gathered);
        app.runtime.block_on(sources::prometheus(&app.http, p, &services, window, &mut gathered));
    }
    sources::incident(id, alert, window, gathered, None)
}

/// The incident and triage of a finished investigation, for chat: from memory, or rebuilt from
/// the store (the window it read, up to when it read it) after a restart or an eviction. None
/// when the investigation is unknown or has not run yet. Blocks: call it off the async runtime.
pub fn case(app: &App, id: &str) -> Option<Arc<(crate::model::Incident, crate::triage::Triage)>> {
    if let Some(c) = lock(&app.cases).get(id) {
        return Some(c);
    }
    let (alert, read_ms) = {
        let reg = lock(&app.registry);
        let r = reg.records.get(id)?;
        (r.summary.status.finished() && r.read_ms > 0).then(|| (r.alert.clone(), r.read_ms))?
    };
    let cfg = app.config();
    let incident = gather(app, &cfg, id, &alert, window(&cfg, &alert, read_ms));
    let pcfg = PipelineConfig::default();
    let triage = pipeline::start(&incident, &pcfg).into_triage();
    let case = Arc::new((incident, triage));
    lock(&app.cases).put(id.to_string(), case.clone());
    tracing::info!(id, "chat: the investigation's data was read again from the store");
    Some(case)
}

/// Writes an investigation to `<data_dir>/investigations/<id>.json` (atomically: a temporary
/// file of its own, renamed; one save at a time, so an older snapshot never lands after a newer
/// one). Returns whether it was written (failures are logged).
pub fn save(app: &App, id: &str) -> bool {
    static SAVING: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut n = lock(&SAVING);
    *n += 1;
    let dir = app.config().data_dir.join("investigations");
    let text = {
        let reg = lock(&app.registry);
        let Some(r) = reg.records.get(id) else { return false };
        serde_json::to_string(r)
    };
    let result = text.map_err(|e| e.to_string()).and_then(|t| {
        let tmp = dir.join(format!("{id}.json.{}.tmp", *n));
        std::fs::write(&tmp, t).and_then(|_| std::fs::rename(&tmp, dir.join(format!("{id}.json")))).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })
    });
    if let Err(e) = &result {
        tracing::error!(id, error = %e, "could not save the investigation");
    }
    result.is_ok()
}

/// Writes a chat session to `<data_dir>/sessions/<id>.json` (atomically, through `chat::save`).
pub fn save_session(app: &App, s: &ChatSession) {
    let path = app.config().data_dir.join("sessions").join(format!("{}.json", s.id));
    if let Err(e) = crate::investigate::chat::save(&path, s) {
        tracing::error!(error = %e, "could not save the chat session");
    }
}

/// Saved investigations, oldest first; unreadable files are logged and left alone.
pub fn load_records(dir: &Path) -> Registry {
    let mut reg = Registry::default();
    let mut records: Vec<Record> = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Record>(&t).map_err(|e| e.to_string()))
        {
            Ok(r) => records.push(r),
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "saved investigation not loaded"),
        }
    }
    records
        .sort_by(|a, b| a.summary.created_ms.cmp(&b.summary.created_ms).then_with(|| a.summary.id.cmp(&b.summary.id)));
    for mut r in records {
        r.tx = Some(tokio::sync::broadcast::channel(256).0);
        reg.insert(r);
    }
    reg
}

pub fn load_sessions(dir: &Path) -> std::collections::HashMap<String, ChatSession> {
    let mut out = std::collections::HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<ChatSession>(&t).map_err(|e| e.to_string()))
        {
            Ok(s) => {
                out.insert(s.id.clone(), s);
            }
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "saved chat session not loaded"),
        }
    }
    out
}

/// The re-ranker's training examples: one per investigation with feedback (its latest verdict).
pub fn examples(reg: &Registry) -> Vec<Example> {
    reg.order
        .iter()
        .filter_map(|id| reg.records.get(id))
        .filter(|r| !r.features.is_empty())
        .filter_map(|r| {
            let f = r.feedback_items.last()?;
            let label = match f.verdict.as_str() {
                "confirm" => Label::Confirm,
                "reject" => Label::Reject,
                _ => Label::Correct { service: f.service.clone() },
            };
            Some(Example { candidates: r.features.clone(), label })
        })
        .collect()
}

/// Refits the re-ranker on every investigation with feedback and saves it.
pub fn retrain(app: &App) -> Reranker {
    let ex = examples(&lock(&app.registry));
    let r = Reranker::fit(&ex, 1e-3);
    if let Err(e) = r.save(&app.config().data_dir.join("reranker.json")) {
        tracing::error!(error = %e, "re-ranker not saved");
    }
    if let Ok(mut slot) = app.reranker.write() {
        *slot = Some(r.clone());
    }
    r
}

/// The events of an investigation so far, and a receiver for the ones to come (None once it is
/// done).
pub fn watch(app: &App, id: &str) -> Option<(Vec<Event>, Option<tokio::sync::broadcast::Receiver<Event>>)> {
    let reg = lock(&app.registry);
    let r = reg.records.get(id)?;
    let finished = r.summary.status.finished();
    Some((r.events.clone(), if finished { None } else { r.tx.as_ref().map(|t| t.subscribe()) }))
}
