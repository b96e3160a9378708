//! Page sizes and page tokens for list RPCs.
//!
//! A token carries the sort key of the last item returned and when it stops working, sealed
//! with an HMAC-SHA256 under a server key, so a client can neither read meaning into it (its
//! form is not part of the API) nor forge one to start a page wherever it likes. The seal also
//! covers what the token belongs to: the list RPC (its request message), the caller, and the
//! request's filter (the account and every other field but the page size and token). A token
//! is good only for the next page of the same listing, for 24 hours; anything else is
//! `INVALID_ARGUMENT` on `page_token`, so a token from one account's list opens nothing in
//! another's, in another list or in the other service. Lists order by a unique, time-ordered
//! id, so a page never repeats or skips an item that existed when the first page was read.
//!
//! Keys rotate without breaking tokens already handed out: the first key of [`PageTokens`]
//! signs, every key verifies. Every replica of a service must hold the same keys.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use roster_proto::paged::Paged;
use sha2::{Digest, Sha256};

use crate::status;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
/// How long a page token works after the page that handed it out.
pub const TOKEN_TTL_MS: i64 = 24 * 3_600_000;

/// Tokens start with this, so a token of another format (an older, unbound one) is refused by
/// its first bytes.
const PREFIX: &str = "p3.";
/// Bytes of the HMAC kept in a token: 128 bits, beyond guessing.
const TAG_BYTES: usize = 16;
/// The expiry, milliseconds since the epoch, big-endian.
const EXPIRY_BYTES: usize = 8;
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

