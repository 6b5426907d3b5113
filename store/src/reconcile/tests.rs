//! Unit tests of the reconciler against a real redb store in a tempdir:
//! what each rule writes (objects, indexes, memberships, events) and, as
//! much, what it must not.

use std::collections::BTreeSet;
use std::sync::Arc;

use idsync_schema::{Field, Group, GroupInput, Kind, Rule, Source, Status, User, UserInput};
use uuid::Uuid;

use super::*;
use crate::keys::{self, Index};
use crate::{Actor, ChangeEvent, EngineKind, EngineOptions, Operation, Store};

fn reconciler(dir: &std::path::Path) -> Reconciler {
    let store = Arc::new(Store::open(EngineKind::Redb, dir, &EngineOptions::default()).unwrap());
    Reconciler::new(store, Settings::default()).unwrap()
}

fn row(first: &str, groups: &[&str]) -> UserInput {
    let mut u = UserInput::new(Status::Active, "Ann@x.org", "Lee");
    u.first_name = Field::Set(first.into());
    if !groups.is_empty() {
        u.groups = Field::Set(groups.iter().map(|g| g.to_string()).collect());
    }
    u
}

/// A reconciler over a new store; keep the directory while it is used.
fn fresh() -> (tempfile::TempDir, Reconciler) {
    let dir = tempfile::tempdir().unwrap();
    let rec = reconciler(dir.path());
    (dir, rec)
}

/// One CSV upsert in its own committed transaction.
fn import(rec: &Reconciler, input: UserInput, how: &UserWrite) -> Outcome {
    let mut tx = rec.begin(Source::Csv, Actor::default());
    let out = tx.upsert_user(input, how).unwrap();
    tx.commit().unwrap();
    out
}

fn unchanged(o: &Outcome) -> bool {
    matches!(o, Outcome::Unchanged(_))
}

/// The digest short cut of an unchanged row gives what reading the user
/// would: unchanged only while the last write was this very input.
#[test]
fn a_repeated_row_is_unchanged_until_something_else_writes_the_user() {
    let (_dir, rec) = fresh();
    let how = UserWrite::default();
    let mut tx = rec.begin(Source::Csv, Actor::default());
    tx.upsert_group(GroupInput::new("staff")).unwrap();
    tx.commit().unwrap();

    let id = import(&rec, row("Ann", &["staff"]), &how).id();
    let head = rec.store().head().unwrap();
    assert!(unchanged(&import(&rec, row("Ann", &["staff"]), &how)));
    assert_eq!(rec.store().head().unwrap(), head, "a no-op writes nothing");

    // Another source changes a field the row sets: the row restores it.
    let mut tx = rec.begin(Source::Scim, Actor::default());
    let existing = tx.user(id).unwrap().unwrap();
    tx.update_user(existing, row("Annie", &["staff"]), &how)
        .unwrap();
    tx.commit().unwrap();
    let again = import(&rec, row("Ann", &["staff"]), &how);
    assert!(
        matches!(&again, Outcome::Updated(_, f) if f == &["firstName", "source"]),
        "{again:?}"
    );
    assert!(unchanged(&import(&rec, row("Ann", &["staff"]), &how)));

    // A folder option that changes the result is part of the input.
    let inactive = UserWrite {
        end_state: Some(Status::Inactive),
        ..UserWrite::default()
    };
    assert!(!unchanged(&import(&rec, row("Ann", &["staff"]), &inactive)));
    assert!(!unchanged(&import(&rec, row("Ann", &["staff"]), &how)));

    // The group is deleted: the user loses it, and the row, naming a
    // group that no longer exists, is refused as before; a row without
    // groups finds nothing to change.
    let mut tx = rec.begin(Source::Api, Actor::default());
    let staff = tx.lookup(Index::GroupName, "staff").unwrap().unwrap();
    tx.delete_group(staff).unwrap();
    tx.commit().unwrap();
    let mut tx = rec.begin(Source::Csv, Actor::default());
    assert!(tx.upsert_user(row("Ann", &["staff"]), &how).is_err());
    drop(tx);
    assert!(unchanged(&import(&rec, row("Ann", &[]), &how)));
    assert!(rec
        .store()
        .object::<User>(Kind::User, id)
        .unwrap()
        .unwrap()
        .groups
        .is_empty());

    // The mail's entry still finds the user, digest or not.
    assert_eq!(
        rec.store().lookup(Index::UserMail, "ann@x.org").unwrap(),
        Some(id)
    );
}

// ---- helpers of the tests below ----

