//! The feedback re-ranker: logistic weights over the ranking's features, learned from operators'
//! verdicts (confirmed, rejected and corrected root causes), applied after `rank`.
//!
//! Each candidate of a triage becomes one example: its features (the walk's mass, the triage's
//! confidence and position, the lead anomaly's source and strength, how long before the alert it
//! began …) and whether it was the root cause. A confirmed investigation labels its top candidate
//! 1 and the others 0; a correction labels the named service 1 and the others 0; a rejection only
//! labels the top candidate 0. The weights are fitted by L2-regularised gradient descent; with
//! fewer than [`MIN_EXAMPLES`] labelled investigations the re-ranker leaves the order alone.

use crate::detect::Source;
use crate::model::{Alert, MINUTE};
use crate::rank::{self, RankConfig};
use crate::triage::Triage;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Feature names, in the order of [`features`]' vectors.
pub const FEATURES: &[&str] = &[
    "mass",
    "confidence",
    "reciprocal_rank",
    "explained",
    "is_alert_service",
    "lead_is_change",
    "lead_is_trace",
    "lead_is_log",
    "lead_strength",
    "lead_time",
    "anomalies",
    "chain_length",
    "has_change",
];

/// Investigations with feedback needed before the re-ranker changes any order.
pub const MIN_EXAMPLES: usize = 8;

/// One candidate's features.
pub fn features(triage: &Triage, alert: &Alert, cfg: &RankConfig) -> Vec<(String, Vec<f64>)> {
    let candidates = &triage.ranking.candidates;
    let max_score = candidates.iter().map(|c| c.score).fold(0.0_f64, f64::max).max(1e-12);
    let anomalies = &triage.detection.anomalies;
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lead = anomalies.get(c.lead);
            let source = lead.map(|a| a.source);
            let lead_time =
                lead.map_or(0.0, |a| ((alert.time - a.onset) as f64 / (10 * MINUTE) as f64).clamp(-1.0, 3.0));
            let has_change = c.anomalies.iter().any(|&j| anomalies.get(j).is_some_and(|a| a.source == Source::Change));
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            let x = vec![
                c.score / max_score,
                c.confidence,
                1.0 / (i + 1) as f64,
                flag(c.explained),
                flag(c.service == alert.service),
                flag(source == Some(Source::Change)),
                flag(source == Some(Source::Trace)),
                flag(source == Some(Source::Log)),
                lead.map_or(0.0, |a| rank::strength(a, cfg)),
                lead_time,
                (1.0 + c.anomalies.len() as f64).ln(),
                c.chain.len().saturating_sub(1) as f64,
                flag(has_change),
            ];
            (c.service.clone(), x)
        })
        .collect()
}

/// One labelled investigation: its candidates' features and what the operator said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub candidates: Vec<(String, Vec<f64>)>,
    pub label: Label,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Label {
    /// The top candidate was right.
    Confirm,
    /// The top candidate was wrong (the cause is unknown).
    Reject,
    /// The cause was this service.
    Correct { service: String },
}

