//! Metric readers (Prometheus text exposition with timestamps, Prometheus `query_range` JSON,
//! wide CSV) and the exposition writer the bundle writer uses.
//!
//! All readers produce one [`Series`] per (service, metric), points sorted by time. The service
//! comes from a label (`service`, else `job`, `service_name`, `app`, `container`, `pod`); the
//! remaining labels are appended to the metric name in sorted order, so the name is stable.

use super::io::{self, CsvRows, Lines};
use super::time::{from_number, parse_time_str};
use super::{pod_to_service, IngestError};
use crate::model::{ReadReport, Series, Ts};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Labels that may name the service, in order of preference. None of them is part of a metric name.
pub const SERVICE_LABELS: [&str; 6] = ["service", "job", "service_name", "app", "container", "pod"];

/// Collects points into series keyed by (service, metric), in first-seen order.
#[derive(Default)]
struct SeriesBuilder {
    index: HashMap<(String, String), usize>,
    series: Vec<Series>,
}

impl SeriesBuilder {
    fn push(&mut self, service: &str, metric: &str, t: Ts, v: f64) {
        let key = (service.to_string(), metric.to_string());
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.series.push(Series { service: key.0.clone(), metric: key.1.clone(), points: Vec::new() });
                self.index.insert(key, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        self.series[i].points.push((t, v));
    }

    fn finish(mut self) -> Vec<Series> {
        for s in &mut self.series {
            s.points.sort_by_key(|p| p.0);
        }
        self.series
    }
}

/// The service named by the labels, if any.
fn service_of(labels: &[(String, String)]) -> Option<String> {
    SERVICE_LABELS.iter().find_map(|want| {
        let (k, v) = labels.iter().find(|(k, v)| k == want && !v.trim().is_empty())?;
        Some(if k == "pod" { pod_to_service(v) } else { v.trim().to_string() })
    })
}

/// `name{k="v",…}` with the non-service labels sorted by key; just `name` when there are none.
fn metric_name(name: &str, labels: &[(String, String)]) -> String {
    let mut rest: Vec<&(String, String)> =
        labels.iter().filter(|(k, _)| k != "__name__" && !SERVICE_LABELS.contains(&k.as_str())).collect();
    if rest.is_empty() {
        return name.to_string();
    }
    rest.sort();
    let mut out = format!("{name}{{");
    for (i, (k, v)) in rest.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(&escape(v));
        out.push('"');
    }
    out.push('}');
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// One parsed exposition line.
struct Sample<'a> {
    name: String,
    labels: Vec<(String, String)>,
    value: &'a str,
    timestamp: Option<&'a str>,
}

type ParseError = (&'static str, String);

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn ident(&mut self) -> &'a str {
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        while matches!(self.peek(), Some(b) if b != b' ' && b != b'\t') {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A `"…"` string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, ParseError> {
        if self.peek() != Some(b'"') {
            return Err(("labels", format!("expected `\"` at column {}", self.i + 1)));
        }
        self.i += 1;
        let mut out = String::new();
        let mut chunk = self.i;
        loop {
            match self.peek() {
                None => return Err(("labels", "unterminated quoted string".into())),
                Some(b'"') => {
                    out.push_str(&self.s[chunk..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.s[chunk..self.i]);
                    match self.s.as_bytes().get(self.i + 1) {
                        Some(b'n') => out.push('\n'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'"') => out.push('"'),
                        _ => out.push('\\'),
                    }
                    self.i +=
                        if matches!(self.s.as_bytes().get(self.i + 1), Some(b'n' | b'\\' | b'"')) { 2 } else { 1 };
                    chunk = self.i;
                }
                Some(_) => self.i += 1,
            }
        }
    }
}

/// Parses `name{label="v",…} value [timestamp]`, also the `{"name", label="v"}` and
/// `{__name__="name"}` spellings.
fn parse_sample(line: &str) -> Result<Sample<'_>, ParseError> {
    let mut c = Cursor { s: line, i: 0 };
    c.skip_ws();
    let mut name = c.ident().to_string();
    let mut labels = Vec::new();
    c.skip_ws();
    if c.peek() == Some(b'{') {
        c.i += 1;
        loop {
            c.skip_ws();
            match c.peek() {
                Some(b'}') => {
                    c.i += 1;
                    break;
                }
                Some(b'"') => {
                    let key = c.quoted()?;
                    c.skip_ws();
                    if c.peek() == Some(b'=') {
                        c.i += 1;
                        c.skip_ws();
                        labels.push((key, c.quoted()?));
                    } else if name.is_empty() {
                        name = key;
                    } else {
                        return Err(("labels", format!("unexpected quoted name at column {}", c.i + 1)));
                    }
                }
                Some(_) => {
                    let key = c.ident();
                    if key.is_empty() {
                        return Err(("labels", format!("bad label name at column {}", c.i + 1)));
                    }
                    c.skip_ws();
                    if c.peek() != Some(b'=') {
                        return Err(("labels", format!("expected `=` after label `{key}`")));
                    }
                    c.i += 1;
                    c.skip_ws();
                    labels.push((key.to_string(), c.quoted()?));
                }
                None => return Err(("labels", "unterminated label set".into())),
            }
            c.skip_ws();
            match c.peek() {
                Some(b',') => c.i += 1,
                Some(b'}') => {}
                _ => return Err(("labels", format!("expected `,` or `}}` at column {}", c.i + 1))),
            }
        }
    }
    if let Some(p) = labels.iter().position(|(k, _)| k == "__name__") {
        let (_, n) = labels.remove(p);
        if name.is_empty() {
            name = n;
        }
    }
    if name.is_empty() {
        return Err(("name", "no metric name".into()));
    }
    c.skip_ws();
    let value = c.token();
    if value.is_empty() {
        return Err(("value", "no value".into()));
    }
    c.skip_ws();
    let timestamp = Some(c.token()).filter(|t| !t.is_empty() && !t.starts_with('#'));
    Ok(Sample { name, labels, value, timestamp })
}

/// A sample value that is not a finite number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum BadValue {
    #[error("value {0} is NaN or infinite")]
    NotFinite(String),
    #[error("not a number: {0:?}")]
    NotANumber(String),
    /// A JSON value of another type than string or number, as written.
    #[error("not a number: {0}")]
    NotANumberValue(String),
    #[error("bad number")]
    BadNumber,
}

