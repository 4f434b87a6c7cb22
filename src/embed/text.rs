//! Offline text embedding for the knowledge base: hashed word and word-pair features, weighted by
//! sublinear term frequency, projected to 64 dimensions by a fixed random projection (each feature
//! hashes to its own pseudo-random Gaussian direction), then L2-normalised. Cosine similarity of
//! two embeddings approximates the cosine of their sparse term vectors (Johnson–Lindenstrauss),
//! with no vocabulary to store and nothing to train.

use super::DIM;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

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
    for raw in text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | '\'' | '`' | '[' | ']' | '{' | '}' | '=' | '*' | '#' | '|' | '!' | '?')) {
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
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(fnv(feature));
        for pair in v.chunks_mut(2) {
            // Box–Muller: two standard normal draws from two uniform ones.
            let (u1, u2): (f32, f32) = (rng.gen_range(f32::EPSILON..1.0), rng.gen_range(0.0..1.0));
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f32::consts::TAU * u2;
            pair[0] += weight * r * theta.cos();
            if let Some(y) = pair.get_mut(1) {
                *y += weight * r * theta.sin();
            }
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
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
    fn tokens_split_names_and_drop_noise() {
        assert_eq!(tokens("The orders-db timed out 3 times"), vec!["orders", "db", "orders-db", "timed", "out", "times"]);
    }
}
