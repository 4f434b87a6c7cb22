//! Metric anomalies: each series against its own robust baseline, with the onset of the change.
//!
//! A series is anomalous when its robust z-score (median/MAD of the reference) stays beyond the
//! threshold for `sustain` consecutive points and leaves the reference's normal range; one-point
//! spikes of noisy services do not count. The onset is the first anomalous point, walked back
//! over the ramp that led to it, so a slow leak is dated when it began, not when it crossed.

use super::stats::Robust;
use super::{canonical_indicator, Anomaly, DetectConfig, Detection, Measure, Source};
use crate::model::{Incident, Series, Ts};
use std::collections::HashMap;

/// One metric series split into its reference values and its incident-period points, by the
/// model's rule: the separate baseline's series of the same name when there is a baseline, else
/// the points before `analysis_start`. Non-finite values are dropped.
pub struct Split<'a> {
    pub series: &'a Series,
    pub reference: Vec<f64>,
    pub current: Vec<(Ts, f64)>,
    /// With a separate baseline: the series' own points in the [`RECENT_SPAN`] before
    /// `analysis_start`, the level it stood at just before the incident. Empty otherwise.
    pub recent: Vec<f64>,
}

/// How far before the incident period the series' own points show where its level stood.
pub const RECENT_SPAN: Ts = 5 * crate::model::MINUTE;

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
            let recent = match &incident.baseline {
                Some(_) => series
                    .points
                    .iter()
                    .filter(|p| {
                        p.0 < incident.analysis_start
                            && p.0 >= incident.analysis_start.saturating_sub(RECENT_SPAN)
                            && p.1.is_finite()
                    })
                    .map(|p| p.1)
                    .collect(),
                None => Vec::new(),
            };
            Split { series, reference, current, recent }
        })
        .collect()
}

pub fn detect(incident: &Incident, cfg: &DetectConfig, out: &mut Detection) {
    let first = out.anomalies.len();
    for Split { series, reference, current, recent } in split(incident) {
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
        if let Some(a) = judge(series, &reference, &recent, &current, incident.baseline.is_some(), cfg) {
            out.anomalies.push(a);
        }
    }
    blame_callers(incident, &mut out.anomalies[first..]);
}

/// The call edge a per-edge series measures (`…{edge="caller->callee",…}`), and the series'
/// name with the edge's value replaced by `*`: the same measurement on the callee's other edges.
pub(crate) fn edge_of(metric: &str) -> Option<(&str, &str, String)> {
    let start = metric.find("edge=\"")? + 6;
    let len = metric[start..].find('"')?;
    let (caller, callee) = metric[start..start + len].split_once("->")?;
    Some((caller, callee, format!("{}*{}", &metric[..start], &metric[start + len..])))
}

/// A call edge slow for one caller only is the caller's trouble, not the callee's: when the
/// latency of the calls `A -> B` is anomalous while B serves its other callers (the same
/// measurement on their edges) as usual, the anomaly is moved to A (its network, or a starved
/// A timing its own calls). A callee slow for every caller keeps it.
fn blame_callers(incident: &Incident, anomalies: &mut [Anomaly]) {
    let suspect = |a: &Anomaly| a.indicator == "latency" && a.direction > 0;
    let slow: Vec<(String, String, String)> = anomalies
        .iter()
        .filter(|a| suspect(a))
        .filter_map(|a| edge_of(&a.signal).map(|(caller, _, key)| (a.service.clone(), key, caller.to_string())))
        .collect();
    for a in anomalies.iter_mut().filter(|a| suspect(a)) {
        let Some((caller, callee, key)) = edge_of(&a.signal) else { continue };
        if callee != a.service || caller == callee {
            continue;
        }
        let others: Vec<&str> = incident
            .telemetry
            .metrics
            .iter()
            .filter(|s| s.service == a.service)
            .filter_map(|s| edge_of(&s.metric).filter(|(c, _, k)| *c != caller && *k == key).map(|(c, _, _)| c))
            .collect();
        let others_slow = slow.iter().any(|(svc, k, c)| *svc == a.service && *k == key && c != caller);
        if others.is_empty() || others_slow {
            continue;
        }
        let (caller, callee) = (caller.to_string(), callee.to_string());
        a.evidence = format!(
            "{}; {callee} serves its other callers ({}) as usual, so the delay is on {caller}'s side",
            a.evidence,
            others.join(", ")
        );
        a.service = caller;
    }
}

