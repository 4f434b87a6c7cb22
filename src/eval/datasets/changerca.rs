//! ChangeRCA (FSE'24) defective releases: OnlineBoutique with 1–6 concurrent gray releases per
//! case, exactly one of them faulty. `cases_index.csv` lists the cases; each case folder holds
//! `<case>.json` (the release plan, the case window and the alert, and the label), per-pod
//! per-call-edge metric tables, the per-edge success rates and `dependency.csv`.
//!
//! What culprit receives: every release that started before the incident window ends as a deploy
//! change (service, v1 → v2, the time its first v2 pod was created, the pods it swapped by then);
//! each pod's table as series per metric and call edge, labelled with the edge and the pod
//! (`SuccessRate{edge="frontend->adservice",pod="adservice-v2-…"}`), and the success-rate tables
//! as series of the caller and the callee; `dependency.csv` as the topology. The steady state
//! before the first release is the reference (the incident's separate baseline: fault-free data);
//! the incident runs from the first release to
//! [`AFTER_ALERT`] past the alert, as the dataset card advises. Times are rounded to the minute.
//!
//! **Boundary**: the case file holds the label beside the inputs (`fault_release_service`,
//! `fault`, `normal_service_list`): they are never read (the JSON is parsed into a type without
//! them), and the releases reach culprit in an order shuffled by the case id, because the faulty
//! release is the first key of every plan. The label comes from `cases_index.csv`, into
//! `Incident::truth` only. The alert is the dataset's own: `GIED_result` is the service the
//! alerting module blamed at `detect_timestamp` (ChangeRCA takes it as its input, so the anchor
//! is measured with it too), on failed calls (GIED counts them per edge), so the signal is
//! `errors`; `frontend` when the field is absent. The other upstream answers stored in the case
//! (`Microrca_result`, `Microscope_result`) are not read.

use super::nezha::read_dependency_csv;
use super::{
    alert, column, csv_reader, headers, issue, line_of, parse_value, required, slice_series, AdapterError, Case,
    Dataset, Loaded, Scoring, SeriesBuilder, Suite,
};
use crate::eval::EvalError;
use crate::model::{Change, ChangeKind, Incident, ReadReport, Telemetry, Truth, Ts, MINUTE};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How long past the alert the incident window runs (the dataset card: "up to `detect_timestamp`,
/// plus at most a few minutes"; chosen before any case was run, not fitted).
pub const AFTER_ALERT: Ts = 2 * MINUTE;

/// The system name of every case.
pub const SYSTEM: &str = "changerca";
/// The service through which users reach OnlineBoutique; the alert names it when the case has no
/// `GIED_result`.
pub const ENTRY_SERVICE: &str = "frontend";
const LABEL: &str = "ChangeRCA OnlineBoutique";

/// Per-pod metric columns that describe the pod (node-level columns are left out, as for Nezha).
const POD_METRICS: [&str; 4] = ["SuccessRate", "Latency", "CPUUsageRate(%)", "MemoryUsageRate(%)"];

/// Files of a case folder that are not per-pod tables.
const NOT_POD_TABLES: [&str; 3] = ["source_success.csv", "destination_success.csv", "dependency.csv"];

/// The ChangeRCA dataset: `.../changerca`.
pub struct ChangeRca;

/// Where one case lives, and its label (from the index).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRcaCase {
    pub id: String,
    pub dir: PathBuf,
    pub truth: Truth,
}

impl Dataset for ChangeRca {
    fn name(&self) -> &'static str {
        "ChangeRCA (FSE'24) OnlineBoutique concurrent releases"
    }

    fn form(&self) -> &'static str {
        ".../changerca"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Incidents
    }

    fn recognise(&self, arg: &str) -> bool {
        let index = Path::new(arg).join("cases_index.csv");
        super::header_of(&index).is_some_and(|h| {
            ["case_dir", "faulty_release", "detect_timestamp"].iter().all(|c| h.iter().any(|x| x == c))
        })
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let cases = list(Path::new(arg))?
            .into_iter()
            .map(|c| Case::new(&ChangeRca, c.id.clone(), SYSTEM, c.clone()).labelled(c.truth))
            .collect();
        Ok(vec![Suite { name: format!("{arg} ({SYSTEM})"), scoring: Scoring::Incidents, cases }])
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        Ok(Loaded::Incident(Box::new(load(case.own_key::<ChangeRcaCase>()?)?)))
    }
}

