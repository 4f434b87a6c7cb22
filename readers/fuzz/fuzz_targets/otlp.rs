//! `cargo fuzz run otlp`: see `culprit_readers::fuzz::otlp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    culprit_readers::fuzz::otlp(data);
});
