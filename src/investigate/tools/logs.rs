//! `log_search`: a service's log templates before and during the incident: new templates,
//! bursting ones, and the error rate.
//!
//! It answers from the logs as the detector read them ([`LogView`]: templates, per-template
//! counts before and from [`during_from`], the latest lines), so an investigation reads each log
//! file once. A triage reloaded from disk carries no view: the first call reads the logs once and
//! keeps them ([`LogCache`]). Template text is telemetry: it reaches a model only as quoted data
//! inside the tool's JSON output.

use super::{about, truncate, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::detect::logs::{LogView, TemplateStats};
use crate::investigate::ledger::Ledger;
use crate::model::MINUTE;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub struct LogSearch;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The service whose logs to search.
    pub service: String,
    /// Only lines containing this text (case-insensitive).
    #[serde(default)]
    pub contains: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TemplateView {
    pub template: String,
    pub level: String,
    /// Lines per minute before and during the incident.
    pub per_min_before: f64,
    pub per_min_during: f64,
}

/// One log line as it was written, with the template it belongs to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LineView {
    /// RFC 3339 with ms.
    pub time: String,
    pub level: String,
    pub template: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub service: String,
    pub lines_before: u64,
    pub lines_during: u64,
    pub errors_per_min_before: f64,
    pub errors_per_min_during: f64,
    /// Templates never seen before the incident, most frequent first.
    pub new_templates: Vec<TemplateView>,
    /// Templates at least three times as frequent as before, largest rise first.
    pub bursting: Vec<TemplateView>,
    /// The latest lines during the incident, newest first.
    pub latest: Vec<LineView>,
    pub more: usize,
}

/// The logs of an investigation whose triage carries no [`LogView`] (one reloaded from disk):
/// read once, on the first call, and kept for the rest of the investigation.
#[derive(Default)]
pub struct LogCache(std::sync::OnceLock<Arc<LogView>>);

impl LogCache {
    /// The triage's view of the logs, else (once) the detector's pass over them.
    pub fn view(&self, cx: &ToolCx) -> Arc<LogView> {
        if let Some(v) = &cx.triage.detection.logs {
            return v.clone();
        }
        self.0
            .get_or_init(|| {
                let mut scratch = crate::detect::Detection::default();
                crate::detect::logs::detect(
                    cx.incident,
                    &crate::detect::DetectConfig::default(),
                    &mut scratch,
                    &mut |_, _| {},
                );
                scratch.logs.unwrap_or_default()
            })
            .clone()
    }

    /// Whether the logs were read again for this investigation.
    pub fn was_read(&self) -> bool {
        self.0.get().is_some()
    }
}

fn unavailable(service: &str) -> ToolError {
    ToolError::new(ToolErrorKind::Unavailable, format!("no log lines of `{service}` to compare"))
}

