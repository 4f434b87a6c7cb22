//! `cargo fuzz run config`: see `culprit_readers::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    culprit_readers::fuzz::config(data);
});
