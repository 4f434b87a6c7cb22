//! The TabularResNet encoder and its self-supervised training.
//!
//! Architecture (Gorishniy et al., "Revisiting Deep Learning Models for Tabular Data", 2021): one
//! learned embedding per categorical feature, concatenated with the standardised numeric features,
//! a linear stem, residual blocks `x + Dropout(Linear(Dropout(ReLU(Linear(BatchNorm(x))))))`, then
//! `Linear(ReLU(BatchNorm(x)))` to a 64-d embedding, L2-normalised.
//!
//! Training is SCARF (Bahri et al., ICLR'22): each row is corrupted by replacing a random subset of
//! its features with the same features of other rows of the batch, and an InfoNCE loss pulls a
//! row's embedding (through a projection head) towards its corrupted view and away from the other
//! rows'. A decoder reconstructs the numeric features from the clean row's embedding beside it
//! (a denoising-autoencoder term), so the numbers stay in the embedding. No labels are needed: the
//! model learns what normal rows look like.
//!
//! All randomness (initialisation, shuffling, corruption, dropout) comes from one ChaCha stream
//! seeded by the caller, not from libtorch's global generator, so a model is a function of its
//! data and seed even while other threads train their own.

use super::EmbedError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Shape of the network; recorded in the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Vocabulary size (including the unknown slot 0) of each categorical feature.
    pub vocab_sizes: Vec<i64>,
    pub numeric: i64,
    pub hidden: i64,
    pub blocks: usize,
    pub dropout: f64,
    pub out_dim: i64,
}

impl Architecture {
    pub fn embedding_dim(vocab: i64) -> i64 {
        (vocab / 2 + 1).clamp(2, 16)
    }
}

/// Training hyper-parameters; recorded in the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Upper bound on optimiser steps, whatever the data size.
    pub max_steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Share of a row's features replaced in its corrupted view.
    pub corruption: f64,
    pub temperature: f64,
    /// Weight of the numeric-feature reconstruction loss beside the contrastive one.
    pub reconstruction_weight: f64,
    pub seed: u64,
}

impl TrainConfig {
    /// The batch size and optimiser steps training takes on `n` rows.
    pub fn schedule(&self, n: usize) -> (usize, usize) {
        let batch = self.batch.clamp(2, n.max(2));
        (batch, (self.epochs * n.div_ceil(batch)).min(self.max_steps).max(1))
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            max_steps: 2000,
            batch: 256,
            learning_rate: 1e-3,
            corruption: 0.6,
            temperature: 0.5,
            reconstruction_weight: 1.0,
            seed: 7,
        }
    }
}

/// A batch of encoded rows: categorical indices `[n, c]` (i64) and standardised numbers `[n, d]`.
pub struct Batch {
    pub cats: Tensor,
    pub nums: Tensor,
}

impl Batch {
    /// `cats` row-major `n × c`, `nums` row-major `n × d`.
    pub fn new(cats: &[i64], nums: &[f32], c: usize, d: usize, device: Device) -> Batch {
        let n = cats.len().checked_div(c).unwrap_or(nums.len() / d.max(1));
        Batch {
            cats: Tensor::from_slice(cats).view([n as i64, c as i64]).to_device(device),
            nums: Tensor::from_slice(nums).view([n as i64, d as i64]).to_device(device),
        }
    }

    pub fn len(&self) -> i64 {
        self.cats.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn select(&self, idx: &Tensor) -> Batch {
        Batch { cats: self.cats.index_select(0, idx), nums: self.nums.index_select(0, idx) }
    }
}

struct Block {
    norm: nn::BatchNorm,
    first: nn::Linear,
    second: nn::Linear,
}

/// The encoder. Dropout masks are drawn from the caller's generator when training.
pub struct TabularResNet {
    embeddings: Vec<nn::Embedding>,
    stem: nn::Linear,
    blocks: Vec<Block>,
    norm: nn::BatchNorm,
    out: nn::Linear,
    dropout: f64,
}

impl TabularResNet {
    pub fn new(vs: &nn::Path, a: &Architecture) -> TabularResNet {
        let embeddings: Vec<nn::Embedding> = a
            .vocab_sizes
            .iter()
            .enumerate()
            .map(|(i, &v)| nn::embedding(vs / format!("cat{i}"), v, Architecture::embedding_dim(v), Default::default()))
            .collect();
        let input: i64 = a.vocab_sizes.iter().map(|&v| Architecture::embedding_dim(v)).sum::<i64>() + a.numeric;
        let blocks = (0..a.blocks)
            .map(|i| {
                let p = vs / format!("block{i}");
                Block {
                    norm: nn::batch_norm1d(&p / "norm", a.hidden, Default::default()),
                    first: nn::linear(&p / "first", a.hidden, a.hidden * 2, Default::default()),
                    second: nn::linear(&p / "second", a.hidden * 2, a.hidden, Default::default()),
                }
            })
            .collect();
        TabularResNet {
            embeddings,
            stem: nn::linear(vs / "stem", input.max(1), a.hidden, Default::default()),
            blocks,
            norm: nn::batch_norm1d(vs / "norm", a.hidden, Default::default()),
            out: nn::linear(vs / "out", a.hidden, a.out_dim, Default::default()),
            dropout: a.dropout,
        }
    }

