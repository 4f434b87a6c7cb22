//! Log readers: JSON lines, OTLP/JSON `resourceLogs`, and the Nezha container-log CSV.
//!
//! Logs can be far larger than memory, so they are never loaded with a bundle: `Logs.files`
//! lists them and [`for_each_log`] streams them record by record whenever a stage needs them.

use super::io::{self, CsvRows};
use super::time::nanos_to_ms;
use super::{pod_to_service, IngestError};
use crate::model::{Level, LogFile, LogFormat, LogRecord, Logs, ReadReport};
use serde_json::Value;
use std::path::Path;

/// Yields the in-memory records of `logs` (cloned), then every record of every file in
/// `logs.files`, streamed. Unreadable records are skipped into `report`; a file that cannot be
/// read at all is one issue (line 0) and the others are still read.
pub fn for_each_log(logs: &Logs, report: &mut ReadReport, mut f: impl FnMut(LogRecord)) {
    for r in &logs.records {
        f(r.clone());
    }
    for file in &logs.files {
        let name = io::display(&file.path);
        if let Err(e) = report.counting(&name, |r| read_log_file(file, r, &mut f)) {
            report.skip(io::issue(&name, 0, None, io::error_chain(&e)));
        }
    }
}

/// All records of `logs` in memory; for tests and small inputs.
pub fn read_logs(logs: &Logs, report: &mut ReadReport) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for_each_log(logs, report, |r| out.push(r));
    out
}

/// Streams one log file in its format.
/// Lines dated outside the file's hints' window are rejected as bad input (skipped, with the time
/// field named), not passed on.
pub fn read_log_file(file: &LogFile, report: &mut ReadReport, f: &mut dyn FnMut(LogRecord)) -> Result<(), IngestError> {
    let mut rejected: Vec<String> = Vec::new();
    let mut keep = |r: LogRecord| match file.hints.outside(r.time) {
        Some(why) => rejected.push(why),
        None => f(r),
    };
    let g: &mut dyn FnMut(LogRecord) = &mut keep;
    let result = io::with_hints(&file.hints, || match file.format {
        LogFormat::JsonLines => read_json_lines_logs(&file.path, report, g),
        LogFormat::OtlpJson => read_otlp_logs(&file.path, report, g),
        LogFormat::Loki => read_loki_logs(&file.path, report, g),
        LogFormat::Syslog => read_syslog(&file.path, report, g),
        LogFormat::NezhaCsv => read_nezha_logs(&file.path, report, g),
    });
    report.records_read = report.records_read.saturating_sub(rejected.len() as u64);
    let name = io::display(&file.path);
    for why in rejected {
        report.skip(io::issue(&name, 0, Some("time"), why));
    }
    result
}

/// An `attributes` field of the wrong shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum BadAttributes {
    #[error("attribute objects need `key` and `value`")]
    Object,
    #[error("attributes array items must be [key, value] pairs")]
    Item,
    #[error("attributes must be an object or an array of pairs")]
    Shape,
}

/// Attributes as (key, text): a JSON object (keys in the document's order as far as serde_json
/// keeps it), an array of `[key, value]` pairs, or an array of `{"key", "value"}` objects (OTLP
/// style). Values of any JSON type are stringified.
fn attributes_of(v: &Value) -> Result<Vec<(String, String)>, BadAttributes> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => Ok(m.iter().map(|(k, v)| (k.clone(), io::to_text(v))).collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => Ok((io::to_text(&pair[0]), io::to_text(&pair[1]))),
                Value::Object(o) => match (o.get("key"), o.get("value")) {
                    (Some(k), Some(v)) => Ok((io::to_text(k), io::any_value_text(v))),
                    _ => Err(BadAttributes::Object),
                },
                _ => Err(BadAttributes::Item),
            })
            .collect(),
        _ => Err(BadAttributes::Shape),
    }
}

fn level_of(v: Option<&Value>) -> Level {
    match v {
        Some(Value::String(s)) => Level::parse(s).or_else(|| severity_name(s)).unwrap_or_default(),
        Some(Value::Number(n)) => n.as_i64().and_then(Level::from_otlp_number).unwrap_or_default(),
        _ => Level::default(),
    }
}

/// `SEVERITY_NUMBER_ERROR2` → Error.
fn severity_name(s: &str) -> Option<Level> {
    let rest = s.strip_prefix("SEVERITY_NUMBER_")?;
    Level::parse(rest.trim_end_matches(|c: char| c.is_ascii_digit()))
}

