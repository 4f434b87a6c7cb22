//! `metric_correlation`: does a suspect's signal move with the symptom, and does it move first?
//!
//! Both series are resampled to a common step over the window around the alert; for each of the
//! suspect's metrics the tool reports the lagged cross-correlation (the lag at which it is
//! strongest, positive when the suspect leads), a Granger-style F statistic (does the suspect's
//! last value improve the prediction of the symptom beyond the symptom's own last value?), and
//! the onset order of their anomalies.

use super::{about, truncate, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::detect::canonical_indicator;
use crate::investigate::ledger::Ledger;
use crate::model::{Series, Ts, MINUTE, SECOND};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub struct MetricCorrelation;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The suspect service.
    pub service: String,
    /// The symptom service (default: the alerting service).
    #[serde(default)]
    pub symptom: Option<String>,
    /// Only the suspect's metrics whose name contains this.
    #[serde(default)]
    pub metric: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correlation {
    pub metric: String,
    /// Pearson correlation at the best lag.
    pub correlation: f64,
    /// Seconds by which the suspect leads the symptom at the best lag (negative: it lags).
    pub lag_s: i64,
    /// Steps both series have a value at that lag.
    pub points: usize,
    /// Granger-style F statistic of the suspect's previous value (about 4 or more: it helps).
    pub granger_f: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub service: String,
    pub symptom: String,
    pub symptom_metric: String,
    /// Whether that metric is the alert's own signal (otherwise the symptom's most anomalous
    /// series stands in, and the correlation is shown but not weighed).
    pub alert_signal: bool,
    /// Seconds between the suspect's first anomaly and the symptom's (negative: suspect first).
    pub onset_gap_s: Option<i64>,
    pub correlations: Vec<Correlation>,
    pub more: usize,
}

const STEP: Ts = 30 * SECOND;
const MAX_LAG: i64 = 6;

/// Standard errors of Fisher's z below which a correlation could be chance: two-sided 5 % over
/// the 2·[`MAX_LAG`] + 1 = 13 lags tried (Bonferroni).
const CHANCE_Z: f64 = 2.9;

/// Indicators of a service's own resources: the only series of the symptom service whose
/// correlation with its symptom says something (see `assess`).
const OWN_CAUSES: [&str; 5] = ["cpu", "mem", "connections", "queue", "io"];

/// Most steps a resampled series has (at the 30 s step, a week).
const MAX_STEPS: usize = 20_160;

/// The resampling step: 30 s, or the symptom's own sampling interval (the median gap between its
/// points) when that is coarser, so that series scraped once a minute still line up in time.
fn step_for(s: &Series) -> Ts {
    let mut gaps: Vec<Ts> = s.points.windows(2).map(|w| w[1].0.saturating_sub(w[0].0)).filter(|g| *g > 0).collect();
    if gaps.is_empty() {
        return STEP;
    }
    let mid = gaps.len() / 2;
    let (_, median, _) = gaps.select_nth_unstable(mid);
    (*median).clamp(STEP, 10 * STEP)
}

/// Means per step from `from` to `to` of a series' points, with those of its twin in the
/// incident's separate baseline (which may reach into the window: the steady state just before).
fn resample(s: &Series, twin: Option<&Series>, from: Ts, to: Ts, step: Ts) -> Vec<Option<f64>> {
    // However far apart the input's times are, the grid stays small: a far-future point must
    // not size an allocation.
    let step = step.max(1);
    let to = to.min(from.saturating_add(step.saturating_mul(MAX_STEPS as Ts - 1)));
    let n = (to.saturating_sub(from) / step).clamp(0, MAX_STEPS as Ts - 1) as usize + 1;
    let mut sum = vec![0.0; n];
    let mut count = vec![0u32; n];
    for &(t, v) in s.points.iter().chain(twin.iter().flat_map(|b| &b.points)) {
        if t < from || t > to || !v.is_finite() {
            continue;
        }
        let i = ((t - from) / step) as usize;
        sum[i] += v;
        count[i] += 1;
    }
    sum.iter().zip(&count).map(|(s, &c)| (c > 0).then(|| s / c as f64)).collect()
}

/// The mean at each step of the series that have a value there.
fn mean(series: impl Iterator<Item = Vec<Option<f64>>>) -> Vec<Option<f64>> {
    let mut sum: Vec<(f64, u32)> = Vec::new();
    for s in series {
        sum.resize(sum.len().max(s.len()), (0.0, 0));
        for (acc, v) in sum.iter_mut().zip(s) {
            if let Some(v) = v {
                *acc = (acc.0 + v, acc.1 + 1);
            }
        }
    }
    sum.into_iter().map(|(s, n)| (n > 0).then(|| s / n as f64)).collect()
}

/// Pearson correlation of `x[i - lag]` with `y[i]` over the points both have.
fn lagged(x: &[Option<f64>], y: &[Option<f64>], lag: i64) -> Option<(f64, usize)> {
    let pairs: Vec<(f64, f64)> = (0..y.len())
        .filter_map(|i| {
            let j = i as i64 - lag;
            let xv = *x.get(usize::try_from(j).ok()?)?;
            Some((xv?, y[i]?))
        })
        .collect();
    pearson(&pairs).map(|r| (r, pairs.len()))
}

/// The lower confidence bound of |r| with every lag tried counted: Fisher's
/// z = atanh(|r|) less [`CHANCE_Z`] standard errors 1/√(n − 3), back through tanh; 0 when the correlation could be chance. Few points give a
/// low bound however high r is: ten minutes of minute samples correlate by chance easily.
fn lower_bound(c: &Correlation) -> f64 {
    if c.points <= 3 {
        return 0.0;
    }
    let z = c.correlation.abs().min(0.999_999).atanh() - CHANCE_Z / ((c.points - 3) as f64).sqrt();
    z.max(0.0).tanh()
}

/// Whether a correlation is unlikely to be chance (see [`lower_bound`]).
fn significant(c: &Correlation) -> bool {
    lower_bound(c) > 0.0
}

fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.len() < 8 {
        return None;
    }
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 1e-12 && syy > 1e-12).then(|| sxy / (sxx * syy).sqrt())
}

