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

use super::{js, Cube, Element};
use std::collections::HashMap;

/// Per cuboid, each leaf's group index and each group's value ids (per dimension of the cube;
/// dimensions outside the cuboid are 0).
pub struct Cuboids {
    pub dims: Vec<Vec<usize>>,
    pub group: Vec<Vec<u32>>,
    pub keys: Vec<Vec<Vec<u32>>>,
    /// Per cuboid, the leaves of each group: `members[c][start[c][g]..start[c][g + 1]]`.
    members: Vec<Vec<u32>>,
    start: Vec<Vec<usize>>,
}

impl Cuboids {
    pub fn new(cube: &Cube, max_layer: usize) -> Cuboids {
        let (mut dims, mut group, mut keys, mut members, mut start) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
                // Leaves by group (a counting sort).
                let mut st = vec![0usize; ks.len() + 1];
                for &x in &g {
                    st[x as usize + 1] += 1;
                }
                for k in 1..st.len() {
                    st[k] += st[k - 1];
                }
                let mut fill = st.clone();
                let mut m = vec![0u32; g.len()];
                for (i, &x) in g.iter().enumerate() {
                    m[fill[x as usize]] = i as u32;
                    fill[x as usize] += 1;
                }
                dims.push(ds);
                group.push(g);
                keys.push(ks);
                members.push(m);
                start.push(st);
            }
        }
        Cuboids { dims, group, keys, members, start }
    }

    fn members(&self, c: usize, g: usize) -> &[u32] {
        &self.members[c][self.start[c][g]..self.start[c][g + 1]]
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

/// Standard deviations of sampling noise an element's aggregate deviation must exceed (with
/// thousands of candidate elements, 5σ keeps chance findings rare).
pub const SIGNIFICANT: f64 = 5.0;

/// Settings of the ripple search. `min_gain` and `succinct` were chosen on half of the
/// RobustSpot RS cases (those at even positions in its index) by a grid search; the other half
/// is held out (README, Results). The rest is set a priori.
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
        RippleConfig { max_layer: 3, succinct: 0.2, min_gain: 0.15, max_elements: 3 }
    }
}

/// The ripple search. For each element, the actual values are compared with a forecast in which
/// only the element's leaves moved, all by the element's own ratio (the ripple effect: a cause
/// at `region=SE` moves every leaf under it alike); its *potential* is how much of the distance
/// between actual and forecast that explains. Of the elements that explain at least `min_gain`
/// of the original distance (measured against what is left, noise would look important at the
/// end), the best, less `succinct` per attribute, is taken, its leaves removed, and the search
/// repeats.
///
/// With many sparse leaves the distance is mostly sampling noise, and a real cause explains
/// little of it. So when no element reaches `min_gain`, the most significant element is taken
/// instead, if any is: its aggregate deviation is at least [`SIGNIFICANT`] standard deviations
/// of its rows' sampling noise (the leaves' `var`; unknown for leaves without rows) and at
/// least `min_gain` of the KPI's whole change, in the same direction. Aggregation averages the
/// noise away, and the significance peaks at the element that holds the change: a parent adds
/// unchanged leaves' noise, a child leaves part of the change out.
pub fn ripple(cube: &Cube, cuboids: &Cuboids, cfg: &RippleConfig) -> Vec<Element> {
    let expected = cube.expected();
    let n = cube.leaves.len();
    let mut alive = vec![true; n];
    let mut out = Vec::new();
    let base: f64 = (0..n).map(|i| (cube.leaves[i].a - expected[i]).abs()).sum();
    let change: f64 = (0..n).map(|i| cube.leaves[i].a - expected[i]).sum();
    if base <= 1e-9 {
        return out;
    }
    let dist: Vec<f64> = (0..n).map(|i| (cube.leaves[i].a - expected[i]).abs()).collect();
    while out.len() < cfg.max_elements {
        // The best element by potential (score, gain, cuboid, group), and the most significant
        // one (z, cuboid, group).
        let mut best: Option<(f64, f64, usize, usize)> = None;
        let mut best_z: Option<(f64, usize, usize)> = None;
        for (c, groups) in cuboids.group.iter().enumerate() {
            let layer = cuboids.dims[c].len();
            if layer > cfg.max_layer {
                continue;
            }
            let m = cuboids.keys[c].len();
            let (mut act, mut exp, mut var, mut bound) = (vec![0.0; m], vec![0.0; m], vec![0.0; m], vec![0.0; m]);
            for i in (0..n).filter(|&i| alive[i]) {
                let g = groups[i] as usize;
                act[g] += cube.leaves[i].a;
                exp[g] += expected[i];
                // Σa²: the numerator's Poisson-bootstrap variance. For a ratio it overstates the
                // noise of a − r·b, so this path errs on the side of finding nothing.
                var[g] += cube.leaves[i].var[0];
                bound[g] += dist[i];
            }
            // A group's gain is at most the distance of its leaves: most groups are pruned
            // before their leaves are visited again.
            let mut order: Vec<usize> = (0..m).filter(|&g| exp[g] > 0.0).collect();
            order.sort_by(|&x, &y| bound[y].total_cmp(&bound[x]));
            for &g in &order {
                let dev = act[g] - exp[g];
                if var[g] > 0.0 && dev * change.signum() >= cfg.min_gain * change.abs() {
                    let z = dev.abs() / var[g].sqrt();
                    if z >= SIGNIFICANT && best_z.is_none_or(|b| z > b.0) {
                        best_z = Some((z, c, g));
                    }
                }
            }
            for g in order {
                let cap = bound[g] / base - cfg.succinct * layer as f64;
                if bound[g] / base < cfg.min_gain || best.is_some_and(|b| cap <= b.0) {
                    break;
                }
                let r = act[g] / exp[g];
                let gain: f64 = cuboids
                    .members(c, g)
                    .iter()
                    .map(|&i| i as usize)
                    .filter(|&i| alive[i])
                    .map(|i| dist[i] - (cube.leaves[i].a - r * expected[i]).abs())
                    .sum::<f64>()
                    / base;
                let score = gain - cfg.succinct * layer as f64;
                if gain >= cfg.min_gain && best.is_none_or(|b| score > b.0) {
                    best = Some((score, gain, c, g));
                }
            }
        }
        let (c, g) = match (best, best_z) {
            (Some((_, _, c, g)), _) | (None, Some((_, c, g))) => (c, g),
            (None, None) => break,
        };
        for (live, &group) in alive.iter_mut().zip(&cuboids.group[c]).take(n) {
            if group as usize == g {
                *live = false;
            }
        }
        out.push(cuboids.element(cube, c, g));
    }
    out
}

