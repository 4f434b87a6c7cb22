//! What happens in one simulated incident: the injected fault, the red herrings, the alert and the truth.
//!
//! Everything here is decided up front from the seed, as a [`Plan`]; metrics and traffic only render
//! it. The fault is chosen to fit its service (a pool exhausts at the database, a timeout is
//! lowered on a service that calls a dependency), the alert fires on a symptom service where the
//! fault actually shows, and the truth's chain is the call path from the cause up to that service.

use super::effects::{Batch, ConfigFault, EdgeFault, FailMode, FlagFault, Noisy, Plan, Propagation, Shape, Target};
use super::rng::{self, SimRng};
use super::topology::{Node, Role, System};
use super::{FaultKind, SimConfig, MIN_DURATION};
use crate::model::{Alert, Change, ChangeKind, KeyChange, Severity, Truth, Ts, HOUR, MINUTE, SECOND};
use rand::seq::SliceRandom;
use rand::Rng;

pub(crate) struct Scenario {
    pub plan: Plan,
    pub alert: Alert,
    pub truth: Truth,
    pub analysis_start: Ts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Herring {
    Deploy,
    Noisy,
    Burst,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Latency,
    Errors,
}

/// The injected fault: where, and what the truth calls its indicator.
struct Injected {
    cause: usize,
    indicator: String,
    prefer: Option<Signal>,
}

const AUTHORS: &[&str] = &["deploy-bot", "ci-pipeline", "alice", "bob", "carol", "dmitri", "priya", "sre-oncall"];

const BATCH_JOBS: &[&str] =
    &["reindex-products", "sync-inventory", "expire-sessions", "rollup-metrics", "compact-events", "export-reports"];

/// Time helpers for one window: minute-scale constants shrink with windows shorter than an hour.
#[derive(Clone, Copy)]
struct Clock {
    start: Ts,
    end: Ts,
    scale: f64,
}

impl Clock {
    fn mins(self, m: f64) -> Ts {
        (m * self.scale * MINUTE as f64) as Ts
    }
}

fn secs(s: f64) -> Ts {
    (s * SECOND as f64) as Ts
}

pub(crate) fn build(sys: &System, cfg: &SimConfig, kind: FaultKind) -> Scenario {
    let mut rng = rng::stream(cfg.seed, &[rng::SCENARIO]);
    let start = cfg.start;
    let duration = cfg.duration.max(MIN_DURATION);
    let end = start + duration;
    let clock = Clock { start, end, scale: duration.min(HOUR) as f64 / HOUR as f64 };
    let fault_time = (end - clock.mins(rng::uniform(&mut rng, 15.0, 25.0))) / SECOND * SECOND;
    let delay = clock.mins(rng::uniform(&mut rng, 1.0, 5.0)) / SECOND * SECOND;
    let alert_time = fault_time + delay;
    let analysis_start = alert_time - clock.mins(30.0);

    let mut pool = vec![Herring::Deploy, Herring::Noisy, Herring::Batch];
    if !matches!(kind, FaultKind::None | FaultKind::MemoryLeak | FaultKind::ConfigChange) {
        pool.push(Herring::Burst);
    }
    pool.shuffle(&mut rng);
    let count = rng.gen_range(1..=3usize).min(pool.len());
    let herrings: Vec<Herring> = pool[..count].to_vec();
    let slow = herrings.contains(&Herring::Burst);

    let mut plan = Plan::new(sys, kind, fault_time);
    let injected = inject(sys, &mut plan, &mut rng, cfg.seed, kind, clock, alert_time, slow);

    let (alert, truth) = match injected {
        Some(inj) => {
            let prop = Propagation::new(sys, &plan);
            let (alert_node, signal) = choose_alert(sys, &plan, &prop, &mut rng, &inj, alert_time);
            let chain = best_path(sys, inj.cause, alert_node);
            let alert = make_alert(sys, &plan, &prop, &mut rng, alert_node, signal, alert_time);
            add_herrings(sys, &mut plan, &mut rng, &herrings, clock, Some(&chain));
            if cfg.decoy {
                // Its own stream, so the rest of the incident is the same with or without it.
                let mut drng = rng::stream(cfg.seed, &[rng::SCENARIO, rng::DECOY]);
                add_decoy(sys, &mut plan, &mut drng, &chain, inj.cause);
            }
            let truth = Truth {
                service: sys.nodes[inj.cause].name.clone(),
                indicator: inj.indicator,
                kind: kind.as_str().to_string(),
                chain: chain.iter().map(|&i| sys.nodes[i].name.clone()).collect(),
                location: None,
            };
            (alert, truth)
        }
        None => {
            add_herrings(sys, &mut plan, &mut rng, &herrings, clock, None);
            // A spurious alert: a noisy metric or a transient blip crossing its threshold.
            let noisy = plan.noisy.iter().find(|n| n.metric != "cpu").map(|n| (n.node, n.metric));
            let (node, signal) = match noisy {
                Some((node, metric)) => (node, if metric == "error_rate" { Signal::Errors } else { Signal::Latency }),
                None => {
                    let apps: Vec<usize> =
                        (0..sys.nodes.len()).filter(|&i| sys.nodes[i].is_app() && sys.reachable[i]).collect();
                    let node = if rng.gen::<f64>() < 0.6 {
                        sys.frontend
                    } else {
                        rng::choose(&mut rng, &apps).copied().unwrap_or(sys.frontend)
                    };
                    let signal = if rng.gen::<bool>() { Signal::Latency } else { Signal::Errors };
                    (node, signal)
                }
            };
            let blip = Shape::Window {
                start: alert_time - secs(rng::uniform(&mut rng, 60.0, 150.0)),
                ramp: secs(15.0),
                end: alert_time + secs(rng::uniform(&mut rng, 30.0, 90.0)),
            };
            plan.fault_time = blip.start();
            match signal {
                Signal::Latency => {
                    let m = sys.p99[node] * rng::uniform(&mut rng, 1.0, 2.0);
                    plan.add(node, Target::LatAdd, blip, m);
                }
                Signal::Errors => {
                    let m = rng::uniform(&mut rng, 0.03, 0.08);
                    plan.add(node, Target::Err, blip, m);
                }
            }
            let prop = Propagation::new(sys, &plan);
            let mut alert = make_alert(sys, &plan, &prop, &mut rng, node, signal, alert_time);
            alert.severity = Severity::High;
            let truth = Truth {
                service: String::new(),
                indicator: String::new(),
                kind: FaultKind::None.as_str().to_string(),
                chain: Vec::new(),
                location: None,
            };
            (alert, truth)
        }
    };
    plan.changes.sort_by(|a, b| a.time.cmp(&b.time).then(a.service.cmp(&b.service)));
    Scenario { plan, alert, truth, analysis_start }
}

/// A reachable non-frontend service passing `filter`, favouring busy ones.
fn pick(sys: &System, rng: &mut SimRng, filter: impl Fn(usize) -> bool) -> Option<usize> {
    let cands: Vec<usize> = (0..sys.nodes.len())
        .filter(|&i| i != sys.frontend && sys.reachable[i] && !sys.inc[i].is_empty() && filter(i))
        .collect();
    let weights: Vec<f64> = cands.iter().map(|&i| 0.1 + sys.rel_rps[i].min(1.0)).collect();
    if cands.is_empty() {
        return None;
    }
    cands.get(rng::weighted(rng, &weights)).copied()
}

fn version_str(v: (u32, u32, u32)) -> String {
    format!("v{}.{}.{}", v.0, v.1, v.2)
}

fn bump(rng: &mut SimRng, v: (u32, u32, u32)) -> (u32, u32, u32) {
    if rng.gen::<f64>() < 0.3 {
        (v.0, v.1 + 1, 0)
    } else {
        (v.0, v.1, v.2 + 1)
    }
}

/// A deploy of the next version of `node` at `t` (draws the version bump, then the author).
fn deploy(rng: &mut SimRng, node: &Node, t: Ts) -> Change {
    let new = bump(rng, node.version);
    Change {
        time: t,
        service: node.name.clone(),
        kind: ChangeKind::Deploy,
        author: author(rng),
        version: Some(version_str(new)),
        previous_version: Some(version_str(node.version)),
        keys: Vec::new(),
        description: Some(format!("deploy {} {}", node.name, version_str(new))),
        instances: Vec::new(),
    }
}

fn author(rng: &mut SimRng) -> Option<String> {
    rng::choose(rng, AUTHORS).map(|s| s.to_string())
}

/// Rounds a timeout to a value someone would type into a config file.
fn nice_ms(x: f64) -> f64 {
    let step = if x >= 1000.0 {
        100.0
    } else if x >= 100.0 {
        50.0
    } else if x >= 10.0 {
        5.0
    } else {
        1.0
    };
    ((x / step).round() * step).max(1.0)
}

fn flag_feature(role: Role, rng: &mut SimRng) -> &'static str {
    let options: &[&'static str] = match role {
        Role::Checkout => &["one_click_checkout", "new_checkout_flow", "async_order_events"],
        Role::Catalog => &["catalog_v2_listing", "product_graph_lookup"],
        Role::Cart => &["cart_merge_v2", "persistent_cart"],
        Role::Auth => &["passwordless_login", "session_rotation"],
        Role::Search => &["search_rerank", "semantic_search"],
        Role::Payment => &["3ds_challenge", "payment_router_v2"],
        Role::Recommendation => &["recs_v2_model", "realtime_recs"],
        Role::Pricing => &["dynamic_pricing"],
        _ => &["new_code_path", "batch_lookups", "strict_validation"],
    };
    rng::choose(rng, options).copied().unwrap_or("new_code_path")
}

