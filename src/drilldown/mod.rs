//! Drill-down: which attribute combinations (`device=iOS ∧ region=SE`) explain the change of a
//! business KPI — a total or a ratio — between a baseline and the current window, and whether a
//! change event caused it.
//!
//! The model: each *leaf* is one full attribute combination with its actual and forecast
//! numerator `a` and, for a ratio KPI, denominator `b`. For a ratio, a leaf's *expected*
//! numerator is its actual denominator times its forecast ratio (the global forecast ratio when
//! it has no history), so a change of traffic is not taken for a change of the ratio.
//!
//! The rooms: [`table`] reads rows (CSV, CSV.gz, Parquet) into a [`Cube`] with a forecast;
//! [`search`] localises (the ripple search culprit uses, and the Adtributor and Squeeze
//! baselines); this module attributes the change to the findings (Shapley values) and scores
//! element sets; [`report`] adds bootstrap confidence, the narrative, the chart and versioned
//! baselines; [`checks`] holds the counterfactual checks (difference-in-differences, temporal
//! order, sample-ratio mismatch, data quality); [`request`] checks and runs what a user asks
//! for. `eval::drilldown` scores the RobustSpot RS and Kontrast datasets.

pub mod checks;
pub mod report;
pub mod request;
pub mod search;
pub mod table;

use std::collections::{BTreeSet, HashMap};

/// One attribute combination (`dimension = value` pairs, sorted by dimension).
pub type Element = Vec<(String, String)>;

/// `k=v&k=v`, the datasets' spelling.
pub fn element_text(e: &Element) -> String {
    e.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// `k=v ∧ k=v`, the narrative's spelling.
pub fn element_label(e: &Element) -> String {
    e.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ∧ ")
}

/// `k=v&k=v` (one element) in the narrative's spelling; other text as it is.
pub fn text_label(text: &str) -> String {
    parse_elements(text)
        .ok()
        .and_then(|mut e| e.pop().filter(|_| e.is_empty()))
        .map_or_else(|| text.to_string(), |e| element_label(&e))
}

/// A part of an element list that is not `key=value`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0:?} is not key=value")]
pub struct NotKeyValue(pub String);

/// `k=v&k=v;k=v` → elements (keys sorted).
pub fn parse_elements(s: &str) -> Result<Vec<Element>, NotKeyValue> {
    s.split(';')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut el: Element = e
                .split('&')
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .ok_or_else(|| NotKeyValue(kv.to_string()))
                })
                .collect::<Result<_, _>>()?;
            el.sort();
            Ok(el)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Value ids, one per dimension.
    pub attrs: Vec<u32>,
    pub a: f64,
    pub fa: f64,
    pub b: f64,
    pub fb: f64,
    /// Over the rows making up `a` and `b`: Σa², Σb², Σab (the sampling noise of the actual
    /// values, for the bootstrap).
    pub var: [f64; 3],
}

/// The leaves of one KPI at one moment, with their forecasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Cube {
    pub dims: Vec<String>,
    /// Per dimension, value id → value.
    pub values: Vec<Vec<String>>,
    pub leaves: Vec<Leaf>,
    /// `a / b` when true; the total of `a` otherwise.
    pub ratio: bool,
}

impl Cube {
    /// The expected numerator of each leaf under the forecast.
    pub fn expected(&self) -> Vec<f64> {
        if !self.ratio {
            return self.leaves.iter().map(|l| l.fa).collect();
        }
        let (_, _, fa, fb) = self.totals();
        let global = if fb > 0.0 { fa / fb } else { 0.0 };
        self.leaves.iter().map(|l| l.b * if l.fb > 0.0 { l.fa / l.fb } else { global }).collect()
    }

    /// (a, b, fa, fb) over every leaf.
    pub fn totals(&self) -> (f64, f64, f64, f64) {
        self.leaves.iter().fold((0.0, 0.0, 0.0, 0.0), |s, l| (s.0 + l.a, s.1 + l.b, s.2 + l.fa, s.3 + l.fb))
    }

    /// The KPI of a numerator and denominator.
    pub fn kpi(&self, a: f64, b: f64) -> f64 {
        if !self.ratio {
            a
        } else if b > 0.0 {
            a / b
        } else {
            0.0
        }
    }

