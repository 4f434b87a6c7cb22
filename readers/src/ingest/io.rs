//! The plumbing every reader shares: opening plain or gzip files, walking them line by line or
//! CSV record by CSV record without holding them whole, JSON value helpers, and issue building.
//!
//! **Invariant:** nothing here panics on any byte sequence; I/O errors in the middle of a file
//! end that file with one issue, never the whole load.

use super::IngestError;
use crate::model::{ReadHints, ReadIssue, ReadReport, Ts};
use flate2::read::MultiGzDecoder;
use serde_json::Value;
use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a file is named in issues and errors.
pub fn display(path: &Path) -> String {
    path.display().to_string()
}

pub fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The lowercased file name without a trailing `.gz`: what format detection looks at.
pub fn base_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match name.strip_suffix(".gz") {
        Some(base) => base.to_string(),
        None => name,
    }
}

/// Past this many decompressed bytes, a gzip stream may inflate at most [`MAX_RATIO`] times what
/// it read: a bomb (2 MB inflating to 2 GiB) ends with an error instead of filling memory.
pub const RATIO_FREE_BYTES: u64 = 32 << 20;
pub const MAX_RATIO: u64 = 200;

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decompressing reader that refuses to inflate beyond [`MAX_RATIO`] (after the first
/// [`RATIO_FREE_BYTES`]).
struct Bounded<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    out: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let compressed = self.compressed.load(Ordering::Relaxed);
        let allowed = compressed.saturating_mul(MAX_RATIO).max(RATIO_FREE_BYTES);
        if self.out > allowed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "gzip stream inflates {} bytes from {} (compression ratio above {MAX_RATIO}:1): refused as a \
                     decompression bomb",
                    self.out, compressed
                ),
            ));
        }
        Ok(n)
    }
}

/// Opens a file for streaming, decompressing it when its name ends in `.gz` (bounded by
/// [`MAX_RATIO`]). The reader may move to another thread (see [`for_each_json_line`]).
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Open { path: path.to_path_buf(), source })?;
    if is_gz(path) {
        let compressed = Arc::new(AtomicU64::new(0));
        let counted = Counted { inner: file, bytes: compressed.clone() };
        let inflating = MultiGzDecoder::new(BufReader::new(counted));
        Ok(Box::new(BufReader::new(Bounded { inner: inflating, compressed, out: 0 })))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

pub fn issue(file: &str, line: u64, field: Option<&str>, message: impl Into<String>) -> ReadIssue {
    ReadIssue { file: file.to_string(), line, field: field.map(str::to_string), message: message.into() }
}

/// A file read line by line. Lines that are not UTF-8 are skipped with an issue; a read error
/// (say, a corrupt gzip stream) ends the file with an issue.
pub struct Lines {
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    line: u64,
    file: String,
    done: bool,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Lines, IngestError> {
        Ok(Lines { reader: open(path)?, buf: Vec::new(), line: 0, file: display(path), done: false })
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The next line (1-based number, text without the line ending), or None at the end.
    pub fn next_line(&mut self, report: &mut ReadReport) -> Option<(u64, &str)> {
        loop {
            match self.next_item()? {
                Ok(n) => return Some((n, self.text())),
                Err(issue) => report.skip(issue),
            }
        }
    }

    /// The line [`Lines::next_item`] last read, without its line ending (and a first line's BOM).
    fn bytes(&self) -> &[u8] {
        let mut end = self.buf.len();
        while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let start = if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        &self.buf[start.min(end)..end]
    }

    /// The text of the line [`Lines::next_item`] last returned.
    fn text(&self) -> &str {
        std::str::from_utf8(self.bytes()).unwrap_or("")
    }

    /// Moves to the next line: its number (its text is then [`Lines::text`]), or the issue of a
    /// line that cannot be read; None at the end.
    fn next_item(&mut self) -> Option<Result<u64, ReadIssue>> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    self.line += 1;
                    if std::str::from_utf8(self.bytes()).is_err() {
                        return Some(Err(issue(&self.file, self.line, None, "line is not valid UTF-8")));
                    }
                    return Some(Ok(self.line));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    let message = format!("read error, rest of file skipped: {e}");
                    return Some(Err(issue(&self.file, self.line + 1, None, message)));
                }
            }
        }
    }
}

