//! Minting and verifying bearer tokens: Ed25519 JWTs whose header names the signing key
//! (`kid`) and whose claims name one principal, with issuer, audience and a validity window.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::keys::{self, KeyDir, KeyError, KeyScope, TrustedKey};
use super::{AuthError, MAX_TOKEN_BYTES, Principal, PrincipalKind, TokenExpiry};

/// Clock skew tolerated between the signer and the verifier, for `exp`, `nbf` and `iat`.
pub const LEEWAY_S: u64 = 30;

/// The claims of every Roster token. Public so tests can sign tokens that are wrong in one way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub kind: PrincipalKind,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// Mints tokens with one private key. The services hold only their own service key; users'
/// and operators' keys belong to the sign-in front end and support tooling (and to `roster up`
/// and the tests, which play those parts).
pub struct Signer {
    key: EncodingKey,
    kid: String,
    audience: String,
    issuer: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn from_pem_file(path: &Path, audience: &str, issuer: &str) -> Result<Self, KeyError> {
        let (_, kid) = keys::load_private(path)?;
        let key = EncodingKey::from_ed_pem(&keys::read(path)?)
            .map_err(|e| KeyError::Parse { path: path.to_owned(), reason: e.to_string() })?;
        Ok(Self { key, kid, audience: audience.to_owned(), issuer: issuer.to_owned() })
    }

    /// The `kid` this signer puts in its tokens (its public key's thumbprint).
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The claims of a token for `principal`, valid from `now_s` for `ttl_s` seconds.
    pub fn claims(&self, principal: &Principal, now_s: u64, ttl_s: u64) -> Claims {
        Claims {
            sub: principal.subject().to_owned(),
            kind: principal.kind(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now_s,
            nbf: now_s,
            exp: now_s.saturating_add(ttl_s),
        }
    }

    /// A token for `principal`, valid from `now_s` for `ttl_s` seconds.
    pub fn mint(&self, principal: &Principal, now_s: u64, ttl_s: u64) -> String {
        self.sign(&self.claims(principal, now_s, ttl_s))
    }

    /// Signs exactly `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_with_header(claims, |_| {})
    }

    /// Signs `claims` under this key's header as `edit` changes it (tests make tokens whose
    /// header the services must refuse).
    pub fn sign_with_header(&self, claims: &Claims, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        edit(&mut header);
        // Signing with a key that parsed as Ed25519 cannot fail for these claims.
        jsonwebtoken::encode(&header, claims, &self.key).expect("Ed25519 signing")
    }
}

/// One signer per principal kind, read from a generated key directory: what `roster up` and
/// the tests use to play every party.
#[derive(Debug, Clone)]
pub struct SignerSet {
    signers: HashMap<KeyScope, Arc<Signer>>,
}

impl SignerSet {
    pub fn load(keys: &KeyDir, scopes: &[KeyScope], audience: &str, issuer: &str) -> Result<Self, KeyError> {
        let signers = scopes
            .iter()
            .cloned()
            .map(|scope| {
                let signer = Signer::from_pem_file(&keys.private_key(&scope), audience, issuer)?;
                Ok((scope, Arc::new(signer)))
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(Self { signers })
    }

    /// Generates (or reuses) a key for each of `scopes` in `dir` and loads their signers.
    pub fn generate(dir: &Path, scopes: &[KeyScope], audience: &str, issuer: &str) -> Result<(KeyDir, Self), KeyError> {
        let keys = keys::generate_keys(dir, scopes)?;
        let signers = Self::load(&keys, scopes, audience, issuer)?;
        Ok((keys, signers))
    }

    /// The signer for `scope`; panics if the directory had no key for it (a set-up bug).
    pub fn signer(&self, scope: &KeyScope) -> Arc<Signer> {
        self.signers.get(scope).cloned().unwrap_or_else(|| panic!("no signing key for {}", scope.as_text()))
    }

    /// A token for `principal`, signed by the key bound to its kind.
    pub fn mint(&self, principal: &Principal, now_s: u64, ttl_s: u64) -> String {
        self.signer(&KeyScope::for_principal(principal)).mint(principal, now_s, ttl_s)
    }
}

/// The longest a token may be valid (`exp - iat`), by the kind of principal it names. A token
/// minted to last longer is refused whatever its signature says: a leaked long-lived token is
/// a standing key to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxLifetimes {
    pub users: Duration,
    pub operators: Duration,
    pub services: Duration,
}

impl Default for MaxLifetimes {
    /// A user's session and an operator's shift last at most a day (the demo's tokens do);
    /// services re-mint theirs every few minutes, so an hour is generous.
    fn default() -> Self {
        Self {
            users: Duration::from_secs(24 * 3_600),
            operators: Duration::from_secs(24 * 3_600),
            services: Duration::from_secs(3_600),
        }
    }
}

impl MaxLifetimes {
    /// Reads `users=24h,operators=8h,services=1h` (any of the three, humantime durations);
    /// kinds not named keep their default.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lifetimes = Self::default();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (kind, value) =
                part.split_once('=').ok_or_else(|| format!("{part:?} is not KIND=DURATION (e.g. users=24h)"))?;
            let duration = humantime::parse_duration(value.trim())
                .map_err(|e| format!("{kind}: {value:?} is not a duration: {e}"))?;
            if duration.is_zero() {
                return Err(format!("{kind}: the lifetime must be longer than zero"));
            }
            match kind.trim() {
                "users" => lifetimes.users = duration,
                "operators" => lifetimes.operators = duration,
                "services" => lifetimes.services = duration,
                other => return Err(format!("{other:?} is not a principal kind (users, operators, services)")),
            }
        }
        Ok(lifetimes)
    }

    pub fn of(&self, kind: PrincipalKind) -> Duration {
        match kind {
            PrincipalKind::User => self.users,
            PrincipalKind::Operator => self.operators,
            PrincipalKind::Service => self.services,
        }
    }
}

