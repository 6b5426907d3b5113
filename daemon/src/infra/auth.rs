//! Bearer-token authentication for the admin listener (and, later, the API).
//!
//! idsync never keeps a token, only its SHA-256: the configured `[[tokens]]`
//! plus the tokens idsync generated itself, stored in `DATA_DIR/tokens.json`.
//! On the very first start, with no token anywhere, idsync makes an admin
//! token and writes it once to `DATA_DIR/admin.token` (mode 0600) for the
//! operator to pick up; only its hash stays behind.
//!
//! Tokens and digests never reach a log, an error message or a `Debug`
//! output; token names do (they exist to be shown).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};

/// The file, under the data directory, holding the generated tokens' hashes.
pub const TOKENS_FILE: &str = "tokens.json";
pub use crate::api::ADMIN_TOKEN_FILE;
/// Every token idsync generates starts with this, so that secret scanners
/// and people recognise one.
pub const TOKEN_PREFIX: &str = "idsync_";
/// The name of the generated admin token (shown in logs).
pub const GENERATED_ADMIN_NAME: &str = "admin";

/// Longest token accepted. Generated tokens are 71 characters; the bound
/// only keeps a client from making us hash a header-sized string.
const MAX_TOKEN_LEN: usize = 1024;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Health, readiness, metrics, status.
    Monitor,
    Read,
    Write,
    /// Enrollment: assign profiles, enroll, download, confirm installation.
    Operator,
    /// Approve or reject enrollment requests (never one's own).
    Approver,
    /// Everything: implies every other role.
    Admin,
}

impl Role {
    /// The role's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Monitor => "monitor",
            Role::Read => "read",
            Role::Write => "write",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// The role named `s` in the configuration.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "monitor" => Role::Monitor,
            "read" => Role::Read,
            "write" => Role::Write,
            "operator" => Role::Operator,
            "approver" => Role::Approver,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Roles(u8);

impl Roles {
    fn grants(self, needed: Role) -> bool {
        // Only admin implies the others: a `write` token does not get
        // `read` or `monitor` unless it is given them.
        self.0 & (needed.bit() | Role::Admin.bit()) != 0
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [
            Role::Monitor,
            Role::Read,
            Role::Write,
            Role::Operator,
            Role::Approver,
            Role::Admin,
        ];
        f.debug_set()
            .entries(all.iter().filter(|r| self.0 & r.bit() != 0))
            .finish()
    }
}

/// The name of the token a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenName(String);

impl TokenName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request is refused. The messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no Authorization header")]
    MissingHeader,
    #[error("the Authorization scheme is not Bearer")]
    WrongScheme,
    #[error("the bearer token is empty, too long or not printable ASCII")]
    Malformed,
    #[error("unknown token")]
    UnknownToken,
    #[error("token \"{token}\" lacks the {needed} role")]
    InsufficientRole { token: TokenName, needed: Role },
}

impl Denied {
    /// Whether the client is known but not allowed (HTTP 403), rather than
    /// not authenticated at all (HTTP 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Denied::InsufficientRole { .. })
    }
}

/// Why the tokens cannot be loaded. No variant carries a token or digest.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a valid token file: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "{}: group or others may write it (mode {mode:o}), so anyone could add a token; \
         run `chmod 600 {}`",
        .path.display(),
        .path.display()
    )]
    InsecureFile { path: PathBuf, mode: u32 },
    #[error("token {name:?} ({origin}): {message}")]
    Invalid {
        name: String,
        origin: String,
        message: String,
    },
    #[error(
        "{} exists but no token is registered (an interrupted first start?); \
         remove it to have a new admin token generated, or add its SHA-256 under [[tokens]]",
        .path.display()
    )]
    StaleAdminToken { path: PathBuf },
    #[error("the operating system gave no random numbers: {0}")]
    Random(getrandom::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuthError + '_ {
    move |source| AuthError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One accepted token.
struct Entry {
    name: String,
    digest: [u8; 32],
    roles: Roles,
}

impl fmt::Debug for Entry {
    // By hand so that the digest is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// `[[tokens]]`: a bearer token, kept as its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs and the audit trail.
    pub name: String,
    /// SHA-256 of the token, hex (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
    /// `monitor` (health, readiness, metrics), `read`, `write`, `admin`
    /// (everything).
    pub roles: Vec<String>,
    /// Where the token's owner is mailed about the certificate requests
    /// they made (approved, rejected, issued, failed); none: not mailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
}

/// The accepted tokens.
#[derive(Debug)]
pub struct Auth {
    /// Swapped whole by [`Auth::reload`]; a request checks against the
    /// set it found.
    entries: RwLock<Arc<Vec<Entry>>>,
}

/// `tokens.json`: hashes only.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// No `Debug`: it would print the digest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    name: String,
    sha256: String,
    roles: Vec<String>,
}

