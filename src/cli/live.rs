//! Live sources from the command line: the window of telemetry around an alert pulled from a
//! Prometheus-compatible server (`query_range`) and from `culprit serve`'s store, made into an
//! incident for `culprit investigate --prometheus` and written as a bundle by `culprit collect`.

use anyhow::{bail, Context, Result};
use culprit::model::{Alert, Incident, Severity, Ts, MINUTE};
use culprit::serve::config::{PromQuery, PrometheusConfig};
use culprit::serve::sources::{self, Gathered, Window};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where live telemetry comes from, and the alert it is read around.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LiveArgs {
    /// Pull metrics from this Prometheus or VictoriaMetrics server (its base URL; the HTTP API's
    /// `query_range`), around an alert on --service.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Also read what `culprit serve` stored from OTLP and `/v1/changes` (spans, logs, metric
    /// points, changes) in the window: a LanceDB URI, e.g. /var/lib/culprit/store.
    #[arg(long, value_name = "URI")]
    pub store: Option<String>,
    /// The alerting service (the symptom), as its metrics label it.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The signal that fired on it: latency, errors, cpu, …
    #[arg(long, value_name = "SIGNAL", default_value = "errors")]
    pub signal: String,
    /// The alert's severity: info, warning, high or critical (high and critical get the agent).
    #[arg(long, value_name = "LEVEL", default_value = "warning", value_parser = parse_severity)]
    pub severity: Severity,
    /// When the alert fired: RFC 3339 (2026-12-07T03:12:00Z), Unix seconds, `now` or `now-10m`
    /// [default: now].
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Start of the window read, same forms [default: 1 h before --at].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the window read, same forms [default: 5 min after --at, at most now]. Data after
    /// the alert is shown as "still going" or "recovered", never taken as a cause.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Anomalies are searched in this many seconds before the alert; the window's data before
    /// is the reference [default: 900, at most half the time between --from and --at].
    #[arg(long, value_name = "SECONDS")]
    pub analysis: Option<u64>,
    /// The `query_range` resolution in seconds [default: the window over 400, at least 1].
    #[arg(long, value_name = "SECONDS")]
    pub step: Option<u64>,
    /// The range of `rate()` over counters in discovered queries, in seconds [default: 4 steps,
    /// at least 5].
    #[arg(long, value_name = "SECONDS")]
    pub rate_window: Option<u64>,
    /// One PromQL query per metric, as NAME=PROMQL (repeat it); `{services}` in it becomes a
    /// regular expression matching any service. Results need a service label (service, job,
    /// service_name, app, container or pod). Without any: every metric that has the alerting
    /// service in one of those labels, counters as rates and histograms as their p99.
    #[arg(long = "query", value_name = "NAME=PROMQL")]
    pub queries: Vec<String>,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("{s:?} is not a severity: info, warning, high or critical"))
}

/// A time on the command line: `now`, `now-30m` (s, m, h, d), RFC 3339, or Unix seconds/ms.
pub fn parse_time(s: &str, now: Ts) -> Result<Ts> {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix("now") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(now);
        }
        let ago = rest.strip_prefix('-').with_context(|| format!("{s:?}: after `now` only `-N[smhd]` may follow"))?;
        return Ok(now - parse_duration(ago).with_context(|| format!("time {s:?}"))?);
    }
    culprit::ingest::parse_time_str(t).with_context(|| {
        format!("{s:?} is not a time: give RFC 3339 (2026-12-07T03:12:00Z), Unix seconds, `now` or `now-10m`")
    })
}

/// `90s`, `15m`, `2h`, `1d` (a bare number is seconds) to ms.
fn parse_duration(s: &str) -> Result<Ts> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().with_context(|| format!("{s:?} is not a duration like 90s, 15m, 2h or 1d"))?;
    let ms = match unit {
        "" | "s" => 1000,
        "m" => MINUTE,
        "h" => 60 * MINUTE,
        "d" => 24 * 60 * MINUTE,
        _ => bail!("{s:?}: the unit must be s, m, h or d"),
    };
    n.checked_mul(ms).with_context(|| format!("{s:?} is too long"))
}

/// The alert and window the arguments describe, checked.
fn window(a: &LiveArgs, service: &str, now: Ts) -> Result<(Alert, Window)> {
    let at = a.at.as_deref().map_or(Ok(now), |s| parse_time(s, now))?;
    let from = a.from.as_deref().map_or(Ok(at - 60 * MINUTE), |s| parse_time(s, now))?;
    let to = a.to.as_deref().map_or(Ok((at + 5 * MINUTE).min(now.max(at))), |s| parse_time(s, now))?;
    if !(from < at && at <= to) {
        bail!(
            "the window must hold the alert: --from < --at ≤ --to (here {from} ms, {at} ms, {to} ms since the epoch)"
        );
    }
    let analysis = a.analysis.map_or(15 * MINUTE, |s| (s as i64).saturating_mul(1000)).min((at - from) / 2).max(1000);
    let alert = Alert {
        time: at,
        service: service.to_string(),
        signal: a.signal.clone(),
        severity: a.severity,
        title: format!("{} on {service} (from the command line)", a.signal),
    };
    Ok((alert, Window { from, to, analysis_start: at - analysis }))
}

