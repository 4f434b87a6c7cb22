//! Scoring culprit against labelled cases: AC@k, Avg@5, MRR per system and per fault kind, the
//! false-positive rate on fault-free cases, and calibration; the drill-down suites their own way
//! (`drilldown`).
//!
//! A suite comes from the dataset registry (`datasets`): a public dataset's folder, a directory of
//! bundles with `truth.json`, a simulated suite. Each method (`methods`) runs on every case;
//! culprit's go through `pipeline::run`. A case whose loading or analysis fails is `Invalid`:
//! counted apart, never a hit or a miss.

use crate::model::Truth;
use crate::triage::Config;
use methods::Answer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub mod datasets;
pub mod drilldown;
pub mod methods;

/// Resolves a suite argument into its suites and cases, through the dataset registry (cheap:
/// nothing heavy is loaded yet).
pub use datasets::suites;
pub use datasets::{Case, Suite};
pub use methods::Method;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{arg}: not a suite culprit eval knows; give one of: {forms}")]
    UnknownSuite { arg: String, forms: String },
    #[error("{path}: {message}")]
    Suite { path: String, message: String },
    #[error("case {id}: {message}")]
    Case { id: String, message: String },
    #[error(transparent)]
    Adapter(#[from] datasets::AdapterError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error("{0}")]
    Guard(#[from] GuardError),
}

/// How one method did on one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Top-1 right (a fault case), or no root cause claimed (a fault-free case).
    Pass(Scored),
    Fail(Scored),
    /// The case could not be judged (loading failed, a panic, a time-out): never a hit or a miss.
    Invalid {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// 1-based rank of the true service, if it was ranked at all (None for fault-free cases).
    pub rank: Option<usize>,
    /// Services in ranked order (top 5).
    pub ranked: Vec<String>,
    /// Whether a root cause was claimed (culprit's verdict; baselines always rank, never claim).
    pub root_cause_reported: Option<bool>,
    /// The top-1 confidence (culprit only).
    pub confidence: Option<f64>,
    pub seconds: f64,
    /// Where inside each of the top five services (culprit only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// 1-based rank at which service *and* location are both right (AIS), when the truth names
    /// a location and the method gives locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub located: Option<usize>,
    /// The evidence behind the first answer (culprit only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// What the confidence was computed from (culprit only; `calibrate`'s features).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub system: String,
    pub fault_kind: String,
    pub truth: Option<Truth>,
    pub load_seconds: f64,
    pub methods: BTreeMap<Method, Outcome>,
}

/// Why guarded work gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardError {
    #[error("could not start a worker thread: {0}")]
    Spawn(String),
    #[error("panic: {0}")]
    Panic(String),
    #[error("timed out after {0} s")]
    TimedOut(u64),
}

/// Runs `f` on its own thread, waiting at most `limit`; a panic or a time-out is an error
/// message. A timed-out thread is left to finish on its own: the run goes on without it.
fn guarded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Result<T, GuardError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().stack_size(16 << 20).spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    if let Err(e) = spawned {
        return Err(GuardError::Spawn(e.to_string()));
    }
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(GuardError::Panic(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into()),
        )),
        Err(_) => Err(GuardError::TimedOut(limit.as_secs())),
    }
}

/// Options of an eval run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub methods: Vec<Method>,
    pub config: Config,
    /// The agent's budgets (method `culprit_agent`).
    pub agent: crate::investigate::AgentConfig,
    /// Longest a case may take (loading and every method).
    pub timeout: Duration,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            methods: Method::ALL.to_vec(),
            config: Config::default(),
            agent: Default::default(),
            timeout: Duration::from_secs(300),
        }
    }
}

/// Whether a location names the labelled one (Nezha's inner-service labels: a log statement
/// pair `A_B`, an operation start, or a resource metric such as `CpuUsageRate(%)`). Code
/// locations must be the same statements; a CPU or memory label is named by any series of that
/// resource (`CpuUsage(m)` is the CPU `CpuUsageRate(%)` counts in millicores). Latency and
/// network labels are not widened: a slow service is not its network.
pub fn same_location(found: &str, label: &str) -> bool {
    let norm = |x: &str| x.trim().to_ascii_lowercase();
    if label.trim().is_empty() {
        return false;
    }
    let resource = |x: &str| {
        let c = crate::detect::canonical_indicator(x);
        (matches!(c, "cpu" | "mem") && !x.contains('_') && !x.contains('#')).then_some(c)
    };
    norm(found) == norm(label) || resource(label).is_some_and(|r| resource(found) == Some(r))
}

