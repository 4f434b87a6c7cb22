//! `culprit drilldown`: the request's flags (checked and run in `drilldown::request`), and where
//! the report goes: the narrative or JSON on stdout, `--out`, `--chart`.

use anyhow::{Context, Result};
use culprit::drilldown::report;
use culprit::drilldown::request::Request;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DrilldownArgs {
    #[command(flatten)]
    request: Request,
    /// Write the chart of segment contributions (SVG) here.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
    /// Write the JSON report here as well.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the JSON report instead of the narrative.
    #[arg(long)]
    json: bool,
}

pub fn run(a: DrilldownArgs) -> Result<ExitCode> {
    let r = a.request.run(&mut |what| eprintln!("drilldown: {what}"))?;
    let text = serde_json::to_string_pretty(&r)?;
    if let Some(p) = &a.out {
        std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.chart {
        std::fs::write(p, report::chart(&r)).with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        println!("{text}");
    } else {
        r.narrative.iter().for_each(|l| println!("{l}"));
    }
    Ok(ExitCode::SUCCESS)
}
