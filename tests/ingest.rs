//! Boundary tests of `culprit::ingest`: every reader on small files (good, malformed, gzipped),
//! the bundle loader, the write → load round trip, and the real Nezha files when present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use culprit::ingest::{self, time::parse_time_str, IngestError};
use culprit::model::*;
use std::io::Write;
use std::path::{Path, PathBuf};

const T0: Ts = 1_700_000_000_000; // 2023-11-14T22:13:20Z

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    write_bytes(dir, name, content.as_bytes())
}

fn write_bytes(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        gz.write_all(content).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(&path, content).unwrap();
    }
    path
}

/// The report holds exactly these skipped records, as (line, field), each naming `file`.
#[track_caller]
fn check_issues(report: &ReadReport, file: &Path, want: &[(u64, Option<&str>)]) {
    let got: Vec<(u64, Option<&str>)> = report.issues.iter().map(|i| (i.line, i.field.as_deref())).collect();
    assert_eq!(got, want, "issues: {:#?}", report.issues);
    assert_eq!(report.records_skipped, want.len() as u64);
    for i in &report.issues {
        assert_eq!(i.file, file.display().to_string());
        assert!(!i.message.is_empty());
        assert!(i.to_string().starts_with(&format!("{}:{}", file.display(), i.line)));
    }
}

fn series<'a>(all: &'a [Series], service: &str, metric: &str) -> &'a Series {
    all.iter()
        .find(|s| s.service == service && s.metric == metric)
        .unwrap_or_else(|| panic!("no series {service}/{metric} in {all:#?}"))
}

fn log_file(path: PathBuf, format: LogFormat) -> Logs {
    Logs { records: vec![], files: vec![LogFile::new(path, format)] }
}

// ---------------------------------------------------------------- metrics

