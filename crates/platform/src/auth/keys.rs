//! Trusted signing keys and what each one may sign.
//!
//! The services trust a JWKS file (RFC 7517): Ed25519 public keys (`kty` `OKP`), each with a
//! `kid` and one Roster member, `roster_signs`, naming what the key may sign: `users`,
//! `operators`, or one service (`service:identity`). A token is verified with the key its `kid`
//! names and refused unless that key may sign the principal the token names, so the key that
//! signs users' sessions cannot mint an operator, and licensing's key cannot pose as identity.
//! Rotation is two keys with the same `roster_signs` in the file at once.
//!
//! A key's `kid` is its RFC 7638 thumbprint, so a signer derives it from the private key alone
//! and the two can never disagree.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Principal;

/// The services' principal names, as their own tokens carry them.
pub const IDENTITY_SERVICE: &str = "identity";
pub const LICENSING_SERVICE: &str = "licensing";

/// What tokens a key may sign.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// Users' session tokens (the sign-in front end holds this key).
    Users,
    /// Platform operators' tokens (support tooling).
    Operators,
    /// One named service's own tokens.
    Service(String),
}

impl KeyScope {
    /// Every principal `roster up` and `roster keys generate` make a key for.
    pub fn all() -> Vec<Self> {
        vec![
            Self::Users,
            Self::Operators,
            Self::Service(IDENTITY_SERVICE.to_owned()),
            Self::Service(LICENSING_SERVICE.to_owned()),
        ]
    }

    /// `users`, `operators` or `service:<name>`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "users" => Some(Self::Users),
            "operators" => Some(Self::Operators),
            _ => {
                let name = text.strip_prefix("service:")?;
                let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                valid.then(|| Self::Service(name.to_owned()))
            }
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            Self::Users => "users".to_owned(),
            Self::Operators => "operators".to_owned(),
            Self::Service(name) => format!("service:{name}"),
        }
    }

    /// The scope a key needs to sign tokens for `principal`.
    pub fn for_principal(principal: &Principal) -> Self {
        match principal {
            Principal::User { .. } => Self::Users,
            Principal::Operator { .. } => Self::Operators,
            Principal::Service { name } => Self::Service(name.clone()),
        }
    }

    /// May a key of this scope sign a token naming `principal`?
    pub fn permits(&self, principal: &Principal) -> bool {
        *self == Self::for_principal(principal)
    }

    /// The private key's file name in a generated key directory.
    pub fn file_name(&self) -> String {
        match self {
            Self::Service(name) => format!("service-{name}.pem"),
            other => format!("{}.pem", other.as_text()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is not an Ed25519 PEM key: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path} is not a usable JWKS file: {reason}")]
    Jwks { path: PathBuf, reason: String },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode the generated key: {0}")]
    Encode(String),
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })
}

/// One entry of the JWKS file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    key_use: Option<String>,
    roster_signs: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

impl Jwk {
    fn of(public: &ed25519_dalek::VerifyingKey, scope: &KeyScope) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            kid: key_id(public),
            alg: Some("EdDSA".into()),
            key_use: Some("sig".into()),
            roster_signs: scope.as_text(),
        }
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over its required members in
/// lexicographic order, base64url without padding.
pub fn key_id(public: &ed25519_dalek::VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A public key the services trust, and what it may sign.
pub struct TrustedKey {
    pub scope: KeyScope,
    pub(super) key: DecodingKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey").field("scope", &self.scope).finish_non_exhaustive()
    }
}

/// Reads a JWKS file into trusted keys by `kid`. Every entry must be an Ed25519 key with a
/// unique `kid` and a known `roster_signs`; a file with a bad entry is refused whole, so a typo
/// never silently drops a key.
pub fn load_jwks(path: &Path) -> Result<Vec<(String, TrustedKey)>, KeyError> {
    let bad = |reason: String| KeyError::Jwks { path: path.to_owned(), reason };
    let set: JwkSet = serde_json::from_slice(&read(path)?).map_err(|e| bad(e.to_string()))?;
    if set.keys.is_empty() {
        return Err(bad("it lists no keys".into()));
    }
    let mut keys: Vec<(String, TrustedKey)> = Vec::with_capacity(set.keys.len());
    for jwk in set.keys {
        let kid = jwk.kid.clone();
        if kid.is_empty() || keys.iter().any(|(k, _)| *k == kid) {
            return Err(bad(format!("every key needs a unique kid (\"{kid}\")")));
        }
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" || jwk.alg.as_deref().is_some_and(|a| a != "EdDSA") {
            return Err(bad(format!("key {kid} is not an Ed25519 (OKP, EdDSA) key")));
        }
        let scope = KeyScope::parse(&jwk.roster_signs).ok_or_else(|| {
            bad(format!("key {kid}: roster_signs \"{}\" is not users, operators or service:<name>", jwk.roster_signs))
        })?;
        let x = URL_SAFE_NO_PAD.decode(&jwk.x).ok().filter(|x| x.len() == 32);
        if x.is_none() {
            return Err(bad(format!("key {kid}: x is not a base64url Ed25519 public key")));
        }
        let key = DecodingKey::from_ed_components(&jwk.x).map_err(|e| bad(format!("key {kid}: {e}")))?;
        keys.push((kid, TrustedKey { scope, key }));
    }
    Ok(keys)
}

