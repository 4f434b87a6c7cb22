//! `culprit chat`: follow-up questions about an investigation ("why not the database?", "show the
//! config diff for auth"), answered with the same tools and the same ledger, in a session that is
//! saved after every answer and can be resumed.
//!
//! Offline, a question is read for the service it names (by name, or by kind: "the database",
//! "the cache", "ldap", the words `config_diff` reads in keys too) and what it asks (changes, logs, traces, dependencies, correlation, past
//! incidents, the timeline, "why"/"why not"); with a model, the question joins the model's
//! conversation and the model chooses the calls. Either way the numbers are the ledger's.

use super::ledger::Ledger;
use super::llm::LlmPolicy;
use super::tools::config::DEPENDENCY_WORDS;
use super::tools::{specs, PastIncidents, ToolDyn};
use super::{transcript, AgentConfig, Decision, Policy, Session, Step, View};
use crate::model::Incident;
use crate::triage::Triage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const CHAT_SCHEMA: &str = "culprit.chat/v1";

/// One question and its answer, with the turns (steps) it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub question: String,
    pub answer: String,
    pub turns: Vec<usize>,
}

/// A saved chat session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedChat {
    pub schema: String,
    pub incident: String,
    pub ledger: Ledger,
    pub steps: Vec<Step>,
    pub exchanges: Vec<Exchange>,
    /// The model's conversation, for `--policy llm` sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: not a culprit chat session: {error}", path.display())]
    Format { path: PathBuf, error: serde_json::Error },
    #[error("{}: the session could not be written as JSON: {error}", path.display())]
    Encode { path: PathBuf, error: serde_json::Error },
    #[error("{}: a session of incident `{incident}` ({schema}), not of `{expected}`", path.display())]
    OtherIncident { path: PathBuf, incident: String, schema: String, expected: String },
}

impl SavedChat {
    /// A saved session of `session` as it stands, with no questions asked yet.
    pub fn start(session: &Session) -> SavedChat {
        SavedChat {
            schema: CHAT_SCHEMA.to_string(),
            incident: session.cx.incident.id.clone(),
            ledger: session.ledger.clone(),
            steps: session.steps.clone(),
            exchanges: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Reads the saved session at `path`, which must be one of incident `incident`.
    pub fn read(path: &Path, incident: &str) -> Result<SavedChat, ChatError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ChatError::Io { path: path.to_path_buf(), error: source })?;
        let saved: SavedChat = serde_json::from_str(&text)
            .map_err(|source| ChatError::Format { path: path.to_path_buf(), error: source })?;
        if saved.schema != CHAT_SCHEMA || saved.incident != incident {
            return Err(ChatError::OtherIncident {
                path: path.to_path_buf(),
                incident: saved.incident,
                schema: saved.schema,
                expected: incident.to_string(),
            });
        }
        Ok(saved)
    }

    /// The session it saved, over the incident and triage it was made for.
    pub fn resume<'a>(
        &self,
        incident: &'a Incident,
        triage: &'a Triage,
        kb: Option<&'a dyn PastIncidents>,
        cfg: &AgentConfig,
    ) -> Session<'a> {
        Session::resume(incident, triage, kb, self.ledger.clone(), self.steps.clone(), cfg)
    }

    /// Records an answered question: the ledger and steps as they are now, the exchange, and the
    /// model's conversation (empty for the rules).
    pub fn record(&mut self, session: &Session, exchange: Exchange, messages: Vec<Value>) {
        self.ledger = session.ledger.clone();
        self.steps = session.steps.clone();
        self.exchanges.push(exchange);
        self.messages = messages;
    }
}

