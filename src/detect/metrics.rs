//! Metric anomalies: each series against its own robust baseline, with the onset of the change.
//!
//! A series is anomalous when its robust z-score (median/MAD of the reference) stays beyond the
//! threshold for `sustain` consecutive points and leaves the reference's normal range; one-point
//! spikes of noisy services do not count. The onset is the first anomalous point, walked back
//! over the ramp that led to it, so a slow leak is dated when it began, not when it crossed.

use super::stats::Robust;
use super::{canonical_indicator, Anomaly, DetectConfig, Detection, Source};
use crate::model::{Incident, Series, Ts};
use std::collections::HashMap;

/// One metric series split into its reference values and its incident-period points, by the
/// model's rule: the separate baseline's series of the same name when there is a baseline, else
/// the points before `analysis_start`. Non-finite values are dropped.
pub struct Split<'a> {
    pub series: &'a Series,
    pub reference: Vec<f64>,
    pub current: Vec<(Ts, f64)>,
}

/// Splits every metric series of the incident (the eval baselines read metrics the same way).
pub fn split(incident: &Incident) -> Vec<Split<'_>> {
    let baseline: HashMap<(&str, &str), &Series> = incident
        .baseline
        .iter()
        .flat_map(|b| b.metrics.iter())
        .map(|s| ((s.service.as_str(), s.metric.as_str()), s))
        .collect();
    incident
        .telemetry
        .metrics
        .iter()
        .map(|series| {
            let reference: Vec<f64> = match &incident.baseline {
                Some(_) => baseline
                    .get(&(series.service.as_str(), series.metric.as_str()))
                    .map(|b| b.points.iter().map(|p| p.1).filter(|v| v.is_finite()).collect())
                    .unwrap_or_default(),
                None => series
                    .points
                    .iter()
                    .filter(|p| p.0 < incident.analysis_start && p.1.is_finite())
                    .map(|p| p.1)
                    .collect(),
            };
            let current =
                series.points.iter().copied().filter(|p| p.0 >= incident.analysis_start && p.1.is_finite()).collect();
            Split { series, reference, current }
        })
        .collect()
}

pub fn detect(incident: &Incident, cfg: &DetectConfig, out: &mut Detection) {
    for Split { series, reference, current } in split(incident) {
        if reference.len() < cfg.min_reference_points {
            out.unchecked.push(format!(
                "metric {}/{}: {} reference points (need {})",
                series.service,
                series.metric,
                reference.len(),
                cfg.min_reference_points
            ));
            continue;
        }
        if let Some(a) = judge(series, &reference, &current, incident.baseline.is_some(), cfg) {
            out.anomalies.push(a);
        }
    }
}

/// A shift smaller than this share of the baseline median does not matter to anyone, however
/// significant (a slowly drifting gauge against a short baseline).
const MIN_RELATIVE_SHIFT: f64 = 0.1;

/// Smallest change of an error ratio (0–1) that counts.
const MIN_ERROR_RATIO_SHIFT: f64 = 0.005;

/// Weight of an excursion that stays within the reference's 1st–99th percentile range.
const WITHIN_RANGE_DISCOUNT: f64 = 0.5;

