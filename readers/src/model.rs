//! The in-memory incident: the alert, the telemetry around it, and (for labelled cases) the truth.
//!
//! Every reader (bundle files, dataset adapters, the simulator) produces these types and every
//! later stage reads them, so they are deliberately plain data. Times are Unix milliseconds (UTC).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Unix time in milliseconds, UTC.
pub type Ts = i64;

pub const SECOND: Ts = 1_000;
pub const MINUTE: Ts = 60 * SECOND;
pub const HOUR: Ts = 60 * MINUTE;
/// Most keys kept of one change; a change with more says how many more in its description.
pub const MAX_KEYS_PER_CHANGE: usize = 1_000;

/// How urgent the alert is; high and critical alerts get an agent investigation in later stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    High,
    Critical,
}

/// The alert that opened the incident: where the symptom was seen, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// When the alert fired (Unix ms; RFC 3339 in JSON, like every other time there, and read
    /// back from either).
    #[serde(with = "rfc3339_ms")]
    pub time: Ts,
    /// The service whose signal fired (the symptom, not necessarily the cause).
    pub service: String,
    /// The signal that fired, e.g. `latency`, `errors`, `cpu`.
    pub signal: String,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub title: String,
}

/// A time as RFC 3339 with milliseconds in JSON (`2024-05-15T07:54:49.000Z`); read from that or
/// from Unix ms, as reports written before it held.
mod rfc3339_ms {
    use super::Ts;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Ts, s: S) -> Result<S::Ok, S::Error> {
        match chrono::DateTime::from_timestamp_millis(*t) {
            Some(d) => s.serialize_str(&d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            None => s.serialize_i64(*t),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Ms(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
        match Either::deserialize(d)? {
            Either::Ms(ms) => Ok(ms),
            Either::Text(s) => chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?} ({e})"))),
        }
    }
}

/// One metric time series of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub service: String,
    /// The metric name as the source spells it (`cpu`, `latency_p99`, `CpuUsageRate(%)`, …).
    pub metric: String,
    /// Points sorted by time.
    pub points: Vec<(Ts, f64)>,
}

/// Log severity, normalised from the many spellings sources use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// Parses the usual spellings (`ERROR`, `err`, `warning`, OTLP severity text); unknown is None.
    pub fn parse(s: &str) -> Option<Level> {
        let l = s.trim().to_ascii_lowercase();
        Some(match l.as_str() {
            "trace" | "finest" => Level::Trace,
            "debug" | "fine" => Level::Debug,
            "info" | "information" | "notice" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "err" | "severe" => Level::Error,
            "fatal" | "critical" | "crit" | "panic" | "alert" | "emergency" => Level::Fatal,
            _ => return None,
        })
    }

    /// OTLP `severityNumber` ranges (1–4 trace … 21–24 fatal).
    pub fn from_otlp_number(n: i64) -> Option<Level> {
        Some(match n {
            1..=4 => Level::Trace,
            5..=8 => Level::Debug,
            9..=12 => Level::Info,
            13..=16 => Level::Warn,
            17..=20 => Level::Error,
            21..=24 => Level::Fatal,
            _ => return None,
        })
    }

    pub fn is_error(self) -> bool {
        self >= Level::Error
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub time: Ts,
    /// Nanoseconds past `time`'s millisecond, when the source gives nanoseconds (OTLP, Nezha's
    /// `TimeUnixNano`): what orders the lines one request writes within a millisecond, which
    /// exports do not always keep in order (Nezha's files run newest first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nanos: u32,
    pub service: String,
    #[serde(default)]
    pub level: Level,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, String)>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One span of a distributed trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// None for a root span.
    pub parent_id: Option<String>,
    pub service: String,
    pub operation: String,
    /// Start time (Unix ms).
    pub start: Ts,
    /// Duration in milliseconds (fractional).
    pub duration_ms: f64,
    pub error: bool,
}

/// What kind of change an operator or pipeline made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Deploy,
    Config,
    Flag,
}

impl ChangeKind {
    pub fn parse(s: &str) -> Option<ChangeKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "deploy" | "deployment" | "release" | "rollout" => Some(ChangeKind::Deploy),
            "config" | "configuration" | "config_change" => Some(ChangeKind::Config),
            "flag" | "feature_flag" | "feature-flag" | "featureflag" => Some(ChangeKind::Flag),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "deploy",
            ChangeKind::Config => "config",
            ChangeKind::Flag => "flag",
        }
    }
}

/// One changed key of a config change or flag flip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key: String,
    #[serde(default)]
    pub old: Option<String>,
    #[serde(default)]
    pub new: Option<String>,
}

