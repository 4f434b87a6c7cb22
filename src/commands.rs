//! The verbs over models and the store: `train`, `models status`, `kb add|search`,
//! `store ingest|stats|index`. Each is a synchronous shell over the async store.

use anyhow::{bail, Context, Result};
use culprit::embed::net::TrainConfig;
use culprit::embed::{drift, features, Embedder, Row, SourceKind, DIM};
use culprit::model::{Incident, ReadReport};
use culprit::store::{EventRow, Store};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn open_store(rt: &tokio::runtime::Runtime, uri: &str) -> Result<Store> {
    rt.block_on(Store::open(uri)).with_context(|| format!("opening the store {uri}"))
}

fn spinner(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} [{{elapsed_precise}}] {{wide_bar}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
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

fn load(bundle: &Path) -> Result<Incident> {
    culprit::ingest::load_bundle(bundle).with_context(|| format!("loading bundle {}", bundle.display()))
}

fn thin(rows: Vec<Row>, max: usize) -> Vec<Row> {
    if rows.len() <= max {
        return rows;
    }
    let step = rows.len() as f64 / max as f64;
    (0..max).filter_map(|i| rows.get((i as f64 * step) as usize).cloned()).collect()
}

pub struct TrainArgs {
    pub sources: Vec<SourceKind>,
    pub from: String,
    pub out: PathBuf,
    pub cfg: TrainConfig,
    pub max_events: usize,
}

pub fn train(a: TrainArgs) -> Result<ExitCode> {
    let from_bundle = Path::new(&a.from).is_dir() && Path::new(&a.from).join("incident.json").exists();
    let rt = if from_bundle { None } else { Some(runtime()?) };
    let incident = if from_bundle { Some(load(Path::new(&a.from))?) } else { None };
    let mut trained = 0;
    for source in &a.sources {
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
        let bar = spinner(&format!("training {source} on {} events", rows.len()));
        let model = Embedder::fit(*source, &rows, &a.from, &a.cfg, |step, total| {
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
pub fn models_status(dir: &Path, recent: Option<&Path>, max_age_days: i64) -> Result<ExitCode> {
    let recent = recent.map(load).transpose()?;
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

pub fn kb_add(uri: &str, files: &[PathBuf]) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut failed = 0;
    for f in files {
        match culprit::kb::read_entry(f) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    let embedder = culprit::kb::TextEmbedder::from_env()?;
    let rt = runtime()?;
    rt.block_on(culprit::kb::embed_entries(&embedder, &mut rows))?;
    let store = open_store(&rt, uri)?;
    rt.block_on(culprit::kb::add(&store, &rows))?;
    let total = rt.block_on(store.count(culprit::store::INCIDENTS, None))?;
    println!("added {} incidents ({failed} files failed); the knowledge base at {uri} holds {total}", rows.len());
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn kb_search(uri: &str, query: &str, k: usize, json: bool) -> Result<ExitCode> {
    let (fields, _text) = culprit::kb::query_fields(query)?;
    let embedder = culprit::kb::TextEmbedder::from_env()?;
    let rt = runtime()?;
    let store = open_store(&rt, uri)?;
    let hits = rt.block_on(culprit::kb::search(&store, &embedder, fields, k))?;
    if json {
        let out: Vec<serde_json::Value> =
            hits.iter().map(|(r, sim)| serde_json::json!({"similarity": sim, "incident": r})).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if hits.is_empty() {
        println!("no past incidents in {uri} (add some with `culprit kb add`)");
    } else {
        for (i, (r, sim)) in hits.iter().enumerate() {
            println!("{}. {} (similarity {sim:.2}): {}", i + 1, r.id, r.title);
            println!(
                "   root cause: {} ({})",
                r.root_cause_service,
                if r.root_cause_kind.is_empty() { "-" } else { &r.root_cause_kind }
            );
            if !r.resolution.is_empty() {
                println!("   resolution: {}", r.resolution);
            }
        }
    }
    Ok(if hits.is_empty() { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// Streams every event of a bundle into the store, embedded with the models in `models` when
/// there is one for the source, `batch` rows per commit; prints the committed total after each.
pub fn store_ingest(
    uri: &str,
    bundle: &Path,
    models: Option<&Path>,
    batch: usize,
    environment: &str,
    index: bool,
) -> Result<ExitCode> {
    let incident = load(bundle)?;
    let rt = runtime()?;
    let store = open_store(&rt, uri)?;
    let mut committed = rt.block_on(store.count(culprit::store::EVENTS, None))?;
    let start = committed;
    let stdout = std::io::stdout();
    let mut report = ReadReport::default();
    for source in SourceKind::ALL {
        let model = models.and_then(|d| match Embedder::load(d, source) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("{source}: stored without embeddings: {e}");
                None
            }
        });
        let mut pending: Vec<Row> = Vec::with_capacity(batch);
        let mut seq = 0usize;
        let mut flush = |rows: &mut Vec<Row>, committed: &mut usize| -> Result<()> {
            let vectors = match &model {
                Some(m) => Some(m.embed(rows)?),
                None => None,
            };
            let events: Vec<EventRow> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    seq += 1;
                    EventRow {
                        id: format!("{}/{source}/{seq}", incident.id),
                        time_ms: r.time,
                        source: source.as_str().to_string(),
                        service: r.service.clone(),
                        environment: environment.to_string(),
                        attributes: serde_json::json!({"cats": r.cats, "nums": r.nums}).to_string(),
                        vector: vectors.as_ref().map(|v| v[i * DIM..(i + 1) * DIM].to_vec()),
                        anomaly_score: None,
                    }
                })
                .collect();
            rt.block_on(store.add_events(&events))?;
            *committed += events.len();
            let mut out = stdout.lock();
            writeln!(out, "committed {committed} rows")?;
            out.flush()?;
            rows.clear();
            Ok(())
        };
        let mut failure = None;
        let mut push = |r: Row, committed: &mut usize| {
            if failure.is_some() {
                return;
            }
            pending.push(r);
            if pending.len() >= batch {
                if let Err(e) = flush(&mut pending, committed) {
                    failure = Some(e);
                }
            }
        };
        if let Some(b) = &incident.baseline {
            features::for_each_row(source, b, &mut report, |r| push(r, &mut committed));
        }
        features::for_each_row(source, &incident.telemetry, &mut report, |r| push(r, &mut committed));
        if let Some(e) = failure {
            return Err(e);
        }
        if !pending.is_empty() {
            flush(&mut pending, &mut committed)?;
        }
    }
    let built = if index { rt.block_on(store.ensure_indexes(culprit::store::EVENTS, true))? } else { Vec::new() };
    eprintln!(
        "ingested {} events from {} into {uri}{}{}",
        committed - start,
        bundle.display(),
        if report.records_skipped > 0 {
            format!(" ({} unreadable records skipped)", report.records_skipped)
        } else {
            String::new()
        },
        if built.is_empty() { String::new() } else { format!("; built indexes: {}", built.join(", ")) }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn store_stats(uri: &str) -> Result<ExitCode> {
    let rt = runtime()?;
    let store = open_store(&rt, uri)?;
    for table in [culprit::store::EVENTS, culprit::store::INCIDENTS, culprit::store::FEEDBACK] {
        println!("{table:10} {} rows", rt.block_on(store.count(table, None))?);
    }
    Ok(ExitCode::SUCCESS)
}
