//! Event patterns learned from normal operation: within each span, what a service does next
//! after each step, and which of those expectations the incident breaks.
//!
//! In the manner of Nezha (Yu et al., FSE'23), events from the sources that share a request id
//! are put in order per span: the span's start (`<operation> start`) and the log lines it wrote
//! (named by their code location, `c.s.ContactsServiceImpl#31`, or else their template). A
//! *pattern* is one event directly followed by another in one service's span (`END` when the
//! span wrote nothing more). From the reference period culprit learns, per service and event
//! `A`, the share of spans with `A` in which `B` came next; in the incident it looks for
//!
//! - an expected next step that stopped coming (a share that fell: an early return, an exception
//!   thrown without a log line), and
//! - a failure step that is new or more common (an error or warning line after `A`).
//!
//! Shares are counted per span (a loop that repeats a step counts once), so neither traffic nor a
//! loop's length moves them. A failure step that went *away*, or a span that goes on further than
//! it used to (`A → END` replaced by `A → B`), is not a fault; a new step that is not a failure
//! mostly reflects another request mix and weighs [`NEW_STEP_WEIGHT`] of a failure.
//!
//! Each service's most changed pattern becomes one [`Anomaly`] whose signal names the pair as
//! Nezha's labels do (`A_B`), so the location inside the service travels with it to the report.

use super::{Anomaly, Detection, Source};
use crate::model::{Level, LogRecord, Span, Ts};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The event that closes every span's sequence.
pub const END: &str = "END";

/// Weight of a new or more common next step that is not a failure, against a failure step.
pub const NEW_STEP_WEIGHT: f64 = 0.25;

/// Reference spans with `A` needed before the share of `A → B` counts as known.
pub const MIN_REFERENCE_SPANS: u64 = 3;

/// Incident spans with `A` at which a change of share counts in full (fewer count in proportion).
pub const FULL_SUPPORT: u64 = 10;

/// A pattern's weighted change of share (in [0, 1]) must reach this to be an anomaly.
pub const MIN_SHIFT: f64 = 0.5;

/// The anomaly score of a full change of share (1.0), in the z-like units of the other detectors.
pub const SCORE_PER_SHIFT: f64 = 20.0;

/// Most spans followed per period; beyond it new spans are not recorded (bounds memory).
const MAX_SPANS: usize = 200_000;

/// One event of a span: when (ms, and nanoseconds past it where the source gives them), and
/// which (an index into [`SpanEvents::names`]).
type Step = (Ts, u32, u32);

/// (service, span id) → the span's events, for one period.
type Spans = HashMap<(Box<str>, Box<str>), Vec<Step>>;

/// A service and an event `A` of its spans.
type ServiceStep = (Box<str>, u32);

/// Spans where `B` directly followed `A`, with the first and last span time: (count, first, last).
type PairSeen = (u64, Ts, Ts);

/// The events of every span, per period, gathered while the logs stream and from the spans.
#[derive(Debug, Default)]
pub struct SpanEvents {
    names: Vec<Box<str>>,
    failure: Vec<bool>,
    index: HashMap<Box<str>, u32>,
    /// Per period (reference, current): (service, span id) → its events.
    periods: [Spans; 2],
}

/// The code location a log line starts with (`t.s.TravelServiceImpl#532`,
/// `o.a.c.c.C.[.[.[.[dispatcherServlet]#175`), when it has one.
pub fn code_location(message: &str) -> Option<&str> {
    let tok = message.split_whitespace().next()?;
    let (_, line) = tok.rsplit_once('#')?;
    (!line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) && tok.len() > line.len() + 1).then_some(tok)
}

/// The name of a log line as an event: its code location, else its first words with the
/// variable ones masked.
fn log_event(message: &str) -> String {
    if let Some(loc) = code_location(message) {
        return loc.to_string();
    }
    let words: Vec<&str> =
        message.split_whitespace().take(8).map(|t| if super::logs::is_variable(t) { "<*>" } else { t }).collect();
    words.join(" ")
}