    pub(crate) fn element(&self, dims: &[usize], attrs: &[u32]) -> Element {
        let mut e: Element =
            dims.iter().map(|&d| (self.dims[d].clone(), self.values[d][attrs[d] as usize].clone())).collect();
        e.sort();
        e
    }

    /// Which leaves lie inside `e` (an element naming a dimension or value the cube lacks
    /// contains none).
    pub fn members(&self, e: &Element) -> Vec<bool> {
        let want: Option<Vec<(usize, u32)>> = e
            .iter()
            .map(|(k, v)| {
                let d = self.dims.iter().position(|x| x == k)?;
                let id = self.values[d].iter().position(|x| x == v)?;
                Some((d, id as u32))
            })
            .collect();
        match want {
            Some(want) => self.leaves.iter().map(|l| want.iter().all(|&(d, id)| l.attrs[d] == id)).collect(),
            None => vec![false; self.leaves.len()],
        }
    }
}

/// Builds a cube from rows: interns each dimension's values and sums the measures per leaf.
#[derive(Debug, Clone, Default)]
pub struct CubeBuilder {
    dims: Vec<String>,
    /// Each dimension's values, interned as the table reader interns them.
    values: table::Values,
    /// a, b, fa, fb, Σa², Σb², Σab per leaf.
    /// Each leaf's place in `sums`.
    index: HashMap<Vec<u32>, usize>,
    sums: Vec<[f64; 7]>,
}

impl CubeBuilder {
    pub fn new(dims: Vec<String>) -> Self {
        let n = dims.len();
        CubeBuilder { dims, values: table::Values::new(n), index: HashMap::new(), sums: Vec::new() }
    }

    /// The value id of `value` in dimension `d`, new ones numbered in order of appearance.
    pub fn id(&mut self, d: usize, value: &str) -> u32 {
        self.values.id(d, value)
    }

    pub fn values(&self) -> &[Vec<String>] {
        &self.values.values
    }

    fn sums(&mut self, key: &[u32]) -> &mut [f64; 7] {
        let i = match self.index.get(key) {
            Some(&i) => i,
            None => {
                self.index.insert(key.to_vec(), self.sums.len());
                self.sums.push([0.0; 7]);
                self.sums.len() - 1
            }
        };
        &mut self.sums[i]
    }

    /// One row of the current window: its numerator and denominator.
    pub fn add_row(&mut self, key: &[u32], a: f64, b: f64) {
        let e = self.sums(key);
        e[0] += a;
        e[1] += b;
        e[4] += a * a;
        e[5] += b * b;
        e[6] += a * b;
    }

    /// To a leaf's forecast numerator and denominator.
    pub fn add_forecast(&mut self, key: &[u32], fa: f64, fb: f64) {
        let e = self.sums(key);
        e[2] += fa;
        e[3] += fb;
    }

    pub fn build(self, ratio: bool) -> Cube {
        let sums = self.sums;
        let mut leaves: Vec<Leaf> = self
            .index
            .into_iter()
            .map(|(attrs, i)| {
                let [a, b, fa, fb, aa, bb, ab] = sums[i];
                Leaf { attrs, a, b, fa, fb, var: [aa, bb, ab] }
            })
            .collect();
        leaves.sort_by(|x, y| x.attrs.cmp(&y.attrs));
        Cube { dims: self.dims, values: self.values.values, leaves, ratio }
    }
}

/// One finding of a drill-down: an element and its part of the KPI's change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// `k=v&k=v`.
    pub element: String,
    /// The element's Shapley value: its part of the change, in KPI units.
    pub effect: f64,
    /// `effect` over the whole change (can exceed 1 when other segments moved the other way).
    pub share: f64,
    /// The KPI inside the element, forecast and actual.
    pub before: f64,
    pub after: f64,
    /// Adtributor's surprise: the Jensen–Shannon divergence of the element's share of the
    /// numerator (and, for a ratio, of the denominator) between forecast and actual.
    #[serde(default)]
    pub surprise: f64,
    /// Share of bootstrap replicas in which the search found the element again.
    pub confidence: Option<f64>,
}

/// The KPI's forecast and actual value, and the findings' parts of the change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    pub before: f64,
    pub after: f64,
    /// Share of the change the findings explain together.
    pub explained: f64,
    /// In the order of the elements given to [`explain`] until [`Explanation::rank`].
    pub findings: Vec<Finding>,
}

