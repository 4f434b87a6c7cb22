//! The k-NN embedding detector (seed 001, step 3): a service is anomalous when many of its recent
//! events sit farther from its baseline events, in a learned embedding, than baseline events sit
//! from each other.
//!
//! Per source (logs, metrics, traces) and service:
//! 1. reference events are sampled and split by time: `A`, the earlier two thirds, are the
//!    neighbours, and `H`, the last third, is held out to calibrate; an event's distance is to
//!    its k-th nearest event of `A` with the same identity (its categorical features: service and
//!    metric, operation and status, level and template);
//!    an event whose identity `A` lacks is not judged (new templates and operations have their own
//!    detectors); the threshold is the `quantile` of `H`'s distances, so a normal event exceeds
//!    it with probability `1 − quantile`;
//! 2. incident-period events are sampled per minute; a minute is anomalous when the share of its
//!    events beyond the threshold is large (`min_share`), improbable under that rate (a binomial
//!    z of at least the detectors' `z_threshold`) and larger than in any held-out minute (far
//!    events come in bursts, which the binomial bound ignores), for `sustain` minutes in a row;
//! 3. a service is judged only when its reference is large and long enough (`min_reference`,
//!    `min_reference_span`) and the statistical detectors found nothing wrong with it (see
//!    [`already_flagged`]): the detector looks for what per-signal statistics miss, and does not
//!    count their evidence a second time;
//! 4. when more than `max_concurrent` services turn anomalous in the same minute, the system as a
//!    whole shifted and no service is blamed (a note says so).
//!
//! The models come from a models directory (`culprit train`) or are fitted on the incident's own
//! reference period, which is what the eval harness does: no model ever sees the incident period
//! while learning.

use super::net::TrainConfig;
use super::{EmbedError, Embedder, Row, SourceKind, DIM};
use crate::detect::{Anomaly, DetectConfig, Detection};
use crate::model::{Incident, ReadReport, Ts, MINUTE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the detector's models come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Models {
    /// Trained models under this directory (`culprit train --out DIR`).
    Dir(PathBuf),
    /// Fit one model per source on the incident's reference period.
    FitOnReference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KnnConfig {
    pub models: Models,
    pub k: usize,
    /// Share of held-out reference events below the threshold.
    pub quantile: f64,
    /// Share of a minute's events beyond the threshold for the minute to count.
    pub min_share: f64,
    /// Fewest sampled events in a minute for it to be judged.
    pub min_bucket_events: usize,
    /// Fewest reference events of a service for it to be judged.
    pub min_reference: usize,
    /// Shortest time the reference events of a service must span for it to be judged: what is
    /// normal cannot be learned from a minute or two, and a threshold calibrated on so little
    /// flags noise.
    pub min_reference_span: Ts,
    /// Reference events sampled per service and source (split between neighbours and held-out).
    pub max_reference: usize,
    /// Most services of one source that may turn anomalous in the same minute and still be
    /// blamed; more is a system-wide shift.
    pub max_concurrent: usize,
    /// Incident-period events sampled per service, source and minute.
    pub max_per_minute: usize,
    /// Training events per source when fitting on the reference period.
    pub max_train_rows: usize,
    pub train: TrainConfig,
    pub seed: u64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            models: Models::FitOnReference,
            k: 5,
            quantile: 0.99,
            min_share: 0.1,
            min_bucket_events: 10,
            min_reference: 40,
            min_reference_span: 10 * MINUTE,
            max_reference: 2000,
            max_per_minute: 200,
            max_concurrent: 2,
            max_train_rows: 20_000,
            train: TrainConfig { epochs: 3, max_steps: 200, ..TrainConfig::default() },
            seed: 11,
        }
    }
}

/// A uniform sample of at most `cap` items from a stream (Vitter's algorithm R).
#[derive(Debug, Clone)]
struct Reservoir<T> {
    cap: usize,
    seen: u64,
    items: Vec<T>,
}

