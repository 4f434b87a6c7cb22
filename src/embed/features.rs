//! Feature extraction: one row of categorical and numeric features per event, per source.
//!
//! The lists follow seed 001's per-source features where the bundle carries them. Time of day and
//! weekday are left out on purpose: a model trained on an hour of baseline cannot learn a daily
//! cycle, and with them every event of a new hour would look foreign to the k-NN detector.
//! Numbers are put on a log scale here; the model standardises them with its training statistics.

use super::SourceKind;
use crate::detect::canonical_indicator;
use crate::detect::logs::is_variable;
use crate::model::{Change, Incident, LogRecord, Logs, ReadReport, Series, Span, Telemetry, Ts};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The names of a source's features, in the order of [`Row::cats`] and [`Row::nums`]. A model
/// records the spec it was trained with and refuses rows of any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub categorical: Vec<String>,
    pub numeric: Vec<String>,
}

impl FeatureSpec {
    pub fn of(source: SourceKind) -> FeatureSpec {
        let (c, n): (&[&str], &[&str]) = match source {
            SourceKind::Logs => (
                &["service", "level", "template"],
                &["log_length", "tokens", "variable_share", "attributes", "is_error"],
            ),
            SourceKind::Metrics => {
                (&["service", "metric", "indicator"], &["value", "rolling_mean", "z_long", "z_rolling", "delta"])
            }
            SourceKind::Traces => (
                &["service", "operation", "status"],
                &["duration", "self_time", "queue_time", "children", "error_children"],
            ),
            SourceKind::Changes => (
                &["service", "kind", "author"],
                &["keys_changed", "has_version", "description_length", "config_keys", "flag_keys"],
            ),
        };
        FeatureSpec {
            categorical: c.iter().map(|s| s.to_string()).collect(),
            numeric: n.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One event as features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub time: Ts,
    pub service: String,
    pub cats: Vec<String>,
    pub nums: Vec<f32>,
}

/// `sign(x)·ln(1+|x|)`: one scale for values that span orders of magnitude.
pub fn slog(x: f64) -> f32 {
    if x.is_finite() {
        (x.signum() * x.abs().ln_1p()) as f32
    } else {
        0.0
    }
}

/// A log line's template key: its tokens with the variable ones masked, so lines from one
/// statement share a key without any mining state (the same rule Drain uses for variables).
pub fn template_key(message: &str) -> String {
    let mut key = String::new();
    for (i, t) in message.split_whitespace().take(24).enumerate() {
        if i > 0 {
            key.push(' ');
        }
        key.push_str(if is_variable(t) { "<*>" } else { t });
    }
    key
}

pub fn log_row(r: &LogRecord) -> Row {
    let tokens: Vec<&str> = r.message.split_whitespace().collect();
    let variables = tokens.iter().filter(|t| is_variable(t)).count();
    Row {
        time: r.time,
        service: r.service.clone(),
        cats: vec![r.service.clone(), format!("{:?}", r.level).to_lowercase(), template_key(&r.message)],
        nums: vec![
            slog(r.message.len() as f64),
            slog(tokens.len() as f64),
            variables as f32 / tokens.len().max(1) as f32,
            r.attributes.len() as f32,
            f32::from(u8::from(r.level.is_error())),
        ],
    }
}

/// Rows of one metric series: each point with its recent context. Scales differ wildly between
/// metrics, so besides the value itself every point is measured against its own series: a robust
/// z against the previous ten minutes or so (40 points: a level shift stays visible that long) and a
/// plain z against the previous ten points.
pub fn metric_rows(s: &Series, out: &mut Vec<Row>) {
    const SHORT: usize = 10;
    const LONG: usize = 40;
    let indicator = canonical_indicator(&s.metric);
    let values: Vec<(Ts, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).collect();
    for (i, &(t, v)) in values.iter().enumerate() {
        let short = &values[i.saturating_sub(SHORT)..i];
        let (mean, std) = if short.is_empty() {
            (v, 0.0)
        } else {
            let m = short.iter().map(|p| p.1).sum::<f64>() / short.len() as f64;
            let var = short.iter().map(|p| (p.1 - m).powi(2)).sum::<f64>() / short.len() as f64;
            (m, var.sqrt())
        };
        let z = ((v - mean) / (std + 1e-9 + 0.01 * mean.abs())).clamp(-10.0, 10.0);
        let long: Vec<f64> = values[i.saturating_sub(LONG)..i].iter().map(|p| p.1).collect();
        let z_long = if long.len() < 4 {
            0.0
        } else {
            let r = crate::detect::stats::Robust::of(&long);
            r.z(v).clamp(-10.0, 10.0)
        };
        let delta = if i > 0 { v - values[i - 1].1 } else { 0.0 };
        out.push(Row {
            time: t,
            service: s.service.clone(),
            cats: vec![s.service.clone(), s.metric.clone(), indicator.to_string()],
            nums: vec![slog(v), slog(mean), z_long as f32, z as f32, slog(delta)],
        });
    }
}

/// Rows of spans: each span with its own time (minus its children's), its wait after the parent
/// started, and how many children it has and how many of them failed.
pub fn span_rows(spans: &[Span], out: &mut Vec<Row>) {
    #[derive(Default, Clone, Copy)]
    struct Kids {
        n: u32,
        errors: u32,
        time: f64,
    }
    let by_id: HashMap<(&str, &str), &Span> =
        spans.iter().map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s)).collect();
    let mut kids: HashMap<(&str, &str), Kids> = HashMap::new();
    for s in spans {
        if let Some(p) = &s.parent_id {
            let k = kids.entry((s.trace_id.as_str(), p.as_str())).or_default();
            k.n += 1;
            k.errors += u32::from(s.error);
            k.time += s.duration_ms;
        }
    }
    for s in spans {
        let k = kids.get(&(s.trace_id.as_str(), s.span_id.as_str())).copied().unwrap_or_default();
        let queue = s
            .parent_id
            .as_ref()
            .and_then(|p| by_id.get(&(s.trace_id.as_str(), p.as_str())))
            .map_or(0.0, |p| (s.start - p.start).max(0) as f64);
        out.push(Row {
            time: s.start,
            service: s.service.clone(),
            cats: vec![s.service.clone(), s.operation.clone(), if s.error { "error" } else { "ok" }.to_string()],
            nums: vec![
                slog(s.duration_ms),
                slog((s.duration_ms - k.time).max(0.0)),
                slog(queue),
                k.n as f32,
                k.errors as f32,
            ],
        });
    }
}

