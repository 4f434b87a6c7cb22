//! `anomaly_timeline`: what became anomalous, where and when.

use super::{Tool, ToolCx, ToolError};
use crate::investigate::ledger::Ledger;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub struct AnomalyTimeline;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Only this service's anomalies (all services when absent).
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Entry {
    /// Seconds from the start of the incident period (negative: before it).
    pub at_s: i64,
    pub service: String,
    pub source: String,
    pub indicator: String,
    /// The detector's evidence line, as data.
    pub evidence: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Output {
    pub entries: Vec<Entry>,
    /// Anomalies left out by the output limit.
    pub more: usize,
}

impl Tool for AnomalyTimeline {
    const NAME: &'static str = "anomaly_timeline";
    const SPEC: &'static str = include_str!("../../../tools/anomaly_timeline.toml");
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (1.0, 1.0);
    const PER_SERVICE: bool = false;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        let anomalies = &cx.triage.detection.anomalies;
        if let Some(s) = &args.service {
            cx.check_service(s)?;
        }
        let mut chosen: Vec<_> =
            anomalies.iter().filter(|a| args.service.as_ref().is_none_or(|s| &a.service == s)).collect();
        chosen.sort_by_key(|a| a.onset);
        let more = chosen.len().saturating_sub(cx.max_items);
        let entries = chosen
            .into_iter()
            .take(cx.max_items)
            .map(|a| Entry {
                at_s: (a.onset - cx.incident.analysis_start) / 1000,
                service: a.service.clone(),
                source: format!("{:?}", a.source).to_lowercase(),
                indicator: a.indicator.clone(),
                evidence: a.evidence.clone(),
            })
            .collect();
        Ok(Output { entries, more })
    }

    fn summarize(&self, out: &Output) -> String {
        match out.entries.first() {
            Some(e) => format!(
                "{} anomalies; first: {} {} at {:+} s",
                out.entries.len() + out.more,
                e.service,
                e.indicator,
                e.at_s
            ),
            None => "no anomalies".to_string(),
        }
    }

    /// The timeline is context, not a test of any hypothesis: the triage already ranked on it.
    fn assess(&self, _: &ToolCx, _: &Args, _: &Output, _: &Ledger) -> Vec<(usize, f64)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{all, run, ToolCx, ToolErrorKind};
    use crate::investigate::ledger::Ledger;
    use crate::simulate::{self, SimConfig};

    #[test]
    fn timeline_answers_filters_and_errors_readably() {
        let incident = simulate::simulate(&SimConfig::for_seed(1));
        let triage = crate::triage::triage(&incident, &crate::triage::Config::default());
        let cx = ToolCx { incident: &incident, triage: &triage, kb: None, max_items: 5, logs: Default::default() };
        let tools = all();
        let ledger = Ledger::new(&[], 0.5);
        let call = |tools: &[Box<dyn super::super::ToolDyn>], cx: &ToolCx, name: &str, args| {
            run(tools, cx, name, args, &ledger).map(|o| o.output)
        };
        let out = call(&tools, &cx, "anomaly_timeline", serde_json::json!({})).unwrap();
        let n = out["entries"].as_array().unwrap().len();
        assert_eq!(n, 5.min(triage.detection.anomalies.len()));
        assert_eq!(out["more"].as_u64().unwrap() as usize, triage.detection.anomalies.len() - n);
        let truth = incident.truth.as_ref().unwrap().service.clone();
        let only = call(&tools, &cx, "anomaly_timeline", serde_json::json!({ "service": truth })).unwrap();
        assert!(only["entries"].as_array().unwrap().iter().all(|e| e["service"] == truth.as_str()));
        let e = call(&tools, &cx, "anomaly_timeline", serde_json::json!({ "service": "nope" })).unwrap_err();
        assert_eq!(e.kind, ToolErrorKind::NotFound);
        let e = call(&tools, &cx, "anomaly_timeline", serde_json::json!({ "servce": "x" })).unwrap_err();
        assert_eq!(e.kind, ToolErrorKind::InvalidArgs);
        assert!(e.message.contains("servce"), "{}", e.message);
        let e = call(&tools, &cx, "timeline", serde_json::json!({})).unwrap_err();
        assert_eq!(e.kind, ToolErrorKind::UnknownTool);
        assert!(e.message.contains("anomaly_timeline"));
        let schema = tools[0].schema();
        assert!(schema.to_string().contains("\"service\""), "{schema}");
    }
}