/// Why a token does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Not sealed by this service for this list, caller and filter (or altered).
    NotForThisList,
    Expired,
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

    /// Validates the page size (0 means the default) of a list request by `principal` (its
    /// audit name) and opens its page token, which must be one this list handed `principal`
    /// for the same filter, less than [`TOKEN_TTL_MS`] before `now_ms`.
    pub fn request<R: Paged>(&self, request: &R, principal: &str, now_ms: i64) -> Result<PageRequest, tonic::Status> {
        let size = match request.page_size() {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(status::invalid_argument("page_size", "must not be negative")),
            n if n > i64::from(MAX_PAGE_SIZE) => {
                return Err(status::invalid_argument("page_size", format!("must be at most {MAX_PAGE_SIZE}")));
            }
            n => u32::try_from(n).unwrap_or(MAX_PAGE_SIZE),
        };
        let scope = scope_of(request, principal);
        let after = match request.page_token() {
            "" => None,
            token => Some(self.open(&scope, token, now_ms).map_err(|refused| match refused {
                Refused::NotForThisList => status::invalid_argument(
                    "page_token",
                    "is not a token this server issued for this list, caller and filter; pass back the \
                     next_page_token of the previous page with the same request",
                ),
                Refused::Expired => status::invalid_argument(
                    "page_token",
                    "has expired (page tokens work for 24 hours); start again from the first page",
                ),
            })?),
        };
        Ok(PageRequest { size, after, tokens: self.clone(), scope, now_ms })
    }

    /// Seals a position in a log named `log` (an event cursor): the same seal as a page token,
    /// bound to the log instead of a listing, with no expiry (the log's retention decides how
    /// long a position is any use).
    pub fn seal_position(&self, log: &str, position: &str) -> String {
        self.seal(&log_scope(log), i64::MAX, position)
    }

    /// The position a cursor sealed by [`PageTokens::seal_position`] for `log` names; `None`
    /// for anything else (forged, altered, or of another log).
    pub fn open_position(&self, log: &str, cursor: &str) -> Option<String> {
        self.open(&log_scope(log), cursor, 0).ok()
    }

    fn mac(key: &[u8], scope: &[u8; 32], expiry: &[u8], sort_key: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(scope);
        mac.update(expiry);
        mac.update(sort_key);
        mac
    }

    fn seal(&self, scope: &[u8; 32], expires_at_ms: i64, sort_key: &str) -> String {
        let expiry = expires_at_ms.to_be_bytes();
        let tag = Self::mac(&self.keys[0], scope, &expiry, sort_key.as_bytes()).finalize().into_bytes();
        let mut sealed = expiry.to_vec();
        sealed.extend_from_slice(sort_key.as_bytes());
        sealed.extend_from_slice(&tag[..TAG_BYTES]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    fn open(&self, scope: &[u8; 32], token: &str, now_ms: i64) -> Result<String, Refused> {
        let body = token.strip_prefix(PREFIX).ok_or(Refused::NotForThisList)?;
        if body.len() > (EXPIRY_BYTES + MAX_SORT_KEY_BYTES + TAG_BYTES) * 4 / 3 + 4 {
            return Err(Refused::NotForThisList);
        }
        let sealed = URL_SAFE_NO_PAD.decode(body).map_err(|_| Refused::NotForThisList)?;
        if sealed.len() <= EXPIRY_BYTES + TAG_BYTES {
            return Err(Refused::NotForThisList);
        }
        let (expiry, rest) = sealed.split_at(EXPIRY_BYTES);
        let (sort_key, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let genuine =
            self.keys.iter().any(|key| Self::mac(key, scope, expiry, sort_key).verify_truncated_left(tag).is_ok());
        if !genuine {
            return Err(Refused::NotForThisList);
        }
        let expires_at_ms = i64::from_be_bytes(expiry.try_into().map_err(|_| Refused::NotForThisList)?);
        if expires_at_ms <= now_ms {
            return Err(Refused::Expired);
        }
        String::from_utf8(sort_key.to_vec()).map_err(|_| Refused::NotForThisList)
    }
}

/// What one listing's tokens are bound to: the list, the caller and the filter, each
/// length-prefixed so no two differ only in where one ends.
fn scope_of<R: Paged>(request: &R, principal: &str) -> [u8; 32] {
    let filter = request.filter().encode_to_vec();
    let mut digest = Sha256::new();
    for part in [R::LIST.as_bytes(), principal.as_bytes(), &filter] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.finalize().into()
}

/// What an event log's cursors are bound to: the log's name, apart from every listing's scope.
fn log_scope(log: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(b"event-log\0");
    digest.update(log.as_bytes());
    digest.finalize().into()
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
    scope: [u8; 32],
    now_ms: i64,
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
            let expires_at_ms = self.now_ms.saturating_add(TOKEN_TTL_MS);
            let token =
                rows.last().map(|last| self.tokens.seal(&self.scope, expires_at_ms, &key(last))).unwrap_or_default();
            (rows, token)
        } else {
            (rows, String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use roster_proto::identity::v1 as pb;

    use super::*;

    const NOW: i64 = 1_793_491_200_000;
    const ME: &str = "user:u1";

    fn list(account: &str, token: &str) -> pb::ListUsersRequest {
        pb::ListUsersRequest {
            account_id: account.into(),
            page_size: 1,
            page_token: token.into(),
            ..Default::default()
        }
    }

    /// The token a first page of `request` hands out.
    fn next_token(tokens: &PageTokens, request: &pb::ListUsersRequest) -> String {
        tokens.request(request, ME, NOW).expect("page").finish(vec!["k1", "k2"], |s| s.to_string()).1
    }

    #[test]
    fn page_size_bounds() {
        let tokens = PageTokens::random();
        let sized = |page_size| pb::ListUsersRequest { page_size, ..Default::default() };
        assert_eq!(tokens.request(&sized(0), ME, NOW).expect("default").size, DEFAULT_PAGE_SIZE);
        assert_eq!(tokens.request(&sized(7), ME, NOW).expect("seven").size, 7);
        assert!(tokens.request(&sized(-1), ME, NOW).is_err());
        assert!(tokens.request(&sized(MAX_PAGE_SIZE as i32 + 1), ME, NOW).is_err());
        assert!(tokens.request(&sized(i32::MAX), ME, NOW).is_err());
    }

    #[test]
    fn tokens_round_trip_and_hide_their_key() {
        let tokens = PageTokens::random();
        let page = tokens.request(&list("a", ""), ME, NOW).expect("page");
        let (rows, token) = page.finish(vec!["0190-a", "0190-b", "0190-c"], |s| s.to_string());
        assert_eq!(rows, vec!["0190-a"]);
        assert!(!token.contains("0190-a") && !token.contains(&hex::encode("0190-a")), "opaque: {token}");
        assert_eq!(tokens.request(&list("a", &token), ME, NOW).expect("next").after.as_deref(), Some("0190-a"));
        let (rows, token) = page.finish(vec!["a"], |s| s.to_string());
        assert_eq!((rows.len(), token.as_str()), (1, ""));
    }

    #[test]
    fn a_token_opens_only_the_next_page_of_the_same_listing_for_a_day() {
        let tokens = PageTokens::random();
        let token = next_token(&tokens, &list("acme", ""));
        assert!(tokens.request(&list("acme", &token), ME, NOW + TOKEN_TTL_MS - 1).is_ok());
        let refused = |request: &pb::ListUsersRequest, principal: &str, now_ms: i64| {
            let status = tokens.request(request, principal, now_ms).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().starts_with("page_token: "), "{}", status.message());
            status.message().to_owned()
        };
        // Another account, another filter, another caller, another list.
        refused(&list("globex", &token), ME, NOW);
        refused(&pb::ListUsersRequest { status: pb::UserStatus::Active as i32, ..list("acme", &token) }, ME, NOW);
        refused(&list("acme", &token), "user:u2", NOW);
        let invitations =
            pb::ListInvitationsRequest { account_id: "acme".into(), page_size: 1, page_token: token.clone() };
        assert!(tokens.request(&invitations, ME, NOW).is_err());
        // A page size of its own is the same listing.
        assert!(tokens.request(&pb::ListUsersRequest { page_size: 9, ..list("acme", &token) }, ME, NOW).is_ok());
        // A day later it has expired, and says so.
        assert!(refused(&list("acme", &token), ME, NOW + TOKEN_TTL_MS).contains("expired"));
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let tokens = PageTokens::random();
        let token = next_token(&tokens, &list("a", ""));
        for bad in ["garbage", "p2.6b31", "p3.", "p3.!!", &token[..token.len() - 2]] {
            assert!(tokens.request(&list("a", bad), ME, NOW).is_err(), "{bad:?} accepted");
        }
        // Changing any byte of the sealed body breaks the seal, the expiry's included.
        for at in [0, EXPIRY_BYTES] {
            let mut sealed = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).expect("base64");
            sealed[at] ^= 1;
            let altered = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&sealed));
            assert!(tokens.request(&list("a", &altered), ME, NOW).is_err(), "byte {at}");
        }
        // A token sealed with a key the server does not hold.
        let foreign = next_token(&PageTokens::random(), &list("a", ""));
        assert!(tokens.request(&list("a", &foreign), ME, NOW).is_err());
    }

    #[test]
    fn a_rotated_key_still_opens_its_tokens_and_a_dropped_one_does_not() {
        let old = PageTokens::new(vec![vec![1; 32]]).expect("old");
        let token = next_token(&old, &list("a", ""));
        let rotated = PageTokens::new(vec![vec![2; 32], vec![1; 32]]).expect("rotated");
        assert_eq!(rotated.request(&list("a", &token), ME, NOW).expect("still opens").after.as_deref(), Some("k1"));
        let fresh = next_token(&rotated, &list("a", ""));
        assert!(old.request(&list("a", &fresh), ME, NOW).is_err(), "new tokens are signed with the new key");
        let dropped = PageTokens::new(vec![vec![2; 32]]).expect("dropped");
        assert!(dropped.request(&list("a", &token), ME, NOW).is_err());
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
