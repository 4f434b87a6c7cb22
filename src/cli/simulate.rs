//! `culprit simulate`: a labelled incident bundle, written.

use anyhow::{bail, Context, Result};
use culprit::simulate::{self, FaultKind, SimConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
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
}

pub fn run(a: SimulateArgs) -> Result<ExitCode> {
    let mut cfg = SimConfig { topology_declared: !a.no_topology, decoy: a.decoy, ..SimConfig::for_seed(a.seed) };
    if let Some(f) = a.fault {
        let kind = FaultKind::parse(&f).with_context(|| {
            format!("unknown fault kind `{f}`; expected one of cpu_hog, memory_leak, latency, packet_loss, bad_deploy, config_change, db_pool_exhaustion, feature_flag, none")
        })?;
        cfg.fault = Some(kind);
    }
    if let Some(n) = a.services {
        if n < 6 {
            bail!("--services must be at least 6 (got {n})");
        }
        cfg.services = n;
    }
    let incident = simulate::simulate(&cfg);
    culprit::ingest::write_bundle(&incident, incident.truth.as_ref(), &a.out)
        .with_context(|| format!("writing the bundle to {}", a.out.display()))?;
    let truth = incident.truth.as_ref();
    println!(
        "wrote {} ({} fault at {}) to {}",
        incident.id,
        truth.map_or("unknown", |t| t.kind.as_str()),
        truth.map_or("-", |t| if t.service.is_empty() { "-" } else { t.service.as_str() }),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
