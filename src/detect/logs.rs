//! Log anomalies: online template mining in the manner of Drain (He et al., ICWS'17), then per
//! service the templates that are new, that burst, or that went missing against the reference.
//!
//! Logs are streamed once (reference first, then the incident period); only per-template counts
//! and first-seen times are kept, so memory does not grow with the number of lines.

use super::{Anomaly, DetectConfig, Detection, Source};
use crate::model::{Incident, Level, LogRecord, Logs, ReadReport, Ts};
/// foldhash: a line looks up its template group and its trace id; SipHash was a tenth of the time.
use foldhash::HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Most tokens of a line that take part in matching; longer lines are cut (rarely matters).
const MAX_TOKENS: usize = 48;

/// One mined template: tokens, `None` standing for a variable part.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub tokens: Vec<Option<Box<str>>>,
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(t.as_deref().unwrap_or("<*>"))?;
        }
        Ok(())
    }
}

/// A Drain-style template miner: lines are grouped by token count and first token, then matched
/// to the most similar template of that group, which is generalised where they differ.
#[derive(Debug, Default)]
pub struct Drain {
    similarity: f64,
    templates: Vec<Template>,
    /// token count → first token (or "" for a variable) → template ids.
    index: HashMap<usize, HashMap<Box<str>, Vec<u32>>>,
}

/// Whether a token is a variable part (ids, numbers, addresses) rather than template text.
/// Code locations such as `OrderServiceImpl#120` stay: they say where in the code a line was.
pub fn is_variable(tok: &str) -> bool {
    // Most words have no digit at all: settled without looking at characters.
    if !tok.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut digits = 0usize;
    let mut alnum = 0usize;
    let mut hex_run = 0usize;
    let mut max_hex_run = 0usize;
    for c in tok.chars() {
        if c.is_ascii_digit() {
            digits += 1;
        }
        if c.is_alphanumeric() {
            alnum += 1;
        }
        if c.is_ascii_hexdigit() {
            hex_run += 1;
            max_hex_run = max_hex_run.max(hex_run);
        } else {
            hex_run = 0;
        }
    }
    digits > 0 && (digits * 2 >= alnum || max_hex_run >= 8)
}

impl Drain {
    pub fn new(similarity: f64) -> Drain {
        Drain { similarity, ..Default::default() }
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// Adds one message and returns the id of its template.
    pub fn add(&mut self, message: &str) -> u32 {
        fn token(t: &str) -> Option<&str> {
            if is_variable(t) {
                None
            } else {
                Some(t)
            }
        }
        // ASCII text splits the same on ASCII whitespace (but for the vertical tab), byte by byte.
        let tokens: Vec<Option<&str>> = if message.is_ascii() && !message.contains('\x0B') {
            message.split_ascii_whitespace().take(MAX_TOKENS).map(token).collect()
        } else {
            message.split_whitespace().take(MAX_TOKENS).map(token).collect()
        };
        let first = tokens.first().copied().flatten().unwrap_or("");
        let group = self.index.entry(tokens.len()).or_default();
        let candidates = match group.get_mut(first) {
            Some(c) => c,
            None => group.entry(first.into()).or_default(),
        };
        let mut best: Option<(usize, f64)> = None;
        for (slot, &id) in candidates.iter().enumerate() {
            let t = &self.templates[id as usize];
            let same = t
                .tokens
                .iter()
                .zip(&tokens)
                .filter(|(a, b)| matches!((a, b), (Some(x), Some(y)) if **x == **y))
                .count();
            let wild = t.tokens.iter().filter(|a| a.is_none()).count();
            let sim = if tokens.is_empty() { 1.0 } else { (same + wild) as f64 / tokens.len() as f64 };
            let constant = t.tokens.len() - wild;
            let enough = constant == 0 || same as f64 / constant as f64 >= self.similarity;
            if enough && sim >= self.similarity && best.is_none_or(|(_, s)| sim > s) {
                best = Some((slot, sim));
            }
        }
        if let Some((slot, _)) = best {
            let id = candidates[slot];
            let t = &mut self.templates[id as usize];
            for (a, b) in t.tokens.iter_mut().zip(&tokens) {
                if let (Some(x), Some(y)) = (a.as_deref(), b) {
                    if x != *y {
                        *a = None;
                    }
                } else if b.is_none() {
                    *a = None;
                }
            }
            return id;
        }
        let id = self.templates.len() as u32;
        self.templates.push(Template { tokens: tokens.iter().map(|t| t.map(Box::from)).collect() });
        candidates.push(id);
        id
    }
}

/// Counts of one template in the reference and in the incident period.
#[derive(Debug, Clone, Default)]
pub struct TemplateStats {
    /// Lines in the reference (the separate baseline, else before `analysis_start`).
    pub reference: u64,
    /// Lines in the incident period (from `analysis_start`).
    pub current: u64,
    first_current: Option<Ts>,
    last_current: Option<Ts>,
    /// The most severe level of its lines.
    pub level: Level,
    example: String,
    /// Lines from [`during_from`] on (a part of `current`), and error lines in the reference and
    /// from [`during_from`] on: what `log_search` reports.
    pub during: u64,
    pub errors_reference: u64,
    pub errors_during: u64,
}

/// One service's logs as the detector read them: its templates, their counts, and the latest
/// lines. Kept after detection in [`LogView`], so the agent's `log_search` answers without
/// reading the logs again.
#[derive(Debug, Default)]
pub struct ServiceLogs {
    drain: Drain,
    stats: Vec<TemplateStats>,
    reference: u64,
    current: u64,
    /// The earliest and latest line of the reference or from [`during_from`] on.
    pub first: Ts,
    pub last: Ts,
    /// The latest lines from [`during_from`] on (time, level, template, text), at most [`LATEST`].
    latest: BinaryHeap<Reverse<(Ts, Level, u32, String)>>,
    /// Templates seen per trace (lines that carry a `trace_id` attribute), per period, with the
    /// trace's first time: what a request did in this service, step by step. Dropped once judged.
    traces: [TraceSteps; 2],
}

/// Lines kept per service for [`ServiceLogs::latest`].
pub const LATEST: usize = 50;

/// The start of "during the incident" for the agent's before/during comparisons: a little before
/// the alert (faults show before monitors fire), and never before the analysis start.
pub fn during_from(incident: &Incident) -> Ts {
    incident.alert.time.saturating_sub(10 * crate::model::MINUTE).max(incident.analysis_start)
}

/// Every service's [`ServiceLogs`], with the start of "during" they were counted from.
#[derive(Debug, Default)]
pub struct LogView {
    pub services: BTreeMap<String, ServiceLogs>,
    pub during_from: Ts,
}

impl TemplateStats {
    /// A line of the template from the incident period (an error line when it has one).
    pub fn example(&self) -> &str {
        &self.example
    }
}

impl ServiceLogs {
    pub fn templates(&self) -> &[Template] {
        self.drain.templates()
    }

