//! Typed tools the investigator calls: a `Tool` trait whose argument schema is derived
//! (schemars), typed outputs, errors the model can read, and an object-safe `ToolDyn` that speaks
//! JSON for the loop and the LLM policy.
//!
//! A tool does two things: it answers (its typed output, a one-line summary), and it *assesses*
//! what the answer means for each hypothesis of the ledger, as likelihood ratios. Whoever chose
//! the call (the rules policy or a model), the numbers come from the tool's assessment, never from
//! the caller.
//!
//! What the model must not control (the incident, the triage, the time window, output limits)
//! lives in [`ToolCx`], never in the arguments. Each tool's spec for the model (description,
//! argument docs, an example, output limits) is `tools/<name>.toml`; a test checks them against
//! the Rust tools.

pub mod config;
pub mod dependencies;
pub mod drilldown;
pub mod logs;
pub mod metrics;
pub mod similar;
pub mod specs;
pub mod timeline;
pub mod traces;

use super::ledger::Ledger;
use crate::model::{Incident, Ts};
use crate::triage::Triage;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The knowledge base as the agent sees it: a blocking search (the store is async; whoever
/// builds the context owns the runtime).
pub trait PastIncidents: Send + Sync {
    /// The `k` past incidents most like the query; a failure is the tool's error (an upstream
    /// failure or a time-out, with the operator's diagnostics).
    fn search(&self, query: crate::embed::text::Fields, k: usize) -> Result<Vec<similar::Match>, ToolError>;
}

/// What every tool may read: the incident, the static triage of it, and the knowledge base when
/// one is configured.
pub struct ToolCx<'a> {
    pub incident: &'a Incident,
    pub triage: &'a Triage,
    pub kb: Option<&'a dyn PastIncidents>,
    /// Most items a tool returns in one list (the rest is counted, not shown).
    pub max_items: usize,
    /// The logs as `log_search` mined them, kept for the investigation's later calls.
    pub logs: logs::LogCache,
}

impl ToolCx<'_> {
    /// The start of "during the incident" for tools that compare before and during: a little
    /// before the alert (faults show before monitors fire), and never before the analysis start.
    pub fn during_from(&self) -> Ts {
        crate::detect::logs::during_from(self.incident)
    }

    /// Whether the incident knows this service at all (telemetry, topology, changes or the alert).
    pub fn knows(&self, service: &str) -> bool {
        let i = self.incident;
        i.alert.service == service
            || self.triage.detection.anomalies.iter().any(|a| a.service == service)
            || i.telemetry.metrics.iter().any(|m| m.service == service)
            || i.telemetry.spans.iter().any(|s| s.service == service)
            || i.telemetry.changes.iter().any(|c| c.service == service)
            || i.topology.as_ref().is_some_and(|t| t.services.iter().any(|n| n.name == service))
    }

    /// The service's kind in the declared topology (`database`, `cache`, `directory`, …).
    pub fn kind_of(&self, service: &str) -> Option<String> {
        self.incident.topology.as_ref()?.services.iter().find(|n| n.name == service)?.kind.clone()
    }

    pub fn check_service(&self, service: &str) -> Result<(), ToolError> {
        if self.knows(service) {
            return Ok(());
        }
        let mut known: Vec<&str> = self.triage.ranking.candidates.iter().map(|c| c.service.as_str()).take(8).collect();
        known.sort_unstable();
        Err(ToolError::new(
            ToolErrorKind::NotFound,
            format!("no service named `{service}` in this incident; suspects include: {}", known.join(", ")),
        ))
    }
}

/// The kinds of data a tool can need. A closed set: what an incident can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Metrics,
    Logs,
    Spans,
    Changes,
    /// A dependency graph: a declared topology, or call edges mined from traces.
    Dependencies,
    /// A knowledge base of past incidents.
    KnowledgeBase,
}

impl Data {
    /// Whether the incident (or the context) has it.
    pub fn present(self, cx: &ToolCx) -> bool {
        let t = &cx.incident.telemetry;
        match self {
            Data::Metrics => !t.metrics.is_empty(),
            Data::Logs => !t.logs.records.is_empty() || !t.logs.files.is_empty(),
            Data::Spans => !t.spans.is_empty(),
            Data::Changes => !t.changes.is_empty(),
            Data::Dependencies => {
                !cx.triage.detection.call_edges.is_empty()
                    || cx.incident.topology.as_ref().is_some_and(|t| !t.edges.is_empty())
            }
            Data::KnowledgeBase => cx.kb.is_some(),
        }
    }