/// A CSV file read record by record, with its header. Fields are decoded lossily, so a stray
/// invalid byte in a log message does not cost the record.
pub struct CsvRows {
    reader: csv::Reader<Box<dyn BufRead + Send>>,
    record: csv::ByteRecord,
    pub headers: Vec<String>,
    file: String,
    done: bool,
}

impl CsvRows {
    pub fn open(path: &Path) -> Result<CsvRows, IngestError> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(open(path)?);
        let headers = match reader.byte_headers() {
            Ok(h) => h.iter().map(|f| String::from_utf8_lossy(f).trim().to_string()).collect(),
            Err(e) => {
                return Err(IngestError::Invalid {
                    file: display(path),
                    field: "header".into(),
                    message: format!("cannot read the CSV header: {e}"),
                })
            }
        };
        Ok(CsvRows { reader, record: csv::ByteRecord::new(), headers, file: display(path), done: false })
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// Index of the first column whose normalised name (lowercase, no `_`, `-`, `.`, spaces) is
    /// one of `names` (given normalised), trying the names in order.
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        let norm: Vec<String> = self.headers.iter().map(|h| normalise(h)).collect();
        names.iter().find_map(|n| norm.iter().position(|h| h == n))
    }

    /// [`CsvRows::column`] for names as users spell them (normalised here).
    pub fn column_of(&self, names: &[String]) -> Option<usize> {
        let norm: Vec<String> = names.iter().map(|n| normalise(n)).collect();
        self.column(&norm.iter().map(String::as_str).collect::<Vec<&str>>())
    }

    /// The first of `names` present, or an error naming the file and `field`: a column the
    /// reader cannot do without.
    pub fn require(&self, names: &[&str], field: &str) -> Result<usize, IngestError> {
        self.column(names).ok_or_else(|| self.missing(field))
    }

    /// The error for a required column that is absent.
    pub fn missing(&self, field: &str) -> IngestError {
        IngestError::Invalid { file: self.file.clone(), field: field.into(), message: "column missing".into() }
    }

    /// Moves to the next record; returns its 1-based line, or None at the end.
    pub fn next_record(&mut self, report: &mut ReadReport) -> Option<u64> {
        loop {
            if self.done {
                return None;
            }
            let before = self.reader.position().byte();
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Ok(true) => return Some(self.record.position().map_or(0, |p| p.line())),
                Err(e) => {
                    let line = e.position().map_or(self.reader.position().line(), |p| p.line());
                    let fatal = matches!(e.kind(), csv::ErrorKind::Io(_)) || self.reader.position().byte() == before;
                    if fatal {
                        self.done = true;
                        report.skip(issue(&self.file, line, None, format!("read error, rest of file skipped: {e}")));
                        return None;
                    }
                    report.skip(issue(&self.file, line, None, e.to_string()));
                }
            }
        }
    }

    /// Field `i` of the current record, trimmed; empty when the row is short.
    pub fn get(&self, i: usize) -> std::borrow::Cow<'_, str> {
        match self.record.get(i) {
            Some(b) => match String::from_utf8_lossy(b) {
                std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim()),
                std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.trim().to_string()),
            },
            None => std::borrow::Cow::Borrowed(""),
        }
    }
}

/// Column-name normal form for alias matching: lowercase without `_`, `-`, `.` and spaces.
pub fn normalise(h: &str) -> String {
    h.chars().filter(|c| !matches!(c, '_' | '-' | '.' | ' ')).flat_map(char::to_lowercase).collect()
}

/// A `Read` that counts the newlines passed through it, so a streamed JSON document knows its line.
struct CountingReader<R> {
    inner: R,
    newlines: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let count = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        self.newlines.set(self.newlines.get() + count);
        Ok(n)
    }
}

/// Calls `f(line, document)` for every JSON document in a file: one per line (OTLP file exporter,
/// JSON lines), or, when the first line is not a document alone, the whole file read as a
/// sequence of (pretty-printed) documents. Unparseable lines are skipped with an issue.
pub fn for_each_json_doc(
    path: &Path,
    report: &mut ReadReport,
    f: &mut dyn FnMut(u64, Value, &mut ReadReport),
) -> Result<(), IngestError> {
    let mut lines = Lines::open(path)?;
    let file = lines.file().to_string();
    let mut first = true;
    while let Some((n, line)) = lines.next_line(report) {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(v) => f(n, v, report),
            Err(e) => {
                if first && whole_file_docs(path, &file, report, f)? {
                    return Ok(());
                }
                report.skip(issue(&file, n, None, format!("not valid JSON: {e}")));
            }
        }
        first = false;
    }
    Ok(())
}