impl SpanEvents {
    fn intern(&mut self, name: &str, failure: bool) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.failure.push(failure);
        self.index.insert(name.into(), id);
        id
    }

    fn push(&mut self, current: bool, service: &str, span: &str, step: Step) {
        let period = &mut self.periods[usize::from(current)];
        if let Some(steps) = period.get_mut(&(service.into(), span.into())) {
            steps.push(step);
        } else if period.len() < MAX_SPANS {
            period.insert((service.into(), span.into()), vec![step]);
        }
    }

    /// Records a log line that names its span (a `span_id` attribute); others are ignored.
    pub fn log(&mut self, rec: &LogRecord, current: bool) {
        let Some((_, span)) = rec.attributes.iter().find(|(k, _)| k == "span_id") else { return };
        let failure = rec.level >= Level::Warn;
        // The level is part of the event: the same line at ERROR is another step than at INFO.
        let mut name = log_event(&rec.message);
        if failure {
            name.push_str(" !");
        }
        let id = self.intern(&name, failure);
        self.push(current, &rec.service, span, (rec.time, rec.nanos, id));
    }

    /// Records each span's start as the first event of its sequence.
    pub fn spans<'a>(&mut self, spans: impl IntoIterator<Item = &'a Span>, current: bool) {
        for s in spans {
            let id = self.intern(&format!("{} start", s.operation), false);
            // Before any log line of the span at the same millisecond.
            self.push(current, &s.service, &s.span_id, (s.start.saturating_sub(1), 0, id));
        }
    }

    /// Whether any span of the incident period has events.
    pub fn is_empty(&self) -> bool {
        self.periods[1].is_empty()
    }

    /// Whether any span of the reference has events (there is a normal to learn from).
    pub fn has_reference(&self) -> bool {
        !self.periods[0].is_empty()
    }
}

/// Per service and event `A`: spans with `A`, and per next event `B` the spans where `B`
/// directly followed `A` (with the first and last time seen, for the current period).
#[derive(Debug, Default)]
struct Counts {
    spans: HashMap<ServiceStep, u64>,
    pairs: HashMap<(Box<str>, u32, u32), PairSeen>,
    /// Per service and `A`: each span's first time and the steps that directly followed `A` in
    /// it (to date when an expected step first failed to come).
    nexts: HashMap<ServiceStep, Vec<(Ts, Vec<u32>)>>,
}

fn count(period: &Spans, end: u32) -> Counts {
    let mut c = Counts::default();
    let mut seen_a: HashSet<u32> = HashSet::new();
    let mut seen_pair: HashSet<(u32, u32)> = HashSet::new();
    for ((service, _), steps) in period {
        let mut steps = steps.clone();
        // By time (to the nanosecond where the source gives it) only, and stable: lines of one
        // span logged in the same instant keep the order they were read in (sorting ties by
        // event id would invent an order).
        steps.sort_by_key(|s| (s.0, s.1));
        seen_a.clear();
        seen_pair.clear();
        let first = steps.first().map_or(0, |s| s.0);
        let last = steps.last().map_or(0, |s| s.0);
        let mut nexts: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, &(_, _, a)) in steps.iter().enumerate() {
            let b = steps.get(i + 1).map_or(end, |s| s.2);
            let n = nexts.entry(a).or_default();
            if !n.contains(&b) {
                n.push(b);
            }
            if seen_a.insert(a) {
                *c.spans.entry((service.clone(), a)).or_default() += 1;
            }
            if seen_pair.insert((a, b)) {
                let e = c.pairs.entry((service.clone(), a, b)).or_insert((0, first, last));
                e.0 += 1;
                e.1 = e.1.min(first);
                e.2 = e.2.max(last);
            }
        }
        for (a, n) in nexts {
            c.nexts.entry((service.clone(), a)).or_default().push((first, n));
        }
    }
    c
}

/// One changed pattern of a service.
#[derive(Debug, Clone, PartialEq)]
struct Changed {
    shift: f64,
    a: u32,
    b: u32,
    reference: Option<(u64, u64)>,
    current: (u64, u64),
    /// A drop judged over the spans from the first miss on: (with `B` next, spans).
    since_miss: Option<(u64, u64)>,
    /// Spans with `A` in the incident period whose next step was not the expected `B` (drops),
    /// or that took `B` (rises): when they were first and last seen.
    first: Ts,
    last: Ts,
}

