//! The methods `culprit eval` scores side by side: culprit's pipeline (the triage, with the
//! learned detector, or with the agent after it) and the published baselines. A closed set: the
//! tables list them all, in this order.

use super::EvalOptions;
use crate::baselines::{self, Baseline};
use crate::investigate::Trigger;
use crate::model::Incident;
use crate::pipeline::{self, Deps, PipelineConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The full culprit pipeline, without the agent.
    Culprit,
    /// The pipeline with the learned k-NN embedding detector added (models fitted on each case's
    /// reference period).
    CulpritEmbed,
    /// The pipeline, then the agent with the offline `rules` policy; its ranking is the ledger's
    /// posterior, its confidence the leader's.
    CulpritAgent,
    Baro,
    NSigma,
    EpsilonDiagnosis,
    PageRank,
    Earliest,
    Random,
    LatestChange,
}

/// What a method said about one incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Services, best suspect first.
    pub ranked: Vec<String>,
    /// Whether a root cause was claimed (culprit's verdict; baselines always rank, never claim).
    pub claims_root_cause: Option<bool>,
    /// The confidence in the first answer (culprit's methods only).
    pub confidence: Option<f64>,
    /// Where inside each ranked service (culprit's methods only; see `Outcome::locations`).
    pub locations: Vec<String>,
    /// The evidence behind the first answer (culprit's methods only).
    pub why: Option<String>,
    /// What the confidence was computed from (culprit's methods only; `calibrate`).
    pub features: Vec<f64>,
}

impl Method {
    pub const ALL: [Method; 10] = [
        Method::Culprit,
        Method::CulpritEmbed,
        Method::CulpritAgent,
        Method::Baro,
        Method::NSigma,
        Method::EpsilonDiagnosis,
        Method::PageRank,
        Method::Earliest,
        Method::Random,
        Method::LatestChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Culprit => "culprit",
            Method::CulpritEmbed => "culprit_embed",
            Method::CulpritAgent => "culprit_agent",
            Method::Baro => "baro",
            Method::NSigma => "nsigma",
            Method::EpsilonDiagnosis => "epsilon_diagnosis",
            Method::PageRank => "pagerank",
            Method::Earliest => "earliest",
            Method::Random => "random",
            Method::LatestChange => "latest_change",
        }
    }

    /// Parses a name, ignoring case, `-` and `_` (`n-sigma`, `NSigma`, `epsilon` also work).
    pub fn parse(s: &str) -> Option<Method> {
        let norm = |x: &str| x.trim().to_ascii_lowercase().replace(['-', '_'], "");
        let s = norm(s);
        Method::ALL.into_iter().find(|m| norm(m.as_str()) == s || (s == "epsilon" && *m == Method::EpsilonDiagnosis))
    }

    /// Every method's name, for help and errors.
    pub fn names() -> String {
        Method::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The pipeline a culprit method runs, from the options' triage and agent settings.
    pub fn pipeline_config(self, opts: &EvalOptions) -> PipelineConfig {
        let knn = match self {
            Method::CulpritEmbed => Some(opts.config.knn.clone().unwrap_or_default()),
            _ => None,
        };
        let trigger = if self == Method::CulpritAgent { Trigger::Always } else { Trigger::Never };
        let triage = crate::triage::Config { knn, ..opts.config.clone() };
        PipelineConfig { triage, agent: opts.agent.clone(), trigger }
    }

    /// The published baseline this method is, if it is one.
    fn baseline(self) -> Option<Baseline> {
        Some(match self {
            Method::Culprit | Method::CulpritEmbed | Method::CulpritAgent => return None,
            Method::Baro => Baseline::Baro,
            Method::NSigma => Baseline::NSigma,
            Method::EpsilonDiagnosis => Baseline::EpsilonDiagnosis,
            Method::PageRank => Baseline::PageRank,
            Method::Earliest => Baseline::Earliest,
            Method::Random => Baseline::Random,
            Method::LatestChange => Baseline::LatestChange,
        })
    }

    /// Runs the method on one incident: culprit's through the pipeline, baselines directly.
    pub fn run(self, incident: &Incident, opts: &EvalOptions) -> Answer {
        match self.baseline() {
            Some(b) => Answer {
                ranked: baselines::rank(b, incident),
                claims_root_cause: None,
                confidence: None,
                locations: Vec::new(),
                why: None,
                features: Vec::new(),
            },
            None => {
                let out = pipeline::run(incident, &self.pipeline_config(opts), Deps::default());
                Answer {
                    ranked: out.ranked(),
                    claims_root_cause: Some(out.claims_root_cause()),
                    confidence: out.confidence(),
                    locations: out.locations(),
                    why: out.why(),
                    features: out.calibration_features().unwrap_or_default(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_by_name() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("N-Sigma"), Some(Method::NSigma));
        assert_eq!(Method::parse("epsilon"), Some(Method::EpsilonDiagnosis));
        assert_eq!(Method::parse("bogus"), None);
    }
}