const PROM: &str = r#"# HELP http_latency_seconds Latency.
# TYPE http_latency_seconds summary
http_latency_seconds{service="cart",quantile="0.99"} 0.5 1700000060000
http_latency_seconds{service="cart",quantile="0.99"} 0.25 1700000000000
http_latency_seconds{quantile="0.5",service="cart"} 0.1 1700000000000
cpu{job="db", instance="x:9100"} 1e-3 1700000000000
mem{pod="ts-order-service-5b67c48447-mv5hb"} 42 1700000000000
cpu{job="db"} NaN 1700000060000
cpu{job="db"} +Inf 1700000060000
cpu{job="db"} 1 
cpu{instance="x"} 1 1700000000000
cpu{job="db"} abc 1700000000000
cpu{job="db" 1 1700000000000
cpu{job="db"} 1 17e
"#;

#[test]
fn prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.prom", PROM);
    let mut report = ReadReport::default();
    let all = ingest::read_prometheus_text(&path, &mut report).unwrap();
    assert_eq!(report.records_read, 5);
    check_issues(
        &report,
        &path,
        &[
            (8, Some("value")),
            (9, Some("value")),
            (10, Some("timestamp")),
            (11, Some("service")),
            (12, Some("value")),
            (13, Some("labels")),
            (14, Some("timestamp")),
        ],
    );
    let p99 = series(&all, "cart", r#"http_latency_seconds{quantile="0.99"}"#);
    assert_eq!(p99.points, vec![(T0, 0.25), (T0 + 60_000, 0.5)]);
    assert_eq!(series(&all, "cart", r#"http_latency_seconds{quantile="0.5"}"#).points, vec![(T0, 0.1)]);
    assert_eq!(series(&all, "db", r#"cpu{instance="x:9100"}"#).points, vec![(T0, 0.001)]);
    assert_eq!(series(&all, "ts-order-service", "mem").points, vec![(T0, 42.0)]);
    assert_eq!(all.len(), 4);
}

const RANGE: &str = r#"{
  "status": "success",
  "data": {
    "resultType": "matrix",
    "result": [
      {"metric": {"__name__": "latency_p99", "service": "checkout"},
       "values": [[1700000060.0, "0.5"], [1700000000.123, "0.25"], [1700000120, "NaN"], ["x", "1"]]},
      {"metric": {"__name__": "up", "job": "cart", "instance": "a"}, "values": [[1700000000, "1"]]},
      {"metric": {"job": "cart"}, "values": [[1700000000, "1"]]}
    ]
  }
}
"#;

#[test]
fn prometheus_query_range_pretty_and_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "metrics.json", RANGE);
    let mut report = ReadReport::default();
    let all = ingest::read_prometheus_query_range(&path, &mut report).unwrap();
    assert_eq!(report.records_read, 3);
    // The `NaN` point is Prometheus' "no data at this step": a gap, not an issue.
    check_issues(&report, &path, &[(1, Some("values")), (1, Some("__name__"))]);
    assert_eq!(series(&all, "checkout", "latency_p99").points, vec![(T0 + 123, 0.25), (T0 + 60_000, 0.5)]);
    assert_eq!(series(&all, "cart", r#"up{instance="a"}"#).points, vec![(T0, 1.0)]);

    // One response per line, with a broken line in the middle; the file's name names the result
    // that has no `__name__` (an aggregated query's).
    let compact: String = serde_json::from_str::<serde_json::Value>(RANGE).unwrap().to_string();
    let path = write(dir.path(), "error_rate.json", &format!("{compact}\n{{\"status\": \"succ\n{compact}\n"));
    let mut report = ReadReport::default();
    let all = ingest::read_prometheus_query_range(&path, &mut report).unwrap();
    assert_eq!(report.records_read, 8);
    assert_eq!(series(&all, "checkout", "latency_p99").points.len(), 4);
    assert_eq!(series(&all, "cart", "error_rate").points, vec![(T0, 1.0), (T0, 1.0)]);
    assert_eq!(report.issues.iter().filter(|i| i.line == 2).count(), 1);
}

#[test]
fn wide_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "time,carts-db_cpu,carts_lat_50,orders_mem\n\
               1700000000,0.5,12,\n\
               2023-11-14T22:14:20Z,0.75,abc,3\n\
               bad,1,2,3\n\
               1700000120000,,13\n";
    let path = write(dir.path(), "metrics.csv", csv);
    let mut report = ReadReport::default();
    let all = ingest::read_wide_csv(&path, &mut report).unwrap();
    assert_eq!(report.records_read, 3);
    check_issues(&report, &path, &[(3, Some("carts_lat_50")), (4, Some("time"))]);
    assert_eq!(series(&all, "carts-db", "cpu").points, vec![(T0, 0.5), (T0 + 60_000, 0.75)]);
    assert_eq!(series(&all, "carts", "lat_50").points, vec![(T0, 12.0), (T0 + 120_000, 13.0)]);
    assert_eq!(series(&all, "orders", "mem").points, vec![(T0 + 60_000, 3.0)]);

    let path = write(dir.path(), "no_time.csv", "when,a_b\n1,2\n");
    let err = ingest::read_wide_csv(&path, &mut ReadReport::default()).unwrap_err();
    assert!(matches!(&err, IngestError::Invalid { field, .. } if field == "time"), "{err}");
}

// ---------------------------------------------------------------- logs

#[test]
fn json_lines_logs() {
    let dir = tempfile::tempdir().unwrap();
    let content = r#"{"time": "2023-11-14T22:13:20Z", "service": "cart", "level": "ERROR", "message": "boom", "attributes": {"code": 500, "ok": false, "who": "me", "n": null}}
{"timestamp": 1700000001, "service.name": "cart", "severity": "warning", "msg": "slow"}
{"ts": 1700000002000, "service": "cart", "message": "plain"}

{"service": "cart", "message": "no time"}
{"time": "yesterday", "service": "cart", "message": "bad time"}
{"time": 1700000000, "message": "no service"}
{"time": 1700000000, "service": "cart"}
{"time": 1700000000, "service": "cart", "message": "x", "attributes": "nope"}
{"time": 1700000000, "service": "cart", "mess
[1, 2]
{"time": 1700000003, "service": "cart", "level": 17, "message": "otlp level", "attributes": [["b", "1"], ["a", "2"]]}
"#;
    let path = write(dir.path(), "logs.jsonl", content);
    let mut report = ReadReport::default();
    let logs = ingest::read_logs(&log_file(path.clone(), LogFormat::JsonLines), &mut report);
    assert_eq!(report.records_read, 4);
    check_issues(
        &report,
        &path,
        &[
            (5, Some("time")),
            (6, Some("time")),
            (7, Some("service")),
            (8, Some("message")),
            (9, Some("attributes")),
            (10, None),
            (11, None),
        ],
    );
    assert_eq!(logs[0].time, T0);
    assert_eq!(logs[0].level, Level::Error);
    // Key order follows serde_json's map (document order when a dependency enables
    // `preserve_order`, as LanceDB's tree does): compare as a set.
    let mut attrs: Vec<(&str, &str)> = logs[0].attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    attrs.sort();
    assert_eq!(attrs, vec![("code", "500"), ("n", "null"), ("ok", "false"), ("who", "me")]);
    assert_eq!((logs[1].time, logs[1].level, logs[1].message.as_str()), (T0 + 1000, Level::Warn, "slow"));
    assert_eq!((logs[2].time, logs[2].level), (T0 + 2000, Level::Info));
    assert_eq!(logs[3].level, Level::Error);
    assert_eq!(logs[3].attributes, vec![("b".into(), "1".into()), ("a".into(), "2".into())]);
}

fn otlp_logs_doc(service: &str) -> serde_json::Value {
    serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1700000000000000000", "severityNumber": 17, "severityText": "ERROR",
             "body": {"stringValue": "db timeout"}, "traceId": "abc", "spanId": "def",
             "attributes": [{"key": "retries", "value": {"intValue": "3"}}, {"key": "ratio", "value": {"doubleValue": 0.5}}, {"key": "cached", "value": {"boolValue": true}}]},
            {"timeUnixNano": 0, "observedTimeUnixNano": 1700000001000000000u64, "severityText": "WARN", "body": {"stringValue": "observed only"}},
            {"timeUnixNano": "soon", "body": {"stringValue": "bad time"}},
            {"timeUnixNano": 1700000002000000000u64, "severityNumber": "SEVERITY_NUMBER_DEBUG", "body": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": 1}}]}}}
        ]}]
    }]})
}

