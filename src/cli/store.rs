//! `culprit kb` and `culprit store`: the knowledge base of past incidents and the event store
//! (LanceDB), each a synchronous shell over the async store.

use anyhow::{Context, Result};
use clap::Subcommand;
use culprit::embed::{features, Embedder, Row, SourceKind, DIM};
use culprit::model::{Incident, ReadReport};
use culprit::store::{EventRow, Store};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct KbArgs {
    #[command(subcommand)]
    command: KbCommand,
}

#[derive(Subcommand, Debug)]
pub enum KbCommand {
    /// Add past incidents: markdown postmortems with a front-matter block (root_cause, kind,
    /// resolution, services, tags, title, date), incident JSON ({"title", "root_cause":
    /// {"service", "kind"}, "resolution", …}), or bundle directories with truth.json. An entry
    /// with the id of an existing one replaces it.
    Add {
        #[arg(required = true, value_name = "FILE|BUNDLE")]
        files: Vec<PathBuf>,
        /// Store URI (default: $CULPRIT_STORE, else the user's data directory).
        #[arg(long, value_name = "URI")]
        store: Option<String>,
    },
    /// Find past incidents similar to a question or to an incident bundle (which is investigated
    /// first), with their root causes and resolutions.
    Search {
        /// Free text, or a bundle directory.
        #[arg(value_name = "QUERY|BUNDLE")]
        query: String,
        #[arg(short, default_value_t = 5)]
        k: usize,
        #[arg(long, value_name = "URI")]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Stream a bundle's events (logs, metrics, traces, changes) into the events table, embedded
    /// with the models in --models where one exists; one commit per --batch rows, each reported
    /// as `committed N rows`. Indexes are built once the table is large enough.
    Ingest {
        bundle: PathBuf,
        #[arg(long, value_name = "URI")]
        store: Option<String>,
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        #[arg(long, default_value = "production")]
        environment: String,
        /// Do not build indexes at the end (build them later, on a quieter machine).
        #[arg(long)]
        no_index: bool,
    },
    /// Row counts of the tables.
    Stats {
        #[arg(long, value_name = "URI")]
        store: Option<String>,
    },
}

pub fn kb(a: KbArgs) -> Result<ExitCode> {
    match a.command {
        KbCommand::Add { files, store } => kb_add(&store.unwrap_or_else(culprit::store::default_uri), &files),
        KbCommand::Search { query, k, store, json } => {
            kb_search(&store.unwrap_or_else(culprit::store::default_uri), &query, k, json)
        }
    }
}

pub fn store(a: StoreArgs) -> Result<ExitCode> {
    match a.command {
        StoreCommand::Ingest { bundle, store, models, batch, environment, no_index } => {
            if batch == 0 {
                anyhow::bail!("--batch must be at least 1");
            }
            let uri = store.unwrap_or_else(culprit::store::default_uri);
            store_ingest(&uri, &bundle, models.as_deref(), batch, &environment, !no_index)
        }
        StoreCommand::Stats { store } => store_stats(&store.unwrap_or_else(culprit::store::default_uri)),
    }
}

pub(super) fn open_store(rt: &tokio::runtime::Runtime, uri: &str) -> Result<Store> {
    rt.block_on(Store::open(uri)).with_context(|| format!("opening the store {uri}"))
}

pub(super) fn load(bundle: &Path) -> Result<Incident> {
    culprit::ingest::load_bundle(bundle).with_context(|| format!("loading bundle {}", bundle.display()))
}

pub(super) fn thin(rows: Vec<Row>, max: usize) -> Vec<Row> {
    if rows.len() <= max {
        return rows;
    }
    let step = rows.len() as f64 / max as f64;
    (0..max).filter_map(|i| rows.get((i as f64 * step) as usize).cloned()).collect()
}

fn kb_add(uri: &str, files: &[PathBuf]) -> Result<ExitCode> {
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
    let rt = super::runtime()?;
    rt.block_on(culprit::kb::embed_entries(&embedder, &mut rows))?;
    let store = open_store(&rt, uri)?;
    rt.block_on(culprit::kb::add(&store, &rows))?;
    let total = rt.block_on(store.count(culprit::store::INCIDENTS, None))?;
    println!("added {} incidents ({failed} files failed); the knowledge base at {uri} holds {total}", rows.len());
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn kb_search(uri: &str, query: &str, k: usize, json: bool) -> Result<ExitCode> {
    let (fields, _text) = culprit::kb::query_fields(query)?;
    let embedder = culprit::kb::TextEmbedder::from_env()?;
    let rt = super::runtime()?;
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
fn store_ingest(
    uri: &str,
    bundle: &Path,
    models: Option<&Path>,
    batch: usize,
    environment: &str,
    index: bool,
) -> Result<ExitCode> {
    let incident = load(bundle)?;
    let rt = super::runtime()?;
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

fn store_stats(uri: &str) -> Result<ExitCode> {
    let rt = super::runtime()?;
    let store = open_store(&rt, uri)?;
    for table in [culprit::store::EVENTS, culprit::store::INCIDENTS, culprit::store::FEEDBACK] {
        println!("{table:10} {} rows", rt.block_on(store.count(table, None))?);
    }
    Ok(ExitCode::SUCCESS)
}
