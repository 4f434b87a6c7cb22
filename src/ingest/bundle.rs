//! Loading an incident bundle: a directory with `incident.json` and telemetry files found by name.
//!
//! The layout is specified in `docs/bundle-format.md`. Only `incident.json` (and a present but
//! unreadable `truth.json`) can fail a load; a telemetry file that cannot be read is one issue in
//! the incident's read report. Log files are listed, not read: they are streamed later.

use super::io;
use super::{
    read_changes, read_otlp_traces, read_prometheus_query_range, read_prometheus_text, read_span_csv, read_topology,
    read_wide_csv, IngestError,
};
use crate::model::{Alert, Incident, LogFile, LogFormat, ReadReport, Severity, Telemetry, Truth, MINUTE};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The subfolders whose files are telemetry by extension alone.
const FOLDERS: [&str; 4] = ["metrics", "logs", "traces", "changes"];

/// What a file in a bundle holds, decided by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    PromText,
    QueryRange,
    WideCsv,
    Logs(LogFormat),
    OtlpTraces,
    SpanCsv,
    Changes,
}

/// Classifies `base` (lowercased, `.gz` removed) found at the top level (`folder` None) or in one
/// of [`FOLDERS`].
fn classify(folder: Option<&str>, base: &str) -> Option<FileKind> {
    let ext = |e: &str| base.ends_with(e);
    let lines = ext(".jsonl") || ext(".ndjson");
    match folder {
        Some("metrics") if ext(".prom") || ext(".txt") => Some(FileKind::PromText),
        Some("metrics") if ext(".json") => Some(FileKind::QueryRange),
        Some("metrics") if ext(".csv") => Some(FileKind::WideCsv),
        Some("logs") if lines => Some(FileKind::Logs(LogFormat::JsonLines)),
        Some("logs") if ext(".json") => Some(FileKind::Logs(LogFormat::OtlpJson)),
        Some("logs") if ext(".csv") => Some(FileKind::Logs(LogFormat::NezhaCsv)),
        Some("traces") if ext(".json") => Some(FileKind::OtlpTraces),
        Some("traces") if ext(".csv") => Some(FileKind::SpanCsv),
        Some("changes") if lines => Some(FileKind::Changes),
        Some(_) => None,
        None => {
            let starts = |p: &str| base.starts_with(p);
            if ext(".prom") || (starts("metrics") && ext(".txt")) {
                Some(FileKind::PromText)
            } else if starts("metrics") && ext(".json") {
                Some(FileKind::QueryRange)
            } else if starts("metrics") && ext(".csv") {
                Some(FileKind::WideCsv)
            } else if starts("logs") && ext(".otlp.json") {
                Some(FileKind::Logs(LogFormat::OtlpJson))
            } else if starts("logs") && lines {
                Some(FileKind::Logs(LogFormat::JsonLines))
            } else if starts("logs") && ext(".csv") {
                Some(FileKind::Logs(LogFormat::NezhaCsv))
            } else if starts("traces") && ext(".json") {
                Some(FileKind::OtlpTraces)
            } else if (starts("spans") || starts("traces")) && ext(".csv") {
                Some(FileKind::SpanCsv)
            } else if starts("changes") && lines {
                Some(FileKind::Changes)
            } else {
                None
            }
        }
    }
}

/// Regular files of a directory, sorted by name.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| IngestError::Read { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    Ok(files)
}

/// Reads the telemetry files of a bundle directory (top level and `metrics/`, `logs/`, `traces/`,
/// `changes/`). Log files are only listed. A file that cannot be read is one issue (line 0).
pub fn load_telemetry(dir: &Path, report: &mut ReadReport) -> Result<Telemetry, IngestError> {
    let mut found: Vec<(Option<&str>, PathBuf)> = files_in(dir)?.into_iter().map(|p| (None, p)).collect();
    for folder in FOLDERS {
        let sub = dir.join(folder);
        if sub.is_dir() {
            found.extend(files_in(&sub)?.into_iter().map(|p| (Some(folder), p)));
        }
    }
    let mut t = Telemetry::default();
    for (folder, path) in found {
        let base = io::base_name(&path);
        let Some(kind) = classify(folder, &base) else {
            if folder.is_some() || !matches!(base.as_str(), "incident.json" | "truth.json" | "topology.json") {
                tracing::debug!(file = %path.display(), "not a telemetry file name; ignored");
                report.ignored.push(io::display(&path));
            }
            continue;
        };
        tracing::debug!(file = %path.display(), ?kind, "reading");
        if let FileKind::Logs(format) = kind {
            // Streamed (and counted) whenever a stage reads the logs.
            t.logs.files.push(LogFile { path: path.clone(), format });
            continue;
        }
        let result = report.counting(&io::display(&path), |report| match kind {
            FileKind::PromText => read_prometheus_text(&path, report).map(|s| t.metrics.extend(s)),
            FileKind::QueryRange => read_prometheus_query_range(&path, report).map(|s| t.metrics.extend(s)),
            FileKind::WideCsv => read_wide_csv(&path, report).map(|s| t.metrics.extend(s)),
            FileKind::OtlpTraces => read_otlp_traces(&path, report).map(|s| t.spans.extend(s)),
            FileKind::SpanCsv => read_span_csv(&path, report).map(|s| t.spans.extend(s)),
            FileKind::Changes => read_changes(&path, report).map(|c| t.changes.extend(c)),
            FileKind::Logs(_) => Ok(()),
        });
        if let Err(e) = result {
            report.skip(file_issue(&path, &e));
        }
    }
    Ok(t)
}