fn timeout_key(sys: &System, callee: usize) -> String {
    let node = &sys.nodes[callee];
    match node.role {
        Role::Directory => "ldap.timeout_ms".to_string(),
        Role::Database => "db.pool.timeout_ms".to_string(),
        Role::Cache => "redis.timeout_ms".to_string(),
        Role::Queue => "queue.publish.timeout_ms".to_string(),
        _ => format!("http.client.{}.timeout_ms", node.name),
    }
}

#[allow(clippy::too_many_arguments)]
fn inject(
    sys: &System,
    plan: &mut Plan,
    rng: &mut SimRng,
    seed: u64,
    kind: FaultKind,
    clock: Clock,
    alert_time: Ts,
    slow: bool,
) -> Option<Injected> {
    let tf = plan.fault_time;
    let ramp = |rng: &mut SimRng| {
        if slow {
            secs(rng::uniform(rng, 120.0, 240.0))
        } else {
            secs(rng::uniform(rng, 30.0, 90.0))
        }
    };
    let is_app = |i: usize| sys.nodes[i].is_app();
    let injected = match kind {
        FaultKind::None => return None,
        FaultKind::CpuHog => {
            let c = pick(sys, rng, is_app)?;
            let r = ramp(rng);
            let level = (95.0 - sys.nodes[c].base_cpu).max(20.0);
            plan.add(c, Target::Cpu, Shape::Ramp { start: tf, ramp: r, power: 1.0 }, level);
            let m = rng::uniform(rng, 2.0, 5.0);
            plan.add(c, Target::LatMult, Shape::Ramp { start: tf + secs(10.0), ramp: r, power: 1.0 }, m);
            let e = rng::uniform(rng, 0.01, 0.03);
            plan.add(c, Target::Err, Shape::Ramp { start: tf + secs(30.0), ramp: r, power: 1.0 }, e);
            Injected { cause: c, indicator: "cpu".into(), prefer: Some(Signal::Latency) }
        }
        FaultKind::MemoryLeak => {
            let c = pick(sys, rng, is_app)?;
            let t0 = alert_time - clock.mins(rng::uniform(rng, 20.0, 28.0));
            let tg = tf - clock.mins(rng::uniform(rng, 3.0, 6.0));
            let tlim = tf + clock.mins(rng::uniform(rng, 2.0, 4.0));
            let grow = sys.nodes[c].base_mem * rng::uniform(rng, 1.2, 2.0);
            plan.add(c, Target::Mem, Shape::Ramp { start: t0, ramp: tlim - t0, power: 1.3 }, grow);
            let gc = Shape::Ramp { start: tg, ramp: tf + secs(60.0) - tg, power: 1.5 };
            let g = rng::uniform(rng, 150.0, 400.0);
            plan.add(c, Target::Gc, gc, g);
            let l = rng::uniform(rng, 150.0, 500.0);
            plan.add(c, Target::LatAdd, gc, l);
            let u = rng::uniform(rng, 10.0, 25.0);
            plan.add(c, Target::Cpu, gc, u);
            let e = rng::uniform(rng, 0.03, 0.12);
            plan.add(c, Target::Err, Shape::Ramp { start: tf, ramp: secs(60.0), power: 1.0 }, e);
            plan.phases.gc_from = tg;
            let prefer = if rng.gen::<f64>() < 0.7 { Signal::Latency } else { Signal::Errors };
            Injected { cause: c, indicator: "mem".into(), prefer: Some(prefer) }
        }
        FaultKind::Latency => {
            let c = pick(sys, rng, |i| {
                is_app(i) || matches!(sys.nodes[i].role, Role::Cache | Role::Directory | Role::Queue)
            })?;
            let r = if slow { ramp(rng) } else { secs(rng::uniform(rng, 5.0, 30.0)) };
            let add = if is_app(c) { rng::uniform(rng, 300.0, 900.0) } else { rng::uniform(rng, 150.0, 500.0) };
            plan.add(c, Target::LatAdd, Shape::Ramp { start: tf, ramp: r, power: 1.0 }, add);
            if sys.nodes[c].role == Role::Queue {
                plan.add(c, Target::QueueDepth, Shape::Ramp { start: tf, ramp: r, power: 1.0 }, 400.0);
            }
            Injected { cause: c, indicator: "latency".into(), prefer: Some(Signal::Latency) }
        }
        FaultKind::PacketLoss => {
            let c = pick(sys, rng, |_| true)?;
            let r = if slow { ramp(rng) } else { secs(rng::uniform(rng, 5.0, 20.0)) };
            let p = rng::uniform(rng, 0.3, 0.6);
            let shape = Shape::Ramp { start: tf, ramp: r, power: 1.0 };
            for &e in &sys.inc[c] {
                let edge = &sys.edges[e];
                plan.edge_faults[e] = Some(EdgeFault {
                    mode: FailMode::Loss,
                    shape,
                    p,
                    wait_ms: edge.timeout_ms,
                    attempts: edge.attempts.max(2),
                });
            }
            plan.add(c, Target::Err, shape, p * 0.1);
            let l = rng::uniform(rng, 20.0, 80.0);
            plan.add(c, Target::LatAdd, shape, l);
            Injected { cause: c, indicator: "errors".into(), prefer: None }
        }
        FaultKind::BadDeploy => {
            let c = pick(sys, rng, is_app)?;
            plan.changes.push(deploy(rng, &sys.nodes[c], tf));
            let onset = tf + secs(rng::uniform(rng, 10.0, 40.0));
            let shape = Shape::Ramp { start: onset, ramp: ramp(rng), power: 1.0 };
            let e = rng::uniform(rng, 0.10, 0.35);
            plan.add(c, Target::Err, shape, e);
            let m = rng::uniform(rng, 0.2, 0.6);
            plan.add(c, Target::LatMult, shape, m);
            restart_blip(plan, rng, sys, c, tf);
            Injected { cause: c, indicator: "version".into(), prefer: Some(Signal::Errors) }
        }
        FaultKind::ConfigChange => {
            let (s, d) = config_edge(sys, rng, seed)?;
            let e = sys.edge_between(s, d)?;
            let ldap = sys.nodes[d].role == Role::Directory;
            let old_ms = sys.edges[e].timeout_ms;
            let new_ms = if ldap { 500.0 } else { nice_ms(sys.p50[d] * rng::uniform(rng, 1.3, 1.8)) };
            let key = timeout_key(sys, d);
            plan.changes.push(Change {
                time: tf,
                service: sys.nodes[s].name.clone(),
                kind: ChangeKind::Config,
                author: author(rng),
                version: None,
                previous_version: None,
                keys: vec![KeyChange {
                    key: key.clone(),
                    old: Some(format!("{old_ms:.0}")),
                    new: Some(format!("{new_ms:.0}")),
                }],
                description: Some(format!("tighten {} timeout to fail fast", sys.nodes[d].name)),
                instances: Vec::new(),
            });
            plan.edge_faults[e] = Some(EdgeFault {
                mode: FailMode::Timeout { new_ms },
                shape: Shape::Ramp { start: tf, ramp: 0, power: 1.0 },
                p: 0.0,
                wait_ms: new_ms,
                attempts: 4,
            });
            let storm = Shape::Ramp {
                start: tf + secs(rng::uniform(rng, 10.0, 30.0)),
                ramp: secs(rng::uniform(rng, 60.0, 120.0)),
                power: 1.0,
            };
            // The dependency drowns in retries: it looks like the culprit.
            let m = rng::uniform(rng, 2.0, 4.0);
            plan.add(d, Target::LatMult, storm, m);
            let u = rng::uniform(rng, 30.0, 45.0);
            plan.add(d, Target::Cpu, storm, u);
            plan.add(d, Target::Err, storm, 0.005);
            let u = rng::uniform(rng, 8.0, 18.0);
            plan.add(s, Target::Cpu, Shape::Ramp { start: tf + secs(10.0), ramp: secs(60.0), power: 1.0 }, u);
            plan.config = Some(ConfigFault { node: s, callee: d, key: key.clone(), new_ms });
            Injected { cause: s, indicator: key, prefer: Some(Signal::Errors) }
        }
        FaultKind::DbPoolExhaustion => {
            let d = (0..sys.nodes.len()).find(|&i| sys.nodes[i].role == Role::Database)?;
            let sat = Shape::Ramp { start: tf, ramp: secs(rng::uniform(rng, 30.0, 90.0)), power: 1.0 };
            plan.add(d, Target::Conn, sat, 1.0);
            let m = rng::uniform(rng, 2.0, 5.0);
            plan.add(d, Target::LatMult, Shape::Ramp { start: tf, ramp: secs(60.0), power: 1.0 }, m);
            let u = rng::uniform(rng, 8.0, 15.0);
            plan.add(d, Target::Cpu, sat, u);
            plan.add(d, Target::Err, sat, 0.003);
            let p = rng::uniform(rng, 0.12, 0.3);
            let wait = nice_ms(rng::uniform(rng, 2000.0, 5000.0));
            let waits = Shape::Ramp { start: tf + secs(rng::uniform(rng, 20.0, 40.0)), ramp: secs(60.0), power: 1.0 };
            for &e in &sys.inc[d] {
                plan.edge_faults[e] =
                    Some(EdgeFault { mode: FailMode::PoolWait, shape: waits, p, wait_ms: wait, attempts: 1 });
            }
            let prefer = if rng.gen::<bool>() { Signal::Latency } else { Signal::Errors };
            Injected { cause: d, indicator: "connections_active".into(), prefer: Some(prefer) }
        }
        FaultKind::FeatureFlag => {
            let c = pick(sys, rng, is_app)?;
            let feature = flag_feature(sys.nodes[c].role, rng);
            let key = format!("flag.{feature}");
            let frac = *rng::choose(rng, &[0.25, 0.5, 1.0]).unwrap_or(&1.0);
            let r = if slow { ramp(rng) } else { secs(5.0) };
            plan.add(c, Target::PathFrac, Shape::Ramp { start: tf, ramp: r, power: 1.0 }, frac);
            plan.flag = Some(FlagFault {
                node: c,
                key: key.clone(),
                feature,
                lat_ms: rng::uniform(rng, 150.0, 500.0),
                err: rng::uniform(rng, 0.05, 0.15),
            });
            plan.changes.push(Change {
                time: tf,
                service: sys.nodes[c].name.clone(),
                kind: ChangeKind::Flag,
                author: author(rng),
                version: None,
                previous_version: None,
                keys: vec![KeyChange { key: key.clone(), old: Some("false".into()), new: Some("true".into()) }],
                description: Some(format!("enable {feature} for {:.0}% of traffic", frac * 100.0)),
                instances: Vec::new(),
            });
            Injected { cause: c, indicator: key, prefer: None }
        }
    };
    plan.cause = Some(injected.cause);
    Some(injected)
}