impl<T> Reservoir<T> {
    fn new(cap: usize) -> Self {
        Reservoir { cap, seen: 0, items: Vec::new() }
    }

    fn push(&mut self, x: T, rng: &mut ChaCha8Rng) {
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push(x);
        } else {
            let j = rng.gen_range(0..self.seen);
            if (j as usize) < self.cap {
                self.items[j as usize] = x;
            }
        }
    }
}

/// The sampled events of one source.
#[derive(Default)]
struct Sample {
    reference: BTreeMap<String, Reservoir<Row>>,
    current: BTreeMap<(String, i64), Reservoir<Row>>,
    train: Option<Reservoir<Row>>,
}

fn sample(incident: &Incident, source: SourceKind, cfg: &KnnConfig, report: &mut ReadReport) -> Sample {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ source as u64);
    let mut s = Sample {
        train: matches!(cfg.models, Models::FitOnReference).then(|| Reservoir::new(cfg.max_train_rows)),
        ..Sample::default()
    };
    let start = incident.analysis_start;
    super::features::for_each_split_row(incident, source, report, |r, reference| {
        if reference {
            if let Some(t) = &mut s.train {
                t.push(r.clone(), &mut rng);
            }
            s.reference.entry(r.service.clone()).or_insert_with(|| Reservoir::new(cfg.max_reference)).push(r, &mut rng);
        } else {
            let minute = (r.time - start).div_euclid(MINUTE);
            s.current
                .entry((r.service.clone(), minute))
                .or_insert_with(|| Reservoir::new(cfg.max_per_minute))
                .push(r, &mut rng);
        }
    });
    s
}

/// For each row of `queries` (`q × DIM`), the distance to its k-th nearest row of `base`.
fn kth_distance(queries: &[f32], base: &[f32], k: usize) -> Vec<f32> {
    let (q, b) = (queries.len() / DIM, base.len() / DIM);
    if q == 0 || b == 0 {
        return vec![f32::INFINITY; q];
    }
    let k = k.clamp(1, b) as i64;
    let qt = tch::Tensor::from_slice(queries).view([q as i64, DIM as i64]);
    let bt = tch::Tensor::from_slice(base).view([b as i64, DIM as i64]);
    // Rows are unit vectors: |x − y|² = 2 − 2 x·y.
    let sim = qt.matmul(&bt.tr());
    let (top, _) = sim.topk(k, 1, true, true);
    let kth = top.select(1, k - 1);
    let d = (kth * -2.0 + 2.0).clamp_min(0.0).sqrt().contiguous();
    Vec::<f32>::try_from(&d).unwrap_or_else(|_| vec![f32::INFINITY; q])
}

/// Reference embeddings per event identity.
type Neighbours<'a> = BTreeMap<&'a [String], Vec<f32>>;

/// What an event is, as opposed to how it went: its categorical features (service and metric;
/// service, operation and status; service, level and template). An event is compared with
/// reference events of the same identity only, so a service's many different series do not blur
/// one another, and what the event's numbers say decides.
fn identity(r: &Row) -> &[String] {
    &r.cats
}

/// Each row's distance to its k-th nearest reference event of the same identity (infinite when
/// the reference has none: a kind of event never seen before).
fn distances(rows: &[(&Row, &[f32])], neighbours: &Neighbours, k: usize) -> Vec<f32> {
    let mut by_identity: BTreeMap<&[String], Vec<usize>> = BTreeMap::new();
    for (i, (r, _)) in rows.iter().enumerate() {
        by_identity.entry(identity(r)).or_default().push(i);
    }
    let mut out = vec![f32::INFINITY; rows.len()];
    for (id, idx) in by_identity {
        let Some(base) = neighbours.get(id) else { continue };
        let queries: Vec<f32> = idx.iter().flat_map(|&i| rows[i].1.iter().copied()).collect();
        for (&i, d) in idx.iter().zip(kth_distance(&queries, base, k)) {
            out[i] = d;
        }
    }
    out
}

