//! The store: LanceDB, embedded (a directory) or on S3 (`s3://…`, with the `s3` feature), with three tables.
//!
//! - `events`: telemetry events with their 64-d embeddings and anomaly scores, for k-NN queries
//!   filtered by source, service and time;
//! - `incidents`: the knowledge base of past incidents with a fingerprint embedding;
//! - `feedback`: operators' verdicts on investigations.
//!
//! Every append is one LanceDB commit: a writer killed mid-way leaves the rows of earlier commits
//! intact and the table readable. Vector and scalar indexes are built once a table is large enough
//! to gain from them ([`Store::ensure_indexes`]); filters are pushed down to the scan (prefilter).

use crate::embed::DIM;
use arrow_array::types::Float32Type;
use arrow_array::{Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::index::Index;
use lancedb::query::{ExecutableQuery, QueryBase};
use std::path::PathBuf;
use std::sync::Arc;

pub const EVENTS: &str = "events";
pub const INCIDENTS: &str = "incidents";
pub const FEEDBACK: &str = "feedback";
/// Rows from which a vector index pays off (an IVF partition wants a few hundred rows).
pub const INDEX_MIN_ROWS: usize = 50_000;
/// The store connection's cache of vector and scalar indexes, in bytes.
const INDEX_CACHE_BYTES: usize = 512 << 20;
/// Its cache of manifests and other metadata, in bytes.
const METADATA_CACHE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {uri}: {source}")]
    Lance { uri: String, source: lancedb::Error },
    #[error("store {uri}: table {table}: {message}")]
    Schema { uri: String, table: String, message: String },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(
        "store {uri}: this culprit was built without S3 support; build it with `cargo build --release --features s3`"
    )]
    NoS3 { uri: String },
}

/// Where the store lives unless told: `$CULPRIT_STORE`, else `culprit/store` under the user's data
/// directory (`$XDG_DATA_HOME`, else `~/.local/share`).
pub fn default_uri() -> String {
    if let Ok(uri) = std::env::var("CULPRIT_STORE") {
        if !uri.is_empty() {
            return uri;
        }
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("culprit/store").to_string_lossy().into_owned()
}

fn vector_field(name: &str) -> Field {
    Field::new(name, DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), DIM as i32), true)
}

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("time_ms", DataType::Int64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("environment", DataType::Utf8, false),
        // The event's features as JSON ({"cats": [...], "nums": [...]}): enough to retrain from.
        Field::new("attributes", DataType::Utf8, false),
        vector_field("vector"),
        Field::new("anomaly_score", DataType::Float32, true),
    ]))
}

pub fn incidents_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("time_ms", DataType::Int64, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("summary", DataType::Utf8, false),
        Field::new("root_cause_service", DataType::Utf8, false),
        Field::new("root_cause_kind", DataType::Utf8, false),
        Field::new("resolution", DataType::Utf8, false),
        Field::new("postmortem", DataType::Utf8, false),
        // Comma-separated.
        Field::new("tags", DataType::Utf8, false),
        Field::new("embedder", DataType::Utf8, false),
        vector_field("vector"),
    ]))
}

pub fn feedback_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("investigation_id", DataType::Utf8, false),
        Field::new("time_ms", DataType::Int64, false),
        Field::new("verdict", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, false),
        Field::new("author", DataType::Utf8, false),
    ]))
}

/// One telemetry event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: String,
    pub time_ms: i64,
    pub source: String,
    pub service: String,
    pub environment: String,
    pub attributes: String,
    pub vector: Option<Vec<f32>>,
    pub anomaly_score: Option<f32>,
}

/// One past incident of the knowledge base.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IncidentRow {
    pub id: String,
    pub time_ms: i64,
    pub title: String,
    pub summary: String,
    pub root_cause_service: String,
    pub root_cause_kind: String,
    pub resolution: String,
    pub postmortem: String,
    pub tags: Vec<String>,
    pub embedder: String,
    #[serde(skip)]
    pub vector: Vec<f32>,
}

/// A nearest-neighbour hit: the row's id, time, service and distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub time_ms: i64,
    pub service: String,
    pub distance: f32,
}

fn vectors(rows: impl Iterator<Item = Option<Vec<f32>>>) -> FixedSizeListArray {
    FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
        rows.map(|v| v.map(|v| v.into_iter().map(Some).collect::<Vec<_>>())),
        DIM as i32,
    )
}

