//! Every committed fuzz input, replayed on stable: the corpora of
//! `fuzz/corpus/<target>/` and the inputs of crashes found and fixed,
//! `fuzz/regressions/<target>/`, through the same target bodies the fuzzer
//! runs (`idsync_tests::fuzz`, docs/fuzzing.md).
//!
//! Why: fuzzing needs nightly and hours; this needs neither, so a change
//! that brings back a fixed crash, or breaks a property on an input the
//! fuzzer once found interesting, fails `cargo test` in seconds.

use std::path::{Path, PathBuf};

use idsync_tests::fuzz::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = inputs(&fuzz.join("corpus").join(target));
    assert!(
        corpus.len() >= 5,
        "fuzz/corpus/{target} holds {} inputs: the committed corpus is missing",
        corpus.len()
    );
    let regressions = inputs(&fuzz.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a readable input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target} fails on {}", path.display());
        }
    }
}

#[test]
fn csv_import() {
    replay("csv_import");
}

#[test]
fn scim_filter() {
    replay("scim_filter");
}

#[test]
fn scim_patch() {
    replay("scim_patch");
}

#[test]
fn csr_parse() {
    replay("csr_parse");
}

#[test]
fn pkcs12_roundtrip() {
    replay("pkcs12_roundtrip");
}

#[test]
fn acme_jws() {
    replay("acme_jws");
}

#[test]
fn scep_message() {
    replay("scep_message");
}

/// Every target has its corpus directory, and nothing else lives there.
#[test]
fn the_corpus_directories_are_the_targets() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for e in entries {
            let name = e.expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} names no target"
            );
        }
    }
}
