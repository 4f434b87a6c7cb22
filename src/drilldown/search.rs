//! Localisation: which elements explain a cube's deviation.
//!
//! - [`ripple`], culprit's search: a ripple-effect potential (HotSpot's idea) over every cuboid
//!   of up to three attributes, greedy, with a succinctness cost per attribute.
//! - [`adtributor`] (Bhagwan et al., NSDI 2014) and [`squeeze`] (Li et al., ISSRE 2019), the
//!   baselines, written from their papers.
//!
//! Every search works on [`Cuboids`]: per cuboid (set of dimensions), each leaf's group, so a
//! search is array sums with no hashing, and a bootstrap replica (the same leaves with other
//! values) reuses them.

use super::{Cube, Element};
use std::collections::HashMap;

/// Per cuboid, each leaf's group index and each group's value ids (per dimension of the cube;
/// dimensions outside the cuboid are 0).
pub struct Cuboids {
    pub dims: Vec<Vec<usize>>,
    pub group: Vec<Vec<u32>>,
    pub keys: Vec<Vec<Vec<u32>>>,
}

impl Cuboids {
    pub fn new(cube: &Cube, max_layer: usize) -> Cuboids {
        let (mut dims, mut group, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for layer in 1..=max_layer.min(cube.dims.len()) {
            for ds in combinations(cube.dims.len(), layer) {
                // Up to three u32 ids packed in a u128.
                let mut index: HashMap<u128, u32> = HashMap::new();
                let mut ks: Vec<Vec<u32>> = Vec::new();
                let g: Vec<u32> = cube
                    .leaves
                    .iter()
                    .map(|l| {
                        let packed = ds.iter().fold(0u128, |p, &d| p << 32 | u128::from(l.attrs[d]));
                        *index.entry(packed).or_insert_with(|| {
                            let mut attrs = vec![0u32; cube.dims.len()];
                            for &d in &ds {
                                attrs[d] = l.attrs[d];
                            }
                            ks.push(attrs);
                            (ks.len() - 1) as u32
                        })
                    })
                    .collect();
                dims.push(ds);
                group.push(g);
                keys.push(ks);
            }
        }
        Cuboids { dims, group, keys }
    }

    fn element(&self, cube: &Cube, c: usize, g: usize) -> Element {
        cube.element(&self.dims[c], &self.keys[c][g])
    }
}

/// Every combination of `k` of `n` dimensions, in order.
pub(crate) fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}

/// Settings of the ripple search (set a priori, not fitted to a dataset).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RippleConfig {
    /// Most attributes in one element.
    pub max_layer: usize,
    /// Potential given up per attribute (prefers a parent that explains as much as its child).
    pub succinct: f64,
    /// An element is kept while it explains at least this share of the original deviation.
    pub min_gain: f64,
    pub max_elements: usize,
}

impl Default for RippleConfig {
    fn default() -> Self {
        RippleConfig { max_layer: 3, succinct: 0.05, min_gain: 0.2, max_elements: 3 }
    }
}

