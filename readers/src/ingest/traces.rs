//! Span readers: OTLP/JSON `resourceSpans` and span tables in CSV (including Nezha's), plus the
//! span CSV writer the bundle writer uses.
//!
//! Durations keep sub-millisecond precision: times are handled in nanoseconds until the end.

use super::io::{self, CsvRows};
use super::time::{nanos_to_ms, parse_time_nanos, rfc3339, SecondsFormat};
use super::{pod_to_service, IngestError};
use crate::model::{ReadReport, Span};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// Reads OTLP/JSON traces: one `{"resourceSpans": […]}` export request per line, or one
/// pretty-printed document (also Tempo's trace JSON, which says `batches`). Service from the resource's `service.name`; a span is an error when
/// `status.code` is 2 / `STATUS_CODE_ERROR`; an empty `parentSpanId` marks a root.
pub fn read_otlp_traces(path: &Path, report: &mut ReadReport) -> Result<Vec<Span>, IngestError> {
    let mut out = Vec::new();
    io::for_each_otlp_record(path, report, &SPANS, otlp_span, |s| out.push(s))?;
    Ok(out)
}

const SPANS: io::OtlpShape = io::OtlpShape {
    resources: "resourceSpans",
    also: Some("batches"),
    scopes: ["scopeSpans", "instrumentationLibrarySpans"],
    records: "spans",
};

/// The spans of one OTLP/JSON `ExportTraceServiceRequest` (an OTLP/HTTP receiver's body, named
/// `origin` in the issues of records that cannot be read).
pub fn spans_from_otlp_json(doc: &Value, origin: &str, report: &mut ReadReport) -> Vec<Span> {
    let mut out = Vec::new();
    io::otlp_doc_records(doc, origin, 1, report, &SPANS, &otlp_span, &mut |s| out.push(s));
    out
}

fn otlp_span(span: &Value, service: Option<&str>) -> Result<Span, (&'static str, String)> {
    let id = |key: &'static str| -> Result<String, (&'static str, String)> {
        span.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .ok_or((key, "missing or not a string".to_string()))
    };
    let trace_id = id("traceId")?;
    let span_id = id("spanId")?;
    let parent_id =
        span.get("parentSpanId").and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_string);
    let start = span
        .get("startTimeUnixNano")
        .and_then(io::nanos_of)
        .ok_or(("startTimeUnixNano", "missing or not a number".to_string()))?;
    let end = span
        .get("endTimeUnixNano")
        .and_then(io::nanos_of)
        .ok_or(("endTimeUnixNano", "missing or not a number".to_string()))?;
    if end < start {
        return Err(("endTimeUnixNano", "span ends before it starts".into()));
    }
    let service = service.ok_or(("service.name", "resource has no service.name".to_string()))?;
    let error = match span.get("status").and_then(|s| s.get("code")) {
        Some(Value::Number(n)) => n.as_i64() == Some(2),
        Some(Value::String(s)) => s == "2" || s.eq_ignore_ascii_case("STATUS_CODE_ERROR"),
        _ => false,
    };
    Ok(Span {
        trace_id,
        span_id,
        parent_id,
        service: service.to_string(),
        operation: span.get("name").map(io::to_text).unwrap_or_default(),
        start: nanos_to_ms(start),
        duration_ms: (end - start) as f64 / 1e6,
        error,
    })
}

/// Reads Jaeger trace JSON, as its UI downloads it and its API answers (`{"data": [trace, …]}`,
/// or one trace): each trace's `spans` with `traceID`, `spanID`, `operationName`, `references`
/// (the `CHILD_OF` one is the parent), `startTime` and `duration` in µs, and `processID` naming
/// its process in `processes` (whose `serviceName` is the service). A span is an error when its
/// tag `error` is true, `otel.status_code` is `ERROR`, or `http.status_code` is 500 or more.
pub fn read_jaeger_traces(path: &Path, report: &mut ReadReport) -> Result<Vec<Span>, IngestError> {
    let file = io::display(path);
    let mut out = Vec::new();
    io::for_each_json_doc(path, report, &mut |n, doc, report| {
        let traces: Vec<&Value> = match doc.get("data") {
            Some(Value::Array(a)) => a.iter().collect(),
            _ if doc.get("spans").is_some() => vec![&doc],
            _ => {
                report.skip(io::issue(
                    &file,
                    n,
                    Some("data"),
                    "no data array of traces (a Jaeger trace download has one)",
                ));
                return;
            }
        };
        for trace in traces {
            let processes = trace.get("processes");
            for span in io::array(trace, "spans") {
                match jaeger_span(span, processes) {
                    Ok(s) => {
                        report.records_read += 1;
                        out.push(s);
                    }
                    Err((field, msg)) => report.skip(io::issue(&file, n, Some(field), msg)),
                }
            }
        }
    })?;
    Ok(out)
}

