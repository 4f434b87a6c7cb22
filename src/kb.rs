//! The incident knowledge base: past incidents with their root causes and resolutions, searched
//! by similarity to a question or to a new incident.
//!
//! Entries come from markdown postmortems with a front-matter block, from incident JSON, or from
//! incident bundles with a `truth.json` label (culprit investigates the bundle and stores what it
//! saw beside the labelled cause). Each entry gets a fingerprint: the text embedding of its
//! fields (title, root cause, symptoms), each weighted. A bundle used as a query gets the same
//! kind of fingerprint from its investigation, without any label.
//!
//! Text is embedded offline by default ([`crate::embed::text`]), or by an OpenAI-compatible
//! `/embeddings` endpoint when `CULPRIT_EMBEDDINGS_URL` and `CULPRIT_EMBEDDINGS_MODEL` are set
//! ([`TextEmbedder`]). Each entry records which embedder made it, and a search only compares
//! fingerprints of the same embedder.

use crate::embed::text::{self, Fields};
use crate::investigate::tools::similar::Match;
use crate::investigate::tools::{PastIncidents, ToolError};
use crate::investigate::Trigger;
use crate::llm::{self, Endpoint, LlmError};
use crate::model::Ts;
use crate::pipeline::{self, Deps, PipelineConfig};
use crate::report::Report;
use crate::store::{IncidentRow, Store, StoreError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{}: missing field `{field}` ({hint})", path.display())]
    Missing { path: PathBuf, field: &'static str, hint: &'static str },
    #[error("{0}")]
    Bundle(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("text embeddings: {0}")]
    Embeddings(#[from] LlmError),
}

/// How knowledge-base text becomes a 64-d fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub enum TextEmbedder {
    /// Hashed words and word pairs projected to 64-d: offline, deterministic, no model.
    Offline,
    /// An OpenAI-compatible `/embeddings` endpoint: each field is embedded, projected to 64-d
    /// ([`text::Projection`]), and the fields are summed with their weights.
    Endpoint(Endpoint),
}

impl TextEmbedder {
    /// The endpoint configured in the environment, else the offline embedding.
    pub fn from_env() -> Result<Self, KbError> {
        Ok(Endpoint::embeddings_from_env()?.map_or(TextEmbedder::Offline, TextEmbedder::Endpoint))
    }

    /// The name stored beside each fingerprint.
    pub fn name(&self) -> String {
        match self {
            TextEmbedder::Offline => text::NAME.to_string(),
            TextEmbedder::Endpoint(e) => format!("endpoint:{}", e.model),
        }
    }

    /// One unit vector per document.
    pub async fn embed(&self, docs: &[Fields]) -> Result<Vec<Vec<f32>>, KbError> {
        let endpoint = match self {
            TextEmbedder::Offline => {
                return Ok(docs
                    .iter()
                    .map(|d| text::embed_fields(&d.iter().map(|(t, w)| (t.as_str(), *w)).collect::<Vec<_>>()))
                    .collect())
            }
            TextEmbedder::Endpoint(e) => e,
        };
        // Endpoints refuse empty inputs: only non-empty fields are sent.
        let texts: Vec<String> =
            docs.iter().flatten().filter(|(t, _)| !t.trim().is_empty()).map(|(t, _)| t.clone()).collect();
        let vectors = llm::embed(endpoint, &texts).await?;
        let projection = text::Projection::new(vectors.iter().map(Vec::len).max().unwrap_or(0));
        let mut projected = vectors.iter().map(|v| projection.project(v));
        Ok(docs
            .iter()
            .map(|doc| {
                let mut v = vec![0.0f32; crate::embed::DIM];
                for (_, w) in doc.iter().filter(|(t, _)| !t.trim().is_empty()) {
                    for (vj, pj) in v.iter_mut().zip(projected.next().unwrap_or_default()) {
                        *vj += w * pj;
                    }
                }
                text::normalise(&mut v);
                v
            })
            .collect())
    }
}

