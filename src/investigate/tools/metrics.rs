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

fn resample(s: &Series, from: Ts, to: Ts) -> Vec<Option<f64>> {
    let n = ((to - from) / STEP).max(0) as usize + 1;
    let mut sum = vec![0.0; n];
    let mut count = vec![0u32; n];
    for &(t, v) in &s.points {
        if t < from || t > to || !v.is_finite() {
            continue;
        }
        let i = ((t - from) / STEP) as usize;
        sum[i] += v;
        count[i] += 1;
    }
    sum.iter().zip(&count).map(|(s, &c)| (c > 0).then(|| s / c as f64)).collect()
}

/// Pearson correlation of `x[i - lag]` with `y[i]` over the points both have.
fn lagged(x: &[Option<f64>], y: &[Option<f64>], lag: i64) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = (0..y.len())
        .filter_map(|i| {
            let j = i as i64 - lag;
            let xv = *x.get(usize::try_from(j).ok()?)?;
            Some((xv?, y[i]?))
        })
        .collect();
    pearson(&pairs)
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

/// The symptom's series: the alerting signal's indicator on the symptom service (true), else its
/// most anomalous series, else its first (false).
fn symptom_series<'a>(cx: &'a ToolCx, service: &str) -> Option<(&'a Series, bool)> {
    let metrics = &cx.incident.telemetry.metrics;
    let wanted = canonical_indicator(&cx.incident.alert.signal);
    let own = || metrics.iter().filter(move |m| m.service == service);
    if let Some(m) = own().find(|m| canonical_indicator(&m.metric) == wanted) {
        return Some((m, true));
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
    top().or_else(|| own().next()).map(|m| (m, false))
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
        let y = resample(y_series, from, to);
        let mut correlations: Vec<Correlation> = cx
            .incident
            .telemetry
            .metrics
            .iter()
            .filter(|m| m.service == args.service && !std::ptr::eq(*m, y_series))
            .filter(|m| args.metric.as_ref().is_none_or(|f| m.metric.contains(f.as_str())))
            .filter_map(|m| {
                let x = resample(m, from, to);
                let (lag, r) = (-MAX_LAG..=MAX_LAG)
                    .filter_map(|lag| lagged(&x, &y, lag).map(|r| (lag, r)))
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()).then(b.0.abs().cmp(&a.0.abs())))?;
                Some(Correlation {
                    metric: m.metric.clone(),
                    correlation: (r * 1000.0).round() / 1000.0,
                    lag_s: lag * STEP / SECOND,
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
            symptom_metric: y_series.metric.clone(),
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
            .map(|c| format!("{} r={:.2} at lag {:+} s, F={:.1}", c.metric, c.correlation, c.lag_s, c.granger_f))
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
    /// correlates with it): ×(0.8 + 0.7·|r|) for the best correlation at which the suspect leads
    /// or is level, ×1.2 more when the Granger test says its past helps; a suspect whose trouble
    /// around the alert began more than a minute after the symptom's is discounted (×0.6).
    fn assess(&self, _: &ToolCx, _: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        if o.service == o.symptom || !o.alert_signal {
            return Vec::new();
        }
        if o.onset_gap_s.is_some_and(|g| g > 60) {
            return about(ledger, &o.service, 0.6);
        }
        let Some(best) = o
            .correlations
            .iter()
            .filter(|c| c.lag_s >= 0)
            .max_by(|a, b| a.correlation.abs().total_cmp(&b.correlation.abs()))
        else {
            return Vec::new();
        };
        let granger = if best.granger_f >= 4.0 { 1.2 } else { 1.0 };
        about(ledger, &o.service, (0.8 + 0.7 * best.correlation.abs()) * granger)
    }
}