/// Run `f` in one transaction of `rec` and commit it; `f`'s result.
fn in_tx<T>(rec: &Reconciler, f: impl FnOnce(&mut Tx<'_>) -> T) -> T {
    let mut tx = rec.begin(Source::Api, Actor::default());
    let out = f(&mut tx);
    tx.commit().unwrap();
    out
}

/// A user with only what is mandatory stated.
fn person(mail: &str) -> UserInput {
    UserInput::new(Status::Active, mail, "Lee")
}

/// Create user `mail` in groups `groups`; its id.
fn add_user(rec: &Reconciler, mail: &str, groups: &[&str]) -> Uuid {
    let mut input = person(mail);
    if !groups.is_empty() {
        input.groups = Field::Set(groups.iter().map(|g| g.to_string()).collect());
    }
    in_tx(rec, |tx| tx.create_user(input, &UserWrite::default()))
        .unwrap()
        .id()
}

/// Create group `name`; its id.
fn add_group(rec: &Reconciler, name: &str) -> Uuid {
    in_tx(rec, |tx| tx.create_group(GroupInput::new(name)))
        .unwrap()
        .id()
}

fn stored_user(rec: &Reconciler, id: Uuid) -> Option<User> {
    rec.store().object::<User>(Kind::User, id).unwrap()
}

fn stored_group(rec: &Reconciler, id: Uuid) -> Option<Group> {
    rec.store().object::<Group>(Kind::Group, id).unwrap()
}

/// The change events after `after`, in order.
fn events_after(rec: &Reconciler, after: u64) -> Vec<ChangeEvent> {
    let mut events = rec.store().changes(after, 1000).unwrap();
    events.retain(|e| e.seq > after);
    events
}

/// The one change event after `after`.
fn only_event_after(rec: &Reconciler, after: u64) -> ChangeEvent {
    let mut events = events_after(rec, after);
    assert_eq!(events.len(), 1, "{events:?}");
    events.remove(0)
}

fn members(rec: &Reconciler, group: Uuid) -> BTreeSet<Uuid> {
    rec.store().members(group).unwrap().into_iter().collect()
}

/// Asserts `result` is a refusal of `attribute` by `rule`.
fn assert_refused(result: Result<Outcome, WriteError>, attribute: &str, rule: Rule) {
    match result {
        Err(WriteError::Rejected(v)) => {
            assert_eq!((v.attribute.as_str(), v.rule), (attribute, rule))
        }
        other => panic!("expected {attribute} refused, got {other:?}"),
    }
}

// ---- create conflicts ----

#[test]
fn create_user_with_a_used_mail_login_or_external_id_is_refused_and_writes_nothing() {
    let (_dir, rec) = fresh();
    let mut ann = person("ann@x.org");
    ann.login_name = Field::Set("ann".into());
    ann.external_id = Field::Set("e-1".into());
    in_tx(&rec, |tx| tx.create_user(ann, &UserWrite::default())).unwrap();
    let head = rec.store().head().unwrap();

    let mut same_mail = person("ANN@x.org");
    same_mail.login_name = Field::Set("bob".into());
    let mut same_login = person("bob@x.org");
    same_login.login_name = Field::Set("Ann".into());
    let mut same_ext = person("bob@x.org");
    same_ext.external_id = Field::Set("e-1".into());
    for (input, attribute) in [
        (same_mail, "mail"),
        (same_login, "loginName"),
        (same_ext, "externalId"),
    ] {
        let mut tx = rec.begin(Source::Scim, Actor::default());
        assert_refused(
            tx.create_user(input, &UserWrite::default()),
            attribute,
            Rule::NotUnique,
        );
        assert_eq!((tx.queued_writes(), tx.pending_events()), (0, 0));
        assert_eq!(tx.commit().unwrap().events, 0);
    }
    assert_eq!(rec.store().head().unwrap(), head, "no event");
    assert_eq!(rec.store().count(Kind::User).unwrap(), 1);
    assert_eq!(
        rec.store().lookup(Index::UserMail, "bob@x.org").unwrap(),
        None
    );
    assert_eq!(rec.store().lookup(Index::UserLogin, "bob").unwrap(), None);
}

#[test]
fn create_group_with_a_used_display_name_or_external_id_is_refused_and_writes_nothing() {
    let (_dir, rec) = fresh();
    let mut staff = GroupInput::new("staff");
    staff.external_id = Field::Set("g-1".into());
    in_tx(&rec, |tx| tx.create_group(staff)).unwrap();
    let head = rec.store().head().unwrap();

    let mut same_ext = GroupInput::new("other");
    same_ext.external_id = Field::Set("g-1".into());
    for (input, attribute) in [
        (GroupInput::new("Staff"), "displayName"),
        (same_ext, "externalId"),
    ] {
        let mut tx = rec.begin(Source::Scim, Actor::default());
        assert_refused(tx.create_group(input), attribute, Rule::NotUnique);
        assert_eq!((tx.queued_writes(), tx.pending_events()), (0, 0));
        tx.commit().unwrap();
    }
    assert_eq!(rec.store().head().unwrap(), head, "no event");
    assert_eq!(rec.store().count(Kind::Group).unwrap(), 1);
    assert_eq!(rec.store().lookup(Index::GroupName, "other").unwrap(), None);
}

// ---- renames and no-ops ----

#[test]
fn update_user_with_a_new_mail_moves_the_mail_index() {
    let (_dir, rec) = fresh();
    let id = add_user(&rec, "ann@x.org", &[]);
    let head = rec.store().head().unwrap();

    let out = in_tx(&rec, |tx| {
        let existing = tx.user(id).unwrap().unwrap();
        tx.update_user(existing, person("anne@x.org"), &UserWrite::default())
    })
    .unwrap();
    assert_eq!(out, Outcome::Updated(id, vec!["mail".to_string()]));

    let store = rec.store();
    assert_eq!(store.lookup(Index::UserMail, "ann@x.org").unwrap(), None);
    assert_eq!(
        store.lookup(Index::UserMail, "anne@x.org").unwrap(),
        Some(id)
    );
    let user = stored_user(&rec, id).unwrap();
    assert_eq!(
        (user.mail.as_deref(), user.meta.version),
        (Some("anne@x.org"), 2)
    );
    let e = only_event_after(&rec, head);
    assert_eq!(
        (e.kind, e.id, e.operation, e.version),
        (Kind::User, id, Operation::Updated, 2)
    );
    assert_eq!(e.changed, ["mail"]);
    // The old mail is free for another user.
    let other = add_user(&rec, "ann@x.org", &[]);
    assert_ne!(other, id);
}

#[test]
fn an_upsert_or_update_that_changes_nothing_writes_nothing() {
    let (_dir, rec) = fresh();
    let gid = add_group(&rec, "staff");
    let uid = add_user(&rec, "ann@x.org", &["staff"]);
    let head = rec.store().head().unwrap();
    let group_before = stored_group(&rec, gid).unwrap();
    let user_before = stored_user(&rec, uid).unwrap();

    let mut tx = rec.begin(Source::Api, Actor::default());
    // No digest to short-cut these: the objects are compared.
    assert_eq!(
        tx.upsert_group(GroupInput::new("staff")).unwrap(),
        Outcome::Unchanged(gid)
    );
    let existing = tx.user(uid).unwrap().unwrap();
    let mut same = person("ann@x.org");
    same.groups = Field::Set(vec!["staff".into()]);
    assert_eq!(
        tx.update_user(existing, same, &UserWrite::default())
            .unwrap(),
        Outcome::Unchanged(uid)
    );
    assert_eq!((tx.queued_writes(), tx.pending_events()), (0, 0));
    assert_eq!(tx.commit().unwrap(), Committed { events: 0, head });

    assert_eq!(rec.store().head().unwrap(), head);
    assert_eq!(stored_group(&rec, gid).unwrap(), group_before);
    assert_eq!(stored_user(&rec, uid).unwrap(), user_before);
}

// ---- deletes ----

#[test]
fn delete_user_removes_the_object_its_indexes_and_memberships() {
    let (_dir, rec) = fresh();
    let gid = add_group(&rec, "staff");
    let mut ann = person("ann@x.org");
    ann.login_name = Field::Set("ann".into());
    ann.external_id = Field::Set("e-1".into());
    ann.groups = Field::Set(vec!["staff".into()]);
    let id = in_tx(&rec, |tx| tx.create_user(ann, &UserWrite::default()))
        .unwrap()
        .id();
    assert_eq!(members(&rec, gid), BTreeSet::from([id]));
    let head = rec.store().head().unwrap();

    assert!(in_tx(&rec, |tx| tx.delete_user(id)).unwrap());

    let store = rec.store();
    assert!(stored_user(&rec, id).is_none());
    assert_eq!(store.lookup(Index::UserMail, "ann@x.org").unwrap(), None);
    assert_eq!(store.lookup(Index::UserLogin, "ann").unwrap(), None);
    assert_eq!(store.lookup(Index::UserExternalId, "e-1").unwrap(), None);
    assert!(members(&rec, gid).is_empty());
    let e = only_event_after(&rec, head);
    assert_eq!(
        (e.kind, e.id, e.operation, e.version),
        (Kind::User, id, Operation::Deleted, 2)
    );

    // Nothing left to delete: nothing happens.
    assert!(!in_tx(&rec, |tx| tx.delete_user(id)).unwrap());
    assert_eq!(rec.store().head().unwrap(), head + 1);
}

#[test]
fn delete_group_with_members_lets_them_leave_first() {
    let (_dir, rec) = fresh();
    let staff = add_group(&rec, "staff");
    add_group(&rec, "ops");
    let ann = add_user(&rec, "ann@x.org", &["staff", "ops"]);
    let bob = add_user(&rec, "bob@x.org", &["staff"]);
    let head = rec.store().head().unwrap();

    assert!(in_tx(&rec, |tx| tx.delete_group(staff)).unwrap());

    assert!(stored_group(&rec, staff).is_none());
    assert_eq!(rec.store().lookup(Index::GroupName, "staff").unwrap(), None);
    assert!(members(&rec, staff).is_empty());
    let ops = rec
        .store()
        .lookup(Index::GroupName, "ops")
        .unwrap()
        .unwrap();
    assert_eq!(stored_user(&rec, ann).unwrap().groups, [ops]);
    assert!(stored_user(&rec, bob).unwrap().groups.is_empty());
    assert_eq!(members(&rec, ops), BTreeSet::from([ann]));

    // The members' events first, then the group's.
    let events = events_after(&rec, head);
    assert_eq!(events.len(), 3);
    let (left, deleted) = events.split_at(2);
    assert_eq!(
        left.iter().map(|e| e.id).collect::<BTreeSet<_>>(),
        BTreeSet::from([ann, bob])
    );
    assert!(left
        .iter()
        .all(|e| e.operation == Operation::Updated && e.changed == ["groups"]));
    assert_eq!(
        (deleted[0].id, deleted[0].operation),
        (staff, Operation::Deleted)
    );
}

// ---- change_members ----

#[test]
fn change_members_adds_and_removes_only_the_users_named() {
    let (_dir, rec) = fresh();
    let gid = add_group(&rec, "staff");
    let ann = add_user(&rec, "ann@x.org", &["staff"]);
    let bob = add_user(&rec, "bob@x.org", &["staff"]);
    let carl = add_user(&rec, "carl@x.org", &[]);
    let ann_before = stored_user(&rec, ann).unwrap();
    let group_before = stored_group(&rec, gid).unwrap();
    let head = rec.store().head().unwrap();

    let changed = in_tx(&rec, |tx| {
        let group = tx.group(gid).unwrap().unwrap();
        tx.change_members(&group, &[carl], &[bob])
    })
    .unwrap();

    assert!(changed);
    assert_eq!(members(&rec, gid), BTreeSet::from([ann, carl]));
    assert_eq!(stored_user(&rec, carl).unwrap().groups, [gid]);
    assert!(stored_user(&rec, bob).unwrap().groups.is_empty());
    assert_eq!(
        stored_user(&rec, ann).unwrap(),
        ann_before,
        "others untouched"
    );
    let group = stored_group(&rec, gid).unwrap();
    assert_eq!(group.meta.version, group_before.meta.version + 1);
    let events = events_after(&rec, head);
    let summary: Vec<_> = events.iter().map(|e| (e.id, e.operation)).collect();
    assert_eq!(
        summary,
        [
            (carl, Operation::Updated),
            (bob, Operation::Updated),
            (gid, Operation::Updated)
        ]
    );
    assert_eq!(events[2].changed, ["members"]);
    assert_eq!(events[2].version, group.meta.version);

    // Adding a member again changes nothing.
    let again = in_tx(&rec, |tx| {
        let group = tx.group(gid).unwrap().unwrap();
        tx.change_members(&group, &[ann], &[])
    })
    .unwrap();
    assert!(!again);
    assert_eq!(rec.store().head().unwrap(), head + 3);
}

#[test]
fn change_members_refuses_an_unknown_user_before_queuing_anything() {
    let (_dir, rec) = fresh();
    let gid = add_group(&rec, "staff");
    let ann = add_user(&rec, "ann@x.org", &["staff"]);
    let carl = add_user(&rec, "carl@x.org", &[]);
    let head = rec.store().head().unwrap();

    let mut tx = rec.begin(Source::Scim, Actor::default());
    let group = tx.group(gid).unwrap().unwrap();
    let unknown = Uuid::now_v7();
    let result = tx
        .change_members(&group, &[carl, unknown], &[ann])
        .map(|_| Outcome::Unchanged(gid));
    assert_refused(result, "members", Rule::UnknownMember);
    assert_eq!((tx.queued_writes(), tx.pending_events()), (0, 0));
    tx.commit().unwrap();

    assert_eq!(rec.store().head().unwrap(), head);
    assert_eq!(members(&rec, gid), BTreeSet::from([ann]));
}

// ---- savepoints ----

#[test]
fn rolling_back_to_a_savepoint_keeps_the_change_log_gap_free() {
    let (_dir, rec) = fresh();
    let head = rec.store().head().unwrap();

    let mut tx = rec.begin(Source::Api, Actor::default());
    let a = tx.create_group(GroupInput::new("a")).unwrap().id();
    let sp = tx.savepoint();
    tx.create_group(GroupInput::new("b")).unwrap();
    let group_a = tx.group(a).unwrap().unwrap();
    let mut renamed = GroupInput::new("a2");
    renamed.description = Field::Set("changed".into());
    tx.update_group(group_a, renamed).unwrap();
    assert_eq!(tx.pending_events(), 3);
    tx.rollback_to(sp);
    assert_eq!(tx.pending_events(), 1);
    let c = tx.create_group(GroupInput::new("c")).unwrap().id();
    assert_eq!(
        tx.commit().unwrap(),
        Committed {
            events: 2,
            head: head + 2
        }
    );

    let events = events_after(&rec, head);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [head + 1, head + 2], "no gap where b was");
    assert_eq!((events[0].id, events[1].id), (a, c));
    let store = rec.store();
    assert_eq!(store.lookup(Index::GroupName, "b").unwrap(), None);
    assert_eq!(store.lookup(Index::GroupName, "a2").unwrap(), None);
    assert_eq!(store.lookup(Index::GroupName, "a").unwrap(), Some(a));
    let a_stored = stored_group(&rec, a).unwrap();
    assert_eq!((a_stored.meta.version, a_stored.description), (1, None));
    assert_eq!(store.count(Kind::Group).unwrap(), 2);
}