fn judge(truth: &Truth, answer: Answer, seconds: f64) -> Outcome {
    let Answer { ranked, claims_root_cause: reported, confidence, locations, why, features } = answer;
    let rank =
        if truth.is_fault_free() { None } else { ranked.iter().position(|s| *s == truth.service).map(|p| p + 1) };
    let located =
        truth.location.as_deref().filter(|_| !truth.is_fault_free() && !locations.is_empty()).and_then(|label| {
            ranked
                .iter()
                .zip(&locations)
                .position(|(s, l)| *s == truth.service && same_location(l, label))
                .map(|p| p + 1)
        });
    let pass = if truth.is_fault_free() { reported == Some(false) } else { rank == Some(1) };
    let scored = Scored {
        rank,
        ranked: ranked.into_iter().take(5).collect(),
        root_cause_reported: reported,
        confidence,
        seconds,
        locations: locations.into_iter().take(5).collect(),
        located,
        why,
        features,
    };
    if pass {
        Outcome::Pass(scored)
    } else {
        Outcome::Fail(scored)
    }
}

/// Loads one case and runs every method on it, each guarded against panics; the whole case is
/// bounded by the options' time-out.
pub fn run_case(case: &Case, opts: &EvalOptions) -> CaseResult {
    let started = Instant::now();
    let (case2, opts2) = (case.clone(), opts.clone());
    let work = move || -> Result<(Truth, f64, BTreeMap<Method, Outcome>), EvalError> {
        let t0 = Instant::now();
        let incident = case2.load_incident()?;
        let truth = incident
            .truth
            .clone()
            .ok_or_else(|| EvalError::Case { id: case2.id.clone(), message: "case has no truth label".into() })?;
        let load_seconds = t0.elapsed().as_secs_f64();
        let mut out = BTreeMap::new();
        for &m in &opts2.methods {
            let t = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.run(&incident, &opts2)));
            let outcome = match result {
                Ok(r) => judge(&truth, r, t.elapsed().as_secs_f64()),
                Err(_) => Outcome::Invalid { reason: format!("{} panicked", m.as_str()) },
            };
            out.insert(m, outcome);
        }
        Ok((truth, load_seconds, out))
    };
    let (truth, load_seconds, methods) = match guarded(opts.timeout, work).map_err(EvalError::from).and_then(|r| r) {
        Ok((truth, l, m)) => (Some(truth), l, m),
        Err(e) => {
            let reason = e.to_string();
            let m = opts.methods.iter().map(|m| (*m, Outcome::Invalid { reason: reason.clone() })).collect();
            (None, started.elapsed().as_secs_f64(), m)
        }
    };
    CaseResult {
        id: case.id.clone(),
        system: case.system.clone(),
        fault_kind: truth.as_ref().map_or_else(|| "unknown".to_string(), |t| t.kind.clone()),
        truth,
        load_seconds,
        methods,
    }
}

/// Accuracy figures of one method over a set of cases.
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
    /// AIS@1/3/5: service and location inside it both right within the top k, over the fault
    /// cases whose truth names a location (None when none does or the method gives no locations).
    #[serde(rename = "ais@1", default, skip_serializing_if = "Option::is_none")]
    pub ais1: Option<f64>,
    #[serde(rename = "ais@3", default, skip_serializing_if = "Option::is_none")]
    pub ais3: Option<f64>,
    #[serde(rename = "ais@5", default, skip_serializing_if = "Option::is_none")]
    pub ais5: Option<f64>,
    /// Fault-free cases, and the share of them where a root cause was (wrongly) claimed; None
    /// when there were none, or for a method that never claims.
    pub fault_free: usize,
    pub fpr: Option<f64>,
    /// Share of fault cases where a root cause was claimed (culprit only).
    pub detected: Option<f64>,
    /// Brier score and expected calibration error of the top-1 confidence (culprit only).
    pub brier: Option<f64>,
    pub ece: Option<f64>,
    /// The ECE a perfectly calibrated confidence would show on these answers ([`ece_floor`]):
    /// how far below it a suite this small can be asked to go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece_floor: Option<f64>,
    pub invalid: usize,
    /// Mean seconds per case for this method (loading excluded).
    pub seconds: f64,
}

/// (confidence, top-1 was right) pairs for calibration.
fn calibration_pairs(results: &[&CaseResult], m: Method) -> Vec<(f64, bool)> {
    results
        .iter()
        .filter_map(|r| match r.methods.get(&m)? {
            Outcome::Pass(s) | Outcome::Fail(s) => Some((s.confidence?, s.rank == Some(1))),
            Outcome::Invalid { .. } => None,
        })
        .collect()
}