fn file_issue(path: &Path, e: &IngestError) -> crate::model::ReadIssue {
    let field = match e {
        IngestError::Invalid { field, .. } => Some(field.as_str()),
        _ => None,
    };
    io::issue(&io::display(path), 0, field, io::error_chain(e))
}

/// Loads an incident bundle directory; see `docs/bundle-format.md`.
pub fn load_bundle(dir: &Path) -> Result<Incident, IngestError> {
    if !dir.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory");
        return Err(IngestError::Open { path: dir.to_path_buf(), source });
    }
    let incident_path = dir.join("incident.json");
    if !incident_path.is_file() {
        return Err(IngestError::MissingIncident { dir: dir.to_path_buf() });
    }
    let default_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let head = read_incident_json(&incident_path, &default_id)?;
    let mut report = ReadReport::default();
    let telemetry = load_telemetry(dir, &mut report)?;
    let baseline_dir = dir.join("baseline");
    let baseline = if baseline_dir.is_dir() { Some(load_telemetry(&baseline_dir, &mut report)?) } else { None };
    let topology_path = dir.join("topology.json");
    let topology = if topology_path.is_file() {
        match report.counting(&io::display(&topology_path), |r| read_topology(&topology_path, r)) {
            Ok(t) => Some(t),
            Err(e) => {
                report.skip(file_issue(&topology_path, &e));
                None
            }
        }
    } else {
        None
    };
    let truth_path = dir.join("truth.json");
    let truth = if truth_path.is_file() {
        let file = io::display(&truth_path);
        let truth: Truth =
            serde_json::from_reader(io::open(&truth_path)?).map_err(|source| IngestError::Json { file, source })?;
        Some(truth)
    } else {
        None
    };
    Ok(Incident {
        id: head.id,
        alert: head.alert,
        telemetry,
        baseline,
        analysis_start: head.analysis_start,
        topology,
        truth,
        read_report: report,
    })
}

/// The parts of an incident that `incident.json` holds.
struct Head {
    id: String,
    alert: Alert,
    analysis_start: i64,
}

fn read_incident_json(path: &Path, default_id: &str) -> Result<Head, IngestError> {
    let file = io::display(path);
    let doc: Value =
        serde_json::from_reader(io::open(path)?).map_err(|source| IngestError::Json { file: file.clone(), source })?;
    let invalid =
        |field: &str, message: String| IngestError::Invalid { file: file.clone(), field: field.into(), message };
    if !doc.is_object() {
        return Err(invalid("id", "incident.json must be a JSON object".into()));
    }
    let text = |field: &str, required: bool| -> Result<Option<String>, IngestError> {
        match doc.get(field) {
            None | Some(Value::Null) if required => Err(invalid(field, "missing".into())),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if required && s.trim().is_empty() => Err(invalid(field, "empty".into())),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(invalid(field, format!("expected a string, got {other}"))),
        }
    };
    let time_field = |field: &str| -> Result<Option<i64>, IngestError> {
        match doc.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => io::time_of(v).map(Some).ok_or_else(|| invalid(field, format!("not a time: {v}"))),
        }
    };
    let time = time_field("time")?.ok_or_else(|| invalid("time", "missing".into()))?;
    let severity = match text("severity", false)? {
        None => Severity::default(),
        Some(s) => match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "page" => Severity::Critical,
            "high" | "error" => Severity::High,
            "warning" | "warn" | "medium" => Severity::Warning,
            "info" | "low" => Severity::Info,
            other => {
                return Err(invalid(
                    "severity",
                    format!("unknown severity {other:?} (want critical, high, warning or info)"),
                ))
            }
        },
    };
    let alert = Alert {
        time,
        service: text("service", true)?.unwrap_or_default(),
        signal: text("signal", true)?.unwrap_or_default(),
        severity,
        title: text("title", false)?.unwrap_or_default(),
    };
    Ok(Head {
        id: text("id", false)?.unwrap_or_else(|| default_id.to_string()),
        alert,
        analysis_start: time_field("analysis_start")?.unwrap_or(time.saturating_sub(30 * MINUTE)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_name() {
        assert_eq!(classify(None, "metrics.prom"), Some(FileKind::PromText));
        assert_eq!(classify(None, "cpu.prom"), Some(FileKind::PromText));
        assert_eq!(classify(None, "readme.txt"), None);
        assert_eq!(classify(None, "metrics-range.json"), Some(FileKind::QueryRange));
        assert_eq!(classify(None, "metrics.csv"), Some(FileKind::WideCsv));
        assert_eq!(classify(None, "logs.otlp.json"), Some(FileKind::Logs(LogFormat::OtlpJson)));
        assert_eq!(classify(None, "logs.jsonl"), Some(FileKind::Logs(LogFormat::JsonLines)));
        assert_eq!(classify(None, "traces.json"), Some(FileKind::OtlpTraces));
        assert_eq!(classify(None, "spans.csv"), Some(FileKind::SpanCsv));
        assert_eq!(classify(None, "changes.jsonl"), Some(FileKind::Changes));
        assert_eq!(classify(None, "incident.json"), None);
        assert_eq!(classify(Some("metrics"), "a.json"), Some(FileKind::QueryRange));
        assert_eq!(classify(Some("logs"), "a.json"), Some(FileKind::Logs(LogFormat::OtlpJson)));
        assert_eq!(classify(Some("logs"), "08_43_log.csv"), Some(FileKind::Logs(LogFormat::NezhaCsv)));
        assert_eq!(classify(Some("traces"), "x.csv"), Some(FileKind::SpanCsv));
        assert_eq!(classify(Some("changes"), "x.txt"), None);
    }
}
