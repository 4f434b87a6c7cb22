//! `culprit chat`: follow-up questions about an incident, answered with the agent's tools, in a
//! session saved after every answer (through `investigate::chat`, as the service saves its own).

use anyhow::{Context, Result};
use culprit::investigate::chat::{self, SavedChat};
use culprit::investigate::{AgentConfig, Session, Trigger};
use culprit::pipeline::{self, PipelineConfig};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// The bundle directory.
    bundle: PathBuf,
    /// The session file (default: culprit-chat-<incident id>.json in the current directory).
    #[arg(long, value_name = "FILE")]
    session: Option<PathBuf>,
    #[command(flatten)]
    agent: super::investigate::AgentArgs,
}

pub fn run(a: ChatArgs) -> Result<ExitCode> {
    let bundle = &a.bundle;
    let incident =
        culprit::ingest::load_bundle(bundle).with_context(|| format!("loading bundle {}", bundle.display()))?;
    // The triage the session starts from; the agent runs below, in the session itself.
    let triage = pipeline::start(&incident, &PipelineConfig::with_trigger(Trigger::Never)).into_triage();
    let cfg = a.agent.config()?;
    let kb = a.agent.knowledge_base()?;
    let path = a.session.unwrap_or_else(|| {
        let id: String = incident
            .id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        PathBuf::from(format!("culprit-chat-{id}.json"))
    });
    let mut policy = a.agent.policy()?;
    let (mut saved, mut s) = if path.exists() {
        let saved = SavedChat::read(&path, &incident.id)?;
        if let Some(m) = policy.model() {
            m.restore(saved.messages.clone());
        }
        println!("Resumed {} ({} earlier questions).", path.display(), saved.exchanges.len());
        let s = saved.resume(&incident, &triage, kb.as_ref().map(|k| k as _), &cfg);
        (saved, s)
    } else {
        let mut s = Session::new(&incident, &triage, kb.as_ref().map(|k| k as _), &cfg);
        let p = policy.as_policy();
        let stop = s.run(p, &cfg);
        print!("{}", s.transcript(p.name(), p.tokens(), stop, cfg.threshold).render());
        (SavedChat::start(&s), s)
    };
    saved.messages = policy.model().map(|m| m.messages().to_vec()).unwrap_or_default();
    chat::save(&path, &saved)?;
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("\n> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let question = line?.trim().to_string();
        if question.is_empty() {
            continue;
        }
        if matches!(question.as_str(), "quit" | "exit" | "q") {
            break;
        }
        let ex = match policy.model() {
            Some(m) => chat::answer_with_model(&mut s, m, &question, &AgentConfig { max_turns: 4, ..cfg.clone() }),
            None => chat::answer_offline(&mut s, &question),
        };
        println!("\n? {question}\n{}", ex.answer);
        let messages = policy.model().map(|m| m.messages().to_vec()).unwrap_or_default();
        saved.record(&s, ex, messages);
        chat::save(&path, &saved)?;
    }
    println!("\nSession saved to {} (resume with --session {}).", path.display(), path.display());
    Ok(ExitCode::SUCCESS)
}
