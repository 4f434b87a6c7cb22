//! Per-source anomaly detection: what in the telemetry around the alert is not normal, where, and
//! since when.
//!
//! Each detector compares the incident period with a reference (the incident's separate baseline,
//! or the data before `analysis_start`) and emits [`Anomaly`] values with a strength and an onset
//! time. Onsets matter as much as strengths: later stages order causes before effects by them.
//! Detectors are pure functions of the incident; they never fail, they skip what they cannot judge
//! and say so in [`Detection::unchecked`].

pub mod changes;
pub mod logs;
pub mod metrics;
pub mod patterns;
pub mod stats;
pub mod traces;

use crate::model::{Incident, ReadReport, Ts};
use serde::{Deserialize, Serialize};

/// Where an anomaly was seen. A closed set: adding a source touches every stage on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Metric,
    Log,
    Trace,
    Change,
    /// Not observed but inferred from other services' signals (see `correlate::infer`): a
    /// dependency that every waiting caller has in common.
    Inferred,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Metric => "metric",
            Source::Log => "log",
            Source::Trace => "trace",
            Source::Change => "change",
            Source::Inferred => "inferred",
        }
    }
}

/// One thing that is not normal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub service: String,
    pub source: Source,
    /// What is anomalous: a canonical indicator (`cpu`, `mem`, `latency`, `errors`, `traffic`,
    /// `log_errors`, `new_log_template`, a changed config key, `version`, …).
    pub indicator: String,
    /// The raw signal name (metric name, operation, template, change description).
    pub signal: String,
    /// When the anomaly started (Unix ms).
    pub onset: Ts,
    /// When it was last seen (`Ts::MAX` while it lasts or when the source cannot tell). A blip
    /// that is over cannot cause what starts after it.
    pub end: Ts,
    /// Robust z-score-like strength; ≥ the detector's threshold for every emitted anomaly.
    pub score: f64,
    /// +1 when the signal rose, −1 when it fell, 0 when not applicable (changes, new templates).
    pub direction: i8,
    /// One human-readable line of evidence with numbers.
    pub evidence: String,
    /// Its figure over its own window (from onset to its end, or to the end of the data) beside
    /// the baseline's, with their unit; None where there is no one figure (a change, a log
    /// template, an inferred suspect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<Measure>,
}

/// An anomaly's figure beside its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// The median over the anomaly's own window.
    pub value: f64,
    /// The baseline's median.
    pub baseline: f64,
    /// `ms`, `s`, `%`, `ratio`, `bytes`, `/s`, `count`, or empty when the source does not say.
    pub unit: String,
}

/// Thresholds and windows of the detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectConfig {
    /// Robust z above which a metric or trace statistic is anomalous.
    pub z_threshold: f64,
    /// Consecutive points that must stay anomalous for a metric to count (spikes do not).
    pub sustain: usize,
    /// Changes this long before `analysis_start` are still candidates.
    pub change_lookback: Ts,
    /// Drain similarity threshold for log template mining.
    pub drain_similarity: f64,
    /// Minimum reference points for a series to be judged.
    pub min_reference_points: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            z_threshold: 4.0,
            sustain: 2,
            change_lookback: 30 * crate::model::MINUTE,
            drain_similarity: 0.5,
            min_reference_points: 5,
        }
    }
}

/// Everything the detectors found, plus what they could not judge.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Detection {
    pub anomalies: Vec<Anomaly>,
    /// Service call edges (caller, callee) mined from spans.
    pub call_edges: Vec<(String, String)>,
    /// Signals skipped for lack of reference data, with the reason.
    pub unchecked: Vec<String>,
    /// Log lines seen and templates mined, for the report.
    pub log_lines: u64,
    pub log_templates: usize,
    /// Records that could not be read while streaming logs.
    pub read_report: ReadReport,
    /// The latest time seen in the incident period (metrics, spans, logs): "now" for the data.
    pub data_end: Ts,
    /// The latest time of each source that has any (metrics, logs, spans): where each source's
    /// view ends, which may be well before `data_end` (an export with three minutes of logs and
    /// ten of metrics).
    #[serde(default)]
    pub source_end: std::collections::BTreeMap<Source, Ts>,
    /// Services that wrote any log line read (with metrics and spans, what the data covers).
    #[serde(default)]
    pub log_services: std::collections::BTreeSet<String>,
    /// The logs as the detector read them (templates and counts per service): the agent's
    /// `log_search` answers from it. Not saved: a reloaded investigation reads the logs once more.
    #[serde(skip)]
    pub logs: Option<std::sync::Arc<logs::LogView>>,
}