/// The ripple search. For each element, the actual values are compared with a forecast in which
/// only the element's leaves moved, all by the element's own ratio (the ripple effect: a cause
/// at `region=SE` moves every leaf under it alike); its *potential* is how much of the distance
/// between actual and forecast that explains. The best element, less `succinct` per attribute,
/// is taken, its leaves removed, and the search repeats while an element explains at least
/// `min_gain` of the original distance (measured against what is left, noise would look
/// important at the end).
pub fn ripple(cube: &Cube, cuboids: &Cuboids, cfg: &RippleConfig) -> Vec<Element> {
    let expected = cube.expected();
    let n = cube.leaves.len();
    let mut alive = vec![true; n];
    let mut out = Vec::new();
    let base: f64 = (0..n).map(|i| (cube.leaves[i].a - expected[i]).abs()).sum();
    if base <= 1e-9 {
        return out;
    }
    while out.len() < cfg.max_elements {
        let mut best: Option<(f64, f64, usize, usize)> = None;
        for (c, groups) in cuboids.group.iter().enumerate() {
            let layer = cuboids.dims[c].len();
            if layer > cfg.max_layer {
                continue;
            }
            let m = cuboids.keys[c].len();
            let (mut act, mut exp) = (vec![0.0; m], vec![0.0; m]);
            for i in (0..n).filter(|&i| alive[i]) {
                act[groups[i] as usize] += cube.leaves[i].a;
                exp[groups[i] as usize] += expected[i];
            }
            let ratio: Vec<f64> = act.iter().zip(&exp).map(|(a, e)| if *e > 0.0 { a / e } else { f64::NAN }).collect();
            let mut gain = vec![0.0; m];
            for i in (0..n).filter(|&i| alive[i]) {
                let g = groups[i] as usize;
                if ratio[g].is_finite() {
                    let (a, e) = (cube.leaves[i].a, expected[i]);
                    gain[g] += (a - e).abs() - (a - ratio[g] * e).abs();
                }
            }
            for (g, &x) in gain.iter().enumerate() {
                let x = x / base;
                let score = x - cfg.succinct * layer as f64;
                if ratio[g].is_finite() && best.is_none_or(|b| score > b.0) {
                    best = Some((score, x, c, g));
                }
            }
        }
        let Some((_, gain, c, g)) = best else { break };
        if gain < cfg.min_gain {
            break;
        }
        for i in 0..n {
            if cuboids.group[c][i] as usize == g {
                alive[i] = false;
            }
        }
        out.push(cuboids.element(cube, c, g));
    }
    out
}

/// Adtributor (Bhagwan et al., NSDI 2014), per dimension: elements by surprise (Jensen–Shannon
/// divergence of their share before and after), kept while their explanatory power exceeds
/// `t_eep` until the dimension's kept power exceeds `t_ep`; the dimension whose kept set is most
/// surprising is the answer. One attribute per element by design.
pub fn adtributor(cube: &Cube, t_eep: f64, t_ep: f64) -> Vec<Element> {
    let js = |p: f64, q: f64| {
        let m = (p + q) / 2.0;
        let term = |x: f64| if x > 0.0 && m > 0.0 { x * (x / m).ln() } else { 0.0 };
        0.5 * (term(p) + term(q))
    };
    let (a, b, fa, fb) = cube.totals();
    let mut best: Option<(f64, Vec<Element>)> = None;
    for d in 0..cube.dims.len() {
        let mut per = vec![[0.0f64; 4]; cube.values[d].len()];
        for l in &cube.leaves {
            let e = &mut per[l.attrs[d] as usize];
            e[0] += l.fa;
            e[1] += l.a;
            e[2] += l.fb;
            e[3] += l.b;
        }
        let share = |x: f64, tot: f64| if tot > 0.0 { x / tot } else { 0.0 };
        let mut scored: Vec<(usize, f64, f64)> = per
            .iter()
            .enumerate()
            .map(|(v, &[efa, ea, efb, eb])| {
                let ep = if cube.ratio {
                    let num = (ea - efa) * fb - (eb - efb) * fa;
                    let den = fb * (fb + (eb - efb));
                    if den.abs() > 1e-12 { num / den } else { 0.0 }
                } else if (a - fa).abs() > 1e-12 {
                    (ea - efa) / (a - fa)
                } else {
                    0.0
                };
                let mut s = js(share(efa, fa), share(ea, a));
                if cube.ratio {
                    s += js(share(efb, fb), share(eb, b));
                }
                (v, ep, s)
            })
            .collect();
        if cube.ratio {
            // Normalised so the dimension's powers sum to 1 (the ratio formula's do not).
            let sum: f64 = scored.iter().map(|x| x.1).sum();
            if sum.abs() > 1e-12 {
                for x in &mut scored {
                    x.1 /= sum;
                }
            }
        }
        scored.sort_by(|x, y| y.2.total_cmp(&x.2));
        let (mut kept, mut ep_sum, mut surprise) = (Vec::new(), 0.0, 0.0);
        for (v, ep, s) in scored {
            if ep > t_eep {
                kept.push(vec![(cube.dims[d].clone(), cube.values[d][v].clone())]);
                ep_sum += ep;
                surprise += s;
            }
            if ep_sum > t_ep {
                break;
            }
        }
        if !kept.is_empty() && best.as_ref().is_none_or(|b| surprise > b.0) {
            best = Some((surprise, kept));
        }
    }
    best.map(|b| b.1).unwrap_or_default()
}

