//! `log_search`: a service's log templates before and during the incident: new templates,
//! bursting ones, and the error rate.
//!
//! Lines are streamed (a bundle's log files are never held whole) and mined into templates with
//! the same Drain miner as the detectors; without a text filter, every service's templates are
//! mined in the first call's one pass and kept for the rest of the investigation ([`LogCache`]). Template text is telemetry: it reaches a model only as
//! quoted data inside the tool's JSON output.

use super::{about, truncate, Data, Tool, ToolCx, ToolError, ToolErrorKind};
use crate::detect::logs::Drain;
use crate::ingest::for_each_log;
use crate::investigate::ledger::Ledger;
use crate::model::{Level, LogRecord, ReadReport, Ts, MINUTE};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

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

/// Lines kept per service for [`Output::latest`].
const LATEST: usize = 50;

#[derive(Default)]
struct Counts {
    before: u64,
    during: u64,
    level: Level,
}

/// One service's lines, mined into templates and counted before and during the incident.
struct ServiceLogs {
    drain: Drain,
    counts: BTreeMap<u32, Counts>,
    lines_before: u64,
    lines_during: u64,
    errors_before: u64,
    errors_during: u64,
    first: Ts,
    last: Ts,
    /// The latest lines during the incident (time, level, template, text), at most [`LATEST`].
    latest: std::collections::BinaryHeap<std::cmp::Reverse<(Ts, Level, u32, String)>>,
}

impl ServiceLogs {
    fn new() -> ServiceLogs {
        ServiceLogs {
            drain: Drain::new(crate::detect::DetectConfig::default().drain_similarity),
            counts: BTreeMap::new(),
            lines_before: 0,
            lines_during: 0,
            errors_before: 0,
            errors_during: 0,
            first: Ts::MAX,
            last: Ts::MIN,
            latest: Default::default(),
        }
    }

    /// Counts one line (`from`: the start of "during"; `analysis_start`: the end of "before").
    fn add(&mut self, r: &LogRecord, in_baseline: bool, from: Ts, analysis_start: Ts) {
        let during = !in_baseline && r.time >= from;
        let before = in_baseline || r.time < analysis_start;
        if !during && !before {
            return;
        }
        self.first = self.first.min(r.time);
        self.last = self.last.max(r.time);
        let id = self.drain.add(&r.message);
        let c = self.counts.entry(id).or_default();
        c.level = c.level.max(r.level);
        if during {
            c.during += 1;
            self.lines_during += 1;
            self.errors_during += r.level.is_error() as u64;
            // A min-heap of the newest: the oldest kept leaves first.
            self.latest.push(std::cmp::Reverse((r.time, r.level, id, r.message.clone())));
            if self.latest.len() > LATEST {
                self.latest.pop();
            }
        } else {
            c.before += 1;
            self.lines_before += 1;
            self.errors_before += r.level.is_error() as u64;
        }
    }
}

/// Every service's logs, mined in one pass the first time `log_search` is called without a
/// filter in an investigation, so later calls do not read the logs again.
#[derive(Default)]
pub struct LogCache(std::sync::OnceLock<HashMap<String, ServiceLogs>>);

