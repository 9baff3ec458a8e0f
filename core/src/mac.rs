//! HMAC-SHA256 under a key prepared once: the key's two padding blocks are hashed when the
//! key is made and every message starts from a copy of that state (two SHA-256 blocks
//! fewer per message than keying afresh). Waiting-room tokens and HS256 bearer tokens,
//! which by default share one secret, both sign and verify with it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// An HMAC-SHA256 key; never printed.
#[derive(Clone)]
pub struct MacKey(Hmac<Sha256>);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<secret>)")
    }
}

impl MacKey {
    /// The key `secret` (HMAC takes a key of any length; callers set their own minimum).
    pub fn new(secret: &[u8]) -> Self {
        Self(Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"))
    }

    /// The tag of `message`.
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(message);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&mac.finalize().into_bytes());
        tag
    }

    /// Whether `tag` is `message`'s, compared in constant time.
    pub fn verifies(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_its_message_only() {
        let key = MacKey::new(b"k");
        let tag = key.tag(b"message");
        assert!(key.verifies(b"message", &tag));
        assert!(!key.verifies(b"massage", &tag));
        assert!(!key.verifies(b"message", &tag[..31]));
        assert!(!MacKey::new(b"other").verifies(b"message", &tag));
        // RFC 4231 test case 2.
        let rfc = MacKey::new(b"Jefe").tag(b"what do ya want for nothing?");
        let hex: String = rfc.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
