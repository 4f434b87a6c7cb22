//! Counterfactual checks for a candidate cause that is a change event, and the data-quality
//! audit that runs before any conclusion.
//!
//! - [`did`]: difference-in-differences of the segments the change touched against the ones
//!   it did not, with a bootstrap interval over time buckets (common shocks cancel).
//! - [`temporal_order`]: the cause must precede the divergence.
//! - [`srm`]: sample-ratio mismatch of an experiment's arms (χ² against the planned split).
//! - [`change_impact`]: did a single KPI shift at the change, beyond what the same hour shifts
//!   on previous days and beyond what any hour of its history shifts (a placebo test)?
//! - [`audit`]: missing intervals and per-segment completeness.

use super::table::{Query, Rows};
use super::Element;
use crate::detect::stats::Robust;
use crate::model::Ts;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Buckets per window the checks aim for: the data's own step, coarsened to at most this many.
const MAX_BUCKETS: i64 = 2_000;

/// Why a check could not be made (the report lists it under "Not checked").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error("no rows match the treated segment {0}")]
    NoTreatedRows(String),
    #[error("every row is in the treated segment: there is no control")]
    NoControl,
    #[error("the treated or the control segment has no data in one of the windows")]
    EmptyWindow,
    #[error("--arm {0:?} is not one of --dims")]
    ArmNotADimension(String),
    #[error("{dimension} has {arms} value(s) in the current window; an experiment needs two arms or more")]
    TooFewArms { dimension: String, arms: usize },
    #[error("--split has {shares} shares but {dimension} has {arms} arms in the current window ({names})")]
    SplitMismatch { shares: usize, dimension: String, arms: usize, names: String },
    #[error("no units in the current window, or a planned share that is not a positive number")]
    NoUnits,
}

/// The bucket width for the checks: the data's step, never finer than 1/MAX_BUCKETS of the span.
pub fn bucket(rows: &Rows, q: &Query) -> Ts {
    let span = q.baseline.1.max(q.current.1) - q.baseline.0.min(q.current.0);
    rows.step().unwrap_or(60_000).max(span / MAX_BUCKETS).max(1)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub segment: String,
    /// Share of the window's buckets with rows of the segment.
    pub baseline: f64,
    pub current: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    pub step_s: f64,
    pub baseline_buckets: usize,
    pub baseline_missing: usize,
    pub current_buckets: usize,
    pub current_missing: usize,
    /// The first missing intervals (at most 5).
    pub gaps: Vec<Gap>,
    /// Segments (one attribute) present through the baseline but patchy in the current window.
    pub patchy: Vec<Coverage>,
    pub warnings: Vec<String>,
}

