//! The datasets `culprit eval` scores, in one registry: each kind of dataset is a [`Dataset`] (it
//! recognises its folder or argument, lists its cases cheaply, and loads one case), in a file of
//! this folder, and one line of [`REGISTRY`]. A new dataset is that file and that line; eval,
//! `--help` and the errors find it there.
//!
//! Incident datasets load each case as the same [`Incident`] every other reader produces, with its
//! label in [`Incident::truth`]: Nezha (FSE'23) TrainTicket and OnlineBoutique ([`nezha`]), RCD
//! Sock Shop (NeurIPS'22, [`rcd`]), ChangeRCA's concurrent releases (FSE'24, [`changerca`]), directories of bundles with `truth.json` ([`bundles`]) and
//! simulated suites ([`simulated`]). Drill-down datasets load cubes or KPI series: RobustSpot RS
//! ([`robustspot`]) and Kontrast ([`kontrast`]).
//!
//! **Invariant**: the alert of a loaded case never depends on the label; for the public datasets
//! it names the system's entry service and the injection time, the same for every case.
//!
//! **Boundary**: datasets are read in place, never copied; a bad record is skipped and counted in
//! [`Incident::read_report`], a missing index or telemetry folder is an error naming the file.

pub mod bundles;
pub mod changerca;
pub mod kontrast;
pub mod nezha;
pub mod rcd;
pub mod robustspot;
pub mod simulated;

use super::EvalError;
use crate::drilldown::{Cube, Element};
pub(crate) use crate::ingest::pod_to_service;
use crate::model::{Alert, Incident, ReadIssue, Series, Severity, Truth, Ts};
use std::any::Any;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A kind of labelled dataset. An open set: one implementation per file, listed in [`REGISTRY`].
pub trait Dataset: Send + Sync {
    /// Its name, in `culprit eval --help` and in errors.
    fn name(&self) -> &'static str;
    /// What an argument naming it looks like (e.g. `.../nezha/trainticket`).
    fn form(&self) -> &'static str;
    /// How its suites are scored.
    fn scoring(&self) -> Scoring;
    /// Whether `arg` is this dataset (decided by a folder's content, not only its name).
    fn recognise(&self, arg: &str) -> bool;
    /// Its suites (one table each) and their cases, cheaply: an index is read, no case is loaded.
    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError>;
    /// One case's data.
    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError>;
}

/// Every dataset `culprit eval` knows, in the order they are tried (the first that recognises an
/// argument takes it).
pub static REGISTRY: &[&dyn Dataset] = &[
    &robustspot::RobustSpot,
    &kontrast::Kontrast,
    &simulated::Seeds,
    &simulated::Spec,
    &nezha::Nezha,
    &rcd::SockShop,
    &changerca::ChangeRca,
    &bundles::Bundles,
];

/// How a suite is scored: a closed set, one table layout each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Root-cause services ranked by every method: AC@k, Avg@5, MRR, FPR, calibration.
    Incidents,
    /// The segments that explain a KPI change: element-set F1 and exact-set accuracy.
    Localisation,
    /// Whether a change caused a KPI shift: precision, recall, F1.
    ChangeImpact,
}

/// The cases of one table.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub scoring: Scoring,
    pub cases: Vec<Case>,
}

/// One labelled case, as listed: enough to load it, and its label when the index has it.
#[derive(Clone)]
pub struct Case {
    /// The dataset's case id; becomes the incident's id.
    pub id: String,
    /// The system it comes from (`trainticket`, `sockshop`, `simulated`, …).
    pub system: String,
    /// The injected fault as the dataset spells it (empty when only loading tells).
    pub fault_kind: String,
    /// The label, when the index holds it (also set on the loaded incident).
    pub truth: Option<Truth>,
    /// The dataset that listed it and loads it.
    pub dataset: &'static dyn Dataset,
    /// Where that dataset finds it: its own type, read only by it.
    pub key: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("system", &self.system)
            .field("dataset", &self.dataset.name())
            .finish()
    }
}

impl Case {
    /// A case `dataset` listed, found again by its `key`; no label yet.
    pub fn new<K: Any + Send + Sync>(
        dataset: &'static dyn Dataset,
        id: impl Into<String>,
        system: impl Into<String>,
        key: K,
    ) -> Case {
        Case {
            id: id.into(),
            system: system.into(),
            fault_kind: String::new(),
            truth: None,
            dataset,
            key: Arc::new(key),
        }
    }

