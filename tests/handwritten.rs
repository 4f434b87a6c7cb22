//! Incident bundles written by hand, in the shapes users' exports have (docs/bundle-format.md),
//! not by `culprit simulate`: each readable shape must name the true cause, each unreadable one
//! must end in `insufficient_data`, no shape may invent a service from a column name, and no
//! cause may be chosen from evidence that began after the alert.
//!
//! The incident: `frontend → checkout → payments`. `payments` deploys v2.4.1 at 13:20; from 13:21
//! its charges slow down (p99 300 → 900 ms) and fail in its logs; `checkout` slows from 13:22
//! because it waits on them; the alert is `checkout` latency at 13:35. A config change to
//! `frontend` (`ui.banner`) at 13:25 is a red herring. Everything is written with `format!` from
//! the documented shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use culprit::ingest;
use culprit::pipeline::{self, PipelineConfig};
use culprit::report::{Report, Verdict};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

const MINUTE: i64 = 60_000;
/// 2024-03-04T12:20:00Z, where every file starts.
const START: i64 = 1_709_554_800_000;
const ALERT: i64 = START + 75 * MINUTE; // 13:35
const DEPLOY: i64 = START + 60 * MINUTE; // 13:20
const END: i64 = START + 85 * MINUTE; // 13:45
const SERVICES: [&str; 3] = ["frontend", "checkout", "payments"];

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A small deterministic wobble, so series have a spread to be judged against.
fn wobble(i: i64, k: usize) -> f64 {
    (((i * 7 + k as i64 * 13) % 11) as f64 - 5.0) / 5.0
}

/// The points of every series: (time, service, metric, value), one a minute.
fn points() -> Vec<(i64, &'static str, &'static str, f64)> {
    let mut out = Vec::new();
    let mut t = START;
    let mut i = 0;
    while t <= END {
        let since = |from: i64| t >= from;
        let latency = |svc: &str| match svc {
            "payments" if since(DEPLOY + MINUTE) => 900.0,
            "payments" => 300.0,
            "checkout" if since(DEPLOY + 2 * MINUTE) => 1_050.0,
            "checkout" => 350.0,
            "frontend" if since(DEPLOY + 2 * MINUTE) => 1_150.0,
            _ => 420.0,
        };
        for (k, svc) in SERVICES.iter().enumerate() {
            out.push((t, *svc, "latency_p99_ms", latency(svc) * (1.0 + 0.02 * wobble(i, k))));
            out.push((t, *svc, "cpu_percent", 30.0 + 2.0 * wobble(i, k + 3)));
        }
        t += MINUTE;
        i += 1;
    }
    out
}

/// Log lines: every service logs its requests every 15 s; payments logs failed charges after
/// 13:21. (time, service, level, message)
fn log_lines() -> Vec<(i64, &'static str, &'static str, String)> {
    let mut out = Vec::new();
    let mut t = START;
    let mut n = 0;
    while t <= END {
        for svc in SERVICES {
            out.push((t, svc, "info", format!("handled request {n} in {} ms", 20 + n % 7)));
        }
        if t >= DEPLOY + MINUTE {
            out.push((t + 500, "payments", "error", format!("charge {n} failed: card processor timeout after 900 ms")));
        }
        t += 15_000;
        n += 1;
    }
    out
}

/// The bundle's files, by shape. Each function returns (relative path, contents).
type Files = Vec<(String, String)>;

/// How a wide CSV names the column of a (service, metric).
type Column<'a> = &'a dyn Fn(&str, &str) -> String;

fn incident_json(service: &str) -> (String, String) {
    (
        "incident.json".into(),
        format!(
            r#"{{"id": "hand", "title": "checkout p99 above 1 s", "time": "{}", "service": "{service}", "signal": "latency", "severity": "critical"}}"#,
            rfc3339(ALERT)
        ),
    )
}