    /// Each template's id and counts.
    pub fn stats(&self) -> impl Iterator<Item = (u32, &TemplateStats)> {
        self.stats.iter().enumerate().map(|(id, s)| (id as u32, s))
    }

    /// The latest lines from [`during_from`] on, newest first: (time, level, template id, text).
    pub fn latest(&self) -> Vec<&(Ts, Level, u32, String)> {
        let mut latest: Vec<&(Ts, Level, u32, String)> = self.latest.iter().map(|r| &r.0).collect();
        latest.sort_by_key(|l| Reverse(l.0));
        latest
    }
}

/// Trace id → (first time seen, template ids logged in that trace).
type TraceSteps = HashMap<Box<str>, (Ts, Vec<u32>)>;

/// Most traces remembered per service and period; beyond it, new traces are not followed (the
/// counts above still are). Bounds memory on very large logs.
const MAX_TRACES: usize = 50_000;

impl ServiceLogs {
    fn new(similarity: f64) -> ServiceLogs {
        ServiceLogs { drain: Drain::new(similarity), first: Ts::MAX, last: Ts::MIN, ..Default::default() }
    }

    /// Counts one line of the reference (`current` false) or of the incident period; `during`:
    /// from [`during_from`] on.
    fn push(&mut self, rec: &LogRecord, current: bool, during: bool) {
        let id = self.drain.add(&rec.message) as usize;
        if let Some((_, trace)) = rec.attributes.iter().find(|(k, _)| k == "trace_id") {
            let traces = &mut self.traces[usize::from(current)];
            if let Some((t, ids)) = traces.get_mut(trace.as_str()) {
                *t = (*t).min(rec.time);
                if !ids.contains(&(id as u32)) {
                    ids.push(id as u32);
                }
            } else if traces.len() < MAX_TRACES {
                traces.insert(trace.as_str().into(), (rec.time, vec![id as u32]));
            }
        }
        if id >= self.stats.len() {
            self.stats.resize_with(id + 1, TemplateStats::default);
        }
        let s = &mut self.stats[id];
        s.level = s.level.max(rec.level);
        let error = u64::from(rec.level.is_error());
        if current {
            self.current += 1;
            s.current += 1;
            if s.first_current.is_none_or(|t| rec.time < t) {
                s.first_current = Some(rec.time);
            }
            if s.last_current.is_none_or(|t| rec.time > t) {
                s.last_current = Some(rec.time);
            }
            if s.example.is_empty() || (rec.level.is_error() && s.example.len() < 2) {
                s.example = rec.message.chars().take(200).collect();
            }
        } else {
            self.reference += 1;
            s.reference += 1;
            s.errors_reference += error;
        }
        if during {
            s.during += 1;
            s.errors_during += error;
            // A min-heap of the newest: a line older than all kept is not even copied.
            let key = (rec.time, rec.level, id as u32);
            let full = self.latest.len() >= LATEST;
            if !full || self.latest.peek().is_some_and(|Reverse(o)| key > (o.0, o.1, o.2)) {
                self.latest.push(Reverse((rec.time, rec.level, id as u32, rec.message.clone())));
                if full {
                    self.latest.pop();
                }
            }
        }
        if during || !current {
            self.first = self.first.min(rec.time);
            self.last = self.last.max(rec.time);
        }
    }
}

/// Streams the log records of `logs` (in memory first, then files) into `f`.
fn stream(logs: &Logs, report: &mut ReadReport, f: &mut dyn FnMut(&LogRecord)) {
    for r in &logs.records {
        f(r);
    }
    if !logs.files.is_empty() {
        let files = Logs { records: Vec::new(), files: logs.files.clone() };
        crate::ingest::for_each_log(&files, report, |r| f(&r));
    }
}

/// Also hands every line, with whether it is in the incident period, to `on_line` (the event
/// patterns of [`super::patterns`] are gathered from the same single read).
pub fn detect(incident: &Incident, cfg: &DetectConfig, out: &mut Detection, on_line: &mut dyn FnMut(&LogRecord, bool)) {
    let mut services: BTreeMap<String, ServiceLogs> = BTreeMap::new();
    let mut lines = 0u64;
    let mut last = Ts::MIN;
    let start = incident.analysis_start;
    let from = during_from(incident);
    let mut push = |rec: &LogRecord, current: bool| {
        lines += 1;
        on_line(rec, current);
        if current {
            last = last.max(rec.time);
        }
        let during = current && rec.time >= from;
        match services.get_mut(&rec.service) {
            Some(s) => s.push(rec, current, during),
            None => {
                let mut s = ServiceLogs::new(cfg.drain_similarity);
                s.push(rec, current, during);
                services.insert(rec.service.clone(), s);
            }
        }
    };
    let mut report = ReadReport::default();
    if let Some(b) = &incident.baseline {
        stream(&b.logs, &mut report, &mut |r| push(r, false));
    }
    // With a separate baseline, lines before `analysis_start` belong to neither period.
    let separate = incident.baseline.is_some();
    stream(&incident.telemetry.logs, &mut report, &mut |r| {
        if r.time >= start {
            push(r, true)
        } else if !separate {
            push(r, false)
        }
    });
    out.log_lines += lines;
    out.data_end = out.data_end.max(last);
    if last > Ts::MIN {
        out.source_end.insert(Source::Log, last);
    }
    out.read_report.merge(report);
    out.log_services.extend(services.keys().cloned());
    for (name, s) in &mut services {
        out.log_templates += s.drain.templates.len();
        judge_service(name, s, incident.baseline.is_none(), cfg, out);
        s.traces = Default::default();
    }
    out.logs = Some(std::sync::Arc::new(LogView { services, during_from: from }));
}

/// z of `observed` against `expected` counts under an over-dispersed (negative-binomial-like)
/// variance: log volumes wander with traffic mix far more than a Poisson count would, so a large
/// template must move by a large share, while a rare one appearing from nothing still stands out.
fn count_z(observed: f64, expected: f64) -> f64 {
    const DISPERSION: f64 = 0.05;
    (observed - expected) / (expected * (1.0 + DISPERSION * expected) + 1.0).sqrt()
}

/// `sequences`: judge broken request sequences here (a reference cut from the same stream; with a
/// separate fault-free capture the finer event patterns of [`super::patterns`] do it).
fn judge_service(name: &str, s: &ServiceLogs, sequences: bool, cfg: &DetectConfig, out: &mut Detection) {
    const MIN_REFERENCE_LINES: u64 = 20;
    if s.current == 0 {
        return;
    }
    if s.reference < MIN_REFERENCE_LINES {
        out.unchecked.push(format!("logs of {name}: {} reference lines (need {MIN_REFERENCE_LINES})", s.reference));
        return;
    }
    // Expected counts follow the template's share of the service's reference lines, so a change
    // of traffic alone moves nothing.
    let expected = |t: &TemplateStats| (t.reference as f64 + 0.5) / (s.reference as f64 + 1.0) * s.current as f64;
    let mut best_error: Option<(f64, usize)> = None;
    let mut best_new: Option<(f64, usize)> = None;
    let mut best_missing: Option<(f64, usize)> = None;
    for (id, t) in s.stats.iter().enumerate() {
        let z = count_z(t.current as f64, expected(t));
        if t.level.is_error() && z >= cfg.z_threshold && best_error.is_none_or(|(b, _)| z > b) {
            best_error = Some((z, id));
        } else if t.reference == 0 && z >= cfg.z_threshold && best_new.is_none_or(|(b, _)| z > b) {
            best_new = Some((z, id));
        } else if z <= -cfg.z_threshold && best_missing.is_none_or(|(b, _)| -z > b) {
            best_missing = Some((-z, id));
        }
    }
    let template = |id: usize| s.drain.templates.get(id).map(|t| t.to_string()).unwrap_or_default();
    let first_seen = s.stats.iter().filter_map(|t| t.first_current).min().unwrap_or_default();
    // One log anomaly about template `id`: from its first to its last line in the incident
    // period, unless told otherwise.
    let anomaly = |indicator: &str, id: usize, z: f64, direction: i8, evidence: String| {
        let t = &s.stats[id];
        Anomaly {
            service: name.to_string(),
            source: Source::Log,
            indicator: indicator.into(),
            signal: template(id),
            onset: t.first_current.unwrap_or(first_seen),
            end: t.last_current.unwrap_or(Ts::MAX),
            score: z,
            direction,
            evidence,
            measure: None,
        }
    };
    if let Some((z, id)) = best_error {
        let t = &s.stats[id];
        let evidence = format!(
            "{name} logged {} {} lines of `{}` (expected {:.1}); e.g. \"{}\"",
            t.current,
            level_word(t.level),
            template(id),
            expected(t),
            t.example
        );
        out.anomalies.push(anomaly("log_errors", id, z, 1, evidence));
    }
    if let Some((z, id)) = best_new {
        let evidence = format!("{name} logged a new template {} times: `{}`", s.stats[id].current, template(id));
        out.anomalies.push(anomaly("new_log_template", id, z, 1, evidence));
    }
    if let Some(a) = broken_sequence(name, s, cfg).filter(|_| sequences) {
        out.anomalies.push(a);
    }
    if let Some((z, id)) = best_missing {
        let t = &s.stats[id];
        let evidence =
            format!("{name} logged `{}` {} times where {:.1} were expected", template(id), t.current, expected(t));
        // An absence has no first or last line: it is dated from the period's start, and lasts.
        out.anomalies.push(Anomaly {
            onset: first_seen,
            end: Ts::MAX,
            ..anomaly("missing_log_template", id, z, -1, evidence)
        });
    }
}

/// A step that always followed another in the reference (within one trace, in this service) and
/// now often does not: the code path is cut short between them (an early return, an exception
/// that is not logged). In the manner of Nezha's event patterns, reduced to pairs.
fn broken_sequence(name: &str, s: &ServiceLogs, cfg: &DetectConfig) -> Option<Anomaly> {
    const MIN_SUPPORT: u64 = 5;
    const MIN_CONFIDENCE: f64 = 0.95;
    const MIN_BROKEN_SHARE: f64 = 0.3;
    let [reference, current] = &s.traces;
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let mut single: HashMap<u32, u64> = HashMap::default();
    let mut pairs: HashMap<(u32, u32), u64> = HashMap::default();
    for (_, ids) in reference.values() {
        for &a in ids {
            *single.entry(a).or_default() += 1;
            for &b in ids.iter().filter(|b| **b != a) {
                *pairs.entry((a, b)).or_default() += 1;
            }
        }
    }
    // Rules a → b: b accompanied a in nearly every reference trace.
    let mut rules: Vec<(u32, u32, f64)> = pairs
        .iter()
        .filter_map(|(&(a, b), &n)| {
            let support = single[&a];
            let confidence = n as f64 / support as f64;
            (support >= MIN_SUPPORT && confidence >= MIN_CONFIDENCE).then_some((a, b, confidence))
        })
        .collect();
    rules.sort_by_key(|r| (r.0, r.1));
    let mut best: Option<(f64, u32, u32, u64, u64, Ts)> = None;
    for (a, b, confidence) in rules {
        let (mut n, mut k, mut first) = (0u64, 0u64, Ts::MAX);
        for (t, ids) in current.values() {
            if ids.contains(&a) {
                n += 1;
                if !ids.contains(&b) {
                    k += 1;
                    first = first.min(*t);
                }
            }
        }
        if n == 0 {
            continue;
        }
        let p0 = (1.0 - confidence).max(0.01);
        let z = (k as f64 - n as f64 * p0) / (n as f64 * p0 * (1.0 - p0) + 1.0).sqrt();
        if z >= cfg.z_threshold && k as f64 / n as f64 >= MIN_BROKEN_SHARE && best.is_none_or(|x| z > x.0) {
            best = Some((z, a, b, n, k, first));
        }
    }
    let (z, a, b, n, k, first) = best?;
    let template = |id: u32| s.drain.templates.get(id as usize).map(|t| t.to_string()).unwrap_or_default();
    Some(Anomaly {
        service: name.to_string(),
        source: Source::Log,
        indicator: "broken_log_sequence".into(),
        signal: format!("{} → {}", template(a), template(b)),
        onset: first,
        end: Ts::MAX,
        score: z,
        direction: -1,
        measure: None,
        evidence: format!(
            "{name}: `{}` was always followed by `{}` in a request; now {} of {} requests stop before it",
            template(a),
            template(b),
            k,
            n
        ),
    })
}

fn level_word(l: Level) -> &'static str {
    match l {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
        Level::Fatal => "FATAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_groups_lines_that_differ_in_variables() {
        let mut d = Drain::new(0.5);
        let a = d.add("user 1234 logged in from 10.0.0.1");
        let b = d.add("user 98 logged in from 10.0.0.7");
        let c = d.add("payment declined for order 77");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(d.templates()[a as usize].to_string(), "user <*> logged in from <*>");
    }

