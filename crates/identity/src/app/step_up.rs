//! Step-up verification (SPEC R10): a one-time code e-mailed to the caller's primary address
//! becomes a proof valid for 5 minutes, spent once, for one user, account and purpose.

use rand::Rng;
use roster_platform::stored_text::StoredText;
use serde_json::json;

use super::secrets::{PROOF_BYTES, digest, new_secret};
use crate::domain::DomainError;
use crate::domain::model::StepUpPurpose;
use crate::domain::privileges::Actor;
use crate::domain::step_up::{CODE_TTL_MS, MAX_WRONG_CODES, PROOF_TTL_MS, after_wrong_code};
use crate::domain::values::{AccountId, ChallengeId};
use crate::effects::{Ctx, Result, audit, lock_and_load_caller};
use crate::notify::human_time;
use crate::store::step_up::{self as store, NewChallenge};
use crate::store::{Conn, outbox};

/// A code on its way to the caller.
#[derive(Debug, Clone)]
pub struct ChallengeSent {
    pub id: ChallengeId,
    pub purpose: StepUpPurpose,
    pub expires_at_ms: i64,
}

/// A verified code's proof; only its hash is stored.
#[derive(Debug, Clone)]
pub struct Proof {
    pub proof: String,
    pub purpose: StepUpPurpose,
    pub expires_at_ms: i64,
}

/// What checking a code came to. A wrong code is a refusal whose count must still commit,
/// so it is an answer here, not an error that rolls the transaction back.
#[derive(Debug, Clone)]
pub enum Verification {
    Verified(Proof),
    Refused(DomainError),
}

async fn refuse_if_locked(tx: &mut Conn, actor: &Actor, now_ms: i64) -> Result<i64> {
    let (wrong_codes, locked_until_ms) = store::lock_state(tx, &actor.user.id).await?;
    if locked_until_ms > now_ms {
        return Err(DomainError::StepUpLocked { until_ms: locked_until_ms }.into());
    }
    Ok(wrong_codes)
}

/// E-mails a fresh six-digit code to the caller's primary address.
pub async fn start(tx: &mut Conn, ctx: &Ctx, account: &AccountId, purpose: StepUpPurpose) -> Result<ChallengeSent> {
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let actor = caller.acting_user()?;
    refuse_if_locked(tx, actor, ctx.now_ms).await?;
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000));
    let sent = ChallengeSent { id: ChallengeId::generate(), purpose, expires_at_ms: ctx.now_ms + CODE_TTL_MS };
    let new = NewChallenge {
        id: &sent.id,
        user_id: &actor.user.id,
        account_id: account,
        purpose,
        code_hash: &digest(&code),
        expires_at_ms: sent.expires_at_ms,
    };
    store::insert_challenge(tx, &new, ctx.now_ms).await?;
    let email = outbox::Email {
        account_id: Some(account.clone()),
        kind: "step_up_code",
        recipient: actor.user.email.to_string(),
        subject: "Your Roster verification code".to_owned(),
        body: format!(
            "Your verification code is {code}.\n\nIt confirms that you want to {}, and works until {}.\n\
             If you did not ask for it, you can ignore this e-mail.",
            purpose.as_str().replace('_', " "),
            human_time(sent.expires_at_ms),
        ),
    };
    outbox::enqueue(tx, &email, ctx.now_ms).await?;
    let details = json!({"challenge_id": sent.id.as_str(), "purpose": purpose.as_str()});
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::STEP_UP_STARTED,
        crate::effects::user_target(&actor.user.id),
        details,
    )
    .await?;
    Ok(sent)
}

/// Checks a code. Right: the challenge is used up and a proof is minted. Wrong: the count of
/// wrong codes in a row goes up (the fifth locks step-up for 15 minutes), and the caller must
/// commit that before refusing.
pub async fn verify(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &AccountId,
    challenge: &ChallengeId,
    code: &str,
) -> Result<Verification> {
    // The account lock also serialises two guesses of one user, so none goes uncounted.
    let caller = lock_and_load_caller(tx, ctx, account).await?;
    let actor = caller.acting_user()?;
    let wrong_codes = refuse_if_locked(tx, actor, ctx.now_ms).await?;
    let challenge = store::usable_challenge(tx, challenge, &actor.user.id, ctx.now_ms)
        .await?
        .filter(|c| c.account_id == *account)
        .ok_or(DomainError::StepUpChallengeNotFound)?;
    if digest(code) != challenge.code_hash {
        let (wrong, lock) = after_wrong_code(wrong_codes, ctx.now_ms);
        store::set_lock_state(tx, &actor.user.id, wrong, lock.unwrap_or(0)).await?;
        let refusal = match lock {
            Some(until_ms) => DomainError::StepUpLocked { until_ms },
            None => DomainError::StepUpCodeWrong { attempts_left: u32::try_from(MAX_WRONG_CODES - wrong).unwrap_or(0) },
        };
        return Ok(Verification::Refused(refusal));
    }
    let purpose = StepUpPurpose::from_str_opt(&challenge.purpose)
        .ok_or_else(|| crate::effects::Error::Internal(format!("unknown step-up purpose {:?}", challenge.purpose)))?;
    store::use_challenge(tx, &challenge.id, ctx.now_ms).await?;
    store::set_lock_state(tx, &actor.user.id, 0, 0).await?;
    let (secret, stored) = new_secret(PROOF_BYTES);
    let proof = Proof { proof: secret, purpose, expires_at_ms: ctx.now_ms + PROOF_TTL_MS };
    store::insert_proof(tx, &stored, &challenge, proof.expires_at_ms, ctx.now_ms).await?;
    let details = json!({"challenge_id": challenge.id.as_str(), "purpose": purpose.as_str()});
    audit(
        tx,
        ctx,
        Some(account),
        crate::effects::actions::STEP_UP_VERIFIED,
        crate::effects::user_target(&actor.user.id),
        details,
    )
    .await?;
    Ok(Verification::Verified(proof))
}

/// Spends the caller's proof for `purpose`; anything but a fresh, unused proof of this user
/// for this account and purpose is `STEP_UP_REQUIRED`.
pub async fn spend(
    tx: &mut Conn,
    ctx: &Ctx,
    actor: &Actor,
    account: &AccountId,
    purpose: StepUpPurpose,
    proof: &str,
) -> Result<()> {
    if proof.is_empty() || !store::spend_proof(tx, &digest(proof), &actor.user.id, account, purpose, ctx.now_ms).await?
    {
        return Err(DomainError::StepUpRequired.into());
    }
    Ok(())
}
