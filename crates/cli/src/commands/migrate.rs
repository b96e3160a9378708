//! `roster migrate`: apply every service's migrations, then exit.

use roster_platform::config::TelemetryArgs;
use std::path::Path;

use roster_platform::db::{Database, MigrationSql, redact};

use roster_platform::config::ConfigError;

use super::{Failure, ServiceDb, database_url, runtime};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// PostgreSQL URL of identity; without it, the SQLite file in the data directory.
    #[arg(long = "identity-database-url", env = "ROSTER_IDENTITY_DATABASE_URL")]
    identity_database_url: Option<String>,
    /// PostgreSQL URL of licensing; without it, the SQLite file in the data directory.
    #[arg(long = "licensing-database-url", env = "ROSTER_LICENSING_DATABASE_URL")]
    licensing_database_url: Option<String>,
}

pub async fn run(data_dir: &Path, args: MigrateArgs) -> Result<(), Failure> {
    let services: [(&str, ServiceDb, Option<&str>, &[MigrationSql]); 2] = [
        ("identity", ServiceDb::Identity, args.identity_database_url.as_deref(), roster_identity::store::MIGRATIONS),
        (
            "licensing",
            ServiceDb::Licensing,
            args.licensing_database_url.as_deref(),
            roster_licensing::store::MIGRATIONS,
        ),
    ];
    for (name, service, given, migrations) in services {
        let url = database_url(data_dir, service, given)?;
        let db = Database::connect(&url, 2)
            .await
            .map_err(|e| Failure::Unavailable(ConfigError::new(service.key(), format!("the {name} database: {e}"))))?;
        db.migrate(migrations).await.map_err(runtime)?;
        db.close().await;
        out!("{name}: migrations applied ({})", redact(&url));
    }
    Ok(())
}
