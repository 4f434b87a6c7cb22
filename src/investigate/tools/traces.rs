//! `trace_query`: where the symptom's requests spend their extra time and where their errors
//! start, the slowest and failing spans, and the critical path.
//!
//! The question it answers for the ledger: *does this suspect explain the symptom?* Over the
//! traces that pass through the symptom service, each downstream service's self time and origin
//! errors per trace are compared before and during the incident; a suspect's share of the extra
//! latency (and of the extra errors) is its likelihood. A suspect that is busy, restarted or
//! changed but adds no time and no errors to the symptom's requests is not its cause.

use super::{about, truncate, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::detect::traces::derive;
use crate::investigate::ledger::Ledger;
use crate::model::Span;
use foldhash::{HashMap, HashMapExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub struct TraceQuery;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The service whose requests to explain (default: the alerting service).
    #[serde(default)]
    pub service: Option<String>,
    /// Also show the critical path from `service` down to this service.
    #[serde(default)]
    pub to: Option<String>,
}

/// One downstream service's part in the symptom's requests, per trace.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    pub service: String,
    pub self_ms_before: f64,
    pub self_ms_during: f64,
    /// Share of the symptom's extra latency that is this service's own time (0..1).
    pub latency_share: f64,
    pub origin_errors_before: f64,
    pub origin_errors_during: f64,
    /// Share of the symptom's extra errors that start in this service (0..1).
    pub error_share: f64,
    /// The callee this service's own extra time or errors were spent waiting on (they are
    /// counted there): it got worse only in the requests that called that callee.
    pub waiting_on: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpanView {
    pub service: String,
    pub operation: String,
    /// Seconds from the alert.
    pub at_s: i64,
    pub duration_ms: f64,
    pub self_ms: f64,
    pub error: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub service: String,
    pub traces_before: usize,
    pub traces_during: usize,
    /// Mean duration of the service's entry spans.
    pub latency_before_ms: f64,
    pub latency_during_ms: f64,
    /// Share of traces through the service with any failed span.
    pub error_rate_before: f64,
    pub error_rate_during: f64,
    /// Downstream services by their share of the change, largest first.
    pub attribution: Vec<Share>,
    pub slowest: Vec<SpanView>,
    pub failing: Vec<SpanView>,
    /// Services along the slowest path of the slowest trace during the incident (to `to`, when
    /// given and on the way).
    pub critical_path: Vec<String>,
    /// Items left out by the output limit.
    pub more: usize,
    /// Every service's share, for the assessment (the output shows the largest).
    #[serde(skip)]
    pub shares: Vec<Share>,
}

/// Per-trace sums over one period.
#[derive(Default)]
struct Period {
    traces: usize,
    entry_ms: f64,
    entries: usize,
    failed_traces: usize,
    /// (caller, callee) → the caller's self time and origin errors summed over the traces in
    /// which it called the callee, and their count.
    with_call: BTreeMap<(String, String), (f64, f64, usize)>,
    /// service → the same sums over every trace the service is in.
    present: BTreeMap<String, (f64, f64, usize)>,
}

impl Period {
    /// A service's self time (`errors` false) or origin errors (true) per trace of the period.
    fn per_trace(&self, service: &str, errors: bool) -> f64 {
        self.present.get(service).map_or(0.0, |x| if errors { x.1 } else { x.0 }) / self.traces.max(1) as f64
    }

    /// The caller's mean self time and origin errors per trace in which it called the callee.
    fn with(&self, caller: &str, callee: &str) -> Option<(f64, f64, usize)> {
        let w = self.with_call.get(&(caller.to_string(), callee.to_string()))?;
        Some((w.0 / w.2.max(1) as f64, w.1 / w.2.max(1) as f64, w.2))
    }

    /// The same over the traces in which it did not.
    fn without(&self, caller: &str, callee: &str) -> Option<(f64, f64, usize)> {
        let all = self.present.get(caller)?;
        let with = self.with_call.get(&(caller.to_string(), callee.to_string())).copied().unwrap_or((0.0, 0.0, 0));
        let n = all.2.checked_sub(with.2)?;
        Some(((all.0 - with.0) / n.max(1) as f64, (all.1 - with.1) / n.max(1) as f64, n))
    }
}

/// The spans of each trace that are `service`'s entry spans or below them.
fn subtrees(spans: &[&Span], service: &str) -> Vec<Vec<usize>> {
    let mut by_trace: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        by_trace.entry(s.trace_id.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut ids: Vec<&&str> = by_trace.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let members = &by_trace[*id];
        if !members.iter().any(|&i| spans[i].service == service) {
            continue;
        }
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        for &i in members {
            if let Some(p) = spans[i].parent_id.as_deref() {
                children.entry(p).or_default().push(i);
            }
        }
        let parent_service: HashMap<&str, &str> =
            members.iter().map(|&i| (spans[i].span_id.as_str(), spans[i].service.as_str())).collect();
        let mut stack: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| {
                spans[i].service == service
                    && spans[i].parent_id.as_deref().and_then(|p| parent_service.get(p)).is_none_or(|ps| *ps != service)
            })
            .collect();
        let mut keep = Vec::new();
        while let Some(i) = stack.pop() {
            keep.push(i);
            if let Some(c) = children.get(spans[i].span_id.as_str()) {
                stack.extend(c);
            }
        }
        keep.sort_unstable();
        out.push(keep);
    }
    out
}

