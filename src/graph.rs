//! The causal graph: anomalies as nodes, reasoned edges from a plausible cause to a later effect.
//!
//! Edges are heuristic but each one states its reason and weight, and every edge respects time:
//! a cause's onset is before its effect's (within a tolerance for coarse metric resolution).
//! - change → later anomalies of the changed service (and of its callees, when the changed
//!   service itself became anomalous: a retry storm, a new query);
//! - within a service, resource metrics → trace behaviour → service metrics → logs;
//! - callee → caller along the dependency graph: a fault in a dependency shows in its callers.

use crate::correlate::Dependencies;
use crate::detect::{Anomaly, Source};
use crate::model::{Ts, SECOND};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

/// Why an edge exists. A closed set so reports and rankers can treat each kind explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeReason {
    /// A change on a service, then an anomaly of that service.
    ChangeThenEffect,
    /// A change on a service that became anomalous, then an anomaly of a service it calls.
    ChangeThenCalleeEffect,
    /// Two anomalies of one service, the first a more basic signal that drives the second.
    SameService,
    /// An anomaly of a callee, then one of its caller.
    CalleeToCaller,
}

impl EdgeReason {
    pub fn describe(self) -> &'static str {
        match self {
            EdgeReason::ChangeThenEffect => "change preceded this anomaly of the same service",
            EdgeReason::ChangeThenCalleeEffect => "change on the caller preceded this anomaly of its dependency",
            EdgeReason::SameService => "more basic anomaly of the same service",
            EdgeReason::CalleeToCaller => "dependency anomaly propagates to its caller",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub reason: EdgeReason,
    pub weight: f64,
    /// Effect onset minus cause onset.
    pub lag_ms: Ts,
}

/// Tolerances of the edge rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphConfig {
    /// An effect may appear to start this much before its cause (coarse metric steps, clocks).
    pub tolerance: Ts,
    /// Longest delay from a cause to an effect within a service or after a change (a leak
    /// takes a while to hurt).
    pub max_lag: Ts,
    /// Longest delay for a fault to propagate from a callee to its caller: calls fail or slow
    /// down within seconds, so an older callee anomaly does not explain a new caller one.
    pub propagation_lag: Ts,
    /// Longest delay from a change on a caller to the effect on its callee (a retry storm or a
    /// new query pattern starts as soon as the change takes effect).
    pub change_callee_lag: Ts,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            tolerance: 60 * SECOND,
            max_lag: 30 * crate::model::MINUTE,
            propagation_lag: 5 * crate::model::MINUTE,
            change_callee_lag: 2 * crate::model::MINUTE,
        }
    }
}

/// How far an effect may seem to precede a cause whose time is exact (clock skew between hosts).
const EXACT_TOLERANCE: Ts = 5 * SECOND;
/// Most anomalies the causal graph takes: the strongest; the rest are summarised ([`bound`]).
pub const MAX_NODES: usize = 5_000;

/// Keeps the [`MAX_NODES`] strongest anomalies (in their order) and says what was left out.
pub fn bound(anomalies: &mut Vec<Anomaly>) -> Option<String> {
    let total = anomalies.len();
    if total <= MAX_NODES {
        return None;
    }
    let mut scores: Vec<f64> = anomalies.iter().map(|a| a.score).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let cut = scores[MAX_NODES - 1];
    // Ties at the cut: the earliest ones stay.
    let mut room = scores[..MAX_NODES].iter().filter(|s| s.total_cmp(&cut).is_eq()).count();
    anomalies.retain(|a| match a.score.total_cmp(&cut) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal if room > 0 => {
            room -= 1;
            true
        }
        _ => false,
    });
    Some(format!(
        "{} weaker anomalies (score {cut:.1} or less) left out of the causal graph: it takes the {MAX_NODES} strongest of {total}",
        total - anomalies.len()
    ))
}

/// Node weights are indices into the anomaly list the graph was built from.
pub type CausalGraph = DiGraph<usize, Edge>;

