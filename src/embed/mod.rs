//! Learned embedders: one TabularResNet per source type (logs, metrics, traces, changes), trained
//! without labels on fault-free data, turning each event into a 64-d vector where normal events
//! sit close together. The k-NN detector ([`knn`]) flags services whose recent events are far
//! from their baseline's; the drift check ([`drift`]) says when a model no longer fits its data.
//!
//! A trained model is two files under the models directory: `<source>.safetensors` (weights) and
//! `<source>.card.json` (the [`ModelCard`]: features, vocabularies, normalisation, architecture,
//! loss curve, data window, seed, and a profile of the baseline embeddings for drift checks).

pub mod drift;
pub mod embedder;
pub mod features;
pub mod knn;
pub mod net;
pub mod text;

pub use embedder::{Embedder, ModelCard};
pub use features::{FeatureSpec, Row};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Dimension of every embedding culprit stores.
pub const DIM: usize = 64;

/// The event source a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Logs,
    Metrics,
    Traces,
    Changes,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [SourceKind::Logs, SourceKind::Metrics, SourceKind::Traces, SourceKind::Changes];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Logs => "logs",
            SourceKind::Metrics => "metrics",
            SourceKind::Traces => "traces",
            SourceKind::Changes => "changes",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The detector source its anomalies are reported under.
    pub fn detect_source(self) -> crate::detect::Source {
        use crate::detect::Source;
        match self {
            SourceKind::Logs => Source::Log,
            SourceKind::Metrics => Source::Metric,
            SourceKind::Traces => Source::Trace,
            SourceKind::Changes => Source::Change,
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("not enough events to train: {got} (need at least {needed})")]
    NotEnoughData { needed: usize, got: usize },
    #[error("{}: {message}", path.display())]
    Card { path: PathBuf, message: String },
    #[error("{}: the model's features do not match this culprit's {kind} features: {message}; retrain it with `culprit train --source {kind}`", path.display())]
    FeatureMismatch { path: PathBuf, kind: SourceKind, message: String },
    #[error("no {kind} model in {} (train one with `culprit train --source {kind} --from BUNDLE --out {}`)", dir.display(), dir.display())]
    NoModel { dir: PathBuf, kind: SourceKind },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}