/// The service whose timeout is lowered and the dependency it calls.
fn config_edge(sys: &System, rng: &mut SimRng, seed: u64) -> Option<(usize, usize)> {
    if seed % 3 == 1 {
        if let (Some(a), Some(l)) = (sys.index("auth"), sys.index("user-directory")) {
            if sys.edge_between(a, l).is_some() && sys.reachable[a] {
                return Some((a, l));
            }
        }
    }
    let cands: Vec<usize> = (0..sys.edges.len())
        .filter(|&e| {
            let edge = &sys.edges[e];
            let s = edge.caller;
            s != sys.frontend && sys.nodes[s].is_app() && sys.reachable[s] && edge.w >= 0.1
        })
        .collect();
    let weights: Vec<f64> =
        cands.iter().map(|&e| sys.edges[e].w.min(1.0) * (0.2 + sys.rel_rps[sys.edges[e].caller].min(1.0))).collect();
    let e = *cands.get(rng::weighted(rng, &weights))?;
    Some((sys.edges[e].caller, sys.edges[e].callee))
}

/// A restart after a deploy: a short CPU burst, a memory drop that refills, a slow warm-up.
fn restart_blip(plan: &mut Plan, rng: &mut SimRng, sys: &System, node: usize, t: Ts) {
    let cpu = rng::uniform(rng, 15.0, 30.0);
    plan.add(node, Target::Cpu, Shape::Decay { start: t, tau: secs(40.0) }, cpu);
    let mem = -0.3 * sys.nodes[node].base_mem;
    plan.add(node, Target::Mem, Shape::Decay { start: t, tau: 4 * MINUTE }, mem);
    plan.add(node, Target::LatMult, Shape::Decay { start: t, tau: secs(30.0) }, 0.3);
}

