//! `idsync profiles|assets|enroll|requests|certificates …`: the command
//! line of enrollment. Each command is one call of the daemon's
//! `/api/v1` routes (the daemon holds the store and the CA key), made with
//! the token of `IDSYNC_TOKEN` or `DATA_DIR/admin.token`.
//!
//! A P12 password is read from a file (`--password-file`) or asked for at
//! the terminal without echo, never taken from an argument: arguments are
//! visible to every user in `ps`.
//!
//! The commands and their help text are in [`commands`]; this module runs
//! them.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context as _};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api::{P12_TYPE, PREFIX};
use crate::cli::client::{Answer, DaemonClient};
use crate::config::Config;

mod commands;
mod registrations;

pub(crate) use commands::Command;
pub use commands::{
    AssetsCommand, CertificatesCommand, EnrollCommand, ProfilesCommand, RegistrationsCommand,
    RequestsCommand, TargetArgs,
};

/// Run `cmd` against the daemon of `cfg`; the exit status.
pub(crate) fn run(cfg: &Config, cmd: Command) -> anyhow::Result<u8> {
    // Ask before connecting: a prompt must not hold a connection open.
    let password = match &cmd {
        Command::Enroll(EnrollCommand::P12 { password_file, .. })
        | Command::Requests(RequestsCommand::Download { password_file, .. }) => {
            Some(read_password(password_file.as_deref())?)
        }
        _ => None,
    };
    let client = DaemonClient::new(cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(execute(&client, cmd, password))
}

async fn execute(
    client: &DaemonClient,
    cmd: Command,
    password: Option<String>,
) -> anyhow::Result<u8> {
    let api = Api(client);
    match cmd {
        Command::Profiles(c) => profiles(&api, c).await,
        Command::Assets(c) => assets(&api, c).await,
        Command::Enroll(c) => enroll(&api, c, password).await,
        Command::Requests(c) => requests(&api, c, password).await,
        Command::Registrations(c) => registrations::run(&api, c).await,
        Command::Certificates(c) => certificates(&api, c).await,
    }
}

/// The daemon's `/api/v1`, as the commands call it.
struct Api<'c>(&'c DaemonClient);

impl Api<'_> {
    /// `method /api/v1/PATH` with a JSON body, or none.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.0
            .call(
                method,
                &format!("{PREFIX}{path}"),
                Some("application/json"),
                bytes,
            )
            .await
    }

    /// The same, and an error unless the daemon says yes.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Answer> {
        expect_ok(self.call(method, path, body).await?)
    }
}

async fn profiles(api: &Api<'_>, c: ProfilesCommand) -> anyhow::Result<u8> {
    match c {
        ProfilesCommand::List => {
            let a = api.ok(Method::GET, "profiles", None).await?;
            print_rows(&a.json(), |p| {
                vec![
                    text(&p["name"]),
                    text(&p["protocol"]),
                    text(&p["state"]),
                    flag(p["requires_approval"] == true, "approval"),
                ]
            });
            Ok(0)
        }
        ProfilesCommand::Show { name } => print_json(
            &api.ok(Method::GET, &format!("profiles/{}", seg(&name)), None)
                .await?,
        ),
        ProfilesCommand::Put { file } => {
            let settings = read_profile_file(&file)?;
            let name = settings["name"]
                .as_str()
                .context("the profile file has no `name`")?
                .to_owned();
            let path = format!("profiles/{}", seg(&name));
            print_json(&api.ok(Method::PUT, &path, Some(settings)).await?)
        }
        ProfilesCommand::Delete { name } => {
            api.ok(Method::DELETE, &format!("profiles/{}", seg(&name)), None)
                .await?;
            println!("profile {name:?} deleted");
            Ok(0)
        }
    }
}

async fn assets(api: &Api<'_>, c: AssetsCommand) -> anyhow::Result<u8> {
    match c {
        AssetsCommand::AssignProfile { asset, profile } => {
            let path = format!("assets/{}/profile", seg(&asset));
            let body = json!({ "profile": profile });
            let v = api.ok(Method::PUT, &path, Some(body)).await?.json();
            println!(
                "asset {} now has profile {} and is {}",
                text(&v["name"]),
                text(&v["certificateProfile"]),
                text(&v["state"])
            );
            Ok(0)
        }
        AssetsCommand::Certificates { asset } => {
            let path = format!("assets/{}/certificates", seg(&asset));
            print_rows(&api.ok(Method::GET, &path, None).await?.json(), |c| {
                vec![
                    text(&c["id"]),
                    text(&c["serial"]),
                    text(&c["subject"]),
                    text(&c["notAfter"]),
                    flag(c["installed"].is_string(), "installed"),
                ]
            });
            Ok(0)
        }
    }
}

