//! A trained model with its card: fitting, saving, loading (with the feature check) and
//! embedding rows.

use super::drift::Profile;
use super::features::{FeatureSpec, Row};
use super::net::{self, Architecture, Batch, TabularResNet, TrainConfig};
use super::{EmbedError, SourceKind, DIM};
use crate::model::Ts;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device};

pub const CARD_FORMAT: &str = "culprit.model/v1";
/// Most values kept per categorical feature; rarer ones share the unknown slot.
const MAX_VOCAB: usize = 4096;
/// Rows embedded to profile the baseline for drift checks.
const PROFILE_ROWS: usize = 4000;

/// Everything needed to reuse and judge a model, saved beside its weights as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub source: SourceKind,
    pub features: FeatureSpec,
    /// Per categorical feature, its known values; value `i` is encoded as `i + 1`, unknown as 0.
    pub vocabularies: Vec<Vec<String>>,
    pub numeric_mean: Vec<f32>,
    pub numeric_std: Vec<f32>,
    pub architecture: Architecture,
    pub training: TrainingRecord,
    /// Distribution of the training data's embeddings, for drift checks.
    pub profile: Profile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub config: TrainConfig,
    pub events: usize,
    /// First and last event time of the training data (Unix ms).
    pub data_window: (Ts, Ts),
    /// Where the data came from (a bundle path, a store URI, "simulated seed 3", …).
    pub data: String,
    /// Mean InfoNCE loss per epoch.
    pub loss_curve: Vec<f64>,
    pub seconds: f64,
    pub device: String,
    /// RFC 3339 time of training.
    pub trained_at: String,
    pub culprit_version: String,
}

/// Maps rows to tensors with a card's vocabularies and normalisation.
struct Encoder<'a> {
    lookup: Vec<HashMap<&'a str, i64>>,
    mean: &'a [f32],
    std: &'a [f32],
}

impl<'a> Encoder<'a> {
    fn new(card: &'a ModelCard) -> Encoder<'a> {
        let lookup = card
            .vocabularies
            .iter()
            .map(|v| v.iter().enumerate().map(|(i, s)| (s.as_str(), i as i64 + 1)).collect())
            .collect();
        Encoder { lookup, mean: &card.numeric_mean, std: &card.numeric_std }
    }

    fn batch(&self, rows: &[Row], device: Device) -> Batch {
        let c = self.lookup.len();
        let d = self.mean.len();
        let mut cats = Vec::with_capacity(rows.len() * c);
        let mut nums = Vec::with_capacity(rows.len() * d);
        for r in rows {
            for (j, l) in self.lookup.iter().enumerate() {
                cats.push(r.cats.get(j).and_then(|v| l.get(v.as_str()).copied()).unwrap_or(0));
            }
            for j in 0..d {
                let x = r.nums.get(j).copied().unwrap_or(0.0);
                nums.push(((x - self.mean[j]) / self.std[j]).clamp(-20.0, 20.0));
            }
        }
        Batch::new(&cats, &nums, c, d, device)
    }
}

/// A model ready to embed rows of its source.
pub struct Embedder {
    pub card: ModelCard,
    vs: nn::VarStore,
    model: TabularResNet,
}

pub fn device() -> Device {
    Device::cuda_if_available()
}

fn paths(dir: &Path, source: SourceKind) -> (PathBuf, PathBuf) {
    (dir.join(format!("{source}.safetensors")), dir.join(format!("{source}.card.json")))
}

impl Embedder {
    /// Trains a model for `source` on `rows` (fault-free events). `data` says where they came from.
    pub fn fit(
        source: SourceKind,
        rows: &[Row],
        data: &str,
        cfg: &TrainConfig,
        progress: impl FnMut(usize, usize),
    ) -> Result<Embedder, EmbedError> {
        const MIN_ROWS: usize = 32;
        if rows.len() < MIN_ROWS {
            return Err(EmbedError::NotEnoughData { needed: MIN_ROWS, got: rows.len() });
        }
        let started = Instant::now();
        let features = FeatureSpec::of(source);
        let vocabularies = (0..features.categorical.len()).map(|j| vocabulary(rows, j)).collect::<Vec<_>>();
        let d = features.numeric.len();
        let mut mean = vec![0.0f64; d];
        let mut sq = vec![0.0f64; d];
        for r in rows {
            for j in 0..d {
                let x = f64::from(r.nums.get(j).copied().unwrap_or(0.0));
                mean[j] += x;
                sq[j] += x * x;
            }
        }
        let n = rows.len() as f64;
        let numeric_mean: Vec<f32> = mean.iter().map(|m| (m / n) as f32).collect();
        let numeric_std: Vec<f32> =
            (0..d).map(|j| ((sq[j] / n - (mean[j] / n).powi(2)).max(0.0).sqrt() as f32).max(1e-3)).collect();
        let architecture = Architecture {
            vocab_sizes: vocabularies.iter().map(|v| v.len() as i64 + 1).collect(),
            numeric: d as i64,
            hidden: 128,
            blocks: 2,
            dropout: 0.1,
            out_dim: DIM as i64,
        };
        let device = device();
        let vs = nn::VarStore::new(device);
        let model = TabularResNet::new(&vs.root(), &architecture);
        let (first, last) = rows.iter().fold((Ts::MAX, Ts::MIN), |(a, b), r| (a.min(r.time), b.max(r.time)));
        let mut card = ModelCard {
            format: CARD_FORMAT.to_string(),
            source,
            features,
            vocabularies,
            numeric_mean,
            numeric_std,
            architecture,
            training: TrainingRecord {
                config: cfg.clone(),
                events: rows.len(),
                data_window: (first, last),
                data: data.to_string(),
                loss_curve: Vec::new(),
                seconds: 0.0,
                device: format!("{device:?}"),
                trained_at: chrono::Utc::now().to_rfc3339(),
                culprit_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            profile: Profile::default(),
        };
        let batch = Encoder::new(&card).batch(rows, device);
        card.training.loss_curve = net::train(&vs, &model, DIM as i64, &batch, cfg, progress)?;
        let mut e = Embedder { card, vs, model };
        let step = (rows.len() / PROFILE_ROWS).max(1);
        let sample: Vec<Row> = rows.iter().step_by(step).cloned().collect();
        let z = e.embed(&sample)?;
        e.card.profile = Profile::of(&z, DIM);
        e.card.training.seconds = started.elapsed().as_secs_f64();
        Ok(e)
    }

    /// Embeddings of `rows`, `rows.len() × DIM` values row-major, each row of unit length.
    pub fn embed(&self, rows: &[Row]) -> Result<Vec<f32>, EmbedError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Encoder::new(&self.card).batch(rows, self.vs.device());
        net::embed(&self.model, &batch, DIM)
    }

