//! Live data sources: the window of telemetry around an alert, from Prometheus' HTTP API
//! (`query_range`, PromQL built from the incident's services) and from what the OTLP receiver
//! and `/v1/changes` stored, assembled into an [`Incident`] for the pipeline.

use super::config::PrometheusConfig;
use super::otlp::Point;
use crate::model::{Alert, Change, Incident, LogRecord, ReadIssue, ReadReport, Series, Span, Telemetry, Topology, Ts};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Where each stored record's `source` column says it came from.
pub const SPAN: &str = "span";
pub const LOG: &str = "log";
pub const METRIC: &str = "metric";
pub const CHANGE: &str = "change";

/// Most stored records of one kind read for one investigation.
const MAX_ROWS: usize = 500_000;

/// The period an investigation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Ts,
    pub to: Ts,
    /// Anomalies are searched from here on; the data before is the reference.
    pub analysis_start: Ts,
}

/// What was read for one incident, from every source.
#[derive(Debug, Default)]
pub struct Gathered {
    pub metrics: Vec<Series>,
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    pub changes: Vec<Change>,
    pub report: ReadReport,
}

fn issue(file: &str, field: &str, message: String) -> ReadIssue {
    crate::ingest::io::issue(file, 0, Some(field), message)
}

/// The stored spans, logs, metric points and changes of the window. A stored row that no longer
/// parses is skipped and reported.
pub async fn stored(store: &Store, w: Window, g: &mut Gathered) {
    let origin = format!("store {}", store.uri());
    let mut points: Vec<Point> = Vec::new();
    for source in [SPAN, LOG, METRIC, CHANGE] {
        let rows = match store.events_between(source, w.from, w.to, MAX_ROWS).await {
            Ok(r) => r,
            Err(e) => {
                g.report.skip(issue(&origin, source, format!("could not read stored {source}s: {e}")));
                continue;
            }
        };
        for (_, _, attrs) in rows {
            let ok = match source {
                SPAN => serde_json::from_str(&attrs).map(|s| g.spans.push(s)),
                LOG => serde_json::from_str(&attrs).map(|l| g.logs.push(l)),
                METRIC => serde_json::from_str(&attrs).map(|p| points.push(p)),
                _ => serde_json::from_str(&attrs).map(|c| g.changes.push(c)),
            };
            match ok {
                Ok(()) => g.report.records_read += 1,
                Err(e) => g.report.skip(issue(&origin, source, format!("unreadable stored {source}: {e}"))),
            }
        }
    }
    let mut series: BTreeMap<(String, String), Vec<(Ts, f64)>> = BTreeMap::new();
    for p in points {
        series.entry((p.service, p.metric)).or_default().push((p.time, p.value));
    }
    for ((service, metric), mut pts) in series {
        pts.sort_by_key(|p| p.0);
        g.metrics.push(Series { service, metric, points: pts });
    }
}

/// A PromQL regular expression matching exactly these services.
pub fn services_regex(services: &BTreeSet<String>) -> String {
    // RE2 escapes, then doubled for the PromQL string literal.
    services.iter().map(|s| regex::escape(s).replace('\\', "\\\\")).collect::<Vec<_>>().join("|")
}

/// Each configured query over the window, `{services}` replaced; failures are reported per query
/// and the others still read.
pub async fn prometheus(
    client: &reqwest::Client,
    cfg: &PrometheusConfig,
    services: &BTreeSet<String>,
    w: Window,
    g: &mut Gathered,
) {
    let regex = if services.is_empty() { ".+".to_string() } else { services_regex(services) };
    let base = cfg.url.trim_end_matches('/');
    for q in &cfg.queries {
        let promql = q.promql.replace("{services}", &regex);
        let origin = format!("prometheus {base} query {:?}", q.name);
        let params = [
            ("query", promql.clone()),
            ("start", format!("{:.3}", w.from as f64 / 1000.0)),
            ("end", format!("{:.3}", w.to as f64 / 1000.0)),
            ("step", format!("{}s", cfg.step_seconds)),
        ];
        let url = match reqwest::Url::parse_with_params(&format!("{base}/api/v1/query_range"), &params) {
            Ok(u) => u,
            Err(e) => {
                g.report.skip(issue(&origin, "url", format!("bad Prometheus URL {base}: {e}")));
                continue;
            }
        };
        let answer = async {
            let resp = client
                .get(url)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| format!("reading the answer: {e}"))?;
            let doc: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("HTTP {status}, not JSON: {e}"))?;
            if !status.is_success() {
                let why = doc.get("error").and_then(|e| e.as_str()).unwrap_or("");
                return Err(format!("HTTP {status}: {why}"));
            }
            Ok(doc)
        }
        .await;
        match answer {
            Ok(doc) => {
                let series =
                    crate::ingest::metrics::series_from_query_range(&doc, &origin, Some(&q.name), &mut g.report);
                tracing::debug!(query = %q.name, series = series.len(), "prometheus query_range");
                g.metrics.extend(series);
            }
            Err(e) => g.report.skip(issue(&origin, "query", format!("{promql}: {e}"))),
        }
    }
}

/// The services an incident is about: the alert's, the declared topology's and every one seen in
/// the stored telemetry of the window.
pub fn services(alert: &Alert, topology: Option<&Topology>, g: &Gathered) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = BTreeSet::new();
    s.insert(alert.service.clone());
    if let Some(t) = topology {
        s.extend(t.services.iter().map(|n| n.name.clone()));
    }
    s.extend(g.spans.iter().map(|x| x.service.clone()));
    s.extend(g.logs.iter().map(|x| x.service.clone()));
    s.extend(g.changes.iter().map(|x| x.service.clone()));
    s.extend(g.metrics.iter().map(|x| x.service.clone()));
    s
}

/// The incident the pipeline investigates.
pub fn incident(id: &str, alert: &Alert, w: Window, g: Gathered, topology: Option<Topology>) -> Incident {
    Incident {
        id: id.to_string(),
        alert: alert.clone(),
        telemetry: Telemetry {
            metrics: g.metrics,
            logs: crate::model::Logs { records: g.logs, files: Vec::new() },
            spans: g.spans,
            changes: g.changes,
        },
        baseline: None,
        analysis_start: w.analysis_start,
        topology,
        truth: None,
        read_report: g.report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_regexes_are_escaped_for_promql_strings() {
        let s: BTreeSet<String> = ["payments.db", "api"].into_iter().map(String::from).collect();
        assert_eq!(services_regex(&s), r"api|payments\\.db");
    }
}