/// Adtributor's thresholds from its paper: an element's least explanatory power, and the power
/// a dimension's kept elements must reach together.
pub const ADTRIBUTOR_EEP: f64 = 0.1;
pub const ADTRIBUTOR_EP: f64 = 0.67;

/// Adtributor (Bhagwan et al., NSDI 2014), per dimension: elements by surprise (Jensen–Shannon
/// divergence of their share before and after), kept while their explanatory power exceeds
/// `t_eep` until the dimension's kept power exceeds `t_ep`; the dimension whose kept set is most
/// surprising is the answer. One attribute per element by design.
pub fn adtributor(cube: &Cube, t_eep: f64, t_ep: f64) -> Vec<Element> {
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
                    if den.abs() > 1e-12 {
                        num / den
                    } else {
                        0.0
                    }
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
    /// Histogram bins over deviation scores −2..2; each peak is a cluster.
    pub bins: usize,
    /// Most elements per cluster.
    pub max_set: usize,
    /// Score given up per attribute of each element.
    pub succinct: f64,
}

impl Default for SqueezeConfig {
    fn default() -> Self {
        SqueezeConfig { max_layer: 3, bins: 10, max_set: 3, succinct: 0.05 }
    }
}

/// Squeeze (Li et al., ISSRE 2019): leaves are scored by deviation `2(f − v)/(f + v)`; those
/// above the knee of the sorted scores are abnormal and are clustered by density (the peaks of
/// a histogram of scores, each leaf to the nearest peak: one cluster per root cause, since a
/// cause moves its leaves alike); per cluster and cuboid, the elements are
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
    let abnormal: Vec<usize> = (0..n).filter(|&i| dev[i] != 0.0 && dev[i].abs() >= cut).collect();
    let width = 4.0 / cfg.bins.max(1) as f64;
    let bin = |d: f64| (((d + 2.0) / width).floor().max(0.0) as usize).min(cfg.bins.max(1) - 1);
    let mut counts = vec![0usize; cfg.bins.max(1)];
    for &i in &abnormal {
        counts[bin(dev[i])] += 1;
    }
    let peaks: Vec<f64> = (0..counts.len())
        .filter(|&k| {
            counts[k] > 0 && (k == 0 || counts[k] >= counts[k - 1]) && counts.get(k + 1).is_none_or(|&c| counts[k] > c)
        })
        .map(|k| -2.0 + width * (k as f64 + 0.5))
        .collect();
    let mut clusters: Vec<Vec<usize>> = vec![Vec::new(); peaks.len()];
    for &i in &abnormal {
        let nearest = (0..peaks.len()).min_by(|&x, &y| (peaks[x] - dev[i]).abs().total_cmp(&(peaks[y] - dev[i]).abs()));
        if let Some(k) = nearest {
            clusters[k].push(i);
        }
    }
    clusters.retain(|c| !c.is_empty());
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
            order.sort_by(|&x, &y| {
                (hits[y] as f64 / size[y] as f64)
                    .total_cmp(&(hits[x] as f64 / size[x] as f64))
                    .then(hits[y].cmp(&hits[x]))
            });
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

/// The knee of the cumulative log-deviation curve (scores sorted from the largest, Kneedle on
/// the concave curve): the scores at or above it are abnormal. `None` when nothing deviates.
fn knee(dev: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = dev.iter().map(|d| d.abs()).filter(|d| *d > 0.0).collect();
    s.sort_by(|x, y| y.total_cmp(x));
    if s.len() < 3 {
        return s.last().copied();
    }
    let mut cum = Vec::with_capacity(s.len());
    let mut acc = 0.0;
    for d in &s {
        acc += (d + 1.0).ln();
        cum.push(acc);
    }
    let (y0, y1, n) = (cum[0], cum[cum.len() - 1], (s.len() - 1) as f64);
    if y1 - y0 <= 1e-12 {
        return s.last().copied();
    }
    let (i, _) = cum
        .iter()
        .enumerate()
        .map(|(i, y)| (i, (y - y0) / (y1 - y0) - i as f64 / n))
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
        let mut got: Vec<String> =
            squeeze(&c, &Cuboids::new(&c, 3), &SqueezeConfig::default()).iter().map(element_text).collect();
        got.sort();
        assert_eq!(got, vec!["device=d2&region=r1", "p2p=0&region=r2"]);
    }

    #[test]
    fn adtributor_names_the_most_surprising_dimension_s_values() {
        let got: Vec<String> = adtributor(&cube(), ADTRIBUTOR_EEP, ADTRIBUTOR_EP).iter().map(element_text).collect();
        // The fault is in region=r1 ∧ device=d2: one attribute can only name one side of it.
        assert!(got == ["device=d2"] || got == ["region=r1"], "{got:?}");
    }
}