/// Orders the anomalies of one service from driver to symptom: resources first, logs last.
fn layer(a: &Anomaly) -> u8 {
    match (a.source, a.indicator.as_str()) {
        (Source::Change, _) => 0,
        (Source::Metric, "cpu" | "mem" | "connections" | "io" | "network" | "queue") => 1,
        (Source::Trace, "latency" | "errors") | (Source::Inferred, _) => 2,
        (Source::Metric, "latency_client") => 4,
        (Source::Metric, _) => 3,
        (Source::Trace, _) => 4,
        (Source::Log, _) => 5,
    }
}

/// Whether an anomaly of a callee can show in its callers. Its traffic, I/O and network volume
/// cannot: they follow from what callers send, not the other way round. Its client-side latency
/// cannot either: that is its own dependencies' anomaly to pass on.
fn propagates_to_callers(a: &Anomaly) -> bool {
    !(a.source == Source::Metric && matches!(a.indicator.as_str(), "traffic" | "io" | "network" | "latency_client"))
}

/// Resource usage of a service (its CPU, memory, connections, I/O): driven by the service's own
/// work, so a dependency's trouble does not explain it (a caller gets slower or fails instead).
fn is_resource(a: &Anomaly) -> bool {
    a.source == Source::Metric && layer(a) == 1
}