impl Explanation {
    /// Findings by explanatory power (the size of their share), then surprise.
    pub fn rank(&mut self) {
        self.findings.sort_by(|x, y| y.share.abs().total_cmp(&x.share.abs()).then(y.surprise.total_cmp(&x.surprise)));
    }
}

/// The Jensen–Shannon divergence of two shares (Adtributor's surprise of one element); 0 where
/// a share is not a number.
pub fn js(p: f64, q: f64) -> f64 {
    if !p.is_finite() || !q.is_finite() {
        return 0.0;
    }
    let m = (p + q) / 2.0;
    let term = |x: f64| if x > 0.0 && m > 0.0 { x * (x / m).ln() } else { 0.0 };
    0.5 * (term(p) + term(q))
}

/// Most findings attributed exactly (2^k coalitions).
const MAX_SHAPLEY: usize = 12;

/// Attributes the change of the KPI to `elements` with Shapley values. A coalition's value is
/// the KPI when the leaves inside its elements take their actual measures and every other leaf
/// its forecast; so the values add up to the change the findings explain together, and a
/// finding's part includes its share of interactions (a ratio's mix effects, overlapping
/// elements) by the Shapley rule.
pub fn explain(cube: &Cube, elements: &[Element]) -> Explanation {
    let elements = &elements[..elements.len().min(MAX_SHAPLEY)];
    let (a, b, fa, fb) = cube.totals();
    let (before, after) = (cube.kpi(fa, fb), cube.kpi(a, b));
    let change = after - before;
    let members: Vec<Vec<bool>> = elements.iter().map(|e| cube.members(e)).collect();
    // Per leaf, the bit set of elements containing it; leaves with the same set move together.
    let mut by_mask: HashMap<u32, [f64; 4]> = HashMap::new();
    for (i, l) in cube.leaves.iter().enumerate() {
        let mask = members.iter().enumerate().fold(0u32, |m, (j, inside)| if inside[i] { m | 1 << j } else { m });
        let e = by_mask.entry(mask).or_default();
        e[0] += l.a;
        e[1] += l.b;
        e[2] += l.fa;
        e[3] += l.fb;
    }
    let k = elements.len();
    let value = |coalition: u32| {
        let (mut x, mut y) = (0.0, 0.0);
        for (&mask, s) in &by_mask {
            if mask & coalition != 0 {
                x += s[0];
                y += s[1];
            } else {
                x += s[2];
                y += s[3];
            }
        }
        cube.kpi(x, y)
    };
    let values: Vec<f64> = (0..1u32 << k).map(value).collect();
    let fact: Vec<f64> = (0..=k)
        .scan(1.0, |f, i| {
            if i > 0 {
                *f *= i as f64;
            }
            Some(*f)
        })
        .collect();
    let shapley: Vec<f64> = (0..k)
        .map(|j| {
            (0..1u32 << k)
                .filter(|s| s & (1 << j) == 0)
                .map(|s| {
                    let size = s.count_ones() as usize;
                    fact[size] * fact[k - size - 1] / fact[k] * (values[(s | 1 << j) as usize] - values[s as usize])
                })
                .sum()
        })
        .collect();
    let share = |x: f64| if change.abs() > 1e-12 { x / change } else { 0.0 };
    let findings = elements
        .iter()
        .zip(&members)
        .zip(&shapley)
        .map(|((e, inside), &phi)| {
            let s = cube
                .leaves
                .iter()
                .zip(inside)
                .filter(|(_, &m)| m)
                .fold((0.0, 0.0, 0.0, 0.0), |s, (l, _)| (s.0 + l.a, s.1 + l.b, s.2 + l.fa, s.3 + l.fb));
            let mut surprise = js(s.2 / fa, s.0 / a);
            if cube.ratio {
                surprise += js(s.3 / fb, s.1 / b);
            }
            Finding {
                element: element_text(e),
                effect: phi,
                share: share(phi),
                before: cube.kpi(s.2, s.3),
                after: cube.kpi(s.0, s.1),
                surprise,
                confidence: None,
            }
        })
        .collect();
    Explanation { before, after, explained: share(values[(1usize << k) - 1] - before), findings }
}