impl Detection {
    /// Where `source`'s data ends ([`Detection::source_end`]), else where all data ends.
    pub fn end_of(&self, source: Source) -> Ts {
        self.source_end.get(&source).copied().unwrap_or(self.data_end)
    }
}

/// Runs every detector on the incident.
pub fn detect(incident: &Incident, cfg: &DetectConfig) -> Detection {
    let _span = tracing::info_span!("detect", incident = %incident.id).entered();
    let mut out = Detection::default();
    let t = &incident.telemetry;
    let metric_end = t.metrics.iter().filter_map(|s| s.points.last().map(|p| p.0)).max();
    let span_end = t.spans.iter().map(|s| s.start.saturating_add(s.duration_ms as Ts)).max();
    out.data_end = metric_end.into_iter().chain(span_end).max().unwrap_or(incident.alert.time);
    out.source_end.extend(metric_end.map(|e| (Source::Metric, e)));
    out.source_end.extend(span_end.map(|e| (Source::Trace, e)));
    // Logs are the bulk of the work (streamed, template-mined); the other sources run beside them.
    let mut from_logs = Detection { data_end: out.data_end, ..Detection::default() };
    // Event patterns are learned only from a separate fault-free capture (Nezha's
    // `construct_data`, the steady state before ChangeRCA's releases): a reference cut from the
    // same stream just before the incident is short and may already hold the fault's first
    // requests. Without one, the lines are not even gathered.
    let learn = incident.baseline.is_some();
    let mut events = patterns::SpanEvents::default();
    rayon::join(
        || {
            logs::detect(incident, cfg, &mut from_logs, &mut |r, current| {
                if learn {
                    events.log(r, current)
                }
            })
        },
        || {
            metrics::detect(incident, cfg, &mut out);
            traces::detect(incident, cfg, &mut out);
            changes::detect(incident, cfg, &mut out);
        },
    );
    out.anomalies.append(&mut from_logs.anomalies);
    out.unchecked.append(&mut from_logs.unchecked);
    out.log_lines = from_logs.log_lines;
    out.log_templates = from_logs.log_templates;
    out.read_report = from_logs.read_report;
    out.logs = from_logs.logs.take();
    out.data_end = out.data_end.max(from_logs.data_end);
    out.source_end.append(&mut from_logs.source_end);
    if let Some(b) = incident.baseline.as_ref().filter(|_| learn) {
        // Spans join the log lines they wrote: what each request did, step by step.
        events.spans(&b.spans, false);
        events.spans(t.spans.iter().filter(|s| s.start >= incident.analysis_start), true);
    }
    // Where the requests' steps were learned, a template that is new or missing by count says
    // nothing the patterns do not say better (and mostly reflects another request mix): error
    // bursts stay, the template counts give way. Chosen on TrainTicket's tuning half
    // (0.571 -> 0.643). With a reference from the same stream the template counts still carry a
    // deploy's new errors.
    let learned = !events.is_empty() && events.has_reference();
    patterns::detect(&mut events, &mut out);
    if learned {
        out.anomalies.retain(|a| {
            !(a.source == Source::Log && matches!(a.indicator.as_str(), "new_log_template" | "missing_log_template"))
        });
    }
    discount_stale_trace_latency(incident, cfg, &mut out);
    out.anomalies.sort_by(|a, b| {
        a.onset.cmp(&b.onset).then_with(|| a.service.cmp(&b.service)).then_with(|| a.indicator.cmp(&b.indicator))
    });
    tracing::info!(anomalies = out.anomalies.len(), "detection done");
    out
}

/// A trace reference this much older than the incident period is stale: what it calls slow may
/// be the system's normal of today (a table that grew, a heavier daily mix).
pub const STALE_REFERENCE: Ts = 60 * crate::model::MINUTE;

