//! The simulated system: which services exist, what each one does, and who calls whom.
//!
//! A `frontend` fans out to API services, which call mid-tier services and the shared
//! infrastructure (`orders-db`, `redis-cache`, `events-queue`, the `user-directory` LDAP server).
//! Named services come first, in a fixed priority order; bigger systems add `svc-N` services.
//! Node indices are sorted by rank, so every edge goes from a lower index to a higher one: the graph
//! is a DAG and a forward pass over the nodes is a topological pass.

use super::rng;
use crate::model::{Topology, TopologyEdge, TopologyNode, Ts, SECOND};
use rand::Rng;

/// What a service is, which decides its operations, callees, log templates and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Frontend,
    Checkout,
    Catalog,
    Cart,
    Auth,
    Search,
    Payment,
    Shipping,
    Recommendation,
    Inventory,
    User,
    Notification,
    Currency,
    Pricing,
    Review,
    Ad,
    Extra,
    Directory,
    Database,
    Cache,
    Queue,
}

impl Role {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Role::Directory => "directory",
            Role::Database => "database",
            Role::Cache => "cache",
            Role::Queue => "queue",
            _ => "service",
        }
    }

    /// An application service (has code, a heap, deploys, flags), as opposed to infrastructure.
    pub(crate) fn is_app(self) -> bool {
        self.kind() == "service"
    }
}

struct Spec {
    name: &'static str,
    role: Role,
    rank: u32,
}

const fn spec(name: &'static str, role: Role, rank: u32) -> Spec {
    Spec { name, role, rank }
}

/// Named services in the order they are added; a group is added whole or not at all (a queue
/// comes with its consumer).
const GROUPS: &[&[Spec]] = &[
    &[spec("frontend", Role::Frontend, 0)],
    &[spec("checkout", Role::Checkout, 40)],
    &[spec("catalog", Role::Catalog, 60)],
    &[spec("auth", Role::Auth, 90)],
    &[spec("orders-db", Role::Database, 1030)],
    &[spec("redis-cache", Role::Cache, 1020)],
    &[spec("user-directory", Role::Directory, 1000)],
    &[spec("cart", Role::Cart, 50)],
    &[spec("payment", Role::Payment, 100)],
    &[spec("events-queue", Role::Queue, 1010), spec("notification", Role::Notification, 10)],
    &[spec("search", Role::Search, 30)],
    &[spec("shipping", Role::Shipping, 110)],
    &[spec("recommendation", Role::Recommendation, 20)],
    &[spec("inventory", Role::Inventory, 120)],
    &[spec("user", Role::User, 140)],
    &[spec("currency", Role::Currency, 150)],
    &[spec("pricing", Role::Pricing, 130)],
    &[spec("review", Role::Review, 80)],
    &[spec("ad", Role::Ad, 70)],
];

struct OpSpec {
    name: &'static str,
    weight: f64,
    calls: &'static [(&'static str, f64, u32)],
}

/// An operation literal (a macro, so the tables below are promoted to statics).
macro_rules! op {
    ($name:expr, $weight:expr, $calls:expr $(,)?) => {
        OpSpec { name: $name, weight: $weight, calls: $calls }
    };
}

