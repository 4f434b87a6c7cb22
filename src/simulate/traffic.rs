//! Requests through the simulated system: the spans of each trace and the log lines they write.
//!
//! Requests arrive at the frontend (and at the queue consumer) as a Poisson process following the
//! daily traffic shape. Each request walks the call graph: a span per service with self time drawn
//! from the service's latency model under the plan's effects, children called in sequence,
//! injected call failures (lost packets, pool waits, a too-short timeout) with retries, and errors
//! passing up to callers. Every span writes a few log lines; services also write periodic and event
//! lines (health, stats, deploy, config reload, batch jobs, GC trouble).
//!
//! Each minute is generated from its own random stream, in parallel, and concatenated in order, so
//! the output is the same on any number of threads.

use super::effects::{FailMode, Plan};
use super::logs::{self, Tpl, Vars};
use super::metrics::season;
use super::rng::{self, SimRng};
use super::topology::{Role, System};
use super::{FaultKind, SimConfig};
use crate::model::{ChangeKind, Level, LogRecord, Span, Ts, MINUTE};
use rand::Rng;
use rayon::prelude::*;

/// Per-node data prepared once: template choices and operation weights.
struct Prepared {
    templates: Vec<Vec<&'static Tpl>>,
    tpl_weights: Vec<Vec<f64>>,
    op_weights: Vec<Vec<f64>>,
    lines: Vec<f64>,
}

pub(crate) fn generate(sys: &System, plan: &Plan, cfg: &SimConfig) -> (Vec<LogRecord>, Vec<Span>) {
    let templates: Vec<Vec<&'static Tpl>> = sys.nodes.iter().map(|n| logs::templates(n.role)).collect();
    let tpl_weights = templates.iter().map(|ts| ts.iter().map(|t| t.weight).collect()).collect();
    let prepared = Prepared {
        templates,
        tpl_weights,
        op_weights: sys.nodes.iter().map(|n| n.ops.iter().map(|o| o.weight).collect()).collect(),
        lines: sys.nodes.iter().map(|n| logs::lines_per_span(n.role)).collect(),
    };
    let end = cfg.start + cfg.duration;
    let buckets: Vec<Ts> = (0..).map(|i: i64| cfg.start + i * MINUTE).take_while(|&t| t < end).collect();
    let parts: Vec<(Vec<LogRecord>, Vec<Span>)> = buckets
        .par_iter()
        .enumerate()
        .map(|(b, &t0)| {
            let t1 = (t0 + MINUTE).min(end);
            let mut rng = rng::stream(cfg.seed, &[rng::TRAFFIC, b as u64]);
            let mut g = Gen {
                sys,
                plan,
                prep: &prepared,
                rng: &mut rng,
                spans: Vec::new(),
                logs: Vec::new(),
                trace_id: String::new(),
                vars_user: 0,
                vars_order: 0,
            };
            g.bucket(cfg.requests_per_second, t0, t1);
            (g.logs, g.spans)
        })
        .collect();
    let n_logs = parts.iter().map(|p| p.0.len()).sum();
    let n_spans = parts.iter().map(|p| p.1.len()).sum();
    let mut all_logs = Vec::with_capacity(n_logs);
    let mut all_spans = Vec::with_capacity(n_spans);
    for (l, s) in parts {
        all_logs.extend(l);
        all_spans.extend(s);
    }
    // Stable sorts: equal times keep generation order, so the result is deterministic.
    all_logs.par_sort_by_key(|r| r.time);
    all_spans.par_sort_by_key(|s| s.start);
    (all_logs, all_spans)
}

/// Why a span failed.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Own,
    Timeout { callee: usize, ms: f64, attempts: u32 },
    Reset { callee: usize },
    Pool { callee: usize },
    Upstream { callee: usize },
}

struct Outcome {
    dur: f64,
    error: bool,
}

struct Gen<'a, 'r> {
    sys: &'a System,
    plan: &'a Plan,
    prep: &'a Prepared,
    rng: &'r mut SimRng,
    spans: Vec<Span>,
    logs: Vec<LogRecord>,
    trace_id: String,
    vars_user: u32,
    vars_order: u64,
}

fn hex64(rng: &mut SimRng) -> String {
    format!("{:016x}", rng.gen::<u64>())
}

