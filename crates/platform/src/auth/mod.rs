//! Authentication: Ed25519-signed JWTs, the [`Principal`] they name, and the tower layer that
//! verifies every request's bearer token before any handler runs.
//!
//! Tokens say *who* the caller is, never what they may do: each service decides that from
//! current data (SPEC R34). Keys are PEM files (Kubernetes secrets in production); dev mode
//! generates a pair with [`generate_dev_keys`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

/// Larger bearer tokens are refused before any parsing, so a hostile header costs nothing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// gRPC paths that need no token: health probes (Kubernetes cannot send one) and reflection,
/// which only describes the public API.
const PUBLIC_PATH_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user of some account; the account is looked up from current data, never the token.
    User { user_id: String },
    /// Another Roster service (identity <-> licensing).
    Service { name: String },
    /// Platform support staff, never an account user (SPEC R11).
    Operator { name: String },
}

impl Principal {
    /// Reads back [`Principal::audit_name`] (sagas record who started them this way).
    pub fn from_audit_name(text: &str) -> Option<Self> {
        let (kind, subject) = text.split_once(':')?;
        let subject = subject.to_owned();
        match kind {
            "user" => Some(Self::User { user_id: subject }),
            "service" => Some(Self::Service { name: subject }),
            "operator" => Some(Self::Operator { name: subject }),
            _ => None,
        }
    }

    /// The stable text used in audit records and idempotency keys: `kind:subject`.
    pub fn audit_name(&self) -> String {
        match self {
            Self::User { user_id } => format!("user:{user_id}"),
            Self::Service { name } => format!("service:{name}"),
            Self::Operator { name } => format!("operator:{name}"),
        }
    }

    fn kind(&self) -> PrincipalKind {
        match self {
            Self::User { .. } => PrincipalKind::User,
            Self::Service { .. } => PrincipalKind::Service,
            Self::Operator { .. } => PrincipalKind::Operator,
        }
    }

    fn subject(&self) -> &str {
        match self {
            Self::User { user_id } => user_id,
            Self::Service { name } | Self::Operator { name } => name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PrincipalKind {
    User,
    Service,
    Operator,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    kind: PrincipalKind,
    aud: String,
    iat: u64,
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is not an Ed25519 PEM key: {source}")]
    Parse { path: PathBuf, source: jsonwebtoken::errors::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode the generated key: {0}")]
    Encode(String),
}

/// Why a request was not authenticated. The message goes to the caller; it names no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token in the authorization header")]
    Missing,
    #[error("the authorization header is not a bearer token")]
    Malformed,
    #[error("bearer token larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("bearer token has expired")]
    Expired,
    #[error("bearer token is not for this audience")]
    WrongAudience,
    #[error("bearer token is invalid")]
    Invalid,
}

impl AuthError {
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::unauthenticated(self.to_string())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })
}

/// Verifies tokens against one or more public keys (several during a key rotation).
pub struct Verifier {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.len()).finish()
    }
}

impl Verifier {
    pub fn from_pem_files(paths: &[PathBuf], audience: &str) -> Result<Self, KeyError> {
        let keys = paths
            .iter()
            .map(|path| {
                DecodingKey::from_ed_pem(&read(path)?).map_err(|source| KeyError::Parse { path: path.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self { keys, validation })
    }

    /// Checks signature, expiry and audience, and returns who the token names.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let mut last = AuthError::Invalid;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return principal_from(data.claims),
                Err(error) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match error.kind() {
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        ErrorKind::InvalidAudience => AuthError::WrongAudience,
                        _ => AuthError::Invalid,
                    };
                    // A signature that fails under one key may verify under the next.
                    if last != AuthError::Invalid {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// Reads `authorization: Bearer <token>` and verifies it.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
            return Err(AuthError::TooLarge);
        }
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token =
            value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthError::Malformed)?;
        self.verify(token.trim())
    }
}

fn principal_from(claims: Claims) -> Result<Principal, AuthError> {
    if claims.sub.is_empty() || claims.sub.len() > 200 {
        return Err(AuthError::Invalid);
    }
    Ok(match claims.kind {
        PrincipalKind::User => Principal::User { user_id: claims.sub },
        PrincipalKind::Service => Principal::Service { name: claims.sub },
        PrincipalKind::Operator => Principal::Operator { name: claims.sub },
    })
}

/// Mints tokens. Only dev tooling and tests hold the private key; services only verify.
pub struct Signer {
    key: EncodingKey,
    audience: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn from_pem_file(path: &Path, audience: &str) -> Result<Self, KeyError> {
        let key = EncodingKey::from_ed_pem(&read(path)?)
            .map_err(|source| KeyError::Parse { path: path.to_owned(), source })?;
        Ok(Self { key, audience: audience.to_owned() })
    }

    /// A token for `principal`, valid from `now_s` for `ttl_s` seconds.
    pub fn mint(&self, principal: &Principal, now_s: u64, ttl_s: u64) -> String {
        self.mint_for_audience(principal, &self.audience, now_s, ttl_s)
    }

