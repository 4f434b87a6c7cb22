//! Writing an incident as a bundle directory, the inverse of `load_bundle`.
//!
//! Used to export simulated and dataset incidents in one plain format. **Invariant:** writing and
//! loading back gives the same model values (times are written as RFC 3339 with milliseconds,
//! floats in shortest round-trip form, odd metric names and attribute orders in lossless spellings).

use super::changes::write_changes;
use super::io;
use super::metrics::write_prometheus;
use super::time::{rfc3339, SecondsFormat};
use super::traces::write_span_csv;
use super::{for_each_log, IngestError};
use crate::model::{Incident, LogRecord, ReadHints, ReadReport, Telemetry, Truth, Ts};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

fn time_value(ts: Ts) -> Value {
    rfc3339(ts, SecondsFormat::Millis).map_or(json!(ts), Value::String)
}

/// Creates `path` and fills it through a buffered writer.
fn write_file(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), IngestError> {
    let err = |source| IngestError::Write { path: path.to_path_buf(), source };
    let mut w = BufWriter::new(File::create(path).map_err(err)?);
    f(&mut w).and_then(|()| w.flush()).map_err(err)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), IngestError> {
    write_file(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Writes `incident` as a bundle in `dir` (created if needed; files of the same names are
/// replaced, others left alone): `incident.json`, `metrics.prom`, `logs.jsonl` (in-memory records
/// then every record streamed from the log files), `spans.csv`, `changes.jsonl`, `topology.json`
/// when there is one, `truth.json` when `truth` is given, and `baseline/` when there is a baseline.
pub fn write_bundle(incident: &Incident, truth: Option<&Truth>, dir: &Path) -> Result<(), IngestError> {
    std::fs::create_dir_all(dir).map_err(|source| IngestError::Write { path: dir.to_path_buf(), source })?;
    let head = json!({
        "id": incident.id,
        "title": incident.alert.title,
        "time": time_value(incident.alert.time),
        "service": incident.alert.service,
        "signal": incident.alert.signal,
        "severity": incident.alert.severity,
        "analysis_start": time_value(incident.analysis_start),
    });
    write_json(&dir.join("incident.json"), &head)?;
    // Records further from the alert than the loader accepts by default are the incident's own
    // here (the writer knows its data): the bundle says how far to reach, so it loads back whole.
    let reach = farthest(incident);
    if reach > (ReadHints::DEFAULT_WINDOW_HOURS * 3_600_000.0) as i64 {
        let hours = (reach as f64 / 3_600_000.0).ceil() + 1.0;
        write_json(&dir.join("mapping.json"), &json!({ "window_hours": hours }))?;
    }
    write_telemetry(&incident.telemetry, dir)?;
    if let Some(topology) = &incident.topology {
        write_json(&dir.join("topology.json"), topology)?;
    }
    if let Some(truth) = truth {
        write_json(&dir.join("truth.json"), truth)?;
    }
    if let Some(baseline) = &incident.baseline {
        let sub = dir.join("baseline");
        std::fs::create_dir_all(&sub).map_err(|source| IngestError::Write { path: sub.clone(), source })?;
        write_telemetry(baseline, &sub)?;
    }
    Ok(())
}

/// The farthest any record (of the incident or its baseline) lies from the alert, in ms.
fn farthest(incident: &Incident) -> Ts {
    let alert = incident.alert.time;
    let far = |t: &Telemetry| -> Ts {
        let times = t
            .metrics
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(t.spans.iter().map(|s| s.start))
            .chain(t.changes.iter().map(|c| c.time))
            .chain(t.logs.records.iter().map(|r| r.time));
        // Streamed log files are not read here: the reach their bundle declared stands for them.
        let declared = t.logs.files.iter().filter_map(|f| f.hints.window_hours).map(|h| (h * 3_600_000.0) as Ts);
        times.map(|x| x.saturating_sub(alert).saturating_abs()).chain(declared).max().unwrap_or(0)
    };
    far(&incident.telemetry).max(incident.baseline.as_ref().map_or(0, far))
}

fn write_telemetry(t: &Telemetry, dir: &Path) -> Result<(), IngestError> {
    write_file(&dir.join("metrics.prom"), |w| write_prometheus(&t.metrics, w))?;
    write_file(&dir.join("spans.csv"), |w| write_span_csv(&t.spans, w))?;
    write_file(&dir.join("changes.jsonl"), |w| write_changes(&t.changes, w))?;
    // The log files may include the very file being written (re-exporting a loaded bundle in
    // place), so write aside and rename.
    let target = dir.join("logs.jsonl");
    let tmp = dir.join("logs.jsonl.tmp");
    let mut report = ReadReport::default();
    write_file(&tmp, |w| {
        let mut result = Ok(());
        for_each_log(&t.logs, &mut report, |r| {
            if result.is_ok() {
                result = write_log(&r, w);
            }
        });
        result
    })?;
    std::fs::rename(&tmp, &target).map_err(|source| IngestError::Write { path: target.clone(), source })?;
    if report.records_skipped > 0 {
        tracing::warn!(skipped = report.records_skipped, file = %io::display(&target), "unreadable log records were not written");
        for issue in &report.issues {
            tracing::debug!(%issue, "not written");
        }
    }
    Ok(())
}

/// One JSON line. Attributes are an object when their keys are sorted and unique (what an object
/// reads back as), else an array of `[key, value]` pairs, so their order survives.
fn write_log(r: &LogRecord, w: &mut dyn Write) -> std::io::Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), time_value(r.time));
    obj.insert("service".into(), json!(r.service));
    obj.insert("level".into(), json!(r.level));
    obj.insert("message".into(), json!(r.message));
    if !r.attributes.is_empty() {
        let sorted = r.attributes.windows(2).all(|p| p[0].0 < p[1].0);
        let attrs = if sorted {
            Value::Object(r.attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        } else {
            json!(r.attributes.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>())
        };
        obj.insert("attributes".into(), attrs);
    }
    serde_json::to_writer(&mut *w, &Value::Object(obj)).map_err(std::io::Error::from)?;
    w.write_all(b"\n")
}