/// Streams the incident's logs (the separate baseline's first), calling `visit` with each line
/// and whether it is from the baseline.
fn stream(i: &crate::model::Incident, mut visit: impl FnMut(LogRecord, bool)) {
    let mut report = ReadReport::default();
    if let Some(b) = &i.baseline {
        for_each_log(&b.logs, &mut report, |r| visit(r, true));
    }
    for_each_log(&i.telemetry.logs, &mut report, |r| visit(r, false));
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
        let (from, start) = (cx.during_from(), i.analysis_start);
        let filtered;
        let logs = match args.contains.as_deref().map(str::to_lowercase) {
            Some(needle) => {
                let mut one = ServiceLogs::new();
                stream(i, |r, base| {
                    if r.service == args.service && r.message.to_lowercase().contains(&needle) {
                        one.add(&r, base, from, start);
                    }
                });
                filtered = one;
                Some(&filtered)
            }
            None => cx
                .logs
                .0
                .get_or_init(|| {
                    let mut all: HashMap<String, ServiceLogs> = HashMap::new();
                    stream(i, |r, base| {
                        all.entry(r.service.clone()).or_insert_with(ServiceLogs::new).add(&r, base, from, start)
                    });
                    all
                })
                .get(&args.service),
        };
        let Some(l) = logs.filter(|l| l.lines_before + l.lines_during > 0) else {
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!("no log lines of `{}` to compare", args.service),
            ));
        };
        let minutes_before = match &i.baseline {
            Some(_) => ((i.analysis_start.min(l.last) - l.first).max(MINUTE) as f64 / MINUTE as f64).max(1.0),
            None => ((i.analysis_start - l.first).max(MINUTE) as f64 / MINUTE as f64).max(1.0),
        };
        let minutes_during =
            ((cx.triage.detection.data_end.max(l.last) - from).max(MINUTE) as f64 / MINUTE as f64).max(1.0);
        let templates = l.drain.templates();
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let view = |id: &u32, c: &Counts| TemplateView {
            template: templates.get(*id as usize).map(|t| t.to_string()).unwrap_or_default(),
            level: format!("{:?}", c.level).to_lowercase(),
            per_min_before: round(c.before as f64 / minutes_before),
            per_min_during: round(c.during as f64 / minutes_during),
        };
        let mut new_templates: Vec<TemplateView> =
            l.counts.iter().filter(|(_, c)| c.before == 0 && c.during > 0).map(|(id, c)| view(id, c)).collect();
        new_templates.sort_by(|a, b| b.per_min_during.total_cmp(&a.per_min_during));
        let mut bursting: Vec<TemplateView> = l
            .counts
            .iter()
            .filter(|(_, c)| c.before > 0 && c.during as f64 / minutes_during >= 3.0 * c.before as f64 / minutes_before)
            .map(|(id, c)| view(id, c))
            .collect();
        bursting.sort_by(|a, b| {
            (b.per_min_during / b.per_min_before.max(0.01)).total_cmp(&(a.per_min_during / a.per_min_before.max(0.01)))
        });
        let mut latest: Vec<&(Ts, Level, u32, String)> = l.latest.iter().map(|r| &r.0).collect();
        latest.sort_by_key(|l| std::cmp::Reverse(l.0));
        let mut latest: Vec<LineView> = latest
            .into_iter()
            .map(|(t, level, id, message)| LineView {
                time: crate::ingest::time::rfc3339(*t, crate::ingest::time::SecondsFormat::Millis)
                    .unwrap_or_else(|| t.to_string()),
                level: format!("{level:?}").to_lowercase(),
                template: templates.get(*id as usize).map(|t| t.to_string()).unwrap_or_default(),
                message: message.clone(),
            })
            .collect();
        let more = truncate(&mut new_templates, cx.max_items)
            + truncate(&mut bursting, cx.max_items)
            + truncate(&mut latest, cx.max_items);
        Ok(Output {
            service: args.service.clone(),
            lines_before: l.lines_before,
            lines_during: l.lines_during,
            errors_per_min_before: round(l.errors_before as f64 / minutes_before),
            errors_per_min_during: round(l.errors_during as f64 / minutes_during),
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
    fn later_calls_answer_from_the_first_pass_as_a_fresh_read_would() {
        let incident = simulate::simulate(&SimConfig::for_seed(1));
        let triage = crate::triage::triage(&incident, &crate::triage::Config::default());
        let fresh =
            || ToolCx { incident: &incident, triage: &triage, kb: None, max_items: 5, logs: Default::default() };
        let truth = incident.truth.as_ref().unwrap().service.clone();
        let args = |service: &str, contains: Option<&str>| Args {
            service: service.into(),
            contains: contains.map(Into::into),
        };
        // One investigation asks about the alert's service, then the cause.
        let cx = fresh();
        LogSearch.call(&cx, &args(&incident.alert.service, None)).unwrap();
        assert!(cx.logs.0.get().is_some_and(|all| all.contains_key(&truth)), "every service mined in the first pass");
        let cached = LogSearch.call(&cx, &args(&truth, None)).unwrap();
        assert_eq!(cached, LogSearch.call(&fresh(), &args(&truth, None)).unwrap());
        assert!(cached.lines_during > 0);
        // A text filter reads the lines again, and finds only lines with the text.
        let none = LogSearch.call(&cx, &args(&truth, Some("no line says this"))).unwrap_err();
        assert_eq!(none.kind, ToolErrorKind::Unavailable);
    }
}
