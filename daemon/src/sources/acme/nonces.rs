//! Replay nonces (RFC 8555 §6.5): random, single use, and bounded. The
//! oldest unused ones are forgotten first when the bound is reached; a
//! client holding one gets `badNonce` and retries with the fresh nonce the
//! refusal carries, as the RFC asks clients to. A restart forgets them all
//! the same way.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Unused nonces kept at most.
const MAX_NONCES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Nonces {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashSet<String>,
    /// Issue order, for forgetting the oldest; may hold used ones.
    order: VecDeque<String>,
}

impl Nonces {
    /// A fresh nonce (16 random bytes, base64url).
    pub fn issue(&self) -> String {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS gives random bytes");
        let nonce = URL_SAFE_NO_PAD.encode(b);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while inner.live.len() >= MAX_NONCES {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.live.remove(&old);
                }
                None => break,
            }
        }
        // Used nonces leave `live` at once but `order` only from its
        // front: compact when it has grown far past what is live.
        if inner.order.len() > 2 * MAX_NONCES {
            let Inner { live, order } = &mut *inner;
            order.retain(|n| live.contains(n));
        }
        inner.live.insert(nonce.clone());
        inner.order.push_back(nonce.clone());
        nonce
    }

    /// Use up `nonce`: true if it was issued and not used yet.
    pub fn consume(&self, nonce: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .remove(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_works_once() {
        let n = Nonces::default();
        let a = n.issue();
        assert_ne!(a, n.issue());
        assert!(n.consume(&a));
        assert!(!n.consume(&a));
        assert!(!n.consume("never-issued"));
    }
}
