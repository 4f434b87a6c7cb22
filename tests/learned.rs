//! The learned parts: tch embedders (training, saving, the feature check, drift), the k-NN
//! detector, the LanceDB store (crash safety, filtered k-NN) and the knowledge base.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use culprit::embed::knn::{self, KnnConfig};
use culprit::embed::net::TrainConfig;
use culprit::embed::{features, Embedder, Row, SourceKind, DIM};
use culprit::ingest;
use culprit::model::{Incident, ReadReport};
use culprit::simulate::{self, FaultKind, SimConfig};
use culprit::store::Store;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;

fn culprit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_culprit")).args(args).output().expect("run culprit")
}

/// `culprit train --source SOURCE --from BUNDLE --out MODELS --max-steps STEPS`, which must succeed.
fn train(source: &str, bundle: &std::path::Path, models: &std::path::Path, steps: &str) {
    let out = culprit(&[
        "train",
        "--source",
        source,
        "--from",
        bundle.to_str().unwrap(),
        "--out",
        models.to_str().unwrap(),
        "--max-steps",
        steps,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn sim(seed: u64, fault: FaultKind) -> Incident {
    simulate::simulate(&SimConfig { fault: Some(fault), ..SimConfig::for_seed(seed) })
}

fn reference_rows(incident: &Incident, source: SourceKind) -> Vec<Row> {
    let mut rows = Vec::new();
    features::for_each_row(source, &incident.telemetry, &mut ReadReport::default(), |r| {
        if r.time < incident.analysis_start {
            rows.push(r)
        }
    });
    rows
}

fn quick() -> TrainConfig {
    TrainConfig { epochs: 2, max_steps: 60, ..TrainConfig::default() }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// `culprit train` writes weights and a card; the model reloads to the same embeddings, training
/// is a function of data and seed, and a card whose features differ is refused by name.
#[test]
fn train_save_load_and_refuse_mismatched_features() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let incident = sim(5, FaultKind::CpuHog);
    ingest::write_bundle(&incident, incident.truth.as_ref(), &bundle).unwrap();
    let models = dir.path().join("models");
    train("traces", &bundle, &models, "40");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("traces.card.json")).unwrap()).unwrap();
    assert_eq!(card["source"], "traces");
    assert_eq!(card["features"]["numeric"][0], "duration");
    assert!(!card["training"]["loss_curve"].as_array().unwrap().is_empty());
    assert!(card["training"]["data_window"][0].as_i64().unwrap() < incident.analysis_start);

    let rows = reference_rows(&incident, SourceKind::Traces);
    let loaded = Embedder::load(&models, SourceKind::Traces).unwrap();
    let z = loaded.embed(&rows[..100]).unwrap();
    assert_eq!(z.len(), 100 * DIM);
    let norm: f32 = z[..DIM].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "embeddings are unit vectors, got norm {norm}");
    assert_eq!(Embedder::load(&models, SourceKind::Traces).unwrap().embed(&rows[..100]).unwrap(), z);

    let a = Embedder::fit(SourceKind::Traces, &rows, "test", &quick(), |_, _| {}).unwrap();
    let b = Embedder::fit(SourceKind::Traces, &rows, "test", &quick(), |_, _| {}).unwrap();
    assert_eq!(a.card.training.loss_curve, b.card.training.loss_curve, "same data and seed, same model");
    assert_eq!(a.embed(&rows[..50]).unwrap(), b.embed(&rows[..50]).unwrap());
    let first = a.card.training.loss_curve[0];
    let long = Embedder::fit(
        SourceKind::Traces,
        &rows,
        "test",
        &TrainConfig { epochs: 4, max_steps: 400, ..quick() },
        |_, _| {},
    )
    .unwrap();
    assert!(
        *long.card.training.loss_curve.last().unwrap() < first,
        "training lowers the loss: {:?}",
        long.card.training.loss_curve
    );

    // A model trained with other features is refused with the file and the reason.
    let path = models.join("traces.card.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"queue_time\"", "\"wait_time\"");
    std::fs::write(&path, text).unwrap();
    let err = Embedder::load(&models, SourceKind::Traces).err().expect("refused").to_string();
    assert!(err.contains("traces.card.json") && err.contains("do not match") && err.contains("wait_time"), "{err}");
    let err = Embedder::load(&models, SourceKind::Logs).err().expect("no logs model").to_string();
    assert!(err.contains("no logs model"), "{err}");
}