fn entry(name: &str, sha256: &str, roles: &[String], origin: &str) -> Result<Entry, AuthError> {
    let invalid = |message: String| AuthError::Invalid {
        name: name.to_owned(),
        origin: origin.to_owned(),
        message,
    };
    let mut digest = [0u8; 32];
    // Deliberately no detail from the decoder: it would quote the digest.
    hex::decode_to_slice(sha256, &mut digest)
        .map_err(|_| invalid("sha256 is not 64 hex digits".into()))?;
    let mut set = Roles::default();
    for r in roles {
        let role = Role::parse(r).ok_or_else(|| invalid(format!("unknown role `{r}`")))?;
        set.0 |= role.bit();
    }
    if set == Roles::default() {
        return Err(invalid("has no role".into()));
    }
    Ok(Entry {
        name: name.to_owned(),
        digest,
        roles: set,
    })
}

impl Auth {
    /// The configured tokens plus those in `DATA_DIR/tokens.json`. When
    /// there are none at all, generate an admin token (see the module doc).
    pub fn load(tokens: &[TokenConfig], data_dir: &Path) -> Result<Auth, AuthError> {
        let mut entries = Vec::with_capacity(tokens.len() + 1);
        for t in tokens {
            entries.push(entry(&t.name, &t.sha256, &t.roles, "configuration")?);
        }
        let file_path = data_dir.join(TOKENS_FILE);
        let stored = read_token_file(&file_path)?;
        let origin = file_path.display().to_string();
        for t in &stored.tokens {
            entries.push(entry(&t.name, &t.sha256, &t.roles, &origin)?);
        }
        if entries.is_empty() {
            entries.push(generate_admin_token(data_dir, stored)?);
        }
        for (i, a) in entries.iter().enumerate() {
            for b in &entries[i + 1..] {
                // Two entries with one digest make the token's name and
                // roles ambiguous. Not secret-dependent: no constant time.
                if a.digest == b.digest {
                    return Err(AuthError::Invalid {
                        name: b.name.clone(),
                        origin: "configuration or tokens file".into(),
                        message: format!("has the same sha256 as token {:?}", a.name),
                    });
                }
                if a.name == b.name {
                    tracing::warn!(
                        token = %a.name,
                        "two tokens have this name; logs will not tell them apart"
                    );
                }
            }
        }
        Ok(Auth {
            entries: RwLock::new(Arc::new(entries)),
        })
    }

