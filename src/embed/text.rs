//! Offline text embedding for the knowledge base: hashed word and word-pair features, weighted by
//! sublinear term frequency, projected to 64 dimensions by a fixed random projection (each feature
//! hashes to its own pseudo-random Gaussian direction), then L2-normalised. Cosine similarity of
//! two embeddings approximates the cosine of their sparse term vectors (Johnson–Lindenstrauss),
//! with no vocabulary to store and nothing to train.

use super::DIM;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A document to fingerprint: its fields (text) and their weights.
pub type Fields = Vec<(String, f32)>;

/// Identifies this embedder in stored rows, so vectors of different embedders are never mixed.
pub const NAME: &str = "culprit-hash-ngram-v1";

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "of", "on", "or", "that",
    "the", "to", "was", "were", "with", "this", "its", "into", "than", "then", "but", "not", "no",
];

/// Lower-cased word tokens without stop words and pure numbers; `-`, `_`, `/`, `.` and `:` split
/// too, so `orders-db` also yields `orders` and `db` beside the whole name.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ',' | ';' | '(' | ')' | '"' | '\'' | '`' | '[' | ']' | '{' | '}' | '=' | '*' | '#' | '|' | '!' | '?'
            )
    }) {
        let w = raw.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if w.is_empty() || STOP.contains(&w.as_str()) || w.chars().all(|c| c.is_ascii_digit() || c == '.') {
            continue;
        }
        let parts: Vec<&str> = w.split(['-', '_', '/', '.', ':']).filter(|p| p.len() > 1).collect();
        if parts.len() > 1 {
            out.extend(parts.iter().filter(|p| !p.chars().all(|c| c.is_ascii_digit())).map(|p| p.to_string()));
        }
        out.push(w);
    }
    out
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The embedding of `text` (all zeros for text without a single token).
pub fn embed(text: &str) -> Vec<f32> {
    embed_fields(&[(text, 1.0)])
}

/// The embedding of several fields of one document, each feature weighted by its field's weight
/// times its sublinear frequency in the field (a title or a root cause can count more than a
/// list of symptoms).
pub fn embed_fields(fields: &[(&str, f32)]) -> Vec<f32> {
    let mut weights: HashMap<String, f32> = HashMap::new();
    for (text, field_weight) in fields {
        let toks = tokens(text);
        let mut tf: HashMap<String, f32> = HashMap::new();
        for t in &toks {
            *tf.entry(t.clone()).or_default() += 1.0;
        }
        for pair in toks.windows(2) {
            *tf.entry(format!("{} {}", pair[0], pair[1])).or_default() += 0.5;
        }
        for (feature, count) in tf {
            *weights.entry(feature).or_default() += field_weight * (1.0 + count.max(0.5).ln().max(0.0));
        }
    }
    let mut v = vec![0.0f32; DIM];
    let mut keys: Vec<(&String, &f32)> = weights.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (feature, &weight) in keys {
        for (vj, dj) in v.iter_mut().zip(gaussian_direction(fnv(feature))) {
            *vj += weight * dj;
        }
    }
    normalise(&mut v);
    v
}

/// A standard normal vector drawn from `seed` (Box–Muller over a ChaCha stream).
fn gaussian_direction(seed: u64) -> [f32; DIM] {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut row = [0.0f32; DIM];
    for pair in row.chunks_mut(2) {
        let (u1, u2): (f32, f32) = (rng.gen_range(f32::EPSILON..1.0), rng.gen_range(0.0..1.0));
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f32::consts::TAU * u2;
        pair[0] = r * theta.cos();
        if let Some(y) = pair.get_mut(1) {
            *y = r * theta.sin();
        }
    }
    row
}

/// A fixed random projection of any vector to `DIM` dimensions, L2-normalised: angles are kept
/// approximately (Johnson–Lindenstrauss), so an endpoint's embeddings of any size fit the store's
/// 64-d columns. The projection of input dimension `i` is seeded by `i` alone: deterministic.
pub struct Projection {
    rows: Vec<[f32; DIM]>,
}

impl Projection {
    pub fn new(input_dim: usize) -> Self {
        let rows = (0..input_dim).map(|i| gaussian_direction(0x9e37_79b9_7f4a_7c15 ^ i as u64)).collect();
        Projection { rows }
    }

    pub fn input_dim(&self) -> usize {
        self.rows.len()
    }

    /// `x` projected and L2-normalised (all zeros for a zero vector); extra dimensions of `x`
    /// beyond [`Projection::input_dim`] are ignored.
    pub fn project(&self, x: &[f32]) -> Vec<f32> {
        let mut v = vec![0.0f32; DIM];
        for (xi, row) in x.iter().zip(&self.rows) {
            for (vj, rj) in v.iter_mut().zip(row) {
                *vj += xi * rj;
            }
        }
        normalise(&mut v);
        v
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let a = embed("checkout latency spike after orders-db connection pool exhausted");
        let b = embed("orders-db pool exhausted: checkout requests time out");
        let c = embed("memory leak in recommendation service after deploy v2.3");
        assert!(cosine(&a, &b) > cosine(&a, &c) + 0.2, "{} vs {}", cosine(&a, &b), cosine(&a, &c));
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(embed(""), vec![0.0; DIM]);
        assert_eq!(embed("same text"), embed("same text"));
    }

    #[test]
    fn projection_keeps_angles_roughly() {
        let p = Projection::new(512);
        let a: Vec<f32> = (0..512).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
        let b: Vec<f32> = a.iter().enumerate().map(|(i, x)| x + if i % 5 == 0 { 0.5 } else { 0.0 }).collect();
        let c: Vec<f32> = (0..512).map(|i| ((i * 11 % 17) as f32 - 8.0) / 8.0).collect();
        let cos = |x: &[f32], y: &[f32]| {
            let (mut x, mut y) = (x.to_vec(), y.to_vec());
            normalise(&mut x);
            normalise(&mut y);
            cosine(&x, &y)
        };
        let (pa, pb, pc) = (p.project(&a), p.project(&b), p.project(&c));
        assert!((cosine(&pa, &pb) - cos(&a, &b)).abs() < 0.2, "{} vs {}", cosine(&pa, &pb), cos(&a, &b));
        assert!((cosine(&pa, &pc) - cos(&a, &c)).abs() < 0.3, "{} vs {}", cosine(&pa, &pc), cos(&a, &c));
        assert_eq!(pa, Projection::new(512).project(&a));
        assert_eq!(p.project(&[0.0; 512]), vec![0.0; DIM]);
    }

    #[test]
    fn tokens_split_names_and_drop_noise() {
        assert_eq!(
            tokens("The orders-db timed out 3 times"),
            vec!["orders", "db", "orders-db", "timed", "out", "times"]
        );
    }
}