    /// Embeddings `[n, out_dim]`, L2-normalised. `rng` gives the dropout masks when training.
    pub fn forward(&self, b: &Batch, train: bool, rng: &mut Option<&mut ChaCha8Rng>) -> Tensor {
        let mut parts: Vec<Tensor> =
            self.embeddings.iter().enumerate().map(|(i, e)| e.forward(&b.cats.select(1, i as i64))).collect();
        parts.push(b.nums.shallow_clone());
        let mut x = self.stem.forward(&Tensor::cat(&parts, 1));
        for block in &self.blocks {
            let h = block.norm.forward_t(&x, train);
            let h = self.drop(block.first.forward(&h).relu(), train, rng);
            // A new tensor, not `+=`: an in-place add would overwrite `x`, which autograd needs.
            #[allow(clippy::assign_op_pattern)]
            {
                x = x + self.drop(block.second.forward(&h), train, rng);
            }
        }
        let z = self.out.forward(&self.norm.forward_t(&x, train).relu());
        let norm = z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        z / norm
    }

    fn drop(&self, x: Tensor, train: bool, rng: &mut Option<&mut ChaCha8Rng>) -> Tensor {
        match rng {
            Some(rng) if train && self.dropout > 0.0 => {
                let keep = 1.0 - self.dropout;
                let mask: Vec<f32> =
                    (0..x.numel()).map(|_| if rng.gen_bool(keep) { 1.0 / keep as f32 } else { 0.0 }).collect();
                let mask = Tensor::from_slice(&mask).view(x.size().as_slice()).to_device(x.device());
                x * mask
            }
            _ => x,
        }
    }
}

/// Overwrites every parameter with a draw from `rng` (uniform ±1/√fan_in for weights, as PyTorch's
/// default; zeros for biases; ones for batch-norm scales), in name order.
pub fn init_from(vs: &nn::VarStore, rng: &mut ChaCha8Rng) {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut t) in vars {
            let size = t.size();
            let n = t.numel();
            let values: Vec<f32> = if name.ends_with("bias") || name.ends_with("running_mean") {
                vec![0.0; n]
            } else if name.contains("norm") || name.ends_with("running_var") {
                vec![1.0; n]
            } else if name.contains("/cat") || name.starts_with("cat") {
                (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
            } else {
                let fan_in = size.get(1).copied().unwrap_or(1).max(1) as f32;
                let bound = 1.0 / fan_in.sqrt();
                (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
            };
            let src = Tensor::from_slice(&values).view(size.as_slice()).to_device(t.device());
            t.copy_(&src);
        }
    });
}

/// The projection head used only while training (SCARF's `g`).
fn head(vs: &nn::Path, dim: i64) -> impl Module {
    nn::seq().add(nn::linear(vs / "h1", dim, dim, Default::default())).add_fn(|x| x.relu()).add(nn::linear(
        vs / "h2",
        dim,
        dim,
        Default::default(),
    ))
}

/// SCARF corruption: each cell is replaced, with probability `rate`, by the same column's value in
/// a random row of the batch.
fn corrupt(b: &Batch, rate: f64, rng: &mut ChaCha8Rng) -> Batch {
    let n = b.len();
    let mut swap = |t: &Tensor| -> Tensor {
        let cols = t.size()[1];
        if cols == 0 || n == 0 {
            return t.shallow_clone();
        }
        let cells = (n * cols) as usize;
        let rows: Vec<i64> = (0..cells).map(|_| rng.gen_range(0..n)).collect();
        let mask: Vec<bool> = (0..cells).map(|_| rng.gen_bool(rate)).collect();
        let rows = Tensor::from_slice(&rows).view([n, cols]).to_device(t.device());
        let mask = Tensor::from_slice(&mask).view([n, cols]).to_device(t.device());
        t.where_self(&mask.logical_not(), &t.gather(0, &rows, false))
    };
    Batch { cats: swap(&b.cats), nums: swap(&b.nums) }
}

