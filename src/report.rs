//! The report: what an on-call engineer reads (text) and what machines read (JSON).
//!
//! Built from the incident and its triage; rendering never changes the findings. The JSON shape
//! is versioned (`schema`) because the eval harness, the service and notifications consume it.

use crate::detect::{changes, Anomaly, Source};
use crate::graph::EdgeReason;
use crate::ingest::time::fmt_time;
use crate::investigate::Transcript;
use crate::model::{Alert, Incident, ReadReport, Ts};
use crate::triage::Triage;
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

pub const SCHEMA: &str = "culprit.report/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    RootCause,
    NoRootCause,
    /// Data the answer depends on could not be read (or is missing): no cause is presented as
    /// if it had been seen; `data.problems` says what to fix.
    InsufficientData,
}

/// One piece of evidence: the sentence for people, and its parts for machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// When it began (RFC 3339).
    pub time: String,
    pub service: String,
    pub source: Source,
    /// The metric, operation, log template or change it is about.
    #[serde(default)]
    pub signal: String,
    /// Its figure over its own window (onset to end) and the baseline's, in `unit`; absent where
    /// there is no one figure (changes, log templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `ms`, `s`, `%`, `ratio`, `bytes`, `/s`, or empty when the source does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// When it ended (RFC 3339), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootCause {
    pub rank: usize,
    pub service: String,
    pub indicator: String,
    /// `deploy`, `config`, `flag` for changes; otherwise the class of the leading anomaly
    /// (`cpu`, `memory`, `latency`, `errors`, `saturation`, `traffic`, `anomaly`).
    pub kind: String,
    /// Where inside the service: the lead anomaly's signal (a log statement pair `A_B` by code
    /// location, an operation, a metric, a change's kind).
    #[serde(default)]
    pub location: String,
    /// The probability that this is the root cause (`calibrate`).
    pub confidence: f64,
    /// Services from the cause to the symptom.
    pub chain: Vec<String>,
    /// Downstream of another candidate that explains it.
    pub explained: bool,
    pub evidence: Vec<Evidence>,
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub time: String,
    pub service: String,
    pub source: Source,
    pub indicator: String,
    pub score: f64,
    /// Share of the ranking walk's mass that settled on this anomaly.
    pub mass: f64,
    /// When it was last seen, if it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// Indices into `timeline`.
    pub cause: usize,
    pub effect: usize,
    pub reason: EdgeReason,
    pub weight: f64,
    pub lag_ms: Ts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub start: String,
    pub end: String,
    pub services: Vec<String>,
    pub anomalies: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    pub metric_series: usize,
    pub log_lines: u64,
    pub log_templates: usize,
    pub spans: usize,
    pub changes: usize,
    /// Where the service dependencies came from (`topology`, `traces`, both, or `none`).
    pub dependencies: String,
    /// Signals that could not be judged, and why.
    pub unchecked: Vec<String>,
    /// Records that could not be read.
    pub unreadable: ReadReport,
    /// Why the data is not enough to name a cause, each with what to fix (empty when it is):
    /// a file mostly unreadable, a data file no reader took, no data of the alerting service.
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub incident: String,
    pub alert: Alert,
    pub verdict: Verdict,
    pub root_causes: Vec<RootCause>,
    pub timeline: Vec<TimelineEntry>,
    pub groups: Vec<GroupSummary>,
    pub causal_edges: Vec<GraphEdge>,
    pub data: DataSummary,
    /// The agent's investigation, when one ran after the triage (its transcript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub investigation: Option<Transcript>,
}

/// For evidence that began after the alert: whether it is still going where its source's data
/// ends, or over (it is context for the reader, never what a cause was chosen on).
fn after_alert(a: &Anomaly, alert: Ts, data_end: Ts) -> Option<String> {
    (a.onset > alert && a.source != Source::Change).then(|| {
        // The ranking's own rule for "still going".
        let still_active = crate::rank::RankConfig::default().still_active;
        if a.end == Ts::MAX || a.end >= data_end.saturating_sub(still_active) {
            "began after the alert, still going".to_string()
        } else {
            format!("began after the alert, over by {}", fmt_time(a.end))
        }
    })
}

