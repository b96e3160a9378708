//! Tokens that must be refused, for the authorisation matrices: each is wrong in exactly one
//! way, so a matrix row shows which check holds.

use roster_platform::auth::{IDENTITY_SERVICE, KeyScope, LICENSING_SERVICE, Principal, SignerSet};

/// How a token is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    Expired,
    WrongAudience,
    /// Signed by a key the services do not know.
    UnknownKey,
    /// An operator token signed with the key trusted for users' sessions.
    UserKeyAsOperator,
    /// Identity's service token signed with the operators' key.
    OperatorKeyAsService,
    /// Identity's service token signed with licensing's own key.
    LicensingKeyAsIdentity,
    /// An operator whose name holds a NUL byte (once an INTERNAL answer on PostgreSQL).
    ControlCharacterInName,
    /// A user id with a right-to-left override, which would make audit records read falsely.
    BidiOverrideInName,
    /// A header listing a critical extension the services do not understand (RFC 7515 4.1.11).
    CriticalHeader,
    /// A user's token valid for a hundred years.
    CenturyLong,
}

impl Forgery {
    /// Every way a token can be wrong, for the matrices' unauthenticated rows.
    pub const ALL: [Self; 10] = [
        Self::Expired,
        Self::WrongAudience,
        Self::UnknownKey,
        Self::UserKeyAsOperator,
        Self::OperatorKeyAsService,
        Self::LicensingKeyAsIdentity,
        Self::ControlCharacterInName,
        Self::BidiOverrideInName,
        Self::CriticalHeader,
        Self::CenturyLong,
    ];

    /// The `ErrorInfo.reason` the services refuse it with.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Expired => "TOKEN_EXPIRED",
            Self::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            Self::UnknownKey => "TOKEN_KEY_UNKNOWN",
            Self::UserKeyAsOperator | Self::OperatorKeyAsService | Self::LicensingKeyAsIdentity => {
                "TOKEN_KEY_NOT_FOR_PRINCIPAL"
            }
            Self::ControlCharacterInName | Self::BidiOverrideInName => "TOKEN_SUBJECT_INVALID",
            Self::CriticalHeader => "TOKEN_CRITICAL_HEADER",
            Self::CenturyLong => "TOKEN_LIFETIME_TOO_LONG",
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
}

/// A token for `user_id` (or, for the cross-minting cases, the principal named above) that the
/// services trusting `signers`' keys must refuse as `UNAUTHENTICATED`.
pub fn forged(signers: &SignerSet, forgery: Forgery, user_id: &str) -> String {
    let user = Principal::User { user_id: user_id.to_owned() };
    let identity = Principal::Service { name: IDENTITY_SERVICE.to_owned() };
    let now = now_s();
    match forgery {
        Forgery::Expired => signers.mint(&user, now - 7_200, 60),
        Forgery::WrongAudience => {
            let signer = signers.signer(&KeyScope::Users);
            let mut claims = signer.claims(&user, now, 600);
            claims.aud = "some-other-service".to_owned();
            signer.sign(&claims)
        }
        Forgery::UnknownKey => {
            let dir = std::env::temp_dir().join(format!("roster-stranger-keys-{}", std::process::id()));
            let (_, stranger) = SignerSet::generate(&dir, &KeyScope::all(), "roster", "roster").expect("stranger keys");
            stranger.mint(&user, now, 600)
        }
        Forgery::UserKeyAsOperator => {
            signers.signer(&KeyScope::Users).mint(&Principal::Operator { name: "support".into() }, now, 600)
        }
        Forgery::OperatorKeyAsService => signers.signer(&KeyScope::Operators).mint(&identity, now, 600),
        Forgery::LicensingKeyAsIdentity => {
            signers.signer(&KeyScope::Service(LICENSING_SERVICE.to_owned())).mint(&identity, now, 600)
        }
        Forgery::ControlCharacterInName => signers.mint(&Principal::Operator { name: "sup\0port".into() }, now, 600),
        Forgery::BidiOverrideInName => {
            signers.mint(&Principal::User { user_id: format!("{user_id}\u{202E}") }, now, 600)
        }
        Forgery::CriticalHeader => {
            let signer = signers.signer(&KeyScope::Users);
            signer.sign_with_header(&signer.claims(&user, now, 600), |header| header.crit = Some(vec!["exp".into()]))
        }
        Forgery::CenturyLong => signers.mint(&user, now, 100 * 365 * 86_400),
    }
}
