//! The tools' specs for a model, from `tools/<name>.toml` (embedded at build time): the
//! description the model reads, one line per argument, an example call and the output limits.
//! The argument *structure* always comes from the Rust types (schemars); the spec only words it.

use super::ToolDyn;
use serde::Deserialize;
use std::collections::BTreeMap;

/// (name, spec text) of every tool spec in `tools/`.
pub const SPECS: &[(&str, &str)] = &[
    ("anomaly_timeline", include_str!("../../../tools/anomaly_timeline.toml")),
    ("trace_query", include_str!("../../../tools/trace_query.toml")),
    ("config_diff", include_str!("../../../tools/config_diff.toml")),
    ("dependency_lookup", include_str!("../../../tools/dependency_lookup.toml")),
    ("metric_correlation", include_str!("../../../tools/metric_correlation.toml")),
    ("log_search", include_str!("../../../tools/log_search.toml")),
    ("search_similar_incidents", include_str!("../../../tools/search_similar_incidents.toml")),
    ("drilldown", include_str!("../../../tools/drilldown.toml")),
];

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
}

#[derive(Debug, thiserror::Error)]
#[error("tools/{name}.toml: {message}")]
pub struct SpecError {
    pub name: String,
    pub message: String,
}

/// The parsed spec of a tool.
pub fn spec(name: &str) -> Result<Spec, SpecError> {
    let err = |message: String| SpecError { name: name.to_string(), message };
    let text = SPECS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| err("no spec file".into()))?;
    toml::from_str(text).map_err(|e| err(e.to_string()))
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
        let s = spec(t.name())?;
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