    /// The case with the label its index gives.
    pub fn labelled(self, truth: Truth) -> Case {
        Case { fault_kind: truth.kind.clone(), truth: Some(truth), ..self }
    }

    /// The dataset's key for this case, if it is a `T`.
    pub fn key<T: 'static>(&self) -> Option<&T> {
        self.key.downcast_ref::<T>()
    }

    /// The key a dataset expects in the cases it listed; an error for a case another listed.
    pub fn own_key<T: 'static>(&self) -> Result<&T, EvalError> {
        self.key().ok_or_else(|| EvalError::Case {
            id: self.id.clone(),
            message: format!("not a case of {}", self.dataset.name()),
        })
    }

    pub fn load(&self) -> Result<Loaded, EvalError> {
        self.dataset.load_case(self)
    }

    /// Loads the case as an incident (the incident datasets).
    pub fn load_incident(&self) -> Result<Incident, EvalError> {
        match self.load()? {
            Loaded::Incident(i) => Ok(*i),
            _ => Err(EvalError::Case {
                id: self.id.clone(),
                message: format!("{} cases are not incidents", self.dataset.name()),
            }),
        }
    }
}

/// A loaded case.
pub enum Loaded {
    Incident(Box<Incident>),
    /// A drill-down cube and the segments that truly explain its change.
    Cube {
        cube: Cube,
        truth: Vec<Element>,
    },
    /// A KPI series, the time of a change, and whether the change caused the shift.
    Change {
        series: Vec<(Ts, f64)>,
        change: Ts,
        caused: bool,
    },
}

/// The dataset that takes `arg`, if any.
pub fn recognise(arg: &str) -> Option<&'static dyn Dataset> {
    REGISTRY.iter().copied().find(|d| d.recognise(arg))
}

/// The suites an argument names, through the registry.
pub fn suites(arg: &str) -> Result<Vec<Suite>, EvalError> {
    match recognise(arg) {
        Some(d) => d.list_cases(arg),
        None => Err(EvalError::UnknownSuite { arg: arg.to_string(), forms: forms() }),
    }
}

/// The cases of every suite an argument names.
pub fn cases(arg: &str) -> Result<Vec<Case>, EvalError> {
    Ok(suites(arg)?.into_iter().flat_map(|s| s.cases).collect())
}

/// What the registry accepts, for help and errors: one line per dataset.
pub fn forms() -> String {
    REGISTRY.iter().map(|d| format!("{} ({})", d.form(), d.name())).collect::<Vec<_>>().join("; ")
}

/// What can stop a dataset or a case from being read at all. Bad records are not errors: they
/// are skipped and counted in the incident's [`ReadReport`].
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{}: missing column `{column}`", path.display())]
    MissingColumn { path: PathBuf, column: String },
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    BadField { path: PathBuf, line: u64, field: String, message: String },
    #[error("{}: {message}", path.display())]
    NoData { path: PathBuf, message: String },
    /// A file read through `crate::ingest` (the error names it).
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// The alert every case of a public dataset gets: the entry service's latency at `time`, severity
/// high. Built from the dataset (`label`, its `entry_service`) and the time only, never from the
/// label or the case id (RCD ids spell the label).
pub(crate) fn alert(label: &str, entry_service: &str, time: Ts) -> Alert {
    let when = chrono::DateTime::from_timestamp_millis(time)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| time.to_string());
    Alert {
        time,
        service: entry_service.to_string(),
        signal: "latency".into(),
        severity: Severity::High,
        title: format!("{label}: latency alert on {entry_service} at {when}"),
    }
}

/// A CSV file's header, if it can be read (for recognising a dataset by its columns).
pub(crate) fn header_of(path: &Path) -> Option<Vec<String>> {
    let mut r = csv::Reader::from_path(path).ok()?;
    Some(r.headers().ok()?.iter().map(str::to_string).collect())
}

/// The error for a bad field on line `line` of `path`.
pub(crate) fn csv_at(path: &Path, line: usize) -> impl Fn(&str, String) -> AdapterError + '_ {
    move |field, message| AdapterError::BadField {
        path: path.to_path_buf(),
        line: line as u64,
        field: field.to_string(),
        message,
    }
}

/// Opens a file for reading, decompressing `*.gz` transparently.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>, AdapterError> {
    let file = File::open(path).map_err(|source| AdapterError::Io { path: path.to_path_buf(), source })?;
    let reader = BufReader::with_capacity(1 << 16, file);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// A CSV reader over a (possibly gzipped) file; rows of the wrong width are reported by callers.
