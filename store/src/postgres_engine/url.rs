//! The connection URL's user part: a password in it is refused by the
//! configuration, and kept out of messages.

/// A URL's scheme (with `://`), its user, its password when it has one,
/// and what follows the `@`; `None` when it has no user part.
fn userinfo(url: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let scheme = url.find("://")? + 3;
    let at = url.rfind('@').filter(|at| *at > scheme)?;
    let (user, password) = match url[scheme..at].split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (&url[scheme..at], None),
    };
    Some((&url[..scheme], user, password, &url[at..]))
}

/// Whether a `postgres://` URL carries a password (the configuration
/// refuses one: it belongs in `password_file`).
pub fn url_has_password(url: &str) -> bool {
    userinfo(url).is_some_and(|(_, _, password, _)| password.is_some())
}

/// The URL without a password, for messages.
pub(super) fn redacted(url: &str) -> String {
    match userinfo(url) {
        Some((scheme, user, _, rest)) => format!("{scheme}{user}{rest}"),
        None => url.to_owned(),
    }
}
