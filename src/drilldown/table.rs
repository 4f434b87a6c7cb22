//! `culprit drilldown --data FILE`: a table of rows (a time, dimension columns, measure columns)
//! turned into a [`Cube`] comparing a current window with a baseline window.
//!
//! The forecast (WIP) is the baseline window's totals per leaf, scaled to the current window's
//! length; the report states it. Bad data ends with an error naming the file, the line and the
//! column, never a panic.

use super::{Cube, Leaf};
use crate::model::Ts;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// A total of one column.
    Sum(String),
    /// NUM / DEN.
    Ratio(String, String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub measure: Measure,
    pub dims: Vec<String>,
    pub baseline: (Ts, Ts),
    pub current: (Ts, Ts),
}

/// Parses `T0..T1` (Unix seconds or ms, or RFC 3339).
pub fn window(s: &str) -> Result<(Ts, Ts), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?}: expected START..END"))?;
    let t = |x: &str| crate::ingest::time::parse_time_str(x.trim()).ok_or_else(|| format!("{x:?} is not a time"));
    let (a, b) = (t(a)?, t(b)?);
    if b <= a {
        return Err(format!("{s:?}: the window ends before it starts"));
    }
    Ok((a, b))
}

/// Reads `path` (.csv or .csv.gz) into a cube for `q`.
pub fn cube(path: &Path, q: &Query) -> Result<Cube, String> {
    let file = path.display().to_string();
    let raw = std::fs::File::open(path).map_err(|e| format!("{file}: {e}"))?;
    let reader: Box<dyn Read> = if file.ends_with(".gz") { Box::new(flate2::read::GzDecoder::new(raw)) } else { Box::new(raw) };
    let mut r = csv::Reader::from_reader(reader);
    let headers = r.headers().map_err(|e| format!("{file}: {e}"))?.clone();
    let find = |name: &str, what: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| format!("{file}: no {what} column {name:?} (columns: {})", headers.iter().collect::<Vec<_>>().join(", ")))
    };
    let time_col = ["time", "timestamp", "ts", "min", "date"]
        .iter()
        .find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)))
        .ok_or_else(|| format!("{file}: no time column (time, timestamp, ts, min or date)"))?;
    let dim_cols: Vec<usize> = q.dims.iter().map(|d| find(d, "dimension")).collect::<Result<_, _>>()?;
    let (num_name, den_name) = match &q.measure {
        Measure::Sum(m) => (m.clone(), None),
        Measure::Ratio(a, b) => (a.clone(), Some(b.clone())),
    };
    let num_col = find(&num_name, "measure")?;
    let den_col = den_name.as_deref().map(|d| find(d, "measure")).transpose()?;
    let mut values: Vec<Vec<String>> = vec![Vec::new(); q.dims.len()];
    let mut ids: Vec<HashMap<String, u32>> = vec![HashMap::new(); q.dims.len()];
    let mut leaves: HashMap<Vec<u32>, [f64; 4]> = HashMap::new();
    let (mut in_base, mut in_cur) = (0usize, 0usize);
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| format!("{file}:{line}: {e}"))?;
        let t = crate::ingest::time::parse_time_str(rec.get(time_col).unwrap_or("").trim())
            .ok_or_else(|| format!("{file}:{line}: column {:?}: {:?} is not a time", &headers[time_col], rec.get(time_col).unwrap_or("")))?;
        let base = t >= q.baseline.0 && t < q.baseline.1;
        let cur = t >= q.current.0 && t < q.current.1;
        if !base && !cur {
            continue;
        }
        let num = |c: usize| -> Result<f64, String> {
            let cell = rec.get(c).unwrap_or("").trim();
            cell.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("{file}:{line}: column {:?}: {cell:?} is not a number", &headers[c]))
        };
        let a = num(num_col)?;
        let b = match den_col {
            Some(c) => num(c)?,
            None => 0.0,
        };
        let key: Vec<u32> = dim_cols
            .iter()
            .enumerate()
            .map(|(d, &c)| {
                let v = rec.get(c).unwrap_or("").trim().to_string();
                let next = values[d].len() as u32;
                *ids[d].entry(v.clone()).or_insert_with(|| {
                    values[d].push(v);
                    next
                })
            })
            .collect();
        let e = leaves.entry(key).or_default();
        if cur {
            e[0] += a;
            e[1] += b;
            in_cur += 1;
        }
        if base {
            e[2] += a;
            e[3] += b;
            in_base += 1;
        }
    }
    if in_base == 0 {
        return Err(format!("{file}: the baseline window has no rows"));
    }
    if in_cur == 0 {
        return Err(format!("{file}: the current window has no rows"));
    }
    let scale = (q.current.1 - q.current.0) as f64 / (q.baseline.1 - q.baseline.0) as f64;
    let mut leaves: Vec<Leaf> = leaves.into_iter().map(|(attrs, [a, b, fa, fb])| Leaf { attrs, a, b, fa: fa * scale, fb: fb * scale }).collect();
    leaves.sort_by(|x, y| x.attrs.cmp(&y.attrs));
    Ok(Cube { dims: q.dims.clone(), values, leaves, ratio: den_col.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("kpi.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bad_data_names_the_column_and_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let q = Query {
            measure: Measure::Ratio("orders".into(), "visits".into()),
            dims: vec!["device".into(), "region".into()],
            baseline: window("1700000000..1700000060").unwrap(),
            current: window("1700000060..1700000120").unwrap(),
        };
        let p = write(dir.path(), "time,device,orders,visits\n1700000010,ios,3,100\n");
        assert!(cube(&p, &q).unwrap_err().contains("no dimension column \"region\""));
        let p = write(dir.path(), "time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se,three,100\n");
        let e = cube(&p, &q).unwrap_err();
        assert!(e.ends_with("kpi.csv:3: column \"orders\": \"three\" is not a number"), "{e}");
        let p = write(dir.path(), "time,device,region,orders,visits\n1700000070,ios,se,3,100\n");
        assert!(cube(&p, &q).unwrap_err().contains("baseline window has no rows"));
        let p = write(dir.path(), "time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se,2,100\n1700000070,android,se,3,100\n");
        let c = cube(&p, &q).unwrap();
        assert_eq!((c.leaves.len(), c.ratio), (2, true));
        assert!(window("5..3").is_err() && window("1700000000..1700000600").is_ok());
    }
}
