//! The bodies of the fuzz targets in `fuzz/fuzz_targets/` (docs/fuzzing.md).
//!
//! Why here and not in the targets: each target is one call to a `run`
//! below, and `tests/tests/fuzz_corpora.rs` replays every committed corpus
//! input and every regression input through the same `run` on stable, so
//! `cargo test` keeps what fuzzing found fixed without a nightly compiler.
//!
//! Each `run` takes the fuzzer's raw bytes, must not panic on any input,
//! and asserts properties of the code under test where they are cheap: a
//! failed assertion is a finding just as a crash is.

pub mod acme_jws;
pub mod csr_parse;
pub mod csv_import;
pub mod pkcs12_roundtrip;
mod print;
pub mod scep_message;
pub mod scim_filter;
pub mod scim_patch;

/// A target's name and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, as `fuzz/corpus/<name>/` and `scripts/fuzz` call it.
pub const TARGETS: [Target; 7] = [
    ("csv_import", csv_import::run),
    ("scim_filter", scim_filter::run),
    ("scim_patch", scim_patch::run),
    ("csr_parse", csr_parse::run),
    ("pkcs12_roundtrip", pkcs12_roundtrip::run),
    ("acme_jws", acme_jws::run),
    ("scep_message", scep_message::run),
];

/// The nesting bound the SCIM server applies by default
/// (`scim.max_filter_depth`).
pub const SCIM_DEPTH: usize = 16;
