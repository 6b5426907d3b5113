//! What keeps another site from acting through a signed-in browser: the
//! session's CSRF token in every form, and the browser's own word on where
//! a request comes from (`Sec-Fetch-Site`, `Origin`), either of which
//! refuses a cross-site form. The cookie is `SameSite=Strict` as well;
//! three locks, since each has had its gaps in some browser.

use hyper::header::{self, HeaderMap};

use super::session::Live;
use super::Call;
use crate::infra::http::parse_query;

/// Why a form is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The form's CSRF token is missing or not the session's.
    Csrf,
    /// The browser says the request comes from another site.
    CrossSite,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Csrf => "This form is out of date or did not come from this console (its security token does not match). Nothing was changed: reload the page and try again.",
            Refused::CrossSite => "This request came from another site. Nothing was changed.",
        }
    }
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Refuse a request the browser marks as coming from elsewhere. Browsers
/// send `Sec-Fetch-Site` (all current ones) and `Origin` on a POST; a
/// client that sends neither (curl) is no browser a site can drive.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err(Refused::CrossSite);
        }
    }
    if let Some(origin) = text(header::ORIGIN.as_str()) {
        // `Origin: scheme://host[:port]` must name the host the request
        // was sent to.
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        let host = text(header::HOST.as_str());
        if origin_host.is_none() || origin_host != host {
            return Err(Refused::CrossSite);
        }
    }
    Ok(())
}

/// A form sent with a session: from this site, with its CSRF token.
pub fn check_form(req: &Call<'_>, live: &Live) -> Result<(), Refused> {
    same_origin(req.headers)?;
    let form = parse_query(std::str::from_utf8(&req.body).ok());
    match form.get("csrf") {
        Some(sent) if live.csrf_matches(sent) => Ok(()),
        _ => Err(Refused::Csrf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; idsync_session=xyz"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "idsync_session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "idsync"), None);
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let ok = [
            headers(&[]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[
                ("origin", "http://127.0.0.1:9477"),
                ("host", "127.0.0.1:9477"),
            ]),
        ];
        for h in ok {
            assert_eq!(same_origin(&h), Ok(()), "{h:?}");
        }
        let refused = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:9477"),
            ]),
            headers(&[("origin", "null"), ("host", "127.0.0.1:9477")]),
            headers(&[("origin", "http://127.0.0.1:9477")]),
        ];
        for h in refused {
            assert_eq!(same_origin(&h), Err(Refused::CrossSite), "{h:?}");
        }
    }
}
