//! Seeded randomness for the simulator: independent reproducible streams and the few distributions it needs.
//!
//! Every part of a simulation (topology, scenario, each metric series, each minute of traffic) draws
//! from its own ChaCha8 stream derived from the seed and a tag, so parts can be generated in any
//! order, or in parallel, and still give the same incident.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub(crate) type SimRng = ChaCha8Rng;

/// Stream tags: one per part of the simulation.
pub(crate) const TOPOLOGY: u64 = 1;
pub(crate) const SCENARIO: u64 = 2;
pub(crate) const METRICS: u64 = 3;
pub(crate) const TRAFFIC: u64 = 4;
pub(crate) const DECOY: u64 = 5;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent stream for `seed` and a path of tags.
pub(crate) fn stream(seed: u64, tags: &[u64]) -> SimRng {
    let mut h = splitmix(seed ^ 0xC0FF_EE00_D15E_A5E5);
    for &t in tags {
        h = splitmix(h ^ splitmix(t));
    }
    ChaCha8Rng::seed_from_u64(h)
}

pub(crate) fn uniform(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    rng.gen_range(lo..hi)
}

pub(crate) use crate::rng::normal;

pub(crate) fn lognormal(rng: &mut SimRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Poisson count: exact for small means, normal approximation for large ones.
pub(crate) fn poisson(rng: &mut SimRng, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    if mean > 30.0 {
        let x = mean + mean.sqrt() * normal(rng);
        return x.round().max(0.0) as u64;
    }
    let limit = (-mean).exp();
    let mut k = 0u64;
    let mut p = rng.gen::<f64>();
    while p > limit {
        k += 1;
        p *= rng.gen::<f64>();
    }
    k
}

/// P(N > z) for a standard normal N.
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' erfcc, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Index drawn with probability proportional to `weights` (all-zero weights give index 0).
pub(crate) fn weighted(rng: &mut SimRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 || weights.is_empty() {
        return 0;
    }
    let mut x = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if x < *w {
                return i;
            }
            x -= w;
        }
    }
    weights.len() - 1
}

/// One element of a non-empty slice; None when empty.
pub(crate) fn choose<'a, T>(rng: &mut SimRng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.gen_range(0..items.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: u64 = stream(7, &[1, 2]).gen();
        let b: u64 = stream(7, &[1, 2]).gen();
        let c: u64 = stream(7, &[2, 1]).gen();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn normal_tail_matches_table() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_sf(1.96) - 0.025).abs() < 1e-3);
        assert!((normal_sf(-1.0) - 0.8413).abs() < 1e-3);
    }

    #[test]
    fn poisson_mean_is_close() {
        let mut rng = stream(1, &[9]);
        let n = 4000;
        let small: u64 = (0..n).map(|_| poisson(&mut rng, 3.0)).sum();
        let large: u64 = (0..n).map(|_| poisson(&mut rng, 100.0)).sum();
        assert!((small as f64 / n as f64 - 3.0).abs() < 0.2);
        assert!((large as f64 / n as f64 - 100.0).abs() < 2.0);
    }
}
