//! Scoring culprit against labelled cases: AC@k, Avg@5, MRR per system and per fault kind, and
//! the false-positive rate on fault-free cases.
//!
//! A suite is a dataset folder an adapter recognises, a directory of bundles with `truth.json`,
//! or a simulated suite `sim:A-B` (seeds A to B, generated at eval time). A case whose loading or
//! analysis fails is `Invalid`: counted apart, never a hit or a miss.

use crate::adapters;
use crate::model::{Incident, Truth};
use crate::simulate::{self, FaultKind, SimConfig};
use crate::triage::{self, Config};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}: not a dataset culprit knows, a directory of bundles with truth.json, or sim:A-B")]
    UnknownSuite(String),
    #[error("{path}: {message}")]
    Suite { path: String, message: String },
}

/// One case to run: how to load it, and its label.
#[derive(Debug, Clone)]
pub enum CaseSource {
    Dataset(Box<adapters::CaseRef>),
    Bundle(PathBuf),
    Simulated(SimConfig),
}

#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub system: String,
    pub source: CaseSource,
}

#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub cases: Vec<Case>,
}

/// Resolves a suite argument into its cases (cheap: nothing heavy is loaded yet).
pub fn suites(arg: &str) -> Result<Vec<Suite>, EvalError> {
    if let Some(spec) = arg.strip_prefix("sim:") {
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
            s.trim().parse::<u64>().map_err(|_| EvalError::Suite { path: arg.into(), message: format!("`{s}` is not a seed") })
        };
        let (a, b) = (parse(a)?, parse(b)?);
        let cases = (a..=b)
            .map(|seed| Case {
                id: format!("sim-{seed}"),
                system: "simulated".into(),
                source: CaseSource::Simulated(SimConfig { fault, ..SimConfig::for_seed(seed) }),
            })
            .collect();
        return Ok(vec![Suite { name: arg.to_string(), cases }]);
    }
    let path = Path::new(arg);
    let kinds = adapters::recognise(path);
    if !kinds.is_empty() {
        let cases = adapters::list_cases(path).map_err(|e| EvalError::Suite { path: arg.into(), message: e.to_string() })?;
        let mut by_system: BTreeMap<String, Vec<Case>> = BTreeMap::new();
        for c in cases {
            by_system.entry(c.system.clone()).or_default().push(Case {
                id: c.id.clone(),
                system: c.system.clone(),
                source: CaseSource::Dataset(Box::new(c)),
            });
        }
        return Ok(by_system
            .into_iter()
            .map(|(system, cases)| Suite { name: format!("{arg} ({system})"), cases })
            .collect());
    }
    if path.is_dir() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| EvalError::Suite { path: arg.into(), message: e.to_string() })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("truth.json").is_file())
            .collect();
        if path.join("truth.json").is_file() {
            dirs.push(path.to_path_buf());
        }
        dirs.sort();
        if !dirs.is_empty() {
            let cases = dirs
                .into_iter()
                .map(|d| Case {
                    id: d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    system: "bundles".into(),
                    source: CaseSource::Bundle(d),
                })
                .collect();
            return Ok(vec![Suite { name: arg.to_string(), cases }]);
        }
    }
    Err(EvalError::UnknownSuite(arg.to_string()))
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Scored {
        truth: Truth,
        /// 1-based rank of the true service, if it was ranked at all.
        rank: Option<usize>,
        /// Services in ranked order (top 5).
        ranked: Vec<String>,
        root_cause_reported: bool,
        confidence: f64,
    },
    Invalid {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub system: String,
    pub fault_kind: String,
    pub seconds: f64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

pub fn load(case: &Case) -> Result<Incident, String> {
    match &case.source {
        CaseSource::Dataset(c) => adapters::load_case(c).map_err(|e| e.to_string()),
        CaseSource::Bundle(d) => crate::ingest::load_bundle(d).map_err(|e| e.to_string()),
        CaseSource::Simulated(cfg) => Ok(simulate::simulate(cfg)),
    }
}

/// Loads, triages and scores one case; a panic inside is caught and makes the case Invalid.
pub fn run_case(case: &Case, cfg: &Config) -> CaseResult {
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(Truth, Outcome), String> {
        let incident = load(case)?;
        let truth = incident.truth.clone().ok_or_else(|| "case has no truth label".to_string())?;
        let t = triage::triage(&incident, cfg);
        let ranked: Vec<String> = t.ranking.candidates.iter().map(|c| c.service.clone()).collect();
        let rank = if truth.is_fault_free() { None } else { ranked.iter().position(|s| *s == truth.service).map(|p| p + 1) };
        let confidence = t.ranking.candidates.first().map_or(0.0, |c| c.confidence);
        Ok((
            truth.clone(),
            Outcome::Scored {
                truth,
                rank,
                ranked: ranked.into_iter().take(5).collect(),
                root_cause_reported: t.ranking.has_root_cause,
                confidence,
            },
        ))
    }));
    let (fault_kind, outcome) = match outcome {
        Ok(Ok((truth, o))) => (truth.kind, o),
        Ok(Err(reason)) => ("unknown".into(), Outcome::Invalid { reason }),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            ("unknown".into(), Outcome::Invalid { reason: format!("panic: {reason}") })
        }
    };
    CaseResult {
        id: case.id.clone(),
        system: case.system.clone(),
        fault_kind,
        seconds: start.elapsed().as_secs_f64(),
        outcome,
    }
}

