//! Readers for incident bundles and telemetry formats: everything that turns files into `model` types.
//!
//! Readers stream (line by line, record by record; `.gz` files are decompressed on the fly) and
//! never abort on a bad record: they skip it and note file, line and field in a
//! [`ReadReport`](crate::model::ReadReport). Only whole-file failures are [`IngestError`]s.
//! The bundle layout is documented in `docs/bundle-format.md`.

mod bundle;
pub mod changes;
pub mod dedup;
pub mod io;
pub mod logs;
pub mod metrics;
mod pod;
pub mod time;
mod topology;
pub mod traces;
mod write;

use std::path::PathBuf;

pub use bundle::{load_bundle, load_telemetry};
pub use changes::{change_from_json, read_changes};
pub use logs::{
    for_each_log, parse_app_log_line, read_json_lines_logs, read_log_file, read_logs, read_nezha_logs, read_otlp_logs,
    AppLine,
};
pub use metrics::{read_prometheus_query_range, read_prometheus_text, read_wide_csv};
pub use pod::pod_to_service;
pub use time::{from_number, parse_time_str};
pub use topology::read_topology;
pub use traces::{read_otlp_traces, read_span_csv};
pub use write::write_bundle;

/// A file that could not be read at all. Problems with single records are never errors: they are
/// skipped and reported in the [`ReadReport`](crate::model::ReadReport).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no incident.json in the bundle", dir.display())]
    MissingIncident { dir: PathBuf },
    #[error("{file}: field `{field}`: {message}")]
    Invalid { file: String, field: String, message: String },
    #[error("{file}: not valid JSON")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
}
