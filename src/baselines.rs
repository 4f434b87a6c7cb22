//! Published root-cause baselines, re-implemented from their papers so that `culprit eval` runs
//! them on the same cases in the same invocation.
//!
//! Each baseline ranks services from the incident's metrics (and, for the random walk, the call
//! graph). They read metrics with the same reference/incident split as culprit
//! (`detect::metrics::split`): the separate baseline when there is one, otherwise the data before
//! `analysis_start`, which for the public datasets is the fault-injection time, as RCAEval passes
//! it. None of them reads the label.

use crate::correlate::Dependencies;
use crate::detect::metrics::{split, Split};
use crate::detect::stats::quantile_sorted;
use crate::detect::traces::call_edges;
use crate::model::{Incident, Ts};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};

/// The published baselines. A closed set: `culprit eval` runs each beside culprit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Baseline {
    Baro,
    NSigma,
    EpsilonDiagnosis,
    PageRank,
    Earliest,
    Random,
    /// The change that started last before the alert (ChangeRCA's simple reference).
    LatestChange,
}

/// Services of the incident, best suspect first.
pub type Ranking = Vec<String>;

/// Runs one baseline on an incident.
pub fn rank(baseline: Baseline, incident: &Incident) -> Ranking {
    let splits = split(incident);
    match baseline {
        Baseline::Baro => by_service(&splits, baro_score),
        Baseline::NSigma => by_service(&splits, nsigma_score),
        Baseline::EpsilonDiagnosis => by_service(&splits, energy_distance),
        Baseline::PageRank => pagerank(incident, &splits),
        Baseline::Earliest => earliest(incident, &splits),
        Baseline::Random => random(incident, &splits),
        Baseline::LatestChange => latest_change(incident),
    }
}

/// Whether a series varies within a period: RCAEval's preprocessing drops the columns that are
/// constant in either period, and the baselines here do the same.
fn informative(values: &[f64]) -> bool {
    values.first().is_some_and(|first| values.iter().any(|v| v != first))
}

/// RCAEval's preprocessing converts `*_mem` columns from bytes to megabytes. It matters where a
/// scaler falls back to unit scale (a normal period with no spread): there the score is in the
/// metric's own units, so the same units must be used to reproduce its rankings.
fn rcaeval_units(metric: &str) -> f64 {
    if metric == "mem" || metric.ends_with("_mem") {
        1e-6
    } else {
        1.0
    }
}

/// Ranks metrics by a per-series score, then services by their best metric (as RCAEval maps a
/// metric ranking to services: the first metric of a service places it).
fn by_service(splits: &[Split], score: fn(&[f64], &[f64]) -> Option<f64>) -> Ranking {
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for s in splits {
        let unit = rcaeval_units(&s.series.metric);
        let reference: Vec<f64> = s.reference.iter().map(|v| v * unit).collect();
        let current: Vec<f64> = s.current.iter().map(|p| p.1 * unit).collect();
        if !informative(&reference) || !informative(&current) {
            continue;
        }
        if let Some(v) = score(&reference, &current).filter(|v| v.is_finite()) {
            let e = best.entry(s.series.service.as_str()).or_insert(v);
            *e = e.max(v);
        }
    }
    let mut ranked: Vec<(&str, f64)> = best.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.into_iter().map(|(s, _)| s.to_string()).collect()
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// BARO (Pham, Ha, Zhang: "BARO: Robust Root Cause Analysis for Microservices via Multivariate
/// Bayesian Online Change Point Detection", FSE 2024), ranking stage: each metric is scaled by a
/// RobustScaler fitted on the data before the change point (median and inter-quartile range),
/// and scored by its largest scaled value after it (a rise; RCAEval's reference implementation
/// takes the plain maximum, not the absolute one). The change point is the incident's
/// `analysis_start` (for the datasets the injection time, which is what RCAEval passes to BARO);
/// the multivariate BOCPD stage that estimates it without that is not re-implemented here.
pub fn baro_score(reference: &[f64], current: &[f64]) -> Option<f64> {
    let r = sorted(reference);
    let median = quantile_sorted(&r, 0.5);
    let iqr = quantile_sorted(&r, 0.75) - quantile_sorted(&r, 0.25);
    let scale = unit_if_zero(iqr);
    current.iter().map(|x| (x - median) / scale).reduce(f64::max)
}

/// N-Sigma: each metric standardised by the mean and standard deviation of its normal period,
/// scored by its largest z in the incident period (the classic 3-sigma rule, as used as a
/// baseline in RCAEval: rises count; a zero deviation leaves the metric unscaled, as
/// StandardScaler does).
pub fn nsigma_score(reference: &[f64], current: &[f64]) -> Option<f64> {
    let (mean, sd) = mean_sd(reference);
    let sd = unit_if_zero(sd);
    current.iter().map(|x| (x - mean) / sd).reduce(f64::max)
}

/// scikit-learn's scalers leave a feature whose spread is zero (below ten machine epsilons,
/// which catches the rounding residue of a constant) unscaled.
fn unit_if_zero(scale: f64) -> f64 {
    if scale < 10.0 * f64::EPSILON {
        1.0
    } else {
        scale
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// ε-Diagnosis (Shan et al.: "ε-Diagnosis: Unsupervised and Real-time Diagnosis of Small-window
/// Long-tail Latency in Large-scale Microservice Platforms", WWW 2019): a two-sample test of
/// each metric's normal against its abnormal window with the energy distance (the ε-statistic),
/// on values standardised by the normal window; the metrics that changed distribution most rank
/// first.
pub fn energy_distance(reference: &[f64], current: &[f64]) -> Option<f64> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let (mean, sd) = mean_sd(reference);
    let sd = unit_if_zero(sd);
    let x: Vec<f64> = reference.iter().map(|v| (v - mean) / sd).collect();
    let y: Vec<f64> = current.iter().map(|v| (v - mean) / sd).collect();
    let mean_abs = |a: &[f64], b: &[f64]| {
        let mut s = 0.0;
        for p in a {
            for q in b {
                s += (p - q).abs();
            }
        }
        s / (a.len() * b.len()) as f64
    };
    Some(2.0 * mean_abs(&x, &y) - mean_abs(&x, &x) - mean_abs(&y, &y))
}

/// Per-service anomaly score for the graph-based and timing baselines: the largest N-Sigma z.
fn service_scores<'a>(splits: &'a [Split]) -> BTreeMap<&'a str, f64> {
    let mut out: BTreeMap<&str, f64> = BTreeMap::new();
    for s in splits {
        let current: Vec<f64> = s.current.iter().map(|p| p.1).collect();
        if !informative(&s.reference) || !informative(&current) {
            continue;
        }
        if let Some(v) = nsigma_score(&s.reference, &current).filter(|v| v.is_finite()) {
            let e = out.entry(s.series.service.as_str()).or_insert(0.0);
            *e = e.max(v);
        }
    }
    out
}

