//! Trace anomalies and the mined call graph.
//!
//! Latency is judged on each span's *self time* (its duration minus its children's), and errors on
//! *origin* errors (failed spans none of whose children failed), so an anomaly lands on the service
//! where it arises rather than on every caller above it. End-to-end latency per service is kept
//! too, as the symptom that callers see.

use super::stats::{change_point, quantile, segment_end, Robust};
use super::{Anomaly, DetectConfig, Detection, Measure, Source};
use crate::detect::metrics::fmt_num;
use crate::model::{Incident, Span, Ts};
use foldhash::HashMap;
use std::collections::{BTreeMap, BTreeSet};

/// Per-span facts derived from the trace tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Derived {
    pub(crate) self_ms: f64,
    pub(crate) origin_error: bool,
    /// The span is the service's entry: a root, or called from another service.
    pub(crate) entry: bool,
}

pub(crate) fn derive(spans: &[&Span]) -> Vec<Derived> {
    let index: HashMap<(&str, &str), usize> =
        spans.iter().enumerate().map(|(i, s)| ((s.trace_id.as_str(), s.span_id.as_str()), i)).collect();
    let mut children_ms = vec![0.0f64; spans.len()];
    let mut child_error = vec![false; spans.len()];
    let mut entry = vec![true; spans.len()];
    for (i, s) in spans.iter().enumerate() {
        if let Some(p) = s.parent_id.as_deref().and_then(|p| index.get(&(s.trace_id.as_str(), p))) {
            children_ms[*p] += s.duration_ms;
            child_error[*p] |= s.error;
            entry[i] = spans[*p].service != s.service;
        }
    }
    spans
        .iter()
        .enumerate()
        .map(|(i, s)| Derived {
            self_ms: (s.duration_ms - children_ms[i]).max(0.0),
            origin_error: s.error && !child_error[i],
            entry: entry[i],
        })
        .collect()
}

/// Mines `caller → callee` service edges from parent/child spans.
pub fn call_edges(spans: &[&Span]) -> Vec<(String, String)> {
    let index: HashMap<(&str, &str), &str> =
        spans.iter().map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s.service.as_str())).collect();
    let mut edges = BTreeSet::new();
    for s in spans {
        if let Some(parent) = s.parent_id.as_deref().and_then(|p| index.get(&(s.trace_id.as_str(), p))) {
            if *parent != s.service {
                edges.insert((parent.to_string(), s.service.clone()));
            }
        }
    }
    edges.into_iter().collect()
}

#[derive(Default)]
struct OpStats {
    ref_self: Vec<f64>,
    ref_total: Vec<f64>,
    cur_self: Vec<(Ts, f64)>,
    cur_total: Vec<(Ts, f64)>,
}

#[derive(Default)]
struct ErrStats {
    ref_n: u64,
    ref_err: u64,
    /// Start and origin-error flag of every current span.
    cur: Vec<(Ts, bool)>,
}

pub fn detect(incident: &Incident, cfg: &DetectConfig, out: &mut Detection) {
    let (reference, current): (Vec<&Span>, Vec<&Span>) = match &incident.baseline {
        Some(b) => (
            b.spans.iter().collect(),
            incident.telemetry.spans.iter().filter(|s| s.start >= incident.analysis_start).collect(),
        ),
        None => incident.telemetry.spans.iter().partition(|s| s.start < incident.analysis_start),
    };
    if current.is_empty() {
        return;
    }
    let mut all: Vec<&Span> = reference.clone();
    all.extend(current.iter().copied());
    // Mining over both periods: a reference-only baseline file holds other traces ids, so the
    // two sets never join by mistake.
    out.call_edges = call_edges(&all);
    let mut ops: BTreeMap<(&str, &str), OpStats> = BTreeMap::new();
    let mut errs: BTreeMap<&str, ErrStats> = BTreeMap::new();
    for (spans, is_current) in [(&reference, false), (&current, true)] {
        let derived = derive(spans);
        for (s, d) in spans.iter().zip(&derived) {
            let op = ops.entry((s.service.as_str(), s.operation.as_str())).or_default();
            let e = errs.entry(s.service.as_str()).or_default();
            if is_current {
                op.cur_self.push((s.start, d.self_ms));
                if d.entry {
                    op.cur_total.push((s.start, s.duration_ms));
                }
                e.cur.push((s.start, d.origin_error));
            } else {
                op.ref_self.push(d.self_ms);
                if d.entry {
                    op.ref_total.push(s.duration_ms);
                }
                e.ref_n += 1;
                e.ref_err += d.origin_error as u64;
            }
        }
    }
    let mut best_self: BTreeMap<&str, Anomaly> = BTreeMap::new();
    let mut best_total: BTreeMap<&str, Anomaly> = BTreeMap::new();
    for ((service, op), st) in &ops {
        let learned = incident.baseline.is_some();
        if let Some(a) = latency(service, op, &st.ref_self, &st.cur_self, ("latency", "self time"), learned, cfg) {
            keep_best(&mut best_self, service, a);
        }
        if let Some(a) =
            latency(service, op, &st.ref_total, &st.cur_total, ("latency_total", "end-to-end"), learned, cfg)
        {
            keep_best(&mut best_total, service, a);
        }
    }
    out.anomalies.extend(best_self.into_values());
    out.anomalies.extend(best_total.into_values());
    for (service, e) in errs {
        if let Some(a) = errors(service, &e, cfg) {
            out.anomalies.push(a);
        }
    }
}

