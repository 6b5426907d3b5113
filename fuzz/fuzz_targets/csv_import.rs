//! Fuzz target `csv_import`: the CSV import up to the store (first pass, reader, layouts, value
//! rules, in-file uniqueness, resume), because import files are the input
//! operators least control.
//!
//! The body, with what it checks beyond "no panic", is
//! `idsync_tests::fuzz::csv_import` (tests/src/fuzz/csv_import.rs), so that the stable
//! test `tests/tests/fuzz_corpora.rs` replays the committed corpus through
//! the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idsync_tests::fuzz::csv_import::run(data));
