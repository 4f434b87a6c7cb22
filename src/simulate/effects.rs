//! The fault plan as data, and the one model of its consequences that metrics and traffic share.
//!
//! A [`Plan`] lists, per service, time-shaped effects (latency multiplier, added errors, CPU, memory,
//! …) and, per call edge, injected call failures (packet loss, pool waits, a lowered timeout).
//! Traffic generation samples requests from the same effects, and [`Propagation`] turns them into
//! the expected metric deviations of every service, with callers seeing their callees' trouble
//! attenuated and a little later, so both sources tell one consistent story.

use super::topology::{Role, System};
use super::FaultKind;
use crate::model::{Change, Ts};

/// What an effect changes on its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Self time is multiplied by `1 + value`.
    LatMult,
    /// Milliseconds added to self time.
    LatAdd,
    /// Probability that a request fails in the service itself.
    Err,
    /// CPU percentage points.
    Cpu,
    /// Resident memory (MB).
    Mem,
    /// GC pause (ms).
    Gc,
    /// Fraction of the way from normal connection use to the pool maximum.
    Conn,
    /// Messages waiting in a queue.
    QueueDepth,
    /// Fraction of requests taking a new code path (feature flag).
    PathFrac,
}

/// How an effect's strength (0..1) evolves over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    /// 0 before `start`, rises to 1 over `ramp` (curved by `power`), then stays.
    Ramp { start: Ts, ramp: Ts, power: f64 },
    /// 0 outside [start, end), rising over `ramp` inside.
    Window { start: Ts, ramp: Ts, end: Ts },
    /// Jumps to 1 at `start` and decays with time constant `tau`.
    Decay { start: Ts, tau: Ts },
    /// 1 inside `[first + k·period, first + k·period + width)`.
    Periodic { first: Ts, period: Ts, width: Ts },
}