/// A shift smaller than this share of the baseline median does not matter to anyone, however
/// significant (a slowly drifting gauge against a short baseline).
const MIN_RELATIVE_SHIFT: f64 = 0.1;

/// Smallest change of an error ratio (0–1) that counts.
const MIN_ERROR_RATIO_SHIFT: f64 = 0.005;

/// Weight of an excursion that stays within the reference's 1st–99th percentile range.
const WITHIN_RANGE_DISCOUNT: f64 = 0.5;

/// Fewest recent points that can say where a level stood before the incident.
const MIN_RECENT_POINTS: usize = 3;

/// Judges one series; `None` when it is normal.
/// `learned`: the reference is a separate fault-free capture, whose usual swings are normal
/// ([`Robust::with_swings`]); a reference cut from the same stream just before the incident is
/// judged by its plain robust scale. `recent`: the series' points just before the incident
/// period; when their median was already anomalous against the reference (a gauge that drifted,
/// memory that grew over the day), the reference is moved to that level, since what was already
/// so before the incident is not its news.
pub fn judge(
    series: &Series,
    reference: &[f64],
    recent: &[f64],
    current: &[(Ts, f64)],
    learned: bool,
    cfg: &DetectConfig,
) -> Option<Anomaly> {
    if current.is_empty() {
        return None;
    }
    let mut r = if learned { Robust::with_swings(reference) } else { Robust::of(reference) };
    if recent.len() >= MIN_RECENT_POINTS {
        let level = super::stats::quantile(recent, 0.5);
        if r.z(level).abs() >= cfg.z_threshold {
            let drift = level - r.median;
            r = Robust { median: level, scale: r.scale, hi: r.hi + drift, lo: r.lo + drift };
        }
    }
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
    // The figure is the anomaly's own: the median from its onset to its end, not the whole
    // period's (which a late shift hides in).
    let own: Vec<f64> = current[i..=end.max(i)].iter().map(|p| p.1).collect();
    let value = super::stats::quantile(&own, 0.5);
    let unit = unit_of(&series.metric);
    Some(Anomaly {
        service: series.service.clone(),
        source: Source::Metric,
        indicator: if canon == "other" { series.metric.clone() } else { canon.to_string() },
        signal: series.metric.clone(),
        onset: current[i].0,
        end: current[end].0,
        score: best.abs(),
        direction: sign as i8,
        measure: Some(Measure { value, baseline: r.median, unit: unit.to_string() }),
        evidence: format!(
            "{} {} {} to {} from {} on ({} {}; baseline median {}, z {:.1})",
            series.service,
            series.metric,
            if sign > 0.0 { "rose" } else { "fell" },
            fmt_value(value, unit),
            crate::ingest::time::fmt_clock(current[i].0),
            if sign > 0.0 { "peak" } else { "low" },
            fmt_value(peak, unit),
            fmt_value(r.median, unit),
            best
        ),
    })
}

/// The unit a metric's name declares (`_seconds`, `(s)`, `_ms`, `_bytes`, `_percent`, `_ratio`,
/// `_per_second`), or "" when it declares none.
pub fn unit_of(metric: &str) -> &'static str {
    let m = metric.split('{').next().unwrap_or(metric).to_ascii_lowercase();
    let ends = |s: &[&str]| s.iter().any(|x| m.ends_with(x));
    let has = |s: &[&str]| s.iter().any(|x| m.contains(x));
    if has(&["per_second", "per_sec"]) || ends(&["rps", "qps"]) {
        "/s"
    } else if ends(&["kbps"]) {
        "kbit/s"
    } else if has(&["(ms)", "_ms_", "millisecond"]) || ends(&["_ms", "latency_ms", "_millis"]) {
        "ms"
    } else if has(&["(s)", "_seconds_"]) || ends(&["_seconds", "_second", "_sec", "_secs"]) {
        "s"
    } else if has(&["bytes", "(b)"]) {
        "bytes"
    } else if has(&["percent", "(%)", "_pct"]) {
        "%"
    } else if ends(&["_ratio"]) {
        "ratio"
    } else {
        ""
    }
}

