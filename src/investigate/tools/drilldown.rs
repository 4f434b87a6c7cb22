//! `drilldown`: which attribute values (service, operation, caller; a log's version, region,
//! host, endpoint …) explain an error or latency spike — the drill-down engine over the
//! incident's spans or log lines, before versus during the incident.
//!
//! It is descriptive: its findings name attribute combinations finer than the ledger's
//! hypotheses (services), so it answers the model and the operator and moves no odds (its
//! likelihood-ratio range is 1 to 1, so the rules policy never spends a step on it).

use super::{truncate, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::drilldown::report::{confidence, localise, SearchKind};
use crate::drilldown::search::Cuboids;
use crate::drilldown::{explain, text_label, CubeBuilder};
use crate::ingest::for_each_log;
use crate::investigate::ledger::Ledger;
use crate::model::{ReadReport, Ts};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub struct Drilldown;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// The share of spans whose error starts in them (not passed up from a callee).
    #[default]
    Errors,
    /// The mean self time of spans (duration less their callees').
    Latency,
    /// The share of log lines at error level or worse.
    Logs,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// What spiked: errors (share of spans where an error starts, the default), latency (mean
    /// span self time) or logs (share of error log lines).
    #[serde(default)]
    pub signal: Signal,
    /// The attributes to split by (spans: service, operation, caller; logs: service and the
    /// lines' attribute keys). Default: all of them for spans, service and the four most
    /// common keys for logs.
    #[serde(default)]
    pub by: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingView {
    pub segment: String,
    /// Share of the change this segment explains (Shapley value over the findings).
    pub share: f64,
    pub before: f64,
    pub after: f64,
    /// Share of bootstrap replicas in which the segment is found again.
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub signal: Signal,
    pub by: Vec<String>,
    pub before: f64,
    pub after: f64,
    pub rows_before: usize,
    pub rows_during: usize,
    pub segments: usize,
    pub findings: Vec<FindingView>,
    /// Share of the change the findings explain together.
    pub explained: f64,
    pub more: usize,
}

/// Bootstrap replicas per call (the tool answers in a step, not a batch).
const REPLICAS: usize = 50;

/// A row: time, attribute values (one per `by`), numerator, denominator.
type Row = (Ts, Vec<String>, f64, f64);

fn span_rows(cx: &ToolCx, by: &[String]) -> Result<Vec<Row>, ToolError> {
    let spans = &cx.incident.telemetry.spans;
    let service_of: HashMap<(&str, &str), &str> =
        spans.iter().map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s.service.as_str())).collect();
    let mut rows = Vec::with_capacity(spans.len());
    for s in spans {
        let values = by
            .iter()
            .map(|k| match k.as_str() {
                "service" => Ok(s.service.clone()),
                "operation" => Ok(s.operation.clone()),
                "caller" => Ok(s
                    .parent_id
                    .as_deref()
                    .and_then(|p| service_of.get(&(s.trace_id.as_str(), p)))
                    .map_or("(root)", |v| v)
                    .to_string()),
                other => Err(ToolError::new(
                    ToolErrorKind::InvalidArgs,
                    format!("spans have no attribute `{other}`; split by service, operation or caller"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push((s.start, values, 0.0, 1.0));
    }
    Ok(rows)
}

fn log_rows(cx: &ToolCx, by: Option<&[String]>) -> (Vec<String>, Vec<Row>) {
    let mut report = ReadReport::default();
    let by: Vec<String> = match by {
        Some(b) => b.to_vec(),
        None => {
            let mut keys: BTreeMap<String, usize> = BTreeMap::new();
            for_each_log(&cx.incident.telemetry.logs, &mut report, |r| {
                for (k, _) in &r.attributes {
                    *keys.entry(k.clone()).or_default() += 1;
                }
            });
            let mut keys: Vec<(String, usize)> = keys.into_iter().collect();
            keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            std::iter::once("service".to_string())
                .chain(keys.into_iter().map(|k| k.0).filter(|k| k != "service").take(4))
                .collect()
        }
    };
    let mut rows = Vec::new();
    for_each_log(&cx.incident.telemetry.logs, &mut report, |r| {
        let values = by
            .iter()
            .map(|k| {
                if k == "service" {
                    r.service.clone()
                } else {
                    r.attributes.iter().find(|(x, _)| x == k).map_or_else(|| "(none)".to_string(), |(_, v)| v.clone())
                }
            })
            .collect();
        rows.push((r.time, values, f64::from(u8::from(r.level.is_error())), 1.0));
    });
    (by, rows)
}

impl Tool for Drilldown {
    const NAME: &'static str = "drilldown";
    const SPEC: &'static str = include_str!("../../../tools/drilldown.toml");
    const NEEDS: &'static [Data] = &[Data::Spans, Data::Logs];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (1.0, 1.0);
    const PER_SERVICE: bool = false;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        if args.by.as_ref().is_some_and(|b| b.is_empty() || b.len() > 6) {
            return Err(ToolError::new(ToolErrorKind::InvalidArgs, "`by` takes one to six attributes"));
        }
        let (by, mut rows) = match args.signal {
            Signal::Errors | Signal::Latency => {
                if cx.incident.telemetry.spans.is_empty() {
                    return Err(ToolError::new(
                        ToolErrorKind::Unavailable,
                        "this incident has no spans; try signal `logs`",
                    ));
                }
                let by = args.by.clone().unwrap_or_else(|| vec!["service".into(), "operation".into(), "caller".into()]);
                let rows = span_rows(cx, &by)?;
                (by, rows)
            }
            Signal::Logs => log_rows(cx, args.by.as_deref()),
        };
        if matches!(args.signal, Signal::Errors | Signal::Latency) {
            // Where errors start and time is spent, not where they are passed up.
            let spans: Vec<&crate::model::Span> = cx.incident.telemetry.spans.iter().collect();
            for (row, d) in rows.iter_mut().zip(crate::detect::traces::derive(&spans)) {
                row.2 = if args.signal == Signal::Errors { f64::from(u8::from(d.origin_error)) } else { d.self_ms };
            }
        }
        let from = cx.during_from();
        let (before, during): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.0 < from);
        if before.is_empty() || during.is_empty() {
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!(
                    "{:?} data before and during the incident is needed; there are {} rows before and {} during",
                    args.signal,
                    before.len(),
                    during.len()
                )
                .to_lowercase(),
            ));
        }
        let span = |rs: &[&Row]| {
            let (lo, hi) = rs.iter().fold((Ts::MAX, Ts::MIN), |(lo, hi), r| (lo.min(r.0), hi.max(r.0)));
            (hi - lo).max(1) as f64
        };
        let scale = span(&during) / span(&before);
        let mut b = CubeBuilder::new(by.clone());
        let mut key = vec![0u32; by.len()];
        for (rs, current) in [(&before, false), (&during, true)] {
            for r in rs.iter() {
                for (d, v) in r.1.iter().enumerate() {
                    key[d] = b.id(d, v);
                }
                if current {
                    b.add_row(&key, r.2, r.3);
                } else {
                    b.add_forecast(&key, r.2 * scale, r.3 * scale);
                }
            }
        }
        let cube = b.build(true);
        let layers = by.len().min(3);
        let cuboids = Cuboids::new(&cube, layers);
        let found = localise(SearchKind::Ripple, &cube, &cuboids, layers);
        let conf = confidence(SearchKind::Ripple, &cube, &cuboids, layers, &found, REPLICAS, 1);
        let mut x = explain(&cube, &found);
        for (f, c) in x.findings.iter_mut().zip(conf) {
            f.confidence = Some(c);
        }
        x.rank();
        let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let mut findings: Vec<FindingView> = x
            .findings
            .iter()
            .map(|f| FindingView {
                segment: text_label(&f.element),
                share: round(f.share),
                before: round(f.before),
                after: round(f.after),
                confidence: round(f.confidence.unwrap_or(0.0)),
            })
            .collect();
        let more = truncate(&mut findings, cx.max_items);
        Ok(Output {
            signal: args.signal,
            by,
            before: round(x.before),
            after: round(x.after),
            rows_before: before.len(),
            rows_during: during.len(),
            segments: cube.leaves.len(),
            findings,
            explained: round(x.explained),
            more,
        })
    }

    fn summarize(&self, o: &Output) -> String {
        let what = match o.signal {
            Signal::Errors => "share of spans where errors start",
            Signal::Latency => "mean span self time (ms)",
            Signal::Logs => "error share of log lines",
        };
        match o.findings.first() {
            Some(f) => format!(
                "{what} {} → {}: {:.0} % explained by {} (confidence {:.2})",
                o.before,
                o.after,
                100.0 * f.share,
                f.segment,
                f.confidence
            ),
            None => format!("{what} {} → {}: no attribute combination explains it", o.before, o.after),
        }
    }

    /// Descriptive: no odds move (see the module note).
    fn assess(&self, _: &ToolCx, _: &Args, _: &Output, _: &Ledger) -> Vec<(usize, f64)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated latency faults: the slow service's own time is what rose.
    #[test]
    fn drilldown_names_the_slow_service_of_simulated_latency_faults() {
        use crate::simulate::{simulate, FaultKind, SimConfig};
        for seed in 1..=4 {
            let incident = simulate(&SimConfig { fault: Some(FaultKind::Latency), ..SimConfig::for_seed(seed) });
            let triage = crate::triage::triage(&incident, &Default::default());
            let cx = ToolCx { incident: &incident, triage: &triage, kb: None, max_items: 5, logs: Default::default() };
            let truth = incident.truth.as_ref().map(|t| t.service.clone()).unwrap_or_default();
            let out = Drilldown.call(&cx, &Args { signal: Signal::Latency, by: None }).unwrap();
            let top = out.findings.first().unwrap_or_else(|| panic!("seed {seed}: no finding in {out:?}"));
            assert!(!truth.is_empty());
            let names_truth = top.segment.split(" ∧ ").any(|part| part == format!("service={truth}"));
            assert!(out.after > out.before && names_truth, "seed {seed}: the cause {truth} is not in {top:?}");
            assert!(top.confidence > 0.5 && top.share > 0.3, "seed {seed}: {top:?}");
            if seed == 1 {
                let e =
                    Drilldown.call(&cx, &Args { signal: Signal::Errors, by: Some(vec!["region".into()]) }).unwrap_err();
                assert!(e.kind == ToolErrorKind::InvalidArgs && e.message.contains("service, operation or caller"));
            }
        }
    }
}