impl Gen<'_, '_> {
    fn bucket(&mut self, rate: f64, t0: Ts, t1: Ts) {
        let sys = self.sys;
        let secs = (t1 - t0) as f64 / 1000.0;
        let shape = season(t0 + (t1 - t0) / 2);
        let mut arrivals: Vec<(f64, usize)> = Vec::new();
        for (i, node) in sys.nodes.iter().enumerate() {
            if !node.root {
                continue;
            }
            let n = rng::poisson(self.rng, rate * sys.rel_rps[i] * shape * secs);
            for _ in 0..n {
                let at = t0 as f64 + self.rng.gen::<f64>() * (t1 - t0) as f64;
                arrivals.push((at, i));
            }
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (at, root) in arrivals {
            self.trace_id = format!("{:032x}", self.rng.gen::<u128>());
            self.vars_user = self.rng.gen_range(1..60_000);
            self.vars_order = self.rng.gen::<u64>() & 0xFFFF_FFFF;
            self.visit(root, None, None, at);
        }
        self.background(t0, t1);
    }

    fn log(&mut self, t: f64, node: usize, level: Level, message: String, span_id: Option<&str>) {
        let mut attributes = Vec::new();
        if let Some(id) = span_id {
            attributes.push(("trace_id".to_string(), self.trace_id.clone()));
            attributes.push(("span_id".to_string(), id.to_string()));
        }
        self.logs.push(LogRecord {
            time: t as Ts,
            nanos: 0,
            service: self.sys.nodes[node].name.clone(),
            level,
            message,
            attributes,
        });
    }

    fn visit(&mut self, node: usize, parent: Option<&str>, caller: Option<usize>, start: f64) -> Outcome {
        let sys = self.sys;
        let plan = self.plan;
        let t = start as Ts;
        let nd = &sys.nodes[node];
        let own = plan.own(node, t);
        let oi = if nd.role == Role::Queue {
            let consumer = caller.is_some_and(|c| sys.nodes[c].role == Role::Notification);
            usize::from(consumer).min(nd.ops.len().saturating_sub(1))
        } else {
            rng::weighted(self.rng, &self.prep.op_weights[node])
        };
        let Some(op) = nd.ops.get(oi) else {
            return Outcome { dur: 0.0, error: false };
        };
        let span_id = hex64(self.rng);
        let slot = self.spans.len();
        self.spans.push(Span {
            trace_id: self.trace_id.clone(),
            span_id: span_id.clone(),
            parent_id: parent.map(str::to_string),
            service: nd.name.clone(),
            operation: op.name.clone(),
            start: t,
            duration_ms: 0.0,
            error: false,
        });
        let flag = plan.flag.as_ref().filter(|f| f.node == node);
        let flag_path = own.path_frac > 0.0 && self.rng.gen::<f64>() < own.path_frac;
        let mut self_ms = rng::lognormal(self.rng, nd.self_ms, nd.sigma) * own.lat_mult;
        if own.lat_add > 0.0 {
            self_ms += own.lat_add * rng::uniform(self.rng, 0.7, 1.3);
        }
        if let (true, Some(f)) = (flag_path, flag) {
            self_ms += f.lat_ms * rng::uniform(self.rng, 0.6, 1.4);
        }
        let pre = self_ms * rng::uniform(self.rng, 0.2, 0.5);
        let mut cursor = start + pre;
        let mut failure: Option<Failure> = None;
        for call in &op.calls {
            if self.rng.gen::<f64>() >= call.prob {
                continue;
            }
            for _ in 0..call.repeat {
                let (waited, fail) = self.call_edge(node, call.edge, &span_id, cursor);
                cursor += waited;
                if failure.is_none() {
                    failure = fail;
                }
            }
        }
        let dur = cursor + (self_ms - pre) - start;
        let own_err = own.err + if flag_path { flag.map_or(0.0, |f| f.err) } else { 0.0 };
        if failure.is_none() && self.rng.gen::<f64>() < own_err {
            failure = Some(Failure::Own);
        }
        let error = failure.is_some();
        if let Some(span) = self.spans.get_mut(slot) {
            span.duration_ms = (dur * 1000.0).round() / 1000.0;
            span.error = error;
        }
        self.span_logs(node, oi, &span_id, start, dur, failure, flag_path);
        Outcome { dur, error }
    }

    /// One logical call from `caller` over edge `e`, with retries. Returns the time the caller
    /// waited and the failure it saw.
    fn call_edge(&mut self, caller: usize, e: usize, span_id: &str, at: f64) -> (f64, Option<Failure>) {
        let sys = self.sys;
        let plan = self.plan;
        let edge = &sys.edges[e];
        let callee = edge.callee;
        let fault = plan.edge_faults.get(e).copied().flatten();
        let attempts = plan.attempts(sys, e);
        let mut waited = 0.0;
        let mut last = None;
        for attempt in 1..=attempts {
            let now = at + waited;
            let tnow = now as Ts;
            let timeout = plan.timeout_ms(sys, e, tnow);
            let injected = match fault {
                Some(f) if matches!(f.mode, FailMode::Loss | FailMode::PoolWait) => {
                    let (p, _) = plan.edge_failure(sys, e, tnow);
                    (self.rng.gen::<f64>() < p).then_some(f)
                }
                _ => None,
            };
            let fail = match injected {
                Some(f) if f.mode == FailMode::Loss => {
                    if self.rng.gen::<bool>() {
                        waited += timeout;
                        let msg = format!(
                            "timeout calling {} after {:.0}ms (attempt {attempt}/{attempts})",
                            sys.nodes[callee].name, timeout
                        );
                        self.log(now + timeout, caller, Level::Warn, msg, Some(span_id));
                        Failure::Timeout { callee, ms: timeout, attempts }
                    } else {
                        let child = self.visit(callee, Some(span_id), Some(caller), now);
                        let w = child.dur * rng::uniform(self.rng, 0.3, 1.0);
                        waited += w;
                        let msg = format!(
                            "connection reset by peer calling {} (10.{}.{}.{}:8080)",
                            sys.nodes[callee].name,
                            self.rng.gen_range(0..8),
                            self.rng.gen_range(0..255),
                            self.rng.gen_range(1..255)
                        );
                        self.log(now + w, caller, Level::Warn, msg, Some(span_id));
                        Failure::Reset { callee }
                    }
                }
                Some(f) => {
                    // No pooled connection: the request never reaches the database.
                    waited += f.wait_ms;
                    let max = sys.nodes[callee].pool_max;
                    let msg = format!(
                        "timeout acquiring connection from pool '{}' after {:.0}ms (active={max:.0}, max={max:.0}, waiting={})",
                        sys.nodes[callee].name,
                        f.wait_ms,
                        self.rng.gen_range(5..60)
                    );
                    self.log(now + f.wait_ms, caller, Level::Error, msg, Some(span_id));
                    if self.rng.gen::<f64>() < 0.2 {
                        let msg = format!(
                            "connection pool exhausted: {max:.0}/{max:.0} connections to {} in use",
                            sys.nodes[callee].name
                        );
                        self.log(now + f.wait_ms, caller, Level::Warn, msg, Some(span_id));
                    }
                    Failure::Pool { callee }
                }
                None => {
                    let child = self.visit(callee, Some(span_id), Some(caller), now);
                    if child.dur > timeout {
                        waited += timeout;
                        let msg = match plan.config.as_ref().filter(|c| c.node == caller && c.callee == callee) {
                            Some(c) => format!(
                                "timeout calling {} after {:.0}ms ({}={:.0}, attempt {attempt}/{attempts})",
                                sys.nodes[callee].name, timeout, c.key, c.new_ms
                            ),
                            None => format!(
                                "timeout calling {} after {:.0}ms (attempt {attempt}/{attempts})",
                                sys.nodes[callee].name, timeout
                            ),
                        };
                        self.log(now + timeout, caller, Level::Warn, msg, Some(span_id));
                        Failure::Timeout { callee, ms: timeout, attempts }
                    } else {
                        waited += child.dur;
                        if !child.error {
                            return (waited, None);
                        }
                        if self.rng.gen::<f64>() < edge.err_gain {
                            return (waited, Some(Failure::Upstream { callee }));
                        }
                        let msg = format!("{} call failed, serving fallback response", sys.nodes[callee].name);
                        self.log(now + child.dur, caller, Level::Warn, msg, Some(span_id));
                        return (waited, None);
                    }
                }
            };
            last = Some(fail);
            if attempt < attempts {
                let msg = format!("retrying call to {} (attempt {}/{attempts})", sys.nodes[callee].name, attempt + 1);
                self.log(at + waited, caller, Level::Info, msg, Some(span_id));
            }
        }
        (waited, last)
    }

    #[allow(clippy::too_many_arguments)]
    fn span_logs(
        &mut self,
        node: usize,
        oi: usize,
        span_id: &str,
        start: f64,
        dur: f64,
        failure: Option<Failure>,
        flag_path: bool,
    ) {
        let sys = self.sys;
        let plan = self.plan;
        let prep = self.prep;
        let nd = &sys.nodes[node];
        let op = nd.ops.get(oi).map(|o| o.name.as_str()).unwrap_or("");
        let t = start as Ts;
        let vars = Vars { op, ms: dur, user: self.vars_user, order: self.vars_order };
        // Ordinary lines.
        let mean = prep.lines[node];
        let count = (mean * rng::uniform(self.rng, 0.5, 1.5)).round() as usize;
        let tpls = &prep.templates[node];
        for _ in 0..count {
            let Some(tpl) = tpls.get(rng::weighted(self.rng, &prep.tpl_weights[node])) else {
                break;
            };
            let mut msg = String::with_capacity(96);
            logs::render(&mut msg, tpl.text, &vars, self.rng);
            let at = start + self.rng.gen::<f64>() * dur;
            self.log(at, node, tpl.level, msg, Some(span_id));
        }
        // A slow request.
        if dur > 3.0 * sys.p99[node] && nd.role != Role::Cache {
            let msg = format!("slow request {op}: {dur:.0}ms");
            self.log(start + dur, node, Level::Warn, msg, Some(span_id));
        }
        // The cause's own situation.
        if plan.is_cause_active(node, t)
            || (plan.kind == FaultKind::MemoryLeak && plan.cause == Some(node) && t >= plan.phases.gc_from)
        {
            match plan.kind {
                FaultKind::MemoryLeak if self.rng.gen::<f64>() < 0.25 => {
                    let o = plan.own(node, t);
                    let msg = format!(
                        "GC pause {:.0}ms (heap {:.0}MB / {:.0}MB)",
                        nd.gc_ms + o.gc * rng::uniform(self.rng, 0.5, 1.5),
                        nd.base_mem + o.mem,
                        nd.base_mem * 3.2
                    );
                    self.log(start, node, Level::Warn, msg, Some(span_id));
                }
                FaultKind::CpuHog if self.rng.gen::<f64>() < 0.2 => {
                    let msg = format!(
                        "worker pool saturated: {} requests queued, event loop lag {:.0}ms",
                        self.rng.gen_range(20..400),
                        rng::uniform(self.rng, 50.0, 900.0)
                    );
                    self.log(start, node, Level::Warn, msg, Some(span_id));
                }
                _ => {}
            }
        }
        if let (true, Some(f)) = (flag_path, plan.flag.as_ref()) {
            if self.rng.gen::<f64>() < 0.7 {
                let msg = format!("{} enabled: serving {op} via {} path", f.key, f.feature);
                self.log(start, node, Level::Info, msg, Some(span_id));
            }
        }
        // The status line and, on failure, why.
        let status = if failure.is_some() { 500 } else { 200 };
        if nd.is_app() {
            let msg = format!("{op} -> {status} in {dur:.1}ms");
            self.log(start + dur, node, Level::Info, msg, Some(span_id));
        }
        if let Some(f) = failure {
            let msg = self.failure_message(node, op, t, f, flag_path);
            let level = if matches!(f, Failure::Own) && plan.kind == FaultKind::MemoryLeak && plan.cause == Some(node) {
                Level::Fatal
            } else {
                Level::Error
            };
            self.log(start + dur, node, level, msg, Some(span_id));
        }
    }

    fn failure_message(&mut self, node: usize, op: &str, t: Ts, f: Failure, flag_path: bool) -> String {
        let sys = self.sys;
        let plan = self.plan;
        let nd = &sys.nodes[node];
        let name = |i: usize| sys.nodes[i].name.as_str();
        match f {
            Failure::Timeout { callee, ms, attempts } => {
                if nd.role == Role::Auth && sys.nodes[callee].role == Role::Directory {
                    format!(
                        "authentication failed for user u-{:05}: LDAP bind timed out after {ms:.0}ms ({attempts} attempts)",
                        self.vars_user
                    )
                } else {
                    format!("request {op} failed: upstream {} timed out after {attempts} attempt(s)", name(callee))
                }
            }
            Failure::Reset { callee } => {
                format!("request {op} failed: io error talking to {}: Connection reset by peer", name(callee))
            }
            Failure::Pool { callee } => {
                format!("request {op} failed: could not get a connection to {} (pool exhausted)", name(callee))
            }
            Failure::Upstream { callee } => {
                format!("upstream {} returned 500 for {op}", name(callee))
            }
            Failure::Own => {
                if let Some((b, from, to)) = plan.phases.burst {
                    if b == node && t >= from && t < to {
                        return format!("request {op} failed: 503 Service Unavailable (circuit breaker half-open)");
                    }
                }
                if plan.is_cause_active(node, t) {
                    match plan.kind {
                        FaultKind::BadDeploy => return logs::deploy_exception(&nd.name, op, self.rng),
                        FaultKind::MemoryLeak => return "java.lang.OutOfMemoryError: Java heap space".to_string(),
                        FaultKind::CpuHog => {
                            return format!(
                                "request {op} timed out in worker queue after {:.0}ms",
                                rng::uniform(self.rng, 500.0, 3000.0)
                            )
                        }
                        FaultKind::DbPoolExhaustion => return "FATAL: sorry, too many clients already".to_string(),
                        _ => {}
                    }
                }
                if let (true, Some(fl)) = (flag_path, plan.flag.as_ref()) {
                    return format!(
                        "{} path failed for {op}: IllegalArgumentException: unsupported variant '{}'",
                        fl.feature,
                        fl.key.trim_start_matches("flag.")
                    );
                }
                match nd.role {
                    Role::Database => "ERROR: canceling statement due to statement timeout".to_string(),
                    Role::Cache => "ERR max number of clients reached".to_string(),
                    Role::Directory => "conn closed: result=51 (server busy)".to_string(),
                    Role::Queue => "produce request failed: NOT_LEADER_FOR_PARTITION".to_string(),
                    _ => format!(
                        "internal error handling {op}: {}",
                        match self.rng.gen_range(0..3) {
                            0 => "IllegalStateException: unexpected response shape",
                            1 => "SocketTimeoutException: read timed out",
                            _ => "RuntimeException: invariant violated",
                        }
                    ),
                }
            }
        }
    }

    /// Lines not tied to requests: health checks, stats, and the plan's events in this minute.
    fn background(&mut self, t0: Ts, t1: Ts) {
        let sys = self.sys;
        let plan = self.plan;
        let span = (t1 - t0) as f64;
        for (i, nd) in sys.nodes.iter().enumerate() {
            let at = |r: &mut SimRng| t0 as f64 + r.gen::<f64>() * span;
            let o = plan.own(i, t0);
            match nd.role.kind() {
                "service" => {
                    for _ in 0..2 {
                        let ms = rng::uniform(self.rng, 0.2, 2.0);
                        let t = at(self.rng);
                        self.log(t, i, Level::Debug, format!("GET /healthz 200 {ms:.1}ms"), None);
                    }
                    let t = at(self.rng);
                    let msg = format!(
                        "stats: heap={:.0}MB threads={:.0} gc_pause={:.0}ms",
                        nd.base_mem + o.mem,
                        nd.threads,
                        nd.gc_ms + o.gc
                    );
                    self.log(t, i, Level::Info, msg, None);
                }
                "database" => {
                    let t = at(self.rng);
                    let msg = format!(
                        "checkpoint complete: wrote {} buffers ({:.1}%)",
                        self.rng.gen_range(100..5000),
                        rng::uniform(self.rng, 0.5, 6.0)
                    );
                    self.log(t, i, Level::Info, msg, None);
                    if o.conn > 0.9 {
                        let t = at(self.rng);
                        let msg =
                            format!("connection count {:.0} reached max_connections {:.0}", nd.pool_max, nd.pool_max);
                        self.log(t, i, Level::Warn, msg, None);
                    }
                }
                "cache" => {
                    let t = at(self.rng);
                    let msg =
                        format!("{} clients connected, used_memory={:.0}MB", self.rng.gen_range(20..120), nd.base_mem);
                    self.log(t, i, Level::Info, msg, None);
                }
                "queue" => {
                    let t = at(self.rng);
                    let msg = format!(
                        "partition order-events-{} consumer lag {}",
                        self.rng.gen_range(0..6),
                        self.rng.gen_range(0..40) + o.qdepth as i64
                    );
                    self.log(t, i, Level::Info, msg, None);
                }
                _ => {
                    let t = at(self.rng);
                    let msg = format!("connection stats: {} active", self.rng.gen_range(5..60));
                    self.log(t, i, Level::Info, msg, None);
                }
            }
            if plan.noisy.iter().any(|n| n.node == i) && self.rng.gen::<f64>() < 0.5 {
                let t = at(self.rng);
                let msg = format!("slow disk: fsync took {:.0}ms", rng::uniform(self.rng, 200.0, 1500.0));
                self.log(t, i, Level::Warn, msg, None);
            }
        }
        // Changes take effect with a few lines from the changed service.
        for c in &plan.changes {
            if c.time < t0 || c.time >= t1 {
                continue;
            }
            let Some(i) = sys.index(&c.service) else {
                continue;
            };
            let t = c.time as f64;
            match c.kind {
                ChangeKind::Deploy => {
                    let version = c.version.clone().unwrap_or_default();
                    let prev = c.previous_version.clone().unwrap_or_default();
                    self.log(t, i, Level::Info, format!("Starting {} {version} (previous {prev})", c.service), None);
                    let boot = rng::uniform(self.rng, 4.0, 12.0);
                    self.log(
                        t + boot * 1000.0,
                        i,
                        Level::Info,
                        format!("{} {version} started in {boot:.1}s, listening on 0.0.0.0:8080", c.service),
                        None,
                    );
                }
                ChangeKind::Config => {
                    for k in &c.keys {
                        let msg = format!(
                            "configuration reloaded: {} changed from {} to {}",
                            k.key,
                            k.old.as_deref().unwrap_or("unset"),
                            k.new.as_deref().unwrap_or("unset")
                        );
                        self.log(t, i, Level::Info, msg, None);
                    }
                }
                ChangeKind::Flag => {
                    for k in &c.keys {
                        let msg = format!(
                            "feature flag {} changed: {} -> {}",
                            k.key,
                            k.old.as_deref().unwrap_or("unset"),
                            k.new.as_deref().unwrap_or("unset")
                        );
                        self.log(t, i, Level::Info, msg, None);
                    }
                }
            }
        }
        // Batch jobs start and finish.
        for b in &plan.batches {
            let mut k = 0i64;
            loop {
                let s = b.first + k * b.period;
                if s >= t1 {
                    break;
                }
                if s >= t0 {
                    self.log(s as f64, b.node, Level::Info, format!("batch job {} started", b.job), None);
                }
                let e = s + b.width;
                if e >= t0 && e < t1 {
                    let msg = format!(
                        "batch job {} finished: processed {} records in {:.1}s",
                        b.job,
                        self.rng.gen_range(10_000..500_000),
                        b.width as f64 / 1000.0
                    );
                    self.log(e as f64, b.node, Level::Info, msg, None);
                }
                k += 1;
            }
        }
        // The cause's periodic complaints.
        if let Some(c) = plan.cause {
            let t = t0 as f64 + self.rng.gen::<f64>() * span;
            match plan.kind {
                FaultKind::MemoryLeak if t0 >= plan.phases.gc_from => {
                    let pct = rng::uniform(self.rng, 20.0, 60.0);
                    self.log(t, c, Level::Warn, format!("GC overhead high: {pct:.0}% of time spent in GC"), None);
                    if t0 >= plan.fault_time {
                        self.log(
                            t,
                            c,
                            Level::Error,
                            "java.lang.OutOfMemoryError: GC overhead limit exceeded".into(),
                            None,
                        );
                    }
                }
                FaultKind::CpuHog if t0 >= plan.fault_time => {
                    let lag = rng::uniform(self.rng, 200.0, 2000.0);
                    self.log(t, c, Level::Warn, format!("event loop blocked for {lag:.0}ms"), None);
                }
                _ => {}
            }
        }
    }
}