fn scores(sys: &System, plan: &Plan, prop: &Propagation, s: usize, t: Ts) -> (f64, f64) {
    let x = prop.extra(sys, plan, s, t);
    let lat = x.p99 / sys.p99[s].max(1e-6) / 0.3;
    let err = x.err / (sys.nodes[s].base_err + 0.003) / 2.0;
    (lat, err)
}

/// The symptom service that alerts, and on which signal.
fn choose_alert(
    sys: &System,
    plan: &Plan,
    prop: &Propagation,
    rng: &mut SimRng,
    inj: &Injected,
    t: Ts,
) -> (usize, Signal) {
    let anc = sys.ancestors(inj.cause);
    let cands: Vec<usize> = (0..sys.nodes.len()).filter(|&i| anc[i]).collect();
    if cands.is_empty() {
        return (inj.cause, inj.prefer.unwrap_or(Signal::Latency));
    }
    let signal = inj.prefer.unwrap_or_else(|| {
        let (l, e) = scores(sys, plan, prop, sys.frontend, t);
        if l >= e {
            Signal::Latency
        } else {
            Signal::Errors
        }
    });
    let score = |s: usize| {
        let (l, e) = scores(sys, plan, prop, s, t);
        match signal {
            Signal::Latency => l,
            Signal::Errors => e,
        }
    };
    if anc[sys.frontend] && score(sys.frontend) >= 1.0 && rng.gen::<f64>() < 0.7 {
        return (sys.frontend, signal);
    }
    let mut best = cands[0];
    let mut best_score = f64::MIN;
    for &c in &cands {
        let sc = score(c);
        if sc > best_score {
            best = c;
            best_score = sc;
        }
    }
    (best, signal)
}

