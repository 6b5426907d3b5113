//! A long import must not starve other writers: a change made while a big
//! file is being imported lands between the import's batches, not after it.

use std::io::Write;
use std::sync::Arc;

use idsync::sources::import::{import_file, ImportOptions, ReportFiles};
use idsync_schema::{Kind, ProfileSettings, Protocol, Source};
use idsync_store::reconcile::{Reconciler, Settings};
use idsync_store::{Actor, EngineKind, EngineOptions, Store};

#[test]
fn a_writer_gets_in_while_a_large_import_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    let rows = 40_000;
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    writeln!(w, "status,mail,lastName").unwrap();
    for i in 0..rows {
        writeln!(w, "active,user{i}@example.org,L{i}").unwrap();
    }
    drop(w);
    let store = Store::open(
        EngineKind::Redb,
        &dir.path().join("store"),
        &EngineOptions::default(),
    )
    .unwrap();
    let rec = Arc::new(Reconciler::new(Arc::new(store), Settings::default()).unwrap());

    let importer = {
        let (rec, file, work) = (Arc::clone(&rec), file.clone(), dir.path().join("work"));
        std::thread::spawn(move || {
            let report = ReportFiles::beside(&work.join("report"));
            import_file(
                &rec,
                &file,
                &ImportOptions::new(Kind::User),
                &work,
                &report,
                &mut |_| {},
            )
            .unwrap()
        })
    };
    // Once the import has committed something, write from here.
    while rec.store().head().unwrap() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut tx = rec.begin(Source::Api, Actor::config("test"));
    tx.upsert_profile(&ProfileSettings::new("web", Protocol::P12))
        .unwrap();
    let ours = tx.commit().unwrap().head;
    let result = importer.join().unwrap();
    assert_eq!(result.summary.created, rows as u64);
    let head = rec.store().head().unwrap();
    assert_eq!(head, rows as u64 + 1, "every change logged once, no gap");
    assert!(
        ours < head,
        "our change (seq {ours}) landed before the import's last ({head})"
    );
    let events = rec.store().changes(0, rows + 10).unwrap();
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 + 1),
        "gap-free"
    );
}
