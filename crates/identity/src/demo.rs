//! The demo account `roster up --demo` seeds, through the same use cases the API runs: an
//! owner, two admins, two members, an authorised integration and one pending invitation, plus
//! an individual account whose owner is invited to join Acme (the refund path, SPEC R27-R28).

use futures_util::future::BoxFuture;
use roster_platform::auth::Principal;
use roster_platform::clock::SharedClock;
use roster_platform::db::{Database, Tx};
use serde::{Deserialize, Serialize};

use crate::app::{accounts, invitations, roles};
use crate::domain::DomainError;
use crate::domain::model::{Plan, Role};
use crate::domain::values::{AccountId, Domain, Email, UserId};
use crate::effects::{self, Ctx};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DemoUser {
    pub id: String,
    pub email: String,
}

/// What was seeded; `roster up` prints it and keeps it in the data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Demo {
    pub account_id: String,
    pub owner: DemoUser,
    pub admins: Vec<DemoUser>,
    pub members: Vec<DemoUser>,
    pub invitee: DemoUser,
    pub invitation_id: String,
    pub invitation_code: String,
    pub solo: SoloDemo,
    /// A freelancer outside the managed domain, so the demo can unlink them (`roster up`
    /// adds them; test worlds do without).
    #[serde(default)]
    pub contractor: Option<DemoUser>,
}

/// An individual (one-user) account whose owner has a pending invitation to the demo account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SoloDemo {
    pub account_id: String,
    pub owner: DemoUser,
    pub invitation_code: String,
}

async fn step<T, F>(db: &Database, ctx: &Ctx, op: F) -> effects::Result<T>
where
    F: for<'t> FnOnce(&'t mut Tx, &'t Ctx) -> BoxFuture<'t, effects::Result<T>>,
{
    let mut tx = db.begin().await?;
    let value = op(&mut tx, ctx).await?;
    tx.commit().await?;
    Ok(value)
}

fn email(text: &str) -> Email {
    Email::parse(text).expect("demo e-mails are valid")
}

fn as_user(clock: &SharedClock, id: &UserId, request: &str) -> Ctx {
    Ctx {
        principal: Principal::User { user_id: id.to_string() },
        request_id: request.to_owned(),
        now_ms: clock.now_ms(),
        operation_id: String::new(),
    }
}

fn demo_user(id: &UserId, email: &str) -> DemoUser {
    DemoUser { id: id.to_string(), email: email.to_owned() }
}

/// Invites `address` as the owner and accepts as the invitee; returns the new user's id.
/// Public so other crates' tests can build accounts the way the demo does.
pub async fn join(
    db: &Database,
    clock: &SharedClock,
    account: &AccountId,
    owner: &UserId,
    address: &str,
) -> effects::Result<UserId> {
    let new = invitations::NewInvitation {
        email: email(address),
        display_name: String::new(),
        role: Role::Member,
        external: false,
    };
    let target = account.clone();
    let sent = step(db, &as_user(clock, owner, "demo-invite"), move |tx, ctx| {
        Box::pin(async move { invitations::invite(tx, ctx, &target, new, |_, _| ()).await.map(|(sent, ())| sent) })
    })
    .await?;
    // A new person accepting runs no remote step, so the demo applies the accept saga's
    // local step directly (seeding runs before any worker).
    let invitee = sent.invitation.user_id.clone();
    let (joined, invitation, target) = (invitee.clone(), sent.invitation.id.clone(), account.clone());
    step(db, &as_user(clock, &invitee, "demo-accept"), move |tx, ctx| {
        Box::pin(async move { effects::invitations::join(tx, ctx, &target, &invitation, &joined).await })
    })
    .await?;
    Ok(invitee)
}

/// The demo with its usual addresses (`acme.example`, `solo.example`), and Iris, a
/// freelancer at `freelance.example` whom the walkthrough unlinks.
/// Whether `demo`'s account exists in `db`: a saved demo seeded into another database (SQLite
/// before a switch to PostgreSQL, say) is not, and is seeded again.
pub async fn is_seeded_in(db: &Database, demo: &Demo) -> effects::Result<bool> {
    let Ok(account) = AccountId::parse(&demo.account_id) else { return Ok(false) };
    let mut tx = db.begin().await?;
    let found = crate::store::accounts::get(&mut tx, &account).await?.is_some();
    tx.rollback().await?;
    Ok(found)
}

/// Someone in the demo as the database has them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub id: String,
    /// `owner`, `admin`, `member` or `custom`.
    pub role: &'static str,
    /// `pending`, `active` or `deactivated`.
    pub status: &'static str,
}

/// Who is in the demo's account now, the owner first, and the solo owner while they still
/// own their own account: the walkthrough moves ownership, invites, unlinks and deletes, so a
/// restarted `roster up --demo` prints this rather than what was first seeded.
pub async fn people_now(db: &Database, demo: &Demo) -> effects::Result<(Vec<Person>, Option<Person>)> {
    use roster_platform::stored_text::StoredText;
    let account = AccountId::parse(&demo.account_id).map_err(|_| DomainError::AccountNotFound)?;
    let mut conn = db.reader().await?;
    let filter = crate::store::users::ListFilter::default();
    let users = crate::store::users::list(&mut conn, &account, &filter, None, 1_000).await?;
    let person = |user: &crate::domain::model::User| Person {
        email: user.email.as_str().to_owned(),
        id: user.id.as_str().to_owned(),
        role: user.role.kind_str(),
        status: user.status.as_str(),
    };
    let rank = |role: &str| ["owner", "admin", "member", "custom"].iter().position(|r| *r == role);
    let mut people: Vec<Person> = users.iter().map(person).collect();
    people.sort_by_key(|p| (rank(p.role), p.email.clone()));
    let solo_id = UserId::parse(&demo.solo.owner.id).map_err(|_| DomainError::UserNotFound)?;
    let solo = crate::store::users::get(&mut conn, &solo_id)
        .await?
        .filter(|user| user.account_id.as_str() == demo.solo.account_id)
        .map(|user| person(&user));
    Ok((people, solo))
}

