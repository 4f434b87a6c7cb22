//! `search_similar_incidents`: past incidents from the knowledge base (LanceDB semantic search)
//! that look like this one, with their root causes and resolutions.

use super::{about, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::investigate::ledger::Ledger;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub struct SearchSimilarIncidents;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Free text to search for (default: this incident's alert and anomalies, without naming
    /// any suspect, so the search does not echo the current leader).
    #[serde(default)]
    pub query: Option<String>,
    /// How many past incidents to return (default 5, at most 10).
    #[serde(default)]
    pub k: Option<usize>,
}

/// One past incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Match {
    pub id: String,
    pub title: String,
    pub root_cause_service: String,
    pub root_cause_kind: String,
    pub resolution: String,
    /// Cosine similarity (1 = the same fingerprint).
    pub similarity: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub matches: Vec<Match>,
}

/// The default query: what was seen, not who is suspected.
fn symptoms(cx: &ToolCx) -> String {
    let i = cx.incident;
    let mut parts = vec![i.alert.title.clone(), format!("alert {} {}", i.alert.service, i.alert.signal)];
    let mut anomalies: Vec<_> = cx.triage.detection.anomalies.iter().collect();
    anomalies.sort_by(|a, b| b.score.total_cmp(&a.score));
    parts.extend(anomalies.iter().take(15).map(|a| format!("{} {}", a.service, a.indicator)));
    parts.join(". ")
}

impl Tool for SearchSimilarIncidents {
    const NAME: &'static str = "search_similar_incidents";
    const SPEC: &'static str = include_str!("../../../tools/search_similar_incidents.toml");
    const NEEDS: &'static [Data] = &[Data::KnowledgeBase];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (1.0, 3.0);
    const PER_SERVICE: bool = false;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        let kb = cx.kb.ok_or_else(|| {
            ToolError::new(ToolErrorKind::Unavailable, "no knowledge base is configured (culprit kb add)")
        })?;
        let query = args.query.clone().unwrap_or_else(|| symptoms(cx));
        let k = args.k.unwrap_or(5).clamp(1, 10);
        let matches = kb.search(vec![(query, 1.0)], k)?;
        Ok(Output { matches })
    }

    fn summarize(&self, o: &Output) -> String {
        match o.matches.first() {
            Some(m) => format!(
                "{} similar incident(s); closest ({:.2}): {} — cause {} {}",
                o.matches.len(),
                m.similarity,
                m.title,
                m.root_cause_service,
                m.root_cause_kind
            ),
            None => "no similar past incidents".to_string(),
        }
    }

    /// Past causes that recur make a suspect likelier: ×(1 + 2·s) for the summed similarity s
    /// (capped at 1) of the matches that blamed it. Silence says nothing: a cause new to the
    /// knowledge base is still a cause.
    fn assess(&self, _: &ToolCx, _: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        let mut weight: std::collections::BTreeMap<&str, f64> = Default::default();
        for m in &o.matches {
            *weight.entry(m.root_cause_service.as_str()).or_default() += m.similarity.max(0.0);
        }
        weight.into_iter().flat_map(|(s, w)| about(ledger, s, 1.0 + 2.0 * w.min(1.0))).collect()
    }
}
