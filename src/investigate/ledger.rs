//! The hypothesis ledger: what the investigation believes, as a posterior over root-cause
//! hypotheses, updated by scored evidence (issue 5).
//!
//! Each hypothesis starts from a prior (the static triage's ranking); every tool result becomes
//! evidence with a likelihood ratio per hypothesis (how much more likely the observation is if
//! that hypothesis is true than under the alternative), and confidence is the posterior. The
//! model, if any, proposes actions and conclusions; only the ledger sets the numbers, so a
//! confidence is always explainable as prior × the product of the evidence's ratios.
//!
//! "None of these" is a hypothesis too: evidence that clears every named suspect moves mass to it.

use serde::{Deserialize, Serialize};

/// No single observation may move the odds by more than this factor either way: tools are
/// heuristics, and one misleading result must not settle an investigation.
pub const MAX_RATIO: f64 = 20.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// The service blamed, or `None` for "none of the named suspects".
    pub service: Option<String>,
    /// What about it (the triage's fault kind or indicator).
    pub kind: String,
    pub log_prior: f64,
    /// Sum of the log likelihood ratios of the evidence so far.
    pub log_evidence: f64,
}

/// One scored observation: a tool result's summary and its ratio for each hypothesis it bears on
/// (hypotheses it does not mention get 1: no information).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub tool: String,
    pub summary: String,
    /// (hypothesis index, likelihood ratio).
    pub ratios: Vec<(usize, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub hypotheses: Vec<Hypothesis>,
    pub evidence: Vec<Evidence>,
}

impl Ledger {
    /// Priors from the triage's candidates `(service, kind, weight)` in proportion to their
    /// weights, and `p_none` for "none of these". Weights that are not positive and finite count
    /// as a small floor, so no named suspect starts impossible.
    pub fn new(candidates: &[(String, String, f64)], p_none: f64) -> Ledger {
        const FLOOR: f64 = 1e-3;
        let p_none = p_none.clamp(FLOOR, 1.0 - FLOOR);
        let weights: Vec<f64> =
            candidates.iter().map(|c| if c.2.is_finite() && c.2 > FLOOR { c.2 } else { FLOOR }).collect();
        let total: f64 = weights.iter().sum();
        let mut hypotheses: Vec<Hypothesis> = candidates
            .iter()
            .zip(&weights)
            .map(|((service, kind, _), w)| Hypothesis {
                service: Some(service.clone()),
                kind: kind.clone(),
                log_prior: ((1.0 - p_none) * w / total).ln(),
                log_evidence: 0.0,
            })
            .collect();
        let p_none = if hypotheses.is_empty() { 1.0 } else { p_none };
        hypotheses.push(Hypothesis {
            service: None,
            kind: "none of these".to_string(),
            log_prior: p_none.ln(),
            log_evidence: 0.0,
        });
        Ledger { hypotheses, evidence: Vec::new() }
    }

    /// The index of the "none of these" hypothesis.
    pub fn none(&self) -> usize {
        self.hypotheses.len() - 1
    }

    /// The index of the hypothesis blaming `service`, if any.
    pub fn find(&self, service: &str) -> Option<usize> {
        self.hypotheses.iter().position(|h| h.service.as_deref() == Some(service))
    }

    /// Records an observation. Ratios are clamped to [1/MAX_RATIO, MAX_RATIO]; ratios that are
    /// not finite and positive, and indices out of range, are ignored (the evidence is still
    /// recorded, with what was kept).
    pub fn update(&mut self, mut e: Evidence) {
        e.ratios.retain(|&(i, r)| i < self.hypotheses.len() && r.is_finite() && r > 0.0);
        for (i, r) in &mut e.ratios {
            *r = r.clamp(1.0 / MAX_RATIO, MAX_RATIO);
            self.hypotheses[*i].log_evidence += r.ln();
        }
        self.evidence.push(e);
    }

    /// The posterior of every hypothesis, in order; sums to 1.
    pub fn posterior(&self) -> Vec<f64> {
        let logs: Vec<f64> = self.hypotheses.iter().map(|h| h.log_prior + h.log_evidence).collect();
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        exp.iter().map(|x| x / total).collect()
    }

    /// The most probable hypothesis and its posterior.
    pub fn leader(&self) -> (usize, f64) {
        self.posterior().into_iter().enumerate().fold((self.none(), f64::NEG_INFINITY), |best, (i, p)| {
            if p > best.1 {
                (i, p)
            } else {
                best
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(
            &[
                ("auth".into(), "errors".into(), 0.6),
                ("ldap".into(), "config".into(), 0.3),
                ("db".into(), "latency".into(), 0.1),
            ],
            0.1,
        )
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn priors_follow_the_triage_and_sum_to_one() {
        let l = ledger();
        let p = l.posterior();
        assert_eq!(p.len(), 4);
        assert!(close(p.iter().sum(), 1.0));
        assert!(close(p[0], 0.54) && close(p[1], 0.27) && close(p[3], 0.1), "{p:?}");
        assert_eq!(l.leader().0, 0);
        assert_eq!(l.find("ldap"), Some(1));
        assert_eq!(l.none(), 3);
    }

    #[test]
    fn evidence_moves_mass_by_its_ratio_and_order_does_not_matter() {
        let mut a = ledger();
        let e1 =
            Evidence { tool: "config_diff".into(), summary: "ldap timeout lowered".into(), ratios: vec![(1, 8.0)] };
        let e2 = Evidence {
            tool: "dependency_lookup".into(),
            summary: "auth calls ldap".into(),
            ratios: vec![(0, 0.5), (1, 2.0)],
        };
        a.update(e1.clone());
        a.update(e2.clone());
        let mut b = ledger();
        b.update(e2);
        b.update(e1);
        let (pa, pb) = (a.posterior(), b.posterior());
        assert!(pa.iter().zip(&pb).all(|(x, y)| close(*x, *y)));
        assert_eq!(a.leader().0, 1, "{pa:?}");
        // Odds of ldap against auth: prior 0.5, times 8 × 2 / 0.5 = 32 → 16.
        assert!(close(pa[1] / pa[0], 16.0), "{}", pa[1] / pa[0]);
        assert!(close(pa.iter().sum(), 1.0));
    }

    #[test]
    fn one_observation_is_clamped_and_garbage_is_ignored() {
        let mut l = ledger();
        l.update(Evidence {
            tool: "t".into(),
            summary: "s".into(),
            ratios: vec![(2, 1e9), (0, f64::NAN), (1, -3.0), (99, 5.0)],
        });
        let p = l.posterior();
        assert!(close(p[2] / p[0], 20.0 / 6.0), "{p:?}");
        assert_eq!(l.evidence[0].ratios, vec![(2, MAX_RATIO)]);
    }

    #[test]
    fn evidence_against_every_suspect_favours_none_of_these() {
        let mut l = ledger();
        for i in 0..3 {
            l.update(Evidence { tool: "t".into(), summary: "cleared".into(), ratios: vec![(i, 0.05)] });
        }
        assert_eq!(l.leader().0, l.none());
        let empty = Ledger::new(&[], 0.2);
        assert_eq!(empty.posterior(), vec![1.0]);
    }
}
