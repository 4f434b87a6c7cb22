//! Dataset adapters at their boundary: listing and loading real labelled cases (skipped when
//! `../shared/datasets` is absent) and skipping malformed metric rows with file, line and field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use culprit::eval::datasets::{self, changerca, nezha, rcd, Case, Dataset};
use culprit::model::{Incident, ReadReport, Severity};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

/// `../shared/datasets` relative to the crate, if present.
fn datasets() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

fn fault_kinds(cases: &[Case]) -> BTreeSet<&str> {
    cases.iter().map(|c| c.fault_kind.as_str()).collect()
}

/// A dataset's cases, listed through the registry.
fn list(path: PathBuf) -> Vec<Case> {
    datasets::cases(path.to_str().expect("utf-8")).expect("list")
}

/// The injection time of a Nezha case (RCD's is only known after loading).
fn inject_time(case: &Case) -> Option<i64> {
    case.key::<nezha::NezhaRef>().map(|r| r.case.inject_time)
}

/// The service the alert names for every case of the case's system.
fn entry_service(case: &Case) -> &'static str {
    match case.key::<nezha::NezhaRef>() {
        Some(r) => r.system.entry_service(),
        None => rcd::ENTRY_SERVICE,
    }
}

/// Checks shared by every loaded case.
fn check(case: &Case, inc: &Incident) {
    assert_eq!(inc.id, case.id);
    assert!(!inc.telemetry.metrics.is_empty(), "{}: no metrics", case.id);
    assert!(
        inc.telemetry.metrics.iter().all(|s| !s.points.is_empty() && s.points.windows(2).all(|w| w[0].0 <= w[1].0)),
        "{}: empty or unsorted series",
        case.id
    );
    let baseline = inc.baseline.as_ref().expect("baseline present");
    assert!(!baseline.metrics.is_empty(), "{}: empty baseline", case.id);
    assert_eq!(inc.alert.time, inc.analysis_start);
    if let Some(t) = inject_time(case) {
        assert_eq!(inc.alert.time, t);
    }
    // Incident points start at most the recent span before the analysis start (Nezha: the
    // level each series stood at; RCD: at it).
    let first = inc.telemetry.metrics.iter().filter_map(|s| s.points.first()).map(|p| p.0).min().expect("points");
    assert!(first >= inc.analysis_start - culprit::detect::metrics::RECENT_SPAN);
    // Nezha's learned normal holds no minute of the case's own fault window.
    if let Some(r) = case.key::<nezha::NezhaRef>() {
        let inside = |t: i64| t >= r.case.inject_time && t < r.case.window_end;
        assert!(baseline.metrics.iter().all(|s| s.points.iter().all(|p| !inside(p.0))), "{}: fault in normal", case.id);
    }
    assert_eq!(inc.alert.severity, Severity::High);
    assert_eq!(inc.alert.signal, "latency");
    assert_eq!(inc.truth.as_ref(), case.truth.as_ref());
    assert_eq!(inc.truth.as_ref().map(|t| t.chain.len()), Some(1));
    // The alert does not leak the label (nor the case id, which spells it for RCD).
    assert!(!inc.alert.title.contains(&case.id));
    assert_eq!(inc.alert.service, entry_service(case));
}

#[test]
fn recognise_dataset_folders() {
    let Some(root) = datasets() else { return };
    assert_eq!(nezha::systems(&root.join("nezha/trainticket")), vec![nezha::System::TrainTicket]);
    assert_eq!(nezha::systems(&root.join("nezha/onlineboutique")), vec![nezha::System::OnlineBoutique]);
    assert_eq!(nezha::systems(&root.join("nezha")), vec![nezha::System::TrainTicket, nezha::System::OnlineBoutique]);
    let name = |p: &str| datasets::recognise(root.join(p).to_str().expect("utf-8")).map(|d| d.name());
    for p in ["nezha", "nezha/trainticket", "nezha/onlineboutique"] {
        assert_eq!(name(p), Some(nezha::Nezha.name()), "{p}");
    }
    assert_eq!(name("rcd_sockshop"), Some(rcd::SockShop.name()));
    assert_eq!(name("robustspot_rs"), Some(datasets::robustspot::RobustSpot.name()));
    assert_eq!(name("kontrast_software_change"), Some(datasets::kontrast::Kontrast.name()));
    assert_eq!(name("nab"), None);
    let unknown = datasets::suites(root.join("nab").to_str().expect("utf-8")).unwrap_err().to_string();
    assert!(unknown.contains("not a suite culprit eval knows") && unknown.contains(".../rcd_sockshop"), "{unknown}");
    // Two systems, two suites, by system name.
    let suites = datasets::suites(root.join("nezha").to_str().expect("utf-8")).expect("nezha");
    assert_eq!(suites.iter().map(|s| s.cases.len()).collect::<Vec<_>>(), vec![56, 28]);
}

