//! The `culprit` command line: a thin shell over the library. Parses arguments, installs logging,
//! runs one verb, prints its result, and maps errors to exit codes.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use culprit::baselines::Method;
use culprit::eval;
use culprit::ingest;
use culprit::investigate::{self as investigation, Trigger};
use culprit::report::{self, Verdict};
use culprit::simulate::{self, FaultKind, SimConfig};
use culprit::triage::{self, Config};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod commands;

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
/// cause, 1 an error (unreadable input, bad arguments to a verb), 2 a usage error.
#[derive(Parser, Debug)]
#[command(name = "culprit", version, about, long_about, propagate_version = true)]
struct Cli {
    /// Log progress to stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Investigate an incident bundle and report its root cause.
    ///
    /// A bundle is a directory with `incident.json` and telemetry files (see docs/bundle-format.md).
    /// Records that cannot be read are skipped, counted and listed at the end of the report.
    Investigate {
        /// The bundle directory.
        bundle: PathBuf,
        /// Print the report as JSON (schema culprit.report/v1) instead of text.
        #[arg(long)]
        json: bool,
        /// Group anomalies whose onsets lie within this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        window: u64,
        /// Add the learned k-NN embedding detector: `fit` trains one model per source on the
        /// bundle's own reference period; a directory uses models from `culprit train`.
        #[arg(long, value_name = "DIR|fit")]
        embeddings: Option<String>,
        #[command(flatten)]
        agent: AgentArgs,
    },
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
    Drilldown {
        /// The rows: .csv, .csv.gz or .parquet, with a time column (time, timestamp, ts, min,
        /// date or minute), the dimension columns and the measures.
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        /// A measure column to total (or give --ratio).
        #[arg(long, value_name = "COLUMN", required_unless_present = "ratio")]
        metric: Option<String>,
        /// A ratio KPI, NUM/DEN (e.g. orders/visits).
        #[arg(long, value_name = "NUM/DEN", conflicts_with = "metric")]
        ratio: Option<String>,
        /// Dimension columns, comma-separated.
        #[arg(long, value_name = "D1,D2,…", value_delimiter = ',', required = true)]
        dims: Vec<String>,
        /// The baseline window, START..END (Unix s or ms, or RFC 3339). Not needed with --against.
        #[arg(long, value_name = "T0..T1", required_unless_present = "against")]
        baseline: Option<String>,
        /// The current window, START..END.
        #[arg(long, value_name = "T2..T3")]
        current: String,
        /// The forecast: auto (robust when the baseline holds three current-length windows,
        /// else scaled), robust (the mean of those windows, outlier windows left out), or scaled.
        #[arg(long, value_enum, default_value = "auto")]
        forecast: ForecastArg,
        /// Seasonal forecast: the baseline windows one season apart (e.g. 1d, 7d).
        #[arg(long, value_name = "DURATION")]
        season: Option<String>,
        /// The search: ripple (culprit's), or the baselines squeeze and adtributor.
        #[arg(long, value_enum, default_value = "ripple")]
        search: culprit::drilldown::report::SearchKind,
        /// Most attributes in one combination.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
        max_attributes: u8,
        /// Bootstrap replicas for each finding's confidence (0 to skip).
        #[arg(long, default_value_t = 100)]
        bootstrap: usize,
        /// Change events (JSON lines, the incident bundle's changes.jsonl format) to check as
        /// causes: difference-in-differences and temporal order.
        #[arg(long, value_name = "FILE")]
        change: Option<PathBuf>,
        /// The segment the change touched, D=V[&D=V] (default: the change's service or changed
        /// key when it is a dimension value).
        #[arg(long, value_name = "D=V")]
        treated: Option<String>,
        /// A dimension whose values are an experiment's arms: check the sample ratio.
        #[arg(long, value_name = "DIM")]
        arm: Option<String>,
        /// The planned split of the arms, in the order they first appear (default: equal).
        #[arg(long, value_name = "A,B,…", value_delimiter = ',', requires = "arm")]
        split: Vec<f64>,
        /// Store this run's forecast as the next version of baseline NAME.
        #[arg(long, value_name = "NAME")]
        save_baseline: Option<String>,
        /// Compare against stored baseline NAME (newest version) or NAME@N instead of --baseline.
        #[arg(long, value_name = "NAME[@N]")]
        against: Option<String>,
        /// Where stored baselines live.
        #[arg(long, value_name = "DIR", default_value = ".culprit/baselines")]
        baselines: PathBuf,
        /// An earlier report (--out JSON) to compare findings with.
        #[arg(long, value_name = "REPORT")]
        compare: Option<PathBuf>,
        /// Write the chart of segment contributions (SVG) here.
        #[arg(long, value_name = "FILE")]
        chart: Option<PathBuf>,
        /// Write the JSON report here as well.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the JSON report instead of the narrative.
        #[arg(long)]
        json: bool,
    },
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
    Serve {
        /// The config file (TOML; see docs/serve.md). Without one: defaults, and the only token
        /// is $CULPRIT_ADMIN_TOKEN.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen here instead of the config's `listen` (e.g. 127.0.0.1:0 for any free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Keep data here instead of the config's `data_dir`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Ask follow-up questions about an incident, answered with the agent's tools.
    ///
    /// The agent first investigates the bundle; then each line you type is a question ("why not
    /// the database?", "show the config diff for auth", "logs of checkout", "similar past
    /// incidents"). With --policy llm a model chooses the checks; otherwise the question is read
    /// for the service and the check it names. The session (ledger, steps, questions and answers)
    /// is saved after every answer and resumed when you start again with the same --session.
    /// Type `quit` or end the input to leave.
    Chat {
        /// The bundle directory.
        bundle: PathBuf,
        /// The session file (default: culprit-chat-<incident id>.json in the current directory).
        #[arg(long, value_name = "FILE")]
        session: Option<PathBuf>,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Simulate seed 001's config-change incident (a lowered LDAP timeout causing a retry storm)
    /// and investigate it end to end.
    Demo {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Keep the simulated bundle in this directory (default: a temporary one, removed after).
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Write a simulated, labelled incident bundle (with truth.json).
    ///
    /// A microservice system with a database, a cache and a queue; normal traffic with
    /// seasonality and noise; one injected fault that propagates to callers, plus red herrings.
    /// Deterministic for a seed.
    Simulate {
        /// Directory to write the bundle into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fault to inject (default: drawn from the seed; `none` for a fault-free window).
        /// One of: cpu_hog, memory_leak, latency, packet_loss, bad_deploy, config_change,
        /// db_pool_exhaustion, feature_flag, none.
        #[arg(long, value_name = "KIND")]
        fault: Option<String>,
        /// Number of services (at least 6).
        #[arg(long, value_name = "N")]
        services: Option<usize>,
        /// Leave out topology.json, so the dependency graph must be mined from traces.
        #[arg(long)]
        no_topology: bool,
        /// Add seed 001's hard red herring: an innocent deploy between the cause and the alert
        /// just before the fault, then a lasting CPU rise there (the evals/red_herrings.toml suite).
        #[arg(long)]
        decoy: bool,
    },
    /// Score culprit and the published baselines on labelled suites, side by side: AC@1/3/5,
    /// Avg@5, MRR per suite, system and fault kind; FPR on fault-free cases; Brier score and
    /// expected calibration error of culprit's confidence; seconds per case.
    ///
    /// A SUITE is a dataset folder (../shared/datasets/nezha/trainticket,
    /// ../shared/datasets/nezha/onlineboutique, ../shared/datasets/rcd_sockshop), a directory of
    /// bundles each with truth.json, a simulated-suite spec (evals/simulated.toml), or `sim:A-B`
    /// for simulated seeds A to B (`sim:A-B:KIND` forces a fault kind, e.g. `sim:1-50:none`).
    Eval {
        /// Suites to score, one table each (datasets with several systems give one per system).
        #[arg(required = true, value_name = "SUITE")]
        suites: Vec<String>,
        /// Methods to run, comma-separated: culprit, culprit_embed (with the learned k-NN
        /// detector, fitted per case on its reference period), baro, nsigma, epsilon_diagnosis,
        /// pagerank, earliest, random (default: all).
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        methods: Option<Vec<String>>,
        /// Print the summary as JSON ({"suites":[{"name","system","cases","methods":{…}}]}).
        #[arg(long)]
        json: bool,
        /// Also write per-case details (JSON lines), the summary and SVG plots (accuracy per
        /// method, reliability of culprit's confidence) into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// A case taking longer than this (loading and all methods) is Invalid.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
        /// Instead of scoring methods, measure the feedback loop: the re-ranker learns from half
        /// of each suite (each case's truth given as an operator's feedback on its triage) and
        /// the other, held-apart half is scored before and after it.
        #[arg(long)]
        feedback_split: bool,
    },
    /// Train the learned embedders (a TabularResNet per source, self-supervised, no labels) on
    /// fault-free events, and save weights and model cards.
    ///
    /// From a bundle, the events are its separate baseline, or those before the analysis start.
    /// From a store (a LanceDB URI), the stored events of the source. Writes
    /// `<source>.safetensors` and `<source>.card.json` (features, vocabularies, loss curve, data
    /// window, seed) into --out. Runs on CUDA when available, else CPU.
    Train {
        /// Which model to train.
        #[arg(long, value_enum, default_value = "all")]
        source: TrainSource,
        /// A bundle directory or a store URI.
        #[arg(long, value_name = "BUNDLE|STORE")]
        from: String,
        /// Directory for the weights and model cards.
        #[arg(long, value_name = "DIR", default_value = "models")]
        out: PathBuf,
        /// Passes over the data (capped at --max-steps optimiser steps).
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        #[arg(long, default_value_t = 2000)]
        max_steps: usize,
        /// Most events used per source (evenly thinned beyond).
        #[arg(long, default_value_t = 200_000)]
        max_events: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Inspect trained models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The knowledge base of past incidents: add postmortems, search by similarity.
    ///
    /// Text is embedded offline (hashed words and word pairs) unless CULPRIT_EMBEDDINGS_URL (an
    /// OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1) and CULPRIT_EMBEDDINGS_MODEL
    /// name an embeddings endpoint (key from CULPRIT_API_KEY or OPENAI_API_KEY). Searches compare
    /// only entries made by the same embedder.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// The event store (LanceDB): ingest a bundle's events with their embeddings, show sizes.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Measure speed and memory on a simulated one-hour, 50-service incident
    /// (~1M log lines, ~500 metric series, ~200k spans). Build with --release for real figures.
    ///
    /// With --write DIR it only writes that incident as a bundle, so the whole path from files
    /// can be timed: `culprit bench --write /tmp/big && time culprit investigate /tmp/big`.
    Bench {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the benchmark incident as a bundle into DIR instead of measuring.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
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
    },
}

/// The agent that may follow the static triage.
#[derive(clap::Args, Debug)]
struct AgentArgs {
    /// When to run the agent after the static triage: `always`, `never`, or `auto` (when the
    /// alert is high or critical, or the triage is less confident than --threshold).
    #[arg(long, value_enum, default_value_t = Trigger::Auto)]
    agent: Trigger,
    /// The agent stops once its leading hypothesis reaches this confidence (its posterior).
    #[arg(long, value_name = "P", default_value_t = 0.85)]
    threshold: f64,
    /// Most tool calls the agent makes.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_turns: usize,
    /// Save the agent's transcript (JSON, schema culprit.transcript/v1) to this file.
    #[arg(long, value_name = "FILE")]
    transcript: Option<PathBuf>,
    /// The knowledge base the agent searches for similar past incidents (a LanceDB URI; default:
    /// the default store, when it exists).
    #[arg(long, value_name = "URI")]
    kb: Option<String>,
    /// Who chooses the agent's checks: `rules` (offline, deterministic) or `llm` (a model behind
    /// an OpenAI-compatible endpoint; if it fails, the investigation finishes with `rules`).
    #[arg(long, value_enum, default_value_t = PolicyKind::Rules)]
    policy: PolicyKind,
    /// The chat endpoint's base URL for `--policy llm`, e.g. http://127.0.0.1:8080/v1
    /// [env: CULPRIT_LLM_URL]. The key, if one is needed, only from CULPRIT_API_KEY or
    /// OPENAI_API_KEY.
    #[arg(long, value_name = "URL")]
    llm_url: Option<String>,
    /// The model's name at that endpoint [env: CULPRIT_LLM_MODEL].
    #[arg(long, value_name = "NAME")]
    llm_model: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PolicyKind {
    Rules,
    Llm,
}

impl AgentArgs {
    fn config(&self) -> Result<investigation::AgentConfig> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            bail!("--threshold must be between 0 and 1 (exclusive), got {}", self.threshold);
        }
        Ok(investigation::AgentConfig { threshold: self.threshold, max_turns: self.max_turns, ..Default::default() })
    }

    fn knowledge_base(&self) -> Result<Option<culprit::kb::BlockingKb>> {
        let uri = match &self.kb {
            Some(u) => u.clone(),
            None => {
                let d = culprit::store::default_uri();
                if !Path::new(&d).is_dir() {
                    return Ok(None);
                }
                d
            }
        };
        Ok(Some(culprit::kb::BlockingKb::open(&uri).with_context(|| format!("opening the knowledge base {uri}"))?))
    }

    fn policy(&self) -> Result<Box<dyn investigation::Policy>> {
        Ok(match self.policy {
            PolicyKind::Rules => Box::new(investigation::rules::Rules),
            PolicyKind::Llm => {
                let endpoint = culprit::llm::Endpoint::chat_from_env(self.llm_url.clone(), self.llm_model.clone())?.with_context(|| {
                    "--policy llm needs an endpoint: --llm-url and --llm-model (or CULPRIT_LLM_URL and CULPRIT_LLM_MODEL)"
                })?;
                Box::new(investigation::llm::LlmPolicy::new(endpoint)?)
            }
        })
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TrainSource {
    Logs,
    Metrics,
    Traces,
    Changes,
    All,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Which models exist, their age and data, and which should be retrained and why: features
    /// that no longer match, age, or drift (a KS test of recent embeddings against the training
    /// profile, per dimension). Exit code 3 when any model should be retrained.
    Status {
        #[arg(long, value_name = "DIR", default_value = "models")]
        models: PathBuf,
        /// A bundle of recent data to check drift against.
        #[arg(long, value_name = "BUNDLE")]
        recent: Option<PathBuf>,
        /// Models older than this should be retrained.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        max_age_days: i64,
    },
}

#[derive(Subcommand, Debug)]
enum KbCommand {
    /// Add past incidents: markdown postmortems with a front-matter block (root_cause, kind,
    /// resolution, services, tags, title, date), incident JSON ({"title", "root_cause":
    /// {"service", "kind"}, "resolution", …}), or bundle directories with truth.json. An entry
    /// with the id of an existing one replaces it.
    Add {
        #[arg(required = true, value_name = "FILE|BUNDLE")]
        files: Vec<PathBuf>,
        /// Store URI (default: $CULPRIT_STORE, else the user's data directory).
        #[arg(long, value_name = "URI")]
        store: Option<String>,
    },
    /// Find past incidents similar to a question or to an incident bundle (which is investigated
    /// first), with their root causes and resolutions.
    Search {
        /// Free text, or a bundle directory.
        #[arg(value_name = "QUERY|BUNDLE")]
        query: String,
        #[arg(short, default_value_t = 5)]
        k: usize,
        #[arg(long, value_name = "URI")]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Stream a bundle's events (logs, metrics, traces, changes) into the events table, embedded
    /// with the models in --models where one exists; one commit per --batch rows, each reported
    /// as `committed N rows`. Indexes are built once the table is large enough.
    Ingest {
        bundle: PathBuf,
        #[arg(long, value_name = "URI")]
        store: Option<String>,
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        #[arg(long, default_value = "production")]
        environment: String,
        /// Do not build indexes at the end (build them later, on a quieter machine).
        #[arg(long)]
        no_index: bool,
    },
    /// Row counts of the tables.
    Stats {
        #[arg(long, value_name = "URI")]
        store: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Investigate { bundle, json, window, embeddings, agent } => {
            let knn = embeddings.map(|e| culprit::embed::knn::KnnConfig {
                models: if e == "fit" {
                    culprit::embed::knn::Models::FitOnReference
                } else {
                    culprit::embed::knn::Models::Dir(PathBuf::from(e))
                },
                ..Default::default()
            });
            let cfg = Config { group_window: window as i64 * 1000, knn, ..Config::default() };
            investigate(&bundle, json, &cfg, &agent)
        }
        Command::Train { source, from, out, epochs, max_steps, max_events, seed } => {
            use culprit::embed::SourceKind;
            let sources = match source {
                TrainSource::Logs => vec![SourceKind::Logs],
                TrainSource::Metrics => vec![SourceKind::Metrics],
                TrainSource::Traces => vec![SourceKind::Traces],
                TrainSource::Changes => vec![SourceKind::Changes],
                TrainSource::All => SourceKind::ALL.to_vec(),
            };
            let cfg = culprit::embed::net::TrainConfig { epochs, max_steps, seed, ..Default::default() };
            commands::train(commands::TrainArgs { sources, from, out, cfg, max_events })
        }
        Command::Models { command: ModelsCommand::Status { models, recent, max_age_days } } => {
            commands::models_status(&models, recent.as_deref(), max_age_days)
        }
        Command::Kb { command: KbCommand::Add { files, store } } => {
            commands::kb_add(&store.unwrap_or_else(culprit::store::default_uri), &files)
        }
        Command::Kb { command: KbCommand::Search { query, k, store, json } } => {
            commands::kb_search(&store.unwrap_or_else(culprit::store::default_uri), &query, k, json)
        }
        Command::Store { command: StoreCommand::Ingest { bundle, store, models, batch, environment, no_index } } => {
            if batch == 0 {
                bail!("--batch must be at least 1");
            }
            let uri = store.unwrap_or_else(culprit::store::default_uri);
            commands::store_ingest(&uri, &bundle, models.as_deref(), batch, &environment, !no_index)
        }
        Command::Store { command: StoreCommand::Stats { store } } => {
            commands::store_stats(&store.unwrap_or_else(culprit::store::default_uri))
        }
        Command::Chat { bundle, session, agent } => chat(&bundle, session, &agent),
        Command::Drilldown {
            data,
            metric,
            ratio,
            dims,
            baseline,
            current,
            forecast,
            season,
            search,
            max_attributes,
            bootstrap,
            change,
            treated,
            arm,
            split,
            save_baseline,
            against,
            baselines,
            compare,
            chart,
            out,
            json,
        } => {
            let args = DrilldownArgs {
                data,
                metric,
                ratio,
                dims,
                baseline,
                current,
                forecast,
                season,
                search,
                max_attributes,
                bootstrap,
                change,
                treated,
                arm,
                split,
                save_baseline,
                against,
                baselines,
                compare,
                chart,
                out,
                json,
            };
            drilldown(args)
        }
        Command::Serve { config, listen, data_dir } => {
            let mut cfg = match &config {
                Some(p) => culprit::serve::config::ServeConfig::load(p)?,
                None => culprit::serve::config::ServeConfig::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(culprit::serve::serve(cfg, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { json, keep, agent } => {
            let (dir, _tmp) = match keep {
                Some(d) => (d, None),
                None => {
                    let t = std::env::temp_dir().join(format!("culprit-demo-{}", std::process::id()));
                    (t.clone(), Some(TempDir(t)))
                }
            };
            let incident = simulate::simulate(&simulate::demo_config());
            ingest::write_bundle(&incident, incident.truth.as_ref(), &dir)
                .with_context(|| format!("writing the demo bundle to {}", dir.display()))?;
            if !json {
                println!("Simulated seed 001's incident into {} and investigating it.\n", dir.display());
            }
            investigate(&dir, json, &Config::default(), &agent)
        }
        Command::Simulate { out, seed, fault, services, no_topology, decoy } => {
            let mut cfg = SimConfig { topology_declared: !no_topology, decoy, ..SimConfig::for_seed(seed) };
            if let Some(f) = fault {
                let kind = FaultKind::parse(&f).with_context(|| {
                    format!("unknown fault kind `{f}`; expected one of cpu_hog, memory_leak, latency, packet_loss, bad_deploy, config_change, db_pool_exhaustion, feature_flag, none")
                })?;
                cfg.fault = Some(kind);
            }
            if let Some(n) = services {
                if n < 6 {
                    bail!("--services must be at least 6 (got {n})");
                }
                cfg.services = n;
            }
            let incident = simulate::simulate(&cfg);
            ingest::write_bundle(&incident, incident.truth.as_ref(), &out)
                .with_context(|| format!("writing the bundle to {}", out.display()))?;
            let truth = incident.truth.as_ref();
            println!(
                "wrote {} ({} fault at {}) to {}",
                incident.id,
                truth.map_or("unknown", |t| t.kind.as_str()),
                truth.map_or("-", |t| if t.service.is_empty() { "-" } else { t.service.as_str() }),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { suites, methods, json, out, timeout, feedback_split } => {
            let mut opts = eval::EvalOptions { timeout: std::time::Duration::from_secs(timeout), ..Default::default() };
            // Drill-down datasets (RobustSpot RS, Kontrast) have their own scores.
            let (drill, suites): (Vec<String>, Vec<String>) =
                suites.into_iter().partition(|s| culprit::drilldown::eval::recognise(Path::new(s)).is_some());
            if !drill.is_empty() {
                run_drilldown_eval(&drill, json)?;
                if suites.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            if feedback_split {
                return run_feedback_split(&suites, json, &opts);
            }
            if let Some(names) = methods {
                opts.methods = names
                    .iter()
                    .map(|n| {
                        Method::parse(n).with_context(|| {
                            format!("unknown method `{n}`; expected culprit, culprit_embed, baro, nsigma, epsilon_diagnosis, pagerank, earliest or random")
                        })
                    })
                    .collect::<Result<_>>()?;
            }
            run_eval(&suites, json, out.as_deref(), &opts)
        }
        Command::Bench { seed, write: Some(dir), .. } => {
            let incident = simulate::simulate(&simulate::bench_config(seed));
            ingest::write_bundle(&incident, incident.truth.as_ref(), &dir)
                .with_context(|| format!("writing the benchmark bundle to {}", dir.display()))?;
            println!("wrote {} to {}", incident.id, dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { seed, json, write: None, drilldown: true, rows, .. } => {
            let dir = std::env::temp_dir().join(format!("culprit-bench-drilldown-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let _cleanup = TempDir(dir.clone());
            eprintln!("bench: writing {rows} rows, then the drill-down");
            let b = culprit::bench::run_drilldown(rows, seed, &dir).map_err(|e| anyhow::anyhow!(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                print!("{}", culprit::bench::render_drilldown(&b));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { json, write: None, serve: true, seconds, senders, watchers, rate, .. } => {
            let dir = std::env::temp_dir().join(format!("culprit-bench-serve-{}", std::process::id()));
            let _cleanup = TempDir(dir.clone());
            let cfg = culprit::serve::load::LoadConfig {
                seconds,
                senders,
                watchers,
                services: 20,
                rate_per_sender: rate,
                data_dir: dir,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            eprintln!(
                "bench: load test for {seconds} s ({senders} webhook senders at {rate}/s each, {watchers} watchers)"
            );
            let r = rt.block_on(culprit::serve::load::run(&cfg)).map_err(|e| anyhow::anyhow!(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", culprit::serve::load::render(&r));
            }
            Ok(if r.errors == 0 && r.lost_alerts == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Bench {
            seed,
            json,
            write: None,
            learned: true,
            train_events,
            vectors,
            queries,
            no_vector_index,
            ..
        } => {
            let dir = std::env::temp_dir().join(format!("culprit-bench-store-{}", std::process::id()));
            let _cleanup = TempDir(dir.clone());
            let b =
                culprit::bench::run_learned(seed, &dir, train_events, vectors, queries, !no_vector_index, &|what| {
                    eprintln!("bench: {what}")
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                print!("{}", culprit::bench::render_learned(&b));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { seed, json, write: None, .. } => {
            let b = culprit::bench::run(seed);
            if json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                print!("{}", culprit::bench::render(&b));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Removes a temporary directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn investigate(bundle: &Path, json: bool, cfg: &Config, agent: &AgentArgs) -> Result<ExitCode> {
    let incident = ingest::load_bundle(bundle).with_context(|| format!("loading bundle {}", bundle.display()))?;
    let t = triage::triage(&incident, cfg);
    let mut r = report::build(&incident, &t);
    let agent_cfg = agent.config()?;
    if investigation::should_run(agent.agent, &incident, &t, &agent_cfg) {
        let kb = agent.knowledge_base()?;
        let mut policy = agent.policy()?;
        let transcript =
            investigation::investigate(&incident, &t, kb.as_ref().map(|k| k as _), policy.as_mut(), &agent_cfg);
        if let Some(path) = &agent.transcript {
            std::fs::write(path, serde_json::to_string_pretty(&transcript)?)
                .with_context(|| format!("writing the transcript to {}", path.display()))?;
        }
        report::add_investigation(&mut r, transcript);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", report::render_text(&r));
    }
    Ok(match r.verdict {
        Verdict::RootCause => ExitCode::SUCCESS,
        Verdict::NoRootCause => ExitCode::from(3),
    })
}

fn chat(bundle: &Path, session: Option<PathBuf>, agent: &AgentArgs) -> Result<ExitCode> {
    use investigation::chat::{self, SavedChat, CHAT_SCHEMA};
    use std::io::{BufRead, IsTerminal, Write};
    let incident = ingest::load_bundle(bundle).with_context(|| format!("loading bundle {}", bundle.display()))?;
    let t = triage::triage(&incident, &Config::default());
    let cfg = agent.config()?;
    let kb = agent.knowledge_base()?;
    let path = session.unwrap_or_else(|| {
        let id: String = incident
            .id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        PathBuf::from(format!("culprit-chat-{id}.json"))
    });
    let mut model = match agent.policy {
        PolicyKind::Llm => {
            let endpoint = culprit::llm::Endpoint::chat_from_env(agent.llm_url.clone(), agent.llm_model.clone())?
                .context(
                "--policy llm needs an endpoint: --llm-url and --llm-model (or CULPRIT_LLM_URL and CULPRIT_LLM_MODEL)",
            )?;
            Some(investigation::llm::LlmPolicy::new(endpoint)?)
        }
        PolicyKind::Rules => None,
    };
    let (mut s, mut exchanges) = if path.exists() {
        let saved: SavedChat = serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: not a culprit chat session", path.display()))?;
        if saved.schema != CHAT_SCHEMA || saved.incident != incident.id {
            bail!(
                "{}: a session of incident `{}` ({}), not of `{}`",
                path.display(),
                saved.incident,
                saved.schema,
                incident.id
            );
        }
        if let Some(m) = model.as_mut() {
            m.restore(saved.messages.clone());
        }
        println!("Resumed {} ({} earlier questions).", path.display(), saved.exchanges.len());
        (
            investigation::Session::resume(&incident, &t, kb.as_ref().map(|k| k as _), saved.ledger, saved.steps, &cfg),
            saved.exchanges,
        )
    } else {
        let mut s = investigation::Session::new(&incident, &t, kb.as_ref().map(|k| k as _), &cfg);
        let mut rules = investigation::rules::Rules;
        let policy: &mut dyn investigation::Policy = match model.as_mut() {
            Some(m) => m,
            None => &mut rules,
        };
        let stop = s.run(policy, &cfg);
        print!("{}", s.transcript(policy.name(), policy.tokens(), stop, cfg.threshold).render());
        (s, Vec::new())
    };
    let save =
        |s: &investigation::Session, exchanges: &[chat::Exchange], messages: Vec<serde_json::Value>| -> Result<()> {
            let saved = SavedChat {
                schema: CHAT_SCHEMA.to_string(),
                incident: incident.id.clone(),
                ledger: s.ledger.clone(),
                steps: s.steps.clone(),
                exchanges: exchanges.to_vec(),
                messages,
            };
            std::fs::write(&path, serde_json::to_string_pretty(&saved)?)
                .with_context(|| format!("saving the session to {}", path.display()))
        };
    save(&s, &exchanges, model.as_ref().map(|m| m.messages().to_vec()).unwrap_or_default())?;
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("\n> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let question = line?.trim().to_string();
        if question.is_empty() {
            continue;
        }
        if matches!(question.as_str(), "quit" | "exit" | "q") {
            break;
        }
        let ex = match model.as_mut() {
            Some(m) => chat::answer_with_model(
                &mut s,
                m,
                &question,
                &investigation::AgentConfig { max_turns: 4, ..cfg.clone() },
            ),
            None => chat::answer_offline(&mut s, &question),
        };
        println!("\n? {question}\n{}", ex.answer);
        exchanges.push(ex);
        save(&s, &exchanges, model.as_ref().map(|m| m.messages().to_vec()).unwrap_or_default())?;
    }
    println!("\nSession saved to {} (resume with --session {}).", path.display(), path.display());
    Ok(ExitCode::SUCCESS)
}

/// The suites named on the command line, and a progress bar over their cases.
fn suites_with_progress(args: &[String], what: &str) -> Result<(Vec<eval::Suite>, indicatif::ProgressBar)> {
    let mut all = Vec::new();
    for a in args {
        all.extend(eval::suites(a)?);
    }
    let total: usize = all.iter().map(|s| s.cases.len()).sum();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} cases [{{elapsed_precise}}] {{wide_bar}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Ok((all, bar))
}

fn run_eval(args: &[String], json: bool, out: Option<&Path>, opts: &eval::EvalOptions) -> Result<ExitCode> {
    let (all, bar) = suites_with_progress(args, "eval")?;
    let reports: Vec<eval::SuiteReport> = all.iter().map(|s| eval::run_suite(s, opts, &|| bar.inc(1))).collect();
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&eval::summary_json(&reports))?);
    } else {
        print!("{}", eval::render_markdown(&reports));
    }
    for r in &reports {
        for c in &r.results {
            for (m, o) in &c.methods {
                if let eval::Outcome::Invalid { reason } = o {
                    eprintln!("invalid: {} {} {}: {}", r.name, c.id, m.as_str(), reason);
                }
            }
        }
    }
    if let Some(dir) = out {
        write_eval_out(dir, &reports).with_context(|| format!("writing eval details to {}", dir.display()))?;
        eprintln!("wrote per-case details and plots to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ForecastArg {
    Auto,
    Robust,
    Scaled,
}

struct DrilldownArgs {
    data: PathBuf,
    metric: Option<String>,
    ratio: Option<String>,
    dims: Vec<String>,
    baseline: Option<String>,
    current: String,
    forecast: ForecastArg,
    season: Option<String>,
    search: culprit::drilldown::report::SearchKind,
    max_attributes: u8,
    bootstrap: usize,
    change: Option<PathBuf>,
    treated: Option<String>,
    arm: Option<String>,
    split: Vec<f64>,
    save_baseline: Option<String>,
    against: Option<String>,
    baselines: PathBuf,
    compare: Option<PathBuf>,
    chart: Option<PathBuf>,
    out: Option<PathBuf>,
    json: bool,
}

fn drilldown(a: DrilldownArgs) -> Result<ExitCode> {
    use culprit::drilldown::{self, report, table};
    let err = |e: String| anyhow::anyhow!(e);
    let (measure, kpi) = match (a.metric, a.ratio) {
        (Some(m), _) => (table::Measure::Sum(m.clone()), m),
        (None, Some(r)) => {
            let (x, y) = r.split_once('/').with_context(|| format!("--ratio {r:?}: expected NUM/DEN"))?;
            (table::Measure::Ratio(x.to_string(), y.to_string()), r.clone())
        }
        (None, None) => bail!("give --metric or --ratio"),
    };
    let against = a.against.as_deref().map(|s| report::load_baseline(&a.baselines, s)).transpose().map_err(err)?;
    let method = match (a.season.as_deref(), a.forecast) {
        (Some(s), _) => table::Method::Seasonal(table::duration(s).map_err(|e| anyhow::anyhow!("--season {e}"))?),
        (None, ForecastArg::Auto) => table::Method::Auto,
        (None, ForecastArg::Robust) => table::Method::Robust,
        (None, ForecastArg::Scaled) => table::Method::Scaled,
    };
    let current = table::window(&a.current).map_err(|e| anyhow::anyhow!("--current {e}"))?;
    // With a stored baseline there are no baseline rows to read: its window is empty here (the
    // report names the snapshot's), so the checks that need baseline rows say they were skipped.
    let baseline = match (&a.baseline, &against) {
        (Some(_), Some(_)) => bail!("give --baseline or --against, not both"),
        (Some(b), None) => table::window(b).map_err(|e| anyhow::anyhow!("--baseline {e}"))?,
        (None, Some(_)) => (current.0, current.0),
        (None, None) => bail!("give --baseline or --against"),
    };
    if against.is_none()
        && baseline.0 < current.1
        && current.0 < baseline.1
        && !matches!(method, table::Method::Seasonal(_))
    {
        bail!(
            "--baseline {} and --current {} overlap: rows would count as both actual and forecast",
            table::span_text(baseline),
            table::span_text(current)
        );
    }
    let q = table::Query { measure, dims: a.dims, baseline, current, method };
    let data = a.data.display().to_string();
    eprintln!("drilldown: reading {data}");
    let rows = table::read(&a.data, &q)?;
    let (cube, base) = match &against {
        Some(s) => (
            report::cube_against(&rows, &q, s)?,
            report::BaselineRef {
                name: Some(s.name.clone()),
                version: Some(s.version),
                window: table::span_text(s.window),
                forecast: s.forecast.clone(),
                data: s.data.clone(),
                created: Some(s.created.clone()),
            },
        ),
        None => {
            let (cube, forecast) = rows.cube(&q)?;
            (
                cube,
                report::BaselineRef {
                    name: None,
                    version: None,
                    window: table::span_text(q.baseline),
                    forecast,
                    data: data.clone(),
                    created: None,
                },
            )
        }
    };
    let mut base = base;
    if let Some(name) = &a.save_baseline {
        let snap = report::save_baseline(&a.baselines, name, &cube, &q, &kpi, &base.forecast, &data).map_err(err)?;
        eprintln!("drilldown: saved baseline {name} v{} in {}", snap.version, a.baselines.display());
        if against.is_none() {
            (base.name, base.version, base.created) = (Some(snap.name), Some(snap.version), Some(snap.created));
        }
    }
    let changes = match &a.change {
        Some(p) => {
            let mut rr = culprit::model::ReadReport::default();
            let c = culprit::ingest::read_changes(p, &mut rr)
                .with_context(|| format!("reading changes from {}", p.display()))?;
            for issue in rr.issues.iter().take(5) {
                eprintln!("drilldown: {}: {issue}", p.display());
            }
            if c.is_empty() {
                bail!("{}: no change event could be read", p.display());
            }
            c
        }
        None => Vec::new(),
    };
    let treated = match &a.treated {
        Some(t) => Some(
            drilldown::parse_elements(t)
                .map_err(|e| anyhow::anyhow!("--treated {e}"))?
                .into_iter()
                .next()
                .context("--treated is empty")?,
        ),
        None => None,
    };
    let earlier = match &a.compare {
        Some(p) => Some(
            serde_json::from_str::<report::Earlier>(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a drill-down report (--out JSON)", p.display()))?,
        ),
        None => None,
    };
    let opts = report::Options {
        kpi,
        search: a.search,
        max_attributes: usize::from(a.max_attributes),
        replicas: a.bootstrap,
        seed: 1,
        changes,
        treated,
        arm: a.arm.map(|d| (d, a.split)),
    };
    eprintln!("drilldown: {} rows, {} segments; searching", rows.len(), cube.leaves.len());
    let r = report::build(&rows, &q, &cube, base, &opts, earlier.as_ref());
    let text = serde_json::to_string_pretty(&r)?;
    if let Some(p) = &a.out {
        std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.chart {
        std::fs::write(p, report::chart(&r)).with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        println!("{text}");
    } else {
        r.narrative.iter().for_each(|l| println!("{l}"));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_drilldown_eval(args: &[String], json: bool) -> Result<()> {
    use culprit::drilldown::eval as de;
    let sets: Vec<de::Dataset> = args.iter().filter_map(|a| de::recognise(Path::new(a))).collect();
    let total: usize = sets.iter().map(de::cases_in).sum();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} drill-down eval {pos}/{len} cases [{elapsed_precise}] {wide_bar} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let outcomes: Vec<de::Outcome> =
        sets.iter().map(|d| de::run(d, &|| bar.inc(1)).map_err(|e| anyhow::anyhow!(e))).collect::<Result<_>>()?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "drilldown": outcomes }))?);
    } else {
        outcomes.iter().for_each(|o| print!("{}", de::render(o)));
    }
    Ok(())
}

fn run_feedback_split(args: &[String], json: bool, opts: &eval::EvalOptions) -> Result<ExitCode> {
    let (all, bar) = suites_with_progress(args, "feedback split")?;
    let rows: Vec<eval::FeedbackSplit> = all.iter().map(|s| eval::feedback_split(s, opts, &|| bar.inc(1))).collect();
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", eval::render_feedback_split(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--out DIR`: the summary, per-case JSON lines and SVG plots for every suite.
fn write_eval_out(dir: &Path, reports: &[eval::SuiteReport]) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&eval::summary_json(reports))?)?;
    for (i, r) in reports.iter().enumerate() {
        let slug: String = r.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let stem = format!("{:02}-{}", i + 1, slug.trim_matches('_'));
        let mut cases = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{stem}.cases.jsonl")))?);
        for c in &r.results {
            writeln!(cases, "{}", serde_json::to_string(c)?)?;
        }
        cases.flush()?;
        std::fs::write(dir.join(format!("{stem}.accuracy.svg")), culprit::plots::accuracy(r))?;
        let pairs: Vec<(f64, bool)> = r
            .results
            .iter()
            .filter_map(|c| match c.methods.get(&Method::Culprit)? {
                eval::Outcome::Pass(s) | eval::Outcome::Fail(s) => Some((s.confidence?, s.rank == Some(1))),
                eval::Outcome::Invalid { .. } => None,
            })
            .collect();
        if !pairs.is_empty() {
            let (ece, bins) = eval::calibration(&pairs, 10);
            let title = format!("{}: culprit confidence (ECE {ece:.3})", r.name);
            std::fs::write(dir.join(format!("{stem}.reliability.svg")), culprit::plots::reliability(&title, &bins))?;
        }
    }
    Ok(())
}
