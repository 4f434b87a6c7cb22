//! `culprit drilldown --data FILE`: rows (a time, dimension columns, measure columns) from CSV,
//! CSV.gz or Parquet, held in columns, and turned into a [`Cube`] comparing the current window
//! with a forecast from the baseline window.
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

use super::{Cube, CubeBuilder, Element};
use crate::model::Ts;
use std::collections::HashMap;
use std::io::Read as _;
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

/// A window or a duration that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanError {
    #[error("{0:?}: expected START..END")]
    NotAWindow(String),
    #[error("{0:?} is not a time")]
    NotATime(String),
    #[error("{0:?}: the window ends before it starts")]
    Reversed(String),
    #[error("{0:?}: expected a number and a unit (s, m, h, d, w)")]
    NotADuration(String),
    #[error("{text:?}: unknown unit {unit:?} (s, m, h, d, w)")]
    Unit { text: String, unit: String },
    #[error("{0:?}: must be positive")]
    NotPositive(String),
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Parses `T0..T1` (Unix seconds or ms, or RFC 3339).
pub fn window(s: &str) -> Result<(Ts, Ts), SpanError> {
    let (a, b) = s.split_once("..").ok_or_else(|| SpanError::NotAWindow(s.to_string()))?;
    let t = |x: &str| crate::ingest::time::parse_time_str(x.trim()).ok_or_else(|| SpanError::NotATime(x.to_string()));
    let (a, b) = (t(a)?, t(b)?);
    if b <= a {
        return Err(SpanError::Reversed(s.to_string()));
    }
    Ok((a, b))
}

/// Parses a duration such as `1d`, `7d`, `1h`, `90m`, `3600s` into ms.
pub fn duration(s: &str) -> Result<Ts, SpanError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| SpanError::NotADuration(s.to_string()))?;
    let unit = match unit {
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        u => return Err(SpanError::Unit { text: s.to_string(), unit: u.to_string() }),
    };
    if n <= 0 {
        return Err(SpanError::NotPositive(s.to_string()));
    }
    n.checked_mul(unit).filter(|ms| *ms < 100 * 365 * 86_400_000).ok_or_else(|| SpanError::TooLong(s.to_string()))
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

    /// A row's denominator (0 for a total).
    pub fn den(&self, row: usize) -> f64 {
        if self.ratio {
            self.den[row]
        } else {
            0.0
        }
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
        if let Method::Seasonal(p) = q.method {
            if p < len {
                return Err(file_error(
                    &self.file,
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
                &self.file,
                format!(
                    "the baseline ({}) holds no window as long as the current one ({} s){}",
                    span_text(q.baseline),
                    len / 1000,
                    if matches!(q.method, Method::Robust) { " three times" } else { " a whole season back" }
                ),
            ));
        }
        let mut b = CubeBuilder::new(self.dims.clone());
        for (d, vals) in self.values().iter().enumerate() {
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
                    if self.ratio {
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
            "scaled: per segment, the baseline's total scaled to the current window's length".to_string()
        };
        Ok((b.build(self.ratio), statement))
    }
}

pub fn span_text((a, b): (Ts, Ts)) -> String {
    format!("{}..{}", crate::ingest::time::fmt_time(a), crate::ingest::time::fmt_time(b))
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
        headers.iter().position(|h| h == name).ok_or_else(|| {
            file_error(file, format!("no {what} column {name:?} (the columns are: {})", headers.join(", ")))
        })
    };
    let time =
        TIME_NAMES.iter().find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n))).ok_or_else(|| {
            file_error(
                file,
                format!("no time column (one of {}; the columns are: {})", TIME_NAMES.join(", "), headers.join(", ")),
            )
        })?;
    let dims = q.dims.iter().map(|d| find(d, "dimension")).collect::<Result<Vec<_>, _>>()?;
    let (num, den) = match &q.measure {
        Measure::Sum(m) => (find(m, "measure")?, None),
        Measure::Ratio(a, b) => (find(a, "measure")?, Some(find(b, "measure")?)),
    };
    Ok(Columns { time, dims, num, den })
}

/// What is wrong with a measure cell.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum CellProblem {
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("is null")]
    Null,
    #[error("{0} is not a finite number")]
    NotFinite(f64),
}

/// A measure cell: its number, or what is wrong with it.
type Cell = Result<f64, CellProblem>;

/// The rows one reader thread parsed, with its own value ids.
struct Part {
    ratio: bool,
    span: (Ts, Ts),
    builder: CubeBuilder,
    keys: Vec<u32>,
    time: Vec<Ts>,
    num: Vec<f64>,
    den: Vec<f64>,
}