/// Reads the file as a stream of JSON documents. Returns false (having done nothing) when the
/// first document already fails: then the file is JSON lines with a bad first line.
fn whole_file_docs(
    path: &Path,
    file: &str,
    report: &mut ReadReport,
    f: &mut dyn FnMut(u64, Value, &mut ReadReport),
) -> Result<bool, IngestError> {
    let newlines = Rc::new(Cell::new(0u64));
    let reader = CountingReader { inner: open(path)?, newlines: Rc::clone(&newlines) };
    let mut docs = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
    let mut seen = false;
    let mut start = 1;
    loop {
        match docs.next() {
            None => return Ok(seen),
            Some(Ok(v)) => {
                seen = true;
                f(start, v, report);
                start = newlines.get() + 1;
            }
            Some(Err(e)) => {
                if !seen {
                    return Ok(false);
                }
                report.skip(issue(file, e.line() as u64, None, format!("not valid JSON, rest of file skipped: {e}")));
                return Ok(true);
            }
        }
    }
}

/// An error and its sources, `outer: inner: …`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The first of `keys` present in `obj` with a non-null value. A key with dots is also looked up
/// as a path of nested objects (`kubernetes.labels.app`), as log shippers nest them.
pub fn get<'a>(obj: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| obj.get(k).or_else(|| nested(obj, k)).filter(|v| !v.is_null()))
}

fn nested<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    if !path.contains('.') {
        return None;
    }
    path.split('.').try_fold(obj, |v, part| v.get(part))
}

/// Where a JSON record may name its service, most specific first: culprit's own field, the
/// OpenTelemetry attribute, then what log shippers and platforms call it (Kubernetes container,
/// app label, Prometheus job).
pub const SERVICE_FIELDS: [&str; 16] = [
    "service",
    "service.name",
    "service_name",
    "serviceName",
    "resource.service.name",
    "app",
    "application",
    "app_name",
    "k8s.container.name",
    "k8s.deployment.name",
    "kubernetes.container_name",
    "kubernetes.labels.app",
    "container_name",
    "container",
    "job",
    "component",
];

/// The issue when none of [`SERVICE_FIELDS`] is there.
pub const NO_SERVICE: &str = "missing (nor any of service.name, app, k8s.container.name, job, …)";

/// Where a JSON record may hold its time.
pub const TIME_FIELDS: [&str; 8] =
    ["time", "timestamp", "ts", "@timestamp", "datetime", "date", "timeUnixNano", "eventTime"];

/// Where a JSON log record may hold its text, and its level.
pub const MESSAGE_FIELDS: [&str; 6] = ["message", "msg", "body", "log", "text", "event"];
pub const LEVEL_FIELDS: [&str; 5] = ["level", "severity", "severity_text", "lvl", "detected_level"];

thread_local! {
    /// The hints of the bundle being read (see [`with_hints`]).
    static HINTS: std::cell::RefCell<std::sync::Arc<ReadHints>> = std::cell::RefCell::default();
}

/// Runs `f` (the reading of one bundle's files) with its hints: its own field spellings come
/// first, and syslog dates take the year of its incident.
pub fn with_hints<T>(hints: &std::sync::Arc<ReadHints>, f: impl FnOnce() -> T) -> T {
    /// Puts the earlier hints back, also when `f` panics (the eval harness catches panics).
    struct Restore(Option<std::sync::Arc<ReadHints>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(h) = self.0.take() {
                HINTS.with(|cell| cell.replace(h));
            }
        }
    }
    let _restore = Restore(Some(HINTS.with(|h| h.replace(hints.clone()))));
    super::time::with_reference(hints.reference, f)
}

/// The fields to try for one thing: the hints' spellings (from `pick`), then the built-in ones.
pub fn fields(pick: fn(&ReadHints) -> &Vec<String>, builtin: &[&str]) -> Vec<String> {
    HINTS.with(|h| {
        let h = h.borrow();
        pick(&h).iter().cloned().chain(builtin.iter().map(|s| s.to_string())).collect()
    })
}