async fn enroll(api: &Api<'_>, c: EnrollCommand, password: Option<String>) -> anyhow::Result<u8> {
    match c {
        EnrollCommand::P10 { target, csr, out } => {
            let a = upload_csr(api, &target, &csr).await?;
            enrolled(a, out.as_deref(), None)
        }
        EnrollCommand::P12 {
            target,
            out,
            name,
            organization,
            country,
            dns,
            ip,
            key_type,
            ..
        } => {
            refuse_existing(&out)?;
            let list = |s: Option<String>| -> Vec<String> {
                s.map(|s| {
                    s.split(',')
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default()
            };
            let body = json!({
                "asset": target.asset,
                "profile": target.profile,
                "data": {
                    "name": name, "organization": organization, "country": country,
                    "dnsNames": list(dns), "ipAddresses": list(ip),
                },
                "keyType": key_type,
                "password": password,
            });
            let a = api
                .call(Method::POST, "enroll/p12", Some(strip_nulls(body)))
                .await?;
            enrolled(a, None, Some(&out))
        }
        EnrollCommand::Acme { target, dns } => {
            registrations::register(api, "acme", &target, dns).await
        }
        EnrollCommand::Scep { target, dns } => {
            registrations::register(api, "scep", &target, dns).await
        }
    }
}

/// Send the CSR in `csr` for `target`: a PEM CSR travels in JSON, a DER
/// one as the body itself.
async fn upload_csr(api: &Api<'_>, target: &TargetArgs, csr: &Path) -> anyhow::Result<Answer> {
    let csr_bytes = std::fs::read(csr).with_context(|| format!("reading {}", csr.display()))?;
    let csr_text = String::from_utf8(csr_bytes.clone()).ok();
    if let Some(pem) = csr_text.filter(|t| t.contains("-----BEGIN")) {
        let body = json!({"asset": target.asset, "profile": target.profile, "csr": pem});
        return api.call(Method::POST, "enroll/p10", Some(body)).await;
    }
    let q = query(&[
        ("asset", target.asset.as_deref()),
        ("profile", target.profile.as_deref()),
    ]);
    api.0
        .call(
            Method::POST,
            &format!("{PREFIX}enroll/p10?{q}"),
            Some("application/pkcs10"),
            csr_bytes,
        )
        .await
}

async fn requests(
    api: &Api<'_>,
    c: RequestsCommand,
    password: Option<String>,
) -> anyhow::Result<u8> {
    match c {
        RequestsCommand::List {
            status,
            asset,
            profile,
            requester,
            json,
        } => {
            let q = query(&[
                ("status", status.as_deref()),
                ("asset", asset.as_deref()),
                ("profile", profile.as_deref()),
                ("requester", requester.as_deref()),
            ]);
            let a = api.ok(Method::GET, &format!("requests?{q}"), None).await?;
            if json {
                return print_json(&a);
            }
            print_rows(&a.json(), |r| {
                vec![
                    text(&r["id"]),
                    text(&r["status"]),
                    text(&r["protocol"]),
                    text(&r["profile"]),
                    text(&r["requester"]),
                    text(&r["data"]["name"]),
                ]
            });
            Ok(0)
        }
        RequestsCommand::Show { id } => print_json(
            &api.ok(Method::GET, &format!("requests/{}", seg(&id)), None)
                .await?,
        ),
        RequestsCommand::Approve { id, comment } => {
            let path = format!("requests/{}/approve", seg(&id));
            let body = json!({ "comment": comment });
            let v = api.ok(Method::POST, &path, Some(body)).await?.json();
            println!("request {id} is {}", text(&v["request"]["status"]));
            Ok(0)
        }
        RequestsCommand::Reject { id, comment } => {
            let path = format!("requests/{}/reject", seg(&id));
            let body = json!({ "comment": comment });
            api.ok(Method::POST, &path, Some(body)).await?;
            println!("request {id} is rejected");
            Ok(0)
        }
        RequestsCommand::Download { id, out, .. } => {
            refuse_existing(&out)?;
            let path = format!("requests/{}/p12", seg(&id));
            let body = json!({ "password": password });
            let a = api.call(Method::POST, &path, Some(body)).await?;
            enrolled(a, None, Some(&out))
        }
    }
}

async fn certificates(api: &Api<'_>, c: CertificatesCommand) -> anyhow::Result<u8> {
    match c {
        CertificatesCommand::Show { id } => {
            let path = format!("certificates/{}", seg(&id));
            print_json(&api.ok(Method::GET, &path, None).await?)
        }
        CertificatesCommand::Download { id, out } => {
            let path = format!("certificates/{}/pem", seg(&id));
            let a = api.ok(Method::GET, &path, None).await?;
            write_or_print(out.as_deref(), &a.body)?;
            Ok(0)
        }
        CertificatesCommand::Confirm { id } => {
            let path = format!("certificates/{}/installed", seg(&id));
            api.ok(Method::POST, &path, None).await?;
            println!("certificate {id}: installation confirmed");
            Ok(0)
        }
        CertificatesCommand::Revoke { id, reason } => {
            let path = format!("certificates/{}/revoke", seg(&id));
            let body = json!({ "reason": reason });
            api.ok(Method::POST, &path, Some(body)).await?;
            println!("certificate {id}: revoked ({reason}); its issuer's CRL is published");
            Ok(0)
        }
        CertificatesCommand::Ca => {
            let a = api.ok(Method::GET, "ca", None).await?;
            write_or_print(None, &a.body)?;
            Ok(0)
        }
    }
}

/// The outcome of an enrollment: the certificate (P10, PEM to `pem_out` or
/// stdout), the P12 file (to `p12_out`), or the news that it waits for an
/// approver.
fn enrolled(a: Answer, pem_out: Option<&Path>, p12_out: Option<&Path>) -> anyhow::Result<u8> {
    let a = expect_ok(a)?;
    if a.headers
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|t| t == P12_TYPE)
    {
        let out = p12_out.context("the daemon sent a PKCS#12 file nobody asked for")?;
        write_private(out, &a.body)?;
        let header = |h: &str| {
            a.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned()
        };
        eprintln!(
            "wrote {} (request {}, certificate {}); confirm its installation with `idsync certificates confirm {}`",
            out.display(),
            header("idsync-request"),
            header("idsync-certificate"),
            header("idsync-certificate"),
        );
        return Ok(0);
    }
    let v = a.json();
    let request = &v["request"];
    match request["status"].as_str() {
        Some("issued") => {
            let cert = &v["certificate"];
            let pem = format!("{}{}", text(&cert["pem"]), text(&cert["chain"]));
            write_or_print(pem_out, pem.as_bytes())?;
            eprintln!(
                "issued certificate {} (serial {}) for request {}",
                text(&cert["id"]),
                text(&cert["serial"]),
                text(&request["id"])
            );
        }
        Some(status) => eprintln!(
            "request {} is {status}: an approver decides with `idsync requests approve|reject {}`",
            text(&request["id"]),
            text(&request["id"])
        ),
        None => bail!("the daemon's answer has no request: {v}"),
    }
    Ok(0)
}

/// The answer if it is a success, else an error with the daemon's words.
fn expect_ok(a: Answer) -> anyhow::Result<Answer> {
    if a.status.is_success() {
        return Ok(a);
    }
    let why = a.error();
    match a.status {
        StatusCode::UNAUTHORIZED => bail!("the daemon refused the token: {why}"),
        StatusCode::FORBIDDEN => bail!("not allowed: {why}"),
        s => bail!("{why} ({s})"),
    }
}

fn print_json(a: &Answer) -> anyhow::Result<u8> {
    println!("{}", serde_json::to_string_pretty(&a.json())?);
    Ok(0)
}

/// Print a JSON array as lines of tab-separated cells, one per element.
fn print_rows(v: &Value, cells: impl Fn(&Value) -> Vec<String>) {
    for x in v.as_array().into_iter().flatten() {
        println!("{}", cells(x).join("\t"));
    }
}

/// `word` when `set`, else `-`.
fn flag(set: bool, word: &str) -> String {
    if set { word } else { "-" }.to_owned()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A path segment or query value, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&…` of the pairs that have a value, the values percent-encoded.
fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let set = pairs
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", seg((*v)?))));
    set.collect::<Vec<_>>().join("&")
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn read_profile_file(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", path.display()));
    }
    toml::from_str::<Value>(&text)
        .with_context(|| format!("{}: not a TOML profile", path.display()))
}

fn refuse_existing(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists: idsync does not overwrite key files",
            out.display()
        );
    }
    Ok(())
}

/// Write a file holding a private key: created new, 0600.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::infra::private_file::create(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_or_print(out: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display())),
        None => std::io::stdout()
            .write_all(bytes)
            .context("writing to stdout"),
    }
}

/// The P12 password: the first line of `file`, or asked twice at the
/// terminal without echo.
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(f) = file {
        return crate::config::read_password_file(f).map_err(anyhow::Error::msg);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask the P12 password at: give --password-file FILE");
    }
    let first = rpassword::prompt_password("P12 password: ").context("reading the password")?;
    let again = rpassword::prompt_password("again: ").context("reading the password")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}
