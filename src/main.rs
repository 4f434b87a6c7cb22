//! The `culprit` command line: a thin shell over the library. Parses arguments, installs logging,
//! runs one verb, prints its result, and maps errors to exit codes.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use culprit::baselines::Method;
use culprit::eval;
use culprit::ingest;
use culprit::report::{self, Verdict};
use culprit::simulate::{self, FaultKind, SimConfig};
use culprit::triage::{self, Config};
use std::path::{Path, PathBuf};
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
        /// Methods to run, comma-separated: culprit, baro, nsigma, epsilon_diagnosis, pagerank,
        /// earliest, random (default: all).
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
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
        Command::Investigate { bundle, json, window } => {
            let cfg = Config { group_window: window as i64 * 1000, ..Config::default() };
            investigate(&bundle, json, &cfg)
        }
        Command::Demo { json, keep } => {
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
            investigate(&dir, json, &Config::default())
        }
        Command::Simulate { out, seed, fault, services, no_topology } => {
            let mut cfg = SimConfig { topology_declared: !no_topology, ..SimConfig::for_seed(seed) };
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
        Command::Eval { suites, methods, json, out, timeout } => {
            let mut opts = eval::EvalOptions { timeout: std::time::Duration::from_secs(timeout), ..Default::default() };
            if let Some(names) = methods {
                opts.methods = names
                    .iter()
                    .map(|n| {
                        Method::parse(n).with_context(|| {
                            format!("unknown method `{n}`; expected culprit, baro, nsigma, epsilon_diagnosis, pagerank, earliest or random")
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
        Command::Bench { seed, json, write: None } => {
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

fn investigate(bundle: &Path, json: bool, cfg: &Config) -> Result<ExitCode> {
    let incident = ingest::load_bundle(bundle).with_context(|| format!("loading bundle {}", bundle.display()))?;
    let t = triage::triage(&incident, cfg);
    let r = report::build(&incident, &t);
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

fn run_eval(args: &[String], json: bool, out: Option<&Path>, opts: &eval::EvalOptions) -> Result<ExitCode> {
    let mut all = Vec::new();
    for a in args {
        all.extend(eval::suites(a)?);
    }
    let total: usize = all.iter().map(|s| s.cases.len()).sum();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} eval {pos}/{len} cases [{elapsed_precise}] {wide_bar} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
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
