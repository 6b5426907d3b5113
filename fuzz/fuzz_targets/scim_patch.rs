//! Fuzz target `scim_patch`: SCIM PATCH paths and PatchOp bodies, parsed and applied as the
//! SCIM server applies them, because they are the most intricate JSON
//! identity providers send.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::scim_patch` (tests/src/fuzz/scim_patch.rs), so that the stable
//! test `tests/tests/fuzz_corpora.rs` replays the committed corpus through
//! the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::scim_patch::run(data));
