//! `dependency_lookup`: a service's callers and callees (declared topology merged with the call
//! graph mined from traces), and whether the alerting service's requests can reach it.

use super::{about, Data, Tool, ToolCx, ToolError};
use crate::investigate::ledger::Ledger;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub struct DependencyLookup;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The service to look up.
    pub service: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Output {
    pub service: String,
    /// Services that call it (trouble here can show there).
    pub callers: Vec<String>,
    /// Services it calls (trouble there can show here).
    pub callees: Vec<String>,
    pub alert_service: String,
    /// The call path from this service up to the alerting service, when there is one.
    pub path_to_alert: Option<Vec<String>>,
}

impl Tool for DependencyLookup {
    const NAME: &'static str = "dependency_lookup";
    const SPEC: &'static str = include_str!("../../../tools/dependency_lookup.toml");
    const NEEDS: &'static [Data] = &[Data::Dependencies];
    type Args = Args;
    type Output = Output;
    const RATIOS: (f64, f64) = (0.3, 1.2);
    const PER_SERVICE: bool = true;

    fn call(&self, cx: &ToolCx, args: &Args) -> Result<Output, ToolError> {
        cx.check_service(&args.service)?;
        let deps = &cx.triage.dependencies;
        let alert = cx.incident.alert.service.clone();
        Ok(Output {
            service: args.service.clone(),
            callers: deps.callers_of(&args.service).map(str::to_string).collect(),
            callees: deps.callees_of(&args.service).map(str::to_string).collect(),
            path_to_alert: deps.caller_path(&args.service, &alert),
            alert_service: alert,
        })
    }

    fn summarize(&self, o: &Output) -> String {
        let path = match &o.path_to_alert {
            Some(p) => format!("reaches {} via {}", o.alert_service, p.join(" → ")),
            None => format!("no call path to {}", o.alert_service),
        };
        format!("{}: {} caller(s), {} callee(s); {path}", o.service, o.callers.len(), o.callees.len())
    }

    /// A cause must be able to reach the symptom: no call path to the alerting service is
    /// evidence against (×0.3); a path is mild evidence for (×1.2), the alerting service's own
    /// (of no hops) included: a fault where the alert fires can cause it, and a ledger that
    /// raised every other suspect for reaching it would lower that one for nothing. (The tool
    /// only runs where a dependency graph is known: `applicable`.)
    fn assess(&self, _: &ToolCx, _: &Args, o: &Output, ledger: &Ledger) -> Vec<(usize, f64)> {
        about(ledger, &o.service, if o.path_to_alert.is_some() { 1.2 } else { 0.3 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{self, SimConfig};

    #[test]
    fn the_alerting_service_reaches_itself_like_any_suspect_reaches_it() {
        let incident = simulate::simulate(&SimConfig::for_seed(1));
        let triage = crate::triage::triage(&incident, &crate::triage::Config::default());
        let cx = ToolCx { incident: &incident, triage: &triage, kb: None, max_items: 5, logs: Default::default() };
        let alert = incident.alert.service.clone();
        let suspect = triage.dependencies.callees_of(&alert).next().expect("the entry calls something").to_string();
        let ledger =
            Ledger::new(&[(alert.clone(), "latency".into(), 1.0), (suspect.clone(), "latency".into(), 1.0)], 0.1);
        let factor = |service: &str| {
            let o = DependencyLookup.call(&cx, &Args { service: service.into() }).expect("lookup");
            DependencyLookup.assess(&cx, &Args { service: service.into() }, &o, &ledger)
        };
        // Both can cause what the alert sees: neither gains on the other.
        assert_eq!(factor(&alert), vec![(0, 1.2)]);
        assert_eq!(factor(&suspect), vec![(1, 1.2)]);
    }
}
