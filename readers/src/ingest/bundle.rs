//! Loading an incident bundle: a directory with `incident.json` and telemetry files found by name,
//! and by content where the name does not say (or, for `.json`, does not decide) what a file is.
//!
//! The layout is specified in `docs/bundle-format.md`. A `mapping.json` may name the bundle's own
//! field spellings ([`ReadHints`]). Only `incident.json` (and a present but
//! unreadable `truth.json`) can fail a load; a telemetry file that cannot be read is one issue in
//! the incident's read report. Log files are listed, not read: they are streamed later.

use super::io;
use super::{
    read_changes, read_otlp_traces, read_prometheus_query_range, read_prometheus_text, read_span_csv, read_topology,
    read_wide_csv, IngestError,
};
use crate::model::{Alert, Incident, LogFile, LogFormat, ReadHints, ReadReport, Severity, Telemetry, Truth, MINUTE};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files of a bundle that are not telemetry.
const NOT_TELEMETRY: [&str; 4] = ["incident.json", "truth.json", "topology.json", "mapping.json"];

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
    JaegerTraces,
    SpanCsv,
    Changes,
}

/// What a file holds, judged from its first 64 KiB (decompressed): the document's keys for JSON
/// (OTLP `resourceSpans`/`resourceLogs`, Tempo `batches`, Loki `streams`, a Prometheus `matrix`,
/// Jaeger `traceID`/`spanID`), the first object's fields for JSON lines (a change `kind`, a log
/// message), the header for CSV (trace and span ids: spans; a time column: metrics), and the
/// first line for Prometheus text and syslog. None when nothing fits.
fn sniff(path: &Path) -> Option<FileKind> {
    let mut head = Vec::new();
    io::open(path).ok()?.take(64 * 1024).read_to_end(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head);
    let t = text.trim_start();
    let first = t.lines().next()?.trim();
    if t.starts_with('{') || t.starts_with('[') {
        let has = |k: &str| t.contains(k);
        if has("\"resourceSpans\"") || (has("\"batches\"") && has("\"spanId\"")) {
            return Some(FileKind::OtlpTraces);
        }
        if has("\"resourceLogs\"") {
            return Some(FileKind::Logs(LogFormat::OtlpJson));
        }
        if says(t, "resultType", "streams") {
            return Some(FileKind::Logs(LogFormat::Loki));
        }
        if says(t, "resultType", "matrix") || says(t, "resultType", "vector") {
            return Some(FileKind::QueryRange);
        }
        if has("\"traceID\"") && has("\"spanID\"") && has("\"operationName\"") {
            return Some(FileKind::JaegerTraces);
        }
        let obj: Value = serde_json::from_str(first).ok().filter(Value::is_object)?;
        let kind = io::get(&obj, &["kind", "type", "change_type"]).and_then(Value::as_str);
        if kind.is_some_and(|k| crate::model::ChangeKind::parse(k).is_some()) {
            return Some(FileKind::Changes);
        }
        return io::get(&obj, &io::MESSAGE_FIELDS).is_some().then_some(FileKind::Logs(LogFormat::JsonLines));
    }
    if first.starts_with("# HELP") || first.starts_with("# TYPE") || super::metrics::is_sample(first) {
        return Some(FileKind::PromText);
    }
    if super::logs::syslog_line(first).is_ok() {
        return Some(FileKind::Logs(LogFormat::Syslog));
    }
    let header: Vec<String> = first.split(',').map(io::normalise).collect();
    let any = |names: &[&str]| header.iter().any(|h| names.contains(&h.as_str()));
    if header.len() > 1 && any(&["traceid"]) && any(&["spanid"]) {
        return Some(FileKind::SpanCsv);
    }
    (header.len() > 1 && any(&["time", "timestamp", "ts"])).then_some(FileKind::WideCsv)
}

/// Whether JSON text has `"key": "value"` (any spacing) somewhere.
fn says(text: &str, key: &str, value: &str) -> bool {
    let quoted = format!("\"{key}\"");
    text.match_indices(&quoted).any(|(i, _)| {
        let rest = text[i + quoted.len()..].trim_start();
        rest.strip_prefix(':').is_some_and(|r| r.trim_start().starts_with(&format!("\"{value}\"")))
    })
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
        Some("logs") if ext(".log") || ext(".syslog") => Some(FileKind::Logs(LogFormat::Syslog)),
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
    load_telemetry_with(dir, &Arc::new(ReadHints::default()), report)
}

/// [`load_telemetry`] with a bundle's hints (field spellings, the incident's time).
fn load_telemetry_with(dir: &Path, hints: &Arc<ReadHints>, report: &mut ReadReport) -> Result<Telemetry, IngestError> {
    io::with_hints(hints, || read_telemetry(dir, hints, report))
}

