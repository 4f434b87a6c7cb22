//! Root-cause ranking: a random walk with restart on the reversed causal graph, weighted by
//! anomaly strength and change priors, then the rule that a symptom is never ranked above an
//! upstream cause that explains it.
//!
//! The walk starts from the symptoms (the alert service's anomalies, and every anomaly in
//! proportion to its strength), moves from an effect to its plausible causes in proportion to the
//! edge weight and the cause's strength, and stays put with some probability (an anomaly may be its
//! own cause). Anomalies without causes keep what reaches them, so mass gathers at root causes,
//! in the manner of MicroCause/CloudRanger-style random walks.

use crate::correlate::Dependencies;
use crate::detect::{Anomaly, Source};
use crate::graph::CausalGraph;
use crate::model::{Alert, ChangeKind, Ts};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RankConfig {
    /// Probability of restarting the walk at each step.
    pub restart: f64,
    /// Share of the restart mass put on the alert service's anomalies (the rest on all anomalies).
    pub alert_share: f64,
    /// Weight of staying at a node, relative to moving to its causes.
    pub stay: f64,
    /// Prior strength of a change as a cause, per kind.
    pub deploy_prior: f64,
    pub config_prior: f64,
    pub flag_prior: f64,
    /// z-score at which an anomaly's strength reaches 1 − 1/e.
    pub strength_scale: f64,
    /// Time scale over which an anomaly's weight as a symptom decays with its distance from the
    /// alert.
    pub symptom_horizon: crate::model::Ts,
    /// Evidence that lasted this long is a lasting problem, not a blip.
    pub lasting: Ts,
    /// Only evidence that began this long before the alert, or later, decides whether a cause
    /// is still at work.
    pub lasting_window: Ts,
    /// Evidence last seen this close to the end of the data is still going on.
    pub still_active: Ts,
    /// How long after the alert evidence may begin and still count as a cause: the alert fires
    /// on samples taken up to a scrape interval or two before it, and a metric's onset is the
    /// sample that showed it. A service whose evidence all begins later than this is an effect
    /// or a coincidence, never the root cause.
    pub settle: Ts,
    /// Below this confidence the verdict is `no_root_cause`.
    pub min_confidence: f64,
    /// The strongest anomaly must reach this strength for any root cause to be reported.
    pub min_strength: f64,
}

impl Default for RankConfig {
    fn default() -> Self {
        RankConfig {
            restart: 0.15,
            alert_share: 0.5,
            stay: 0.3,
            deploy_prior: 0.5,
            config_prior: 0.6,
            flag_prior: 0.6,
            strength_scale: 10.0,
            symptom_horizon: 10 * crate::model::MINUTE,
            lasting: 5 * crate::model::MINUTE,
            still_active: 2 * crate::model::MINUTE,
            lasting_window: 15 * crate::model::MINUTE,
            settle: 2 * crate::model::MINUTE,
            min_confidence: 0.2,
            min_strength: 0.45,
        }
    }
}

/// One ranked candidate root cause (a service and what about it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub service: String,
    /// The anomaly that best represents the cause (index into the anomaly list).
    pub lead: usize,
    /// All of this service's anomalies, most causal first.
    pub anomalies: Vec<usize>,
    /// The walk's mass on this service.
    pub score: f64,
    pub confidence: f64,
    /// Another candidate's anomalies explain this one's (it is downstream of them).
    pub explained: bool,
    /// Services from the cause to the symptom.
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    /// Whether the evidence supports naming any root cause at all.
    pub has_root_cause: bool,
    /// Walk mass per anomaly (same order as the anomaly list).
    pub mass: Vec<f64>,
}

