//! `culprit.toml`: its schema and checks are the readers crate's (`culprit_readers::config`,
//! re-exported here, fuzzed); this module builds what the service runs with from it: the agent's
//! budgets and policy, the redactor, and the check that the PII patterns compile.

use crate::investigate::policy::PolicySpec;
use crate::investigate::AgentConfig;
use crate::redact::{PatternError, Redactor};
pub use culprit_readers::config::*;
use std::path::Path;

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
    let cfg = ServeConfig::from_toml(&text, &p)?;
    validate(&cfg, &p)?;
    Ok(cfg)
}

/// Every check: the schema's, and that the PII patterns compile.
pub fn validate(cfg: &ServeConfig, origin: &str) -> Result<(), ConfigError> {
    cfg.check(origin)?;
    redactor(cfg).map_err(|e| ConfigError::Invalid { path: origin.to_string(), message: e.to_string() })?;
    Ok(())
}

/// The agent's budgets from `[agent]`.
pub fn agent_config(cfg: &ServeConfig) -> AgentConfig {
    AgentConfig {
        threshold: cfg.agent.threshold,
        max_turns: cfg.agent.max_turns,
        max_seconds: cfg.agent.max_seconds,
        ..Default::default()
    }
}

/// How the agent's policy is built: the configured kind and endpoint, and the configured
/// redaction (built-in secrets and the PII patterns).
pub fn policy_spec(cfg: &ServeConfig) -> Result<PolicySpec, PatternError> {
    Ok(PolicySpec {
        kind: cfg.agent.policy,
        llm_url: cfg.agent.llm_url.clone(),
        llm_model: cfg.agent.llm_model.clone(),
        redactor: Some(redactor(cfg)?),
        endpoint_settings: "agent.policy = \"llm\" needs agent.llm_url and agent.llm_model",
    })
}

pub fn redactor(cfg: &ServeConfig) -> Result<Redactor, PatternError> {
    let pii: Vec<(String, String)> = cfg.redact.pii.iter().map(|p| (p.name.clone(), p.pattern.clone())).collect();
    Redactor::new(&pii)
}
