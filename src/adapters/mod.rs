//! Adapters for public labelled datasets: each labelled case becomes the same in-memory
//! [`Incident`] every other reader produces, with its label in [`Incident::truth`].
//!
//! Two steps, so evaluation can list hundreds of cases before paying for any of them:
//! [`list_cases`] reads only a dataset's index and returns cheap [`CaseRef`]s (label included, for
//! scoring); [`load_case`] reads the telemetry of one case.
//!
//! Supported: Nezha (FSE'23) TrainTicket and OnlineBoutique ([`nezha`]), RCD Sock Shop
//! (NeurIPS'22, [`rcd`]).
//!
//! **Invariant**: the alert of a loaded case never depends on the label (`root_cause_*` columns);
//! it names the system's entry service and the injection time, the same for every case.
//!
//! **Boundary**: datasets are read in place, never copied; a bad record is skipped and counted in
//! [`Incident::read_report`], a missing index or telemetry folder is an [`AdapterError`] naming
//! the file.

pub mod nezha;
pub mod rcd;

pub(crate) use crate::ingest::pod_to_service;
use crate::model::{Alert, Incident, ReadIssue, Series, Severity, Truth, Ts};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The datasets (and systems within them) the adapters know. A closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetKind {
    NezhaTrainTicket,
    NezhaOnlineBoutique,
    RcdSockShop,
}

impl DatasetKind {
    /// The system name used in [`CaseRef::system`] (and in Nezha's `cases_index.csv`).
    pub fn system(self) -> &'static str {
        match self {
            DatasetKind::NezhaTrainTicket => "trainticket",
            DatasetKind::NezhaOnlineBoutique => "onlineboutique",
            DatasetKind::RcdSockShop => "sockshop",
        }
    }

    /// A human-readable name, e.g. for alert titles.
    pub fn label(self) -> &'static str {
        match self {
            DatasetKind::NezhaTrainTicket => "Nezha TrainTicket",
            DatasetKind::NezhaOnlineBoutique => "Nezha OnlineBoutique",
            DatasetKind::RcdSockShop => "RCD Sock Shop",
        }
    }

    /// The service through which users reach the system; the alert names it for every case.
    pub fn entry_service(self) -> &'static str {
        match self {
            // Every TrainTicket trace is rooted at the gateway (ts-ui-dashboard, the nginx in
            // front of it, emits no spans), so the gateway is the entry of the mined call graph.
            DatasetKind::NezhaTrainTicket => nezha::TT_ALERT_SERVICE,
            DatasetKind::NezhaOnlineBoutique => "frontend",
            DatasetKind::RcdSockShop => "front-end",
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One labelled case of a dataset, as listed by [`list_cases`]: enough to load it and to score it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRef {
    pub dataset: DatasetKind,
    /// The dataset's case id; becomes [`Incident::id`].
    pub id: String,
    /// `trainticket`, `onlineboutique` or `sockshop`.
    pub system: String,
    /// The injected fault type as the dataset spells it (`cpu_contention`, `return`, `mem`, …).
    pub fault_kind: String,
    /// The label (also set on the loaded incident).
    pub truth: Truth,
    /// Where the case's telemetry lives and how to cut it.
    pub source: CaseSource,
}

/// Dataset-specific location of a case's telemetry.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseSource {
    Nezha(nezha::NezhaCase),
    Rcd(rcd::RcdCase),
}

impl CaseRef {
    /// The injection time when the index records one (Nezha); RCD's is only known after loading
    /// (the first anomalous timestamp).
    pub fn inject_time(&self) -> Option<Ts> {
        match &self.source {
            CaseSource::Nezha(n) => Some(n.inject_time),
            CaseSource::Rcd(_) => None,
        }
    }
}

/// What can stop a dataset or a case from being read at all. Bad records are not errors: they
/// are skipped and counted in the incident's [`ReadReport`].
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{}: not a dataset folder the adapters know (expected .../nezha, .../nezha/trainticket, .../nezha/onlineboutique or .../rcd_sockshop)", path.display())]
    NotADataset { path: PathBuf },
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
    BadIndex { path: PathBuf, line: u64, field: String, message: String },
    #[error("{}: {message}", path.display())]
    NoData { path: PathBuf, message: String },
    /// A file read through `crate::ingest` (the error names it).
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
}

/// Which datasets a folder holds: `.../nezha` gives both Nezha systems, `.../nezha/trainticket`
/// or `.../nezha/onlineboutique` one, `.../rcd_sockshop` Sock Shop. Recognised by content
/// (`cases_index.csv` and the expected sub-folders), not only by name. Empty when none.
pub fn recognise(path: &Path) -> Vec<DatasetKind> {
    if rcd::is_root(path) {
        return vec![DatasetKind::RcdSockShop];
    }
    if nezha::is_root(path) {
        return [DatasetKind::NezhaTrainTicket, DatasetKind::NezhaOnlineBoutique]
            .into_iter()
            .filter(|k| path.join(k.system()).join("rca_data").is_dir())
            .collect();
    }
    nezha::system_dir_kind(path).into_iter().collect()
}

/// Lists the labelled cases under a dataset folder (see [`recognise`]), reading only the index.
/// Cases come in index order (Nezha TrainTicket before OnlineBoutique for `.../nezha`).
pub fn list_cases(path: &Path) -> Result<Vec<CaseRef>, AdapterError> {
    let kinds = recognise(path);
    if kinds.is_empty() {
        return Err(AdapterError::NotADataset { path: path.to_path_buf() });
    }
    let mut cases = Vec::new();
    for kind in kinds {
        match kind {
            DatasetKind::RcdSockShop => cases.extend(rcd::list_cases(path)?),
            DatasetKind::NezhaTrainTicket | DatasetKind::NezhaOnlineBoutique => {
                let root = if nezha::is_root(path) {
                    path.to_path_buf()
                } else {
                    path.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                cases.extend(nezha::list_cases(&root, kind)?);
            }
        }
    }
    Ok(cases)
}

/// Loads one case's telemetry, baseline, alert and label into an [`Incident`].
pub fn load_case(case: &CaseRef) -> Result<Incident, AdapterError> {
    let _span = tracing::debug_span!("load_case", id = %case.id).entered();
    match &case.source {
        CaseSource::Nezha(n) => nezha::load_case(case, n),
        CaseSource::Rcd(r) => rcd::load_case(case, r),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// The alert every case gets: the entry service's latency at `time`, severity high. Built from
/// the dataset and the time only, never from the label or the case id (RCD ids spell the label).
pub(crate) fn alert(kind: DatasetKind, time: Ts) -> Alert {
    let service = kind.entry_service();
    let when = chrono::DateTime::from_timestamp_millis(time)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| time.to_string());
    Alert {
        time,
        service: service.to_string(),
        signal: "latency".into(),
        severity: Severity::High,
        title: format!("{}: latency alert on {service} at {when}", kind.label()),
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

/// The 1-based line of a CSV record (0 when unknown).
pub(crate) fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map(|p| p.line()).unwrap_or(0)
}

/// Parses a metric value. `Ok(None)` for an explicit gap (`NaN`, empty): the point is absent,
/// the record is fine. `Err` for anything else unreadable.
pub(crate) fn parse_value(s: &str) -> Result<Option<f64>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Ok(None),
        Err(_) => Err(format!("not a number: {t:?}")),
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