impl Tool for LogSearch {
    const NAME: &'static str = "log_search";
    const SPEC: &'static str = include_str!("../../../tools/log_search.toml");
    const NEEDS: &'static [Data] = &[Data::Logs];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (0.7, 2.0);
    const PER_SERVICE: bool = true;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        cx.check_service(&args.service)?;
        let i = cx.incident;
        let view = cx.logs.view(cx);
        let needle = args.contains.as_deref().map(str::to_lowercase);
        let Some(l) = view.services.get(&args.service) else {
            return Err(unavailable(&args.service));
        };
        let templates = l.templates();
        let text = |id: u32| templates.get(id as usize).map(|t| t.to_string()).unwrap_or_default();
        // With a filter, only the templates whose text (or an example line) holds it count.
        let matches = |id: u32, t: &TemplateStats| match &needle {
            None => true,
            Some(n) => text(id).to_lowercase().contains(n) || t.example().to_lowercase().contains(n),
        };
        let counted: Vec<(u32, &TemplateStats)> =
            l.stats().filter(|(id, t)| (t.reference > 0 || t.during > 0) && matches(*id, t)).collect();
        let sum = |f: fn(&TemplateStats) -> u64| counted.iter().map(|(_, t)| f(t)).sum::<u64>();
        let (lines_before, lines_during) = (sum(|t| t.reference), sum(|t| t.during));
        if lines_before + lines_during == 0 {
            return Err(unavailable(&args.service));
        }
        let minutes_before = match &i.baseline {
            Some(_) => ((i.analysis_start.min(l.last) - l.first).max(MINUTE) as f64 / MINUTE as f64).max(1.0),
            None => ((i.analysis_start - l.first).max(MINUTE) as f64 / MINUTE as f64).max(1.0),
        };
        let minutes_during =
            ((cx.triage.detection.data_end.max(l.last) - view.during_from).max(MINUTE) as f64 / MINUTE as f64).max(1.0);
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let view_of = |id: u32, c: &TemplateStats| TemplateView {
            template: text(id),
            level: format!("{:?}", c.level).to_lowercase(),
            per_min_before: round(c.reference as f64 / minutes_before),
            per_min_during: round(c.during as f64 / minutes_during),
        };
        let mut new_templates: Vec<TemplateView> =
            counted.iter().filter(|(_, c)| c.reference == 0 && c.during > 0).map(|(id, c)| view_of(*id, c)).collect();
        new_templates.sort_by(|a, b| b.per_min_during.total_cmp(&a.per_min_during));
        let mut bursting: Vec<TemplateView> = counted
            .iter()
            .filter(|(_, c)| {
                c.reference > 0 && c.during as f64 / minutes_during >= 3.0 * c.reference as f64 / minutes_before
            })
            .map(|(id, c)| view_of(*id, c))
            .collect();
        bursting.sort_by(|a, b| {
            (b.per_min_during / b.per_min_before.max(0.01)).total_cmp(&(a.per_min_during / a.per_min_before.max(0.01)))
        });
        let mut latest: Vec<LineView> = l
            .latest()
            .into_iter()
            .filter(|(_, _, _, message)| needle.as_ref().is_none_or(|n| message.to_lowercase().contains(n)))
            .map(|(t, level, id, message)| LineView {
                time: crate::ingest::time::rfc3339(*t, crate::ingest::time::SecondsFormat::Millis)
                    .unwrap_or_else(|| t.to_string()),
                level: format!("{level:?}").to_lowercase(),
                template: text(*id),
                message: message.clone(),
            })
            .collect();
        let more = truncate(&mut new_templates, cx.max_items)
            + truncate(&mut bursting, cx.max_items)
            + truncate(&mut latest, cx.max_items);
        Ok(Output {
            service: args.service.clone(),
            lines_before,
            lines_during,
            errors_per_min_before: round(sum(|t| t.errors_reference) as f64 / minutes_before),
            errors_per_min_during: round(sum(|t| t.errors_during) as f64 / minutes_during),
            new_templates,
            bursting,
            latest,
            more,
        })
    }

    fn summarize(&self, o: &Output) -> String {
        format!(
            "{}: errors {:.1} → {:.1}/min; {} new template(s), {} bursting",
            o.service,
            o.errors_per_min_before,
            o.errors_per_min_during,
            o.new_templates.len(),
            o.bursting.len()
        )
    }

    /// Errors that rose threefold (and by at least one a minute), or new error templates, make
    /// the service likelier (×2); logs with no new errors at all are mild evidence against (×0.7).
    /// A service without logs says nothing.
    fn assess(&self, _: &ToolCx, _: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        let rose = o.errors_per_min_during >= 3.0 * o.errors_per_min_before
            && o.errors_per_min_during >= o.errors_per_min_before + 1.0;
        let new_errors = o.new_templates.iter().chain(&o.bursting).any(|t| t.level == "error" || t.level == "fatal");
        if o.lines_during == 0 {
            return Vec::new();
        }
        about(ledger, &o.service, if rose || new_errors { 2.0 } else { 0.7 })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ToolCx, ToolErrorKind};
    use super::*;
    use crate::simulate::{self, SimConfig};

    #[test]
    fn answers_from_the_triage_view_as_a_fresh_read_would() {
        let incident = simulate::simulate(&SimConfig::for_seed(1));
        let triage = crate::triage::triage(&incident, &crate::triage::Config::default());
        assert!(triage.detection.logs.is_some(), "the detector keeps its view of the logs");
        let reloaded = crate::triage::Triage {
            detection: crate::detect::Detection { logs: None, ..triage.detection.clone() },
            ..triage.clone()
        };
        let cx_of = |t| ToolCx { incident: &incident, triage: t, kb: None, max_items: 5, logs: Default::default() };
        let truth = incident.truth.as_ref().unwrap().service.clone();
        let args = |service: &str, contains: Option<&str>| Args {
            service: service.into(),
            contains: contains.map(Into::into),
        };
        let cx = cx_of(&triage);
        let from_view = LogSearch.call(&cx, &args(&truth, None)).unwrap();
        assert!(!cx.logs.was_read(), "the triage's view answered: no file read again");
        assert!(from_view.lines_during > 0);
        // A triage reloaded from disk has no view: the first call reads the logs, once, and
        // answers as the view did.
        let again = cx_of(&reloaded);
        assert_eq!(LogSearch.call(&again, &args(&truth, None)).unwrap(), from_view);
        assert!(again.logs.was_read());
        // A text filter keeps only templates and lines that hold it.
        let none = LogSearch.call(&cx, &args(&truth, Some("no line says this"))).unwrap_err();
        assert_eq!(none.kind, ToolErrorKind::Unavailable);
        let word = from_view.latest[0].message.split_whitespace().next().unwrap().to_lowercase();
        let some = LogSearch.call(&cx, &args(&truth, Some(&word))).unwrap();
        assert!(some.lines_before + some.lines_during <= from_view.lines_before + from_view.lines_during);
        assert!(some.latest.iter().all(|l| l.message.to_lowercase().contains(&word)));
        assert!(!some.latest.is_empty());
    }
}