/// Lists the cases of `<root>/cases_index.csv`, with their labels.
pub fn list(root: &Path) -> Result<Vec<ChangeRcaCase>, AdapterError> {
    let path = root.join("cases_index.csv");
    let mut rdr = csv_reader(&path)?;
    let hdr = headers(&mut rdr, &path)?;
    let col = |name: &str| column(&hdr, name, &path);
    let (c_id, c_dir, c_service, c_fault) =
        (col("case_id")?, col("case_dir")?, col("root_cause_service")?, col("fault_type")?);
    let mut cases = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|error| AdapterError::Csv { path: path.clone(), source: error })?;
        let [id, dir, service] = required(&record, [c_id, c_dir, c_service], &hdr, &path)?;
        let kind = record.get(c_fault).unwrap_or("").trim().to_string();
        let truth =
            Truth { service: service.clone(), indicator: String::new(), kind, chain: vec![service], location: None };
        cases.push(ChangeRcaCase { id, dir: root.join(dir), truth });
    }
    Ok(cases)
}

/// What culprit reads of a case file: the plan, the window and the alert. Serde skips every other
/// field, the label among them.
#[derive(Deserialize)]
struct CaseFile {
    plan: BTreeMap<String, Release>,
    experiment_time: String,
    #[serde(rename = "experiemnt_end_time")]
    experiment_end_time: String,
    detect_timestamp: i64,
    /// The service GIED, the alerting module ChangeRCA takes as input, blamed at the alert.
    #[serde(rename = "GIED_result", default)]
    gied_result: Option<String>,
}

#[derive(Deserialize)]
struct Release {
    release_time: i64,
    #[serde(default)]
    target_replica: Option<u32>,
    #[serde(default)]
    process: BTreeMap<String, Step>,
}

#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    v2: u32,
    #[serde(default)]
    release_pod: Vec<String>,
    #[serde(default)]
    delete_pod: Vec<String>,
    #[serde(default)]
    release_complete_timestamp: Option<i64>,
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) → Unix ms.
fn wall_clock(s: &str) -> Option<Ts> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc().timestamp_millis())
}

/// Unix seconds → ms, rounded to the nearest minute (scrapes run a few seconds past it).
fn to_minute(seconds: i64) -> Ts {
    seconds.saturating_add(30).div_euclid(60).saturating_mul(MINUTE)
}

/// A seed from the case id (FNV-1a): the same case, the same release order, whatever the file says.
fn seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The releases that started before `end`, as deploy changes, in an order shuffled by the case id.
fn changes(file: &CaseFile, end: Ts, id: &str) -> Vec<Change> {
    let mut out: Vec<Change> = file
        .plan
        .iter()
        .filter(|(_, r)| r.release_time.saturating_mul(1000) < end)
        .map(|(service, r)| {
            // Steps in rollout order (the `process` keys are not reliable start times), those
            // completed by the end of the window.
            let mut steps: Vec<&Step> = r.process.values().collect();
            steps.sort_by_key(|s| s.v2);
            let done: Vec<&&Step> = steps
                .iter()
                .filter(|s| s.release_complete_timestamp.is_some_and(|t| t.saturating_mul(1000) < end))
                .collect();
            let swapped: Vec<String> = done
                .iter()
                .flat_map(|s| s.delete_pod.iter().zip(&s.release_pod).map(|(old, new)| format!("{old} → {new}")))
                .collect();
            let instances: Vec<String> = done.iter().flat_map(|s| s.release_pod.iter().cloned()).collect();
            let replicas = r.target_replica.map_or_else(String::new, |n| format!(" of {n} replicas"));
            Change {
                time: r.release_time.saturating_mul(1000),
                service: service.clone(),
                kind: ChangeKind::Deploy,
                author: None,
                version: Some("v2".into()),
                previous_version: Some("v1".into()),
                keys: Vec::new(),
                description: Some(format!(
                    "gray release of {service} to v2: {} pod(s){replicas} swapped by then ({})",
                    swapped.len(),
                    swapped.join(", ")
                )),
                instances,
            }
        })
        .collect();
    out.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed(id)));
    out
}

/// `<service>-v1-<hash>-<suffix>` → (service, pod); None when the name has no version part.
fn pod_service(pod: &str) -> Option<&str> {
    ["-v1-", "-v2-"].iter().find_map(|v| pod.find(v).map(|i| &pod[..i]))
}

/// A series a table column feeds: (column index, service, metric).
type Column = (usize, String, String);