/// How strongly an anomaly speaks, in [0, 1]: saturating in its z-score; a change's prior.
pub fn strength(a: &Anomaly, cfg: &RankConfig) -> f64 {
    match a.source {
        Source::Change => match ChangeKind::parse(&a.signal) {
            Some(ChangeKind::Deploy) => cfg.deploy_prior,
            Some(ChangeKind::Config) => cfg.config_prior,
            Some(ChangeKind::Flag) => cfg.flag_prior,
            None => cfg.deploy_prior,
        },
        _ => reliability(a) * (1.0 - (-a.score.max(0.0) / cfg.strength_scale).exp()),
    }
}

/// How much an anomaly of this kind says about a fault, whatever its score: a log template that
/// is new but not an error mostly reflects a different request mix, a vanished one even more so.
fn reliability(a: &Anomaly) -> f64 {
    // A service holding *less* memory is rarely what hurts: it is what a restart looks like.
    if a.source == Source::Metric && a.direction < 0 && a.indicator == "mem" {
        return 0.3;
    }
    // Nor is a service that got faster: it has less to do, because something before it failed.
    if a.source == Source::Metric && a.direction < 0 && a.indicator == "latency" {
        return 0.3;
    }
    if a.source == Source::Inferred {
        return 0.5;
    }
    match a.indicator.as_str() {
        "new_log_template" => 0.5,
        // Waiting on others says little about oneself; nor does an end-to-end time that includes
        // the callees' (the self-time anomaly speaks for the service's own share).
        "latency_client" | "latency_total" => 0.5,
        "missing_log_template" => 0.3,
        // The learned detector says *that* a service's events look foreign, not what broke: it
        // corroborates more than it accuses.
        "embedding" => 0.5,
        _ => 1.0,
    }
}

/// Personalised random walk with restart over the reversed causal graph; returns mass per node.
fn walk(anomalies: &[Anomaly], g: &CausalGraph, alert: &Alert, cfg: &RankConfig) -> Vec<f64> {
    let n = anomalies.len();
    if n == 0 {
        return Vec::new();
    }
    let alert_service = alert.service.as_str();
    let s: Vec<f64> = anomalies.iter().map(|a| strength(a, cfg)).collect();
    // Symptoms are what was wrong when the alert fired: anomalies far from it in time weigh less
    // as starting points (they may still be reached as causes).
    let near: Vec<f64> =
        anomalies.iter().map(|a| (-(a.onset.abs_diff(alert.time) as f64) / cfg.symptom_horizon as f64).exp()).collect();
    let mut restart = vec![0.0; n];
    // The alert guides the walk only where the graph can take it further: a symptom with no
    // cause in another service would just keep its share, and so outrank the cause it hides.
    let connected = |i: usize| {
        g.edges_directed(petgraph::graph::NodeIndex::new(i), Direction::Incoming)
            .any(|e| anomalies[g[e.source()]].service != anomalies[i].service)
    };
    let symptoms: Vec<usize> = (0..n)
        .filter(|&i| anomalies[i].service == alert_service && anomalies[i].source != Source::Change && connected(i))
        .collect();
    let all: Vec<usize> = (0..n).filter(|&i| anomalies[i].source != Source::Change).collect();
    // Restart mass goes to services by their strongest anomaly, then within a service by
    // strength: a service that exports more series is not more suspect for that.
    let spread = |set: &[usize], share: f64, r: &mut Vec<f64>| {
        let w = |i: usize| s[i] * near[i];
        let mut per_service: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for &i in set {
            let e = per_service.entry(anomalies[i].service.as_str()).or_insert((0.0, 0.0));
            e.0 = e.0.max(w(i));
            e.1 += w(i);
        }
        let total: f64 = per_service.values().map(|v| v.0).sum();
        if total > 0.0 {
            for &i in set {
                let (max, sum) = per_service[anomalies[i].service.as_str()];
                r[i] += share * (max / total) * w(i) / sum.max(1e-12);
            }
        }
    };
    let alert_share = if symptoms.is_empty() { 0.0 } else { cfg.alert_share };
    spread(&symptoms, alert_share, &mut restart);
    spread(&all, 1.0 - alert_share, &mut restart);
    if restart.iter().sum::<f64>() <= 0.0 {
        restart.iter_mut().for_each(|r| *r = 1.0 / n as f64);
    }
    // Transitions from each effect to its causes (and itself).
    let moves: Vec<Vec<(usize, f64)>> = g
        .node_indices()
        .map(|v| {
            let i = g[v];
            let causes: Vec<(usize, f64)> = g
                .edges_directed(v, Direction::Incoming)
                .map(|e| {
                    let c = g[e.source()];
                    (c, e.weight().weight * s[c])
                })
                .collect();
            // Each cause *service* weighs as much as its strongest link, shared among its
            // anomalies: a service with many anomalies is not a likelier cause for that alone.
            let mut best: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for &(c, w) in &causes {
                let e = best.entry(anomalies[c].service.as_str()).or_insert((0.0, 0.0));
                e.0 = e.0.max(w);
                e.1 += w;
            }
            let mut m: Vec<(usize, f64)> = causes
                .iter()
                .map(|&(c, w)| {
                    let (max, sum) = best[anomalies[c].service.as_str()];
                    (c, max * w / sum.max(1e-12))
                })
                .collect();
            let stay = if m.is_empty() { 1.0 } else { cfg.stay * s[i].max(0.05) };
            m.push((i, stay));
            let total: f64 = m.iter().map(|x| x.1).sum();
            m.iter_mut().for_each(|x| x.1 /= total.max(1e-12));
            m
        })
        .collect();
    let mut p = restart.clone();
    for _ in 0..100 {
        let mut next: Vec<f64> = restart.iter().map(|r| cfg.restart * r).collect();
        for (v, m) in moves.iter().enumerate() {
            let i = g[petgraph::graph::NodeIndex::new(v)];
            for &(c, w) in m {
                next[c] += (1.0 - cfg.restart) * p[i] * w;
            }
        }
        let delta: f64 = next.iter().zip(&p).map(|(a, b)| (a - b).abs()).sum();
        p = next;
        if delta < 1e-10 {
            break;
        }
    }
    p
}