/// A figure with its unit, scaled for people: seconds under one as ms, bytes as KiB/MiB/GiB,
/// ratios as percentages.
pub fn fmt_value(x: f64, unit: &str) -> String {
    match unit {
        "s" if x.abs() < 1.0 => format!("{} ms", fmt_num(x * 1000.0)),
        "s" => format!("{} s", fmt_num(x)),
        "ms" => format!("{} ms", fmt_num(x)),
        "%" => format!("{} %", fmt_num(x)),
        "ratio" => format!("{} %", fmt_num(x * 100.0)),
        "/s" => format!("{}/s", fmt_num(x)),
        "kbit/s" => format!("{} kbit/s", fmt_num(x)),
        "bytes" => {
            let (mut v, mut i) = (x, 0);
            let units = ["B", "KiB", "MiB", "GiB", "TiB"];
            while v.abs() >= 1024.0 && i + 1 < units.len() {
                v /= 1024.0;
                i += 1;
            }
            format!("{} {}", fmt_num(v), units[i])
        }
        _ => fmt_num(x),
    }
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
        let a = judge(&series(&current), &reference, &[], &current, false, &DetectConfig::default()).expect("anomaly");
        assert_eq!(a.onset, 8000);
        assert_eq!(a.direction, 1);
        assert_eq!(a.indicator, "cpu");
    }

    #[test]
    fn units_come_from_the_name_and_are_shown_scaled() {
        assert_eq!(unit_of("http_request_duration_seconds"), "s");
        assert_eq!(unit_of("PodServerLatencyP99(s)"), "s");
        assert_eq!(unit_of("latency_p99_ms{route=\"/pay\"}"), "ms");
        assert_eq!(unit_of("process_resident_memory_bytes"), "bytes");
        assert_eq!(unit_of("cpu_percent"), "%");
        assert_eq!(unit_of("error_ratio"), "ratio");
        assert_eq!(unit_of("latency_p99"), "");
        assert_eq!(unit_of("requests_per_second"), "/s");
        assert_eq!(unit_of("process_cpu_seconds_per_second"), "/s");
        assert_eq!(fmt_value(0.5349, "s"), "535 ms");
        assert_eq!(fmt_value(0.0215, "ratio"), "2.15 %");
        assert_eq!(fmt_value(3.0 * 1024.0 * 1024.0, "bytes"), "3.00 MiB");
        assert_eq!(fmt_value(0.5349, ""), "0.5349");
    }

    #[test]
    fn the_figure_is_the_anomalys_own_window_not_the_period() {
        // 30 minutes at 120 ms, then 5 at 470 ms: the whole period's median says 120 ms and hides
        // the regression; the anomaly's own window says 470 ms.
        let reference: Vec<f64> = (0..60).map(|i| 0.12 + (i % 5) as f64 * 0.001).collect();
        let current: Vec<(Ts, f64)> = (0..35).map(|i| (i * 60_000, if i >= 30 { 0.47 } else { 0.121 })).collect();
        let s = Series { service: "checkout".into(), metric: "latency_p99_seconds".into(), points: current.clone() };
        let a = judge(&s, &reference, &[], &current, false, &DetectConfig::default()).expect("anomaly");
        let m = a.measure.expect("a metric anomaly has a measure");
        assert_eq!((m.value, m.unit.as_str()), (0.47, "s"));
        assert!((m.baseline - 0.122).abs() < 0.002, "{m:?}");
        assert!(a.evidence.contains("rose to 470 ms from 00:30:00 on"), "{}", a.evidence);
    }

    #[test]
    fn a_single_spike_is_not_an_anomaly() {
        let reference = noisy_baseline(60);
        let current: Vec<(Ts, f64)> = (0..20).map(|i| (i * 1000, if i == 8 { 200.0 } else { 51.0 })).collect();
        assert!(judge(&series(&current), &reference, &[], &current, false, &DetectConfig::default()).is_none());
    }

    #[test]
    fn a_ramp_is_dated_from_its_start() {
        let reference = noisy_baseline(60);
        let current: Vec<(Ts, f64)> =
            (0..30).map(|i| (i * 1000, if i >= 10 { 51.0 + (i - 10) as f64 * 2.0 } else { 50.5 })).collect();
        let a = judge(&series(&current), &reference, &[], &current, false, &DetectConfig::default()).expect("anomaly");
        assert!(a.onset <= 12_000, "onset {} should be near the ramp start", a.onset);
    }

    #[test]
    fn a_drop_is_an_anomaly_too() {
        let reference: Vec<f64> = (0..60).map(|i| 99.0 + (i % 3) as f64 * 0.2).collect();
        let current: Vec<(Ts, f64)> = (0..10).map(|i| (i * 1000, if i >= 3 { 70.0 } else { 99.1 })).collect();
        let a = judge(&series(&current), &reference, &[], &current, false, &DetectConfig::default()).expect("anomaly");
        assert_eq!(a.direction, -1);
    }

    #[test]
    fn a_level_already_off_before_the_incident_is_not_its_news() {
        // Learned normal says 12; the gauge stood at 42 for the minutes before the incident and
        // stays there: nothing new. A rise from 42 to 90 is.
        let reference = noisy_baseline(120).iter().map(|x| x - 38.0).collect::<Vec<_>>();
        let recent = [42.0, 42.0, 42.1, 42.0, 41.9];
        let flat: Vec<(Ts, f64)> = (0..10).map(|i| (i * 60_000, 42.0)).collect();
        let cfg = DetectConfig::default();
        assert!(judge(&series(&flat), &reference, &[], &flat, true, &cfg).is_some(), "against normal alone it is off");
        assert!(judge(&series(&flat), &reference, &recent, &flat, true, &cfg).is_none());
        let rise: Vec<(Ts, f64)> = (0..10).map(|i| (i * 60_000, if i >= 3 { 90.0 } else { 42.0 })).collect();
        let a = judge(&series(&rise), &reference, &recent, &rise, true, &cfg).expect("the rise is news");
        assert_eq!(a.onset, 180_000);
    }

    fn edge(caller: &str, callee: &str, f: impl Fn(i64) -> f64) -> Series {
        Series {
            service: callee.into(),
            metric: format!("EdgeLatencyP50(s){{edge=\"{caller}->{callee}\",side=\"caller\"}}"),
            points: (0..40).map(|m| (m * crate::model::MINUTE, f(m))).collect(),
        }
    }

    fn incident_of(metrics: Vec<Series>) -> Incident {
        use crate::model::{Alert, Severity, Telemetry};
        let baseline = metrics
            .iter()
            .map(|s| Series {
                points: (0..60).map(|m| (-(m + 1) * crate::model::MINUTE, 0.005 + (m % 5) as f64 * 0.0002)).collect(),
                ..s.clone()
            })
            .collect();
        Incident {
            id: "edges".into(),
            alert: Alert {
                title: "latency".into(),
                service: "frontend".into(),
                signal: "latency".into(),
                time: 20 * crate::model::MINUTE,
                severity: Severity::High,
            },
            telemetry: Telemetry { metrics, ..Telemetry::default() },
            baseline: Some(Telemetry { metrics: baseline, ..Telemetry::default() }),
            analysis_start: 20 * crate::model::MINUTE,
            topology: None,
            truth: None,
            read_report: Default::default(),
        }
    }

    fn detected(incident: &Incident) -> Vec<(String, String)> {
        let mut out = Detection::default();
        detect(incident, &DetectConfig::default(), &mut out);
        let mut v: Vec<_> = out.anomalies.iter().map(|a| (a.service.clone(), a.signal.clone())).collect();
        v.sort();
        v
    }

    #[test]
    fn a_callee_slow_for_one_caller_only_hands_the_anomaly_to_that_caller() {
        let slow = |m: i64| if m >= 22 { 0.2 } else { 0.005 };
        let normal = |m: i64| 0.005 + (m % 3) as f64 * 0.0001;
        // The recommender's calls to the catalogue are slow; the catalogue's other callers are
        // served as usual: the recommender's side (its network) is where the delay is.
        let one = incident_of(vec![
            edge("recommendation", "catalogue", slow),
            edge("frontend", "catalogue", normal),
            edge("checkout", "catalogue", normal),
        ]);
        let found = detected(&one);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "recommendation");
        // Every caller of the cart waits: the cart keeps it.
        let all = incident_of(vec![edge("frontend", "cart", slow), edge("checkout", "cart", slow)]);
        assert!(detected(&all).iter().all(|(s, _)| s == "cart"));
        // A single caller says nothing either way: the callee keeps it.
        let only = incident_of(vec![edge("checkout", "email", slow)]);
        assert_eq!(detected(&only)[0].0, "email");
    }
}