/// The call path from `cause` up to `symptom` along which trouble travels best.
fn best_path(sys: &System, cause: usize, symptom: usize) -> Vec<usize> {
    let n = sys.nodes.len();
    let mut val = vec![0.0f64; n];
    let mut next = vec![usize::MAX; n];
    val[cause] = 1.0;
    for s in (0..cause).rev() {
        for &e in &sys.out[s] {
            let c = sys.edges[e].callee;
            if val[c] <= 0.0 {
                continue;
            }
            let edge = &sys.edges[e];
            let g = (edge.lat_gain + edge.err_gain) * edge.w.clamp(0.05, 1.0) * val[c];
            if g > val[s] {
                val[s] = g;
                next[s] = c;
            }
        }
    }
    let mut path = vec![symptom];
    let mut cur = symptom;
    while cur != cause {
        let nx = next.get(cur).copied().unwrap_or(usize::MAX);
        if nx == usize::MAX {
            break;
        }
        path.push(nx);
        cur = nx;
    }
    if cur != cause {
        path = vec![symptom, cause];
    }
    path.reverse();
    path.dedup();
    path
}

#[allow(clippy::too_many_arguments)]
fn make_alert(
    sys: &System,
    plan: &Plan,
    prop: &Propagation,
    rng: &mut SimRng,
    node: usize,
    signal: Signal,
    t: Ts,
) -> Alert {
    let x = prop.extra(sys, plan, node, t);
    let name = sys.nodes[node].name.clone();
    let (l, e) = scores(sys, plan, prop, node, t);
    let severe = match signal {
        Signal::Latency => l >= 10.0,
        Signal::Errors => e >= 8.0,
    };
    let severity = if severe || rng.gen::<f64>() < 0.15 { Severity::Critical } else { Severity::High };
    let (sig, title) = match signal {
        Signal::Latency => {
            let base = sys.p99[node];
            let value = base + x.p99;
            let threshold = nice_ms((base * 1.5).max(base + 20.0).min(base + 0.7 * x.p99.max(0.0)));
            ("latency", format!("High p99 latency on {name}: {value:.0} ms (threshold {threshold:.0} ms)"))
        }
        Signal::Errors => {
            let base = sys.nodes[node].base_err;
            let value = (base + x.err) * 100.0;
            let threshold = ((base * 3.0).max(0.01) * 100.0).min(value * 0.8);
            ("errors", format!("Elevated error rate on {name}: {value:.1}% (threshold {threshold:.1}%)"))
        }
    };
    Alert { time: t, service: name, signal: sig.to_string(), severity, title }
}

