//! [`Op`]s as LDIF change records (RFC 2849): what `idsync connectors
//! plan` prints and what `apply` reports it ran. Text only; nothing here
//! talks to a directory.

use super::ops::{ModAction, Op};

/// `ops` as LDIF change records (RFC 2849), one block per operation.
pub fn ldif(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        match op {
            Op::Add { dn, attrs } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: add\n");
                for (a, vs) in attrs {
                    for v in vs {
                        line(&mut out, a, v);
                    }
                }
            }
            Op::Modify { dn, mods } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: modify\n");
                for m in mods {
                    let verb = match m.action {
                        ModAction::Add => "add",
                        ModAction::Delete => "delete",
                        ModAction::Replace => "replace",
                    };
                    out.push_str(&format!("{verb}: {}\n", m.attr));
                    for v in &m.values {
                        line(&mut out, &m.attr, v);
                    }
                    out.push_str("-\n");
                }
            }
            Op::Rename {
                dn,
                new_rdn,
                new_superior,
            } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: modrdn\n");
                line(&mut out, "newrdn", new_rdn);
                out.push_str("deleteoldrdn: 1\n");
                if let Some(s) = new_superior {
                    line(&mut out, "newsuperior", s);
                }
            }
            Op::Delete { dn } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: delete\n");
            }
        }
        out.push('\n');
    }
    out
}

/// `name: value`, or `name:: base64` when the value is not safe as is.
fn line(out: &mut String, name: &str, value: &str) {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        out.push_str(&format!("{name}: {value}\n"));
    } else {
        out.push_str(&format!("{name}:: {}\n", base64(value.as_bytes())));
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldif_encodes_unsafe_values() {
        let text = ldif(&[Op::Add {
            dn: "cn=é,dc=x".into(),
            attrs: vec![("cn".into(), vec!["é".into()])],
        }]);
        assert!(text.starts_with("dn:: Y249w6ksZGM9eA==\n"), "{text}");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