impl Shape {
    pub(crate) fn at(self, t: Ts) -> f64 {
        match self {
            Shape::Ramp { start, ramp, power } => {
                if t < start {
                    0.0
                } else if ramp <= 0 || t >= start + ramp {
                    1.0
                } else {
                    ((t - start) as f64 / ramp as f64).powf(power)
                }
            }
            Shape::Window { start, ramp, end } => {
                if t < start || t >= end {
                    0.0
                } else if ramp <= 0 {
                    1.0
                } else {
                    ((t - start) as f64 / ramp as f64).min(1.0)
                }
            }
            Shape::Decay { start, tau } => {
                if t < start {
                    0.0
                } else {
                    (-((t - start) as f64) / tau.max(1) as f64).exp()
                }
            }
            Shape::Periodic { first, period, width } => {
                if t < first || period <= 0 {
                    0.0
                } else if (t - first) % period < width {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// The first time the shape is non-zero.
    pub(crate) fn start(self) -> Ts {
        match self {
            Shape::Ramp { start, .. } | Shape::Window { start, .. } | Shape::Decay { start, .. } => start,
            Shape::Periodic { first, .. } => first,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Effect {
    pub target: Target,
    pub shape: Shape,
    pub mag: f64,
}

/// How a faulty call edge fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FailMode {
    /// Packets to the callee are lost: the call hangs until the timeout or the connection resets.
    Loss,
    /// No pooled connection to the callee is free: the caller waits `wait_ms`, then gives up.
    PoolWait,
    /// The caller's timeout for this call was lowered to `new_ms`.
    Timeout { new_ms: f64 },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct EdgeFault {
    pub mode: FailMode,
    pub shape: Shape,
    /// Per-attempt failure probability at full strength (loss and pool waits).
    pub p: f64,
    pub wait_ms: f64,
    pub attempts: u32,
}

/// A service's own state at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Own {
    pub lat_mult: f64,
    pub lat_add: f64,
    pub err: f64,
    pub cpu: f64,
    pub mem: f64,
    pub gc: f64,
    pub conn: f64,
    pub qdepth: f64,
    pub path_frac: f64,
}

impl Default for Own {
    fn default() -> Self {
        Own {
            lat_mult: 1.0,
            lat_add: 0.0,
            err: 0.0,
            cpu: 0.0,
            mem: 0.0,
            gc: 0.0,
            conn: 0.0,
            qdepth: 0.0,
            path_frac: 0.0,
        }
    }
}

/// A metric of one service that spikes often, all window long (a red herring).
#[derive(Debug, Clone)]
pub(crate) struct Noisy {
    pub node: usize,
    pub metric: &'static str,
    pub prob: f64,
    pub amp: f64,
}

/// A periodic batch job (a red herring): CPU spikes and start/finish log lines.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub node: usize,
    pub job: &'static str,
    pub first: Ts,
    pub period: Ts,
    pub width: Ts,
}

/// The changed timeout of a config-change fault.
#[derive(Debug, Clone)]
pub(crate) struct ConfigFault {
    pub node: usize,
    pub callee: usize,
    pub key: String,
    pub new_ms: f64,
}

/// The new code path of a feature-flag fault.
#[derive(Debug, Clone)]
pub(crate) struct FlagFault {
    pub node: usize,
    pub key: String,
    pub feature: &'static str,
    pub lat_ms: f64,
    pub err: f64,
}

/// Times that decide which log lines a faulty service writes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Phases {
    /// Memory leak: GC pauses grow from here; out-of-memory errors from `fault_time`.
    pub gc_from: Ts,
    /// Early error burst of a symptom service (a red herring): node, from, to.
    pub burst: Option<(usize, Ts, Ts)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub kind: FaultKind,
    pub cause: Option<usize>,
    /// When the fault was injected (for `none`, when the spurious alert's blip began).
    pub fault_time: Ts,
    pub effects: Vec<Vec<Effect>>,
    pub edge_faults: Vec<Option<EdgeFault>>,
    pub noisy: Vec<Noisy>,
    pub batches: Vec<Batch>,
    pub changes: Vec<Change>,
    pub config: Option<ConfigFault>,
    pub flag: Option<FlagFault>,
    pub phases: Phases,
}

impl Plan {
    pub(crate) fn new(sys: &System, kind: FaultKind, fault_time: Ts) -> Plan {
        Plan {
            kind,
            cause: None,
            fault_time,
            effects: vec![Vec::new(); sys.nodes.len()],
            edge_faults: vec![None; sys.edges.len()],
            noisy: Vec::new(),
            batches: Vec::new(),
            changes: Vec::new(),
            config: None,
            flag: None,
            phases: Phases::default(),
        }
    }

    pub(crate) fn add(&mut self, node: usize, target: Target, shape: Shape, mag: f64) {
        if let Some(list) = self.effects.get_mut(node) {
            list.push(Effect { target, shape, mag });
        }
    }

    pub(crate) fn own(&self, node: usize, t: Ts) -> Own {
        let mut o = Own::default();
        let Some(list) = self.effects.get(node) else {
            return o;
        };
        for e in list {
            let v = e.mag * e.shape.at(t);
            if v == 0.0 {
                continue;
            }
            match e.target {
                Target::LatMult => o.lat_mult *= 1.0 + v,
                Target::LatAdd => o.lat_add += v,
                Target::Err => o.err += v,
                Target::Cpu => o.cpu += v,
                Target::Mem => o.mem += v,
                Target::Gc => o.gc += v,
                Target::Conn => o.conn += v,
                Target::QueueDepth => o.qdepth += v,
                Target::PathFrac => o.path_frac += v,
            }
        }
        o.err = o.err.clamp(0.0, 1.0);
        o.conn = o.conn.clamp(0.0, 1.0);
        o.path_frac = o.path_frac.clamp(0.0, 1.0);
        o
    }

    /// Whether `node` is the cause and the fault has begun at `t`.
    pub(crate) fn is_cause_active(&self, node: usize, t: Ts) -> bool {
        self.cause == Some(node) && t >= self.fault_time
    }

    /// The caller's timeout for edge `e` at `t` (ms).
    pub(crate) fn timeout_ms(&self, sys: &System, e: usize, t: Ts) -> f64 {
        let base = sys.edges[e].timeout_ms;
        match self.edge_faults.get(e).copied().flatten() {
            Some(EdgeFault { mode: FailMode::Timeout { new_ms }, shape, .. }) if shape.at(t) > 0.0 => new_ms,
            _ => base,
        }
    }

    /// Attempts the caller makes on edge `e`.
    pub(crate) fn attempts(&self, sys: &System, e: usize) -> u32 {
        self.edge_faults.get(e).copied().flatten().map(|f| f.attempts).unwrap_or(sys.edges[e].attempts).max(1)
    }

    /// Expected per-attempt failure probability of edge `e` at `t`, and what a failure costs (ms).
    pub(crate) fn edge_failure(&self, sys: &System, e: usize, t: Ts) -> (f64, f64) {
        let Some(f) = self.edge_faults.get(e).copied().flatten() else {
            return (0.0, 0.0);
        };
        let s = f.shape.at(t);
        match f.mode {
            FailMode::Loss | FailMode::PoolWait => ((f.p * s).clamp(0.0, 1.0), f.wait_ms),
            FailMode::Timeout { new_ms } => {
                if s <= 0.0 {
                    return (0.0, 0.0);
                }
                let callee = sys.edges[e].callee;
                let o = self.own(callee, t);
                let median = (sys.p50[callee] * o.lat_mult + o.lat_add).max(0.01);
                let z = (new_ms / median).ln() / 0.55;
                (super::rng::normal_sf(z), new_ms)
            }
        }
    }
}

/// Expected deviation of a service's metrics from normal at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra {
    pub p50: f64,
    pub p99: f64,
    pub err: f64,
}

/// Gains of one service's trouble at each of its transitive callers.
#[derive(Debug, Clone)]
struct Reach {
    source: usize,
    /// Per node: (p50 gain, p99 gain, error gain, lag).
    gain: Vec<(f64, f64, f64, Ts)>,
}

/// The analytic model of how trouble spreads upward through the call graph.
#[derive(Debug, Clone)]
pub(crate) struct Propagation {
    reach: Vec<Reach>,
}

/// Per-edge gains for p50, p99 and errors.
fn edge_gains(sys: &System, e: usize) -> (f64, f64, f64) {
    let edge = &sys.edges[e];
    let w = edge.w;
    let async_publish = sys.nodes[edge.callee].role == Role::Queue && sys.nodes[edge.caller].role != Role::Notification;
    let lat = if async_publish { 0.3 } else { edge.lat_gain };
    let g50 = lat * (w / 0.5).min(1.0);
    let g99 = lat * (w / 0.05).min(1.0);
    let gerr = edge.err_gain * w.min(1.0);
    (g50, g99, gerr)
}

impl Propagation {
    pub(crate) fn new(sys: &System, plan: &Plan) -> Propagation {
        let n = sys.nodes.len();
        let mut active = vec![false; n];
        for (i, list) in plan.effects.iter().enumerate() {
            if !list.is_empty() {
                active[i] = true;
            }
        }
        for (e, f) in plan.edge_faults.iter().enumerate() {
            if f.is_some() {
                active[sys.edges[e].caller] = true;
            }
        }
        let mut reach = Vec::new();
        for (d, &is_active) in active.iter().enumerate() {
            if !is_active {
                continue;
            }
            let mut gain = vec![(0.0, 0.0, 0.0, Ts::MAX); n];
            gain[d] = (1.0, 1.0, 1.0, 0);
            for s in (0..d).rev() {
                let (mut a, mut b, mut c, mut lag) = (0.0, 0.0, 0.0, Ts::MAX);
                for &e in &sys.out[s] {
                    let callee = sys.edges[e].callee;
                    let g = gain[callee];
                    if g.3 == Ts::MAX {
                        continue;
                    }
                    let (g50, g99, gerr) = edge_gains(sys, e);
                    a += g50 * g.0;
                    b += g99 * g.1;
                    c += gerr * g.2;
                    lag = lag.min(g.3 + sys.edges[e].lag);
                }
                if lag != Ts::MAX {
                    gain[s] = (a.min(1.0), b.min(1.0), c.min(1.0), lag);
                }
            }
            gain[d] = (0.0, 0.0, 0.0, Ts::MAX);
            reach.push(Reach { source: d, gain });
        }
        Propagation { reach }
    }

    /// The service's own contribution: its effects plus failures of the calls it makes.
    pub(crate) fn local(sys: &System, plan: &Plan, s: usize, t: Ts) -> Extra {
        let node = &sys.nodes[s];
        let o = plan.own(s, t);
        let self_p99 = node.self_ms * (2.33 * node.sigma).exp();
        let mut x = Extra {
            p50: node.self_ms * (o.lat_mult - 1.0) + o.lat_add,
            p99: self_p99 * (o.lat_mult - 1.0) + o.lat_add * 1.2,
            err: o.err,
        };
        if o.path_frac > 0.0 {
            if let Some(flag) = plan.flag.as_ref().filter(|f| f.node == s) {
                x.p99 += flag.lat_ms * 1.3 * (o.path_frac / 0.02).min(1.0);
                x.p50 += flag.lat_ms * ((o.path_frac - 0.3) / 0.4).clamp(0.0, 1.0);
                x.err += o.path_frac * flag.err;
            }
        }
        for &e in &sys.out[s] {
            let (p, cost) = plan.edge_failure(sys, e, t);
            if p <= 0.0 {
                continue;
            }
            let w = sys.edges[e].w;
            let attempts = plan.attempts(sys, e);
            let mut pk = 1.0;
            for _ in 0..attempts {
                pk *= p;
                x.p99 += cost * (w * pk / 0.01).min(1.0);
                x.p50 += cost * ((w * pk - 0.3) / 0.4).clamp(0.0, 1.0);
            }
            x.err += w.min(1.0) * pk;
        }
        x
    }

    /// The service's total deviation: its own plus what its callees pass up.
    pub(crate) fn extra(&self, sys: &System, plan: &Plan, s: usize, t: Ts) -> Extra {
        let mut x = Self::local(sys, plan, s, t);
        for r in &self.reach {
            let (g50, g99, gerr, lag) = r.gain[s];
            if lag == Ts::MAX {
                continue;
            }
            let l = Self::local(sys, plan, r.source, t - lag);
            x.p50 += g50 * l.p50;
            x.p99 += g99 * l.p99;
            x.err += gerr * l.err;
        }
        x.err = x.err.clamp(0.0, 1.0);
        x
    }

    /// Extra requests per second reaching `s` from retries, relative to its normal rate.
    pub(crate) fn load(sys: &System, plan: &Plan, s: usize, t: Ts) -> f64 {
        let base = sys.rel_rps[s].max(1e-9);
        let mut extra = 0.0;
        for &e in &sys.inc[s] {
            let (p, _) = plan.edge_failure(sys, e, t);
            if p <= 0.0 {
                continue;
            }
            let edge = &sys.edges[e];
            let attempts = plan.attempts(sys, e);
            let mut more = 0.0;
            let mut pk = 1.0;
            for _ in 1..attempts {
                pk *= p;
                more += pk;
            }
            extra += sys.rel_rps[edge.caller] * edge.w * more;
        }
        extra / base
    }
}
