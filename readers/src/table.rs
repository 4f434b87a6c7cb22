//! Drill-down tables (`culprit drilldown --data FILE`): rows of a time, dimension columns and
//! measure columns, read from CSV, CSV.gz or Parquet into columns, keeping only the rows inside
//! the query's span. The drill-down (`culprit::drilldown`) builds its cube and forecast from them.
//!
//! Bad data ends with an error naming the file, the line (or Parquet row) and the column.

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

pub fn file_error(file: &str, message: impl Into<String>) -> DataError {
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
    values: Values,
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
        &self.values.values
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
    pub fn members(&self, e: &[(String, String)]) -> Vec<bool> {
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
}

/// Value ids per dimension, numbered in order of appearance.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub values: Vec<Vec<String>>,
    ids: Vec<HashMap<String, u32>>,
}

impl Values {
    pub fn new(dims: usize) -> Values {
        Values { values: vec![Vec::new(); dims], ids: vec![HashMap::new(); dims] }
    }

    /// The id of `value` in dimension `d`.
    pub fn id(&mut self, d: usize, value: &str) -> u32 {
        if let Some(&id) = self.ids[d].get(value) {
            return id;
        }
        let id = self.values[d].len() as u32;
        self.values[d].push(value.to_string());
        self.ids[d].insert(value.to_string(), id);
        id
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
    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    Null,
    #[error("{0} is not a finite number")]
    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    NotFinite(f64),
}

/// A measure cell: its number, or what is wrong with it.
type Cell = Result<f64, CellProblem>;

/// The rows one reader thread parsed, with its own value ids.
struct Part {
    ratio: bool,
    span: (Ts, Ts),
    values: Values,
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
            values: Values::new(q.dims.len()),
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
            let id = self.values.id(d, v);
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
            values: Values::new(q.dims.len()),
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
        values: first.values,
    };
    let d = rows.dims.len();
    for p in parts {
        let remap: Vec<Vec<u32>> = p
            .values
            .values
            .iter()
            .enumerate()
            .map(|(dim, vals)| vals.iter().map(|v| rows.values.id(dim, v)).collect())
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
        #[cfg(feature = "parquet")]
        {
            let mut part = Part::new(q);
            read_parquet(path, q, &mut part)?;
            return Ok(merge(file, q, vec![part]));
        }
        #[cfg(not(feature = "parquet"))]
        return Err(file_error(&file, "Parquet is not read by this build (the `parquet` feature is off)"));
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

#[cfg(feature = "parquet")]
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
