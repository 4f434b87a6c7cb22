//! `culprit.toml`: the service's configuration, as read and checked. Every field has a default but
//! the tokens; see `docs/serve.md` for a commented example. What the service builds from it (the
//! agent's budgets and policy, the redactor, the store's schedule) is `culprit::serve::config`'s,
//! which also checks that the PII patterns compile.

use crate::model::Severity;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Who chooses the agent's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// The offline, deterministic rules.
    #[default]
    Rules,
    /// A model behind an OpenAI-compatible endpoint; if it fails, the investigation finishes with
    /// `rules`.
    Llm,
}

/// The agent's defaults: it stops when a hypothesis reaches this posterior, …
pub const AGENT_THRESHOLD: f64 = 0.85;
/// … after this many turns, …
pub const AGENT_MAX_TURNS: usize = 10;
/// … or after this many seconds.
pub const AGENT_MAX_SECONDS: f64 = 120.0;

/// The personal-data patterns redacted by default (name, regular expression): e-mail addresses.
pub const DEFAULT_PII: &[(&str, &str)] = &[("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: Box<toml::de::Error> },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("token {name:?}: environment variable {var} is not set")]
    TokenUnset { name: String, var: String },
    #[error("token {0:?}: give exactly one of `token` and `token_env`")]
    TokenSource(String),
    #[error("no API tokens: add [[tokens]] to the config or set CULPRIT_ADMIN_TOKEN")]
    NoTokens,
    #[error("token {0:?} is shorter than 8 characters")]
    TokenShort(String),
    #[error("token {0:?} is the same as another token")]
    TokenRepeated(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Investigations, chat sessions, the audit log and the re-ranker's weights live here.
    pub data_dir: PathBuf,
    /// The LanceDB store for received telemetry, changes, feedback and the knowledge base
    /// (default: `<data_dir>/store`).
    pub store: Option<String>,
    /// Largest request body accepted, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// Investigations run at once; further ones wait in a queue.
    pub workers: usize,
    pub window: WindowConfig,
    pub alerts: AlertConfig,
    pub agent: AgentSection,
    pub prometheus: Option<PrometheusConfig>,
    pub redact: RedactConfig,
    pub tokens: Vec<TokenConfig>,
    pub notify: Vec<NotifyConfig>,
    pub store_maintenance: StoreMaintenance,
    pub http: HttpLimits,
}

/// When the store is compacted and its old versions removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreMaintenance {
    /// After this many commits of received telemetry.
    pub every_commits: u64,
    /// Or this long after the last pass, whichever comes first.
    pub every_seconds: u64,
    /// Versions younger than this are kept (a reader may still be on one).
    pub keep_seconds: u64,
}

impl Default for StoreMaintenance {
    fn default() -> Self {
        StoreMaintenance { every_commits: 100, every_seconds: 300, keep_seconds: 30 }
    }
}

/// Limits on clients: slow or half-sent requests, and failed logins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A request's headers must arrive within this many seconds of the connection (or of the
    /// previous request on it).
    pub header_timeout_seconds: u64,
    /// Failed authentications one client address may make per minute; beyond, 429.
    pub failed_auth_per_minute: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { header_timeout_seconds: 10, failed_auth_per_minute: 20 }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8088)),
            data_dir: PathBuf::from("culprit-data"),
            store: None,
            max_body_bytes: 8 << 20,
            workers: 1,
            window: WindowConfig::default(),
            alerts: AlertConfig::default(),
            agent: AgentSection::default(),
            prometheus: None,
            redact: RedactConfig::default(),
            tokens: Vec::new(),
            notify: Vec::new(),
            store_maintenance: StoreMaintenance::default(),
            http: HttpLimits::default(),
        }
    }
}

