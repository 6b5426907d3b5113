//! Approval notifications by e-mail (issue 16, seed 002): "for profiles
//! that require approval, a notification is sent to the administrator, and
//! the requester gets further information by e-mail".
//!
//! Read off the change events of certificate requests, with no state of
//! their own:
//! - a request **created** in `pending_approval` mails the approvers: the
//!   addresses of `mail.approvers` and every active user holding the
//!   `Approval` role who has a mail address (in that user's language);
//! - a request whose **status changed** after an approver decided it
//!   (`approved`, `issued`, `rejected`, `failed`) mails its requester, when
//!   the requester's token has a mail address (`[[tokens]] mail`). A
//!   request issued at once (no approval) was never waited for and mails
//!   nobody.
//!
//! An event carries the request as it is when delivered, so a mail says
//! what is true then: a request already decided when its creation is
//! delivered mails no approver (its requester hears the outcome), and an
//! approval followed at once by issuance mails the requester once, "issued".
//!
//! Delivery is at least once like the activation mails: a relay that is
//! down or answers 4xx is retried (the whole event, so a recipient mailed
//! before the failure may get the mail twice, with the same `Message-ID`);
//! a recipient the relay refuses for good (5xx) is logged and skipped.

use std::collections::{BTreeMap, BTreeSet};

use idsync_schema::{EnrollmentRequest, Kind, Operation, RequestStatus, Status, User};
use lettre::message::Mailbox;

use crate::connector::View;
use crate::event::Event;

/// Which mail a request event calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// To the approvers: the request waits for them.
    ApprovalNeeded,
    /// To the requester: the request was decided, issued or failed.
    Decided,
}

impl Notice {
    /// The template kind.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Notice::ApprovalNeeded => "approval_needed",
            Notice::Decided => "request_decided",
        }
    }
}

/// The notice `e` calls for, with the request as the event saw it.
pub(super) fn notice_of(e: &Event) -> Option<(Notice, EnrollmentRequest)> {
    if e.kind != Kind::Request {
        return None;
    }
    let r: EnrollmentRequest = serde_json::from_value(e.object.clone()).ok()?;
    let status_moved = e.changed.iter().any(|c| c == "status");
    let notice = match (e.operation, r.status) {
        (Operation::Created, RequestStatus::PendingApproval) => Notice::ApprovalNeeded,
        // An approver decided it (`decided_by` is set from the decision
        // on, through issuance or failure): a request that never waited
        // for approval has none.
        (Operation::Updated, s)
            if status_moved && s != RequestStatus::PendingApproval && r.decided_by.is_some() =>
        {
            Notice::Decided
        }
        _ => return None,
    };
    Some((notice, r))
}

/// One recipient: where, how greeted, in which language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recipient {
    pub(super) to: Mailbox,
    pub(super) name: String,
    pub(super) language: Option<String>,
}

/// Whether `user` approves requests: active, with the `Approval` role
/// (seed 002's word; `approver` is read the same way).
fn approves(user: &User) -> bool {
    user.status == Status::Active
        && user
            .roles
            .iter()
            .any(|r| r.eq_ignore_ascii_case("approval") || r.eq_ignore_ascii_case("approver"))
}

/// The approvers to mail: the configured addresses, then the users who
/// approve, each address once (compared without regard to case).
pub(super) fn approvers(
    configured: &[Mailbox],
    view: &dyn View,
) -> Result<Vec<Recipient>, crate::connector::ViewError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in configured {
        if seen.insert(m.email.to_string().to_lowercase()) {
            out.push(Recipient {
                name: m.name.clone().unwrap_or_else(|| m.email.to_string()),
                to: m.clone(),
                language: None,
            });
        }
    }
    view.for_each(Kind::User, &mut |v| {
        let Ok(user) = serde_json::from_value::<User>(v) else {
            return true;
        };
        if !approves(&user) {
            return true;
        }
        let Some(Ok(address)) = user.mail.as_deref().map(str::parse) else {
            return true;
        };
        if seen.insert(user.mail.as_deref().unwrap_or_default().to_lowercase()) {
            let name = user.greeting();
            out.push(Recipient {
                to: Mailbox::new(Some(name.clone()), address),
                name,
                language: user.language.clone(),
            });
        }
        true
    })?;
    Ok(out)
}

/// The requester of `r`, when their token has a mail address.
pub(super) fn requester(
    requesters: &BTreeMap<String, String>,
    r: &EnrollmentRequest,
) -> Option<Recipient> {
    let address = requesters.get(&r.requester)?;
    Some(Recipient {
        to: Mailbox::new(Some(r.requester.clone()), address.parse().ok()?),
        name: r.requester.clone(),
        language: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(operation: Operation, status: &str, changed: &[&str]) -> Event {
        decided(operation, status, changed, Some("boss"))
    }

    fn decided(operation: Operation, status: &str, changed: &[&str], by: Option<&str>) -> Event {
        Event {
            seq: 1,
            kind: Kind::Request,
            id: uuid::Uuid::nil(),
            operation,
            changed: changed.iter().map(|s| (*s).to_owned()).collect(),
            object: serde_json::json!({
                "id": uuid::Uuid::nil(), "protocol": "p10", "profile": "P",
                "requester": "ops", "status": status, "data": {}, "decidedBy": by,
                "meta": {"created": "2030-01-01T00:00:00Z", "modified": "2030-01-01T00:00:00Z", "version": 1}
            }),
        }
    }

    #[test]
    fn only_waiting_and_later_moves_of_the_status_mail() {
        let n = |e: Event| notice_of(&e).map(|(n, _)| n);
        assert_eq!(
            n(event(Operation::Created, "pending_approval", &[])),
            Some(Notice::ApprovalNeeded)
        );
        assert_eq!(
            n(event(
                Operation::Updated,
                "issued",
                &["status", "certificate"]
            )),
            Some(Notice::Decided)
        );
        assert_eq!(
            n(event(
                Operation::Updated,
                "rejected",
                &["status", "comment"]
            )),
            Some(Notice::Decided)
        );
        // Issued at once, without approval: nobody waited for it.
        assert_eq!(n(event(Operation::Created, "issued", &[])), None);
        // Another field of a waiting request: no second mail.
        assert_eq!(
            n(event(Operation::Updated, "pending_approval", &["comment"])),
            None
        );
        assert_eq!(
            n(event(Operation::Updated, "issued", &["certificate"])),
            None
        );
        // Created, then issued, with no approver: nobody waited for it.
        assert_eq!(
            n(decided(Operation::Updated, "issued", &["status"], None)),
            None
        );
    }
}