/// Activation mails (issue 16): queueing a whole application is one
/// transaction with one event per user queued; outcomes are recorded only
/// for the sending still queued; the state machine is enforced.
#[test]
fn activations_are_queued_once_and_recorded_only_for_their_sending() {
    use idsync_schema::{Activation, ActivationState};
    let (_dir, rec) = fresh();
    let crm = UserWrite {
        application: Some("crm".into()),
        ..UserWrite::default()
    };
    let a = in_tx(&rec, |tx| tx.create_user(person("a@x.org"), &crm))
        .unwrap()
        .id();
    let b = in_tx(&rec, |tx| tx.create_user(person("b@x.org"), &crm))
        .unwrap()
        .id();
    let other = add_user(&rec, "c@x.org", &[]);
    let head = rec.store().head().unwrap();

    let mut n = 0;
    let mut nonce = || {
        n += 1;
        format!("n{n}")
    };
    let queued = in_tx(&rec, |tx| {
        tx.queue_activations("crm", &[a, b, other], &mut nonce)
    })
    .unwrap();
    assert_eq!(queued, vec![a, b], "only crm's users");
    let events = events_after(&rec, head);
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e.changed == ["activations"]),
        "{events:?}"
    );
    let qa = stored_user(&rec, a).unwrap().activations["crm"].clone();
    assert_eq!(qa.state, ActivationState::Queued);
    assert_eq!(qa.nonce.as_deref(), Some("n1"));
    assert!(stored_user(&rec, other).unwrap().activations.is_empty());

    // Queued already: a second send queues nobody.
    let again = in_tx(&rec, |tx| {
        tx.queue_activations("crm", &[a, b], &mut || "x".into())
    })
    .unwrap();
    assert!(again.is_empty());

    let sent = |nonce: &str| Activation {
        state: ActivationState::Sent,
        nonce: Some(nonce.into()),
        token_sha256: Some("ab".repeat(32)),
        expires: None,
        reason: None,
        at: time::OffsetDateTime::now_utc(),
    };
    // Another sending's outcome is not recorded; this one's is, once.
    assert!(!in_tx(&rec, |tx| tx.record_activation(a, "crm", "n9", sent("n9"))).unwrap());
    assert!(in_tx(&rec, |tx| tx.record_activation(a, "crm", "n1", sent("n1"))).unwrap());
    assert!(!in_tx(&rec, |tx| tx.record_activation(a, "crm", "n1", sent("n1"))).unwrap());
    assert_eq!(
        stored_user(&rec, a).unwrap().activations["crm"].state,
        ActivationState::Sent
    );

    // The state machine: nothing is sent unqueued, nobody outside the
    // application gets a state.
    let mut tx = rec.begin(Source::Api, Actor::default());
    assert!(matches!(
        tx.set_activation(
            other,
            "crm",
            Activation::queued("z".into(), time::OffsetDateTime::now_utc())
        ),
        Err(WriteError::Rejected(_))
    ));
    let mut not_queued = sent("n1");
    not_queued.state = ActivationState::Activated;
    assert!(matches!(
        tx.set_activation(b, "crm", not_queued),
        Err(WriteError::Rejected(_))
    ));
}

