//! One-time secrets handed out by e-mail or in an answer (invitation codes, address
//! verification codes, step-up proofs): random, shown once, and stored only as a SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A code someone types or pastes from an e-mail: 24 random bytes.
pub const CODE_BYTES: usize = 24;
/// A proof a client only passes on: 32 random bytes.
pub const PROOF_BYTES: usize = 32;

/// A fresh secret of `len` random bytes, in hex, and the digest to store for it.
pub fn new_secret(len: usize) -> (String, String) {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let stored = digest(&secret);
    (secret, stored)
}

/// What is stored for `secret`; surrounding whitespace (a pasted code) does not count.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_only_their_digest_is_kept() {
        let (a, digest_a) = new_secret(CODE_BYTES);
        let (b, _) = new_secret(CODE_BYTES);
        assert_ne!(a, b);
        assert_eq!(a.len(), 48);
        assert_ne!(a, digest_a);
        assert_eq!(digest(&a), digest_a);
        assert_eq!(digest(&format!(" {a}\n")), digest_a, "pasted codes with whitespace still match");
    }
}
