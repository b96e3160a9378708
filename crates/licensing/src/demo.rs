//! Demo data for `roster up --demo`: seats, assignments, phone numbers, licensed data and a
//! paid individual subscription, written straight to licensing's own database (the demo's
//! users come from identity's demo seed).

use crate::domain::model::{
    Assignment, ContentItem, ContentKind, Currency, Id, Invoice, LicenseType, PaymentMethod, PhoneNumber, Subscription,
    SubscriptionStatus,
};
use crate::store::{self, Tx, lock_account};

/// The identity demo's people, by role.
#[derive(Debug, Clone)]
pub struct DemoPeople {
    pub account: String,
    pub owner: String,
    pub admin: String,
    pub member: String,
    /// A freelancer with a licensed seat, a recording and a PMI meeting, for the unlink demo.
    pub contractor: Option<String>,
    /// An individual account (another tenant) whose only user pays for a subscription.
    pub solo_account: String,
    /// Two E.164 numbers for the account: the first goes to the owner, the second stays free.
    pub phone_numbers: [String; 2],
}

/// What the seed created, for the banner.
#[derive(Debug, Clone)]
pub struct DemoLicensing {
    pub subscription_id: String,
    pub phone_number: String,
}

const DAY_MS: i64 = 86_400_000;

/// Seeds once; a second call on the same database changes nothing.
pub async fn seed(
    db: &roster_platform::db::Database,
    people: &DemoPeople,
    now_ms: i64,
) -> Result<DemoLicensing, sqlx::Error> {
    let account = Id::from_stored(people.account.clone());
    let solo = Id::from_stored(people.solo_account.clone());
    let mut tx = db.begin().await?;
    lock_account(&mut tx, &account).await?;
    if let Some(existing) = store::billing::subscriptions(&mut tx, &solo).await?.first() {
        let phone = store::phones::list(&mut tx, &account).await?.first().map(|l| l.number.as_str().to_owned());
        tx.rollback().await?;
        return Ok(DemoLicensing { subscription_id: existing.id.to_string(), phone_number: phone.unwrap_or_default() });
    }
    for (license_type, capacity) in [
        (LicenseType::Licensed, 3 + u32::from(people.contractor.is_some())),
        (LicenseType::Webinar, 1),
        (LicenseType::LargeMeeting, 0),
        (LicenseType::Phone, 2),
        (LicenseType::Rooms, 0),
    ] {
        store::seats::set_capacity(&mut tx, &account, license_type, capacity, now_ms).await?;
    }
    let owner = Id::from_stored(people.owner.clone());
    let admin = Id::from_stored(people.admin.clone());
    let member = Id::from_stored(people.member.clone());
    let contractor = people.contractor.clone().map(Id::from_stored);
    let freelance_seat = contractor.iter().map(|c| (c, LicenseType::Licensed));
    for (user, license_type) in [
        (&owner, LicenseType::Licensed),
        (&owner, LicenseType::Phone),
        (&admin, LicenseType::Licensed),
        (&admin, LicenseType::Webinar),
        (&member, LicenseType::Licensed),
    ]
    .into_iter()
    .chain(freelance_seat)
    {
        let assignment =
            Assignment { account_id: account.clone(), user_id: user.clone(), license_type, assigned_at_ms: now_ms };
        store::seats::assign(&mut tx, &assignment).await?;
    }
    let [attached, free] = &people.phone_numbers;
    let phone = PhoneNumber::from_stored(attached.clone());
    store::phones::add(&mut tx, &account, &phone, now_ms).await?;
    store::phones::set_user(&mut tx, &account, &phone, Some(&owner)).await?;
    store::phones::add(&mut tx, &account, &PhoneNumber::from_stored(free.clone()), now_ms).await?;
    let freelance_content = contractor.iter().flat_map(|c| {
        [(c, ContentKind::Recording, "Design review recording", false), (c, ContentKind::Meeting, "Iris's room", true)]
    });
    for (owner_id, kind, title, uses_pmi) in [
        (&member, ContentKind::Meeting, "Weekly sync", false),
        (&member, ContentKind::Meeting, "Personal room", true),
        (&member, ContentKind::Event, "Customer day", false),
        (&member, ContentKind::Recording, "Sprint review recording", false),
        (&admin, ContentKind::Webinar, "Product launch webinar", false),
    ]
    .into_iter()
    .chain(freelance_content)
    {
        let item = ContentItem {
            id: Id::generate(),
            account_id: account.clone(),
            owner_user_id: owner_id.clone(),
            kind,
            title: title.to_owned(),
            uses_pmi,
            created_at_ms: now_ms,
        };
        store::content::insert(&mut tx, &item).await?;
    }
    let subscription = seed_subscription(&mut tx, &solo, now_ms).await?;
    tx.commit().await?;
    Ok(DemoLicensing { subscription_id: subscription.to_string(), phone_number: phone.as_str().to_owned() })
}

/// A monthly plan of EUR 14.99, started ten days ago, with its invoice and a card on file.
async fn seed_subscription(tx: &mut Tx, account: &Id, now_ms: i64) -> Result<Id, sqlx::Error> {
    lock_account(tx, account).await?;
    let subscription = Subscription {
        id: Id::generate(),
        account_id: account.clone(),
        plan_name: "Pro monthly (individual)".to_owned(),
        price_minor: 1_499,
        currency: Currency::from_stored("EUR".to_owned()),
        period_start_ms: now_ms - 10 * DAY_MS,
        period_end_ms: now_ms + 20 * DAY_MS,
        status: SubscriptionStatus::Active,
        ended_at_ms: None,
    };
    store::billing::insert_subscription(tx, &subscription, now_ms).await?;
    let invoice = Invoice {
        id: Id::generate(),
        account_id: account.clone(),
        subscription_id: subscription.id.clone(),
        amount_minor: subscription.price_minor,
        currency: subscription.currency.clone(),
        issued_at_ms: subscription.period_start_ms,
    };
    store::billing::insert_invoice(tx, &invoice).await?;
    let card = PaymentMethod { brand: "visa".into(), last4: "4242".into(), expiry_month: 12, expiry_year: 2029 };
    store::billing::set_payment_method(tx, account, &card).await?;
    Ok(subscription.id)
}
