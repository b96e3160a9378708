//! `roster up`: the whole system on one machine with no set-up: identity and licensing, each
//! on its own port with its own embedded SQLite database, talking over real gRPC; dev keys
//! generated into the data directory, e-mails written as files. `--demo` seeds both services
//! once (kept in `demo.json`) and writes fresh tokens to `demo.env` on every start.

use roster_platform::config::{MetricsArgs, TelemetryArgs};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use roster_identity::IdentityArgs;
use roster_identity::demo::{self, Demo};
use roster_identity::dev_clock::KeptClock;
use roster_licensing::LicensingArgs;
use roster_licensing::demo::{DemoLicensing, DemoPeople};
use roster_platform::auth::{
    IDENTITY_SERVICE, KeyScope, LICENSING_SERVICE, Principal, SignerSet, Verifier, generate_keys,
};
use roster_platform::config::{ClaimArgs, ConfigError, LimitArgs, PoolArgs};
use roster_platform::pagination::PageTokens;
use roster_platform::server::shutdown_signal;

use super::serve::{Trust, identity_settings, licensing_settings};
use super::token::now_seconds;
use super::{Failure, runtime};

const DEMO_TOKEN_TTL_S: u64 = 24 * 3_600;
/// The seeded demo's ids, kept in the data directory.
const DEMO_FILE: &str = "demo.json";
/// The manual clock's lead, kept in the data directory.
const CLOCK_FILE: &str = "clock-ahead-ms";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Seed a demo account and print tokens and ready-to-paste grpcurl commands.
    #[arg(long)]
    demo: bool,
    /// Empty both databases (every row; the schema stays) and seed the demo afresh. The way to
    /// start the walkthrough over on PostgreSQL, where deleting the data directory resets
    /// nothing; on SQLite it does what `rm -rf .roster` does.
    #[arg(long, requires = "demo")]
    reset: bool,
    /// Development only: the clock can be moved ahead with
    /// `roster.dev.v1.ClockService/AdvanceTime` on identity's port (it runs as usual
    /// otherwise, and keeps its lead across restarts in `clock-ahead-ms`), so reminders and
    /// the 168-hour deadline of an ownership request can be watched in seconds.
    #[arg(long)]
    manual_clock: bool,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Address the licensing gRPC server listens on.
    #[arg(long = "licensing-listen", env = "ROSTER_LICENSING_LISTEN", default_value = "127.0.0.1:50052")]
    licensing_listen: std::net::SocketAddr,
    /// Licensing's database; SQLite in the data directory when unset.
    #[arg(long = "licensing-database-url", env = "ROSTER_LICENSING_DATABASE_URL")]
    licensing_database_url: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    pool: PoolArgs,
}