/// The k-NN detector names the faulty service for faults that change what its events look like,
/// and stays quiet on most services of a fault-free window.
#[test]
fn knn_detector_flags_the_faulty_service() {
    let cfg = KnnConfig {
        train: TrainConfig { epochs: 2, max_steps: 120, ..TrainConfig::default() },
        ..KnnConfig::default()
    };
    let det = culprit::detect::DetectConfig::default();
    let mut hits = 0;
    let cases = [
        (31, FaultKind::CpuHog),
        (32, FaultKind::BadDeploy),
        (33, FaultKind::DbPoolExhaustion),
        (34, FaultKind::Latency),
    ];
    for (seed, kind) in cases {
        let incident = sim(seed, kind);
        let truth = incident.truth.clone().unwrap();
        let mut d = culprit::detect::Detection::default();
        knn::detect(&incident, &cfg, &det, &mut d);
        let flagged: Vec<&str> = d.anomalies.iter().map(|a| a.service.as_str()).collect();
        assert!(d.anomalies.iter().all(|a| a.indicator == "embedding" && a.onset >= incident.analysis_start));
        if flagged.contains(&truth.service.as_str()) {
            hits += 1;
        }
    }
    assert!(hits >= 2, "the faulty service was flagged in only {hits} of {}", cases.len());
    // Where the statistical detectors already found something, it adds nothing.
    let incident = sim(31, FaultKind::CpuHog);
    let mut d = culprit::detect::detect(&incident, &det);
    let before = d.anomalies.len();
    assert!(before > 0);
    knn::detect(&incident, &cfg, &det, &mut d);
    let (statistical, learned) = d.anomalies.split_at(before);
    for a in learned {
        assert!(
            !statistical.iter().any(|b| b.service == a.service),
            "{a:?}: the statistical detectors already flagged {}",
            a.service
        );
    }
    let quiet = sim(35, FaultKind::None);
    let mut d = culprit::detect::Detection::default();
    knn::detect(&quiet, &cfg, &det, &mut d);
    let services: std::collections::BTreeSet<&str> = d.anomalies.iter().map(|a| a.service.as_str()).collect();
    assert!(services.len() <= 2, "fault-free window: {services:?} flagged");
}