fn topology() -> (String, String) {
    ("topology.json".into(), r#"{"edges": [["frontend", "checkout"], ["checkout", "payments"]]}"#.into())
}

fn changes(with_kind: bool) -> (String, String) {
    let kind = |k: &str| if with_kind { format!(r#", "kind": "{k}""#) } else { String::new() };
    let deploy = format!(
        r#"{{"time": "{}", "service": "payments"{}, "version": "v2.4.1", "previous_version": "v2.4.0", "author": "ci"}}"#,
        rfc3339(DEPLOY),
        kind("deploy")
    );
    let config = format!(
        r#"{{"time": "{}", "service": "frontend"{}, "keys": [{{"key": "ui.banner", "old": "off", "new": "on"}}]}}"#,
        rfc3339(DEPLOY + 5 * MINUTE),
        kind("config")
    );
    ("changes.jsonl".into(), format!("{deploy}\n{config}\n"))
}

fn prom_metrics() -> (String, String) {
    let mut s = String::from("# TYPE latency_p99_ms gauge\n");
    for (t, svc, metric, v) in points() {
        let _ = writeln!(s, "{metric}{{service=\"{svc}\"}} {v:.3} {t}");
    }
    ("metrics.prom".into(), s)
}

/// JSON-lines logs, the service under `key` (`service`, `app`, …) and the time written by `time`.
fn json_logs(key: &str, time: &dyn Fn(i64) -> String) -> (String, String) {
    let mut s = String::new();
    for (t, svc, level, msg) in log_lines() {
        let _ = writeln!(s, r#"{{"time": {}, "{key}": "{svc}", "level": "{level}", "message": "{msg}"}}"#, time(t));
    }
    ("logs.jsonl".into(), s)
}

fn quoted_rfc3339(t: i64) -> String {
    format!("\"{}\"", rfc3339(t))
}

/// A wide CSV with one column per series, named by `column(service, metric)`.
fn wide_csv(column: Column) -> (String, String) {
    let series: Vec<(&str, &str)> =
        SERVICES.iter().flat_map(|s| [(*s, "latency_p99_ms"), (*s, "cpu_percent")]).collect();
    let mut s = String::from("time");
    for (svc, metric) in &series {
        let name = column(svc, metric);
        // A header with quotes or commas is a quoted CSV field.
        if name.contains(['"', ',']) {
            let _ = write!(s, ",\"{}\"", name.replace('"', "\"\""));
        } else {
            let _ = write!(s, ",{name}");
        }
    }
    s.push('\n');
    let all = points();
    let mut times: Vec<i64> = all.iter().map(|p| p.0).collect();
    times.dedup();
    for t in times {
        let _ = write!(s, "{}", rfc3339(t));
        for (svc, metric) in &series {
            let v = all.iter().find(|p| p.0 == t && p.1 == *svc && p.2 == *metric).map(|p| p.3).unwrap();
            let _ = write!(s, ",{v:.3}");
        }
        s.push('\n');
    }
    ("metrics.csv".into(), s)
}

fn long_csv() -> (String, String) {
    let mut s = String::from("timestamp,service,metric,value\n");
    for (t, svc, metric, v) in points() {
        let _ = writeln!(s, "{},{svc},{metric},{v:.3}", t / 1000);
    }
    ("metrics.csv".into(), s)
}

/// Prometheus `query_range` answers of aggregated queries (`sum by (service) (…)`): no
/// `__name__`, so each file is named after its metric.
fn query_range_files() -> Files {
    ["latency_p99_ms", "cpu_percent"]
        .iter()
        .map(|metric| {
            let results: Vec<String> = SERVICES
                .iter()
                .map(|svc| {
                    let values: Vec<String> = points()
                        .into_iter()
                        .filter(|p| p.1 == *svc && p.2 == *metric)
                        .map(|(t, _, _, v)| format!("[{}, \"{v:.3}\"]", t as f64 / 1000.0))
                        .collect();
                    format!(r#"{{"metric": {{"service": "{svc}"}}, "values": [{}]}}"#, values.join(", "))
                })
                .collect();
            (
                format!("metrics/{metric}.json"),
                format!(
                    r#"{{"status": "success", "data": {{"resultType": "matrix", "result": [{}]}}}}"#,
                    results.join(", ")
                ),
            )
        })
        .collect()
}

fn write_bundle(dir: &Path, files: &Files) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Runs culprit as the command line does (the agent on, as for a critical alert).
fn investigate(files: Files) -> Report {
    investigate_with(files, &PipelineConfig::default())
}

fn investigate_with(files: Files, cfg: &PipelineConfig) -> Report {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), &files);
    let incident = ingest::load_bundle(dir.path()).expect("the bundle loads");
    pipeline::run(&incident, cfg, Default::default()).report
}

/// The report names `payments`, and no service that is not in the incident.
fn names_the_deploy(r: &Report, shape: &str) {
    let top = r.root_causes.first().map(|c| (c.service.as_str(), c.kind.as_str()));
    assert_eq!((r.verdict, top), (Verdict::RootCause, Some(("payments", "deploy"))), "{shape}: {:#?}", r.data);
    invents_nothing(r, shape);
}

fn invents_nothing(r: &Report, shape: &str) {
    let known: BTreeSet<&str> = SERVICES.into_iter().collect();
    let seen: BTreeSet<&str> =
        r.timeline.iter().map(|t| t.service.as_str()).chain(r.root_causes.iter().map(|c| c.service.as_str())).collect();
    assert!(seen.is_subset(&known), "{shape}: services made up: {:?}", seen.difference(&known).collect::<Vec<_>>());
}

fn insufficient(r: &Report, shape: &str, mentions: &str) {
    assert_eq!(r.verdict, Verdict::InsufficientData, "{shape}: {:#?}", r.root_causes.first());
    assert!(r.data.problems.iter().any(|p| p.contains(mentions)), "{shape}: {:?}", r.data.problems);
    invents_nothing(r, shape);
}

fn base(logs: (String, String), metrics: Files, changes: (String, String)) -> Files {
    let mut files = vec![incident_json("checkout"), topology(), logs, changes];
    files.extend(metrics);
    files
}

#[test]
fn the_documented_shape_names_the_deploy() {
    let r = investigate(base(json_logs("service", &quoted_rfc3339), vec![prom_metrics()], changes(true)));
    names_the_deploy(&r, "documented shape");
    assert_eq!(r.data.unreadable.records_skipped, 0);
}

#[test]
fn logs_that_name_their_service_as_shippers_do_are_read() {
    for key in ["app", "service.name", "k8s.container.name", "job"] {
        let r = investigate(base(json_logs(key, &quoted_rfc3339), vec![prom_metrics()], changes(true)));
        names_the_deploy(&r, key);
        assert!(r.data.log_lines > 0, "{key}");
    }
    // Nested as Kubernetes log shippers write it.
    let mut s = String::new();
    for (t, svc, level, msg) in log_lines() {
        let _ = writeln!(
            s,
            r#"{{"@timestamp": "{}", "kubernetes": {{"labels": {{"app": "{svc}"}}}}, "level": "{level}", "msg": "{msg}"}}"#,
            rfc3339(t)
        );
    }
    let r = investigate(base(("logs.jsonl".into(), s), vec![prom_metrics()], changes(true)));
    names_the_deploy(&r, "kubernetes.labels.app");
}

#[test]
fn logs_with_epoch_times_of_any_unit_are_read() {
    for (unit, scale) in [("s", 0.001), ("ms", 1.0), ("ns", 1e6)] {
        let r = investigate(base(
            json_logs("service", &|t| format!("{}", t as f64 * scale)),
            vec![prom_metrics()],
            changes(true),
        ));
        names_the_deploy(&r, unit);
    }
}

/// `Mar  4 13:00:00`: syslog's time, without year or zone.
fn syslog_time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(t).unwrap().format("%b %e %H:%M:%S").to_string()
}

#[test]
fn syslog_times_take_their_year_from_the_incident() {
    let r = investigate(base(
        json_logs("service", &|t| format!("\"{}\"", syslog_time(t))),
        vec![prom_metrics()],
        changes(true),
    ));
    names_the_deploy(&r, "syslog times in JSON lines");
    assert_eq!(r.data.unreadable.records_skipped, 0, "{:?}", r.data.unreadable.issues.first());
}

#[test]
fn a_field_nobody_documents_is_insufficient_until_the_mapping_names_it() {
    let files = base(json_logs("svc_identifier", &quoted_rfc3339), vec![prom_metrics()], changes(true));
    let r = investigate(files.clone());
    insufficient(&r, "unknown service field", "logs.jsonl");
    let mut mapped = files;
    mapped.push(("mapping.json".into(), r#"{"service": ["svc_identifier"]}"#.into()));
    let r = investigate(mapped);
    names_the_deploy(&r, "service field named in mapping.json");
    assert!(r.data.log_lines > 0 && r.data.unreadable.records_skipped == 0, "{:?}", r.data.unreadable);
    // A mapping also names the time field, and a wide CSV's own separator.
    let mut s = String::new();
    for (t, svc, level, msg) in log_lines() {
        let _ = writeln!(s, r#"{{"event_at": "{}", "svc": "{svc}", "sev": "{level}", "text": "{msg}"}}"#, rfc3339(t));
    }
    let files = vec![
        incident_json("checkout"),
        topology(),
        ("logs.jsonl".into(), s),
        changes(true),
        wide_csv(&|svc, m| format!("{svc}::{m}")),
        (
            "mapping.json".into(),
            r#"{"service": "svc", "time": "event_at", "level": "sev", "metric_separator": "::"}"#.into(),
        ),
    ];
    let r = investigate(files);
    names_the_deploy(&r, "mapping with time, level and separator");
    assert_eq!(r.data.metric_series, 6);
}

/// Syslog text lines for every log line: RFC 3164, or RFC 5424 with `rfc5424`.
fn syslog_file(rfc5424: bool) -> String {
    let mut s = String::new();
    for (t, svc, level, msg) in log_lines() {
        let pri = if level == "error" { 11 } else { 14 };
        if rfc5424 {
            let _ = writeln!(s, "<{pri}>1 {} host-7 {svc} 4242 - - {msg}", rfc3339(t));
        } else {
            let _ = writeln!(s, "<{pri}>{} host-7 {svc}[4242]: {msg}", syslog_time(t));
        }
    }
    s
}

#[test]
fn syslog_and_loki_exports_are_read() {
    for (shape, file) in [("rfc3164", syslog_file(false)), ("rfc5424", syslog_file(true))] {
        let r = investigate(base(("logs/messages.log".into(), file), vec![prom_metrics()], changes(true)));
        names_the_deploy(&r, shape);
        assert!(r.data.log_lines > 0 && r.data.unreadable.records_skipped == 0, "{shape}: {:?}", r.data.unreadable);
    }
    // Loki's query_range answer, one stream per service and level, saved as logs/*.json.
    let mut streams = Vec::new();
    for svc in SERVICES {
        for level in ["info", "error"] {
            let values: Vec<String> = log_lines()
                .into_iter()
                .filter(|l| l.1 == svc && l.2 == level)
                .map(|(t, _, _, msg)| format!(r#"["{}", "{msg}"]"#, t as i128 * 1_000_000))
                .collect();
            if !values.is_empty() {
                streams.push(format!(
                    r#"{{"stream": {{"service_name": "{svc}", "detected_level": "{level}", "namespace": "shop"}}, "values": [{}]}}"#,
                    values.join(", ")
                ));
            }
        }
    }
    let loki =
        format!(r#"{{"status": "success", "data": {{"resultType": "streams", "result": [{}]}}}}"#, streams.join(", "));
    let r = investigate(base(("logs/loki-export.json".into(), loki), vec![prom_metrics()], changes(true)));
    names_the_deploy(&r, "loki");
    assert!(r.data.log_lines > 0 && r.data.unreadable.records_skipped == 0, "{:?}", r.data.unreadable);
}

#[test]
fn files_named_anything_are_read_by_their_content() {
    // Syslog without a priority in a file without an extension, JSON-lines logs named `.log`,
    // Prometheus text and a wide CSV under names no rule knows.
    let plain_syslog: String =
        syslog_file(false).lines().map(|l| format!("{}\n", &l[l.find('>').unwrap() + 1..])).collect();
    let json_as_log = json_logs("service", &quoted_rfc3339).1;
    let prom = prom_metrics().1;
    let csv = wide_csv(&|svc, m| format!("{svc}.{m}")).1;
    for (logs, metrics) in [
        (("messages".to_string(), plain_syslog), ("scrape-dump.out".to_string(), prom)),
        (("cloudwatch-export.log".to_string(), json_as_log), ("kpis.csv".to_string(), csv)),
    ] {
        let shape = format!("{} + {}", logs.0, metrics.0);
        let r = investigate(base(logs, vec![metrics], changes(true)));
        names_the_deploy(&r, &shape);
        assert!(r.data.unreadable.ignored.is_empty(), "{shape}: {:?}", r.data.unreadable.ignored);
        assert!(r.data.log_lines > 0 && r.data.metric_series == 6, "{shape}: {:?}", r.data);
    }
}

#[test]
fn times_far_from_the_alert_are_rejected_as_bad_input_not_analysed() {
    // One log line dated 9999-12-31 and one metric point in 2100 once made the analysis size its
    // arrays from them (an abort allocating 67 GB); now each is a skipped record naming its field.
    let (name, mut logs) = json_logs("service", &quoted_rfc3339);
    logs.push_str(
        r#"{"time": "9999-12-31T23:59:59Z", "service": "payments", "level": "error", "message": "from the future"}"#,
    );
    logs.push('\n');
    let (prom, mut metrics) = prom_metrics();
    metrics.push_str("latency_p99_ms{service=\"payments\"} 1 4102444800000\n");
    let r = investigate(base((name, logs), vec![(prom, metrics)], changes(true)));
    names_the_deploy(&r, "far-future records");
    let issues = &r.data.unreadable.issues;
    for (file, field) in [("logs.jsonl", "time"), ("metrics.prom", "time")] {
        assert!(
            issues.iter().any(|i| i.file.ends_with(file)
                && i.field.as_deref() == Some(field)
                && i.message.contains("more than 24 h from the alert")),
            "{file}: {issues:?}"
        );
    }
    assert_eq!(r.data.unreadable.records_skipped, 2);
}

/// One trace every 30 s, frontend → checkout → payments: (trace, [(span, parent, service,
/// operation, start ms, duration ms, error)]). Payments' charges slow down and some fail after
/// the deploy; its callers wait on them.
#[allow(clippy::type_complexity)]
fn traces() -> Vec<(String, Vec<(String, Option<String>, &'static str, &'static str, i64, f64, bool)>)> {
    let mut out = Vec::new();
    let (mut t, mut n) = (START, 0);
    while t <= END {
        let slow = t >= DEPLOY + MINUTE;
        let pay = if slow { 900.0 } else { 300.0 } + (n % 5) as f64;
        let failed = slow && n % 3 == 0;
        let id = |k: i64| format!("{:016x}", n * 3 + k + 1);
        out.push((
            format!("{:032x}", n + 1),
            vec![
                (id(0), None, "frontend", "GET /cart", t, pay + 120.0, failed),
                (id(1), Some(id(0)), "checkout", "POST /checkout", t + 10, pay + 50.0, failed),
                (id(2), Some(id(1)), "payments", "charge", t + 20, pay, failed),
            ],
        ));
        t += 30_000;
        n += 1;
    }
    out
}

#[test]
fn jaeger_tempo_and_otlp_trace_exports_are_read_by_content() {
    // Jaeger's UI download: {"data": [{traceID, spans, processes}]}.
    let jaeger: Vec<String> = traces()
        .into_iter()
        .map(|(trace, spans)| {
            let spans: Vec<String> = spans
                .iter()
                .map(|(id, parent, svc, op, start, ms, err)| {
                    let refs = parent.as_ref().map_or(String::new(), |p| {
                        format!(r#"{{"refType": "CHILD_OF", "traceID": "{trace}", "spanID": "{p}"}}"#)
                    });
                    format!(
                        r#"{{"traceID": "{trace}", "spanID": "{id}", "operationName": "{op}", "references": [{refs}], "startTime": {}, "duration": {}, "tags": [{{"key": "error", "type": "bool", "value": {err}}}], "processID": "p-{svc}"}}"#,
                        start * 1000,
                        (ms * 1000.0) as i64
                    )
                })
                .collect();
            let processes: Vec<String> =
                SERVICES.iter().map(|s| format!(r#""p-{s}": {{"serviceName": "{s}", "tags": []}}"#)).collect();
            format!(r#"{{"traceID": "{trace}", "spans": [{}], "processes": {{{}}}}}"#, spans.join(", "), processes.join(", "))
        })
        .collect();
    let jaeger =
        format!(r#"{{"data": [{}], "total": 0, "limit": 0, "offset": 0, "errors": null}}"#, jaeger.join(",\n"));
    // OTLP/JSON, one export request per line (the collector's file exporter), and Tempo's
    // download, which says `batches` for `resourceSpans`.
    let otlp_doc = |key: &str| -> String {
        let per_service: Vec<String> = SERVICES
            .iter()
            .map(|svc| {
                let spans: Vec<String> = traces()
                    .into_iter()
                    .flat_map(|(trace, spans)| {
                        spans.into_iter().filter(|s| s.2 == *svc).map(move |(id, parent, _, op, start, ms, err)| {
                            let ns = start as i128 * 1_000_000;
                            format!(
                                r#"{{"traceId": "{trace}", "spanId": "{id}", "parentSpanId": "{}", "name": "{op}", "startTimeUnixNano": "{ns}", "endTimeUnixNano": "{}", "status": {{"code": {}}}}}"#,
                                parent.unwrap_or_default(),
                                ns + (ms * 1e6) as i128,
                                if err { 2 } else { 0 }
                            )
                        })
                    })
                    .collect();
                format!(
                    r#"{{"resource": {{"attributes": [{{"key": "service.name", "value": {{"stringValue": "{svc}"}}}}]}}, "scopeSpans": [{{"spans": [{}]}}]}}"#,
                    spans.join(", ")
                )
            })
            .collect();
        format!(r#"{{"{key}": [{}]}}"#, per_service.join(", "))
    };
    let spans = traces().iter().map(|t| t.1.len()).sum::<usize>();
    for (shape, name, text) in [
        ("jaeger", "traces/trace-download.json", jaeger),
        ("otlp lines named .jsonl", "traces.jsonl", otlp_doc("resourceSpans")),
        ("otlp named otel-traces.json", "otel-traces.json", otlp_doc("resourceSpans")),
        ("tempo", "traces/tempo-trace.json", otlp_doc("batches")),
    ] {
        let mut files = base(json_logs("service", &quoted_rfc3339), vec![prom_metrics()], changes(true));
        files.push((name.into(), text));
        let r = investigate(files);
        names_the_deploy(&r, shape);
        assert_eq!(r.data.spans, spans, "{shape}: {:?}", r.data.unreadable);
        assert!(r.data.unreadable.ignored.is_empty(), "{shape}: {:?}", r.data.unreadable.ignored);
    }
}

#[test]
fn a_deploy_without_a_kind_is_still_a_deploy() {
    let r = investigate(base(json_logs("service", &quoted_rfc3339), vec![prom_metrics()], changes(false)));
    names_the_deploy(&r, "changes without kind");
    assert_eq!(r.data.changes, 2);
}

#[test]
fn metric_csvs_in_the_common_shapes_name_the_deploy_and_invent_no_service() {
    let shapes: [(&str, Column); 3] = [
        ("prometheus labels", &|svc, m| format!("{m}{{service=\"{svc}\"}}")),
        ("dotted", &|svc, m| format!("{svc}.{m}")),
        ("underscore", &|svc, m| format!("{svc}_{m}")),
    ];
    for (shape, column) in shapes {
        let r = investigate(base(json_logs("service", &quoted_rfc3339), vec![wide_csv(column)], changes(true)));
        names_the_deploy(&r, shape);
        assert_eq!(r.data.metric_series, 6, "{shape}");
    }
    let r = investigate(base(json_logs("service", &quoted_rfc3339), vec![long_csv()], changes(true)));
    names_the_deploy(&r, "long format");
    assert_eq!(r.data.metric_series, 6);
}

#[test]
fn aggregated_query_range_answers_are_named_by_their_file() {
    let r = investigate(base(json_logs("service", &quoted_rfc3339), query_range_files(), changes(true)));
    names_the_deploy(&r, "query_range without __name__");
    assert_eq!(r.data.metric_series, 6);
}

#[test]
fn a_data_file_no_reader_takes_is_reported_and_no_cause_is_presented() {
    let mut files = base(json_logs("service", &quoted_rfc3339), vec![prom_metrics()], changes(true));
    // Neither the name nor the content says what it is.
    files.push(("export-7.json".into(), r#"{"rows": [[1, 2], [3, 4]]}"#.into()));
    let r = investigate(files);
    insufficient(&r, "unrecognised file", "export-7.json");
    assert!(r.data.unreadable.ignored.iter().any(|f| f.ends_with("export-7.json")));
}

#[test]
fn an_alert_on_a_service_the_data_never_names_is_insufficient() {
    let mut files = base(json_logs("service", &quoted_rfc3339), vec![prom_metrics()], changes(true));
    files[0] = incident_json("checkout-api");
    let r = investigate(files);
    insufficient(&r, "alert on an unknown service", "checkout-api");
}

#[test]
fn a_rise_that_began_after_the_alert_is_never_the_cause() {
    // Add a `reports` service whose CPU jumps 30 minutes after the alert, far more than anything
    // before it: it must not be blamed, the deploy before the alert must.
    let mut files = base(json_logs("service", &quoted_rfc3339), vec![prom_metrics()], changes(true));
    let mut s = String::new();
    let mut t = START;
    let mut i = 0;
    while t <= ALERT + 35 * MINUTE {
        let v = if t >= ALERT + 30 * MINUTE { 99.0 } else { 20.0 + wobble(i, 9) };
        let _ = writeln!(s, "cpu_percent{{service=\"reports\"}} {v:.3} {t}");
        t += MINUTE;
        i += 1;
    }
    files.push(("metrics/reports.prom".into(), s));
    files[1] = (
        "topology.json".into(),
        r#"{"edges": [["frontend", "checkout"], ["checkout", "payments"], ["checkout", "reports"]]}"#.into(),
    );
    let r = investigate(files.clone());
    let top = r.root_causes.first().map(|c| c.service.as_str());
    assert_eq!((r.verdict, top), (Verdict::RootCause, Some("payments")));
    assert!(r.root_causes.iter().all(|c| c.service != "reports"), "{:?}", r.root_causes);
    // The late rise is still in the timeline for the reader.
    assert!(r.timeline.iter().any(|e| e.service == "reports"));
    // Without the rule (a settle margin longer than the data) the late rise is a suspect, so
    // the case does test it.
    let mut lax = PipelineConfig::default();
    lax.triage.rank.settle = 24 * 60 * MINUTE;
    let r = investigate_with(files, &lax);
    assert!(r.root_causes.iter().any(|c| c.service == "reports"), "{:?}", r.root_causes);
}