#[test]
fn otlp_logs_per_line_and_pretty() {
    let dir = tempfile::tempdir().unwrap();
    let line = otlp_logs_doc("payments").to_string();
    let path = write(dir.path(), "logs.otlp.json", &format!("{line}\n{{\"resourceLogs\": 5}}\nnot json\n{line}\n"));
    let mut report = ReadReport::default();
    let logs = ingest::read_logs(&log_file(path.clone(), LogFormat::OtlpJson), &mut report);
    assert_eq!(logs.len(), 6);
    check_issues(
        &report,
        &path,
        &[(1, Some("timeUnixNano")), (2, Some("resourceLogs")), (3, None), (4, Some("timeUnixNano"))],
    );
    let r = &logs[0];
    assert_eq!((r.time, r.service.as_str(), r.level, r.message.as_str()), (T0, "payments", Level::Error, "db timeout"));
    let attrs: Vec<(&str, &str)> = r.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        vec![("retries", "3"), ("ratio", "0.5"), ("cached", "true"), ("trace_id", "abc"), ("span_id", "def")]
    );
    assert_eq!((logs[1].time, logs[1].level), (T0 + 1000, Level::Warn));
    assert_eq!((logs[2].level, logs[2].message.as_str()), (Level::Debug, r#"{"a":"1"}"#));

    let pretty = serde_json::to_string_pretty(&otlp_logs_doc("payments")).unwrap();
    let path = write(dir.path(), "pretty.json", &pretty);
    let mut report = ReadReport::default();
    let logs = ingest::read_logs(&log_file(path.clone(), LogFormat::OtlpJson), &mut report);
    assert_eq!(logs.len(), 3);
    check_issues(&report, &path, &[(1, Some("timeUnixNano"))]);

    let path = write(dir.path(), "truncated.json", &pretty[..pretty.len() / 2]);
    let mut report = ReadReport::default();
    let logs = ingest::read_logs(&log_file(path, LogFormat::OtlpJson), &mut report);
    assert!(logs.is_empty());
    assert!(report.records_skipped > 0);
}

const NEZHA_HEADER: &str = "Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log\n";

#[test]
fn nezha_csv_logs() {
    let dir = tempfile::tempdir().unwrap();
    let content = format!(
        "{NEZHA_HEADER}\
2023-01-29T08:42:22.383150913Z,1674981742383150913,33.33.33.116,ts-travel-service-64469b5b48-25zj6,server,ffc8,439b,\"{{\"\"log\"\":\"\"16:42:22.382 INFO  t.s.TravelServiceImpl#532 TraceID: ffc8 SpanID: 439b [getRouteByRouteId][Route is: x]\\n\"\",\"\"stream\"\":\"\"stdout\"\",\"\"time\"\":\"\"2023-01-29T08:42:22.383150913Z\"\"}}\"
2023-01-29T08:42:22.4Z,1674981742400000000,n,ts-food-service-f5756978c-k8vqf,server,,,\"{{\"\"log\"\":\"\"16:42:22.418 ERROR f.s.FoodServiceImpl#302 TraceID: aaaa SpanID: bbbb [getAllFood][failed]\\n\"\"}}\"
2023-01-29T08:42:22.5Z,,n,frontend-7d4f8b9c6d-x2x9z,server,,,\"level=error msg=\"\"upstream down\"\"\"
bad,bad,n,frontend-7d4f8b9c6d-x2x9z,server,,,x
2023-01-29T08:42:22.6Z,1674981742600000000,n,,,,,orphan
"
    );
    let path = write(dir.path(), "logs/08_43_log.csv.gz", &content);
    let mut report = ReadReport::default();
    let logs = ingest::read_logs(&log_file(path.clone(), LogFormat::NezhaCsv), &mut report);
    check_issues(&report, &path, &[(5, Some("TimeUnixNano")), (6, Some("PodName"))]);
    assert_eq!(report.records_read, 3);
    let r = &logs[0];
    assert_eq!(r.time, 1_674_981_742_383);
    assert_eq!(r.service, "ts-travel-service");
    assert_eq!(r.level, Level::Info);
    assert_eq!(r.message, "t.s.TravelServiceImpl#532 [getRouteByRouteId][Route is: x]");
    assert_eq!(r.attributes, vec![("trace_id".into(), "ffc8".into()), ("span_id".into(), "439b".into())]);
    assert_eq!((logs[1].level, logs[1].service.as_str()), (Level::Error, "ts-food-service"));
    assert_eq!(logs[1].attributes, vec![("trace_id".into(), "aaaa".into()), ("span_id".into(), "bbbb".into())]);
    assert_eq!((logs[2].time, logs[2].level, logs[2].service.as_str()), (1_674_981_742_500, Level::Error, "frontend"));
    assert_eq!(logs[2].message, "level=error msg=\"upstream down\"");

    let path = write(dir.path(), "nolog.csv", "Timestamp,PodName\n");
    let mut report = ReadReport::default();
    assert!(ingest::read_logs(&log_file(path.clone(), LogFormat::NezhaCsv), &mut report).is_empty());
    check_issues(&report, &path, &[(0, None)]);
    assert!(report.issues[0].message.contains("Log"), "{}", report.issues[0]);
}

#[test]
fn for_each_log_yields_memory_then_files_and_survives_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |m: &str| LogRecord {
        time: T0,
        nanos: 0,
        service: "a".into(),
        level: Level::Info,
        message: m.into(),
        attributes: vec![],
    };
    let path = write(dir.path(), "l.jsonl", r#"{"time": 1700000000, "service": "a", "message": "from file"}"#);
    let logs = Logs {
        records: vec![rec("in memory")],
        files: vec![
            LogFile::new(dir.path().join("missing.jsonl"), LogFormat::JsonLines),
            LogFile::new(path, LogFormat::JsonLines),
        ],
    };
    let mut report = ReadReport::default();
    let mut seen = vec![];
    ingest::for_each_log(&logs, &mut report, |r| seen.push(r.message));
    assert_eq!(seen, vec!["in memory", "from file"]);
    assert_eq!(report.records_skipped, 1);
    assert!(report.issues[0].file.ends_with("missing.jsonl"));
}

// ---------------------------------------------------------------- traces

#[test]
fn otlp_traces() {
    let dir = tempfile::tempdir().unwrap();
    let doc = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "frontend"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "parentSpanId": "", "name": "GET /",
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000012500000", "status": {}},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "parentSpanId": "eee19b7ec3c1b174", "name": "db",
             "startTimeUnixNano": 1700000000001000000u64, "endTimeUnixNano": 1700000000002000000u64, "status": {"code": 2}},
            {"traceId": "t", "spanId": "s3", "name": "x", "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000000001", "status": {"code": "STATUS_CODE_ERROR"}},
            {"spanId": "nope", "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
            {"traceId": "t", "spanId": "s4", "startTimeUnixNano": "1700000000000000000"},
            {"traceId": "t", "spanId": "s5", "startTimeUnixNano": "1700000000000000009", "endTimeUnixNano": "1700000000000000001"}
        ]}]
    }]});
    let path = write(dir.path(), "traces.json", &format!("{doc}\n"));
    let mut report = ReadReport::default();
    let spans = ingest::read_otlp_traces(&path, &mut report).unwrap();
    check_issues(&report, &path, &[(1, Some("traceId")), (1, Some("endTimeUnixNano")), (1, Some("endTimeUnixNano"))]);
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0].parent_id, None);
    assert_eq!((spans[0].start, spans[0].duration_ms, spans[0].error), (T0, 12.5, false));
    assert_eq!(spans[0].service, "frontend");
    assert_eq!(spans[1].parent_id.as_deref(), Some("eee19b7ec3c1b174"));
    assert_eq!((spans[1].start, spans[1].duration_ms, spans[1].error), (T0 + 1, 1.0, true));
    assert!(spans[2].error);
    assert!((spans[2].duration_ms - 1e-6).abs() < 1e-12);
}