/// Runs the detector on every source with a model; adds anomalies and notes to `out`.
pub fn detect(incident: &Incident, cfg: &KnnConfig, det: &DetectConfig, out: &mut Detection) {
    let _span = tracing::info_span!("knn", incident = %incident.id).entered();
    for source in [SourceKind::Logs, SourceKind::Metrics, SourceKind::Traces] {
        let mut report = ReadReport::default();
        let s = sample(incident, source, cfg, &mut report);
        if !anything_to_judge(&s, cfg, out) {
            continue;
        }
        let model = match &cfg.models {
            Models::Dir(dir) => Embedder::load(dir, source),
            Models::FitOnReference => {
                let rows = s.train.as_ref().map(|t| t.items.as_slice()).unwrap_or_default();
                let what = format!("reference period of {}", incident.id);
                Embedder::fit(source, rows, &what, &cfg.train, |_, _| {})
            }
        };
        let model = match model {
            Ok(m) => m,
            Err(e) => {
                out.unchecked.push(format!("{source} embeddings: {e}"));
                continue;
            }
        };
        match judge(source, &model, &s, cfg, det, out) {
            Ok(found) => keep_local(source, found, cfg, out),
            Err(e) => out.unchecked.push(format!("{source} embeddings: {e}")),
        }
    }
}

/// Adds the anomalies that single out a few services; when more than `max_concurrent` services
/// turn anomalous in the same minute, the whole system shifted (load, the collection pipeline, a
/// shared dependency) and the detector cannot say where: those are noted, not attributed.
fn keep_local(source: SourceKind, found: Vec<(i64, Anomaly)>, cfg: &KnnConfig, out: &mut Detection) {
    let mut by_minute: BTreeMap<i64, Vec<Anomaly>> = BTreeMap::new();
    for (minute, a) in found {
        by_minute.entry(minute).or_default().push(a);
    }
    for (_, group) in by_minute {
        if group.len() > cfg.max_concurrent {
            let names: Vec<&str> = group.iter().map(|a| a.service.as_str()).collect();
            out.unchecked.push(format!(
                "{source} embeddings: {} services turned anomalous in the same minute ({}): a system-wide shift, not attributed",
                group.len(),
                names.join(", ")
            ));
        } else {
            out.anomalies.extend(group);
        }
    }
}

/// Whether the statistical detectors already found something wrong with this service, in any
/// source. The k-NN detector reads the same events: where they have spoken, another anomaly would
/// count the same evidence twice and pull the ranking towards services with many kinds of
/// evidence, not towards causes (on the real datasets it did). So it judges only services they
/// found nothing in, which is where a joint view of an event's features can add something.
fn already_flagged(out: &Detection, service: &str) -> bool {
    out.anomalies.iter().any(|a| a.service == service && a.indicator != "embedding")
}

/// The share of far events (beyond `threshold`) in each held-out minute with enough events.
fn reference_minute_shares(held: &[(&Row, &[f32])], d: &[f32], threshold: f32, min_events: usize) -> Vec<f64> {
    let mut per_minute: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for ((row, _), &d) in held.iter().zip(d).filter(|(_, d)| d.is_finite()) {
        let m = per_minute.entry(row.time.div_euclid(MINUTE)).or_default();
        m.0 += 1;
        m.1 += usize::from(d > threshold);
    }
    per_minute.values().filter(|(n, _)| *n >= min_events).map(|&(n, far)| far as f64 / n as f64).collect()
}

/// Why a service's reference cannot calibrate the detector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum ThinReference {
    #[error("{have} reference events (need {need})")]
    Events { have: usize, need: usize },
    #[error("the reference spans {have} s (need {need} s)")]
    Span { have: Ts, need: Ts },
}