#[test]
fn list_cases_counts_and_fault_kinds() {
    let Some(root) = datasets() else { return };
    let tt = list(root.join("nezha/trainticket"));
    assert_eq!(tt.len(), 28);
    assert_eq!(fault_kinds(&tt), BTreeSet::from(["cpu_contention", "exception", "return"]));
    assert!(tt.iter().all(|c| c.system == "trainticket"
        && c.key::<nezha::NezhaRef>().is_some_and(|r| r.system == nezha::System::TrainTicket)
        && c.truth.as_ref().is_some_and(|t| t.service.starts_with("ts-"))));

    let ob = list(root.join("nezha/onlineboutique"));
    assert_eq!(ob.len(), 56);
    assert_eq!(
        fault_kinds(&ob),
        BTreeSet::from(["cpu_consumed", "cpu_contention", "exception", "network_delay", "return"])
    );

    let both = list(root.join("nezha"));
    assert_eq!(both.len(), 28 + 56);

    let rcd = list(root.join("rcd_sockshop"));
    assert_eq!(rcd.len(), 50);
    assert_eq!(fault_kinds(&rcd), BTreeSet::from(["cpu", "mem"]));
    assert!(rcd
        .iter()
        .all(|c| c.system == "sockshop" && c.truth.as_ref().is_some_and(|t| t.indicator == c.fault_kind)));

    // Windows are cut at the next injection of the same day, never longer than 10 min.
    for c in tt.iter().chain(&ob) {
        let n = &c.key::<nezha::NezhaRef>().expect("nezha case").case;
        assert!(n.window_end > n.inject_time);
        assert!(n.window_end <= n.inject_time + nezha::INCIDENT_SPAN);
        assert_eq!(n.minute_files.len(), 3, "{}", c.id);
    }
}

#[test]
fn load_trainticket_case() {
    let Some(root) = datasets() else { return };
    let cases = list(root.join("nezha/trainticket"));
    // Metrics start at 08:41, so only cases from 09:41 on have a full hour of baseline.
    let case = cases.iter().find(|c| c.id == "trainticket_2023-01-29_101248").expect("case");
    let inc = case.load_incident().expect("load");
    check(case, &inc);
    assert_eq!(inc.alert.service, "ts-gateway-service");
    assert_eq!(inc.telemetry.logs.files.len(), 3);
    assert!(inc.telemetry.logs.files.iter().all(|f| f.path.is_file()));
    assert!(!inc.telemetry.spans.is_empty());
    assert!(inc.telemetry.spans.iter().any(|s| s.parent_id.is_none()));
    assert!(inc.telemetry.spans.iter().all(|s| s.duration_ms >= 0.0 && s.duration_ms < 600_000.0));
    // Spans are at least a millisecond long on median, and from the case's minutes.
    let mut d: Vec<f64> = inc.telemetry.spans.iter().map(|s| s.duration_ms).collect();
    d.sort_by(f64::total_cmp);
    assert!(d[d.len() / 2] > 0.01 && d[d.len() / 2] < 10_000.0);
    assert!(inc.telemetry.spans.iter().all(|s| (s.start - inc.alert.time).abs() < 5 * 60_000));
    assert!(inc.telemetry.spans.iter().all(|s| !s.service.is_empty() && !s.service.ends_with("-service-")));
    let baseline = inc.baseline.as_ref().expect("baseline");
    assert!(!baseline.spans.is_empty());
    assert!(!baseline.logs.files.is_empty());
    assert!(inc.topology.is_none());
    // One service per pod (pod hashes stripped); node-level columns dropped; front_service joins
    // ts-ui-dashboard.
    let services: BTreeSet<&str> = inc.telemetry.metrics.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services.len(), 46, "{services:?}");
    assert!(inc.telemetry.metrics.iter().all(|s| !s.metric.starts_with("Node")));
    assert!(inc.telemetry.metrics.iter().any(|s| s.service == "ts-ui-dashboard" && s.metric == "LatencyP90(s)"));
    assert!(inc.telemetry.metrics.iter().any(|s| s.service == "ts-contacts-service" && s.metric == "CpuUsageRate(%)"));
    // One point a minute: the day's fault-free minutes (08:41 to midnight less 28 faults' windows
    // of at most 10 minutes: over 600) as normal, at most 5 + 10 in the incident's.
    let cpu = |m: &[culprit::model::Series]| {
        m.iter().find(|s| s.service == "ts-travel-service" && s.metric == "CpuUsageRate(%)").map(|s| s.points.len())
    };
    assert!(cpu(&baseline.metrics).is_some_and(|n| (600..=920).contains(&n)), "{:?}", cpu(&baseline.metrics));
    assert!(cpu(&inc.telemetry.metrics).is_some_and(|n| (1..=15).contains(&n)));
}

