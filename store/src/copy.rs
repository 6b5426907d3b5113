//! Moving a stopped store to another engine (`idsync store copy`) and
//! checking that two stores hold the same keyspace (`idsync store
//! compare`): the way from the embedded store to PostgreSQL and back.
//!
//! Why entry by entry: the keyspace is the whole store (objects, indexes,
//! the change log, import progress, connector cursors; `keys.rs`), so a
//! copy of every key and value is the store exactly, change log included,
//! whatever the engines. Both sides are read a page at a time; nothing
//! holds the store in memory.

use super::engine::Batch;
use super::{Entry, Store, StoreError};

/// Entries read from the source, and written to the target, at a time.
const PAGE: usize = 4096;

/// Why a copy or a comparison did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A copy goes into an empty store only: it never merges.
    #[error(
        "the target {engine} store is not empty (it holds {first_key}, …): copy into an empty one"
    )]
    TargetNotEmpty {
        engine: &'static str,
        first_key: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub entries: u64,
    pub bytes: u64,
}

/// How two stores compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The same keys with the same values.
    Same { entries: u64 },
    /// The first key (in key order) where they part.
    Differ { key: String, difference: Difference },
}

/// What differs at a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    OnlyInFirst,
    OnlyInSecond,
    Values,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Difference::OnlyInFirst => "only in the first store",
            Difference::OnlyInSecond => "only in the second store",
            Difference::Values => "the values differ",
        })
    }
}

/// A key as people read it: text where it is text, `\xNN` elsewhere.
fn shown(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// Copy every entry of `from` into `to`, which must be empty.
pub fn copy(from: &Store, to: &Store) -> Result<Copied, CopyError> {
    let mut first = None;
    to.visit_page(b"", None, 1, |k, _| {
        first = Some(shown(k));
        Ok::<_, StoreError>(false)
    })?;
    if let Some(first_key) = first {
        return Err(CopyError::TargetNotEmpty {
            engine: to.engine().name(),
            first_key,
        });
    }
    let mut copied = Copied {
        entries: 0,
        bytes: 0,
    };
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = from.scan_page(b"", after.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        after = page.last().map(|(k, _)| k.clone());
        let mut batch = Batch::new();
        for (k, v) in page {
            copied.entries += 1;
            copied.bytes += (k.len() + v.len()) as u64;
            batch.put(k, v);
        }
        to.engine().write(batch).map_err(StoreError::from)?;
        if !full {
            return Ok(copied);
        }
    }
}

/// Compare `a` and `b` entry by entry, in key order.
pub fn compare(a: &Store, b: &Store) -> Result<Comparison, StoreError> {
    let mut entries = 0;
    let (mut after_a, mut after_b): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let (mut page_a, mut page_b) = (Vec::new().into_iter(), Vec::new().into_iter());
    let (mut next_a, mut next_b) = (None, None);
    loop {
        if next_a.is_none() {
            next_a = next_entry(a, &mut page_a, &mut after_a)?;
        }
        if next_b.is_none() {
            next_b = next_entry(b, &mut page_b, &mut after_b)?;
        }
        let differ = |key: &[u8], difference| {
            Ok(Comparison::Differ {
                key: shown(key),
                difference,
            })
        };
        match (&next_a, &next_b) {
            (None, None) => return Ok(Comparison::Same { entries }),
            (Some((k, _)), None) => return differ(k, Difference::OnlyInFirst),
            (None, Some((k, _))) => return differ(k, Difference::OnlyInSecond),
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => return differ(ka, Difference::OnlyInFirst),
                std::cmp::Ordering::Greater => return differ(kb, Difference::OnlyInSecond),
                std::cmp::Ordering::Equal if va != vb => return differ(ka, Difference::Values),
                std::cmp::Ordering::Equal => {
                    entries += 1;
                    (next_a, next_b) = (None, None);
                }
            },
        }
    }
}

/// The next entry of `store`, reading a page when `page` is used up.
fn next_entry(
    store: &Store,
    page: &mut std::vec::IntoIter<Entry>,
    after: &mut Option<Vec<u8>>,
) -> Result<Option<Entry>, StoreError> {
    if let Some(entry) = page.next() {
        *after = Some(entry.0.clone());
        return Ok(Some(entry));
    }
    *page = store.scan_page(b"", after.as_deref(), PAGE)?.into_iter();
    let entry = page.next();
    if let Some((k, _)) = &entry {
        *after = Some(k.clone());
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineKind, EngineOptions};

    fn store(kind: EngineKind, dir: &std::path::Path) -> Store {
        Store::open(kind, dir, &EngineOptions::default()).unwrap()
    }

    fn put(s: &Store, entries: &[(&[u8], &[u8])]) {
        let mut b = Batch::new();
        for (k, v) in entries {
            b.put(k.to_vec(), v.to_vec());
        }
        s.engine().write(b).unwrap();
    }

    #[test]
    fn a_copy_is_the_same_store_and_a_change_shows() {
        let dir = tempfile::tempdir().unwrap();
        let a = store(EngineKind::Redb, &dir.path().join("a"));
        let b = store(EngineKind::Sled, &dir.path().join("b"));
        // More than a page, binary keys among them.
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| [b"o/".as_slice(), &i.to_be_bytes()].concat())
            .collect();
        let mut batch = Batch::new();
        for k in &keys {
            batch.put(k.clone(), k.repeat(3));
        }
        a.engine().write(batch).unwrap();
        let copied = copy(&a, &b).unwrap();
        assert_eq!(copied.entries, 10_000);
        assert_eq!(
            compare(&a, &b).unwrap(),
            Comparison::Same { entries: 10_000 }
        );
        assert!(matches!(
            copy(&a, &b),
            Err(CopyError::TargetNotEmpty { .. })
        ));

        put(&b, &[(b"o/\x00\x00\x00\x05", b"changed")]);
        assert_eq!(
            compare(&a, &b).unwrap(),
            Comparison::Differ {
                key: "o/\\x00\\x00\\x00\\x05".into(),
                difference: Difference::Values
            }
        );
        put(
            &b,
            &[(b"o/\x00\x00\x00\x05", &keys[5].repeat(3)), (b"p/x", b"1")],
        );
        assert!(matches!(
            compare(&a, &b).unwrap(),
            Comparison::Differ {
                difference: Difference::OnlyInSecond,
                ..
            }
        ));
        assert!(matches!(
            compare(&b, &a).unwrap(),
            Comparison::Differ {
                difference: Difference::OnlyInFirst,
                ..
            }
        ));
    }
}