fn jaeger_span(span: &Value, processes: Option<&Value>) -> io::Parsed<Span> {
    let text = |key: &'static str| -> io::Parsed<String> {
        span.get(key).and_then(io::scalar_text).ok_or((key, "missing".to_string()))
    };
    let (trace_id, span_id) = (text("traceID")?, text("spanID")?);
    let parent_id = io::array(span, "references")
        .iter()
        .find(|r| r.get("refType").and_then(Value::as_str).is_none_or(|t| t == "CHILD_OF"))
        .and_then(|r| r.get("spanID"))
        .and_then(io::scalar_text);
    let us = |key: &'static str| -> io::Parsed<f64> {
        span.get(key)
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or((key, "missing or not a count of µs".to_string()))
    };
    let (start_us, duration_us) = (us("startTime")?, us("duration")?);
    let start = (start_us / 1000.0).floor() as i64;
    if !super::time::plausible(start) {
        return Err(("startTime", format!("not a time in µs: {start_us}")));
    }
    let process = span.get("process").or_else(|| {
        let id = span.get("processID")?.as_str()?;
        processes?.get(id)
    });
    let service = process
        .and_then(|p| p.get("serviceName"))
        .and_then(io::scalar_text)
        .ok_or(("processID", "no process with a serviceName".to_string()))?;
    let tag = |key: &str| {
        io::array(span, "tags")
            .iter()
            .find(|t| t.get("key").and_then(Value::as_str) == Some(key))
            .and_then(|t| t.get("value"))
    };
    let error = tag("error").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
        || tag("otel.status_code").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("ERROR"))
        || tag("http.status_code")
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
            .is_some_and(|c| c >= 500.0);
    Ok(Span {
        trace_id,
        span_id,
        parent_id,
        service,
        operation: span.get("operationName").map(io::to_text).unwrap_or_default(),
        start,
        duration_ms: duration_us / 1000.0,
        error,
    })
}

/// Whether a status cell means error. `error`-named columns take truthy values; `status`-like
/// columns take `error`, `2`, `STATUS_CODE_ERROR` or an HTTP code ≥ 500.
fn is_error(cell: &str, error_column: bool) -> bool {
    let v = cell.trim().to_ascii_lowercase();
    if error_column && matches!(v.as_str(), "1" | "true" | "yes" | "error") {
        return true;
    }
    match v.as_str() {
        "error" | "2" | "true" | "status_code_error" => true,
        _ => v.parse::<i64>().is_ok_and(|code| (500..=599).contains(&code)),
    }
}

