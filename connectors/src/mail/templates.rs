//! The mail templates: compiled into the binary for `en` and `de`,
//! replaceable one file at a time from `mail.templates_dir`, picked by the
//! user's language with a fall back `xx-XX` (or `xx_XX`) → `xx` → `en`.
//!
//! Why minijinja: operators edit the texts without a rebuild, in a syntax
//! many know (Jinja), and it escapes values in `.html` templates on its own
//! (a name or an application holding `<script>` stays text). Every template
//! is rendered once with sample values when the connector is built, so a
//! broken override is a start-up error, not a failed mail hours later.
//!
//! A kind of mail is three templates: `KIND.LANG.subject` (one line),
//! `KIND.LANG.txt` and `KIND.LANG.html` (the two parts of the message).

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The built-in templates: (name, source).
#[rustfmt::skip]
const BUILT_IN: &[(&str, &str)] = &[
    ("activation.en.subject", include_str!("templates/activation.en.subject")),
    ("activation.en.txt", include_str!("templates/activation.en.txt")),
    ("activation.en.html", include_str!("templates/activation.en.html")),
    ("activation.de.subject", include_str!("templates/activation.de.subject")),
    ("activation.de.txt", include_str!("templates/activation.de.txt")),
    ("activation.de.html", include_str!("templates/activation.de.html")),
    ("approval_needed.en.subject", include_str!("templates/approval_needed.en.subject")),
    ("approval_needed.en.txt", include_str!("templates/approval_needed.en.txt")),
    ("approval_needed.en.html", include_str!("templates/approval_needed.en.html")),
    ("approval_needed.de.subject", include_str!("templates/approval_needed.de.subject")),
    ("approval_needed.de.txt", include_str!("templates/approval_needed.de.txt")),
    ("approval_needed.de.html", include_str!("templates/approval_needed.de.html")),
    ("request_decided.en.subject", include_str!("templates/request_decided.en.subject")),
    ("request_decided.en.txt", include_str!("templates/request_decided.en.txt")),
    ("request_decided.en.html", include_str!("templates/request_decided.en.html")),
    ("request_decided.de.subject", include_str!("templates/request_decided.de.subject")),
    ("request_decided.de.txt", include_str!("templates/request_decided.de.txt")),
    ("request_decided.de.html", include_str!("templates/request_decided.de.html")),
];

/// The parts of a template set.
const PARTS: [&str; 3] = ["subject", "txt", "html"];

/// Why the templates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("templates_dir {dir}: {error}")]
    Folder { dir: String, error: std::io::Error },
    #[error("template {name}: {error}")]
    Syntax { name: String, error: String },
    #[error("template {name}: {error}")]
    Render { name: String, error: String },
    #[error("templates for {kind}.{lang}: {missing} is missing (a language needs subject, txt and html)")]
    Incomplete {
        kind: String,
        lang: String,
        missing: String,
    },
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The language whose templates were used.
    pub lang: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The values of an activation mail's templates.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationVars {
    /// How the user is greeted: display name, else first and last name,
    /// else the login name or mail.
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub login_name: String,
    pub mail: String,
    /// The application's display name.
    pub application: String,
    pub link: String,
    /// When the link stops working, `YYYY-MM-DD HH:MM`.
    pub expires: String,
    pub lifetime_days: u32,
}

impl ActivationVars {
    fn sample() -> Self {
        Self {
            name: "Ada Lovelace".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            login_name: "ada".into(),
            mail: "ada@example.com".into(),
            application: "CRM".into(),
            link: "https://id.example.com/activate/TOKEN".into(),
            expires: "2030-01-01 00:00".into(),
            lifetime_days: 7,
        }
    }
}

/// The values of the certificate request mails: `approval_needed` (to
/// the approvers) and `request_decided` (to the requester).
#[derive(Debug, Clone, Serialize)]
pub struct RequestVars {
    /// How the recipient is greeted.
    pub name: String,
    /// The request's id.
    pub request: String,
    pub profile: String,
    /// `p10`, `p12`, …
    pub protocol: String,
    /// The certificate's common name (the asset's name).
    pub subject: String,
    /// DNS names and IP addresses, comma-separated.
    pub names: String,
    /// The token that asked.
    pub requester: String,
    /// When it was asked for, `YYYY-MM-DD HH:MM`.
    pub requested: String,
    /// `pending_approval`, `approved`, `issued`, `rejected`, `failed`.
    pub state: String,
    pub decided_by: String,
    pub comment: String,
    /// Why it failed.
    pub reason: String,
}

