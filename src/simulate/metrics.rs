//! Metric series of the simulated services: normal behaviour plus the plan's effects.
//!
//! Every service reports about ten series at `metric_step` (CPU, memory, p50/p99 latency, error
//! rate, request rate, and role-specific ones such as `connections_active` or `queue_depth`).
//! Normal behaviour is a daily sinusoid (a slow trend within one hour) with Gaussian noise and rare
//! spikes; the fault's deviations come from [`Propagation`], so callers show their callees' trouble
//! attenuated and slightly later. Metrics count all traffic: [`METRIC_TRAFFIC_SCALE`] times the
//! traced requests.

use super::effects::{Plan, Propagation};
use super::rng::{self, SimRng};
use super::topology::{Role, System};
use super::{SimConfig, METRIC_TRAFFIC_SCALE};
use crate::model::{Series, Ts, HOUR, MINUTE, SECOND};
use rand::Rng;
use rayon::prelude::*;

const APP: &[&str] = &[
    "cpu",
    "mem",
    "latency_p50",
    "latency_p99",
    "error_rate",
    "rps",
    "gc_pause_ms",
    "threads",
    "net_in_kbps",
    "net_out_kbps",
];
const DATABASE: &[&str] = &[
    "cpu",
    "mem",
    "latency_p50",
    "latency_p99",
    "error_rate",
    "rps",
    "connections_active",
    "disk_io_mbps",
    "net_in_kbps",
    "net_out_kbps",
];
const CACHE: &[&str] = &[
    "cpu",
    "mem",
    "latency_p50",
    "latency_p99",
    "error_rate",
    "rps",
    "hit_rate",
    "evictions",
    "net_in_kbps",
    "net_out_kbps",
];
const QUEUE: &[&str] = &[
    "cpu",
    "mem",
    "latency_p50",
    "latency_p99",
    "error_rate",
    "rps",
    "queue_depth",
    "consumer_lag_ms",
    "net_in_kbps",
    "net_out_kbps",
];

pub(crate) fn metric_names(role: Role) -> &'static [&'static str] {
    match role {
        Role::Database => DATABASE,
        Role::Cache => CACHE,
        Role::Queue => QUEUE,
        _ => APP,
    }
}

/// Daily traffic shape: 1 ± 0.25, peaking mid-afternoon UTC.
pub(crate) fn season(t: Ts) -> f64 {
    let day = 24 * HOUR;
    let hour = t.rem_euclid(day) as f64 / HOUR as f64;
    1.0 + 0.25 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin()
}

/// Everything the series of one service need at one instant.
struct Point {
    t: Ts,
    season: f64,
    load: f64,
    p50: f64,
    p99: f64,
    err: f64,
    own: super::effects::Own,
}

pub(crate) fn generate(sys: &System, plan: &Plan, prop: &Propagation, cfg: &SimConfig) -> Vec<Series> {
    let step = cfg.metric_step.max(SECOND);
    let end = cfg.start + cfg.duration;
    let times: Vec<Ts> = (0..).map(|i: i64| cfg.start + i * step).take_while(|&t| t < end).collect();
    let per_node: Vec<Vec<Series>> =
        (0..sys.nodes.len()).into_par_iter().map(|s| node_series(sys, plan, prop, cfg, s, &times)).collect();
    per_node.into_iter().flatten().collect()
}