impl Part {
    fn new(q: &Query) -> Part {
        Part {
            ratio: matches!(q.measure, Measure::Ratio(..)),
            span: (q.baseline.0.min(q.current.0), q.baseline.1.max(q.current.1)),
            builder: CubeBuilder::new(q.dims.clone()),
            keys: Vec::new(),
            time: Vec::new(),
            num: Vec::new(),
            den: Vec::new(),
        }
    }

    /// One row; `at` names it for errors, `names` are the time, numerator and denominator
    /// columns' names.
    fn push(
        &mut self,
        at: &dyn Fn() -> String,
        t: &str,
        dims: &[&str],
        num: Cell,
        den: Cell,
        names: &[&str; 3],
    ) -> Result<(), DataError> {
        let cell = |column: &str, message: String| DataError::Cell { at: at(), column: column.to_string(), message };
        // Epoch integers (the common case) parse once; anything else as `parse_time_str` does.
        let t = match t.parse::<i64>() {
            Ok(i) if i.unsigned_abs() < 1 << 53 => crate::ingest::time::from_number(i as f64),
            _ => {
                crate::ingest::time::parse_time_str(t).ok_or_else(|| cell(names[0], format!("{t:?} is not a time")))?
            }
        };
        if t < self.span.0 || t >= self.span.1 {
            return Ok(());
        }
        let num = num.map_err(|m| cell(names[1], m.to_string()))?;
        let den = if self.ratio { den.map_err(|m| cell(names[2], m.to_string()))? } else { 0.0 };
        self.time.push(t);
        self.num.push(num);
        if self.ratio {
            self.den.push(den);
        }
        for (d, v) in dims.iter().enumerate() {
            let id = self.builder.id(d, v);
            self.keys.push(id);
        }
        Ok(())
    }
}

/// Parts in file order into rows, value ids renumbered into the first part's.
fn merge(file: String, q: &Query, parts: Vec<Part>) -> Rows {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Rows {
            file,
            dims: q.dims.clone(),
            ratio: matches!(q.measure, Measure::Ratio(..)),
            keys: Vec::new(),
            time: Vec::new(),
            num: Vec::new(),
            den: Vec::new(),
            builder: CubeBuilder::new(q.dims.clone()),
        };
    };
    let mut rows = Rows {
        file,
        dims: q.dims.clone(),
        ratio: first.ratio,
        keys: first.keys,
        time: first.time,
        num: first.num,
        den: first.den,
        builder: first.builder,
    };
    let d = rows.dims.len();
    for p in parts {
        let remap: Vec<Vec<u32>> = p
            .builder
            .values()
            .iter()
            .enumerate()
            .map(|(dim, vals)| vals.iter().map(|v| rows.builder.id(dim, v)).collect())
            .collect();
        rows.keys.extend(p.keys.iter().enumerate().map(|(i, &k)| remap[i % d][k as usize]));
        rows.time.extend(p.time);
        rows.num.extend(p.num);
        rows.den.extend(p.den);
    }
    rows
}

/// Reads the rows of `path` (.csv, .csv.gz, .parquet) that fall in the query's span. A CSV is
/// parsed on two threads, each from a line boundary (outside quotes) near half the file.
pub fn read(path: &Path, q: &Query) -> Result<Rows, DataError> {
    let file = path.display().to_string();
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        let mut part = Part::new(q);
        read_parquet(path, q, &mut part)?;
        return Ok(merge(file, q, vec![part]));
    }
    // Whole (decompressed; multi-member gzip too) in memory, so two threads can parse halves.
    let mut reader = crate::ingest::io::open(path).map_err(|e| file_error(&file, e.to_string()))?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| file_error(&file, e.to_string()))?;
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let headers: Vec<String> =
        r.headers().map_err(|e| file_error(&file, e.to_string()))?.iter().map(str::to_string).collect();
    let mut body_start = r.position().byte() as usize;
    drop(r);
    // After a CRLF header the reader stops before the `\n`.
    if bytes.get(body_start) == Some(&b'\n') {
        body_start += 1;
    }
    let c = columns(&file, &headers, q)?;
    let names = [headers[c.time].as_str(), headers[c.num].as_str(), c.den.map_or("", |d| headers[d].as_str())];
    let body = &bytes[body_start.min(bytes.len())..];
    let split = split_point(body);
    let first_line = 2 + bytecount(&bytes[..body_start.min(bytes.len())]).saturating_sub(1);
    let chunks = [(&body[..split], first_line), (&body[split..], first_line + bytecount(&body[..split]))];
    let results: Vec<Result<Part, DataError>> = std::thread::scope(|s| {
        let (file, c, names) = (&file, &c, &names);
        let handles: Vec<_> = chunks
            .iter()
            .map(|&(chunk, line0)| s.spawn(move || parse_chunk(file, q, c, names, chunk, line0)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(file_error(file, "a reader thread failed"))))
            .collect()
    });
    let parts = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(merge(file, q, parts))
}

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&x| x == b'\n').count()
}