/// A chunk read ahead gives the outcomes row-by-row reads give, on an
/// engine that reads ahead (PostgreSQL) as on one that does not (redb):
/// rows of one chunk see each other, and a batch that lands mid-chunk
/// takes its keys out of what was read ahead (here Bob's mail, read ahead
/// as absent, then written by a batch that lands before his second row).
fn read_ahead_outcomes(rec: &Reconciler) -> Vec<String> {
    let how = UserWrite::default();
    let mut tx = rec.begin(Source::Csv, Actor::default());
    tx.upsert_group(GroupInput::new("staff")).unwrap();
    tx.upsert_user(row("Ann", &[]), &how).unwrap();
    tx.commit().unwrap();

    let user = |mail: &str, first: &str, groups: &[&str]| {
        let mut u = row(first, groups);
        u.mail = Field::Set(mail.into());
        u
    };
    let rows = [
        user("Ann@x.org", "Anne", &["staff"]),
        user("bob@x.org", "Bob", &["staff"]),
        user("dan@x.org", "Dan", &[]),
        user("BOB@x.org", "Bobby", &[]),
        user("ann@X.org", "Anne", &["staff"]),
        user("eve@x.org", "Eve", &["nobody"]),
    ];
    let mut tx = rec.begin(Source::Csv, Actor::default());
    let planned: Vec<_> = rows.iter().map(|u| Planned::User(u, &how)).collect();
    tx.read_ahead(&planned).unwrap();
    let mut seen = Vec::new();
    for (i, u) in rows.iter().enumerate() {
        seen.push(match tx.upsert_user(u.clone(), &how) {
            Ok(Outcome::Created(_)) => "created".to_string(),
            Ok(Outcome::Updated(_, changed)) => format!("updated {}", changed.join(",")),
            Ok(Outcome::Unchanged(_)) => "unchanged".to_string(),
            Err(e) => format!("refused: {e}"),
        });
        if i == 1 || i == 2 {
            tx.commit_pipelined().unwrap();
        }
    }
    tx.commit().unwrap();
    let users = rec.store().count(Kind::User).unwrap();
    seen.push(format!("{users} users"));
    seen
}