/// Missing intervals and per-segment completeness in both windows. Warnings say what to check
/// before trusting a conclusion: a segment that vanished may be the cause or may be lost data.
pub fn audit(rows: &Rows, q: &Query) -> Audit {
    let step = bucket(rows, q);
    let count = |(a, b): (Ts, Ts)| ((b - a + step - 1) / step) as usize;
    let (nb, nc) = (count(q.baseline), count(q.current));
    // Per window, per bucket: any row; per dimension value, a bit per bucket.
    let words = (nb + nc).div_ceil(64);
    let mut seen = vec![0u64; words];
    let mut per_value: Vec<Vec<Vec<u64>>> = rows.values().iter().map(|vals| vec![Vec::new(); vals.len()]).collect();
    for r in 0..rows.len() {
        let t = rows.time[r];
        let slot = if t >= q.current.0 && t < q.current.1 {
            nb + ((t - q.current.0) / step) as usize
        } else if t >= q.baseline.0 && t < q.baseline.1 {
            ((t - q.baseline.0) / step) as usize
        } else {
            continue;
        };
        seen[slot / 64] |= 1 << (slot % 64);
        for (d, &v) in rows.key(r).iter().enumerate() {
            let bits = &mut per_value[d][v as usize];
            if bits.is_empty() {
                bits.resize(words, 0);
            }
            bits[slot / 64] |= 1 << (slot % 64);
        }
    }
    let has = |bits: &[u64], slot: usize| bits.get(slot / 64).is_some_and(|w| w >> (slot % 64) & 1 == 1);
    let missing = |from: usize, to: usize| (from..to).filter(|&s| !has(&seen, s)).count();
    let (base_missing, cur_missing) = (missing(0, nb), missing(nb, nb + nc));
    let mut gaps = Vec::new();
    for (start, n, origin) in [(0, nb, q.baseline.0), (nb, nc, q.current.0)] {
        let mut s = 0;
        while s < n && gaps.len() < 5 {
            if has(&seen, start + s) {
                s += 1;
                continue;
            }
            let first = s;
            while s < n && !has(&seen, start + s) {
                s += 1;
            }
            gaps.push(Gap {
                from: crate::ingest::time::fmt_time(origin + first as Ts * step),
                to: crate::ingest::time::fmt_time(origin + s as Ts * step),
            });
        }
    }
    let mut patchy = Vec::new();
    for (d, vals) in per_value.iter().enumerate() {
        for (v, bits) in vals.iter().enumerate() {
            let share = |from: usize, n: usize| {
                if n == 0 {
                    0.0
                } else {
                    (from..from + n).filter(|&s| has(bits, s)).count() as f64 / n as f64
                }
            };
            let (b, c) = (share(0, nb), share(nb, nc));
            if b >= 0.9 && c < 0.5 {
                patchy.push(Coverage {
                    segment: format!("{}={}", rows.dims[d], rows.values()[d][v]),
                    baseline: b,
                    current: c,
                });
            }
        }
    }
    patchy.sort_by(|x, y| x.current.total_cmp(&y.current).then_with(|| x.segment.cmp(&y.segment)));
    let mut warnings = Vec::new();
    let pct = |m: usize, n: usize| 100.0 * m as f64 / n.max(1) as f64;
    if base_missing > 0 {
        warnings.push(format!(
            "{base_missing} of {nb} baseline intervals of {} s have no rows ({:.0} %)",
            step / 1000,
            pct(base_missing, nb)
        ));
    }
    if cur_missing > 0 {
        warnings.push(format!(
            "{cur_missing} of {nc} current intervals of {} s have no rows ({:.0} %)",
            step / 1000,
            pct(cur_missing, nc)
        ));
    }
    for p in patchy.iter().take(5) {
        warnings.push(format!(
            "{} has rows in {:.0} % of the baseline's intervals but {:.0} % of the current ones: lost data or a real outage; check before trusting the drill-down",
            p.segment,
            100.0 * p.baseline,
            100.0 * p.current
        ));
    }
    if patchy.len() > 5 {
        warnings.push(format!("{} more segments are patchy in the current window", patchy.len() - 5));
    }
    Audit {
        step_s: step as f64 / 1000.0,
        baseline_buckets: nb,
        baseline_missing: base_missing,
        current_buckets: nc,
        current_missing: cur_missing,
        gaps,
        patchy,
        warnings,
    }
}