/// The text a fingerprint is made of, for an investigated incident: the alert, the ranked causes
/// (the first counted twice) and the anomalies of the timeline.
pub fn fingerprint_text(report: &Report) -> String {
    let mut parts = vec![report.alert.title.clone(), format!("alert {} {}", report.alert.service, report.alert.signal)];
    for (i, rc) in report.root_causes.iter().take(3).enumerate() {
        let line = format!("suspect {} {} {}", rc.service, rc.indicator, rc.kind);
        if i == 0 {
            parts.push(line.clone());
        }
        parts.push(line);
    }
    let mut timeline: Vec<_> = report.timeline.iter().collect();
    timeline.sort_by(|a, b| b.mass.total_cmp(&a.mass));
    for e in timeline.iter().take(15) {
        parts.push(format!("{} {}", e.service, e.indicator));
    }
    parts.join(". ")
}

/// How much the root cause counts in a fingerprint against the title and symptoms: two
/// incidents are alike first when the same thing broke in the same way.
const CAUSE_WEIGHT: f32 = 4.0;

/// The cause field of a fingerprint: `cause:<service>` (a token only an identical service
/// shares), the service's name parts and the kind.
fn cause_field(service: &str, kind: &str) -> String {
    format!("cause:{service} {kind}")
}

/// What a stored incident's fingerprint is made of.
pub fn entry_fields(r: &IncidentRow) -> Fields {
    let rest = format!("{}. {}. {}", r.title, r.summary, r.tags.join(" "));
    vec![(cause_field(&r.root_cause_service, &r.root_cause_kind), CAUSE_WEIGHT), (rest, 1.0)]
}

/// What an investigated incident's fingerprint is made of: its leading suspect as the cause.
pub fn report_fields(report: &Report) -> Fields {
    let cause = report
        .root_causes
        .first()
        .map_or_else(String::new, |rc| cause_field(&rc.service, &format!("{} {}", rc.kind, rc.indicator)));
    vec![(cause, CAUSE_WEIGHT), (fingerprint_text(report), 1.0)]
}

/// Fingerprints entries with the configured embedder and stores them (an entry with an existing
/// id replaces it).
pub async fn add_embedded(store: &Store, mut rows: Vec<IncidentRow>) -> Result<(), KbError> {
    let embedder = TextEmbedder::from_env()?;
    embed_entries(&embedder, &mut rows).await?;
    add(store, &rows).await
}

/// Fingerprints entries (and records the embedder) in place.
pub async fn embed_entries(embedder: &TextEmbedder, rows: &mut [IncidentRow]) -> Result<(), KbError> {
    let docs: Vec<Fields> = rows.iter().map(entry_fields).collect();
    for (row, vector) in rows.iter_mut().zip(embedder.embed(&docs).await?) {
        row.embedder = embedder.name();
        row.vector = vector;
    }
    Ok(())
}

/// Builds a knowledge-base entry, not yet fingerprinted ([`embed_entries`]), from a file or
/// bundle directory.
pub fn read_entry(path: &Path) -> Result<IncidentRow, KbError> {
    if path.is_dir() {
        return from_bundle(path);
    }
    let text = std::fs::read_to_string(path).map_err(|source| KbError::Io { path: path.to_path_buf(), source })?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => from_json(path, &text),
        _ => from_markdown(path, &text),
    }
}

fn default_id(path: &Path) -> String {
    path.file_stem().map_or_else(|| "incident".to_string(), |s| s.to_string_lossy().into_owned())
}

/// Parses a date (`2026-03-01`) or an RFC 3339 time into Unix ms.
fn parse_time(s: &str) -> Option<Ts> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