/// Expected calibration error over `bins` equal-width bins, and the bins themselves
/// (mean confidence, accuracy, count) for a reliability plot.
pub fn calibration(pairs: &[(f64, bool)], bins: usize) -> (f64, Vec<(f64, f64, usize)>) {
    let mut acc = vec![(0.0f64, 0.0f64, 0usize); bins];
    for (c, ok) in pairs {
        let b = ((c.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += c;
        acc[b].1 += f64::from(u8::from(*ok));
        acc[b].2 += 1;
    }
    let n = pairs.len().max(1) as f64;
    let table: Vec<(f64, f64, usize)> =
        acc.into_iter().map(|(c, a, k)| if k == 0 { (0.0, 0.0, 0) } else { (c / k as f64, a / k as f64, k) }).collect();
    let ece = table.iter().map(|(c, a, k)| (*k as f64 / n) * (c - a).abs()).sum();
    (ece, table)
}

/// The ECE that a perfectly calibrated confidence would show on answers with these confidences:
/// the median, over 1,000 draws, of the ECE when each answer is right with exactly its printed
/// probability (a fixed seed, so the figure is the same on every run). On a handful of answers
/// sampling alone gives a large ECE: fourteen answers at 0.8 are right 11 times as often as 12
/// or 10, and 10 bins see them all.
pub fn ece_floor(pairs: &[(f64, bool)], bins: usize) -> f64 {
    use rand::{Rng, SeedableRng};
    const DRAWS: usize = 1000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xECE);
    let mut eces: Vec<f64> = (0..DRAWS)
        .map(|_| {
            let drawn: Vec<(f64, bool)> =
                pairs.iter().map(|(c, _)| (*c, rng.gen::<f64>() < c.clamp(0.0, 1.0))).collect();
            calibration(&drawn, bins).0
        })
        .collect();
    eces.sort_by(f64::total_cmp);
    eces[DRAWS / 2]
}

/// A calibration map fitted on the tuning halves of `reports` for method `m`'s confidence, and
/// what it gives: the fitted map, the cases it was fitted on, and per suite the ECE of the map
/// on the held-out half beside that of the confidence the run printed.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationFit {
    pub method: Method,
    pub features: Vec<String>,
    pub map: crate::calibrate::Logistic,
    pub fitted_on: usize,
    /// (suite, held-out cases, ECE of the printed confidence, ECE of the fitted map).
    pub held_out: Vec<(String, usize, f64, f64)>,
}

/// Each case's (features, top-1 right) for method `m`, over the cases `keep` selects by position.
fn feature_rows(r: &SuiteReport, m: Method, keep: impl Fn(usize) -> bool) -> Vec<(Vec<f64>, bool, f64)> {
    r.results
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .filter_map(|(_, c)| match c.methods.get(&m)? {
            Outcome::Pass(s) | Outcome::Fail(s) if !s.features.is_empty() => {
                Some((s.features.clone(), s.rank == Some(1), s.confidence.unwrap_or(0.0)))
            }
            _ => None,
        })
        .collect()
}

/// The L2 penalty of the calibration fit (a priori: the features are all in [-1, 1]).
const FIT_L2: f64 = 1e-2;

/// Fits `calibrate`'s map for method `m` (culprit: the triage's; culprit_agent: the agent's) on
/// the tuning halves of every suite in `reports`, each suite weighing the same in total.
pub fn fit_calibration(reports: &[SuiteReport], m: Method) -> Option<CalibrationFit> {
    let mut rows = Vec::new();
    for r in reports {
        let own = feature_rows(r, m, is_tuning_half);
        let weight = 1.0 / own.len().max(1) as f64;
        rows.extend(own.into_iter().map(|(x, ok, _)| (x, f64::from(u8::from(ok)), weight)));
    }
    if rows.is_empty() {
        return None;
    }
    let map = crate::calibrate::Logistic::fit(&rows, FIT_L2, 20_000);
    let held_out = reports
        .iter()
        .map(|r| {
            let rows = feature_rows(r, m, |i| !is_tuning_half(i));
            let printed: Vec<(f64, bool)> = rows.iter().map(|(_, ok, c)| (*c, *ok)).collect();
            let fitted: Vec<(f64, bool)> = rows.iter().map(|(x, ok, _)| (map.probability(x), *ok)).collect();
            (r.name.clone(), rows.len(), calibration(&printed, 10).0, calibration(&fitted, 10).0)
        })
        .collect();
    let features = match m {
        Method::CulpritAgent => crate::calibrate::AGENT_FEATURES.to_vec(),
        _ => crate::calibrate::TRIAGE_FEATURES.to_vec(),
    };
    Some(CalibrationFit {
        method: m,
        features: features.into_iter().map(String::from).collect(),
        map,
        fitted_on: rows.len(),
        held_out,
    })
}

