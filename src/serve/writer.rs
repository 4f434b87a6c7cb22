//! The one writer of received telemetry. OTLP requests and change events that arrive within 200
//! ms of the last commit go into the next one together (group commit, up to a size), so a steady
//! feed is five LanceDB commits a second whatever its rate; between commits, on a schedule, the
//! store is compacted and its old versions removed. A request is answered once its batch is committed, so a 2xx still means "stored".
//!
//! Without this, every request was a commit, each commit a new version with its own files, and
//! nothing merged or removed them: the store, and the time to open it, grew with every request.

use super::App;
use crate::store::{EventRow, Store, EVENTS};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Rows in one commit at most.
const MAX_BATCH_ROWS: usize = 20_000;
/// Commits start at least this far apart: a steady feed (50 requests a second) becomes five
/// commits a second, not fifty; a request after a quiet spell is committed at once.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Requests waiting for the writer at most (further ones wait to be queued).
const QUEUE: usize = 1_024;

/// Why received telemetry was not stored (the sender is asked to retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Store(String),
    #[error("the store writer has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<(), WriteError>>;

/// The sender side, shared by the routes.
pub struct Writer {
    tx: mpsc::Sender<(Vec<EventRow>, Reply)>,
}

/// When the store is maintained: after this many commits or this long since the last pass,
/// whichever comes first; versions older than `keep` are removed.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub every_commits: u64,
    pub every: Duration,
    pub keep: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::from(&super::config::StoreMaintenance::default())
    }
}

/// `[store_maintenance]`, at least one commit and one second apart.
impl From<&super::config::StoreMaintenance> for Schedule {
    fn from(m: &super::config::StoreMaintenance) -> Self {
        Schedule {
            every_commits: m.every_commits.max(1),
            every: Duration::from_secs(m.every_seconds.max(1)),
            keep: Duration::from_secs(m.keep_seconds),
        }
    }
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store, schedule: Schedule, app: std::sync::Weak<App>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, schedule, rx, app));
        Writer { tx }
    }

    /// Stores `rows`; returns once they are committed (or failed to be).
    pub async fn write(&self, rows: Vec<EventRow>) -> Result<(), WriteError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.tx.send((rows, reply)).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run(
    store: Store,
    schedule: Schedule,
    mut rx: mpsc::Receiver<(Vec<EventRow>, Reply)>,
    app: std::sync::Weak<App>,
) {
    let (mut commits, mut last) = (0u64, Instant::now());
    let mut last_commit = Instant::now().checked_sub(MIN_INTERVAL).unwrap_or_else(Instant::now);
    loop {
        // The first request, or a timer tick for the schedule.
        let first = match tokio::time::timeout(schedule.every, rx.recv()).await {
            Ok(Some(first)) => Some(first),
            Ok(None) => return,
            Err(_) => None,
        };
        if let Some(first) = first {
            // Group commit: whatever arrives until MIN_INTERVAL after the last commit began goes
            // into this one (no waiting for a request after a quiet spell).
            let (mut rows, mut replies) = (first.0, vec![first.1]);
            let until = tokio::time::Instant::from_std(last_commit + MIN_INTERVAL);
            while rows.len() < MAX_BATCH_ROWS {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some((more, reply))) => {
                        rows.extend(more);
                        replies.push(reply);
                    }
                    _ => break,
                }
            }
            last_commit = Instant::now();
            let result = store.add_events(&rows).await.map_err(|e| WriteError::Store(e.to_string()));
            commits += 1;
            for r in replies {
                // A request whose client went away is not an error.
                let _ = r.send(result.clone());
            }
        }
        if commits >= schedule.every_commits || (commits > 0 && last.elapsed() >= schedule.every) {
            maintain(&store, schedule.keep, &app).await;
            (commits, last) = (0, Instant::now());
        }
    }
}

/// One pass over the events table (this task is its only writer) and the others.
async fn maintain(store: &Store, keep: Duration, app: &std::sync::Weak<App>) {
    let t = Instant::now();
    match store.maintain(EVENTS, keep, true).await {
        Ok(m) => tracing::info!(
            fragments_removed = m.fragments_removed,
            versions_removed = m.versions_removed,
            bytes_removed = m.bytes_removed,
            ms = t.elapsed().as_millis() as u64,
            "store maintained"
        ),
        Err(e) => tracing::warn!(error = %e, "store maintenance failed; retried on the next pass"),
    }
    if let Some(app) = app.upgrade() {
        app.metrics.store_maintenance.inc();
        refresh(&app).await;
    }
}

/// Updates the store gauges of `/metrics`.
pub async fn refresh(app: &Arc<App>) {
    for table in [crate::store::EVENTS, crate::store::INCIDENTS, crate::store::FEEDBACK] {
        match app.store.health(table).await {
            Ok(h) => {
                let m = &app.metrics;
                m.store_fragments.with_label_values(&[table]).set(h.fragments as i64);
                m.store_versions.with_label_values(&[table]).set(h.versions as i64);
                m.store_rows.with_label_values(&[table]).set(h.rows as i64);
                m.store_bytes.with_label_values(&[table]).set(h.bytes as i64);
            }
            Err(e) => tracing::debug!(table, error = %e, "store health not read"),
        }
    }
}
