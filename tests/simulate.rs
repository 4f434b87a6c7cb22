//! Tests of the fault-injection simulator at its public boundary: determinism, labels, sizes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use culprit::model::{ChangeKind, Incident, Level, Series, Severity, Span, Truth, Ts, HOUR, MINUTE, SECOND};
use culprit::simulate::{bench_config, demo_config, simulate, FaultKind, SimConfig};
use std::collections::{BTreeMap, BTreeSet};

fn cfg(seed: u64, fault: Option<FaultKind>) -> SimConfig {
    SimConfig { fault, ..SimConfig::for_seed(seed) }
}

fn truth(inc: &Incident) -> Truth {
    inc.truth.clone().unwrap_or_else(|| panic!("{}: no truth", inc.id))
}

fn series<'a>(inc: &'a Incident, service: &str, metric: &str) -> &'a Series {
    inc.telemetry
        .metrics
        .iter()
        .find(|s| s.service == service && s.metric == metric)
        .unwrap_or_else(|| panic!("{}: no series {service}/{metric}", inc.id))
}

fn stats(points: &[(Ts, f64)], from: Ts, to: Ts) -> (f64, f64) {
    let v: Vec<f64> = points.iter().filter(|p| p.0 >= from && p.0 < to).map(|p| p.1).collect();
    assert!(!v.is_empty(), "no points in window");
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt())
}

/// Everything an incident carries, serialized, for equality checks.
fn fingerprint(inc: &Incident) -> String {
    let json = serde_json::json!({
        "id": inc.id,
        "alert": inc.alert,
        "analysis_start": inc.analysis_start,
        "topology": inc.topology,
        "truth": inc.truth,
        "metrics": inc.telemetry.metrics,
        "spans": inc.telemetry.spans,
        "changes": inc.telemetry.changes,
        "logs": inc.telemetry.logs.records,
    });
    serde_json::to_string(&json).unwrap_or_else(|e| panic!("serialize: {e}"))
}

#[test]
fn same_config_gives_the_same_incident_on_any_thread_count() {
    for seed in [1u64, 7, 23] {
        let c = cfg(seed, None);
        let a = fingerprint(&simulate(&c));
        let b = fingerprint(&simulate(&c));
        assert_eq!(a, b, "seed {seed} differs between runs");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap_or_else(|e| panic!("pool: {e}"));
        let c1 = pool.install(|| fingerprint(&simulate(&c)));
        assert_eq!(a, c1, "seed {seed} differs on one thread");
    }
    let a = fingerprint(&simulate(&cfg(1, None)));
    let b = fingerprint(&simulate(&cfg(2, None)));
    assert_ne!(a, b);
}

#[test]
fn every_fault_has_a_consistent_truth_and_alert() {
    for kind in FaultKind::ALL_FAULTS {
        for seed in [3u64, 11, 42] {
            let c = cfg(seed, Some(kind));
            let inc = simulate(&c);
            let t = truth(&inc);
            assert_eq!(t.kind, kind.as_str());
            assert_eq!(inc.id, format!("sim-{seed}-{}", kind.as_str()));
            assert!(!t.service.is_empty());
            assert!(!t.indicator.is_empty());
            assert!(t.chain.len() >= 2, "{}: chain {:?}", inc.id, t.chain);
            assert_eq!(t.chain.first(), Some(&t.service));
            assert_eq!(t.chain.last(), Some(&inc.alert.service), "{}: chain ends elsewhere", inc.id);
            // The chain follows calls upward: each element is called by the next.
            let topo = inc.topology.clone().unwrap_or_else(|| panic!("{}: no topology", inc.id));
            for w in t.chain.windows(2) {
                assert!(
                    topo.edges.iter().any(|e| e.caller == w[1] && e.callee == w[0]),
                    "{}: {} does not call {}",
                    inc.id,
                    w[1],
                    w[0]
                );
            }
            assert!(matches!(inc.alert.signal.as_str(), "latency" | "errors"));
            assert!(inc.alert.severity >= Severity::High);
            assert!(inc.alert.title.contains(&inc.alert.service));
            // Timing: the fault lies after the baseline, and the window runs on after the alert.
            let end = c.start + c.duration;
            assert!(inc.analysis_start > c.start);
            assert!(inc.alert.time > inc.analysis_start);
            assert!(inc.alert.time + 10 * MINUTE <= end);
            assert!(inc.baseline.is_none());
            for ch in &inc.telemetry.changes {
                if ch.service == t.service {
                    assert!(ch.time > inc.analysis_start && ch.time < inc.alert.time);
                }
            }
        }
    }
}

