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

pub mod chat;
pub mod ledger;
pub mod llm;
pub mod policy;
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
        AgentConfig {
            threshold: culprit_readers::config::AGENT_THRESHOLD,
            max_turns: culprit_readers::config::AGENT_MAX_TURNS,
            max_seconds: culprit_readers::config::AGENT_MAX_SECONDS,
            max_tokens: 30_000,
            hypotheses: 5,
            max_items: 8,
        }
    }
}

/// Called with each step as it is recorded (the service streams steps to watchers).
pub type StepHook<'a> = Box<dyn FnMut(&Step) + 'a>;

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

/// The prior of "none of these" when the triage names a root cause: it trusts one of its
/// suspects, so the agent starts from them.
pub const P_NONE_WITH_CAUSE: f64 = 0.1;

/// The prior of "none of these" when the triage names no root cause: even odds that the cause is
/// outside its suspects.
pub const P_NONE_WITHOUT_CAUSE: f64 = 0.5;

/// The ledger's priors: the triage's top `cfg.hypotheses` candidates, in proportion to their
/// triage confidence, and "none of these" at [`P_NONE_WITH_CAUSE`] or [`P_NONE_WITHOUT_CAUSE`].
/// From here on the agent's belief is the ledger's posterior ([`Ledger::posterior`]), which
/// `calibrate` maps to the confidence the report prints.
pub fn initial_ledger(triage: &Triage, cfg: &AgentConfig) -> Ledger {
    let candidates: Vec<(String, String, f64)> = triage
        .ranking
        .candidates
        .iter()
        .take(cfg.hypotheses.max(1))
        .map(|c| {
            let indicator = triage.detection.anomalies.get(c.lead).map(|a| a.indicator.clone()).unwrap_or_default();
            (c.service.clone(), indicator, c.confidence)
        })
        .collect();
    Ledger::new(&candidates, if triage.ranking.has_root_cause { P_NONE_WITH_CAUSE } else { P_NONE_WITHOUT_CAUSE })
}

/// An investigation in progress: the ledger and the steps so far. `investigate` runs one to the
/// end; `culprit chat` keeps one open, adds the user's questions as steps, and saves it.
pub struct Session<'a> {
    pub cx: ToolCx<'a>,
    pub tools: Vec<Box<dyn ToolDyn>>,
    pub ledger: Ledger,
    pub priors: Vec<f64>,
    pub steps: Vec<Step>,
    pub tool_errors: usize,
    /// Set when the policy failed and the rules policy took over.
    pub fallback: Option<String>,
    pub seconds: f64,
    /// Called with each step as it is recorded (the service streams them to watchers).
    pub on_step: Option<StepHook<'a>>,
}

