//! The investigation after the static triage: a ReAct loop (observe → hypothesize → act →
//! update) over typed tools, with a Bayesian hypothesis ledger.
//!
//! The initial hypotheses are the triage's top candidates (priors in proportion to their
//! confidence) plus "none of these". Each turn a [`Policy`] chooses a tool call or concludes; the tool
//! answers and assesses its answer as likelihood ratios, and the ledger updates the posterior.
//! The loop stops when the leading named hypothesis reaches the confidence threshold, the policy
//! concludes, or the turn, time or token budget runs out. Whatever chose the calls, confidence is
//! the ledger's posterior: prior × the product of the evidence's ratios, explainable step by step.
//!
//! Map: `ledger` (the posterior), `tools/` (the tools, their JSON face and their assessments),
//! `rules` (the offline policy), `llm` (the model policy), `transcript` (the versioned artifact).

pub mod ledger;
pub mod llm;

pub mod rules;
pub mod tools;
pub mod transcript;

use crate::model::{Incident, Severity};
use crate::triage::Triage;
use ledger::{Evidence, Ledger};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tools::{PastIncidents, ToolCx, ToolDyn, ToolError, ToolErrorKind};
pub use transcript::{Conclusion, HypothesisView, Step, StopReason, Transcript, TRANSCRIPT_SCHEMA};

/// When `culprit investigate` runs the agent after the triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Always.
    Always,
    /// Never: the static triage only.
    Never,
    /// When the alert is high or critical, or the triage is less sure than the threshold.
    #[default]
    Auto,
}

/// Budgets and thresholds of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Stop when the leading named hypothesis reaches this posterior.
    pub threshold: f64,
    /// Most tool calls (valid or not).
    pub max_turns: usize,
    /// Wall-clock budget of the whole loop, in seconds.
    pub max_seconds: f64,
    /// Token budget of a model policy (prompt and completion), summed over turns.
    pub max_tokens: u64,
    /// How many of the triage's candidates become hypotheses.
    pub hypotheses: usize,
    /// Most items a tool returns in one list.
    pub max_items: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig { threshold: 0.85, max_turns: 8, max_seconds: 120.0, max_tokens: 30_000, hypotheses: 5, max_items: 8 }
    }
}

/// Whether the agent should run for this incident and triage.
pub fn should_run(trigger: Trigger, incident: &Incident, triage: &Triage, cfg: &AgentConfig) -> bool {
    match trigger {
        Trigger::Always => true,
        Trigger::Never => false,
        Trigger::Auto => {
            incident.alert.severity >= Severity::High
                || triage.ranking.candidates.first().is_none_or(|c| c.confidence < cfg.threshold)
        }
    }
}

/// What a policy sees when it decides.
pub struct View<'a> {
    pub cx: &'a ToolCx<'a>,
    pub ledger: &'a Ledger,
    pub steps: &'a [Step],
    pub tools: &'a [Box<dyn ToolDyn>],
    pub threshold: f64,
}

/// A policy's next move.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Call { tool: String, args: serde_json::Value, reasoning: String },
    Conclude { reasoning: String },
}

/// A policy that cannot go on (the model is unreachable, keeps failing, or answers nonsense).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

pub trait Policy {
    /// `rules`, or `llm:<model>`.
    fn name(&self) -> String;
    fn decide(&mut self, view: &View) -> Result<Decision, PolicyError>;
    /// The result of the call it chose and the posterior after it, with the turns left (a model
    /// keeps them in its conversation).
    fn observe(&mut self, _step: &Step, _ledger: &Ledger, _remaining: usize) {}
    /// Tokens used so far (0 for policies without a model).
    fn tokens(&self) -> u64 {
        0
    }
}

