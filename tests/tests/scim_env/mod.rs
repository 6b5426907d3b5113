//! A running `idsync serve` with the SCIM listener on, and a real HTTP
//! client (ureq, keep-alive) to talk to it. Shared by the SCIM tests.

#![allow(dead_code)]

use std::time::Duration;

use idsync_tests::{free_port, wait_until, Daemon, Env};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const WRITER: &str = "idsync_test-writer-token";
pub const READER: &str = "idsync_test-reader-token";
pub const WAIT: Duration = Duration::from_secs(60);

pub fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An installation with SCIM on, its daemon and a client.
pub struct Scim {
    pub env: Env,
    pub daemon: Daemon,
    pub base: String,
    pub port: u16,
    agent: ureq::Agent,
}

/// A response: status, headers we look at, JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: Value,
}

impl Scim {
    /// Start with `extra` appended to the configuration (inside `[scim]`
    /// when it starts with a key, so pass whole sections for others).
    pub fn start(scim_extra: &str, extra: &str) -> Self {
        let admin = free_port();
        let port = free_port();
        let env = Env::with_config(&format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[folders]\nstable_ms = 300\n\
             [scim]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n{scim_extra}\n{extra}\n\
             [[tokens]]\nname = \"idp\"\nsha256 = \"{}\"\nroles = [\"read\", \"write\"]\n\
             [[tokens]]\nname = \"auditor\"\nsha256 = \"{}\"\nroles = [\"read\"]\n",
            sha(WRITER),
            sha(READER)
        ));
        let base_path = scim_extra
            .lines()
            .find_map(|l| l.trim().strip_prefix("base_path = \""))
            .map_or("/scim/v2", |v| v.trim_end_matches('"'))
            .to_owned();
        let daemon = env.serve(&[]);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let s = Self {
            env,
            daemon,
            base: format!("http://127.0.0.1:{port}{base_path}"),
            port,
            agent,
        };
        wait_until("the SCIM listener answers", WAIT, || {
            s.call_as("GET", "/ServiceProviderConfig", None, Some(READER), &[])
                .is_some()
        });
        s
    }

    fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Option<Reply> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req
                .set("Content-Type", "application/scim+json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(_)) => return None,
        };
        let header = |n: &str| resp.header(n).map(str::to_owned);
        let (etag, location, content_type, www_authenticate) = (
            header("ETag"),
            header("Location"),
            header("Content-Type"),
            header("WWW-Authenticate"),
        );
        let status = resp.status();
        let text = resp.into_string().expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Some(Reply {
            status,
            etag,
            location,
            content_type,
            www_authenticate,
            body,
        })
    }

    /// A request with the writer token.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.call_with(method, path, body, Some(WRITER), &[])
    }

    /// A request with any token and headers.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.call_as(method, path, body, token, headers)
            .unwrap_or_else(|| panic!("{method} {path}: no answer; log:\n{}", self.daemon.log()))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    /// GET with a filter, URL-encoded.
    pub fn filter(&self, resource: &str, filter: &str) -> Reply {
        self.get(&format!("/{resource}?filter={}", encode(filter)))
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(&body))
    }

    pub fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(&body))
    }

    pub fn patch(&self, path: &str, ops: Value) -> Reply {
        self.call(
            "PATCH",
            path,
            Some(&serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": ops,
            })),
        )
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None)
    }

    /// Stop the daemon with SIGTERM and wait for it.
    pub fn stop(&mut self) {
        self.daemon.signal("TERM");
        let status = self.daemon.wait(WAIT).expect("idsync stops on SIGTERM");
        assert!(
            status.success(),
            "exit status {status}; log:\n{}",
            self.daemon.log()
        );
    }
}

/// Percent-encode a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal valid user body.
pub fn user(login: &str, mail: &str, family: &str) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": login,
        "name": {"givenName": "Given", "familyName": family},
        "emails": [{"value": mail, "type": "work", "primary": true}],
        "active": true,
    })
}