pub async fn seed(db: &Database, clock: &SharedClock) -> effects::Result<Demo> {
    let mut demo = seed_with_domains(db, clock, "acme.example", "solo.example").await?;
    let account = AccountId::parse(&demo.account_id).map_err(|_| DomainError::AccountNotFound)?;
    let owner = UserId::parse(&demo.owner.id).map_err(|_| DomainError::UserNotFound)?;
    let iris = "iris@freelance.example";
    let id = join(db, clock, &account, &owner, iris).await?;
    demo.contractor = Some(demo_user(&id, iris));
    Ok(demo)
}

/// The demo with the given e-mail domains, so tests can seed many demo accounts in one
/// database.
pub async fn seed_with_domains(db: &Database, clock: &SharedClock, acme: &str, solo: &str) -> effects::Result<Demo> {
    let at = |name: &str| format!("{name}@{acme}");
    let operator = Ctx {
        principal: Principal::Operator { name: "demo".into() },
        request_id: "demo".into(),
        now_ms: clock.now_ms(),
        operation_id: String::new(),
    };
    let new = accounts::NewAccount {
        name: "Acme Inc".into(),
        plan: Plan::Pro,
        csm_eligible: false,
        owner_email: email(&at("alice")),
        owner_display_name: "Alice Owner".into(),
        managed_domains: vec![Domain::parse(acme).expect("valid domain")],
    };
    let created =
        step(db, &operator, move |tx, ctx| Box::pin(async move { accounts::create(tx, ctx, new).await })).await?;
    let account = created.account.id.clone();
    let owner = created.owner.expect("a new account has its owner").id;

    let mut admins = Vec::new();
    for address in [at("bob"), at("grace")] {
        let admin = join(db, clock, &account, &owner, &address).await?;
        let (target, promoted) = (account.clone(), admin.clone());
        step(db, &as_user(clock, &owner, "demo-promote"), move |tx, ctx| {
            Box::pin(async move { roles::assign(tx, ctx, &target, &promoted, Role::Admin).await })
        })
        .await?;
        admins.push(demo_user(&admin, &address));
    }
    let carol = join(db, clock, &account, &owner, &at("carol")).await?;
    let dave = join(db, clock, &account, &owner, &at("dave")).await?;

    let target = account.clone();
    step(db, &as_user(clock, &owner, "demo-integration"), move |tx, ctx| {
        Box::pin(async move { accounts::authorize_integration(tx, ctx, &target, "Calendar sync".into()).await })
    })
    .await?;

    let new = invitations::NewInvitation {
        email: email(&at("erin")),
        display_name: "Erin".into(),
        role: Role::Member,
        external: false,
    };
    let target = account.clone();
    let pending = step(db, &as_user(clock, &owner, "demo-invite-erin"), move |tx, ctx| {
        Box::pin(async move { invitations::invite(tx, ctx, &target, new, |_, _| ()).await.map(|(sent, ())| sent) })
    })
    .await?;

    let solo = seed_solo(db, clock, &operator, &account, &owner, &format!("sam@{solo}")).await?;
    Ok(Demo {
        account_id: account.to_string(),
        owner: demo_user(&owner, &at("alice")),
        admins,
        members: vec![demo_user(&carol, &at("carol")), demo_user(&dave, &at("dave"))],
        invitee: demo_user(&pending.invitation.user_id, &at("erin")),
        invitation_id: pending.invitation.id.to_string(),
        invitation_code: pending.code,
        solo,
        contractor: None,
    })
}

/// Sam's own basic account, and Acme's invitation to him.
async fn seed_solo(
    db: &Database,
    clock: &SharedClock,
    operator: &Ctx,
    acme: &AccountId,
    acme_owner: &UserId,
    address: &str,
) -> effects::Result<SoloDemo> {
    let new = accounts::NewAccount {
        name: "Sam Solo".into(),
        plan: Plan::Basic,
        csm_eligible: false,
        owner_email: email(address),
        owner_display_name: "Sam".into(),
        managed_domains: Vec::new(),
    };
    let created =
        step(db, operator, move |tx, ctx| Box::pin(async move { accounts::create(tx, ctx, new).await })).await?;
    let sam = created.owner.expect("a new account has its owner").id;
    let new = invitations::NewInvitation {
        email: email(address),
        display_name: "Sam".into(),
        role: Role::Member,
        external: false,
    };
    let target = acme.clone();
    let invited = step(db, &as_user(clock, acme_owner, "demo-invite-sam"), move |tx, ctx| {
        Box::pin(async move { invitations::invite(tx, ctx, &target, new, |_, _| ()).await.map(|(sent, ())| sent) })
    })
    .await?;
    Ok(SoloDemo {
        account_id: created.account.id.to_string(),
        owner: demo_user(&sam, address),
        invitation_code: invited.code,
    })
}
