//! `config_diff`: a service's deploys, config changes and flag flips near the incident, key by
//! key, with what each key points at.

use super::{about, truncate, Data, Tool, ToolCx, ToolError};
use crate::investigate::ledger::Ledger;
use crate::model::{Change, ChangeKind, MINUTE};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub struct ConfigDiff;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The service whose changes to show.
    pub service: String,
    /// How many minutes before the alert to look back (default 60, at most 1440).
    #[serde(default)]
    pub minutes: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyView {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// `lowered`, `raised`, `set`, `removed` or `changed`.
    pub direction: String,
    /// The dependency this key configures, when it names one (`ldap.timeout_ms` → the directory).
    pub dependency: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChangeView {
    /// Seconds from the alert (negative: before it).
    pub at_s: i64,
    pub kind: String,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub keys: Vec<KeyView>,
    /// For a deploy that names its new instances: how they compare with the service's old ones
    /// since the deploy (`worse: …` or `no worse on N series`), see `detect::changes::canary`.
    pub canary: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub service: String,
    pub changes: Vec<ChangeView>,
    pub more: usize,
}

/// Words (in configuration keys, in questions) that name a kind of dependency, and the topology
/// kinds they mean.
pub(crate) const DEPENDENCY_WORDS: &[(&str, &str)] = &[
    ("ldap", "directory"),
    ("directory", "directory"),
    ("db", "database"),
    ("sql", "database"),
    ("postgres", "database"),
    ("mysql", "database"),
    ("database", "database"),
    ("redis", "cache"),
    ("memcache", "cache"),
    ("cache", "cache"),
    ("queue", "queue"),
    ("kafka", "queue"),
    ("amqp", "queue"),
    ("publish", "queue"),
];

/// The callee of `service` that `key` configures: one whose name is a word of the key, or whose
/// topology kind a word of the key stands for.
fn dependency_of(cx: &ToolCx, service: &str, key: &str) -> Option<String> {
    let words: Vec<String> =
        key.to_ascii_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).map(str::to_string).collect();
    let callees: Vec<&str> = cx.triage.dependencies.callees_of(service).collect();
    let key_lower = key.to_ascii_lowercase();
    if let Some(c) = callees.iter().find(|c| key_lower.contains(&c.to_ascii_lowercase())) {
        return Some(c.to_string());
    }
    for (word, kind) in DEPENDENCY_WORDS {
        if words.iter().any(|w| w == word) {
            if let Some(c) = callees.iter().find(|c| cx.kind_of(c).as_deref() == Some(kind) || c.contains(kind)) {
                return Some(c.to_string());
            }
        }
    }
    None
}

fn direction(old: Option<&str>, new: Option<&str>) -> &'static str {
    match (old, new) {
        (None, Some(_)) => "set",
        (Some(_), None) => "removed",
        (Some(o), Some(n)) => match (o.trim().parse::<f64>(), n.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) if b < a => "lowered",
            (Ok(a), Ok(b)) if b > a => "raised",
            _ => "changed",
        },
        (None, None) => "changed",
    }
}

fn view(cx: &ToolCx, c: &Change) -> ChangeView {
    let verdict = crate::detect::changes::canary(cx.incident, c, &crate::detect::DetectConfig::default());
    let canary = match (&verdict.worst, verdict.compared) {
        (Some(a), _) => Some(format!("worse: {}", a.evidence)),
        (None, 0) => None,
        (None, n) => Some(format!("no worse than the old instances on {n} series")),
    };
    ChangeView {
        canary,
        at_s: (c.time - cx.incident.alert.time) / 1000,
        kind: c.kind.as_str().to_string(),
        version: c.version.clone(),
        previous_version: c.previous_version.clone(),
        author: c.author.clone(),
        description: c.description.clone(),
        keys: c
            .keys
            .iter()
            .map(|k| KeyView {
                key: k.key.clone(),
                old: k.old.clone(),
                new: k.new.clone(),
                direction: direction(k.old.as_deref(), k.new.as_deref()).to_string(),
                dependency: dependency_of(cx, &c.service, &k.key),
            })
            .collect(),
    }
}