/// Judges one series; `None` when it is normal.
/// `learned`: the reference is a separate fault-free capture, whose usual swings are normal
/// ([`Robust::with_swings`]); a reference cut from the same stream just before the incident is
/// judged by its plain robust scale.
pub fn judge(
    series: &Series,
    reference: &[f64],
    current: &[(Ts, f64)],
    learned: bool,
    cfg: &DetectConfig,
) -> Option<Anomaly> {
    if current.is_empty() {
        return None;
    }
    let r = if learned { Robust::with_swings(reference) } else { Robust::of(reference) };
    // An error ratio must move by half a percentage point to matter, whatever its z-score.
    let is_ratio = canonical_indicator(&series.metric) == "errors" && reference.iter().all(|x| (0.0..=1.0).contains(x));
    let min_abs = if is_ratio { MIN_ERROR_RATIO_SHIFT } else { 0.0 };
    let z: Vec<f64> = current.iter().map(|p| r.z(p.1)).collect();
    let k = cfg.sustain.max(1).min(z.len());
    // The sustained excursion at i: the weakest |z| of the k points from i, all of one sign.
    let sustained = |i: usize| -> f64 {
        let w = &z[i..i + k];
        let sign = w[0].signum();
        if w.iter().any(|x| x.signum() != sign) {
            return 0.0;
        }
        sign * w.iter().fold(f64::INFINITY, |m, x| m.min(x.abs()))
    };
    let mut best = 0.0f64;
    let mut onset_idx = None;
    for i in 0..=z.len() - k {
        let mut s = sustained(i);
        let window = &current[i..i + k];
        let material =
            window.iter().all(|p| (p.1 - r.median).abs() >= (MIN_RELATIVE_SHIFT * r.median.abs()).max(min_abs));
        // Within the reference's own extremes, a noisy series is only as suspect as its noise
        // allows: the evidence counts half.
        let beyond = window.iter().all(|p| if s > 0.0 { p.1 > r.hi } else { p.1 < r.lo });
        if !beyond {
            s *= WITHIN_RANGE_DISCOUNT;
        }
        if s.abs() >= cfg.z_threshold && material {
            if onset_idx.is_none() {
                onset_idx = Some(i);
            }
            if s.abs() > best.abs() {
                best = s;
            }
        }
    }
    let first_crossing = onset_idx?;
    let sign = best.signum();
    // The shift itself is dated by CUSUM (an odd early excursion does not decide), then walked
    // back over the ramp that led up to it; never later than the first sustained crossing.
    let signed: Vec<f64> = z.iter().map(|v| v * sign).collect();
    let mut i = super::stats::change_point(&signed, 0.0).min(first_crossing);
    while i > 0 && z[i - 1] * sign >= 1.5 {
        i -= 1;
    }
    // The episode lasts while the series stays well off its baseline, allowing short gaps.
    let mut end = i;
    let mut gap = 0;
    for (j, zj) in z.iter().enumerate().skip(i) {
        if zj * sign >= cfg.z_threshold / 2.0 {
            end = j;
            gap = 0;
        } else {
            gap += 1;
            if gap > 2 {
                break;
            }
        }
    }
    let peak = current.iter().map(|p| p.1).fold(if sign > 0.0 { f64::MIN } else { f64::MAX }, |m, x| {
        if sign > 0.0 {
            m.max(x)
        } else {
            m.min(x)
        }
    });
    let canon = canonical_indicator(&series.metric);
    Some(Anomaly {
        service: series.service.clone(),
        source: Source::Metric,
        indicator: if canon == "other" { series.metric.clone() } else { canon.to_string() },
        signal: series.metric.clone(),
        onset: current[i].0,
        end: current[end].0,
        score: best.abs(),
        direction: sign as i8,
        evidence: format!(
            "{} {} {} to {} (baseline median {}, z {:.1})",
            series.service,
            series.metric,
            if sign > 0.0 { "rose" } else { "fell" },
            fmt_num(peak),
            fmt_num(r.median),
            best
        ),
    })
}

/// Short number formatting for evidence lines.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.3e}", x)
    } else if a >= 100.0 {
        format!("{:.0}", x)
    } else if a >= 1.0 {
        format!("{:.2}", x)
    } else {
        format!("{:.4}", x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(Ts, f64)]) -> Series {
        Series { service: "api".into(), metric: "cpu".into(), points: points.to_vec() }
    }

    fn noisy_baseline(n: usize) -> Vec<f64> {
        (0..n).map(|i| 50.0 + ((i * 7919) % 11) as f64 * 0.3).collect()
    }

    #[test]
    fn sustained_shift_is_found_with_its_onset() {
        let reference = noisy_baseline(60);
        let current: Vec<(Ts, f64)> = (0..20).map(|i| (i * 1000, if i >= 8 { 90.0 } else { 51.0 })).collect();
        let a = judge(&series(&current), &reference, &current, false, &DetectConfig::default()).expect("anomaly");
        assert_eq!(a.onset, 8000);
        assert_eq!(a.direction, 1);
        assert_eq!(a.indicator, "cpu");
    }

    #[test]
    fn a_single_spike_is_not_an_anomaly() {
        let reference = noisy_baseline(60);
        let current: Vec<(Ts, f64)> = (0..20).map(|i| (i * 1000, if i == 8 { 200.0 } else { 51.0 })).collect();
        assert!(judge(&series(&current), &reference, &current, false, &DetectConfig::default()).is_none());
    }

    #[test]
    fn a_ramp_is_dated_from_its_start() {
        let reference = noisy_baseline(60);
        let current: Vec<(Ts, f64)> =
            (0..30).map(|i| (i * 1000, if i >= 10 { 51.0 + (i - 10) as f64 * 2.0 } else { 50.5 })).collect();
        let a = judge(&series(&current), &reference, &current, false, &DetectConfig::default()).expect("anomaly");
        assert!(a.onset <= 12_000, "onset {} should be near the ramp start", a.onset);
    }

    #[test]
    fn a_drop_is_an_anomaly_too() {
        let reference: Vec<f64> = (0..60).map(|i| 99.0 + (i % 3) as f64 * 0.2).collect();
        let current: Vec<(Ts, f64)> = (0..10).map(|i| (i * 1000, if i >= 3 { 70.0 } else { 99.1 })).collect();
        let a = judge(&series(&current), &reference, &current, false, &DetectConfig::default()).expect("anomaly");
        assert_eq!(a.direction, -1);
    }
}