/// Why a service's reference cannot calibrate the detector, if it cannot.
fn enough_reference(reference: &Reservoir<Row>, cfg: &KnnConfig) -> Result<(), ThinReference> {
    if reference.items.len() < cfg.min_reference {
        return Err(ThinReference::Events { have: reference.items.len(), need: cfg.min_reference });
    }
    let (first, last) = reference.items.iter().fold((Ts::MAX, Ts::MIN), |(a, b), r| (a.min(r.time), b.max(r.time)));
    if last - first < cfg.min_reference_span {
        return Err(ThinReference::Span { have: (last - first) / 1000, need: cfg.min_reference_span / 1000 });
    }
    Ok(())
}

/// A service's sampled incident-period events, per minute in order.
fn minutes_of<'a>(s: &'a Sample, service: &str) -> Vec<(i64, &'a Reservoir<Row>)> {
    s.current
        .range((service.to_string(), i64::MIN)..=(service.to_string(), i64::MAX))
        .map(|((_, m), r)| (*m, r))
        .collect()
}

/// Whether any service of this source will be judged (otherwise no model is needed).
fn anything_to_judge(s: &Sample, cfg: &KnnConfig, out: &Detection) -> bool {
    s.reference.iter().any(|(service, reference)| {
        !already_flagged(out, service) && !minutes_of(s, service).is_empty() && enough_reference(reference, cfg).is_ok()
    })
}