/// A byte offset just after a newline near the middle of `body` that is outside quotes (an
/// even number of `"` before it), or 0 when there is none.
fn split_point(body: &[u8]) -> usize {
    let mut quotes = 0usize;
    let half = body.len() / 2;
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'"' => quotes += 1,
            b'\n' if i >= half && quotes.is_multiple_of(2) => return i + 1,
            _ => {}
        }
    }
    0
}

fn parse_chunk(
    file: &str,
    q: &Query,
    c: &Columns,
    names: &[&str; 3],
    chunk: &[u8],
    first_line: usize,
) -> Result<Part, DataError> {
    let mut part = Part::new(q);
    let number =
        |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| CellProblem::NotANumber(s.to_string()));
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(chunk);
    let mut rec = csv::StringRecord::new();
    let width = c.dims.iter().chain([&c.time, &c.num]).chain(c.den.iter()).max().map_or(0, |m| m + 1);
    let (mut line, mut last_byte) = (first_line, 0usize);
    loop {
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(file_error(file, format!("line {line}: {}", csv_problem(&e)))),
        }
        let at = || format!("{file}:{line}");
        if rec.len() < width {
            return Err(file_error(
                file,
                format!("line {line}: {} fields, but the columns read need {width}", rec.len()),
            ));
        }
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        let dims: Vec<&str> = c.dims.iter().map(|&i| get(i)).collect();
        let den = c.den.map_or(Ok(0.0), |i| number(get(i)));
        part.push(&at, get(c.time), &dims, number(get(c.num)), den, names)?;
        // Physical lines, counted from the bytes (quoted newlines and CRLF included).
        let mut byte = (r.position().byte() as usize).min(chunk.len());
        // After a CRLF record the reader stops before the `\n`.
        if chunk.get(byte) == Some(&b'\n') {
            byte += 1;
        }
        line += bytecount(&chunk[last_byte..byte]);
        last_byte = byte;
    }
    Ok(part)
}

/// What is wrong with a CSV record, without the reader's own position (it counts from the
/// thread's chunk, not the file).
fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the other lines have {expected_len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8 ({err})"),
        csv::ErrorKind::Io(err) => err.to_string(),
        _ => "not readable as CSV".to_string(),
    }
}

fn read_parquet(path: &Path, q: &Query, part: &mut Part) -> Result<(), DataError> {
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
        let text = |i: usize| {
            arrow_cast::cast(batch.column(i), &DataType::Utf8)
                .map_err(|e| file_error(&file, format!("column {:?}: {e}", headers[i])))
        };
        let float = |i: usize| {
            arrow_cast::cast(batch.column(i), &DataType::Float64).map_err(|_| DataError::Cell {
                at: file.clone(),
                column: headers[i].clone(),
                message: format!("has type {}, not a number", batch.column(i).data_type()),
            })
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
                    Err(CellProblem::Null)
                } else {
                    Some(a.value(i)).filter(|x| x.is_finite()).ok_or(CellProblem::NotFinite(a.value(i)))
                }
            };
            let t = if time.is_null(i) { "" } else { time.value(i) };
            part.push(&at, t, &cells, value(num), den.map_or(Ok(0.0), value), &names)?;
        }
    }
    Ok(())
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
        let (c, how) = rows.cube(&q).unwrap();
        assert!(
            how.starts_with("robust")
                && how.contains("5 baseline windows")
                && how.ends_with("leaving out 1 whose total was an outlier"),
            "{how}"
        );
        assert_eq!((c.leaves[0].fa, c.leaves[0].a), (10.0, 5.0));
        let (c, how) = rows.cube(&Query { method: Method::Scaled, ..q.clone() }).unwrap();
        assert!(how.starts_with("scaled") && (c.leaves[0].fa - 28.0).abs() < 1e-9, "{how} {}", c.leaves[0].fa);
        // One season (3 min) back is the bad minute: seasonal-naive takes it as it is.
        let (c, how) = rows.cube(&Query { method: Method::Seasonal(180_000), ..q.clone() }).unwrap();
        assert!(how.starts_with("seasonal-naive: per segment, the mean of 1 window"), "{how}");
        assert_eq!(c.leaves[0].fa, 100.0);
        assert_eq!(rows.step(), Some(60_000));
        let e = rows.cube(&Query { method: Method::Seasonal(30_000), ..q.clone() }).unwrap_err().to_string();
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