/// Service-level "explains" edges: T → S when an anomaly of T is a cause of one of S.
fn service_edges(anomalies: &[Anomaly], g: &CausalGraph) -> BTreeMap<String, BTreeSet<String>> {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for edge in g.edge_references() {
        let (a, b) = (&anomalies[g[edge.source()]], &anomalies[g[edge.target()]]);
        if a.service != b.service {
            e.entry(a.service.clone()).or_default().insert(b.service.clone());
        }
    }
    e
}

fn reach(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeMap<String, String> {
    // Visited service → predecessor on a shortest path.
    let mut prev = BTreeMap::new();
    let mut queue = VecDeque::from([from.to_string()]);
    prev.insert(from.to_string(), String::new());
    while let Some(s) = queue.pop_front() {
        for t in edges.get(&s).into_iter().flatten() {
            if !prev.contains_key(t) {
                prev.insert(t.clone(), s.clone());
                queue.push_back(t.clone());
            }
        }
    }
    prev
}

fn path_to(prev: &BTreeMap<String, String>, to: &str) -> Option<Vec<String>> {
    prev.get(to)?;
    let mut path = vec![to.to_string()];
    let mut cur = to.to_string();
    while let Some(p) = prev.get(&cur).filter(|p| !p.is_empty()) {
        path.push(p.clone());
        cur = p.clone();
    }
    path.reverse();
    Some(path)
}

/// Factor on every candidate's confidence when the verdict is that no root cause is at work: the
/// confidences say how likely each candidate is the cause, and with none at work they cannot
/// stand where they were.
pub const NO_CAUSE_DISCOUNT: f64 = 0.25;

/// The candidates whose walk mass a candidate's share is taken among: the five a report shows.
pub const CONFIDENCE_POOL: usize = 5;

/// Factor on the confidence of a candidate an upstream cause explains: it may still be the
/// cause (the explaining edge may be wrong), but less likely than its explainer.
pub const EXPLAINED_FACTOR: f64 = 0.5;

/// The triage's raw confidence in a candidate (what `calibrate` maps to the number the user sees,
/// and the agent's priors are in proportion to): the
/// square root of its `share` of the walk mass among the top [`CONFIDENCE_POOL`], times the
/// `evidence` strength in [0, 1] (its strongest anomaly, or for a change the strongest effect
/// that followed it), times [`EXPLAINED_FACTOR`] when an upstream cause explains it. [`rank`]
/// then discounts every candidate by [`NO_CAUSE_DISCOUNT`] when the verdict is no root cause.
pub fn triage_confidence(share: f64, evidence: f64, explained: bool) -> f64 {
    let c = (share.sqrt() * evidence).clamp(0.0, 1.0);
    if explained {
        c * EXPLAINED_FACTOR
    } else {
        c
    }
}

/// An explaining service must carry at least this share of the explained one's walk mass.
const EXPLAINER_MASS: f64 = 0.5;

pub fn rank(
    anomalies: &[Anomaly],
    g: &CausalGraph,
    deps: &Dependencies,
    alert: &Alert,
    data_end: &dyn Fn(Source) -> Ts,
    cfg: &RankConfig,
) -> Ranking {
    let alert_service = alert.service.as_str();
    let mass = walk(anomalies, g, alert, cfg);
    let mut per_service: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in anomalies.iter().enumerate() {
        per_service.entry(a.service.as_str()).or_default().push(i);
    }
    let edges = service_edges(anomalies, g);
    // When two services each reach the other, the one whose outgoing influence started first is
    // upstream (a change first on a tie: its time is exact, a metric's onset is rounded up to the
    // next sample).
    let mut first: BTreeMap<&str, (crate::model::Ts, u8)> = BTreeMap::new();
    for e in g.edge_references() {
        let (a, b) = (&anomalies[g[e.source()]], &anomalies[g[e.target()]]);
        if a.service != b.service {
            let key = (a.onset, u8::from(a.source != Source::Change));
            let f = first.entry(a.service.as_str()).or_insert(key);
            *f = (*f).min(key);
        }
    }
    let never = (crate::model::Ts::MAX, 1u8);
    let reaches: BTreeMap<&str, BTreeMap<String, String>> =
        per_service.keys().map(|s| (*s, reach(&edges, s))).collect();
    let service_mass: BTreeMap<&str, f64> =
        per_service.iter().map(|(s, idx)| (*s, idx.iter().map(|&i| mass[i]).sum())).collect();
    // Only what began by the alert (and the settle margin) can have caused it; a change's time
    // is exact, so it gets no margin.
    let latest_cause = alert.time.saturating_add(cfg.settle);
    let in_time =
        |i: usize| anomalies[i].onset <= if anomalies[i].source == Source::Change { alert.time } else { latest_cause };
    let mut candidates: Vec<Candidate> = per_service
        .iter()
        .filter(|(_, idx)| idx.iter().any(|&i| in_time(i)))
        .map(|(service, idx)| {
            // What began in time leads (it is what the cause is named after); what began later
            // follows it as the rest of the story (still going, or how it spread).
            let mut idx = idx.clone();
            idx.sort_by(|&a, &b| in_time(b).cmp(&in_time(a)).then(mass[b].total_cmp(&mass[a])).then(a.cmp(&b)));
            let score: f64 = idx.iter().map(|&i| mass[i]).sum();
            // Explained: another service reaches this one and this one does not reach it back,
            // or both reach each other and the other's influence started first.
            // Only an explainer with comparable weight counts: a faint blip in a dependency does
            // not take the blame away from a service with strong evidence of its own.
            // A worse canary is never explained by another service: its new pods serve worse than
            // its old pods beside them, which see the same callers and callees.
            let canary = idx.iter().any(|&i| anomalies[i].indicator == "canary");
            let explained = !canary
                && reaches.iter().any(|(other, r)| {
                    other != service
                        && r.contains_key(*service)
                        && service_mass[other] >= EXPLAINER_MASS * service_mass[service]
                        && (!reaches[service].contains_key(*other)
                            || first.get(other).unwrap_or(&never) < first.get(service).unwrap_or(&never))
                });
            let chain = path_to(&reaches[service], alert_service)
                .or_else(|| deps.caller_path(service, alert_service))
                .unwrap_or_else(|| vec![service.to_string()]);
            Candidate {
                service: service.to_string(),
                lead: idx[0],
                anomalies: idx,
                score,
                confidence: 0.0,
                explained,
                chain,
            }
        })
        .collect();
    // Unexplained before explained; within each, by walk mass.
    candidates.sort_by(|a, b| {
        a.explained.cmp(&b.explained).then(b.score.total_cmp(&a.score)).then(a.service.cmp(&b.service))
    });
    let top_mass: f64 = candidates.iter().take(CONFIDENCE_POOL).map(|c| c.score).sum::<f64>().max(1e-12);
    let evidence = |c: &Candidate| {
        c.anomalies
            .iter()
            .map(|&i| &anomalies[i])
            .filter(|a| a.source != Source::Change)
            .map(|a| strength(a, cfg))
            .fold(0.0f64, f64::max)
    };
    let effect_strength = |c: &Candidate| {
        // A change is as convincing as the effects that followed it.
        let own = evidence(c);
        let downstream = g
            .edge_references()
            .filter(|e| c.anomalies.contains(&g[e.source()]))
            .map(|e| strength(&anomalies[g[e.target()]], cfg))
            .fold(0.0f64, f64::max);
        own.max(downstream)
    };
    for c in &mut candidates {
        c.confidence = triage_confidence(c.score / top_mass, effect_strength(c), c.explained);
    }
    let strongest =
        anomalies.iter().filter(|a| a.source != Source::Change).map(|a| strength(a, cfg)).fold(0.0f64, f64::max);
    // A cause must still be at work: evidence that lasted a while or is still there where its
    // own source's data ends (three minutes of logs beside ten of metrics: a burst that lasts to
    // the last log line is still going on as far as anyone can tell). A blip that crossed a
    // threshold and went away by itself needs no fix.
    let lasting = |a: &Anomaly| {
        a.source != Source::Change
            && (a.end >= data_end(a.source).saturating_sub(cfg.still_active)
                || a.end.saturating_sub(a.onset) >= cfg.lasting)
    };
    // Judged on the candidate's clear evidence from around the alert, not on some older drift of
    // the same service.
    let persistent = |c: &Candidate| {
        let recent = |i: usize| anomalies[i].onset >= alert.time.saturating_sub(cfg.lasting_window);
        let clear = |i: usize| anomalies[i].source == Source::Change || strength(&anomalies[i], cfg) >= 0.5;
        let lead: Vec<usize> = c.anomalies.iter().copied().filter(|&i| recent(i) && clear(i)).collect();
        // A change is an instant: it lasts through its effects.
        lead.iter().any(|&i| {
            if anomalies[i].source == Source::Change {
                g.edges_directed(petgraph::graph::NodeIndex::new(i), Direction::Outgoing)
                    .any(|e| clear(g[e.target()]) && lasting(&anomalies[g[e.target()]]))
            } else {
                lasting(&anomalies[i])
            }
        })
    };
    let has_root_cause = strongest >= cfg.min_strength
        && candidates.first().is_some_and(|c| c.confidence >= cfg.min_confidence && persistent(c));
    if !has_root_cause {
        for c in &mut candidates {
            c.confidence *= NO_CAUSE_DISCOUNT;
        }
    }
    Ranking { candidates, has_root_cause, mass }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{build, GraphConfig};

    fn a(service: &str, source: Source, indicator: &str, onset: Ts, score: f64) -> Anomaly {
        Anomaly {
            service: service.into(),
            source,
            indicator: indicator.into(),
            signal: if source == Source::Change { "config".into() } else { indicator.into() },
            onset,
            end: Ts::MAX,
            score,
            direction: 1,
            measure: None,
            evidence: String::new(),
        }
    }

    fn run(anomalies: &[Anomaly], edges: &[(&str, &str)], alert: &str) -> Ranking {
        let mined: Vec<(String, String)> = edges.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let deps = Dependencies::new(None, &mined);
        let g = build(anomalies, &deps, &GraphConfig::default());
        let alert = Alert {
            time: anomalies.iter().map(|a| a.onset).max().unwrap_or(0),
            service: alert.into(),
            signal: "latency".into(),
            severity: Default::default(),
            title: String::new(),
        };
        rank(anomalies, &g, &deps, &alert, &|_| alert.time, &RankConfig::default())
    }

    #[test]
    fn evidence_that_began_after_the_alert_never_names_the_cause() {
        use crate::model::MINUTE;
        // The alert is at minute 35 (the latest onset below is the run's alert time, so it is
        // set explicitly): `db` rose at 30, `cache` rose only at 65, strongly.
        let anomalies = vec![
            a("api", Source::Metric, "latency", 31 * MINUTE, 6.0),
            a("db", Source::Metric, "cpu", 30 * MINUTE, 5.0),
            a("db", Source::Metric, "mem", 66 * MINUTE, 30.0),
            a("cache", Source::Metric, "cpu", 65 * MINUTE, 40.0),
            // A change's time is exact: one a minute after the alert gets no settle margin.
            a("queue", Source::Change, "config", 36 * MINUTE, 0.0),
        ];
        let deps = Dependencies::new(None, &[("api".into(), "db".into()), ("api".into(), "cache".into())]);
        let g = build(&anomalies, &deps, &GraphConfig::default());
        let alert = Alert {
            time: 35 * MINUTE,
            service: "api".into(),
            signal: "latency".into(),
            severity: Default::default(),
            title: String::new(),
        };
        let r = rank(&anomalies, &g, &deps, &alert, &|_| 70 * MINUTE, &RankConfig::default());
        let named: Vec<&str> = r.candidates.iter().map(|c| c.service.as_str()).collect();
        assert!(!named.contains(&"cache") && !named.contains(&"queue"), "{named:?}");
        let db = r.candidates.iter().find(|c| c.service == "db").expect("db is a suspect");
        // Named after what it did before the alert, with what came later behind it.
        assert_eq!(anomalies[db.lead].indicator, "cpu");
        assert_eq!(db.anomalies, vec![1, 2]);
        // With the margin stretched past minute 65, the late rise is a suspect again.
        let late = RankConfig { settle: 40 * MINUTE, ..RankConfig::default() };
        let r = rank(&anomalies, &g, &deps, &alert, &|_| 70 * MINUTE, &late);
        assert!(r.candidates.iter().any(|c| c.service == "cache"));
    }

    #[test]
    fn the_stronger_symptom_is_not_blamed_over_its_upstream_cause() {
        // db is slow first (weakly); the frontend's latency is the loudest anomaly.
        let anomalies = vec![
            a("db", Source::Metric, "latency", 0, 5.0),
            a("api", Source::Trace, "latency_total", 20_000, 12.0),
            a("frontend", Source::Trace, "latency_total", 30_000, 40.0),
        ];
        let r = run(&anomalies, &[("frontend", "api"), ("api", "db")], "frontend");
        assert_eq!(r.candidates[0].service, "db");
        assert_eq!(r.candidates[0].chain, vec!["db", "api", "frontend"]);
        assert!(r.candidates.iter().skip(1).all(|c| c.explained));
    }

    #[test]
    fn a_config_change_beats_the_dependency_it_overloaded() {
        let anomalies = vec![
            a("auth", Source::Change, "ldap.timeout_ms", 0, 0.0),
            a("auth", Source::Log, "log_errors", 30_000, 8.0),
            a("ldap", Source::Metric, "cpu", 40_000, 30.0),
            a("web", Source::Trace, "latency_total", 50_000, 15.0),
        ];
        let r = run(&anomalies, &[("web", "auth"), ("auth", "ldap")], "web");
        assert_eq!(r.candidates[0].service, "auth");
        assert_eq!(anomalies[r.candidates[0].lead].source, Source::Change);
        assert!(r.has_root_cause);
    }

    #[test]
    fn an_unrelated_change_with_no_effect_is_not_the_cause() {
        let anomalies = vec![
            a("search", Source::Change, "version", 0, 0.0),
            a("cart", Source::Metric, "cpu", 10_000, 20.0),
            a("frontend", Source::Trace, "latency_total", 20_000, 10.0),
        ];
        let r = run(&anomalies, &[("frontend", "cart"), ("frontend", "search")], "frontend");
        assert_eq!(r.candidates[0].service, "cart");
        let search = r.candidates.iter().find(|c| c.service == "search").expect("search ranked");
        assert!(search.score < 0.01, "{}", search.score);
    }

    #[test]
    fn a_worse_canary_is_not_explained_by_an_earlier_upstream_anomaly() {
        // db is slow first; api's latency follows, so db explains api …
        let mut anomalies = vec![
            a("db", Source::Metric, "latency", 0, 8.0),
            a("api", Source::Trace, "latency_total", 20_000, 8.0),
            a("frontend", Source::Trace, "latency_total", 30_000, 20.0),
        ];
        let edges = [("frontend", "api"), ("api", "db")];
        let api = |r: &Ranking| r.candidates.iter().find(|c| c.service == "api").map(|c| c.explained);
        assert_eq!(api(&run(&anomalies, &edges, "frontend")), Some(true));
        // … unless api's new pods serve worse than its old ones beside them.
        anomalies.push(a("api", Source::Metric, "canary", 20_000, 8.0));
        assert_eq!(api(&run(&anomalies, &edges, "frontend")), Some(false));
    }

    #[test]
    fn weak_noise_gives_no_root_cause() {
        let anomalies = vec![a("cart", Source::Metric, "cpu", 10_000, 4.2)];
        let r = run(&anomalies, &[("frontend", "cart")], "frontend");
        assert!(!r.has_root_cause);
        let none = run(&[], &[], "frontend");
        assert!(!none.has_root_cause && none.candidates.is_empty());
    }

    #[test]
    fn evidence_that_lasts_to_the_end_of_its_own_source_is_still_at_work() {
        // Error logs from a minute after the alert to the last log line (3 minutes of logs were
        // exported); metrics go on to minute 10 and show nothing.
        let mut errors = a("cart", Source::Log, "log_errors", 60_000, 30.0);
        errors.end = 180_000;
        let anomalies = vec![errors];
        let deps = Dependencies::new(None, &[("frontend".to_string(), "cart".to_string())]);
        let g = build(&anomalies, &deps, &GraphConfig::default());
        let alert = Alert {
            time: 0,
            service: "frontend".into(),
            signal: "latency".into(),
            severity: Default::default(),
            title: String::new(),
        };
        let cfg = RankConfig::default();
        let ends = |logs: Ts| move |s: Source| if s == Source::Log { logs } else { 600_000 };
        // Judged against the end of the logs, the burst was still going on when they stop …
        assert!(rank(&anomalies, &g, &deps, &alert, &ends(180_000), &cfg).has_root_cause);
        // … and not when the logs go on seven minutes beyond it without it.
        assert!(!rank(&anomalies, &g, &deps, &alert, &ends(600_000), &cfg).has_root_cause);
    }
}