fn parse_value(s: &str) -> Result<f64, BadValue> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(BadValue::NotFinite(s.to_string())),
        Err(_) => Err(BadValue::NotANumber(short(s))),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Reads the Prometheus text exposition format with timestamps (`name{labels} value ts_ms`).
/// `# HELP`/`# TYPE` and other comments are skipped; samples without a service label, a finite
/// value or a timestamp are skipped with an issue.
pub fn read_prometheus_text(path: &Path, report: &mut ReadReport) -> Result<Vec<Series>, IngestError> {
    let mut lines = Lines::open(path)?;
    let file = lines.file().to_string();
    let mut out = SeriesBuilder::default();
    while let Some((n, line)) = lines.next_line(report) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(s) => s,
            Err((field, msg)) => {
                report.skip(io::issue(&file, n, Some(field), msg));
                continue;
            }
        };
        let Some(service) = service_of(&sample.labels) else {
            report.skip(io::issue(
                &file,
                n,
                Some("service"),
                "no service label (service, job, service_name, app, container or pod)",
            ));
            continue;
        };
        let value = match parse_value(sample.value) {
            Ok(v) => v,
            Err(msg) => {
                report.skip(io::issue(&file, n, Some("value"), msg.to_string()));
                continue;
            }
        };
        let Some(ts) = sample.timestamp else {
            report.skip(io::issue(&file, n, Some("timestamp"), "sample has no timestamp"));
            continue;
        };
        let t = match ts.parse::<i64>() {
            Ok(ms) => Some(ms),
            Err(_) => ts.parse::<f64>().ok().filter(|x| x.is_finite()).map(from_number),
        };
        let Some(t) = t.filter(|t| super::time::plausible(*t)) else {
            report.skip(io::issue(&file, n, Some("timestamp"), format!("bad timestamp {:?}", short(ts))));
            continue;
        };
        out.push(&service, &metric_name(&sample.name, &sample.labels), t, value);
        report.records_read += 1;
    }
    Ok(out.finish())
}

/// Reads Prometheus HTTP API `query_range` (matrix) or `query` (vector) responses, one per line
/// or one (pretty-printed) document per file. Each point is a record.
pub fn read_prometheus_query_range(path: &Path, report: &mut ReadReport) -> Result<Vec<Series>, IngestError> {
    let file = io::display(path);
    let name = name_from_file(path);
    let mut out = SeriesBuilder::default();
    io::for_each_json_doc(path, report, &mut |n, doc, report| {
        query_range_doc(&doc, &file, n, name.as_deref(), report, &mut out)
    })?;
    Ok(out.finish())
}

