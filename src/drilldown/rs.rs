//! The RobustSpot RS dataset (`../shared/datasets/robustspot_rs`): 135 cases of a video
//! service's stalling ratio, one CSV per case (`min`, the dimensions, `value` = stalling viewers,
//! `cnt` = viewers), the anomalous minute and the root-cause elements in `cases_index.csv`.
//!
//! The KPI is the share of viewers *not* stalling, (cnt − value) / cnt, a ratio; a leaf's
//! forecast is its mean over the 4 minutes before the anomalous one. Minutes after the anomaly are
//! never read.

use super::{Cube, Element, Leaf};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Minutes of history a leaf's forecast averages.
pub const HISTORY: i64 = 4;

#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub csv: PathBuf,
    pub minute: i64,
    pub truth: Vec<Element>,
}

/// `k=v&k=v;k=v` → elements (keys sorted).
pub fn parse_elements(s: &str) -> Result<Vec<Element>, String> {
    s.split(';')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut el: Element = e
                .split('&')
                .map(|kv| kv.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).ok_or_else(|| format!("{kv:?} is not key=value")))
                .collect::<Result<_, _>>()?;
            el.sort();
            Ok(el)
        })
        .collect()
}

pub fn cases(dir: &Path) -> Result<Vec<Case>, String> {
    let index = dir.join("cases_index.csv");
    let mut r = csv::Reader::from_path(&index).map_err(|e| format!("{}: {e}", index.display()))?;
    let headers = r.headers().map_err(|e| format!("{}: {e}", index.display()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| format!("{}: no column {name}", index.display()));
    let (c_id, c_csv, c_ts, c_rc) = (col("case_id")?, col("data_csv")?, col("anomaly_timestamp")?, col("root_cause")?);
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| format!("{}:{line}: {e}", index.display()))?;
        let minute: i64 = rec[c_ts].trim().parse().map_err(|_| format!("{}:{line}: anomaly_timestamp {:?} is not a number", index.display(), &rec[c_ts]))?;
        let truth = parse_elements(&rec[c_rc]).map_err(|e| format!("{}:{line}: root_cause: {e}", index.display()))?;
        out.push(Case { id: rec[c_id].to_string(), csv: dir.join(&rec[c_csv]), minute, truth });
    }
    Ok(out)
}

/// The case's cube at its anomalous minute.
pub fn cube(case: &Case) -> Result<Cube, String> {
    let file = case.csv.display().to_string();
    let mut r = csv::Reader::from_path(&case.csv).map_err(|e| format!("{file}: {e}"))?;
    let headers = r.headers().map_err(|e| format!("{file}: {e}"))?.clone();
    let find = |n: &str| headers.iter().position(|h| h == n).ok_or_else(|| format!("{file}: no column {n}"));
    let (c_min, c_value, c_cnt) = (find("min")?, find("value")?, find("cnt")?);
    let dim_cols: Vec<usize> = (0..headers.len()).filter(|&i| i != c_min && i != c_value && i != c_cnt).collect();
    let dims: Vec<String> = dim_cols.iter().map(|&i| headers[i].to_string()).collect();
    let mut values: Vec<Vec<String>> = vec![Vec::new(); dims.len()];
    let mut ids: Vec<HashMap<String, u32>> = vec![HashMap::new(); dims.len()];
    // leaf → (actual a, actual b, history a, history b)
    let mut leaves: HashMap<Vec<u32>, [f64; 4]> = HashMap::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| format!("{file}:{line}: {e}"))?;
        let num = |c: usize, name: &str| rec[c].trim().parse::<f64>().map_err(|_| format!("{file}:{line}: {name} {:?} is not a number", &rec[c]));
        let minute = num(c_min, "min")? as i64;
        let at = minute == case.minute;
        let history = minute < case.minute && minute >= case.minute - HISTORY * 60;
        if !at && !history {
            continue;
        }
        let (stalled, viewers) = (num(c_value, "value")?, num(c_cnt, "cnt")?);
        let key: Vec<u32> = dim_cols
            .iter()
            .enumerate()
            .map(|(d, &c)| {
                let v = rec[c].trim().to_string();
                let next = values[d].len() as u32;
                *ids[d].entry(v.clone()).or_insert_with(|| {
                    values[d].push(v);
                    next
                })
            })
            .collect();
        let e = leaves.entry(key).or_default();
        let a = viewers - stalled;
        if at {
            e[0] += a;
            e[1] += viewers;
        } else {
            e[2] += a;
            e[3] += viewers;
        }
    }
    let mut leaves: Vec<Leaf> = leaves
        .into_iter()
        .map(|(attrs, [a, b, ha, hb])| Leaf { attrs, a, b, fa: ha / HISTORY as f64, fb: hb / HISTORY as f64 })
        .collect();
    leaves.sort_by(|x, y| x.attrs.cmp(&y.attrs));
    Ok(Cube { dims, values, leaves, ratio: true })
}
