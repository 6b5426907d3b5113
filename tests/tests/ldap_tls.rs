//! The LDAP connector over TLS, against a real, throwaway `slapd` with a
//! certificate from a CA of its own (see `Slapd::start_tls`): it delivers
//! over `ldaps://` and over StartTLS when `tls_ca_file` names that CA, and
//! refuses a server whose certificate it does not trust, saying why in
//! `idsync status` and in the answer of `idsync connectors plan`.

use std::time::Duration;

use idsync_tests::ldap::{daemon_env, drop_alice, run_ok, status, Slapd, BASE};
use idsync_tests::wait_until;

const WAIT: Duration = Duration::from_secs(120);

fn alice_dn() -> String {
    format!("uid=alice,ou=people,{BASE}")
}

/// A connector at `url` with `extra` keys delivers alice, and a reconcile
/// over the same connection finds nothing to do.
fn delivers(slapd: &Slapd, url: &str, extra: &str) {
    let env = daemon_env(&format!(
        "{}{extra}tls_ca_file = \"{}\"\n",
        slapd.connector_toml_at("ldap", url),
        slapd.ca_file().display()
    ));
    let mut d = env.serve(&[]);
    drop_alice(&env);
    wait_until("alice in LDAP", WAIT, || slapd.entry(&alice_dn()).is_some());
    assert_eq!(
        slapd.entry(&alice_dn()).unwrap().one("sn").as_deref(),
        Some("Liddell")
    );
    let (plan, _) = run_ok(&env, &["connectors", "plan", "ldap"]);
    assert_eq!(plan, "");
    let s = status(&env);
    assert!(s.contains("0 parked") && !s.contains("last error"), "{s}");
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
}

#[test]
fn delivers_over_ldaps_with_the_ca_file() {
    let slapd = Slapd::start_tls();
    delivers(&slapd, &slapd.ldaps_url(), "");
}

#[test]
fn delivers_over_starttls_with_the_ca_file() {
    let slapd = Slapd::start_tls();
    delivers(&slapd, &slapd.url(), "starttls = true\n");
}

#[test]
fn refuses_a_server_it_does_not_trust() {
    let slapd = Slapd::start_tls();
    // "system": LDAPS trusting the system's CAs, which do not include the
    // test CA; "other": StartTLS trusting another CA only.
    let env = daemon_env(&format!(
        "{}{}starttls = true\ntls_ca_file = \"{}\"\n",
        slapd.connector_toml_at("system", &slapd.ldaps_url()),
        slapd.connector_toml_at("other", &slapd.url()),
        slapd.other_ca_file().display()
    ));
    let mut d = env.serve(&[]);
    drop_alice(&env);
    for name in ["system", "other"] {
        wait_until(
            &format!("{name} says why it does not deliver"),
            WAIT,
            || {
                status(&env).lines().any(|l| {
                    l.starts_with(&format!("connector {name}:"))
                        && l.contains("invalid peer certificate")
                })
            },
        );
    }
    let s = status(&env);
    let line = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(&format!("connector {name}:")))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("system").contains("system's CAs") && line("system").contains("set tls_ca_file"),
        "{s}"
    );
    assert!(line("other").contains("other-ca.pem"), "{s}");
    for name in ["system", "other"] {
        assert!(line(name).contains("0 delivered, "), "{s}");
        // The failing first reconcile shows as failed attempts, not as a
        // connector that is up to date.
        assert!(!line(name).contains(" 0 failed"), "{s}");
        assert!(line(name).contains("0 parked"), "nothing is lost: {s}");
        let out = env.run(&["connectors", "plan", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("invalid peer certificate"), "{err}");
    }
    assert!(slapd.entry(&alice_dn()).is_none(), "nothing was written");
    // The start-up healthcheck said so too, for each.
    for name in ["system", "other"] {
        wait_until(&format!("{name}'s healthcheck"), WAIT, || {
            d.log().lines().any(|l| {
                l.contains(&format!("connector={name}"))
                    && l.contains("healthcheck failed")
                    && l.contains("invalid peer certificate")
            })
        });
    }
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
}
