//! Change events as candidate causes: every deploy, config change or flag flip shortly before or
//! during the incident period is a suspect until the graph shows what, if anything, followed it.

use super::stats::{quantile, Robust};
use super::{canonical_indicator, Anomaly, DetectConfig, Detection, Source};
use crate::model::{Change, ChangeKind, Incident, Series, Ts};
use std::collections::BTreeMap;

/// Most changes of one service and kind that become suspects: the ones nearest the alert (before
/// it first). A runaway pipeline's thousands of flips are summarised, not graphed.
pub const MAX_PER_SERVICE_AND_KIND: usize = 100;

pub fn detect(incident: &Incident, cfg: &DetectConfig, out: &mut Detection) {
    let from = incident.analysis_start.saturating_sub(cfg.change_lookback);
    let alert = incident.alert.time;
    let mut buckets: BTreeMap<(&str, ChangeKind), Vec<(usize, &Change)>> = BTreeMap::new();
    for (i, c) in incident.telemetry.changes.iter().enumerate().filter(|(_, c)| c.time >= from) {
        buckets.entry((c.service.as_str(), c.kind)).or_default().push((i, c));
    }
    let mut kept: Vec<(usize, &Change)> = Vec::new();
    for ((service, kind), mut changes) in buckets {
        if changes.len() > MAX_PER_SERVICE_AND_KIND {
            changes.sort_by_key(|(_, c)| (c.time > alert, c.time.abs_diff(alert)));
            out.unchecked.push(format!(
                "{} {} changes of {service} left out of the causal graph: only the {MAX_PER_SERVICE_AND_KIND} \
                 nearest the alert are suspects",
                changes.len() - MAX_PER_SERVICE_AND_KIND,
                format!("{kind:?}").to_lowercase()
            ));
            changes.truncate(MAX_PER_SERVICE_AND_KIND);
        }
        kept.extend(changes);
    }
    // In the input's order, as before the bound.
    kept.sort_by_key(|(i, _)| *i);
    for (_, c) in kept {
        out.anomalies.push(candidate(c));
        if let Some(a) = canary(incident, c, cfg).worst {
            out.anomalies.push(a);
        }
    }
}

/// The value of the `pod="…"` label of a series name, and the name without it (the series of
/// the same metric and edge from every pod share that rest).
fn split_pod(metric: &str) -> Option<(&str, String)> {
    let start = metric.find("pod=\"")? + 5;
    let len = metric[start..].find('"')?;
    let pod = &metric[start..start + len];
    let label = &metric[start - 5..start + len + 1];
    let rest =
        metric.replacen(&format!(",{label}"), "", 1).replacen(&format!("{label},"), "", 1).replacen(label, "", 1);
    Some((pod, rest.replace("{}", "")))
}

/// Whether a canary comparison of this series says something about the service itself: what
/// its requests see (success, latency), not a fresh pod's CPU or memory (which differ from a warm
/// one's by nature), and on calls it serves (`edge="x->service"`), not calls it makes (whose
/// failures are the callee's).
fn judged_by_canary(key: &str, service: &str) -> bool {
    let served =
        !key.contains("edge=\"") || super::metrics::edge_of(key).is_some_and(|(_, callee, _)| callee == service);
    served && matches!(canonical_indicator(key), "errors" | "latency")
}