impl RequestVars {
    fn sample(state: &str) -> Self {
        Self {
            name: "Ada Lovelace".into(),
            request: "0b3f6f5e-8c1d-4a8e-9f57-3c2d2f1f8a10".into(),
            profile: "Server P10".into(),
            protocol: "p10".into(),
            subject: "web1.example.org".into(),
            names: "web1.example.org, 10.1.2.3".into(),
            requester: "ops".into(),
            requested: "2030-01-01 00:00".into(),
            state: state.into(),
            decided_by: "boss".into(),
            comment: "fine".into(),
            reason: String::new(),
        }
    }
}

/// The templates in use.
pub struct Templates {
    env: Environment<'static>,
    /// `KIND.LANG` sets present.
    sets: BTreeSet<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("sets", &self.sets)
            .finish()
    }
}

/// The candidate languages for `language`, most specific first, ending
/// with `en`: `de_AT` → `de-AT`, `de`, `en`; `DE` → `de`, `en`; anything
/// that is no language code → `en`.
pub fn languages(language: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(l) = language {
        let l = l.trim().replace('_', "-");
        let mut parts = l.split('-');
        let primary = parts.next().unwrap_or_default().to_ascii_lowercase();
        let region = parts.next().map(str::to_ascii_uppercase);
        let is_code = |s: &str, n: std::ops::RangeInclusive<usize>| {
            n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic())
        };
        if is_code(&primary, 2..=3) && parts.next().is_none() {
            if let Some(r) = region.filter(|r| is_code(r, 2..=2)) {
                out.push(format!("{primary}-{r}"));
            }
            out.push(primary);
        }
    }
    if !out.iter().any(|l| l == "en") {
        out.push("en".into());
    }
    out
}

impl Templates {
    /// The built-in templates, each replaced by a file of the same name in
    /// `dir` (when given), more languages added from it; every set is
    /// checked by rendering it with sample values.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // A misspelt variable in an operator's template is an error at
        // start, not an empty spot in thousands of mails.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut add = |env: &mut Environment<'static>, name: String, source: String| {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| TemplateError::Syntax {
                    name: name.clone(),
                    error: e.to_string(),
                })?;
            names.insert(name);
            Ok::<(), TemplateError>(())
        };
        for (name, source) in BUILT_IN {
            add(&mut env, (*name).to_owned(), (*source).to_owned())?;
        }
        if let Some(dir) = dir {
            let folder_err = |error| TemplateError::Folder {
                dir: dir.display().to_string(),
                error,
            };
            for entry in std::fs::read_dir(dir).map_err(folder_err)? {
                let entry = entry.map_err(folder_err)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if split_name(&name).is_none() || !entry.path().is_file() {
                    continue;
                }
                let source = std::fs::read_to_string(entry.path()).map_err(folder_err)?;
                add(&mut env, name, source)?;
            }
        }
        let mut sets = BTreeSet::new();
        for name in &names {
            if let Some((kind, lang, _)) = split_name(name) {
                sets.insert(format!("{kind}.{lang}"));
            }
        }
        let t = Templates { env, sets };
        for set in &t.sets {
            let (kind, lang) = set.split_once('.').expect("KIND.LANG");
            for part in PARTS {
                if !names.contains(&format!("{set}.{part}")) {
                    return Err(TemplateError::Incomplete {
                        kind: kind.into(),
                        lang: lang.into(),
                        missing: format!("{set}.{part}"),
                    });
                }
            }
            match kind {
                "activation" => {
                    t.render_set(kind, lang, &ActivationVars::sample())?;
                }
                "approval_needed" => {
                    t.render_set(kind, lang, &RequestVars::sample("pending_approval"))?;
                }
                "request_decided" => {
                    for state in ["approved", "issued", "rejected", "failed"] {
                        t.render_set(kind, lang, &RequestVars::sample(state))?;
                    }
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// The languages with templates for `kind`.
    pub fn languages_of(&self, kind: &str) -> Vec<String> {
        self.sets
            .iter()
            .filter_map(|s| s.strip_prefix(kind)?.strip_prefix('.'))
            .map(str::to_owned)
            .collect()
    }

    /// Render mail `kind` in the best language for `language`.
    pub fn render<V: Serialize>(
        &self,
        kind: &str,
        language: Option<&str>,
        vars: &V,
    ) -> Result<Rendered, TemplateError> {
        let lang = languages(language)
            .into_iter()
            .find(|l| self.sets.contains(&format!("{kind}.{l}")))
            .unwrap_or_else(|| "en".into());
        self.render_set(kind, &lang, vars)
    }

    fn render_set<V: Serialize>(
        &self,
        kind: &str,
        lang: &str,
        vars: &V,
    ) -> Result<Rendered, TemplateError> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(vars));
        let one = |part: &str| {
            let name = format!("{kind}.{lang}.{part}");
            let render_err = |e: minijinja::Error| TemplateError::Render {
                name: name.clone(),
                error: e.to_string(),
            };
            self.env
                .get_template(&name)
                .map_err(render_err)?
                .render(ctx.clone())
                .map_err(render_err)
        };
        // A subject is one line: a value cannot add header lines.
        let subject = one("subject")?
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Rendered {
            lang: lang.to_owned(),
            subject,
            text: one("txt")?,
            html: one("html")?,
        })
    }
}

