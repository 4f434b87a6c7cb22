//! A drill-down as a user asks for it (the flags of `culprit drilldown`), checked and run: the
//! KPI, the windows and the forecast are validated into a [`Query`], stored baselines are loaded
//! or saved, change events and an earlier report are read, and [`report::build`] does the rest.
//! The command line only adds where the report goes.

use super::report::{self, BaselineError, BaselineRef, Earlier, Report, SearchKind};
use super::table::{self, DataError, Measure, Method, Query, SpanError};
use super::{parse_elements, NotKeyValue};
use crate::ingest::IngestError;
use std::path::PathBuf;

/// The forecast a drill-down compares with (besides `--season`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForecastChoice {
    /// Robust when the baseline holds three current-length windows, else scaled.
    #[default]
    Auto,
    /// The mean of the baseline's current-length windows, outlier windows left out.
    Robust,
    /// The baseline's totals scaled to the current window's length.
    Scaled,
}

/// What to analyse and how.
#[derive(Debug, Clone, clap::Args)]
pub struct Request {
    /// The rows: .csv, .csv.gz or .parquet, with a time column (time, timestamp, ts, min,
    /// date or minute), the dimension columns and the measures.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// A measure column to total (or give --ratio).
    #[arg(long, value_name = "COLUMN", required_unless_present = "ratio")]
    pub metric: Option<String>,
    /// A ratio KPI, NUM/DEN (e.g. orders/visits).
    #[arg(long, value_name = "NUM/DEN", conflicts_with = "metric")]
    pub ratio: Option<String>,
    /// Dimension columns, comma-separated.
    #[arg(long, value_name = "D1,D2,…", value_delimiter = ',', required = true)]
    pub dims: Vec<String>,
    /// The baseline window, START..END (Unix s or ms, or RFC 3339). Not needed with --against.
    #[arg(long, value_name = "T0..T1", required_unless_present = "against")]
    pub baseline: Option<String>,
    /// The current window, START..END.
    #[arg(long, value_name = "T2..T3")]
    pub current: String,
    /// The forecast: auto (robust when the baseline holds three current-length windows,
    /// else scaled), robust (the mean of those windows, outlier windows left out), or scaled.
    #[arg(long, value_enum, default_value = "auto")]
    pub forecast: ForecastChoice,
    /// Seasonal forecast: the baseline windows one season apart (e.g. 1d, 7d).
    #[arg(long, value_name = "DURATION")]
    pub season: Option<String>,
    /// The search: ripple (culprit's), or the baselines squeeze and adtributor.
    #[arg(long, value_enum, default_value = "ripple")]
    pub search: SearchKind,
    /// Most attributes in one combination.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub max_attributes: u8,
    /// Bootstrap replicas for each finding's confidence (0 to skip).
    #[arg(long, default_value_t = 100)]
    pub bootstrap: usize,
    /// Change events (JSON lines, the incident bundle's changes.jsonl format) to check as
    /// causes: difference-in-differences and temporal order.
    #[arg(long, value_name = "FILE")]
    pub change: Option<PathBuf>,
    /// The segment the change touched, D=V[&D=V] (default: the change's service or changed
    /// key when it is a dimension value).
    #[arg(long, value_name = "D=V")]
    pub treated: Option<String>,
    /// A dimension whose values are an experiment's arms: check the sample ratio.
    #[arg(long, value_name = "DIM")]
    pub arm: Option<String>,
    /// The planned split of the arms, in the order they first appear (default: equal).
    #[arg(long, value_name = "A,B,…", value_delimiter = ',', requires = "arm")]
    pub split: Vec<f64>,
    /// Store this run's forecast as the next version of baseline NAME.
    #[arg(long, value_name = "NAME")]
    pub save_baseline: Option<String>,
    /// Compare against stored baseline NAME (newest version) or NAME@N instead of --baseline.
    #[arg(long, value_name = "NAME[@N]")]
    pub against: Option<String>,
    /// Where stored baselines live.
    #[arg(long, value_name = "DIR", default_value = ".culprit/baselines")]
    pub baselines: PathBuf,
    /// An earlier report (--out JSON) to compare findings with.
    #[arg(long, value_name = "REPORT")]
    pub compare: Option<PathBuf>,
}

/// A request that cannot be run, naming the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("--ratio {0:?}: expected NUM/DEN")]
    Ratio(String),
    #[error("give --metric or --ratio")]
    NoKpi,
    #[error("give --baseline or --against, not both")]
    BothBaselines,
    #[error("give --baseline or --against")]
    NoBaseline,
    #[error("{flag} {error}")]
    Span { flag: &'static str, error: SpanError },
    #[error("--baseline {baseline} and --current {current} overlap: rows would count as both actual and forecast")]
    Overlap { baseline: String, current: String },
    #[error("--treated {0}")]
    Treated(NotKeyValue),
    #[error("--treated is empty")]
    NoTreated,
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("reading changes from {}: {error}", path.display())]
    Changes { path: PathBuf, error: IngestError },
    #[error("{}: no change event could be read", path.display())]
    NoChanges { path: PathBuf },
    #[error("reading {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}: not a drill-down report (--out JSON): {error}", path.display())]
    Compare { path: PathBuf, error: serde_json::Error },
}