/// A personalised PageRank on the call graph in the manner of MicroRank (Yu et al., WWW 2021)
/// and the random-walk family (MicroCause, CloudRanger): the walk goes from callers to callees,
/// teleports in proportion to each service's anomaly score (its largest N-Sigma z), and the
/// services where it settles rank first. The call graph is the declared topology plus the
/// edges mined from spans; without any edge this is the anomaly-score order.
pub fn pagerank(incident: &Incident, splits: &[Split]) -> Ranking {
    const DAMPING: f64 = 0.85;
    let scores = service_scores(splits);
    let spans: Vec<&crate::model::Span> =
        incident.telemetry.spans.iter().chain(incident.baseline.iter().flat_map(|b| b.spans.iter())).collect();
    let deps = Dependencies::new(incident.topology.as_ref(), &call_edges(&spans));
    let mut services: BTreeSet<&str> = scores.keys().copied().collect();
    for s in spans.iter() {
        services.insert(s.service.as_str());
    }
    let names: Vec<&str> = services.into_iter().collect();
    let n = names.len();
    if n == 0 {
        return Vec::new();
    }
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let total: f64 = names.iter().map(|s| scores.get(s).copied().unwrap_or(0.0).min(1e6)).sum();
    let teleport: Vec<f64> = names
        .iter()
        .map(|s| if total > 0.0 { scores.get(s).copied().unwrap_or(0.0).min(1e6) / total } else { 1.0 / n as f64 })
        .collect();
    let out: Vec<Vec<usize>> =
        names.iter().map(|s| deps.callees_of(s).filter_map(|c| index.get(c).copied()).collect()).collect();
    let mut p = teleport.clone();
    for _ in 0..100 {
        let mut next: Vec<f64> = teleport.iter().map(|t| (1.0 - DAMPING) * t).collect();
        for (i, callees) in out.iter().enumerate() {
            if callees.is_empty() {
                // A service that calls nothing passes its share by teleport.
                for (j, t) in teleport.iter().enumerate() {
                    next[j] += DAMPING * p[i] * t;
                }
            } else {
                for &c in callees {
                    next[c] += DAMPING * p[i] / callees.len() as f64;
                }
            }
        }
        p = next;
    }
    let mut ranked: Vec<(usize, f64)> = p.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(names[a.0].cmp(names[b.0])));
    ranked.into_iter().map(|(i, _)| names[i].to_string()).collect()
}

