//! `cargo fuzz run drilldown`: see `culprit_readers::fuzz::drilldown`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    culprit_readers::fuzz::drilldown(data);
});