#[test]
fn load_onlineboutique_case() {
    let Some(root) = datasets() else { return };
    let cases = list(root.join("nezha/onlineboutique"));
    let case = &cases[5];
    let inc = case.load_incident().expect("load");
    check(case, &inc);
    assert_eq!(inc.alert.service, "frontend");
    assert!(inc.telemetry.spans.is_empty());
    assert!(inc.telemetry.logs.is_empty());
    let topo = inc.topology.as_ref().expect("topology");
    assert!(!topo.edges.is_empty());
    assert!(topo.edges.iter().any(|e| e.caller == "frontend" && e.callee == "checkoutservice"));
    assert!(topo.edges.iter().all(|e| !e.callee.starts_with("33.")));
    assert!(inc.telemetry.metrics.iter().any(|s| s.service == "frontend" && s.metric == "SuccessRate(%)"));
    let services: BTreeSet<&str> = inc.telemetry.metrics.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services.len(), 10, "{services:?}");
    // adservice's TimeStamp column is years off on 2022-08-22: `Time` is used and it is noted.
    assert!(inc
        .read_report
        .issues
        .iter()
        .any(|i| i.file.contains("adservice") && i.field.as_deref() == Some("TimeStamp")));
    assert_eq!(inc.read_report.records_skipped, 0);
    // No per-edge tables leak in as services: each edge is a series of its callee, measured at
    // both ends.
    assert!(inc.telemetry.metrics.iter().all(|s| !s.service.contains('_')));
    for side in ["caller", "callee"] {
        let metric = format!("EdgeLatencyP50(s){{edge=\"frontend->cartservice\",side=\"{side}\"}}");
        assert!(inc.telemetry.metrics.iter().any(|s| s.service == "cartservice" && s.metric == metric), "{metric}");
    }
}

#[test]
fn load_sockshop_case() {
    let Some(root) = datasets() else { return };
    let cases = list(root.join("rcd_sockshop"));
    let case = cases.iter().find(|c| c.id == "orders-mem_3").expect("case");
    let inc = case.load_incident().expect("load");
    check(case, &inc);
    assert_eq!(inc.alert.service, "front-end");
    assert!(inject_time(case).is_none());
    assert!(inc.telemetry.metrics.iter().any(|s| s.service == "orders" && s.metric == "mem"));
    assert!(inc.telemetry.metrics.iter().any(|s| s.service == "carts-db" && s.metric == "cpu"));
    assert!(inc.telemetry.metrics.iter().any(|s| s.service == "shipping" && s.metric == "lat_99"));
    assert_eq!(inc.read_report.records_skipped, 0);
}

