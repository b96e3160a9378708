//! `roster up`: the whole system on one machine with no set-up: embedded SQLite, dev keys
//! generated into the data directory, e-mails written as files. `--demo` seeds an account
//! once (kept in `demo.json`) and writes fresh tokens to `demo.env` on every start.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use roster_identity::demo::{self, Demo};
use roster_identity::{IdentityArgs, Server};
use roster_platform::auth::{Principal, Signer, Verifier, generate_dev_keys};
use roster_platform::config::{ConfigError, LimitArgs, PoolArgs};
use roster_platform::server::shutdown_signal;

use super::serve::identity_settings;
use super::token::now_seconds;
use super::{Failure, runtime};

const DEV_AUDIENCE: &str = "roster";
const DEMO_TOKEN_TTL_S: u64 = 24 * 3_600;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Seed a demo account and print tokens and ready-to-paste grpcurl commands.
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    pool: PoolArgs,
}

pub async fn run(data_dir: &Path, args: UpArgs) -> Result<(), Failure> {
    let keys = generate_dev_keys(data_dir).map_err(|e| ConfigError::new("ROSTER_DATA_DIR", e.to_string()))?;
    let verifier = Verifier::from_pem_files(std::slice::from_ref(&keys.public_key), DEV_AUDIENCE)
        .map_err(|e| ConfigError::new("ROSTER_DATA_DIR", e.to_string()))?;
    let settings = identity_settings(data_dir, &args.identity, Arc::new(verifier), args.limits, &args.pool)?;
    let clock = settings.clock.clone();
    let database = roster_platform::db::redact(&settings.database_url);
    let server = Server::build(settings).await.map_err(runtime)?;
    let identity_addr = server.local_addr();

    let mut banner = format!(
        "Roster is up.\n  identity  {identity_addr}  (database: {database})\n  e-mails   {}\n  tokens    roster token --user <id> | --operator <name>\n",
        roster_identity::server::dev_mail_dir(data_dir).display(),
    );
    if args.demo {
        let demo = load_or_seed(data_dir, server.database(), &clock).await?;
        let signer = Signer::from_pem_file(&keys.private_key, DEV_AUDIENCE).map_err(runtime)?;
        let env_file = data_dir.join("demo.env");
        let exports = demo_env(&demo, &signer);
        std::fs::write(&env_file, &exports).map_err(runtime)?;
        banner.push_str(&demo_banner(&demo, &env_file, &exports, identity_addr));
    }
    println!("{banner}");
    server.run(shutdown_signal()).await.map_err(runtime)
}

async fn load_or_seed(
    data_dir: &Path,
    db: &roster_platform::db::Database,
    clock: &roster_platform::clock::SharedClock,
) -> Result<Demo, Failure> {
    let file = data_dir.join("demo.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        return serde_json::from_str(&text)
            .map_err(|e| runtime(format!("{} is damaged ({e}); delete the data directory to reseed", file.display())));
    }
    let demo = demo::seed(db, clock).await.map_err(|e| runtime(format!("seeding the demo failed: {e}")))?;
    std::fs::write(&file, serde_json::to_string_pretty(&demo).map_err(runtime)?).map_err(runtime)?;
    Ok(demo)
}

fn demo_env(demo: &Demo, signer: &Signer) -> String {
    let now = now_seconds();
    let token = |principal: Principal| signer.mint(&principal, now, DEMO_TOKEN_TTL_S);
    let user = |id: &str| Principal::User { user_id: id.to_owned() };
    let member = &demo.members[0];
    let mut env = String::new();
    for (name, value) in [
        ("ACCOUNT", demo.account_id.clone()),
        ("OWNER_ID", demo.owner.id.clone()),
        ("ADMIN_ID", demo.admins[0].id.clone()),
        ("MEMBER_ID", member.id.clone()),
        ("INVITEE_ID", demo.invitee.id.clone()),
        ("INVITATION_ID", demo.invitation_id.clone()),
        ("INVITATION_CODE", demo.invitation_code.clone()),
        ("OWNER_TOKEN", token(user(&demo.owner.id))),
        ("ADMIN_TOKEN", token(user(&demo.admins[0].id))),
        ("MEMBER_TOKEN", token(user(&member.id))),
        ("INVITEE_TOKEN", token(user(&demo.invitee.id))),
        ("OPERATOR_TOKEN", token(Principal::Operator { name: "support".into() })),
    ] {
        let _ = writeln!(env, "export {name}={value}");
    }
    env
}

fn demo_banner(demo: &Demo, env_file: &Path, exports: &str, addr: std::net::SocketAddr) -> String {
    let mut people = format!("  owner    {:<22} {}\n", demo.owner.email, demo.owner.id);
    for (label, users) in [("admin", &demo.admins), ("member", &demo.members)] {
        for user in users {
            let _ = writeln!(people, "  {label:<8} {:<22} {}", user.email, user.id);
        }
    }
    let _ = writeln!(people, "  pending  {:<22} {} (code in $INVITATION_CODE)", demo.invitee.email, demo.invitee.id);
    format!(
        "\nDemo account Acme Inc (pro): {account}\n{people}\n\
         Ids and 24-hour tokens (also in {env}; `source` it in another shell):\n\n{exports}\n\
         Try:\n\n  \
         grpcurl -plaintext {addr} list\n  \
         grpcurl -plaintext -H \"authorization: Bearer $MEMBER_TOKEN\" -d \"{{\\\"account_id\\\":\\\"$ACCOUNT\\\"}}\" {addr} roster.identity.v1.AccountService/GetAccount\n  \
         grpcurl -plaintext -H \"authorization: Bearer $OWNER_TOKEN\" -d \"{{\\\"account_id\\\":\\\"$ACCOUNT\\\"}}\" {addr} roster.identity.v1.UserService/ListUsers\n\n\
         The README walks through invite, accept, promote and ownership transfer.\n",
        account = demo.account_id,
        env = env_file.display(),
    )
}