/// The first of the hinted, then built-in, fields present in `obj`.
pub fn get_hinted<'a>(obj: &'a Value, pick: fn(&ReadHints) -> &Vec<String>, builtin: &[&str]) -> Option<&'a Value> {
    let own = HINTS.with(|h| {
        let h = h.borrow();
        let own = pick(&h);
        own.iter().find_map(|k| obj.get(k.as_str()).or_else(|| nested(obj, k)).filter(|v| !v.is_null()))
    });
    own.or_else(|| get(obj, builtin))
}

/// The separator a bundle declared between service and metric in wide CSV column names.
pub fn metric_separator() -> Option<String> {
    HINTS.with(|h| h.borrow().metric_separator.clone())
}

/// A JSON value as text: strings as they are, anything else as compact JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A non-empty string or number as text; None for anything else.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A time given as a JSON number (magnitude decides the unit) or string.
pub fn time_of(v: &Value) -> Option<Ts> {
    match v {
        Value::Number(n) => super::time::parse_time_str(&n.to_string()),
        Value::String(s) => super::time::parse_time_str(s),
        _ => None,
    }
}

/// A nanosecond count given as a JSON string or number (OTLP writes int64 as strings); None
/// beyond the plausible range of times.
pub fn nanos_of(v: &Value) -> Option<i128> {
    let ns = match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().filter(|x| x.is_finite()).map(|x| x.round() as i128)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().filter(|x| x.is_finite()).map(|x| x.round() as i128))
        }
        _ => None,
    };
    ns.filter(|ns| super::time::plausible(super::time::nanos_to_ms(*ns)))
}

/// A record parser's verdict: the record, or the field at fault and why.
pub type Parsed<T> = Result<T, (&'static str, String)>;

/// Streams a JSON-lines file: each non-empty line must be one JSON object, handed to `parse`.
/// Lines that are not objects, and records `parse` rejects, are skipped and reported with file,
/// line and field; the good ones go to `f`.
pub fn for_each_json_line<T: Send>(
    path: &Path,
    report: &mut ReadReport,
    parse: impl Fn(&Value) -> Parsed<T> + Sync,
    f: impl FnMut(T),
) -> Result<(), IngestError> {
    for_each_json_line_fast(path, report, |_: &RawFields| None, parse, f)
}

/// [`for_each_json_line`] with a fast path: `fast` reads a line's top-level fields without a
/// `Value` of the whole line, and answers None for anything it does not handle exactly as `parse`
/// would (which then reads the line).
pub fn for_each_json_line_fast<T: Send>(
    path: &Path,
    report: &mut ReadReport,
    fast: impl Fn(&RawFields) -> Option<T> + Sync,
    parse: impl Fn(&Value) -> Parsed<T> + Sync,
    mut f: impl FnMut(T),
) -> Result<(), IngestError> {
    let mut lines = Lines::open(path)?;
    // Reading and JSON parsing run on a thread of their own, a batch ahead of `f` (which mines
    // templates, say): two cores on one file. Records and issues reach `f` and `report` in the
    // file's order, as if read here.
    let hints = HINTS.with(|h| h.borrow().clone());
    let reference = super::time::reference();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<T, ReadIssue>>>(BATCHES_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Owned here, so the channel closes when this thread is done.
            let tx = tx;
            with_hints(&hints, || {
                super::time::with_reference(reference, || {
                    let mut batch = Vec::with_capacity(BATCH_LINES);
                    while let Some(item) = lines.next_item() {
                        let parsed = match item {
                            Ok(n) => match parse_json_line(lines.text(), &fast, &parse) {
                                None => continue,
                                Some(parsed) => parsed.map_err(|(field, msg)| issue(&lines.file, n, field, msg)),
                            },
                            Err(issue) => Err(issue),
                        };
                        batch.push(parsed);
                        if batch.len() == BATCH_LINES
                            && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES))).is_err()
                        {
                            return;
                        }
                    }
                    let _ = tx.send(batch);
                })
            })
        });
        for item in rx.iter().flatten() {
            match item {
                Ok(r) => {
                    report.records_read += 1;
                    f(r);
                }
                Err(issue) => report.skip(issue),
            }
        }
    });
    Ok(())
}

/// A JSON object's top-level fields as written, values unparsed (and keys unescaped only when
/// they need it): a line is checked as JSON and split into fields without allocating a `Value` for
/// it, and only the fields asked for are read.
pub struct RawFields<'a> {
    pairs: Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>,
}