/// Reads JSON-lines logs: `{"time", "service", "level", "message", "attributes"}` per line, also
/// spelled `timestamp`/`ts`/`@timestamp`, `service.name`/`service_name`, `severity`, `msg`/`body`.
pub fn read_json_lines_logs(
    path: &Path,
    report: &mut ReadReport,
    f: &mut dyn FnMut(LogRecord),
) -> Result<(), IngestError> {
    io::for_each_json_line_fast(path, report, json_log_fast, json_log, f)
}

/// [`json_log`] for the usual line (string time, service, message and level; attributes as
/// `[key, value]` string pairs or absent) without a `Value` of the line: the same record, or None
/// where [`json_log`] must read the line (other types, nested paths, a bundle's own spellings,
/// anything it would reject).
fn json_log_fast(fields: &io::RawFields) -> Option<LogRecord> {
    if io::hinted(&[|h| &h.time, |h| &h.service, |h| &h.message, |h| &h.level]) {
        return None;
    }
    let found = |keys: &[&str]| match fields.first(keys) {
        io::Lookup::Found(v) => Some(Some(v)),
        io::Lookup::Absent => Some(None),
        io::Lookup::Nested => None,
    };
    let time = super::time::parse_time_str(&found(&io::TIME_FIELDS)??.str()?)?;
    let service = found(&io::SERVICE_FIELDS)??.str().filter(|s| !s.trim().is_empty())?.into_owned();
    let message = found(&io::MESSAGE_FIELDS)??.str()?.into_owned();
    let level = match found(&io::LEVEL_FIELDS)? {
        None => Level::default(),
        Some(v) => {
            let s = v.str()?;
            Level::parse(&s).or_else(|| severity_name(&s)).unwrap_or_default()
        }
    };
    let attributes = match fields.get("attributes") {
        None => Vec::new(),
        // `[key, value]` string pairs straight into the record; any other shape as `json_log`.
        Some(a) => match serde_json::from_str::<Vec<(String, String)>>(a.raw()) {
            Ok(pairs) => pairs,
            Err(_) => attributes_of(&a.value()?).ok()?,
        },
    };
    Some(LogRecord { time, nanos: 0, service, level, message, attributes })
}

fn json_log(obj: &Value) -> Result<LogRecord, (&'static str, String)> {
    let time = match io::get_hinted(obj, |h| &h.time, &io::TIME_FIELDS) {
        None => return Err(("time", "missing".into())),
        Some(v) => io::time_of(v).ok_or_else(|| ("time", format!("not a time: {v}")))?,
    };
    let service = match io::get_hinted(obj, |h| &h.service, &io::SERVICE_FIELDS) {
        None => return Err(("service", io::NO_SERVICE.into())),
        Some(v) => io::scalar_text(v).ok_or_else(|| ("service", format!("not a service name: {v}")))?,
    };
    let message = match io::get_hinted(obj, |h| &h.message, &io::MESSAGE_FIELDS) {
        None => return Err(("message", "missing".into())),
        Some(v) => io::to_text(v),
    };
    let level = level_of(io::get_hinted(obj, |h| &h.level, &io::LEVEL_FIELDS));
    let attributes = match obj.get("attributes") {
        Some(a) => attributes_of(a).map_err(|m| ("attributes", m.to_string()))?,
        None => Vec::new(),
    };
    Ok(LogRecord { time, nanos: 0, service, level, message, attributes })
}

/// Reads OTLP/JSON logs: one `{"resourceLogs": […]}` export request per line, or one
/// pretty-printed document. A record needs `timeUnixNano` (or `observedTimeUnixNano`) and a
/// resource `service.name`.
pub fn read_otlp_logs(path: &Path, report: &mut ReadReport, f: &mut dyn FnMut(LogRecord)) -> Result<(), IngestError> {
    io::for_each_otlp_record(path, report, &LOGS, otlp_log, f)
}

const LOGS: io::OtlpShape = io::OtlpShape {
    resources: "resourceLogs",
    also: None,
    scopes: ["scopeLogs", "instrumentationLibraryLogs"],
    records: "logRecords",
};

/// The log records of one OTLP/JSON `ExportLogsServiceRequest` (an OTLP/HTTP receiver's body).
pub fn logs_from_otlp_json(doc: &Value, origin: &str, report: &mut ReadReport) -> Vec<LogRecord> {
    let mut out = Vec::new();
    io::otlp_doc_records(doc, origin, 1, report, &LOGS, &otlp_log, &mut |r| out.push(r));
    out
}