fn strings<'a>(it: impl Iterator<Item = &'a str>) -> Arc<StringArray> {
    Arc::new(StringArray::from_iter_values(it))
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Maintained {
    pub fragments_removed: u64,
    pub fragments_added: u64,
    pub versions_removed: u64,
    pub bytes_removed: u64,
}

/// The shape of a table on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Health {
    pub fragments: usize,
    /// Fragments below the compaction target (each one a set of small files).
    pub small_fragments: usize,
    /// Versions kept (one manifest each).
    pub versions: usize,
    pub rows: usize,
    pub bytes: usize,
}

#[derive(Clone)]
pub struct Store {
    uri: String,
    db: lancedb::Connection,
}

/// How many times this process opened each store URI. A connection is meant to be long-lived
/// (the service opens its store once); tests read this to hold that.
static OPENED: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How many times this process has opened the store at `uri` (successfully or not).
pub fn times_opened(uri: &str) -> usize {
    OPENED.lock().map_or(0, |m| m.get(uri).copied().unwrap_or(0))
}

impl Store {
    /// Opens (or creates) the store at `uri` with its three tables.
    pub async fn open(uri: &str) -> Result<Store, StoreError> {
        if let Ok(mut m) = OPENED.lock() {
            *m.entry(uri.to_string()).or_default() += 1;
        }
        let err = |source| StoreError::Lance { uri: uri.to_string(), source };
        if uri.starts_with("s3://") && !cfg!(feature = "s3") {
            return Err(StoreError::NoS3 { uri: uri.to_string() });
        }
        if !uri.contains("://") {
            std::fs::create_dir_all(uri).map_err(|e| err(lancedb::Error::Runtime { message: e.to_string() }))?;
        }
        // Bounded caches: LanceDB's defaults (6 GiB of index, 1 GiB of metadata) let a
        // long-running service's memory grow with every version it has opened.
        let session = lancedb::Session::new(
            INDEX_CACHE_BYTES,
            METADATA_CACHE_BYTES,
            Arc::new(lancedb::ObjectStoreRegistry::default()),
        );
        let db = lancedb::connect(uri).session(Arc::new(session)).execute().await.map_err(err)?;
        let store = Store { uri: uri.to_string(), db };
        let names = store.db.table_names().execute().await.map_err(err)?;
        for (name, schema) in
            [(EVENTS, events_schema()), (INCIDENTS, incidents_schema()), (FEEDBACK, feedback_schema())]
        {
            if !names.iter().any(|n| n == name) {
                store.db.create_empty_table(name, schema).execute().await.map_err(err)?;
            }
        }
        Ok(store)
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn err(&self, source: lancedb::Error) -> StoreError {
        StoreError::Lance { uri: self.uri.clone(), source }
    }

    async fn table(&self, name: &str) -> Result<lancedb::Table, StoreError> {
        let t = self.db.open_table(name).execute().await.map_err(|e| self.err(e))?;
        let want = match name {
            EVENTS => events_schema(),
            INCIDENTS => incidents_schema(),
            _ => feedback_schema(),
        };
        let have = t.schema().await.map_err(|e| self.err(e))?;
        for f in want.fields() {
            match have.field_with_name(f.name()) {
                Ok(h) if h.data_type() == f.data_type() => {}
                _ => {
                    return Err(StoreError::Schema {
                        uri: self.uri.clone(),
                        table: name.to_string(),
                        message: format!(
                            "column {} is missing or has another type (written by another culprit version?)",
                            f.name()
                        ),
                    })
                }
            }
        }
        Ok(t)
    }

    pub async fn count(&self, table: &str, filter: Option<&str>) -> Result<usize, StoreError> {
        self.table(table).await?.count_rows(filter.map(str::to_string)).await.map_err(|e| self.err(e))
    }

    /// Appends events in one commit.
    pub async fn add_events(&self, rows: &[EventRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            events_schema(),
            vec![
                strings(rows.iter().map(|r| r.id.as_str())),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.time_ms))),
                strings(rows.iter().map(|r| r.source.as_str())),
                strings(rows.iter().map(|r| r.service.as_str())),
                strings(rows.iter().map(|r| r.environment.as_str())),
                strings(rows.iter().map(|r| r.attributes.as_str())),
                Arc::new(vectors(rows.iter().map(|r| r.vector.clone()))),
                Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.anomaly_score))),
            ],
        )?;
        self.table(EVENTS).await?.add(batch).execute().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes the versions (manifests and the files only they use) older than `keep`, then
    /// compacts the table's small files into larger ones. In that order, a version that the
    /// compaction replaces is removed only by the next pass, so a reader that began on it has
    /// until then. `sole_writer` says that nothing else writes to the table (the service's
    /// writer calls this between its commits; another process writing to the same store
    /// meanwhile is not supported), so files of unfinished commits cannot exist and young
    /// versions may go too; otherwise only versions older than a week are removed (LanceDB's
    /// guard for concurrent writers).
    pub async fn maintain(
        &self,
        table: &str,
        keep: std::time::Duration,
        sole_writer: bool,
    ) -> Result<Maintained, StoreError> {
        use lancedb::table::{CompactionOptions, OptimizeAction};
        let t = self.table(table).await?;
        let older_than = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::zero());
        let pruned = t
            .optimize(OptimizeAction::Prune {
                older_than: Some(older_than),
                delete_unverified: Some(sole_writer),
                error_if_tagged_old_versions: None,
            })
            .await
            .map_err(|e| self.err(e))?;
        let compacted = t
            .optimize(OptimizeAction::Compact { options: CompactionOptions::default(), remap_options: None })
            .await
            .map_err(|e| self.err(e))?;
        let (removed, added) =
            compacted.compaction.map_or((0, 0), |c| (c.fragments_removed as u64, c.fragments_added as u64));
        Ok(Maintained {
            fragments_removed: removed,
            fragments_added: added,
            versions_removed: pruned.prune.as_ref().map_or(0, |p| p.old_versions),
            bytes_removed: pruned.prune.as_ref().map_or(0, |p| p.bytes_removed),
        })
    }

    /// Fragments, versions kept, rows and bytes of a table (for `/metrics`).
    pub async fn health(&self, table: &str) -> Result<Health, StoreError> {
        let t = self.table(table).await?;
        let stats = t.stats().await.map_err(|e| self.err(e))?;
        let versions = t.list_versions().await.map_err(|e| self.err(e))?.len();
        Ok(Health {
            fragments: stats.fragment_stats.num_fragments,
            small_fragments: stats.fragment_stats.num_small_fragments,
            versions,
            rows: stats.num_rows,
            bytes: stats.total_bytes,
        })
    }

    /// Appends past incidents in one commit.
    pub async fn add_incidents(&self, rows: &[IncidentRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tags: Vec<String> = rows.iter().map(|r| r.tags.join(",")).collect();
        let batch = RecordBatch::try_new(
            incidents_schema(),
            vec![
                strings(rows.iter().map(|r| r.id.as_str())),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.time_ms))),
                strings(rows.iter().map(|r| r.title.as_str())),
                strings(rows.iter().map(|r| r.summary.as_str())),
                strings(rows.iter().map(|r| r.root_cause_service.as_str())),
                strings(rows.iter().map(|r| r.root_cause_kind.as_str())),
                strings(rows.iter().map(|r| r.resolution.as_str())),
                strings(rows.iter().map(|r| r.postmortem.as_str())),
                strings(tags.iter().map(String::as_str)),
                strings(rows.iter().map(|r| r.embedder.as_str())),
                Arc::new(vectors(rows.iter().map(|r| Some(r.vector.clone())))),
            ],
        )?;
        self.table(INCIDENTS).await?.add(batch).execute().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Deletes the incidents with these ids (re-adding one replaces it).
    pub async fn delete_incidents(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = ids.iter().map(|id| format!("'{}'", id.replace('\'', "''"))).collect();
        self.table(INCIDENTS)
            .await?
            .delete(format!("id IN ({})", list.join(",")).as_str())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The `k` past incidents nearest to `vector` made by `embedder`, nearest first.
    pub async fn search_incidents(
        &self,
        vector: &[f32],
        embedder: &str,
        k: usize,
    ) -> Result<Vec<(IncidentRow, f32)>, StoreError> {
        let t = self.table(INCIDENTS).await?;
        let batches: Vec<RecordBatch> = t
            .query()
            .only_if(format!("embedder = '{}'", embedder.replace('\'', "''")))
            .nearest_to(vector)
            .map_err(|e| self.err(e))?
            .distance_type(lancedb::DistanceType::Cosine)
            .limit(k)
            .execute()
            .await
            .map_err(|e| self.err(e))?
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for b in &batches {
            let s = |name: &str| -> Result<&StringArray, StoreError> { column(b, name, INCIDENTS, &self.uri) };
            let (id, title, summary) = (s("id")?, s("title")?, s("summary")?);
            let (svc, kind, res, pm, tags, emb) = (
                s("root_cause_service")?,
                s("root_cause_kind")?,
                s("resolution")?,
                s("postmortem")?,
                s("tags")?,
                s("embedder")?,
            );
            let time: &Int64Array = column(b, "time_ms", INCIDENTS, &self.uri)?;
            let dist: &Float32Array = column(b, "_distance", INCIDENTS, &self.uri)?;
            for i in 0..b.num_rows() {
                out.push((
                    IncidentRow {
                        id: id.value(i).to_string(),
                        time_ms: time.value(i),
                        title: title.value(i).to_string(),
                        summary: summary.value(i).to_string(),
                        root_cause_service: svc.value(i).to_string(),
                        root_cause_kind: kind.value(i).to_string(),
                        resolution: res.value(i).to_string(),
                        postmortem: pm.value(i).to_string(),
                        tags: tags.value(i).split(',').filter(|t| !t.is_empty()).map(str::to_string).collect(),
                        embedder: emb.value(i).to_string(),
                        vector: Vec::new(),
                    },
                    dist.value(i),
                ));
            }
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(out)
    }

    /// The `k` events nearest to `vector` among those matching `filter` (an SQL predicate such as
    /// `source = 'logs' AND service = 'cart'`), nearest first.
    pub async fn nearest_events(&self, vector: &[f32], filter: Option<&str>, k: usize) -> Result<Vec<Hit>, StoreError> {
        let t = self.table(EVENTS).await?;
        let mut q = t.query();
        if let Some(f) = filter {
            q = q.only_if(f);
        }
        let batches: Vec<RecordBatch> = q
            .select(lancedb::query::Select::columns(&["id", "time_ms", "service"]))
            .nearest_to(vector)
            .map_err(|e| self.err(e))?
            .nprobes(20)
            .map_err(|e| self.err(e))?
            .limit(k)
            .execute()
            .await
            .map_err(|e| self.err(e))?
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for b in &batches {
            let id: &StringArray = column(b, "id", EVENTS, &self.uri)?;
            let svc: &StringArray = column(b, "service", EVENTS, &self.uri)?;
            let time: &Int64Array = column(b, "time_ms", EVENTS, &self.uri)?;
            let dist: &Float32Array = column(b, "_distance", EVENTS, &self.uri)?;
            for i in 0..b.num_rows() {
                out.push(Hit {
                    id: id.value(i).to_string(),
                    time_ms: time.value(i),
                    service: svc.value(i).to_string(),
                    distance: dist.value(i),
                });
            }
        }
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Ok(out)
    }

    /// `time_ms`, `service` and `attributes` of at most `limit` events matching `filter`.
    async fn scan_events(&self, filter: String, limit: usize) -> Result<Vec<RecordBatch>, StoreError> {
        self.table(EVENTS)
            .await?
            .query()
            .only_if(filter)
            .select(lancedb::query::Select::columns(&["time_ms", "service", "attributes"]))
            .limit(limit)
            .execute()
            .await
            .map_err(|e| self.err(e))?
            .try_collect()
            .await
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` stored events of `source` as feature rows (for training from the store).
    /// Rows whose attributes cannot be read are skipped and counted in the log.
    pub async fn event_rows(&self, source: &str, limit: usize) -> Result<Vec<crate::embed::Row>, StoreError> {
        let batches = self.scan_events(format!("source = '{}'", source.replace('\'', "''")), limit).await?;
        #[derive(serde::Deserialize)]
        struct Attributes {
            cats: Vec<String>,
            nums: Vec<f32>,
        }
        let mut out = Vec::new();
        let mut bad = 0usize;
        for b in &batches {
            let time: &Int64Array = column(b, "time_ms", EVENTS, &self.uri)?;
            let svc: &StringArray = column(b, "service", EVENTS, &self.uri)?;
            let attrs: &StringArray = column(b, "attributes", EVENTS, &self.uri)?;
            for i in 0..b.num_rows() {
                match serde_json::from_str::<Attributes>(attrs.value(i)) {
                    Ok(a) => out.push(crate::embed::Row {
                        time: time.value(i),
                        service: svc.value(i).to_string(),
                        cats: a.cats,
                        nums: a.nums,
                    }),
                    Err(_) => bad += 1,
                }
            }
        }
        if bad > 0 {
            tracing::warn!(bad, source, "stored events with unreadable attributes skipped");
        }
        Ok(out)
    }

    /// Stored events of `source` with `from <= time_ms < to`, as (time, service, attributes),
    /// oldest first, at most `limit`.
    pub async fn events_between(
        &self,
        source: &str,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let batches = self
            .scan_events(
                format!("source = '{}' AND time_ms >= {from} AND time_ms < {to}", source.replace('\'', "''")),
                limit,
            )
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let time: &Int64Array = column(b, "time_ms", EVENTS, &self.uri)?;
            let svc: &StringArray = column(b, "service", EVENTS, &self.uri)?;
            let attrs: &StringArray = column(b, "attributes", EVENTS, &self.uri)?;
            for i in 0..b.num_rows() {
                out.push((time.value(i), svc.value(i).to_string(), attrs.value(i).to_string()));
            }
        }
        out.sort_by_key(|r| r.0);
        Ok(out)
    }

    /// Every operator verdict, oldest first.
    pub async fn feedback(&self) -> Result<Vec<FeedbackRow>, StoreError> {
        let t = self.table(FEEDBACK).await?;
        let batches: Vec<RecordBatch> =
            t.query().execute().await.map_err(|e| self.err(e))?.try_collect().await.map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for b in &batches {
            let s = |name: &str| column::<StringArray>(b, name, FEEDBACK, &self.uri);
            let (id, inv, verdict, service, kind, note, author) =
                (s("id")?, s("investigation_id")?, s("verdict")?, s("service")?, s("kind")?, s("note")?, s("author")?);
            let time: &Int64Array = column(b, "time_ms", FEEDBACK, &self.uri)?;
            for i in 0..b.num_rows() {
                out.push(FeedbackRow {
                    id: id.value(i).to_string(),
                    investigation_id: inv.value(i).to_string(),
                    time_ms: time.value(i),
                    verdict: verdict.value(i).to_string(),
                    service: service.value(i).to_string(),
                    kind: kind.value(i).to_string(),
                    note: note.value(i).to_string(),
                    author: author.value(i).to_string(),
                });
            }
        }
        out.sort_by_key(|f| f.time_ms);
        Ok(out)
    }

    /// Builds the indexes a table lacks once it is large enough: scalar indexes on the filter
    /// columns and, with `vector`, IVF-PQ on `vector`. Returns the names of the indexes built.
    pub async fn ensure_indexes(&self, table: &str, vector: bool) -> Result<Vec<String>, StoreError> {
        let t = self.table(table).await?;
        let rows = t.count_rows(None).await.map_err(|e| self.err(e))?;
        let have = t.list_indices().await.map_err(|e| self.err(e))?;
        let indexed = |c: &str| have.iter().any(|i| i.columns.iter().any(|x| x == c));
        let mut built = Vec::new();
        if table == EVENTS && rows >= INDEX_MIN_ROWS {
            for col in ["source", "service"] {
                if !indexed(col) {
                    t.create_index(&[col], Index::Bitmap(Default::default()))
                        .execute()
                        .await
                        .map_err(|e| self.err(e))?;
                    built.push(format!("{col} (bitmap)"));
                }
            }
            if !indexed("time_ms") {
                t.create_index(&["time_ms"], Index::BTree(Default::default()))
                    .execute()
                    .await
                    .map_err(|e| self.err(e))?;
                built.push("time_ms (btree)".to_string());
            }
            if vector && !indexed("vector") {
                t.create_index(&["vector"], Index::Auto).execute().await.map_err(|e| self.err(e))?;
                built.push("vector (IVF-PQ)".to_string());
            }
        }
        Ok(built)
    }

    /// Appends one feedback record.
    pub async fn add_feedback(&self, f: &FeedbackRow) -> Result<(), StoreError> {
        let batch = RecordBatch::try_new(
            feedback_schema(),
            vec![
                strings([f.id.as_str()].into_iter()),
                strings([f.investigation_id.as_str()].into_iter()),
                Arc::new(Int64Array::from_iter_values([f.time_ms])),
                strings([f.verdict.as_str()].into_iter()),
                strings([f.service.as_str()].into_iter()),
                strings([f.kind.as_str()].into_iter()),
                strings([f.note.as_str()].into_iter()),
                strings([f.author.as_str()].into_iter()),
            ],
        )?;
        self.table(FEEDBACK).await?.add(batch).execute().await.map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// An operator's verdict on an investigation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedbackRow {
    pub id: String,
    pub investigation_id: String,
    pub time_ms: i64,
    /// `confirm`, `reject` or `correct`.
    pub verdict: String,
    pub service: String,
    pub kind: String,
    pub note: String,
    pub author: String,
}

fn column<'a, T: Array + 'static>(b: &'a RecordBatch, name: &str, table: &str, uri: &str) -> Result<&'a T, StoreError> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).ok_or_else(|| StoreError::Schema {
        uri: uri.to_string(),
        table: table.to_string(),
        message: format!("column {name} is missing or has another type"),
    })
}
