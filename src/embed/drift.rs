//! Drift: has the data moved away from what a model was trained on?
//!
//! At training time the model card keeps a profile of the training embeddings: 101 quantiles per
//! dimension. A recent sample is compared with it dimension by dimension with the Kolmogorov–
//! Smirnov statistic (the largest gap between the two distribution functions; the reference's is
//! interpolated between its quantiles). A dimension drifts when the gap is both significant after
//! a Bonferroni correction over the dimensions and at least [`MIN_EFFECT`] (with many events any
//! gap is significant; only a sizeable one is worth a retrain).

use serde::{Deserialize, Serialize};

const QUANTILES: usize = 101;
/// Smallest KS statistic that counts as drift.
pub const MIN_EFFECT: f64 = 0.15;
/// Family-wise significance level over all dimensions.
pub const ALPHA: f64 = 0.01;

/// Per-dimension quantiles of a set of embeddings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub n: usize,
    /// `quantiles[d][q]` is the q-th percentile of dimension d.
    pub quantiles: Vec<Vec<f32>>,
}

impl Profile {
    /// Profile of `z` (`n × dim` values row-major).
    pub fn of(z: &[f32], dim: usize) -> Profile {
        let n = z.len().checked_div(dim).unwrap_or(0);
        if n == 0 {
            return Profile::default();
        }
        let quantiles = (0..dim)
            .map(|d| {
                let mut col: Vec<f32> = (0..n).map(|i| z[i * dim + d]).collect();
                col.sort_by(f32::total_cmp);
                (0..QUANTILES).map(|q| col[(q * (n - 1)) / (QUANTILES - 1)]).collect()
            })
            .collect();
        Profile { n, quantiles }
    }

    /// The reference distribution function of dimension `d` at `x`.
    fn cdf(&self, d: usize, x: f32) -> f64 {
        let q = &self.quantiles[d];
        if x < q[0] {
            return 0.0;
        }
        if x >= q[QUANTILES - 1] {
            return 1.0;
        }
        // Last quantile ≤ x, then linear between it and the next.
        let i = q.partition_point(|&v| v <= x).saturating_sub(1).min(QUANTILES - 2);
        let (a, b) = (q[i], q[i + 1]);
        let frac = if b > a { f64::from((x - a) / (b - a)) } else { 1.0 };
        (i as f64 + frac) / (QUANTILES - 1) as f64
    }
}

/// The drift verdict for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub dims: usize,
    /// Dimensions whose KS gap is significant and at least [`MIN_EFFECT`].
    pub drifted: usize,
    pub max_ks: f64,
    /// The smallest p-value over dimensions (uncorrected).
    pub min_p: f64,
    pub recent: usize,
}

impl Drift {
    pub fn should_retrain(&self) -> bool {
        self.drifted > 0
    }
}

/// Compares recent embeddings `z` (`n × dim`) with `profile`.
pub fn check(profile: &Profile, z: &[f32], dim: usize) -> Option<Drift> {
    let n = z.len().checked_div(dim).unwrap_or(0);
    if n == 0 || profile.n == 0 || profile.quantiles.len() != dim {
        return None;
    }
    let effective = (n * profile.n) as f64 / (n + profile.n) as f64;
    let mut out = Drift { dims: dim, drifted: 0, max_ks: 0.0, min_p: 1.0, recent: n };
    for d in 0..dim {
        let mut col: Vec<f32> = (0..n).map(|i| z[i * dim + d]).collect();
        col.sort_by(f32::total_cmp);
        let mut ks = 0.0f64;
        for (i, &x) in col.iter().enumerate() {
            let f = profile.cdf(d, x);
            ks = ks.max((f - i as f64 / n as f64).abs()).max(((i + 1) as f64 / n as f64 - f).abs());
        }
        let p = ks_p_value(ks, effective);
        out.max_ks = out.max_ks.max(ks);
        out.min_p = out.min_p.min(p);
        if ks >= MIN_EFFECT && p < ALPHA / dim as f64 {
            out.drifted += 1;
        }
    }
    Some(out)
}

/// Asymptotic p-value of a KS statistic `d` with effective sample size `n` (Stephens' correction).
pub fn ks_p_value(d: f64, n: f64) -> f64 {
    let s = n.sqrt();
    let lambda = (s + 0.12 + 0.11 / s) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 {
            break;
        }
    }
    sum.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sample(n: usize, dim: usize, shift: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim).map(|i| rng.gen_range(0.0f32..1.0) + if i % dim == 0 { shift } else { 0.0 }).collect()
    }

    #[test]
    fn same_distribution_does_not_drift_and_a_shifted_dimension_does() {
        let profile = Profile::of(&sample(4000, 8, 0.0, 1), 8);
        let same = check(&profile, &sample(2000, 8, 0.0, 2), 8).unwrap();
        assert_eq!(same.drifted, 0, "{same:?}");
        assert!(same.max_ks < 0.06, "{same:?}");
        let moved = check(&profile, &sample(2000, 8, 0.4, 3), 8).unwrap();
        assert_eq!(moved.drifted, 1, "only the shifted dimension: {moved:?}");
        assert!(moved.max_ks > 0.35, "{moved:?}");
    }

    #[test]
    fn ks_p_values_match_known_points() {
        // λ = 1.36 is the classic 5 % critical value; 1.63 the 1 % one.
        assert!((ks_p_value(1.36 / 100f64.sqrt() / (1.0 + 0.12 / 10.0 + 0.011 / 10.0), 100.0) - 0.05).abs() < 0.005);
        assert!((ks_p_value(1.63 / 100f64.sqrt() / (1.0 + 0.012 + 0.0011), 100.0) - 0.01).abs() < 0.002);
    }
}
