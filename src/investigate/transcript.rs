//! The investigation's transcript: a typed, versioned artifact (`culprit.transcript/v1`), saved as
//! JSON and printed in the report. Every step carries its reasoning, the call, a summary of the
//! result, the likelihood ratios it gave, and the confidence before and after.

use super::ledger::Hypothesis;
use super::tools::ToolError;
use serde::{Deserialize, Serialize};

pub const TRANSCRIPT_SCHEMA: &str = "culprit.transcript/v1";

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The leading hypothesis reached the threshold.
    Confident,
    /// The policy concluded (or had nothing left worth checking).
    Concluded,
    TurnBudget,
    TimeBudget,
    TokenBudget,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Confident => "the leading hypothesis reached the confidence threshold",
            StopReason::Concluded => "nothing left that would change the answer",
            StopReason::TurnBudget => "the turn budget ran out",
            StopReason::TimeBudget => "the time budget ran out",
            StopReason::TokenBudget => "the token budget ran out",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub turn: usize,
    /// The policy that chose this step (`rules` after a fallback).
    pub policy: String,
    pub reasoning: String,
    pub tool: String,
    pub args: serde_json::Value,
    pub summary: String,
    /// The tool's full output (absent on error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
    /// (hypothesis, likelihood ratio) the result gave.
    pub ratios: Vec<(String, f64)>,
    pub leader_before: String,
    pub confidence_before: f64,
    pub leader_after: String,
    pub confidence_after: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypothesisView {
    /// None for "none of these".
    pub service: Option<String>,
    pub kind: String,
    pub prior: f64,
    pub posterior: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conclusion {
    /// None when "none of the triage's suspects" leads.
    pub service: Option<String>,
    pub kind: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub schema: String,
    pub incident: String,
    pub policy: String,
    /// Why the investigation finished with the rules policy, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub threshold: f64,
    pub stop: StopReason,
    pub conclusion: Conclusion,
    /// Every hypothesis, most probable first.
    pub hypotheses: Vec<HypothesisView>,
    pub steps: Vec<Step>,
    /// Calls that failed (unknown tool, invalid arguments, nothing found, unavailable).
    pub tool_errors: usize,
    pub tokens: u64,
    pub seconds: f64,
}

/// A hypothesis as one word: its service, or `none of these`.
pub fn label(h: &Hypothesis) -> String {
    h.service.clone().unwrap_or_else(|| "none of these".to_string())
}

impl Transcript {
    /// Services in the agent's order (named hypotheses by posterior), then `rest` in its order.
    pub fn ranked<'a>(&self, rest: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = self.hypotheses.iter().filter_map(|h| h.service.clone()).collect();
        for s in rest {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
        out
    }

    /// Plain-text rendering for the report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let who = self.conclusion.service.as_deref().unwrap_or("none of the triage's suspects");
        out.push_str(&format!(
            "Investigation ({} policy): {who} with confidence {:.2}; stopped because {} after {} step(s).\n",
            self.policy,
            self.conclusion.confidence,
            self.stop.describe(),
            self.steps.len()
        ));
        if let Some(f) = &self.fallback {
            out.push_str(&format!("  Note: {f}.\n"));
        }
        for s in &self.steps {
            let ratios: Vec<String> = s.ratios.iter().map(|(h, r)| format!("{h} ×{r:.2}")).collect();
            out.push_str(&format!("  {}. {}({})\n", s.turn, s.tool, compact(&s.args)));
            out.push_str(&format!("     why: {}\n", s.reasoning));
            match &s.error {
                Some(e) => {
                    out.push_str(&format!("     error: {}\n", e.message));
                    if let Some(d) = &e.diagnostics {
                        out.push_str(&format!("     diagnostics: {d}\n"));
                    }
                }
                None => out.push_str(&format!("     found: {}\n", s.summary)),
            }
            if !ratios.is_empty() {
                out.push_str(&format!("     evidence: {}\n", ratios.join(", ")));
            }
            out.push_str(&format!(
                "     confidence: {} {:.2} → {} {:.2}\n",
                s.leader_before, s.confidence_before, s.leader_after, s.confidence_after
            ));
        }
        let hyps: Vec<String> = self
            .hypotheses
            .iter()
            .map(|h| {
                format!("{} {:.2} (prior {:.2})", h.service.as_deref().unwrap_or("none of these"), h.posterior, h.prior)
            })
            .collect();
        out.push_str(&format!("  Posterior: {}\n", hyps.join(", ")));
        out
    }
}

fn compact(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(m) if m.is_empty() => String::new(),
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect::<Vec<_>>()
            .join(", "),
        None => v.to_string(),
    }
}