    /// Its name in the error a model reads when a tool lacks it.
    pub fn describe(self) -> &'static str {
        match self {
            Data::Metrics => "metrics",
            Data::Logs => "log lines",
            Data::Spans => "spans",
            Data::Changes => "change events",
            Data::Dependencies => "a dependency graph (a topology or traces)",
            Data::KnowledgeBase => "a knowledge base (culprit kb add, then --kb)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolErrorKind {
    /// No tool of that name.
    UnknownTool,
    /// Arguments that do not fit the tool's schema, or a repeated call.
    InvalidArgs,
    /// The service or item asked about is not in this incident.
    NotFound,
    /// The incident lacks the data the tool reads.
    Unavailable,
    /// A system the tool asks (the knowledge base, an endpoint) did not answer in time.
    Timeout,
    /// A system the tool asks failed.
    Upstream,
}

/// A failed call: an observation for the loop, not an abort. `message` is written for the model
/// (and the transcript); `diagnostics` is for the operator (the upstream error, the endpoint) and
/// never reaches a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ToolError {
    pub kind: ToolErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
}

impl ToolError {
    pub fn new(kind: ToolErrorKind, message: impl Into<String>) -> Self {
        ToolError { kind, message: message.into(), diagnostics: None }
    }

    /// A failure of a system the tool asks: `message` for the model, the error for the operator.
    pub fn upstream(message: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        ToolError { kind: ToolErrorKind::Upstream, message: message.into(), diagnostics: Some(diagnostics.into()) }
    }

    /// A system the tool asks that did not answer within `limit`.
    pub fn timeout(message: impl Into<String>, limit: std::time::Duration) -> Self {
        ToolError {
            kind: ToolErrorKind::Timeout,
            message: message.into(),
            diagnostics: Some(format!("no answer within {:.1} s", limit.as_secs_f64())),
        }
    }
}

/// A tool's answer, ready for the transcript and the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub output: serde_json::Value,
    /// One line for the transcript and the report.
    pub summary: String,
    /// (hypothesis index, likelihood ratio) by the tool's own assessment.
    pub ratios: Vec<(usize, f64)>,
}

pub trait Tool: Send + Sync + 'static {
    const NAME: &'static str;
    type Args: DeserializeOwned + JsonSchema;
    type Output: Serialize;
    /// The smallest and largest likelihood ratio the assessment can give: how much one call can
    /// move the odds, which is what the rules policy weighs when it picks a call.
    const RATIOS: (f64, f64);
    /// Whether the tool is asked about one suspect (`service` argument) or about the incident.
    const PER_SERVICE: bool;
    /// Its spec for a model and for chat: `include_str!` of `tools/<NAME>.toml`.
    const SPEC: &'static str;
    /// What the tool reads: it is applicable when the incident has any of it (none: always).
    /// The rules policy skips a tool that is not; a model calling it anyway gets an
    /// `unavailable` error naming what is missing.
    const NEEDS: &'static [Data] = &[];
    fn call(&self, cx: &ToolCx, args: &Self::Args) -> Result<Self::Output, ToolError>;
    /// One line saying what was found.
    fn summarize(&self, out: &Self::Output) -> String;
    /// What the answer says about each hypothesis: likelihood ratios (1 = no information).
    fn assess(&self, cx: &ToolCx, args: &Self::Args, out: &Self::Output, ledger: &Ledger) -> Vec<(usize, f64)>;
}

/// The JSON face of a tool, for the loop and the LLM policy.
pub trait ToolDyn: Send + Sync {
    fn name(&self) -> &'static str;
    /// The JSON schema of the arguments (derived, never hand-written).
    fn schema(&self) -> serde_json::Value;
    fn ratio_range(&self) -> (f64, f64);
    fn per_service(&self) -> bool;
    fn applicable(&self, cx: &ToolCx) -> bool;
    /// The text of its spec (`tools/<name>.toml`).
    fn spec_text(&self) -> &'static str;
    fn run(&self, cx: &ToolCx, args: serde_json::Value, ledger: &Ledger) -> Result<Observation, ToolError>;
}

