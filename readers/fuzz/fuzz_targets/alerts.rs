//! `cargo fuzz run alerts`: see `culprit_readers::fuzz::alerts`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    culprit_readers::fuzz::alerts(data);
});