/// Where inside its service an anomaly sits: its signal (a log statement pair, an operation, a
/// metric, a change's kind); nothing for a suspect inferred from its callers' waits.
pub fn location(a: &Anomaly) -> String {
    if a.source == Source::Inferred {
        String::new()
    } else {
        a.signal.clone()
    }
}

fn kind_of(a: &Anomaly) -> String {
    if a.source == Source::Change {
        return a.signal.clone();
    }
    match a.indicator.as_str() {
        "cpu" => "cpu",
        "mem" => "memory",
        "latency" | "latency_total" | "latency_client" => "latency",
        "errors"
        | "log_errors"
        | "new_log_template"
        | "missing_log_template"
        | "broken_log_sequence"
        | "event_pattern" => "errors",
        "connections" | "queue" => "saturation",
        "traffic" => "traffic",
        _ => "anomaly",
    }
    .to_string()
}

fn action(incident: &Incident, lead: &Anomaly) -> String {
    let s = &lead.service;
    if lead.source == Source::Change {
        let change = incident
            .telemetry
            .changes
            .iter()
            .find(|c| c.service == *s && c.time == lead.onset && changes::indicator(c) == lead.indicator);
        if let Some(c) = change {
            return match c.kind {
                crate::model::ChangeKind::Deploy => format!(
                    "roll back deploy {} of {s}{}",
                    c.version.as_deref().unwrap_or("(latest)"),
                    c.previous_version.as_deref().map(|p| format!(" to {p}")).unwrap_or_default()
                ),
                crate::model::ChangeKind::Config => {
                    let keys: Vec<String> = c
                        .keys
                        .iter()
                        .map(|k| format!("{} to {}", k.key, k.old.as_deref().unwrap_or("its previous value")))
                        .collect();
                    format!("revert the config change on {s}: set {}", keys.join(", "))
                }
                crate::model::ChangeKind::Flag => {
                    let keys: Vec<&str> = c.keys.iter().map(|k| k.key.as_str()).collect();
                    format!("turn feature flag {} on {s} back off", keys.join(", "))
                }
            };
        }
    }
    match lead.indicator.as_str() {
        "cpu" => format!("relieve CPU saturation on {s}: scale it out or stop the hot path (profile it)"),
        "mem" => format!("restart {s} to relieve memory pressure, then look for the leak (heap profile)"),
        "latency_client" => format!("{s} waits on slow dependencies (`{}`): look at what it calls", lead.signal),
        "latency" | "latency_total" => {
            format!("look at what slowed {s} down (`{}`): its dependencies, locks, GC", lead.signal)
        }
        "connections" => format!("{s} is out of connections: raise the pool or find what holds them"),
        "errors" | "log_errors" | "new_log_template" => format!("inspect the new errors in {s}: `{}`", lead.signal),
        "broken_log_sequence" => {
            format!("requests in {s} stop short between `{}`: check the code between those log lines", lead.signal)
        }
        "event_pattern" if lead.direction < 0 => format!(
            "requests in {s} stop short of an expected step (`{}`, the step before and the one that no longer \
             follows): check the code between those two",
            lead.signal
        ),
        "event_pattern" => format!(
            "requests in {s} now take a failure step (`{}`, the step before and the failure): inspect that code path",
            lead.signal
        ),
        "missing_log_template" => format!("{s} stopped logging `{}`: check the code path around it", lead.signal),
        "traffic" => format!("find where the extra traffic to {s} comes from (retries, a caller's change)"),
        _ => format!("inspect {s} `{}`", lead.signal),
    }
}