/// A markdown postmortem: a `---` front-matter block of `key: value` lines (`root_cause`, `kind`,
/// `resolution`, `services`, `tags`, `title`, `date`, `id`), then free text. The title defaults
/// to the first `# ` heading.
pub fn from_markdown(path: &Path, text: &str) -> Result<IncidentRow, KbError> {
    let mut lines = text.lines().enumerate();
    let parse = |line: usize, message: String| KbError::Parse { path: path.to_path_buf(), line: line + 1, message };
    match lines.next() {
        Some((_, l)) if l.trim() == "---" => {}
        _ => return Err(parse(0, "expected a front-matter block starting with `---`".to_string())),
    }
    let mut row = IncidentRow {
        id: default_id(path),
        time_ms: 0,
        title: String::new(),
        summary: String::new(),
        root_cause_service: String::new(),
        root_cause_kind: String::new(),
        resolution: String::new(),
        postmortem: String::new(),
        tags: Vec::new(),
        embedder: String::new(),
        vector: Vec::new(),
    };
    let mut closed = false;
    for (i, l) in lines.by_ref() {
        if l.trim() == "---" {
            closed = true;
            break;
        }
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) = l.split_once(':').ok_or_else(|| parse(i, format!("expected `key: value`, found {l:?}")))?;
        let value = value.trim().trim_matches('"').to_string();
        let list = || -> Vec<String> {
            value
                .trim_matches(['[', ']'])
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        match key.trim() {
            "id" => row.id = value.clone(),
            "title" => row.title = value.clone(),
            "date" | "time" => {
                row.time_ms = parse_time(&value)
                    .ok_or_else(|| parse(i, format!("`{}`: not a date or RFC 3339 time: {value:?}", key.trim())))?
            }
            "root_cause" | "root_cause_service" => row.root_cause_service = value.clone(),
            "kind" | "root_cause_kind" => row.root_cause_kind = value.clone(),
            "resolution" => row.resolution = value.clone(),
            "summary" => row.summary = value.clone(),
            "services" | "tags" => row.tags.extend(list()),
            other => return Err(parse(i, format!("unknown front-matter key `{other}`"))),
        }
    }
    if !closed {
        return Err(parse(
            text.lines().count().saturating_sub(1),
            "front-matter block is not closed with `---`".to_string(),
        ));
    }
    let body: Vec<&str> = lines.map(|(_, l)| l).collect();
    if row.title.is_empty() {
        row.title = body.iter().find_map(|l| l.strip_prefix("# ")).unwrap_or_default().trim().to_string();
    }
    if row.summary.is_empty() {
        row.summary =
            body.iter().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or(&"").trim().to_string();
    }
    row.postmortem = body.join("\n");
    if row.root_cause_service.is_empty() {
        return Err(KbError::Missing {
            path: path.to_path_buf(),
            field: "root_cause",
            hint: "the service at fault, in the front matter",
        });
    }
    Ok(row)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonIncident {
    id: Option<String>,
    time: Option<String>,
    title: String,
    #[serde(default)]
    summary: String,
    root_cause: JsonCause,
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    postmortem: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCause {
    service: String,
    #[serde(default)]
    kind: String,
}

/// Incident JSON: `{"title", "root_cause": {"service", "kind"}, "resolution", "summary",
/// "postmortem", "tags", "id", "time"}`.
pub fn from_json(path: &Path, text: &str) -> Result<IncidentRow, KbError> {
    let j: JsonIncident = serde_json::from_str(text).map_err(|e| KbError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let time_ms = match &j.time {
        Some(t) => parse_time(t).ok_or_else(|| KbError::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: format!("`time`: not a date or RFC 3339 time: {t:?}"),
        })?,
        None => 0,
    };
    Ok(IncidentRow {
        id: j.id.unwrap_or_else(|| default_id(path)),
        time_ms,
        title: j.title,
        summary: j.summary,
        root_cause_service: j.root_cause.service,
        root_cause_kind: j.root_cause.kind,
        resolution: j.resolution,
        postmortem: j.postmortem,
        tags: j.tags,
        embedder: String::new(),
        vector: Vec::new(),
    })
}

/// Loads a bundle and runs the triage on it (no agent: the fingerprint is the triage's).
fn investigate(dir: &Path) -> Result<(crate::model::Incident, Report), KbError> {
    let incident = crate::ingest::load_bundle(dir)?;
    let cfg = PipelineConfig::with_trigger(Trigger::Never);
    let report = pipeline::run(&incident, &cfg, Deps::default()).report;
    Ok((incident, report))
}

/// A labelled incident bundle: investigated now, stored with its label as the root cause.
pub fn from_bundle(dir: &Path) -> Result<IncidentRow, KbError> {
    let (incident, report) = investigate(dir)?;
    let truth = incident.truth.clone().ok_or(KbError::Missing {
        path: dir.join("truth.json"),
        field: "truth",
        hint: "a bundle joins the knowledge base with its labelled root cause",
    })?;
    let resolution = report
        .root_causes
        .iter()
        .find(|rc| rc.service == truth.service)
        .map_or_else(String::new, |rc| rc.action.clone());
    Ok(IncidentRow {
        id: incident.id.clone(),
        time_ms: incident.alert.time,
        title: if incident.alert.title.is_empty() {
            format!("{} {} alert", incident.alert.service, incident.alert.signal)
        } else {
            incident.alert.title.clone()
        },
        summary: fingerprint_text(&report),
        root_cause_service: truth.service.clone(),
        root_cause_kind: truth.kind.clone(),
        resolution,
        postmortem: String::new(),
        tags: vec![truth.kind.clone()],
        embedder: String::new(),
        vector: Vec::new(),
    })
}

/// What a query's fingerprint is made of, and its text: a bundle directory is investigated;
/// anything else is text.
pub fn query_fields(query: &str) -> Result<(Fields, String), KbError> {
    let p = Path::new(query);
    if p.is_dir() {
        let (_, report) = investigate(p)?;
        Ok((report_fields(&report), fingerprint_text(&report)))
    } else {
        Ok((vec![(query.to_string(), 1.0)], query.to_string()))
    }
}

/// Adds entries (replacing any with the same id) in one commit.
pub async fn add(store: &Store, rows: &[IncidentRow]) -> Result<(), KbError> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    store.delete_incidents(&ids).await?;
    store.add_incidents(rows).await?;
    Ok(())
}

/// The `k` past incidents most similar to a query's fields, with their similarity (cosine, 1 =
/// same), among those fingerprinted by the same embedder.
pub async fn search(
    store: &Store,
    embedder: &TextEmbedder,
    query: Fields,
    k: usize,
) -> Result<Vec<(IncidentRow, f32)>, KbError> {
    let vector = embedder.embed(&[query]).await?.pop().unwrap_or_default();
    Ok(store.search_incidents(&vector, &embedder.name(), k).await?.into_iter().map(|(r, d)| (r, 1.0 - d)).collect())
}

/// The knowledge base for the agent's `search_similar_incidents`: a store, an embedder, and the
/// async runtime its blocking searches run on (its own, or the service's).
pub struct BlockingKb {
    rt: KbRuntime,
    store: Store,
    embedder: TextEmbedder,
}

enum KbRuntime {
    Owned(tokio::runtime::Runtime),
    Shared(tokio::runtime::Handle),
}

impl BlockingKb {
    /// Opens the store at `uri`, on a runtime of its own, with the configured embedder (offline
    /// unless an endpoint is set). For the command line.
    pub fn open(uri: &str) -> Result<BlockingKb, KbError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KbError::Io { path: PathBuf::from(uri), source: e })?;
        let store = rt.block_on(Store::open(uri))?;
        Ok(BlockingKb { rt: KbRuntime::Owned(rt), store, embedder: TextEmbedder::from_env()? })
    }

    /// The knowledge base over a store that is already open, searched on `runtime` (the
    /// service's, for its whole life). Its searches must be made from threads outside that
    /// runtime (the service's workers).
    pub fn shared(store: Store, runtime: tokio::runtime::Handle) -> Result<BlockingKb, KbError> {
        Ok(BlockingKb { rt: KbRuntime::Shared(runtime), store, embedder: TextEmbedder::from_env()? })
    }
}