fn op_specs(role: Role) -> &'static [OpSpec] {
    match role {
        Role::Frontend => &[
            op!("GET /", 3.0, &[("catalog", 1.0, 1), ("recommendation", 0.8, 1), ("ad", 0.5, 1), ("auth", 0.3, 1),],),
            op!(
                "GET /product/{id}",
                3.0,
                &[
                    ("catalog", 1.0, 1),
                    ("recommendation", 0.6, 1),
                    ("review", 0.5, 1),
                    ("currency", 0.4, 1),
                    ("auth", 0.3, 1),
                ],
            ),
            op!("GET /api/cart", 2.0, &[("cart", 1.0, 1), ("auth", 0.5, 1)]),
            op!("POST /api/checkout", 1.0, &[("checkout", 1.0, 1), ("auth", 1.0, 1)],),
            op!("GET /api/search", 2.0, &[("search", 1.0, 1)]),
            op!("POST /api/login", 0.7, &[("auth", 1.0, 1), ("user", 0.5, 1)]),
        ],
        Role::Checkout => &[
            op!(
                "POST /api/checkout",
                1.0,
                &[
                    ("cart", 1.0, 1),
                    ("payment", 1.0, 1),
                    ("shipping", 0.9, 1),
                    ("inventory", 0.8, 1),
                    ("orders-db", 1.0, 2),
                    ("events-queue", 1.0, 1),
                    ("user", 0.5, 1),
                    ("currency", 0.4, 1),
                ],
            ),
            op!("GET /api/orders/{id}", 0.5, &[("orders-db", 1.0, 1), ("redis-cache", 0.5, 1)],),
        ],
        Role::Catalog => &[
            op!(
                "GET /api/products",
                2.0,
                &[("redis-cache", 1.0, 1), ("orders-db", 0.4, 1), ("inventory", 0.3, 1), ("pricing", 0.5, 1),],
            ),
            op!("GET /api/products/{id}", 3.0, &[("redis-cache", 1.0, 1), ("orders-db", 0.3, 1), ("pricing", 0.6, 1),],),
        ],
        Role::Cart => &[
            op!("GET /api/cart", 2.0, &[("redis-cache", 1.0, 2)]),
            op!("POST /api/cart/items", 1.0, &[("redis-cache", 1.0, 1), ("inventory", 0.5, 1)],),
        ],
        Role::Auth => &[
            op!("POST /api/login", 1.0, &[("user-directory", 1.0, 1), ("redis-cache", 1.0, 1), ("user", 0.5, 1),],),
            op!("GET /api/session", 3.0, &[("redis-cache", 1.0, 1), ("user-directory", 0.15, 1)],),
        ],
        Role::Search => &[op!("GET /api/search", 1.0, &[("catalog", 0.6, 1), ("redis-cache", 0.8, 1)],)],
        Role::Payment => {
            &[op!("POST /api/charge", 1.0, &[("orders-db", 1.0, 1), ("currency", 0.5, 1), ("redis-cache", 0.3, 1),],)]
        }
        Role::Shipping => &[op!("POST /api/shipments/quote", 1.0, &[("currency", 0.5, 1), ("orders-db", 0.5, 1)],)],
        Role::Recommendation => {
            &[op!("GET /api/recommendations", 1.0, &[("catalog", 1.0, 1), ("redis-cache", 0.6, 1)],)]
        }
        Role::Inventory => &[
            op!("GET /api/stock/{sku}", 2.0, &[("orders-db", 1.0, 1)]),
            op!("POST /api/stock/reserve", 1.0, &[("orders-db", 1.0, 2)]),
        ],
        Role::User => &[op!("GET /api/users/{id}", 1.0, &[("orders-db", 1.0, 1), ("redis-cache", 0.5, 1)],)],
        Role::Notification => &[op!("consume order.created", 1.0, &[("events-queue", 1.0, 1), ("user", 0.6, 1)],)],
        Role::Currency => &[op!("GET /api/convert", 1.0, &[("redis-cache", 0.4, 1)])],
        Role::Pricing => &[op!("GET /api/prices/{sku}", 1.0, &[("redis-cache", 0.7, 1), ("orders-db", 0.3, 1)],)],
        Role::Review => &[op!("GET /api/reviews/{id}", 1.0, &[("orders-db", 1.0, 1)])],
        Role::Ad => &[op!("GET /api/ads", 1.0, &[("redis-cache", 0.5, 1)])],
        Role::Directory => &[op!("ldap BIND", 1.0, &[]), op!("ldap SEARCH", 1.0, &[])],
        Role::Database => &[
            op!("SELECT orders", 3.0, &[]),
            op!("INSERT orders", 1.0, &[]),
            op!("SELECT products", 2.0, &[]),
            op!("UPDATE stock", 1.0, &[]),
            op!("SELECT users", 1.0, &[]),
        ],
        Role::Cache => &[op!("redis GET", 5.0, &[]), op!("redis SET", 2.0, &[]), op!("redis MGET", 1.0, &[])],
        Role::Queue => &[op!("publish order.created", 1.0, &[]), op!("receive order.created", 1.0, &[])],
        Role::Extra => &[],
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub edge: usize,
    pub prob: f64,
    pub repeat: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub name: String,
    pub weight: f64,
    pub calls: Vec<Call>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub role: Role,
    rank: u32,
    /// Median self time of one request (ms) and the log-normal spread around it.
    pub self_ms: f64,
    pub sigma: f64,
    pub base_cpu: f64,
    pub base_mem: f64,
    pub base_err: f64,
    pub gc_ms: f64,
    pub threads: f64,
    pub payload_kb: f64,
    /// Connection-pool size (databases).
    pub pool_max: f64,
    pub version: (u32, u32, u32),
    pub ops: Vec<Op>,
    /// Starts traces of its own (the frontend, the queue consumer).
    pub root: bool,
}

