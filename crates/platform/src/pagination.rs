//! Page sizes and page tokens for list RPCs.
//!
//! A token carries the sort key of the last item returned, sealed with an HMAC-SHA256 under a
//! server key, so a client can neither read meaning into it (its form is not part of the API)
//! nor forge one to start a page wherever it likes. Lists order by a unique, time-ordered id,
//! so a page never repeats or skips an item that existed when the first page was read.
//!
//! Keys rotate without breaking tokens already handed out: the first key of [`PageTokens`]
//! signs, every key verifies. Every replica of a service must hold the same keys.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::status;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Tokens start with this, so a token of another format is refused by its first bytes.
const PREFIX: &str = "p2.";
/// Bytes of the HMAC kept in a token: 128 bits, beyond guessing.
const TAG_BYTES: usize = 16;
/// Shortest accepted key.
const MIN_KEY_BYTES: usize = 32;
/// Longest sort key a token carries (ids are 36).
const MAX_SORT_KEY_BYTES: usize = 256;

/// The keys page tokens are signed and checked with.
#[derive(Clone)]
pub struct PageTokens {
    keys: Arc<[Vec<u8>]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTokens").field("keys", &self.keys.len()).finish()
    }
}

impl PageTokens {
    /// `keys[0]` signs; all verify. Each must be at least [`MIN_KEY_BYTES`] long.
    pub fn new(keys: Vec<Vec<u8>>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("no page-token key".into());
        }
        if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_BYTES) {
            return Err(format!("page-token key {} is shorter than {MIN_KEY_BYTES} bytes", short + 1));
        }
        Ok(Self { keys: keys.into() })
    }

    /// One fresh random key, for tests and tools that keep no tokens across restarts.
    pub fn random() -> Self {
        Self { keys: vec![random_key()].into() }
    }

    /// Reads a key file: one base64 key per line, the signing key first; blank lines and
    /// lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .enumerate()
            .map(|(n, line)| STANDARD.decode(line).map_err(|e| format!("key {} is not base64: {e}", n + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Validates `page_size` (0 means the default) and opens `page_token`.
    pub fn request(&self, page_size: i32, page_token: &str) -> Result<PageRequest, tonic::Status> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(status::invalid_argument("page_size", "must not be negative")),
            n if n as u32 > MAX_PAGE_SIZE => {
                return Err(status::invalid_argument("page_size", format!("must be at most {MAX_PAGE_SIZE}")));
            }
            n => n as u32,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(
                self.open(page_token)
                    .ok_or_else(|| status::invalid_argument("page_token", "is not a token this server issued"))?,
            )
        };
        Ok(PageRequest { size, after, tokens: self.clone() })
    }

    fn mac(key: &[u8]) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
    }

    fn seal(&self, sort_key: &str) -> String {
        let mut mac = Self::mac(&self.keys[0]);
        mac.update(sort_key.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut sealed = sort_key.as_bytes().to_vec();
        sealed.extend_from_slice(&tag[..TAG_BYTES]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    fn open(&self, token: &str) -> Option<String> {
        let body = token.strip_prefix(PREFIX)?;
        if body.len() > (MAX_SORT_KEY_BYTES + TAG_BYTES) * 4 / 3 + 4 {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(body).ok()?;
        let split = sealed.len().checked_sub(TAG_BYTES)?;
        let (sort_key, tag) = sealed.split_at(split);
        let genuine = self.keys.iter().any(|key| {
            let mut mac = Self::mac(key);
            mac.update(sort_key);
            mac.verify_truncated_left(tag).is_ok()
        });
        if !genuine || sort_key.is_empty() {
            return None;
        }
        String::from_utf8(sort_key.to_vec()).ok()
    }
}

fn random_key() -> Vec<u8> {
    use rand::RngCore as _;
    let mut key = vec![0u8; MIN_KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// A new key file's text: one random key, with a comment saying how to rotate.
pub fn new_key_file() -> String {
    format!(
        "# Page-token keys, base64, one per line. The first signs; all verify. To rotate, add a new\n\
         # key on top, roll it out to every replica, and drop the old one a day later.\n{}\n",
        STANDARD.encode(random_key())
    )
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub size: u32,
    /// Sort key after which the page starts; `None` for the first page.
    pub after: Option<String>,
    tokens: PageTokens,
}

impl PageRequest {
    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// Trims the extra row and returns the next token, if any.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
        if rows.len() > self.size as usize {
            rows.truncate(self.size as usize);
            let token = rows.last().map(|last| self.tokens.seal(&key(last))).unwrap_or_default();
            (rows, token)
        } else {
            (rows, String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_bounds() {
        let tokens = PageTokens::random();
        assert_eq!(tokens.request(0, "").expect("default").size, DEFAULT_PAGE_SIZE);
        assert_eq!(tokens.request(7, "").expect("seven").size, 7);
        assert!(tokens.request(-1, "").is_err());
        assert!(tokens.request(MAX_PAGE_SIZE as i32 + 1, "").is_err());
        assert!(tokens.request(i32::MAX, "").is_err());
    }

    #[test]
    fn tokens_round_trip_and_hide_their_key() {
        let tokens = PageTokens::random();
        let page = tokens.request(2, "").expect("page");
        let (rows, token) = page.finish(vec!["0190-a", "0190-b", "0190-c"], |s| s.to_string());
        assert_eq!(rows, vec!["0190-a", "0190-b"]);
        assert!(!token.contains("0190-b") && !token.contains(&hex::encode("0190-b")), "opaque: {token}");
        assert_eq!(tokens.request(2, &token).expect("next").after.as_deref(), Some("0190-b"));
        let (rows, token) = page.finish(vec!["a"], |s| s.to_string());
        assert_eq!((rows.len(), token.as_str()), (1, ""));
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let tokens = PageTokens::random();
        let (_, token) = tokens.request(1, "").expect("page").finish(vec!["k1", "k2"], |s| s.to_string());
        for bad in ["garbage", "p1.6b31", "p2.", "p2.!!", &token[..token.len() - 2]] {
            assert!(tokens.request(1, bad).is_err(), "{bad:?} accepted");
        }
        // Changing any byte of the sealed body breaks the seal.
        let mut sealed = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).expect("base64");
        sealed[0] ^= 1;
        assert!(tokens.request(1, &format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&sealed))).is_err());
        // A key the client chose, sealed with a key the server does not hold.
        let (_, foreign) =
            PageTokens::random().request(1, "").expect("page").finish(vec!["k1", "k2"], |s| s.to_string());
        assert!(tokens.request(1, &foreign).is_err());
    }

    #[test]
    fn a_rotated_key_still_opens_its_tokens_and_a_dropped_one_does_not() {
        let old = PageTokens::new(vec![vec![1; 32]]).expect("old");
        let (_, token) = old.request(1, "").expect("page").finish(vec!["k1", "k2"], |s| s.to_string());
        let rotated = PageTokens::new(vec![vec![2; 32], vec![1; 32]]).expect("rotated");
        assert_eq!(rotated.request(1, &token).expect("still opens").after.as_deref(), Some("k1"));
        let (_, fresh) = rotated.request(1, "").expect("page").finish(vec!["k1", "k2"], |s| s.to_string());
        assert!(old.request(1, &fresh).is_err(), "new tokens are signed with the new key");
        let dropped = PageTokens::new(vec![vec![2; 32]]).expect("dropped");
        assert!(dropped.request(1, &token).is_err());
    }

    #[test]
    fn key_files_are_read_and_weak_keys_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, new_key_file()).expect("write");
        PageTokens::from_file(&path).expect("a generated file reads back");
        std::fs::write(&path, "# comment\n\nc2hvcnQ=\n").expect("write");
        assert!(PageTokens::from_file(&path).expect_err("short").contains("shorter than 32 bytes"));
        std::fs::write(&path, "not base64!\n").expect("write");
        assert!(PageTokens::from_file(&path).is_err());
        assert!(PageTokens::new(Vec::new()).is_err());
    }
}