/// One span of a subtree: its index in the period's spans, its self time (ms), whether it failed.
type Fact = (usize, f64, bool);

/// The period's statistics, the [`Fact`]s of the spans in `service`'s subtrees, and those
/// subtrees.
fn period(spans: &[&Span], service: &str) -> (Period, Vec<Fact>, Vec<Vec<usize>>) {
    let derived = derive(spans);
    let mut p = Period::default();
    let mut facts = Vec::new();
    let trees = subtrees(spans, service);
    let by_id: HashMap<(&str, &str), usize> =
        spans.iter().enumerate().map(|(i, s)| ((s.trace_id.as_str(), s.span_id.as_str()), i)).collect();
    for tree in &trees {
        p.traces += 1;
        let mut failed = false;
        let mut own: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let mut calls: std::collections::BTreeSet<(&str, &str)> = Default::default();
        for &i in tree {
            let (s, d) = (spans[i], derived[i]);
            let o = own.entry(s.service.as_str()).or_default();
            o.0 += d.self_ms;
            if d.origin_error {
                o.1 += 1.0;
            }
            if let Some(&parent) = s.parent_id.as_deref().and_then(|pid| by_id.get(&(s.trace_id.as_str(), pid))) {
                if spans[parent].service != s.service {
                    calls.insert((spans[parent].service.as_str(), s.service.as_str()));
                }
            }
            failed |= s.error;
            if s.service == service && d.entry {
                p.entry_ms += s.duration_ms;
                p.entries += 1;
            }
            facts.push((i, d.self_ms, d.origin_error));
        }
        for (svc, (ms, err)) in &own {
            let e = p.present.entry(svc.to_string()).or_default();
            *e = (e.0 + ms, e.1 + err, e.2 + 1);
        }
        for (caller, callee) in calls {
            let (ms, err) = own.get(caller).copied().unwrap_or_default();
            let e = p.with_call.entry((caller.to_string(), callee.to_string())).or_default();
            *e = (e.0 + ms, e.1 + err, e.2 + 1);
        }
        p.failed_traces += failed as usize;
    }
    (p, facts, trees)
}

/// Several callers of one callee that got slower (or failed more) in their own spans together:
/// they are waiting on what they share, which has no span for the wait (a pool, a lossy link).
/// Two or more callers, each with a tenth of the change or more, holding half of it together.
fn shared_wait(d: &Period, extra: &BTreeMap<String, f64>) -> Option<(String, Vec<String>)> {
    let total: f64 = extra.values().sum();
    if total <= 0.0 {
        return None;
    }
    let big = |s: &str| extra.get(s).copied().unwrap_or(0.0) >= 0.1 * total;
    let mut by_callee: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (caller, callee) in d.with_call.keys() {
        if big(caller) && caller != callee {
            by_callee.entry(callee.as_str()).or_default().push(caller.as_str());
        }
    }
    by_callee
        .into_iter()
        .filter(|(_, callers)| callers.len() >= 2)
        .map(|(callee, callers)| (callers.iter().map(|c| extra[*c]).sum::<f64>(), callee, callers))
        .filter(|(sum, _, _)| *sum >= 0.5 * total)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, callee, callers)| (callee.to_string(), callers.into_iter().map(str::to_string).collect()))
}

/// The least ratio a caller found waiting on a callee gets.
const WAITING_FLOOR: f64 = 0.5;

/// Fewest traces on each side of a comparison.
const MIN_TRACES: usize = 5;