/// How long the agent waits for the knowledge base (a store query, and an embeddings endpoint
/// when one is configured) before its search counts as timed out.
pub const SEARCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl PastIncidents for BlockingKb {
    fn search(&self, query: Fields, k: usize) -> Result<Vec<Match>, ToolError> {
        // The timer is made inside the future: it needs the runtime that `block_on` enters.
        let found = async { tokio::time::timeout(SEARCH_TIMEOUT, search(&self.store, &self.embedder, query, k)).await };
        let hits = match &self.rt {
            KbRuntime::Owned(rt) => rt.block_on(found),
            KbRuntime::Shared(h) => h.block_on(found),
        }
        .map_err(|_| ToolError::timeout("the knowledge base did not answer in time", SEARCH_TIMEOUT))?
        .map_err(|e| ToolError::upstream("the knowledge base could not be searched", e.to_string()))?;
        Ok(hits
            .into_iter()
            .map(|(r, sim)| Match {
                id: r.id,
                title: r.title,
                root_cause_service: r.root_cause_service,
                root_cause_kind: r.root_cause_kind,
                resolution: r.resolution,
                similarity: f64::from(sim),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_front_matter_is_read_and_errors_name_the_line() {
        let p = Path::new("pm.md");
        let md = "---\nroot_cause: orders-db\nkind: db_pool_exhaustion\nresolution: raise the pool size\nservices: [checkout, orders-db]\ndate: 2026-03-01\n---\n# Checkout down\n\nCheckout timed out for 20 minutes.\n";
        let r = from_markdown(p, md).unwrap();
        assert_eq!(r.root_cause_service, "orders-db");
        assert_eq!(r.title, "Checkout down");
        assert_eq!(r.summary, "Checkout timed out for 20 minutes.");
        assert_eq!(r.tags, vec!["checkout", "orders-db"]);
        assert!(r.time_ms > 0);
        let bad = from_markdown(p, "---\nroot_cause orders-db\n---\n").unwrap_err().to_string();
        assert_eq!(bad, "pm.md:2: expected `key: value`, found \"root_cause orders-db\"");
        let missing = from_markdown(p, "---\nkind: cpu\n---\n# x\n").unwrap_err().to_string();
        assert!(missing.contains("missing field `root_cause`"), "{missing}");
        let unclosed = from_markdown(p, "---\nroot_cause: a\n").unwrap_err().to_string();
        assert!(unclosed.contains("not closed"), "{unclosed}");
    }

    /// The service's knowledge base: a store opened once on its runtime, searched from a worker
    /// thread outside that runtime, within the time limit.
    #[test]
    fn a_shared_knowledge_base_is_searched_from_outside_its_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("store").display().to_string();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let store = rt.block_on(Store::open(&uri)).unwrap();
        let mut row = from_json(
            Path::new("pool.json"),
            r#"{"title": "orders-db pool exhausted", "root_cause": {"service": "orders-db", "kind": "db_pool_exhaustion"}}"#,
        )
        .unwrap();
        row.id = "pool".into();
        rt.block_on(async {
            let mut rows = vec![row];
            embed_entries(&TextEmbedder::Offline, &mut rows).await?;
            add(&store, &rows).await
        })
        .unwrap();
        let kb = BlockingKb { rt: KbRuntime::Shared(rt.handle().clone()), store, embedder: TextEmbedder::Offline };
        let hits = std::thread::spawn(move || kb.search(vec![("orders-db pool exhausted".into(), 1.0)], 3))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(hits.first().map(|m| m.root_cause_service.as_str()), Some("orders-db"), "{hits:?}");
        assert_eq!(crate::store::times_opened(&uri), 1);
    }

    #[test]
    fn json_incidents_need_a_root_cause() {
        let p = Path::new("i.json");
        let ok = from_json(p, r#"{"title": "t", "root_cause": {"service": "cart", "kind": "cpu"}}"#).unwrap();
        assert_eq!(ok.root_cause_service, "cart");
        let err = from_json(p, r#"{"title": "t"}"#).unwrap_err().to_string();
        assert!(err.contains("root_cause"), "{err}");
    }
}
