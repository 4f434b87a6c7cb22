//! The one place a policy is built from what the user asked for: `rules` (offline,
//! deterministic) or `llm` (a model behind an OpenAI-compatible endpoint, with secrets and
//! personal data redacted from everything it is sent). The CLI's `investigate`, `demo` and `chat`
//! and the service's workers all build theirs here.

use super::llm::LlmPolicy;
use super::rules::Rules;
use super::{Policy, PolicyError};
use crate::llm::{Endpoint, LlmError};
use crate::redact::Redactor;

pub use culprit_readers::config::PolicyKind;

/// What a policy is built from.
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    pub kind: PolicyKind,
    /// The chat endpoint's base URL and model; each falls back to `CULPRIT_LLM_URL` and
    /// `CULPRIT_LLM_MODEL` (the key only ever comes from the environment).
    pub llm_url: Option<String>,
    pub llm_model: Option<String>,
    /// What is removed from text before it reaches a model (default: the built-in secrets).
    pub redactor: Option<Redactor>,
    /// What the caller says when the endpoint is missing, naming its own settings (e.g.
    /// "--policy llm needs an endpoint: --llm-url and --llm-model").
    pub endpoint_settings: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{settings} (or CULPRIT_LLM_URL and CULPRIT_LLM_MODEL)")]
    NoEndpoint { settings: &'static str },
    #[error(transparent)]
    Endpoint(#[from] LlmError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Redaction(#[from] crate::redact::PatternError),
}

/// A built policy. Chat needs the model itself (its conversation is saved and resumed), so the
/// two kinds stay apart instead of hiding behind `dyn Policy`.
pub enum AgentPolicy {
    Rules(Rules),
    Llm(Box<LlmPolicy>),
}

impl AgentPolicy {
    pub fn build(spec: &PolicySpec) -> Result<AgentPolicy, BuildError> {
        match spec.kind {
            PolicyKind::Rules => Ok(AgentPolicy::Rules(Rules)),
            PolicyKind::Llm => {
                let endpoint = Endpoint::chat_from_env(spec.llm_url.clone(), spec.llm_model.clone())?
                    .ok_or(BuildError::NoEndpoint { settings: spec.endpoint_settings })?;
                let mut policy = LlmPolicy::new(endpoint)?;
                if let Some(r) = &spec.redactor {
                    policy = policy.with_redactor(r.clone());
                }
                Ok(AgentPolicy::Llm(Box::new(policy)))
            }
        }
    }

    pub fn as_policy(&mut self) -> &mut dyn Policy {
        match self {
            AgentPolicy::Rules(r) => r,
            AgentPolicy::Llm(m) => m.as_mut(),
        }
    }

    /// The model, for a `llm` policy.
    pub fn model(&mut self) -> Option<&mut LlmPolicy> {
        match self {
            AgentPolicy::Rules(_) => None,
            AgentPolicy::Llm(m) => Some(m),
        }
    }
}
