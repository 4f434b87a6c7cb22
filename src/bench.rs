//! `culprit bench`: wall time and peak memory of a triage over a simulated one-hour, 50-service
//! incident, and the single-core throughput of log template mining.
//!
//! Figures are for the binary it runs in: build with `--release` for the numbers in the README.

use crate::detect::logs::Drain;
use crate::investigate::Trigger;
use crate::pipeline::{self, Deps, PipelineConfig};
use crate::simulate;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub services: usize,
    pub metric_series: usize,
    pub metric_points: usize,
    pub log_lines: usize,
    pub spans: usize,
    pub simulate_seconds: f64,
    pub triage_seconds: f64,
    /// The rules agent after the triage.
    pub agent_seconds: f64,
    pub agent_steps: usize,
    pub anomalies: usize,
    pub drain_lines_per_second: f64,
    pub drain_templates: usize,
    /// Peak resident memory of the process (VmHWM), MiB; includes the simulated data itself.
    pub peak_rss_mib: Option<f64>,
    pub threads: usize,
    pub optimized: bool,
}

/// Peak resident set size from /proc (Linux); None elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(seed: u64, scale: usize) -> Bench {
    let t0 = Instant::now();
    let cfg = simulate::bench_config_scaled(seed, scale);
    let incident = simulate::simulate(&cfg);
    let simulate_seconds = t0.elapsed().as_secs_f64();
    // The rules agent always runs here (whatever the trigger would decide), with default budgets.
    let out = pipeline::run(&incident, &PipelineConfig::with_trigger(Trigger::Always), Deps::default());
    let (triage_seconds, agent_seconds) = (out.seconds.triage, out.seconds.agent);
    let records = &incident.telemetry.logs.records;
    let mut drain = Drain::new(0.5);
    let t2 = Instant::now();
    for r in records {
        drain.add(&r.message);
    }
    let drain_seconds = t2.elapsed().as_secs_f64().max(1e-9);
    Bench {
        services: incident
            .telemetry
            .metrics
            .iter()
            .map(|s| s.service.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        metric_series: incident.telemetry.metrics.len(),
        metric_points: incident.telemetry.metrics.iter().map(|s| s.points.len()).sum(),
        log_lines: records.len(),
        spans: incident.telemetry.spans.len(),
        simulate_seconds,
        triage_seconds,
        agent_seconds,
        agent_steps: out.transcript().map_or(0, |t| t.steps.len()),
        anomalies: out.triage.detection.anomalies.len(),
        drain_lines_per_second: records.len() as f64 / drain_seconds,
        drain_templates: drain.templates().len(),
        peak_rss_mib: peak_rss_mib(),
        threads: rayon::current_num_threads(),
        optimized: !cfg!(debug_assertions),
    }
}

pub fn render(b: &Bench) -> String {
    format!(
        "bench ({} build, {} threads)\n\
         data:     {} services, {} metric series ({} points), {} log lines, {} spans\n\
         simulate: {:.2} s\n\
         triage:   {:.2} s ({} anomalies)\n\
         agent:    {:.2} s (rules policy, {} steps)\n\
         drain:    {:.0} lines/s on one core ({} templates)\n\
         peak RSS: {}\n",
        if b.optimized { "release" } else { "debug — use --release for real figures" },
        b.threads,
        b.services,
        b.metric_series,
        b.metric_points,
        b.log_lines,
        b.spans,
        b.simulate_seconds,
        b.triage_seconds,
        b.anomalies,
        b.agent_seconds,
        b.agent_steps,
        b.drain_lines_per_second,
        b.drain_templates,
        b.peak_rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "unknown".into())
    )
}