#[test]
fn the_cause_indicator_moves_after_the_fault() {
    let metric_of = |kind: FaultKind| match kind {
        FaultKind::CpuHog => Some("cpu"),
        FaultKind::MemoryLeak => Some("mem"),
        FaultKind::Latency => Some("latency_p99"),
        FaultKind::PacketLoss => Some("error_rate"),
        FaultKind::DbPoolExhaustion => Some("connections_active"),
        _ => None,
    };
    for kind in FaultKind::ALL_FAULTS {
        let Some(metric) = metric_of(kind) else {
            continue;
        };
        for seed in 1..=6u64 {
            let c = cfg(seed, Some(kind));
            let inc = simulate(&c);
            let t = truth(&inc);
            let s = series(&inc, &t.service, metric);
            let (before, sd) = stats(&s.points, c.start, inc.analysis_start);
            let (after, _) = stats(&s.points, inc.alert.time, c.start + c.duration);
            assert!(
                after > before * 1.3 && after - before > 3.0 * sd,
                "{}: {}/{metric} before {before:.3}±{sd:.3} after {after:.3}",
                inc.id,
                t.service
            );
        }
    }
}

#[test]
fn change_faults_come_with_their_change() {
    for seed in 1..=5u64 {
        let inc = simulate(&cfg(seed, Some(FaultKind::BadDeploy)));
        let t = truth(&inc);
        assert_eq!(t.indicator, "version");
        let d = inc
            .telemetry
            .changes
            .iter()
            .find(|c| c.service == t.service && c.kind == ChangeKind::Deploy)
            .unwrap_or_else(|| panic!("{}: no deploy", inc.id));
        assert!(d.version.is_some() && d.previous_version.is_some());
        assert_ne!(d.version, d.previous_version);
        let new_errors = inc.telemetry.logs.records.iter().any(|r| {
            r.service == t.service && r.level.is_error() && r.time >= d.time && r.message.contains("Exception")
        });
        assert!(new_errors, "{}: no exception logs after the deploy", inc.id);

        let inc = simulate(&cfg(seed, Some(FaultKind::ConfigChange)));
        let t = truth(&inc);
        let ch = inc
            .telemetry
            .changes
            .iter()
            .find(|c| c.service == t.service && c.kind == ChangeKind::Config)
            .unwrap_or_else(|| panic!("{}: no config change", inc.id));
        let key = ch.keys.first().unwrap_or_else(|| panic!("{}: no key", inc.id));
        assert_eq!(key.key, t.indicator);
        let num = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN);
        assert!(num(&key.new) < num(&key.old), "{}: timeout not lowered", inc.id);

        let inc = simulate(&cfg(seed, Some(FaultKind::FeatureFlag)));
        let t = truth(&inc);
        let ch = inc
            .telemetry
            .changes
            .iter()
            .find(|c| c.service == t.service && c.kind == ChangeKind::Flag)
            .unwrap_or_else(|| panic!("{}: no flag change", inc.id));
        let key = ch.keys.first().unwrap_or_else(|| panic!("{}: no key", inc.id));
        assert_eq!(key.key, t.indicator);
        assert!(key.key.starts_with("flag."));
        assert_eq!(key.old.as_deref(), Some("false"));
        assert_eq!(key.new.as_deref(), Some("true"));
    }
}

#[test]
fn fault_free_windows_are_labelled_none() {
    for seed in [4u64, 5] {
        let inc = simulate(&cfg(seed, Some(FaultKind::None)));
        let t = truth(&inc);
        assert!(t.is_fault_free());
        assert_eq!(t.service, "");
        assert!(t.chain.is_empty());
        assert_eq!(inc.id, format!("sim-{seed}-none"));
        assert!(!inc.alert.service.is_empty());
    }
    // Seeds alone reach every kind, fault-free included.
    let kinds: BTreeSet<String> = (1..=50u64).map(|s| FaultKind::for_seed(s).as_str().to_string()).collect();
    assert_eq!(kinds.len(), 9);
    let inc = simulate(&cfg(9, None));
    assert_eq!(truth(&inc).kind, FaultKind::for_seed(9).as_str());
}

#[test]
fn the_demo_is_the_ldap_retry_storm() {
    let c = demo_config();
    let inc = simulate(&c);
    let t = truth(&inc);
    assert_eq!(t.kind, "config_change");
    assert_eq!(t.service, "auth");
    assert_eq!(t.indicator, "ldap.timeout_ms");
    assert!(inc.topology.is_some());
    let ch = inc
        .telemetry
        .changes
        .iter()
        .find(|c| c.kind == ChangeKind::Config)
        .unwrap_or_else(|| panic!("no config change"));
    let key = &ch.keys[0];
    assert_eq!((key.old.as_deref(), key.new.as_deref()), (Some("5000"), Some("500")));
    // The directory drowns in retries and looks guiltier than the changed service.
    let end = c.start + c.duration;
    let rise = |svc: &str, metric: &str| {
        let s = series(&inc, svc, metric);
        let (b, _) = stats(&s.points, c.start, inc.analysis_start);
        let (a, _) = stats(&s.points, inc.alert.time, end);
        (a, b)
    };
    let (a, b) = rise("user-directory", "rps");
    assert!(a > 2.0 * b, "directory rps {b} -> {a}");
    let (da, db) = rise("user-directory", "cpu");
    let (aa, ab) = rise("auth", "cpu");
    assert!(da - db > aa - ab, "directory cpu +{} vs auth +{}", da - db, aa - ab);
    let failed_logins = inc
        .telemetry
        .logs
        .records
        .iter()
        .filter(|r| r.service == "auth" && r.level.is_error() && r.message.contains("LDAP"))
        .count();
    assert!(failed_logins > 0);
}