impl LiveArgs {
    /// Whether any live source is given.
    pub fn any(&self) -> bool {
        self.prometheus.is_some() || self.store.is_some()
    }

    /// Reads the window from every given source into an incident; progress on stderr.
    pub fn gather(&self) -> Result<Incident> {
        let service =
            self.service.clone().context("--service is needed with --prometheus or --store: the alerting service")?;
        let now = chrono::Utc::now().timestamp_millis();
        let (alert, w) = window(self, &service, now)?;
        let span_s = ((w.to - w.from) / 1000).max(1) as u64;
        let step = self.step.unwrap_or((span_s / 400).max(1)).max(1);
        let rate = self.rate_window.unwrap_or(step.saturating_mul(4).max(5));
        let mut queries = Vec::new();
        for q in &self.queries {
            let (name, promql) = q.split_once('=').with_context(|| {
                format!("--query {q:?}: give NAME=PROMQL, e.g. errors=sum by (service) (rate(http_errors_total[1m]))")
            })?;
            queries.push(PromQuery { name: name.trim().to_string(), promql: promql.trim().to_string() });
        }
        let id = format!(
            "live-{service}-{}",
            culprit::ingest::time::rfc3339(alert.time, culprit::ingest::time::SecondsFormat::Secs).unwrap_or_default()
        );
        super::runtime()?.block_on(async {
            let mut g = Gathered::default();
            if let Some(uri) = &self.store {
                let store =
                    culprit::store::Store::open(uri).await.with_context(|| format!("opening the store {uri}"))?;
                sources::stored(&store, w, &mut g).await;
                eprintln!("read {} records from the store {uri}", g.report.records_read);
            }
            if let Some(url) = &self.prometheus {
                let http = reqwest::Client::new();
                if queries.is_empty() {
                    queries = sources::discover_queries(&http, url, &service, w, rate)
                        .await
                        .map_err(|e| anyhow::anyhow!("finding the metrics of {service} on {url}: {e}"))?;
                    let names: Vec<&str> = queries.iter().map(|q| q.name.as_str()).collect();
                    eprintln!("found {} metrics of {service} on {url}: {}", names.len(), names.join(", "));
                }
                let cfg = PrometheusConfig { url: url.clone(), step_seconds: step, queries };
                let before = g.metrics.len();
                sources::prometheus(&http, &cfg, &BTreeSet::new(), w, &mut g).await;
                eprintln!("read {} series from {url} (step {step} s)", g.metrics.len() - before);
            }
            Ok::<_, anyhow::Error>(sources::incident(&id, &alert, w, g, None))
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Write the bundle into this directory (created; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `culprit collect`: the live window written as a bundle, to investigate or keep.
pub fn collect(a: CollectArgs) -> Result<ExitCode> {
    if !a.live.any() {
        bail!("nothing to collect from: give --prometheus URL and/or --store URI (with --service)");
    }
    let incident = a.live.gather()?;
    culprit::ingest::write_bundle(&incident, None, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    let t = &incident.telemetry;
    println!(
        "wrote {}: {} metric series, {} spans, {} log lines, {} changes; investigate it with `culprit investigate {}`",
        a.out.display(),
        t.metrics.len(),
        t.spans.len(),
        t.logs.records.len(),
        t.changes.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_on_the_command_line() {
        let now = 1_765_000_000_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("now-15m", now).unwrap(), now - 15 * MINUTE);
        assert_eq!(parse_time("2026-12-07T03:12:00Z", now).unwrap(), 1_796_613_120_000);
        assert!(parse_time("yesterday", now).unwrap_err().to_string().contains("RFC 3339"));
        assert!(parse_time("now-5w", now).is_err());
    }

    #[test]
    fn the_window_must_hold_the_alert() {
        let now = 1_765_000_000_000;
        let a = LiveArgs { at: Some("now-10m".into()), from: Some("now-5m".into()), ..Default::default() };
        assert!(window(&a, "checkout", now).unwrap_err().to_string().contains("--from < --at"));
        let a = LiveArgs { from: Some("now-10m".into()), ..Default::default() };
        let (alert, w) = window(&a, "checkout", now).unwrap();
        // Half the time before the alert is the reference.
        assert_eq!((alert.time, w.to, w.analysis_start), (now, now, now - 5 * MINUTE));
    }
}