pub fn build(incident: &Incident, triage: &Triage) -> Report {
    let anomalies = &triage.detection.anomalies;
    let ranking = &triage.ranking;
    let timeline: Vec<TimelineEntry> = anomalies
        .iter()
        .enumerate()
        .map(|(i, a)| TimelineEntry {
            time: fmt_time(a.onset),
            mass: (ranking.mass.get(i).copied().unwrap_or(0.0) * 1e4).round() / 1e4,
            end: (a.end != Ts::MAX).then(|| fmt_time(a.end)),
            service: a.service.clone(),
            source: a.source,
            indicator: a.indicator.clone(),
            score: (a.score * 100.0).round() / 100.0,
            evidence: a.evidence.clone(),
        })
        .collect();

    let root_causes: Vec<RootCause> = ranking
        .candidates
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, c)| {
            let lead = &anomalies[c.lead];
            // The lead and what followed it, then the strongest effect downstream (so the reader
            // sees what the cause did), in time order; what began after the alert is marked so.
            let effect = triage
                .graph
                .edge_references()
                .filter(|e| c.anomalies.contains(&triage.graph[e.source()]))
                .map(|e| triage.graph[e.target()])
                .filter(|k| anomalies[*k].service != c.service)
                .max_by(|x, y| anomalies[*x].score.total_cmp(&anomalies[*y].score));
            let mut shown: Vec<usize> = c.anomalies.iter().copied().take(4).chain(effect).collect();
            shown.sort_by_key(|&k| (anomalies[k].onset, k));
            let evidence = shown
                .into_iter()
                .map(|k| {
                    let a = &anomalies[k];
                    Evidence {
                        time: fmt_time(a.onset),
                        service: a.service.clone(),
                        source: a.source,
                        signal: a.signal.clone(),
                        value: a.measure.as_ref().map(|m| round_sig(m.value)),
                        baseline: a.measure.as_ref().map(|m| round_sig(m.baseline)),
                        unit: a.measure.as_ref().map(|m| m.unit.clone()),
                        end: (a.end != Ts::MAX).then(|| fmt_time(a.end)),
                        text: after_alert(a, incident.alert.time, triage.detection.end_of(a.source))
                            .map_or_else(|| a.evidence.clone(), |note| format!("{} ({note})", a.evidence)),
                    }
                })
                .collect();
            RootCause {
                rank: i + 1,
                service: c.service.clone(),
                indicator: lead.indicator.clone(),
                kind: kind_of(lead),
                location: location(lead),
                confidence: 0.0,
                chain: c.chain.clone(),
                explained: c.explained,
                evidence,
                action: action(incident, lead),
            }
        })
        .collect();
    let mut root_causes = root_causes;
    set_confidences(&mut root_causes, triage);
    let causal_edges = triage
        .graph
        .edge_references()
        .map(|e| GraphEdge {
            cause: triage.graph[e.source()],
            effect: triage.graph[e.target()],
            reason: e.weight().reason,
            weight: e.weight().weight,
            lag_ms: e.weight().lag_ms,
        })
        .collect();
    let groups = triage
        .groups
        .iter()
        .map(|g| GroupSummary {
            start: fmt_time(g.start),
            end: fmt_time(g.end),
            services: g.services.clone(),
            anomalies: g.members.len(),
        })
        .collect();
    let mut unreadable = incident.read_report.clone();
    unreadable.merge(triage.detection.read_report.clone());
    let problems = data_problems(incident, triage, &unreadable);
    let t = &incident.telemetry;
    Report {
        schema: SCHEMA.into(),
        incident: incident.id.clone(),
        alert: incident.alert.clone(),
        verdict: match (problems.is_empty(), ranking.has_root_cause) {
            (false, _) => Verdict::InsufficientData,
            (true, true) => Verdict::RootCause,
            (true, false) => Verdict::NoRootCause,
        },
        root_causes,
        timeline,
        groups,
        causal_edges,
        investigation: None,
        data: DataSummary {
            metric_series: t.metrics.len(),
            log_lines: triage.detection.log_lines,
            log_templates: triage.detection.log_templates,
            spans: t.spans.len() + incident.baseline.as_ref().map_or(0, |b| b.spans.len()),
            changes: t.changes.len(),
            dependencies: triage.dependencies.origin.to_string(),
            unchecked: triage.detection.unchecked.clone(),
            unreadable,
            problems,
        },
    }
}