/// The metric a `query_range` file is named after, for results without `__name__` (an
/// aggregated query drops it): the file's stem without a `metrics` prefix
/// (`metrics/error_rate.json`, `metrics-error_rate.json` → `error_rate`); none for `metrics.json`.
fn name_from_file(path: &Path) -> Option<String> {
    let base = io::base_name(path);
    let stem = base.strip_suffix(".json").unwrap_or(&base);
    let stem = stem.strip_prefix("metrics").map_or(stem, |rest| rest.trim_start_matches(['-', '_', '.']));
    (!stem.is_empty()).then(|| stem.to_string())
}

/// The series of one Prometheus HTTP API response, such as a live `query_range` answer.
/// `name` is the metric name for results without `__name__` (PromQL functions drop it).
pub fn series_from_query_range(doc: &Value, origin: &str, name: Option<&str>, report: &mut ReadReport) -> Vec<Series> {
    let mut out = SeriesBuilder::default();
    query_range_doc(doc, origin, 1, name, report, &mut out);
    out.finish()
}

fn query_range_doc(
    doc: &Value,
    file: &str,
    n: u64,
    fallback: Option<&str>,
    report: &mut ReadReport,
    out: &mut SeriesBuilder,
) {
    if let Some(status) = doc.get("status").and_then(Value::as_str) {
        if status != "success" {
            report.skip(io::issue(file, n, Some("status"), format!("query status is {status:?}")));
            return;
        }
    }
    let Some(results) = doc.pointer("/data/result").and_then(Value::as_array) else {
        report.skip(io::issue(file, n, Some("data.result"), "no data.result array"));
        return;
    };
    for (i, r) in results.iter().enumerate() {
        let labels: Vec<(String, String)> = match r.get("metric").and_then(Value::as_object) {
            Some(m) => m.iter().map(|(k, v)| (k.clone(), io::to_text(v))).collect(),
            None => Vec::new(),
        };
        let Some(name) = labels
            .iter()
            .find(|(k, _)| k == "__name__")
            .map(|(_, v)| v.clone())
            .or_else(|| fallback.map(str::to_string))
        else {
            report.skip(io::issue(
                file,
                n,
                Some("__name__"),
                format!("result {i} has no metric name (name the file after the metric: metrics/<name>.json)"),
            ));
            continue;
        };
        let Some(service) = service_of(&labels) else {
            report.skip(io::issue(file, n, Some("service"), format!("result {i} ({name}) has no service label")));
            continue;
        };
        let metric = metric_name(&name, &labels);
        let points: Vec<&Value> = match (r.get("values"), r.get("value")) {
            (Some(Value::Array(vs)), _) => vs.iter().collect(),
            (_, Some(v @ Value::Array(_))) => vec![v],
            _ => {
                report.skip(io::issue(file, n, Some("values"), format!("result {i} ({name}) has no values")));
                continue;
            }
        };
        for (j, p) in points.into_iter().enumerate() {
            let pair = p.as_array().filter(|a| a.len() == 2);
            let t = pair.and_then(|a| io::time_of(&a[0]));
            let v = pair.map(|a| match &a[1] {
                Value::String(s) => parse_value(s),
                Value::Number(x) => x.as_f64().ok_or(BadValue::BadNumber),
                other => Err(BadValue::NotANumberValue(short(&other.to_string()))),
            });
            match (t, v) {
                (Some(t), Some(Ok(v))) => {
                    out.push(&service, &metric, t, v);
                    report.records_read += 1;
                }
                (None, _) => report.skip(io::issue(
                    file,
                    n,
                    Some("values"),
                    format!("result {i} point {j}: not a [time, \"value\"] pair"),
                )),
                // NaN is how Prometheus answers "no data at this step" (a histogram quantile
                // without traffic): a gap, not a bad record.
                (_, Some(Err(BadValue::NotFinite(v)))) if v.trim().eq_ignore_ascii_case("nan") => {}
                (_, Some(Err(msg))) => {
                    report.skip(io::issue(file, n, Some("values"), format!("result {i} point {j}: {msg}")))
                }
                (_, None) => {}
            }
        }
    }
}

