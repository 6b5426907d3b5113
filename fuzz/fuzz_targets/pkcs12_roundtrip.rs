//! Fuzz target `pkcs12_roundtrip`: idsync's hand-written PKCS#12 writer, read back by an
//! independent reader, because a file a client cannot open is otherwise
//! found only when someone tries.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::pkcs12_roundtrip` (tests/src/fuzz/pkcs12_roundtrip.rs), so that the stable
//! test `tests/tests/fuzz_corpora.rs` replays the committed corpus through
//! the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::pkcs12_roundtrip::run(data));
