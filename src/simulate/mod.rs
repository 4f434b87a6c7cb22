//! Fault-injection simulator: labelled multi-source incidents from a seeded microservice system.
//!
//! The pipeline needs incidents whose root cause is known, in every fault kind, at any size, with
//! no dataset on disk. [`simulate`] builds a service graph (a `frontend` fanning out to API services,
//! mid-tier services, a database, a cache, a queue with its consumer, an LDAP directory), injects one
//! fault (or none) with red herrings around it, and renders metrics, spans, logs and change events
//! from one model of its consequences, plus the alert a monitor would raise and the truth.
//!
//! The output is a pure function of [`SimConfig`]: every part draws from its own ChaCha8 stream and
//! nothing iterates a hash map, so the same config gives the same incident on any machine and any
//! thread count.
//!
//! Map: `topology` (the graph), `scenario` (fault, herrings, alert, truth → a plan), `effects` (the
//! plan and how trouble propagates), `metrics`, `traffic` (spans and logs), `logs` (templates),
//! `rng` (streams and distributions).

mod effects;
mod logs;
mod metrics;
pub(crate) mod rng;
mod scenario;
mod topology;
mod traffic;

use crate::model::{Incident, Logs, ReadReport, Telemetry, Ts, HOUR, MINUTE, SECOND};
use serde::{Deserialize, Serialize};

/// Smallest system the simulator builds.
pub const MIN_SERVICES: usize = 6;
/// Shortest window the simulator renders.
pub const MIN_DURATION: Ts = 5 * MINUTE;
/// 2024-05-14T00:00:00Z, the default start before the per-seed shift.
pub const BASE_START: Ts = 1_715_644_800_000;
/// Metrics count all requests; spans and logs cover the traced ones (`requests_per_second`).
pub const METRIC_TRAFFIC_SCALE: f64 = 100.0;

/// The fault injected into a simulated incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    CpuHog,
    MemoryLeak,
    Latency,
    PacketLoss,
    BadDeploy,
    ConfigChange,
    DbPoolExhaustion,
    FeatureFlag,
    /// A fault-free window (still with red herrings and a spurious alert).
    None,
}

impl FaultKind {
    /// Every real fault (without `None`).
    pub const ALL_FAULTS: [FaultKind; 8] = [
        FaultKind::CpuHog,
        FaultKind::MemoryLeak,
        FaultKind::Latency,
        FaultKind::PacketLoss,
        FaultKind::BadDeploy,
        FaultKind::ConfigChange,
        FaultKind::DbPoolExhaustion,
        FaultKind::FeatureFlag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::CpuHog => "cpu_hog",
            FaultKind::MemoryLeak => "memory_leak",
            FaultKind::Latency => "latency",
            FaultKind::PacketLoss => "packet_loss",
            FaultKind::BadDeploy => "bad_deploy",
            FaultKind::ConfigChange => "config_change",
            FaultKind::DbPoolExhaustion => "db_pool_exhaustion",
            FaultKind::FeatureFlag => "feature_flag",
            FaultKind::None => "none",
        }
    }

    /// Parses the snake_case name; `-` may stand for `_`, and `fault_free` means `none`.
    pub fn parse(s: &str) -> Option<FaultKind> {
        let l = s.trim().to_ascii_lowercase().replace('-', "_");
        if l == "fault_free" {
            return Some(FaultKind::None);
        }
        Self::ALL_FAULTS.into_iter().chain([FaultKind::None]).find(|k| k.as_str() == l)
    }

    /// The kind a seed gets when the config does not fix one: every kind, `none` in one of nine.
    pub fn for_seed(seed: u64) -> FaultKind {
        const ORDER: [FaultKind; 9] = [
            FaultKind::None,
            FaultKind::ConfigChange,
            FaultKind::CpuHog,
            FaultKind::MemoryLeak,
            FaultKind::Latency,
            FaultKind::PacketLoss,
            FaultKind::BadDeploy,
            FaultKind::DbPoolExhaustion,
            FaultKind::FeatureFlag,
        ];
        ORDER[((seed % 9 + (seed / 9) % 9) % 9) as usize]
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub seed: u64,
    /// The fault to inject; None lets the seed choose (fault-free in about one case of nine).
    pub fault: Option<FaultKind>,
    /// Services in the system, infrastructure included (at least [`MIN_SERVICES`]).
    pub services: usize,
    /// Length of the window (at least [`MIN_DURATION`]).
    pub duration: Ts,
    /// Interval between metric points.
    pub metric_step: Ts,
    /// Traced requests per second arriving at the frontend; drives spans and logs. Metrics count
    /// [`METRIC_TRAFFIC_SCALE`] times as much traffic.
    pub requests_per_second: f64,
    /// Start of the window (Unix ms).
    pub start: Ts,
    /// Whether the incident declares its topology; when false it must be mined from spans.
    pub topology_declared: bool,
    /// Adds seed 001's hard red herring: a deploy on a service between the cause and the alert,
    /// a minute or so before the fault, followed by a lasting CPU rise on that service (a cache
    /// warm-up) that costs no latency. The deploy is innocent; it only looks guilty.
    #[serde(default)]
    pub decoy: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::for_seed(0)
    }
}

