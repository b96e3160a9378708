//! Authentication: the [`Principal`] a bearer token names, and the tower layer that verifies
//! every request's token before any handler runs. Tokens say *who* the caller is, never what
//! they may do: each service decides that from current data (SPEC R34).
//!
//! `keys` binds every trusted key to the one kind of principal it may sign; `tokens` mints and
//! verifies the Ed25519 JWTs.

pub mod keys;
pub mod tokens;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

pub use keys::{IDENTITY_SERVICE, KeyDir, KeyError, KeyScope, LICENSING_SERVICE, generate_keys};
pub use tokens::{Claims, MaxLifetimes, ServiceCredentials, Signer, SignerSet, Verifier};

/// Larger bearer tokens are refused before any parsing, so a hostile header costs nothing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// gRPC paths that need no token: health probes (Kubernetes cannot send one) and reflection,
/// which only describes the public API.
const PUBLIC_PATH_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Is `path` (a gRPC `/package.Service/Method`) one that needs no token?
pub fn is_public_path(path: &str) -> bool {
    PUBLIC_PATH_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// When the request's bearer token expires, in seconds since the Unix epoch; stored beside the
/// [`Principal`] so that what outlives one call (an event stream) ends with its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenExpiry(pub u64);

impl TokenExpiry {
    /// The request's, if the layer ran.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request.extensions().get::<Self>().copied()
    }

    /// How long from now until then; zero once it has passed.
    pub fn remaining(self) -> std::time::Duration {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        std::time::Duration::from_secs(self.0).saturating_sub(now)
    }
}

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

    pub fn kind(&self) -> PrincipalKind {
        match self {
            Self::User { .. } => PrincipalKind::User,
            Self::Service { .. } => PrincipalKind::Service,
            Self::Operator { .. } => PrincipalKind::Operator,
        }
    }

    pub fn subject(&self) -> &str {
        match self {
            Self::User { user_id } => user_id,
            Self::Service { name } | Self::Operator { name } => name,
        }
    }
}

/// The `kind` claim: which sort of principal `sub` names; also what logs say of a caller
/// (never who).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Service,
    Operator,
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
    #[error("bearer token is not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("bearer token is not for this audience")]
    WrongAudience,
    #[error("bearer token was not issued by the expected issuer")]
    WrongIssuer,
    #[error("bearer token is signed by a key this service does not trust (unknown kid)")]
    UnknownKey,
    #[error("bearer token is signed by a key that may not sign for this kind of principal")]
    KeyNotForPrincipal,
    #[error("bearer token is invalid")]
    Invalid,
    #[error("bearer token names its principal with control or bidirectional-override characters")]
    SubjectInvalid,
    #[error("bearer token header lists critical extensions (crit) this service does not understand")]
    CriticalHeader,
    #[error("bearer token is valid for longer (exp - iat) than this service allows its kind of principal")]
    LifetimeTooLong,
    #[error("a service token must come with a client certificate valid for roster-{0}")]
    CertificateNotForService(String),
}

impl AuthError {
    /// The stable `ErrorInfo.reason` of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::CertificateNotForService(_) => "CERTIFICATE_NOT_FOR_SERVICE",
            Self::Malformed | Self::TooLarge | Self::Invalid => "TOKEN_INVALID",
            Self::SubjectInvalid => "TOKEN_SUBJECT_INVALID",
            Self::CriticalHeader => "TOKEN_CRITICAL_HEADER",
            Self::LifetimeTooLong => "TOKEN_LIFETIME_TOO_LONG",
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            Self::WrongIssuer => "TOKEN_WRONG_ISSUER",
            Self::UnknownKey => "TOKEN_KEY_UNKNOWN",
            Self::KeyNotForPrincipal => "TOKEN_KEY_NOT_FOR_PRINCIPAL",
        }
    }

    /// `UNAUTHENTICATED` with the reason; the message names no key.
    pub fn to_status(&self) -> tonic::Status {
        crate::status::refusal(
            tonic::Code::Unauthenticated,
            crate::status::Reason::new(self.reason(), None),
            self.to_string(),
        )
    }
}

impl Principal {
    fn from_claims(claims: Claims) -> Result<Self, AuthError> {
        if claims.sub.is_empty() || claims.sub.len() > 200 {
            return Err(AuthError::Invalid);
        }
        // A name ends up in audit records, idempotency keys, logs and SQL parameters: NUL is
        // an encoding error on PostgreSQL, and an override character makes a record read
        // differently from what it holds.
        if claims.sub.chars().any(roster_proto::checked::is_forbidden_char) {
            return Err(AuthError::SubjectInvalid);
        }
        Ok(match claims.kind {
            PrincipalKind::User => Self::User { user_id: claims.sub },
            PrincipalKind::Service => Self::Service { name: claims.sub },
            PrincipalKind::Operator => Self::Operator { name: claims.sub },
        })
    }
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
        if is_public_path(path) {
            return Either::Left(self.inner.call(request));
        }
        match self.verifier.authenticate(request.headers()).and_then(|(principal, expiry)| {
            certificate_matches(&request, &principal)?;
            Ok((principal, expiry))
        }) {
            Ok((principal, expiry)) => {
                // The RPC's span (see `rpc_log`) is entered here.
                tracing::Span::current().record("principal", <&'static str>::from(principal.kind()));
                request.extensions_mut().insert(principal);
                request.extensions_mut().insert(expiry);
                Either::Left(self.inner.call(request))
            }
            Err(error) => Either::Right(ready(Ok(error.to_status().into_http()))),
        }
    }
}

/// Under mutual TLS (the connection carries a client certificate), a service token is
/// accepted only with a certificate of that service (see [`crate::tls::names_service`]).
fn certificate_matches<B>(request: &http::Request<B>, principal: &Principal) -> Result<(), AuthError> {
    let Principal::Service { name } = principal else { return Ok(()) };
    let certs = request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(tonic::transport::server::TlsConnectInfo::peer_certs);
    match certs {
        Some(chain) if !crate::tls::names_service(&chain, name) => {
            Err(AuthError::CertificateNotForService(name.clone()))
        }
        _ => Ok(()),
    }
}

/// The authenticated caller of a request; `UNAUTHENTICATED` if the layer did not run.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| AuthError::Missing.to_status())
}
