//! Fuzz target `acme_jws`: the JWS of an ACME request, because it is what
//! anyone on the network sends the ACME server first.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::acme_jws` (tests/src/fuzz/acme_jws.rs), so that the
//! stable test `tests/tests/fuzz_corpora.rs` replays the committed corpus
//! through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::acme_jws::run(data));
