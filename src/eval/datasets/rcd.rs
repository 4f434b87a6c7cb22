//! RCD (NeurIPS'22) Sock Shop cases: per case a fault-free `normal.csv` (the baseline) and an
//! `anomalous.csv` (the incident), both wide metric tables at 1 s resolution.
//!
//! The two windows were recorded at different times, so the incident starts at the first
//! anomalous timestamp: the alert fires then and analysis starts there. The label comes from
//! `cases_index.csv` (`<service>-<cpu|mem>` folders).

use super::{alert, column, csv_reader, headers, required, AdapterError, Case, Dataset, Loaded, Scoring, Suite};
use crate::eval::EvalError;
use crate::ingest::read_wide_csv;
use crate::model::{Incident, ReadReport, Telemetry, Truth};
use std::path::{Path, PathBuf};

/// The system name of every case.
pub const SYSTEM: &str = "sockshop";
/// The service through which users reach Sock Shop; the alert names it for every case.
pub const ENTRY_SERVICE: &str = "front-end";
const LABEL: &str = "RCD Sock Shop";

/// The RCD Sock Shop dataset: `.../rcd_sockshop`.
pub struct SockShop;

impl Dataset for SockShop {
    fn name(&self) -> &'static str {
        "RCD (NeurIPS'22) Sock Shop"
    }

    fn form(&self) -> &'static str {
        ".../rcd_sockshop"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Incidents
    }

    fn recognise(&self, arg: &str) -> bool {
        is_root(Path::new(arg))
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let cases = list(Path::new(arg))?
            .into_iter()
            .map(|c| Case::new(&SockShop, c.id.clone(), SYSTEM, c.clone()).labelled(c.truth))
            .collect();
        Ok(vec![Suite { name: format!("{arg} ({SYSTEM})"), scoring: Scoring::Incidents, cases }])
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        let c = case.own_key::<RcdCase>()?;
        Ok(Loaded::Incident(Box::new(load(c)?)))
    }
}

/// Where one RCD case lives, and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct RcdCase {
    pub id: String,
    pub truth: Truth,
    /// The fault-free window (baseline).
    pub normal_csv: PathBuf,
    /// The fault window (incident).
    pub anomalous_csv: PathBuf,
}

/// `.../rcd_sockshop`: holds `cases_index.csv` (with `normal_csv`/`anomalous_csv` columns) and `cases/`.
fn is_root(path: &Path) -> bool {
    let index = path.join("cases_index.csv");
    if !index.is_file() || !path.join("cases").is_dir() {
        return false;
    }
    let Ok(mut rdr) = csv_reader(&index) else {
        return false;
    };
    headers(&mut rdr, &index).is_ok_and(|h| h.iter().any(|c| c == "anomalous_csv"))
}

/// Lists the cases of `<root>/cases_index.csv`.
pub fn list(root: &Path) -> Result<Vec<RcdCase>, AdapterError> {
    let path = root.join("cases_index.csv");
    let mut rdr = csv_reader(&path)?;
    let hdr = headers(&mut rdr, &path)?;
    let col = |name: &str| column(&hdr, name, &path);
    let (c_id, c_normal, c_anom, c_service, c_fault) =
        (col("case_id")?, col("normal_csv")?, col("anomalous_csv")?, col("root_cause_service")?, col("fault_type")?);
    let mut cases = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|source| AdapterError::Csv { path: path.clone(), source })?;
        let [id, service, fault] = required(&record, [c_id, c_service, c_fault], &hdr, &path)?;
        let get = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        cases.push(RcdCase {
            id,
            truth: Truth {
                service: service.clone(),
                // The fault type names the faulty resource (`cpu`, `mem`): the series
                // `<service>_<fault>` is the root-cause metric.
                indicator: fault.clone(),
                kind: fault,
                chain: vec![service],
                location: None,
            },
            normal_csv: root.join(get(c_normal)),
            anomalous_csv: root.join(get(c_anom)),
        });
    }
    Ok(cases)
}

/// Loads one RCD case.
pub fn load(r: &RcdCase) -> Result<Incident, AdapterError> {
    let mut report = ReadReport::default();
    let anomalous = read_wide_csv(&r.anomalous_csv, &mut report)?;
    let normal = read_wide_csv(&r.normal_csv, &mut report)?;
    let start = anomalous
        .iter()
        .filter_map(|s| s.points.first().map(|p| p.0))
        .min()
        .ok_or_else(|| AdapterError::NoData { path: r.anomalous_csv.clone(), message: "no readable rows".into() })?;
    if normal.is_empty() {
        return Err(AdapterError::NoData { path: r.normal_csv.clone(), message: "no readable rows".into() });
    }
    Ok(Incident {
        id: r.id.clone(),
        alert: alert(LABEL, ENTRY_SERVICE, start),
        telemetry: Telemetry { metrics: anomalous, ..Telemetry::default() },
        baseline: Some(Telemetry { metrics: normal, ..Telemetry::default() }),
        analysis_start: start,
        topology: None,
        truth: Some(r.truth.clone()),
        read_report: report,
    })
}
