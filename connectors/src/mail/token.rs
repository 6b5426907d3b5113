//! The activation link's token: derived, not stored.
//!
//! `token = user id (32 hex digits) ‖ HMAC-SHA256(mail key,
//! "idsync-activation" ‖ user ‖ application ‖ nonce)` (64 hex digits); the
//! store keeps only `SHA-256(token)`. The user id up front lets the
//! activation page find the user with one read; it is no secret (the MAC
//! is what cannot be guessed).
//!
//! Why derived from the queued state's nonce rather than drawn at random
//! when the mail goes out: delivery is at least once, so a crash between
//! the relay's acceptance and the saved `sent` state sends the mail again.
//! A derived token makes both mails carry the same working link, and the
//! hash recorded after the second one matches the first too. Without the
//! key (a private file in the data dir, never logged) the nonce in the
//! store says nothing about the token. A resend draws a new nonce, which
//! voids the old link.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Bytes of the mail key.
pub const KEY_LEN: usize = 32;

/// The link token of the sending `nonce` of `user`'s activation for `app`.
pub fn activation_token(key: &[u8; KEY_LEN], user: Uuid, app: &str, nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    // Lengths first, so that no two (app, nonce) pairs give the same input.
    mac.update(b"idsync-activation\0");
    mac.update(user.as_bytes());
    mac.update(&(app.len() as u64).to_be_bytes());
    mac.update(app.as_bytes());
    mac.update(&(nonce.len() as u64).to_be_bytes());
    mac.update(nonce.as_bytes());
    format!(
        "{}{}",
        user.simple(),
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The user a link token names, when it has the token's shape (96 lower
/// case hex digits); says nothing of whether the token is valid.
pub fn user_of_token(token: &str) -> Option<Uuid> {
    let shaped = token.len() == 96
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !shaped {
        return None;
    }
    Uuid::parse_str(&token[..32]).ok()
}

/// Whether two hashes (hex) are equal, in time that does not depend on
/// where they differ.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// What the store keeps of a token.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_every_input_and_only_their_hash_is_kept() {
        let k = [7u8; KEY_LEN];
        let u = Uuid::from_u128(1);
        let t = activation_token(&k, u, "crm", "n1");
        assert_eq!(t.len(), 96);
        assert_eq!(user_of_token(&t), Some(u));
        assert_eq!(user_of_token(&t[..95]), None);
        assert_eq!(user_of_token(&t.to_uppercase()), None);
        assert_eq!(
            t,
            activation_token(&k, u, "crm", "n1"),
            "same sending, same link"
        );
        assert_ne!(
            t,
            activation_token(&k, u, "crm", "n2"),
            "a resend voids the old link"
        );
        assert_ne!(t, activation_token(&k, u, "crm2", "n1"));
        assert_ne!(t, activation_token(&k, Uuid::from_u128(2), "crm", "n1"));
        assert_ne!(t, activation_token(&[8u8; KEY_LEN], u, "crm", "n1"));
        assert_ne!(
            activation_token(&k, u, "ab", "c"),
            activation_token(&k, u, "a", "bc")
        );
        let h = token_sha256(&t);
        assert_eq!(h.len(), 64);
        assert_ne!(h, t);
        assert!(same_hash(&h, &token_sha256(&t)));
        assert!(!same_hash(&h, &token_sha256("x")));
        assert!(!same_hash(&h, &h[1..]));
    }
}