/// F statistic of adding `x[t-1]` to the regression of `y[t]` on `y[t-1]` (with intercept),
/// by partialling out `y[t-1]` from both.
fn granger(x: &[Option<f64>], y: &[Option<f64>]) -> f64 {
    let rows: Vec<(f64, f64, f64)> = (1..y.len()).filter_map(|t| Some((y[t]?, y[t - 1]?, x[t - 1]?))).collect();
    let n = rows.len();
    if n < 10 {
        return 0.0;
    }
    let resid = |target: &dyn Fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
        let pairs: Vec<(f64, f64)> = rows.iter().map(|r| (r.1, target(r))).collect();
        let (mx, my) =
            (pairs.iter().map(|p| p.0).sum::<f64>() / n as f64, pairs.iter().map(|p| p.1).sum::<f64>() / n as f64);
        let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let b = if sxx > 1e-12 { pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx } else { 0.0 };
        pairs.iter().map(|p| p.1 - my - b * (p.0 - mx)).collect()
    };
    let ey = resid(&|r| r.0);
    let ex = resid(&|r| r.2);
    let rss_r: f64 = ey.iter().map(|e| e * e).sum();
    let exx: f64 = ex.iter().map(|e| e * e).sum();
    if exx <= 1e-12 || rss_r <= 1e-12 {
        return 0.0;
    }
    let exy: f64 = ex.iter().zip(&ey).map(|(a, b)| a * b).sum();
    let rss_f = (rss_r - exy * exy / exx).max(1e-12);
    ((rss_r - rss_f) / (rss_f / (n as f64 - 3.0))).min(1e6)
}

