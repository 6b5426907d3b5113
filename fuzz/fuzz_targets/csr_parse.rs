//! Fuzz target `csr_parse`: PKCS#10 request parsing, because the request is the binary,
//! client-chosen input of enrollment.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::csr_parse` (tests/src/fuzz/csr_parse.rs), so that the stable
//! test `tests/tests/fuzz_corpora.rs` replays the committed corpus through
//! the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::csr_parse::run(data));