pub async fn run(data_dir: &Path, args: UpArgs) -> Result<(), Failure> {
    if args.reset {
        // What the last demo left: its ids and the manual clock's lead.
        for file in [DEMO_FILE, CLOCK_FILE] {
            match std::fs::remove_file(data_dir.join(file)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(runtime(error)),
                _ => {}
            }
        }
    }
    // One key per kind of principal, as in production, so the dev set-up exercises the binding.
    let claims = ClaimArgs::default();
    let keys = generate_keys(&super::keys::default_dir(data_dir), &KeyScope::all())
        .map_err(|e| ConfigError::new("ROSTER_DATA_DIR", e.to_string()))?;
    let verifier = Arc::new(
        Verifier::from_jwks_file(&keys.jwks(), &claims.jwt_audience, &claims.jwt_issuer)
            .map_err(|e| ConfigError::new("ROSTER_DATA_DIR", e.to_string()))?,
    );
    let signers =
        SignerSet::load(&keys, &KeyScope::all(), &claims.jwt_audience, &claims.jwt_issuer).map_err(runtime)?;
    let identity_signer = signers.signer(&KeyScope::Service(IDENTITY_SERVICE.to_owned()));
    let licensing_signer = signers.signer(&KeyScope::Service(LICENSING_SERVICE.to_owned()));
    let pages = PageTokens::from_file(&keys.page_token_keys()).map_err(|e| ConfigError::new("ROSTER_DATA_DIR", e))?;
    // Licensing's address is known once it is bound; identity learns it below.
    let settings = identity_settings(
        data_dir,
        &args.identity,
        format!("http://{}", args.licensing_listen),
        Trust { verifier: verifier.clone(), signer: identity_signer, pages: pages.clone() },
        args.limits.clone(),
        &args.pool,
    )?;
    let mut settings = settings;
    if args.manual_clock {
        let kept = KeptClock::open(data_dir.join(CLOCK_FILE))
            .map_err(|e| ConfigError::new("--manual-clock", e.to_string()))?;
        settings.clock = kept.clock.clone();
        settings.dev_clock = Some(kept);
    }
    let clock = settings.clock.clone();
    let settings_mailer = settings.mailer.describe();
    let identity_db = roster_platform::db::redact(&settings.database_url);
    let mut identity = roster_identity::Server::build(settings).await?;
    let identity_addr = identity.local_addr();

    let licensing_args = LicensingArgs {
        listen: args.licensing_listen,
        database_url: args.licensing_database_url.clone(),
        identity_url: format!("http://{identity_addr}"),
        service_signing_key: None,
        directory_cache_ms: 2_000,
        saga_retry: args.identity.workflow.retry.clone(),
    };
    let mut settings = licensing_settings(
        data_dir,
        &licensing_args,
        Trust { verifier, signer: licensing_signer, pages },
        args.limits,
        &args.pool,
    )?;
    // One clock for both services, so a refund's proration sees the time identity sees.
    settings.clock = clock.clone();
    let licensing_db = roster_platform::db::redact(&settings.database_url);
    let licensing = roster_licensing::Server::build(settings).await?;
    let licensing_addr = licensing.local_addr();
    identity.set_licensing_url(format!("http://{licensing_addr}"))?;

    let mut banner = format!(
        "Roster is up.\n  identity   {identity_addr}  (database: {identity_db})\n  licensing  {licensing_addr}  (database: {licensing_db})\n  e-mails    {}\n  tokens     roster token --user <id> | --operator <name>\n",
        settings_mailer,
    );
    if args.manual_clock {
        banner.push_str(&format!(
            "  clock      manual: move it with grpcurl -plaintext -H \"authorization: Bearer $OPERATOR_TOKEN\" \
             -d '{{\"by\":\"24h\"}}' {identity_addr} roster.dev.v1.ClockService/AdvanceTime\n"
        ));
    }
    if args.reset {
        for db in [identity.database(), licensing.database()] {
            db.empty().await.map_err(|e| runtime(format!("emptying the databases failed: {e}")))?;
        }
    }
    if args.demo {
        let demo = load_or_seed(data_dir, identity.database(), &clock).await?;
        let people = DemoPeople {
            account: demo.account_id.clone(),
            owner: demo.owner.id.clone(),
            admin: demo.admins[0].id.clone(),
            member: demo.members[0].id.clone(),
            contractor: demo.contractor.as_ref().map(|c| c.id.clone()),
            solo_account: demo.solo.account_id.clone(),
            phone_numbers: ["+31201234567".to_owned(), "+31201234568".to_owned()],
        };
        let seeded = roster_licensing::demo::seed(licensing.database(), &people, clock.now_ms())
            .await
            .map_err(|e| runtime(format!("seeding the licensing demo failed: {e}")))?;
        let env_file = data_dir.join("demo.env");
        let exports = demo_env(&demo, &seeded, &signers);
        std::fs::write(&env_file, &exports).map_err(runtime)?;
        let now = demo::people_now(identity.database(), &demo).await.map_err(runtime)?;
        banner.push_str(&demo_banner(&demo, &now, &env_file, &exports, identity_addr, licensing_addr));
    }
    out!("{banner}");

    // One SIGTERM stops both servers; each drains its own in-flight RPCs.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let (identity_done, licensing_done) =
        tokio::join!(identity.run(until_stopped(stopped.clone())), licensing.run(until_stopped(stopped)));
    identity_done.map_err(runtime)?;
    licensing_done.map_err(runtime)
}

async fn load_or_seed(
    data_dir: &Path,
    db: &roster_platform::db::Database,
    clock: &roster_platform::clock::SharedClock,
) -> Result<Demo, Failure> {
    let file = data_dir.join(DEMO_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let saved: Demo = serde_json::from_str(&text).map_err(|e| {
            runtime(format!("{} is damaged ({e}); delete the data directory to reseed", file.display()))
        })?;
        if demo::is_seeded_in(db, &saved).await.map_err(runtime)? {
            return Ok(saved);
        }
        tracing::info!(file = %file.display(), "the saved demo belongs to another database; seeding this one");
    }
    let demo = demo::seed(db, clock).await.map_err(|e| match e {
        roster_identity::effects::Error::Domain(roster_identity::domain::DomainError::EmailInUse) => runtime(
            "seeding the demo failed: the database already holds the demo's users (from an earlier demo whose \
             demo.json is gone); start with `roster up --demo --reset` to empty both databases and seed again",
        ),
        other => runtime(format!("seeding the demo failed: {other}")),
    })?;
    std::fs::write(&file, serde_json::to_string_pretty(&demo).map_err(runtime)?).map_err(runtime)?;
    Ok(demo)
}

