//! `roster migrate`: apply every service's migrations, then exit.

use std::path::Path;

use roster_platform::db::Database;

use super::{Failure, identity_database_url, runtime};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL; without it, the SQLite file in the data directory.
    #[arg(long = "identity-database-url", env = "ROSTER_IDENTITY_DATABASE_URL")]
    identity_database_url: Option<String>,
}

pub async fn run(data_dir: &Path, args: MigrateArgs) -> Result<(), Failure> {
    let url = identity_database_url(data_dir, args.identity_database_url.as_deref())?;
    let db = Database::connect(&url, 2).await.map_err(runtime)?;
    db.migrate(roster_identity::store::MIGRATIONS).await.map_err(runtime)?;
    db.close().await;
    println!("identity: migrations applied ({})", roster_platform::db::redact(&url));
    Ok(())
}