/// File extensions of telemetry a reader may exist for: an ignored file with one of them is data
/// culprit did not see.
const DATA_EXTENSIONS: [&str; 8] = ["json", "jsonl", "ndjson", "csv", "tsv", "prom", "log", "gz"];

/// What keeps the data from supporting an answer, each with what to fix: files mostly unreadable,
/// data files no reader took, and an alerting service with no metric, log or span at all.
fn data_problems(incident: &Incident, triage: &Triage, read: &ReadReport) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, ok, skipped) in read.unreadable_files() {
        let why = read.issues.iter().find(|i| i.file == file).map(|i| format!(" (first: {i})")).unwrap_or_default();
        problems.push(format!(
            "{file}: {skipped} of {} records could not be read{why}; fix the fields docs/bundle-format.md names for \
             this format",
            ok + skipped
        ));
    }
    for file in &read.ignored {
        let ext = file.rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
        if DATA_EXTENSIONS.contains(&ext.as_str()) {
            problems.push(format!(
                "{file}: not read, neither its name nor its content says what it holds; rename it as \
                 docs/bundle-format.md lists (metrics*.prom, logs*.jsonl, traces*.json, spans*.csv, changes*.jsonl, …), \
                 check that it is one of the formats there, or remove it"
            ));
        }
    }
    let service = incident.alert.service.as_str();
    let seen = std::iter::once(&incident.telemetry)
        .chain(incident.baseline.as_ref())
        .any(|t| t.metrics.iter().any(|s| s.service == service) || t.spans.iter().any(|s| s.service == service))
        || triage.detection.log_services.contains(service);
    if !service.is_empty() && !seen {
        problems.push(format!(
            "no metric, log line or span of `{service}`, the service the alert names, was read; check the \
             service field or label of its telemetry (service, service.name, job, …) or the alert's service"
        ));
    }
    problems
}

/// Sets the triage's printed confidences (`calibrate::triage_confidences`) on the root causes,
/// with the first of them as the leader (after the feedback re-ranker, its first).
pub fn set_confidences(root_causes: &mut [RootCause], triage: &Triage) {
    let leader = root_causes.first().map(|rc| rc.service.as_str());
    let p = crate::calibrate::triage_confidences(&triage.ranking, &triage.detection.anomalies, leader);
    for rc in root_causes.iter_mut() {
        rc.confidence = round3(p.iter().find(|(s, _)| *s == rc.service).map_or(0.0, |(_, p)| *p));
    }
}

/// Six significant digits: enough for people, stable in JSON.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(5 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Folds the agent's investigation into the report: the root causes follow the agent's posterior
/// (their confidence becomes its calibrated probability, [`crate::calibrate::agent_map`]), and a
/// root cause is named only if the triage found one and the agent's leader is a named suspect
/// rather than "none of these".
pub fn add_investigation(r: &mut Report, t: Transcript, triage: &Triage) {
    let order = t.ranked(r.root_causes.iter().map(|c| c.service.as_str()));
    r.root_causes.sort_by_key(|c| order.iter().position(|s| *s == c.service).unwrap_or(usize::MAX));
    let confidences = crate::calibrate::agent_confidences(&t, &triage.ranking, &triage.detection.anomalies);
    for (i, c) in r.root_causes.iter_mut().enumerate() {
        c.rank = i + 1;
        // A root cause the agent held no hypothesis about has its share in "none of these".
        c.confidence = round3(confidences.iter().find(|(s, _)| *s == c.service).map_or(0.0, |(_, p)| *p));
    }
    if t.conclusion.service.is_none() && r.verdict == Verdict::RootCause {
        r.verdict = Verdict::NoRootCause;
    }
    r.investigation = Some(t);
}

