//! `cargo fuzz run bundle`: see `culprit_readers::fuzz::bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    culprit_readers::fuzz::bundle(data);
});
