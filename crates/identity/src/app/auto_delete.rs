//! The auto-delete sweep (SPEC R20): every deactivated user of an account that has "delete
//! deactivated users after N days" on is deleted by the delete saga when their day comes,
//! audited as identity's own doing; with notices on, the account's user managers (who see the
//! setting) are e-mailed a week before. Reactivating the user, or turning the setting off,
//! takes them out of the sweep. A deletion already under way when that happens completes.
//!
//! Safe on several replicas: the notice and the start of the deletion are each one guarded
//! update per deactivation, so each happens once. A deletion that fails (licensing refused a
//! step, say) is not started again: its failed operation is an operator's to retry or resolve.

use std::time::Duration;

use roster_platform::auth::{IDENTITY_SERVICE, Principal};
use roster_platform::clock::SharedClock;
use roster_platform::db::Database;
use roster_workflow::Engine;
use serde_json::json;
use tokio::sync::watch;

use crate::domain::auto_delete::{deletion_due, notice_due};
use crate::effects::{Ctx, Error, audit, user_target};
use crate::notify::human_time;
use crate::store::auto_delete::{self as store, Candidate, Once};
use crate::store::{Conn, outbox};

/// Users one pass looks at; the rest wait for the next.
const BATCH: i64 = 200;

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub notices: u64,
    pub deletions_started: u64,
}

impl roster_platform::periodic::PassReport for Swept {
    fn log(&self, task: &'static str) {
        let Self { notices, deletions_started } = *self;
        tracing::info!(task, notices, deletions_started, "maintenance pass done");
    }
}

fn system(now_ms: i64, request_id: String) -> Ctx {
    Ctx {
        principal: Principal::Service { name: IDENTITY_SERVICE.into() },
        request_id,
        now_ms,
        operation_id: String::new(),
    }
}

/// One pass at `now_ms`.
pub async fn sweep(db: &Database, engine: &Engine, now_ms: i64) -> Result<Swept, sqlx::Error> {
    let mut conn = db.reader().await?;
    let due = store::due(&mut conn, now_ms, BATCH).await?;
    drop(conn);
    let mut swept = Swept::default();
    for candidate in due {
        let deletion = deletion_due(candidate.deactivated_at_ms, candidate.days, candidate.changed_at_ms);
        let mut tx = db.begin().await?;
        let done = if now_ms >= deletion {
            start_deletion(&mut tx, engine, &candidate, now_ms).await.map(|started| (0, u64::from(started)))
        } else if candidate.notify
            && candidate.noticed_for_ms != Some(candidate.deactivated_at_ms)
            && now_ms >= notice_due(deletion)
        {
            notice(&mut tx, &candidate, deletion, now_ms).await.map(|sent| (u64::from(sent), 0))
        } else {
            Ok((0, 0))
        };
        match done {
            Ok((notices, deletions)) => {
                tx.commit().await?;
                swept.notices += notices;
                swept.deletions_started += deletions;
            }
            Err(Error::Db(error)) => return Err(error),
            Err(other) => tracing::warn!(user = %candidate.user_id, error = %other, "auto-delete skipped a user"),
        }
    }
    if swept.deletions_started > 0 {
        engine.wake();
    }
    Ok(swept)
}

/// Starts the delete saga, once, for a user still deactivated since the same instant; false
/// if it was started already (another replica's sweep) or another saga works on them.
async fn start_deletion(tx: &mut Conn, engine: &Engine, user: &Candidate, now_ms: i64) -> crate::effects::Result<bool> {
    let ctx = system(now_ms, format!("auto-delete:{}:{}", user.user_id, user.deactivated_at_ms));
    if !crate::store::accounts::lock(tx, &user.account_id).await?
        || !store::mark(tx, Once::Started, &user.user_id, user.deactivated_at_ms).await?
    {
        return Ok(false);
    }
    // Another saga on the user (a reactivation under way) refuses the start; the refusal rolls
    // the mark back, and the next pass looks again.
    let operation = super::users::start_auto_delete(tx, &ctx, engine, &user.account_id, &user.user_id).await?;
    let details =
        json!({"operation": operation.id, "deactivated_at_ms": user.deactivated_at_ms, "after_days": user.days});
    audit(
        tx,
        &ctx,
        Some(&user.account_id),
        crate::effects::actions::USER_AUTO_DELETE_STARTED,
        user_target(&user.user_id),
        details,
    )
    .await?;
    Ok(true)
}

/// E-mails the account's user managers that `user` will be deleted at `deletion_ms`.
async fn notice(tx: &mut Conn, user: &Candidate, deletion_ms: i64, now_ms: i64) -> crate::effects::Result<bool> {
    let ctx = system(now_ms, format!("auto-delete-notice:{}:{}", user.user_id, user.deactivated_at_ms));
    if !crate::store::accounts::lock(tx, &user.account_id).await?
        || !store::mark(tx, Once::Noticed, &user.user_id, user.deactivated_at_ms).await?
    {
        return Ok(false);
    }
    let body = format!(
        "{} was deactivated on {} and will be deleted with their data on {}, as this account's setting \
         \"delete deactivated users after {} days\" says. Reactivate them before then to keep them, or turn \
         the setting off.",
        user.email,
        human_time(user.deactivated_at_ms),
        human_time(deletion_ms),
        user.days,
    );
    let managers = store::user_managers(tx, &user.account_id).await?;
    for recipient in &managers {
        let email = outbox::Email {
            account_id: Some(user.account_id.clone()),
            kind: "auto_delete_notice",
            recipient: recipient.clone(),
            subject: format!("{} will be deleted in 7 days", user.email),
            body: body.clone(),
        };
        outbox::enqueue(tx, &email, now_ms).await?;
    }
    let details = json!({"deletion_at_ms": deletion_ms, "told": managers.len()});
    audit(
        tx,
        &ctx,
        Some(&user.account_id),
        crate::effects::actions::USER_AUTO_DELETE_NOTICE,
        user_target(&user.user_id),
        details,
    )
    .await?;
    Ok(true)
}

/// Sweeps every `every` until `stop` turns true.
pub async fn run(db: Database, clock: SharedClock, engine: Engine, every: Duration, stop: watch::Receiver<bool>) {
    roster_platform::periodic::every("auto-delete", every, stop, || sweep(&db, &engine, clock.now_ms())).await;
}