/// What a root cause is, in a few words: its kind and indicator (`config ldap.timeout_ms`), once
/// when they say the same (`cpu`, not `cpu cpu`).
fn what(c: &RootCause) -> String {
    if c.kind == c.indicator || c.indicator.is_empty() {
        c.kind.clone()
    } else if c.indicator.starts_with(&c.kind) {
        c.indicator.clone()
    } else {
        format!("{} {}", c.kind, c.indicator)
    }
}

/// The readable report for a terminal or a chat message (markdown-friendly).
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let a = &r.alert;
    let _ = writeln!(s, "# Incident {}", r.incident);
    let _ = writeln!(
        s,
        "Alert: {} — {} alert on {} at {} ({:?})",
        if a.title.is_empty() { "(untitled)" } else { &a.title },
        a.signal,
        a.service,
        fmt_time(a.time),
        a.severity
    );
    let _ = writeln!(s);
    render_data(&mut s, &r.data);
    let _ = writeln!(s);
    match (r.verdict, r.root_causes.first()) {
        (Verdict::RootCause, Some(top)) => {
            match r.root_causes.get(1).filter(|second| !clearly_ahead(top, second)) {
                Some(second) => {
                    let _ = writeln!(
                        s,
                        "## Uncertain between {} ({}, {:.0} %) and {} ({}, {:.0} %); the evidence below is for {}",
                        top.service,
                        what(top),
                        top.confidence * 100.0,
                        second.service,
                        what(second),
                        second.confidence * 100.0,
                        top.service
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "## Root cause: {} ({}), confidence {:.0} %",
                        top.service,
                        what(top),
                        top.confidence * 100.0
                    );
                }
            }
            if !["", top.indicator.as_str(), top.kind.as_str()].contains(&top.location.as_str()) {
                let _ = writeln!(s, "Where: {}", top.location);
            }
            let _ = writeln!(s, "Chain: {}", top.chain.join(" → "));
            let _ = writeln!(s, "Recommended action: {}", top.action);
            let _ = writeln!(s, "Evidence:");
            for e in &top.evidence {
                let _ = writeln!(s, "  - {} [{}] {}", e.time, e.source.as_str(), e.text);
            }
        }
        (Verdict::InsufficientData, _) => {
            let _ = writeln!(s, "## Insufficient data: culprit names no root cause from data it could not read.");
            let _ = writeln!(s, "What to fix:");
            for p in &r.data.problems {
                let _ = writeln!(s, "  - {p}");
            }
        }
        _ => {
            let _ = writeln!(s, "## No root cause: nothing anomalous enough explains the alert.");
            let _ = writeln!(s, "The alert may be noise, or the cause is outside the data culprit saw.");
        }
    }
    if r.root_causes.len() > 1 || (r.verdict != Verdict::RootCause && !r.root_causes.is_empty()) {
        let _ = writeln!(
            s,
            "\n## {}",
            match r.verdict {
                Verdict::RootCause => "Other candidates",
                Verdict::NoRootCause => "Weak suspicions",
                Verdict::InsufficientData => "Suspicions from the data that could be read (not a verdict)",
            }
        );
        let skip = usize::from(r.verdict == Verdict::RootCause);
        for c in r.root_causes.iter().skip(skip) {
            // With data missing, a percentage would claim a certainty nobody has.
            let confidence = if r.verdict == Verdict::InsufficientData {
                String::new()
            } else {
                format!(" confidence {:.0} %", c.confidence * 100.0)
            };
            let _ = writeln!(
                s,
                "  {}. {} ({}){confidence}{}",
                c.rank,
                c.service,
                what(c),
                if c.explained { " — explained by an upstream cause" } else { "" }
            );
        }
    }
    if let Some(t) = &r.investigation {
        let _ = writeln!(s, "\n## Investigation");
        s.push_str(&t.render());
    }
    let _ = writeln!(s, "\n## Timeline ({} anomalies in {} groups)", r.timeline.len(), r.groups.len());
    for t in r.timeline.iter().take(25) {
        let _ = writeln!(s, "  {} {:<7} {}", t.time, t.source.as_str(), t.evidence);
    }
    if r.timeline.len() > 25 {
        let _ = writeln!(s, "  … {} more (use --json for all)", r.timeline.len() - 25);
    }
    s
}

