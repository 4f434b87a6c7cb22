//! Change events as candidate causes: every deploy, config change or flag flip shortly before or
//! during the incident period is a suspect until the graph shows what, if anything, followed it.

use super::{Anomaly, DetectConfig, Detection, Source};
use crate::model::{Change, ChangeKind, Incident, Ts};

pub fn detect(incident: &Incident, cfg: &DetectConfig, out: &mut Detection) {
    let from = incident.analysis_start.saturating_sub(cfg.change_lookback);
    for c in incident.telemetry.changes.iter().filter(|c| c.time >= from) {
        out.anomalies.push(candidate(c));
    }
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
        evidence: format!("{} on {}", describe(c), c.service),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyChange;

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
