//! Nezha (FSE'23) cases: TrainTicket (metrics, logs, traces) and OnlineBoutique (metrics and a
//! declared call graph), one [`Incident`] per injected fault of `cases_index.csv`.
//!
//! Layout read (relative to the system folder, e.g. `nezha/trainticket`):
//! `rca_data/<date>/metric/*.csv.gz` (whole-day, one row a minute, per pod plus
//! `front_service`), `rca_data/<date>/{log,trace}/HH_MM_*.csv.gz` (one file a minute, TrainTicket
//! only), `rca_data/<date>/metric/dependency.csv.gz` (OnlineBoutique call graph) and
//! `construct_data/<date>/{log,trace}` (fault-free, the TrainTicket log/trace baseline).
//!
//! Windows: metrics in `[inject, window_end)` are the incident, where `window_end` is
//! `inject + 10 min` cut short at the next injection of the same system and day (faults are often
//! only 4–9 min apart, and the next fault must not leak into this case's window); the
//! [`RECENT_SPAN`](crate::detect::metrics::RECENT_SPAN) before the injection comes along as the
//! level the series stood at. The metric baseline is the day's fault-free minutes: every minute
//! of the day's tables (which `construct_data` holds too) outside `[inject, inject + 10 min)` of
//! every listed fault of that day. The faults come every 8 minutes or so for hours, so the hour
//! before a fault is full of earlier faults and cannot say what normal is; the day's tables go on
//! for 8 to 16 fault-free hours after the last fault, and those hours are the normal that is
//! learned. (They lie after the alert in time: what is learned from them is only what normal
//! looks like, never evidence about the incident.) Times use `inject_time` (wall clock UTC), never
//! `inject_timestamp_as_given` (off by 8 h for some rows).
//!
//! The whole-day metric tables of a day are parsed once per process and shared by its cases
//! (see `METRIC_DAYS`); logs are only listed (streamed later by `ingest`), spans are parsed per case.

use super::{
    alert, column, csv_reader, headers, issue, line_of, parse_value, pod_to_service, slice_series, AdapterError, Case,
    Dataset, Loaded, Scoring, SeriesBuilder, Suite,
};
use crate::eval::EvalError;
use crate::model::{
    Incident, LogFile, LogFormat, Logs, ReadReport, Series, Telemetry, Topology, TopologyEdge, TopologyNode, Truth, Ts,
    MINUTE,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Longest incident window after the injection (cut at the next injection).
pub const INCIDENT_SPAN: Ts = 10 * MINUTE;

/// The service every TrainTicket trace is rooted at; the alert names it.
pub const TT_ALERT_SERVICE: &str = "ts-gateway-service";
/// The service `front_service.csv` measures in TrainTicket: its latencies equal the
/// `ts-ui-dashboard` pod's, so its columns join that service's series.
pub const TT_FRONT_SERVICE: &str = "ts-ui-dashboard";
/// The service `front_service.csv` measures in OnlineBoutique.
pub const OB_FRONT_SERVICE: &str = "frontend";

/// Metric-folder files that are not per-service metric tables.
const NOT_METRICS: [&str; 3] = ["dependency", "source_50", "destination_50"];

/// OnlineBoutique's per-call-edge latency tables (median latency of the calls on each
/// `caller_callee` edge a minute) and which end of the call measured them: `source_50` the
/// caller's side, `destination_50` the callee's. A call slow on the caller's side but not on the
/// callee's was slow on the way (the network to the callee), not in the callee's work.
const EDGE_TABLES: [(&str, &str); 2] = [("source_50", "caller"), ("destination_50", "callee")];

/// Where one Nezha case lives and how its windows are cut.
#[derive(Debug, Clone, PartialEq)]
pub struct NezhaCase {
    /// The case id of `cases_index.csv`; becomes the incident's id.
    pub id: String,
    /// The system folder, e.g. `.../nezha/trainticket`.
    pub system_dir: PathBuf,
    /// The day folder name, e.g. `2023-01-29`.
    pub date: String,
    /// Injection time (Unix ms), from `inject_time`.
    pub inject_time: Ts,
    /// End (exclusive) of the incident window.
    pub window_end: Ts,
    /// The case's minute files (`HH_MM`), in order.
    pub minute_files: Vec<String>,
    /// The injection times (Unix ms) of every listed fault of the same system and day, this one
    /// included: the minutes after them are not normal.
    pub day_faults: Vec<Ts>,
}

impl NezhaCase {
    fn rca_dir(&self) -> PathBuf {
        self.system_dir.join("rca_data").join(&self.date)
    }

    fn construct_dir(&self) -> PathBuf {
        self.system_dir.join("construct_data").join(&self.date)
    }
}

/// The two systems of the Nezha dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    TrainTicket,
    OnlineBoutique,
}