/// Verifies tokens against the trusted keys, each bound to what it may sign.
pub struct Verifier {
    keys: HashMap<String, TrustedKey>,
    validation: Validation,
    max_lifetimes: MaxLifetimes,
    /// Tokens verified before, by SHA-256 of the token, with the principal and `exp`. A client
    /// sends the same token on every call until it expires, and checking an Ed25519 signature
    /// costs more than the rest of a cheap call. Only tokens that passed every check (the key's
    /// binding to the principal included) are kept, each until its own `exp` at the latest; the
    /// trusted keys never change while the process runs, so a kept answer stays true.
    verified: moka::sync::Cache<[u8; 32], (Principal, u64)>,
}

/// Distinct verified tokens kept; a caller with more than this re-verifies some.
const VERIFIED_TOKENS_KEPT: u64 = 50_000;
/// The longest a verified token is kept, however far off its `exp`.
const VERIFIED_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(300);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.len()).finish()
    }
}

impl Verifier {
    /// Trusts the keys of a JWKS file (see [`keys`]); tokens must carry `issuer` and `audience`.
    pub fn from_jwks_file(path: &Path, audience: &str, issuer: &str) -> Result<Self, KeyError> {
        let keys = keys::load_jwks(path)?.into_iter().collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_S;
        let verified =
            moka::sync::Cache::builder().max_capacity(VERIFIED_TOKENS_KEPT).time_to_live(VERIFIED_TOKEN_TTL).build();
        Ok(Self { keys, validation, max_lifetimes: MaxLifetimes::default(), verified })
    }

    /// Refuses tokens valid for longer than `max_lifetimes` allows their principal's kind.
    pub fn with_max_lifetimes(self, max_lifetimes: MaxLifetimes) -> Self {
        Self { max_lifetimes, ..self }
    }