fn otlp_log(rec: &Value, service: Option<&str>) -> Result<LogRecord, (&'static str, String)> {
    let nanos = ["timeUnixNano", "observedTimeUnixNano"]
        .iter()
        .find_map(|k| rec.get(k).and_then(io::nanos_of).filter(|n| *n != 0));
    let Some(nanos) = nanos else {
        return Err(("timeUnixNano", "missing or not a number (nor observedTimeUnixNano)".into()));
    };
    let Some(service) = service else {
        return Err(("service.name", "resource has no service.name".into()));
    };
    let level = match rec.get("severityNumber") {
        Some(n @ Value::Number(_)) => level_of(Some(n)),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .ok()
            .and_then(Level::from_otlp_number)
            .or_else(|| severity_name(s))
            .unwrap_or_else(|| level_of(rec.get("severityText"))),
        _ => level_of(rec.get("severityText")),
    };
    let message = rec.get("body").map(io::any_value_text).unwrap_or_default();
    let mut attributes = io::otlp_attributes(rec.get("attributes"));
    for (key, name) in [("traceId", "trace_id"), ("spanId", "span_id")] {
        if let Some(id) = rec.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            attributes.push((name.to_string(), id.to_string()));
        }
    }
    Ok(LogRecord {
        time: nanos_to_ms(nanos),
        nanos: super::time::nanos_within_ms(nanos),
        service: service.to_string(),
        level,
        message,
        attributes,
    })
}

/// Reads the Nezha container-log CSV (`Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,
/// SpanID,Log`). Service is the pod name without its hashes, time comes from `TimeUnixNano`, and
/// the `Log` column (a Docker JSON line or raw text) is split by [`parse_app_log_line`].
pub fn read_nezha_logs(path: &Path, report: &mut ReadReport, f: &mut dyn FnMut(LogRecord)) -> Result<(), IngestError> {
    let mut rows = CsvRows::open(path)?;
    let file = rows.file().to_string();
    let pod_col = rows.require(&["podname", "pod", "service"], "PodName")?;
    let log_col = rows.require(&["log", "message"], "Log")?;
    let nano_col = rows.column(&["timeunixnano"]);
    let ts_col = rows.column(&["timestamp", "time"]);
    if nano_col.is_none() && ts_col.is_none() {
        return Err(rows.missing("TimeUnixNano"));
    }
    let container_col = rows.column(&["container"]);
    let trace_col = rows.column(&["traceid"]);
    let span_col = rows.column(&["spanid"]);
    while let Some(n) = rows.next_record(report) {
        let ns = nano_col.and_then(|c| rows.get(c).parse::<i128>().ok());
        let time = ns
            .map(nanos_to_ms)
            .filter(|t| super::time::plausible(*t))
            .or_else(|| ts_col.and_then(|c| super::time::parse_time_str(&rows.get(c))));
        let Some(time) = time else {
            report.skip(io::issue(&file, n, Some("TimeUnixNano"), "missing or not a number"));
            continue;
        };
        let pod = rows.get(pod_col);
        let service = if pod.is_empty() {
            container_col.map(|c| rows.get(c).to_string()).unwrap_or_default()
        } else {
            pod_to_service(&pod)
        };
        if service.is_empty() {
            report.skip(io::issue(&file, n, Some("PodName"), "missing"));
            continue;
        }
        let raw = rows.get(log_col);
        let text = match serde_json::from_str::<Value>(&raw) {
            Ok(v) => match v.get("log").and_then(Value::as_str) {
                Some(s) => s.to_string(),
                None => raw.to_string(),
            },
            Err(_) => raw.to_string(),
        };
        let line = parse_app_log_line(&text);
        let mut attributes = Vec::new();
        let ids = [("trace_id", trace_col, line.trace_id), ("span_id", span_col, line.span_id)];
        for (name, col, from_text) in ids {
            let id = col.map(|c| rows.get(c).to_string()).filter(|s| !s.is_empty()).or(from_text);
            if let Some(id) = id {
                attributes.push((name.to_string(), id));
            }
        }
        report.records_read += 1;
        // Sub-millisecond order only when the time came from the nanosecond column.
        let nanos = ns.filter(|n| nanos_to_ms(*n) == time).map_or(0, super::time::nanos_within_ms);
        f(LogRecord { time, nanos, service, level: line.level, message: line.message, attributes });
    }
    Ok(())
}