/// Loads every case of every dataset and prints the time taken (a measurement, not asserted).
/// `cargo test --test adapters -- --ignored --nocapture load_every_case`
#[test]
#[ignore]
fn load_every_case() {
    let Some(root) = datasets() else { return };
    // Where the time of a TrainTicket case goes: the day's metric tables, one minute of spans.
    let day = root.join("nezha/trainticket/rca_data/2023-01-29");
    let started = std::time::Instant::now();
    let mut report = ReadReport::default();
    let metrics = nezha::read_metric_dir(&day.join("metric"), "ts-ui-dashboard", &mut report).expect("metrics");
    let metrics_took = started.elapsed();
    let started = std::time::Instant::now();
    let spans = culprit::ingest::read_span_csv(&day.join("trace/10_12_trace.csv.gz"), &mut report).expect("spans");
    eprintln!(
        "trainticket day metrics: {} series in {metrics_took:.2?}; one minute of traces: {} spans in {:.2?}",
        metrics.len(),
        spans.len(),
        started.elapsed()
    );
    for dir in ["nezha/trainticket", "nezha/onlineboutique", "rcd_sockshop"] {
        let cases = list(root.join(dir));
        let started = std::time::Instant::now();
        let (mut points, mut spans, mut skipped) = (0usize, 0usize, 0u64);
        for case in &cases {
            let inc = case.load_incident().expect("load");
            check(case, &inc);
            points += inc.telemetry.metrics.iter().map(|s| s.points.len()).sum::<usize>();
            spans += inc.telemetry.spans.len();
            skipped += inc.read_report.records_skipped;
        }
        let took = started.elapsed();
        eprintln!(
            "{dir}: {} cases in {:.2?} ({:.0?}/case); {points} incident points, {spans} spans, {skipped} skipped records",
            cases.len(),
            took,
            took / cases.len().max(1) as u32
        );
    }
}

#[test]
fn malformed_metric_row_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("svc-a-5b67c48447-mv5hb_metric.csv");
    let mut f = std::fs::File::create(&path).expect("create");
    writeln!(f, "Time,TimeStamp,PodName,CpuUsageRate(%),PodServerLatencyP90(s),NodeCpuUsageRate(%)")
        .and_then(|_| writeln!(f, "t,1000,svc-a-5b67c48447-mv5hb,1.5,0.1,9"))
        .and_then(|_| writeln!(f, "t,1060,svc-a-5b67c48447-mv5hb,oops,0.2,9"))
        .and_then(|_| writeln!(f, "t,1120,svc-a-5b67c48447-mv5hb,2.5,NaN,9"))
        .and_then(|_| writeln!(f, "t,later,svc-a-5b67c48447-mv5hb,2.5,0.3,9"))
        .and_then(|_| writeln!(f, "t,1180,svc-a-5b67c48447-mv5hb,3.5"))
        // `Time` wins over a `TimeStamp` that disagrees with it (noted, not skipped).
        .and_then(|_| writeln!(f, "1970-01-01 00:20:00.5 +0000 UTC m=+1,9999999,svc-a-5b67c48447-mv5hb,4.5,0.4,9"))
        .expect("write");
    drop(f);

    let mut report = ReadReport::default();
    let series = nezha::read_metric_csv(&path, "frontend", &mut report).expect("read");
    assert_eq!(report.records_read, 3);
    assert_eq!(report.records_skipped, 3);
    let file = path.display().to_string();
    assert_eq!(report.skipped_per_file.get(&file), Some(&3));
    let at = |line: u64| {
        report
            .issues
            .iter()
            .find(|i| i.line == line)
            .unwrap_or_else(|| panic!("issue at line {line}: {:?}", report.issues))
    };
    assert_eq!(at(3).file, file);
    assert_eq!(at(3).field.as_deref(), Some("CpuUsageRate(%)"));
    assert_eq!(at(5).field.as_deref(), Some("TimeStamp"));
    assert_eq!(at(6).field, None);
    assert_eq!(at(7).field.as_deref(), Some("TimeStamp"));
    assert_eq!(report.issues.len(), 4);

    let get = |m: &str| series.iter().find(|s| s.service == "svc-a" && s.metric == m);
    assert_eq!(
        get("CpuUsageRate(%)").map(|s| s.points.clone()),
        Some(vec![(1_000_000, 1.5), (1_120_000, 2.5), (1_200_000, 4.5)])
    );
    // NaN is a gap, not a bad row.
    assert_eq!(get("PodServerLatencyP90(s)").map(|s| s.points.clone()), Some(vec![(1_000_000, 0.1), (1_200_000, 0.4)]));
    assert!(series.iter().all(|s| !s.metric.starts_with("Node")));
}