/// Spans judged against an old reference (a fault-free capture from hours before) cannot tell a
/// fault from the day's drift; the service's latency metrics, judged against their own (recent or
/// learned) reference, can. When they were judged and found nothing, the trace latency anomaly of that service
/// keeps at most the detectors' threshold as its score: barely anomalous, whatever its z.
fn discount_stale_trace_latency(incident: &Incident, cfg: &DetectConfig, out: &mut Detection) {
    if !trace_reference_is_stale(incident) {
        return;
    }
    let quiet: std::collections::BTreeSet<String> = out
        .anomalies
        .iter()
        .filter(|a| a.source == Source::Trace && a.indicator.starts_with("latency"))
        .filter(|a| latency_metrics_clear(incident, &out.anomalies, &a.service, cfg.min_reference_points))
        .map(|a| a.service.clone())
        .collect();
    for a in &mut out.anomalies {
        if a.source == Source::Trace && a.indicator.starts_with("latency") && quiet.contains(&a.service) {
            a.score = a.score.min(cfg.z_threshold);
            a.evidence.push_str(&format!(
                " (reference spans from over {} min before; the service's latency metrics show nothing against their own reference)",
                STALE_REFERENCE / crate::model::MINUTE
            ));
        }
    }
}

/// Whether the incident's trace reference (its separate baseline's spans) ended over
/// [`STALE_REFERENCE`] before the incident period.
pub fn trace_reference_is_stale(incident: &Incident) -> bool {
    incident
        .baseline
        .as_ref()
        .and_then(|b| b.spans.iter().map(|s| s.start.saturating_add(s.duration_ms as Ts)).max())
        .is_some_and(|end| incident.analysis_start.saturating_sub(end) >= STALE_REFERENCE)
}

/// Whether `service`'s latency metrics were judged against a reference close to the incident (a
/// baseline series with `min_points` points that reaches to within [`STALE_REFERENCE`] of the
/// incident, or past it, as a day's learned normal does) and none of
/// `anomalies` is a metric latency anomaly of it.
pub fn latency_metrics_clear(incident: &Incident, anomalies: &[Anomaly], service: &str, min_points: usize) -> bool {
    let judged = incident.baseline.iter().flat_map(|b| &b.metrics).any(|s| {
        s.service == service
            && canonical_indicator(&s.metric) == "latency"
            && s.points.len() >= min_points
            && s.points.last().is_some_and(|p| incident.analysis_start.saturating_sub(p.0) < STALE_REFERENCE)
    });
    judged && !anomalies.iter().any(|a| a.service == service && a.source == Source::Metric && a.indicator == "latency")
}

/// Maps a metric name as sources spell it to the indicator people talk about.
pub fn canonical_indicator(metric: &str) -> &'static str {
    let m = metric.to_ascii_lowercase();
    let has = |s: &str| m.contains(s);
    if has("cpu") {
        "cpu"
    } else if has("mem") || has("heap") || has("rss") {
        "mem"
    } else if has("success") || has("error") || has("fail") || has("5xx") {
        "errors"
    } else if has("lat") || has("duration") || has("p99") || has("p95") || has("p90") || has("response_time") {
        // A client-side latency is how long this service waited for others: about its callees.
        if has("client") {
            "latency_client"
        } else {
            "latency"
        }
    } else if has("conn") || has("pool") {
        "connections"
    } else if has("queue") || has("lag") || has("backlog") {
        "queue"
    } else if has("syscall") || has("disk") || has("iops") {
        "io"
    } else if has("network") || has("bytes") || has("packet") {
        "network"
    } else if has("rps") || has("workload") || has("lod") || has("request") || has("throughput") || has("qps") {
        "traffic"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators_from_dataset_spellings() {
        assert_eq!(canonical_indicator("CpuUsageRate(%)"), "cpu");
        assert_eq!(canonical_indicator("carts_mem"), "mem");
        assert_eq!(canonical_indicator("MemoryUsage(Mi)"), "mem");
        assert_eq!(canonical_indicator("PodSuccessRate(%)"), "errors");
        assert_eq!(canonical_indicator("PodServerLatencyP99(s)"), "latency");
        assert_eq!(canonical_indicator("PodClientLatencyP90(s)"), "latency_client");
        assert_eq!(canonical_indicator("lat_90"), "latency");
        assert_eq!(canonical_indicator("PodWorkload(Ops)"), "traffic");
        assert_eq!(canonical_indicator("connections_active"), "connections");
        assert_eq!(canonical_indicator("NetworkReceiveBytes"), "network");
    }
}