/// Settings of the Squeeze baseline (set a priori).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SqueezeConfig {
    pub max_layer: usize,
    /// Abnormal leaves whose deviation scores differ by more than this start a new cluster.
    pub cluster_gap: f64,
    /// Most elements per cluster.
    pub max_set: usize,
    /// Score given up per attribute of each element.
    pub succinct: f64,
}

impl Default for SqueezeConfig {
    fn default() -> Self {
        SqueezeConfig { max_layer: 3, cluster_gap: 0.1, max_set: 3, succinct: 0.05 }
    }
}

/// Squeeze (Li et al., ISSRE 2019): leaves are scored by deviation `2(f − v)/(f + v)`; those
/// above the knee of the sorted scores are abnormal and are clustered by score (one cluster per
/// root cause, since a cause moves its leaves alike); per cluster and cuboid, the elements are
/// ordered by the share of their leaves in the cluster and the best prefix set by generalized
/// potential score (GPS, means over the leaves in and outside the set) less succinctness wins.
pub fn squeeze(cube: &Cube, cuboids: &Cuboids, cfg: &SqueezeConfig) -> Vec<Element> {
    let expected = cube.expected();
    let n = cube.leaves.len();
    let dev: Vec<f64> = cube
        .leaves
        .iter()
        .zip(&expected)
        .map(|(l, &f)| if f + l.a > 0.0 { 2.0 * (f - l.a) / (f + l.a) } else { 0.0 })
        .collect();
    let Some(cut) = knee(&dev) else { return Vec::new() };
    let mut abnormal: Vec<usize> = (0..n).filter(|&i| dev[i].abs() > cut).collect();
    abnormal.sort_by(|&x, &y| dev[x].total_cmp(&dev[y]));
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for &i in &abnormal {
        match clusters.last_mut() {
            Some(c) if c.last().is_some_and(|&j| dev[i] - dev[j] <= cfg.cluster_gap) => c.push(i),
            _ => clusters.push(vec![i]),
        }
    }
    let mut out: Vec<Element> = Vec::new();
    for cluster in &clusters {
        let mut in_cluster = vec![false; n];
        for &i in cluster {
            in_cluster[i] = true;
        }
        let mut best: Option<(f64, usize, Vec<usize>)> = None;
        for (c, groups) in cuboids.group.iter().enumerate() {
            let layer = cuboids.dims[c].len();
            if layer > cfg.max_layer {
                continue;
            }
            let m = cuboids.keys[c].len();
            let (mut hits, mut size) = (vec![0usize; m], vec![0usize; m]);
            for i in 0..n {
                size[groups[i] as usize] += 1;
                hits[groups[i] as usize] += usize::from(in_cluster[i]);
            }
            let mut order: Vec<usize> = (0..m).filter(|&g| hits[g] > 0).collect();
            order.sort_by(|&x, &y| (hits[y] as f64 / size[y] as f64).total_cmp(&(hits[x] as f64 / size[x] as f64)).then(hits[y].cmp(&hits[x])));
            for k in 1..=cfg.max_set.min(order.len()) {
                let set = &order[..k];
                let mut inside = vec![false; m];
                for &g in set {
                    inside[g] = true;
                }
                let score = gps(cube, &expected, groups, &inside) - cfg.succinct * (layer * k) as f64;
                if best.as_ref().is_none_or(|b| score > b.0) {
                    best = Some((score, c, set.to_vec()));
                }
            }
        }
        if let Some((_, c, set)) = best {
            for g in set {
                let e = cuboids.element(cube, c, g);
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
    }
    out
}

/// The generalized potential score of a set of groups: how much closer to the actual values a
/// forecast gets when the set's leaves take the set's own ratio, in means over the leaves in and
/// outside the set.
fn gps(cube: &Cube, expected: &[f64], groups: &[u32], inside: &[bool]) -> f64 {
    let (mut act, mut exp) = (0.0, 0.0);
    for (i, l) in cube.leaves.iter().enumerate() {
        if inside[groups[i] as usize] {
            act += l.a;
            exp += expected[i];
        }
    }
    let r = if exp > 0.0 { act / exp } else { 1.0 };
    let (mut in_moved, mut in_fc, mut out_fc, mut n_in, mut n_out) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for (i, l) in cube.leaves.iter().enumerate() {
        if inside[groups[i] as usize] {
            in_moved += (l.a - r * expected[i]).abs();
            in_fc += (l.a - expected[i]).abs();
            n_in += 1;
        } else {
            out_fc += (l.a - expected[i]).abs();
            n_out += 1;
        }
    }
    let mean = |x: f64, k: usize| if k > 0 { x / k as f64 } else { 0.0 };
    let before = mean(in_fc, n_in) + mean(out_fc, n_out);
    if before <= 1e-12 {
        return 0.0;
    }
    1.0 - (mean(in_moved, n_in) + mean(out_fc, n_out)) / before
}

/// The knee of the absolute scores sorted from the largest: the point farthest below the chord
/// from the largest to the smallest (Kneedle), the first of the flat tail; scores above it are
/// abnormal. `None` when nothing deviates.
fn knee(dev: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = dev.iter().map(|d| d.abs()).filter(|d| *d > 0.0).collect();
    s.sort_by(|x, y| y.total_cmp(x));
    let (first, last) = (*s.first()?, *s.last()?);
    if s.len() < 3 || first - last <= 1e-12 {
        return Some(0.0);
    }
    let n = (s.len() - 1) as f64;
    let (i, _) = s
        .iter()
        .enumerate()
        .map(|(i, &y)| (i, first + (last - first) * i as f64 / n - y))
        .max_by(|x, y| x.1.total_cmp(&y.1))?;
    Some(s[i])
}

#[cfg(test)]
mod tests {
    use super::super::{element_text, tests::cube};
    use super::*;

    #[test]
    fn ripple_finds_the_two_attribute_cause_and_nothing_in_noise() {
        let c = cube();
        let cb = Cuboids::new(&c, 3);
        assert_eq!(cb.dims.len(), 7);
        let got = ripple(&c, &cb, &RippleConfig::default());
        assert_eq!(got.iter().map(element_text).collect::<Vec<_>>(), vec!["device=d2&region=r1"]);
        // Without the fault, the 1 % noise explains nothing worth naming.
        let mut quiet = c.clone();
        for l in &mut quiet.leaves {
            if l.a < 0.5 * l.b {
                l.a = l.fa;
            }
        }
        assert!(ripple(&quiet, &Cuboids::new(&quiet, 3), &RippleConfig::default()).is_empty());
    }

    #[test]
    fn squeeze_finds_one_element_per_cluster() {
        let mut c = cube();
        // A second cause with another magnitude: region=r2 ∧ p2p=0 rises by 40 %.
        for l in &mut c.leaves {
            if l.attrs[0] == 2 && l.attrs[2] == 0 {
                l.a = l.fa * 1.4;
            }
        }
        let mut got: Vec<String> = squeeze(&c, &Cuboids::new(&c, 3), &SqueezeConfig::default()).iter().map(element_text).collect();
        got.sort();
        assert_eq!(got, vec!["device=d2&region=r1", "p2p=0&region=r2"]);
    }

    #[test]
    fn adtributor_names_single_attributes() {
        let got = adtributor(&cube(), 0.1, 0.67);
        assert!(!got.is_empty() && got.iter().all(|e| e.len() == 1), "{got:?}");
    }
}