/// Writes a chat session (or a record holding one) as JSON, atomically: a temporary file beside
/// it, then a rename, so a crash never leaves half a session.
pub fn save(path: &Path, value: &impl Serialize) -> Result<(), ChatError> {
    let io = |source| ChatError::Io { path: path.to_path_buf(), error: source };
    let text = serde_json::to_string_pretty(value)
        .map_err(|source| ChatError::Encode { path: path.to_path_buf(), error: source })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The service a question is about: a known name it contains (the longest), else a kind word.
pub fn mentioned(session: &Session, question: &str) -> Option<String> {
    let q = question.to_lowercase();
    let mut names: Vec<String> = session.cx.incident.telemetry.metrics.iter().map(|m| m.service.clone()).collect();
    names.extend(session.cx.incident.telemetry.spans.iter().map(|s| s.service.clone()));
    names.extend(session.cx.triage.ranking.candidates.iter().map(|c| c.service.clone()));
    if let Some(t) = &session.cx.incident.topology {
        names.extend(t.services.iter().map(|n| n.name.clone()));
    }
    names.sort();
    names.dedup();
    if let Some(n) = names.iter().filter(|n| q.contains(&n.to_lowercase())).max_by_key(|n| n.len()) {
        return Some(n.clone());
    }
    let words: Vec<&str> = q.split(|c: char| !c.is_alphanumeric()).collect();
    for (word, kind) in DEPENDENCY_WORDS {
        if !words.contains(word) {
            continue;
        }
        if let Some(n) =
            names.iter().find(|n| session.cx.kind_of(n).as_deref() == Some(*kind) || n.to_lowercase().contains(kind))
        {
            return Some(n.clone());
        }
    }
    None
}

/// How a tool takes a service: required, optional, or not at all (from its derived schema).
fn takes_service(tool: &dyn ToolDyn) -> Option<bool> {
    let schema = tool.schema();
    schema["properties"].get("service")?;
    Some(schema["required"].as_array().is_some_and(|r| r.iter().any(|x| x == "service")))
}

/// The arguments for a call of `tool` about `service` (if one was named); None when the tool needs
/// a service and none was named.
fn args_for(tool: &dyn ToolDyn, service: Option<&str>) -> Option<Value> {
    match (takes_service(tool), service) {
        (Some(_), Some(s)) => Some(json!({ "service": s })),
        (Some(true), None) => None,
        (Some(false), None) | (None, _) => Some(json!({})),
    }
}

/// The tools chat can route to, lowest rank first, with the words that ask for each (from each
/// tool's own spec).
fn routes(tools: &[Box<dyn ToolDyn>]) -> Vec<(&dyn ToolDyn, Vec<String>)> {
    let mut routed: Vec<(u32, &dyn ToolDyn, Vec<String>)> = tools
        .iter()
        .filter_map(|t| {
            let route = specs::spec(t.as_ref()).ok()?.chat?;
            Some((route.rank, t.as_ref(), route.words))
        })
        .collect();
    routed.sort_by_key(|r| r.0);
    routed.into_iter().map(|(_, t, w)| (t, w)).collect()
}

/// The calls an offline question asks for: (tool, arguments). The question's words pick the tool
/// (each tool's spec says which words ask for it); a question that names only a service, or asks
/// "why (not)" about it, gets the most telling check of it not made yet.
pub fn plan(session: &Session, question: &str) -> Vec<(String, Value)> {
    let q = question.to_lowercase();
    let service = mentioned(session, question);
    let routes = routes(&session.tools);
    if let Some((tool, _)) = routes.iter().find(|(_, words)| words.iter().any(|w| q.contains(w.as_str()))) {
        return args_for(*tool, service.as_deref()).map(|a| vec![(tool.name().to_string(), a)]).unwrap_or_default();
    }
    let Some(s) = service else { return Vec::new() };
    let done = |tool: &str| session.steps.iter().any(|st| st.tool == tool && st.args == json!({ "service": s }));
    routes
        .iter()
        .filter(|(t, _)| takes_service(*t) == Some(true) && !done(t.name()) && t.applicable(&session.cx))
        .take(1)
        .map(|(t, _)| (t.name().to_string(), json!({ "service": s })))
        .collect()
}

/// What the ledger says about a service: prior, posterior and each piece of evidence about it.
pub fn explain(session: &Session, service: &str) -> String {
    let post = session.ledger.posterior();
    let Some(i) = session.ledger.find(service) else {
        return format!("{service} is not among the suspects: the triage found nothing that makes it a likely cause.");
    };
    let mut lines = vec![format!(
        "{service}: probability {:.2} (prior {:.2}).",
        post[i],
        session.priors.get(i).copied().unwrap_or(0.0)
    )];
    for s in &session.steps {
        if let Some((_, r)) = s.ratios.iter().find(|(h, _)| h == service) {
            lines.push(format!("  - {} ×{r:.2}: {}", s.tool, s.summary));
        }
    }
    if lines.len() == 1 {
        lines.push("  No check has spoken about it yet.".to_string());
    }
    lines.join("\n")
}

fn standing(session: &Session) -> String {
    let post = session.ledger.posterior();
    let mut order: Vec<usize> = (0..post.len()).collect();
    order.sort_by(|&a, &b| post[b].total_cmp(&post[a]));
    let top: Vec<String> = order
        .iter()
        .take(3)
        .map(|&i| format!("{} {:.2}", transcript::label(&session.ledger.hypotheses[i]), post[i]))
        .collect();
    format!("Now: {}.", top.join(", "))
}

fn describe(step: &Step) -> String {
    let mut s = match &step.error {
        Some(e) => match &e.diagnostics {
            Some(d) => format!("{}: {} ({d})", step.tool, e.message),
            None => format!("{}: {}", step.tool, e.message),
        },
        None => format!("{}: {}", step.tool, step.summary),
    };
    if !step.ratios.is_empty() {
        let r: Vec<String> = step.ratios.iter().map(|(h, r)| format!("{h} ×{r:.2}")).collect();
        s.push_str(&format!(" (evidence: {})", r.join(", ")));
    }
    s
}

/// Words that ask what changed, when no service is named (the config diff needs one).
const CHANGE_WORDS: [&str; 5] = ["change", "deploy", "release", "flag", "config"];

/// Every change of the incident, in time order, with when it happened relative to the alert.
fn changes(session: &Session) -> String {
    let incident = session.cx.incident;
    let mut all: Vec<&crate::model::Change> = incident.telemetry.changes.iter().collect();
    all.sort_by_key(|c| c.time);
    if all.is_empty() {
        return "No change events (deploys, config, flags) reached culprit for this incident.".to_string();
    }
    let mut lines = vec![format!("{} change(s), oldest first:", all.len())];
    for c in all.iter().take(session.cx.max_items) {
        let minutes = (c.time - incident.alert.time) as f64 / crate::model::MINUTE as f64;
        lines.push(format!(
            "  - {} ({:+.1} min from the alert) {}: {}",
            crate::ingest::time::fmt_time(c.time),
            minutes,
            c.service,
            crate::detect::changes::describe(c)
        ));
    }
    if all.len() > session.cx.max_items {
        lines.push(format!("  … {} more", all.len() - session.cx.max_items));
    }
    lines.join("\n")
}

/// The log lines a `log_search` step returned, newest first, each with its template.
fn latest_lines(step: &Step) -> Vec<String> {
    let lines = step.output.as_ref().and_then(|o| o["latest"].as_array()).cloned().unwrap_or_default();
    if lines.is_empty() {
        return Vec::new();
    }
    let mut out = vec!["Latest lines during the incident, newest first:".to_string()];
    for l in &lines {
        let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
        out.push(format!("  {} {:5} {}", text("time"), text("level").to_uppercase(), text("message")));
        if text("template") != text("message") {
            out.push(format!("      template: {}", text("template")));
        }
    }
    out
}

const HELP: &str = "That is not something culprit can answer from this incident's data. \
Ask about a service or a check, e.g. \"why not the database?\", \"show the config diff for auth\", \
\"logs of checkout\", \"is payment upstream of the alert?\", \"slow spans\", \"similar past incidents\", \"timeline\".";

/// Answers one question offline (the rules), recording the calls in the session.
pub fn answer_offline(session: &mut Session, question: &str) -> Exchange {
    let first = session.steps.len();
    let calls = plan(session, question);
    let mut parts = Vec::new();
    let service = mentioned(session, question);
    for (tool, args) in calls {
        // Asked again: the earlier answer, not a refused repeat.
        if let Some(earlier) = session.steps.iter().find(|s| s.tool == tool && s.args == args && s.error.is_none()) {
            parts.push(format!("(turn {}) {}", earlier.turn, describe(earlier)));
            if earlier.tool == "log_search" {
                parts.extend(latest_lines(earlier));
            }
            continue;
        }
        let step = session.call(tool, args, format!("asked: {question}"), "rules");
        parts.push(describe(&step));
        if step.tool == "log_search" {
            parts.extend(latest_lines(&step));
        }
    }
    let q = question.to_lowercase();
    if let Some(s) = service.as_deref().filter(|_| q.contains("why")) {
        parts.push(explain(session, s));
    } else if q.contains("why") {
        let (leader, _) = session.ledger.leader();
        match session.ledger.hypotheses[leader].service.clone() {
            Some(s) => parts.push(explain(session, &s)),
            None => parts.push("No named suspect leads: the evidence clears the triage's suspects.".to_string()),
        }
    }
    if parts.is_empty() && service.is_none() && CHANGE_WORDS.iter().any(|w| q.contains(w)) {
        parts.push(changes(session));
        return Exchange { question: question.to_string(), answer: parts.join("\n"), turns: Vec::new() };
    }
    if parts.is_empty() {
        parts.push(HELP.to_string());
    } else {
        parts.push(standing(session));
    }
    Exchange {
        question: question.to_string(),
        answer: parts.join("\n"),
        turns: (first + 1..=session.steps.len()).collect(),
    }
}

/// Answers one question with a model choosing the calls (at most `cfg.max_turns`); if the model
/// fails, the question is answered offline and the answer says so.
pub fn answer_with_model(session: &mut Session, policy: &mut LlmPolicy, question: &str, cfg: &AgentConfig) -> Exchange {
    let first = session.steps.len();
    policy.ask(question);
    let mut notes = Vec::new();
    let mut final_text = None;
    for _ in 0..cfg.max_turns {
        let view = View {
            cx: &session.cx,
            ledger: &session.ledger,
            steps: &session.steps,
            tools: &session.tools,
            threshold: cfg.threshold,
        };
        match policy.decide(&view) {
            Ok(Decision::Call { tool, args, reasoning }) => {
                let name = policy.name();
                let step = session.call(tool, args, reasoning, &name);
                notes.push(describe(&step));
                policy.observe(&step, &session.ledger, cfg.max_turns);
            }
            Ok(Decision::Conclude { reasoning }) => {
                final_text = Some(reasoning);
                break;
            }
            Err(e) => {
                let mut offline = answer_offline(session, question);
                offline.answer = format!("(the model failed: {e}; answered offline)\n{}", offline.answer);
                offline.turns = (first + 1..=session.steps.len()).collect();
                return offline;
            }
        }
    }
    if let Some(t) = final_text {
        notes.push(t);
    }
    notes.push(standing(session));
    Exchange {
        question: question.to_string(),
        answer: notes.join("\n"),
        turns: (first + 1..=session.steps.len()).collect(),
    }
}
