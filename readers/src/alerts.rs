//! Alert payloads: Prometheus Alertmanager's webhook (version 4) and a generic JSON alert, both
//! turned into [`Incoming`] alerts with a fingerprint (for deduplication) and a group (the
//! service, for grouping).

use crate::model::{Alert, Severity, Ts};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One alert as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub alert: Alert,
    /// Identical alerts share it (Alertmanager's fingerprint, or a hash of the labels).
    pub fingerprint: String,
    /// `false` for an Alertmanager "resolved" notification.
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    pub alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// A generic alert: `{"service", "signal", "severity", "title", "time"?, "labels"?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericAlert {
    pub service: String,
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// Unix ms, Unix seconds or RFC 3339; default now.
    #[serde(default)]
    pub time: Option<serde_json::Value>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The usual severity spellings; unknown ones are warnings.
pub fn severity(label: Option<&str>) -> Severity {
    match label.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("critical" | "crit" | "page" | "p1" | "sev1" | "fatal" | "emergency") => Severity::Critical,
        Some("high" | "error" | "major" | "p2" | "sev2") => Severity::High,
        Some("info" | "informational" | "low" | "none" | "p4" | "p5") => Severity::Info,
        _ => Severity::Warning,
    }
}

/// The signal an alert is about, from a `signal` label or the alert's name.
pub fn signal(labels: &BTreeMap<String, String>) -> String {
    if let Some(s) = labels.get("signal").filter(|s| !s.is_empty()) {
        return s.clone();
    }
    let name = labels.get("alertname").map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    for (needle, signal) in [
        ("error", "errors"),
        ("5xx", "errors"),
        ("latency", "latency"),
        ("slow", "latency"),
        ("cpu", "cpu"),
        ("mem", "mem"),
        ("saturat", "saturation"),
    ] {
        if name.contains(needle) {
            return signal.to_string();
        }
    }
    "errors".to_string()
}

const SERVICE_LABELS: &[&str] = &["service", "service_name", "app", "job", "container", "pod"];

fn service(labels: &BTreeMap<String, String>) -> Option<String> {
    SERVICE_LABELS.iter().find_map(|k| labels.get(*k).filter(|v| !v.trim().is_empty()).cloned())
}

fn fingerprint_of(labels: &BTreeMap<String, String>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Parses a time given as Unix ms, Unix seconds or RFC 3339.
pub fn time_of(v: &serde_json::Value) -> Option<Ts> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(crate::ingest::time::from_number),
        serde_json::Value::String(s) => crate::ingest::time::parse_time_str(s),
        _ => None,
    }
}

/// An alert that cannot be read, naming the field (the webhook is answered 400 with it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertError {
    #[error("alerts[{index}]: no service label (one of {labels})")]
    NoService { index: usize, labels: String },
    #[error("service: empty")]
    EmptyService,
    #[error("time: not a time: {0}")]
    Time(String),
    #[error("{field}: {time} is before 2000 or more than {hours} h ahead of now (window.accept_hours)")]
    TooFar { field: String, time: String, hours: i64 },
}

/// When alerts may be timed: up to `reach` ms after `now`, and after 2000-01-01. A firing alert
/// keeps its `startsAt` while Alertmanager resends it, so an old one is not refused.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Ts,
    pub reach: Ts,
}

/// 2000-01-01T00:00:00Z in Unix ms: an alert before it is a clock gone wrong.
const EARLIEST: Ts = 946_684_800_000;

impl Clock {
    fn check(self, t: Ts, field: String) -> Result<Ts, AlertError> {
        if t < EARLIEST || t > self.now.saturating_add(self.reach) {
            let time = crate::ingest::time::rfc3339(t, crate::ingest::time::SecondsFormat::Secs)
                .unwrap_or_else(|| format!("{t} ms"));
            return Err(AlertError::TooFar { field, time, hours: self.reach / crate::model::HOUR });
        }
        Ok(t)
    }
}

