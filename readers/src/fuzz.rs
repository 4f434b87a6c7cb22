//! The fuzz targets' bodies, one function per target, shared by `readers/fuzz` (libFuzzer, nightly,
//! `make fuzz`) and by the corpus replay test (`tests/corpus.rs`, in the ordinary test command),
//! so that every input the fuzzer kept, and every input that once crashed a reader, is read again
//! on every test run.
//!
//! Each function reads arbitrary bytes the way culprit reads that format and returns how many
//! records it took from them. The only failures are panics and aborts: bad input must end as
//! skipped records or an error, never as a crash, and never as an allocation sized from it.

use crate::alerts::{self, AlertmanagerPayload, Clock, GenericAlert};
use crate::ingest;
use crate::model::{ReadReport, HOUR};
use crate::otlp::{self, Encoding, Signal};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fuzz target's body: reads the input, answers how many records it took from it.
pub type Body = fn(&[u8]) -> u64;

/// The fuzz targets, by name (the names of their seed and crash directories and packed corpora).
pub const TARGETS: [(&str, Body); 6] = [
    ("bundle", bundle),
    ("otlp", otlp),
    ("alerts", alerts),
    ("prometheus", prometheus),
    ("drilldown", drilldown),
    ("config", config),
];

/// 2024-03-01T12:00:00Z: the alert time of the fuzzed bundles, and "now" for the service's readers.
pub const NOW: i64 = 1_709_294_400_000;

/// The alert of every fuzzed bundle (`incident.json`), unless the input is the incident itself.
const INCIDENT: &str = r#"{"time": "2024-03-01T12:00:00Z", "service": "frontend", "signal": "errors"}"#;

/// What the first byte of a `bundle` input selects: the file the rest is written as. `+gz` names
/// are compressed by the harness (a valid gzip stream of the input); others are written as is.
pub const BUNDLE_FILES: [&str; 18] = [
    "metrics.prom",
    "metrics.json",
    "metrics.csv",
    "logs.jsonl",
    "logs.otlp.json",
    "logs/pods.csv",
    "logs/host.log",
    "logs/loki.json",
    "traces.json",
    "traces/jaeger.json",
    "spans.csv",
    "changes.jsonl",
    "topology.json",
    "incident.json",
    "mapping.json",
    "truth.json",
    "metrics.prom.gz+gz",
    "logs.jsonl.gz",
];

/// A directory of its own per call (the replay test reads on many threads), removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("culprit-fuzz-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory in the temporary directory");
        Scratch(dir)
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let (name, gzip) = name.strip_suffix("+gz").map_or((name, false), |n| (n, true));
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a scratch subdirectory");
        }
        let mut f = std::fs::File::create(&path).expect("a scratch file");
        if gzip {
            let mut z = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            z.write_all(data).and_then(|()| z.finish().map(drop)).expect("writing a scratch file");
        } else {
            f.write_all(data).expect("writing a scratch file");
        }
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn split(data: &[u8]) -> (u8, &[u8]) {
    data.split_first().map_or((0, &[][..]), |(&b, rest)| (b, rest))
}

/// A bundle of `incident.json` and one file of any format (the first byte picks it from
/// [`BUNDLE_FILES`]), loaded as `culprit investigate DIR` loads it, logs streamed to the end:
/// 1 for the bundle, plus the records read (0 when it cannot be loaded at all).
pub fn bundle(data: &[u8]) -> u64 {
    let (pick, rest) = split(data);
    let name = BUNDLE_FILES[pick as usize % BUNDLE_FILES.len()];
    let dir = Scratch::new();
    if name != "incident.json" {
        dir.write("incident.json", INCIDENT.as_bytes());
    }
    dir.write(name, rest);
    let Ok(incident) = ingest::load_bundle(&dir.0) else { return 0 };
    let mut report = ReadReport::default();
    let mut logs = 0u64;
    ingest::for_each_log(&incident.telemetry.logs, &mut report, |_| logs += 1);
    let t = &incident.telemetry;
    1 + logs + (t.metrics.iter().map(|s| s.points.len()).sum::<usize>() + t.spans.len() + t.changes.len()) as u64
}

/// One OTLP/HTTP export request body: the first byte picks the signal (traces, logs, metrics) and
/// the encoding (protobuf, JSON); decoded and bounded in time as `culprit serve` does.
pub fn otlp(data: &[u8]) -> u64 {
    let (pick, body) = split(data);
    let signal = [Signal::Traces, Signal::Logs, Signal::Metrics][pick as usize % 3];
    let encoding = if pick / 3 % 2 == 0 { Encoding::Protobuf } else { Encoding::Json };
    let Ok(mut d) = otlp::decode(signal, encoding, body) else { return 0 };
    d.bound(signal, NOW, 24 * HOUR);
    let _ = otlp::response(signal, encoding, &d);
    (d.spans.len() + d.logs.len() + d.points.len()) as u64
}