/// "Earliest anomaly": the service whose metric first rises beyond its normal range (3 sigma)
/// in the incident period ranks first; services that never do follow by their largest z.
pub fn earliest(_incident: &Incident, splits: &[Split]) -> Ranking {
    let scores = service_scores(splits);
    let mut first: BTreeMap<&str, Ts> = BTreeMap::new();
    for s in splits {
        if s.reference.is_empty() {
            continue;
        }
        let (mean, sd) = mean_sd(&s.reference);
        let sd = unit_if_zero(sd);
        if let Some(t) = s.current.iter().find(|p| (p.1 - mean) / sd >= 3.0).map(|p| p.0) {
            let e = first.entry(s.series.service.as_str()).or_insert(t);
            *e = (*e).min(t);
        }
    }
    let mut ranked: Vec<(&str, Option<Ts>, f64)> =
        scores.iter().map(|(s, z)| (*s, first.get(s).copied(), *z)).collect();
    ranked.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.cmp(&y).then(b.2.total_cmp(&a.2)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.2.total_cmp(&a.2),
    });
    ranked.into_iter().map(|(s, _, _)| s.to_string()).collect()
}

/// "The latest change": the services changed at or before the alert, the one whose change started
/// last first (ties by name); services without a change are not ranked. The simple reference of
/// change-attribution datasets such as ChangeRCA's.
pub fn latest_change(incident: &Incident) -> Ranking {
    let mut changes: Vec<(Ts, &str)> = incident
        .telemetry
        .changes
        .iter()
        .filter(|c| c.time <= incident.alert.time)
        .map(|c| (c.time, c.service.as_str()))
        .collect();
    changes.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut ranked: Vec<String> = Vec::new();
    for (_, s) in changes {
        if !ranked.iter().any(|r| r == s) {
            ranked.push(s.to_string());
        }
    }
    ranked
}

/// A uniformly random order of the incident's services, fixed per case (seeded by its id), so
/// that the other methods' figures can be read against chance.
pub fn random(incident: &Incident, splits: &[Split]) -> Ranking {
    let mut services: BTreeSet<&str> = splits.iter().map(|s| s.series.service.as_str()).collect();
    for s in &incident.telemetry.spans {
        services.insert(s.service.as_str());
    }
    let mut v: Vec<String> = services.into_iter().map(String::from).collect();
    // FNV-1a of the id: stable across runs and platforms.
    let seed =
        incident.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    v.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BARO's paper: the robust scaler ignores outliers in the normal period, so one spike there
    /// does not hide the metric that really shifted; N-Sigma's mean and deviation are dragged by
    /// the same spike.
    #[test]
    fn baro_is_robust_to_an_outlier_in_the_normal_period_where_nsigma_is_not() {
        let mut spiky: Vec<f64> = (0..100).map(|i| 10.0 + (i % 5) as f64 * 0.1).collect();
        spiky[50] = 10_000.0;
        let shifted_a: Vec<f64> = vec![14.0; 20];
        let calm: Vec<f64> = (0..100).map(|i| 10.0 + (i % 5) as f64 * 0.1).collect();
        let shifted_b: Vec<f64> = vec![11.0; 20];
        // Metric a (with the spike in its history) shifted by 4, metric b (clean) by 1.
        let baro_a = baro_score(&spiky, &shifted_a).expect("score");
        let baro_b = baro_score(&calm, &shifted_b).expect("score");
        assert!(baro_a > baro_b, "BARO: a {baro_a} should beat b {baro_b}");
        let ns_a = nsigma_score(&spiky, &shifted_a).expect("score");
        let ns_b = nsigma_score(&calm, &shifted_b).expect("score");
        assert!(ns_a < ns_b, "N-Sigma: the spike inflates a's deviation ({ns_a} vs {ns_b})");
    }

    /// N-Sigma is the 3-sigma rule: a value k deviations from the normal mean scores k.
    #[test]
    fn nsigma_scores_in_standard_deviations() {
        let normal = [9.0, 11.0, 9.0, 11.0];
        assert!((nsigma_score(&normal, &[13.0, 10.0]).expect("score") - 3.0).abs() < 1e-9);
        // Rises count, as in the reference implementation: a drop scores below zero.
        assert!(nsigma_score(&normal, &[7.0]).expect("score") < 0.0);
        // A flat normal period is left unscaled, as StandardScaler does, and so is one whose
        // spread is only rounding residue.
        assert_eq!(nsigma_score(&[5.0; 10], &[7.0]), Some(2.0));
        let residue = [0.005, 0.005 + 1e-18, 0.005, 0.005];
        assert!((baro_score(&residue, &[0.105]).expect("score") - 0.1).abs() < 1e-9);
    }

    #[test]
    fn energy_distance_sees_a_change_of_spread_that_means_miss() {
        let normal: Vec<f64> = (0..50).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let wider: Vec<f64> = (0..50).map(|i| if i % 2 == 0 { 5.0 } else { -5.0 }).collect();
        let same: Vec<f64> = normal.clone();
        let e_wide = energy_distance(&normal, &wider).expect("e");
        let e_same = energy_distance(&normal, &same).expect("e");
        assert!(e_same.abs() < 1e-9 && e_wide > 1.0, "{e_same} {e_wide}");
    }
}