/// The fit as markdown: the map (to put into `calibrate`) and the held-out ECE per suite.
pub fn render_calibration_fit(f: &CalibrationFit) -> String {
    let mut s = format!(
        "\n## Calibration of {} fitted on the tuning halves ({} cases)\n\nbias {:.4}, weights {} over {}\n\n| suite | held-out cases | ECE printed | ECE with this fit |\n|---|---:|---:|---:|\n",
        f.method.as_str(),
        f.fitted_on,
        f.map.bias,
        f.map.weights.iter().map(|w| format!("{w:.4}")).collect::<Vec<_>>().join(", "),
        f.features.join(", "),
    );
    for (name, n, printed, fitted) in &f.held_out {
        s.push_str(&format!("| {name} | {n} | {printed:.3} | {fitted:.3} |\n"));
    }
    s
}

pub fn score(results: &[&CaseResult], m: Method) -> Scores {
    let mut s = Scores { cases: results.len(), ..Default::default() };
    let mut hits = [0usize; 5];
    let (mut located, mut locatable) = ([0usize; 5], 0usize);
    let (mut rr, mut fp, mut claims, mut detected, mut timed) = (0.0, 0usize, 0usize, 0usize, 0usize);
    for r in results {
        let Some(outcome) = r.methods.get(&m) else { continue };
        let sc = match outcome {
            Outcome::Invalid { .. } => {
                s.invalid += 1;
                continue;
            }
            Outcome::Pass(sc) | Outcome::Fail(sc) => sc,
        };
        s.seconds += sc.seconds;
        timed += 1;
        let fault_free = r.truth.as_ref().is_some_and(Truth::is_fault_free);
        if let Some(reported) = sc.root_cause_reported {
            claims += 1;
            if fault_free {
                fp += usize::from(reported);
            } else {
                detected += usize::from(reported);
            }
        }
        if fault_free {
            s.fault_free += 1;
            continue;
        }
        s.faults += 1;
        if !sc.locations.is_empty() && r.truth.as_ref().is_some_and(|t| t.location.is_some()) {
            locatable += 1;
            if let Some(k) = sc.located {
                for (i, h) in located.iter_mut().enumerate() {
                    if k <= i + 1 {
                        *h += 1;
                    }
                }
            }
        }
        if let Some(k) = sc.rank {
            for (i, h) in hits.iter_mut().enumerate() {
                if k <= i + 1 {
                    *h += 1;
                }
            }
            rr += 1.0 / k as f64;
        }
    }
    let n = s.faults.max(1) as f64;
    let ac: Vec<f64> = hits.iter().map(|h| *h as f64 / n).collect();
    s.ac1 = ac[0];
    s.ac3 = ac[2];
    s.ac5 = ac[4];
    s.avg5 = ac.iter().sum::<f64>() / 5.0;
    s.mrr = rr / n;
    if locatable > 0 {
        let share = |h: usize| Some(h as f64 / locatable as f64);
        (s.ais1, s.ais3, s.ais5) = (share(located[0]), share(located[2]), share(located[4]));
    }
    s.seconds /= timed.max(1) as f64;
    if claims > 0 {
        s.fpr = (s.fault_free > 0).then(|| fp as f64 / s.fault_free as f64);
        s.detected = (s.faults > 0).then(|| detected as f64 / s.faults as f64);
    }
    let pairs = calibration_pairs(results, m);
    if !pairs.is_empty() {
        s.brier =
            Some(pairs.iter().map(|(c, ok)| (c - f64::from(u8::from(*ok))).powi(2)).sum::<f64>() / pairs.len() as f64);
        s.ece = Some(calibration(&pairs, 10).0);
        s.ece_floor = Some(ece_floor(&pairs, 10));
    }
    s
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub name: String,
    pub system: String,
    pub cases: usize,
    pub methods: BTreeMap<Method, Scores>,
    /// Per fault kind, per method.
    pub per_fault: BTreeMap<String, BTreeMap<Method, Scores>>,
    /// The same scores over the cases at even positions of the suite's listing (where any
    /// setting chosen while looking at a real dataset was chosen) and over the odd ones (held
    /// out: never looked at to choose anything).
    pub tuning_half: BTreeMap<Method, Scores>,
    pub held_out_half: BTreeMap<Method, Scores>,
    pub results: Vec<CaseResult>,
}

/// Whether the case at `index` of a suite's listing is in the half settings may be chosen on
/// (even positions); the odd positions are held out.
pub fn is_tuning_half(index: usize) -> bool {
    index.is_multiple_of(2)
}

impl SuiteReport {
    /// culprit's scores (present whenever culprit was among the methods).
    pub fn culprit(&self) -> Option<&Scores> {
        self.methods.get(&Method::Culprit)
    }
}