/// The telemetry an investigation reads around its alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Read this far back from the alert (the reference period and the analysed one).
    pub before_seconds: u64,
    /// And this far after it (bounded by now).
    pub after_seconds: u64,
    /// Anomalies are searched in the last this-many seconds before the alert; the rest of the
    /// window is the reference for "normal".
    pub analysis_seconds: u64,
    /// Wait this long after an alert arrives before reading its window, so that the telemetry
    /// of the moment has been exported and scraped.
    pub settle_seconds: u64,
    /// Telemetry and alerts timed more than this many hours from now (either way) are refused as
    /// bad input, with the field named: a clock far off or a year 9999 never sizes anything.
    pub accept_hours: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            before_seconds: 3600,
            after_seconds: 300,
            analysis_seconds: 900,
            settle_seconds: 15,
            accept_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Alerts on the same service within this many seconds of a group's first alert join that
    /// group's investigation instead of starting a new one (an identical alert is a duplicate).
    pub group_seconds: u64,
    /// Alerts at or above this severity get an agent investigation; others a static triage.
    pub agent_from: Severity,
    /// Investigations waiting for a worker at most; an alert that would start one more is
    /// answered 429 with `Retry-After` (Alertmanager retries it).
    pub max_queue: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig { group_seconds: 300, agent_from: Severity::High, max_queue: 1_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// `rules` (offline) or `llm` (an OpenAI-compatible endpoint; the key only from
    /// CULPRIT_API_KEY or OPENAI_API_KEY).
    pub policy: PolicyKind,
    pub llm_url: Option<String>,
    pub llm_model: Option<String>,
    pub threshold: f64,
    pub max_turns: usize,
    pub max_seconds: f64,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            policy: PolicyKind::Rules,
            llm_url: None,
            llm_model: None,
            threshold: AGENT_THRESHOLD,
            max_turns: AGENT_MAX_TURNS,
            max_seconds: AGENT_MAX_SECONDS,
        }
    }
}

/// Metrics from a Prometheus server's HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// Resolution of `query_range`, in seconds.
    #[serde(default = "default_step")]
    pub step_seconds: u64,
    /// PromQL per metric. `{services}` becomes a regular expression of the incident's services
    /// (`frontend|checkout|db`); results need a `service` (or `job`, `app`, `pod` …) label.
    pub queries: Vec<PromQuery>,
}