    /// Like [`Signer::mint`] for another audience (tests of audience checks use it).
    pub fn mint_for_audience(&self, principal: &Principal, audience: &str, now_s: u64, ttl_s: u64) -> String {
        let claims = Claims {
            sub: principal.subject().to_owned(),
            kind: principal.kind(),
            aud: audience.to_owned(),
            iat: now_s,
            exp: now_s.saturating_add(ttl_s),
        };
        // Signing with a key that parsed as Ed25519 cannot fail for these claims.
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key).expect("Ed25519 signing")
    }
}

/// A service's own bearer token for calls to another Roster service, re-minted well before it
/// expires. Cheap to clone; clones share the cached token.
#[derive(Debug, Clone)]
pub struct ServiceCredentials {
    signer: Arc<Signer>,
    principal: Principal,
    cached: Arc<std::sync::Mutex<Option<(std::time::Instant, String)>>>,
}

impl ServiceCredentials {
    const TTL_S: u64 = 300;
    const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn new(signer: Arc<Signer>, service_name: &str) -> Self {
        let principal = Principal::Service { name: service_name.to_owned() };
        Self { signer, principal, cached: Arc::default() }
    }

    /// The `authorization` header value.
    pub fn bearer(&self) -> String {
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cached.as_ref() {
            Some((minted, token)) if minted.elapsed() < Self::REFRESH_AFTER => format!("Bearer {token}"),
            _ => {
                let now_s =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let token = self.signer.mint(&self.principal, now_s, Self::TTL_S);
                *cached = Some((std::time::Instant::now(), token.clone()));
                format!("Bearer {token}")
            }
        }
    }

    /// `message` as a request carrying this service's token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        // A JWT is base64url and dots, always a valid header value.
        if let Ok(value) = self.bearer().parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

/// Paths of a generated key pair.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
}

/// Creates `jwt-private.pem` and `jwt-public.pem` in `dir` unless both exist already.
pub fn generate_dev_keys(dir: &Path) -> Result<KeyPairFiles, KeyError> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};

    let files = KeyPairFiles { private_key: dir.join("jwt-private.pem"), public_key: dir.join("jwt-public.pem") };
    if files.private_key.exists() && files.public_key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Write { path: dir.to_owned(), source })?;
    let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Encode(e.to_string()))?;
    let public =
        signing.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| KeyError::Encode(e.to_string()))?;
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| KeyError::Write { path: path.to_owned(), source })
    };
    write(&files.private_key, private.as_str())?;
    write(&files.public_key, &public)?;
    Ok(files)
}

/// Tower layer: verifies the bearer token and stores the [`Principal`] in the request
/// extensions, or answers `UNAUTHENTICATED` without reaching the service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, verifier: self.verifier.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if PUBLIC_PATH_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
            return Either::Left(self.inner.call(request));
        }
        match self.verifier.authenticate(request.headers()) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Either::Left(self.inner.call(request))
            }
            Err(error) => Either::Right(ready(Ok(error.to_status().into_http()))),
        }
    }
}

/// The authenticated caller of a request; `UNAUTHENTICATED` if the layer did not run.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| AuthError::Missing.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, Signer, Verifier) {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = generate_dev_keys(dir.path()).expect("keys");
        let signer = Signer::from_pem_file(&files.private_key, "roster").expect("signer");
        let verifier = Verifier::from_pem_files(&[files.public_key], "roster").expect("verifier");
        (dir, signer, verifier)
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
    }

    #[test]
    fn round_trip_names_the_principal() {
        let (_dir, signer, verifier) = keys();
        let who = Principal::User { user_id: "u1".into() };
        assert_eq!(verifier.verify(&signer.mint(&who, now(), 60)), Ok(who));
        let op = Principal::Operator { name: "support".into() };
        assert_eq!(verifier.verify(&signer.mint(&op, now(), 60)), Ok(op));
    }

    #[test]
    fn expired_wrong_audience_and_foreign_key_are_refused() {
        let (_dir, signer, verifier) = keys();
        let who = Principal::User { user_id: "u1".into() };
        assert_eq!(verifier.verify(&signer.mint(&who, now() - 3_600, 60)), Err(AuthError::Expired));
        assert_eq!(verifier.verify(&signer.mint_for_audience(&who, "other", now(), 60)), Err(AuthError::WrongAudience));
        let (_other_dir, other_signer, _) = keys();
        assert_eq!(verifier.verify(&other_signer.mint(&who, now(), 60)), Err(AuthError::Invalid));
        assert_eq!(verifier.verify("not-a-token"), Err(AuthError::Invalid));
        assert_eq!(verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::TooLarge));
    }

    #[test]
    fn header_must_be_a_bearer_token() {
        let (_dir, _signer, verifier) = keys();
        let mut headers = http::HeaderMap::new();
        assert_eq!(verifier.authenticate(&headers), Err(AuthError::Missing));
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert_eq!(verifier.authenticate(&headers), Err(AuthError::Malformed));
    }

    #[test]
    fn existing_keys_are_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = generate_dev_keys(dir.path()).expect("keys");
        let before = std::fs::read(&first.public_key).expect("read");
        let second = generate_dev_keys(dir.path()).expect("keys");
        assert_eq!(before, std::fs::read(&second.public_key).expect("read"));
    }
}