/// The service and metric a wide CSV column names: a Prometheus series
/// (`error_rate{service="checkout"}`, the service from its service label), else `<service>.<metric>`
/// or `<service>_<metric>` split at the first dot or underscore, whichever comes first
/// (`checkout.error_rate` → `checkout` / `error_rate`, `carts-db_cpu` → `carts-db` / `cpu`).
fn wide_column(h: &str) -> Result<(String, String), &'static str> {
    if h.contains('{') {
        let line = format!("{h} 0");
        let sample = parse_sample(&line).map_err(|_| "not a Prometheus series name")?;
        let service = service_of(&sample.labels).ok_or("no service label (service, job, app, …) in the column name")?;
        return Ok((service, metric_name(&sample.name, &sample.labels)));
    }
    let split = match io::metric_separator().filter(|s| !s.is_empty()) {
        Some(sep) => h.split_once(sep.as_str()),
        None => h.find(['.', '_']).map(|i| (&h[..i], &h[i + 1..])),
    };
    match split {
        Some((svc, metric)) if !svc.is_empty() && !metric.is_empty() => Ok((svc.to_string(), metric.to_string())),
        _ => Err("column name is not `<service>_<metric>`, `<service>.<metric>` or `metric{service=\"…\"}`"),
    }
}

/// Whether a line is one Prometheus text sample: a metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`),
/// labels, a number (or `NaN`, `±Inf`) and at most a numeric timestamp after it. Strict, as it
/// decides what a file is (a CSV header or a syslog line must not pass).
pub fn is_sample(line: &str) -> bool {
    let Ok(s) = parse_sample(line) else { return false };
    let name_ok = s.name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let number = |t: &str| t.parse::<f64>().is_ok();
    let rest: Vec<&str> = line.rsplit_once('}').map_or(line, |(_, r)| r).split_whitespace().collect();
    let (value, tail) = match (line.contains('{'), rest.as_slice()) {
        (true, [v, tail @ ..]) => (*v, tail),
        (false, [_, v, tail @ ..]) => (*v, tail),
        _ => return false,
    };
    name_ok && number(value) && tail.len() <= 1 && tail.iter().all(|t| number(t))
}

/// Reads a metric CSV. Wide: a `time` (or `timestamp`) column and one column per series, named as
/// [`wide_column`] reads it. Long: `time`, `service`, `metric` (or `name`) and `value` columns,
/// one point per row. Times are epoch numbers of any unit or date strings. Empty cells are
/// missing values; other unreadable cells are issues naming the column, and the rest of the row
/// is kept.
pub fn read_wide_csv(path: &Path, report: &mut ReadReport) -> Result<Vec<Series>, IngestError> {
    let mut rows = CsvRows::open(path)?;
    let file = rows.file().to_string();
    let time_names = io::fields(|h| &h.time, &["time", "timestamp", "ts"]);
    let service_names = io::fields(|h| &h.service, &["service"]);
    let Some(time_col) = rows.column_of(&time_names) else {
        return Err(IngestError::Invalid {
            file,
            field: "time".into(),
            message: "no `time` or `timestamp` column".into(),
        });
    };
    if let (Some(s), Some(m), Some(v)) =
        (rows.column_of(&service_names), rows.column(&["metric", "name", "metric_name"]), rows.column(&["value"]))
    {
        return Ok(read_long_csv(&mut rows, [time_col, s, m, v], report));
    }
    let mut cols: Vec<(usize, String, String)> = Vec::new();
    for (i, h) in rows.headers.iter().enumerate() {
        if i == time_col {
            continue;
        }
        match wide_column(h) {
            Ok((svc, metric)) => cols.push((i, svc, metric)),
            Err(why) => report.skip(io::issue(&file, 1, Some(h), format!("{why}; column ignored"))),
        }
    }
    let time_name = rows.headers[time_col].clone();
    let mut out = SeriesBuilder::default();
    while let Some(n) = rows.next_record(report) {
        let cell = rows.get(time_col);
        let Some(t) = parse_time_str(&cell) else {
            report.skip(io::issue(&file, n, Some(&time_name), format!("bad time {:?}", short(&cell))));
            continue;
        };
        for (i, svc, metric) in &cols {
            let cell = rows.get(*i);
            if cell.is_empty() {
                continue;
            }
            match parse_value(&cell) {
                Ok(v) => out.push(svc, metric, t, v),
                Err(msg) => report.skip(io::issue(&file, n, Some(&rows.headers[*i]), msg.to_string())),
            }
        }
        report.records_read += 1;
    }
    Ok(out.finish())
}