impl Node {
    pub(crate) fn is_app(&self) -> bool {
        self.role.is_app()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub caller: usize,
    pub callee: usize,
    /// Expected calls per caller request.
    pub w: f64,
    /// How much of the callee's extra latency / errors shows in the caller.
    pub lat_gain: f64,
    pub err_gain: f64,
    /// Delay before a callee's trouble shows in the caller's metrics.
    pub lag: Ts,
    /// Client timeout of this call (ms) and attempts its retry policy makes.
    pub timeout_ms: f64,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct System {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Edge indices out of / into each node.
    pub out: Vec<Vec<usize>>,
    pub inc: Vec<Vec<usize>>,
    pub frontend: usize,
    /// Requests per second at each node per traced request per second at the frontend.
    pub rel_rps: Vec<f64>,
    /// Baseline p50 / p99 of a request at each node, callees included (ms).
    pub p50: Vec<f64>,
    pub p99: Vec<f64>,
    /// Whether the frontend's requests reach the node.
    pub reachable: Vec<bool>,
    /// Longest path from a root.
    pub depth: Vec<usize>,
}

impl System {
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub(crate) fn edge_between(&self, caller: usize, callee: usize) -> Option<usize> {
        self.out.get(caller)?.iter().copied().find(|&e| self.edges[e].callee == callee)
    }

    /// Spans per second of traffic for each traced frontend request per second.
    pub(crate) fn spans_per_request(&self) -> f64 {
        self.rel_rps.iter().sum()
    }

    /// All nodes that can reach `target` through calls (its transitive callers), target excluded.
    pub(crate) fn ancestors(&self, target: usize) -> Vec<bool> {
        let mut anc = vec![false; self.nodes.len()];
        let mut reach = vec![false; self.nodes.len()];
        reach[target] = true;
        for s in (0..self.nodes.len()).rev() {
            if s == target {
                continue;
            }
            if self.out[s].iter().any(|&e| reach[self.edges[e].callee]) {
                reach[s] = true;
                anc[s] = true;
            }
        }
        anc
    }

    /// All nodes `source` reaches through calls (its transitive callees), source excluded.
    pub(crate) fn descendants(&self, source: usize) -> Vec<bool> {
        let mut desc = vec![false; self.nodes.len()];
        let mut reach = vec![false; self.nodes.len()];
        reach[source] = true;
        for s in source..self.nodes.len() {
            if !reach[s] {
                continue;
            }
            for &e in &self.out[s] {
                let c = self.edges[e].callee;
                reach[c] = true;
                desc[c] = true;
            }
        }
        desc
    }

    pub(crate) fn topology(&self) -> Topology {
        Topology {
            services: self
                .nodes
                .iter()
                .map(|n| TopologyNode { name: n.name.clone(), kind: Some(n.role.kind().to_string()) })
                .collect(),
            edges: self
                .edges
                .iter()
                .map(|e| TopologyEdge {
                    caller: self.nodes[e.caller].name.clone(),
                    callee: self.nodes[e.callee].name.clone(),
                })
                .collect(),
        }
    }
}

/// A draft operation: name, traffic weight, and calls as (callee, probability, repeats).
type DraftOp = (String, f64, Vec<(usize, f64, u32)>);

struct Draft {
    name: String,
    role: Role,
    rank: u32,
    ops: Vec<DraftOp>,
}

/// Builds the system of `services` nodes (at least 6) for `seed`.
pub(crate) fn build(seed: u64, services: usize) -> System {
    let mut rng = rng::stream(seed, &[rng::TOPOLOGY]);
    let services = services.max(super::MIN_SERVICES);

    // Which services exist.
    let mut specs: Vec<(String, Role, u32)> = Vec::new();
    for group in GROUPS {
        if specs.len() + group.len() <= services {
            for s in group.iter() {
                specs.push((s.name.to_string(), s.role, s.rank));
            }
        }
    }
    let mut n_extra = 0u32;
    while specs.len() < services {
        let number = specs.len() + 1;
        specs.push((format!("svc-{number}"), Role::Extra, 200 + n_extra));
        n_extra += 1;
    }
    specs.sort_by_key(|s| s.2);
    let index_of = |name: &str, specs: &[(String, Role, u32)]| specs.iter().position(|s| s.0 == name);

    // Operations and the calls they make to services that exist.
    let mut drafts: Vec<Draft> = specs
        .iter()
        .map(|(name, role, rank)| Draft { name: name.clone(), role: *role, rank: *rank, ops: Vec::new() })
        .collect();
    for d in drafts.iter_mut() {
        for o in op_specs(d.role) {
            let mut calls = Vec::new();
            for &(callee, prob, repeat) in o.calls {
                let Some(c) = index_of(callee, &specs) else {
                    continue;
                };
                // Optional calls are sometimes absent, and probabilities vary by seed.
                if prob < 1.0 && rng.gen::<f64>() < 0.12 {
                    continue;
                }
                let p = if prob < 1.0 { (prob * rng::uniform(&mut rng, 0.8, 1.2)).min(1.0) } else { prob };
                calls.push((c, p, repeat));
            }
            d.ops.push((o.name.to_string(), o.weight, calls));
        }
        if d.role == Role::Extra {
            d.ops.push((format!("GET /internal/{}/items", d.name), 2.0, Vec::new()));
            d.ops.push((format!("POST /internal/{}/process", d.name), 1.0, Vec::new()));
        }
    }
    let n = drafts.len();
    let depth_of = |drafts: &[Draft]| -> Vec<usize> {
        let mut depth = vec![0usize; drafts.len()];
        for s in 0..drafts.len() {
            for (_, _, calls) in &drafts[s].ops {
                for &(c, _, _) in calls {
                    depth[c] = depth[c].max(depth[s] + 1);
                }
            }
        }
        depth
    };
    let has_caller = |drafts: &[Draft], c: usize| {
        drafts.iter().any(|d| d.ops.iter().any(|o| o.1 > 0.0 && o.2.iter().any(|x| x.0 == c)))
    };
    let infra: Vec<usize> = (0..n).filter(|&i| matches!(drafts[i].role, Role::Database | Role::Cache)).collect();

    // Extra services hang under API / mid-tier services and use the shared infrastructure.
    for x in 0..n {
        if drafts[x].role != Role::Extra {
            continue;
        }
        let depth = depth_of(&drafts);
        let callers: Vec<usize> = (0..x)
            .filter(|&i| {
                drafts[i].role.is_app()
                    && drafts[i].role != Role::Frontend
                    && drafts[i].role != Role::Notification
                    && (1..=2).contains(&depth[i])
                    && !drafts[i].ops.is_empty()
            })
            .collect();
        let k = rng.gen_range(1..=2usize);
        let mut my_depth = 1;
        for _ in 0..k {
            let Some(&c) = rng::choose(&mut rng, &callers) else {
                break;
            };
            if drafts[c].ops.iter().any(|o| o.2.iter().any(|y| y.0 == x)) {
                continue;
            }
            let oi = rng.gen_range(0..drafts[c].ops.len());
            let p = rng::uniform(&mut rng, 0.3, 0.8);
            drafts[c].ops[oi].2.push((x, p, 1));
            my_depth = my_depth.max(depth[c] + 1);
        }
        if my_depth <= 2 {
            let k = rng.gen_range(0..=2usize);
            for _ in 0..k {
                let Some(&c) = rng::choose(&mut rng, &infra) else {
                    break;
                };
                if drafts[x].ops.iter().any(|o| o.2.iter().any(|y| y.0 == c)) {
                    continue;
                }
                let oi = rng.gen_range(0..drafts[x].ops.len());
                let p = rng::uniform(&mut rng, 0.4, 1.0);
                drafts[x].ops[oi].2.push((c, p, 1));
            }
        }
    }

    // A few extra seeded calls between application services, keeping the depth at most 4.
    for s in 0..n {
        let role = drafts[s].role;
        if !role.is_app() || role == Role::Frontend || drafts[s].ops.is_empty() {
            continue;
        }
        if rng.gen::<f64>() >= 0.25 {
            continue;
        }
        let depth = depth_of(&drafts);
        let height = heights(&drafts);
        let cands: Vec<usize> = (s + 1..n)
            .filter(|&c| {
                drafts[c].role.is_app()
                    && drafts[c].role != Role::Notification
                    && depth[s] + 1 + height[c] <= 4
                    && !drafts[s].ops.iter().any(|o| o.2.iter().any(|y| y.0 == c))
            })
            .collect();
        if let Some(&c) = rng::choose(&mut rng, &cands) {
            let oi = rng.gen_range(0..drafts[s].ops.len());
            let p = rng::uniform(&mut rng, 0.2, 0.5);
            drafts[s].ops[oi].2.push((c, p, 1));
        }
    }

    // Every non-root service has a caller.
    for c in 1..n {
        if drafts[c].role == Role::Notification || has_caller(&drafts, c) {
            continue;
        }
        let depth = depth_of(&drafts);
        let height = heights(&drafts);
        let cands: Vec<usize> = (0..c)
            .filter(|&i| {
                drafts[i].role.is_app()
                    && drafts[i].role != Role::Notification
                    && !drafts[i].ops.is_empty()
                    && depth[i] + 1 + height[c] <= 4
            })
            .collect();
        let caller = rng::choose(&mut rng, &cands).copied().unwrap_or(0);
        if drafts[caller].ops.is_empty() {
            continue;
        }
        let oi = rng.gen_range(0..drafts[caller].ops.len());
        drafts[caller].ops[oi].2.push((c, rng::uniform(&mut rng, 0.4, 0.9), 1));
    }

    // Nodes with their seeded parameters.
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for d in &drafts {
        let (self_ms, cpu, mem, err) = match d.role {
            Role::Frontend => (
                rng::uniform(&mut rng, 8.0, 15.0),
                rng::uniform(&mut rng, 25.0, 40.0),
                rng::uniform(&mut rng, 300.0, 600.0),
                rng::uniform(&mut rng, 0.002, 0.005),
            ),
            Role::Directory => (
                rng::uniform(&mut rng, 250.0, 300.0),
                rng::uniform(&mut rng, 10.0, 25.0),
                rng::uniform(&mut rng, 250.0, 400.0),
                rng::uniform(&mut rng, 0.0005, 0.002),
            ),
            Role::Database => (
                rng::uniform(&mut rng, 2.0, 8.0),
                rng::uniform(&mut rng, 30.0, 50.0),
                rng::uniform(&mut rng, 4000.0, 8000.0),
                rng::uniform(&mut rng, 0.0003, 0.001),
            ),
            Role::Cache => (
                rng::uniform(&mut rng, 0.3, 1.0),
                rng::uniform(&mut rng, 10.0, 20.0),
                rng::uniform(&mut rng, 1000.0, 2000.0),
                rng::uniform(&mut rng, 0.0001, 0.0005),
            ),
            Role::Queue => (
                rng::uniform(&mut rng, 1.0, 3.0),
                rng::uniform(&mut rng, 10.0, 20.0),
                rng::uniform(&mut rng, 500.0, 1000.0),
                rng::uniform(&mut rng, 0.0002, 0.001),
            ),
            _ => (
                rng::uniform(&mut rng, 5.0, 40.0),
                rng::uniform(&mut rng, 15.0, 45.0),
                rng::uniform(&mut rng, 200.0, 1500.0),
                rng::uniform(&mut rng, 0.001, 0.006),
            ),
        };
        let ops: Vec<Op> = d
            .ops
            .iter()
            .map(|(name, weight, _)| Op { name: name.clone(), weight: *weight, calls: Vec::new() })
            .collect();
        nodes.push(Node {
            name: d.name.clone(),
            role: d.role,
            rank: d.rank,
            self_ms,
            sigma: rng::uniform(&mut rng, 0.4, 0.6),
            base_cpu: cpu,
            base_mem: mem,
            base_err: err,
            gc_ms: if d.role.is_app() { rng::uniform(&mut rng, 5.0, 20.0) } else { rng::uniform(&mut rng, 0.5, 3.0) },
            threads: rng::uniform(&mut rng, 20.0, 120.0).round(),
            payload_kb: rng::uniform(&mut rng, 1.0, 12.0),
            pool_max: if rng.gen::<bool>() { 50.0 } else { 100.0 },
            version: (rng.gen_range(1..=4), rng.gen_range(0..=20), rng.gen_range(0..=9)),
            ops,
            root: matches!(d.role, Role::Frontend | Role::Notification),
        });
    }
    debug_assert!(nodes.windows(2).all(|w| w[0].rank <= w[1].rank));

    // Edges: one per (caller, callee), weighted by how often the caller's requests make the call.
    let mut edges: Vec<Edge> = Vec::new();
    let mut out = vec![Vec::new(); n];
    let mut inc = vec![Vec::new(); n];
    for (s, d) in drafts.iter().enumerate() {
        let total_w: f64 = d.ops.iter().map(|o| o.1).sum::<f64>().max(f64::MIN_POSITIVE);
        for (oi, (_, weight, calls)) in d.ops.iter().enumerate() {
            for &(c, prob, repeat) in calls {
                let e = match out[s].iter().copied().find(|&e: &usize| edges[e].callee == c) {
                    Some(e) => e,
                    None => {
                        let callee_role = drafts[c].role;
                        let (timeout_ms, attempts) = match callee_role {
                            Role::Cache => (1000.0, 1),
                            Role::Database => (5000.0, 1),
                            Role::Directory => (5000.0, 3),
                            Role::Queue => (2000.0, 2),
                            _ => (
                                3000.0,
                                match rng.gen_range(0..10) {
                                    0..=5 => 1,
                                    6..=8 => 2,
                                    _ => 3,
                                },
                            ),
                        };
                        edges.push(Edge {
                            caller: s,
                            callee: c,
                            w: 0.0,
                            lat_gain: rng::uniform(&mut rng, 0.6, 0.95),
                            err_gain: rng::uniform(&mut rng, 0.5, 0.9),
                            lag: (rng::uniform(&mut rng, 5.0, 40.0) * SECOND as f64) as Ts,
                            timeout_ms,
                            attempts,
                        });
                        let e = edges.len() - 1;
                        out[s].push(e);
                        inc[c].push(e);
                        e
                    }
                };
                edges[e].w += weight / total_w * prob * repeat as f64;
                nodes[s].ops[oi].calls.push(Call { edge: e, prob, repeat });
            }
        }
    }

    let frontend = nodes.iter().position(|n| n.role == Role::Frontend).unwrap_or(0);
    let mut sys = System {
        nodes,
        edges,
        out,
        inc,
        frontend,
        rel_rps: Vec::new(),
        p50: Vec::new(),
        p99: Vec::new(),
        reachable: Vec::new(),
        depth: Vec::new(),
    };
    derive(&mut sys);
    sys
}

fn heights(drafts: &[Draft]) -> Vec<usize> {
    let mut h = vec![0usize; drafts.len()];
    for s in (0..drafts.len()).rev() {
        for (_, _, calls) in &drafts[s].ops {
            for &(c, _, _) in calls {
                h[s] = h[s].max(h[c] + 1);
            }
        }
    }
    h
}

/// Rates, baseline latencies, reachability and depth from the graph.
fn derive(sys: &mut System) {
    let n = sys.nodes.len();
    // Traffic: the frontend at 1; the queue consumer at the rate messages are published.
    let flow = |sys: &System, roots: &[(usize, f64)]| {
        let mut rps = vec![0.0; n];
        for &(r, v) in roots {
            rps[r] += v;
        }
        for s in 0..n {
            for &e in &sys.out[s] {
                let c = sys.edges[e].callee;
                rps[c] += rps[s] * sys.edges[e].w;
            }
        }
        rps
    };
    let mut rps = flow(sys, &[(sys.frontend, 1.0)]);
    if let Some(consumer) = sys.nodes.iter().position(|x| x.role == Role::Notification) {
        let publish = sys.nodes.iter().position(|x| x.role == Role::Queue).map(|q| rps[q]).unwrap_or(0.0);
        rps = flow(sys, &[(sys.frontend, 1.0), (consumer, publish.max(0.05))]);
    }
    sys.rel_rps = rps;

    let mut p50 = vec![0.0; n];
    let mut p99 = vec![0.0; n];
    for s in (0..n).rev() {
        let node = &sys.nodes[s];
        let mut a = node.self_ms;
        let mut b = node.self_ms * (2.33 * node.sigma).exp();
        for &e in &sys.out[s] {
            let edge = &sys.edges[e];
            let c = edge.callee;
            if sys.nodes[c].role == Role::Queue && node.role != Role::Notification {
                // Publishing is quick and does not wait for the consumer.
                a += edge.w * p50[c];
                b += edge.w.min(1.0) * p99[c] * 0.8;
                continue;
            }
            a += edge.w * p50[c];
            b += edge.w.min(1.0) * p99[c] * 0.8 + (edge.w - 1.0).max(0.0) * p50[c];
        }
        p50[s] = a;
        p99[s] = b.max(a * 1.5);
    }
    sys.p50 = p50;
    sys.p99 = p99;

    let mut reach = vec![false; n];
    reach[sys.frontend] = true;
    let mut depth = vec![0usize; n];
    for s in 0..n {
        for &e in &sys.out[s] {
            let c = sys.edges[e].callee;
            if reach[s] {
                reach[c] = true;
            }
            depth[c] = depth[c].max(depth[s] + 1);
        }
    }
    sys.reachable = reach;
    sys.depth = depth;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_is_a_dag_with_callers_everywhere() {
        for seed in 0..20 {
            for size in [6, 9, 12, 20, 50] {
                let sys = build(seed, size);
                assert_eq!(sys.nodes.len(), size);
                for e in &sys.edges {
                    assert!(e.caller < e.callee, "edge goes backwards");
                    assert!(e.w > 0.0);
                }
                for (i, node) in sys.nodes.iter().enumerate() {
                    if !node.root {
                        assert!(!sys.inc[i].is_empty(), "{} has no caller", node.name);
                    }
                }
                assert!(sys.depth.iter().all(|&d| d <= 4), "too deep for seed {seed} size {size}");
                let mut names: Vec<&str> = sys.nodes.iter().map(|n| n.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                assert_eq!(names.len(), size);
            }
        }
    }

    #[test]
    fn default_size_has_the_infrastructure() {
        let sys = build(1, 12);
        for name in ["frontend", "auth", "user-directory", "orders-db", "redis-cache", "events-queue", "notification"] {
            assert!(sys.index(name).is_some(), "{name} missing");
        }
        let auth = sys.index("auth").unwrap_or(0);
        let ldap = sys.index("user-directory").unwrap_or(0);
        assert!(sys.edge_between(auth, ldap).is_some());
    }
}
