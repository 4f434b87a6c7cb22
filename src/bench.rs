//! `culprit bench`: wall time and peak memory of a triage over a simulated one-hour, 50-service
//! incident, and the single-core throughput of log template mining.
//!
//! Figures are for the binary it runs in: build with `--release` for the numbers in the README.

use crate::detect::logs::Drain;
use crate::simulate;
use crate::triage::{self, Config};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub services: usize,
    pub metric_series: usize,
    pub metric_points: usize,
    pub log_lines: usize,
    pub spans: usize,
    pub simulate_seconds: f64,
    pub triage_seconds: f64,
    pub anomalies: usize,
    pub drain_lines_per_second: f64,
    pub drain_templates: usize,
    /// Peak resident memory of the process (VmHWM), MiB; includes the simulated data itself.
    pub peak_rss_mib: Option<f64>,
    pub threads: usize,
    pub optimized: bool,
}

/// Peak resident set size from /proc (Linux); None elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(seed: u64) -> Bench {
    let t0 = Instant::now();
    let cfg = simulate::bench_config(seed);
    let incident = simulate::simulate(&cfg);
    let simulate_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let t = triage::triage(&incident, &Config::default());
    let triage_seconds = t1.elapsed().as_secs_f64();
    let records = &incident.telemetry.logs.records;
    let mut drain = Drain::new(0.5);
    let t2 = Instant::now();
    for r in records {
        drain.add(&r.message);
    }
    let drain_seconds = t2.elapsed().as_secs_f64().max(1e-9);
    Bench {
        services: incident.telemetry.metrics.iter().map(|s| s.service.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
        metric_series: incident.telemetry.metrics.len(),
        metric_points: incident.telemetry.metrics.iter().map(|s| s.points.len()).sum(),
        log_lines: records.len(),
        spans: incident.telemetry.spans.len(),
        simulate_seconds,
        triage_seconds,
        anomalies: t.detection.anomalies.len(),
        drain_lines_per_second: records.len() as f64 / drain_seconds,
        drain_templates: drain.templates().len(),
        peak_rss_mib: peak_rss_mib(),
        threads: rayon::current_num_threads(),
        optimized: !cfg!(debug_assertions),
    }
}

pub fn render(b: &Bench) -> String {
    format!(
        "bench ({} build, {} threads)\n\
         data:     {} services, {} metric series ({} points), {} log lines, {} spans\n\
         simulate: {:.2} s\n\
         triage:   {:.2} s ({} anomalies)\n\
         drain:    {:.0} lines/s on one core ({} templates)\n\
         peak RSS: {}\n",
        if b.optimized { "release" } else { "debug — use --release for real figures" },
        b.threads,
        b.services,
        b.metric_series,
        b.metric_points,
        b.log_lines,
        b.spans,
        b.simulate_seconds,
        b.triage_seconds,
        b.anomalies,
        b.drain_lines_per_second,
        b.drain_templates,
        b.peak_rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "unknown".into())
    )
}
