//! The daemon crate's walls, checked: each top-level module may import only
//! the modules below it (docs/architecture.md, "What each part may use").
//!
//! Why a test and not a review habit: Rust forbids cycles between crates,
//! not between modules of one crate. This reads every non-test source file
//! of `daemon/src`, collects the `crate::<module>` paths it names (in `use`
//! lines, grouped `use crate::{…}` lists and inline paths), and fails on
//! any import the table below does not allow: a cycle or an upward import
//! (a server importing the CLI, the CLI's client importing a server,
//! infrastructure importing a feature) cannot land unnoticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules and what each may import, bottom-up. `sources`
/// and `connect` sit side by side: neither imports the other.
const ALLOWED: &[(&str, &[&str])] = &[
    ("api", &[]),
    ("infra", &["api"]),
    ("sources", &["api", "infra"]),
    ("connect", &["api", "infra"]),
    ("config", &["api", "infra", "sources", "connect"]),
    ("app", &["config"]),
    (
        "serve",
        &["api", "infra", "config", "app", "sources", "connect"],
    ),
    (
        "cli",
        &[
            "api", "infra", "config", "app", "sources", "connect", "serve",
        ],
    ),
];

/// Files with a stricter rule than their module: the CLI's HTTP client and
/// the status printer talk to a server over HTTP and import none.
const CLIENT_FILES: &[(&str, &[&str])] = &[
    ("cli/client.rs", &["api", "config"]),
    ("cli/status.rs", &["api", "config", "cli"]),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its inline test module (by convention the last
/// item, `#[cfg(test)] mod tests { … }`), and nothing of a test-only file
/// (`tests.rs`, or `<what>_tests.rs` beside it: declared `#[cfg(test)]`).
fn non_test_code(rel: &str, text: &str) -> String {
    if rel.ends_with("/tests.rs") || rel.ends_with("_tests.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// The top-level modules a piece of code names through `crate::`
/// (comments are not code: a doc may point anywhere).
fn imported_modules(code: &str) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c}`: every top-level name in the group.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// The top-level module a file belongs to (`sources/scim/handlers.rs` →
/// `sources`, `app.rs` → `app`); `None` for the crate root and the binary.
fn module_of(rel: &str) -> Option<&str> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then_some(name)
}

#[test]
fn every_module_imports_only_what_is_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    let known: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    let mut violations = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let Some(module) = module_of(&rel) else {
            continue;
        };
        assert!(
            known.contains(module),
            "{rel}: module `{module}` is not in the table of this test; add it with what it may import"
        );
        let allowed: &[&str] = CLIENT_FILES
            .iter()
            .find(|(f, _)| *f == rel)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| ALLOWED.iter().find(|(m, _)| *m == module).unwrap().1);
        let code = non_test_code(&rel, &std::fs::read_to_string(file).unwrap());
        for used in imported_modules(&code) {
            if used != module && !allowed.contains(&used.as_str()) {
                violations.push(format!("{rel} imports crate::{used}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports the layering forbids:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_table_has_no_cycle() {
    // Each module may only import modules listed before it.
    for (i, (module, allowed)) in ALLOWED.iter().enumerate() {
        let below: BTreeSet<&str> = ALLOWED[..i].iter().map(|(m, _)| *m).collect();
        for a in *allowed {
            assert!(
                below.contains(a),
                "{module} may import {a}, which is not below it"
            );
        }
    }
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let code = "use crate::infra::auth::Auth;\nuse crate::{api, config::Config};\n\
                //! see [`crate::cli`]\nlet x = crate::serve::run();";
    let found: Vec<String> = imported_modules(code).into_iter().collect();
    assert_eq!(found, ["api", "config", "infra", "serve"]);
    assert_eq!(module_of("sources/scim/handlers.rs"), Some("sources"));
    assert_eq!(module_of("app.rs"), Some("app"));
    assert_eq!(module_of("lib.rs"), None);
    assert_eq!(
        non_test_code("x.rs", "a\n#[cfg(test)]\nmod tests {crate::cli}"),
        "a\n"
    );
    // A declaration of a test file is not the end of the code.
    let declared = "#[cfg(test)]\nmod tests;\nuse crate::cli;";
    assert_eq!(non_test_code("x.rs", declared), declared);
}