pub fn build(anomalies: &[Anomaly], deps: &Dependencies, cfg: &GraphConfig) -> CausalGraph {
    let mut g = CausalGraph::with_capacity(anomalies.len(), anomalies.len() * 4);
    let nodes: Vec<NodeIndex> = (0..anomalies.len()).map(|i| g.add_node(i)).collect();
    // Onsets of each service's own anomalies (changes excluded), to tell whether a change was
    // followed by any effect on the changed service itself.
    let mut effects: std::collections::BTreeMap<&str, Vec<Ts>> = Default::default();
    for a in anomalies.iter().filter(|a| a.source != Source::Change) {
        effects.entry(a.service.as_str()).or_default().push(a.onset);
    }
    let affected = |service: &str, change: Ts| {
        effects.get(service).is_some_and(|ts| {
            ts.iter().any(|t| *t >= change.saturating_sub(cfg.tolerance) && *t <= change.saturating_add(cfg.max_lag))
        })
    };
    // Effects by onset: a cause looks only at the anomalies that began within its reach
    // (linear in the anomalies when they spread over time, not quadratic).
    let mut by_onset: Vec<usize> = (0..anomalies.len()).collect();
    by_onset.sort_by_key(|&j| anomalies[j].onset);
    let onsets: Vec<Ts> = by_onset.iter().map(|&j| anomalies[j].onset).collect();
    let mut near: Vec<usize> = Vec::new();
    for (i, cause) in anomalies.iter().enumerate() {
        // A sampled metric may have started up to a sample before its recorded onset; logs,
        // spans and changes carry their exact time.
        let early = if cause.source == Source::Metric { cfg.tolerance } else { EXACT_TOLERANCE };
        let (lo, hi) = (cause.onset.saturating_sub(early), cause.onset.saturating_add(cfg.max_lag));
        let start = onsets.partition_point(|&t| t < lo);
        let end = onsets.partition_point(|&t| t <= hi);
        near.clear();
        near.extend_from_slice(&by_onset[start..end]);
        // In index order, so edges are added as the full scan added them.
        near.sort_unstable();
        for &j in &near {
            let effect = &anomalies[j];
            if i == j || effect.source == Source::Change {
                continue;
            }
            let lag = effect.onset.saturating_sub(cause.onset);
            // Cause before effect, and the cause still active when the effect began.
            if lag < -early || lag > cfg.max_lag || effect.onset > cause.end.saturating_add(cfg.tolerance) {
                continue;
            }
            let edge = if cause.source == Source::Change {
                if effect.service == cause.service && lag >= -cfg.tolerance {
                    Some((EdgeReason::ChangeThenEffect, 1.0))
                } else if deps.calls(&cause.service, &effect.service)
                    && lag <= cfg.change_callee_lag
                    && affected(&cause.service, cause.onset)
                {
                    Some((EdgeReason::ChangeThenCalleeEffect, 0.6))
                } else {
                    None
                }
            } else if effect.service == cause.service {
                // Within a service only a more basic signal drives a more derived one (CPU →
                // latency → errors in logs); two readings of one symptom are not cause and effect.
                (layer(cause) < layer(effect)).then_some((EdgeReason::SameService, 0.8))
            } else if deps.calls(&effect.service, &cause.service)
                && lag <= cfg.propagation_lag
                && !is_resource(effect)
                && propagates_to_callers(cause)
            {
                Some((EdgeReason::CalleeToCaller, 0.7))
            } else {
                None
            };
            if let Some((reason, weight)) = edge {
                g.add_edge(nodes[i], nodes[j], Edge { reason, weight, lag_ms: lag });
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(service: &str, source: Source, indicator: &str, onset: Ts) -> Anomaly {
        Anomaly {
            service: service.into(),
            source,
            indicator: indicator.into(),
            signal: indicator.into(),
            onset,
            end: Ts::MAX,
            score: 6.0,
            direction: 1,
            measure: None,
            evidence: String::new(),
        }
    }

    fn reasons(g: &CausalGraph, anomalies: &[Anomaly]) -> Vec<(String, String, EdgeReason)> {
        let mut v: Vec<_> = g
            .edge_indices()
            .filter_map(|e| {
                let (x, y) = g.edge_endpoints(e)?;
                let (ax, ay) = (&anomalies[g[x]], &anomalies[g[y]]);
                Some((
                    format!("{}:{}", ax.service, ax.indicator),
                    format!("{}:{}", ay.service, ay.indicator),
                    g[e].reason,
                ))
            })
            .collect();
        v.sort_by(|p, q| (&p.0, &p.1).cmp(&(&q.0, &q.1)));
        v
    }

    #[test]
    fn edges_follow_time_and_dependencies() {
        let deps = Dependencies::new(None, &[("web".into(), "auth".into()), ("auth".into(), "ldap".into())]);
        let anomalies = vec![
            a("auth", Source::Change, "ldap.timeout_ms", 0),
            a("auth", Source::Log, "log_errors", 30_000),
            a("ldap", Source::Metric, "cpu", 40_000),
            a("web", Source::Trace, "latency_total", 50_000),
            a("unrelated", Source::Metric, "cpu", 45_000),
        ];
        let g = build(&anomalies, &deps, &GraphConfig::default());
        let r = reasons(&g, &anomalies);
        use EdgeReason::*;
        assert!(r.contains(&("auth:ldap.timeout_ms".into(), "auth:log_errors".into(), ChangeThenEffect)));
        assert!(r.contains(&("auth:ldap.timeout_ms".into(), "ldap:cpu".into(), ChangeThenCalleeEffect)));
        assert!(r.contains(&("auth:log_errors".into(), "web:latency_total".into(), CalleeToCaller)));
        assert!(r.contains(&("ldap:cpu".into(), "auth:log_errors".into(), CalleeToCaller)));
        assert!(!r.iter().any(|e| e.0.starts_with("unrelated") || e.1.starts_with("unrelated")));
        assert!(!r.iter().any(|e| e.0.starts_with("web")), "nothing is caused by the top caller: {r:?}");
    }

    #[test]
    fn a_change_with_no_effect_on_its_service_reaches_no_callee() {
        let deps = Dependencies::new(None, &[("web".into(), "db".into())]);
        let anomalies = vec![a("web", Source::Change, "version", 0), a("db", Source::Metric, "cpu", 10_000)];
        let g = build(&anomalies, &deps, &GraphConfig::default());
        assert_eq!(g.edge_count(), 0);
    }
}