/// Reads Loki `query_range` answers (`{"data": {"resultType": "streams", "result": [{"stream":
/// {labels}, "values": [["<unix ns>", "<line>"], …]}]}}`), one document or one per line, as
/// Loki's API and `logcli query --output raw` give them. The service is the first stream label of
/// the bundle's mapping or [`io::SERVICE_FIELDS`] (Loki 3 sets `service_name`); the level is the
/// `level` or `detected_level` label, else read from the line.
pub fn read_loki_logs(path: &Path, report: &mut ReadReport, f: &mut dyn FnMut(LogRecord)) -> Result<(), IngestError> {
    let file = io::display(path);
    io::for_each_json_doc(path, report, &mut |n, doc, report| {
        let Some(streams) = doc.pointer("/data/result").and_then(Value::as_array) else {
            report.skip(io::issue(
                &file,
                n,
                Some("data.result"),
                "no data.result array (Loki query_range answers have one)",
            ));
            return;
        };
        for (i, stream) in streams.iter().enumerate() {
            let labels = stream.get("stream").unwrap_or(&Value::Null);
            let service = io::get_hinted(labels, |h| &h.service, &io::SERVICE_FIELDS).and_then(io::scalar_text);
            let level =
                io::get_hinted(labels, |h| &h.level, &io::LEVEL_FIELDS).and_then(|v| Level::parse(&io::to_text(v)));
            for v in io::array(stream, "values") {
                let Some(service) = &service else {
                    let msg = format!("stream {i} has no service label {labels} ({})", io::NO_SERVICE);
                    report.skip(io::issue(&file, n, Some("stream"), msg));
                    continue;
                };
                let ns = v.get(0).and_then(io::nanos_of);
                let (Some(ns), Some(text)) = (ns, v.get(1).and_then(Value::as_str)) else {
                    report.skip(io::issue(
                        &file,
                        n,
                        Some("values"),
                        format!("stream {i}: not [\"<unix ns>\", \"<line>\"]: {v}"),
                    ));
                    continue;
                };
                let line = parse_app_log_line(text);
                let mut attributes = Vec::new();
                for (name, id) in [("trace_id", line.trace_id), ("span_id", line.span_id)] {
                    if let Some(id) = id {
                        attributes.push((name.to_string(), id));
                    }
                }
                report.records_read += 1;
                f(LogRecord {
                    time: nanos_to_ms(ns),
                    nanos: super::time::nanos_within_ms(ns),
                    service: service.clone(),
                    level: level.unwrap_or(line.level),
                    message: line.message,
                    attributes,
                });
            }
        }
    })
}

/// Reads syslog text: RFC 3164 (`<34>Mar  4 13:00:00 host app[123]: text`, the year from the
/// incident), the same with an RFC 3339 time (rsyslog's high-precision format), or RFC 5424
/// (`<34>1 2026-03-04T13:00:00Z host app 123 - - text`). The service is the program (tag or
/// APP-NAME); the level comes from the priority's severity, else from the text.
pub fn read_syslog(path: &Path, report: &mut ReadReport, f: &mut dyn FnMut(LogRecord)) -> Result<(), IngestError> {
    let mut lines = io::Lines::open(path)?;
    let file = lines.file().to_string();
    while let Some((n, line)) = lines.next_line(report) {
        if line.trim().is_empty() {
            continue;
        }
        match syslog_line(line) {
            Ok(r) => {
                report.records_read += 1;
                f(r);
            }
            Err((field, msg)) => report.skip(io::issue(&file, n, Some(field), msg)),
        }
    }
    Ok(())
}

