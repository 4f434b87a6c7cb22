//! Repeated records dropped: an OTLP exporter's retry, a file concatenated twice, the same export
//! posted by two collectors. Only exact repeats go, so distinct records that merely look alike
//! stay:
//!
//! - a metric point repeating an earlier point of its series (same time, same value);
//! - a span repeating an earlier one (same trace and span id, service, operation and start);
//! - a log record held in memory repeating an earlier one in every field, when its time has
//!   sub-millisecond precision (OTLP's nanoseconds: two identical lines in the same millisecond
//!   may well be two events, in the same nanosecond they are one record sent twice);
//! - a change repeating an earlier one in every field.
//!
//! Log files streamed from disk are not deduplicated here.

use crate::model::{LogRecord, Telemetry, Ts};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Drops the repeats in `t`; returns how many records went.
pub fn dedup(t: &mut Telemetry) -> u64 {
    let mut dropped = 0u64;
    for s in &mut t.metrics {
        let mut seen: HashSet<(Ts, u64)> = HashSet::with_capacity(s.points.len());
        let before = s.points.len();
        s.points.retain(|(time, v)| seen.insert((*time, v.to_bits())));
        dropped += (before - s.points.len()) as u64;
    }
    let mut seen: HashSet<(&str, &str, &str, &str, Ts)> = HashSet::with_capacity(t.spans.len());
    let keep: Vec<bool> = t
        .spans
        .iter()
        .map(|s| {
            s.span_id.is_empty()
                || seen.insert((
                    s.trace_id.as_str(),
                    s.span_id.as_str(),
                    s.service.as_str(),
                    s.operation.as_str(),
                    s.start,
                ))
        })
        .collect();
    let mut k = keep.iter();
    let before = t.spans.len();
    t.spans.retain(|_| *k.next().unwrap_or(&true));
    dropped += (before - t.spans.len()) as u64;
    let mut seen: HashSet<u64> = HashSet::new();
    let before = t.logs.records.len();
    t.logs.records.retain(|r| !precise(r) || seen.insert(fingerprint(r)));
    dropped += (before - t.logs.records.len()) as u64;
    let mut seen: HashSet<u64> = HashSet::new();
    let before = t.changes.len();
    t.changes.retain(|c| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{c:?}").hash(&mut h);
        seen.insert(h.finish())
    });
    dropped += (before - t.changes.len()) as u64;
    dropped
}

fn precise(r: &LogRecord) -> bool {
    r.nanos != 0
}

fn fingerprint(r: &LogRecord) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (r.time, r.nanos, &r.service, r.level, &r.message, &r.attributes).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Series, Span};

    fn span(id: &str, start: Ts) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: None,
            service: "api".into(),
            operation: "GET /".into(),
            start,
            duration_ms: 3.0,
            error: false,
        }
    }

    fn log(time: Ts, nanos: u32, message: &str) -> LogRecord {
        LogRecord {
            time,
            nanos,
            service: "api".into(),
            level: Level::Error,
            message: message.into(),
            attributes: vec![],
        }
    }

    #[test]
    fn exact_repeats_go_and_look_alikes_stay() {
        let mut t = Telemetry::default();
        t.metrics.push(Series {
            service: "api".into(),
            metric: "cpu".into(),
            // A repeat, and a second value at one time (two pods folded into one series).
            points: vec![(1_000, 0.5), (1_000, 0.5), (2_000, 0.7), (2_000, 0.9)],
        });
        t.spans = vec![span("a", 1), span("a", 1), span("b", 1), span("", 1), span("", 1)];
        t.logs.records = vec![
            log(1_250, 17, "timeout"),
            log(1_250, 17, "timeout"),
            // Milliseconds only: two events of the same millisecond, kept.
            log(2_000, 0, "timeout"),
            log(2_000, 0, "timeout"),
        ];
        assert_eq!(dedup(&mut t), 3);
        assert_eq!(t.metrics[0].points, vec![(1_000, 0.5), (2_000, 0.7), (2_000, 0.9)]);
        assert_eq!(t.spans.len(), 4);
        assert_eq!(t.logs.records.len(), 3);
        assert_eq!(dedup(&mut t), 0, "a second pass finds nothing");
    }
}