/// Runs a suite's cases in parallel (up to the core count) with a progress callback.
///
/// Runs `f` on every case, on plain worker threads (one per core) pulling the next case; the
/// results in the cases' order (None for a case whose worker was lost). Not rayon's pool: each
/// worker waits for its case on a guarded thread, and rayon's workers stay free for the analysis
/// inside (a rayon worker blocked on a case that itself uses rayon deadlocks).
fn on_workers<T: Send>(
    cases: &[Case],
    f: &(dyn Fn(&Case) -> T + Sync),
    progress: &(dyn Fn() + Sync),
) -> Vec<Option<T>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(cases.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> = cases.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let r = f(case);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
                progress();
            });
        }
    });
    slots.into_iter().map(|s| s.into_inner().ok().flatten()).collect()
}

/// Scores every method on every case of a suite (on [`on_workers`]).
pub fn run_suite(suite: &Suite, opts: &EvalOptions, progress: &(dyn Fn() + Sync)) -> SuiteReport {
    let slots = on_workers(&suite.cases, &|case| run_case(case, opts), progress);
    let results: Vec<CaseResult> = slots
        .into_iter()
        .zip(&suite.cases)
        .map(|(slot, case)| {
            slot.unwrap_or_else(|| CaseResult {
                id: case.id.clone(),
                system: case.system.clone(),
                fault_kind: "unknown".into(),
                truth: None,
                load_seconds: 0.0,
                methods: opts.methods.iter().map(|m| (*m, Outcome::Invalid { reason: "worker lost".into() })).collect(),
            })
        })
        .collect();
    let all: Vec<&CaseResult> = results.iter().collect();
    let mut per_fault: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for r in &results {
        per_fault.entry(r.fault_kind.clone()).or_default().push(r);
    }
    let half = |tuning: bool| -> BTreeMap<Method, Scores> {
        let h: Vec<&CaseResult> =
            results.iter().enumerate().filter(|(i, _)| is_tuning_half(*i) == tuning).map(|(_, r)| r).collect();
        opts.methods.iter().map(|m| (*m, score(&h, *m))).collect()
    };
    SuiteReport {
        name: suite.name.clone(),
        system: suite.cases.first().map(|c| c.system.clone()).unwrap_or_default(),
        cases: results.len(),
        methods: opts.methods.iter().map(|m| (*m, score(&all, *m))).collect(),
        tuning_half: half(true),
        held_out_half: half(false),
        per_fault: per_fault
            .into_iter()
            .map(|(k, v)| (k, opts.methods.iter().map(|m| (*m, score(&v, *m))).collect()))
            .collect(),
        results,
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

/// The markdown tables people read: methods × metrics per suite, then AC@1 per fault kind.
pub fn render_markdown(reports: &[SuiteReport]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for r in reports {
        let _ = writeln!(
            s,
            "### {} ({}, {} cases)
",
            r.name, r.system, r.cases
        );
        let _ = writeln!(
            s,
            "| method | AC@1 | AC@3 | AC@5 | Avg@5 | MRR | FPR | detected | Brier | ECE | invalid | s/case |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (m, sc) in &r.methods {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {:.3} |",
                m.as_str(),
                sc.ac1,
                sc.ac3,
                sc.ac5,
                sc.avg5,
                sc.mrr,
                opt(sc.fpr),
                opt(sc.detected),
                opt(sc.brier),
                opt(sc.ece),
                sc.invalid,
                sc.seconds
            );
        }
        let located: Vec<(&Method, &Scores)> = r.methods.iter().filter(|(_, sc)| sc.ais1.is_some()).collect();
        if !located.is_empty() {
            let _ = writeln!(s, "\nService and location inside it both right (AIS@k):\n");
            let _ = writeln!(s, "| method | AIS@1 | AIS@3 | AIS@5 |");
            let _ = writeln!(s, "|---|---:|---:|---:|");
            for (m, sc) in located {
                let _ = writeln!(s, "| {} | {} | {} | {} |", m.as_str(), opt(sc.ais1), opt(sc.ais3), opt(sc.ais5));
            }
        }
        if r.cases >= 4 {
            let _ = writeln!(
                s,
                "\nBy half (tuning: cases at even positions, where settings may be chosen; held out: the odd ones):\n"
            );
            let _ = writeln!(
                s,
                "| method | tuning AC@1 | tuning ECE | held-out AC@1 | held-out AC@3 | held-out ECE | held-out ECE if perfectly calibrated |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
            for (m, t) in &r.tuning_half {
                let Some(h) = r.held_out_half.get(m) else { continue };
                let _ = writeln!(
                    s,
                    "| {} | {:.3} | {} | {:.3} | {:.3} | {} | {} |",
                    m.as_str(),
                    t.ac1,
                    opt(t.ece),
                    h.ac1,
                    h.ac3,
                    opt(h.ece),
                    opt(h.ece_floor)
                );
            }
        }
        let methods: Vec<Method> = r.methods.keys().copied().collect();
        let _ = writeln!(
            s,
            "
AC@1 per fault kind:
"
        );
        let _ =
            writeln!(s, "| fault | cases | {} |", methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(s, "|---|---:|{}", "---:|".repeat(methods.len()));
        for (kind, per) in &r.per_fault {
            let cases = per.values().next().map_or(0, |x| x.cases);
            let cells: Vec<String> = methods
                .iter()
                .map(|m| match per.get(m) {
                    Some(sc) if kind == "none" => format!("FPR {}", opt(sc.fpr)),
                    Some(sc) => format!("{:.3}", sc.ac1),
                    None => "–".into(),
                })
                .collect();
            let _ = writeln!(s, "| {kind} | {cases} | {} |", cells.join(" | "));
        }
        let _ = writeln!(s);
    }
    s
}

/// The JSON summary: `{"suites":[{"name","system","cases","methods":{…},"per_fault":{…}}]}`,
/// without per-case results (those go to `--out`).
pub fn summary_json(reports: &[SuiteReport]) -> serde_json::Value {
    let suites: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "system": r.system,
                "cases": r.cases,
                "methods": r.methods.iter().map(|(m, s)| (m.as_str(), s)).collect::<BTreeMap<_, _>>(),
                "tuning_half": r.tuning_half.iter().map(|(m, s)| (m.as_str(), s)).collect::<BTreeMap<_, _>>(),
                "held_out_half": r.held_out_half.iter().map(|(m, s)| (m.as_str(), s)).collect::<BTreeMap<_, _>>(),
                "per_fault": r.per_fault.iter().map(|(k, per)| {
                    (k.as_str(), per.iter().map(|(m, s)| (m.as_str(), s)).collect::<BTreeMap<_, _>>())
                }).collect::<BTreeMap<_, _>>(),
            })
        })
        .collect();
    serde_json::json!({ "suites": suites })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_label_is_named_by_any_series_of_that_resource_and_code_by_its_statements() {
        assert!(same_location("CpuUsage(m)", "CpuUsageRate(%)"));
        assert!(same_location("cpuusagerate(%)", "CpuUsageRate(%)"));
        assert!(!same_location("MemoryUsage(Mi)", "CpuUsageRate(%)"));
        assert!(!same_location("PodServerLatencyP90(s)", "NetworkP90(ms)"));
        assert!(same_location("a.B#3_a.B#7", "a.B#3_a.B#7"));
        assert!(!same_location("a.C#1_a.B#7", "a.B#3_a.B#7"));
        assert!(!same_location("CpuUsage(m)", ""));
    }

    fn res(kind: &str, rank: Option<usize>, reported: bool, confidence: f64) -> CaseResult {
        let truth =
            Truth { service: "a".into(), indicator: String::new(), kind: kind.into(), chain: vec![], location: None };
        let ranked = match rank {
            Some(k) => (1..=5).map(|i| if i == k { "a".to_string() } else { format!("x{i}") }).collect(),
            None => vec!["x1".to_string()],
        };
        let answer = Answer {
            ranked,
            claims_root_cause: Some(reported),
            confidence: Some(confidence),
            locations: Vec::new(),
            why: None,
            features: Vec::new(),
        };
        let outcome = judge(&truth, answer, 1.0);
        CaseResult {
            id: "c".into(),
            system: "s".into(),
            fault_kind: kind.into(),
            truth: Some(truth),
            load_seconds: 0.0,
            methods: BTreeMap::from([(Method::Culprit, outcome)]),
        }
    }

    #[test]
    fn accuracy_at_k_fpr_and_calibration() {
        let mut invalid = res("cpu", Some(1), true, 0.5);
        invalid.methods.insert(Method::Culprit, Outcome::Invalid { reason: "boom".into() });
        let rs = [
            res("cpu", Some(1), true, 0.9),
            res("cpu", Some(3), true, 0.6),
            res("cpu", None, false, 0.2),
            res("none", None, true, 0.7),
            res("none", None, false, 0.1),
            invalid,
        ];
        assert!(matches!(rs[0].methods[&Method::Culprit], Outcome::Pass(_)));
        assert!(matches!(rs[3].methods[&Method::Culprit], Outcome::Fail(_)));
        assert!(matches!(rs[4].methods[&Method::Culprit], Outcome::Pass(_)));
        let refs: Vec<&CaseResult> = rs.iter().collect();
        let s = score(&refs, Method::Culprit);
        assert_eq!(s.faults, 3);
        assert!((s.ac1 - 1.0 / 3.0).abs() < 1e-9);
        assert!((s.ac3 - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.avg5 - (1.0 + 1.0 + 2.0 + 2.0 + 2.0) / 15.0).abs() < 1e-9);
        assert!((s.mrr - (1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-9);
        assert_eq!(s.fpr, Some(0.5));
        assert_eq!(s.detected, Some(2.0 / 3.0));
        assert_eq!(s.invalid, 1);
        // Brier over the 5 judged cases: only the first top-1 was right.
        let brier = ((0.9f64 - 1.0).powi(2) + 0.6f64.powi(2) + 0.2f64.powi(2) + 0.7f64.powi(2) + 0.1f64.powi(2)) / 5.0;
        assert!((s.brier.expect("brier") - brier).abs() < 1e-9);
        // A method without confidence or verdict has neither calibration nor FPR.
        let mut base = rs[0].clone();
        base.methods = BTreeMap::from([(
            Method::Random,
            judge(
                base.truth.as_ref().expect("t"),
                Answer {
                    ranked: vec!["a".into()],
                    claims_root_cause: None,
                    confidence: None,
                    locations: Vec::new(),
                    why: None,
                    features: Vec::new(),
                },
                0.0,
            ),
        )]);
        let b = score(&[&base], Method::Random);
        assert_eq!((b.brier, b.fpr, b.ac1), (None, None, 1.0));
    }

    /// A small suite cannot show a small ECE even when its confidence is exactly right; a large
    /// one can, and certainty has none to show.
    #[test]
    fn the_ece_floor_shrinks_with_the_number_of_answers() {
        let at = |c: f64, n: usize| vec![(c, true); n];
        let (small, large) = (ece_floor(&at(0.8, 14), 10), ece_floor(&at(0.8, 2000), 10));
        assert!(small > 0.05 && small < 0.3, "{small}");
        assert!(large < 0.02, "{large}");
        assert_eq!(ece_floor(&at(1.0, 14), 10), 0.0);
        assert_eq!(ece_floor(&at(0.8, 14), 10), small, "the same on every run");
        // It does not look at the outcomes, only at the confidences.
        assert_eq!(ece_floor(&vec![(0.8, false); 14], 10), small);
    }

    #[test]
    fn a_perfectly_calibrated_confidence_has_no_calibration_error() {
        // Three right out of four at confidence 0.75.
        let pairs = [(0.75, true), (0.75, true), (0.75, false), (0.75, true)];
        let (ece, bins) = calibration(&pairs, 10);
        assert!(ece.abs() < 1e-9, "{ece} {bins:?}");
        let (ece, _) = calibration(&[(0.9, false), (0.9, false)], 10);
        assert!((ece - 0.9).abs() < 1e-9);
    }

    #[test]
    fn suite_arguments_are_checked() {
        assert!(matches!(suites("sim:1-3"), Ok(v) if v[0].cases.len() == 3));
        assert!(suites("sim:x-3").is_err());
        assert!(matches!(suites("sim:1-2:none"), Ok(v) if v[0].cases.len() == 2));
        assert!(suites("sim:1-2:meteor").is_err());
        assert!(matches!(suites("/nonexistent/place"), Err(EvalError::UnknownSuite { .. })));
    }

    #[test]
    fn simulated_spec_files_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("s.toml");
        std::fs::write(&good, "name = \"mini\"\nseeds = [1, 3]\nfaults = [\"cpu_hog\", \"none\"]\n").expect("write");
        let s = suites(good.to_str().expect("utf-8")).expect("suite");
        assert_eq!((s[0].name.as_str(), s[0].cases.len()), ("mini", 6));
        let bad = dir.path().join("b.toml");
        std::fs::write(&bad, "name = \"x\"\nseeds = [1, 2]\nfaults = [\"meteor\"]\n").expect("write");
        let e = suites(bad.to_str().expect("utf-8")).expect_err("bad fault").to_string();
        assert!(e.contains("faults") && e.contains("meteor"), "{e}");
    }

    #[test]
    fn a_hanging_case_is_invalid_and_the_run_goes_on() {
        let r = guarded(Duration::from_millis(50), || std::thread::sleep(Duration::from_secs(2)));
        assert!(matches!(r, Err(e) if e.to_string().contains("timed out")));
        let r = guarded(Duration::from_secs(5), || -> u8 { panic!("kaboom") });
        assert!(matches!(r, Err(e) if e.to_string().contains("kaboom")));
    }
}