fn demo_env(demo: &Demo, licensing: &DemoLicensing, signers: &SignerSet) -> String {
    let now = now_seconds();
    let token = |principal: Principal| signers.mint(&principal, now, DEMO_TOKEN_TTL_S);
    let user = |id: &str| Principal::User { user_id: id.to_owned() };
    let member = &demo.members[0];
    let mut env = String::new();
    for (name, value) in [
        ("ACCOUNT", demo.account_id.clone()),
        ("OWNER_ID", demo.owner.id.clone()),
        ("ADMIN_ID", demo.admins[0].id.clone()),
        ("MEMBER_ID", member.id.clone()),
        ("OTHER_MEMBER_ID", demo.members[1].id.clone()),
        ("CONTRACTOR_ID", demo.contractor.as_ref().map(|c| c.id.clone()).unwrap_or_default()),
        ("INVITEE_ID", demo.invitee.id.clone()),
        ("INVITATION_ID", demo.invitation_id.clone()),
        ("INVITATION_CODE", demo.invitation_code.clone()),
        ("OWNER_TOKEN", token(user(&demo.owner.id))),
        ("ADMIN_TOKEN", token(user(&demo.admins[0].id))),
        ("MEMBER_TOKEN", token(user(&member.id))),
        ("INVITEE_TOKEN", token(user(&demo.invitee.id))),
        ("OPERATOR_TOKEN", token(Principal::Operator { name: "support".into() })),
        ("PHONE_NUMBER", licensing.phone_number.clone()),
        ("SOLO_ACCOUNT", demo.solo.account_id.clone()),
        ("SOLO_OWNER_ID", demo.solo.owner.id.clone()),
        ("SOLO_OWNER_TOKEN", token(user(&demo.solo.owner.id))),
        ("SOLO_INVITATION_CODE", demo.solo.invitation_code.clone()),
        ("SUBSCRIPTION_ID", licensing.subscription_id.clone()),
    ] {
        let _ = writeln!(env, "export {name}={value}");
    }
    env
}

fn demo_banner(
    demo: &Demo,
    now: &(Vec<demo::Person>, Option<demo::Person>),
    env_file: &Path,
    exports: &str,
    addr: std::net::SocketAddr,
    licensing: std::net::SocketAddr,
) -> String {
    let (people_now, solo) = now;
    let mut people = String::new();
    for person in people_now {
        let status = match person.status {
            "active" => String::new(),
            "pending" if person.id == demo.invitee.id => " (pending; code in $INVITATION_CODE)".to_owned(),
            other => format!(" ({other})"),
        };
        let _ = writeln!(people, "  {:<8} {:<24} {}{status}", person.role, person.email, person.id);
    }
    if let Some(solo) = solo {
        let _ = writeln!(
            people,
            "  solo     {:<24} {} (owns account $SOLO_ACCOUNT, pays EUR 14.99/month, invited to Acme)",
            solo.email, solo.id
        );
    }
    format!(
        "\nDemo account Acme Inc (pro): {account}\n{people}\n\
         Ids and 24-hour tokens (also in {env}; `source` it in another shell):\n\n{exports}\n\
         Try:\n\n  \
         grpcurl -plaintext {addr} list\n  \
         grpcurl -plaintext -H \"authorization: Bearer $MEMBER_TOKEN\" -d \"{{\\\"account_id\\\":\\\"$ACCOUNT\\\"}}\" {addr} roster.identity.v1.AccountService/GetAccount\n  \
         grpcurl -plaintext -H \"authorization: Bearer $OWNER_TOKEN\" -d \"{{\\\"account_id\\\":\\\"$ACCOUNT\\\"}}\" {addr} roster.identity.v1.UserService/ListUsers\n  \
         grpcurl -plaintext -H \"authorization: Bearer $ADMIN_TOKEN\" -d \"{{\\\"account_id\\\":\\\"$ACCOUNT\\\"}}\" {licensing} roster.licensing.v1.LicenseService/ListSeats\n\n\
         The README walks through invite, accept, promote, ownership transfer, seats and billing.\n",
        account = demo.account_id,
        env = env_file.display(),
    )
}