/// The alerts of an Alertmanager webhook, each on its own: an alert without a service label is an
/// error naming its index (Alertmanager sends whatever labels the rule has), and the others of
/// the group are read all the same (Alertmanager does not resend a group it got a 4xx for).
pub fn from_alertmanager(p: &AlertmanagerPayload, clock: Clock) -> Vec<Result<Incoming, AlertError>> {
    let now = clock.now;
    if let Some(v) = &p.version {
        if v != "4" {
            tracing::warn!(version = %v, "Alertmanager webhook version other than 4; reading it as 4");
        }
    }
    let mut out = Vec::new();
    for (i, a) in p.alerts.iter().enumerate() {
        let mut labels = p.common_labels.clone();
        labels.extend(a.labels.clone());
        let Some(svc) = service(&labels) else {
            out.push(Err(AlertError::NoService { index: i, labels: SERVICE_LABELS.join(", ") }));
            continue;
        };
        let annotations: BTreeMap<String, String> =
            p.common_annotations.clone().into_iter().chain(a.annotations.clone()).collect();
        let time =
            a.starts_at.as_deref().and_then(crate::ingest::time::parse_time_str).filter(|t| *t > 0).unwrap_or(now);
        let time = match clock.check(time, format!("alerts[{i}].startsAt")) {
            Ok(t) => t,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        let title = annotations
            .get("summary")
            .or_else(|| annotations.get("description"))
            .or_else(|| labels.get("alertname"))
            .cloned()
            .unwrap_or_else(|| format!("alert on {svc}"));
        let firing = a.status.as_deref().or(p.status.as_deref()).is_none_or(|s| s != "resolved");
        out.push(Ok(Incoming {
            alert: Alert {
                time,
                service: svc,
                signal: signal(&labels),
                severity: severity(labels.get("severity").map(String::as_str)),
                title,
            },
            fingerprint: a.fingerprint.clone().filter(|f| !f.is_empty()).unwrap_or_else(|| fingerprint_of(&labels)),
            firing,
            labels,
        }));
    }
    out
}

pub fn from_generic(g: GenericAlert, clock: Clock) -> Result<Incoming, AlertError> {
    if g.service.trim().is_empty() {
        return Err(AlertError::EmptyService);
    }
    let time = match &g.time {
        None => clock.now,
        Some(v) => clock.check(time_of(v).ok_or_else(|| AlertError::Time(v.to_string()))?, "time".into())?,
    };
    let mut labels = g.labels.clone();
    labels.insert("service".into(), g.service.clone());
    if let Some(s) = &g.signal {
        labels.insert("signal".into(), s.clone());
    }
    Ok(Incoming {
        alert: Alert {
            time,
            service: g.service.clone(),
            signal: signal(&labels),
            severity: severity(g.severity.as_deref()),
            title: g.title.unwrap_or_else(|| format!("{} on {}", signal(&labels), g.service)),
        },
        fingerprint: fingerprint_of(&labels),
        firing: true,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_payloads_become_alerts() {
        let body = r#"{"version":"4","status":"firing","receiver":"culprit","groupLabels":{"alertname":"FrontendErrorRate"},
            "commonLabels":{"alertname":"FrontendErrorRate","severity":"critical"},"commonAnnotations":{"summary":"frontend errors above 5%"},
            "alerts":[{"status":"firing","labels":{"service":"frontend"},"annotations":{},"startsAt":"2026-11-22T20:00:00Z","fingerprint":"abc"},
                      {"status":"resolved","labels":{"job":"checkout","alertname":"CheckoutLatency","severity":"warning"},"startsAt":"2026-11-22T20:01:00Z"}]}"#;
        let p: AlertmanagerPayload = serde_json::from_str(body).unwrap();
        let clock = Clock { now: 1_795_377_600_000, reach: crate::model::HOUR };
        let a: Vec<Incoming> = from_alertmanager(&p, clock).into_iter().map(Result::unwrap).collect();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].alert.service.as_str(), a[0].alert.signal.as_str(), a[0].alert.severity),
            ("frontend", "errors", Severity::Critical)
        );
        assert_eq!(a[0].alert.title, "frontend errors above 5%");
        assert_eq!(a[0].alert.time, 1_795_377_600_000);
        assert_eq!(a[0].fingerprint, "abc");
        assert!(a[0].firing && !a[1].firing);
        assert_eq!(
            (a[1].alert.service.as_str(), a[1].alert.signal.as_str(), a[1].alert.severity),
            ("checkout", "latency", Severity::Warning)
        );
        // One alert without a service label is its own error; the group's other alerts stand.
        let mixed: AlertmanagerPayload = serde_json::from_str(
            r#"{"alerts":[{"labels":{"alertname":"X"}},{"labels":{"alertname":"Y","service":"cart"}}]}"#,
        )
        .unwrap();
        let a = from_alertmanager(&mixed, clock);
        assert!(a[0].as_ref().unwrap_err().to_string().starts_with("alerts[0]: no service label"));
        assert_eq!(a[1].as_ref().map(|i| i.alert.service.as_str()), Ok("cart"));
    }

    #[test]
    fn generic_alerts_need_a_service_and_a_readable_time() {
        let g: GenericAlert = serde_json::from_str(r#"{"service":"api","severity":"high","time":1700000000}"#).unwrap();
        let clock = Clock { now: 1_700_000_100_000, reach: crate::model::HOUR };
        let a = from_generic(g, clock).unwrap();
        assert_eq!((a.alert.time, a.alert.severity), (1_700_000_000_000, Severity::High));
        let g: GenericAlert = serde_json::from_str(r#"{"service":"api","time":"yesterday"}"#).unwrap();
        assert!(from_generic(g, clock).unwrap_err().to_string().starts_with("time: not a time"));
        // The year 9999 and 1990 are refused, naming the field; a day ago (a long-firing alert
        // resent) is not.
        for far in ["253402300799", "631152000"] {
            let g: GenericAlert = serde_json::from_str(&format!(r#"{{"service":"api","time":{far}}}"#)).unwrap();
            let e = from_generic(g, clock).unwrap_err().to_string();
            assert!(e.starts_with("time: ") && e.contains("more than 1 h ahead of now"), "{e}");
        }
        let g: GenericAlert = serde_json::from_str(r#"{"service":"api","time":1699900000}"#).unwrap();
        assert!(from_generic(g, clock).is_ok());
        let far: AlertmanagerPayload =
            serde_json::from_str(r#"{"alerts":[{"labels":{"service":"a"},"startsAt":"9999-12-31T23:59:59Z"}]}"#)
                .unwrap();
        let e = from_alertmanager(&far, clock).remove(0).unwrap_err().to_string();
        assert!(e.starts_with("alerts[0].startsAt: 9999-12-31T23:59:59Z"), "{e}");
        assert!(serde_json::from_str::<GenericAlert>(r#"{"service":"api","sevrity":"high"}"#).is_err());
    }
}