#[test]
fn reading_ahead_changes_no_outcome() {
    let expected = [
        "updated firstName,groups",
        "created",
        "created",
        "updated firstName,mail",
        "updated mail",
        "refused: groups \"nobody\" names a group that does not exist",
        "3 users",
    ];
    let (_dir, rec) = fresh();
    assert_eq!(read_ahead_outcomes(&rec), expected, "redb (no read-ahead)");

    let cluster = crate::test_postgres::TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = cluster.engine_options(EngineOptions::default());
    let store = Arc::new(Store::open(EngineKind::Postgres, dir.path(), &opts).unwrap());
    let rec = Reconciler::new(store, Settings::default()).unwrap();
    assert_eq!(read_ahead_outcomes(&rec), expected, "postgres (read-ahead)");
}

/// A head that moved under the reconciler (in production: a commit whose
/// answer was lost, or another process on one database; here the test
/// writes the head itself): a batch numbered from the old head does not
/// land, and the next transaction numbers from the store's head. (Two
/// reconcilers over one store share its writer lock, so they no longer
/// show this: they take turns.)
#[test]
fn a_batch_numbered_from_a_moved_head_does_not_land() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap());
    let rec = Reconciler::new(Arc::clone(&store), Settings::default()).unwrap();
    let group = |name: &str| {
        let mut tx = rec.begin(Source::Api, Actor::default());
        tx.upsert_group(GroupInput::new(name)).unwrap();
        tx.commit()
    };
    assert_eq!(group("a").unwrap().head, 1);
    let mut moved = crate::engine::Batch::new();
    moved.put(crate::keys::HEAD, 2u64.to_be_bytes());
    store.engine().write(moved).unwrap();
    // The reconciler still numbers from 2: refused, nothing written.
    let e = group("b").unwrap_err();
    assert!(
        matches!(e, StoreError::Engine(crate::EngineError::Conflict { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("changed under this writer"), "{e}");
    assert_eq!(store.head().unwrap(), 2);
    assert!(store.lookup(Index::GroupName, "b").unwrap().is_none());
    // Its next transaction reads the head first.
    assert_eq!(group("b").unwrap().head, 3);
    let seqs: Vec<u64> = store
        .changes(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs,
        [1, 3],
        "b's change once, numbered after the moved head"
    );
}

/// Two reconcilers over one store take turns (the store keeps the writer
/// lock): neither numbers from a head the other moved.
#[test]
fn two_reconcilers_on_one_store_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap());
    let first = Reconciler::new(Arc::clone(&store), Settings::default()).unwrap();
    let second = Reconciler::new(Arc::clone(&store), Settings::default()).unwrap();
    let group = |rec: &Reconciler, name: &str| {
        let mut tx = rec.begin(Source::Api, Actor::default());
        tx.upsert_group(GroupInput::new(name)).unwrap();
        tx.commit().unwrap().head
    };
    assert_eq!(group(&first, "a"), 1);
    assert_eq!(group(&second, "b"), 2);
    assert_eq!(group(&first, "c"), 3);
}

