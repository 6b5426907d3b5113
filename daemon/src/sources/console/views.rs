//! Rendering the console's pages: the templates compiled into the binary,
//! the headers every page carries, redirects and the static files.
//!
//! minijinja escapes every value in `.html` templates, so text from the
//! directory (names, comments, a CSV's content) never becomes markup.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use minijinja::Environment;
use serde_json::{json, Value};

use super::guard::Refused;
use super::screens::{nav, Screen};
use super::session::Live;
use super::ConsoleError;
use crate::infra::http::{html_page, respond};

/// Scripts and styles from `/ui/static/` only, no inline script, no
/// framing, forms only to the console.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("users.html", include_str!("templates/users.html")),
    ("user.html", include_str!("templates/user.html")),
    ("history.html", include_str!("templates/history.html")),
    ("groups.html", include_str!("templates/groups.html")),
    ("group.html", include_str!("templates/group.html")),
    ("requests.html", include_str!("templates/requests.html")),
    ("request.html", include_str!("templates/request.html")),
    ("import.html", include_str!("templates/import.html")),
    ("assets.html", include_str!("templates/assets.html")),
    (
        "applications.html",
        include_str!("templates/applications.html"),
    ),
    ("asset.html", include_str!("templates/asset.html")),
    ("profiles.html", include_str!("templates/profiles.html")),
    ("profile.html", include_str!("templates/profile.html")),
    ("registered.html", include_str!("templates/registered.html")),
    (
        "certificate.html",
        include_str!("templates/certificate.html"),
    ),
    (
        "import_result.html",
        include_str!("templates/import_result.html"),
    ),
];

const STATIC: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("static/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("static/console.js"),
    ),
];

/// The compiled templates.
pub struct Views {
    env: Environment<'static>,
}

impl Views {
    pub fn new() -> Result<Self, ConsoleError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // A value the object does not have is shown as nothing, not as
        // `none`; everything else is escaped as usual.
        env.set_formatter(|out, state, value| {
            if value.is_none() || value.is_undefined() {
                return Ok(());
            }
            minijinja::escape_formatter(out, state, value)
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    /// Page `template` for a signed-in `live` session (its navigation and
    /// sign-out form) or none, with `vars`.
    pub fn page(
        &self,
        template: &str,
        status: StatusCode,
        live: Option<&Live>,
        current: Option<Screen>,
        mut vars: Value,
    ) -> Response<Full<Bytes>> {
        if let (Some(live), Value::Object(map)) = (live, &mut vars) {
            map.insert("nav".into(), nav(live, current));
            map.insert("csrf".into(), live.csrf.clone().into());
            map.insert("who".into(), live.identity.token.as_str().into());
        }
        let rendered = self
            .env
            .get_template(template)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&vars))));
        match rendered {
            Ok(html) => {
                let mut r = html_page(status, html, CSP);
                // `no-referrer` makes Chromium send `Origin: null` with the
                // console's own forms, which the cross-site check must
                // refuse; `same-origin` still tells other sites nothing.
                r.headers_mut().insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                );
                r
            }
            Err(e) => {
                tracing::error!(template, error = %e, "console: a page failed to render");
                html_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>This page could not be shown.</p>"
                        .into(),
                    CSP,
                )
            }
        }
    }

    pub fn sign_in(&self, status: StatusCode, error: Option<&str>) -> Response<Full<Bytes>> {
        self.page("signin.html", status, None, None, json!({ "error": error }))
    }

    /// An error page: what went wrong and where to go on.
    pub fn error(
        &self,
        live: Option<&Live>,
        status: StatusCode,
        heading: &str,
        message: &str,
        back: &str,
    ) -> Response<Full<Bytes>> {
        let back_label = if back == "/ui/signin" {
            "Sign in"
        } else {
            "Back"
        };
        let vars = json!({
            "heading": heading, "message": message, "back": back, "back_label": back_label,
        });
        self.page("error.html", status, live, None, vars)
    }

    /// A form refused by [`super::guard`].
    pub fn refused(&self, live: &Live, why: Refused) -> Response<Full<Bytes>> {
        self.error(
            Some(live),
            StatusCode::FORBIDDEN,
            "Refused",
            why.message(),
            "/ui/",
        )
    }

    /// The token's roles do not include the screen's.
    pub fn forbidden(&self, live: &Live) -> Response<Full<Bytes>> {
        self.error(
            Some(live),
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your token's roles do not include this screen or action.",
            "/ui/",
        )
    }

    pub fn not_found(&self, live: &Live) -> Response<Full<Bytes>> {
        self.error(
            Some(live),
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here.",
            "/ui/",
        )
    }
}

/// 303 to `to` (after a form: the browser fetches `to` with GET, so a
/// reload does not send the form again).
pub fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed\n",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// A download: `body` as the file `name` (quoted: printable ASCII but
/// quotes and backslashes), never sniffed, never cached.
pub fn attachment(body: Vec<u8>, content_type: &'static str, name: &str) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::OK, content_type, body);
    let quoted: String = name
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{quoted}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/ui/static/NAME`: public (the sign-in page needs them), compiled in.
pub fn static_file(method: &Method, name: &str) -> Response<Full<Bytes>> {
    if let Some(refused) = crate::infra::http::unless_get_or_head(method) {
        return refused;
    }
    let Some((_, content_type, body)) = STATIC.iter().find(|(n, _, _)| *n == name) else {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        );
    };
    let mut r = respond(StatusCode::OK, content_type, *body);
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template file not in [`TEMPLATES`] is a page that fails to render
    /// at run time: every file of `templates/` must be there.
    #[test]
    fn every_template_file_is_compiled_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/sources/console/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                TEMPLATES.iter().any(|(n, _)| *n == name),
                "{name} is not in TEMPLATES"
            );
        }
        assert!(Views::new().is_ok());
    }
}