impl<'de> serde::Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawFields<'de>, A::Error> {
                let mut pairs = Vec::with_capacity(8);
                while let Some(Key(k)) = map.next_key()? {
                    pairs.push((k, map.next_value()?));
                }
                Ok(RawFields { pairs })
            }
        }
        /// A key, borrowed from the line unless it holds escapes.
        struct Key<'a>(std::borrow::Cow<'a, str>);
        impl<'de> serde::Deserialize<'de> for Key<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct K;
                impl<'de> serde::de::Visitor<'de> for K {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Borrowed(v)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Owned(v.to_string())))
                    }
                }
                d.deserialize_str(K)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// One top-level field of [`RawFields`], as written.
#[derive(Clone, Copy)]
pub struct RawField<'a>(&'a serde_json::value::RawValue);

impl<'a> RawField<'a> {
    /// The string it holds (borrowed when it has no escapes); None for any other JSON type.
    pub fn str(self) -> Option<std::borrow::Cow<'a, str>> {
        let raw = self.0.get();
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(raw).ok().map(std::borrow::Cow::Owned)
        } else {
            Some(std::borrow::Cow::Borrowed(inner))
        }
    }

    /// The text as written (a number's digits, an array's brackets).
    pub fn raw(self) -> &'a str {
        self.0.get()
    }

    pub fn value(self) -> Option<Value> {
        serde_json::from_str(self.0.get()).ok()
    }
}

/// What [`RawFields::first`] found.
pub enum Lookup<'a> {
    Found(RawField<'a>),
    Absent,
    /// The key names a nested path whose root is there: only a `Value` can follow it.
    Nested,
}

impl<'a> RawFields<'a> {
    /// The value of top-level `key` (the last, when repeated, as `serde_json` keeps it).
    pub fn get(&self, key: &str) -> Option<RawField<'a>> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| RawField(v))
    }

    /// The first of `keys` present and not null, in the order [`get`] tries them, as long as no
    /// dotted key before it could reach into a nested object.
    pub fn first(&self, keys: &[&str]) -> Lookup<'a> {
        for k in keys {
            if let Some(v) = self.get(k).filter(|v| v.raw() != "null") {
                return Lookup::Found(v);
            }
            if let Some((root, _)) = k.split_once('.') {
                if self.get(root).is_some() {
                    return Lookup::Nested;
                }
            }
        }
        Lookup::Absent
    }
}

/// Whether the bundle being read spells any of these fields its own way (see [`get_hinted`]).
pub fn hinted(picks: &[fn(&ReadHints) -> &Vec<String>]) -> bool {
    HINTS.with(|h| {
        let h = h.borrow();
        picks.iter().any(|pick| !pick(&h).is_empty())
    })
}

/// Lines parsed per batch handed from [`for_each_json_line`]'s reading thread, and batches it may
/// run ahead: bounds what is in flight (a few MB) whatever the file's size.
const BATCH_LINES: usize = 2048;
const BATCHES_AHEAD: usize = 4;

/// One JSON line through `parse`: None for a blank line, else the record or the field and message
/// of why it cannot be read.
fn parse_json_line<T>(
    line: &str,
    fast: &impl Fn(&RawFields) -> Option<T>,
    parse: &impl Fn(&Value) -> Parsed<T>,
) -> Option<Result<T, (Option<&'static str>, String)>> {
    let text = line.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(r) = serde_json::from_str::<RawFields>(text).ok().and_then(|fields| fast(&fields)) {
        return Some(Ok(r));
    }
    Some(match serde_json::from_str::<Value>(text) {
        Ok(obj @ Value::Object(_)) => parse(&obj).map_err(|(field, msg)| (Some(field), msg)),
        Ok(_) => Err((None, "not a JSON object".to_string())),
        Err(e) => Err((None, format!("not valid JSON: {e}"))),
    })
}

