//! `culprit drilldown --data FILE`: rows (a time, dimension columns, measure columns) from CSV,
//! CSV.gz or Parquet, held in columns, and turned into a [`Cube`] comparing the current window
//! with a forecast from the baseline window.
//!
//! The forecast, stated in every report:
//! - **robust** (the default when the baseline holds at least three windows as long as the
//!   current one): per leaf, the median of those windows' totals — one bad hour in the baseline
//!   does not move it;
//! - **seasonal** (`--season P`): the windows are the current window shifted back by whole
//!   seasons (the same hours on previous days for `1d`); median of three or more, else their
//!   mean (seasonal-naive);
//! - **scaled**: the baseline's totals per leaf scaled to the current window's length (what is
//!   left when the baseline is short).
//!
//! Bad data ends with an error naming the file, the line (or Parquet row) and the column.

use super::{Cube, CubeBuilder, Element};
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Robust when the baseline allows it, else scaled.
    Auto,
    Scaled,
    Robust,
    /// Windows one season apart (ms).
    Seasonal(Ts),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub measure: Measure,
    pub dims: Vec<String>,
    pub baseline: (Ts, Ts),
    pub current: (Ts, Ts),
    pub method: Method,
}

/// Bad input: where (file and line or row), which column, what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{at}: column {column:?}: {message}")]
    Cell { at: String, column: String, message: String },
}

fn file_error(file: &str, message: impl Into<String>) -> DataError {
    DataError::File { file: file.to_string(), message: message.into() }
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

/// Parses a duration such as `1d`, `7d`, `1h`, `90m`, `3600s` into ms.
pub fn duration(s: &str) -> Result<Ts, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d, w)"))?;
    let unit = match unit {
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        u => return Err(format!("{s:?}: unknown unit {u:?} (s, m, h, d, w)")),
    };
    (n > 0).then_some(n * unit).ok_or_else(|| format!("{s:?}: must be positive"))
}

/// The rows inside the query's span (from the earliest window start to the latest end), in
/// columns.
#[derive(Debug, Clone)]
pub struct Rows {
    pub file: String,
    pub dims: Vec<String>,
    pub ratio: bool,
    /// Value ids per row, `dims.len()` per row.
    pub keys: Vec<u32>,
    pub time: Vec<Ts>,
    pub num: Vec<f64>,
    /// Empty unless `ratio`.
    pub den: Vec<f64>,
    builder: CubeBuilder,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    pub fn key(&self, row: usize) -> &[u32] {
        let d = self.dims.len();
        &self.keys[row * d..(row + 1) * d]
    }

    pub fn values(&self) -> &[Vec<String>] {
        self.builder.values()
    }

    fn den(&self, row: usize) -> f64 {
        if self.ratio { self.den[row] } else { 0.0 }
    }

    /// Per row, whether it lies inside `e` (a dimension or value the data lacks matches
    /// nothing).
    pub fn members(&self, e: &Element) -> Vec<bool> {
        let want: Option<Vec<(usize, u32)>> = e
            .iter()
            .map(|(k, v)| {
                let d = self.dims.iter().position(|x| x == k)?;
                Some((d, self.values()[d].iter().position(|x| x == v)? as u32))
            })
            .collect();
        let Some(want) = want else { return vec![false; self.len()] };
        (0..self.len()).map(|r| want.iter().all(|&(d, id)| self.key(r)[d] == id)).collect()
    }

    /// Per bucket of `step` from `from` to `to`: the sums of the numerator and denominator
    /// of the rows selected (all rows when `select` is None), and the number of rows.
    pub fn series(&self, from: Ts, to: Ts, step: Ts, select: Option<&[bool]>) -> Vec<(Ts, f64, f64, usize)> {
        let n = ((to - from + step - 1) / step).max(0) as usize;
        let mut out: Vec<(Ts, f64, f64, usize)> = (0..n).map(|i| (from + i as Ts * step, 0.0, 0.0, 0)).collect();
        for r in 0..self.len() {
            let t = self.time[r];
            if t < from || t >= to || select.is_some_and(|s| !s[r]) {
                continue;
            }
            let x = &mut out[((t - from) / step) as usize];
            x.1 += self.num[r];
            x.2 += self.den(r);
            x.3 += 1;
        }
        out
    }

    /// The most common gap between consecutive distinct times: the data's resolution.
    pub fn step(&self) -> Option<Ts> {
        let mut t = self.time.clone();
        t.sort_unstable();
        t.dedup();
        let mut gaps: HashMap<Ts, usize> = HashMap::new();
        for w in t.windows(2) {
            *gaps.entry(w[1] - w[0]).or_default() += 1;
        }
        gaps.into_iter().max_by_key(|&(g, c)| (c, std::cmp::Reverse(g))).map(|(g, _)| g)
    }