    /// Checks the key (`kid`), signature, issuer, audience and validity window, that the key
    /// may sign the principal named, and returns that principal.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_with_expiry(token).map(|(principal, _)| principal)
    }

    /// [`Verifier::verify`], with when the token expires.
    pub fn verify_with_expiry(&self, token: &str) -> Result<(Principal, TokenExpiry), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some((principal, exp)) = self.verified.get(&digest) {
            // Strictly before `exp`, without the leeway a fresh check allows: a kept answer
            // never outlives the token.
            if now_s() < exp {
                return Ok((principal, TokenExpiry(exp)));
            }
            self.verified.invalidate(&digest);
        }
        let (principal, exp) = self.verify_signed(token)?;
        self.verified.insert(digest, (principal.clone(), exp));
        Ok((principal, TokenExpiry(exp)))
    }

    /// The full check, returning the principal and the token's `exp`.
    fn verify_signed(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        use jsonwebtoken::errors::ErrorKind;

        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        // RFC 7515 4.1.11: a header naming extensions the recipient must understand is refused
        // when it does not; Roster understands none.
        if header.crit.is_some() {
            return Err(AuthError::CriticalHeader);
        }
        let trusted = header.kid.as_deref().and_then(|kid| self.keys.get(kid)).ok_or(AuthError::UnknownKey)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &trusted.key, &self.validation).map_err(|error| {
                match error.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidAudience => AuthError::WrongAudience,
                    ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                    _ => AuthError::Invalid,
                }
            })?;
        if data.claims.iat > now_s().saturating_add(LEEWAY_S) {
            return Err(AuthError::NotYetValid);
        }
        let exp = data.claims.exp;
        let lifetime = Duration::from_secs(exp.saturating_sub(data.claims.iat));
        if lifetime > self.max_lifetimes.of(data.claims.kind) {
            return Err(AuthError::LifetimeTooLong);
        }
        let principal = Principal::from_claims(data.claims)?;
        if !trusted.scope.permits(&principal) {
            return Err(AuthError::KeyNotForPrincipal);
        }
        Ok((principal, exp))
    }

    /// Reads `authorization: Bearer <token>` and verifies it.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<(Principal, TokenExpiry), AuthError> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
            return Err(AuthError::TooLarge);
        }
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token =
            value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthError::Malformed)?;
        self.verify_with_expiry(token.trim())
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
                let token = self.signer.mint(&self.principal, now_s(), Self::TTL_S);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{IDENTITY_SERVICE, LICENSING_SERVICE, generate_keys};

    const AUD: &str = "roster";
    const ISS: &str = "roster";

    struct Keys {
        _dir: tempfile::TempDir,
        signers: SignerSet,
        verifier: Verifier,
    }

    fn keys() -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = generate_keys(dir.path(), &KeyScope::all()).expect("keys");
        let signers = SignerSet::load(&files, &KeyScope::all(), AUD, ISS).expect("signers");
        let verifier = Verifier::from_jwks_file(&files.jwks(), AUD, ISS).expect("verifier");
        Keys { _dir: dir, signers, verifier }
    }

    fn user() -> Principal {
        Principal::User { user_id: "u1".into() }
    }
    fn operator() -> Principal {
        Principal::Operator { name: "support".into() }
    }
    fn service(name: &str) -> Principal {
        Principal::Service { name: name.into() }
    }

    #[test]
    fn each_principal_verifies_with_the_key_bound_to_it() {
        let k = keys();
        for who in [user(), operator(), service(IDENTITY_SERVICE), service(LICENSING_SERVICE)] {
            assert_eq!(k.verifier.verify(&k.signers.mint(&who, now_s(), 60)), Ok(who));
        }
    }

    #[test]
    fn no_key_mints_a_principal_it_is_not_bound_to() {
        let k = keys();
        let principals = [user(), operator(), service(IDENTITY_SERVICE), service(LICENSING_SERVICE)];
        for scope in KeyScope::all() {
            let signer = k.signers.signer(&scope);
            for who in &principals {
                let verdict = k.verifier.verify(&signer.mint(who, now_s(), 60));
                if scope.permits(who) {
                    assert_eq!(verdict.as_ref(), Ok(who));
                } else {
                    assert_eq!(verdict, Err(AuthError::KeyNotForPrincipal), "{} signing {who:?}", scope.as_text());
                }
            }
        }
        // A service key cannot sign for a service of another name either.
        let other =
            k.signers.signer(&KeyScope::Service(LICENSING_SERVICE.into())).mint(&service("billing"), now_s(), 60);
        assert_eq!(k.verifier.verify(&other), Err(AuthError::KeyNotForPrincipal));
    }

    /// What outlives a call (an event stream) ends with its token, so the expiry comes with the
    /// principal, fresh and from the cache alike.
    #[test]
    fn a_token_s_expiry_comes_with_its_principal() {
        let k = keys();
        let now = now_s();
        let token = k.signers.mint(&user(), now, 60);
        for _ in 0..2 {
            assert_eq!(k.verifier.verify_with_expiry(&token), Ok((user(), TokenExpiry(now + 60))));
        }
        assert!(TokenExpiry(now + 60).remaining() > Duration::from_secs(55));
        assert_eq!(TokenExpiry(now - 1).remaining(), Duration::ZERO);
    }

    #[test]
    fn verified_tokens_are_kept_refusals_are_not_and_nothing_is_kept_past_its_exp() {
        let k = keys();
        let token = k.signers.mint(&user(), now_s(), 60);
        assert_eq!(k.verifier.verify(&token), Ok(user()));
        assert_eq!(k.verifier.verify(&token), Ok(user()), "answered again from the cache");
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        assert!(k.verifier.verified.get(&digest).is_some_and(|(_, exp)| exp > now_s()));

        // A refusal is never kept: it is decided afresh each time.
        let wrong_key = k.signers.signer(&KeyScope::Operators).mint(&user(), now_s(), 60);
        for _ in 0..2 {
            assert_eq!(k.verifier.verify(&wrong_key), Err(AuthError::KeyNotForPrincipal));
        }
        let wrong_digest: [u8; 32] = sha2::Sha256::digest(wrong_key.as_bytes()).into();
        assert!(k.verifier.verified.get(&wrong_digest).is_none());

        // An entry whose `exp` has passed is not served: the token is checked again, and this
        // one (its signature broken) is refused.
        let broken = format!("{}x", &token[..token.len() - 1]);
        let broken_digest: [u8; 32] = sha2::Sha256::digest(broken.as_bytes()).into();
        k.verifier.verified.insert(broken_digest, (user(), now_s()));
        assert_eq!(k.verifier.verify(&broken), Err(AuthError::Invalid));
        assert!(k.verifier.verified.get(&broken_digest).is_none(), "the stale entry went");
    }

    #[test]
    fn window_issuer_audience_and_key_are_checked() {
        let k = keys();
        let signer = k.signers.signer(&KeyScope::Users);
        let now = now_s();
        let with = |change: &dyn Fn(&mut Claims)| {
            let mut claims = signer.claims(&user(), now, 60);
            change(&mut claims);
            k.verifier.verify(&signer.sign(&claims))
        };
        assert_eq!(with(&|_| {}), Ok(user()));
        assert_eq!(with(&|c| c.exp = now - 3_600), Err(AuthError::Expired));
        assert_eq!(with(&|c| c.nbf = now + 3_600), Err(AuthError::NotYetValid));
        assert_eq!(with(&|c| c.iat = now + 365 * 86_400), Err(AuthError::NotYetValid));
        // Within the leeway, a little skew is fine.
        assert_eq!(with(&|c| c.iat = now + 5), Ok(user()));
        assert_eq!(with(&|c| c.iss = "someone-else".into()), Err(AuthError::WrongIssuer));
        assert_eq!(with(&|c| c.aud = "other".into()), Err(AuthError::WrongAudience));
        assert_eq!(with(&|c| c.sub = String::new()), Err(AuthError::Invalid));

        // A key the services do not trust: its kid is unknown.
        let stranger = keys();
        assert_eq!(k.verifier.verify(&stranger.signers.mint(&user(), now, 60)), Err(AuthError::UnknownKey));
        // A trusted kid on a token signed by another key fails the signature.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.key_id().to_owned());
        let stranger_key = &stranger.signers.signer(&KeyScope::Users).key;
        let forged = jsonwebtoken::encode(&header, &signer.claims(&user(), now, 60), stranger_key).expect("sign");
        assert_eq!(k.verifier.verify(&forged), Err(AuthError::Invalid));
        assert_eq!(k.verifier.verify("not-a-token"), Err(AuthError::Invalid));
        assert_eq!(k.verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::TooLarge));
    }

    #[test]
    fn critical_headers_names_with_control_characters_and_long_lifetimes_are_refused() {
        let k = keys();
        let signer = k.signers.signer(&KeyScope::Users);
        let now = now_s();
        let signed =
            |header: Header, claims: &Claims| jsonwebtoken::encode(&header, claims, &signer.key).expect("sign");
        let header = || {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(signer.key_id().to_owned());
            header
        };
        // RFC 7515 4.1.11: an extension the service would have to understand.
        let mut critical = header();
        critical.crit = Some(vec!["exp".into()]);
        assert_eq!(
            k.verifier.verify(&signed(critical, &signer.claims(&user(), now, 60))),
            Err(AuthError::CriticalHeader)
        );
        // Names that would read differently from what they hold, or break a query.
        for sub in ["a\0b", "line\nbreak", "admin\u{202E}nimda", "x\u{2066}y"] {
            let claims = Claims { sub: sub.into(), ..signer.claims(&user(), now, 60) };
            assert_eq!(k.verifier.verify(&signed(header(), &claims)), Err(AuthError::SubjectInvalid), "{sub:?}");
        }
        // A day for users and operators, an hour for services, by default.
        let day = 24 * 3_600;
        assert_eq!(k.verifier.verify(&signer.mint(&user(), now, day)), Ok(user()));
        assert_eq!(k.verifier.verify(&signer.mint(&user(), now, day + 1)), Err(AuthError::LifetimeTooLong));
        assert_eq!(k.verifier.verify(&signer.mint(&user(), now, 100 * 365 * day)), Err(AuthError::LifetimeTooLong));
        let service_signer = k.signers.signer(&KeyScope::Service(IDENTITY_SERVICE.into()));
        let service = service(IDENTITY_SERVICE);
        assert_eq!(k.verifier.verify(&service_signer.mint(&service, now, 3_600)), Ok(service.clone()));
        assert_eq!(k.verifier.verify(&service_signer.mint(&service, now, 3_601)), Err(AuthError::LifetimeTooLong));
        // Configured shorter, a day-long user token no longer passes.
        let strict = Verifier::from_jwks_file(&k._dir.path().join("jwks.json"), AUD, ISS)
            .expect("verifier")
            .with_max_lifetimes(MaxLifetimes::parse("users=1h").expect("parse"));
        assert_eq!(strict.verify(&signer.mint(&user(), now, day)), Err(AuthError::LifetimeTooLong));
        assert_eq!(strict.verify(&signer.mint(&user(), now, 3_600)), Ok(user()));
    }

    #[test]
    fn lifetimes_parse_per_kind() {
        let parsed = MaxLifetimes::parse("users=8h, services=10m").expect("parse");
        assert_eq!(parsed.users, Duration::from_secs(8 * 3_600));
        assert_eq!(parsed.services, Duration::from_secs(600));
        assert_eq!(parsed.operators, MaxLifetimes::default().operators);
        assert_eq!(MaxLifetimes::parse("").expect("empty"), MaxLifetimes::default());
        for bad in ["users", "users=forever", "robots=1h", "users=0s"] {
            assert!(MaxLifetimes::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rotation_trusts_two_keys_for_one_principal_until_the_old_one_is_removed() {
        let old_dir = tempfile::tempdir().expect("tempdir");
        let new_dir = tempfile::tempdir().expect("tempdir");
        let old = generate_keys(old_dir.path(), &[KeyScope::Users]).expect("old");
        let new = generate_keys(new_dir.path(), &[KeyScope::Users]).expect("new");
        let old_signer = Signer::from_pem_file(&old.private_key(&KeyScope::Users), AUD, ISS).expect("old signer");
        let new_signer = Signer::from_pem_file(&new.private_key(&KeyScope::Users), AUD, ISS).expect("new signer");

        // During the rotation the file lists both keys.
        let both = |dir: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.join("jwks.json")).expect("read")).expect("json")
        };
        let mut set = both(old_dir.path());
        let new_keys = both(new_dir.path())["keys"].as_array().expect("keys").clone();
        set["keys"].as_array_mut().expect("keys").extend(new_keys);
        let rotation = old_dir.path().join("rotation.json");
        std::fs::write(&rotation, set.to_string()).expect("write");
        let during = Verifier::from_jwks_file(&rotation, AUD, ISS).expect("verifier");
        assert_eq!(during.verify(&old_signer.mint(&user(), now_s(), 60)), Ok(user()));
        assert_eq!(during.verify(&new_signer.mint(&user(), now_s(), 60)), Ok(user()));

        let after = Verifier::from_jwks_file(&new.jwks(), AUD, ISS).expect("verifier");
        assert_eq!(after.verify(&old_signer.mint(&user(), now_s(), 60)), Err(AuthError::UnknownKey));
        assert_eq!(after.verify(&new_signer.mint(&user(), now_s(), 60)), Ok(user()));
    }

    #[test]
    fn header_must_be_a_bearer_token() {
        let k = keys();
        let mut headers = http::HeaderMap::new();
        assert_eq!(k.verifier.authenticate(&headers), Err(AuthError::Missing));
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert_eq!(k.verifier.authenticate(&headers), Err(AuthError::Malformed));
    }
}