#[test]
fn span_csv_aliases_and_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    // Nezha's spelling: pod names, ns times, `root` parents.
    let nezha = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n\
        b010,520b,root,ts-gateway-service-6f6cfc45b-h5m2n,/*,1674981768697000000,1674981769015316530,318316\n\
        b010,a442,520b,ts-gateway-service-6f6cfc45b-h5m2n,handle,1674981768697763387,1674981769015072039,317308\n\
        b010,,520b,ts-x-service,handle,1674981768697763387,1674981769015072039,1\n\
        b010,a443,520b,ts-x-service,handle,soon,1674981769015072039,1\n\
        b010,a444,520b,ts-x-service,handle,1674981769015072039,1674981768697763387,1\n";
    let path = write(dir.path(), "traces/spans.csv", nezha);
    let mut report = ReadReport::default();
    let spans = ingest::read_span_csv(&path, &mut report).unwrap();
    check_issues(&report, &path, &[(4, Some("SpanID")), (5, Some("StartTimeUnixNano")), (6, Some("EndTimeUnixNano"))]);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].parent_id, None);
    assert_eq!(spans[0].service, "ts-gateway-service");
    assert_eq!(spans[0].operation, "/*");
    assert_eq!(spans[0].start, 1_674_981_768_697);
    assert!((spans[0].duration_ms - 318.31653).abs() < 1e-9, "{}", spans[0].duration_ms);
    assert!((spans[1].duration_ms - 317.308652).abs() < 1e-9, "{}", spans[1].duration_ms);

    // Start + duration, HTTP status codes, `-1` parents.
    let simple = "trace_id,span_id,parent_span_id,service_name,name,start_time,duration_ms,status_code\n\
        t1,s1,-1,api,GET,2023-11-14T22:13:20Z,5.5,503\n\
        t1,s2,s1,db,query,1700000000.5,1,200\n\
        t1,s3,s1,db,query,1700000000,-3,200\n";
    let path = write(dir.path(), "spans.csv", simple);
    let mut report = ReadReport::default();
    let spans = ingest::read_span_csv(&path, &mut report).unwrap();
    check_issues(&report, &path, &[(4, Some("duration_ms"))]);
    assert_eq!(
        (spans[0].parent_id.as_deref(), spans[0].start, spans[0].duration_ms, spans[0].error),
        (None, T0, 5.5, true)
    );
    assert_eq!((spans[1].start, spans[1].error), (T0 + 500, false));

    let path = write(dir.path(), "nostart.csv", "trace_id,span_id,service,end\n");
    let err = ingest::read_span_csv(&path, &mut ReadReport::default()).unwrap_err();
    assert!(matches!(&err, IngestError::Invalid { field, .. } if field == "start"), "{err}");
}

// ---------------------------------------------------------------- changes, topology

#[test]
fn changes() {
    let dir = tempfile::tempdir().unwrap();
    let content = r#"{"time": "2023-11-14T22:13:20Z", "service": "cart", "kind": "deploy", "author": "ci", "version": "v2", "previous_version": "v1", "description": "release"}
{"time": 1700000060, "service": "cart", "kind": "config", "keys": [{"key": "pool.size", "old": "10", "new": 2}]}
{"time": 1700000120, "service": "cart", "kind": "flag", "changed_keys": {"new_checkout": {"old": false, "new": true}, "plain": "on"}}
{"time": 1700000120, "service": "cart", "kind": "reboot"}
{"time": "later", "service": "cart", "kind": "deploy"}
{"time": 1700000120, "service": "cart", "kind": "config", "keys": 7}
"#;
    let path = write(dir.path(), "changes.jsonl", content);
    let mut report = ReadReport::default();
    let changes = ingest::read_changes(&path, &mut report).unwrap();
    check_issues(&report, &path, &[(4, Some("kind")), (5, Some("time")), (6, Some("keys"))]);
    assert_eq!(changes.len(), 3);
    let c = &changes[0];
    assert_eq!(
        (c.time, c.kind, c.version.as_deref(), c.previous_version.as_deref()),
        (T0, ChangeKind::Deploy, Some("v2"), Some("v1"))
    );
    assert_eq!(
        changes[1].keys,
        vec![KeyChange { key: "pool.size".into(), old: Some("10".into()), new: Some("2".into()) }]
    );
    assert_eq!(
        changes[2].keys,
        vec![
            KeyChange { key: "new_checkout".into(), old: Some("false".into()), new: Some("true".into()) },
            KeyChange { key: "plain".into(), old: None, new: Some("on".into()) },
        ]
    );
}

#[test]
fn topology_both_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "topology.json",
        r#"{"services": [{"name": "api", "kind": "service"}, "db", 5], "edges": [{"caller": "api", "callee": "db"}, ["web", "api"], ["x"]]}"#,
    );
    let mut report = ReadReport::default();
    let t = ingest::read_topology(&path, &mut report).unwrap();
    check_issues(&report, &path, &[(0, Some("services[2]")), (0, Some("edges[2]"))]);
    assert_eq!(t.services.len(), 2);
    assert_eq!(
        t.edges,
        vec![
            TopologyEdge { caller: "api".into(), callee: "db".into() },
            TopologyEdge { caller: "web".into(), callee: "api".into() }
        ]
    );
}

// ---------------------------------------------------------------- robustness

#[test]
fn garbage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("binary", (0..=255u8).cycle().take(5000).collect()),
        ("nul", vec![0; 100]),
        ("truncated", br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "a""#.to_vec()),
        ("types", br#"{"time": [], "service": {}, "message": 1, "resourceLogs": [1, "x", {"scopeLogs": 3}], "resourceSpans": [{"scopeSpans": [{"spans": [1, null]}]}], "data": {"result": [1, {"metric": 1, "values": 2}]}}"#.to_vec()),
        ("huge", b"time,a_b\n1e308,1e309\n99999999999999999999999,-1e308\nNaN,NaN\n{x{=1 99999999999999999999999999999999\n".to_vec()),
        ("bad_utf8", b"time,a_b\n\xff1,\xff\xfe\n\xc3\x28 1 2\n".to_vec()),
        ("csv_quotes", b"a,\"b\n\"\"\",\"\n1,2".to_vec()),
        ("long", vec![b'x'; 100_000]),
    ];
    for (name, bytes) in inputs {
        for ext in ["", ".gz", ".raw.gz"] {
            let path = if ext == ".raw.gz" {
                // Named gzip but not gzip.
                let path = dir.path().join(format!("{name}{ext}"));
                std::fs::write(&path, &bytes).unwrap();
                path
            } else {
                write_bytes(dir.path(), &format!("{name}{ext}"), &bytes)
            };
            let mut report = ReadReport::default();
            let _ = ingest::read_prometheus_text(&path, &mut report);
            let _ = ingest::read_prometheus_query_range(&path, &mut report);
            let _ = ingest::read_wide_csv(&path, &mut report);
            let _ = ingest::read_otlp_traces(&path, &mut report);
            let _ = ingest::read_span_csv(&path, &mut report);
            let _ = ingest::read_changes(&path, &mut report);
            let _ = ingest::read_topology(&path, &mut report);
            for format in [LogFormat::JsonLines, LogFormat::OtlpJson, LogFormat::NezhaCsv] {
                let _ = ingest::read_logs(&log_file(path.clone(), format), &mut report);
            }
            assert_eq!(report.records_read, 0, "{name}{ext}: {report:#?}");
        }
    }
    // A file that claims to be gzip but is not: one issue, no panic, no endless loop.
    let path = dir.path().join("fake.jsonl.gz");
    std::fs::write(&path, b"{\"time\": 1}\n").unwrap();
    let mut report = ReadReport::default();
    assert!(ingest::read_logs(&log_file(path.clone(), LogFormat::JsonLines), &mut report).is_empty());
    check_issues(&report, &path, &[(1, None)]);
}

#[test]
fn gz_files_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["m.prom", "m.prom.gz"] {
        let path = write(dir.path(), name, PROM);
        let mut report = ReadReport::default();
        let all = ingest::read_prometheus_text(&path, &mut report).unwrap();
        assert_eq!((all.len(), report.records_read, report.records_skipped), (4, 5, 7), "{name}");
    }
    // Concatenated gzip members (as `cat a.gz b.gz` makes) are read through.
    let mut bytes = Vec::new();
    for part in ["time,a_b\n1700000000,1\n", "1700000060,2\n"] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part.as_bytes()).unwrap();
        bytes.extend(gz.finish().unwrap());
    }
    let path = write_bytes(dir.path(), "multi.csv.GZ", &bytes);
    let all = ingest::read_wide_csv(&path, &mut ReadReport::default()).unwrap();
    assert_eq!(all[0].points, vec![(T0, 1.0), (T0 + 60_000, 2.0)]);
}

// ---------------------------------------------------------------- bundles

const INCIDENT: &str = r#"{"id": "inc-1", "title": "Checkout slow", "time": "2023-11-14T22:13:20Z", "service": "checkout", "signal": "latency", "severity": "critical"}"#;

#[test]
fn load_bundle_finds_files_by_name_and_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "incident.json", INCIDENT);
    write(d, "metrics.prom", "cpu{service=\"a\"} 1 1700000000000\n");
    write(d, "metrics/extra.txt.gz", "cpu{service=\"b\"} 2 1700000000000\n");
    write(d, "metrics/range.json", RANGE);
    write(d, "metrics/wide.csv", "time,c_mem\n1700000000,3\n");
    write(d, "logs.jsonl", r#"{"time": 1700000000, "service": "a", "message": "m"}"#);
    write(d, "logs/app.otlp.json", &otlp_logs_doc("p").to_string());
    write(d, "logs/nezha.csv.gz", NEZHA_HEADER);
    write(d, "traces/otlp.json", r#"{"resourceSpans": []}"#);
    write(d, "spans.csv", "trace_id,span_id,service,start,duration_ms\nt,s,a,1700000000000,2\n");
    write(d, "changes.jsonl", r#"{"time": 1700000000, "service": "a", "kind": "deploy"}"#);
    write(d, "changes/more.jsonl", r#"{"time": 1700000001, "service": "a", "kind": "bogus"}"#);
    write(d, "topology.json", r#"{"edges": [["a", "b"]]}"#);
    write(d, "truth.json", r#"{"service": "b", "indicator": "cpu", "kind": "cpu_hog", "chain": ["b", "a"]}"#);
    write(d, "README.md", "ignored");
    write(d, "notes.txt", "ignored");
    write(d, "baseline/metrics.prom", "cpu{service=\"a\"} 0.5 1699999000000\n");

    let inc = ingest::load_bundle(d).unwrap();
    assert_eq!(inc.id, "inc-1");
    assert_eq!(
        inc.alert,
        Alert {
            time: T0,
            service: "checkout".into(),
            signal: "latency".into(),
            severity: Severity::Critical,
            title: "Checkout slow".into()
        }
    );
    assert_eq!(inc.analysis_start, T0 - 30 * MINUTE);
    let names: Vec<(&str, &str)> =
        inc.telemetry.metrics.iter().map(|s| (s.service.as_str(), s.metric.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("a", "cpu"),
            ("b", "cpu"),
            ("checkout", "latency_p99"),
            ("cart", "up{instance=\"a\"}"),
            ("cart", "range"),
            ("c", "mem")
        ]
    );
    let logs: Vec<(String, LogFormat)> = inc
        .telemetry
        .logs
        .files
        .iter()
        .map(|f| (f.path.strip_prefix(d).unwrap().display().to_string(), f.format))
        .collect();
    assert_eq!(
        logs,
        vec![
            ("logs.jsonl".to_string(), LogFormat::JsonLines),
            ("logs/app.otlp.json".to_string(), LogFormat::OtlpJson),
            ("logs/nezha.csv.gz".to_string(), LogFormat::NezhaCsv),
        ]
    );
    assert!(inc.telemetry.logs.records.is_empty());
    assert_eq!(inc.telemetry.spans.len(), 1);
    assert_eq!(inc.telemetry.changes.len(), 1);
    assert_eq!(inc.topology.as_ref().map(|t| t.edges.len()), Some(1));
    assert_eq!(inc.truth.as_ref().map(|t| t.kind.as_str()), Some("cpu_hog"));
    assert_eq!(inc.baseline.as_ref().map(|b| b.metrics[0].points.clone()), Some(vec![(T0 - 1_000_000, 0.5)]));
    // The query_range file's bad point (its `NaN` is a gap; its nameless result is named after
    // the file) and the bogus change kind.
    assert_eq!(inc.read_report.records_skipped, 2, "{:#?}", inc.read_report.issues);
    // Files no reader takes are listed as not read.
    let ignored: Vec<&str> = inc.read_report.ignored.iter().map(|f| f.rsplit('/').next().unwrap_or(f)).collect();
    assert_eq!(ignored, vec!["README.md", "notes.txt"]);
    assert!(inc
        .read_report
        .issues
        .iter()
        .any(|i| i.file.ends_with("more.jsonl") && i.field.as_deref() == Some("kind")));
}

#[test]
fn incident_json_errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(matches!(ingest::load_bundle(d), Err(IngestError::MissingIncident { .. })));
    assert!(matches!(ingest::load_bundle(&d.join("nope")), Err(IngestError::Open { .. })));
    for (content, field) in [
        (r#"{"time": "2023-11-14T22:13:20Z", "signal": "latency"}"#, "service"),
        (r#"{"time": "2023-11-14T22:13:20Z", "service": "a"}"#, "signal"),
        (r#"{"service": "a", "signal": "latency"}"#, "time"),
        (r#"{"time": "noon", "service": "a", "signal": "latency"}"#, "time"),
        (r#"{"time": 1700000000, "service": "a", "signal": "latency", "severity": "meh"}"#, "severity"),
        (r#"{"time": 1700000000, "service": ["a"], "signal": "latency"}"#, "service"),
        (r#"{"time": 1700000000, "service": "a", "signal": "x", "analysis_start": true}"#, "analysis_start"),
    ] {
        write(d, "incident.json", content);
        let err = ingest::load_bundle(d).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("incident.json") && text.contains(&format!("`{field}`")), "{content}: {text}");
    }
    write(d, "incident.json", r#"{"time": 1700000000, "service": "a", "signal": "x""#);
    let err = ingest::load_bundle(d).unwrap_err();
    assert!(matches!(err, IngestError::Json { ref file, .. } if file.ends_with("incident.json")), "{err}");

    // Numbers for times, id from the directory, default severity and analysis start.
    write(
        d,
        "incident.json",
        r#"{"time": 1700000000, "service": "a", "signal": "errors", "analysis_start": 1699999000000}"#,
    );
    let inc = ingest::load_bundle(d).unwrap();
    assert_eq!(inc.id, d.file_name().unwrap().to_string_lossy());
    assert_eq!((inc.alert.time, inc.analysis_start, inc.alert.severity), (T0, T0 - 1_000_000, Severity::Warning));

    // A broken topology is an issue; a broken truth fails the load.
    write(d, "topology.json", "{");
    let inc = ingest::load_bundle(d).unwrap();
    assert!(inc.topology.is_none());
    assert_eq!(inc.read_report.issues[0].line, 0);
    write(d, "truth.json", r#"{"service": "a"}"#);
    assert!(matches!(ingest::load_bundle(d), Err(IngestError::Json { .. })));
}

fn sample_telemetry(shift: Ts) -> Telemetry {
    Telemetry {
        metrics: vec![
            Series {
                service: "checkout".into(),
                metric: "latency_p99".into(),
                points: vec![(T0 + shift, 0.1), (T0 + shift + 60_000, 1.0 / 3.0)],
            },
            Series {
                service: "carts-db".into(),
                metric: "CpuUsageRate(%)".into(),
                points: vec![(T0 + shift, 97.5), (T0 + shift + 1, -1e-300)],
            },
            Series {
                service: "svc \"q\"".into(),
                metric: r#"http_latency_seconds{quantile="0.99"}"#.into(),
                points: vec![(T0 + shift, 1e300)],
            },
        ],
        logs: Logs {
            records: vec![
                LogRecord {
                    time: T0 + shift + 7,
                    nanos: 0,
                    service: "checkout".into(),
                    level: Level::Error,
                    message: "payment failed: \"timeout\"\n  at x".into(),
                    attributes: vec![("trace_id".into(), "abc".into()), ("code".into(), "504".into())],
                },
                LogRecord {
                    time: T0 + shift + 8,
                    nanos: 0,
                    service: "carts".into(),
                    level: Level::Fatal,
                    message: String::new(),
                    attributes: vec![("a".into(), "1".into()), ("b".into(), "{}".into())],
                },
                LogRecord {
                    time: 5,
                    nanos: 0,
                    service: "old".into(),
                    level: Level::Trace,
                    message: "early".into(),
                    attributes: vec![],
                },
            ],
            files: vec![],
        },
        spans: vec![
            Span {
                trace_id: "t1".into(),
                span_id: "s1".into(),
                parent_id: None,
                service: "checkout".into(),
                operation: "POST /pay, v2".into(),
                start: T0 + shift,
                duration_ms: 12.345678,
                error: true,
            },
            Span {
                trace_id: "t1".into(),
                span_id: "s2".into(),
                parent_id: Some("s1".into()),
                service: "payments".into(),
                operation: "".into(),
                start: T0 + shift + 1,
                duration_ms: 1e-6,
                error: false,
            },
        ],
        changes: vec![
            Change {
                time: T0 + shift - 60_000,
                service: "payments".into(),
                kind: ChangeKind::Deploy,
                author: Some("ci".into()),
                version: Some("v2".into()),
                previous_version: Some("v1".into()),
                keys: vec![],
                description: Some("release".into()),
                instances: Vec::new(),
            },
            Change {
                time: T0 + shift - 120_000,
                service: "payments".into(),
                kind: ChangeKind::Config,
                author: None,
                version: None,
                previous_version: None,
                keys: vec![
                    KeyChange { key: "z".into(), old: Some("1".into()), new: None },
                    KeyChange { key: "a".into(), old: None, new: Some("".into()) },
                ],
                description: None,
                instances: Vec::new(),
            },
        ],
    }
}

#[track_caller]
fn assert_same_telemetry(got: &Telemetry, want: &Telemetry) {
    assert_eq!(got.metrics, want.metrics);
    assert_eq!(got.spans, want.spans);
    assert_eq!(got.changes, want.changes);
    let mut report = ReadReport::default();
    assert_eq!(ingest::read_logs(&got.logs, &mut report), ingest::read_logs(&want.logs, &mut ReadReport::default()));
    assert_eq!(report.records_skipped, 0, "{:#?}", report.issues);
}

#[test]
fn write_then_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("bundle");
    let truth = Truth {
        service: "payments".into(),
        indicator: "pool.size".into(),
        kind: "config".into(),
        chain: vec!["payments".into(), "checkout".into()],
        location: None,
    };
    let incident = Incident {
        id: "inc-42".into(),
        alert: Alert {
            time: T0 + 123,
            service: "checkout".into(),
            signal: "latency".into(),
            severity: Severity::High,
            title: "p99 up".into(),
        },
        telemetry: sample_telemetry(0),
        baseline: Some(sample_telemetry(-86_400_000)),
        analysis_start: T0 - 600_000,
        topology: Some(Topology {
            services: vec![
                TopologyNode { name: "checkout".into(), kind: Some("service".into()) },
                TopologyNode { name: "db".into(), kind: None },
            ],
            edges: vec![TopologyEdge { caller: "checkout".into(), callee: "payments".into() }],
        }),
        truth: None,
        read_report: ReadReport::default(),
    };
    ingest::write_bundle(&incident, Some(&truth), &d).unwrap();
    let back = ingest::load_bundle(&d).unwrap();
    assert_eq!(
        back.read_report,
        ReadReport {
            records_read: back.read_report.records_read,
            read_per_file: back.read_report.read_per_file.clone(),
            ..Default::default()
        }
    );
    // Every file written was read, and counted as read.
    assert_eq!(back.read_report.read_per_file.values().sum::<u64>(), back.read_report.records_read);
    assert!(back.read_report.read_per_file.values().all(|&n| n > 0), "{:?}", back.read_report.read_per_file);
    assert_eq!((&back.id, &back.alert, back.analysis_start), (&incident.id, &incident.alert, incident.analysis_start));
    assert_eq!(back.topology, incident.topology);
    assert_eq!(back.truth.as_ref(), Some(&truth));
    assert_same_telemetry(&back.telemetry, &incident.telemetry);
    assert_same_telemetry(back.baseline.as_ref().unwrap(), incident.baseline.as_ref().unwrap());
    assert_eq!(back.telemetry.logs.files.len(), 1);

    // Re-export the loaded bundle in place: its logs stream from the file being replaced.
    ingest::write_bundle(&back, back.truth.as_ref(), &d).unwrap();
    let again = ingest::load_bundle(&d).unwrap();
    assert_same_telemetry(&again.telemetry, &incident.telemetry);
    assert!(!d.join("logs.jsonl.tmp").exists());
}

// ---------------------------------------------------------------- real data

/// The shared datasets directory, when this checkout has one next to it.
fn nezha_dir() -> Option<PathBuf> {
    let root = std::env::var_os("CULPRIT_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    let dir = root.join("nezha/trainticket/rca_data/2023-01-29");
    dir.is_dir().then_some(dir)
}

#[test]
fn real_nezha_logs_and_traces() {
    let Some(dir) = nezha_dir() else {
        eprintln!("Nezha dataset not found; skipped");
        return;
    };
    let path = dir.join("log/08_43_log.csv.gz");
    if path.is_file() {
        let mut report = ReadReport::default();
        let logs = ingest::read_logs(&log_file(path, LogFormat::NezhaCsv), &mut report);
        assert_eq!(report.records_skipped, 0, "{:#?}", report.issues);
        assert!(logs.len() > 1000, "{}", logs.len());
        assert_eq!(report.records_read, logs.len() as u64);
        let first = &logs[0];
        assert_eq!(first.service, "ts-travel-service");
        assert_eq!(first.time, 1_674_981_742_383);
        // The nanoseconds past the millisecond are kept: they order one request's lines.
        assert_eq!(first.nanos, 150_913);
        assert!(logs.iter().all(|l| l.nanos < 1_000_000));
        assert!(first.message.starts_with("t.s.TravelServiceImpl#532 [getRouteByRouteId]"), "{}", first.message);
        assert!(logs.iter().all(|l| l.service.starts_with("ts-") && !l.service.ends_with("-service-")));
        assert!(logs.iter().all(|l| !l.message.contains("TraceID:")));
        assert!(logs.iter().any(|l| l.level == Level::Error));
        assert!(logs.iter().all(|l| parse_time_str("2023-01-29T08:00:00Z").is_some_and(|t| l.time > t)));
    }
    let traces = dir.join("trace/08_43_trace.csv.gz");
    if traces.is_file() {
        let mut report = ReadReport::default();
        let spans = ingest::read_span_csv(&traces, &mut report).unwrap();
        assert_eq!(report.records_skipped, 0, "{:#?}", report.issues);
        assert!(spans.iter().any(|s| s.parent_id.is_none()));
        assert!(spans.iter().all(|s| s.duration_ms >= 0.0 && s.service.starts_with("ts-")));
    }
}
