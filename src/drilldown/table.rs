//! `culprit drilldown --data FILE`: the rows (read by `culprit_readers::table`, re-exported here)
//! turned into a [`Cube`] comparing the current window with a forecast from the baseline window.
//!
//! The forecast, stated in every report:
//! - **robust** (the default when the baseline holds at least three windows as long as the
//!   current one): per leaf, the mean of those windows, leaving out windows whose total KPI is
//!   an outlier among them (beyond 3 robust standard deviations, `detect::stats::Robust`) — one bad hour in
//!   the baseline does not move it;
//! - **seasonal** (`--season P`): the windows are the current window shifted back by whole
//!   seasons (the same hours on previous days for `1d`), outliers left out as above when there
//!   are three or more (with one or two, seasonal-naive);
//! - **scaled**: the baseline's totals per leaf scaled to the current window's length (what is
//!   left when the baseline is short).
//!
//! Bad data ends with an error naming the file, the line (or Parquet row) and the column.

use super::{Cube, CubeBuilder};
use crate::model::Ts;
pub use culprit_readers::table::*;
use std::collections::HashMap;

/// The cube of `rows` for the query, and a sentence saying what the forecast is.
pub fn cube(rows: &Rows, q: &Query) -> Result<(Cube, String), DataError> {
    let len = q.current.1 - q.current.0;
    let (mut in_base, mut in_cur) = (0usize, 0usize);
    for &t in &rows.time {
        in_base += usize::from(t >= q.baseline.0 && t < q.baseline.1);
        in_cur += usize::from(t >= q.current.0 && t < q.current.1);
    }
    if in_base == 0 {
        return Err(file_error(&rows.file, format!("the baseline window ({}) has no rows", span_text(q.baseline))));
    }
    if in_cur == 0 {
        return Err(file_error(&rows.file, format!("the current window ({}) has no rows", span_text(q.current))));
    }
    // The baseline's windows as long as the current one (most recent first, at most 28).
    let mut windows: Vec<Ts> = Vec::new();
    let step = match q.method {
        Method::Seasonal(p) => Some(p),
        Method::Scaled => None,
        Method::Auto | Method::Robust => Some(len),
    };
    if let Method::Seasonal(p) = q.method {
        if p < len {
            return Err(file_error(
                &rows.file,
                format!(
                    "the season ({} s) is shorter than the current window ({} s): its windows would overlap",
                    p / 1000,
                    len / 1000
                ),
            ));
        }
    }
    if let Some(p) = step {
        let mut start = if matches!(q.method, Method::Seasonal(_)) { q.current.0 - p } else { q.baseline.1 - len };
        while start >= q.baseline.0 && windows.len() < 28 {
            if start + len <= q.baseline.1 {
                windows.push(start);
            }
            start -= p;
        }
    }
    let robust = windows.len() >= 3 || (matches!(q.method, Method::Seasonal(_)) && !windows.is_empty());
    if matches!(q.method, Method::Robust | Method::Seasonal(_)) && !robust {
        return Err(file_error(
            &rows.file,
            format!(
                "the baseline ({}) holds no window as long as the current one ({} s){}",
                span_text(q.baseline),
                len / 1000,
                if matches!(q.method, Method::Robust) { " three times" } else { " a whole season back" }
            ),
        ));
    }
    let mut b = CubeBuilder::new(rows.dims.clone());
    for (d, vals) in rows.values().iter().enumerate() {
        for v in vals {
            b.id(d, v);
        }
    }
    let statement = if robust {
        windows.sort_unstable();
        let w = windows.len();
        let mut leaf_of: HashMap<&[u32], usize> = HashMap::new();
        let mut leaves = 0usize;
        let mut per_window: Vec<[f64; 2]> = Vec::new();
        for r in 0..rows.len() {
            let t = rows.time[r];
            let cur = t >= q.current.0 && t < q.current.1;
            let k = windows.partition_point(|&s| s <= t).checked_sub(1).filter(|&k| t < windows[k] + len);
            if !cur && k.is_none() {
                continue;
            }
            let next = leaf_of.len();
            let leaf = *leaf_of.entry(rows.key(r)).or_insert(next);
            if leaf == leaves {
                leaves += 1;
                per_window.extend(std::iter::repeat_n([0.0; 2], w));
            }
            if cur {
                b.add_row(rows.key(r), rows.num[r], rows.den(r));
            }
            if let Some(k) = k {
                per_window[leaf * w + k][0] += rows.num[r];
                per_window[leaf * w + k][1] += rows.den(r);
            }
        }
        // Windows whose total KPI is an outlier among the windows (a bad hour, an outage in
        // the baseline) are left out; each segment's forecast is its mean over the rest.
        // (Not a per-segment median: for sparse counts that is biased, 0 for most leaves.)
        let mut totals = vec![[0.0f64; 2]; w];
        for (i, x) in per_window.iter().enumerate() {
            totals[i % w][0] += x[0];
            totals[i % w][1] += x[1];
        }
        let kpi: Vec<f64> = totals
            .iter()
            .map(|t| {
                if rows.ratio {
                    if t[1] > 0.0 {
                        t[0] / t[1]
                    } else {
                        f64::NAN
                    }
                } else {
                    t[0]
                }
            })
            .collect();
        let robust = crate::detect::stats::Robust::of(&kpi);
        let keep: Vec<bool> = kpi.iter().map(|&x| w < 3 || (x.is_finite() && robust.z(x).abs() <= 3.0)).collect();
        let kept = keep.iter().filter(|&&k| k).count().max(1);
        for (key, leaf) in leaf_of {
            let ws = &per_window[leaf * w..(leaf + 1) * w];
            let (fa, fb) =
                ws.iter().zip(&keep).filter(|(_, &k)| k).fold((0.0, 0.0), |(x, y), (v, _)| (x + v[0], y + v[1]));
            b.add_forecast(key, fa / kept as f64, fb / kept as f64);
        }
        let dropped = w - keep.iter().filter(|&&k| k).count();
        let left_out =
            if dropped > 0 { format!(", leaving out {dropped} whose total was an outlier") } else { String::new() };
        match q.method {
            Method::Seasonal(p) if w >= 3 => format!(
                "seasonal: per segment, the mean of {w} windows one season ({} s) apart in the baseline{left_out}",
                p / 1000
            ),
            Method::Seasonal(p) => {
                format!("seasonal-naive: per segment, the mean of {w} window(s) one season ({} s) back", p / 1000)
            }
            _ => format!(
                "robust: per segment, the mean of the {w} baseline windows as long as the current one{left_out}"
            ),
        }
    } else {
        let scale = len as f64 / (q.baseline.1 - q.baseline.0) as f64;
        for r in 0..rows.len() {
            let t = rows.time[r];
            let (num, den) = (rows.num[r], rows.den(r));
            if t >= q.current.0 && t < q.current.1 {
                b.add_row(rows.key(r), num, den);
            }
            if t >= q.baseline.0 && t < q.baseline.1 {
                b.add_forecast(rows.key(r), num * scale, den * scale);
            }
        }
        "scaled: per segment, the baseline's total scaled to the current window's length".to_string()
    };
    Ok((b.build(rows.ratio), statement))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("kpi.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn query() -> Query {
        Query {
            measure: Measure::Ratio("orders".into(), "visits".into()),
            dims: vec!["device".into(), "region".into()],
            baseline: window("1700000000..1700000060").unwrap(),
            current: window("1700000060..1700000120").unwrap(),
            method: Method::Auto,
        }
    }

    #[test]
    fn bad_data_names_the_column_and_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let q = query();
        let read_cube = |text: &str| read(&write(dir.path(), text), &q).and_then(|r| cube(&r, &q)).map(|c| c.0);
        let e = read_cube("time,device,orders,visits\n1700000010,ios,3,100\n").unwrap_err().to_string();
        assert!(
            e.contains("kpi.csv: no dimension column \"region\" (the columns are: time, device, orders, visits)"),
            "{e}"
        );
        let e = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se,three,100\n")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("kpi.csv:3: column \"orders\": \"three\" is not a number"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,\n").unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:2: column \"visits\": \"\" is not a number"), "{e}");
        let e = read_cube("time,device,region,orders,visits\nyesterday,ios,se,3,4\n").unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:2: column \"time\": \"yesterday\" is not a time"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000070,ios,se,3,100\n").unwrap_err().to_string();
        assert!(e.contains("the baseline window (2023-11-14T22:13:20Z..2023-11-14T22:14:20Z) has no rows"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        // Long enough for two reader threads: the line number counts from the file's start.
        let mut long = String::from("time,device,region,orders,visits\n");
        for i in 0..999 {
            long += &format!("{},ios,\"s\ne\",3,100\n", 1_700_000_000 + i % 120);
        }
        long += "1700000070,ios,se,x,100\n";
        let e = read_cube(&long).unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:2000: column \"orders\": \"x\" is not a number"), "{e}");
        // CRLF line endings count the same lines.
        let e = read_cube(&long.replace('\n', "\r\n").replace("\"s\r\ne\"", "\"s\ne\"")).unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:2000: column \"orders\": \"x\" is not a number"), "{e}");
        let e = read_cube("time,device,region,orders,visits\r\n1700000010,ios,se,3,100\r\n1700000070,ios,se,x,100\r\n")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("kpi.csv:3: column \"orders\": \"x\" is not a number"), "{e}");
        // A ragged line in the second thread's half names the file's line, not the chunk's.
        let mut ragged = String::from("time,device,region,orders,visits\n");
        for i in 0..100 {
            ragged += &format!("{},ios,se,3,100\n", 1_700_000_000 + i);
        }
        ragged += "1700000070,ios,se,3,100,7\n1700000071,ios,se,3,100\n";
        let e = read_cube(&ragged).unwrap_err().to_string();
        assert!(
            e.contains("line 103: 5 fields where the other lines have 6")
                || e.contains("line 102: 6 fields where the other lines have 5"),
            "{e}"
        );
        let c = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se,2,100\n1700000070,android,se,3,100\n").unwrap();
        assert_eq!((c.leaves.len(), c.ratio), (2, true));
        assert!(window("5..3").is_err() && window("1700000000..1700000600").is_ok());
        assert_eq!((duration("1d"), duration("90m").unwrap()), (Ok(86_400_000), 5_400_000));
        assert!(duration("3x").is_err() && duration("0h").is_err());
    }

    #[test]
    fn the_robust_forecast_ignores_one_bad_baseline_window() {
        let dir = tempfile::tempdir().unwrap();
        // Five one-minute baseline windows: 10 orders each, but 100 in one of them.
        let mut text = String::from("time,device,region,orders,visits\n");
        for m in 0..6 {
            let orders = if m == 2 {
                100
            } else if m == 5 {
                5
            } else {
                10
            };
            text += &format!("{},ios,se,{orders},100\n", 1_700_000_000 + 60 * m);
        }
        let p = write(dir.path(), &text);
        let q = Query {
            baseline: window("1700000000..1700000300").unwrap(),
            current: window("1700000300..1700000360").unwrap(),
            ..query()
        };
        let rows = read(&p, &q).unwrap();
        let (c, how) = cube(&rows, &q).unwrap();
        assert!(
            how.starts_with("robust")
                && how.contains("5 baseline windows")
                && how.ends_with("leaving out 1 whose total was an outlier"),
            "{how}"
        );
        assert_eq!((c.leaves[0].fa, c.leaves[0].a), (10.0, 5.0));
        let (c, how) = cube(&rows, &Query { method: Method::Scaled, ..q.clone() }).unwrap();
        assert!(how.starts_with("scaled") && (c.leaves[0].fa - 28.0).abs() < 1e-9, "{how} {}", c.leaves[0].fa);
        // One season (3 min) back is the bad minute: seasonal-naive takes it as it is.
        let (c, how) = cube(&rows, &Query { method: Method::Seasonal(180_000), ..q.clone() }).unwrap();
        assert!(how.starts_with("seasonal-naive: per segment, the mean of 1 window"), "{how}");
        assert_eq!(c.leaves[0].fa, 100.0);
        assert_eq!(rows.step(), Some(60_000));
        let e = cube(&rows, &Query { method: Method::Seasonal(30_000), ..q.clone() }).unwrap_err().to_string();
        assert!(e.contains("the season (30 s) is shorter than the current window (60 s)"), "{e}");
        // A gzip file of two members (as pigz or concatenation make) is read whole.
        let gz = |t: &str| {
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut g, t.as_bytes()).unwrap();
            g.finish().unwrap()
        };
        let (head, tail) = text.split_at(text.find("1700000180").unwrap());
        let p = dir.path().join("two.csv.GZ");
        std::fs::write(&p, [gz(head), gz(tail)].concat()).unwrap();
        assert_eq!(read(&p, &q).unwrap().len(), 6);
    }
}
