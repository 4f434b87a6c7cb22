//! The pipeline, assembled in this one place: the triage (detect → correlate → graph → rank), the
//! report, the feedback re-ranker, and the agent when the trigger says so. The CLI, the service,
//! eval, the knowledge base and bench all call [`run`] with a config and their dependencies; none
//! of them strings the stages together itself.

use crate::investigate::tools::PastIncidents;
use crate::investigate::{self, AgentConfig, Policy, StepHook, Transcript, Trigger};
use crate::model::Incident;
use crate::report::{self, Report, Verdict};
use crate::rerank::{self, Reranker};
use crate::triage::{self, Triage};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Everything a run is configured with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineConfig {
    pub triage: triage::Config,
    pub agent: AgentConfig,
    /// When the agent runs after the triage.
    pub trigger: Trigger,
}

impl PipelineConfig {
    /// The default triage and agent, with this trigger.
    pub fn with_trigger(trigger: Trigger) -> PipelineConfig {
        PipelineConfig { trigger, ..Default::default() }
    }
}

/// What a run may use besides the incident; each part is optional.
#[derive(Default)]
pub struct Deps<'a> {
    /// Past incidents, for the agent's `search_similar_incidents`.
    pub kb: Option<&'a dyn PastIncidents>,
    /// Who chooses the agent's checks (default: the offline rules).
    pub policy: Option<&'a mut dyn Policy>,
    /// The feedback re-ranker; it reorders the report's root causes once trained.
    pub reranker: Option<&'a Reranker>,
    /// Called with each agent step as it is made (the service streams them to watchers).
    pub on_step: Option<StepHook<'a>>,
}

/// Wall time of the stages, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Seconds {
    pub triage: f64,
    pub agent: f64,
}

/// The answer the user sees first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Top {
    pub service: String,
    pub kind: String,
    pub confidence: f64,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub triage: Triage,
    /// The report, with the agent's investigation folded in when it ran.
    pub report: Report,
    /// Each candidate's features, which the re-ranker learns from when an operator gives feedback.
    pub features: Vec<(String, Vec<f64>)>,
    pub seconds: Seconds,
}

impl Outcome {
    /// The agent's transcript, when it ran.
    pub fn transcript(&self) -> Option<&Transcript> {
        self.report.investigation.as_ref()
    }

    /// Every candidate service, most likely first: the agent's posterior order when it ran, the
    /// triage's otherwise (all of them, not only the report's five).
    pub fn ranked(&self) -> Vec<String> {
        let candidates = self.triage.ranking.candidates.iter().map(|c| c.service.as_str());
        match self.transcript() {
            Some(t) => t.ranked(candidates),
            None => candidates.map(str::to_string).collect(),
        }
    }

    /// Where inside each service of [`Outcome::ranked`] the cause sits, as far as the triage can
    /// say: [`report::location`] of the candidate's lead anomaly, as the report shows it; empty
    /// when the service was no triage candidate.
    pub fn locations(&self) -> Vec<String> {
        let ranking = &self.triage.ranking;
        let anomalies = &self.triage.detection.anomalies;
        self.ranked()
            .iter()
            .map(|s| {
                ranking
                    .candidates
                    .iter()
                    .find(|c| c.service == *s)
                    .and_then(|c| anomalies.get(c.lead))
                    .map_or_else(String::new, report::location)
            })
            .collect()
    }

    /// The evidence of the first answer's lead anomaly (the triage's), for per-case details.
    pub fn why(&self) -> Option<String> {
        let first = self.ranked().into_iter().next()?;
        let c = self.triage.ranking.candidates.iter().find(|c| c.service == first)?;
        self.triage.detection.anomalies.get(c.lead).map(|a| a.evidence.clone())
    }

    /// Whether a root cause is claimed: the triage found one, and the agent (if it ran) did not
    /// clear every suspect.
    pub fn claims_root_cause(&self) -> bool {
        self.report.verdict == Verdict::RootCause
    }

    /// The confidence printed for the first service of [`Outcome::ranked`], unrounded: the
    /// calibrated probability that it is the root cause (`calibrate`; the agent's map when it
    /// ran).
    pub fn confidence(&self) -> Option<f64> {
        let (ranking, anomalies) = (&self.triage.ranking, &self.triage.detection.anomalies);
        let first = match self.transcript() {
            Some(t) => crate::calibrate::agent_confidences(t, ranking, anomalies).into_iter().next(),
            None => crate::calibrate::triage_confidences(ranking, anomalies, None).into_iter().next(),
        };
        first.map(|(_, p)| p)
    }