fn read_telemetry(dir: &Path, hints: &Arc<ReadHints>, report: &mut ReadReport) -> Result<Telemetry, IngestError> {
    let mut found: Vec<(Option<&str>, PathBuf)> = files_in(dir)?.into_iter().map(|p| (None, p)).collect();
    for folder in FOLDERS {
        let sub = dir.join(folder);
        if std::fs::symlink_metadata(&sub).is_ok_and(|m| m.file_type().is_symlink()) {
            report.skip(io::issue(&io::display(&sub), 0, None, "a symlink: refused (copy the folder into the bundle)"));
            continue;
        }
        if sub.is_dir() {
            found.extend(files_in(&sub)?.into_iter().map(|p| (Some(folder), p)));
        }
    }
    let mut t = Telemetry::default();
    for (folder, path) in found {
        let base = io::base_name(&path);
        // A bundle's files are its own: a link could reach anything the user can read.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            let name = io::display(&path);
            report.skip(io::issue(&name, 0, None, "a symlink: refused (copy the file into the bundle)"));
            continue;
        }
        if folder.is_none() && NOT_TELEMETRY.contains(&base.as_str()) {
            continue;
        }
        // A `.json` name does not decide between OTLP, Loki, Jaeger and Prometheus, nor `.log`
        // between syslog and JSON lines: the content does.
        let by_name = classify(folder, &base);
        let kind = match by_name {
            Some(k) if !base.ends_with(".json") && !base.ends_with(".log") => Some(k),
            _ => sniff(&path).or(by_name),
        };
        let Some(kind) = kind else {
            tracing::debug!(file = %path.display(), "neither its name nor its content says what it holds; ignored");
            report.ignored.push(io::display(&path));
            continue;
        };
        tracing::debug!(file = %path.display(), ?kind, by_name = by_name == Some(kind), "reading");
        if let FileKind::Logs(format) = kind {
            // Streamed (and counted) whenever a stage reads the logs.
            t.logs.files.push(LogFile { path: path.clone(), format, hints: hints.clone() });
            continue;
        }
        let before = (t.metrics.len(), t.spans.len(), t.changes.len());
        let name = io::display(&path);
        let result = report.counting(&name, |report| {
            let read = read_file(kind, &path, &mut t, report);
            drop_outside(&mut t, before, &name, hints, report);
            read
        });
        if let Err(e) = result {
            report.skip(file_issue(&path, &e));
        }
    }
    report.duplicates += super::dedup::dedup(&mut t);
    Ok(t)
}

/// Reads one (non-log) file into `t`.
fn read_file(kind: FileKind, path: &Path, t: &mut Telemetry, report: &mut ReadReport) -> Result<(), IngestError> {
    match kind {
        FileKind::PromText => read_prometheus_text(path, report).map(|s| t.metrics.extend(s)),
        FileKind::QueryRange => read_prometheus_query_range(path, report).map(|s| t.metrics.extend(s)),
        FileKind::WideCsv => read_wide_csv(path, report).map(|s| t.metrics.extend(s)),
        FileKind::OtlpTraces => read_otlp_traces(path, report).map(|s| t.spans.extend(s)),
        FileKind::JaegerTraces => super::traces::read_jaeger_traces(path, report).map(|s| t.spans.extend(s)),
        FileKind::SpanCsv => read_span_csv(path, report).map(|s| t.spans.extend(s)),
        FileKind::Changes => read_changes(path, report).map(|c| t.changes.extend(c)),
        FileKind::Logs(_) => Ok(()),
    }
}

/// Rejects what one file added to `t` (series from `from.0`, spans from `from.1`, changes from
/// `from.2`) whose time lies outside the hints' window: each is a skipped record with its file
/// and field, no longer a read one.
fn drop_outside(
    t: &mut Telemetry,
    from: (usize, usize, usize),
    file: &str,
    hints: &ReadHints,
    report: &mut ReadReport,
) {
    if hints.window.is_none() {
        return;
    }
    let mut rejected: Vec<(&'static str, String)> = Vec::new();
    for s in &mut t.metrics[from.0..] {
        s.points.retain(|p| match hints.outside(p.0) {
            Some(why) => {
                rejected.push(("time", why));
                false
            }
            None => true,
        });
    }
    let mut i = from.0;
    t.metrics.retain(|s| {
        i += 1;
        i <= from.0 || !s.points.is_empty()
    });
    let span_limit = hints.window.map_or(f64::MAX, |(lo, hi)| (hi - lo) as f64);
    let mut k = 0;
    t.spans.retain(|s| {
        k += 1;
        if k <= from.1 {
            return true;
        }
        let why = hints.outside(s.start).map(|w| ("start", w)).or_else(|| {
            // NaN is no duration either.
            (s.duration_ms.is_nan() || s.duration_ms > span_limit)
                .then(|| ("duration", format!("{} ms is longer than the window", s.duration_ms)))
        });
        why.map(|w| rejected.push(w)).is_none()
    });
    let mut k = 0;
    t.changes.retain(|c| {
        k += 1;
        k <= from.2 || hints.outside(c.time).map(|w| rejected.push(("time", w))).is_none()
    });
    report.records_read = report.records_read.saturating_sub(rejected.len() as u64);
    for (field, why) in rejected {
        report.skip(io::issue(file, 0, Some(field), why));
    }
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
    let mapping_path = dir.join("mapping.json");
    let mut hints = if mapping_path.is_file() {
        let file = io::display(&mapping_path);
        serde_json::from_reader(io::open(&mapping_path)?).map_err(|source| IngestError::Json { file, source })?
    } else {
        ReadHints::default()
    };
    hints.reference = Some(head.alert.time);
    let reach = (hints.window_hours.unwrap_or(ReadHints::DEFAULT_WINDOW_HOURS).max(0.0) * 3_600_000.0).min(1e15) as i64;
    hints.window = Some((head.alert.time.saturating_sub(reach), head.alert.time.saturating_add(reach)));
    let hints = Arc::new(hints);
    let mut report = ReadReport::default();
    let telemetry = load_telemetry_with(dir, &hints, &mut report)?;
    let baseline_dir = dir.join("baseline");
    // A separate baseline is a normal period, often days before: it may reach back 90 days.
    let baseline_hints = Arc::new(ReadHints {
        window: hints.window.map(|(lo, hi)| (lo.min(head.alert.time.saturating_sub(90 * 24 * 3_600_000)), hi)),
        ..(*hints).clone()
    });
    let baseline = if baseline_dir.is_dir() {
        Some(load_telemetry_with(&baseline_dir, &baseline_hints, &mut report)?)
    } else {
        None
    };
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