/// A deployment, configuration change or feature-flag flip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub time: Ts,
    pub service: String,
    pub kind: ChangeKind,
    #[serde(default)]
    pub author: Option<String>,
    /// The version deployed (deploys).
    #[serde(default)]
    pub version: Option<String>,
    /// The version it replaced, when known (what a rollback returns to).
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub keys: Vec<KeyChange>,
    #[serde(default)]
    pub description: Option<String>,
    /// The instances (pods, hosts) the change brought in, when known: a canary's new pods, to
    /// compare with the service's old ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
}

/// Where the log records of an incident live: already in memory, or in files read on demand.
///
/// Files are streamed record by record when detection runs, so a bundle with a 1 GB log is never
/// held in memory whole.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    pub records: Vec<LogRecord>,
    pub files: Vec<LogFile>,
}

/// A log file to stream, with its format and the hints of the bundle it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFile {
    pub path: PathBuf,
    pub format: LogFormat,
    pub hints: std::sync::Arc<ReadHints>,
}

impl LogFile {
    /// A log file read without hints (the built-in field spellings; syslog years near now).
    pub fn new(path: PathBuf, format: LogFormat) -> LogFile {
        LogFile { path, format, hints: Default::default() }
    }
}

/// What readers need to know beyond a file itself: how its bundle spells its fields (the
/// bundle's `mapping.json`, tried before the built-in spellings) and when the incident happened
/// (the year of syslog dates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadHints {
    /// Fields that name the service: JSON keys or dotted paths, CSV columns, Loki labels.
    #[serde(deserialize_with = "one_or_many")]
    pub service: Vec<String>,
    /// Fields that hold the record's time.
    #[serde(deserialize_with = "one_or_many")]
    pub time: Vec<String>,
    /// Fields that hold a log line's text.
    #[serde(deserialize_with = "one_or_many")]
    pub message: Vec<String>,
    /// Fields that hold a log line's level.
    #[serde(deserialize_with = "one_or_many")]
    pub level: Vec<String>,
    /// In a wide metric CSV, what separates service and metric in a column name (`checkout::errors`
    /// with `"::"`); without it, the first `.` or `_`.
    pub metric_separator: Option<String>,
    /// Records more than this many hours from the alert (either side) are rejected as bad input
    /// (a clock gone wrong, a garbage time like 9999-12-31); default 24.
    pub window_hours: Option<f64>,
    /// The incident's alert time (Unix ms), set by the loader, not the file.
    #[serde(skip)]
    pub reference: Option<Ts>,
    /// The times records must fall in (Unix ms, inclusive), set by the loader from the alert and
    /// `window_hours`; None accepts any time.
    #[serde(skip)]
    pub window: Option<(Ts, Ts)>,
}

impl ReadHints {
    /// Records this far from the alert, either side, are not the incident's.
    pub const DEFAULT_WINDOW_HOURS: f64 = 24.0;

    /// Why a time is outside [`ReadHints::window`], or None when it is inside (or there is none).
    pub fn outside(&self, t: Ts) -> Option<String> {
        let (lo, hi) = self.window?;
        (t < lo || t > hi).then(|| {
            let h = self.window_hours.unwrap_or(Self::DEFAULT_WINDOW_HOURS);
            let when = chrono::DateTime::from_timestamp_millis(t).map_or_else(|| format!("{t} ms"), |d| d.to_rfc3339());
            format!("{when} is more than {h} h from the alert (mapping.json `window_hours` widens it)")
        })
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: time, service, level, message, attributes.
    JsonLines,
    /// OpenTelemetry OTLP/JSON `resourceLogs`, one export request per line (collector file exporter).
    OtlpJson,
    /// Loki's `query_range` answer (`resultType: streams`), as its API or `logcli --output raw` gives it.
    Loki,
    /// Syslog text lines, RFC 3164 (`Mar  4 13:00:00 host app[12]: …`) or RFC 5424.
    Syslog,
    /// The Nezha dataset's container-log CSV.
    NezhaCsv,
}

impl Logs {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.files.is_empty()
    }
}

/// All telemetry of one period.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    pub metrics: Vec<Series>,
    pub logs: Logs,
    pub spans: Vec<Span>,
    pub changes: Vec<Change>,
}

/// Who calls whom. An edge `caller -> callee` means a fault in the callee can show in the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    #[serde(default)]
    pub services: Vec<TopologyNode>,
    #[serde(default)]
    pub edges: Vec<TopologyEdge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyNode {
    pub name: String,
    /// `service`, `database`, `cache`, `queue`, …
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyEdge {
    pub caller: String,
    pub callee: String,
}

/// The labelled root cause of a case (`truth.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// The root-cause service; empty when `kind` is `none`.
    #[serde(default)]
    pub service: String,
    /// The indicator that carries the fault (`cpu`, `mem`, `latency`, `errors`, a config key, …).
    #[serde(default)]
    pub indicator: String,
    /// Fault kind, `none` for a fault-free window.
    pub kind: String,
    /// Services from cause to symptom.
    #[serde(default)]
    pub chain: Vec<String>,
    /// Where inside the service the fault sits, when the dataset labels it (Nezha: a log
    /// statement pair `A_B`, an operation start, or a resource metric such as `CpuUsageRate(%)`);
    /// scored as AIS@k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Truth {
    pub fn is_fault_free(&self) -> bool {
        self.kind == "none"
    }
}

