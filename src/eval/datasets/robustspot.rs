//! RobustSpot RS (drill-down localisation): `cases_index.csv` (`case_id`, `data_csv`,
//! `anomaly_timestamp`, `root_cause`) and one table of per-minute rows per case. Each case is a
//! cube at its anomalous minute, with the elements that truly explain the KPI's change.
//!
//! **Invariant**: minutes after the anomalous one are never read.

use super::{csv_at, header_of, AdapterError, Case, Dataset, Loaded, Scoring, Suite};
use crate::drilldown::{parse_elements, Cube, CubeBuilder, Element};
use crate::eval::EvalError;
use std::path::{Path, PathBuf};

/// Minutes of history an RS leaf's forecast averages (as in RiskLoc's evaluation of RS).
pub const RS_HISTORY: i64 = 4;

pub struct RobustSpot;

#[derive(Debug, Clone)]
pub struct RsCase {
    pub id: String,
    pub csv: PathBuf,
    /// The anomalous minute (Unix s).
    pub minute: i64,
    pub truth: Vec<Element>,
}

impl Dataset for RobustSpot {
    fn name(&self) -> &'static str {
        "RobustSpot RS (drill-down localisation)"
    }

    fn form(&self) -> &'static str {
        ".../robustspot_rs"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Localisation
    }

    fn recognise(&self, arg: &str) -> bool {
        header_of(&Path::new(arg).join("cases_index.csv"))
            .is_some_and(|h| h.iter().any(|c| c == "root_cause") && h.iter().any(|c| c == "data_csv"))
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let cases = rs_cases(Path::new(arg))?
            .into_iter()
            .map(|c| Case::new(&RobustSpot, c.id.clone(), "robustspot", c))
            .collect();
        Ok(vec![Suite { name: arg.to_string(), scoring: Scoring::Localisation, cases }])
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        let c = case.own_key::<RsCase>()?;
        Ok(Loaded::Cube { cube: rs_cube(c)?, truth: c.truth.clone() })
    }
}

pub fn rs_cases(dir: &Path) -> Result<Vec<RsCase>, AdapterError> {
    let index = dir.join("cases_index.csv");
    let csv = |source| AdapterError::Csv { path: index.clone(), source };
    let mut r = csv::Reader::from_path(&index).map_err(csv)?;
    let headers = r.headers().map_err(csv)?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| AdapterError::MissingColumn { path: index.clone(), column: name.to_string() })
    };
    let (c_id, c_csv, c_ts, c_rc) = (col("case_id")?, col("data_csv")?, col("anomaly_timestamp")?, col("root_cause")?);
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let bad = csv_at(&index, i + 2);
        let rec = rec.map_err(csv)?;
        let minute: i64 = rec[c_ts]
            .trim()
            .parse()
            .map_err(|_| bad("anomaly_timestamp", format!("{:?} is not a number", &rec[c_ts])))?;
        let truth = parse_elements(&rec[c_rc]).map_err(|e| bad("root_cause", e.to_string()))?;
        out.push(RsCase { id: rec[c_id].to_string(), csv: dir.join(&rec[c_csv]), minute, truth });
    }
    Ok(out)
}

/// The case's cube at its anomalous minute. The KPI is the share of viewers *not* stalling,
/// (cnt − value) / cnt; a leaf's forecast is its mean over the [`RS_HISTORY`] minutes before.
pub fn rs_cube(case: &RsCase) -> Result<Cube, AdapterError> {
    let csv = |source| AdapterError::Csv { path: case.csv.clone(), source };
    let mut r = csv::Reader::from_path(&case.csv).map_err(csv)?;
    let headers = r.headers().map_err(csv)?.clone();
    let find = |n: &str| {
        headers
            .iter()
            .position(|h| h == n)
            .ok_or_else(|| AdapterError::MissingColumn { path: case.csv.clone(), column: n.to_string() })
    };
    let (c_min, c_value, c_cnt) = (find("min")?, find("value")?, find("cnt")?);
    let dim_cols: Vec<usize> = (0..headers.len()).filter(|&i| i != c_min && i != c_value && i != c_cnt).collect();
    let mut b = CubeBuilder::new(dim_cols.iter().map(|&i| headers[i].to_string()).collect());
    let mut key = vec![0u32; dim_cols.len()];
    let h = RS_HISTORY as f64;
    for (i, rec) in r.records().enumerate() {
        let bad = csv_at(&case.csv, i + 2);
        let rec = rec.map_err(csv)?;
        let num = |c: usize| {
            rec[c].trim().parse::<f64>().map_err(|_| bad(&headers[c], format!("{:?} is not a number", &rec[c])))
        };
        let minute = num(c_min)? as i64;
        let at = minute == case.minute;
        let history = minute < case.minute && minute >= case.minute - RS_HISTORY * 60;
        if !(at || history) {
            continue;
        }
        let (stalled, viewers) = (num(c_value)?, num(c_cnt)?);
        for (d, &c) in dim_cols.iter().enumerate() {
            key[d] = b.id(d, rec[c].trim());
        }
        if at {
            b.add_row(&key, viewers - stalled, viewers);
        } else {
            b.add_forecast(&key, (viewers - stalled) / h, viewers / h);
        }
    }
    Ok(b.build(true))
}
