//! The declared service topology (`topology.json`): who calls whom.
//!
//! A small document, read whole; an entry that cannot be read is skipped with an issue naming
//! it (`edges[3]`), the rest is kept.

use super::io;
use super::IngestError;
use crate::model::{ReadReport, Topology, TopologyEdge, TopologyNode};
use serde_json::Value;
use std::path::Path;

/// Reads `{"services": [{"name", "kind"}], "edges": [{"caller", "callee"}]}`. Services may also be
/// plain strings, and edges `["caller", "callee"]` pairs or `{"source", "target"}` / `{"from", "to"}`.
pub fn read_topology(path: &Path, report: &mut ReadReport) -> Result<Topology, IngestError> {
    let file = io::display(path);
    let doc: Value =
        serde_json::from_reader(io::open(path)?).map_err(|source| IngestError::Json { file: file.clone(), source })?;
    if !doc.is_object() {
        return Err(IngestError::Invalid {
            file,
            field: "services".into(),
            message: "topology must be a JSON object".into(),
        });
    }
    let mut topology = Topology::default();
    let list = |key: &str| doc.get(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for (i, s) in list("services").iter().enumerate() {
        let node = match s {
            Value::String(name) => Some(TopologyNode { name: name.clone(), kind: None }),
            Value::Object(o) => o.get("name").and_then(Value::as_str).map(|name| TopologyNode {
                name: name.to_string(),
                kind: o.get("kind").and_then(Value::as_str).map(str::to_string),
            }),
            _ => None,
        };
        match node {
            Some(n) => {
                report.records_read += 1;
                topology.services.push(n);
            }
            None => {
                report.skip(io::issue(&file, 0, Some(&format!("services[{i}]")), "not a service name or {name, kind}"))
            }
        }
    }
    for (i, e) in list("edges").iter().enumerate() {
        let pair = match e {
            Value::Array(p) if p.len() == 2 => p[0].as_str().zip(p[1].as_str()),
            Value::Object(o) => {
                let end = |keys: [&str; 3]| keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str));
                end(["caller", "source", "from"]).zip(end(["callee", "target", "to"]))
            }
            _ => None,
        };
        match pair {
            Some((caller, callee)) => {
                report.records_read += 1;
                topology.edges.push(TopologyEdge { caller: caller.to_string(), callee: callee.to_string() });
            }
            None => report.skip(io::issue(
                &file,
                0,
                Some(&format!("edges[{i}]")),
                "not a {caller, callee} object or [caller, callee] pair",
            )),
        }
    }
    Ok(topology)
}
