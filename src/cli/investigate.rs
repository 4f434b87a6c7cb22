//! `culprit investigate` and `culprit demo`: one incident through the pipeline, the report
//! printed; and the agent's flags, shared with `culprit chat`.

use super::TempDir;
use anyhow::{bail, Context, Result};
use culprit::embed::knn::{KnnConfig, Models};
use culprit::investigate::policy::{AgentPolicy, PolicyKind, PolicySpec};
use culprit::investigate::{AgentConfig, Trigger};
use culprit::kb::BlockingKb;
use culprit::pipeline::{self, Deps, PipelineConfig};
use culprit::report::{self, Verdict};
use culprit::{ingest, simulate, triage};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct InvestigateArgs {
    /// The bundle directory (or, instead, a live source: --prometheus, --store).
    #[arg(required_unless_present_any = ["prometheus", "store"], conflicts_with_all = ["prometheus", "store"])]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    live: super::live::LiveArgs,
    /// Print the report as JSON (schema culprit.report/v1) instead of text.
    #[arg(long)]
    json: bool,
    /// Group anomalies whose onsets lie within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    window: u64,
    /// Add the learned k-NN embedding detector: `fit` trains one model per source on the
    /// bundle's own reference period; a directory uses models from `culprit train`.
    #[arg(long, value_name = "DIR|fit")]
    embeddings: Option<String>,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Keep the simulated bundle in this directory (default: a temporary one, removed after).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    #[command(flatten)]
    agent: AgentArgs,
}

/// The agent that may follow the static triage.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// When to run the agent after the static triage: `always`, `never`, or `auto` (when the
    /// alert is high or critical, or the triage is less confident than --threshold).
    #[arg(long, value_enum, default_value_t = Trigger::Auto)]
    agent: Trigger,
    /// The agent stops once its leading hypothesis reaches this confidence (its posterior).
    #[arg(long, value_name = "P", default_value_t = 0.85)]
    threshold: f64,
    /// Most tool calls the agent makes.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_turns: usize,
    /// Save the agent's transcript (JSON, schema culprit.transcript/v1) to this file.
    #[arg(long, value_name = "FILE")]
    transcript: Option<PathBuf>,
    /// The knowledge base the agent searches for similar past incidents (a LanceDB URI; default:
    /// the default store, when it exists).
    #[arg(long, value_name = "URI")]
    kb: Option<String>,
    /// Who chooses the agent's checks: `rules` (offline, deterministic) or `llm` (a model behind
    /// an OpenAI-compatible endpoint; if it fails, the investigation finishes with `rules`).
    #[arg(long, value_enum, default_value_t = PolicyKind::Rules)]
    policy: PolicyKind,
    /// The chat endpoint's base URL for `--policy llm`, e.g. http://127.0.0.1:8080/v1
    /// [env: CULPRIT_LLM_URL]. The key, if one is needed, only from CULPRIT_API_KEY or
    /// OPENAI_API_KEY.
    #[arg(long, value_name = "URL")]
    llm_url: Option<String>,
    /// The model's name at that endpoint [env: CULPRIT_LLM_MODEL].
    #[arg(long, value_name = "NAME")]
    llm_model: Option<String>,
}

impl AgentArgs {
    pub fn config(&self) -> Result<AgentConfig> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            bail!("--threshold must be between 0 and 1 (exclusive), got {}", self.threshold);
        }
        Ok(AgentConfig { threshold: self.threshold, max_turns: self.max_turns, ..Default::default() })
    }

    /// The knowledge base: `--kb`, else the default store when it exists, else none.
    pub fn knowledge_base(&self) -> Result<Option<BlockingKb>> {
        let uri = match &self.kb {
            Some(u) => u.clone(),
            None => {
                let d = culprit::store::default_uri();
                if !Path::new(&d).is_dir() {
                    return Ok(None);
                }
                d
            }
        };
        Ok(Some(BlockingKb::open(&uri).with_context(|| format!("opening the knowledge base {uri}"))?))
    }

    pub fn policy(&self) -> Result<AgentPolicy> {
        let spec = PolicySpec {
            kind: self.policy,
            llm_url: self.llm_url.clone(),
            llm_model: self.llm_model.clone(),
            redactor: None,
            endpoint_settings: "--policy llm needs an endpoint: --llm-url and --llm-model",
        };
        Ok(AgentPolicy::build(&spec)?)
    }
}

pub fn run(a: InvestigateArgs) -> Result<ExitCode> {
    let knn = a.embeddings.map(|e| KnnConfig {
        models: if e == "fit" { Models::FitOnReference } else { Models::Dir(PathBuf::from(e)) },
        ..Default::default()
    });
    let cfg = triage::Config { group_window: a.window as i64 * 1000, knn, ..Default::default() };
    let incident = match &a.bundle {
        Some(b) => ingest::load_bundle(b).with_context(|| format!("loading bundle {}", b.display()))?,
        None => a.live.gather()?,
    };
    report_on(&incident, a.json, cfg, &a.agent)
}

pub fn demo(a: DemoArgs) -> Result<ExitCode> {
    let (dir, _tmp) = match a.keep {
        Some(d) => (d, None),
        None => {
            let t = TempDir::new("demo");
            (t.0.clone(), Some(t))
        }
    };
    let incident = simulate::simulate(&simulate::demo_config());
    ingest::write_bundle(&incident, incident.truth.as_ref(), &dir)
        .with_context(|| format!("writing the demo bundle to {}", dir.display()))?;
    if !a.json {
        println!("Simulated seed 001's incident into {} and investigating it.\n", dir.display());
    }
    let incident = ingest::load_bundle(&dir).with_context(|| format!("loading bundle {}", dir.display()))?;
    report_on(&incident, a.json, triage::Config::default(), &a.agent)
}

/// Runs the pipeline on an incident (the agent as `--agent` says), prints the report, and
/// answers 0 when it names a root cause, 3 when not, 4 on insufficient data.
fn report_on(
    incident: &culprit::model::Incident,
    json: bool,
    triage: triage::Config,
    agent: &AgentArgs,
) -> Result<ExitCode> {
    let cfg = PipelineConfig { triage, agent: agent.config()?, trigger: agent.agent };
    // The knowledge base and the policy are made ready only when the agent will run.
    let triaged = pipeline::start(incident, &cfg);
    let will_run = triaged.agent_will_run();
    let kb = if will_run { agent.knowledge_base()? } else { None };
    let mut policy = if will_run { Some(agent.policy()?) } else { None };
    let deps = Deps {
        kb: kb.as_ref().map(|k| k as _),
        policy: policy.as_mut().map(AgentPolicy::as_policy),
        ..Default::default()
    };
    let out = triaged.finish(deps);
    if let (Some(path), Some(t)) = (&agent.transcript, out.transcript()) {
        std::fs::write(path, serde_json::to_string_pretty(t)?)
            .with_context(|| format!("writing the transcript to {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out.report)?);
    } else {
        print!("{}", report::render_text(&out.report));
    }
    Ok(match out.report.verdict {
        Verdict::RootCause => ExitCode::SUCCESS,
        Verdict::NoRootCause => ExitCode::from(3),
        Verdict::InsufficientData => ExitCode::from(4),
    })
}