/// Figures of the learned parts: training, inference, and filtered k-NN over the store.
#[derive(Debug, Clone, Serialize)]
pub struct LearnedBench {
    pub train_events: usize,
    pub train_steps: usize,
    pub train_seconds: f64,
    pub inference_events: usize,
    pub inference_events_per_second: f64,
    pub stored_vectors: usize,
    pub ingest_seconds: f64,
    pub index_seconds: f64,
    pub indexes: Vec<String>,
    pub queries: usize,
    /// Filtered k-NN (k = 10, `source = 'logs' AND service = …`) latency, ms: with the indexes
    /// built (the IVF-PQ vector index only when asked for).
    pub knn_p50_ms: f64,
    pub knn_p99_ms: f64,
    pub threads: usize,
    pub device: String,
    pub optimized: bool,
}

/// What stops a benchmark from running.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Data(#[from] crate::drilldown::table::DataError),
    #[error("{}: {error}", path.display())]
    Io { path: std::path::PathBuf, error: std::io::Error },
    #[error("{}: {error}", path.display())]
    Csv { path: std::path::PathBuf, error: csv::Error },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("query {0} returned nothing")]
    NoHits(usize),
}

/// Trains a logs model on `train_events` baseline log lines of the benchmark incident, embeds
/// every line, stores `vectors` embeddings (cycling the lines with fresh ids) in a LanceDB store
/// under `dir`, indexes it and times `queries` filtered k-NN queries.
pub fn run_learned(
    seed: u64,
    dir: &std::path::Path,
    train_events: usize,
    vectors: usize,
    queries: usize,
    vector_index: bool,
    progress: &dyn Fn(&str),
) -> Result<LearnedBench, BenchError> {
    use crate::embed::{features, Embedder, SourceKind, DIM};
    use crate::store::{EventRow, Store};
    progress("simulating the benchmark incident");
    let incident = simulate::simulate(&simulate::bench_config(seed));
    let rows: Vec<features::Row> = incident.telemetry.logs.records.iter().map(features::log_row).collect();
    let baseline: Vec<features::Row> =
        rows.iter().filter(|r| r.time < incident.analysis_start).take(train_events).cloned().collect();
    progress(&format!("training the logs model on {} events", baseline.len()));
    let cfg = crate::embed::net::TrainConfig::default();
    let t = Instant::now();
    let model = Embedder::fit(SourceKind::Logs, &baseline, "bench", &cfg, |_, _| {})?;
    let train_seconds = t.elapsed().as_secs_f64();
    let train_steps = cfg.schedule(baseline.len()).1;
    progress(&format!("embedding {} events", rows.len()));
    let t = Instant::now();
    let z = model.embed(&rows)?;
    let inference_seconds = t.elapsed().as_secs_f64().max(1e-9);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(BenchError::Runtime)?;
    let uri = dir.to_string_lossy().into_owned();
    let store = rt.block_on(Store::open(&uri))?;
    const BATCH: usize = 100_000;
    let t = Instant::now();
    let mut stored = 0;
    while stored < vectors {
        progress(&format!("storing vectors {stored}/{vectors}"));
        let n = BATCH.min(vectors - stored);
        let batch: Vec<EventRow> = (stored..stored + n)
            .map(|i| {
                let j = i % rows.len();
                EventRow {
                    id: format!("bench/{i}"),
                    time_ms: rows[j].time,
                    source: "logs".to_string(),
                    service: rows[j].service.clone(),
                    environment: "bench".to_string(),
                    attributes: String::new(),
                    vector: Some(z[j * DIM..(j + 1) * DIM].to_vec()),
                    anomaly_score: None,
                }
            })
            .collect();
        rt.block_on(store.add_events(&batch))?;
        stored += n;
    }
    let ingest_seconds = t.elapsed().as_secs_f64();
    progress("building indexes");
    let t = Instant::now();
    let indexes = rt.block_on(store.ensure_indexes(crate::store::EVENTS, vector_index))?;
    let index_seconds = t.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(queries);
    for q in 0..queries {
        // As the k-NN detector asks: the neighbours of an event among its own service's events.
        // (Filtering on another service than the query's would probe index partitions that hold
        // none of that service's rows, and rightly find nothing.)
        let j = (q * 7919) % rows.len();
        let filter = format!("source = 'logs' AND service = '{}'", rows[j].service);
        let t = Instant::now();
        let hits = rt.block_on(store.nearest_events(&z[j * DIM..(j + 1) * DIM], Some(&filter), 10))?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        if hits.is_empty() {
            return Err(BenchError::NoHits(q));
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(LearnedBench {
        train_events: baseline.len(),
        train_steps,
        train_seconds,
        inference_events: rows.len(),
        inference_events_per_second: rows.len() as f64 / inference_seconds,
        stored_vectors: stored,
        ingest_seconds,
        index_seconds,
        indexes,
        queries,
        knn_p50_ms: crate::detect::stats::quantile_sorted(&latencies, 0.5),
        knn_p99_ms: crate::detect::stats::quantile_sorted(&latencies, 0.99),
        threads: tch::get_num_threads() as usize,
        device: format!("{:?}", crate::embed::embedder::device()),
        optimized: !cfg!(debug_assertions),
    })
}

pub fn render_learned(b: &LearnedBench) -> String {
    format!(
        "learned bench ({} build, {} torch threads, {})\n\
         train:     {} events, {} steps in {:.1} s\n\
         inference: {:.0} events/s over {} events\n\
         store:     {} vectors stored in {:.1} s; indexes built in {:.1} s: {}\n\
         k-NN:      {} filtered queries (k=10): p50 {:.2} ms, p99 {:.2} ms\n",
        if b.optimized { "release" } else { "debug, dependencies optimised" },
        b.threads,
        b.device,
        b.train_events,
        b.train_steps,
        b.train_seconds,
        b.inference_events_per_second,
        b.inference_events,
        b.stored_vectors,
        b.ingest_seconds,
        b.index_seconds,
        if b.indexes.is_empty() { "none".to_string() } else { b.indexes.join(", ") },
        b.queries,
        b.knn_p50_ms,
        b.knn_p99_ms
    )
}

/// `culprit bench --drilldown`: one drill-down end to end over a generated file.
#[derive(Debug, Clone, Serialize)]
pub struct DrilldownBench {
    pub rows: usize,
    pub dimensions: usize,
    pub segments: usize,
    pub file_mib: f64,
    pub write_seconds: f64,
    /// Reading and parsing the CSV into columns.
    pub read_seconds: f64,
    /// The cube with its robust forecast.
    pub cube_seconds: f64,
    /// Search, Shapley attribution, bootstrap confidence and the checks.
    pub analyse_seconds: f64,
    /// read + cube + analyse: what `culprit drilldown` takes on this file.
    pub total_seconds: f64,
    pub bootstrap_replicas: usize,
    /// The injected cause and what the drill-down found.
    pub injected: String,
    pub found: Vec<String>,
    pub peak_rss_mib: Option<f64>,
    pub optimized: bool,
}

/// Writes `rows` rows (6 dimensions of 10, 8, 6, 5, 4 and 3 values; 7 baseline hours and one
/// current hour, traffic even) with conversion falling by half in `d1=v3 ∧ d4=v2` in the current hour,
/// then runs the drill-down on it as `culprit drilldown` would.
pub fn run_drilldown(rows: usize, seed: u64, dir: &std::path::Path) -> Result<DrilldownBench, BenchError> {
    use crate::drilldown::{report, table};
    use rand::{Rng, SeedableRng};
    let cards = [10u32, 8, 6, 5, 4, 3];
    let dims: Vec<String> = (0..cards.len()).map(|d| format!("d{d}")).collect();
    let path = dir.join("drilldown-bench.csv");
    let start = 1_700_000_000i64;
    let hours = 8;
    let t = Instant::now();
    {
        let f = std::fs::File::create(&path).map_err(|source| BenchError::Io { path: path.clone(), error: source })?;
        let csv = |source| BenchError::Csv { path: path.clone(), error: source };
        let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, f));
        let mut header: Vec<String> = vec!["time".into()];
        header.extend(dims.iter().cloned());
        header.extend(["orders".to_string(), "visits".to_string()]);
        w.write_record(&header).map_err(csv)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let current_rows = rows / hours as usize;
        for i in 0..rows {
            // The last rows are the current hour; the rest spreads over the baseline.
            let time = if i >= rows - current_rows {
                start + (hours - 1) * 3600 + rng.gen_range(0..3600)
            } else {
                start + rng.gen_range(0..(hours - 1) * 3600)
            };
            let attrs: Vec<u32> = cards.iter().map(|&c| rng.gen_range(0..c)).collect();
            let visits: u32 = rng.gen_range(5..15);
            let rate = if i >= rows - current_rows && attrs[1] == 3 && attrs[4] == 2 { 0.015 } else { 0.03 };
            let orders = (0..visits).filter(|_| rng.gen_bool(rate)).count();
            let mut rec: Vec<String> = vec![time.to_string()];
            rec.extend(attrs.iter().map(|a| format!("v{a}")));
            rec.extend([orders.to_string(), visits.to_string()]);
            w.write_record(&rec).map_err(csv)?;
        }
        w.flush().map_err(|source| BenchError::Io { path: path.clone(), error: source })?;
    }
    let write_seconds = t.elapsed().as_secs_f64();
    let file_mib = std::fs::metadata(&path).map(|m| m.len() as f64 / (1 << 20) as f64).unwrap_or(0.0);
    let q = table::Query {
        measure: table::Measure::Ratio("orders".into(), "visits".into()),
        dims: dims.clone(),
        baseline: (start * 1000, (start + (hours - 1) * 3600) * 1000),
        current: ((start + (hours - 1) * 3600) * 1000, (start + hours * 3600) * 1000),
        method: table::Method::Auto,
    };
    let t = Instant::now();
    let data = table::read(&path, &q)?;
    let read_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (cube, forecast) = crate::drilldown::table::cube(&data, &q)?;
    let cube_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let replicas = 100;
    let opts = report::Options {
        kpi: "Conversion".into(),
        search: report::SearchKind::Ripple,
        max_attributes: 3,
        replicas,
        seed,
        changes: Vec::new(),
        treated: None,
        arm: None,
    };
    let base = report::BaselineRef {
        name: None,
        version: None,
        window: table::span_text(q.baseline),
        forecast,
        data: path.display().to_string(),
        created: None,
    };
    let r = report::build(&data, &q, &cube, base, &opts, None);
    let analyse_seconds = t.elapsed().as_secs_f64();
    Ok(DrilldownBench {
        rows,
        dimensions: dims.len(),
        segments: cube.leaves.len(),
        file_mib,
        write_seconds,
        read_seconds,
        cube_seconds,
        analyse_seconds,
        total_seconds: read_seconds + cube_seconds + analyse_seconds,
        bootstrap_replicas: replicas,
        injected: "d1=v3&d4=v2".into(),
        found: r
            .explanation
            .findings
            .iter()
            .map(|f| format!("{} (share {:.2}, confidence {:.2})", f.element, f.share, f.confidence.unwrap_or(0.0)))
            .collect(),
        peak_rss_mib: peak_rss_mib(),
        optimized: !cfg!(debug_assertions),
    })
}

pub fn render_drilldown(b: &DrilldownBench) -> String {
    format!(
        "drill-down over {} rows × {} dimensions ({} segments, {:.0} MiB CSV, written in {:.1} s)\n  \
         read {:.2} s, cube and robust forecast {:.2} s, search + Shapley + {} bootstrap replicas + checks {:.2} s\n  \
         total {:.2} s; peak RSS {}; {} build\n  injected {}; found {}\n",
        b.rows,
        b.dimensions,
        b.segments,
        b.file_mib,
        b.write_seconds,
        b.read_seconds,
        b.cube_seconds,
        b.bootstrap_replicas,
        b.analyse_seconds,
        b.total_seconds,
        b.peak_rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "unknown".into()),
        if b.optimized { "release" } else { "dev" },
        b.injected,
        if b.found.is_empty() { "nothing".to_string() } else { b.found.join(", ") }
    )
}