/// Seed 001's hard red herring (`SimConfig::decoy`): an innocent deploy on the first app service
/// above the cause on the chain, 20–90 s before the fault, then 10–20 minutes of extra CPU there
/// (a cache warm-up) with no latency or errors of its own. Skipped when the chain has no such
/// service or the fault is itself a change of that service.
fn add_decoy(sys: &System, plan: &mut Plan, rng: &mut SimRng, chain: &[usize], cause: usize) {
    let Some(&node) = chain.iter().find(|&&i| i != cause && sys.nodes[i].is_app()) else {
        return;
    };
    if plan.changes.iter().any(|c| c.service == sys.nodes[node].name) {
        return;
    }
    let t = (plan.fault_time - secs(rng::uniform(rng, 20.0, 90.0))) / SECOND * SECOND;
    plan.changes.push(deploy(rng, &sys.nodes[node], t));
    let warm = Shape::Window { start: t, ramp: secs(30.0), end: t + secs(rng::uniform(rng, 600.0, 1200.0)) };
    let cpu = rng::uniform(rng, 25.0, 40.0);
    plan.add(node, Target::Cpu, warm, cpu);
}

fn add_herrings(
    sys: &System,
    plan: &mut Plan,
    rng: &mut SimRng,
    herrings: &[Herring],
    clock: Clock,
    chain: Option<&[usize]>,
) {
    let n = sys.nodes.len();
    let cause = plan.cause;
    let tf = plan.fault_time;
    let mut blocked = vec![false; n];
    if let Some(c) = cause {
        blocked[c] = true;
        for (i, d) in sys.descendants(c).into_iter().enumerate() {
            blocked[i] |= d;
        }
    }
    for &i in chain.unwrap_or(&[]) {
        blocked[i] = true;
    }
    if let Some(cfg) = &plan.config {
        blocked[cfg.callee] = true;
    }
    for &h in herrings {
        match h {
            Herring::Deploy => {
                let cands: Vec<usize> = (0..n).filter(|&i| sys.nodes[i].is_app() && !blocked[i]).collect();
                let Some(&h) = rng::choose(rng, &cands) else {
                    continue;
                };
                let mut t = if cause.is_some() && rng.gen::<f64>() < 0.4 {
                    tf - clock.mins(rng::uniform(rng, 2.0, 10.0))
                } else {
                    let lo = clock.start + clock.mins(5.0);
                    let hi = clock.end - clock.mins(5.0);
                    lo + (rng.gen::<f64>() * (hi - lo).max(1) as f64) as Ts
                };
                if (t - tf).abs() < secs(90.0) {
                    t = tf - clock.mins(3.0);
                }
                let t = t.max(clock.start + SECOND) / SECOND * SECOND;
                plan.changes.push(deploy(rng, &sys.nodes[h], t));
                restart_blip(plan, rng, sys, h, t);
            }
            Herring::Noisy => {
                let cands: Vec<usize> = (0..n).filter(|&i| Some(i) != cause).collect();
                let Some(&node) = rng::choose(rng, &cands) else {
                    continue;
                };
                let metric = *rng::choose(rng, &["cpu", "latency_p99", "error_rate"]).unwrap_or(&"cpu");
                plan.noisy.push(Noisy {
                    node,
                    metric,
                    prob: rng::uniform(rng, 0.05, 0.12),
                    amp: rng::uniform(rng, 1.8, 3.5),
                });
            }
            Herring::Burst => {
                let Some(chain) = chain else { continue };
                let Some(&node) = chain.get(1) else { continue };
                let from = tf + secs(rng::uniform(rng, 5.0, 20.0));
                let to = from + secs(rng::uniform(rng, 60.0, 120.0));
                let m = rng::uniform(rng, 0.15, 0.35);
                plan.add(node, Target::Err, Shape::Window { start: from, ramp: secs(5.0), end: to }, m);
                plan.phases.burst = Some((node, from, to));
            }
            Herring::Batch => {
                let cands: Vec<usize> =
                    (0..n).filter(|&i| sys.nodes[i].is_app() && i != sys.frontend && Some(i) != cause).collect();
                let Some(&node) = rng::choose(rng, &cands) else {
                    continue;
                };
                let period = clock.mins(*rng::choose(rng, &[10.0, 15.0]).unwrap_or(&10.0)).max(MINUTE);
                let width = clock.mins(rng::uniform(rng, 1.0, 3.0)).max(10 * SECOND);
                let first = clock.start + (rng.gen::<f64>() * period as f64) as Ts;
                let shape = Shape::Periodic { first, period, width };
                let cpu = rng::uniform(rng, 30.0, 50.0);
                plan.add(node, Target::Cpu, shape, cpu);
                plan.add(node, Target::LatMult, shape, 0.15);
                let job = *rng::choose(rng, BATCH_JOBS).unwrap_or(&"batch");
                plan.batches.push(Batch { node, job, first, period, width });
            }
        }
    }
}