/// Accuracy figures over a set of case results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub cases: usize,
    /// Fault cases scored.
    pub faults: usize,
    #[serde(rename = "ac@1")]
    pub ac1: f64,
    #[serde(rename = "ac@3")]
    pub ac3: f64,
    #[serde(rename = "ac@5")]
    pub ac5: f64,
    #[serde(rename = "avg@5")]
    pub avg5: f64,
    pub mrr: f64,
    /// Fault-free cases, and the share of them where a root cause was (wrongly) reported.
    pub fault_free: usize,
    pub fpr: Option<f64>,
    /// Fault cases where a root cause was reported at all.
    pub detected: f64,
    pub invalid: usize,
    pub seconds_mean: f64,
}

pub fn score(results: &[&CaseResult]) -> Scores {
    let mut s = Scores { cases: results.len(), ..Default::default() };
    let mut hits = [0usize; 5];
    let mut rr = 0.0;
    let mut fp = 0usize;
    let mut detected = 0usize;
    for r in results {
        s.seconds_mean += r.seconds / results.len().max(1) as f64;
        match &r.outcome {
            Outcome::Invalid { .. } => s.invalid += 1,
            Outcome::Scored { truth, rank, root_cause_reported, .. } => {
                if truth.is_fault_free() {
                    s.fault_free += 1;
                    fp += usize::from(*root_cause_reported);
                    continue;
                }
                s.faults += 1;
                detected += usize::from(*root_cause_reported);
                if let Some(k) = rank {
                    for (i, h) in hits.iter_mut().enumerate() {
                        if *k <= i + 1 {
                            *h += 1;
                        }
                    }
                    rr += 1.0 / *k as f64;
                }
            }
        }
    }
    let n = s.faults.max(1) as f64;
    let ac: Vec<f64> = hits.iter().map(|h| *h as f64 / n).collect();
    s.ac1 = ac[0];
    s.ac3 = ac[2];
    s.ac5 = ac[4];
    s.avg5 = ac.iter().sum::<f64>() / 5.0;
    s.mrr = rr / n;
    s.detected = detected as f64 / n;
    s.fpr = (s.fault_free > 0).then(|| fp as f64 / s.fault_free as f64);
    s
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub name: String,
    pub system: String,
    pub overall: Scores,
    pub per_fault: BTreeMap<String, Scores>,
    pub results: Vec<CaseResult>,
}

/// Runs a suite's cases in parallel (up to the core count) with a progress callback.
pub fn run_suite(suite: &Suite, cfg: &Config, progress: &(dyn Fn() + Sync)) -> SuiteReport {
    let results: Vec<CaseResult> = suite
        .cases
        .par_iter()
        .map(|c| {
            let r = run_case(c, cfg);
            progress();
            r
        })
        .collect();
    let all: Vec<&CaseResult> = results.iter().collect();
    let mut per_fault: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for r in &results {
        per_fault.entry(r.fault_kind.clone()).or_default().push(r);
    }
    SuiteReport {
        name: suite.name.clone(),
        system: suite.cases.first().map(|c| c.system.clone()).unwrap_or_default(),
        overall: score(&all),
        per_fault: per_fault.into_iter().map(|(k, v)| (k, score(&v))).collect(),
        results,
    }
}

/// The markdown table people read.
pub fn render_markdown(reports: &[SuiteReport]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "| suite | system | fault | cases | AC@1 | AC@3 | AC@5 | Avg@5 | MRR | FPR | invalid | s/case |");
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let mut row = |fault: &str, sc: &Scores| {
            let fpr = sc.fpr.map(|f| format!("{f:.2}")).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.2} |",
                r.name, r.system, fault, sc.cases, sc.ac1, sc.ac3, sc.ac5, sc.avg5, sc.mrr, fpr, sc.invalid, sc.seconds_mean
            );
        };
        row("all", &r.overall);
        for (k, sc) in &r.per_fault {
            row(k, sc);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(kind: &str, rank: Option<usize>, reported: bool) -> CaseResult {
        CaseResult {
            id: "c".into(),
            system: "s".into(),
            fault_kind: kind.into(),
            seconds: 1.0,
            outcome: Outcome::Scored {
                truth: Truth { service: "a".into(), indicator: String::new(), kind: kind.into(), chain: vec![] },
                rank,
                ranked: vec![],
                root_cause_reported: reported,
                confidence: 0.5,
            },
        }
    }

    #[test]
    fn accuracy_at_k_and_fpr() {
        let rs = [
            res("cpu", Some(1), true),
            res("cpu", Some(3), true),
            res("cpu", None, false),
            res("none", None, true),
            res("none", None, false),
            CaseResult {
                id: "x".into(),
                system: "s".into(),
                fault_kind: "unknown".into(),
                seconds: 0.0,
                outcome: Outcome::Invalid { reason: "boom".into() },
            },
        ];
        let refs: Vec<&CaseResult> = rs.iter().collect();
        let s = score(&refs);
        assert_eq!(s.faults, 3);
        assert!((s.ac1 - 1.0 / 3.0).abs() < 1e-9);
        assert!((s.ac3 - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.avg5 - (1.0 + 1.0 + 2.0 + 2.0 + 2.0) / 15.0).abs() < 1e-9);
        assert!((s.mrr - (1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-9);
        assert_eq!(s.fpr, Some(0.5));
        assert_eq!(s.invalid, 1);
    }

    #[test]
    fn suite_arguments_are_checked() {
        assert!(matches!(suites("sim:1-3"), Ok(v) if v[0].cases.len() == 3));
        assert!(suites("sim:x-3").is_err());
        assert!(matches!(suites("sim:1-2:none"), Ok(v) if v[0].cases.len() == 2));
        assert!(suites("sim:1-2:meteor").is_err());
        assert!(matches!(suites("/nonexistent/place"), Err(EvalError::UnknownSuite(_))));
    }
}
