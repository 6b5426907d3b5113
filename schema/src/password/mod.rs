//! The password policy of the activation page (issue 16): what a user may
//! choose as the password idsync sets in the directory.
//!
//! Why here: a rule on a value, like the CSV rules, with no I/O. The daemon
//! reads an operator's list of common passwords from a file and hands its
//! lines in; the built-in list is compiled in. The password itself is only
//! borrowed: nothing here keeps or prints it (a violation names the rule,
//! never the value).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::User;

/// The built-in list of passwords too common to accept.
const BUILT_IN_COMMON: &str = include_str!("common.txt");

/// `[activation.password]`: what a new password must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    /// Fewest characters (Unicode scalar values).
    pub min_length: usize,
    /// Most bytes (UTF-8): directories and hash functions have limits, and
    /// a bounded value bounds the work of checking it.
    pub max_bytes: usize,
    /// Refuse a password that contains the login name, the mail address or
    /// its local part (compared without regard to case).
    pub refuse_identity: bool,
    /// A file of further passwords to refuse, one per line (`#` starts a
    /// comment line); the built-in list is always used.
    pub common_passwords_file: Option<std::path::PathBuf>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 10,
            max_bytes: 256,
            refuse_identity: true,
            common_passwords_file: None,
        }
    }
}

/// Why a password was refused. Never carries the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordViolation {
    #[error("the password is shorter than {0} characters")]
    TooShort(usize),
    #[error("the password is longer than {0} bytes")]
    TooLong(usize),
    #[error("the two passwords differ")]
    Mismatch,
    #[error("the password contains a control character")]
    ControlCharacter,
    #[error("the password contains the login name or the mail address")]
    ContainsIdentity,
    #[error("the password is on the list of common passwords")]
    Common,
}

/// The passwords refused as too common: the built-in list and the
/// operator's, lower-cased.
#[derive(Debug, Clone)]
pub struct CommonPasswords(HashSet<String>);

impl CommonPasswords {
    /// The built-in list plus the lines of `extra` (an operator's file).
    pub fn new(extra: &str) -> Self {
        let words = BUILT_IN_COMMON
            .lines()
            .chain(extra.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase);
        Self(words.collect())
    }

    /// How many passwords are refused.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no password is refused (never: the built-in list is there).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, password: &str) -> bool {
        self.0.contains(&password.to_lowercase())
    }
}

impl PasswordPolicy {
    /// Check `password` (typed twice: `again`) for `user`.
    pub fn check(
        &self,
        password: &str,
        again: &str,
        user: &User,
        common: &CommonPasswords,
    ) -> Result<(), PasswordViolation> {
        if password != again {
            return Err(PasswordViolation::Mismatch);
        }
        if password.len() > self.max_bytes {
            return Err(PasswordViolation::TooLong(self.max_bytes));
        }
        if password.chars().count() < self.min_length {
            return Err(PasswordViolation::TooShort(self.min_length));
        }
        if password.chars().any(char::is_control) {
            return Err(PasswordViolation::ControlCharacter);
        }
        if self.refuse_identity && contains_identity(password, user) {
            return Err(PasswordViolation::ContainsIdentity);
        }
        if common.contains(password) {
            return Err(PasswordViolation::Common);
        }
        Ok(())
    }
}

/// Whether `password` contains the user's login name, mail address or the
/// mail's local part (parts shorter than 3 characters are not looked for:
/// `li` would refuse half of all passwords).
fn contains_identity(password: &str, user: &User) -> bool {
    let lower = password.to_lowercase();
    let mail = user.mail.as_deref().unwrap_or_default();
    let local = mail.split('@').next().unwrap_or_default();
    [user.login_name.as_deref().unwrap_or_default(), mail, local]
        .iter()
        .map(|s| s.trim().to_lowercase())
        .any(|s| s.chars().count() >= 3 && lower.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User::sample("jdoe", "john.doe@example.org")
    }

    fn check(p: &str) -> Result<(), PasswordViolation> {
        PasswordPolicy::default().check(p, p, &user(), &CommonPasswords::new("Tr0ub4dor&3\n"))
    }

    #[test]
    fn each_rule_refuses_what_it_names() {
        assert_eq!(check("correct horse battery"), Ok(()));
        assert_eq!(check("short1!"), Err(PasswordViolation::TooShort(10)));
        // Ten characters, more than ten bytes: counted as characters.
        assert_eq!(check("pässwörtäöü"), Ok(()));
        assert_eq!(
            check(&"x".repeat(257)),
            Err(PasswordViolation::TooLong(256))
        );
        assert_eq!(
            check("tab\there and more"),
            Err(PasswordViolation::ControlCharacter)
        );
        assert_eq!(
            check("my-JDOE-password"),
            Err(PasswordViolation::ContainsIdentity)
        );
        assert_eq!(
            check("xx john.doe yy"),
            Err(PasswordViolation::ContainsIdentity)
        );
        assert_eq!(check("Password123"), Err(PasswordViolation::Common));
        assert_eq!(check("tr0ub4dor&3"), Err(PasswordViolation::Common));
        assert!(
            CommonPasswords::new("").len() > 100,
            "the built-in list is read"
        );
        assert_eq!(
            PasswordPolicy::default().check(
                "correct horse battery",
                "correct horse batterx",
                &user(),
                &CommonPasswords::new("")
            ),
            Err(PasswordViolation::Mismatch)
        );
    }

    #[test]
    fn identity_parts_shorter_than_three_are_not_looked_for() {
        let mut u = user();
        u.login_name = Some("li".into());
        u.mail = None;
        let p = PasswordPolicy::default();
        assert_eq!(
            p.check(
                "lightning strikes",
                "lightning strikes",
                &u,
                &CommonPasswords::new("")
            ),
            Ok(())
        );
    }
}
