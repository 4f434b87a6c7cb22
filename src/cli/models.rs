//! `culprit train` and `culprit models status`: the learned embedders, trained on fault-free
//! events of a bundle or a store, and whether they still fit the data.

use super::store::{load, open_store, thin};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use culprit::embed::net::TrainConfig;
use culprit::embed::{drift, features, Embedder, Row, SourceKind, DIM};
use culprit::model::{Incident, ReadReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Which model to train.
    #[arg(long, value_enum, default_value = "all")]
    source: TrainSource,
    /// A bundle directory or a store URI.
    #[arg(long, value_name = "BUNDLE|STORE")]
    from: String,
    /// Directory for the weights and model cards.
    #[arg(long, value_name = "DIR", default_value = "models")]
    out: PathBuf,
    /// Passes over the data (capped at --max-steps optimiser steps).
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 2000)]
    max_steps: usize,
    /// Most events used per source (evenly thinned beyond).
    #[arg(long, default_value_t = 200_000)]
    max_events: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TrainSource {
    Logs,
    Metrics,
    Traces,
    Changes,
    All,
}

#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Which models exist, their age and data, and which should be retrained and why: features
    /// that no longer match, age, or drift (a KS test of recent embeddings against the training
    /// profile, per dimension). Exit code 3 when any model should be retrained.
    Status {
        #[arg(long, value_name = "DIR", default_value = "models")]
        models: PathBuf,
        /// A bundle of recent data to check drift against.
        #[arg(long, value_name = "BUNDLE")]
        recent: Option<PathBuf>,
        /// Models older than this should be retrained.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        max_age_days: i64,
    },
}

/// The fault-free events of a bundle for `source`: its separate baseline if it has one, else
/// everything before the analysis start. At most `max` events, evenly thinned.
fn baseline_rows(incident: &Incident, source: SourceKind, max: usize) -> (Vec<Row>, ReadReport) {
    let mut report = ReadReport::default();
    let mut rows = Vec::new();
    features::for_each_split_row(incident, source, &mut report, |r, reference| {
        if reference {
            rows.push(r)
        }
    });
    (thin(rows, max), report)
}

pub fn train(a: TrainArgs) -> Result<ExitCode> {
    let sources = match a.source {
        TrainSource::Logs => vec![SourceKind::Logs],
        TrainSource::Metrics => vec![SourceKind::Metrics],
        TrainSource::Traces => vec![SourceKind::Traces],
        TrainSource::Changes => vec![SourceKind::Changes],
        TrainSource::All => SourceKind::ALL.to_vec(),
    };
    let cfg = TrainConfig { epochs: a.epochs, max_steps: a.max_steps, seed: a.seed, ..Default::default() };
    let from_bundle = Path::new(&a.from).is_dir() && Path::new(&a.from).join("incident.json").exists();
    let rt = if from_bundle { None } else { Some(super::runtime()?) };
    let incident = if from_bundle { Some(load(Path::new(&a.from))?) } else { None };
    let mut trained = 0;
    for source in &sources {
        let rows = if let Some(incident) = &incident {
            let (rows, report) = baseline_rows(incident, *source, a.max_events);
            if report.records_skipped > 0 {
                eprintln!("{source}: skipped {} unreadable records while reading {}", report.records_skipped, a.from);
            }
            rows
        } else {
            let rt = rt.as_ref().context("runtime")?;
            let store = open_store(rt, &a.from)?;
            rt.block_on(store.event_rows(source.as_str(), a.max_events))?
        };
        if rows.len() < 32 {
            eprintln!("{source}: skipped, only {} baseline events in {} (need 32)", rows.len(), a.from);
            continue;
        }
        let bar = super::progress(0, &format!("training {source} on {} events", rows.len()), "", false);
        let model = Embedder::fit(*source, &rows, &a.from, &cfg, |step, total| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
        })?;
        bar.finish_and_clear();
        model.save(&a.out).with_context(|| format!("saving the {source} model to {}", a.out.display()))?;
        let t = &model.card.training;
        println!(
            "{source}: trained on {} events in {:.1} s on {}; loss {} → {}; saved to {}",
            t.events,
            t.seconds,
            t.device,
            t.loss_curve.first().map_or("-".into(), |l| format!("{l:.3}")),
            t.loss_curve.last().map_or("-".into(), |l| format!("{l:.3}")),
            a.out.join(format!("{source}.safetensors")).display()
        );
        trained += 1;
    }
    if trained == 0 {
        bail!("no model trained: no source had enough baseline events in {}", a.from);
    }
    Ok(ExitCode::SUCCESS)
}

/// `culprit models status`: what is trained, how old it is, whether it still fits the data.
pub fn status(a: ModelsArgs) -> Result<ExitCode> {
    let ModelsCommand::Status { models: dir, recent, max_age_days } = a.command;
    let dir = dir.as_path();
    let recent = recent.as_deref().map(load).transpose()?;
    let mut retrain = 0;
    for source in SourceKind::ALL {
        let card = match Embedder::read_card(dir, source) {
            Ok(c) => c,
            Err(culprit::embed::EmbedError::NoModel { .. }) => {
                println!("{source:8} not trained");
                continue;
            }
            Err(e) => {
                println!("{source:8} RETRAIN: {e}");
                retrain += 1;
                continue;
            }
        };
        let mut reasons = Vec::new();
        if let Err(why) = culprit::embed::embedder::check_features(&card, source) {
            reasons.push(format!("features differ from this culprit's: {why}"));
        }
        let age = chrono::DateTime::parse_from_rfc3339(&card.training.trained_at)
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_days())
            .unwrap_or(i64::MAX);
        if age > max_age_days {
            reasons.push(format!("trained {age} days ago (more than {max_age_days})"));
        }
        let mut drift_note = String::new();
        if let (Some(incident), true) = (&recent, reasons.is_empty()) {
            let mut rows = Vec::new();
            features::for_each_row(source, &incident.telemetry, &mut ReadReport::default(), |r| rows.push(r));
            let rows = thin(rows, 20_000);
            let model = Embedder::load(dir, source)?;
            match drift::check(&card.profile, &model.embed(&rows)?, DIM) {
                Some(d) if d.should_retrain() => reasons.push(format!(
                    "drift: {} of {} dimensions moved (max KS {:.2}, p {:.1e}) over {} recent events",
                    d.drifted, d.dims, d.max_ks, d.min_p, d.recent
                )),
                Some(d) => drift_note = format!("; no drift (max KS {:.2} over {} recent events)", d.max_ks, d.recent),
                None => drift_note = "; no recent events to check drift".to_string(),
            }
        }
        let t = &card.training;
        if reasons.is_empty() {
            println!("{source:8} ok: {} events, trained {}{drift_note}", t.events, t.trained_at);
        } else {
            retrain += 1;
            println!("{source:8} RETRAIN: {}", reasons.join("; "));
        }
    }
    Ok(if retrain > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