fn judge(
    source: SourceKind,
    model: &Embedder,
    s: &Sample,
    cfg: &KnnConfig,
    det: &DetectConfig,
    out: &mut Detection,
) -> Result<Vec<(i64, Anomaly)>, EmbedError> {
    let p0 = 1.0 - cfg.quantile;
    let mut found = Vec::new();
    for (service, reference) in &s.reference {
        if already_flagged(out, service) || minutes_of(s, service).is_empty() {
            tracing::debug!(%source, service, "k-NN skipped: flagged by the statistical detectors, or no incident-period events");
            continue;
        }
        let minutes = minutes_of(s, service);
        if let Err(why) = enough_reference(reference, cfg) {
            out.unchecked.push(format!("{source} embeddings of {service}: {why}"));
            continue;
        }
        let z = model.embed(&reference.items)?;
        let (mut neighbours, mut held): (Neighbours, Vec<(&Row, &[f32])>) = (Neighbours::default(), Vec::new());
        // Split by time, not at random: consecutive events of a series are near twins, and a
        // held-out event whose twin sits among the neighbours would calibrate a threshold no later
        // event can meet (every drifting series would then look anomalous).
        let mut times: Vec<Ts> = reference.items.iter().map(|r| r.time).collect();
        times.sort_unstable();
        let cut = times[times.len() * 2 / 3];
        for (row, e) in reference.items.iter().zip(z.chunks(DIM)) {
            if row.time < cut {
                neighbours.entry(identity(row)).or_default().extend_from_slice(e);
            } else {
                held.push((row, e));
            }
        }
        let held_d = distances(&held, &neighbours, cfg.k);
        // Incident events are judged against the whole reference, the held-out part included.
        for (row, e) in &held {
            neighbours.entry(identity(row)).or_default().extend_from_slice(e);
        }
        let mut calib: Vec<f32> = held_d.iter().copied().filter(|d| d.is_finite()).collect();
        if calib.is_empty() {
            continue;
        }
        calib.sort_by(f32::total_cmp);
        let threshold = calib[((calib.len() - 1) as f64 * cfg.quantile).round() as usize];
        let rate = p0.max(1.0 / calib.len() as f64);
        // Far events come in bursts (a series' consecutive points, a service's related series):
        // the largest share of far events in any held-out minute is what normal minutes reach,
        // and an incident minute must exceed it, not only the binomial bound.
        let normal_share =
            reference_minute_shares(&held, &held_d, threshold, cfg.min_bucket_events).into_iter().fold(0.0, f64::max);
        // Judge each minute.
        let mut flagged: Vec<(i64, f64, Ts, Ts, usize, usize)> = Vec::new();
        for (minute, rows) in &minutes {
            let n = rows.items.len();
            if n < cfg.min_bucket_events {
                continue;
            }
            let z = model.embed(&rows.items)?;
            let pairs: Vec<(&Row, &[f32])> = rows.items.iter().zip(z.chunks(DIM)).collect();
            let d = distances(&pairs, &neighbours, cfg.k);
            // Events of a kind the reference never had cannot be judged here (new log templates
            // and operations have their own detectors); only comparable events count.
            let n = d.iter().filter(|d| d.is_finite()).count();
            if n < cfg.min_bucket_events {
                continue;
            }
            let far: Vec<Ts> = rows
                .items
                .iter()
                .zip(&d)
                .filter(|(_, &d)| d.is_finite() && d > threshold)
                .map(|(r, _)| r.time)
                .collect();
            let x = far.len() as f64;
            let z = (x - n as f64 * rate) / (n as f64 * rate * (1.0 - rate)).sqrt();
            tracing::debug!(%source, service, minute, n, far = far.len(), z, threshold, "k-NN minute");
            let share = x / n as f64;
            if z >= det.z_threshold && share >= cfg.min_share && share > normal_share {
                let (first, last) = far.iter().fold((Ts::MAX, Ts::MIN), |(a, b), &t| (a.min(t), b.max(t)));
                flagged.push((*minute, z, first, last, far.len(), n));
            }
        }
        // The first run of `sustain` consecutive anomalous minutes.
        let sustain = det.sustain.max(1);
        let Some(run_start) = (0..flagged.len()).find(|&i| {
            i + sustain <= flagged.len() && (0..sustain).all(|j| flagged[i + j].0 == flagged[i].0 + j as i64)
        }) else {
            continue;
        };
        let mut run_end = run_start;
        while run_end + 1 < flagged.len() && flagged[run_end + 1].0 == flagged[run_end].0 + 1 {
            run_end += 1;
        }
        let run = &flagged[run_start..=run_end];
        let last_minute = minutes.last().map_or(i64::MIN, |m| m.0);
        let score = run.iter().map(|f| f.1).fold(0.0, f64::max).min(50.0);
        let (far, total) = run.iter().fold((0, 0), |(a, b), f| (a + f.4, b + f.5));
        found.push((run[0].0, Anomaly {
            service: service.clone(),
            source: source.detect_source(),
            indicator: "embedding".to_string(),
            signal: format!("{source} embedding k-NN distance"),
            onset: run[0].2,
            end: if run[run.len() - 1].0 >= last_minute { Ts::MAX } else { run[run.len() - 1].3 },
            score,
            direction: 1,
            measure: None,
            evidence: format!(
                "{service}: {far} of {total} sampled {source} events over {} min are farther from the baseline than {:.0} % of baseline events (k-NN distance > {threshold:.3})",
                run.len(),
                cfg.quantile * 100.0
            ),
        }));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kth_distance_of_unit_vectors() {
        let mut base = vec![0.0f32; 3 * DIM];
        base[0] = 1.0; // e0
        base[DIM + 1] = 1.0; // e1
        base[2 * DIM + 2] = 1.0; // e2
        let mut q = vec![0.0f32; DIM];
        q[0] = 1.0;
        let d1 = kth_distance(&q, &base, 1);
        let d2 = kth_distance(&q, &base, 2);
        assert!(d1[0].abs() < 1e-3, "{d1:?}");
        assert!((d2[0] - 2f32.sqrt()).abs() < 1e-3, "{d2:?}");
    }

    #[test]
    fn reservoir_keeps_a_bounded_uniform_sample() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut r = Reservoir::new(100);
        for i in 0..10_000 {
            r.push(i, &mut rng);
        }
        assert_eq!(r.items.len(), 100);
        let mean = r.items.iter().sum::<i32>() as f64 / 100.0;
        assert!((3500.0..6500.0).contains(&mean), "{mean}");
    }
}
