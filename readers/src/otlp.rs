//! The OTLP/HTTP receiver's decoding: export requests in protobuf (`application/x-protobuf`, what
//! the OpenTelemetry SDKs send by default) or JSON (`application/json`) into culprit's spans, log
//! records and metric points. A record that cannot be read is skipped and counted (the count goes
//! back to the sender as OTLP's `partial_success`), never fatal to the rest of the request.

use crate::ingest;
use crate::model::{Level, LogRecord, ReadReport, Span, Ts};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One metric sample received over OTLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub service: String,
    pub metric: String,
    pub time: Ts,
    pub value: f64,
}

/// What one export request held.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    pub points: Vec<Point>,
    pub report: ReadReport,
}

impl Decoded {
    pub fn rejected(&self) -> u64 {
        self.report.records_skipped
    }

    /// Rejects, as bad input naming the field, every record more than `reach` ms from `now`
    /// (a clock far off, a year 9999) and every span longer than `reach`: nothing sized from a
    /// time may come from such a record.
    pub fn bound(&mut self, signal: Signal, now: Ts, reach: Ts) {
        let origin = format!("OTLP /v1/{}", signal.as_str());
        let far = |t: Ts| t < now.saturating_sub(reach) || t > now.saturating_add(reach);
        let hours = reach / crate::model::HOUR;
        let mut rejected = Vec::new();
        self.spans.retain(|s| {
            let field = if far(s.start) {
                "startTimeUnixNano"
            } else if s.duration_ms.is_nan()
                || s.duration_ms > reach as f64
                || far(s.start.saturating_add(s.duration_ms as Ts))
            {
                "endTimeUnixNano"
            } else {
                return true;
            };
            rejected.push(issue(&origin, field, &format!("more than {hours} h from now (span {})", s.span_id)));
            false
        });
        self.logs.retain(|l| {
            let ok = !far(l.time);
            if !ok {
                rejected.push(issue(&origin, "timeUnixNano", &format!("more than {hours} h from now")));
            }
            ok
        });
        self.points.retain(|p| {
            let ok = !far(p.time);
            if !ok {
                rejected.push(issue(
                    &origin,
                    "timeUnixNano",
                    &format!("metric {}: more than {hours} h from now", p.metric),
                ));
            }
            ok
        });
        for i in rejected {
            self.report.records_read = self.report.records_read.saturating_sub(1);
            self.report.skip(i);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a `Content-Type` header; None for anything OTLP/HTTP does not define.
    pub fn from_content_type(ct: Option<&str>) -> Option<Encoding> {
        let ct = ct.unwrap_or("application/x-protobuf").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match ct.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// A body that is not an export request of its signal at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an {message}: {error}")]
    Protobuf { message: &'static str, error: prost::DecodeError },
}

/// Decodes one request body; a body that is not a request of its signal at all is an error.
pub fn decode(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<Decoded, DecodeError> {
    let origin = format!("OTLP /v1/{}", signal.as_str());
    let mut d = Decoded::default();
    match encoding {
        Encoding::Json => {
            let doc: Value = serde_json::from_slice(body)?;
            match signal {
                Signal::Traces => d.spans = ingest::traces::spans_from_otlp_json(&doc, &origin, &mut d.report),
                Signal::Logs => d.logs = ingest::logs::logs_from_otlp_json(&doc, &origin, &mut d.report),
                Signal::Metrics => d.points = points_from_json(&doc, &origin, &mut d.report),
            }
        }
        Encoding::Protobuf => match signal {
            Signal::Traces => {
                let req = ExportTraceServiceRequest::decode(body)
                    .map_err(|source| DecodeError::Protobuf { message: "ExportTraceServiceRequest", error: source })?;
                for rs in req.resource_spans {
                    let service = service_name(rs.resource.as_ref());
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        match (&service, span.start_time_unix_nano, span.end_time_unix_nano) {
                            (None, ..) => d.report.skip(issue(&origin, "service.name", "resource has no service.name")),
                            (_, s, e) if s == 0 || e < s => d.report.skip(issue(
                                &origin,
                                "endTimeUnixNano",
                                "span has no start or ends before it starts",
                            )),
                            (Some(svc), s, e) => {
                                d.report.records_read += 1;
                                d.spans.push(Span {
                                    trace_id: hex(&span.trace_id),
                                    span_id: hex(&span.span_id),
                                    parent_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                                    service: svc.clone(),
                                    operation: span.name,
                                    start: (s / 1_000_000) as Ts,
                                    duration_ms: (e - s) as f64 / 1e6,
                                    error: span.status.is_some_and(|st| st.code == 2),
                                });
                            }
                        }
                    }
                }
            }
            Signal::Logs => {
                let req = ExportLogsServiceRequest::decode(body)
                    .map_err(|source| DecodeError::Protobuf { message: "ExportLogsServiceRequest", error: source })?;
                for rl in req.resource_logs {
                    let service = service_name(rl.resource.as_ref());
                    for rec in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
                        let nanos =
                            if rec.time_unix_nano != 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano };
                        let Some(svc) = &service else {
                            d.report.skip(issue(&origin, "service.name", "resource has no service.name"));
                            continue;
                        };
                        if nanos == 0 {
                            d.report.skip(issue(&origin, "timeUnixNano", "record has no time"));
                            continue;
                        }
                        let level = Level::from_otlp_number(i64::from(rec.severity_number))
                            .or_else(|| Level::parse(&rec.severity_text))
                            .unwrap_or_default();
                        let mut attributes: Vec<(String, String)> =
                            rec.attributes.iter().map(|kv| (kv.key.clone(), any_text(kv.value.as_ref()))).collect();
                        if !rec.trace_id.is_empty() {
                            attributes.push(("trace_id".into(), hex(&rec.trace_id)));
                        }
                        if !rec.span_id.is_empty() {
                            attributes.push(("span_id".into(), hex(&rec.span_id)));
                        }
                        d.report.records_read += 1;
                        d.logs.push(LogRecord {
                            time: (nanos / 1_000_000) as Ts,
                            nanos: (nanos % 1_000_000) as u32,
                            service: svc.clone(),
                            level,
                            message: any_text(rec.body.as_ref()),
                            attributes,
                        });
                    }
                }
            }
            Signal::Metrics => {
                let req = ExportMetricsServiceRequest::decode(body).map_err(|source| DecodeError::Protobuf {
                    message: "ExportMetricsServiceRequest",
                    error: source,
                })?;
                for rm in req.resource_metrics {
                    let service = service_name(rm.resource.as_ref());
                    for m in rm.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                        let points: &[NumberDataPoint] = match &m.data {
                            Some(metric::Data::Gauge(g)) => &g.data_points,
                            Some(metric::Data::Sum(s)) => &s.data_points,
                            _ => {
                                d.report.skip(issue(
                                    &origin,
                                    "data",
                                    &format!("metric {}: only gauges and sums are read", m.name),
                                ));
                                continue;
                            }
                        };
                        for p in points {
                            let value = match p.value {
                                Some(number_data_point::Value::AsDouble(x)) => x,
                                Some(number_data_point::Value::AsInt(x)) => x as f64,
                                None => f64::NAN,
                            };
                            match (&service, p.time_unix_nano, value.is_finite()) {
                                (Some(svc), t, true) if t > 0 => {
                                    d.report.records_read += 1;
                                    let attrs = p
                                        .attributes
                                        .iter()
                                        .map(|kv| (kv.key.clone(), any_text(kv.value.as_ref())))
                                        .collect();
                                    d.points.push(Point {
                                        service: svc.clone(),
                                        metric: series_name(&m.name, attrs),
                                        time: (t / 1_000_000) as Ts,
                                        value,
                                    });
                                }
                                (None, ..) => {
                                    d.report.skip(issue(&origin, "service.name", "resource has no service.name"))
                                }
                                _ => d.report.skip(issue(
                                    &origin,
                                    "dataPoints",
                                    &format!("metric {}: a point without a time or a finite value", m.name),
                                )),
                            }
                        }
                    }
                }
            }
        },
    }
    Ok(d)
}

/// The response body: OTLP's `Export*ServiceResponse`, with `partial_success` when records were
/// rejected.
pub fn response(signal: Signal, encoding: Encoding, d: &Decoded) -> (Vec<u8>, &'static str) {
    use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
    let rejected = d.rejected() as i64;
    let message = d
        .report
        .issues
        .first()
        .map(|i| format!("{} records rejected, e.g. {}: {}", rejected, i.field.clone().unwrap_or_default(), i.message))
        .unwrap_or_default();
    match encoding {
        Encoding::Json => {
            let key = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Logs => "rejectedLogRecords",
                Signal::Metrics => "rejectedDataPoints",
            };
            let body = if rejected > 0 {
                serde_json::json!({ "partialSuccess": { key: rejected, "errorMessage": message } })
            } else {
                serde_json::json!({})
            };
            (body.to_string().into_bytes(), "application/json")
        }
        Encoding::Protobuf => {
            let bytes = match signal {
                Signal::Traces => trace::v1::ExportTraceServiceResponse {
                    partial_success: (rejected > 0).then_some(trace::v1::ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
                Signal::Logs => logs::v1::ExportLogsServiceResponse {
                    partial_success: (rejected > 0).then_some(logs::v1::ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
                Signal::Metrics => metrics::v1::ExportMetricsServiceResponse {
                    partial_success: (rejected > 0).then_some(metrics::v1::ExportMetricsPartialSuccess {
                        rejected_data_points: rejected,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
            };
            (bytes, "application/x-protobuf")
        }
    }
}

fn issue(origin: &str, field: &str, message: &str) -> crate::model::ReadIssue {
    ingest::io::issue(origin, 0, Some(field), message)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn service_name(r: Option<&Resource>) -> Option<String> {
    r.and_then(|r| attr(&r.attributes, "service.name")).filter(|s| !s.trim().is_empty())
}

fn attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter().find(|kv| kv.key == key).map(|kv| any_text(kv.value.as_ref()))
}

fn any_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(x)) => x.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.iter().map(|v| any_text(Some(v))).collect::<Vec<_>>().join(",")
        }
        Some(any_value::Value::KvlistValue(l)) => l
            .values
            .iter()
            .map(|kv| format!("{}={}", kv.key, any_text(kv.value.as_ref())))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// Gauges and sums of an OTLP/JSON `ExportMetricsServiceRequest`.
/// A metric's series name with its point's attributes as Prometheus-style labels (sorted), so
/// the series of one metric stay apart (`http_requests{route="/a"}`) and a repeated point is a
/// repeat of its own series.
fn series_name(name: &str, mut attrs: Vec<(String, String)>) -> String {
    if attrs.is_empty() {
        return name.to_string();
    }
    attrs.sort();
    let labels: Vec<String> =
        attrs.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn points_from_json(doc: &Value, origin: &str, report: &mut ReadReport) -> Vec<Point> {
    let arr = |v: &Value, k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let Some(resources) = doc.get("resourceMetrics").and_then(Value::as_array) else {
        report.skip(issue(origin, "resourceMetrics", "no resourceMetrics array"));
        return out;
    };
    for rm in resources {
        let service = ingest::io::otlp_service(rm);
        for sm in arr(rm, "scopeMetrics") {
            for m in arr(&sm, "metrics") {
                let name = m.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                let Some(data) = m.get("gauge").or_else(|| m.get("sum")) else {
                    report.skip(issue(origin, "metrics", &format!("metric {name}: only gauges and sums are read")));
                    continue;
                };
                for p in arr(data, "dataPoints") {
                    let t = p.get("timeUnixNano").and_then(ingest::io::nanos_of).filter(|n| *n > 0);
                    let v = p
                        .get("asDouble")
                        .and_then(|x| x.as_f64().or_else(|| x.as_str().and_then(|s| s.parse().ok())))
                        .or_else(|| {
                            p.get("asInt").and_then(|x| {
                                x.as_i64().map(|i| i as f64).or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                            })
                        });
                    match (&service, t, v) {
                        (Some(svc), Some(t), Some(v)) if v.is_finite() && !name.is_empty() => {
                            report.records_read += 1;
                            let attrs = ingest::io::otlp_attributes(p.get("attributes"));
                            out.push(Point {
                                service: svc.clone(),
                                metric: series_name(&name, attrs),
                                time: ingest::time::nanos_to_ms(t),
                                value: v,
                            });
                        }
                        (None, ..) => report.skip(issue(origin, "service.name", "resource has no service.name")),
                        _ => report.skip(issue(
                            origin,
                            "dataPoints",
                            &format!("metric {name:?}: a point without a time or a finite value"),
                        )),
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span as PSpan, Status};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn protobuf_spans_are_read_and_bad_ones_counted() {
        let good = PSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "charge".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_250_000_000,
            status: Some(Status { code: 2, message: "boom".into() }),
            ..Default::default()
        };
        let bad = PSpan { start_time_unix_nano: 5, end_time_unix_nano: 1, ..good.clone() };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![kv("service.name", "checkout")], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans: vec![good, bad], ..Default::default() }],
                ..Default::default()
            }],
        };
        let d = decode(Signal::Traces, Encoding::Protobuf, &req.encode_to_vec()).unwrap();
        assert_eq!(d.spans.len(), 1);
        let s = &d.spans[0];
        assert_eq!((s.service.as_str(), s.start, s.duration_ms, s.error), ("checkout", 1_700_000_000_000, 250.0, true));
        assert_eq!(s.parent_id.as_deref(), Some("0303030303030303"));
        assert_eq!(d.rejected(), 1);
        let (body, ct) = response(Signal::Traces, Encoding::Protobuf, &d);
        assert_eq!(ct, "application/x-protobuf");
        let resp =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(body.as_slice())
                .unwrap();
        assert_eq!(resp.partial_success.map(|p| p.rejected_spans), Some(1));
        assert!(decode(Signal::Traces, Encoding::Protobuf, b"\xff\xff\xff").is_err());
    }

    #[test]
    fn json_logs_and_metrics_are_read() {
        let logs = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"db"}}]},
            "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","severityNumber":17,"body":{"stringValue":"slow query"}},
                                        {"body":{"stringValue":"no time"}}]}]}]}"#;
        let d = decode(Signal::Logs, Encoding::Json, logs.as_bytes()).unwrap();
        assert_eq!((d.logs.len(), d.rejected()), (1, 1));
        assert_eq!((d.logs[0].level, d.logs[0].message.as_str()), (Level::Error, "slow query"));
        let metrics = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"db"}}]},
            "scopeMetrics":[{"metrics":[{"name":"cpu","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":0.5}]}}]}]}]}"#;
        let d = decode(Signal::Metrics, Encoding::Json, metrics.as_bytes()).unwrap();
        assert_eq!(
            d.points,
            vec![Point { service: "db".into(), metric: "cpu".into(), time: 1_700_000_000_000, value: 0.5 }]
        );
        assert_eq!(Encoding::from_content_type(Some("text/plain")), None);
        assert_eq!(Encoding::from_content_type(Some("application/json; charset=utf-8")), Some(Encoding::Json));
    }
}