/// ChangeRCA's case file holds the label beside the inputs, and lists the faulty release first.
/// The same case with every label field removed from disk, its releases in another order and an
/// index that names no cause gives culprit the same incident and the same report.
#[test]
fn changerca_hands_culprit_no_label() {
    let Some(root) = datasets() else { return };
    let cases = list(root.join("changerca"));
    assert_eq!(cases.len(), 40);
    assert_eq!(fault_kinds(&cases).len(), 13);
    let case = &cases[0];
    let original = case.key::<changerca::ChangeRcaCase>().expect("a ChangeRCA case");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data").join(&original.id);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(&original.dir).expect("case folder").flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
    }
    let file = dir.join(format!("{}.json", original.id));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    let fields = json.as_object_mut().expect("an object");
    let gied = fields["GIED_result"].as_str().expect("the case's alert").to_string();
    let first_release = fields["plan"].as_object().and_then(|p| p.keys().next().cloned());
    assert_eq!(first_release.as_deref(), Some(original.truth.service.as_str()), "the leak the adapter must not use");
    for label in ["fault_release_service", "fault", "normal_service_list"] {
        assert!(fields.remove(label).is_some(), "{label} was in the case file");
    }
    // The plan rewritten with its releases in reverse order.
    let plan: Vec<(String, serde_json::Value)> =
        fields["plan"].as_object().expect("plan").iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
    let text = serde_json::to_string(&json).expect("json");
    let plan_text: Vec<String> =
        plan.iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str()))).collect();
    let text =
        text.replacen(&serde_json::to_string(&json["plan"]).expect("plan"), &format!("{{{}}}", plan_text.join(",")), 1);
    std::fs::write(&file, text).expect("write");
    std::fs::write(
        tmp.path().join("cases_index.csv"),
        format!(
            "case_id,case_dir,root_cause_service,fault_type,faulty_release,detect_timestamp\n{},data/{},unknown,unknown,unknown,0\n",
            original.id, original.id
        ),
    )
    .expect("index");
    let blind = &list(tmp.path().to_path_buf())[0];
    let (a, b) = (case.load_incident().expect("load"), blind.load_incident().expect("load blind"));
    assert_eq!(a.truth.as_ref().map(|t| t.service.as_str()), Some(original.truth.service.as_str()));
    assert_eq!(b.truth.as_ref().map(|t| t.service.as_str()), Some("unknown"));
    assert!(a.telemetry.changes.len() > 1, "a case with concurrent releases");
    assert_eq!(a.telemetry.changes, b.telemetry.changes);
    assert_eq!(a.telemetry.metrics, b.telemetry.metrics);
    assert_eq!(
        (a.alert.clone(), a.analysis_start, a.topology.clone()),
        (b.alert.clone(), b.analysis_start, b.topology.clone())
    );
    let cfg = culprit::pipeline::PipelineConfig::with_trigger(culprit::investigate::Trigger::Always);
    let report = |i: &Incident| {
        let mut r = serde_json::to_value(culprit::pipeline::run(i, &cfg, Default::default()).report).expect("report");
        r["investigation"]["seconds"] = serde_json::Value::Null;
        r
    };
    assert_eq!(report(&a), report(&b));
    // The alert is the case's own (failed calls at the service GIED blamed), never the label;
    // releases after the window are left out.
    assert_eq!((a.alert.service.as_str(), a.alert.signal.as_str()), (gied.as_str(), "errors"));
    assert!(a.telemetry.changes.iter().all(|c| c.time <= a.alert.time + changerca::AFTER_ALERT));
}
