//! Live data sources: the window of telemetry around an alert, from Prometheus' HTTP API
//! (`query_range`, PromQL built from the incident's services) and from what the OTLP receiver
//! and `/v1/changes` stored, assembled into an [`Incident`] for the pipeline.

use super::config::{PromQuery, PrometheusConfig};
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
pub const MAX_ROWS: usize = 500_000;

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
    let mut points: Vec<Point> = Vec::new();
    for source in [SPAN, LOG, METRIC, CHANGE] {
        // One line per kind in the report's "Data read", even when the store had none.
        let origin = format!("store {} ({source}s)", store.uri());
        g.report.read_per_file.entry(origin.clone()).or_default();
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
                Ok(()) => {
                    g.report.records_read += 1;
                    *g.report.read_per_file.entry(origin.clone()).or_default() += 1;
                }
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
    // RE2 escapes, then escaped again for the PromQL string literal (backslashes, quotes and
    // line breaks), so a service name is data and cannot end the string.
    services.iter().map(|s| promql_string(&regex::escape(s))).collect::<Vec<_>>().join("|")
}

/// `text` escaped for a double-quoted PromQL string.
pub fn promql_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace('\r', "\\r")
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
        match prometheus_api(client, base, "/api/v1/query_range", &params).await {
            Ok(data) => {
                let doc = serde_json::json!({ "data": data });
                let series = g.report.counting(&origin, |r| {
                    crate::ingest::metrics::series_from_query_range(&doc, &origin, Some(&q.name), r)
                });
                tracing::debug!(query = %q.name, series = series.len(), "prometheus query_range");
                g.metrics.extend(series);
            }
            // A query that failed is told, not counted as unreadable data: one bad query of many
            // (a discovered histogram with no traffic) must not void the others.
            Err(e) => {
                g.report.read_per_file.entry(origin.clone()).or_default();
                if g.report.issues.len() < ReadReport::MAX_ISSUES {
                    g.report.issues.push(issue(&origin, "query", format!("{promql}: {e}")));
                }
            }
        }
    }
}

/// Why a Prometheus-compatible server gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("bad Prometheus URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{reason}")]
    Request { reason: String },
    #[error("{url}: HTTP {status}: {reason}")]
    Answer { url: String, status: u16, reason: String },
    #[error(
        "no series in the window has {service:?} in any of the labels {labels} (is the window right? otherwise name \
         the queries with --query NAME=PROMQL)"
    )]
    NoServiceLabel { service: String, labels: String },
    #[error("the series with a {label} label in the window are all exporter plumbing (go_, up, scrape_ …)")]
    OnlyPlumbing { label: String },
}

/// GETs a Prometheus HTTP API path (`/api/v1/...`) and answers its `data`, or why not.
async fn prometheus_api(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Result<serde_json::Value, SourceError> {
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", base.trim_end_matches('/')), params)
        .map_err(|e| SourceError::Url { url: base.to_string(), reason: e.to_string() })?;
    let resp = client
        .get(url.clone())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        // reqwest's message names the URL; the reason (refused, timed out …) is in its sources.
        .map_err(|e| SourceError::Request { reason: crate::ingest::io::error_chain(&e) })?;
    let status = resp.status();
    let answer = |reason: String| SourceError::Answer { url: url.to_string(), status: status.as_u16(), reason };
    let body = resp.bytes().await.map_err(|e| answer(format!("reading the answer: {e}")))?;
    let mut doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| answer(format!("not JSON: {e}")))?;
    if !status.is_success() || doc.get("status").and_then(|s| s.as_str()) != Some("success") {
        let why = doc.get("error").and_then(|e| e.as_str()).unwrap_or("not a success");
        return Err(answer(why.to_string()));
    }
    Ok(doc["data"].take())
}

/// Metric names that are the exporter's own plumbing, not the service's behaviour.
fn plumbing(name: &str) -> bool {
    ["go_", "promhttp_", "scrape_", "prometheus_", "vm_", "net_conntrack_"].iter().any(|p| name.starts_with(p))
        || name == "up"
        || name.ends_with("_created")
        || name.ends_with("_info")
}