/// A per-pod table `<pod>_<caller>_<callee>.csv` into `out`, within `[from, to)`.
fn read_pod_table(
    path: &Path,
    from: Ts,
    to: Ts,
    out: &mut SeriesBuilder,
    report: &mut ReadReport,
) -> Result<(), AdapterError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let parts: Vec<&str> = stem.split('_').collect();
    let (Some(service), [pod, caller, callee]) = (parts.first().and_then(|p| pod_service(p)), parts.as_slice()) else {
        report.skip(issue(path, 0, None, "not a <pod>_<caller>_<callee>.csv table".into()));
        return Ok(());
    };
    let columns = |hdr: &[String]| -> Vec<Column> {
        POD_METRICS
            .iter()
            .filter_map(|m| {
                let i = hdr.iter().position(|h| h == m)?;
                Some((i, service.to_string(), format!("{m}{{edge=\"{caller}->{callee}\",pod=\"{pod}\"}}")))
            })
            .collect()
    };
    read_table(path, "Timestamp", &columns, from, to, out, report)
}

/// A success-rate table (`source_success.csv` caller side, `destination_success.csv` callee
/// side): one column per call edge `<caller>_<callee>`, into series of the caller or the callee.
fn read_success_table(
    path: &Path,
    caller_side: bool,
    from: Ts,
    to: Ts,
    out: &mut SeriesBuilder,
    report: &mut ReadReport,
) -> Result<(), AdapterError> {
    let columns = |hdr: &[String]| -> Vec<Column> {
        hdr.iter()
            .enumerate()
            .filter(|(_, h)| *h != "time" && *h != "timestamp")
            .filter_map(|(i, h)| {
                let (caller, callee) = h.split_once('_')?;
                Some(if caller_side {
                    (i, caller.to_string(), format!("EdgeSuccessRate{{callee=\"{callee}\"}}"))
                } else {
                    (i, callee.to_string(), format!("EdgeSuccessRate{{caller=\"{caller}\"}}"))
                })
            })
            .collect()
    };
    read_table(path, "timestamp", &columns, from, to, out, report)
}

/// Reads a table whose rows carry Unix seconds in `time_column`: the rows within `[from, to)`
/// (times rounded to the minute) into the series `columns` picks from the header. Bad rows and
/// cells are skipped and reported.
fn read_table(
    path: &Path,
    time_column: &str,
    columns: &dyn Fn(&[String]) -> Vec<Column>,
    from: Ts,
    to: Ts,
    out: &mut SeriesBuilder,
    report: &mut ReadReport,
) -> Result<(), AdapterError> {
    let mut rdr = csv_reader(path)?;
    let hdr = headers(&mut rdr, path)?;
    let c_time = column(&hdr, time_column, path)?;
    let columns = columns(&hdr);
    for record in rdr.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.skip(issue(path, e.position().map_or(0, |p| p.line()), None, e.to_string()));
                continue;
            }
        };
        let line = line_of(&record);
        let Some(t) = record.get(c_time).and_then(|s| s.trim().parse::<i64>().ok()).map(to_minute) else {
            report.skip(issue(path, line, Some(time_column), "not a Unix time in seconds".into()));
            continue;
        };
        if t < from || t >= to {
            continue;
        }
        report.records_read += 1;
        for (i, service, metric) in &columns {
            match record.get(*i).map(parse_value) {
                Some(Ok(Some(v))) => out.push(service, metric, t, v),
                Some(Ok(None)) | None => {}
                Some(Err(e)) => report.skip(issue(path, line, Some(&hdr[*i]), e.to_string())),
            }
        }
    }
    Ok(())
}

/// The case's alert as GIED raised it: failed calls at the service it blamed.
fn gied_alert(file: &CaseFile, time: Ts) -> crate::model::Alert {
    let service = file.gied_result.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(ENTRY_SERVICE);
    let mut a = alert(LABEL, service, time);
    a.signal = "errors".into();
    a.title = a.title.replacen("latency alert", "failed-call alert (GIED)", 1);
    a
}