impl Tool for ConfigDiff {
    const NAME: &'static str = "config_diff";
    const SPEC: &'static str = include_str!("../../../tools/config_diff.toml");
    const NEEDS: &'static [Data] = &[Data::Changes];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (0.5, 5.0);
    const PER_SERVICE: bool = true;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        cx.check_service(&args.service)?;
        let minutes = args.minutes.unwrap_or(60).clamp(1, 1440) as i64;
        let alert = cx.incident.alert.time;
        let mut changes: Vec<&Change> = cx
            .incident
            .telemetry
            .changes
            .iter()
            .filter(|c| {
                c.service == args.service
                    && c.time >= alert - minutes * MINUTE
                    && c.time <= cx.triage.detection.data_end.max(alert)
            })
            .collect();
        changes.sort_by_key(|c| std::cmp::Reverse(c.time));
        let mut changes: Vec<ChangeView> = changes.into_iter().map(|c| view(cx, c)).collect();
        let more = truncate(&mut changes, cx.max_items);
        Ok(Output { service: args.service.clone(), changes, more })
    }

    fn summarize(&self, o: &Output) -> String {
        let Some(c) = o.changes.first() else {
            return format!("no changes to {} in the window", o.service);
        };
        let keys: Vec<String> = c
            .keys
            .iter()
            .map(|k| {
                format!(
                    "{} {} ({} → {})",
                    k.key,
                    k.direction,
                    k.old.as_deref().unwrap_or("unset"),
                    k.new.as_deref().unwrap_or("unset")
                )
            })
            .collect();
        let what = if keys.is_empty() {
            c.version.clone().map(|v| format!("version {v}")).unwrap_or_default()
        } else {
            keys.join(", ")
        };
        let canary = c.canary.as_deref().map(|v| format!("; canary {v}")).unwrap_or_default();
        format!(
            "{} change(s) to {}; latest a {} at {:+} s: {what}{canary}",
            o.changes.len() + o.more,
            o.service,
            c.kind,
            c.at_s
        )
    }

    /// A config change or flag flip before the alert makes its service likelier (×3; ×5 when a
    /// key configures a dependency that is itself anomalous, and then that dependency's own
    /// hypothesis is discounted ×0.5: its trouble is what the new setting does). A deploy is
    /// weak evidence (×1.3): deploys are frequent and mostly harmless. A change only after the
    /// alert cannot have caused it (×0.7), and no change at all is mild evidence against (×0.9).
    fn assess(&self, cx: &ToolCx, args: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        let before: Vec<&ChangeView> = o.changes.iter().filter(|c| c.at_s <= 0).collect();
        if o.changes.is_empty() {
            return about(ledger, &args.service, 0.9);
        }
        if before.is_empty() {
            return about(ledger, &args.service, 0.7);
        }
        let anomalous = |s: &str| cx.triage.detection.anomalies.iter().any(|a| a.service == s);
        let mut out = Vec::new();
        let settings: Vec<&ChangeView> =
            before.iter().copied().filter(|c| c.kind != ChangeKind::Deploy.as_str()).collect();
        // A canary comparison is the most specific evidence about a deploy: new pods that serve
        // worse than the old ones beside them (ratio 3), or as well on every compared series (0.6).
        let canary = before.iter().filter_map(|c| c.canary.as_deref()).next();
        let ratio = if settings.is_empty() {
            match canary {
                Some(v) if v.starts_with("worse") => 3.0,
                Some(_) => 0.6,
                None => 1.3,
            }
        } else {
            let deps: Vec<&str> = settings
                .iter()
                .flat_map(|c| c.keys.iter().filter_map(|k| k.dependency.as_deref()))
                .filter(|d| anomalous(d))
                .collect();
            for d in &deps {
                out.extend(about(ledger, d, 0.5));
            }
            if deps.is_empty() {
                3.0
            } else {
                5.0
            }
        };
        out.extend(about(ledger, &args.service, ratio));
        out
    }
}
