//! The operator console (issue 17): HTML pages under `/ui/` on the admin
//! listener for the seeds' operators and approvers, who would otherwise
//! need the CLI or the JSON API.
//!
//! Why it is built this way:
//! - Server-rendered pages ([`views`], minijinja templates compiled into
//!   the binary); every page works without JavaScript, and the one small
//!   script is served from `/ui/static/`, so the Content-Security-Policy
//!   allows no inline script and nothing from elsewhere.
//! - A token is typed once and exchanged for a session ([`session`]); the
//!   session cookie is `HttpOnly` and `SameSite=Strict`, and every form
//!   carries the session's CSRF token, also checked against `Origin` and
//!   `Sec-Fetch-Site` ([`guard`]). Sign-in attempts are rate-limited per
//!   peer.
//! - The token's roles decide which screens show ([`screens`]); the
//!   actions go through the same services as the admin API (the
//!   enrollment service for approvals), recorded with the session's token
//!   as actor.

mod applications;
mod assets;
pub mod config;
mod enroll;
mod groups;
mod guard;
mod history;
mod import;
pub mod listener;
mod requests;
mod screens;
mod session;
mod users;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use idsync_store::reconcile::Reconciler;
use zeroize::Zeroizing;

use crate::infra::auth::Auth;
use crate::infra::http::read_body;
use crate::infra::metrics::Metrics;
use crate::infra::rate_limit::RateLimit;
use crate::sources::activation::Activations;
use crate::sources::enroll::Enrollment;
use config::ConsoleConfig;
pub use import::ImportSetup;
use session::{Live, Sessions, COOKIE};
use views::Views;

/// Where the console lives on the admin listener.
pub const PREFIX: &str = "/ui";

/// Whether the admin listener hands `path` to the console.
pub fn is_console_route(path: &str) -> bool {
    path == PREFIX || path.starts_with("/ui/")
}

/// A request for the console, its body unread: forms are read whole (up
/// to `max_body`), a CSV upload is streamed to disk.
pub struct ConsoleRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Incoming,
    /// `admin.max_body_bytes`: the largest form.
    pub max_body: usize,
    pub peer: SocketAddr,
}

/// A request as the screens see it: a form's body read whole.
pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub peer: IpAddr,
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("console upload folder {}: {source}", .path.display())]
    UploadDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The console, for the life of the admin listener.
pub struct Console {
    auth: Arc<Auth>,
    sessions: Sessions,
    sign_ins: RateLimit<IpAddr>,
    secure_cookie: bool,
    views: Views,
    metrics: Arc<Metrics>,
    rec: Arc<Reconciler>,
    enrollment: Arc<Enrollment>,
    import: ImportSetup,
    uploads: import::Uploads,
    activations: Arc<Activations>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    pub fn new(
        cfg: &ConsoleConfig,
        auth: Arc<Auth>,
        metrics: Arc<Metrics>,
        rec: Arc<Reconciler>,
        enrollment: Arc<Enrollment>,
        import: ImportSetup,
        activations: Arc<Activations>,
    ) -> Result<Self, ConsoleError> {
        import::prepare_upload_dir(&import.upload_dir).map_err(|source| {
            ConsoleError::UploadDir {
                path: import.upload_dir.clone(),
                source,
            }
        })?;
        Ok(Self {
            auth,
            sessions: Sessions::new(cfg.idle(), cfg.max_age(), cfg.max_sessions),
            sign_ins: RateLimit::per_minute(cfg.sign_ins_per_minute_per_peer),
            secure_cookie: cfg.over_https(),
            views: Views::new()?,
            metrics,
            rec,
            enrollment,
            import,
            uploads: import::Uploads::default(),
            activations,
        })
    }

