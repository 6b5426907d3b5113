//! The admin API's contract: what the daemon's routes and the CLI's client
//! both rely on. It lives apart so that neither side imports the other.

/// The prefix of every enrollment route (`/api/v1/…`).
pub const PREFIX: &str = "/api/v1/";

/// Media type of a PKCS#12 file.
pub const P12_TYPE: &str = "application/x-pkcs12";

/// The file, under the data directory, the first-start admin token is
/// written to: the daemon writes it, the CLI reads it.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