impl SimConfig {
    /// The default config for `seed`, with the start shifted by the seed.
    pub fn for_seed(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            fault: None,
            services: 12,
            duration: HOUR,
            metric_step: 15 * SECOND,
            requests_per_second: 0.25,
            start: default_start(seed),
            topology_declared: true,
            decoy: false,
        }
    }

    fn normalized(&self) -> SimConfig {
        let mut c = self.clone();
        c.services = c.services.max(MIN_SERVICES);
        c.duration = c.duration.max(MIN_DURATION);
        c.metric_step = c.metric_step.max(SECOND);
        if !c.requests_per_second.is_finite() || c.requests_per_second < 0.0 {
            c.requests_per_second = 0.0;
        }
        c
    }
}

/// A fixed date shifted by the seed (whole minutes, any hour of the day, within a year).
pub fn default_start(seed: u64) -> Ts {
    let days = (seed % 365) as Ts;
    let hours = (seed.wrapping_mul(7) % 24) as Ts;
    let quarter = (seed % 4) as Ts;
    BASE_START + days * 24 * HOUR + hours * HOUR + quarter * 15 * MINUTE
}

/// Spans per hour [`bench_config`] aims at.
pub const BENCH_SPANS_PER_HOUR: f64 = 200_000.0;

/// A scale test: 50 services over one hour, ~500 series at 15 s, ~200k spans, ~1M log lines.
pub fn bench_config(seed: u64) -> SimConfig {
    bench_config_scaled(seed, 1)
}

/// [`bench_config`] `scale` times larger: `scale` × 50 services (and so metric series), and
/// `scale` × the spans and log lines, over the same hour.
pub fn bench_config_scaled(seed: u64, scale: usize) -> SimConfig {
    let scale = scale.clamp(1, 100);
    let services = 50 * scale;
    let sys = topology::build(seed, services);
    let per_request = sys.spans_per_request().max(1.0);
    let base = SimConfig::for_seed(seed);
    // Traffic follows the time of day; aim at the target for this window's hour.
    let shape = metrics::season(base.start + base.duration / 2);
    let rate = BENCH_SPANS_PER_HOUR * scale as f64 / 3600.0 / per_request / shape;
    SimConfig { services, requests_per_second: rate, ..base }
}

/// The LDAP incident of seed document 001: `auth` has its `ldap.timeout_ms` lowered from 5000 to
/// 500; binds against `user-directory` time out, retries storm the directory (which looks guilty),
/// and logins fail up to the frontend.
pub fn demo_config() -> SimConfig {
    SimConfig { fault: Some(FaultKind::ConfigChange), topology_declared: true, ..SimConfig::for_seed(1) }
}

/// Simulates one incident. `truth` is always Some.
pub fn simulate(cfg: &SimConfig) -> Incident {
    let cfg = cfg.normalized();
    let sys = topology::build(cfg.seed, cfg.services);
    let kind = cfg.fault.unwrap_or_else(|| FaultKind::for_seed(cfg.seed));
    let sc = scenario::build(&sys, &cfg, kind);
    let prop = effects::Propagation::new(&sys, &sc.plan);
    let metrics = metrics::generate(&sys, &sc.plan, &prop, &cfg);
    let (records, spans) = traffic::generate(&sys, &sc.plan, &cfg);
    Incident {
        id: format!("sim-{}-{}", cfg.seed, sc.truth.kind),
        alert: sc.alert,
        telemetry: Telemetry { metrics, logs: Logs { records, files: Vec::new() }, spans, changes: sc.plan.changes },
        baseline: None,
        analysis_start: sc.analysis_start,
        topology: cfg.topology_declared.then(|| sys.topology()),
        truth: Some(sc.truth),
        read_report: ReadReport::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in FaultKind::ALL_FAULTS.into_iter().chain([FaultKind::None]) {
            assert_eq!(FaultKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(FaultKind::parse("cpu-hog"), Some(FaultKind::CpuHog));
        assert_eq!(FaultKind::parse("nope"), None);
    }

    #[test]
    fn seeds_reach_every_kind() {
        let kinds: std::collections::BTreeSet<FaultKind> = (1..=50).map(FaultKind::for_seed).collect();
        assert_eq!(kinds.len(), 9);
        let none = (1..=900).filter(|&s| FaultKind::for_seed(s) == FaultKind::None).count();
        assert!((90..=110).contains(&none), "{none} fault-free of 900");
    }
}
