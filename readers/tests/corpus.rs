//! Every input of the fuzz corpus, and every input that ever crashed a reader, read again through
//! the fuzz targets' bodies (`culprit_readers::fuzz`) on every test run: no nightly, no libFuzzer,
//! the same code paths. A panic here is a reader crash.
//!
//! - `readers/fuzz/seeds/<target>/`: hand-made inputs, one per format; each must read records, so
//!   a reader that silently stops understanding its format fails here too;
//! - `readers/fuzz/corpus/<target>.gz`: what `make fuzz` kept (minimised, packed), read without a
//!   crash;
//! - `readers/fuzz/crashes/<target>/`: inputs that crashed a reader once, read without a crash.

use culprit_readers::fuzz::{self, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Seeds that are not telemetry: the bundle loads (1) without records.
fn holds_no_records(name: &str) -> bool {
    ["incident", "mapping", "truth", "topology"].iter().any(|p| name.starts_with(&format!("{p}.")))
}

#[test]
fn every_seed_is_read_into_records() {
    let mut unread = Vec::new();
    for (target, body) in TARGETS {
        let seeds = fuzz::dir_inputs(&fuzz_dir().join("seeds").join(target)).unwrap();
        assert!(seeds.len() >= 3, "{target}: only {} seeds", seeds.len());
        for (name, input) in seeds {
            let n = body(&input);
            let least = if target == "bundle" && !holds_no_records(&name) { 2 } else { 1 };
            if n < least {
                unread.push(format!("{target}/{name}: {n} records read, expected at least {least}"));
            }
        }
    }
    assert!(unread.is_empty(), "{}", unread.join("\n"));
}

#[test]
fn every_bundle_format_has_a_seed() {
    let firsts: Vec<u8> =
        fuzz::dir_inputs(&fuzz_dir().join("seeds/bundle")).unwrap().iter().map(|(_, d)| d[0]).collect();
    for (i, name) in fuzz::BUNDLE_FILES.iter().enumerate() {
        assert!(firsts.contains(&(i as u8)), "no seed for {name} (first byte {i})");
    }
}

#[test]
fn the_corpus_and_every_crash_input_read_without_a_crash() {
    let mut summary = Vec::new();
    for (target, body) in TARGETS {
        let packed = fuzz_dir().join("corpus").join(format!("{target}.gz"));
        let corpus = fuzz::packed_inputs(&packed).unwrap_or_else(|e| panic!("{}: {e}", packed.display()));
        let crashes = fuzz::dir_inputs(&fuzz_dir().join("crashes").join(target)).unwrap_or_default();
        let fruitful = corpus.iter().filter(|input| body(input) > 0).count();
        for (_, input) in &crashes {
            body(input);
        }
        // A corpus from fuzzing the readers holds inputs they read records from.
        assert!(fruitful > 0, "{target}: none of the {} corpus inputs yields a record", corpus.len());
        summary.push(format!(
            "{target}: {} corpus inputs ({fruitful} with records), {} crash inputs",
            corpus.len(),
            crashes.len()
        ));
    }
    eprintln!("{}", summary.join("\n"));
}