/// A SCEP registration with challenge digest `challenge` and, when given,
/// an ACME account with key thumbprint `thumbprint`.
fn registration(challenge: &str, thumbprint: Option<&str>) -> idsync_schema::Registration {
    let now = time::OffsetDateTime::now_utc();
    idsync_schema::Registration {
        id: Uuid::now_v7(),
        protocol: idsync_schema::Protocol::Scep,
        asset: Uuid::now_v7(),
        profile: "Vault".into(),
        dns_names: Vec::new(),
        expires: now + time::Duration::days(1),
        status: idsync_schema::RegistrationStatus::Active,
        requester: "ops".into(),
        decided_by: None,
        comment: None,
        challenge_sha256: Some(challenge.into()),
        account: thumbprint.map(|t| idsync_schema::AcmeAccount {
            key: "{}".into(),
            thumbprint: t.into(),
            contact: Vec::new(),
            status: idsync_schema::AcmeAccountStatus::Valid,
            created: now,
        }),
        meta: idsync_schema::Meta::new(now),
    }
}

/// A request made under SCEP `transaction` and the certificate with
/// `serial` it got.
fn request_and_certificate(
    transaction: &str,
    serial: &str,
) -> (idsync_schema::EnrollmentRequest, idsync_schema::Certificate) {
    use idsync_schema::{Certificate, EnrollmentRequest, KeyType, Meta, Protocol, RequestStatus};
    let now = time::OffsetDateTime::now_utc();
    let request = EnrollmentRequest {
        id: Uuid::now_v7(),
        protocol: Protocol::Scep,
        profile: "Vault".into(),
        asset: None,
        requester: "ops".into(),
        status: RequestStatus::Approved,
        data: Default::default(),
        key_type: None,
        csr: None,
        decided_by: None,
        comment: None,
        reason: None,
        certificate: None,
        transaction: Some(transaction.into()),
        meta: Meta::new(now),
    };
    let certificate = Certificate {
        id: Uuid::now_v7(),
        serial: serial.into(),
        subject: "CN=a".into(),
        profile: "Vault".into(),
        asset: None,
        request: request.id,
        key_type: KeyType::EcdsaP256,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        not_before: now,
        not_after: now,
        pem: String::new(),
        chain: String::new(),
        installed: None,
        revoked: None,
        meta: Meta::new(now),
    };
    (request, certificate)
}