    /// Read the tokens again (SIGHUP): a token removed from the
    /// configuration or `tokens.json` is refused from the next request on,
    /// a new one accepted. On error the tokens in force stay.
    pub fn reload(&self, tokens: &[TokenConfig], data_dir: &Path) -> Result<(), AuthError> {
        let fresh = Self::load(tokens, data_dir)?.entries.into_inner();
        let fresh = fresh.unwrap_or_else(|p| p.into_inner());
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The tokens in force now.
    fn entries(&self) -> Arc<Vec<Entry>> {
        Arc::clone(&self.entries.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Like [`Auth::check`], for a route any of `roles` may use (requests
    /// are listed by operators and by approvers). `roles` is not empty. The
    /// token is hashed and looked up once, whatever the number of roles.
    pub fn check_any(
        &self,
        header: Option<&HeaderValue>,
        roles: &[Role],
    ) -> Result<Granted, Denied> {
        let (entries, index) = self.identify(header)?;
        let e = &entries[index];
        let token = TokenName(e.name.clone());
        match roles.iter().find(|r| e.roles.grants(**r)) {
            Some(_) => Ok(Granted {
                token,
                is_admin: e.roles.grants(Role::Admin),
            }),
            None => Err(Denied::InsufficientRole {
                token,
                needed: *roles.last().expect("a route names at least one role"),
            }),
        }
    }

    /// Authenticate `Authorization: Bearer <token>` and check that the
    /// token has the `needed` role (or admin).
    pub fn check(&self, header: Option<&HeaderValue>, needed: Role) -> Result<TokenName, Denied> {
        self.check_any(header, &[needed]).map(|g| g.token)
    }

    /// The token typed into the console's sign-in form: who it is, for a
    /// session ([`Identity`]).
    pub fn sign_in(&self, token: &str) -> Result<Identity, Denied> {
        let (entries, index) = self.identify_token(token)?;
        Ok(Identity::of(&entries[index]))
    }

    /// The token with this SHA-256, as it is in force now: a session asks
    /// on every request, so a token removed on reload (SIGHUP) ends its
    /// sessions and a changed role shows at once.
    pub fn identity(&self, digest: &[u8; 32]) -> Option<Identity> {
        let entries = self.entries();
        // Constant time, as in `identify_token`: the digest is a secret's.
        let mut found = None;
        for e in entries.iter() {
            if bool::from(e.digest[..].ct_eq(&digest[..])) {
                found = Some(Identity::of(e));
            }
        }
        found
    }

    /// The tokens in force and the index of the bearer token of `header`
    /// among them.
    fn identify(&self, header: Option<&HeaderValue>) -> Result<(Arc<Vec<Entry>>, usize), Denied> {
        let value = header.ok_or(Denied::MissingHeader)?;
        // Non-ASCII bytes cannot be a token of ours.
        let value = value.to_str().map_err(|_| Denied::Malformed)?;
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let (scheme, token) = value.split_once([' ', '\t']).unwrap_or((value, ""));
        // RFC 9110 §11.1: the scheme is case-insensitive.
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Denied::WrongScheme);
        }
        self.identify_token(token.trim_start_matches([' ', '\t']))
    }

    /// The tokens in force and the index of `token` among them.
    fn identify_token(&self, token: &str) -> Result<(Arc<Vec<Entry>>, usize), Denied> {
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Denied::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare with every entry, without branching on the result, so
        // that the time taken does not tell which entry (if any) matched.
        let entries = self.entries();
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, e) in entries.iter().enumerate() {
            let eq = e.digest[..].ct_eq(&digest[..]);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        if !bool::from(found) {
            return Err(Denied::UnknownToken);
        }
        Ok((entries, index as usize))
    }
}

/// Who a console session acts as: a token's name, roles and digest (never
/// the token). No `Debug` of the digest.
#[derive(Clone)]
pub struct Identity {
    pub token: TokenName,
    digest: [u8; 32],
    roles: Roles,
}

impl Identity {
    fn of(e: &Entry) -> Self {
        Self {
            token: TokenName(e.name.clone()),
            digest: e.digest,
            roles: e.roles,
        }
    }

    /// The token's SHA-256, which a session keeps to ask [`Auth::identity`].
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether the token has `role` (admin has every role).
    pub fn grants(&self, role: Role) -> bool {
        self.roles.grants(role)
    }

    /// Whether the token has any of `roles`.
    pub fn grants_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.grants(*r))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("token", &self.token)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A token allowed on a route.
#[derive(Debug, Clone)]
pub struct Granted {
    pub token: TokenName,
    /// It has the admin role (a P12 download by someone else's token).
    pub is_admin: bool,
}

fn read_token_file(path: &Path) -> Result<TokenFile, AuthError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TokenFile::default()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mode = file.metadata().map_err(io_err(path))?.permissions().mode();
    // Hashes are no secret, but whoever may write the file may add a token.
    if mode & 0o022 != 0 {
        return Err(AuthError::InsecureFile {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    serde_json::from_reader(io::BufReader::new(file)).map_err(|e| AuthError::Parse {
        path: path.to_owned(),
        // Only where and what kind: serde's own message may quote a value.
        message: format!(
            "{:?} error at line {}, column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

/// Replace `tokens.json` atomically (write aside, then rename), so that a
/// crash leaves either the old or the new list.
fn write_token_file(data_dir: &Path, file: &TokenFile) -> Result<(), AuthError> {
    let path = data_dir.join(TOKENS_FILE);
    let tmp = data_dir.join(format!("{TOKENS_FILE}.tmp"));
    let mut json = serde_json::to_vec_pretty(file).expect("token file serialises");
    json.push(b'\n');
    // A leftover from a crash: remove it so create_new applies our mode.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    crate::infra::private_file::create(&tmp, &json).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(data_dir))
}

/// Make the first-start admin token: the token goes to `admin.token`, its
/// hash to `tokens.json`, in that order (a crash in between is reported by
/// the next start, never turned into a token nobody has).
fn generate_admin_token(data_dir: &Path, mut stored: TokenFile) -> Result<Entry, AuthError> {
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(AuthError::Random)?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();

    let token_path = data_dir.join(ADMIN_TOKEN_FILE);
    match crate::infra::private_file::create(&token_path, format!("{token}\n").as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(AuthError::StaleAdminToken { path: token_path });
        }
        Err(e) => return Err(io_err(&token_path)(e)),
    }

    let roles = vec![Role::Admin.as_str().to_owned()];
    stored.tokens.push(StoredToken {
        name: GENERATED_ADMIN_NAME.into(),
        sha256: hex::encode(digest),
        roles: roles.clone(),
    });
    if let Err(e) = write_token_file(data_dir, &stored) {
        // Without its hash on disk the token would stop working at the next
        // start; remove it so that the next start generates a fresh one.
        let _ = std::fs::remove_file(&token_path);
        return Err(e);
    }
    tracing::warn!(
        path = %token_path.display(),
        "no API token was configured: generated an admin token and wrote it to this file \
         (readable by this user only); move it to a secret store and delete the file"
    );
    entry(
        GENERATED_ADMIN_NAME,
        &hex::encode(digest),
        &roles,
        "generated",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn token_config(name: &str, token: &str, roles: &[&str]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            mail: None,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_start_generates_an_admin_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let auth = Auth::load(&[], &data).unwrap();

        let token_path = data.join(ADMIN_TOKEN_FILE);
        assert_eq!(mode(&token_path), 0o600);
        let token = std::fs::read_to_string(&token_path).unwrap();
        let token = token.trim_end();
        assert!(token.starts_with(TOKEN_PREFIX), "token format");
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);

        let tokens_path = data.join(TOKENS_FILE);
        assert_eq!(mode(&tokens_path), 0o600);
        let json = std::fs::read_to_string(&tokens_path).unwrap();
        assert!(!json.contains(token), "tokens.json must not hold the token");
        assert!(json.contains(&hex::encode(Sha256::digest(token.as_bytes()))));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["tokens"][0]["name"], "admin");
        assert_eq!(v["tokens"][0]["roles"][0], "admin");

        let bearer = header(&format!("Bearer {token}"));
        assert_eq!(
            auth.check(Some(&bearer), Role::Admin).unwrap().as_str(),
            "admin"
        );

        // The second start finds the hash and generates nothing.
        std::fs::remove_file(&token_path).unwrap();
        let again = Auth::load(&[], &data).unwrap();
        assert!(!token_path.exists(), "no second token file");
        assert_eq!(std::fs::read_to_string(&tokens_path).unwrap(), json);
        assert!(again.check(Some(&bearer), Role::Monitor).is_ok());
    }

    #[test]
    fn configured_tokens_prevent_generation_and_stored_ones_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = [token_config("ci", "s3cret", &["monitor"])];
        let auth = Auth::load(&cfg, dir.path()).unwrap();
        assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
        assert!(!dir.path().join(TOKENS_FILE).exists());
        assert!(auth
            .check(Some(&header("Bearer s3cret")), Role::Monitor)
            .is_ok());

        // A previously generated token keeps working next to configured ones.
        let dir = tempfile::tempdir().unwrap();
        Auth::load(&[], dir.path()).unwrap();
        let generated = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        let auth = Auth::load(&cfg, dir.path()).unwrap();
        let bearer = header(&format!("Bearer {}", generated.trim_end()));
        assert!(auth.check(Some(&bearer), Role::Write).is_ok());
    }

    #[test]
    fn a_leftover_admin_token_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        std::fs::write(&path, "someone else's\n").unwrap();
        let err = Auth::load(&[], dir.path()).unwrap_err();
        assert!(matches!(err, AuthError::StaleAdminToken { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's\n");
    }

    #[test]
    fn a_token_file_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Auth::load(&[], dir.path()).unwrap();
        let path = dir.path().join(TOKENS_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Auth::load(&[], dir.path()).unwrap_err();
        assert!(matches!(err, AuthError::InsecureFile { .. }), "{err}");
    }

    #[test]
    fn refusals_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = [
            token_config("root", "t-admin", &["admin"]),
            token_config("grafana", "t-monitor", &["monitor"]),
        ];
        let auth = Auth::load(&cfg, dir.path()).unwrap();
        let check = |h: Option<&str>, role| auth.check(h.map(header).as_ref(), role);

        assert_eq!(check(None, Role::Monitor), Err(Denied::MissingHeader));
        assert_eq!(
            check(Some("Basic dXNlcjpwYXNz"), Role::Monitor),
            Err(Denied::WrongScheme)
        );
        assert_eq!(
            check(Some("t-admin"), Role::Monitor),
            Err(Denied::WrongScheme)
        );
        assert_eq!(check(Some("Bearer"), Role::Monitor), Err(Denied::Malformed));
        assert_eq!(
            check(Some("Bearer a b"), Role::Monitor),
            Err(Denied::Malformed)
        );
        assert_eq!(
            check(Some("Bearer t-wrong"), Role::Monitor),
            Err(Denied::UnknownToken)
        );
        let denied = check(Some("Bearer t-monitor"), Role::Write).unwrap_err();
        assert_eq!(
            denied,
            Denied::InsufficientRole {
                token: TokenName("grafana".into()),
                needed: Role::Write
            }
        );
        assert!(denied.is_forbidden());
        assert_eq!(denied.to_string(), "token \"grafana\" lacks the write role");

        // Admin implies everything; the scheme is case-insensitive.
        for role in [Role::Monitor, Role::Read, Role::Write, Role::Admin] {
            assert_eq!(
                check(Some("bearer  t-admin"), role).unwrap().as_str(),
                "root"
            );
        }
        assert!(check(Some("Bearer t-monitor"), Role::Monitor).is_ok());
    }

    #[test]
    fn debug_and_errors_show_no_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = [token_config("root", "t-admin", &["admin"])];
        let digest = &cfg[0].sha256;
        let auth = Auth::load(&cfg, dir.path()).unwrap();
        let debug = format!("{auth:?}");
        assert!(debug.contains("root") && debug.contains("Admin"), "{debug}");
        assert!(!debug.contains(&digest[..16]), "{debug}");

        let dup = [
            cfg[0].clone(),
            TokenConfig {
                name: "copy".into(),
                ..cfg[0].clone()
            },
        ];
        let err = Auth::load(&dup, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("copy") && !err.contains(&digest[..16]),
            "{err}"
        );

        let bad = [TokenConfig {
            sha256: "xyz".into(),
            ..cfg[0].clone()
        }];
        let err = Auth::load(&bad, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("64 hex digits") && !err.contains("xyz"),
            "{err}"
        );
    }
}