    /// The cube of the query, and a sentence saying what the forecast is.
    pub fn cube(&self, q: &Query) -> Result<(Cube, String), DataError> {
        let len = q.current.1 - q.current.0;
        let (mut in_base, mut in_cur) = (0usize, 0usize);
        for &t in &self.time {
            in_base += usize::from(t >= q.baseline.0 && t < q.baseline.1);
            in_cur += usize::from(t >= q.current.0 && t < q.current.1);
        }
        if in_base == 0 {
            return Err(file_error(&self.file, format!("the baseline window ({}) has no rows", span_text(q.baseline))));
        }
        if in_cur == 0 {
            return Err(file_error(&self.file, format!("the current window ({}) has no rows", span_text(q.current))));
        }
        // The baseline's windows as long as the current one (most recent first, at most 28).
        let mut windows: Vec<Ts> = Vec::new();
        let step = match q.method {
            Method::Seasonal(p) => Some(p),
            Method::Scaled => None,
            Method::Auto | Method::Robust => Some(len),
        };
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
                &self.file,
                format!("the baseline ({}) holds no window as long as the current one ({} s){}", span_text(q.baseline), len / 1000, if matches!(q.method, Method::Robust) { " three times" } else { " a whole season back" }),
            ));
        }
        let mut b = CubeBuilder::new(self.dims.clone());
        for (d, vals) in self.values().iter().enumerate() {
            for v in vals {
                b.id(d, v);
            }
        }
        let statement;
        if robust {
            windows.sort_unstable();
            let w = windows.len();
            let mut leaf_of: HashMap<&[u32], usize> = HashMap::new();
            let mut leaves = 0usize;
            let mut per_window: Vec<[f64; 2]> = Vec::new();
            for r in 0..self.len() {
                let t = self.time[r];
                let cur = t >= q.current.0 && t < q.current.1;
                let k = windows.partition_point(|&s| s <= t).checked_sub(1).filter(|&k| t < windows[k] + len);
                if !cur && k.is_none() {
                    continue;
                }
                let next = leaf_of.len();
                let leaf = *leaf_of.entry(self.key(r)).or_insert(next);
                if leaf == leaves {
                    leaves += 1;
                    per_window.extend(std::iter::repeat_n([0.0; 2], w));
                }
                if cur {
                    b.add_row(self.key(r), self.num[r], self.den(r));
                }
                if let Some(k) = k {
                    per_window[leaf * w + k][0] += self.num[r];
                    per_window[leaf * w + k][1] += self.den(r);
                }
            }
            for (key, leaf) in leaf_of {
                let ws = &per_window[leaf * w..(leaf + 1) * w];
                let (fa, fb) = if w >= 3 { (median(ws.iter().map(|x| x[0])), median(ws.iter().map(|x| x[1]))) } else { (ws.iter().map(|x| x[0]).sum::<f64>() / w as f64, ws.iter().map(|x| x[1]).sum::<f64>() / w as f64) };
                b.add_forecast(key, fa, fb);
            }
            statement = match q.method {
                Method::Seasonal(p) if w >= 3 => format!("seasonal: per segment, the median of {w} windows one season ({} s) apart in the baseline", p / 1000),
                Method::Seasonal(p) => format!("seasonal-naive: per segment, the mean of {w} window(s) one season ({} s) back", p / 1000),
                _ => format!("robust: per segment, the median of the {w} baseline windows as long as the current one"),
            };
        } else {
            let scale = len as f64 / (q.baseline.1 - q.baseline.0) as f64;
            for r in 0..self.len() {
                let t = self.time[r];
                let (num, den) = (self.num[r], self.den(r));
                if t >= q.current.0 && t < q.current.1 {
                    b.add_row(self.key(r), num, den);
                }
                if t >= q.baseline.0 && t < q.baseline.1 {
                    b.add_forecast(self.key(r), num * scale, den * scale);
                }
            }
            statement = "scaled: per segment, the baseline's total scaled to the current window's length".to_string();
        }
        Ok((b.build(self.ratio), statement))
    }
}

fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn span_text((a, b): (Ts, Ts)) -> String {
    format!("{}..{}", crate::report::fmt_time(a), crate::report::fmt_time(b))
}

/// The columns a query reads, checked against a file's header.
struct Columns {
    time: usize,
    dims: Vec<usize>,
    num: usize,
    den: Option<usize>,
}

