//! The change-event reader (deploys, config changes, flag flips) and its writer.
//!
//! Changes are the most likely root causes, so a change line that cannot be read is reported
//! precisely rather than guessed at.

use super::io;
use super::time::{rfc3339, SecondsFormat};
use super::IngestError;
use crate::model::{Change, ChangeKind, KeyChange, ReadReport, MAX_KEYS_PER_CHANGE};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// Reads JSON lines `{"time", "service", "kind": "deploy|config|flag", "author", "version",
/// "previous_version", "keys": [{"key", "old", "new"}], "description", "instances": ["pod", …]}`.
/// `keys` may be spelled `changed_keys` and may be an object `{"k": {"old", "new"}}` (or
/// `{"k": "new"}`); `instances` (alias `pods`) names the instances a deploy brought in.
pub fn read_changes(path: &Path, report: &mut ReadReport) -> Result<Vec<Change>, IngestError> {
    let mut out = Vec::new();
    io::for_each_json_line(path, report, change, |c| out.push(c))?;
    Ok(out)
}

/// One change event from its JSON object (the reader's per-line parser; `POST /v1/changes`).
pub fn change_from_json(obj: &Value) -> Result<Change, (&'static str, String)> {
    change(obj)
}

fn change(obj: &Value) -> Result<Change, (&'static str, String)> {
    let time = match io::get_hinted(obj, |h| &h.time, &io::TIME_FIELDS) {
        None => return Err(("time", "missing".into())),
        Some(v) => io::time_of(v).ok_or_else(|| ("time", format!("not a time: {v}")))?,
    };
    let service = match io::get_hinted(obj, |h| &h.service, &io::SERVICE_FIELDS) {
        None => return Err(("service", io::NO_SERVICE.into())),
        Some(v) => io::scalar_text(v).ok_or_else(|| ("service", format!("not a service name: {v}")))?,
    };
    let kind = match io::get(obj, &["kind", "type"]) {
        // Without a kind, what the record holds says it: a version is a deploy, a flag a flag
        // flip, changed keys a config change.
        None if io::get(obj, &["version", "previous_version", "image"]).is_some() => ChangeKind::Deploy,
        None if io::get(obj, &["flag", "flag_key", "feature_flag"]).is_some() => ChangeKind::Flag,
        None if io::get(obj, &["keys", "changed_keys"]).is_some() => ChangeKind::Config,
        None => return Err(("kind", "missing, and no version, flag or keys to tell it by".into())),
        Some(v) => v
            .as_str()
            .and_then(ChangeKind::parse)
            .ok_or_else(|| ("kind", format!("unknown kind {v} (want deploy, config or flag)")))?,
    };
    let text = |key: &str| opt_text(obj.get(key));
    let mut keys = match io::get(obj, &["keys", "changed_keys"]) {
        None => Vec::new(),
        Some(v) => keys(v).map_err(|m| ("keys", m.to_string()))?,
    };
    let mut description = text("description");
    if keys.len() > MAX_KEYS_PER_CHANGE {
        let more = format!("(and {} more keys not kept)", keys.len() - MAX_KEYS_PER_CHANGE);
        keys.truncate(MAX_KEYS_PER_CHANGE);
        description = Some(description.map_or(more.clone(), |d| format!("{d} {more}")));
    }
    let instances = match io::get(obj, &["instances", "pods"]) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| io::scalar_text(v).ok_or_else(|| ("instances", format!("not an instance name: {v}"))))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(("instances", format!("must be an array of instance names, not {v}"))),
    };
    Ok(Change {
        time,
        service,
        kind,
        author: text("author"),
        version: text("version"),
        previous_version: text("previous_version"),
        keys,
        description,
        instances,
    })
}

fn opt_text(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(io::to_text)
}

/// A `keys` field of the wrong shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum BadKeys {
    #[error("key entry without `key`")]
    NoKey,
    #[error("key entries must be objects {{key, old, new}}")]
    Entry,
    #[error("must be an array of {{key, old, new}} or an object")]
    Shape,
}

fn keys(v: &Value) -> Result<Vec<KeyChange>, BadKeys> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(o) => match o.get("key") {
                    Some(k) if !k.is_null() => {
                        Ok(KeyChange { key: io::to_text(k), old: opt_text(o.get("old")), new: opt_text(o.get("new")) })
                    }
                    _ => Err(BadKeys::NoKey),
                },
                Value::String(k) => Ok(KeyChange { key: k.clone(), old: None, new: None }),
                _ => Err(BadKeys::Entry),
            })
            .collect(),
        Value::Object(m) => Ok(m
            .iter()
            .map(|(k, v)| match v {
                Value::Object(o) if o.contains_key("old") || o.contains_key("new") => {
                    KeyChange { key: k.clone(), old: opt_text(o.get("old")), new: opt_text(o.get("new")) }
                }
                other => KeyChange { key: k.clone(), old: None, new: opt_text(Some(other)) },
            })
            .collect()),
        _ => Err(BadKeys::Shape),
    }
}

/// Writes changes as the JSON lines `read_changes` reads back unchanged.
pub fn write_changes(changes: &[Change], w: &mut dyn Write) -> std::io::Result<()> {
    for c in changes {
        let mut obj = serde_json::Map::new();
        obj.insert("time".into(), rfc3339(c.time, SecondsFormat::Millis).map_or(json!(c.time), Value::String));
        obj.insert("service".into(), json!(c.service));
        obj.insert("kind".into(), json!(c.kind.as_str()));
        for (key, v) in [("author", &c.author), ("version", &c.version), ("previous_version", &c.previous_version)] {
            if let Some(v) = v {
                obj.insert(key.into(), json!(v));
            }
        }
        if !c.keys.is_empty() {
            obj.insert(
                "keys".into(),
                json!(c.keys.iter().map(|k| json!({"key": k.key, "old": k.old, "new": k.new})).collect::<Vec<_>>()),
            );
        }
        if let Some(d) = &c.description {
            obj.insert("description".into(), json!(d));
        }
        if !c.instances.is_empty() {
            obj.insert("instances".into(), json!(c.instances));
        }
        serde_json::to_writer(&mut *w, &Value::Object(obj))?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
