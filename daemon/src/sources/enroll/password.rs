//! The P12 password: checked once, never printed, zeroed when dropped, so
//! that it cannot reach the store or a log line by accident.

use std::fmt;

use super::EnrollError;

/// A P12 password: at least this many characters.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// And at most this many bytes (it is hashed many times over).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// A P12 password. Prints as `[secret]`; zeroed when dropped.
pub struct Password(String);

impl Password {
    /// Check the password conditions (seed 002: "confirm the password
    /// conditions").
    pub fn new(p: String) -> Result<Password, EnrollError> {
        let p = Password(p);
        if p.0.chars().count() < MIN_PASSWORD_CHARS {
            return Err(EnrollError::Invalid(format!(
                "the P12 password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if p.0.len() > MAX_PASSWORD_BYTES {
            return Err(EnrollError::Invalid(format!(
                "the P12 password must have at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(p)
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}
