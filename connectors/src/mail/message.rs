//! One mail as it goes to the relay: headers, the two parts rendered from
//! the templates, and a `Message-ID` that derives from what the mail is
//! about, so that a mail sent twice (at least once delivery) is
//! recognisable as one by anyone who reads both.

use idsync_schema::{ApplicationSettings, User};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use sha2::Digest as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::config::MailConfig;
use super::requests::{Notice, Recipient};
use super::templates::{ActivationVars, Rendered, RequestVars, Templates};
use crate::connector::ConnectorError;
use idsync_schema::EnrollmentRequest;

/// Builds messages from the configuration and the templates.
pub(super) struct Composer {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    /// The right-hand side of `Message-ID`s: the From address's domain.
    domain: String,
    templates: Templates,
}

/// `2030-01-01 00:00`.
fn minutes(t: OffsetDateTime) -> String {
    let s = t.format(&Rfc3339).unwrap_or_default();
    s.get(..16).unwrap_or(&s).replace('T', " ")
}

impl Composer {
    pub(super) fn new(cfg: &MailConfig, templates: Templates) -> Result<Self, ConnectorError> {
        let problem = |(key, m): (&str, String)| ConnectorError::Config(format!("{key}: {m}"));
        let from = cfg.from_mailbox().map_err(problem)?;
        Ok(Self {
            domain: from.email.domain().to_owned(),
            reply_to: cfg.reply_to_mailbox().map_err(problem)?,
            from,
            templates,
        })
    }

    /// The `Message-ID` of activation sending `nonce` for `user`.
    pub(super) fn activation_id(&self, user: &User, nonce: &str) -> String {
        format!("<activation.{}.{nonce}@{}>", user.id.simple(), self.domain)
    }

    /// The activation mail of `app` for `user`; `Err` (the reason) when
    /// it cannot be made (no or a bad mail address, a template failing).
    pub(super) fn activation(
        &self,
        user: &User,
        app: &ApplicationSettings,
        nonce: &str,
        link: &str,
        expires: OffsetDateTime,
    ) -> Result<Message, String> {
        let Some(mail) = user.mail.as_deref() else {
            return Err("the user has no mail address".into());
        };
        let name = user.greeting();
        let to_name = Some(name.clone()).filter(|n| n != mail);
        let to = Mailbox::new(
            to_name,
            mail.parse()
                .map_err(|e| format!("the user's mail address is not valid: {e}"))?,
        );
        let vars = ActivationVars {
            name,
            first_name: user.first_name.clone().unwrap_or_default(),
            last_name: user.last_name.clone().unwrap_or_default(),
            login_name: user.login_name.clone().unwrap_or_default(),
            mail: mail.to_owned(),
            application: app.shown_name().to_owned(),
            link: link.to_owned(),
            expires: minutes(expires),
            lifetime_days: app.link_lifetime_days,
        };
        let r = self
            .templates
            .render("activation", user.language.as_deref(), &vars)
            .map_err(|e| e.to_string())?;
        self.message(to, r, self.activation_id(user, nonce))
    }

    /// The `notice` mail about request `r` for `rcpt`. Its `Message-ID`
    /// names the request, its status and the recipient, so a mail sent
    /// twice is one message to its reader.
    pub(super) fn request(
        &self,
        notice: Notice,
        r: &EnrollmentRequest,
        rcpt: &Recipient,
    ) -> Result<Message, String> {
        let names: Vec<&str> = r
            .data
            .dns_names
            .iter()
            .chain(&r.data.ip_addresses)
            .map(String::as_str)
            .collect();
        let vars = RequestVars {
            name: rcpt.name.clone(),
            request: r.id.to_string(),
            profile: r.profile.clone(),
            protocol: r.protocol.as_str().to_owned(),
            subject: r.data.name.clone().unwrap_or_default(),
            names: names.join(", "),
            requester: r.requester.clone(),
            requested: minutes(r.meta.created),
            state: r.status.as_str().to_owned(),
            decided_by: r.decided_by.clone().unwrap_or_default(),
            comment: r.comment.clone().unwrap_or_default(),
            reason: r.reason.clone().unwrap_or_default(),
        };
        let rendered = self
            .templates
            .render(notice.kind(), rcpt.language.as_deref(), &vars)
            .map_err(|e| e.to_string())?;
        let rcpt_tag = hex::encode(
            &sha2::Sha256::digest(rcpt.to.email.to_string().to_lowercase().as_bytes())[..6],
        );
        let id = format!(
            "<request.{}.{}.{rcpt_tag}@{}>",
            r.id.simple(),
            r.status.as_str(),
            self.domain
        );
        self.message(rcpt.to.clone(), rendered, id)
    }

    /// A multipart mail to `to` from what the templates made.
    fn message(&self, to: Mailbox, r: Rendered, message_id: String) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject)
            .message_id(Some(message_id));
        if let Some(rt) = &self.reply_to {
            b = b.reply_to(rt.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| format!("building the mail: {e}"))
    }
}