impl System {
    pub const ALL: [System; 2] = [System::TrainTicket, System::OnlineBoutique];

    /// The folder name, also the `system` column of `cases_index.csv`.
    pub fn name(self) -> &'static str {
        match self {
            System::TrainTicket => "trainticket",
            System::OnlineBoutique => "onlineboutique",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            System::TrainTicket => "Nezha TrainTicket",
            System::OnlineBoutique => "Nezha OnlineBoutique",
        }
    }

    /// The service through which users reach the system; the alert names it for every case.
    pub fn entry_service(self) -> &'static str {
        match self {
            // Every TrainTicket trace is rooted at the gateway (ts-ui-dashboard, the nginx in
            // front of it, emits no spans), so the gateway is the entry of the mined call graph.
            System::TrainTicket => TT_ALERT_SERVICE,
            System::OnlineBoutique => OB_FRONT_SERVICE,
        }
    }

    /// The service `front_service.csv` measures.
    fn front_service(self) -> &'static str {
        match self {
            System::TrainTicket => TT_FRONT_SERVICE,
            System::OnlineBoutique => OB_FRONT_SERVICE,
        }
    }
}

/// The Nezha dataset: `.../nezha` (both systems), `.../nezha/trainticket` or
/// `.../nezha/onlineboutique`; one suite per system.
pub struct Nezha;

/// A listed Nezha case: its system, label and windows (the key of its [`Case`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NezhaRef {
    pub system: System,
    pub truth: Truth,
    pub case: NezhaCase,
}

impl Dataset for Nezha {
    fn name(&self) -> &'static str {
        "Nezha (FSE'23) TrainTicket and OnlineBoutique"
    }

    fn form(&self) -> &'static str {
        ".../nezha, .../nezha/trainticket or .../nezha/onlineboutique"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Incidents
    }

    fn recognise(&self, arg: &str) -> bool {
        !systems(Path::new(arg)).is_empty()
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let path = Path::new(arg);
        let root =
            if is_root(path) { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
        let mut suites = Vec::new();
        // Suites by system name, as eval has always listed them (OnlineBoutique first).
        let mut systems = systems(path);
        systems.sort_by_key(|s| s.name());
        for system in systems {
            let cases = list(&root, system)?
                .into_iter()
                .map(|r| Case::new(&Nezha, r.case.id.clone(), system.name(), r.clone()).labelled(r.truth))
                .collect();
            suites.push(Suite { name: format!("{arg} ({})", system.name()), scoring: Scoring::Incidents, cases });
        }
        Ok(suites)
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        let r = case.own_key::<NezhaRef>()?;
        Ok(Loaded::Incident(Box::new(load(r)?)))
    }
}

/// `.../nezha`: holds `cases_index.csv` and at least one system folder.
fn is_root(path: &Path) -> bool {
    path.join("cases_index.csv").is_file() && System::ALL.iter().any(|s| path.join(s.name()).join("rca_data").is_dir())
}