/// An Ed25519 private key from a PKCS#8 PEM file, with its `kid`.
pub(super) fn load_private(path: &Path) -> Result<(ed25519_dalek::SigningKey, String), KeyError> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| KeyError::Parse { path: path.to_owned(), reason: "not UTF-8 text".into() })?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| KeyError::Parse { path: path.to_owned(), reason: e.to_string() })?;
    let kid = key_id(&key.verifying_key());
    Ok((key, kid))
}

/// A directory of generated keys: one private key per scope, and `jwks.json` trusting them.
#[derive(Debug, Clone)]
pub struct KeyDir {
    pub dir: PathBuf,
}

impl KeyDir {
    pub fn private_key(&self, scope: &KeyScope) -> PathBuf {
        self.dir.join(scope.file_name())
    }

    pub fn jwks(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// The HMAC keys page tokens are sealed with ([`crate::pagination`]).
    pub fn page_token_keys(&self) -> PathBuf {
        self.dir.join("page-token.keys")
    }
}

/// Creates a private key for each of `scopes` that `dir` lacks (existing keys are kept), then
/// writes `jwks.json` trusting exactly the keys in `dir` for those scopes, and a page-token
/// key file if there is none. Private keys are written owner-readable only.
pub fn generate_keys(dir: &Path, scopes: &[KeyScope]) -> Result<KeyDir, KeyError> {
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Write { path: dir.to_owned(), source })?;
    let keys = KeyDir { dir: dir.to_owned() };
    let mut set = JwkSet { keys: Vec::with_capacity(scopes.len()) };
    for scope in scopes {
        let path = keys.private_key(scope);
        let signing = if path.exists() {
            load_private(&path)?.0
        } else {
            let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Encode(e.to_string()))?;
            write_private(&path, pem.as_bytes())?;
            signing
        };
        set.keys.push(Jwk::of(&signing.verifying_key(), scope));
    }
    let text = serde_json::to_string_pretty(&set).map_err(|e| KeyError::Encode(e.to_string()))?;
    std::fs::write(keys.jwks(), text + "\n").map_err(|source| KeyError::Write { path: keys.jwks(), source })?;
    if !keys.page_token_keys().exists() {
        write_private(&keys.page_token_keys(), crate::pagination::new_key_file().as_bytes())?;
    }
    Ok(keys)
}

fn write_private(path: &Path, pem: &[u8]) -> Result<(), KeyError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> { options.open(path)?.write_all(pem) };
    write().map_err(|source| KeyError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_and_bind_one_principal_kind() {
        for scope in KeyScope::all() {
            assert_eq!(KeyScope::parse(&scope.as_text()), Some(scope));
        }
        assert_eq!(KeyScope::parse("service:"), None);
        assert_eq!(KeyScope::parse("admins"), None);
        let identity = Principal::Service { name: IDENTITY_SERVICE.into() };
        assert!(KeyScope::Service(IDENTITY_SERVICE.into()).permits(&identity));
        assert!(!KeyScope::Service(LICENSING_SERVICE.into()).permits(&identity));
        assert!(!KeyScope::Users.permits(&identity));
        assert!(!KeyScope::Operators.permits(&Principal::User { user_id: "u".into() }));
    }

    #[test]
    fn generated_keys_are_kept_and_listed_with_their_thumbprints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = generate_keys(dir.path(), &KeyScope::all()).expect("keys");
        let before = std::fs::read(first.private_key(&KeyScope::Users)).expect("read");
        let again = generate_keys(dir.path(), &KeyScope::all()).expect("keys");
        assert_eq!(before, std::fs::read(again.private_key(&KeyScope::Users)).expect("read"));
        let trusted = load_jwks(&again.jwks()).expect("jwks");
        assert_eq!(trusted.len(), 4);
        let (_, users_kid) = load_private(&again.private_key(&KeyScope::Users)).expect("private");
        let (_, scope) = trusted.iter().find(|(kid, _)| *kid == users_kid).expect("users key listed");
        assert_eq!(scope.scope, KeyScope::Users);
    }

    #[test]
    fn a_jwks_with_a_bad_entry_is_refused_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        for (case, body) in [
            (
                "unknown scope",
                format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a","roster_signs":"admins"}}]}}"#),
            ),
            (
                "wrong curve",
                format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{x}","kid":"a","roster_signs":"users"}}]}}"#),
            ),
            (
                "short x",
                r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"a","roster_signs":"users"}]}"#.to_owned(),
            ),
            (
                "duplicate kid",
                format!(
                    r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a","roster_signs":"users"}},{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a","roster_signs":"operators"}}]}}"#
                ),
            ),
            ("no keys", r#"{"keys":[]}"#.to_owned()),
            ("not json", "-----BEGIN PUBLIC KEY-----".to_owned()),
        ] {
            std::fs::write(&path, body).expect("write");
            assert!(matches!(load_jwks(&path), Err(KeyError::Jwks { .. })), "{case}");
        }
    }
}