fn node_series(sys: &System, plan: &Plan, prop: &Propagation, cfg: &SimConfig, s: usize, times: &[Ts]) -> Vec<Series> {
    let node = &sys.nodes[s];
    let points: Vec<Point> = times
        .iter()
        .map(|&t| {
            let x = prop.extra(sys, plan, s, t);
            Point {
                t,
                season: season(t),
                load: 1.0 + Propagation::load(sys, plan, s, t),
                p50: sys.p50[s] + x.p50,
                p99: sys.p99[s] + x.p99,
                err: x.err,
                own: plan.own(s, t),
            }
        })
        .collect();
    let rps_full = sys.rel_rps[s] * cfg.requests_per_second * METRIC_TRAFFIC_SCALE;
    let names = metric_names(node.role);
    names
        .iter()
        .enumerate()
        .map(|(mi, &metric)| {
            let mut rng = rng::stream(cfg.seed, &[rng::METRICS, s as u64, mi as u64]);
            let noisy = plan.noisy.iter().find(|n| n.node == s && n.metric == metric);
            let conn_frac = rng::uniform(&mut rng, 0.3, 0.5);
            let q_base = rng::uniform(&mut rng, 5.0, 20.0);
            let hit_base = rng::uniform(&mut rng, 0.85, 0.95);
            let pts = points
                .iter()
                .map(|p| {
                    let mut v = value(sys, s, metric, p, rps_full, conn_frac, q_base, hit_base, &mut rng);
                    if let Some(nz) = noisy {
                        if rng.gen::<f64>() < nz.prob {
                            v = if metric == "error_rate" {
                                (v + rng::uniform(&mut rng, 0.005, 0.02) * nz.amp).min(1.0)
                            } else if metric == "cpu" {
                                (v * nz.amp).min(99.0)
                            } else {
                                v * nz.amp
                            };
                        }
                    }
                    (p.t, round(v))
                })
                .collect();
            Series { service: node.name.clone(), metric: metric.to_string(), points: pts }
        })
        .collect()
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        (v * 100.0).round() / 100.0
    } else {
        (v * 10_000.0).round() / 10_000.0
    }
}

#[allow(clippy::too_many_arguments)]
fn value(
    sys: &System,
    s: usize,
    metric: &str,
    p: &Point,
    rps_full: f64,
    conn_frac: f64,
    q_base: f64,
    hit_base: f64,
    rng: &mut SimRng,
) -> f64 {
    let node = &sys.nodes[s];
    let n = rng::normal(rng);
    let spike = rng.gen::<f64>();
    let rps = rps_full * p.season * p.load;
    match metric {
        "cpu" => {
            let mut v = node.base_cpu * (0.45 + 0.55 * p.season * p.load) + p.own.cpu + 1.5 * n;
            if spike < 0.005 {
                v += rng::uniform(rng, 10.0, 25.0);
            }
            v.clamp(0.5, 99.5)
        }
        "mem" => {
            let wobble = 0.02 * (std::f64::consts::TAU * p.t as f64 / (20 * MINUTE) as f64).sin();
            (node.base_mem * (1.0 + wobble + 0.01 * n) + p.own.mem).max(10.0)
        }
        "latency_p50" => (p.p50 * (1.0 + 0.1 * (p.season - 1.0)) * (0.04 * n).exp()).max(0.05),
        "latency_p99" => {
            let mut v = p.p99 * (1.0 + 0.1 * (p.season - 1.0)) * (0.08 * n).exp();
            if spike < 0.01 {
                v *= rng::uniform(rng, 1.5, 2.5);
            }
            v.max(0.1)
        }
        "error_rate" => {
            let mut v = node.base_err * (0.35 * n).exp() + p.err;
            if spike < 0.005 {
                v += node.base_err * rng::uniform(rng, 3.0, 8.0);
            }
            v.clamp(0.0, 1.0)
        }
        "rps" => (rps * (1.0 + 0.03 * n)).max(0.0),
        "gc_pause_ms" => node.gc_ms * (0.25 * n).exp() + p.own.gc,
        "threads" => (node.threads + rps * p.p50 / 1000.0 + 1.5 * n).round().max(1.0),
        "net_in_kbps" => (rps * node.payload_kb * 8.0 * 0.3 * (1.0 + 0.04 * n)).max(0.0),
        "net_out_kbps" => (rps * node.payload_kb * 8.0 * (1.0 + 0.04 * n)).max(0.0),
        "connections_active" => {
            let base = node.pool_max * conn_frac * (0.8 + 0.2 * p.season) * p.load.sqrt() + 1.5 * n;
            let base = base.min(node.pool_max);
            (base + p.own.conn * (node.pool_max - base)).round().clamp(1.0, node.pool_max)
        }
        "disk_io_mbps" => ((5.0 + rps * 0.05) * (1.0 + 0.1 * n)).max(0.0),
        "hit_rate" => (hit_base + 0.01 * n).clamp(0.0, 1.0),
        "evictions" => rng::poisson(rng, 2.0 * p.season) as f64,
        "queue_depth" => (q_base * p.season * (1.0 + 0.3 * n) + p.own.qdepth).round().max(0.0),
        "consumer_lag_ms" => ((50.0 + (q_base + p.own.qdepth) * 15.0) * (1.0 + 0.1 * n)).max(0.0),
        _ => 0.0,
    }
}