/// One alert webhook body: Alertmanager's (first byte even) or the generic alert (odd), read as
/// the service reads them.
pub fn alerts(data: &[u8]) -> u64 {
    let (pick, body) = split(data);
    let clock = Clock { now: NOW, reach: 24 * HOUR };
    if pick % 2 == 0 {
        let Ok(p) = serde_json::from_slice::<AlertmanagerPayload>(body) else { return 0 };
        alerts::from_alertmanager(&p, clock).iter().filter(|r| r.is_ok()).count() as u64
    } else {
        let Ok(g) = serde_json::from_slice::<GenericAlert>(body) else { return 0 };
        u64::from(alerts::from_generic(g, clock).is_ok())
    }
}

/// Prometheus text exposition (first byte even) or an HTTP API `query_range` response (odd), as
/// a bundle file and, for `query_range`, as the answer of a live server.
pub fn prometheus(data: &[u8]) -> u64 {
    let (pick, body) = split(data);
    let dir = Scratch::new();
    let mut report = ReadReport::default();
    let points = |series: Vec<crate::model::Series>| series.iter().map(|s| s.points.len() as u64).sum::<u64>();
    if pick % 2 == 0 {
        let path = dir.write("metrics.prom", body);
        ingest::read_prometheus_text(&path, &mut report).map_or(0, points)
    } else {
        let path = dir.write("metrics.json", body);
        let from_file = ingest::read_prometheus_query_range(&path, &mut report).map_or(0, points);
        let live = serde_json::from_slice(body)
            .map_or(0, |doc| points(ingest::metrics::series_from_query_range(&doc, "live", Some("up"), &mut report)));
        from_file + live
    }
}

/// A drill-down table (`culprit drilldown --data kpi.csv`): the first byte picks the measure
/// (bit 0: `orders / visits` or the total of `orders`) and whether the file is gzip-compressed
/// (bit 1); the dimensions are `device` and `region`, the baseline 2023-11-14T22:13:20Z plus an
/// hour, the current window the hour after. The rows read are then bucketed by minute and split by
/// a segment, as the drill-down's checks do.
pub fn drilldown(data: &[u8]) -> u64 {
    use crate::table::{self, Measure, Method, Query};
    let (pick, body) = split(data);
    let start = 1_700_000_000_000;
    let q = Query {
        measure: if pick & 1 == 0 {
            Measure::Ratio("orders".into(), "visits".into())
        } else {
            Measure::Sum("orders".into())
        },
        dims: vec!["device".into(), "region".into()],
        baseline: (start, start + HOUR),
        current: (start + HOUR, start + 2 * HOUR),
        method: Method::Auto,
    };
    let dir = Scratch::new();
    let path = dir.write(if pick & 2 == 0 { "kpi.csv" } else { "kpi.csv.gz+gz" }, body);
    let Ok(rows) = table::read(&path, &q) else { return 0 };
    let ios = rows.members(&[("device".to_string(), "ios".to_string())]);
    let _ = rows.series(q.baseline.0, q.current.1, 60_000, Some(&ios));
    let _ = rows.step();
    rows.len() as u64
}

/// `culprit.toml` (the input as UTF-8, else nothing): parsed and checked as `culprit serve
/// --config` does, its tokens resolved against an environment that sets every variable named
/// `*_TOKEN`: 1 for a configuration the service would run with, plus its tokens.
pub fn config(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else { return 0 };
    let Ok(cfg) = crate::config::ServeConfig::from_toml(text, "culprit.toml") else { return 0 };
    let _ = cfg.store_uri();
    let env = |var: &str| var.ends_with("_TOKEN").then(|| format!("{var}-value"));
    cfg.principals(&env).map_or(0, |p| 1 + p.len() as u64)
}

/// The inputs of a packed corpus (`readers/fuzz/corpus/<target>.gz`, written by
/// `scripts/fuzz_corpus.py`): a gzip stream of records, each a 4-byte little-endian length and
/// that many bytes.
pub fn packed_inputs(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path)?).read_to_end(&mut bytes)?;
    let mut rest = bytes.as_slice();
    let mut out = Vec::new();
    while let Some((head, tail)) = rest.split_first_chunk::<4>() {
        let n = u32::from_le_bytes(*head) as usize;
        let input = tail.get(..n).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: a record cut short", path.display()))
        })?;
        out.push(input.to_vec());
        rest = &tail[n..];
    }
    Ok(out)
}

/// The inputs of every file in `dir` (seeds, crash inputs), in file-name order, with their names.
pub fn dir_inputs(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| Ok((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), std::fs::read(&p)?)))
        .collect()
}
