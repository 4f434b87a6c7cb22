//! `cargo fuzz run prometheus`: see `culprit_readers::fuzz::prometheus`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    culprit_readers::fuzz::prometheus(data);
});