/// Queries for every metric a Prometheus (or VictoriaMetrics) server holds for the alerting
/// service, for when the user names none: the first label of
/// [`SERVICE_LABELS`](crate::ingest::metrics::SERVICE_LABELS) that has `service` among its
/// values in the window is the service label; each metric name carrying it becomes one query,
/// by that label: counters (`_total`, `_count`) as `rate` over `rate_seconds`, histograms
/// (`_bucket`) as their p99, anything else as the maximum. Fails, saying what was tried, when
/// no label has the service.
pub async fn discover_queries(
    client: &reqwest::Client,
    base: &str,
    service: &str,
    w: Window,
    rate_seconds: u64,
) -> Result<Vec<PromQuery>, SourceError> {
    let range = [("start", format!("{:.3}", w.from as f64 / 1000.0)), ("end", format!("{:.3}", w.to as f64 / 1000.0))];
    let mut label = None;
    for l in crate::ingest::metrics::SERVICE_LABELS {
        let values = prometheus_api(client, base, &format!("/api/v1/label/{l}/values"), &range).await?;
        let has = values.as_array().is_some_and(|vs| {
            vs.iter()
                .filter_map(|v| v.as_str())
                .any(|v| v == service || (l == "pod" && crate::ingest::pod_to_service(v) == service))
        });
        if has {
            label = Some(l);
            break;
        }
    }
    let Some(label) = label else {
        return Err(SourceError::NoServiceLabel {
            service: service.to_string(),
            labels: crate::ingest::metrics::SERVICE_LABELS.join(", "),
        });
    };
    // The service's own series (its metric names are then read for every service). Its name is
    // a PromQL string: `\` and `"` escaped; a pod name is matched by prefix.
    let quote = promql_string;
    let selector = if label == "pod" {
        format!("{{pod=~\"{}(-.+)?\"}}", quote(&regex::escape(service)))
    } else {
        format!("{{{label}=\"{}\"}}", quote(service))
    };
    let mut params = range.to_vec();
    params.push(("match[]", selector));
    let series = prometheus_api(client, base, "/api/v1/series", &params).await?;
    let names: BTreeSet<String> = series
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["__name__"].as_str()).filter(|n| !plumbing(n)).map(String::from).collect())
        .unwrap_or_default();
    let histograms: BTreeSet<&str> = names.iter().filter_map(|n| n.strip_suffix("_bucket")).collect();
    let matcher = format!("{label}=~\"{{services}}\"");
    let mut queries = Vec::new();
    for n in &names {
        let (name, promql) = if let Some(h) = n.strip_suffix("_bucket") {
            (
                format!("{h}_p99"),
                format!("histogram_quantile(0.99, sum by ({label}, le) (rate({n}{{{matcher}}}[{rate_seconds}s])))"),
            )
        } else if histograms.iter().any(|h| n.strip_prefix(h).is_some_and(|rest| rest == "_sum" || rest == "_count")) {
            continue;
        } else if let Some(stem) = n.strip_suffix("_total").or_else(|| n.strip_suffix("_count")) {
            // A counter, read as its rate: named per second, so its unit says so.
            (format!("{stem}_per_second"), format!("sum by ({label}) (rate({n}{{{matcher}}}[{rate_seconds}s]))"))
        } else {
            (n.clone(), format!("max by ({label}) ({n}{{{matcher}}})"))
        };
        queries.push(PromQuery { name, promql });
    }
    if queries.is_empty() {
        return Err(SourceError::OnlyPlumbing { label: label.to_string() });
    }
    Ok(queries)
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

/// The incident of what was gathered, repeats dropped (an exporter's retry stores a batch twice).
pub fn incident(id: &str, alert: &Alert, w: Window, mut g: Gathered, topology: Option<Topology>) -> Incident {
    let mut telemetry = Telemetry {
        metrics: g.metrics,
        logs: crate::model::Logs { records: g.logs, files: Vec::new() },
        spans: g.spans,
        changes: g.changes,
    };
    g.report.duplicates += crate::ingest::dedup::dedup(&mut telemetry);
    Incident {
        id: id.to_string(),
        alert: alert.clone(),
        telemetry,
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

    /// A service name is data: quotes and newlines in it cannot end the PromQL string and add
    /// matchers or operators.
    #[test]
    fn a_quote_in_a_service_name_cannot_inject_promql() {
        let s: BTreeSet<String> = ["x\"} or vector(1) or up{job=\"y".to_string(), "a\nb".into()].into_iter().collect();
        let re = services_regex(&s);
        let promql = format!("up{{service=~\"{re}\"}}");
        // Outside the string literal there is nothing but the template's own text.
        let mut inside = false;
        let mut escaped = false;
        let mut outside = String::new();
        for c in promql.chars() {
            match (inside, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => inside = !inside,
                (false, _, c) => outside.push(c),
                _ => {}
            }
        }
        assert_eq!(outside, "up{service=~}", "{promql}");
        assert!(!re.contains('\n'), "{re:?}");
    }
}