/// A canary's verdict: the pods a deploy brought in ([`Change::instances`]), against the same
/// service's other pods over the same minutes since the change, metric by metric and call edge by
/// call edge (ChangeRCA's question). The worst difference, in units of the old pods' spread in
/// the reference (or since the change, when there is no reference), becomes a `canary` anomaly
/// of the service, dated at the change: worse means a lower success rate, a higher latency, CPU
/// or memory.
pub fn canary(incident: &Incident, c: &Change, cfg: &DetectConfig) -> Canary {
    const MIN_POINTS: usize = 2;
    let mut verdict = Canary { compared: 0, worst: None };
    if c.kind != ChangeKind::Deploy || c.instances.is_empty() {
        return verdict;
    }
    let reference: Vec<&Series> = incident.baseline.iter().flat_map(|b| &b.metrics).collect();
    // Metric (without the pod label) → (new pods' values, old pods' values) since the change.
    let mut groups: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for s in incident.telemetry.metrics.iter().filter(|s| s.service == c.service) {
        let Some((pod, key)) = split_pod(&s.metric) else { continue };
        let values = s.points.iter().filter(|p| p.0 >= c.time && p.1.is_finite()).map(|p| p.1);
        let g = groups.entry(key).or_default();
        if c.instances.iter().any(|i| i == pod) {
            g.0.extend(values);
        } else {
            g.1.extend(values);
        }
    }
    let mut best: Option<(f64, String, f64, f64)> = None;
    for (key, (new, old)) in &groups {
        if new.len() < MIN_POINTS || old.len() < MIN_POINTS || !judged_by_canary(key, &c.service) {
            continue;
        }
        verdict.compared += 1;
        // The pods' normal spread: the reference (a separate baseline, or the data before the
        // incident period).
        let before: Vec<f64> = reference
            .iter()
            .copied()
            .chain(&incident.telemetry.metrics)
            .filter(|s| s.service == c.service && split_pod(&s.metric).is_some_and(|(_, k)| k == *key))
            .flat_map(|s| s.points.iter().filter(|p| p.0 < incident.analysis_start).map(|p| p.1))
            .filter(|v| v.is_finite())
            .collect();
        let spread = if before.len() >= cfg.min_reference_points { Robust::of(&before) } else { Robust::of(old) };
        let (m_new, m_old) = (quantile(new, 0.5), quantile(old, 0.5));
        let worse_if_lower = key.to_ascii_lowercase().contains("success");
        let z = (m_new - m_old) / spread.scale;
        let bad = if worse_if_lower { -z } else { z };
        if bad >= cfg.z_threshold && best.as_ref().is_none_or(|b| bad > b.0) {
            best = Some((bad, key.clone(), m_new, m_old));
        }
    }
    let Some((z, key, m_new, m_old)) = best else { return verdict };
    let version = c.version.as_deref().unwrap_or("the new version");
    verdict.worst = Some(Anomaly {
        service: c.service.clone(),
        source: Source::Metric,
        indicator: "canary".into(),
        signal: key.clone(),
        onset: c.time,
        end: Ts::MAX,
        score: z,
        direction: if key.to_ascii_lowercase().contains("success") { -1 } else { 1 },
        measure: None,
        evidence: format!(
            "{}'s {} new pod(s) ({version}) against its old pods since the deploy: {key} median {} vs {} \
             ({} {:.1} of the reference spread)",
            c.service,
            c.instances.len(),
            super::metrics::fmt_num(m_new),
            super::metrics::fmt_num(m_old),
            canonical_indicator(&key),
            z
        ),
    });
    verdict
}

/// What comparing a deploy's new instances with the service's old ones found.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// Series (metric and served call edge) with points from both new and old instances since the
    /// deploy.
    pub compared: usize,
    /// The comparison where the new instances are worst, when that clears the detectors'
    /// threshold, as a `canary` anomaly of the service.
    pub worst: Option<Anomaly>,
}

/// The indicator of a change: the changed key for config and flags, `version` for deploys.
pub fn indicator(c: &Change) -> String {
    match (c.kind, c.keys.first()) {
        (ChangeKind::Deploy, _) => "version".into(),
        (_, Some(k)) => k.key.clone(),
        (ChangeKind::Config, None) => "config".into(),
        (ChangeKind::Flag, None) => "flag".into(),
    }
}

/// Human summary of a change: `deploy v2.3.0 (was v2.2.9) by ana`, `config ldap.timeout_ms 5000 → 500`.
pub fn describe(c: &Change) -> String {
    let mut s = match c.kind {
        ChangeKind::Deploy => {
            let mut d = format!("deploy {}", c.version.as_deref().unwrap_or("(unknown version)"));
            if let Some(p) = &c.previous_version {
                d.push_str(&format!(" (was {p})"));
            }
            d
        }
        kind => {
            let keys: Vec<String> = c
                .keys
                .iter()
                .map(|k| format!("{} {} → {}", k.key, k.old.as_deref().unwrap_or("∅"), k.new.as_deref().unwrap_or("∅")))
                .collect();
            format!("{} {}", kind.as_str(), if keys.is_empty() { "(no keys listed)".into() } else { keys.join(", ") })
        }
    };
    if let Some(a) = &c.author {
        s.push_str(&format!(" by {a}"));
    }
    s
}