const TIME_NAMES: [&str; 6] = ["time", "timestamp", "ts", "min", "date", "minute"];

fn columns(file: &str, headers: &[String], q: &Query) -> Result<Columns, DataError> {
    let find = |name: &str, what: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| file_error(file, format!("no {what} column {name:?} (the columns are: {})", headers.join(", "))))
    };
    let time = TIME_NAMES
        .iter()
        .find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)))
        .ok_or_else(|| file_error(file, format!("no time column (one of {}; the columns are: {})", TIME_NAMES.join(", "), headers.join(", "))))?;
    let dims = q.dims.iter().map(|d| find(d, "dimension")).collect::<Result<Vec<_>, _>>()?;
    let (num, den) = match &q.measure {
        Measure::Sum(m) => (find(m, "measure")?, None),
        Measure::Ratio(a, b) => (find(a, "measure")?, Some(find(b, "measure")?)),
    };
    Ok(Columns { time, dims, num, den })
}

/// Reads the rows of `path` (.csv, .csv.gz, .parquet) that fall in the query's span.
pub fn read(path: &Path, q: &Query) -> Result<Rows, DataError> {
    let file = path.display().to_string();
    let mut rows = Rows { file: file.clone(), dims: q.dims.clone(), ratio: matches!(q.measure, Measure::Ratio(..)), keys: Vec::new(), time: Vec::new(), num: Vec::new(), den: Vec::new(), builder: CubeBuilder::new(q.dims.clone()) };
    let span = (q.baseline.0.min(q.current.0), q.baseline.1.max(q.current.1));
    let mut push = |rows: &mut Rows, at: &dyn Fn() -> String, t: &str, dims: &[&str], num: Cell, den: Cell, names: &[&str; 3]| -> Result<(), DataError> {
        let cell = |column: &str, message: String| DataError::Cell { at: at(), column: column.to_string(), message };
        let t = crate::ingest::time::parse_time_str(t).ok_or_else(|| cell(names[0], format!("{t:?} is not a time")))?;
        if t < span.0 || t >= span.1 {
            return Ok(());
        }
        let num = num.map_err(|m| cell(names[1], m))?;
        let den = if rows.ratio { den.map_err(|m| cell(names[2], m))? } else { 0.0 };
        rows.time.push(t);
        rows.num.push(num);
        if rows.ratio {
            rows.den.push(den);
        }
        for (d, v) in dims.iter().enumerate() {
            let id = rows.builder.id(d, v);
            rows.keys.push(id);
        }
        Ok(())
    };
    let number = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("{s:?} is not a number"));
    if file.ends_with(".parquet") {
        return read_parquet(path, q, rows, &mut push);
    }
    let raw = std::fs::File::open(path).map_err(|e| file_error(&file, e.to_string()))?;
    let reader: Box<dyn Read> = if file.ends_with(".gz") { Box::new(flate2::read::GzDecoder::new(raw)) } else { Box::new(raw) };
    let mut r = csv::Reader::from_reader(std::io::BufReader::with_capacity(1 << 20, reader));
    let headers: Vec<String> = r.headers().map_err(|e| file_error(&file, e.to_string()))?.iter().map(str::to_string).collect();
    let c = columns(&file, &headers, q)?;
    let names = [headers[c.time].as_str(), headers[c.num].as_str(), c.den.map_or("", |d| headers[d].as_str())];
    let mut rec = csv::StringRecord::new();
    let mut line = 1usize;
    loop {
        line += 1;
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(file_error(&file, format!("line {line}: {e}"))),
        }
        let at = || format!("{file}:{line}");
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        let dims: Vec<&str> = c.dims.iter().map(|&i| get(i)).collect();
        let den = c.den.map_or(Ok(0.0), |i| number(get(i)));
        push(&mut rows, &at, get(c.time), &dims, number(get(c.num)), den, &names)?;
    }
    Ok(rows)
}

/// A measure cell: its number, or what is wrong with it.
type Cell = Result<f64, String>;
type Push<'a> = dyn FnMut(&mut Rows, &dyn Fn() -> String, &str, &[&str], Cell, Cell, &[&str; 3]) -> Result<(), DataError> + 'a;