/// Where the records sit in an OTLP/JSON export request: `resourceLogs` → `scopeLogs` (or the
/// older `instrumentationLibraryLogs`) → `logRecords`, and the same shape for spans.
pub struct OtlpShape {
    /// The resources' key (Tempo's API answers `batches` for `resourceSpans`: `also`).
    pub resources: &'static str,
    pub also: Option<&'static str>,
    pub scopes: [&'static str; 2],
    pub records: &'static str,
}

/// Streams the records of an OTLP/JSON file (one export request per line, or one document),
/// each parsed with its resource's `service.name`; rejected records are skipped and reported.
pub fn for_each_otlp_record<T>(
    path: &Path,
    report: &mut ReadReport,
    shape: &OtlpShape,
    parse: impl Fn(&Value, Option<&str>) -> Parsed<T>,
    mut f: impl FnMut(T),
) -> Result<(), IngestError> {
    let file = display(path);
    for_each_json_doc(path, report, &mut |n, doc, report| {
        otlp_doc_records(&doc, &file, n, report, shape, &parse, &mut f)
    })
}

/// The records of one OTLP/JSON export request (`doc`, line `n` of `file`), each parsed with its
/// resource's `service.name`; records that do not parse are skipped and reported.
pub fn otlp_doc_records<T>(
    doc: &Value,
    file: &str,
    n: u64,
    report: &mut ReadReport,
    shape: &OtlpShape,
    parse: &impl Fn(&Value, Option<&str>) -> Parsed<T>,
    f: &mut impl FnMut(T),
) {
    let found = doc.get(shape.resources).or_else(|| shape.also.and_then(|k| doc.get(k)));
    let Some(resources) = found.and_then(Value::as_array) else {
        report.skip(issue(file, n, Some(shape.resources), format!("no {} array", shape.resources)));
        return;
    };
    for res in resources {
        let service = otlp_service(res);
        for scope in shape.scopes.iter().flat_map(|k| array(res, k)) {
            for rec in array(scope, shape.records) {
                match parse(rec, service.as_deref()) {
                    Ok(r) => {
                        report.records_read += 1;
                        f(r);
                    }
                    Err((field, msg)) => report.skip(issue(file, n, Some(field), msg)),
                }
            }
        }
    }
}

/// `service.name` of an OTLP resource.
pub fn otlp_service(resource: &Value) -> Option<String> {
    otlp_attributes(resource.get("resource").and_then(|r| r.get("attributes")))
        .into_iter()
        .find(|(k, v)| k == "service.name" && !v.trim().is_empty())
        .map(|(_, v)| v)
}

/// The array at `key`, or an empty slice.
pub fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// An OTLP `AnyValue` (`{"stringValue": "x"}`, `intValue`, `doubleValue`, `boolValue`, arrays, …) as text.
pub fn any_value_text(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return to_text(v);
    };
    for key in ["stringValue", "intValue", "doubleValue", "boolValue"] {
        if let Some(x) = obj.get(key) {
            return to_text(x);
        }
    }
    if let Some(kv) = obj.get("kvlistValue").and_then(|k| k.get("values")).and_then(Value::as_array) {
        let map: serde_json::Map<String, Value> = kv
            .iter()
            .filter_map(|e| Some((to_text(e.get("key")?), Value::String(any_value_text(e.get("value")?)))))
            .collect();
        return Value::Object(map).to_string();
    }
    if let Some(items) = obj.get("arrayValue").and_then(|a| a.get("values")).and_then(Value::as_array) {
        return Value::Array(items.iter().map(|i| Value::String(any_value_text(i))).collect()).to_string();
    }
    if let Some(b) = obj.get("bytesValue") {
        return to_text(b);
    }
    to_text(v)
}

/// OTLP `[{"key", "value": AnyValue}]` as (key, text) pairs.
pub fn otlp_attributes(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|a| Some((to_text(a.get("key")?), a.get("value").map(any_value_text).unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip bomb (here 96 MiB of zeros in about 100 KB) ends with an error naming the ratio,
    /// long before its size: decompression is bounded by what came in.
    #[test]
    fn a_gzip_bomb_is_refused_by_its_ratio() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::best());
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..96 {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap();
        let mut out = Vec::new();
        let err = open(&path).unwrap().read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("compression ratio"), "{err}");
        assert!(out.len() < 64 << 20, "{} bytes inflated before the refusal", out.len());
    }

    #[test]
    fn base_name_strips_gz_and_case() {
        assert_eq!(base_name(Path::new("/x/Metrics.PROM.gz")), "metrics.prom");
        assert_eq!(base_name(Path::new("logs.jsonl")), "logs.jsonl");
    }

    #[test]
    fn normalise_column_names() {
        assert_eq!(normalise("Trace_ID"), "traceid");
        assert_eq!(normalise("startTimeUnixNano"), "starttimeunixnano");
    }
}