impl<T: Tool> ToolDyn for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T::Args)).unwrap_or(serde_json::Value::Null)
    }

    fn ratio_range(&self) -> (f64, f64) {
        T::RATIOS
    }

    fn per_service(&self) -> bool {
        T::PER_SERVICE
    }

    fn applicable(&self, cx: &ToolCx) -> bool {
        T::NEEDS.is_empty() || T::NEEDS.iter().any(|d| d.present(cx))
    }

    fn spec_text(&self) -> &'static str {
        T::SPEC
    }

    fn run(&self, cx: &ToolCx, args: serde_json::Value, ledger: &Ledger) -> Result<Observation, ToolError> {
        // A model may send `null` for a tool without arguments.
        let args = if args.is_null() { serde_json::json!({}) } else { args };
        let args: T::Args = serde_json::from_value(args)
            .map_err(|e| ToolError::new(ToolErrorKind::InvalidArgs, format!("arguments of {}: {e}", T::NAME)))?;
        if !ToolDyn::applicable(self, cx) {
            let needs: Vec<&str> = T::NEEDS.iter().map(|d| d.describe()).collect();
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!("{} needs {}, and this incident has none", T::NAME, needs.join(" or ")),
            ));
        }
        let out = self.call(cx, &args)?;
        let ratios = self.assess(cx, &args, &out, ledger);
        let summary = self.summarize(&out);
        let output =
            serde_json::to_value(&out).map_err(|e| ToolError::new(ToolErrorKind::Unavailable, e.to_string()))?;
        Ok(Observation { output, summary, ratios })
    }
}

/// Every tool, in a fixed order.
pub fn all() -> Vec<Box<dyn ToolDyn>> {
    vec![
        Box::new(timeline::AnomalyTimeline),
        Box::new(traces::TraceQuery),
        Box::new(config::ConfigDiff),
        Box::new(dependencies::DependencyLookup),
        Box::new(metrics::MetricCorrelation),
        Box::new(logs::LogSearch),
        Box::new(similar::SearchSimilarIncidents),
        Box::new(drilldown::Drilldown),
    ]
}

/// Calls a tool by name with JSON arguments: an unknown name is an error the model can read.
pub fn run(
    tools: &[Box<dyn ToolDyn>],
    cx: &ToolCx,
    name: &str,
    args: serde_json::Value,
    ledger: &Ledger,
) -> Result<Observation, ToolError> {
    let tool = tools.iter().find(|t| t.name() == name).ok_or_else(|| {
        let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
        ToolError::new(
            ToolErrorKind::UnknownTool,
            format!("no tool named `{name}`; the tools are: {}", names.join(", ")),
        )
    })?;
    tool.run(cx, args, ledger)
}

/// The ratio for a hypothesis about `service`, if the ledger has one.
pub(crate) fn about(ledger: &Ledger, service: &str, ratio: f64) -> Vec<(usize, f64)> {
    ledger.find(service).map(|i| vec![(i, ratio)]).unwrap_or_default()
}

/// Keeps at most `max` items, returning how many were left out.
pub(crate) fn truncate<T>(items: &mut Vec<T>, max: usize) -> usize {
    let more = items.len().saturating_sub(max);
    items.truncate(max);
    more
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tool has a spec in tools/, every spec names a tool, the spec documents exactly the
    /// arguments the Rust type has, and its example is a valid call.
    #[test]
    fn every_spec_matches_its_tool() {
        let incident = crate::simulate::simulate(&crate::simulate::demo_config());
        let triage = crate::triage::triage(&incident, &Default::default());
        let cx = ToolCx { incident: &incident, triage: &triage, kb: None, max_items: 5, logs: Default::default() };
        let ledger = Ledger::new(&[], 0.5);
        let tools = all();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".toml").map(str::to_string))
            .collect();
        files.sort();
        let mut names: Vec<String> = tools.iter().map(|t| t.name().to_string()).collect();
        names.sort();
        assert_eq!(files, names, "tools/*.toml and the Rust tools differ");
        for t in &tools {
            let s = specs::spec(t.as_ref()).unwrap();
            assert_eq!(s.name, t.name());
            assert!(s.description.trim().len() > 40, "{}: describe the tool", s.name);
            let schema = t.schema();
            let mut props: Vec<&String> =
                schema["properties"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
            props.sort();
            let documented: Vec<&String> = s.args.keys().collect();
            assert_eq!(documented, props, "{}: documented arguments differ from the Rust type", s.name);
            let example = serde_json::to_value(&s.example).unwrap();
            match run(&tools, &cx, t.name(), example, &ledger) {
                Ok(_) => {}
                Err(e) => assert!(
                    !matches!(e.kind, ToolErrorKind::InvalidArgs | ToolErrorKind::UnknownTool),
                    "{}: the example is not a valid call: {}",
                    s.name,
                    e.message
                ),
            }
            let offered = specs::parameters(t.as_ref(), &s);
            for (name, p) in offered["properties"].as_object().unwrap() {
                assert_eq!(p["description"].as_str(), Some(s.args[name].as_str()));
            }
        }
    }
}