    /// What [`Outcome::confidence`] was computed from: the features of the first service of
    /// [`Outcome::ranked`] under the map that printed it (the agent's when it ran), for fitting
    /// the maps (`culprit eval --fit-calibration`).
    pub fn calibration_features(&self) -> Option<Vec<f64>> {
        let first = self.ranked().into_iter().next()?;
        let features = match self.transcript() {
            Some(t) => crate::calibrate::agent_features(t, &self.triage.ranking, &self.triage.detection.anomalies),
            None => crate::calibrate::triage_features(&self.triage.ranking, &self.triage.detection.anomalies),
        };
        features.into_iter().find(|(s, _)| *s == first).map(|(_, x)| x)
    }

    /// The headline: the agent's conclusion when it names a service, else the report's first
    /// root cause (re-ranked, with the confidence the report shows).
    pub fn top(&self) -> Option<Top> {
        let first = self.report.root_causes.first().map(|rc| Top {
            service: rc.service.clone(),
            kind: rc.kind.clone(),
            confidence: rc.confidence,
        });
        match self.transcript() {
            Some(t) => t
                .conclusion
                .service
                .clone()
                .map(|service| {
                    // The calibrated probability the report prints for it, when it has one.
                    let printed = self.report.root_causes.iter().find(|rc| rc.service == service);
                    let confidence = printed.map_or(t.conclusion.confidence, |rc| rc.confidence);
                    Top { service, kind: t.conclusion.kind.clone(), confidence }
                })
                .or(first),
            None => first,
        }
    }
}

/// Runs the pipeline on one incident: the triage, the report, the re-ranker (when one is given
/// and trained), then the agent when `cfg.trigger` says so, whose posterior, calibrated, becomes the report's
/// confidence.
pub fn run(incident: &Incident, cfg: &PipelineConfig, deps: Deps) -> Outcome {
    start(incident, cfg).finish(deps)
}

/// The first half of [`run`]: the triage. A caller that should only make the agent's
/// dependencies ready when the agent will run (the command line opens a knowledge base and
/// builds a policy only then) asks [`Triaged::agent_will_run`] before [`Triaged::finish`].
pub fn start<'i>(incident: &'i Incident, cfg: &'i PipelineConfig) -> Triaged<'i> {
    let started = Instant::now();
    let triage = triage::triage(incident, &cfg.triage);
    Triaged { incident, cfg, triage, seconds: started.elapsed().as_secs_f64() }
}

/// An incident triaged, the rest of the pipeline still to run.
pub struct Triaged<'i> {
    incident: &'i Incident,
    cfg: &'i PipelineConfig,
    triage: Triage,
    seconds: f64,
}

impl Triaged<'_> {
    /// Whether [`finish`](Triaged::finish) will run the agent (the trigger, on this triage).
    pub fn agent_will_run(&self) -> bool {
        investigate::should_run(self.cfg.trigger, self.incident, &self.triage, &self.cfg.agent)
    }

    /// The triage alone, for a caller that keeps an agent session open itself (`culprit chat`).
    pub fn into_triage(self) -> Triage {
        self.triage
    }

    /// The report, the re-ranker, and the agent when the trigger says so.
    pub fn finish(self, deps: Deps) -> Outcome {
        let Triaged { incident, cfg, triage, seconds } = self;
        let _span = tracing::info_span!("pipeline", incident = %incident.id).entered();
        let mut report = report::build(incident, &triage);
        let features = rerank::features(&triage, &incident.alert, &cfg.triage.rank);
        if let Some(r) = deps.reranker.filter(|r| r.is_trained()) {
            rerank::apply(&mut report, &r.order(&features));
            // The printed probability belongs to whichever candidate now leads.
            report::set_confidences(&mut report.root_causes, &triage);
        }
        let mut agent_seconds = 0.0;
        if investigate::should_run(cfg.trigger, incident, &triage, &cfg.agent) {
            let started = Instant::now();
            let mut rules = investigate::rules::Rules;
            let policy: &mut dyn Policy = match deps.policy {
                Some(p) => p,
                None => &mut rules,
            };
            let transcript =
                investigate::investigate_watched(incident, &triage, deps.kb, policy, &cfg.agent, deps.on_step);
            report::add_investigation(&mut report, transcript, &triage);
            agent_seconds = started.elapsed().as_secs_f64();
        }
        Outcome { triage, report, features, seconds: Seconds { triage: seconds, agent: agent_seconds } }
    }
}