/// Before and after the feedback re-ranker on a held-apart half of a suite
/// (`culprit eval --feedback-split`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackSplit {
    pub suite: String,
    /// Cases whose truth served as operators' feedback (half of the cases, chosen by a hash of
    /// their ids, so that both halves hold every fault kind and system).
    pub train_cases: usize,
    /// Held-apart cases scored before and after (the other half); fault-free cases are skipped.
    pub test_cases: usize,
    pub before_ac1: f64,
    pub after_ac1: f64,
    pub before_ac3: f64,
    pub after_ac3: f64,
    /// Cases that could not be loaded.
    pub invalid: usize,
    pub reranker: crate::rerank::Reranker,
}

/// Trains the re-ranker on half of `suite` — each case's truth given as an operator's feedback
/// on its triage (confirm when the top candidate is right, correct otherwise) — and scores the
/// other half with the triage's order and the re-ranked order.
pub fn feedback_split(suite: &Suite, opts: &EvalOptions, progress: &(dyn Fn() + Sync)) -> FeedbackSplit {
    use crate::rerank::{Example, Label};
    let cases: Vec<Case> = suite.cases.clone();
    // FNV-1a of the id: a fixed split, independent of the cases' order, that does not follow
    // the order of fault kinds in the ids.
    let held_apart = |id: &str| {
        id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) % 2 == 1
    };
    type Candidates = Vec<(String, Vec<f64>)>;
    let features = |case: &Case| {
        let cfg = crate::pipeline::PipelineConfig {
            triage: opts.config.clone(),
            agent: opts.agent.clone(),
            trigger: crate::investigate::Trigger::Never,
        };
        let case = case.clone();
        guarded(opts.timeout, move || -> Option<(Candidates, Truth)> {
            let incident = case.load_incident().ok()?;
            let truth = incident.truth.clone()?;
            Some((crate::pipeline::run(&incident, &cfg, crate::pipeline::Deps::default()).features, truth))
        })
        .ok()
        .flatten()
    };
    let rows: Vec<Option<(usize, Candidates, Truth)>> = on_workers(&cases, &features, progress)
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.flatten().map(|(f, t)| (i, f, t)))
        .collect();
    let invalid = rows.iter().filter(|r| r.is_none()).count();
    // A case the triage ranked nothing for stays in the held-apart half, as a miss before and
    // after; it teaches the re-ranker nothing.
    let rows: Vec<_> = rows.into_iter().flatten().filter(|(_, _, t)| !t.is_fault_free()).collect();
    let examples: Vec<Example> = rows
        .iter()
        .filter(|(i, f, _)| !held_apart(&cases[*i].id) && !f.is_empty())
        .map(|(_, f, t)| {
            let top_right = f.first().is_some_and(|(s, _)| *s == t.service);
            Example {
                candidates: f.clone(),
                label: if top_right { Label::Confirm } else { Label::Correct { service: t.service.clone() } },
            }
        })
        .collect();
    let model = crate::rerank::Reranker::fit(&examples, 1e-3);
    let test: Vec<_> = rows.iter().filter(|(i, _, _)| held_apart(&cases[*i].id)).collect();
    let rank_of = |order: Vec<String>, t: &Truth| order.iter().position(|s| *s == t.service).map(|p| p + 1);
    let (mut b1, mut a1, mut b3, mut a3) = (0usize, 0usize, 0usize, 0usize);
    for (_, f, t) in &test {
        let before = rank_of(f.iter().map(|(s, _)| s.clone()).collect(), t);
        let after = rank_of(model.order(f).into_iter().map(|(s, _)| s).collect(), t);
        b1 += usize::from(before == Some(1));
        a1 += usize::from(after == Some(1));
        b3 += usize::from(before.is_some_and(|r| r <= 3));
        a3 += usize::from(after.is_some_and(|r| r <= 3));
    }
    let n = test.len().max(1) as f64;
    FeedbackSplit {
        suite: suite.name.clone(),
        train_cases: examples.len(),
        test_cases: test.len(),
        before_ac1: b1 as f64 / n,
        after_ac1: a1 as f64 / n,
        before_ac3: b3 as f64 / n,
        after_ac3: a3 as f64 / n,
        invalid,
        reranker: model,
    }
}

pub fn render_feedback_split(rows: &[FeedbackSplit]) -> String {
    let mut s = String::from(
        "| suite | feedback on (cases) | held apart (cases) | AC@1 before | AC@1 after | AC@3 before | AC@3 after |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            r.suite, r.train_cases, r.test_cases, r.before_ac1, r.after_ac1, r.before_ac3, r.after_ac3
        ));
        if r.invalid > 0 {
            s.push_str(&format!("| ({} cases of {} could not be loaded) | | | | | | |\n", r.invalid, r.suite));
        }
    }
    s
}