/// The KPI per bucket over `[from, to)` for the selected rows (NaN where a ratio has no
/// denominator).
fn kpi_series(rows: &Rows, from: Ts, to: Ts, step: Ts, select: Option<&[bool]>) -> Vec<f64> {
    rows.series(from, to, step, select)
        .into_iter()
        .map(|(_, a, b, n)| {
            if rows.ratio {
                if b > 0.0 {
                    a / b
                } else {
                    f64::NAN
                }
            } else if n > 0 {
                a
            } else {
                f64::NAN
            }
        })
        .collect()
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.filter(|x| x.is_finite()).fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Difference-in-differences of a treated segment against the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Did {
    pub treated: String,
    /// Mean KPI per interval in each window.
    pub treated_before: f64,
    pub treated_after: f64,
    pub control_before: f64,
    pub control_after: f64,
    /// (treated after − before) − (control after − before).
    pub effect: f64,
    /// 95 % bootstrap interval of `effect` over intervals.
    pub low: f64,
    pub high: f64,
    /// The interval excludes zero.
    pub significant: bool,
}

/// Difference-in-differences: the treated segment's change less the control's (every row
/// outside it), per interval, with a 95 % interval from resampling the intervals of each window
/// (treated and control resampled together, so shocks common to both cancel).
pub fn did(rows: &Rows, q: &Query, treated: &Element, seed: u64) -> Result<Did, CheckError> {
    let inside = rows.members(treated);
    if !inside.iter().any(|&x| x) {
        return Err(CheckError::NoTreatedRows(super::element_label(treated)));
    }
    let outside: Vec<bool> = inside.iter().map(|x| !x).collect();
    if !outside.iter().any(|&x| x) {
        return Err(CheckError::NoControl);
    }
    let step = bucket(rows, q);
    let series = |w: (Ts, Ts), s: &[bool]| kpi_series(rows, w.0, w.1, step, Some(s));
    let (tb, ta, cb, ca) = (
        series(q.baseline, &inside),
        series(q.current, &inside),
        series(q.baseline, &outside),
        series(q.current, &outside),
    );
    let diff = |ib: &[usize], ia: &[usize]| {
        (mean(ia.iter().map(|&i| ta[i])) - mean(ib.iter().map(|&i| tb[i])))
            - (mean(ia.iter().map(|&i| ca[i])) - mean(ib.iter().map(|&i| cb[i])))
    };
    let (all_b, all_a): (Vec<usize>, Vec<usize>) = ((0..tb.len()).collect(), (0..ta.len()).collect());
    let effect = diff(&all_b, &all_a);
    if !effect.is_finite() {
        return Err(CheckError::EmptyWindow);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut boot: Vec<f64> = (0..500)
        .map(|_| {
            let ib: Vec<usize> = (0..tb.len()).map(|_| rng.gen_range(0..tb.len())).collect();
            let ia: Vec<usize> = (0..ta.len()).map(|_| rng.gen_range(0..ta.len())).collect();
            diff(&ib, &ia)
        })
        .filter(|x| x.is_finite())
        .collect();
    boot.sort_by(f64::total_cmp);
    let q_at = |p: f64| boot.get(((boot.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    let (low, high) = (q_at(0.025), q_at(0.975));
    Ok(Did {
        treated: super::element_label(treated),
        treated_before: mean(tb.iter().copied()),
        treated_after: mean(ta.iter().copied()),
        control_before: mean(cb.iter().copied()),
        control_after: mean(ca.iter().copied()),
        effect,
        low,
        high,
        significant: low > 0.0 || high < 0.0,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    pub change: String,
    /// The first interval after the baseline where the series left its baseline range for two
    /// intervals running; None when it never did.
    pub onset: Option<String>,
    /// The change came no later than the onset's interval. None without an onset.
    pub precedes: Option<bool>,
    /// What the series was: the treated-minus-control gap, or the KPI itself.
    pub series: String,
}

/// The temporal-order check: where did the series (the treated segment's KPI less the
/// control's, or the KPI when no segment is given) first leave its baseline range (median ± 3
/// robust standard deviations, `detect::stats::Robust`, two intervals running), and was the
/// change before that?
pub fn temporal_order(rows: &Rows, q: &Query, treated: Option<&Element>, change: Ts) -> Order {
    let step = bucket(rows, q);
    let (from, to) = (q.baseline.0.min(q.current.0), q.baseline.1.max(q.current.1));
    let (series, what): (Vec<f64>, String) = match treated {
        Some(t) => {
            let inside = rows.members(t);
            let outside: Vec<bool> = inside.iter().map(|x| !x).collect();
            let (a, b) =
                (kpi_series(rows, from, to, step, Some(&inside)), kpi_series(rows, from, to, step, Some(&outside)));
            (
                a.iter().zip(&b).map(|(x, y)| x - y).collect(),
                format!("the KPI of {} less the rest's", super::element_label(t)),
            )
        }
        None => (kpi_series(rows, from, to, step, None), "the KPI".into()),
    };
    let at = |i: usize| from + i as Ts * step;
    let base: Vec<f64> = series
        .iter()
        .enumerate()
        .filter(|&(i, x)| x.is_finite() && at(i) >= q.baseline.0 && at(i) < q.baseline.1)
        .map(|(_, &x)| x)
        .collect();
    let robust = Robust::of(&base);
    let out = |i: usize| series.get(i).is_some_and(|&x| x.is_finite() && robust.z(x).abs() > 3.0);
    let onset = if base.is_empty() {
        None
    } else {
        (0..series.len()).find(|&i| at(i) >= q.baseline.1 && out(i) && out(i + 1)).map(at)
    };
    Order {
        change: crate::ingest::time::fmt_time(change),
        onset: onset.map(crate::ingest::time::fmt_time),
        precedes: onset.map(|o| change < o + step),
        series: what,
    }
}

fn median(xs: &[f64]) -> f64 {
    crate::detect::stats::quantile(xs, 0.5)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Srm {
    pub dimension: String,
    /// Arm, units observed, units expected.
    pub arms: Vec<(String, f64, f64)>,
    pub chi2: f64,
    pub p_value: f64,
    /// p < 0.001, the usual threshold: the experiment's assignment is broken and its results
    /// cannot be trusted.
    pub mismatch: bool,
}

/// The sample-ratio-mismatch check of an experiment whose arms are the values of `dimension`:
/// the units (the ratio's denominator, or rows for a total) per arm in the current window
/// against the planned `split` (equal when empty).
pub fn srm(rows: &Rows, q: &Query, dimension: &str, split: &[f64]) -> Result<Srm, CheckError> {
    let d = rows
        .dims
        .iter()
        .position(|x| x == dimension)
        .ok_or_else(|| CheckError::ArmNotADimension(dimension.to_string()))?;
    let arms = &rows.values()[d];
    let mut units = vec![0.0; arms.len()];
    for r in 0..rows.len() {
        let t = rows.time[r];
        if t >= q.current.0 && t < q.current.1 {
            units[rows.key(r)[d] as usize] += if rows.ratio { rows.den[r] } else { 1.0 };
        }
    }
    // The arms are the values with rows in the current window (one seen only in the baseline
    // is not part of this experiment).
    let (arms, units): (Vec<String>, Vec<f64>) = arms.iter().cloned().zip(units).filter(|(_, u)| *u != 0.0).unzip();
    if arms.len() < 2 {
        return Err(CheckError::TooFewArms { dimension: dimension.to_string(), arms: arms.len() });
    }
    if !split.is_empty() && split.len() != arms.len() {
        return Err(CheckError::SplitMismatch {
            shares: split.len(),
            dimension: dimension.to_string(),
            arms: arms.len(),
            names: arms.join(", "),
        });
    }
    let total: f64 = units.iter().sum();
    let plan: Vec<f64> = if split.is_empty() { vec![1.0; arms.len()] } else { split.to_vec() };
    let plan_total: f64 = plan.iter().sum();
    if !(total > 0.0 && total.is_finite()) || plan.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(CheckError::NoUnits);
    }
    let expected: Vec<f64> = plan.iter().map(|p| total * p / plan_total).collect();
    let chi2: f64 = units.iter().zip(&expected).map(|(o, e)| (o - e) * (o - e) / e).sum();
    let p_value = chi2_survival(chi2, (arms.len() - 1) as f64);
    Ok(Srm {
        dimension: dimension.to_string(),
        arms: arms.into_iter().zip(units).zip(expected).map(|((a, o), e)| (a, o, e)).collect(),
        chi2,
        p_value,
        mismatch: p_value < 0.001,
    })
}

/// P(χ²_k > x), the regularized upper incomplete gamma Q(k/2, x/2).
pub fn chi2_survival(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let (a, x) = (k / 2.0, x / 2.0);
    let ln_gamma_a = ln_gamma(a);
    if x < a + 1.0 {
        // Series for P, then Q = 1 − P.
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * (-x + a * x.ln() - ln_gamma_a).exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction for Q (Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (h * (-x + a * x.ln() - ln_gamma_a).exp()).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s = C[1..].iter().enumerate().fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// Settings of [`change_impact`]. `window` and `alpha` were chosen by a grid search on half of
/// the Kontrast cases (pairs at even positions); the other half is held out (README, Results).
/// The rest is set a priori.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpactConfig {
    /// The windows compared before and after the change.
    pub window: Ts,
    /// The season whose same hours serve as controls.
    pub season: Ts,
    /// Most previous seasons used as controls.
    pub seasons: usize,
    /// A placebo change is placed every this often in the history.
    pub placebo_every: Ts,
    /// The change caused the shift when its p-value is below this.
    pub alpha: f64,
}

impl Default for ImpactConfig {
    fn default() -> Self {
        ImpactConfig { window: 15 * 60_000, season: 86_400_000, seasons: 7, placebo_every: 60 * 60_000, alpha: 0.2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    /// The shift at the change less the median shift at the same hour of previous seasons.
    pub effect: f64,
    /// Share of placebo changes in the history with a shift at least as large (with the real
    /// one counted, so never 0).
    pub p_value: f64,
    pub placebos: usize,
    pub caused: bool,
}

/// Did a KPI (`series`, time-sorted) shift at `change`? The shift is the median of the window
/// after less the median of the window before (15 minutes each by default); the same hours of previous seasons give the
/// shift to expect anyway (a difference in differences against the KPI's own past), and
/// placebo changes every `placebo_every` through the history give the null distribution.
/// None when the history is too short for 20 placebos.
pub fn change_impact(series: &[(Ts, f64)], change: Ts, cfg: &ImpactConfig) -> Option<Impact> {
    let slice = |from: Ts, to: Ts| -> Vec<f64> {
        let i = series.partition_point(|p| p.0 < from);
        let j = series.partition_point(|p| p.0 < to);
        series[i..j].iter().map(|p| p.1).filter(|x| x.is_finite()).collect()
    };
    let shift = |t: Ts| -> Option<f64> {
        let (before, after) = (slice(t - cfg.window, t), slice(t, t + cfg.window));
        (before.len() >= 3 && after.len() >= 3).then(|| median(&after) - median(&before))
    };
    let stat = |t: Ts| -> Option<f64> {
        let own = shift(t)?;
        let past: Vec<f64> = (1..=cfg.seasons as Ts).filter_map(|k| shift(t - k * cfg.season)).collect();
        Some(if past.is_empty() { own } else { own - median(&past) })
    };
    let effect = stat(change)?;
    let first = series.first()?.0;
    let mut placebos = Vec::new();
    let mut t = change - 2 * cfg.window;
    while t - cfg.window >= first {
        if let Some(s) = stat(t) {
            placebos.push(s);
        }
        t -= cfg.placebo_every;
    }
    if placebos.len() < 20 {
        return None;
    }
    let beyond = placebos.iter().filter(|s| s.abs() >= effect.abs()).count();
    let p_value = (1 + beyond) as f64 / (1 + placebos.len()) as f64;
    Some(Impact { effect, p_value, placebos: placebos.len(), caused: p_value < cfg.alpha })
}

/// What the checks found, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Checks {
    pub change: Option<String>,
    pub did: Option<Did>,
    pub order: Option<Order>,
    pub srm: Option<Srm>,
    /// Checks that could not run, and why.
    pub skipped: Vec<String>,
}

impl Checks {
    /// One line per check for the narrative.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = &self.did {
            out.push(format!(
                "Difference-in-differences, {} against the rest: {:+.4} (95 % interval {:+.4} to {:+.4}){}.",
                d.treated,
                d.effect,
                d.low,
                d.high,
                if d.significant { "" } else { ", not distinguishable from no effect" }
            ));
        }
        if let Some(o) = &self.order {
            out.push(match (o.precedes, &o.onset) {
                (Some(true), Some(on)) => format!("Temporal order holds: the change ({}) came before the divergence of {} at {on}.", o.change, o.series),
                (Some(false), Some(on)) => format!("Temporal order fails: {} diverged at {on}, before the change ({}); the change cannot be its cause.", o.series, o.change),
                _ => format!("Temporal order: {} never left its baseline range, so there is no divergence for the change ({}) to precede.", o.series, o.change),
            });
        }
        if let Some(s) = &self.srm {
            let p = if s.p_value >= 0.001 { format!("{:.3}", s.p_value) } else { format!("{:.1e}", s.p_value) };
            out.push(format!(
                "Sample ratio across the values of {}: χ² {:.2}, p = {p}{}.",
                s.dimension,
                s.chi2,
                if s.mismatch {
                    " — MISMATCH: assignment is broken, do not trust the experiment's comparison"
                } else {
                    ", as planned"
                }
            ));
        }
        out.extend(self.skipped.iter().map(|s| format!("Not checked: {s}.")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::{read, window, Measure, Method};
    use super::*;

    /// Ten minutes of baseline and ten of current, two regions; `se` falls from 10 % to 5 %
    /// conversion at `drop_at` (seconds after the start); `no` has no rows in minutes 15–17.
    fn rows(drop_at: i64) -> (Rows, Query) {
        let mut text = String::from("time,region,arm,orders,visits\n");
        for m in 0..20i64 {
            for (region, arm) in [("se", "a"), ("no", "b")] {
                if region == "no" && (15..18).contains(&m) {
                    continue;
                }
                let orders = if region == "se" && m * 60 >= drop_at { 5 + m % 2 } else { 10 + m % 2 };
                text += &format!(
                    "{},{region},{arm},{orders},{}\n",
                    1_700_000_000 + 60 * m,
                    if arm == "a" { 100 } else { 60 }
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, text).unwrap();
        let q = Query {
            measure: Measure::Ratio("orders".into(), "visits".into()),
            dims: vec!["region".into(), "arm".into()],
            baseline: window("1700000000..1700000600").unwrap(),
            current: window("1700000600..1700001200").unwrap(),
            method: Method::Auto,
        };
        (read(&p, &q).unwrap(), q)
    }

    #[test]
    fn did_and_temporal_order_tell_a_cause_from_a_bystander() {
        let (r, q) = rows(660);
        let se = vec![("region".to_string(), "se".to_string())];
        let d = did(&r, &q, &se, 1).unwrap();
        assert!(d.significant && d.effect < -0.04 && d.high < 0.0, "{d:?}");
        // The change at minute 10 precedes the drop at minute 11; one at minute 13 does not.
        let before = temporal_order(&r, &q, Some(&se), 1_700_000_600_000);
        assert_eq!((before.precedes, before.onset.as_deref()), (Some(true), Some("2023-11-14T22:24:20Z")));
        let after = temporal_order(&r, &q, Some(&se), 1_700_000_780_000);
        assert_eq!(after.precedes, Some(false));
        // With no drop there is no onset, and no significant effect.
        let (flat, q2) = rows(10_000);
        assert_eq!(temporal_order(&flat, &q2, Some(&se), 1_700_000_600_000).precedes, None);
        assert!(!did(&flat, &q2, &se, 1).unwrap().significant);
        assert!(did(&r, &q, &vec![("region".to_string(), "mars".to_string())], 1).is_err());
    }

    #[test]
    fn srm_flags_a_broken_split_and_chi2_matches_tables() {
        let (r, q) = rows(660);
        // Arm a has 100 visits a minute, arm b 60 (fewer minutes too): far from 50/50.
        let s = srm(&r, &q, "arm", &[]).unwrap();
        assert!(s.mismatch && s.p_value < 1e-6, "{s:?}");
        // Against the split it has (1,000 visits to 420), it is fine.
        assert!(!srm(&r, &q, "arm", &[10.0, 4.2]).unwrap().mismatch);
        assert!(srm(&r, &q, "region", &[1.0]).is_err() && srm(&r, &q, "device", &[]).is_err());
        assert!(srm(&r, &q, "arm", &[f64::NAN, 1.0]).is_err() && srm(&r, &q, "arm", &[f64::INFINITY, 1.0]).is_err());
        // χ² critical values: 3.841 (1 df) and 11.07 (5 df) at 0.05; 10.83 (1 df) at 0.001.
        for (x, k, p) in [(3.841, 1.0, 0.05), (11.07, 5.0, 0.05), (10.83, 1.0, 0.001), (0.0, 2.0, 1.0)] {
            assert!((chi2_survival(x, k) - p).abs() < 2e-4 * p.max(1.0), "{x} {k}: {}", chi2_survival(x, k));
        }
    }

    #[test]
    fn audit_warns_of_missing_data_before_any_conclusion() {
        let (r, q) = rows(660);
        let a = audit(&r, &q);
        assert_eq!((a.baseline_missing, a.current_missing, a.step_s), (0, 0, 60.0));
        assert_eq!(a.patchy, vec![]);
        // Region `no` misses 3 of the 10 current minutes: 70 % coverage is not patchy; cut the
        // current window to minutes 15–18 and it is.
        let q2 = Query { current: window("1700000900..1700001080").unwrap(), ..q.clone() };
        let a = audit(&r, &q2);
        assert_eq!(a.patchy.iter().map(|p| p.segment.as_str()).collect::<Vec<_>>(), vec!["arm=b", "region=no"]);
        assert!(
            a.warnings.iter().any(|w| w.contains("region=no has rows in 100 % of the baseline's intervals but 0 %")),
            "{:?}",
            a.warnings
        );
        // A window past the data is all missing.
        let q3 = Query { current: window("1700001200..1700001500").unwrap(), ..q };
        let a = audit(&r, &q3);
        assert_eq!((a.current_missing, a.current_buckets), (5, 5));
        assert_eq!(a.gaps.last().map(|g| g.to.as_str()), Some("2023-11-14T22:38:20Z"));
    }

    #[test]
    fn a_placebo_test_separates_a_shift_at_the_change_from_daily_routine() {
        // Five days of minutes with a daily ramp at 09:00 (routine) and noise.
        let day = 86_400_000;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut series: Vec<(Ts, f64)> = (0..5 * 1440)
            .map(|m| {
                let t = m as Ts * 60_000;
                let routine = if (t % day) >= 9 * 3_600_000 { 5.0 } else { 0.0 };
                (t, 100.0 + routine + rng.gen_range(-1.0..1.0))
            })
            .collect();
        let cfg = ImpactConfig::default();
        // A change at 09:00 on day 5 coincides with the routine ramp: the previous days'
        // controls take it out (without them the shift of 5 is the change's).
        let routine = change_impact(&series, 4 * day + 9 * 3_600_000, &cfg).unwrap();
        assert!(routine.effect.abs() < 1.0 && routine.placebos > 50, "{routine:?}");
        let plain =
            change_impact(&series, 4 * day + 9 * 3_600_000, &ImpactConfig { seasons: 0, ..cfg.clone() }).unwrap();
        assert!(plain.effect > 4.0, "{plain:?}");
        // A drop of 4 at 15:00 on day 5 is.
        let at = 4 * day + 15 * 3_600_000;
        for p in &mut series {
            if p.0 >= at {
                p.1 -= 4.0;
            }
        }
        let hit = change_impact(&series, at, &cfg).unwrap();
        assert!(hit.caused && hit.effect < -3.0 && hit.p_value < 0.05 && hit.p_value < routine.p_value, "{hit:?}");
        assert!(change_impact(&series[..100], 50 * 60_000, &cfg).is_none());
    }
}
