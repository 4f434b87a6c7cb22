//! The command line's verbs: the clap tree (one `Args` struct per verb, in the verb's file) and
//! the dispatch. Each verb parses, calls the library, prints, and returns an exit code; the
//! library does the work.

mod bench;
mod chat;
mod drilldown;
mod eval;
mod investigate;
mod live;
mod models;
mod serve;
mod simulate;
mod store;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// culprit — root-cause investigation for production incidents.
///
/// Give it an incident bundle (the alert plus the metrics, logs, traces and change events around
/// it) and it answers with the ranked root cause, the causal chain to the symptom, the evidence
/// and a recommended action.
///
/// Start with `culprit demo`, then `culprit simulate --out /tmp/inc --seed 7` and
/// `culprit investigate /tmp/inc`.
///
/// Exit codes: 0 a root cause was found (or the verb succeeded), 3 the analysis found no root
/// cause, 4 insufficient data (a file mostly unreadable, a data file no reader takes, nothing of
/// the alerting service: the report says what to fix), 1 an error (unreadable input, bad
/// arguments to a verb), 2 a usage error.
#[derive(Parser, Debug)]
#[command(name = "culprit", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Log progress to stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of its largest variant (the drill-down's flags) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Investigate an incident bundle and report its root cause.
    ///
    /// A bundle is a directory with `incident.json` and telemetry files (see docs/bundle-format.md).
    /// Records that cannot be read are skipped, counted and listed at the start of the report.
    ///
    /// Or live, without files: --prometheus URL (Prometheus or VictoriaMetrics) and/or --store URI
    /// (what `culprit serve` received over OTLP), around an alert on --service; the metrics of
    /// the service are found by its label unless --query names them.
    ///
    /// Example: culprit investigate /tmp/inc
    ///
    /// Example: culprit investigate --prometheus http://127.0.0.1:9090 --service checkout --signal latency --from now-1h
    Investigate(investigate::InvestigateArgs),
    /// Write a bundle from live sources (Prometheus or VictoriaMetrics `query_range`, culprit
    /// serve's store) around an alert, to investigate, keep or share.
    ///
    /// Takes the same source and window flags as `culprit investigate --prometheus`.
    ///
    /// Example: culprit collect --prometheus http://127.0.0.1:9090 --service checkout --at 2026-12-07T03:12:00Z --out /tmp/inc
    Collect(live::CollectArgs),
    /// Which attribute combinations explain a business KPI's change (drill-down), and whether
    /// a change event caused it.
    ///
    /// Compares the current window with a forecast from the baseline window (robust: the mean of
    /// baseline windows as long as the current one, outlier windows left out; seasonal with
    /// --season; or scaled totals; the report says which), finds the combinations of up to three
    /// attributes that explain the deviation (ripple-effect search), attributes the change to
    /// them with Shapley values, gives each a bootstrap confidence, and tells it in sentences
    /// ("orders/visits fell from 4.99 % to 4.74 % … 101 % of the drop is explained by
    /// device=ios ∧ region=se (4.99 % → 1.92 %), confidence 1.00"). A data-quality
    /// audit (missing intervals, patchy segments) warns first. With --change, each change event
    /// gets a difference-in-differences against untouched segments and the temporal-order check;
    /// with --arm, the experiment's sample ratio is checked. See docs/drilldown.md.
    ///
    /// Example: culprit drilldown --data kpi.csv.gz --ratio orders/visits --dims device,region,app_version
    ///   --baseline 2026-11-01T00:00:00Z..2026-11-08T00:00:00Z --current 2026-11-08T00:00:00Z..2026-11-08T06:00:00Z --season 1d
    Drilldown(drilldown::DrilldownArgs),
    /// Run culprit as a service: alert webhooks in, investigations out, over HTTP.
    ///
    /// Alertmanager (`POST /v1/alerts/alertmanager`) and other alerting (`POST /v1/alerts/generic`)
    /// send alerts; they are deduplicated and grouped per service, and critical/high alerts get
    /// an agent investigation, others a static triage, in the background. Telemetry arrives over
    /// OTLP/HTTP (`/v1/traces`, `/v1/logs`, `/v1/metrics`) and from Prometheus (`query_range`);
    /// deploy pipelines post changes to `/v1/changes`. Operators follow investigations on the web
    /// page at `/` or as server-sent events, ask follow-up questions (`/v1/sessions`) and give
    /// feedback, which trains the re-ranker. Every call needs a bearer token (viewer, operator or
    /// admin); everything done is written to <data_dir>/audit.jsonl. See docs/serve.md.
    Serve(serve::ServeArgs),
    /// Ask follow-up questions about an incident, answered with the agent's tools.
    ///
    /// The agent first investigates the bundle; then each line you type is a question ("why not
    /// the database?", "show the config diff for auth", "logs of checkout", "similar past
    /// incidents"). With --policy llm a model chooses the checks; otherwise the question is read
    /// for the service and the check it names. The session (ledger, steps, questions and answers)
    /// is saved after every answer and resumed when you start again with the same --session.
    /// Type `quit` or end the input to leave.
    Chat(chat::ChatArgs),
    /// Simulate seed 001's config-change incident (a lowered LDAP timeout causing a retry storm)
    /// and investigate it end to end.
    Demo(investigate::DemoArgs),
    /// Write a simulated, labelled incident bundle (with truth.json).
    ///
    /// A microservice system with a database, a cache and a queue; normal traffic with
    /// seasonality and noise; one injected fault that propagates to callers, plus red herrings.
    /// Deterministic for a seed.
    Simulate(simulate::SimulateArgs),
    /// Score culprit and the published baselines on labelled suites, side by side: AC@1/3/5,
    /// Avg@5, MRR per suite, system and fault kind; AIS@1/3/5 (service and the location inside
    /// it both right) where the labels name a location; FPR on fault-free cases; Brier score and
    /// expected calibration error of culprit's confidence; seconds per case.
    ///
    /// Every suite is also scored by half: the cases at even positions of its listing are the
    /// tuning half (where settings may be chosen, and `--fit-calibration` fits), the odd ones
    /// the held-out half. Beside the held-out ECE stands the ECE a perfectly calibrated
    /// confidence would show on that many answers (sampling alone: about 0.17 on 14).
    ///
    /// A SUITE is anything the dataset registry recognises: a Nezha folder (.../nezha,
    /// .../nezha/trainticket, .../nezha/onlineboutique), .../rcd_sockshop, .../changerca, the drill-down
    /// datasets .../robustspot_rs and .../kontrast_software_change (scored by their own tables),
    /// a directory of bundles each with truth.json, a simulated-suite spec (evals/simulated.toml),
    /// or `sim:A-B` for simulated seeds A to B (`sim:A-B:KIND` forces a fault kind).
    ///
    /// Example: culprit eval evals/simulated.toml ../shared/datasets/nezha/trainticket sim:1-50:none
    ///
    /// Example: culprit eval --methods culprit,culprit_agent --fit-calibration ../shared/datasets/changerca
    Eval(eval::EvalArgs),
    /// Train the learned embedders (a TabularResNet per source, self-supervised, no labels) on
    /// fault-free events, and save weights and model cards.
    ///
    /// From a bundle, the events are its separate baseline, or those before the analysis start.
    /// From a store (a LanceDB URI), the stored events of the source. Writes
    /// `<source>.safetensors` and `<source>.card.json` (features, vocabularies, loss curve, data
    /// window, seed) into --out. Runs on CUDA when available, else CPU.
    Train(models::TrainArgs),
    /// Inspect trained models.
    Models(models::ModelsArgs),
    /// The knowledge base of past incidents: add postmortems, search by similarity.
    ///
    /// Text is embedded offline (hashed words and word pairs) unless CULPRIT_EMBEDDINGS_URL (an
    /// OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1) and CULPRIT_EMBEDDINGS_MODEL
    /// name an embeddings endpoint (key from CULPRIT_API_KEY or OPENAI_API_KEY). Searches compare
    /// only entries made by the same embedder.
    Kb(store::KbArgs),
    /// The event store (LanceDB): ingest a bundle's events with their embeddings, show sizes.
    Store(store::StoreArgs),
    /// Measure speed and memory on a simulated one-hour, 50-service incident
    /// (~1M log lines, ~500 metric series, ~200k spans). Build with --release for real figures.
    ///
    /// With --write DIR it only writes that incident as a bundle, so the whole path from files
    /// can be timed: `culprit bench --write /tmp/big && time culprit investigate /tmp/big`.
    Bench(bench::BenchArgs),
}

/// Runs one verb.
pub fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Investigate(a) => investigate::run(a),
        Command::Demo(a) => investigate::demo(a),
        Command::Collect(a) => live::collect(a),
        Command::Chat(a) => chat::run(a),
        Command::Drilldown(a) => drilldown::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Train(a) => models::train(a),
        Command::Models(a) => models::status(a),
        Command::Kb(a) => store::kb(a),
        Command::Store(a) => store::store(a),
        Command::Bench(a) => bench::run(a),
    }
}

/// Removes a temporary directory when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh path in the system's temporary directory, named for `what` and this process.
    pub fn new(what: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!("culprit-{what}-{}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A progress bar over `total` items of `what` (`unit` after the count, e.g. " cases"; the
/// remaining time is shown when `eta`).
pub fn progress(total: u64, what: &str, unit: &str, eta: bool) -> indicatif::ProgressBar {
    let eta = if eta { " eta {eta}" } else { "" };
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}}{unit} [{{elapsed_precise}}] {{wide_bar}}{eta}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A multi-threaded async runtime for the verbs that talk to the store or serve.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
