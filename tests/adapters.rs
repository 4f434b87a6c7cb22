//! Dataset adapters at their boundary: listing and loading real labelled cases (skipped when
//! `../shared/datasets` is absent) and skipping malformed metric rows with file, line and field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use culprit::adapters::{self, nezha, CaseRef, CaseSource, DatasetKind};
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

fn fault_kinds(cases: &[CaseRef]) -> BTreeSet<&str> {
    cases.iter().map(|c| c.fault_kind.as_str()).collect()
}

/// Checks shared by every loaded case.
fn check(case: &CaseRef, inc: &Incident) {
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
    if let Some(t) = case.inject_time() {
        assert_eq!(inc.alert.time, t);
    }
    // Incident points start at the analysis start, baseline points end before it (Nezha; RCD's
    // baseline was recorded separately).
    let first = inc.telemetry.metrics.iter().filter_map(|s| s.points.first()).map(|p| p.0).min().expect("points");
    assert!(first >= inc.analysis_start);
    assert_eq!(inc.alert.severity, Severity::High);
    assert_eq!(inc.alert.signal, "latency");
    assert_eq!(inc.truth.as_ref(), Some(&case.truth));
    assert_eq!(inc.truth.as_ref().map(|t| t.chain.len()), Some(1));
    // The alert does not leak the label (nor the case id, which spells it for RCD).
    assert!(!inc.alert.title.contains(&case.id));
    assert_eq!(inc.alert.service, case.dataset.entry_service());
}

#[test]
fn recognise_dataset_folders() {
    let Some(root) = datasets() else { return };
    assert_eq!(adapters::recognise(&root.join("nezha/trainticket")), vec![DatasetKind::NezhaTrainTicket]);
    assert_eq!(adapters::recognise(&root.join("nezha/onlineboutique")), vec![DatasetKind::NezhaOnlineBoutique]);
    assert_eq!(
        adapters::recognise(&root.join("nezha")),
        vec![DatasetKind::NezhaTrainTicket, DatasetKind::NezhaOnlineBoutique]
    );
    assert_eq!(adapters::recognise(&root.join("rcd_sockshop")), vec![DatasetKind::RcdSockShop]);
    assert!(adapters::recognise(&root.join("nab")).is_empty());
    assert!(adapters::list_cases(&root.join("nab")).is_err());
}

#[test]
fn list_cases_counts_and_fault_kinds() {
    let Some(root) = datasets() else { return };
    let tt = adapters::list_cases(&root.join("nezha/trainticket")).expect("tt");
    assert_eq!(tt.len(), 28);
    assert_eq!(fault_kinds(&tt), BTreeSet::from(["cpu_contention", "exception", "return"]));
    assert!(tt.iter().all(|c| c.system == "trainticket"
        && c.dataset == DatasetKind::NezhaTrainTicket
        && c.truth.service.starts_with("ts-")));

    let ob = adapters::list_cases(&root.join("nezha/onlineboutique")).expect("ob");
    assert_eq!(ob.len(), 56);
    assert_eq!(
        fault_kinds(&ob),
        BTreeSet::from(["cpu_consumed", "cpu_contention", "exception", "network_delay", "return"])
    );

    let both = adapters::list_cases(&root.join("nezha")).expect("nezha");
    assert_eq!(both.len(), 28 + 56);

    let rcd = adapters::list_cases(&root.join("rcd_sockshop")).expect("rcd");
    assert_eq!(rcd.len(), 50);
    assert_eq!(fault_kinds(&rcd), BTreeSet::from(["cpu", "mem"]));
    assert!(rcd.iter().all(|c| c.system == "sockshop" && c.truth.indicator == c.fault_kind));

    // Windows are cut at the next injection of the same day, never longer than 10 min.
    for c in tt.iter().chain(&ob) {
        let CaseSource::Nezha(n) = &c.source else { panic!("nezha case") };
        assert!(n.window_end > n.inject_time);
        assert!(n.window_end <= n.inject_time + nezha::INCIDENT_SPAN);
        assert_eq!(n.minute_files.len(), 3, "{}", c.id);
    }
}

#[test]
fn load_trainticket_case() {
    let Some(root) = datasets() else { return };
    let cases = adapters::list_cases(&root.join("nezha/trainticket")).expect("list");
    // Metrics start at 08:41, so only cases from 09:41 on have a full hour of baseline.
    let case = cases.iter().find(|c| c.id == "trainticket_2023-01-29_101248").expect("case");
    let inc = adapters::load_case(case).expect("load");
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
    // One point a minute: 60 in the baseline hour, at most 10 in the incident window.
    let cpu = |m: &[culprit::model::Series]| {
        m.iter().find(|s| s.service == "ts-travel-service" && s.metric == "CpuUsageRate(%)").map(|s| s.points.len())
    };
    assert!(cpu(&baseline.metrics).is_some_and(|n| (55..=61).contains(&n)));
    assert!(cpu(&inc.telemetry.metrics).is_some_and(|n| (1..=10).contains(&n)));
    assert!(baseline.metrics.iter().all(|s| s.points.iter().all(|p| p.0 < inc.analysis_start)));
}

#[test]
fn load_onlineboutique_case() {
    let Some(root) = datasets() else { return };
    let cases = adapters::list_cases(&root.join("nezha/onlineboutique")).expect("list");
    let case = &cases[5];
    let inc = adapters::load_case(case).expect("load");
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
    // No per-edge tables leak in as services.
    assert!(inc.telemetry.metrics.iter().all(|s| !s.service.contains('_')));
}

#[test]
fn load_sockshop_case() {
    let Some(root) = datasets() else { return };
    let cases = adapters::list_cases(&root.join("rcd_sockshop")).expect("list");
    let case = cases.iter().find(|c| c.id == "orders-mem_3").expect("case");
    let inc = adapters::load_case(case).expect("load");
    check(case, &inc);
    assert_eq!(inc.alert.service, "front-end");
    assert!(case.inject_time().is_none());
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
        let cases = adapters::list_cases(&root.join(dir)).expect("list");
        let started = std::time::Instant::now();
        let (mut points, mut spans, mut skipped) = (0usize, 0usize, 0u64);
        for case in &cases {
            let inc = adapters::load_case(case).expect("load");
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