/// The systems a folder holds: both under `.../nezha`, one for `.../nezha/trainticket` or
/// `.../nezha/onlineboutique` (with the index one level up); none otherwise.
pub fn systems(path: &Path) -> Vec<System> {
    if is_root(path) {
        return System::ALL.into_iter().filter(|s| path.join(s.name()).join("rca_data").is_dir()).collect();
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let Some(system) = System::ALL.into_iter().find(|s| s.name() == name) else { return Vec::new() };
    let index = path.parent().map(|p| p.join("cases_index.csv"));
    if path.join("rca_data").is_dir() && index.is_some_and(|i| i.is_file()) {
        vec![system]
    } else {
        Vec::new()
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` (UTC) into Unix ms.
fn parse_wall_clock(s: &str) -> Option<Ts> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc().timestamp_millis())
}

/// Lists one system's cases from `<root>/cases_index.csv`.
pub fn list(root: &Path, system: System) -> Result<Vec<NezhaRef>, AdapterError> {
    let path = root.join("cases_index.csv");
    let mut rdr = csv_reader(&path)?;
    let hdr = headers(&mut rdr, &path)?;
    let col = |name: &str| column(&hdr, name, &path);
    let (c_system, c_date, c_id, c_inject) = (col("system")?, col("date")?, col("case_id")?, col("inject_time")?);
    let (c_service, c_fault, c_inner, c_minutes) =
        (col("root_cause_service")?, col("fault_type")?, col("inner_service_label")?, col("minute_files")?);
    let system_dir = root.join(system.name());
    let mut cases = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|source| AdapterError::Csv { path: path.clone(), source })?;
        let get = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        if get(c_system) != system.name() {
            continue;
        }
        let line = line_of(&record);
        let inject_time = parse_wall_clock(&get(c_inject)).ok_or_else(|| AdapterError::BadField {
            path: path.clone(),
            line,
            field: "inject_time".into(),
            message: format!("not `YYYY-MM-DD HH:MM:SS`: {:?}", get(c_inject)),
        })?;
        let service = get(c_service);
        let fault_kind = get(c_fault);
        let minute_files: Vec<String> =
            get(c_minutes).split(';').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
        cases.push(NezhaRef {
            system,
            truth: Truth {
                service: service.clone(),
                indicator: get(c_inner),
                kind: fault_kind,
                chain: vec![service],
                location: Some(get(c_inner)).filter(|l| !l.is_empty()),
            },
            case: NezhaCase {
                id: get(c_id),
                system_dir: system_dir.clone(),
                date: get(c_date),
                inject_time,
                window_end: inject_time + INCIDENT_SPAN,
                minute_files,
                day_faults: Vec::new(),
            },
        });
    }
    // Cut each incident window at the next injection of the same day.
    let mut injections: BTreeMap<String, Vec<Ts>> = BTreeMap::new();
    for c in &cases {
        injections.entry(c.case.date.clone()).or_default().push(c.case.inject_time);
    }
    for c in &mut cases {
        let n = &mut c.case;
        if let Some(next) =
            injections.get(&n.date).and_then(|ts| ts.iter().copied().filter(|&t| t > n.inject_time).min())
        {
            n.window_end = n.window_end.min(next);
        }
        n.day_faults = injections.get(&n.date).cloned().unwrap_or_default();
    }
    Ok(cases)
}

/// Loads one Nezha case.
pub fn load(r: &NezhaRef) -> Result<Incident, AdapterError> {
    let n = &r.case;
    let mut report = ReadReport::default();
    let rca = n.rca_dir();

    let day = metric_day(&rca.join("metric"), r.system.front_service())?;
    report.merge(day.report.clone());
    let from = n.inject_time - crate::detect::metrics::RECENT_SPAN;
    let mut telemetry = Telemetry { metrics: slice_series(&day.series, from, n.window_end), ..Telemetry::default() };
    let mut baseline = Telemetry { metrics: fault_free(&day.series, &n.day_faults), ..Telemetry::default() };
    drop(day);

    let mut topology = None;
    match r.system {
        System::TrainTicket => {
            for minute in &n.minute_files {
                let log = rca.join("log").join(format!("{minute}_log.csv.gz"));
                if log.is_file() {
                    telemetry.logs.files.push(LogFile {
                        path: log,
                        format: LogFormat::NezhaCsv,
                        hints: Default::default(),
                    });
                } else {
                    report.skip(issue(&log, 0, None, "minute log file missing".into()));
                }
                let trace = rca.join("trace").join(format!("{minute}_trace.csv.gz"));
                if trace.is_file() {
                    telemetry.spans.extend(crate::ingest::read_span_csv(&trace, &mut report)?);
                } else {
                    report.skip(issue(&trace, 0, None, "minute trace file missing".into()));
                }
            }
            let construct = n.construct_dir();
            baseline.logs = Logs {
                records: Vec::new(),
                files: csv_files(&construct.join("log"))?
                    .into_iter()
                    .map(|path| LogFile::new(path, LogFormat::NezhaCsv))
                    .collect(),
            };
            for trace in csv_files(&construct.join("trace"))? {
                baseline.spans.extend(crate::ingest::read_span_csv(&trace, &mut report)?);
            }
        }
        System::OnlineBoutique => {
            let dep = rca.join("metric").join("dependency.csv.gz");
            topology = Some(read_dependency_csv(&dep, &mut report)?);
        }
    }

    if telemetry.metrics.is_empty() {
        return Err(AdapterError::NoData {
            path: rca.join("metric"),
            message: format!("no metric points in the incident window of case {}", n.id),
        });
    }

    Ok(Incident {
        id: n.id.clone(),
        alert: alert(r.system.label(), r.system.entry_service(), n.inject_time),
        telemetry,
        baseline: Some(baseline),
        analysis_start: n.inject_time,
        topology,
        truth: Some(r.truth.clone()),
        read_report: report,
    })
}

/// The points of a day's series outside every fault's window `[inject, inject + INCIDENT_SPAN)`.
fn fault_free(all: &[Series], faults: &[Ts]) -> Vec<Series> {
    let faulty = |t: Ts| faults.iter().any(|&f| t >= f && t < f + INCIDENT_SPAN);
    all.iter()
        .map(|s| Series {
            service: s.service.clone(),
            metric: s.metric.clone(),
            points: s.points.iter().copied().filter(|p| !faulty(p.0)).collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// A day's metric tables, parsed, with what could not be read in them.
struct MetricDay {
    series: Vec<Series>,
    report: ReadReport,
}

/// Parsed metric folders by path: the tables cover a whole day and every case of that day cuts
/// its windows from them, so each folder is parsed once per process (datasets are read-only).
/// About 11 MB for TrainTicket's day, 3 MB for each OnlineBoutique day.
static METRIC_DAYS: OnceLock<Mutex<HashMap<PathBuf, Arc<MetricDay>>>> = OnceLock::new();

fn metric_day(dir: &Path, front_service: &str) -> Result<Arc<MetricDay>, AdapterError> {
    let cache = METRIC_DAYS.get_or_init(Default::default);
    // A poisoned lock only costs the cache, never the read.
    if let Some(day) = cache.lock().ok().and_then(|m| m.get(dir).cloned()) {
        return Ok(day);
    }
    let mut report = ReadReport::default();
    let series = read_metric_dir(dir, front_service, &mut report)?;
    let day = Arc::new(MetricDay { series, report });
    if let Ok(mut m) = cache.lock() {
        m.insert(dir.to_path_buf(), Arc::clone(&day));
    }
    Ok(day)
}

/// Forgets the parsed metric folders (they are otherwise kept for the life of the process).
pub fn clear_metric_cache() {
    if let Some(m) = METRIC_DAYS.get().and_then(|c| c.lock().ok()).as_mut() {
        m.clear();
    }
}

/// The `*.csv`/`*.csv.gz` files of a folder, sorted by name; none when the folder is absent.
fn csv_files(dir: &Path) -> Result<Vec<PathBuf>, AdapterError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| AdapterError::Io { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".csv") || n.ends_with(".csv.gz"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every metric table of a day's `metric` folder (all pods and `front_service`), skipping
/// the call-graph and per-edge tables. Series of the same service and metric from several pods
/// are merged.
pub fn read_metric_dir(dir: &Path, front_service: &str, report: &mut ReadReport) -> Result<Vec<Series>, AdapterError> {
    if !dir.is_dir() {
        return Err(AdapterError::NoData { path: dir.to_path_buf(), message: "metric folder missing".into() });
    }
    let mut all = SeriesBuilder::default();
    for path in csv_files(dir)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stem = name.trim_end_matches(".gz").trim_end_matches(".csv");
        if let Some((_, side)) = EDGE_TABLES.iter().find(|(t, _)| *t == stem) {
            all.extend(read_edge_csv(&path, side, report)?);
            continue;
        }
        if NOT_METRICS.contains(&stem) {
            continue;
        }
        all.extend(read_metric_csv(&path, front_service, report)?);
    }
    Ok(all.finish())
}

/// Reads one per-edge latency table (`time`, `timestamp`, then one `caller_callee` column per
/// call edge). Each column becomes a series of the callee, named
/// `EdgeLatencyP50(s){edge="caller->callee",side="<side>"}`: how long calls to it took, as the
/// caller or the callee measured them. A column whose name is not `caller_callee` is reported
/// once and left out; a row with an unreadable time or value is skipped and reported.
pub fn read_edge_csv(path: &Path, side: &str, report: &mut ReadReport) -> Result<Vec<Series>, AdapterError> {
    let mut rdr = csv_reader(path)?;
    let hdr = headers(&mut rdr, path)?;
    let time_col = column(&hdr, "timestamp", path)?;
    let wall_col = hdr.iter().position(|h| h == "time");
    let mut edges: Vec<(usize, String, String)> = Vec::new();
    for (i, h) in hdr.iter().enumerate() {
        if i == time_col || Some(i) == wall_col {
            continue;
        }
        match h.split_once('_') {
            Some((caller, callee)) if !caller.is_empty() && !callee.is_empty() && !callee.contains('_') => edges.push(
                (i, callee.to_string(), format!("EdgeLatencyP50(s){{edge=\"{caller}->{callee}\",side=\"{side}\"}}")),
            ),
            _ if report.issues.len() < ReadReport::MAX_ISSUES => {
                report.issues.push(issue(path, 1, Some(h), "not a `caller_callee` edge column; left out".into()))
            }
            _ => {}
        }
    }
    let mut out = SeriesBuilder::default();
    for record in rdr.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.skip(issue(path, e.position().map(|p| p.line()).unwrap_or(0), None, e.to_string()));
                continue;
            }
        };
        let line = line_of(&record);
        let wall = wall_col.and_then(|c| record.get(c)).and_then(parse_go_time);
        let stamp = record.get(time_col).and_then(|s| s.trim().parse::<i64>().ok()).map(|s| s.saturating_mul(1000));
        let Some(t) = wall.or(stamp) else {
            report.skip(issue(path, line, Some(&hdr[time_col]), "neither `time` nor `timestamp` is readable".into()));
            continue;
        };
        let mut row = Vec::with_capacity(edges.len());
        let mut bad = None;
        for (i, service, metric) in &edges {
            match parse_value(record.get(*i).unwrap_or("")) {
                Ok(Some(v)) => row.push((service, metric, v)),
                Ok(None) => {}
                Err(msg) => {
                    bad = Some((*i, msg));
                    break;
                }
            }
        }
        if let Some((i, msg)) = bad {
            report.skip(issue(path, line, Some(&hdr[i]), msg.to_string()));
            continue;
        }
        report.records_read += 1;
        for (service, metric, v) in row {
            out.push(service, metric, t, v);
        }
    }
    Ok(out.finish())
}

/// Reads one Nezha metric table: time, `PodName` (per-pod tables; service =
/// pod name without its hashes) or `ServiceName` (`front_service`, whose rows become
/// `front_service`'s series), and numeric columns kept under their own names. `Time` and the
/// `Node*` columns (the node's, not the service's) are dropped. `NaN` and empty cells are gaps.
/// A row with an unreadable time or value is skipped and reported with file, line and field.
///
/// Time is the wall-clock `Time` column (to the second), `TimeStamp` (Unix s) only when `Time`
/// is absent or unreadable: in OnlineBoutique 2022-08-22 `adservice`, `TimeStamp` is 200 000 000 s
/// (6.3 years) ahead and some rows are scrambled besides, while `Time` is right. Rows where the
/// two disagree by over a minute are noted once per file in `report.issues` (not skipped).
pub fn read_metric_csv(path: &Path, front_service: &str, report: &mut ReadReport) -> Result<Vec<Series>, AdapterError> {
    let mut rdr = csv_reader(path)?;
    let hdr = headers(&mut rdr, path)?;
    let time_col = column(&hdr, "TimeStamp", path)?;
    let wall_col = hdr.iter().position(|h| h == "Time");
    let pod_col = hdr.iter().position(|h| h == "PodName");
    let svc_col = hdr.iter().position(|h| h == "ServiceName");
    if pod_col.is_none() && svc_col.is_none() {
        return Err(AdapterError::MissingColumn { path: path.to_path_buf(), column: "PodName".into() });
    }
    let value_cols: Vec<usize> = (0..hdr.len())
        .filter(|&i| {
            i != time_col && Some(i) != pod_col && Some(i) != svc_col && hdr[i] != "Time" && !hdr[i].starts_with("Node")
        })
        .collect();

    let mut out = SeriesBuilder::default();
    let mut record = csv::StringRecord::new();
    let mut row: Vec<(usize, f64)> = Vec::with_capacity(value_cols.len());
    let mut last_pod = (String::new(), String::new());
    // Rows whose `TimeStamp` disagrees with `Time` (first line and offset in s, count).
    let (mut disagree, mut disagreeing) = (None::<(u64, i64)>, 0u64);
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                report.skip(issue(path, line, None, e.to_string()));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = line_of(&record);
        if record.len() != hdr.len() {
            report.skip(issue(path, line, None, format!("{} fields, header has {}", record.len(), hdr.len())));
            continue;
        }
        let stamp = record[time_col].trim().parse::<i64>().ok().map(|s| s * 1000);
        let wall = wall_col.and_then(|c| parse_go_time(&record[c]));
        let t = match (wall, stamp) {
            (Some(w), Some(s)) => {
                if (w - s).abs() > MINUTE {
                    if disagree.is_none() {
                        disagree = Some((line, (s - w) / 1000));
                    }
                    disagreeing += 1;
                }
                w
            }
            (Some(w), None) => w,
            (None, Some(s)) => s,
            (None, None) => {
                report.skip(issue(
                    path,
                    line,
                    Some(&hdr[time_col]),
                    format!("not a Unix time in seconds: {:?}", &record[time_col]),
                ));
                continue;
            }
        };
        let service: &str = match pod_col {
            Some(c) => {
                let pod = record[c].trim();
                if pod.is_empty() {
                    report.skip(issue(path, line, Some(&hdr[c]), "empty pod name".into()));
                    continue;
                }
                if last_pod.0 != pod {
                    last_pod = (pod.to_string(), pod_to_service(pod));
                }
                &last_pod.1
            }
            None => front_service,
        };
        row.clear();
        let mut bad = None;
        for &i in &value_cols {
            match parse_value(&record[i]) {
                Ok(Some(v)) => row.push((i, v)),
                Ok(None) => {}
                Err(msg) => {
                    bad = Some((i, msg));
                    break;
                }
            }
        }
        if let Some((i, msg)) = bad {
            report.skip(issue(path, line, Some(&hdr[i]), msg.to_string()));
            continue;
        }
        report.records_read += 1;
        for &(i, v) in &row {
            out.push(service, &hdr[i], t, v);
        }
    }
    if let Some((line, offset)) = disagree {
        // The row is fine (the wall clock is used), so this is a note, not a skipped record.
        if report.issues.len() < ReadReport::MAX_ISSUES {
            report.issues.push(issue(
                path,
                line,
                Some(&hdr[time_col]),
                format!("{disagreeing} rows disagree with `Time` by over a minute (first by {offset} s); `Time` used"),
            ));
        }
    }
    Ok(out.finish())
}

/// Parses the `Time` column, Go's `time.String()` form (`2022-08-22 03:51:19.607158889 +0000 UTC
/// m=+0.11`), to Unix ms truncated to the second (what `TimeStamp` holds when it is right).
fn parse_go_time(s: &str) -> Option<Ts> {
    let mut parts = s.split_whitespace();
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
    let time = time.split('.').next()?;
    let naive = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()?
        .and_time(chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").ok()?);
    let (sign, hhmm) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = hhmm[..2].parse().ok()?;
    let m: i64 = hhmm[2..].parse().ok()?;
    Some(naive.and_utc().timestamp_millis() - sign * (h * 60 + m) * MINUTE)
}

/// Reads OnlineBoutique's `dependency.csv` (`Source,Target,Weight`) into caller → callee edges.
/// Edges to node IP addresses (where a pod runs, not a call) are dropped, and so are services
/// left with no call edge (the load generator).
pub fn read_dependency_csv(path: &Path, report: &mut ReadReport) -> Result<Topology, AdapterError> {
    let mut rdr = csv_reader(path)?;
    let hdr = headers(&mut rdr, path)?;
    let (c_src, c_dst) = (column(&hdr, "Source", path)?, column(&hdr, "Target", path)?);
    let mut edges = BTreeSet::new();
    for record in rdr.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                report.skip(issue(path, line, None, e.to_string()));
                continue;
            }
        };
        let (Some(src), Some(dst)) = (record.get(c_src), record.get(c_dst)) else {
            report.skip(issue(path, line_of(&record), None, "too few fields".into()));
            continue;
        };
        let (src, dst) = (src.trim(), dst.trim());
        if src.is_empty() || dst.is_empty() {
            report.skip(issue(path, line_of(&record), None, "empty service".into()));
            continue;
        }
        report.records_read += 1;
        if dst.parse::<std::net::IpAddr>().is_ok() || src == dst {
            continue;
        }
        edges.insert((src.to_string(), dst.to_string()));
    }
    let services: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    Ok(Topology {
        services: services
            .into_iter()
            .map(|name| TopologyNode { name: name.clone(), kind: Some("service".into()) })
            .collect(),
        edges: edges
            .iter()
            .map(|(caller, callee)| TopologyEdge { caller: caller.clone(), callee: callee.clone() })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_strings() {
        assert_eq!(parse_go_time("2022-08-22 03:51:19.607158889 +0000 UTC m=+0.113112869"), Some(1_661_140_279_000));
        assert_eq!(parse_go_time("2022-08-22 05:51:19 +0200 CEST"), Some(1_661_140_279_000));
        assert_eq!(parse_go_time("t"), None);
        assert_eq!(parse_go_time("2022-08-22 03:51:19 UTC"), None);
    }

    #[test]
    fn wall_clock_parses() {
        assert_eq!(parse_wall_clock("2023-01-29 08:43:04"), Some(1_674_981_784_000));
    }

    #[test]
    fn edge_tables_become_the_callees_series_and_odd_cells_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("source_50.csv");
        std::fs::write(
            &path,
            "time,timestamp,frontend_cartservice,checkoutservice_cartservice,oddcolumn\n\
             2022-08-22 03:51:20.02 +0000 UTC m=+0.5,1661140280,0.0046,0.0030,1\n\
             2022-08-22 03:52:19.94 +0000 UTC m=+60.4,1661140339,0.2120,NaN,1\n\
             2022-08-22 03:53:19.94 +0000 UTC m=+120.4,1661140399,fast,0.0031,1\n",
        )
        .expect("write");
        let mut report = ReadReport::default();
        let series = read_edge_csv(&path, "caller", &mut report).expect("read");
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.service == "cartservice"));
        let front = series.iter().find(|s| s.metric.contains("frontend->cartservice")).expect("frontend edge");
        assert_eq!(front.metric, "EdgeLatencyP50(s){edge=\"frontend->cartservice\",side=\"caller\"}");
        assert_eq!(front.points, vec![(1_661_140_280_000, 0.0046), (1_661_140_339_000, 0.212)]);
        // The unreadable cell costs its row (reported with line and field), the NaN only itself.
        assert_eq!((report.records_read, report.records_skipped), (2, 1));
        assert!(report.issues.iter().any(|i| i.line == 4 && i.field.as_deref() == Some("frontend_cartservice")));
        assert!(report.issues.iter().any(|i| i.field.as_deref() == Some("oddcolumn")));
    }

    #[test]
    fn the_learned_normal_leaves_out_every_faults_window() {
        let day = vec![Series {
            service: "cart".into(),
            metric: "cpu".into(),
            points: (0..60).map(|m| (m * MINUTE, m as f64)).collect(),
        }];
        let normal = fault_free(&day, &[5 * MINUTE, 30 * MINUTE]);
        let kept: Vec<Ts> = normal[0].points.iter().map(|p| p.0 / MINUTE).collect();
        assert!(kept.iter().all(|m| !(5..15).contains(m) && !(30..40).contains(m)));
        assert_eq!(kept.len(), 40);
    }
}