/// Runs the loop. A policy that fails hands over to the `rules` policy for the rest of the
/// investigation, and the transcript says so.
pub fn investigate(
    incident: &Incident,
    triage: &Triage,
    kb: Option<&dyn PastIncidents>,
    policy: &mut dyn Policy,
    cfg: &AgentConfig,
) -> Transcript {
    let _span = tracing::info_span!("investigate", incident = %incident.id).entered();
    let started = Instant::now();
    let cx = ToolCx { incident, triage, kb, max_items: cfg.max_items.max(1) };
    let tools = tools::all();
    let candidates: Vec<(String, String, f64)> = triage
        .ranking
        .candidates
        .iter()
        .take(cfg.hypotheses.max(1))
        .map(|c| {
            let a = &triage.detection.anomalies[c.lead];
            (c.service.clone(), a.indicator.clone(), c.confidence)
        })
        .collect();
    let p_none = if triage.ranking.has_root_cause { 0.1 } else { 0.5 };
    let mut ledger = Ledger::new(&candidates, p_none);
    let priors = ledger.posterior();
    let mut steps: Vec<Step> = Vec::new();
    let mut fallback: Option<String> = None;
    let mut rules = rules::Rules;
    let mut tool_errors = 0usize;
    let policy_name = policy.name();
    let stop = loop {
        let (leader, p) = ledger.leader();
        if leader != ledger.none() && p >= cfg.threshold {
            break StopReason::Confident;
        }
        if steps.len() >= cfg.max_turns {
            break StopReason::TurnBudget;
        }
        if started.elapsed() > Duration::from_secs_f64(cfg.max_seconds.max(0.0)) {
            break StopReason::TimeBudget;
        }
        if policy.tokens() >= cfg.max_tokens {
            break StopReason::TokenBudget;
        }
        let view = View { cx: &cx, ledger: &ledger, steps: &steps, tools: &tools, threshold: cfg.threshold };
        let decision = if fallback.is_some() {
            rules.decide(&view)
        } else {
            match policy.decide(&view) {
                Ok(d) => Ok(d),
                Err(e) => {
                    tracing::warn!(error = %e, "policy failed; finishing with the rules policy");
                    fallback = Some(format!("{policy_name} failed ({e}); finished with the rules policy"));
                    rules.decide(&view)
                }
            }
        };
        let (tool, args, reasoning) = match decision {
            Ok(Decision::Call { tool, args, reasoning }) => (tool, args, reasoning),
            Ok(Decision::Conclude { .. }) | Err(_) => break StopReason::Concluded,
        };
        let before = ledger.leader();
        let repeated = steps.iter().find(|s| s.tool == tool && s.args == args && s.error.is_none()).map(|s| s.turn);
        let result = match repeated {
            Some(turn) => Err(ToolError::new(ToolErrorKind::InvalidArgs, format!("already called with these arguments at turn {turn}; see its result"))),
            None => tools::run(&tools, &cx, &tool, args.clone(), &ledger),
        };
        let (summary, output, error, ratios) = match result {
            Ok(obs) => (obs.summary, Some(obs.output), None, obs.ratios),
            Err(e) => {
                tool_errors += 1;
                (e.message.clone(), None, Some(e), Vec::new())
            }
        };
        if !ratios.is_empty() {
            ledger.update(Evidence { tool: tool.clone(), summary: summary.clone(), ratios: ratios.clone() });
        }
        let after = ledger.leader();
        let step = Step {
            turn: steps.len() + 1,
            policy: if fallback.is_some() { "rules".to_string() } else { policy_name.clone() },
            reasoning,
            tool,
            args,
            summary,
            output,
            error,
            ratios: ratios.iter().map(|&(i, r)| (transcript::label(&ledger.hypotheses[i]), r)).collect(),
            leader_before: transcript::label(&ledger.hypotheses[before.0]),
            confidence_before: before.1,
            leader_after: transcript::label(&ledger.hypotheses[after.0]),
            confidence_after: after.1,
        };
        tracing::info!(turn = step.turn, tool = %step.tool, summary = %step.summary, confidence = step.confidence_after, "agent step");
        if fallback.is_none() {
            policy.observe(&step, &ledger, cfg.max_turns.saturating_sub(step.turn));
        }
        steps.push(step);
    };
    let posterior = ledger.posterior();
    let mut hypotheses: Vec<HypothesisView> = ledger
        .hypotheses
        .iter()
        .zip(priors.iter().zip(&posterior))
        .map(|(h, (&prior, &post))| HypothesisView { service: h.service.clone(), kind: h.kind.clone(), prior, posterior: post })
        .collect();
    hypotheses.sort_by(|a, b| b.posterior.total_cmp(&a.posterior));
    let (leader, confidence) = ledger.leader();
    let lead = &ledger.hypotheses[leader];
    Transcript {
        schema: TRANSCRIPT_SCHEMA.to_string(),
        incident: incident.id.clone(),
        policy: policy_name,
        fallback,
        threshold: cfg.threshold,
        stop,
        conclusion: Conclusion { service: lead.service.clone(), kind: lead.kind.clone(), confidence },
        hypotheses,
        steps,
        tool_errors,
        tokens: policy.tokens(),
        seconds: started.elapsed().as_secs_f64(),
    }
}