/// The long format: one (time, service, metric, value) point per row.
fn read_long_csv(rows: &mut CsvRows, [t_col, s_col, m_col, v_col]: [usize; 4], report: &mut ReadReport) -> Vec<Series> {
    let file = rows.file().to_string();
    let mut out = SeriesBuilder::default();
    while let Some(n) = rows.next_record(report) {
        let cell = rows.get(t_col);
        let Some(t) = parse_time_str(&cell) else {
            report.skip(io::issue(&file, n, Some(&rows.headers[t_col]), format!("bad time {:?}", short(&cell))));
            continue;
        };
        let (service, metric) = (rows.get(s_col).trim().to_string(), rows.get(m_col).trim().to_string());
        if service.is_empty() || metric.is_empty() {
            let field = if service.is_empty() { &rows.headers[s_col] } else { &rows.headers[m_col] };
            report.skip(io::issue(&file, n, Some(field), "empty"));
            continue;
        }
        match parse_value(&rows.get(v_col)) {
            Ok(v) => {
                out.push(&service, &metric, t, v);
                report.records_read += 1;
            }
            Err(msg) => report.skip(io::issue(&file, n, Some(&rows.headers[v_col]), msg.to_string())),
        }
    }
    out.finish()
}

/// How a series is written in exposition format: `name{service="s",labels}` when the metric is a
/// plain or canonical labelled Prometheus name, else `{__name__="<metric>",service="s"}`, so any
/// metric string reads back unchanged.
fn exposition_series(s: &Series) -> String {
    let svc = format!("service=\"{}\"", escape(&s.service));
    if is_metric_name(&s.metric) {
        return format!("{}{{{svc}}}", s.metric);
    }
    if let Ok(sample) = parse_sample(&format!("{} 0", s.metric)) {
        let clean = sample.labels.iter().all(|(k, _)| !SERVICE_LABELS.contains(&k.as_str()));
        if clean && is_metric_name(&sample.name) && metric_name(&sample.name, &sample.labels) == s.metric {
            let labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            return format!("{}{{{svc},{}}}", sample.name, labels.join(","));
        }
    }
    format!("{{__name__=\"{}\",{svc}}}", escape(&s.metric))
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:?}")
    }
}

/// Writes series as exposition lines with ms timestamps and a `service` label.
pub fn write_prometheus(series: &[Series], w: &mut dyn Write) -> std::io::Result<()> {
    for s in series {
        let head = exposition_series(s);
        for (t, v) in &s.points {
            writeln!(w, "{head} {} {t}", format_value(*v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_samples_pass_as_samples() {
        assert!(is_sample("http_requests_total{service=\"a\"} 12 1700000000000"));
        assert!(is_sample("up 1"));
        assert!(is_sample("x NaN"));
        for not in
            ["time,svc_cpu", "Mar  4 13:00:00 host app: x", "2024-03-04T13:21:00Z host app: x", "checkout went down"]
        {
            assert!(!is_sample(not), "{not}");
        }
    }

    #[test]
    fn parses_exposition_lines() {
        let s = parse_sample(r#"http_latency_seconds{service="cart",quantile="0.99"} 0.25 1700000000000"#).ok();
        let s = s.map(|s| (s.name, s.labels, s.value, s.timestamp));
        assert_eq!(
            s,
            Some((
                "http_latency_seconds".to_string(),
                vec![("service".into(), "cart".into()), ("quantile".into(), "0.99".into())],
                "0.25",
                Some("1700000000000")
            ))
        );
        let s = parse_sample(r#"{"odd name", service="a\"b"} 1 2"#).ok().map(|s| (s.name, s.labels));
        assert_eq!(s, Some(("odd name".to_string(), vec![("service".into(), "a\"b".into())])));
        for bad in ["{", "x{a=1} 1", r#"x{a="1" 1"#, "x", "{} 1", "x{=\"a\"} 1", "\u{1F600}{"] {
            assert!(parse_sample(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metric_names_are_canonical() {
        let labels =
            vec![("quantile".into(), "0.99".into()), ("job".into(), "x".into()), ("code".into(), "5\"".into())];
        assert_eq!(metric_name("lat", &labels), r#"lat{code="5\"",quantile="0.99"}"#);
        assert_eq!(metric_name("lat", &[("pod".into(), "p".into())]), "lat");
    }

    #[test]
    fn odd_metric_names_survive_writing() {
        for metric in
            ["cpu", "CpuUsageRate(%)", r#"lat{quantile="0.99"}"#, r#"lat{z="1",a="2"}"#, r#"lat{pod="x"}"#, "a b\"c\\"]
        {
            let s = Series { service: "svc \"x\"".into(), metric: metric.into(), points: vec![] };
            let line = format!("{} 1 2", exposition_series(&s));
            let parsed = parse_sample(&line).ok();
            let back = parsed.map(|p| (service_of(&p.labels), metric_name(&p.name, &p.labels)));
            assert_eq!(back, Some((Some(s.service.clone()), metric.to_string())), "{line}");
        }
    }
}