pub fn change_row(c: &Change) -> Row {
    let has = |p: &str| c.keys.iter().filter(|k| k.key.to_ascii_lowercase().contains(p)).count() as f32;
    Row {
        time: c.time,
        service: c.service.clone(),
        cats: vec![c.service.clone(), c.kind.as_str().to_string(), c.author.clone().unwrap_or_default()],
        nums: vec![
            c.keys.len() as f32,
            f32::from(u8::from(c.version.is_some())),
            slog(c.description.as_ref().map_or(0, |d| d.len()) as f64),
            has("config") + has("timeout") + has("pool") + has("retry"),
            has("flag") + has("enable"),
        ],
    }
}

/// Every event of `source` in `t`, streamed (log files are read once, never held in memory).
pub fn for_each_row(source: SourceKind, t: &Telemetry, report: &mut ReadReport, mut f: impl FnMut(Row)) {
    match source {
        SourceKind::Logs => {
            for r in &t.logs.records {
                f(log_row(r));
            }
            if !t.logs.files.is_empty() {
                let files = Logs { records: Vec::new(), files: t.logs.files.clone() };
                crate::ingest::for_each_log(&files, report, |r| f(log_row(&r)));
            }
        }
        SourceKind::Metrics => {
            let mut rows = Vec::new();
            for s in &t.metrics {
                metric_rows(s, &mut rows);
            }
            rows.into_iter().for_each(f);
        }
        SourceKind::Traces => {
            let mut rows = Vec::with_capacity(t.spans.len());
            span_rows(&t.spans, &mut rows);
            rows.into_iter().for_each(f);
        }
        SourceKind::Changes => t.changes.iter().map(change_row).for_each(f),
    }
}

/// Every event of `source` in `incident`, marked reference (`true`) or incident period (`false`)
/// by the model's one rule: the separate baseline when there is one (then events before
/// `analysis_start` belong to neither period), else the events before `analysis_start`.
pub fn for_each_split_row(
    incident: &Incident,
    source: SourceKind,
    report: &mut ReadReport,
    mut f: impl FnMut(Row, bool),
) {
    if let Some(b) = &incident.baseline {
        for_each_row(source, b, report, |r| f(r, true));
    }
    let separate = incident.baseline.is_some();
    let start = incident.analysis_start;
    for_each_row(source, &incident.telemetry, report, |r| {
        if r.time >= start {
            f(r, false)
        } else if !separate {
            f(r, true)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_their_spec() {
        let t = crate::simulate::simulate(&crate::simulate::SimConfig::for_seed(3)).telemetry;
        for source in SourceKind::ALL {
            let spec = FeatureSpec::of(source);
            let mut n = 0;
            for_each_row(source, &t, &mut ReadReport::default(), |r| {
                assert_eq!(r.cats.len(), spec.categorical.len());
                assert_eq!(r.nums.len(), spec.numeric.len());
                assert!(r.nums.iter().all(|x| x.is_finite()), "{source:?}: {r:?}");
                n += 1;
            });
            assert!(n > 0 || source == SourceKind::Changes, "{source:?} has no rows");
        }
    }

    #[test]
    fn template_keys_mask_variables_only() {
        assert_eq!(template_key("user 12345 logged in from 10.0.0.1"), "user <*> logged in from <*>");
        assert_eq!(template_key("user 99 logged in from 10.0.0.2"), template_key("user 12345 logged in from 10.0.0.1"));
        assert_ne!(template_key("user 1 logged out"), template_key("user 1 logged in"));
    }
}