/// How many times the runner-up's confidence the leader's must be for the headline to name it
/// alone; below that it says the two are close.
pub const CLEAR_LEAD: f64 = 2.0;

/// Whether `top` is clearly ahead of `second` ([`CLEAR_LEAD`]).
pub fn clearly_ahead(top: &RootCause, second: &RootCause) -> bool {
    top.confidence >= CLEAR_LEAD * second.confidence
}

/// Files listed one per line in the text report before the rest are summed up.
const FILES_LISTED: usize = 12;

/// What was read and what was not, per file, one line each (the files with skipped records
/// first), then what the data amounts to.
fn render_data(s: &mut String, d: &DataSummary) {
    let u = &d.unreadable;
    let mut files = u.files();
    // Files with skipped records first (stable: by name within each part).
    files.sort_by_key(|f| f.2 == 0);
    let _ = writeln!(
        s,
        "## Data read: {} files, {} records read, {} skipped{}",
        files.len(),
        u.records_read,
        u.records_skipped,
        if u.ignored.is_empty() { String::new() } else { format!(", {} files not read", u.ignored.len()) }
    );
    for (file, read, skipped) in files.iter().take(FILES_LISTED) {
        let why = if *skipped > 0 {
            let first = u.issues.iter().find(|i| i.file == *file).map(|i| format!("; first: {i}")).unwrap_or_default();
            format!(", {skipped} skipped{first}")
        } else {
            String::new()
        };
        let _ = writeln!(s, "  {file}: {read} records read{why}");
    }
    if files.len() > FILES_LISTED {
        let rest = &files[FILES_LISTED..];
        let skipped: u64 = rest.iter().map(|f| f.2).sum();
        let _ = writeln!(s, "  … {} more files ({} records skipped in them)", rest.len(), skipped);
    }
    for f in &u.ignored {
        let _ = writeln!(s, "  {f}: not read (neither its name nor its content says what it holds)");
    }
    let _ = writeln!(
        s,
        "In all: {} metric series, {} log lines ({} templates), {} spans, {} changes; dependencies from {}.",
        d.metric_series, d.log_lines, d.log_templates, d.spans, d.changes, d.dependencies
    );
    if !d.unchecked.is_empty() {
        let _ = writeln!(
            s,
            "Not checked: {} lacked reference data (e.g. {}).",
            plural(d.unchecked.len(), "signal", "signals"),
            d.unchecked[0]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_not_clearly_ahead_is_headlined_as_uncertain() {
        let incident = crate::simulate::simulate(&crate::simulate::demo_config());
        let t = crate::triage::triage(&incident, &crate::triage::Config::default());
        let mut r = build(&incident, &t);
        assert_eq!(r.verdict, Verdict::RootCause);
        assert!(render_text(&r).contains("## Root cause: auth"));
        r.root_causes[0].confidence = 0.45;
        r.root_causes[1].confidence = 0.40;
        let text = render_text(&r);
        assert!(text.contains("## Uncertain between auth"), "{text}");
        assert!(!text.contains("## Root cause:"), "{text}");
        // The alert's time reads as RFC 3339 in JSON, and back.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["alert"]["time"], "2024-05-15T07:54:49.000Z");
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.alert.time, r.alert.time);
    }
}