    #[test]
    fn drain_generalises_differing_words() {
        let mut d = Drain::new(0.5);
        let a = d.add("GET /cart took 12ms status ok");
        let b = d.add("GET /cart took 15ms status failed");
        assert_eq!(a, b);
        assert_eq!(d.templates()[a as usize].to_string(), "GET /cart took <*> status <*>");
    }

    #[test]
    fn code_locations_are_not_variables_but_ids_are() {
        assert!(!is_variable("c.s.ContactsServiceImpl#31"));
        assert!(is_variable("f3d4d4ef-693b-4456"));
        assert!(is_variable("12.5ms"));
        assert!(!is_variable("checkout"));
    }

    #[test]
    fn words_split_on_every_kind_of_whitespace() {
        let mut d = Drain::new(0.5);
        for m in ["a\x0Bb 12", "a\u{A0}b 12", "a \t b\r\n12"] {
            d.add(m);
        }
        assert_eq!(d.templates().len(), 1, "{:?}", d.templates());
        assert_eq!(d.templates()[0].to_string(), "a b <*>");
    }

    fn rec(t: Ts, level: Level, msg: &str) -> LogRecord {
        LogRecord { time: t, nanos: 0, service: "pay".into(), level, message: msg.into(), attributes: vec![] }
    }

    #[test]
    fn new_error_template_is_an_anomaly_with_first_seen_onset() {
        let mut s = ServiceLogs::new(0.5);
        for i in 0..200 {
            s.push(&rec(i, Level::Info, &format!("charged order {i} amount {}", i * 3)), false, false);
        }
        for i in 0..100 {
            s.push(&rec(1000 + i, Level::Info, &format!("charged order {i} amount {}", i * 3)), true, true);
        }
        for i in 0..30 {
            s.push(&rec(1050 + i, Level::Error, "NullPointerException in ChargeHandler"), true, true);
        }
        let mut out = Detection::default();
        judge_service("pay", &s, true, &DetectConfig::default(), &mut out);
        let a = out.anomalies.iter().find(|a| a.indicator == "log_errors").expect("error anomaly");
        assert_eq!(a.onset, 1050);
        assert!(a.evidence.contains("NullPointerException"));
    }

    #[test]
    fn more_traffic_alone_is_not_an_anomaly() {
        let mut s = ServiceLogs::new(0.5);
        for i in 0..100 {
            s.push(&rec(i, Level::Info, &format!("served request {i}")), false, false);
            s.push(&rec(i, Level::Error, &format!("client sent bad token {i}")), false, false);
        }
        for i in 0..400 {
            s.push(&rec(1000 + i, Level::Info, &format!("served request {i}")), true, true);
            s.push(&rec(1000 + i, Level::Error, &format!("client sent bad token {i}")), true, true);
        }
        let mut out = Detection::default();
        judge_service("pay", &s, true, &DetectConfig::default(), &mut out);
        assert!(out.anomalies.is_empty(), "{:?}", out.anomalies);
    }
}