#[test]
fn spans_form_traces_over_the_declared_graph() {
    let c = SimConfig { topology_declared: false, ..cfg(5, None) };
    let inc = simulate(&c);
    assert!(inc.topology.is_none());
    let declared = simulate(&cfg(5, None)).topology.unwrap_or_else(|| panic!("no topology"));
    let edges: BTreeSet<(String, String)> =
        declared.edges.iter().map(|e| (e.caller.clone(), e.callee.clone())).collect();
    let by_id: BTreeMap<(&str, &str), &Span> =
        inc.telemetry.spans.iter().map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s)).collect();
    assert_eq!(by_id.len(), inc.telemetry.spans.len(), "span ids collide");
    let mut mined = BTreeSet::new();
    for s in &inc.telemetry.spans {
        assert!(s.duration_ms >= 0.0);
        let Some(p) = &s.parent_id else { continue };
        let parent =
            by_id.get(&(s.trace_id.as_str(), p.as_str())).unwrap_or_else(|| panic!("orphan span {}", s.span_id));
        assert!(parent.start <= s.start);
        if parent.service != s.service {
            mined.insert((parent.service.clone(), s.service.clone()));
        }
    }
    assert!(mined.is_subset(&edges), "spans call outside the graph");
    assert!(mined.len() * 10 >= edges.len() * 8, "mined {} of {} edges", mined.len(), edges.len());
    let kinds: BTreeSet<String> = declared.services.iter().filter_map(|n| n.kind.clone()).collect();
    for k in ["service", "database", "cache", "queue"] {
        assert!(kinds.contains(k), "no {k} node");
    }
    assert!(inc.telemetry.logs.records.windows(2).all(|w| w[0].time <= w[1].time));
}

#[test]
fn default_sizes_are_as_documented() {
    let c = cfg(2, None);
    let inc = simulate(&c);
    let spans = inc.telemetry.spans.len();
    let logs = inc.telemetry.logs.records.len();
    assert!((2_000..=8_000).contains(&spans), "{spans} spans");
    assert!((12_000..=32_000).contains(&logs), "{logs} log lines");
    assert_eq!(inc.telemetry.metrics.len(), 12 * 10);
    assert!(inc.telemetry.metrics.iter().all(|s| s.points.len() == 240));
    let levels: BTreeSet<Level> = inc.telemetry.logs.records.iter().map(|r| r.level).collect();
    for l in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
        assert!(levels.contains(&l), "no {l:?} lines");
    }
}

#[test]
fn bench_config_scales() {
    let full = bench_config(1);
    assert_eq!(full.services, 50);
    assert_eq!(full.duration, HOUR);
    assert_eq!(full.metric_step, 15 * SECOND);
    // Five minutes in debug, scaled to the hour.
    let c = SimConfig { duration: 5 * MINUTE, ..full.clone() };
    let inc = simulate(&c);
    let series = inc.telemetry.metrics.len();
    assert!((450..=550).contains(&series), "{series} series");
    let spans = inc.telemetry.spans.len() as f64 * 12.0;
    let logs = inc.telemetry.logs.records.len() as f64 * 12.0;
    assert!((140_000.0..=280_000.0).contains(&spans), "{spans} spans per hour");
    assert!((650_000.0..=1_400_000.0).contains(&logs), "{logs} log lines per hour");
    let names: BTreeSet<&str> = inc.telemetry.metrics.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names.len(), 50);
    assert!(names.contains("svc-50"));
}

#[test]
fn small_large_and_odd_configs_work() {
    for (services, duration, step) in [
        (3, 2 * MINUTE, 15 * SECOND),
        (6, HOUR, 10 * SECOND),
        (7, 2 * HOUR, 60 * SECOND),
        (30, 20 * MINUTE, 7 * SECOND),
    ] {
        for kind in FaultKind::ALL_FAULTS.into_iter().chain([FaultKind::None]) {
            let c =
                SimConfig { services, duration, metric_step: step, requests_per_second: 0.05, ..cfg(17, Some(kind)) };
            let inc = simulate(&c);
            let t = truth(&inc);
            assert_eq!(t.kind, kind.as_str(), "{services} services");
            let topo = inc.topology.clone().unwrap_or_else(|| panic!("no topology"));
            assert_eq!(topo.services.len(), services.max(6));
            if kind != FaultKind::None {
                assert_eq!(t.chain.last(), Some(&inc.alert.service));
            }
            let end = c.start + c.duration.max(5 * MINUTE);
            assert!(inc.analysis_start >= c.start && inc.alert.time < end);
            assert!(inc
                .telemetry
                .metrics
                .iter()
                .all(|s| s.points.iter().all(|p| p.0 >= c.start && p.0 < end && p.1.is_finite())));
            assert!(inc.telemetry.spans.iter().all(|s| s.start >= c.start && s.duration_ms.is_finite()));
        }
    }
}