type EnrollmentObjects = (
    idsync_schema::Registration,
    idsync_schema::EnrollmentRequest,
    idsync_schema::Certificate,
);

/// A registration (challenge `c1`, account `k1`), a request (transaction
/// `t1`) and a certificate (serial `0A1B`), committed.
fn store_enrollment_objects(rec: &Reconciler) -> EnrollmentObjects {
    let r = registration("c1", Some("k1"));
    let (request, certificate) = request_and_certificate("t1", "0A1B");
    in_tx(rec, |tx| {
        tx.put_registration(r.clone()).unwrap();
        tx.put_request(request.clone()).unwrap();
        tx.put_certificate(certificate.clone()).unwrap();
    });
    (r, request, certificate)
}

/// Each of [`store_enrollment_objects`]'s is found through its index.
fn assert_found_by_index(rec: &Reconciler, (r, request, certificate): &EnrollmentObjects) {
    let store = rec.store();
    let found = |index, value| store.lookup(index, value).unwrap();
    assert_eq!(found(Index::RegistrationChallenge, "c1"), Some(r.id));
    assert_eq!(found(Index::AcmeAccount, "k1"), Some(r.id));
    let marked = |prefix: Vec<u8>| store.marked(&prefix).unwrap();
    assert_eq!(
        marked(keys::requests_of_transaction_prefix("t1")),
        [request.id]
    );
    assert_eq!(
        marked(keys::certificates_of_serial_prefix("0a1b")),
        [certificate.id]
    );
    let expiring = store
        .scan_page(keys::CERTIFICATES_BY_EXPIRY, None, 10)
        .unwrap();
    let expiring: Vec<_> = expiring
        .iter()
        .filter_map(|(k, _)| keys::expiry_of(k))
        .collect();
    assert_eq!(
        expiring,
        [(certificate.not_after.unix_timestamp(), certificate.id)]
    );
    assert_eq!(newest_requests(rec, None), [request.id]);
    assert_eq!(
        newest_requests(rec, Some(request.status.as_str())),
        [request.id]
    );
}

/// The requests on the newest-first index (of `status`), in its order.
fn newest_requests(rec: &Reconciler, status: Option<&str>) -> Vec<Uuid> {
    let prefix = keys::requests_newest_prefix(status);
    let page = rec.store().scan_page(&prefix, None, 100).unwrap();
    page.iter()
        .filter_map(|(k, _)| keys::newest_request_id(k))
        .collect()
}

/// A request's status entry moves with its status; the newest-first
/// index lists the newest request first.
#[test]
fn requests_are_listed_newest_first_and_by_status() {
    let (_dir, rec) = fresh();
    let (first, _) = request_and_certificate("t1", "01");
    let (second, _) = request_and_certificate("t2", "02");
    let put = |r: &idsync_schema::EnrollmentRequest| {
        let mut tx = rec.begin(Source::Api, Actor::default());
        tx.put_request(r.clone()).unwrap();
        tx.commit().unwrap();
    };
    put(&first);
    put(&second);
    assert_eq!(newest_requests(&rec, None), [second.id, first.id]);
    let status = first.status;
    let mut issued = first.clone();
    issued.status = idsync_schema::RequestStatus::Issued;
    assert!(status.may_become(issued.status), "{status:?}");
    put(&issued);
    assert_eq!(newest_requests(&rec, Some(status.as_str())), [second.id]);
    assert_eq!(newest_requests(&rec, Some("issued")), [first.id]);
    assert_eq!(newest_requests(&rec, None), [second.id, first.id]);
}

/// The enrollment indexes find what they index, and one challenge or one
/// account key cannot name two registrations.
#[test]
fn enrollment_indexes_find_and_stay_unique() {
    let (dir, rec) = fresh();
    let stored = store_enrollment_objects(&rec);
    assert_found_by_index(&rec, &stored);
    let mut tx = rec.begin(Source::Api, Actor::default());
    assert_refused(
        tx.put_registration(registration("c1", None)),
        "challenge",
        Rule::NotUnique,
    );
    assert_refused(
        tx.put_registration(registration("c2", Some("k1"))),
        "account",
        Rule::NotUnique,
    );
    drop(tx);
    drop(dir);
}