    pub fn save(&self, dir: &Path) -> Result<(), EmbedError> {
        std::fs::create_dir_all(dir).map_err(|source| EmbedError::Io { path: dir.to_path_buf(), source })?;
        let (weights, card) = paths(dir, self.card.source);
        self.vs.save(&weights)?;
        let json = serde_json::to_string_pretty(&self.card)
            .map_err(|e| EmbedError::Card { path: card.clone(), message: e.to_string() })?;
        std::fs::write(&card, json).map_err(|source| EmbedError::Io { path: card, source })
    }

    /// Reads a model card alone (for status reports).
    pub fn read_card(dir: &Path, source: SourceKind) -> Result<ModelCard, EmbedError> {
        let (weights, path) = paths(dir, source);
        if !path.exists() || !weights.exists() {
            return Err(EmbedError::NoModel { dir: dir.to_path_buf(), kind: source });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| EmbedError::Io { path: path.clone(), source })?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|e| EmbedError::Card { path: path.clone(), message: e.to_string() })?;
        if card.format != CARD_FORMAT {
            return Err(EmbedError::Card {
                path,
                message: format!("format {:?}, this culprit reads {CARD_FORMAT:?}", card.format),
            });
        }
        Ok(card)
    }

    /// Loads the `source` model from `dir`, refusing one whose features differ from this
    /// culprit's extractor for that source.
    pub fn load(dir: &Path, source: SourceKind) -> Result<Embedder, EmbedError> {
        let card = Embedder::read_card(dir, source)?;
        let (weights, card_path) = paths(dir, source);
        check_features(&card, source).map_err(|misfit| EmbedError::FeatureMismatch {
            path: card_path.clone(),
            kind: source,
            message: misfit.to_string(),
        })?;
        let mut vs = nn::VarStore::new(device());
        let model = TabularResNet::new(&vs.root(), &card.architecture);
        vs.load(&weights)?;
        Ok(Embedder { card, vs, model })
    }
}

/// Why a model card does not fit this culprit's features.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Misfit {
    #[error("it is a {0} model")]
    Source(SourceKind),
    #[error("trained on {trained}, expected {expected}")]
    Features { trained: String, expected: String },
    #[error("vocabularies, normalisation and architecture disagree")]
    Shape,
}

/// Why a card cannot be used with this culprit's features for `source`, if it cannot.
pub fn check_features(card: &ModelCard, source: SourceKind) -> Result<(), Misfit> {
    let expected = FeatureSpec::of(source);
    if card.source != source {
        return Err(Misfit::Source(card.source));
    }
    if card.features != expected {
        return Err(Misfit::Features {
            trained: format!("{:?} + {:?}", card.features.categorical, card.features.numeric),
            expected: format!("{:?} + {:?}", expected.categorical, expected.numeric),
        });
    }
    let a = &card.architecture;
    if card.vocabularies.len() != expected.categorical.len()
        || a.vocab_sizes.len() != card.vocabularies.len()
        || card.numeric_mean.len() != expected.numeric.len()
        || card.numeric_std.len() != expected.numeric.len()
        || a.numeric as usize != expected.numeric.len()
        || a.out_dim as usize != DIM
    {
        return Err(Misfit::Shape);
    }
    Ok(())
}

/// The most frequent values of categorical feature `j` (ties by value, for determinism).
fn vocabulary(rows: &[Row], j: usize) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in rows {
        if let Some(v) = r.cats.get(j) {
            *counts.entry(v.as_str()).or_default() += 1;
        }
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().take(MAX_VOCAB).map(|(s, _)| s.to_string()).collect()
}