pub fn syslog_line(line: &str) -> io::Parsed<LogRecord> {
    let mut rest = line.trim();
    let mut severity = None;
    if let Some((pri, after)) = rest.strip_prefix('<').and_then(|r| r.split_once('>')) {
        severity = pri.parse::<u16>().ok().map(|p| p % 8);
        rest = after;
    }
    let (time_text, host_on) = if let Some(r) = rest.strip_prefix("1 ") {
        split_token(r)
    } else {
        let (first, after) = split_token(rest);
        // A leading RFC 3339 time (rsyslog's high-precision format) has its time of day in it.
        if first.contains(':') && first.len() > 8 && super::time::parse_time_str(first).is_some() {
            (first, after)
        } else {
            // `Mmm dd hh:mm:ss`: three tokens.
            let (_, a1) = split_token(after);
            let (_, a2) = split_token(a1);
            (&rest[..rest.len() - a2.len()], a2)
        }
    };
    let time = super::time::parse_time_str(time_text.trim())
        .ok_or_else(|| ("time", format!("not a syslog time: {:?}", time_text.trim())))?;
    let (_host, after_host) = split_token(host_on);
    let (service, message) = if rest.starts_with("1 ") {
        // APP-NAME PROCID MSGID STRUCTURED-DATA MSG
        let (app, a) = split_token(after_host);
        let (_, a) = split_token(a);
        let (_, a) = split_token(a);
        let msg = if a.starts_with('[') { a.find("] ").map_or("", |i| &a[i + 2..]) } else { split_token(a).1 };
        (app, msg)
    } else {
        let (tag, msg) = after_host.split_once(':').unwrap_or(("", after_host));
        (tag.split('[').next().unwrap_or_default(), msg)
    };
    let service = service.trim();
    if service.is_empty() || service == "-" {
        return Err(("app", "no program name (`host app[pid]: text`) after the time and host".into()));
    }
    let line = parse_app_log_line(message);
    let level = match severity {
        Some(0..=3) => Level::Error,
        Some(4) => Level::Warn,
        Some(7) => Level::Debug,
        Some(_) => Level::Info,
        None => line.level,
    };
    Ok(LogRecord { time, nanos: 0, service: service.to_string(), level, message: line.message, attributes: Vec::new() })
}

/// An application log line taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct AppLine {
    pub level: Level,
    /// The text without leading date/clock, level and `TraceID: … SpanID: …`.
    pub message: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

fn is_clock(tok: &str) -> bool {
    let b = tok.as_bytes();
    b.len() >= 8 && b[2] == b':' && b[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|i| b[*i].is_ascii_digit())
}

fn is_date(tok: &str) -> bool {
    let b = tok.as_bytes();
    b.len() >= 10
        && (b[4] == b'-' || b[4] == b'/')
        && b[7] == b[4]
        && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|i| b[*i].is_ascii_digit())
}

/// A level word in a token such as `ERROR`, `[WARN]`, `level=error`, `ERROR:root:`.
fn level_word(tok: &str) -> Option<Level> {
    let t = tok.trim_matches(|c: char| matches!(c, '[' | ']' | '(' | ')' | '<' | '>' | ':' | ',' | '|' | '"'));
    let t = t.split(':').next().unwrap_or(t);
    Level::parse(t)
}

/// Takes an application log line apart: drops a leading date and clock time, reads the level
/// from the next token when it is a level word (else from the first upper-case level word or
/// `level=…` in the line, default Info), and removes `TraceID: x` / `SpanID: y`, keeping their
/// values. The logger token (`t.s.TravelServiceImpl#532`) stays at the start of the message.
pub fn parse_app_log_line(text: &str) -> AppLine {
    let mut rest = text.trim();
    let mut level = None;
    let mut stamped = false;
    // Leading date / clock tokens.
    loop {
        let (tok, after) = split_token(rest);
        if !tok.is_empty() && (is_clock(tok) || is_date(tok)) {
            rest = after;
            stamped = true;
        } else {
            break;
        }
    }
    let (tok, after) = split_token(rest);
    let shouted = tok.bytes().any(|b| b.is_ascii_uppercase()) && !tok.bytes().any(|b| b.is_ascii_lowercase());
    if let Some(l) = level_word(tok).filter(|_| tok.len() < 16 && (stamped || shouted)) {
        level = Some(l);
        rest = after;
    } else if matches!(tok, "-" | "|") {
        let (tok2, after2) = split_token(after);
        if let Some(l) = level_word(tok2) {
            level = Some(l);
            rest = after2.trim_start_matches(['-', '|']).trim_start();
        }
    }
    let (mut message, trace_id) = remove_id(rest, "TraceID:");
    let (m, span_id) = remove_id(&message, "SpanID:");
    message = m;
    let level = level.or_else(|| guess_level(&message)).unwrap_or_default();
    AppLine { level, message: message.trim().to_string(), trace_id, span_id }
}

fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Removes `marker value` from the text, returning the rest and the value.
fn remove_id(text: &str, marker: &str) -> (String, Option<String>) {
    let Some(p) = text.find(marker) else {
        return (text.to_string(), None);
    };
    let after = text[p + marker.len()..].trim_start();
    let (id, tail) = split_token(after);
    let head = text[..p].trim_end();
    let joined = match (head.is_empty(), tail.is_empty()) {
        (true, _) => tail.to_string(),
        (false, true) => head.to_string(),
        (false, false) => format!("{head} {tail}"),
    };
    (joined, Some(id.to_string()).filter(|s| !s.is_empty()))
}