/// A record that could not be read: where, and why. Collected, counted and reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIssue {
    pub file: String,
    /// 1-based line (or row) number; 0 when the problem is with the file as a whole, or with a
    /// record rejected after it was read (for a time outside the incident's window).
    pub line: u64,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ReadIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What could not be read, per file: the first few issues in full and a count of all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadReport {
    /// Records read successfully.
    pub records_read: u64,
    /// Records skipped because they could not be read.
    pub records_skipped: u64,
    /// The first issues (bounded, so a badly broken file cannot flood the report).
    pub issues: Vec<ReadIssue>,
    /// Skipped-record counts per file.
    pub skipped_per_file: BTreeMap<String, u64>,
    /// Records read per file: every file that was read, even when none of it could be.
    #[serde(default)]
    pub read_per_file: BTreeMap<String, u64>,
    /// Files in the input that no reader took, so nothing in them was seen.
    #[serde(default)]
    pub ignored: Vec<String>,
    /// Records dropped as exact repeats of earlier ones (a retried export, a file twice).
    #[serde(default, skip_serializing_if = "no_duplicates")]
    pub duplicates: u64,
}

fn no_duplicates(n: &u64) -> bool {
    *n == 0
}

impl ReadReport {
    /// Issues kept in full; the rest are only counted.
    pub const MAX_ISSUES: usize = 50;

    /// Counts an unreadable record and keeps its issue while there is room. The report lists
    /// them per file, so they are logged at debug level only, not as a flood of warnings.
    pub fn skip(&mut self, issue: ReadIssue) {
        self.records_skipped += 1;
        *self.skipped_per_file.entry(issue.file.clone()).or_default() += 1;
        if self.issues.len() < Self::MAX_ISSUES {
            tracing::debug!(%issue, "skipped unreadable record");
            self.issues.push(issue);
        }
    }

    /// Runs `read` on `file` and notes how many records it added to [`ReadReport::records_read`]
    /// (zero included: a file that gave nothing is the one the user must hear about).
    pub fn counting<T>(&mut self, file: &str, read: impl FnOnce(&mut ReadReport) -> T) -> T {
        let before = self.records_read;
        let out = read(self);
        let n = self.records_read.saturating_sub(before);
        *self.read_per_file.entry(file.to_string()).or_default() += n;
        out
    }

    /// Every file read or skipped from, by name: (file, records read, records skipped).
    pub fn files(&self) -> Vec<(&str, u64, u64)> {
        let mut files: Vec<&str> =
            self.read_per_file.keys().chain(self.skipped_per_file.keys()).map(String::as_str).collect();
        files.sort_unstable();
        files.dedup();
        files
            .into_iter()
            .map(|f| {
                (f, self.read_per_file.get(f).copied().unwrap_or(0), self.skipped_per_file.get(f).copied().unwrap_or(0))
            })
            .collect()
    }

    /// Files whose records were mostly unreadable (more skipped than read), with both counts:
    /// what culprit did not see.
    pub fn unreadable_files(&self) -> Vec<(&str, u64, u64)> {
        self.files().into_iter().filter(|(_, read, skipped)| skipped > read).collect()
    }

    pub fn merge(&mut self, other: ReadReport) {
        self.records_read += other.records_read;
        self.records_skipped += other.records_skipped;
        for (k, v) in other.skipped_per_file {
            *self.skipped_per_file.entry(k).or_default() += v;
        }
        for (k, v) in other.read_per_file {
            *self.read_per_file.entry(k).or_default() += v;
        }
        for f in other.ignored {
            if !self.ignored.contains(&f) {
                self.ignored.push(f);
            }
        }
        let room = Self::MAX_ISSUES.saturating_sub(self.issues.len());
        self.issues.extend(other.issues.into_iter().take(room));
    }
}

/// One incident ready for analysis.
///
/// `telemetry` holds the data around the alert. The reference for "normal" is `baseline` when the
/// source recorded one separately (datasets with fault-free periods), otherwise the part of
/// `telemetry` before `analysis_start`.
#[derive(Debug, Clone)]
pub struct Incident {
    pub id: String,
    pub alert: Alert,
    pub telemetry: Telemetry,
    pub baseline: Option<Telemetry>,
    /// Anomalies are searched from here on; earlier data is the baseline when `baseline` is None.
    pub analysis_start: Ts,
    /// Declared dependencies; when None the call graph is mined from spans.
    pub topology: Option<Topology>,
    /// The label, for evaluation; never read by the pipeline.
    pub truth: Option<Truth>,
    /// What could not be read while loading.
    pub read_report: ReadReport,
}
