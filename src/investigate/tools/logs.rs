//! `log_search`: a service's log templates before and during the incident: new templates,
//! bursting ones, and the error rate.
//!
//! Lines are streamed (a bundle's log files are never held whole) and mined into templates with
//! the same Drain miner as the detectors. Template text is telemetry: it reaches a model only as
//! quoted data inside the tool's JSON output.

use super::{about, truncate, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::detect::logs::Drain;
use crate::ingest::for_each_log;
use crate::investigate::ledger::Ledger;
use crate::model::{Level, ReadReport, Ts, MINUTE};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub more: usize,
}

#[derive(Default)]
struct Counts {
    before: u64,
    during: u64,
    level: Level,
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
        let from = cx.during_from();
        let needle = args.contains.as_deref().map(str::to_lowercase);
        let mut drain = Drain::new(crate::detect::DetectConfig::default().drain_similarity);
        let mut counts: BTreeMap<u32, Counts> = BTreeMap::new();
        let (mut lines_before, mut lines_during, mut errors_before, mut errors_during) = (0u64, 0u64, 0u64, 0u64);
        let (mut first, mut last): (Ts, Ts) = (Ts::MAX, Ts::MIN);
        let mut report = ReadReport::default();
        let mut visit = |r: crate::model::LogRecord, in_baseline: bool| {
            if r.service != args.service || needle.as_ref().is_some_and(|n| !r.message.to_lowercase().contains(n)) {
                return;
            }
            let during = !in_baseline && r.time >= from;
            let before = in_baseline || r.time < i.analysis_start;
            if !during && !before {
                return;
            }
            first = first.min(r.time);
            last = last.max(r.time);
            let id = drain.add(&r.message);
            let c = counts.entry(id).or_default();
            c.level = c.level.max(r.level);
            if during {
                c.during += 1;
                lines_during += 1;
                errors_during += r.level.is_error() as u64;
            } else {
                c.before += 1;
                lines_before += 1;
                errors_before += r.level.is_error() as u64;
            }
        };
        if let Some(b) = &i.baseline {
            for_each_log(&b.logs, &mut report, |r| visit(r, true));
        }
        for_each_log(&i.telemetry.logs, &mut report, |r| visit(r, false));
        if lines_before + lines_during == 0 {
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!("no log lines of `{}` to compare", args.service),
            ));
        }
        let minutes_before = match &i.baseline {
            Some(_) => ((i.analysis_start.min(last) - first).max(MINUTE) as f64 / MINUTE as f64).max(1.0),
            None => ((i.analysis_start - first).max(MINUTE) as f64 / MINUTE as f64).max(1.0),
        };
        let minutes_during =
            ((cx.triage.detection.data_end.max(last) - from).max(MINUTE) as f64 / MINUTE as f64).max(1.0);
        let templates = drain.templates();
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let view = |id: &u32, c: &Counts| TemplateView {
            template: templates.get(*id as usize).map(|t| t.to_string()).unwrap_or_default(),
            level: format!("{:?}", c.level).to_lowercase(),
            per_min_before: round(c.before as f64 / minutes_before),
            per_min_during: round(c.during as f64 / minutes_during),
        };
        let mut new_templates: Vec<TemplateView> =
            counts.iter().filter(|(_, c)| c.before == 0 && c.during > 0).map(|(id, c)| view(id, c)).collect();
        new_templates.sort_by(|a, b| b.per_min_during.total_cmp(&a.per_min_during));
        let mut bursting: Vec<TemplateView> = counts
            .iter()
            .filter(|(_, c)| c.before > 0 && c.during as f64 / minutes_during >= 3.0 * c.before as f64 / minutes_before)
            .map(|(id, c)| view(id, c))
            .collect();
        bursting.sort_by(|a, b| {
            (b.per_min_during / b.per_min_before.max(0.01)).total_cmp(&(a.per_min_during / a.per_min_before.max(0.01)))
        });
        let more = truncate(&mut new_templates, cx.max_items) + truncate(&mut bursting, cx.max_items);
        Ok(Output {
            service: args.service.clone(),
            lines_before,
            lines_during,
            errors_per_min_before: round(errors_before as f64 / minutes_before),
            errors_per_min_during: round(errors_during as f64 / minutes_during),
            new_templates,
            bursting,
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