    /// Answer one request of a listener that serves the console: under
    /// [`PREFIX`], or `/` (which leads there). `max_body` bounds a form.
    pub async fn answer(
        &self,
        req: hyper::Request<Incoming>,
        max_body: usize,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        if path == "/" {
            return views::redirect("/ui/");
        }
        if !is_console_route(path) {
            return crate::infra::http::respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n",
            );
        }
        self.handle(ConsoleRequest {
            method: &parts.method,
            path,
            query: parts.uri.query(),
            headers: &parts.headers,
            body,
            max_body,
            peer,
        })
        .await
    }

    /// Answer one request under [`PREFIX`].
    pub async fn handle(&self, req: ConsoleRequest<'_>) -> Response<Full<Bytes>> {
        let path = req.path;
        if path == PREFIX {
            return views::redirect("/ui/");
        }
        if let Some(name) = path.strip_prefix("/ui/static/") {
            return views::static_file(req.method, name);
        }
        let live = self.session_of(req.headers);
        if *req.method == Method::POST && path == import::UPLOAD {
            // Streamed: the file may be far larger than a form.
            return match &live {
                Some(live) => import::upload(self, req, live).await,
                None => self.signed_out(req.method),
            };
        }
        let body = match read_body(req.body, req.max_body, req.peer, "console").await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        let call = Call {
            method: req.method,
            path,
            query: req.query,
            headers: req.headers,
            body,
            peer: req.peer.ip(),
        };
        if path == "/ui/signin" {
            return self.sign_in(&call).await;
        }
        let Some(live) = live else {
            return self.signed_out(call.method);
        };
        if *call.method == Method::POST {
            if let Err(refused) = guard::check_form(&call, &live) {
                return self.views.refused(&live, refused);
            }
            if path == "/ui/signout" {
                return self.sign_out(call.headers);
            }
        }
        screens::route(self, &call, &live).await
    }

    /// The live session of the request's cookie.
    fn session_of(&self, headers: &HeaderMap) -> Option<Live> {
        let id = guard::cookie(headers, COOKIE)?;
        self.sessions.find(id, &self.auth)
    }

    /// No (live) session: pages lead to the sign-in form; a form sent
    /// from a page whose session has ended is told so, not half-applied.
    fn signed_out(&self, method: &Method) -> Response<Full<Bytes>> {
        if *method == Method::GET || *method == Method::HEAD {
            return views::redirect("/ui/signin");
        }
        self.views.error(
            None,
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended (signed out, expired, or the token was withdrawn). Nothing was changed: sign in again and repeat the action.",
            "/ui/signin",
        )
    }

    async fn sign_in(&self, req: &Call<'_>) -> Response<Full<Bytes>> {
        match *req.method {
            Method::GET | Method::HEAD => {
                if self.session_of(req.headers).is_some() {
                    return views::redirect("/ui/");
                }
                self.views.sign_in(StatusCode::OK, None)
            }
            Method::POST => self.sign_in_with_form(req),
            _ => views::method_not_allowed("GET, HEAD, POST"),
        }
    }

    fn sign_in_with_form(&self, req: &Call<'_>) -> Response<Full<Bytes>> {
        // No session yet, so no CSRF token: a cross-site sign-in (login
        // CSRF) is refused by where the form came from.
        if let Err(refused) = guard::same_origin(req.headers) {
            return self.views.error(
                None,
                StatusCode::FORBIDDEN,
                "Refused",
                refused.message(),
                "/ui/signin",
            );
        }
        if let Err(wait) = self.sign_ins.check(&req.peer) {
            tracing::warn!(peer = %req.peer, "console: sign-in attempts over the limit");
            let mut r = self.views.sign_in(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many sign-in attempts from this address: wait a minute and try again."),
            );
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        let token = token_field(&req.body);
        let identity = match self.auth.sign_in(&token) {
            Ok(identity) => identity,
            Err(denied) => {
                // The reason names no token (see `Denied`).
                tracing::info!(peer = %req.peer, reason = %denied, "console: sign-in refused");
                return self.views.sign_in(
                    StatusCode::UNAUTHORIZED,
                    Some("This token is not accepted."),
                );
            }
        };
        let id = match self.sessions.open(&identity) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "console: no random numbers for a session");
                return self.views.error(
                    None,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "No session could be made; try again.",
                    "/ui/signin",
                );
            }
        };
        tracing::info!(peer = %req.peer, token = %identity.token, "console: signed in");
        let mut r = views::redirect("/ui/");
        self.set_cookie(&mut r, &id, None);
        r
    }

    fn sign_out(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        if let Some(id) = guard::cookie(headers, COOKIE) {
            self.sessions.close(id);
        }
        let mut r = views::redirect("/ui/signin");
        self.set_cookie(&mut r, "", Some(0));
        r
    }

    /// The session cookie: only for `/ui/`, never to scripts, never on a
    /// request from another site (`Secure` when configured for HTTPS).
    /// `max_age`: `Some(0)` clears it; none: a browser-session cookie (the
    /// server ends the session anyway).
    fn set_cookie(&self, r: &mut Response<Full<Bytes>>, value: &str, max_age: Option<u64>) {
        let mut c = format!("{COOKIE}={value}; Path=/ui/; HttpOnly; SameSite=Strict");
        if self.secure_cookie {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// The sign-in form's `token` field, in a buffer wiped when dropped.
fn token_field(body: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(String::from_utf8_lossy(body).into_owned());
    let mut token = Zeroizing::new(String::new());
    for pair in body.split('&') {
        if let Some(value) = pair.strip_prefix("token=") {
            *token = crate::infra::http::percent_decode(value, true);
        }
    }
    token
}
