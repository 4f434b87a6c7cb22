//! Simulated suites, generated at eval time: `sim:A-B` (seeds A to B, each choosing its fault;
//! `sim:A-B:KIND` forces one) and spec files such as `evals/simulated.toml`.

use super::{Case, Dataset, Loaded, Scoring, Suite};
use crate::eval::EvalError;
use crate::simulate::{self, FaultKind, SimConfig};
use serde::Deserialize;
use std::path::Path;

/// `sim:A-B[:KIND]`.
pub struct Seeds;

/// A simulated-suite spec file (`.toml`).
pub struct Spec;

fn case(id: String, cfg: SimConfig) -> Case {
    Case::new(&Seeds, id, "simulated", cfg)
}

fn load(case: &Case) -> Result<Loaded, EvalError> {
    let cfg = case.own_key::<SimConfig>()?;
    Ok(Loaded::Incident(Box::new(simulate::simulate(cfg))))
}

impl Dataset for Seeds {
    fn name(&self) -> &'static str {
        "simulated seeds"
    }

    fn form(&self) -> &'static str {
        "sim:A-B or sim:A-B:KIND"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Incidents
    }

    fn recognise(&self, arg: &str) -> bool {
        arg.starts_with("sim:")
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let spec = arg.strip_prefix("sim:").unwrap_or(arg);
        let (range, fault) = match spec.split_once(':') {
            Some((r, k)) => {
                let kind = FaultKind::parse(k).ok_or_else(|| EvalError::Suite {
                    path: arg.into(),
                    message: format!("unknown fault kind `{k}`"),
                })?;
                (r, Some(kind))
            }
            None => (spec, None),
        };
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| EvalError::Suite { path: arg.into(), message: format!("`{s}` is not a seed") })
        };
        let (a, b) = (parse(a)?, parse(b)?);
        let cases =
            (a..=b).map(|seed| case(format!("sim-{seed}"), SimConfig { fault, ..SimConfig::for_seed(seed) })).collect();
        Ok(vec![Suite { name: arg.to_string(), scoring: Scoring::Incidents, cases }])
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        load(case)
    }
}

impl Dataset for Spec {
    fn name(&self) -> &'static str {
        "a simulated-suite spec"
    }

    fn form(&self) -> &'static str {
        "a .toml spec such as evals/simulated.toml"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Incidents
    }

    fn recognise(&self, arg: &str) -> bool {
        arg.ends_with(".toml")
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        spec_suites(Path::new(arg))
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        load(case)
    }
}

/// A simulated suite, generated at eval time (`evals/simulated.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulatedSpec {
    name: String,
    /// First and last seed, inclusive.
    seeds: [u64; 2],
    /// Fault kinds to force, one case per seed and kind; empty lets each seed choose.
    #[serde(default)]
    faults: Vec<String>,
    #[serde(default)]
    services: Option<usize>,
    /// Adds seed 001's hard red herring to every case (`SimConfig::decoy`).
    #[serde(default)]
    decoy: bool,
}

fn spec_suites(path: &Path) -> Result<Vec<Suite>, EvalError> {
    let err = |message: String| EvalError::Suite { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let spec: SimulatedSpec = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let faults: Vec<Option<FaultKind>> = if spec.faults.is_empty() {
        vec![None]
    } else {
        spec.faults
            .iter()
            .map(|f| {
                FaultKind::parse(f).map(Some).ok_or_else(|| err(format!("field `faults`: unknown fault kind `{f}`")))
            })
            .collect::<Result<_, _>>()?
    };
    let mut cases = Vec::new();
    for seed in spec.seeds[0]..=spec.seeds[1] {
        for fault in &faults {
            let mut cfg = SimConfig { fault: *fault, decoy: spec.decoy, ..SimConfig::for_seed(seed) };
            if let Some(n) = spec.services {
                cfg.services = n;
            }
            let kind = fault.map(|f| format!("-{}", f.as_str())).unwrap_or_default();
            cases.push(case(format!("sim-{seed}{kind}"), cfg));
        }
    }
    Ok(vec![Suite { name: spec.name, scoring: Scoring::Incidents, cases }])
}