pub(crate) fn csv_reader(path: &Path) -> Result<csv::Reader<Box<dyn Read>>, AdapterError> {
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(open_maybe_gz(path)?))
}

/// The header of a CSV file, as owned strings.
pub(crate) fn headers<R: Read>(rdr: &mut csv::Reader<R>, path: &Path) -> Result<Vec<String>, AdapterError> {
    Ok(rdr
        .headers()
        .map_err(|source| AdapterError::Csv { path: path.to_path_buf(), source })?
        .iter()
        .map(|h| h.trim().to_string())
        .collect())
}

/// Index of a named column, or a [`AdapterError::MissingColumn`].
pub(crate) fn column(headers: &[String], name: &str, path: &Path) -> Result<usize, AdapterError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| AdapterError::MissingColumn { path: path.to_path_buf(), column: name.to_string() })
}

/// A [`ReadIssue`] for a file.
pub(crate) fn issue(path: &Path, line: u64, field: Option<&str>, message: String) -> ReadIssue {
    ReadIssue { file: path.display().to_string(), line, field: field.map(str::to_string), message }
}

/// The trimmed cells of `cols` in an index row, each required non-empty (an error names the
/// field and the line).
pub(crate) fn required<const N: usize>(
    record: &csv::StringRecord,
    cols: [usize; N],
    hdr: &[String],
    path: &Path,
) -> Result<[String; N], AdapterError> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, &i) in out.iter_mut().zip(&cols) {
        *slot = record.get(i).unwrap_or("").trim().to_string();
        if slot.is_empty() {
            return Err(AdapterError::BadField {
                path: path.to_path_buf(),
                line: line_of(record),
                field: hdr.get(i).cloned().unwrap_or_default(),
                message: "empty".into(),
            });
        }
    }
    Ok(out)
}

/// The 1-based line of a CSV record (0 when unknown).
pub(crate) fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map(|p| p.line()).unwrap_or(0)
}

/// A metric cell that is not a number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a number: {0:?}")]
pub(crate) struct NotANumber(String);

/// Parses a metric value. `Ok(None)` for an explicit gap (`NaN`, empty): the point is absent,
/// the record is fine. `Err` for anything else unreadable.
pub(crate) fn parse_value(s: &str) -> Result<Option<f64>, NotANumber> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Ok(None),
        Err(_) => Err(NotANumber(t.to_string())),
    }
}

/// Series keyed by service then metric while reading; points sorted when finished.
#[derive(Debug, Default)]
pub(crate) struct SeriesBuilder {
    map: BTreeMap<String, BTreeMap<String, Vec<(Ts, f64)>>>,
}

impl SeriesBuilder {
    pub(crate) fn push(&mut self, service: &str, metric: &str, t: Ts, v: f64) {
        // Look up by &str first so an existing series costs no allocation per point.
        let metrics = match self.map.get_mut(service) {
            Some(m) => m,
            None => self.map.entry(service.to_string()).or_default(),
        };
        match metrics.get_mut(metric) {
            Some(points) => points.push((t, v)),
            None => {
                metrics.insert(metric.to_string(), vec![(t, v)]);
            }
        }
    }

    pub(crate) fn extend(&mut self, series: impl IntoIterator<Item = Series>) {
        for s in series {
            self.map.entry(s.service).or_default().entry(s.metric).or_default().extend(s.points);
        }
    }

    pub(crate) fn finish(self) -> Vec<Series> {
        let mut out = Vec::new();
        for (service, metrics) in self.map {
            for (metric, mut points) in metrics {
                points.sort_by_key(|p| p.0);
                out.push(Series { service: service.clone(), metric, points });
            }
        }
        out
    }
}

/// The points of each series within `[from, to)`; series left empty are dropped.
pub(crate) fn slice_series(all: &[Series], from: Ts, to: Ts) -> Vec<Series> {
    all.iter()
        .filter_map(|s| {
            let lo = s.points.partition_point(|p| p.0 < from);
            let hi = s.points.partition_point(|p| p.0 < to);
            (hi > lo).then(|| Series {
                service: s.service.clone(),
                metric: s.metric.clone(),
                points: s.points[lo..hi].to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_nan_is_a_gap_not_an_error() {
        assert_eq!(parse_value("NaN"), Ok(None));
        assert_eq!(parse_value(""), Ok(None));
        assert_eq!(parse_value("1.5"), Ok(Some(1.5)));
        assert!(parse_value("abc").is_err());
    }
}