/// The first upper-case level word (`ERROR`, `[WARN]`) or `level=…` in the line.
fn guess_level(text: &str) -> Option<Level> {
    text.split_whitespace().find_map(|tok| {
        let lower = tok.to_ascii_lowercase();
        for key in ["level=", "lvl=", "severity=", "\"level\":"] {
            if let Some(v) = lower.strip_prefix(key) {
                return Level::parse(v.trim_matches(|c: char| !c.is_ascii_alphabetic()));
            }
        }
        let word = tok.trim_matches(|c: char| !c.is_ascii_alphabetic());
        if word.len() >= 3 && word.bytes().all(|b| b.is_ascii_uppercase()) {
            level_word(word)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_reads_every_line_as_the_full_reader_does() {
        let lines = [
            r#"{"time":"2024-05-15T07:15:00.276Z","service":"user","level":"debug","message":"GET /healthz 200 1.7ms"}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"a","message":"x \"q\" \u00e9","attributes":[["trace_id","t1"],["n","3"]]}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"a","message":"m","attributes":[["n",3]]}"#,
            r#"{"ts":"1715757300","service.name":"b","msg":"m","level":null}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"a","service":"b","message":"the last of a repeated key"}"#,
            r#"{"time":"2024-05-15T07:15:00Z","resource":{"service":{"name":"c"}},"message":"nested"}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"  ","app":"d","message":"blank service"}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"e","message":"m","attributes":{"k":"v"}}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"e","message":"m","severity":"SEVERITY_NUMBER_ERROR2"}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"e","message":{"a":1}}"#,
            r#"{"time":"2024-05-15T07:15:00Z","service":"e","message":"m","attributes":null}"#,
            r#"{"time":1715757300000,"service":"e","message":"m"}"#,
            r#"{"time":"garbage","service":"e","message":"m"}"#,
            r#"{"\u0074ime":"2024-05-15T07:15:00Z","service":"f","message":"an escaped key"}"#,
        ];
        let mut fast_ones = 0;
        for line in lines {
            let full = json_log(&serde_json::from_str(line).unwrap()).ok();
            let fields: io::RawFields = serde_json::from_str(line).unwrap();
            if let Some(fast) = json_log_fast(&fields) {
                fast_ones += 1;
                assert_eq!(Some(fast), full, "{line}");
            }
        }
        assert!(fast_ones >= 8, "the usual lines take the fast path: {fast_ones}");
    }

    #[test]
    fn takes_nezha_java_lines_apart() {
        let l = parse_app_log_line("16:42:22.382 INFO  t.s.TravelServiceImpl#532 TraceID: ffc8ca7e SpanID: 439bc949 [getRouteByRouteId][Get Route By Id]\n");
        assert_eq!(l.level, Level::Info);
        assert_eq!(l.message, "t.s.TravelServiceImpl#532 [getRouteByRouteId][Get Route By Id]");
        assert_eq!(l.trace_id.as_deref(), Some("ffc8ca7e"));
        assert_eq!(l.span_id.as_deref(), Some("439bc949"));
        let l =
            parse_app_log_line("16:42:22.418 ERROR f.s.FoodServiceImpl#302 TraceID: a SpanID: b [getAllFood][failed]");
        assert_eq!((l.level, l.message.as_str()), (Level::Error, "f.s.FoodServiceImpl#302 [getAllFood][failed]"));
    }

    #[test]
    fn guesses_levels_of_other_formats() {
        let l = parse_app_log_line("2023-01-29 08:42:22,123 - WARNING - slow query");
        assert_eq!((l.level, l.message.as_str()), (Level::Warn, "slow query"));
        let l = parse_app_log_line("time=\"2023\" level=error msg=\"boom\"");
        assert_eq!(l.level, Level::Error);
        let l = parse_app_log_line("no error here, all fine");
        assert_eq!((l.level, l.message.as_str()), (Level::Info, "no error here, all fine"));
        let l = parse_app_log_line("[ERROR] failed to connect");
        assert_eq!((l.level, l.message.as_str()), (Level::Error, "failed to connect"));
        for odd in ["", " ", "TraceID:", "SpanID: ", "12:34", "\u{1F600}:\u{1F600}", "2023-01-29T", "ü2:45:67"] {
            let _ = parse_app_log_line(odd);
        }
    }
}