impl Request {
    /// Checks the request, reads the data and builds the report. `say` hears what is being done
    /// and what was skipped on the way (for a progress line).
    pub fn run(&self, say: &mut dyn FnMut(String)) -> Result<Report, RequestError> {
        let (measure, kpi) = match (&self.metric, &self.ratio) {
            (Some(m), _) => (Measure::Sum(m.clone()), m.clone()),
            (None, Some(r)) => {
                let (x, y) = r.split_once('/').ok_or_else(|| RequestError::Ratio(r.clone()))?;
                (Measure::Ratio(x.to_string(), y.to_string()), r.clone())
            }
            (None, None) => return Err(RequestError::NoKpi),
        };
        let against = self.against.as_deref().map(|s| report::load_baseline(&self.baselines, s)).transpose()?;
        let span = |flag: &'static str| move |source| RequestError::Span { flag, error: source };
        let method = match (self.season.as_deref(), self.forecast) {
            (Some(s), _) => Method::Seasonal(table::duration(s).map_err(span("--season"))?),
            (None, ForecastChoice::Auto) => Method::Auto,
            (None, ForecastChoice::Robust) => Method::Robust,
            (None, ForecastChoice::Scaled) => Method::Scaled,
        };
        let current = table::window(&self.current).map_err(span("--current"))?;
        // With a stored baseline there are no baseline rows to read: its window is empty here (the
        // report names the snapshot's), so the checks that need baseline rows say they were skipped.
        let baseline = match (&self.baseline, &against) {
            (Some(_), Some(_)) => return Err(RequestError::BothBaselines),
            (Some(b), None) => table::window(b).map_err(span("--baseline"))?,
            (None, Some(_)) => (current.0, current.0),
            (None, None) => return Err(RequestError::NoBaseline),
        };
        if against.is_none()
            && baseline.0 < current.1
            && current.0 < baseline.1
            && !matches!(method, Method::Seasonal(_))
        {
            return Err(RequestError::Overlap {
                baseline: table::span_text(baseline),
                current: table::span_text(current),
            });
        }
        let q = Query { measure, dims: self.dims.clone(), baseline, current, method };
        let data = self.data.display().to_string();
        say(format!("reading {data}"));
        let rows = table::read(&self.data, &q)?;
        let (cube, mut base) = match &against {
            Some(s) => (
                report::cube_against(&rows, &q, s)?,
                BaselineRef {
                    name: Some(s.name.clone()),
                    version: Some(s.version),
                    window: table::span_text(s.window),
                    forecast: s.forecast.clone(),
                    data: s.data.clone(),
                    created: Some(s.created.clone()),
                },
            ),
            None => {
                let (cube, forecast) = table::cube(&rows, &q)?;
                let window = table::span_text(q.baseline);
                (cube, BaselineRef { name: None, version: None, window, forecast, data: data.clone(), created: None })
            }
        };
        if let Some(name) = &self.save_baseline {
            let snap = report::save_baseline(&self.baselines, name, &cube, &q, &kpi, &base.forecast, &data)?;
            say(format!("saved baseline {name} v{} in {}", snap.version, self.baselines.display()));
            if against.is_none() {
                (base.name, base.version, base.created) = (Some(snap.name), Some(snap.version), Some(snap.created));
            }
        }
        let changes = match &self.change {
            Some(p) => {
                let mut rr = crate::model::ReadReport::default();
                let c = crate::ingest::read_changes(p, &mut rr)
                    .map_err(|source| RequestError::Changes { path: p.clone(), error: source })?;
                for issue in rr.issues.iter().take(5) {
                    say(format!("{}: {issue}", p.display()));
                }
                if c.is_empty() {
                    return Err(RequestError::NoChanges { path: p.clone() });
                }
                c
            }
            None => Vec::new(),
        };
        let treated = match &self.treated {
            Some(t) => Some(
                parse_elements(t).map_err(RequestError::Treated)?.into_iter().next().ok_or(RequestError::NoTreated)?,
            ),
            None => None,
        };
        let earlier = match &self.compare {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| RequestError::Read { path: p.clone(), error: source })?;
                Some(
                    serde_json::from_str::<Earlier>(&text)
                        .map_err(|source| RequestError::Compare { path: p.clone(), error: source })?,
                )
            }
            None => None,
        };
        let opts = report::Options {
            kpi,
            search: self.search,
            max_attributes: usize::from(self.max_attributes),
            replicas: self.bootstrap,
            seed: 1,
            changes,
            treated,
            arm: self.arm.clone().map(|d| (d, self.split.clone())),
        };
        say(format!("{} rows, {} segments; searching", rows.len(), cube.leaves.len()));
        Ok(report::build(&rows, &q, &cube, base, &opts, earlier.as_ref()))
    }
}