/// The symptom's series: every series of the alerting signal's indicator on the symptom service
/// (one per pod or call edge: the symptom is their mean; true), else its most anomalous series,
/// else its first (false).
fn symptom_series<'a>(cx: &'a ToolCx, service: &str) -> Option<(Vec<&'a Series>, bool)> {
    let metrics = &cx.incident.telemetry.metrics;
    let wanted = canonical_indicator(&cx.incident.alert.signal);
    let own = || metrics.iter().filter(move |m| m.service == service);
    let of_alert: Vec<&Series> = own().filter(|m| canonical_indicator(&m.metric) == wanted).collect();
    if !of_alert.is_empty() {
        return Some((of_alert, true));
    }
    let top = || {
        let top = cx
            .triage
            .detection
            .anomalies
            .iter()
            .filter(|a| a.service == service && a.source == crate::detect::Source::Metric)
            .max_by(|a, b| a.score.total_cmp(&b.score))?;
        own().find(|m| m.metric == top.signal)
    };
    top().or_else(|| own().next()).map(|m| (vec![m], false))
}

/// When the service's trouble around the alert began: among its anomalies under way within two
/// minutes of the alert (earlier, finished episodes are other stories), the earliest onset for a
/// suspect (`first`) or the latest for the symptom (the one that fired).
fn onset_near_alert(cx: &ToolCx, service: &str, first: bool) -> Option<Ts> {
    let t = cx.incident.alert.time;
    let onsets = cx
        .triage
        .detection
        .anomalies
        .iter()
        .filter(|a| a.service == service && a.onset <= t + 2 * MINUTE && a.end >= t - 2 * MINUTE)
        .map(|a| a.onset);
    if first {
        onsets.min()
    } else {
        onsets.max()
    }
}

