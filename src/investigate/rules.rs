//! The `rules` policy: offline and deterministic. Each turn it picks the call expected to
//! separate the leading hypotheses best, and concludes when no call is worth making.
//!
//! The value of a call is how far it can move the odds (the mean of |ln| of the tool's smallest
//! and largest ratio) times how undecided the hypotheses it bears on are: p·(1 − p) for the
//! leader, and p·(1 − p) + p·p_leader for a challenger (a check of a challenger also tests the
//! leader: if the challenger wins, the leader loses); a call about the whole incident bears on
//! the three leading named hypotheses. Calls already made are not repeated.

use super::{Decision, Policy, PolicyError, View};
use serde_json::json;

pub struct Rules;

/// Below this value no call is worth making.
const MIN_VALUE: f64 = 0.005;

impl Policy for Rules {
    fn name(&self) -> String {
        "rules".to_string()
    }

    fn decide(&mut self, v: &View) -> Result<Decision, PolicyError> {
        let post = v.ledger.posterior();
        let none = v.ledger.none();
        let mut order: Vec<usize> = (0..post.len()).filter(|&i| i != none).collect();
        order.sort_by(|&a, &b| post[b].total_cmp(&post[a]).then(a.cmp(&b)));
        let top: Vec<usize> = order.into_iter().take(3).collect();
        let leader = top.first().copied();
        let undecided = |i: usize| {
            let challenge = if Some(i) == leader { 0.0 } else { post[i] * leader.map_or(0.0, |l| post[l]) };
            post[i] * (1.0 - post[i]) + challenge
        };
        let done = |tool: &str, args: &serde_json::Value| v.steps.iter().any(|s| s.tool == tool && &s.args == args);
        let mut best: Option<(f64, &str, serde_json::Value, Option<usize>)> = None;
        for t in v.tools {
            let (lo, hi) = t.ratio_range();
            let power = (lo.ln().abs() + hi.ln().abs()) / 2.0;
            if power <= 0.0 || !t.applicable(v.cx) {
                continue;
            }
            let options: Vec<(serde_json::Value, f64, Option<usize>)> = if t.per_service() {
                top.iter()
                    .filter_map(|&i| {
                        v.ledger.hypotheses[i]
                            .service
                            .as_ref()
                            .map(|s| (json!({ "service": s }), undecided(i), Some(i)))
                    })
                    .collect()
            } else {
                vec![(json!({}), top.iter().map(|&i| undecided(i)).sum(), None)]
            };
            for (args, weight, about) in options {
                let value = power * weight;
                if value > MIN_VALUE && !done(t.name(), &args) && best.as_ref().is_none_or(|b| value > b.0 + 1e-12) {
                    best = Some((value, t.name(), args, about));
                }
            }
        }
        let standing: Vec<String> = top
            .iter()
            .take(2)
            .filter_map(|&i| v.ledger.hypotheses[i].service.as_ref().map(|s| format!("{s} {:.2}", post[i])))
            .collect();
        Ok(match best {
            Some((value, tool, args, about)) => {
                let target = match about.and_then(|i| v.ledger.hypotheses[i].service.clone()) {
                    Some(s) => format!("{tool} on {s}"),
                    None => tool.to_string(),
                };
                Decision::Call {
                    tool: tool.to_string(),
                    args,
                    reasoning: format!(
                        "leading: {}; {target} is the check expected to separate them most (value {value:.3})",
                        standing.join(" vs ")
                    ),
                }
            }
            None => Decision::Conclude {
                reasoning: format!("no remaining check could change the answer ({})", standing.join(" vs ")),
            },
        })
    }
}