/// Reads a span table with a header. Column names are matched case-insensitively, ignoring `_`:
/// `trace_id`, `span_id`, `parent_id`/`parent_span_id` (empty, `root` or `-1` → root),
/// `service`/`service_name`/`podname` (pod names lose their hashes), `operation`/`operation_name`/
/// `name`, `start`/`start_time`/`start_time_unix_nano`, `end`/`end_time`/`end_time_unix_nano`,
/// `duration_ms`/`duration` (ms, `duration_us`, `duration_ns`), `status`/`error`/`status_code`.
/// Times are epoch numbers of any unit or date strings; with both start and end, duration is end − start.
pub fn read_span_csv(path: &Path, report: &mut ReadReport) -> Result<Vec<Span>, IngestError> {
    let mut rows = CsvRows::open(path)?;
    let file = rows.file().to_string();
    let trace_col = rows.require(&["traceid"], "trace_id")?;
    let span_col = rows.require(&["spanid"], "span_id")?;
    let parent_col = rows.column(&["parentid", "parentspanid"]);
    let (service_col, from_pod) = match rows.column(&["service", "servicename"]) {
        Some(c) => (c, false),
        None => (rows.require(&["podname", "pod"], "service")?, true),
    };
    let op_col = rows.column(&["operation", "operationname", "name", "spanname"]);
    let start_col = rows.require(&["start", "starttime", "starttimeunixnano"], "start")?;
    let end_col = rows.column(&["end", "endtime", "endtimeunixnano"]);
    let duration_col = [("durationms", 1.0), ("duration", 1.0), ("durationus", 1e-3), ("durationns", 1e-6)]
        .iter()
        .find_map(|(name, scale)| rows.column(&[name]).map(|c| (c, *scale)));
    if end_col.is_none() && duration_col.is_none() {
        return Err(rows.missing("end"));
    }
    let status_col = rows.column(&["status", "error", "statuscode"]);
    let error_column = status_col.is_some_and(|c| io::normalise(&rows.headers[c]) == "error");
    let mut out = Vec::new();
    while let Some(n) = rows.next_record(report) {
        let name = |c: usize| rows.headers[c].clone();
        let trace_id = rows.get(trace_col).to_string();
        if trace_id.is_empty() {
            report.skip(io::issue(&file, n, Some(&name(trace_col)), "missing"));
            continue;
        }
        let span_id = rows.get(span_col).to_string();
        if span_id.is_empty() {
            report.skip(io::issue(&file, n, Some(&name(span_col)), "missing"));
            continue;
        }
        let service = rows.get(service_col);
        if service.is_empty() {
            report.skip(io::issue(&file, n, Some(&name(service_col)), "missing"));
            continue;
        }
        let service = if from_pod { pod_to_service(&service) } else { service.to_string() };
        let Some(start) = parse_time_nanos(&rows.get(start_col)) else {
            report.skip(io::issue(&file, n, Some(&name(start_col)), format!("not a time: {:?}", rows.get(start_col))));
            continue;
        };
        let end = end_col.map(|c| rows.get(c)).filter(|s| !s.is_empty());
        let duration_ms = match (end, duration_col) {
            (Some(end), _) => match parse_time_nanos(&end) {
                Some(e) if e >= start => (e - start) as f64 / 1e6,
                Some(_) => {
                    report.skip(io::issue(&file, n, end_col.map(name).as_deref(), "span ends before it starts"));
                    continue;
                }
                None => {
                    report.skip(io::issue(&file, n, end_col.map(name).as_deref(), format!("not a time: {end:?}")));
                    continue;
                }
            },
            (None, Some((c, scale))) => match rows.get(c).parse::<f64>() {
                Ok(d) if d.is_finite() && d >= 0.0 => d * scale,
                _ => {
                    report.skip(io::issue(&file, n, Some(&name(c)), format!("not a duration: {:?}", rows.get(c))));
                    continue;
                }
            },
            (None, None) => {
                report.skip(io::issue(&file, n, end_col.map(name).as_deref(), "no end time or duration"));
                continue;
            }
        };
        let parent_id =
            parent_col.map(|c| rows.get(c).to_string()).filter(|p| !matches!(p.as_str(), "" | "root" | "-1"));
        out.push(Span {
            trace_id,
            span_id,
            parent_id,
            service,
            operation: op_col.map(|c| rows.get(c).to_string()).unwrap_or_default(),
            start: nanos_to_ms(start),
            duration_ms,
            error: status_col.is_some_and(|c| is_error(&rows.get(c), error_column)),
        });
        report.records_read += 1;
    }
    Ok(out)
}

/// Writes spans as the CSV `read_span_csv` reads back unchanged
/// (`trace_id,span_id,parent_id,service,operation,start,duration_ms,error`).
pub fn write_span_csv(spans: &[Span], w: &mut dyn Write) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_writer(w);
    csv.write_record(["trace_id", "span_id", "parent_id", "service", "operation", "start", "duration_ms", "error"])?;
    for s in spans {
        let start = rfc3339(s.start, SecondsFormat::Millis).unwrap_or_else(|| s.start.to_string());
        csv.write_record([
            s.trace_id.as_str(),
            s.span_id.as_str(),
            s.parent_id.as_deref().unwrap_or(""),
            s.service.as_str(),
            s.operation.as_str(),
            start.as_str(),
            format!("{:?}", s.duration_ms).as_str(),
            if s.error { "true" } else { "false" },
        ])?;
    }
    csv.flush()
}

#[cfg(test)]
mod tests {
    use super::is_error;

    #[test]
    fn status_cells() {
        for (cell, col, want) in [
            ("error", false, true),
            ("2", false, true),
            ("STATUS_CODE_ERROR", false, true),
            ("503", false, true),
            ("200", false, false),
            ("1", false, false),
            ("1", true, true),
            ("false", true, false),
            ("", false, false),
        ] {
            assert_eq!(is_error(cell, col), want, "{cell} {col}");
        }
    }
}
