//! Typed tools the investigator calls (issue 5, in progress): a `Tool` trait whose argument
//! schema is derived (schemars), typed outputs, errors the model can read, and an object-safe
//! `ToolDyn` that speaks JSON for the loop and the LLM policy.
//!
//! What the model must not control (the incident, the triage, the time window, output limits)
//! lives in [`ToolCx`], never in the arguments.

pub mod timeline;

use crate::model::Incident;
use crate::triage::Triage;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What every tool may read: the incident and the static triage of it.
pub struct ToolCx<'a> {
    pub incident: &'a Incident,
    pub triage: &'a Triage,
    /// Most items a tool returns in one list (the rest is counted, not shown).
    pub max_items: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolErrorKind {
    UnknownTool,
    InvalidArgs,
    NotFound,
    Unavailable,
}

/// A failed call: evidence for the loop, not an abort. `message` is written for the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ToolError {
    pub kind: ToolErrorKind,
    pub message: String,
}

impl ToolError {
    pub fn new(kind: ToolErrorKind, message: impl Into<String>) -> Self {
        ToolError { kind, message: message.into() }
    }
}

pub trait Tool: Send + Sync + 'static {
    const NAME: &'static str;
    type Args: DeserializeOwned + JsonSchema;
    type Output: Serialize;
    fn call(&self, cx: &ToolCx, args: Self::Args) -> Result<Self::Output, ToolError>;
}

/// The JSON face of a tool, for the loop and the LLM policy.
pub trait ToolDyn: Send + Sync {
    fn name(&self) -> &'static str;
    /// The JSON schema of the arguments (derived, never hand-written).
    fn schema(&self) -> serde_json::Value;
    fn call_json(&self, cx: &ToolCx, args: serde_json::Value) -> Result<serde_json::Value, ToolError>;
}

impl<T: Tool> ToolDyn for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T::Args)).unwrap_or(serde_json::Value::Null)
    }

    fn call_json(&self, cx: &ToolCx, args: serde_json::Value) -> Result<serde_json::Value, ToolError> {
        let args: T::Args = serde_json::from_value(args)
            .map_err(|e| ToolError::new(ToolErrorKind::InvalidArgs, format!("arguments of {}: {e}", T::NAME)))?;
        let out = self.call(cx, args)?;
        serde_json::to_value(out).map_err(|e| ToolError::new(ToolErrorKind::Unavailable, e.to_string()))
    }
}

/// Every tool, by name.
pub fn all() -> Vec<Box<dyn ToolDyn>> {
    vec![Box::new(timeline::AnomalyTimeline)]
}

/// Calls a tool by name with JSON arguments: an unknown name is an error the model can read.
pub fn call(tools: &[Box<dyn ToolDyn>], cx: &ToolCx, name: &str, args: serde_json::Value) -> Result<serde_json::Value, ToolError> {
    let tool = tools.iter().find(|t| t.name() == name).ok_or_else(|| {
        let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
        ToolError::new(ToolErrorKind::UnknownTool, format!("no tool named `{name}`; the tools are: {}", names.join(", ")))
    })?;
    tool.call_json(cx, args)
}