/// A store written before the enrollment indexes existed gets their
/// entries at the next start, and only once.
#[test]
fn a_store_without_the_enrollment_indexes_gets_them_at_start() {
    let (dir, rec) = fresh();
    let (r, request, certificate) = store_enrollment_objects(&rec);
    // What an older version left: the objects, none of the new entries.
    let mut old = crate::engine::Batch::new();
    old.delete(Index::RegistrationChallenge.key("c1"));
    old.delete(Index::AcmeAccount.key("k1"));
    old.delete(keys::request_of_transaction("t1", request.id));
    old.delete(keys::request_newest(None, request.id));
    old.delete(keys::certificate_expiry(
        certificate.not_after.unix_timestamp(),
        certificate.id,
    ));
    old.delete(keys::request_newest(
        Some(request.status.as_str()),
        request.id,
    ));
    old.delete(keys::certificate_of_serial("0A1B", certificate.id));
    old.delete(keys::INDEX_LAYOUT_KEY.to_vec());
    rec.store().engine().write(old).unwrap();
    let head = rec.store().head().unwrap();
    assert_eq!(rec.store().lookup(Index::AcmeAccount, "k1").unwrap(), None);
    drop(rec);

    let rec = reconciler(dir.path());
    assert_found_by_index(&rec, &(r, request, certificate));
    assert_eq!(
        rec.store().head().unwrap(),
        head,
        "the upgrade changes no object"
    );
    assert!(!rec.upgrade_indexes().unwrap(), "done once");
}

/// A window of an object's history holds its changes numbered in the
/// window and nobody else's, even when another event names its id.
#[test]
fn object_changes_read_one_window_of_one_object() {
    let (_dir, rec) = fresh();
    let how = UserWrite::default();
    let ann = import(&rec, row("Ann", &[]), &how).id();
    let bob = add_user(&rec, "bob@x.org", &[]);
    import(&rec, row("Anna", &[]), &how);
    // An event about Bob whose actor names Ann's id.
    let mut tx = rec.begin(Source::Api, Actor::activation_link(ann));
    let mut update = person("bob@x.org");
    update.first_name = Field::Set("Robert".into());
    tx.upsert_user(update, &how).unwrap();
    tx.commit().unwrap();
    let store = rec.store();
    let head = store.head().unwrap();
    let seqs = |id, first, last| -> Vec<u64> {
        store
            .object_changes(id, first, last)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(ann, 1, head), [1, 3]);
    assert_eq!(seqs(ann, 2, head), [3]);
    assert_eq!(seqs(ann, 1, 2), [1]);
    assert_eq!(seqs(bob, 1, head), [2, 4]);
    assert!(seqs(ann, 3, 2).is_empty());
    // Each keeps the numbers of its own changes.
    assert_eq!(stored_user(&rec, ann).unwrap().meta.changes, [1, 3]);
    assert_eq!(stored_user(&rec, bob).unwrap().meta.changes, [2, 4]);
}

/// An object keeps the numbers of its last 32 changes, oldest first.
#[test]
fn an_object_keeps_the_numbers_of_its_last_changes() {
    let (_dir, rec) = fresh();
    let how = UserWrite::default();
    let mut id = None;
    for i in 0..40 {
        id = Some(import(&rec, row(&format!("Ann{i}"), &[]), &how).id());
    }
    let kept = stored_user(&rec, id.unwrap()).unwrap().meta.changes;
    assert_eq!(kept, (9..=40).collect::<Vec<u64>>());
}

/// A transaction under a drop-folder claim (`Tx::fence`) lands only while
/// the claim holds the value its process wrote: once another process on
/// the same database took the claim over, its batches, pipelined or not,
/// write nothing; the new holder's land.
#[test]
fn a_fenced_transaction_does_not_land_after_a_takeover() {
    let cluster = crate::test_postgres::TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = cluster.engine_options(EngineOptions::default());
    let open = || Arc::new(Store::open(EngineKind::Postgres, dir.path(), &opts).unwrap());
    let (store_a, store_b) = (open(), open());
    let a = Reconciler::new(Arc::clone(&store_a), Settings::default()).unwrap();
    let b = Reconciler::new(Arc::clone(&store_b), Settings::default()).unwrap();
    let name = "users/.work 20261204T100000.000000Z-x.csv";
    let claim_a = store_a.claim(name, "node-a", "pa").unwrap().unwrap();
    let group = |rec: &Reconciler, claim: &crate::claims::Claim, g: &str, pipelined: bool| {
        let mut tx = rec.begin(Source::Csv, Actor::default());
        tx.fence(claim);
        tx.upsert_group(GroupInput::new(g)).unwrap();
        if pipelined {
            tx.commit_pipelined().unwrap();
        }
        tx.commit()
    };
    group(&a, &claim_a, "first", false).unwrap();

    let read = store_b.claim_holder(name).unwrap().unwrap();
    let claim_b = store_b
        .take_over(name, "node-b", "pb", Some(&read))
        .unwrap()
        .unwrap();
    for pipelined in [false, true] {
        let e = group(&a, &claim_a, "late", pipelined).unwrap_err();
        assert!(
            matches!(&e, StoreError::Engine(crate::EngineError::Conflict { key, .. }) if key.starts_with("s/claim/")),
            "refused for the claim: {e}"
        );
    }
    assert!(store_a.lookup(Index::GroupName, "late").unwrap().is_none());
    // b numbers from the head it last saw: its first try loses to a's
    // commit, its next lands.
    if let Err(e) = group(&b, &claim_b, "second", false) {
        assert!(e.is_conflict(), "{e}");
        group(&b, &claim_b, "second", false).unwrap();
    }
    let seqs: Vec<u64> = store_a
        .changes(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2], "the fenced batches left no gap");
}