/// Element-set scoring over cases, as in the RiskLoc evaluation: an element counts only when it
/// matches a true one exactly; micro F1 over all cases, and the share of cases whose set is exact.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SetScores {
    pub cases: usize,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub exact: usize,
}

impl SetScores {
    pub fn add(&mut self, predicted: &[Element], truth: &[Element]) {
        let p: BTreeSet<&Element> = predicted.iter().collect();
        let t: BTreeSet<&Element> = truth.iter().collect();
        let tp = p.intersection(&t).count();
        self.cases += 1;
        self.tp += tp;
        self.fp += p.len() - tp;
        self.fn_ += t.len() - tp;
        self.exact += usize::from(p == t);
    }

    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            0.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }

    pub fn exact_accuracy(&self) -> f64 {
        if self.cases == 0 {
            0.0
        } else {
            self.exact as f64 / self.cases as f64
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 3 × 4 × 2 leaves; the ratio falls by half in region=r1 ∧ device=d2 only.
    pub(crate) fn cube() -> Cube {
        let mut leaves = Vec::new();
        for r in 0..3u32 {
            for d in 0..4u32 {
                for p in 0..2u32 {
                    let b = 100.0 + 10.0 * f64::from(r + d + p);
                    let fa = 0.9 * b;
                    let a = if r == 1 && d == 2 {
                        0.45 * b
                    } else {
                        fa * (1.0 + 0.01 * f64::from((r + 2 * d + p) % 3) - 0.01)
                    };
                    leaves.push(Leaf { attrs: vec![r, d, p], a, fa, b, fb: b, var: [0.0; 3] });
                }
            }
        }
        Cube {
            dims: vec!["region".into(), "device".into(), "p2p".into()],
            values: vec![
                vec!["r0".into(), "r1".into(), "r2".into()],
                vec!["d0".into(), "d1".into(), "d2".into(), "d3".into()],
                vec!["0".into(), "1".into()],
            ],
            leaves,
            ratio: true,
        }
    }

    fn el(s: &str) -> Element {
        parse_elements(s).unwrap().remove(0)
    }

    #[test]
    fn shapley_values_add_up_to_the_explained_change() {
        let c = cube();
        // Overlapping elements: their values must still add up to what they explain together.
        let x = explain(&c, &[el("device=d2&region=r1"), el("region=r1"), el("p2p=1")]);
        let sum: f64 = x.findings.iter().map(|f| f.share).sum();
        assert!((sum - x.explained).abs() < 1e-9, "{sum} vs {}", x.explained);
        assert!(x.after < x.before);
        // The true segment alone explains nearly all of the drop; an unrelated one nearly none.
        let mut alone = explain(&c, &[el("device=d0"), el("device=d2&region=r1")]);
        assert!(alone.findings[1].share > 0.9 && alone.findings[0].share.abs() < 0.1, "{alone:?}");
        // Ranked by explanatory power; the moved segment is also the surprising one.
        alone.rank();
        assert_eq!(alone.findings[0].element, "device=d2&region=r1");
        assert!(alone.findings[0].surprise > 10.0 * alone.findings[1].surprise, "{alone:?}");
        assert!((alone.findings[0].before - 0.9).abs() < 1e-9 && (alone.findings[0].after - 0.45).abs() < 1e-9);
        // A total KPI is additive: the value of a segment is its own change.
        let mut total = c.clone();
        total.ratio = false;
        let t = explain(&total, &[el("region=r1")]);
        let own: f64 = total.leaves.iter().filter(|l| l.attrs[0] == 1).map(|l| l.a - l.fa).sum();
        assert!((t.findings[0].effect - own).abs() < 1e-6);
        // An element the cube does not know contains nothing.
        assert_eq!(explain(&c, &[el("region=mars")]).findings[0].effect, 0.0);
    }

    #[test]
    fn set_scores_count_exact_matches_only() {
        let mut s = SetScores::default();
        s.add(&[el("device=d2"), el("region=r1")], &[el("device=d2&region=r1")]);
        s.add(&[el("device=d2&region=r1")], &[el("region=r1&device=d2")]);
        assert_eq!((s.tp, s.fp, s.fn_, s.exact), (1, 2, 1, 1));
        assert!((s.f1() - 2.0 / 5.0).abs() < 1e-12 && (s.exact_accuracy() - 0.5).abs() < 1e-12);
    }
}