/// Judges every service's patterns and adds at most one anomaly a service (its most changed
/// pattern) to `out`.
pub fn detect(events: &mut SpanEvents, out: &mut Detection) {
    if events.periods[0].is_empty() || events.periods[1].is_empty() {
        if !events.periods[1].is_empty() {
            out.unchecked.push("event patterns: no reference spans with events".into());
        }
        return;
    }
    let end = events.intern(END, false);
    let reference = count(&events.periods[0], end);
    let current = count(&events.periods[1], end);
    let mut best: BTreeMap<&str, Changed> = BTreeMap::new();
    // Every pattern whose `A` happened in the incident, and every pattern expected after such an
    // `A` (it may not have happened at all now).
    let mut keys: HashSet<(&str, u32, u32)> = HashSet::new();
    for (s, a, b) in current.pairs.keys() {
        keys.insert((s, *a, *b));
    }
    for (s, a, b) in reference.pairs.keys() {
        if current.spans.contains_key(&(s.clone(), *a)) {
            keys.insert((s, *a, *b));
        }
    }
    for (service, a, b) in keys {
        let n_cur = current.spans.get(&(service.into(), a)).copied().unwrap_or(0);
        if n_cur == 0 {
            continue;
        }
        let (k_cur, mut first, mut last) =
            current.pairs.get(&(service.into(), a, b)).copied().unwrap_or((0, Ts::MAX, Ts::MIN));
        let n_ref = reference.spans.get(&(service.into(), a)).copied().unwrap_or(0);
        let k_ref = reference.pairs.get(&(service.into(), a, b)).map_or(0, |p| p.0);
        let known = n_ref >= MIN_REFERENCE_SPANS;
        let p_cur = k_cur as f64 / n_cur as f64;
        let p_ref = if known { k_ref as f64 / n_ref as f64 } else { 0.0 };
        let support = (n_cur.min(FULL_SUPPORT)) as f64 / FULL_SUPPORT as f64;
        let failure = events.failure[b as usize];
        let d = p_cur - p_ref;
        let mut since_miss = None;
        let shift = if d > 0.0 {
            d * support * if failure { 1.0 } else { NEW_STEP_WEIGHT }
        } else {
            // A failure step that went away, a span that goes on further than it used to, or a
            // share never learned: none says anything is broken.
            if !known || failure || b == end {
                continue;
            }
            // Dated from the first span where `B` failed to follow `A`, lasting. A fault starts
            // somewhere inside the incident window: the share is also judged over the spans from
            // that first miss on, and the larger of the two drops counts.
            let mut spans: Vec<&(Ts, Vec<u32>)> =
                current.nexts.get(&(service.into(), a)).into_iter().flatten().collect();
            spans.sort_by_key(|x| x.0);
            let Some(i) = spans.iter().position(|(_, n)| !n.contains(&b)) else { continue };
            first = spans[i].0;
            last = Ts::MAX;
            // Every span from that millisecond on (spans of one millisecond have no order).
            let since: Vec<&&(Ts, Vec<u32>)> = spans.iter().filter(|s| s.0 >= first).collect();
            let n_since = since.len() as u64;
            let k_since = since.iter().filter(|(_, n)| n.contains(&b)).count() as u64;
            let support_since = (n_since.min(FULL_SUPPORT)) as f64 / FULL_SUPPORT as f64;
            let drop_since = (p_ref - k_since as f64 / n_since as f64) * support_since;
            if drop_since > -d * support {
                since_miss = Some((k_since, n_since));
                drop_since
            } else {
                -d * support
            }
        };
        if shift < MIN_SHIFT {
            continue;
        }
        let c = Changed {
            shift,
            a,
            b,
            reference: known.then_some((k_ref, n_ref)),
            current: (k_cur, n_cur),
            since_miss,
            first,
            last,
        };
        let better =
            best.get(service).is_none_or(|o| c.shift > o.shift || (c.shift == o.shift && (c.a, c.b) < (o.a, o.b)));
        if better {
            best.insert(service, c);
        }
    }
    let name = |id: u32| events.names[id as usize].trim_end_matches(" !").to_string();
    for (service, c) in best {
        let (a, b) = (name(c.a), name(c.b));
        let rose = c.current.0 as f64 / c.current.1 as f64 > c.reference.map_or(0.0, |(k, n)| k as f64 / n as f64);
        let was = match c.reference {
            Some((k, n)) => format!("{k} of {n} reference spans ({:.0} %)", 100.0 * k as f64 / n as f64),
            None => "never in the reference".to_string(),
        };
        let mut now = format!(
            "{} of {} spans now ({:.0} %)",
            c.current.0,
            c.current.1,
            100.0 * c.current.0 as f64 / c.current.1 as f64
        );
        if let Some((k, n)) = c.since_miss {
            now.push_str(&format!(
                ", {k} of {n} from the first that missed it on ({:.0} %)",
                100.0 * k as f64 / n as f64
            ));
        }
        let evidence = if rose {
            format!("{service}: after `{a}` came `{b}` in {now}; {was}")
        } else {
            format!("{service}: after `{a}`, `{b}` came next in {was}; {now}")
        };
        let (onset, end) = (c.first, c.last);
        out.anomalies.push(Anomaly {
            service: service.to_string(),
            source: Source::Log,
            indicator: "event_pattern".into(),
            signal: format!("{a}_{b}"),
            onset,
            end,
            score: c.shift * SCORE_PER_SHIFT,
            direction: if rose { 1 } else { -1 },
            measure: None,
            evidence,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MINUTE;

    fn line(t: Ts, service: &str, span: &str, level: Level, msg: &str) -> LogRecord {
        LogRecord {
            time: t,
            nanos: 0,
            service: service.into(),
            level,
            message: msg.into(),
            attributes: vec![("span_id".into(), span.into())],
        }
    }

    fn span(t: Ts, service: &str, id: &str, op: &str) -> Span {
        Span {
            trace_id: format!("t{id}"),
            span_id: id.into(),
            parent_id: None,
            service: service.into(),
            operation: op.into(),
            start: t,
            duration_ms: 5.0,
            error: false,
        }
    }

    /// `n` spans of `svc`: `op start`, then the given lines.
    fn requests(ev: &mut SpanEvents, current: bool, t0: Ts, n: usize, svc: &str, lines: &[(Level, &str)]) {
        for i in 0..n {
            let id = format!("{}{svc}{i}", if current { "c" } else { "r" });
            let t = t0 + i as Ts * 100;
            ev.spans([&span(t, svc, &id, "Api.get")], current);
            for (j, (level, msg)) in lines.iter().enumerate() {
                ev.log(&line(t + 1 + j as Ts, svc, &id, *level, msg), current);
            }
        }
    }

    #[test]
    fn code_locations_are_event_names() {
        assert_eq!(code_location("c.s.ContactsServiceImpl#31 [x] done"), Some("c.s.ContactsServiceImpl#31"));
        assert_eq!(
            code_location("o.a.c.c.C.[.[.[.[dispatcherServlet]#175 Servlet failed"),
            Some("o.a.c.c.C.[.[.[.[dispatcherServlet]#175")
        );
        assert_eq!(code_location("#12 things"), None);
        assert_eq!(code_location("order 42 placed"), None);
    }

    #[test]
    fn an_expected_step_that_stops_coming_is_located_by_its_pair() {
        let mut ev = SpanEvents::default();
        let ok = [(Level::Info, "c.s.Impl#31 [find]"), (Level::Info, "c.s.Impl#34 [found]")];
        requests(&mut ev, false, 0, 20, "contacts", &ok);
        requests(&mut ev, false, 0, 20, "orders", &[(Level::Info, "o.s.Impl#7 [x]")]);
        // Now contacts returns right after #31 in every request; orders is as before.
        requests(&mut ev, true, 10 * MINUTE, 20, "contacts", &ok[..1]);
        requests(&mut ev, true, 10 * MINUTE, 20, "orders", &[(Level::Info, "o.s.Impl#7 [x]")]);
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        assert_eq!(out.anomalies.len(), 1, "{:#?}", out.anomalies);
        let a = &out.anomalies[0];
        assert_eq!((a.service.as_str(), a.signal.as_str()), ("contacts", "c.s.Impl#31_c.s.Impl#34"));
        assert_eq!(a.direction, -1);
        assert!(a.score >= 15.0, "{a:?}");
    }

    #[test]
    fn a_new_error_step_counts_and_a_vanished_one_does_not() {
        let mut ev = SpanEvents::default();
        let failing = [(Level::Info, "p.s.Impl#142 [date]"), (Level::Error, "p.s.Impl#150 [failed]")];
        let fine = [(Level::Info, "p.s.Impl#142 [date]"), (Level::Info, "p.s.Impl#168 [price]")];
        // Preserve failed in the reference and works now: not a fault.
        requests(&mut ev, false, 0, 20, "preserve", &failing);
        requests(&mut ev, true, 10 * MINUTE, 20, "preserve", &fine);
        // Travel worked in the reference and fails now: a fault.
        requests(&mut ev, false, 0, 20, "travel", &[(Level::Info, "t.s.Impl#1 [a]")]);
        requests(
            &mut ev,
            true,
            10 * MINUTE,
            20,
            "travel",
            &[(Level::Info, "t.s.Impl#1 [a]"), (Level::Error, "t.s.Impl#9 [boom]")],
        );
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        let by: BTreeMap<&str, &Anomaly> = out.anomalies.iter().map(|a| (a.service.as_str(), a)).collect();
        assert_eq!(by["travel"].signal, "t.s.Impl#1_t.s.Impl#9");
        assert_eq!(by["travel"].direction, 1);
        // Preserve's new step (#168) is no failure: a quarter of a full shift, below MIN_SHIFT.
        assert!(!by.contains_key("preserve"), "{:#?}", by.get("preserve"));
    }

    #[test]
    fn a_step_that_stops_midway_is_judged_from_the_first_miss_on() {
        let mut ev = SpanEvents::default();
        let ok = [(Level::Info, "c.s.Impl#31 [find]"), (Level::Info, "c.s.Impl#34 [found]")];
        requests(&mut ev, false, 0, 20, "contacts", &ok);
        // 20 good requests, then the fault: 12 that return after #31. Over the whole window the
        // share only falls from 100 % to 62 %; from the first miss on it is 0 %.
        requests(&mut ev, true, 10 * MINUTE, 20, "contacts", &ok);
        let fault_start = 10 * MINUTE + 20 * 100 + 5_000;
        for i in 0..12 {
            let (id, t) = (format!("late{i}"), fault_start + i * 100);
            ev.spans([&span(t, "contacts", &id, "Api.get")], true);
            ev.log(&line(t + 1, "contacts", &id, Level::Info, ok[0].1), true);
        }
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        assert_eq!(out.anomalies.len(), 1, "{:#?}", out.anomalies);
        let a = &out.anomalies[0];
        // Dated at the first broken span (its start event sits a millisecond before the span).
        assert_eq!((a.signal.as_str(), a.onset), ("c.s.Impl#31_c.s.Impl#34", fault_start - 1));
        assert!(a.evidence.contains("0 of 12 from the first that missed it on"), "{}", a.evidence);
    }

    #[test]
    fn lines_of_one_millisecond_keep_the_order_they_were_written_in() {
        let mut ev = SpanEvents::default();
        // `#1` is seen first elsewhere, so sorting ties by event id would put it first.
        ev.log(&line(0, "other", "x", Level::Info, "Z#1 [seen]"), false);
        for (i, current) in (0..40).map(|i| (i, i >= 20)) {
            let id = format!("s{i}");
            let t = if current { 10 * MINUTE } else { 0 } + i as Ts * 100;
            ev.spans([&span(t, "svc", &id, "Api.get")], current);
            ev.log(&line(t + 1, "svc", &id, Level::Info, "Z#2 [first]"), current);
            if !current {
                ev.log(&line(t + 1, "svc", &id, Level::Info, "Z#1 [then]"), current);
            }
        }
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        let a = out.anomalies.iter().find(|a| a.service == "svc").expect("a broken step");
        assert_eq!(a.signal, "Z#2_Z#1");
    }

    #[test]
    fn lines_read_newest_first_are_ordered_by_their_nanoseconds() {
        // Nezha's files run newest first: within one millisecond, `#2` then `#3` then `#4` were
        // written (by their nanoseconds), `#4` is read first. Normal: `#4` follows `#3`; now
        // `#5` does: the pair is `#3_#4`, not one the reading order invents.
        let mut ev = SpanEvents::default();
        for (i, current) in (0..40).map(|i| (i, i >= 20)) {
            let id = format!("s{i}");
            let t = if current { 10 * MINUTE } else { 0 } + i as Ts * 100;
            ev.spans([&span(t, "svc", &id, "Api.get")], current);
            let last = if current { "Z#5 [other]" } else { "Z#4 [done]" };
            for (nanos, msg) in [(900_000, last), (500_000, "Z#3 [found]"), (100_000, "Z#2 [asked]")] {
                ev.log(&LogRecord { nanos, ..line(t + 1, "svc", &id, Level::Info, msg) }, current);
            }
        }
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        let a = out.anomalies.iter().find(|a| a.service == "svc").expect("a broken step");
        assert_eq!(a.signal, "Z#3_Z#4");
    }

    #[test]
    fn few_spans_weigh_in_proportion_and_traffic_alone_moves_nothing() {
        let mut ev = SpanEvents::default();
        let ok = [(Level::Info, "c.s.Impl#31 [find]"), (Level::Info, "c.s.Impl#34 [found]")];
        requests(&mut ev, false, 0, 20, "contacts", &ok);
        // Three times the traffic, same behaviour.
        requests(&mut ev, true, 10 * MINUTE, 60, "contacts", &ok);
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        assert!(out.anomalies.is_empty(), "{:#?}", out.anomalies);
        // Two broken spans out of two: a full change of share, but on 2 of FULL_SUPPORT spans.
        let mut ev = SpanEvents::default();
        requests(&mut ev, false, 0, 20, "contacts", &ok);
        requests(&mut ev, true, 10 * MINUTE, 2, "contacts", &ok[..1]);
        let mut out = Detection::default();
        detect(&mut ev, &mut out);
        assert!(out.anomalies.is_empty(), "{:#?}", out.anomalies);
    }
}
