//! Unit tests of the mail connector with a fake view; the relay in
//! these tests is a closed port (the real SMTP server is in
//! tests/tests/mail.rs).

use std::collections::BTreeMap;

use idsync_schema::{
    Activation, ActivationState, ApplicationSettings, Kind, Operation, SendPolicy,
};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::connector::{Remote, ViewError};

struct FakeView(BTreeMap<Uuid, Value>);

impl View for FakeView {
    fn object(&self, _kind: Kind, id: Uuid) -> Result<Option<Value>, ViewError> {
        Ok(self.0.get(&id).cloned())
    }
    fn members(&self, _group: Uuid) -> Result<Vec<Uuid>, ViewError> {
        Ok(vec![])
    }
    fn for_each(&self, _kind: Kind, visit: &mut dyn FnMut(Value) -> bool) -> Result<(), ViewError> {
        for v in self.0.values() {
            if !visit(v.clone()) {
                break;
            }
        }
        Ok(())
    }
    fn remote(&self, _id: Uuid) -> Result<Option<Remote>, ViewError> {
        Ok(None)
    }
    fn remotes(&self, _visit: &mut dyn FnMut(Uuid, Remote) -> bool) -> Result<(), ViewError> {
        Ok(())
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn connector() -> MailConnector {
    let cfg = MailConfig {
        relay: "127.0.0.1".into(),
        port: closed_port(),
        tls: TlsMode::None,
        from: "idsync <noreply@example.com>".into(),
        public_url: "https://id.example.com".into(),
        timeout_ms: 2_000,
        ..MailConfig::default()
    };
    let app = ApplicationSettings {
        name: "crm".into(),
        display_name: Some("The CRM".into()),
        link_lifetime_days: 7,
        send_policy: SendPolicy::Manual,
    };
    MailConnector::new(cfg, &[app], [1; KEY_LEN], Default::default()).unwrap()
}

fn user(queued: bool) -> User {
    let now = OffsetDateTime::now_utc();
    let mut activations = BTreeMap::new();
    if queued {
        activations.insert("crm".to_owned(), Activation::queued("n1".into(), now));
    }
    serde_json::from_value(json!({
        "id": Uuid::now_v7(), "mail": "jo@example.com", "firstName": "Jo",
        "lastName": "<b>Doe</b>", "status": "active", "language": "de_DE",
        "applications": ["crm"], "source": "CSV",
        "activations": activations,
        "meta": {"created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "version": 1}
    }))
    .unwrap()
}

fn event(u: &User) -> Event {
    Event {
        seq: 1,
        kind: Kind::User,
        id: u.id,
        operation: Operation::Updated,
        changed: vec!["activations".into()],
        object: serde_json::to_value(u).unwrap(),
    }
}

#[tokio::test]
async fn a_relay_down_is_retried_and_nothing_is_recorded() {
    let c = connector();
    let u = user(true);
    let view = FakeView([(u.id, serde_json::to_value(&u).unwrap())].into());
    let d = c.deliver(&[event(&u)], &view).await;
    assert!(
        matches!(&d.outcomes[..], [Outcome::Retry(m)] if m.contains("127.0.0.1")),
        "{:?}",
        d.outcomes
    );
    assert!(d.activations.is_empty());
    assert!(c.healthcheck().await.is_err());
}

#[tokio::test]
async fn events_without_a_queued_sending_are_delivered_without_the_relay() {
    let c = connector();
    let u = user(false);
    let view = FakeView([(u.id, serde_json::to_value(&u).unwrap())].into());
    let mut group = event(&u);
    group.kind = Kind::Group;
    let gone = Event {
        id: Uuid::now_v7(),
        ..event(&u)
    };
    let d = c.deliver(&[event(&u), group, gone], &view).await;
    assert_eq!(d.outcomes, vec![Outcome::Delivered; 3]);
    // The event's object says queued, the store says not: the store wins.
    let stale = event(&user(true));
    let d = c.deliver(&[Event { id: u.id, ..stale }], &view).await;
    assert_eq!(d.outcomes, vec![Outcome::Delivered]);
    assert!(d.activations.is_empty());
}

#[tokio::test]
async fn what_cannot_be_mailed_fails_with_its_reason() {
    let c = connector();
    let mut u = user(true);
    u.mail = None;
    let mut other = user(false);
    other.activations.insert(
        "gone".into(),
        Activation::queued("n2".into(), OffsetDateTime::now_utc()),
    );
    other.applications.push("gone".into());
    let view = FakeView(
        [
            (u.id, serde_json::to_value(&u).unwrap()),
            (other.id, serde_json::to_value(&other).unwrap()),
        ]
        .into(),
    );
    let d = c.deliver(&[event(&u), event(&other)], &view).await;
    assert_eq!(d.outcomes, vec![Outcome::Delivered; 2]);
    let reasons: Vec<_> = d
        .activations
        .iter()
        .map(|r| (r.activation.state, r.activation.reason.clone().unwrap()))
        .collect();
    assert_eq!(
        reasons[0],
        (
            ActivationState::Failed,
            "the user has no mail address".into()
        )
    );
    assert!(reasons[1].1.contains("not configured"));
}

// The pooled transport needs a runtime from the start.
#[tokio::test]
async fn the_message_is_multipart_in_the_users_language_with_a_derived_id() {
    let c = connector();
    let u = user(true);
    let app = &c.apps["crm"];
    let link = c.cfg.activation_link("TOKEN");
    let m = c
        .composer
        .activation(&u, app, "n1", &link, OffsetDateTime::UNIX_EPOCH)
        .unwrap();
    let raw = String::from_utf8(m.formatted()).unwrap();
    assert!(
        raw.contains(&format!(
            "Message-ID: <activation.{}.n1@example.com>",
            u.id.simple()
        )),
        "{raw}"
    );
    assert!(raw.contains("multipart/alternative"));
    assert!(raw.contains("text/plain") && raw.contains("text/html"));
    assert!(raw.contains("<jo@example.com>"), "{raw}");
}

#[tokio::test]
async fn the_plan_lists_every_queued_sending() {
    let c = connector();
    let (a, b) = (user(true), user(false));
    let view = FakeView(
        [
            (a.id, serde_json::to_value(&a).unwrap()),
            (b.id, serde_json::to_value(&b).unwrap()),
        ]
        .into(),
    );
    let plan = c.plan(&view).await.unwrap();
    assert_eq!(plan.creates, 1);
    assert!(plan.text.contains(&a.id.to_string()));
    assert!(c.apply(&plan).await.is_err(), "relay down, nothing sent");
}