fn read_parquet(path: &Path, q: &Query, mut rows: Rows, push: &mut Push) -> Result<Rows, DataError> {
    use arrow_array::{cast::AsArray, Array, RecordBatchReader};
    use arrow_schema::DataType;
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| file_error(&file, e.to_string()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| file_error(&file, format!("not a readable Parquet file: {e}")))?;
    let headers: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    let c = columns(&file, &headers, q)?;
    let names = [headers[c.time].as_str(), headers[c.num].as_str(), c.den.map_or("", |d| headers[d].as_str())];
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| file_error(&file, format!("row {}: {e}", row + 1)))?;
        let text = |i: usize| arrow_cast::cast(batch.column(i), &DataType::Utf8).map_err(|e| file_error(&file, format!("column {:?}: {e}", headers[i])));
        let float = |i: usize| {
            arrow_cast::cast(batch.column(i), &DataType::Float64).map_err(|_| DataError::Cell { at: format!("{file}"), column: headers[i].clone(), message: format!("has type {}, not a number", batch.column(i).data_type()) })
        };
        let time = text(c.time)?;
        let dims: Vec<_> = c.dims.iter().map(|&i| text(i)).collect::<Result<_, _>>()?;
        let num = float(c.num)?;
        let den = c.den.map(float).transpose()?;
        let (time, num) = (time.as_string::<i32>(), num.as_primitive::<arrow_array::types::Float64Type>());
        let den = den.as_ref().map(|d| d.as_primitive::<arrow_array::types::Float64Type>());
        let dims: Vec<_> = dims.iter().map(|d| d.as_string::<i32>()).collect();
        let mut cells: Vec<&str> = Vec::with_capacity(dims.len());
        for i in 0..batch.num_rows() {
            row += 1;
            let at = || format!("{file}: row {row}");
            cells.clear();
            cells.extend(dims.iter().map(|d| if d.is_null(i) { "" } else { d.value(i) }));
            let value = |a: &arrow_array::Float64Array| -> Cell {
                if a.is_null(i) {
                    Err("is null".into())
                } else {
                    Some(a.value(i)).filter(|x| x.is_finite()).ok_or_else(|| format!("{} is not a finite number", a.value(i)))
                }
            };
            let t = if time.is_null(i) { "" } else { time.value(i) };
            push(&mut rows, &at, t, &cells, value(num), den.map_or(Ok(0.0), value), &names)?;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let read_cube = |text: &str| read(&write(dir.path(), text), &q).and_then(|r| r.cube(&q)).map(|c| c.0);
        let e = read_cube("time,device,orders,visits\n1700000010,ios,3,100\n").unwrap_err().to_string();
        assert!(e.contains("kpi.csv: no dimension column \"region\" (the columns are: time, device, orders, visits)"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se,three,100\n").unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:3: column \"orders\": \"three\" is not a number"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,\n").unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:2: column \"visits\": \"\" is not a number"), "{e}");
        let e = read_cube("time,device,region,orders,visits\nyesterday,ios,se,3,4\n").unwrap_err().to_string();
        assert!(e.ends_with("kpi.csv:2: column \"time\": \"yesterday\" is not a time"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000070,ios,se,3,100\n").unwrap_err().to_string();
        assert!(e.contains("the baseline window (2023-11-14T22:13:20Z..2023-11-14T22:14:20Z) has no rows"), "{e}");
        let e = read_cube("time,device,region,orders,visits\n1700000010,ios,se,3,100\n1700000070,ios,se\n").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
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
            let orders = if m == 2 { 100 } else if m == 5 { 5 } else { 10 };
            text += &format!("{},ios,se,{orders},100\n", 1_700_000_000 + 60 * m);
        }
        let p = write(dir.path(), &text);
        let q = Query { baseline: window("1700000000..1700000300").unwrap(), current: window("1700000300..1700000360").unwrap(), ..query() };
        let rows = read(&p, &q).unwrap();
        let (c, how) = rows.cube(&q).unwrap();
        assert!(how.starts_with("robust") && how.contains("5 baseline windows"), "{how}");
        assert_eq!((c.leaves[0].fa, c.leaves[0].a), (10.0, 5.0));
        let (c, how) = rows.cube(&Query { method: Method::Scaled, ..q.clone() }).unwrap();
        assert!(how.starts_with("scaled") && (c.leaves[0].fa - 28.0).abs() < 1e-9, "{how} {}", c.leaves[0].fa);
        // One season (3 min) back is the bad minute: seasonal-naive takes it as it is.
        let (c, how) = rows.cube(&Query { method: Method::Seasonal(180_000), ..q.clone() }).unwrap();
        assert!(how.starts_with("seasonal-naive: per segment, the mean of 1 window"), "{how}");
        assert_eq!(c.leaves[0].fa, 100.0);
        assert_eq!(rows.step(), Some(60_000));
    }
}
