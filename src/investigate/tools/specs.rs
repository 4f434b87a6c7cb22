//! The tools' specs, from `tools/<name>.toml` (each tool embeds its own, `Tool::SPEC`): the
//! description the model reads, one line per argument, an example call, the output limits, and
//! the words with which `culprit chat` routes a question to it. The argument *structure* always
//! comes from the Rust types (schemars); the spec only words it.

use super::ToolDyn;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub description: String,
    pub output_limit: String,
    /// Argument name → what it means.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// One valid call's arguments.
    pub example: toml::Table,
    /// How `culprit chat` routes a question to the tool; a tool without it is only called by a
    /// policy.
    #[serde(default)]
    pub chat: Option<ChatRoute>,
}

/// The words of a question that ask for a tool, and its rank among the tools whose words a
/// question holds (the lowest answers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRoute {
    pub words: Vec<String>,
    pub rank: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("tools/{name}.toml: {message}")]
pub struct SpecError {
    pub name: String,
    pub message: String,
}

/// The parsed spec of a tool (its `tools/<name>.toml`, embedded in the tool).
pub fn spec(tool: &dyn ToolDyn) -> Result<Spec, SpecError> {
    toml::from_str(tool.spec_text()).map_err(|e| SpecError { name: tool.name().to_string(), message: e.to_string() })
}

/// The argument schema a model sees: the derived structure (properties, types, required), with
/// each property described by the spec.
pub fn parameters(tool: &dyn ToolDyn, spec: &Spec) -> serde_json::Value {
    let schema = tool.schema();
    let mut properties = schema.get("properties").cloned().unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = properties.as_object_mut() {
        for (name, p) in map.iter_mut() {
            if let (Some(doc), Some(obj)) = (spec.args.get(name), p.as_object_mut()) {
                obj.insert("description".into(), serde_json::Value::String(doc.clone()));
            }
        }
    }
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": schema.get("required").cloned().unwrap_or_else(|| serde_json::json!([])),
        "additionalProperties": false,
    })
}

/// The OpenAI `tools` array for these tools (each as a function), plus `conclude`.
pub fn openai_tools<'a>(tools: impl IntoIterator<Item = &'a dyn ToolDyn>) -> Result<Vec<serde_json::Value>, SpecError> {
    let mut out = Vec::new();
    for t in tools {
        let s = spec(t)?;
        out.push(serde_json::json!({
            "type": "function",
            "function": {
                "name": t.name(),
                "description": format!("{} Output: {}.", s.description.trim().replace('\n', " "), s.output_limit),
                "parameters": parameters(t, &s),
            }
        }));
    }
    out.push(serde_json::json!({
        "type": "function",
        "function": {
            "name": CONCLUDE,
            "description": "End the investigation when no further check would change the answer. The confidence is computed from the evidence, not from this call.",
            "parameters": {
                "type": "object",
                "properties": {
                    "service": { "type": "string", "description": "The root-cause service you believe in." },
                    "reasoning": { "type": "string", "description": "Why, in one or two sentences, citing the evidence." }
                },
                "required": ["reasoning"],
                "additionalProperties": false
            }
        }
    }));
    Ok(out)
}

/// The pseudo-tool a model calls to end the investigation.
pub const CONCLUDE: &str = "conclude";
