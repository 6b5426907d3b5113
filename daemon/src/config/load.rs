//! Reading the configuration: the TOML file, then `IDSYNC_*` variables on
//! top, every value checked against its key's type with no coercion.
//!
//! Why not the `config` crate of the design card: it coerces (`atomic =
//! "yes"`, `batch_rows = 2.7` and `data_dir = 5` were all taken), loses the
//! file's positions (no line or column in an error), prints its errors
//! twice and leaks Rust type names. The `toml` crate deserializes the file
//! as written, strictly, and says where each problem is. The variables are
//! TOML values too (`500`, `true`, `["a", "b"]`; a bare word is a string),
//! checked one by one so that every bad variable is named.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, CLI_VARIABLES};

/// Load `file` (when given; it must exist) layered with the `IDSYNC_*`
/// variables of `vars`; the first problem of the file, or every bad
/// variable.
pub(super) fn load(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (text, table) = match file {
        Some(path) => read_file(path)?,
        None => (String::new(), toml::Table::new()),
    };
    if let Some(path) = file {
        // The file alone first: its problems carry line and column.
        let problems = file_problems(path, &text);
        if !problems.is_empty() {
            return Err(ConfigError::all(problems));
        }
    }
    let overrides: Vec<(String, toml::Value)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("IDSYNC_") && !CLI_VARIABLES.contains(&k.as_str()))
        .map(|(k, v)| (k, env_value(&v)))
        .collect();
    let mut problems = Vec::new();
    for (var, value) in &overrides {
        let mut alone = table.clone();
        let checked = set(&mut alone, var, value.clone())
            .and_then(|()| deserialize(alone).map(drop).map_err(|e| one_line(&e)));
        if let Err(message) = checked {
            problems.push(ConfigError::Variable {
                var: var.clone(),
                message,
            });
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::all(problems));
    }
    let mut merged = table;
    for (var, value) in overrides {
        set(&mut merged, &var, value).expect("checked above");
    }
    deserialize(merged).map_err(|e| ConfigError::Variable {
        var: "IDSYNC_*".into(),
        message: one_line(&e),
    })
}

fn read_file(path: &Path) -> Result<(String, toml::Table), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| located(path, &text, &e))?;
    Ok((text, table))
}

/// Every problem of the file, at most one per top-level key: serde stops
/// at the first, so the lines of the key it was found in are blanked (line
/// numbers stay) and the file is read again.
fn file_problems(path: &Path, text: &str) -> Vec<ConfigError> {
    const MAX: usize = 20;
    let mut lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    while problems.len() < MAX {
        let current = lines.join("\n");
        let Err(e) = toml::from_str::<Config>(&current) else {
            break;
        };
        problems.push(located(path, &current, &e));
        let Some(line) = e.span().map(|s| line_column(&current, s.start).0) else {
            break;
        };
        let owner = top_level_lines(&lines, line - 1);
        if owner.is_empty() {
            break;
        }
        for i in owner {
            lines[i] = "";
        }
    }
    problems.sort_by_key(|p| match p {
        ConfigError::File { line, column, .. } => (*line, *column),
        _ => (0, 0),
    });
    problems
}