impl Example {
    /// (features, target) pairs this example teaches.
    fn pairs(&self) -> Vec<(&[f64], f64)> {
        match &self.label {
            Label::Confirm => self
                .candidates
                .iter()
                .enumerate()
                .map(|(i, (_, x))| (x.as_slice(), if i == 0 { 1.0 } else { 0.0 }))
                .collect(),
            Label::Reject => self.candidates.first().map(|(_, x)| vec![(x.as_slice(), 0.0)]).unwrap_or_default(),
            Label::Correct { service } => {
                self.candidates.iter().map(|(s, x)| (x.as_slice(), if s == service { 1.0 } else { 0.0 })).collect()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a re-ranker ({source})")]
    Format { path: String, source: serde_json::Error },
    #[error("{path}: has {have} weights, this culprit uses {want} features")]
    Features { path: String, have: usize, want: usize },
}

/// Logistic weights over [`FEATURES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reranker {
    pub features: Vec<String>,
    pub weights: Vec<f64>,
    pub bias: f64,
    /// Labelled investigations it was fitted on.
    pub examples: usize,
}

impl Reranker {
    /// Fits the weights (full-batch gradient descent on the log loss, L2 penalty `l2`; the same
    /// fit as `calibrate`'s maps). Positives are rare (one per investigation): they weigh as much
    /// as the negatives in total.
    pub fn fit(examples: &[Example], l2: f64) -> Reranker {
        let pairs: Vec<(&[f64], f64)> =
            examples.iter().flat_map(Example::pairs).filter(|(x, _)| x.len() == FEATURES.len()).collect();
        let pos = pairs.iter().filter(|(_, y)| *y > 0.5).count().max(1) as f64;
        let neg = (pairs.len() as f64 - pos).max(1.0);
        let rows: Vec<(Vec<f64>, f64, f64)> =
            pairs.iter().map(|(x, y)| (x.to_vec(), *y, if *y > 0.5 { neg / pos } else { 1.0 })).collect();
        let map = crate::calibrate::Logistic::fit(&rows, l2, 600);
        let weights = if map.weights.len() == FEATURES.len() { map.weights } else { vec![0.0; FEATURES.len()] };
        Reranker {
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            weights,
            bias: map.bias,
            examples: examples.len(),
        }
    }

    /// Whether it has seen enough feedback to change an order.
    pub fn is_trained(&self) -> bool {
        self.examples >= MIN_EXAMPLES
    }

    pub fn probability(&self, x: &[f64]) -> f64 {
        crate::calibrate::sigmoid(self.bias + x.iter().zip(&self.weights).map(|(a, c)| a * c).sum::<f64>())
    }

    /// The candidates' services in the re-ranked order, with their probabilities. Ties keep the
    /// triage's order.
    pub fn order(&self, candidates: &[(String, Vec<f64>)]) -> Vec<(String, f64)> {
        let mut scored: Vec<(usize, String, f64)> =
            candidates.iter().enumerate().map(|(i, (s, x))| (i, s.clone(), self.probability(x))).collect();
        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        scored.into_iter().map(|(_, s, p)| (s, p)).collect()
    }

    pub fn load(path: &Path) -> Result<Reranker, RerankError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RerankError::Io { path: p.clone(), source })?;
        let r: Reranker =
            serde_json::from_str(&text).map_err(|source| RerankError::Format { path: p.clone(), source })?;
        if r.weights.len() != FEATURES.len() {
            return Err(RerankError::Features { path: p, have: r.weights.len(), want: FEATURES.len() });
        }
        Ok(r)
    }

    /// Writes atomically (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<(), RerankError> {
        let p = path.display().to_string();
        let tmp = path.with_extension("json.tmp");
        let text =
            serde_json::to_string_pretty(self).map_err(|source| RerankError::Format { path: p.clone(), source })?;
        std::fs::write(&tmp, text).map_err(|source| RerankError::Io { path: p.clone(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| RerankError::Io { path: p, source })
    }
}

/// Reorders a report's root causes by the re-ranker's probabilities (ranks renumbered); a cause
/// the re-ranker has no features for keeps its place after the ones it has.
pub fn apply(report: &mut crate::report::Report, order: &[(String, f64)]) {
    let pos = |s: &str| order.iter().position(|(o, _)| o == s).unwrap_or(usize::MAX);
    report.root_causes.sort_by_key(|rc| pos(&rc.service));
    for (i, rc) in report.root_causes.iter_mut().enumerate() {
        rc.rank = i + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(top_is_right: bool, seed: usize) -> Example {
        // Two candidates; the cause always has the change, the triage's order varies.
        let n = FEATURES.len();
        let mut cause = vec![0.3; n];
        cause[12] = 1.0;
        cause[5] = 1.0;
        let mut other = vec![0.3 + 0.01 * (seed % 5) as f64; n];
        other[12] = 0.0;
        other[5] = 0.0;
        let (first, second) =
            if top_is_right { (("db", cause), ("api", other)) } else { (("api", other), ("db", cause)) };
        Example {
            candidates: vec![(first.0.to_string(), first.1), (second.0.to_string(), second.1)],
            label: if top_is_right { Label::Confirm } else { Label::Correct { service: "db".into() } },
        }
    }

    #[test]
    fn corrections_teach_the_feature_that_marks_the_cause() {
        let examples: Vec<Example> = (0..10).map(|i| example(i % 3 == 0, i)).collect();
        let r = Reranker::fit(&examples, 1e-3);
        assert!(r.is_trained());
        let test = example(false, 7);
        let order = r.order(&test.candidates);
        assert_eq!(order[0].0, "db", "{order:?}");
        assert!(r.weights[12] > 0.0 && r.weights[5] > 0.0, "{:?}", r.weights);
        assert!(!Reranker::fit(&examples[..3], 1e-3).is_trained());
    }

    #[test]
    fn saved_weights_load_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reranker.json");
        let r = Reranker::fit(&[example(true, 1)], 1e-3);
        r.save(&p).unwrap();
        assert_eq!(Reranker::load(&p).unwrap(), r);
        std::fs::write(&p, r#"{"features":[],"weights":[1.0],"bias":0,"examples":3}"#).unwrap();
        assert!(Reranker::load(&p).unwrap_err().to_string().contains("has 1 weights"));
    }
}
