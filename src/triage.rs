//! The static triage pipeline: detect → correlate → graph → rank, as one pure function.
//!
//! This is what every investigation starts from: the agent (later) refines its hypotheses, and
//! the eval harness scores it directly.

use crate::correlate::{self, Dependencies, Group};
use crate::detect::{self, DetectConfig, Detection};
use crate::embed::knn::{self, KnnConfig};
use crate::graph::{self, CausalGraph, GraphConfig};
use crate::model::{Incident, Ts, MINUTE};
use crate::rank::{self, RankConfig, Ranking};
use serde::{Deserialize, Serialize};

/// Every tunable of the pipeline, with defaults that need no tuning per system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub detect: DetectConfig,
    /// Anomalies whose onsets are this close are grouped together.
    pub group_window: Ts,
    pub graph: GraphConfig,
    pub rank: RankConfig,
    /// The learned k-NN embedding detector, when enabled (off by default: it needs libtorch time,
    /// and models trained or fitted per incident).
    pub knn: Option<KnnConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            detect: DetectConfig::default(),
            group_window: 5 * MINUTE,
            graph: GraphConfig::default(),
            rank: RankConfig::default(),
            knn: None,
        }
    }
}

/// What the pipeline worked out about one incident.
#[derive(Debug, Clone)]
pub struct Triage {
    pub detection: Detection,
    pub dependencies: Dependencies,
    pub groups: Vec<Group>,
    pub graph: CausalGraph,
    pub ranking: Ranking,
}

pub fn triage(incident: &Incident, cfg: &Config) -> Triage {
    let _span = tracing::info_span!("triage", incident = %incident.id).entered();
    let mut detection = detect::detect(incident, &cfg.detect);
    if let Some(knn) = &cfg.knn {
        knn::detect(incident, knn, &cfg.detect, &mut detection);
        detection.anomalies.sort_by(|a, b| {
            a.onset.cmp(&b.onset).then_with(|| a.service.cmp(&b.service)).then_with(|| a.indicator.cmp(&b.indicator))
        });
    }
    if let Some(note) = graph::bound(&mut detection.anomalies) {
        tracing::warn!("{note}");
        detection.unchecked.push(note);
    }
    let dependencies = Dependencies::new(incident.topology.as_ref(), &detection.call_edges);
    let inferred = correlate::infer(&detection.anomalies, &dependencies);
    detection.anomalies.extend(inferred);
    let groups = correlate::group(&detection.anomalies, cfg.group_window);
    let graph = graph::build(&detection.anomalies, &dependencies, &cfg.graph);
    let ranking =
        rank::rank(&detection.anomalies, &graph, &dependencies, &incident.alert, &|s| detection.end_of(s), &cfg.rank);
    tracing::info!(
        anomalies = detection.anomalies.len(),
        edges = graph.edge_count(),
        groups = groups.len(),
        root_cause = ranking.has_root_cause,
        "triage done"
    );
    Triage { detection, dependencies, groups, graph, ranking }
}
