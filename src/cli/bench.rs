//! `culprit bench`: speed and memory of the triage and agent on the 50-service incident, the
//! learned parts, the drill-down, or the service under load; or `--write` that incident as a
//! bundle.

use super::TempDir;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the benchmark incident as a bundle into DIR instead of measuring; then time
    /// `culprit investigate DIR` (the README's figures), e.g. `culprit bench --write /tmp/b &&
    /// /usr/bin/time -v culprit investigate /tmp/b`.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
    /// Size of the benchmark incident: N × (50 services, 500 metric series, ~1.07M log lines,
    /// ~200k spans) over one hour. With --write, 10 makes the 10× incident (~2.6 GB on disk).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=20))]
    scale: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Measure the learned parts instead: training a logs model on --train-events baseline
    /// lines, inference throughput, and filtered k-NN latency over --vectors stored vectors
    /// (in a temporary LanceDB store, with its indexes).
    #[arg(long)]
    learned: bool,
    #[arg(long, default_value_t = 100_000, requires = "learned")]
    train_events: usize,
    #[arg(long, default_value_t = 1_000_000, requires = "learned")]
    vectors: usize,
    #[arg(long, default_value_t = 500, requires = "learned")]
    queries: usize,
    /// Leave out the IVF-PQ vector index (filtered queries then scan the matching rows; with
    /// LanceDB's engine unoptimised in the dev build, building the index over 1M vectors
    /// takes very long).
    #[arg(long, requires = "learned")]
    no_vector_index: bool,
    /// Measure the drill-down instead: write a CSV of --rows rows × 6 dimensions with a
    /// known cause, then read it, forecast, search, attribute and bootstrap as `culprit
    /// drilldown` does.
    #[arg(long, conflicts_with_all = ["learned", "serve"])]
    drilldown: bool,
    #[arg(long, default_value_t = 1_000_000, requires = "drilldown")]
    rows: usize,
    /// Load-test the service instead: a server on loopback, --senders concurrent
    /// Alertmanager webhooks and --watchers event-stream watchers for --seconds; reports
    /// webhook latency and checks every accepted alert is in the audit log (exit code 1 if
    /// one is missing or a request failed).
    #[arg(long, conflicts_with = "learned")]
    serve: bool,
    #[arg(long, default_value_t = 60.0, requires = "serve")]
    seconds: f64,
    #[arg(long, default_value_t = 200, requires = "serve")]
    senders: usize,
    #[arg(long, default_value_t = 50, requires = "serve")]
    watchers: usize,
    /// Webhooks per second per sender (as alerting systems pace them); 0 sends each as soon
    /// as the previous one is answered (saturation).
    #[arg(long, default_value_t = 10.0, requires = "serve")]
    rate: f64,
    /// With --serve: also feed OTLP log export requests (20 records each) at this many per
    /// second, the soak test's telemetry; e.g. `culprit bench --serve --seconds 1800 --senders 2
    /// --rate 0.1 --watchers 2 --otlp-rate 50 --sample-seconds 60` for 30 minutes.
    #[arg(long, default_value_t = 0.0, requires = "serve")]
    otlp_rate: f64,
    /// With --serve: print the memory and the store's files every this many seconds (0: never).
    #[arg(long, default_value_t = 0.0, requires = "serve")]
    sample_seconds: f64,
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if let Some(dir) = a.write {
        if a.scale > 1 {
            eprintln!("bench: simulating the incident at {}× (a few GB of memory and minutes)", a.scale);
        }
        let incident = culprit::simulate::simulate(&culprit::simulate::bench_config_scaled(a.seed, a.scale as usize));
        culprit::ingest::write_bundle(&incident, incident.truth.as_ref(), &dir)
            .with_context(|| format!("writing the benchmark bundle to {}", dir.display()))?;
        println!("wrote {} to {}", incident.id, dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    if a.drilldown {
        let dir = TempDir::new("bench-drilldown");
        std::fs::create_dir_all(&dir.0)?;
        eprintln!("bench: writing {} rows, then the drill-down", a.rows);
        let b = culprit::bench::run_drilldown(a.rows, a.seed, &dir.0)?;
        return show(a.json, &b, culprit::bench::render_drilldown(&b));
    }
    if a.serve {
        let dir = TempDir::new("bench-serve");
        let cfg = culprit::serve::load::LoadConfig {
            seconds: a.seconds,
            senders: a.senders,
            watchers: a.watchers,
            services: 20,
            rate_per_sender: a.rate,
            data_dir: dir.0.clone(),
            otlp_rate: a.otlp_rate,
            sample_seconds: a.sample_seconds,
        };
        eprintln!(
            "bench: load test for {} s ({} webhook senders at {}/s each, {} watchers)",
            a.seconds, a.senders, a.rate, a.watchers
        );
        let r = super::runtime()?.block_on(culprit::serve::load::run(&cfg))?;
        show(a.json, &r, culprit::serve::load::render(&r))?;
        return Ok(if r.errors == 0 && r.lost_alerts == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if a.learned {
        let dir = TempDir::new("bench-store");
        let b = culprit::bench::run_learned(
            a.seed,
            &dir.0,
            a.train_events,
            a.vectors,
            a.queries,
            !a.no_vector_index,
            &|what| eprintln!("bench: {what}"),
        )?;
        return show(a.json, &b, culprit::bench::render_learned(&b));
    }
    let b = culprit::bench::run(a.seed, a.scale as usize);
    show(a.json, &b, culprit::bench::render(&b))
}

/// Prints a result as JSON, or its text.
fn show<T: serde::Serialize>(json: bool, value: &T, text: String) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