/// The lines (0-based) of the top-level key that line `at` belongs to: a
/// `[section]`/`[[section]]` with every header under the same first name,
/// or a `key = …` line before the first header.
fn top_level_lines(lines: &[&str], at: usize) -> Vec<usize> {
    let header = |l: &str| {
        let l = l.trim_start();
        l.starts_with('[').then(|| {
            l.trim_start_matches('[')
                .split(['.', ']'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_owned()
        })
    };
    // The section each line is in (`None` before the first header).
    let mut sections = Vec::with_capacity(lines.len());
    let mut current: Option<String> = None;
    for l in lines {
        if let Some(h) = header(l) {
            current = Some(h);
        }
        sections.push(current.clone());
    }
    match sections.get(at).cloned().flatten() {
        Some(section) => (0..lines.len())
            .filter(|i| sections[*i].as_deref() == Some(&section))
            .collect(),
        None => vec![at],
    }
}

fn deserialize(table: toml::Table) -> Result<Config, toml::de::Error> {
    toml::Value::Table(table).try_into()
}

/// A problem of the file, with the line and column it starts at.
fn located(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e
        .span()
        .map(|s| line_column(text, s.start))
        .unwrap_or((0, 0));
    ConfigError::File {
        path: PathBuf::from(path),
        line,
        column,
        message: one_line(&e.message()),
    }
}

/// A message on one line (the `toml` crate ends some with "in `key`" on a
/// line of its own).
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().trim().replace('\n', " ")
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A variable's value as TOML (`500`, `true`, `["a", "b"]`, `"x"`); a
/// value that is not TOML is a string (`sled`, `/srv/idsync`).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Put `value` at the key `IDSYNC_SECTION__KEY` names (`store.engine`);
/// `IDSYNC_DATA_DIR` is the top-level `data_dir`.
fn set(table: &mut toml::Table, var: &str, value: toml::Value) -> Result<(), String> {
    let path: Vec<String> = var["IDSYNC_".len()..]
        .split("__")
        .map(str::to_lowercase)
        .collect();
    let (last, sections) = path.split_last().ok_or("no key after IDSYNC_")?;
    let mut at = table;
    for section in sections {
        let entry = at
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{section}` is not a table"))?;
    }
    at.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idsync.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn error(text: &str) -> String {
        let (_dir, path) = file(text);
        load(Some(&path), Vec::new()).unwrap_err().to_string()
    }

    #[test]
    fn wrong_types_are_refused_where_they_are() {
        for (text, line) in [
            ("[import]\natomic = \"yes\"\n", 2),
            ("[import]\natomic = 1\n", 2),
            ("[import]\nbatch_rows = \"500\"\n", 2),
            ("[import]\nbatch_rows = 2.7\n", 2),
            ("[import]\nbatch_rows = true\n", 2),
            ("data_dir = 5\n", 1),
            ("[log]\n\nlevel = 3\n", 3),
        ] {
            let e = error(text);
            assert!(e.contains(&format!(":{line}:")), "{text:?}: {e}");
            assert!(e.contains("invalid type"), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_values_name_line_column_and_choices() {
        let e = error("[store]\nengin = \"sled\"\n");
        assert!(e.contains("idsync.toml:2:1:") && e.contains("engin"), "{e}");
        assert!(e.contains("`engine`"), "{e}");
        let e = error("[store]\nengine = \"Redb\"\n");
        assert!(e.contains(":2:") && e.contains("`redb`"), "{e}");
        assert!(!e.contains("EngineKind"), "no Rust type names: {e}");
        assert_eq!(e.matches("Redb").count(), 1, "said once: {e}");
    }

    #[test]
    fn variables_are_typed_and_each_bad_one_is_named() {
        let (_dir, path) = file("[import]\nbatch_rows = 100\n");
        let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cfg = load(
            Some(&path),
            vars(&[
                ("IDSYNC_IMPORT__BATCH_ROWS", "500"),
                ("IDSYNC_STORE__ENGINE", "sled"),
                (
                    "IDSYNC_USERS__DEFAULT_ROLES",
                    "[\"Operator\", \"Approval\"]",
                ),
                ("IDSYNC_DATA_DIR", "/srv/idsync"),
                ("IDSYNC_LOG", "debug"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.import.batch_rows, 500);
        assert_eq!(cfg.store.engine.as_str(), "sled");
        assert_eq!(cfg.users.default_roles, ["Operator", "Approval"]);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/idsync"));

        let e = load(
            Some(&path),
            vars(&[
                ("IDSYNC_IMPORT__ATOMIC", "yes"),
                ("IDSYNC_IMPORT__BATCH_ROWS", "2.7"),
                ("IDSYNC_LOG_LEVEL", "debug"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for var in [
            "IDSYNC_IMPORT__ATOMIC",
            "IDSYNC_IMPORT__BATCH_ROWS",
            "IDSYNC_LOG_LEVEL",
        ] {
            assert!(e.contains(var), "{var} named in: {e}");
        }
    }

    #[test]
    fn every_wrong_key_of_the_file_is_reported() {
        let e = error("data_dir = 5\n[import]\natomic = \"yes\"\n[store]\nengin = 1\n[log]\nlevel = \"info\"\n");
        assert!(e.contains(":1:12:"), "{e}");
        assert!(e.contains(":3:10:"), "{e}");
        assert!(e.contains(":5:1:"), "{e}");
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(line_column("a\nbé c", 6), (2, 4));
        assert_eq!(line_column("x", 0), (1, 1));
    }
}