/// Trains `model` (whose variables live in `vs`) on `data`; returns the mean loss of each epoch.
/// `progress` is called after every step with (step, total steps).
pub fn train(
    vs: &nn::VarStore,
    model: &TabularResNet,
    out_dim: i64,
    data: &Batch,
    cfg: &TrainConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f64>, EmbedError> {
    let n = data.len() as usize;
    if n < 2 {
        return Err(EmbedError::NotEnoughData { needed: 2, got: n });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let head_vs = nn::VarStore::new(vs.device());
    let g = head(&head_vs.root(), out_dim);
    let decoder = nn::linear(head_vs.root() / "decode", out_dim, data.nums.size()[1].max(1), Default::default());
    init_from(vs, &mut rng);
    init_from(&head_vs, &mut rng);
    let mut opt = nn::Adam::default().build(vs, cfg.learning_rate).map_err(EmbedError::Torch)?;
    let mut head_opt = nn::Adam::default().build(&head_vs, cfg.learning_rate).map_err(EmbedError::Torch)?;
    let (batch, total) = cfg.schedule(n);
    let mut losses = Vec::new();
    let mut step = 0;
    'epochs: for _ in 0..cfg.epochs.max(1) {
        let mut order: Vec<i64> = (0..n as i64).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in order.chunks(batch) {
            // Batch norm needs two rows; InfoNCE needs negatives.
            if chunk.len() < 2 {
                continue;
            }
            let idx = Tensor::from_slice(chunk).to_device(vs.device());
            let b = data.select(&idx);
            let view = corrupt(&b, cfg.corruption, &mut rng);
            let e1 = model.forward(&b, true, &mut Some(&mut rng));
            let z1 = normalise(&g.forward(&e1));
            let z2 = normalise(&g.forward(&model.forward(&view, true, &mut Some(&mut rng))));
            let logits = z1.matmul(&z2.tr()) / cfg.temperature;
            let labels = Tensor::arange(chunk.len() as i64, (Kind::Int64, vs.device()));
            let contrastive =
                (logits.cross_entropy_for_logits(&labels) + logits.tr().cross_entropy_for_logits(&labels)) / 2.0;
            // Contrastive learning alone lets the embedding ignore numbers whenever the categories
            // identify a row (one metric of one service); reconstructing the numbers from the
            // embedding keeps them in it, so a value far from normal lands far from normal rows.
            let reconstruction = if b.nums.size()[1] > 0 {
                decoder.forward(&e1).mse_loss(&b.nums, tch::Reduction::Mean)
            } else {
                Tensor::zeros([], (Kind::Float, vs.device()))
            };
            let loss = contrastive + reconstruction * cfg.reconstruction_weight;
            opt.zero_grad();
            head_opt.zero_grad();
            loss.backward();
            opt.step();
            head_opt.step();
            sum += loss.double_value(&[]);
            count += 1;
            step += 1;
            progress(step, total);
            if step >= total {
                losses.push(sum / count.max(1) as f64);
                break 'epochs;
            }
        }
        losses.push(sum / count.max(1) as f64);
    }
    Ok(losses)
}

fn normalise(z: &Tensor) -> Tensor {
    let norm = z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    z / norm
}

/// Embeds `data` in eval mode, in chunks; returns `n × out_dim` values row-major.
pub fn embed(model: &TabularResNet, data: &Batch, out_dim: usize) -> Result<Vec<f32>, EmbedError> {
    const CHUNK: i64 = 16_384;
    let n = data.len();
    let mut out = Vec::with_capacity(n as usize * out_dim);
    tch::no_grad(|| -> Result<(), EmbedError> {
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let b = Batch { cats: data.cats.narrow(0, start, len), nums: data.nums.narrow(0, start, len) };
            let z = model.forward(&b, false, &mut None).to_device(Device::Cpu).contiguous().view([-1]);
            let v: Vec<f32> = Vec::try_from(&z).map_err(EmbedError::Torch)?;
            out.extend_from_slice(&v);
            start += len;
        }
        Ok(())
    })?;
    Ok(out)
}