impl<'a> Session<'a> {
    pub fn new(
        incident: &'a Incident,
        triage: &'a Triage,
        kb: Option<&'a dyn PastIncidents>,
        cfg: &AgentConfig,
    ) -> Session<'a> {
        Session::resume(incident, triage, kb, initial_ledger(triage, cfg), Vec::new(), cfg)
    }

    /// Continues from a saved ledger and steps (the priors are the ledger's before any evidence).
    pub fn resume(
        incident: &'a Incident,
        triage: &'a Triage,
        kb: Option<&'a dyn PastIncidents>,
        ledger: Ledger,
        steps: Vec<Step>,
        cfg: &AgentConfig,
    ) -> Session<'a> {
        let priors = Ledger {
            hypotheses: ledger
                .hypotheses
                .iter()
                .map(|h| ledger::Hypothesis { log_evidence: 0.0, ..h.clone() })
                .collect(),
            evidence: Vec::new(),
        }
        .posterior();
        let tool_errors = steps.iter().filter(|s| s.error.is_some()).count();
        Session {
            cx: ToolCx { incident, triage, kb, max_items: cfg.max_items.max(1), logs: Default::default() },
            tools: tools::all(),
            ledger,
            priors,
            steps,
            tool_errors,
            fallback: None,
            seconds: 0.0,
            on_step: None,
        }
    }

    /// Makes one call, scores its result into the ledger and records the step. A repeated call
    /// (same tool, same arguments, succeeded before) is refused with a pointer to the earlier turn.
    pub fn call(&mut self, tool: String, args: serde_json::Value, reasoning: String, policy: &str) -> Step {
        let before = self.ledger.leader();
        let repeated =
            self.steps.iter().find(|s| s.tool == tool && s.args == args && s.error.is_none()).map(|s| s.turn);
        let result = match repeated {
            Some(turn) => Err(ToolError::new(
                ToolErrorKind::InvalidArgs,
                format!("already called with these arguments at turn {turn}; see its result"),
            )),
            None => tools::run(&self.tools, &self.cx, &tool, args.clone(), &self.ledger),
        };
        let (summary, output, error, ratios) = match result {
            Ok(obs) => (obs.summary, Some(obs.output), None, obs.ratios),
            Err(e) => {
                self.tool_errors += 1;
                (e.message.clone(), None, Some(e), Vec::new())
            }
        };
        if !ratios.is_empty() {
            self.ledger.update(Evidence { tool: tool.clone(), summary: summary.clone(), ratios: ratios.clone() });
        }
        let after = self.ledger.leader();
        let label = |i: usize| transcript::label(&self.ledger.hypotheses[i]);
        let step = Step {
            turn: self.steps.len() + 1,
            policy: policy.to_string(),
            reasoning,
            tool,
            args,
            summary,
            output,
            error,
            ratios: ratios.iter().map(|&(i, r)| (label(i), r)).collect(),
            leader_before: label(before.0),
            confidence_before: before.1,
            leader_after: label(after.0),
            confidence_after: after.1,
        };
        tracing::info!(turn = step.turn, tool = %step.tool, summary = %step.summary, confidence = step.confidence_after, "agent step");
        if let Some(d) = step.error.as_ref().and_then(|e| e.diagnostics.as_deref()) {
            tracing::warn!(turn = step.turn, tool = %step.tool, diagnostics = %d, "tool failed");
        }
        self.steps.push(step.clone());
        if let Some(f) = self.on_step.as_mut() {
            f(&step);
        }
        step
    }

    /// Runs the loop for up to `cfg.max_turns` more calls. A policy that fails hands over to the
    /// `rules` policy for the rest of the session, and the transcript says so.
    pub fn run(&mut self, policy: &mut dyn Policy, cfg: &AgentConfig) -> StopReason {
        let started = Instant::now();
        let first = self.steps.len();
        let mut rules = rules::Rules;
        let policy_name = policy.name();
        let stop = loop {
            let (leader, p) = self.ledger.leader();
            if leader != self.ledger.none() && p >= cfg.threshold {
                break StopReason::Confident;
            }
            if self.steps.len() - first >= cfg.max_turns {
                break StopReason::TurnBudget;
            }
            if started.elapsed() > Duration::from_secs_f64(cfg.max_seconds.max(0.0)) {
                break StopReason::TimeBudget;
            }
            if policy.tokens() >= cfg.max_tokens {
                break StopReason::TokenBudget;
            }
            let view = View {
                cx: &self.cx,
                ledger: &self.ledger,
                steps: &self.steps,
                tools: &self.tools,
                threshold: cfg.threshold,
            };
            let decision = if self.fallback.is_some() {
                rules.decide(&view)
            } else {
                match policy.decide(&view) {
                    Ok(d) => Ok(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "policy failed; finishing with the rules policy");
                        self.fallback = Some(format!("{policy_name} failed ({e}); finished with the rules policy"));
                        rules.decide(&view)
                    }
                }
            };
            let (tool, args, reasoning) = match decision {
                Ok(Decision::Call { tool, args, reasoning }) => (tool, args, reasoning),
                Ok(Decision::Conclude { .. }) | Err(_) => break StopReason::Concluded,
            };
            let by = if self.fallback.is_some() { "rules".to_string() } else { policy_name.clone() };
            let step = self.call(tool, args, reasoning, &by);
            if self.fallback.is_none() {
                let remaining = cfg.max_turns.saturating_sub(self.steps.len() - first);
                policy.observe(&step, &self.ledger, remaining);
            }
        };
        self.seconds += started.elapsed().as_secs_f64();
        stop
    }

    /// The transcript of everything so far.
    pub fn transcript(&self, policy: String, tokens: u64, stop: StopReason, threshold: f64) -> Transcript {
        let posterior = self.ledger.posterior();
        let mut hypotheses: Vec<HypothesisView> = self
            .ledger
            .hypotheses
            .iter()
            .zip(self.priors.iter().zip(&posterior))
            .map(|(h, (&prior, &post))| HypothesisView {
                service: h.service.clone(),
                kind: h.kind.clone(),
                prior,
                posterior: post,
            })
            .collect();
        hypotheses.sort_by(|a, b| b.posterior.total_cmp(&a.posterior));
        let (leader, confidence) = self.ledger.leader();
        let lead = &self.ledger.hypotheses[leader];
        Transcript {
            schema: TRANSCRIPT_SCHEMA.to_string(),
            incident: self.cx.incident.id.clone(),
            policy,
            fallback: self.fallback.clone(),
            threshold,
            stop,
            conclusion: Conclusion { service: lead.service.clone(), kind: lead.kind.clone(), confidence },
            hypotheses,
            steps: self.steps.clone(),
            tool_errors: self.tool_errors,
            tokens,
            seconds: self.seconds,
        }
    }
}

/// Runs an investigation to the end with `policy`.
pub fn investigate(
    incident: &Incident,
    triage: &Triage,
    kb: Option<&dyn PastIncidents>,
    policy: &mut dyn Policy,
    cfg: &AgentConfig,
) -> Transcript {
    investigate_watched(incident, triage, kb, policy, cfg, None)
}

/// [`investigate`], calling `on_step` with each step as it is made.
pub fn investigate_watched<'a>(
    incident: &'a Incident,
    triage: &'a Triage,
    kb: Option<&'a dyn PastIncidents>,
    policy: &mut dyn Policy,
    cfg: &AgentConfig,
    on_step: Option<StepHook<'a>>,
) -> Transcript {
    let _span = tracing::info_span!("investigate", incident = %incident.id).entered();
    let mut session = Session::new(incident, triage, kb, cfg);
    session.on_step = on_step;
    let stop = session.run(policy, cfg);
    session.transcript(policy.name(), policy.tokens(), stop, cfg.threshold)
}