fn default_step() -> u64 {
    15
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromQuery {
    /// The metric name the results get when PromQL dropped theirs (`latency`, `errors`, `cpu` …).
    pub name: String,
    pub promql: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactConfig {
    /// Personal-data patterns (name → regular expression) removed from telemetry before it
    /// reaches a model, besides the built-in secret patterns. Default: e-mail addresses.
    pub pii: Vec<PatternConfig>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            pii: DEFAULT_PII
                .iter()
                .map(|(n, p)| PatternConfig { name: n.to_string(), pattern: p.to_string() })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads investigations, sessions and metrics.
    Viewer,
    /// Also sends alerts, telemetry and changes, starts investigations and gives feedback.
    Operator,
    /// Also reads and reloads the configuration.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A bearer token: given here, or read from an environment variable (better: keeps it out of
/// the file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, as written in the audit log.
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// `{"text": …}`, which Slack, Mattermost and Rocket.Chat incoming webhooks accept.
    Slack,
    /// The investigation summary as JSON.
    Generic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub url: String,
    pub kind: NotifyKind,
    /// Only investigations of alerts at or above this severity.
    #[serde(default)]
    pub min_severity: Severity,
}

/// A resolved token, ready to compare.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub secret: Vec<u8>,
}

impl ServeConfig {
    /// Parses `text` (the contents of `origin`) and checks what the schema alone can tell.
    pub fn from_toml(text: &str, origin: &str) -> Result<ServeConfig, ConfigError> {
        let cfg: ServeConfig = toml::from_str(text)
            .map_err(|source| ConfigError::Parse { path: origin.to_string(), source: Box::new(source) })?;
        cfg.check(origin)?;
        Ok(cfg)
    }

    /// The checks of values the types allow but the service cannot run with.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: origin.to_string(), message };
        if self.workers == 0 {
            return Err(invalid("workers must be at least 1".into()));
        }
        if !(self.agent.threshold > 0.0 && self.agent.threshold < 1.0) {
            return Err(invalid(format!("agent.threshold must be between 0 and 1, got {}", self.agent.threshold)));
        }
        const MONTH: u64 = 30 * 24 * 3600;
        if self.window.before_seconds > MONTH || self.window.after_seconds > MONTH {
            return Err(invalid(
                "window.before_seconds and window.after_seconds must be at most 30 days (2592000)".into(),
            ));
        }
        if self.window.accept_hours == 0 || self.window.accept_hours > 24 * 365 {
            return Err(invalid("window.accept_hours must be between 1 and 8760".into()));
        }
        if self.window.analysis_seconds == 0 || self.window.analysis_seconds >= self.window.before_seconds {
            return Err(invalid("window.analysis_seconds must be above 0 and below window.before_seconds".into()));
        }
        if let Some(p) = &self.prometheus {
            if p.step_seconds == 0 {
                return Err(invalid("prometheus.step_seconds must be at least 1".into()));
            }
            if p.queries.is_empty() {
                return Err(invalid("prometheus.queries is empty: give at least one [[prometheus.queries]]".into()));
            }
        }
        Ok(())
    }

    pub fn store_uri(&self) -> String {
        self.store.clone().unwrap_or_else(|| self.data_dir.join("store").display().to_string())
    }

    /// The tokens, read from the config or the environment; `CULPRIT_ADMIN_TOKEN`, when set, adds
    /// an admin token named `admin`. Refuses to run with none, with an empty one, or with one
    /// given twice.
    pub fn principals(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Principal>, ConfigError> {
        let mut out = Vec::new();
        for t in &self.tokens {
            let secret = match (&t.token, &t.token_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => {
                    env(var).ok_or_else(|| ConfigError::TokenUnset { name: t.name.clone(), var: var.clone() })?
                }
                _ => return Err(ConfigError::TokenSource(t.name.clone())),
            };
            out.push(Principal { name: t.name.clone(), role: t.role, secret: secret.into_bytes() });
        }
        if let Some(s) = env("CULPRIT_ADMIN_TOKEN") {
            out.push(Principal { name: "admin".into(), role: Role::Admin, secret: s.into_bytes() });
        }
        if out.is_empty() {
            return Err(ConfigError::NoTokens);
        }
        for (i, p) in out.iter().enumerate() {
            if p.secret.len() < 8 {
                return Err(ConfigError::TokenShort(p.name.clone()));
            }
            if out[..i].iter().any(|q| q.secret == p.secret) {
                return Err(ConfigError::TokenRepeated(p.name.clone()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_file_or_the_environment_and_bad_ones_are_refused() {
        let cfg: ServeConfig = toml::from_str(
            r#"
            [[tokens]]
            name = "alertmanager"
            role = "operator"
            token_env = "AM_TOKEN"
            [[tokens]]
            name = "grafana"
            role = "viewer"
            token = "viewer-token-123"
            "#,
        )
        .unwrap();
        let env = |k: &str| (k == "AM_TOKEN").then(|| "operator-token-456".to_string());
        let p = cfg.principals(&env).unwrap();
        assert_eq!((p[0].role, p[0].secret.as_slice()), (Role::Operator, b"operator-token-456".as_slice()));
        assert_eq!(p[1].role, Role::Viewer);
        let err = cfg.principals(&|_| None).unwrap_err().to_string();
        assert!(err.contains("AM_TOKEN is not set"), "{err}");
        assert!(ServeConfig::default().principals(&|_| None).unwrap_err().to_string().contains("no API tokens"));
        let bad: Result<ServeConfig, _> = toml::from_str("listen = \"127.0.0.1:1\"\nlisten_typo = 1\n");
        assert!(bad.unwrap_err().to_string().contains("listen_typo"));
    }
}