/// The callee a caller's extra time (`errors` false) or extra errors (true) is spent waiting on:
/// the caller got worse in the requests where it called that callee and not in the others (a
/// pool, a lossy link or a slow dependency shows in the client's own span when the callee has no
/// span for it). None when the caller's trouble is everywhere (its own fault) or cannot be split.
fn waiting_on(b: &Period, d: &Period, caller: &str, errors: bool) -> Option<String> {
    let pick = |x: (f64, f64, usize)| if errors { x.1 } else { x.0 };
    let mut best: Option<(f64, String)> = None;
    for (c, callee) in d.with_call.keys().filter(|(c, _)| c == caller) {
        let (Some(dw), Some(bw), Some(dn), Some(bn)) =
            (d.with(c, callee), b.with(c, callee), d.without(c, callee), b.without(c, callee))
        else {
            continue;
        };
        if dw.2 < MIN_TRACES || bw.2 < MIN_TRACES || dn.2 < MIN_TRACES || bn.2 < MIN_TRACES {
            continue;
        }
        let extra_with = pick(dw) - pick(bw);
        let extra_without = pick(dn) - pick(bn);
        if extra_with > 0.0 && extra_without < 0.3 * extra_with && best.as_ref().is_none_or(|x| extra_with > x.0) {
            best = Some((extra_with, callee.clone()));
        }
    }
    best.map(|x| x.1)
}

fn view(s: &Span, self_ms: f64, alert: i64) -> SpanView {
    SpanView {
        service: s.service.clone(),
        operation: s.operation.clone(),
        at_s: (s.start - alert) / 1000,
        duration_ms: (s.duration_ms * 10.0).round() / 10.0,
        self_ms: (self_ms * 10.0).round() / 10.0,
        error: s.error,
    }
}

/// Follows the longest child from the entry span of the slowest trace.
fn critical_path(spans: &[&Span], tree: &[usize], to: Option<&str>) -> Vec<String> {
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in tree {
        if let Some(p) = spans[i].parent_id.as_deref() {
            children.entry(p).or_default().push(i);
        }
    }
    let in_tree: std::collections::HashSet<&str> = tree.iter().map(|&i| spans[i].span_id.as_str()).collect();
    let Some(mut cur) =
        tree.iter().copied().find(|&i| spans[i].parent_id.as_deref().is_none_or(|p| !in_tree.contains(p)))
    else {
        return Vec::new();
    };
    let mut path = vec![spans[cur].service.clone()];
    while let Some(next) = children
        .get(spans[cur].span_id.as_str())
        .and_then(|c| c.iter().copied().max_by(|&a, &b| spans[a].duration_ms.total_cmp(&spans[b].duration_ms)))
    {
        cur = next;
        if path.last() != Some(&spans[cur].service) {
            path.push(spans[cur].service.clone());
        }
        if to.is_some_and(|t| t == spans[cur].service) {
            break;
        }
    }
    path
}

