//! Fuzz target `scim_filter`: the SCIM filter parser and evaluator, because every SCIM list
//! request hands it text from an identity provider.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::scim_filter` (tests/src/fuzz/scim_filter.rs), so that the stable
//! test `tests/tests/fuzz_corpora.rs` replays the committed corpus through
//! the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::scim_filter::run(data));
