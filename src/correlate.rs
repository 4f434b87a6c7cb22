//! Temporal correlation: anomalies whose onsets fall close together are grouped, and the service
//! dependency graph (declared, or mined from traces) says which services can affect which.

use crate::detect::{Anomaly, Source};
use crate::model::{Topology, Ts};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Anomalies whose onsets lie within `window` of the group's first onset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub start: Ts,
    pub end: Ts,
    /// Indices into the anomaly list, by onset.
    pub members: Vec<usize>,
    pub services: Vec<String>,
}

/// Groups anomalies by onset; `anomalies` need not be sorted.
pub fn group(anomalies: &[Anomaly], window: Ts) -> Vec<Group> {
    let mut order: Vec<usize> = (0..anomalies.len()).collect();
    order.sort_by_key(|&i| (anomalies[i].onset, i));
    let mut groups: Vec<Group> = Vec::new();
    for i in order {
        let t = anomalies[i].onset;
        match groups.last_mut() {
            Some(g) if t - g.start <= window => {
                g.end = t;
                g.members.push(i);
            }
            _ => groups.push(Group { start: t, end: t, members: vec![i], services: Vec::new() }),
        }
    }
    for g in &mut groups {
        let s: BTreeSet<&str> = g.members.iter().map(|&i| anomalies[i].service.as_str()).collect();
        g.services = s.into_iter().map(String::from).collect();
    }
    groups
}

/// Suspects that show nothing themselves: when callers wait longer on their calls (client-side
/// latency), the cause is among what they call. Each waiting caller spreads its evidence over its
/// callees; a dependency shared by several waiting callers collects the most. Only services with
/// no anomaly of their own become suspects this way (those with one are linked by the graph).
pub fn infer(anomalies: &[Anomaly], deps: &Dependencies) -> Vec<Anomaly> {
    let observed: BTreeSet<&str> =
        anomalies.iter().filter(|a| a.source != Source::Change).map(|a| a.service.as_str()).collect();
    // Strongest waiting signal per caller.
    let mut waiting: BTreeMap<&str, &Anomaly> = BTreeMap::new();
    for a in anomalies.iter().filter(|a| a.indicator == "latency_client" && a.direction > 0) {
        let best = waiting.entry(a.service.as_str()).or_insert(a);
        if a.score > best.score {
            *best = a;
        }
    }
    let mut suspects: BTreeMap<&str, (f64, Vec<&str>, Ts, Ts)> = BTreeMap::new();
    for (caller, a) in &waiting {
        let callees: Vec<&str> = deps.callees_of(caller).collect();
        for callee in callees.iter().filter(|c| !observed.contains(*c)) {
            let e = suspects.entry(callee).or_insert((0.0, Vec::new(), Ts::MAX, Ts::MIN));
            e.0 += a.score / callees.len() as f64;
            e.1.push(caller);
            e.2 = e.2.min(a.onset);
            e.3 = e.3.max(a.end);
        }
    }
    suspects
        .into_iter()
        .map(|(service, (score, callers, onset, end))| Anomaly {
            service: service.to_string(),
            source: Source::Inferred,
            indicator: "latency".into(),
            signal: format!("waited on by {}", callers.join(", ")),
            onset,
            end,
            score,
            direction: 1,
            measure: None,
            evidence: format!(
                "{service} shows nothing itself, but its callers {} wait longer on their calls",
                callers.join(", ")
            ),
        })
        .collect()
}

/// Who calls whom, in both directions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dependencies {
    callees: BTreeMap<String, BTreeSet<String>>,
    callers: BTreeMap<String, BTreeSet<String>>,
    /// Where the edges came from: `topology`, `traces`, `topology+traces` or `none`.
    pub origin: &'static str,
}