impl Tool for TraceQuery {
    const NAME: &'static str = "trace_query";
    const SPEC: &'static str = include_str!("../../../tools/trace_query.toml");
    const NEEDS: &'static [Data] = &[Data::Spans];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (0.25, 6.25);
    const PER_SERVICE: bool = false;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        let service = args.service.clone().unwrap_or_else(|| cx.incident.alert.service.clone());
        cx.check_service(&service)?;
        let i = cx.incident;
        let from = cx.during_from();
        let before: Vec<&Span> = match &i.baseline {
            Some(b) => b.spans.iter().collect(),
            None => i.telemetry.spans.iter().filter(|s| s.start < i.analysis_start).collect(),
        };
        let during: Vec<&Span> = i.telemetry.spans.iter().filter(|s| s.start >= from).collect();
        if !during.iter().any(|s| s.service == service) {
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!("no spans of `{service}` during the incident: traces cannot explain it"),
            ));
        }
        let (b, _, _) = period(&before, &service);
        let (d, facts, trees) = period(&during, &service);
        let mut services: Vec<String> = b.present.keys().chain(d.present.keys()).cloned().collect();
        services.sort_unstable();
        services.dedup();
        let extra = |s: &str, errors: bool| (d.per_trace(s, errors) - b.per_trace(s, errors)).max(0.0);
        // Extra time and errors per service; a waiting caller's are moved onto what it waits on.
        let mut lat: BTreeMap<String, f64> = services.iter().map(|s| (s.clone(), extra(s, false))).collect();
        let mut err: BTreeMap<String, f64> = services.iter().map(|s| (s.clone(), extra(s, true))).collect();
        let mut waits: BTreeMap<String, String> = BTreeMap::new();
        for s in &services {
            for (errors, map) in [(false, &mut lat), (true, &mut err)] {
                if map.get(s).copied().unwrap_or(0.0) <= 0.0 {
                    continue;
                }
                if let Some(callee) = waiting_on(&b, &d, s, errors) {
                    let moved = map.insert(s.clone(), 0.0).unwrap_or(0.0);
                    *map.entry(callee.clone()).or_default() += moved;
                    waits.insert(s.clone(), callee);
                }
            }
        }
        for map in [&mut lat, &mut err] {
            if let Some((callee, callers)) = shared_wait(&d, map) {
                for c in callers {
                    let moved = map.insert(c.clone(), 0.0).unwrap_or(0.0);
                    *map.entry(callee.clone()).or_default() += moved;
                    waits.entry(c).or_insert_with(|| callee.clone());
                }
            }
        }
        let total_lat: f64 = lat.values().sum();
        let total_err: f64 = err.values().sum();
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let mut attribution: Vec<Share> = lat
            .keys()
            .map(|s| Share {
                service: s.to_string(),
                self_ms_before: round(b.per_trace(s, false)),
                self_ms_during: round(d.per_trace(s, false)),
                latency_share: if total_lat > 0.0 { round(lat[s] / total_lat) } else { 0.0 },
                origin_errors_before: round(b.per_trace(s, true)),
                origin_errors_during: round(d.per_trace(s, true)),
                error_share: if total_err > 0.0 { round(err.get(s).copied().unwrap_or(0.0) / total_err) } else { 0.0 },
                waiting_on: waits.get(s).cloned(),
            })
            .collect();
        attribution.sort_by(|x, y| {
            (y.latency_share + y.error_share)
                .total_cmp(&(x.latency_share + x.error_share))
                .then_with(|| x.service.cmp(&y.service))
        });
        let shares = attribution.clone();
        let mut more = truncate(&mut attribution, cx.max_items);

        let alert = i.alert.time;
        // The longest spans first (ties in the order of `facts`), and views only of those shown.
        let longest_first = |key: &dyn Fn(usize) -> f64, list: Vec<&Fact>| -> (Vec<SpanView>, usize) {
            let mut list: Vec<(usize, &Fact)> = list.into_iter().enumerate().collect();
            let order =
                |x: &(usize, &Fact), y: &(usize, &Fact)| key(y.1 .0).total_cmp(&key(x.1 .0)).then(x.0.cmp(&y.0));
            let shown = cx.max_items.min(list.len());
            if shown < list.len() {
                list.select_nth_unstable_by(shown, order);
            }
            let mut top: Vec<_> = list[..shown].to_vec();
            top.sort_unstable_by(order);
            let views = top.iter().map(|(_, &(j, self_ms, _))| view(during[j], self_ms, alert)).collect();
            (views, list.len() - shown)
        };
        let (slowest, hidden) = longest_first(&|j| during[j].duration_ms, facts.iter().collect());
        more += hidden;
        // Failing spans by their duration as shown (to 0.1 ms).
        let shown_ms = |j: usize| (during[j].duration_ms * 10.0).round() / 10.0;
        let (failing, hidden) = longest_first(&shown_ms, facts.iter().filter(|f| f.2).collect());
        more += hidden;
        let slowest_tree = trees.iter().max_by(|x, y| {
            let dur = |t: &Vec<usize>| t.iter().map(|&j| during[j].duration_ms).fold(0.0, f64::max);
            dur(x).total_cmp(&dur(y))
        });
        let critical_path = slowest_tree.map(|t| critical_path(&during, t, args.to.as_deref())).unwrap_or_default();
        Ok(Output {
            service,
            traces_before: b.traces,
            traces_during: d.traces,
            latency_before_ms: round(b.entry_ms / b.entries.max(1) as f64),
            latency_during_ms: round(d.entry_ms / d.entries.max(1) as f64),
            error_rate_before: round(b.failed_traces as f64 / b.traces.max(1) as f64),
            error_rate_during: round(d.failed_traces as f64 / d.traces.max(1) as f64),
            attribution,
            slowest,
            failing,
            critical_path,
            more,
            shares,
        })
    }

    fn summarize(&self, o: &Output) -> String {
        let top = o
            .attribution
            .first()
            .map(|s| {
                format!(
                    "; most of the change is in {} (latency share {:.2}, error share {:.2})",
                    s.service, s.latency_share, s.error_share
                )
            })
            .unwrap_or_default();
        format!(
            "{}: {:.0} → {:.0} ms, errors {:.1}% → {:.1}% over {} traces{top}",
            o.service,
            o.latency_before_ms,
            o.latency_during_ms,
            100.0 * o.error_rate_before,
            100.0 * o.error_rate_during,
            o.traces_during
        )
    }

    /// A suspect's likelihood follows its share of the symptom's change: 0.25 when it adds
    /// nothing, up to 6.25 when it is all of it. Only when the symptom visibly changed in the
    /// traces (latency up by half, or two points more failed requests) and there were traces to
    /// compare; a suspect the symptom's requests never reach gets 0.3 if it is traced elsewhere,
    /// and nothing (1) if it is not traced at all.
    ///
    /// How sure the traces are is how concentrated the change is: every ratio is raised to the
    /// power κ = (top share − 0.2) / 0.5, clamped to [0, 1], so a change spread thinly over many
    /// services (missing spans, a noisy neighbour on shared hosts) says little about any of them.
    ///
    /// A service's own span also holds its waits on callees that have no span for them, so when
    /// its extra could not be split by callee and one of its callees is itself anomalous during
    /// the incident, the traces cannot tell its own fault from that callee's: its ratio is capped
    /// at 2 and that callee's is not lowered below 1. A caller found waiting on a callee is not
    /// lowered below 0.5: the fault is at their edge, and may be the caller's own setting.
    fn assess(&self, cx: &ToolCx, _: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        if o.traces_before < 5 || o.traces_during < 5 {
            return Vec::new();
        }
        let lat_up = o.latency_before_ms > 0.0 && o.latency_during_ms > 1.5 * o.latency_before_ms;
        let err_up = o.error_rate_during > o.error_rate_before + 0.02;
        if !lat_up && !err_up {
            return Vec::new();
        }
        let share = |a: &Share| match (lat_up, err_up) {
            (true, true) => a.latency_share.max(a.error_share),
            (true, false) => a.latency_share,
            _ => a.error_share,
        };
        let from = cx.during_from();
        let anomalous = |s: &str| cx.triage.detection.anomalies.iter().any(|a| a.service == s && a.end >= from);
        let mut cap: BTreeMap<&str, f64> = BTreeMap::new();
        let mut floor: BTreeMap<&str, f64> = BTreeMap::new();
        // A caller waiting on a callee is at the faulty edge: its own setting (a timeout, a pool
        // size) may be what broke, so the traces count only half against it.
        for a in o.shares.iter().filter(|a| a.waiting_on.is_some()) {
            floor.insert(a.service.as_str(), WAITING_FLOOR);
        }
        for a in o.shares.iter().filter(|a| a.waiting_on.is_none() && share(a) >= 0.1) {
            let callees: Vec<&str> = cx.triage.dependencies.callees_of(&a.service).filter(|c| anomalous(c)).collect();
            if !callees.is_empty() {
                cap.insert(a.service.as_str(), 2.0);
                for c in callees {
                    floor.insert(c, 1.0);
                }
            }
        }
        // Spans judged against an old reference cannot tell a fault from the day's drift: where
        // only latency rose, the traces say nothing about a service whose latency metrics
        // (against the last hour) show nothing, neither against it nor for it, and its share
        // does not make the change look concentrated (see `detect::trace_reference_is_stale`).
        let mut mute: BTreeSet<&str> = BTreeSet::new();
        if lat_up && !err_up && crate::detect::trace_reference_is_stale(cx.incident) {
            let min_points = crate::detect::DetectConfig::default().min_reference_points;
            let anomalies = &cx.triage.detection.anomalies;
            let services = o
                .shares
                .iter()
                .map(|a| a.service.as_str())
                .chain(ledger.hypotheses.iter().filter_map(|h| h.service.as_deref()));
            for s in services {
                if crate::detect::latency_metrics_clear(cx.incident, anomalies, s, min_points) {
                    mute.insert(s);
                }
            }
        }
        let top = o.shares.iter().filter(|a| !mute.contains(a.service.as_str())).map(share).fold(0.0, f64::max);
        let kappa = ((top - 0.2) / 0.5).clamp(0.0, 1.0);
        if kappa == 0.0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for h in &ledger.hypotheses {
            let Some(s) = h.service.as_deref().filter(|s| !mute.contains(s)) else { continue };
            let ratio = match o.shares.iter().find(|a| a.service == s) {
                Some(a) => 0.25 + 6.0 * share(a),
                None if cx.incident.telemetry.spans.iter().any(|sp| sp.service == s) => 0.3,
                None => continue,
            };
            let ratio = ratio.min(cap.get(s).copied().unwrap_or(f64::MAX)).max(floor.get(s).copied().unwrap_or(0.0));
            out.extend(about(ledger, s, ratio.powf(kappa)));
        }
        out
    }
}