fn candidate(c: &Change) -> Anomaly {
    Anomaly {
        service: c.service.clone(),
        source: Source::Change,
        indicator: indicator(c),
        signal: c.kind.as_str().to_string(),
        onset: c.time,
        end: Ts::MAX,
        score: 0.0,
        direction: 0,
        measure: None,
        evidence: format!("{} on {}", describe(c), c.service),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alert, KeyChange, Severity, Telemetry, MINUTE};

    /// `cart` with two old pods and, from minute 30, one new pod whose success rate is `canary`
    /// on the calls it serves and whose CPU is twice the old pods'.
    fn release(canary: f64) -> (Incident, Change) {
        let series = |pod: &str, metric: &str, f: &dyn Fn(i64) -> Option<f64>| Series {
            service: "cart".into(),
            metric: format!("{metric}{{edge=\"frontend->cart\",pod=\"{pod}\"}}"),
            points: (0..40).filter_map(|m| f(m).map(|v| (m * MINUTE, v))).collect(),
        };
        let jitter = |m: i64| (m % 3) as f64 * 0.1;
        let mut metrics = Vec::new();
        for pod in ["cart-v1-a", "cart-v1-b"] {
            metrics.push(series(pod, "SuccessRate", &|m| Some(99.8 + jitter(m))));
            metrics.push(series(pod, "CPUUsageRate(%)", &|m| Some(20.0 + jitter(m))));
        }
        metrics.push(series("cart-v2-c", "SuccessRate", &|m| (m >= 30).then_some(canary + jitter(m))));
        metrics.push(series("cart-v2-c", "CPUUsageRate(%)", &|m| (m >= 30).then_some(40.0 + jitter(m))));
        let change = Change {
            time: 30 * MINUTE,
            service: "cart".into(),
            kind: ChangeKind::Deploy,
            author: None,
            version: Some("v2".into()),
            previous_version: Some("v1".into()),
            keys: Vec::new(),
            description: None,
            instances: vec!["cart-v2-c".into()],
        };
        let incident = Incident {
            id: "canary".into(),
            alert: Alert {
                title: "errors".into(),
                service: "frontend".into(),
                signal: "errors".into(),
                time: 36 * MINUTE,
                severity: Severity::High,
            },
            telemetry: Telemetry { metrics, changes: vec![change.clone()], ..Telemetry::default() },
            baseline: None,
            analysis_start: 30 * MINUTE,
            topology: None,
            truth: None,
            read_report: Default::default(),
        };
        (incident, change)
    }

    #[test]
    fn a_canary_that_serves_worse_than_the_old_pods_is_an_anomaly_with_the_comparison() {
        let (incident, change) = release(70.0);
        let v = canary(&incident, &change, &DetectConfig::default());
        // Success on the served edge only: the new pod's doubled CPU is not compared.
        assert_eq!(v.compared, 1);
        let a = v.worst.expect("a worse canary");
        assert_eq!((a.service.as_str(), a.indicator.as_str()), ("cart", "canary"));
        assert_eq!(a.signal, "SuccessRate{edge=\"frontend->cart\"}");
        assert_eq!((a.onset, a.direction), (30 * MINUTE, -1));
        assert!(a.evidence.contains("median 70"), "{}", a.evidence);
        // A healthy canary is compared and found no worse.
        let (incident, change) = release(99.8);
        let v = canary(&incident, &change, &DetectConfig::default());
        assert_eq!((v.compared, v.worst), (1, None));
    }

    #[test]
    fn descriptions_name_versions_and_keys() {
        let mut c = Change {
            time: 0,
            service: "auth".into(),
            kind: ChangeKind::Config,
            author: Some("ana".into()),
            version: None,
            previous_version: None,
            keys: vec![KeyChange { key: "ldap.timeout_ms".into(), old: Some("5000".into()), new: Some("500".into()) }],
            description: None,
            instances: Vec::new(),
        };
        assert_eq!(describe(&c), "config ldap.timeout_ms 5000 → 500 by ana");
        assert_eq!(indicator(&c), "ldap.timeout_ms");
        c.kind = ChangeKind::Deploy;
        c.version = Some("v2.3.0".into());
        c.previous_version = Some("v2.2.9".into());
        assert_eq!(describe(&c), "deploy v2.3.0 (was v2.2.9) by ana");
        assert_eq!(indicator(&c), "version");
    }
}
