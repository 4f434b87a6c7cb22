//! Notifications: an investigation's summary to Slack-compatible and generic webhooks, retried
//! with backoff (1 s, 2 s, 4 s) on failures and 5xx answers; a notification that still fails is
//! logged and counted in `culprit_notify_failures_total`, never fatal.

use super::config::{NotifyConfig, NotifyKind};
use super::{lock, App};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const ATTEMPTS: u32 = 4;

/// The text of the summary: the alert, the top cause with its confidence and chain, the action.
pub fn text(r: &super::Record) -> String {
    let head = format!("[{}] {} ({:?})", r.summary.id, r.summary.title, r.summary.severity);
    let Some(report) = &r.report else { return format!("{head}: investigation {:?}", r.summary.status) };
    match (report.root_causes.first(), &r.summary.top) {
        (Some(rc), Some(top)) => format!(
            "{head}: root cause {} ({}), confidence {:.0}%; chain {}; {}",
            top.service,
            top.kind,
            top.confidence * 100.0,
            rc.chain.join(" → "),
            rc.action
        ),
        _ => format!("{head}: no root cause found with enough confidence"),
    }
}

fn body(kind: NotifyKind, r: &super::Record) -> Value {
    match kind {
        NotifyKind::Slack => json!({ "text": text(r) }),
        NotifyKind::Generic => json!({
            "id": r.summary.id,
            "title": r.summary.title,
            "service": r.summary.service,
            "severity": r.summary.severity,
            "status": r.summary.status,
            "mode": r.summary.mode,
            "top": r.summary.top,
            "text": text(r),
        }),
    }
}

/// Sends the finished investigation `id` to every configured webhook whose severity it reaches.
pub fn investigation_done(app: &Arc<App>, id: &str) {
    let targets: Vec<NotifyConfig> = app.config().notify;
    if targets.is_empty() {
        return;
    }
    let Some(record) = lock(&app.registry).records.get(id).cloned() else { return };
    let redactor = super::config::redactor(&app.config()).unwrap_or_default();
    for t in targets.into_iter().filter(|t| record.summary.severity >= t.min_severity) {
        let (app, payload, id) = (app.clone(), redactor.apply_json(&body(t.kind, &record)), id.to_string());
        app.runtime.clone().spawn(async move {
            match send(&app.http, &t.url, &payload).await {
                Ok(attempts) => tracing::info!(id, host = %host(&t.url), attempts, "notified"),
                Err(e) => {
                    app.metrics.notify_failures.inc();
                    tracing::warn!(id, host = %host(&t.url), error = %e, "notification failed after retries");
                }
            }
        });
    }
}

/// The host of a webhook URL, for logs: the rest of a Slack webhook URL is its secret.
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or("").rsplit('@').next().unwrap_or("")
}

/// A notification that did not get through.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("HTTP {0} (not retried)")]
    Refused(reqwest::StatusCode),
    #[error("{attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// Posts `payload` (its strings redacted: an alert title may carry a secret), retrying on
/// transport errors and 5xx/429 answers; returns the attempts made.
pub async fn send(http: &reqwest::Client, url: &str, payload: &Value) -> Result<u32, NotifyError> {
    let payload = &crate::redact::guard().apply_json(payload);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let body = payload.to_string();
        let r = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => return Ok(attempt),
            Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                last = format!("HTTP {}", resp.status())
            }
            Ok(resp) => return Err(NotifyError::Refused(resp.status())),
            // Without the URL: a webhook URL is a secret.
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
    }
    Err(NotifyError::GaveUp { attempts: ATTEMPTS, last })
}