/// `KIND.LANG.PART` of a template file name, when it is one.
fn split_name(name: &str) -> Option<(&str, &str, &str)> {
    let mut it = name.split('.');
    let (kind, lang, part) = (it.next()?, it.next()?, it.next()?);
    let ok = it.next().is_none()
        && !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && !lang.is_empty()
        && lang.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
        && PARTS.contains(&part);
    ok.then_some((kind, lang, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> ActivationVars {
        ActivationVars {
            name: name.into(),
            ..ActivationVars::sample()
        }
    }

    #[test]
    fn languages_fall_back_to_the_primary_then_english() {
        assert_eq!(languages(Some("de-AT")), ["de-AT", "de", "en"]);
        assert_eq!(languages(Some("de_at")), ["de-AT", "de", "en"]);
        assert_eq!(languages(Some("DE")), ["de", "en"]);
        assert_eq!(languages(Some("de")), ["de", "en"]);
        assert_eq!(languages(Some("en-GB")), ["en-GB", "en"]);
        assert_eq!(languages(Some("")), ["en"]);
        assert_eq!(languages(Some("../etc")), ["en"]);
        assert_eq!(languages(Some("de-AT-x")), ["en"]);
        assert_eq!(languages(None), ["en"]);
    }

    #[test]
    fn built_in_languages_are_picked_with_fall_back() {
        let t = Templates::load(None).unwrap();
        assert_eq!(t.languages_of("activation"), ["de", "en"]);
        let de = t
            .render("activation", Some("de_CH"), &vars("Jörg"))
            .unwrap();
        assert_eq!(de.lang, "de");
        assert!(de.subject.starts_with("Aktivieren Sie Ihr Konto"));
        assert!(de.text.contains("Hallo Jörg"));
        let fr = t.render("activation", Some("fr-FR"), &vars("Zoé")).unwrap();
        assert_eq!(fr.lang, "en");
        assert!(fr.text.contains("https://id.example.com/activate/TOKEN"));
        assert_eq!(t.render("activation", None, &vars("x")).unwrap().lang, "en");
    }

    #[test]
    fn values_are_escaped_in_html_only_and_subjects_stay_one_line() {
        let t = Templates::load(None).unwrap();
        let mut v = vars("<script>alert(1)</script> & Co");
        v.application = "CRM\r\nBcc: victim@example.com".into();
        let r = t.render("activation", Some("en"), &v).unwrap();
        assert!(r
            .html
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; Co"));
        assert!(!r.html.contains("<script>"));
        assert!(
            r.text.contains("<script>alert(1)</script> & Co"),
            "plain text is not HTML"
        );
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }

    #[test]
    fn a_folder_overrides_and_adds_languages_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("activation.en.subject"),
            "Welcome to {{ application }}",
        )
        .unwrap();
        for part in PARTS {
            std::fs::write(
                dir.path().join(format!("activation.fr.{part}")),
                "Bonjour {{ name }}",
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("README.md"), "not a template").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(
            t.render("activation", Some("en"), &vars("x"))
                .unwrap()
                .subject,
            "Welcome to CRM"
        );
        assert_eq!(
            t.render("activation", Some("fr_FR"), &vars("Zoé"))
                .unwrap()
                .text,
            "Bonjour Zoé"
        );

        std::fs::write(dir.path().join("activation.en.txt"), "Hello {{ nmae }}").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("activation.en.txt"), "{e}");
        std::fs::write(dir.path().join("activation.en.txt"), "Hello {% if %}").unwrap();
        assert!(Templates::load(Some(dir.path())).is_err());
        std::fs::write(dir.path().join("activation.en.txt"), "Hello").unwrap();
        std::fs::remove_file(dir.path().join("activation.fr.html")).unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("activation.fr.html is missing"), "{e}");
        assert!(Templates::load(Some(&dir.path().join("nowhere"))).is_err());
    }
}