/// `culprit models status` is fine on data like the training data, and asks for a retrain when
/// the data has moved (a larger system with services the model never saw).
#[test]
fn models_status_reports_drift() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let incident = sim(41, FaultKind::None);
    ingest::write_bundle(&incident, incident.truth.as_ref(), &a).unwrap();
    let models = dir.path().join("models");
    train("traces", &a, &models, "150");
    let same = culprit(&["models", "status", "--models", models.to_str().unwrap(), "--recent", a.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success(), "{text}");
    assert!(
        text.contains("traces   ok") && text.contains("no drift") && text.contains("logs     not trained"),
        "{text}"
    );

    let b = dir.path().join("b");
    let other =
        simulate::simulate(&SimConfig { services: 30, fault: Some(FaultKind::None), ..SimConfig::for_seed(77) });
    ingest::write_bundle(&other, other.truth.as_ref(), &b).unwrap();
    let moved = culprit(&["models", "status", "--models", models.to_str().unwrap(), "--recent", b.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&moved.stdout);
    assert_eq!(moved.status.code(), Some(3), "{text}");
    assert!(text.contains("traces   RETRAIN: drift"), "{text}");
}

/// Killing `culprit store ingest` with SIGKILL loses no committed rows; the store opens again,
/// takes more rows and answers filtered k-NN queries.
#[test]
fn sigkill_during_ingest_loses_no_committed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let incident = sim(51, FaultKind::Latency);
    ingest::write_bundle(&incident, incident.truth.as_ref(), &bundle).unwrap();
    let models = dir.path().join("models");
    train("logs", &bundle, &models, "20");
    let store = dir.path().join("store");
    let mut child = Command::new(env!("CARGO_BIN_EXE_culprit"))
        .args(["store", "ingest", bundle.to_str().unwrap(), "--store", store.to_str().unwrap()])
        .args(["--models", models.to_str().unwrap(), "--batch", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut committed = 0usize;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while committed < 1500 {
        let line = lines.next().expect("ingest ended before the kill").unwrap();
        committed = line.trim_start_matches("committed ").trim_end_matches(" rows").parse().unwrap();
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let rt = rt();
    let s = rt.block_on(Store::open(store.to_str().unwrap())).expect("the store opens after the kill");
    let rows = rt.block_on(s.count("events", None)).unwrap();
    assert!(rows >= committed, "{rows} rows stored, {committed} reported committed");
    let logs = rt.block_on(s.count("events", Some("source = 'logs'"))).unwrap();
    assert!(logs > 0);

    // It takes more rows, and a filtered k-NN query returns only matching rows, nearest first.
    let out = culprit(&[
        "store",
        "ingest",
        bundle.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
        "--no-index",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(rt.block_on(s.count("events", None)).unwrap() > rows);
    let model = Embedder::load(&models, SourceKind::Logs).unwrap();
    let probe = reference_rows(&incident, SourceKind::Logs).into_iter().find(|r| r.service == "checkout").unwrap();
    let v = model.embed(std::slice::from_ref(&probe)).unwrap();
    let hits = rt.block_on(s.nearest_events(&v, Some("source = 'logs' AND service = 'checkout'"), 10)).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.service == "checkout"));
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    assert!(hits[0].distance < 1e-3, "the probe itself is stored: {:?}", hits[0]);
}

/// The knowledge base finds the right past incident for held-apart simulated incidents whose
/// twins (same fault, same service, another seed) are in it, among other past incidents.
#[test]
fn kb_search_finds_twins_of_held_apart_incidents() {
    let dir = tempfile::tempdir().unwrap();
    // Group seeds by (fault kind, faulty service); a twin pair is two seeds of one group.
    let mut groups: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for seed in 400..520 {
        let cfg = SimConfig::for_seed(seed);
        let kind = FaultKind::for_seed(seed);
        if kind == FaultKind::None {
            continue;
        }
        let truth = simulate::simulate(&cfg).truth.unwrap();
        groups.entry((truth.kind.clone(), truth.service.clone())).or_default().push(seed);
    }
    let pairs: Vec<(u64, u64)> = groups.values().filter(|s| s.len() >= 2).map(|s| (s[0], s[1])).take(10).collect();
    assert_eq!(pairs.len(), 10, "need 10 twin pairs: {groups:?}");
    let write = |seed: u64| {
        let path = dir.path().join(format!("seed-{seed}"));
        let incident = simulate::simulate(&SimConfig::for_seed(seed));
        ingest::write_bundle(&incident, incident.truth.as_ref(), &path).unwrap();
        path
    };
    let mut known: Vec<String> = pairs.iter().map(|p| write(p.0).to_string_lossy().into_owned()).collect();
    // Distractors: one incident of each group that has no pair in the test.
    for seeds in groups.values().filter(|s| s.len() == 1) {
        known.push(write(seeds[0]).to_string_lossy().into_owned());
    }
    let store = dir.path().join("kb");
    let mut args = vec!["kb", "add", "--store", store.to_str().unwrap()];
    args.extend(known.iter().map(String::as_str));
    let out = culprit(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut found = 0;
    let mut misses = Vec::new();
    for (twin, query) in &pairs {
        let q = write(*query);
        let out =
            culprit(&["kb", "search", q.to_str().unwrap(), "--store", store.to_str().unwrap(), "-k", "3", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = hits[0]["incident"]["id"].as_str().unwrap_or_default().to_string();
        let expected = simulate::simulate(&SimConfig::for_seed(*twin)).id;
        if top == expected {
            found += 1;
        } else {
            misses.push((expected, top));
        }
    }
    assert!(found >= 9, "found {found} of 10; misses (expected, got): {misses:?}");
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Two markdown postmortems (a pool exhaustion, a memory leak) written into `dir`.
fn postmortems(dir: &std::path::Path) -> (String, String) {
    let a = write(dir, "pool.md", "---\nroot_cause: orders-db\nkind: db_pool_exhaustion\nresolution: raise max pool size to 200\n---\n# Checkout timeouts\n\nThe orders-db connection pool was exhausted; checkout requests timed out.\n");
    let b = write(dir, "leak.md", "---\nroot_cause: recommendation\nkind: memory_leak\nresolution: roll back v2.3\n---\n# Recommendation OOM kills\n\nHeap grew after deploy v2.3 until the pods were OOM-killed.\n");
    (a, b)
}

/// Text questions reach markdown postmortems; a bad postmortem is reported with file and line,
/// and the good ones are still added.
#[test]
fn kb_add_markdown_and_search_text() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = postmortems(dir.path());
    let bad = write(dir.path(), "bad.md", "---\nroot_cause orders-db\n---\n");
    let store = dir.path().join("kb");
    let out = culprit(&["kb", "add", "--store", store.to_str().unwrap(), &a, &b, &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.md:2: expected `key: value`"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("added 2 incidents"));
    let out = culprit(&[
        "kb",
        "search",
        "connection pool exhausted, checkout timing out",
        "--store",
        store.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("1. pool"), "{text}");
    assert!(text.contains("resolution: raise max pool size to 200"), "{text}");
}

/// With an OpenAI-compatible embeddings endpoint configured (a real llama.cpp server on
/// 127.0.0.1), `kb add` fingerprints entries through it and records which embedder did; `kb
/// search` compares only fingerprints of the same embedder; an unreachable endpoint or a
/// half-set configuration is a clear error that adds nothing.
#[test]
fn kb_uses_an_openai_compatible_embeddings_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = postmortems(dir.path());
    let store = dir.path().join("kb");
    let store = store.to_str().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_culprit"));
        c.args(args).env_remove("CULPRIT_EMBEDDINGS_URL").env_remove("CULPRIT_EMBEDDINGS_MODEL");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };

    // Unreachable: an error naming the endpoint, and nothing stored.
    let dead = [("CULPRIT_EMBEDDINGS_URL", "http://127.0.0.1:9/v1"), ("CULPRIT_EMBEDDINGS_MODEL", "m")];
    let out = run(&dead, &["kb", "add", "--store", store, &a]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://127.0.0.1:9/v1"), "{err}");
    // Half-set.
    let out = run(&[("CULPRIT_EMBEDDINGS_URL", "http://127.0.0.1:9/v1")], &["kb", "search", "pool", "--store", store]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CULPRIT_EMBEDDINGS_MODEL is not"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = common::LlmServer::start(&["--embedding", "true"]);
    let live =
        [("CULPRIT_EMBEDDINGS_URL", server.base_url.as_str()), ("CULPRIT_EMBEDDINGS_MODEL", server.model.as_str())];
    let out = run(&live, &["kb", "add", "--store", store, &a, &b]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("added 2 incidents"));
    // Exit 0 with hits, 3 with none.
    let search = |env: &[(&str, &str)]| {
        let out = run(env, &["kb", "search", "connection pool exhausted", "--store", store, "--json"]);
        let hits = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap();
        let expected = if hits.is_empty() { 3 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{}", String::from_utf8_lossy(&out.stderr));
        hits
    };
    let hits = search(&live);
    assert_eq!(hits.len(), 2, "{hits:?}");
    for h in &hits {
        assert_eq!(h["incident"]["embedder"], "endpoint:test-model", "{h}");
        let sim = h["similarity"].as_f64().unwrap();
        assert!((-1.0..=1.0001).contains(&sim), "{sim}");
    }
    assert_eq!(search(&live), hits, "the same question gets the same answer");
    // The offline embedder's fingerprints live in another space: it sees none of these.
    assert!(search(&[]).is_empty());
}

#[test]
fn store_open_reports_an_unusable_uri() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = rt().block_on(Store::open(file.to_str().unwrap())).err().expect("a file is not a store").to_string();
    assert!(err.contains("not-a-dir"), "{err}");
}

/// The eval harness runs culprit with and without the embedding detector side by side; on the CI
/// suite the detector must not lower AC@1 nor raise the false-positive rate.
#[test]
fn embedding_detector_does_not_lower_accuracy_on_the_ci_suite() {
    use culprit::eval::Method;
    use culprit::eval::{self, EvalOptions};
    let opts = EvalOptions { methods: vec![Method::Culprit, Method::CulpritEmbed], ..Default::default() };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for suite in eval::suites(root.join("evals/ci.toml").to_str().unwrap()).unwrap() {
        let r = eval::run_suite(&suite, &opts, &|| {});
        let refs: Vec<&eval::CaseResult> = r.results.iter().collect();
        let plain = eval::score(&refs, Method::Culprit);
        let embed = eval::score(&refs, Method::CulpritEmbed);
        assert_eq!(embed.invalid, 0, "{}: invalid cases with the embedding detector", suite.name);
        assert!(
            embed.ac1 >= plain.ac1,
            "{}: AC@1 {:.3} with embeddings < {:.3} without",
            suite.name,
            embed.ac1,
            plain.ac1
        );
        assert!(embed.fpr.unwrap_or(0.0) <= plain.fpr.unwrap_or(0.0), "{}: FPR rose with embeddings", suite.name);
    }
}