fn keep_best<'a>(best: &mut BTreeMap<&'a str, Anomaly>, service: &'a str, a: Anomaly) {
    if best.get(service).is_none_or(|b| a.score > b.score) {
        best.insert(service, a);
    }
}

/// Latency of one operation: a shift of the median or a fattened tail against the reference.
fn latency(
    service: &str,
    op: &str,
    reference: &[f64],
    current: &[(Ts, f64)],
    (indicator, what): (&str, &str),
    learned: bool,
    cfg: &DetectConfig,
) -> Option<Anomaly> {
    const MIN_CURRENT: usize = 3;
    const MIN_RELATIVE_SHIFT: f64 = 0.2;
    const MIN_SLOW_SHARE: f64 = 0.25;
    const MIN_ABSOLUTE_SHIFT_MS: f64 = 1.0;
    if reference.len() < cfg.min_reference_points || current.len() < MIN_CURRENT {
        return None;
    }
    let r = if learned { Robust::with_swings(reference) } else { Robust::of(reference) };
    let cur: Vec<f64> = current.iter().map(|p| p.1).collect();
    let med = quantile(&cur, 0.5);
    let z_median = r.z(med) * (current.len() as f64).sqrt().min(3.0);
    // Share of spans above the reference's 99th percentile, against the 1 % expected.
    let over = cur.iter().filter(|x| **x > r.hi).count() as f64;
    let n = cur.len() as f64;
    // A small reference's 99th percentile is its maximum: expect at least 1/(m+1) above it.
    let p_tail = (1.0 / (reference.len() as f64 + 1.0)).max(0.01);
    let z_tail = (over - p_tail * n) / (p_tail * (1.0 - p_tail) * n + 1.0).sqrt();
    let z = z_median.max(z_tail);
    // Statistically clear is not enough: the shift must matter to a user too (a 5 % slower
    // median over thousands of spans is significant and irrelevant).
    let relative = (med - r.median) / r.median.abs().max(1e-9);
    // …and by enough milliseconds to be felt: a database call going from 0.7 to 0.9 ms is not.
    let felt = med - r.median >= MIN_ABSOLUTE_SHIFT_MS
        || quantile(&cur, 0.9) - quantile(reference, 0.9) >= 5.0 * MIN_ABSOLUTE_SHIFT_MS;
    let material = (relative >= MIN_RELATIVE_SHIFT || over / n >= MIN_SLOW_SHARE) && felt;
    if z < cfg.z_threshold || med <= r.median || !material {
        return None;
    }
    let mut sorted: Vec<(Ts, f64)> = current.to_vec();
    sorted.sort_by_key(|p| p.0);
    let zs: Vec<f64> = sorted.iter().map(|p| r.z(p.1)).collect();
    let start = change_point(&zs, 0.0);
    let onset = sorted[start].0;
    let last = segment_end(&zs, start, 0.0);
    let end = sorted[last].0;
    // The figures of the anomaly's own spans (from its onset), not of the whole period.
    let own: Vec<f64> = sorted[start..=last.max(start)].iter().map(|p| p.1).collect();
    let own_med = quantile(&own, 0.5);
    let own_over = own.iter().filter(|x| **x > r.hi).count();
    Some(Anomaly {
        service: service.to_string(),
        source: Source::Trace,
        indicator: indicator.to_string(),
        signal: op.to_string(),
        onset,
        end,
        score: z,
        direction: 1,
        measure: Some(Measure { value: own_med, baseline: r.median, unit: "ms".into() }),
        evidence: format!(
            "{service} `{op}` {what} median {} ms from {} on (baseline {} ms); {:.0} % of its {} spans since above \
             the baseline p99",
            fmt_num(own_med),
            crate::ingest::time::fmt_clock(onset),
            fmt_num(r.median),
            100.0 * own_over as f64 / own.len() as f64,
            own.len()
        ),
    })
}

