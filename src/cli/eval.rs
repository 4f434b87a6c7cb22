//! `culprit eval`: every suite named (through the dataset registry, `eval::datasets`) scored:
//! drill-down suites by their own tables first, then the incident suites by every method, or the
//! feedback loop's before and after (`--feedback-split`).

use super::progress;
use anyhow::{Context, Result};
use culprit::eval::datasets::{self, Scoring};
use culprit::eval::{self, Method, Suite};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Suites to score, one table each (datasets with several systems give one per system).
    #[arg(required = true, value_name = "SUITE")]
    suites: Vec<String>,
    /// Methods to run, comma-separated: culprit, culprit_embed (with the learned k-NN
    /// detector, fitted per case on its reference period), culprit_agent (the triage, then the
    /// rules agent), baro, nsigma, epsilon_diagnosis, pagerank, earliest, random, latest_change
    /// (the change that started last before the alert) (default: all).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Print the summary as JSON ({"suites":[{"name","system","cases","methods":{…}}]}).
    #[arg(long)]
    json: bool,
    /// Also write per-case details (JSON lines), the summary and SVG plots (accuracy per
    /// method, reliability of culprit's confidence) into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A case taking longer than this (loading and all methods) is Invalid.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
    /// Instead of scoring methods, measure the feedback loop: the re-ranker learns from half
    /// of each suite (each case's truth given as an operator's feedback on its triage) and
    /// the other, held-apart half is scored before and after it.
    #[arg(long)]
    feedback_split: bool,
    /// Also fit the maps from evidence to printed confidence (`calibrate`) on the tuning half
    /// of every suite run (even positions), and show each suite's held-out ECE with the fit
    /// beside the printed one. The fitted weights are what `src/calibrate.rs` holds.
    #[arg(long)]
    fit_calibration: bool,
}

pub fn run(a: EvalArgs) -> Result<ExitCode> {
    let mut opts = eval::EvalOptions { timeout: std::time::Duration::from_secs(a.timeout), ..Default::default() };
    if let Some(names) = &a.methods {
        opts.methods = names
            .iter()
            .map(|n| {
                Method::parse(n).with_context(|| format!("unknown method `{n}`; expected one of {}", Method::names()))
            })
            .collect::<Result<_>>()?;
    }
    let mut all = Vec::new();
    for arg in &a.suites {
        all.extend(datasets::suites(arg)?);
    }
    let (drill, incidents): (Vec<Suite>, Vec<Suite>) = all.into_iter().partition(|s| s.scoring != Scoring::Incidents);
    if !drill.is_empty() {
        run_drilldown(&drill, a.json)?;
    }
    if incidents.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if a.feedback_split {
        return feedback_split(&incidents, a.json, &opts);
    }
    let bar = progress(cases(&incidents), "eval", " cases", true);
    let reports: Vec<eval::SuiteReport> = incidents.iter().map(|s| eval::run_suite(s, &opts, &|| bar.inc(1))).collect();
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&eval::summary_json(&reports))?);
    } else {
        print!("{}", eval::render_markdown(&reports));
    }
    if a.fit_calibration {
        for m in [Method::Culprit, Method::CulpritAgent] {
            match eval::fit_calibration(&reports, m) {
                Some(f) if a.json => println!("{}", serde_json::to_string_pretty(&f)?),
                Some(f) => print!("{}", eval::render_calibration_fit(&f)),
                None => eprintln!("calibration: no {} answers with features to fit on", m.as_str()),
            }
        }
    }
    for r in &reports {
        for c in &r.results {
            for (m, o) in &c.methods {
                if let eval::Outcome::Invalid { reason } = o {
                    eprintln!("invalid: {} {} {}: {}", r.name, c.id, m.as_str(), reason);
                }
            }
        }
    }
    if let Some(dir) = &a.out {
        write_eval_out(dir, &reports).with_context(|| format!("writing eval details to {}", dir.display()))?;
        eprintln!("wrote per-case details and plots to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn cases(suites: &[Suite]) -> u64 {
    suites.iter().map(|s| s.cases.len() as u64).sum()
}

fn run_drilldown(suites: &[Suite], json: bool) -> Result<()> {
    use culprit::eval::drilldown as de;
    let bar = progress(cases(suites), "drill-down eval", " cases", true);
    let outcomes: Vec<de::Outcome> = suites.iter().map(|s| de::run(s, &|| bar.inc(1))).collect::<Result<_, _>>()?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "drilldown": outcomes }))?);
    } else {
        outcomes.iter().for_each(|o| print!("{}", de::render(o)));
    }
    Ok(())
}

fn feedback_split(suites: &[Suite], json: bool, opts: &eval::EvalOptions) -> Result<ExitCode> {
    let bar = progress(cases(suites), "feedback split", " cases", true);
    let rows: Vec<eval::FeedbackSplit> = suites.iter().map(|s| eval::feedback_split(s, opts, &|| bar.inc(1))).collect();
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", eval::render_feedback_split(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--out DIR`: the summary, per-case JSON lines and SVG plots for every suite.
fn write_eval_out(dir: &Path, reports: &[eval::SuiteReport]) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&eval::summary_json(reports))?)?;
    for (i, r) in reports.iter().enumerate() {
        let slug: String = r.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let stem = format!("{:02}-{}", i + 1, slug.trim_matches('_'));
        let mut cases = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{stem}.cases.jsonl")))?);
        for c in &r.results {
            writeln!(cases, "{}", serde_json::to_string(c)?)?;
        }
        cases.flush()?;
        std::fs::write(dir.join(format!("{stem}.accuracy.svg")), culprit::plots::accuracy(r))?;
        let pairs: Vec<(f64, bool)> = r
            .results
            .iter()
            .filter_map(|c| match c.methods.get(&Method::Culprit)? {
                eval::Outcome::Pass(s) | eval::Outcome::Fail(s) => Some((s.confidence?, s.rank == Some(1))),
                eval::Outcome::Invalid { .. } => None,
            })
            .collect();
        if !pairs.is_empty() {
            let (ece, bins) = eval::calibration(&pairs, 10);
            let title = format!("{}: culprit confidence (ECE {ece:.3})", r.name);
            std::fs::write(dir.join(format!("{stem}.reliability.svg")), culprit::plots::reliability(&title, &bins))?;
        }
    }
    Ok(())
}
