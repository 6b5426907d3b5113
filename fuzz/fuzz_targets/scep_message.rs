//! Fuzz target `scep_message`: a SCEP PKIOperation body, because it is
//! BER/DER CMS two layers deep that anyone on the network sends the SCEP
//! server.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::scep_message` (tests/src/fuzz/scep_message.rs), so
//! that the stable test `tests/tests/fuzz_corpora.rs` replays the committed
//! corpus through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::scep_message::run(data));