/// Loads one case: the releases, the metrics of the case window up to [`AFTER_ALERT`] past the
/// alert, the topology; the label only into `truth`.
pub fn load(c: &ChangeRcaCase) -> Result<Incident, AdapterError> {
    let file_path = c.dir.join(format!("{}.json", c.id));
    let text =
        std::fs::read_to_string(&file_path).map_err(|source| AdapterError::Io { path: file_path.clone(), source })?;
    let file: CaseFile = serde_json::from_str(&text).map_err(|e| AdapterError::BadField {
        path: file_path.clone(),
        line: e.line() as u64,
        field: "case".into(),
        message: e.to_string(),
    })?;
    let bad = |field: &str, message: String| AdapterError::BadField {
        path: file_path.clone(),
        line: 0,
        field: field.to_string(),
        message,
    };
    let start = wall_clock(&file.experiment_time)
        .ok_or_else(|| bad("experiment_time", format!("not `YYYY-MM-DD HH:MM:SS`: {:?}", file.experiment_time)))?;
    let case_end = wall_clock(&file.experiment_end_time).ok_or_else(|| {
        bad("experiemnt_end_time", format!("not `YYYY-MM-DD HH:MM:SS`: {:?}", file.experiment_end_time))
    })?;
    let alert_time = file.detect_timestamp.saturating_mul(1000);
    let end = alert_time.saturating_add(AFTER_ALERT).min(case_end.max(alert_time));
    let first_release = file
        .plan
        .values()
        .map(|r| r.release_time.saturating_mul(1000))
        .min()
        .ok_or_else(|| bad("plan", "no release".into()))?;

    let mut report = ReadReport::default();
    let mut series = SeriesBuilder::default();
    let mut tables: Vec<PathBuf> = std::fs::read_dir(&c.dir)
        .map_err(|source| AdapterError::Io { path: c.dir.clone(), source })?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    tables.sort();
    for t in &tables {
        match t.file_name().and_then(|n| n.to_str()) {
            Some("source_success.csv") => read_success_table(t, true, start, end, &mut series, &mut report)?,
            Some("destination_success.csv") => read_success_table(t, false, start, end, &mut series, &mut report)?,
            Some(n) if NOT_POD_TABLES.contains(&n) => {}
            _ => read_pod_table(t, start, end, &mut series, &mut report)?,
        }
    }
    let all = series.finish();
    // The steady state before the first release is fault-free data: it is the reference, apart.
    let metrics = slice_series(&all, first_release, end);
    let reference = slice_series(&all, start, first_release);
    drop(all);
    if metrics.is_empty() {
        return Err(AdapterError::NoData {
            path: c.dir.clone(),
            message: "no metric points in the case window".into(),
        });
    }
    let topology = read_dependency_csv(&c.dir.join("dependency.csv"), &mut report)?;
    Ok(Incident {
        id: c.id.clone(),
        alert: gied_alert(&file, alert_time),
        telemetry: Telemetry { metrics, changes: changes(&file, end, &c.id), ..Telemetry::default() },
        baseline: Some(Telemetry { metrics: reference, ..Telemetry::default() }),
        analysis_start: first_release,
        topology: Some(topology),
        truth: Some(c.truth.clone()),
        read_report: report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_times_and_the_case_file_are_read_without_the_label() {
        assert_eq!(pod_service("adservice-v2-fd6989b7c-6fwqs"), Some("adservice"));
        assert_eq!(pod_service("redis-cart-v1-abc-1"), Some("redis-cart"));
        assert_eq!(pod_service("source"), None);
        assert_eq!(to_minute(1_695_434_843), 1_695_434_820_000);
        assert_eq!(to_minute(1_695_434_869), 1_695_434_880_000);
        let json = r#"{"plan": {"b": {"release_time": 1000, "process": {}}, "a": {"release_time": 1100, "fault": null}},
            "fault_release_service": "b", "fault": "exception", "normal_service_list": ["a"],
            "experiment_time": "2023-09-23 02:06:09", "experiemnt_end_time": "2023-09-23 02:47:21", "detect_timestamp": 1200}"#;
        let file: CaseFile = serde_json::from_str(json).unwrap();
        let ids: Vec<Vec<String>> = (0..16)
            .map(|i| changes(&file, 1_150_000, &format!("2023-09-23_{i}")).into_iter().map(|c| c.service).collect())
            .collect();
        // Only releases started before the end; the order follows the case id, not the file.
        assert!(ids.iter().all(|s| s.len() == 2));
        assert!(ids.iter().any(|s| s[0] == "a") && ids.iter().any(|s| s[0] == "b"), "{ids:?}");
        assert_eq!(changes(&file, 1_050_000, "case-1").len(), 1);
        // The alert: failed calls, at the service GIED blamed, else at the entry service.
        let at = |f: &CaseFile| {
            let a = gied_alert(f, 1_200_000);
            (a.service, a.signal, a.time)
        };
        assert_eq!(at(&file), (ENTRY_SERVICE.to_string(), "errors".to_string(), 1_200_000));
        let blamed: CaseFile =
            serde_json::from_str(&json.replacen("{\"plan\"", "{\"GIED_result\": \"cartservice\", \"plan\"", 1))
                .unwrap();
        assert_eq!(at(&blamed).0, "cartservice");
    }
}