/// Origin errors of one service against its reference error rate.
fn errors(service: &str, e: &ErrStats, cfg: &DetectConfig) -> Option<Anomaly> {
    let k = e.cur.iter().filter(|c| c.1).count() as f64;
    if k == 0.0 {
        return None;
    }
    let p0 = (e.ref_err as f64 + 0.5) / (e.ref_n as f64 + 1.0);
    let n = e.cur.len() as f64;
    let z = (k - n * p0) / (n * p0 * (1.0 - p0) + 1.0).sqrt();
    if z < cfg.z_threshold || n == 0.0 {
        return None;
    }
    let mut cur = e.cur.clone();
    cur.sort_by_key(|c| c.0);
    let flags: Vec<f64> = cur.iter().map(|c| if c.1 { 1.0 } else { 0.0 }).collect();
    let start = change_point(&flags, p0);
    let onset = cur[start].0;
    let last = segment_end(&flags, start, p0);
    let end = cur[last].0;
    let own = &flags[start..=last.max(start)];
    let failed = own.iter().sum::<f64>();
    let share = 100.0 * failed / own.len() as f64;
    let baseline = 100.0 * e.ref_err as f64 / (e.ref_n.max(1)) as f64;
    Some(Anomaly {
        service: service.to_string(),
        source: Source::Trace,
        indicator: "errors".into(),
        signal: "span errors".into(),
        onset,
        end,
        score: z,
        direction: 1,
        measure: Some(Measure { value: share, baseline, unit: "%".into() }),
        evidence: format!(
            "{service} spans failed at their origin {share:.1} % of the time from {} on ({failed} of {}), baseline \
             {baseline:.2} %",
            crate::ingest::time::fmt_clock(onset),
            own.len(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, parent: Option<&str>, svc: &str, start: Ts, dur: f64, error: bool) -> Span {
        Span {
            trace_id: trace.into(),
            span_id: id.into(),
            parent_id: parent.map(Into::into),
            service: svc.into(),
            operation: format!("op-{svc}"),
            start,
            duration_ms: dur,
            error,
        }
    }

    /// frontend → api → db; after t=100 the db is slow, so every caller's duration rises too.
    fn incident_spans() -> Vec<Span> {
        let mut v = Vec::new();
        for i in 0..60i64 {
            let slow = i >= 30;
            let db = if slow { 200.0 } else { 10.0 + (i % 3) as f64 };
            let t = format!("t{i}");
            v.push(span(&t, "a", None, "frontend", i * 10, db + 25.0 + (i % 2) as f64, false));
            v.push(span(&t, "b", Some("a"), "api", i * 10 + 1, db + 12.0 + (i % 4) as f64 * 0.5, false));
            v.push(span(&t, "c", Some("b"), "db", i * 10 + 2, db, false));
        }
        v
    }

    fn incident(spans: Vec<Span>) -> Incident {
        Incident {
            id: "t".into(),
            alert: crate::model::Alert {
                time: 400,
                service: "frontend".into(),
                signal: "latency".into(),
                severity: Default::default(),
                title: String::new(),
            },
            telemetry: crate::model::Telemetry { spans, ..Default::default() },
            baseline: None,
            analysis_start: 200,
            topology: None,
            truth: None,
            read_report: Default::default(),
        }
    }

    #[test]
    fn self_time_blames_the_slow_callee_not_its_callers() {
        let mut out = Detection::default();
        detect(&incident(incident_spans()), &DetectConfig::default(), &mut out);
        let selfs: Vec<&str> =
            out.anomalies.iter().filter(|a| a.indicator == "latency").map(|a| a.service.as_str()).collect();
        assert_eq!(selfs, vec!["db"]);
        let db = out.anomalies.iter().find(|a| a.indicator == "latency").expect("db anomaly");
        assert_eq!(db.onset, 302);
        assert!(out.anomalies.iter().any(|a| a.indicator == "latency_total" && a.service == "frontend"));
        assert_eq!(
            out.call_edges,
            vec![("api".to_string(), "db".to_string()), ("frontend".to_string(), "api".to_string())]
        );
    }

    #[test]
    fn errors_are_blamed_where_they_originate() {
        let mut spans = Vec::new();
        for i in 0..60i64 {
            let bad = i >= 30 && i % 2 == 0;
            let t = format!("t{i}");
            spans.push(span(&t, "a", None, "frontend", i * 10, 30.0, bad));
            spans.push(span(&t, "b", Some("a"), "pay", i * 10 + 1, 10.0, bad));
        }
        let mut out = Detection::default();
        detect(&incident(spans), &DetectConfig::default(), &mut out);
        let errs: Vec<&str> =
            out.anomalies.iter().filter(|a| a.indicator == "errors").map(|a| a.service.as_str()).collect();
        assert_eq!(errs, vec!["pay"]);
    }
}