impl Dependencies {
    /// The declared topology wins; mined trace edges are added to it (a declared graph is often
    /// incomplete, a mined one only knows the calls that happened).
    pub fn new(topology: Option<&Topology>, mined: &[(String, String)]) -> Dependencies {
        let mut d = Dependencies::default();
        let declared = topology.map(|t| !t.edges.is_empty()).unwrap_or(false);
        for e in topology.iter().flat_map(|t| &t.edges) {
            d.add(&e.caller, &e.callee);
        }
        for (caller, callee) in mined {
            d.add(caller, callee);
        }
        d.origin = match (declared, !mined.is_empty()) {
            (true, true) => "topology+traces",
            (true, false) => "topology",
            (false, true) => "traces",
            (false, false) => "none",
        };
        d
    }

    fn add(&mut self, caller: &str, callee: &str) {
        if caller == callee {
            return;
        }
        self.callees.entry(caller.to_string()).or_default().insert(callee.to_string());
        self.callers.entry(callee.to_string()).or_default().insert(caller.to_string());
    }

    pub fn calls(&self, caller: &str, callee: &str) -> bool {
        self.callees.get(caller).is_some_and(|c| c.contains(callee))
    }

    pub fn callers_of(&self, service: &str) -> impl Iterator<Item = &str> {
        self.callers.get(service).into_iter().flatten().map(String::as_str)
    }

    pub fn callees_of(&self, service: &str) -> impl Iterator<Item = &str> {
        self.callees.get(service).into_iter().flatten().map(String::as_str)
    }

    /// Shortest call path `from` a callee up to `to` through callers, if there is one.
    pub fn caller_path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(s) = queue.pop_front() {
            if s == to {
                let mut path = vec![to.to_string()];
                let mut cur = to;
                while let Some(p) = prev.get(cur) {
                    path.push(p.to_string());
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            for c in self.callers_of(s) {
                if seen.insert(c) {
                    prev.insert(c, s);
                    queue.push_back(c);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Source;

    fn a(service: &str, onset: Ts) -> Anomaly {
        Anomaly {
            service: service.into(),
            source: Source::Metric,
            indicator: "cpu".into(),
            signal: "cpu".into(),
            onset,
            end: Ts::MAX,
            score: 5.0,
            direction: 1,
            measure: None,
            evidence: String::new(),
        }
    }

    #[test]
    fn groups_split_when_the_window_is_exceeded() {
        let anomalies = vec![a("b", 200), a("a", 0), a("c", 1000), a("a", 250)];
        let g = group(&anomalies, 300);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members, vec![1, 0, 3]);
        assert_eq!(g[0].services, vec!["a", "b"]);
        assert_eq!(g[1].members, vec![2]);
    }

    #[test]
    fn the_dependency_all_waiting_callers_share_is_the_suspect() {
        let deps = Dependencies::new(
            None,
            &[
                ("web".into(), "cart".into()),
                ("web".into(), "currency".into()),
                ("web".into(), "ads".into()),
                ("checkout".into(), "currency".into()),
                ("checkout".into(), "email".into()),
            ],
        );
        let mut w = a("web", 100);
        w.indicator = "latency_client".into();
        let mut c = a("checkout", 120);
        c.indicator = "latency_client".into();
        let ads = a("ads", 90);
        let inferred = infer(&[w, c, ads], &deps);
        let top = inferred.iter().max_by(|x, y| x.score.total_cmp(&y.score)).expect("suspects");
        assert_eq!(top.service, "currency");
        assert_eq!(top.onset, 100);
        assert!(inferred.iter().all(|s| s.service != "ads"), "ads has its own anomaly");
    }

    #[test]
    fn caller_paths_follow_dependencies_upwards() {
        let mined = vec![
            ("frontend".to_string(), "api".to_string()),
            ("api".to_string(), "db".to_string()),
            ("frontend".to_string(), "cache".to_string()),
        ];
        let d = Dependencies::new(None, &mined);
        assert_eq!(d.origin, "traces");
        assert_eq!(d.caller_path("db", "frontend"), Some(vec!["db".into(), "api".into(), "frontend".into()]));
        assert_eq!(d.caller_path("frontend", "db"), None);
        assert!(d.calls("api", "db"));
    }
}