impl Tool for MetricCorrelation {
    const NAME: &'static str = "metric_correlation";
    const SPEC: &'static str = include_str!("../../../tools/metric_correlation.toml");
    const NEEDS: &'static [Data] = &[Data::Metrics];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (0.6, 1.8);
    const PER_SERVICE: bool = true;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        cx.check_service(&args.service)?;
        let symptom = args.symptom.clone().unwrap_or_else(|| cx.incident.alert.service.clone());
        cx.check_service(&symptom)?;
        let (y_series, alert_signal) = symptom_series(cx, &symptom).ok_or_else(|| {
            ToolError::new(ToolErrorKind::Unavailable, format!("no metrics of the symptom service `{symptom}`"))
        })?;
        let from = cx.during_from() - 20 * MINUTE;
        let to = cx.triage.detection.data_end.max(cx.incident.alert.time);
        let step = step_for(y_series[0]);
        let baseline: HashMap<(&str, &str), &Series> = cx
            .incident
            .baseline
            .iter()
            .flat_map(|b| &b.metrics)
            .map(|m| ((m.service.as_str(), m.metric.as_str()), m))
            .collect();
        let twin = |m: &Series| baseline.get(&(m.service.as_str(), m.metric.as_str())).copied();
        let y = mean(y_series.iter().map(|m| resample(m, twin(m), from, to, step)));
        let mut correlations: Vec<Correlation> =
            cx.incident
                .telemetry
                .metrics
                .iter()
                .filter(|m| m.service == args.service && !y_series.iter().any(|y| std::ptr::eq(*m, *y)))
                .filter(|m| args.metric.as_ref().is_none_or(|f| m.metric.contains(f.as_str())))
                .filter_map(|m| {
                    let x = resample(m, twin(m), from, to, step);
                    let (lag, (r, points)) = (-MAX_LAG..=MAX_LAG)
                        .filter_map(|lag| lagged(&x, &y, lag).map(|r| (lag, r)))
                        .max_by(|a, b| a.1 .0.abs().total_cmp(&b.1 .0.abs()).then(b.0.abs().cmp(&a.0.abs())))?;
                    Some(Correlation {
                        metric: m.metric.clone(),
                        correlation: (r * 1000.0).round() / 1000.0,
                        lag_s: lag * step / SECOND,
                        points,
                        granger_f: (granger(&x, &y) * 100.0).round() / 100.0,
                    })
                })
                .collect();
        if correlations.is_empty() {
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!("no metrics of `{}` overlap the symptom's window", args.service),
            ));
        }
        correlations
            .sort_by(|a, b| b.correlation.abs().total_cmp(&a.correlation.abs()).then_with(|| a.metric.cmp(&b.metric)));
        let more = truncate(&mut correlations, cx.max_items);
        let onset_gap_s = onset_near_alert(cx, &args.service, true)
            .zip(onset_near_alert(cx, &symptom, false))
            .map(|(a, b)| (a - b) / SECOND);
        Ok(Output {
            service: args.service.clone(),
            symptom,
            symptom_metric: match y_series.as_slice() {
                [one] => one.metric.clone(),
                many => {
                    format!("mean of {} {wanted} series", many.len(), wanted = canonical_indicator(&many[0].metric))
                }
            },
            alert_signal,
            onset_gap_s,
            correlations,
            more,
        })
    }

    fn summarize(&self, o: &Output) -> String {
        let best = o
            .correlations
            .first()
            .map(|c| {
                let chance = if significant(c) { "" } else { ", within chance" };
                format!(
                    "{} r={:.2} at lag {:+} s over {} points{chance}, F={:.1}",
                    c.metric, c.correlation, c.lag_s, c.points, c.granger_f
                )
            })
            .unwrap_or_default();
        let order = match o.onset_gap_s {
            Some(g) if g < 0 => format!("; anomalous {} s before the symptom", -g),
            Some(g) if g > 0 => format!("; anomalous {g} s after the symptom"),
            Some(_) => "; anomalous with the symptom".to_string(),
            None => String::new(),
        };
        format!("{} vs {} {}: {best}{order}", o.service, o.symptom, o.symptom_metric,)
    }

    /// Weak evidence by design (correlation is not causation; everything on the symptom's path
    /// correlates with it): ×(0.8 + 0.7·r₋) for the best correlation at which the suspect leads
    /// or is level, r₋ the lower confidence bound of |r| over that many points, ×1.2 more when
    /// the Granger test says its past helps; a suspect whose trouble around the alert began more than a minute after the symptom's is discounted (×0.6).
    fn assess(&self, _: &ToolCx, _: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        if !o.alert_signal {
            return Vec::new();
        }
        if o.onset_gap_s.is_some_and(|g| g > 60) {
            return about(ledger, &o.service, 0.6);
        }
        // The symptom service's request-level series (other pods, percentiles or edges of its
        // latency, its errors, its traffic) move with the symptom trivially: the same requests.
        // Its resources (CPU, memory, pools, queues, I/O) driving it are evidence like anyone's.
        let Some(best) = o
            .correlations
            .iter()
            .filter(|c| c.lag_s >= 0 && significant(c))
            .filter(|c| o.service != o.symptom || OWN_CAUSES.contains(&canonical_indicator(&c.metric)))
            .max_by(|a, b| lower_bound(a).total_cmp(&lower_bound(b)))
        else {
            return Vec::new();
        };
        let granger = if best.granger_f >= 4.0 { 1.2 } else { 1.0 };
        about(ledger, &o.service, (0.8 + 0.7 * lower_bound(best)) * granger)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ToolCx;
    use super::*;
    use crate::simulate::{self, SimConfig};

    fn call(incident: &crate::model::Incident, service: &str) -> Result<Output, ToolError> {
        let triage = crate::triage::triage(incident, &crate::triage::Config::default());
        let cx = ToolCx { incident, triage: &triage, kb: None, max_items: 50, logs: Default::default() };
        MetricCorrelation.call(&cx, &Args { service: service.into(), symptom: None, metric: None })
    }

    /// Series scraped once a minute at a different second per service, with the steady state
    /// before the incident in a separate baseline (as the Nezha and ChangeRCA datasets give
    /// them), still correlate: over the points both have, the baseline's included.
    #[test]
    fn minute_scrapes_and_a_separate_baseline_still_correlate() {
        let mut incident = simulate::simulate(&SimConfig::for_seed(3));
        let suspect = incident.truth.as_ref().unwrap().service.clone();
        assert_ne!(suspect, incident.alert.service);
        let cut = incident.alert.time - 15 * MINUTE;
        let mut before = Vec::new();
        for m in &mut incident.telemetry.metrics {
            let offset = if m.service == incident.alert.service { 0 } else { 17 * SECOND };
            m.points.retain(|p| p.0 % MINUTE == 0);
            m.points.iter_mut().for_each(|p| p.0 += offset);
            let (early, late): (Vec<_>, Vec<_>) = m.points.iter().partition(|p| p.0 < cut);
            before.push(Series { service: m.service.clone(), metric: m.metric.clone(), points: early });
            m.points = late;
        }
        let alone = call(&incident, &suspect).ok().map(|o| o.correlations.iter().map(|c| c.points).max().unwrap_or(0));
        incident.baseline = Some(crate::model::Telemetry { metrics: before, ..Default::default() });
        let both = call(&incident, &suspect).expect("minute scrapes correlate");
        assert!(!both.correlations.is_empty());
        let most = both.correlations.iter().map(|c| c.points).max().unwrap();
        assert!(most >= 20, "a point a minute over the window and 20 minutes before it: {most}");
        assert!(alone.is_none_or(|n| n < most), "the baseline's points count: {alone:?} vs {most}");
    }

    /// Series are resampled at their own interval when it is coarser than 30 s, so that a minute
    /// scrape is not half empty steps.
    #[test]
    fn the_step_follows_a_coarse_scrape() {
        let every = |gap: Ts| Series {
            service: "s".into(),
            metric: "m".into(),
            points: (0..20).map(|i| (i * gap + (i % 3) * SECOND, 1.0)).collect(),
        };
        assert_eq!(step_for(&every(10 * SECOND)), STEP);
        assert!((59 * SECOND..=61 * SECOND).contains(&step_for(&every(MINUTE))));
        assert_eq!(step_for(&every(24 * 60 * MINUTE)), 10 * STEP);
        assert_eq!(step_for(&Series { service: "s".into(), metric: "m".into(), points: vec![(5, 1.0)] }), STEP);
    }

    /// A correlation's lower bound grows with the points behind it, and one that could be chance
    /// over the 13 lags tried has none.
    #[test]
    fn a_far_future_point_does_not_size_the_grid() {
        let s = Series { service: "s".into(), metric: "m".into(), points: vec![(0, 1.0), (253_402_300_799_000, 2.0)] };
        let grid = resample(&s, None, 0, 253_402_300_799_000, STEP);
        assert_eq!(grid.len(), MAX_STEPS);
        assert_eq!(grid[0], Some(1.0));
    }

    #[test]
    fn the_bound_of_a_correlation_depends_on_its_points() {
        let c = |r: f64, points: usize| Correlation {
            metric: "m".into(),
            correlation: r,
            lag_s: 0,
            points,
            granger_f: 0.0,
        };
        assert!(lower_bound(&c(0.92, 10)) < lower_bound(&c(0.92, 60)));
        assert!(lower_bound(&c(0.92, 10)) > 0.0 && lower_bound(&c(0.92, 60)) < 0.92);
        assert_eq!(lower_bound(&c(0.6, 10)), 0.0);
        assert!(!significant(&c(0.6, 10)) && significant(&c(0.6, 60)));
        assert_eq!(lower_bound(&c(-1.0, 3)), 0.0);
        assert!(lower_bound(&c(1.0, 1_000_000)).is_finite());
    }
}
