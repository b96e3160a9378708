//! `roster-bench`: measures Roster against baselines on the same machine, and prints each
//! ratio beside its goal (issue "Performance"). It prints figures; it asserts nothing.
//!
//! It starts what it measures itself: Roster in the configuration operators run (see
//! `deploy`: `roster serve` per service, `info` logs as JSON read from a pipe, metrics on,
//! e-mail over SMTP; `--config dev` measures `roster up` at `warn` instead), on SQLite or on
//! PostgreSQL with `--postgres URL`; a plain tonic server of the same tonic version (the "echo" baseline:
//! `grpc.health.v1` and nothing else), and `pgbench` on the same PostgreSQL. Roster's runs and
//! the baselines alternate, each for the same time with the same number of callers. CPU per
//! call is the server process's user + system time from `/proc` over the run, divided by calls.
//! Commits per saga are the PostgreSQL transaction ids the run used (every transaction that
//! wrote, in both services' databases, the e-mail outbox's included), divided by sagas.
//!
//! Usage (the `roster` binary beside this one is measured; `ROSTER_BIN` names another):
//!   roster-bench [--config production|dev] [--postgres URL] [--seconds N]
//!       (--smtp-sink bench|aiosmtpd: where production's e-mail goes; bench's own by default)
//!       (--log LEVEL: `roster up`'s level while it seeds, and in dev the measured one; warn)
//!   roster-bench --bulk N [--postgres URL]   (only: bulk deactivation of N licensed users)
//!   roster-bench --noisy N [--postgres URL] [--seconds N]   (only: a quiet account's p99 beside
//!       a busy one running a bulk deactivation of N users and eight inviters)
//!   roster-bench --events RATE [--postgres URL] [--seconds N]   (only: how soon a watcher of the
//!       event log sees each of RATE settings changes a second)
//!   roster-bench echo-server ADDR        (the baseline server; started by the above)

mod baseline;
mod bulk;
mod deploy;
mod events;
mod measure;
mod noisy;
mod report;
mod sink;
mod workloads;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roster_e2e::{Error, demo_env, free_port, wait_serving};
use roster_platform::db::{Backend, Database};

use measure::{Load, Server};
use report::{Goal, Row};
use workloads::{Prepare, Setup, Workload};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("echo-server") => baseline::echo_server(args.get(1).map(String::as_str)).await,
        _ => bench(&args).await,
    };
    if let Err(error) = result {
        eprintln!("roster-bench: {error}");
        std::process::exit(1);
    }
}

struct Options {
    config: deploy::Config,
    mail: deploy::MailSink,
    postgres: Option<String>,
    /// PostgreSQL for pgbench's baselines while Roster runs on SQLite.
    baseline_postgres: Option<String>,
    seconds: u64,
    /// Roster's log level: at `info` every RPC opens a tracing span, which costs CPU.
    log: String,
    /// Only the bulk run, with this many users.
    bulk: Option<usize>,
    /// Only the noisy-neighbour run, the busy account's bulk run with this many users.
    noisy: Option<usize>,
    /// Only the event-stream run, with this many changes a second.
    events: Option<f64>,
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut options = Options {
        config: deploy::Config::Production,
        mail: deploy::MailSink::Bench,
        postgres: None,
        baseline_postgres: None,
        seconds: 5,
        log: "warn".to_owned(),
        bulk: None,
        noisy: None,
        events: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => options.config = deploy::Config::parse(&value()?)?,
            "--smtp-sink" => options.mail = deploy::MailSink::parse(&value()?)?,
            "--postgres" => options.postgres = Some(value()?),
            "--baseline-postgres" => options.baseline_postgres = Some(value()?),
            "--seconds" => options.seconds = value()?.parse()?,
            "--log" => options.log = value()?,
            "--bulk" => options.bulk = Some(value()?.parse()?),
            "--noisy" => options.noisy = Some(value()?.parse()?),
            "--events" => options.events = Some(value()?.parse()?),
            other => return Err(format!("unknown argument {other}; see the module docs for usage").into()),
        }
    }
    Ok(options)
}

/// Users each bench account gets for the unlink saga; a run stops early when they are used up.
const LEAVERS_PER_ACCOUNT: usize = 40;
const CALLERS: usize = workloads::ACCOUNTS;

async fn bench(args: &[String]) -> Result<(), Error> {
    let options = options(args)?;
    let seconds = options.seconds;
    let backend = if options.postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("roster");
    let mut env: Vec<(String, String)> = Vec::new();
    let mut identity_url = Database::sqlite_url(&data_dir, "identity");
    if let Some(url) = &options.postgres {
        for (key, db) in [("ROSTER_IDENTITY_DATABASE_URL", "identity"), ("ROSTER_LICENSING_DATABASE_URL", "licensing")]
        {
            let fresh = baseline::fresh_database(url, &format!("roster_bench_{db}")).await?;
            if db == "identity" {
                identity_url = fresh.clone();
            }
            env.push((key.to_owned(), fresh));
        }
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let roster = deploy::start(options.config, options.mail, &data_dir, &env_refs, &options.log).await?;
    let started_memory = roster.resident_mb();
    let channel = wait_serving(roster.identity, Duration::from_secs(60)).await?;
    let licensing = wait_serving(roster.licensing, Duration::from_secs(60)).await?;
    let demo = demo_env(&data_dir, Duration::from_secs(30)).await?;
    let identity_db = Database::connect(&identity_url, 2).await?;
    if let Some(rows) = options.bulk {
        let xids = match identity_db.backend() {
            Backend::Postgres => Some(&identity_db),
            Backend::Sqlite => None,
        };
        let prepare = Prepare { demo, keys: &data_dir.join("keys"), identity_db: &identity_db, leavers_per_account: 0 };
        println!("roster-bench: {backend}; bulk deactivation of {rows} licensed users");
        let account = Setup::licensed_account(channel.clone(), licensing, prepare, rows).await?;
        bulk::measure(channel, account, xids, commits::used).await?;
        identity_db.close().await;
        roster.stop()?;
        return Ok(());
    }
    if let Some(rows) = options.noisy {
        println!("roster-bench: {backend}; a quiet account beside a busy one ({rows} users in bulk)");
        let busy = Prepare {
            demo: demo.clone(),
            keys: &data_dir.join("keys"),
            identity_db: &identity_db,
            leavers_per_account: 0,
        };
        let busy = Setup::licensed_account(channel.clone(), licensing.clone(), busy, rows).await?;
        let quiet = Prepare { demo, keys: &data_dir.join("keys"), identity_db: &identity_db, leavers_per_account: 0 };
        let setup = Setup::new(channel.clone(), licensing, quiet).await?;
        noisy::measure(&roster.server, channel, &identity_db, &setup, busy, seconds).await?;
        identity_db.close().await;
        roster.stop()?;
        return Ok(());
    }
    if let Some(rate) = options.events {
        println!("roster-bench: {backend}, {}; how soon a watcher sees each change", options.config.describe());
        let operator = demo["OPERATOR_TOKEN"].clone();
        let prepare = Prepare { demo, keys: &data_dir.join("keys"), identity_db: &identity_db, leavers_per_account: 0 };
        let setup = Setup::new(channel, licensing, prepare).await?;
        events::measure(&roster.server, &setup, &operator, rate, seconds).await?;
        identity_db.close().await;
        roster.stop()?;
        return Ok(());
    }
    println!(
        "roster-bench: {backend}, {seconds} s per run, {}; setting up {CALLERS} accounts through the API",
        options.config.describe()
    );
    let prepare = Prepare {
        demo,
        keys: &data_dir.join("keys"),
        identity_db: &identity_db,
        leavers_per_account: LEAVERS_PER_ACCOUNT,
    };
    let setup = Setup::new(channel, licensing, prepare).await?;
    let roster_server = &roster.server;
    let idle_memory = roster.resident_mb();

    let echo_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut echo = std::process::Command::new(std::env::current_exe()?)
        .args(["echo-server", &echo_addr.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let echo_channel = wait_serving(echo_addr, Duration::from_secs(30)).await?;
    let echo_server = Server { pids: vec![echo.id()] };

    println!("Roster and baselines alternating, load generator on the same cores");
    let mut rows = Vec::new();
    let echo_call = move |_| baseline::echo_call(echo_channel.clone());
    for (name, workload, goal) in [
        ("Health/Check, no auth", Workload::Health, Some(Goal::Ratio(0.85))),
        ("authenticated, refused before the DB", Workload::AuthRefused, Some(Goal::Ratio(0.80))),
    ] {
        // The baseline right before each run, so both see the machine in the same state.
        let echo_figures = measure::run(&echo_server, Load::flat_out(10, seconds), echo_call.clone()).await;
        let figures = measure::run(roster_server, Load::flat_out(10, seconds), setup.caller(workload)).await;
        rows.push(Row::new(name, figures).against("tonic echo, 10 streams", echo_figures.rps, goal));
    }
    let pg = match options.postgres.as_ref().or(options.baseline_postgres.as_ref()) {
        Some(url) => Some(baseline::Pgbench::prepare(url, seconds).await?),
        None => None,
    };
    let pg_goal = |goal: Goal| pg.as_ref().map(|_| goal);
    let select = pg.as_ref().map(baseline::Pgbench::select_only).transpose()?;
    // A read is one RPC plus one query: the serial composite of the echo's and pgbench -S's
    // rates on these cores is what it can approach.
    let echo_rate = measure::run(&echo_server, Load::flat_out(CALLERS, seconds), echo_call.clone()).await.rps;
    let composite = select.map(|select| 1.0 / (1.0 / echo_rate + 1.0 / select));
    let read_goal = if options.postgres.is_some() { 0.70 } else { 0.85 };
    for (name, workload) in [("GetAccount, 8 callers", Workload::GetAccount), ("GetUser, 8 callers", Workload::GetUser)]
    {
        let figures = measure::run(roster_server, Load::flat_out(CALLERS, seconds), setup.caller(workload)).await;
        let row = Row::new(name, figures);
        rows.push(row.against_some("echo (+) pgbench -S, 8", composite, pg_goal(Goal::Ratio(read_goal))));
    }

    let insert = pg.as_ref().map(baseline::Pgbench::one_row_insert).transpose()?;
    let insert_name = "pgbench one-row INSERT, 8 clients";
    let queued_before = outbox::queued(&identity_db).await?;
    let invites_began = Instant::now();
    let across =
        measure::run(roster_server, Load::flat_out(CALLERS, seconds), setup.caller(Workload::InviteAcrossAccounts))
            .await;
    let half = Load { pace: Some(across.rps / 2.0), ..Load::flat_out(CALLERS, seconds) };
    let paced = measure::run(roster_server, half, setup.caller(Workload::InviteAcrossAccounts)).await;
    let one =
        measure::run(roster_server, Load::flat_out(CALLERS, seconds), setup.caller(Workload::InviteOneAccount)).await;
    let outbox = outbox::Drain::measure(&identity_db, queued_before, invites_began.elapsed()).await?;
    rows.push(Row::new("InviteUser, 8 callers on 8 accounts", across).against_some(
        insert_name,
        insert,
        pg_goal(Goal::Ratio(0.35)),
    ));
    rows.push(
        Row::new("InviteUser, 8 accounts, at half that rate", paced).with_goal(Goal::P99(Duration::from_millis(5))),
    );
    rows.push(Row::new("InviteUser, 8 callers on 1 account", one).against_some(insert_name, insert, None));

    let insert = pg.as_ref().map(baseline::Pgbench::one_row_insert).transpose()?;
    let assign =
        measure::run(roster_server, Load::flat_out(CALLERS, seconds), setup.caller(Workload::AssignAcrossAccounts))
            .await;
    rows.push(Row::new("Assign/UnassignLicense, 8 accounts", assign).against_some(
        insert_name,
        insert,
        pg_goal(Goal::Ratio(0.35)),
    ));
    let one =
        measure::run(roster_server, Load::flat_out(CALLERS, seconds), setup.caller(Workload::AssignOneAccount)).await;
    rows.push(Row::new("Unassign/AssignLicense, 1 account", one).against_some(insert_name, insert, None));

    let tpc_b = pg.as_ref().map(baseline::Pgbench::tpc_b).transpose()?;
    let xids = match identity_db.backend() {
        Backend::Postgres => Some(&identity_db),
        Backend::Sqlite => None,
    };
    for (name, workload, load) in [
        ("deactivate / reactivate sagas", Workload::DeactivateReactivate, Load::flat_out(CALLERS, seconds)),
        (
            "unlink saga, meetings to the owner",
            Workload::UnlinkWithTransfer,
            Load { calls_per_caller: Some(setup.leavers_per_caller()), ..Load::flat_out(CALLERS, seconds) },
        ),
    ] {
        let before = commits::used(xids).await?;
        let figures = measure::run(roster_server, load, setup.caller(workload)).await;
        let per_saga = commits::used(xids).await?.zip(before).map(|(after, before)| {
            let sagas = (figures.calls - figures.errors).max(1);
            (after - before) as f64 / sagas as f64
        });
        let steps = workload.saga_steps();
        let row = Row::new(name, figures).sagas(steps, per_saga);
        // What PostgreSQL does with this many commits per saga: TPC-B's rate divided by them.
        let baseline = tpc_b.zip(per_saga).map(|(tps, commits)| tps / commits.max(1.0));
        rows.push(row.against_some("pgbench TPC-B / commits per saga", baseline, pg_goal(Goal::Ratio(0.50))));
    }
    report::print(&rows);
    outbox.print();
    if let Some(received) = roster.emails_received() {
        println!("        roster-bench's SMTP sink accepted {received} e-mails in all, the demo's among them");
    }
    if options.config == deploy::Config::Production {
        println!(
            "log written by both services: {:.1} MB; lines dropped with the log writer's queue full: {}",
            roster.log_bytes() as f64 / 1e6,
            roster.log_lines_dropped().await
        );
    }
    // Issue 25's goal: each service at most 20 MB idle and 30 MB after the load.
    let in_words = |sizes: &[f64]| sizes.iter().map(|mb| format!("{mb:.1} MB")).collect::<Vec<_>>().join(", ");
    println!(
        "resident memory ({}): {} started, {} once set up, {} after the load (goal <= 20 MB idle, <= 30 MB after)",
        if roster.resident_mb().len() > 1 { "identity, licensing" } else { "roster up" },
        in_words(&started_memory),
        in_words(&idle_memory),
        in_words(&roster.resident_mb()),
    );

    let _ = echo.kill();
    let _ = echo.wait();
    identity_db.close().await;
    roster.stop()?;
    Ok(())
}

/// Transaction ids as a count of commits that wrote.
mod commits {
    use roster_platform::db::Database;

    /// Transaction ids assigned so far in the whole PostgreSQL cluster (a transaction gets one
    /// when it first writes); `None` without PostgreSQL.
    pub async fn used(db: Option<&Database>) -> Result<Option<i64>, sqlx::Error> {
        let Some(db) = db else { return Ok(None) };
        let next: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetch_one(db.pool()).await?;
        Ok(next.parse().ok())
    }
}

/// Whether the e-mail outbox keeps up with the invitations.
mod outbox {
    use std::time::{Duration, Instant};

    use roster_platform::db::Database;

    /// E-mails ever queued, and those not yet sent.
    pub async fn queued(db: &Database) -> Result<(i64, i64), sqlx::Error> {
        let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(db.pool()).await?;
        let unsent: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL").fetch_one(db.pool()).await?;
        Ok((all, unsent))
    }

    pub struct Drain {
        queued: i64,
        over: Duration,
        left: i64,
        drained_in: Option<Duration>,
    }

    impl Drain {
        /// After the invitation runs: what they queued, what was still unsent when they ended,
        /// and how long that took to go out (waiting at most a minute).
        pub async fn measure(db: &Database, before: (i64, i64), over: Duration) -> Result<Self, sqlx::Error> {
            let (all, left) = queued(db).await?;
            let began = Instant::now();
            let mut drained_in = None;
            while began.elapsed() < Duration::from_secs(60) {
                if queued(db).await?.1 <= before.1 {
                    drained_in = Some(began.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Self { queued: all - before.0, over, left: (left - before.1).max(0), drained_in })
        }

        pub fn print(&self) {
            let secs = self.over.as_secs_f64();
            println!(
                "\noutbox: the InviteUser runs queued {} e-mails in {secs:.1} s ({:.0}/s); {} were unsent when they ended",
                self.queued,
                self.queued as f64 / secs,
                self.left
            );
            match self.drained_in {
                Some(took) => println!(
                    "        and went out {:.2} s later ({:.0}/s while draining)",
                    took.as_secs_f64(),
                    self.left as f64 / took.as_secs_f64().max(1e-3)
                ),
                None => println!("        and were not all sent a minute later"),
            }
        }
    }
}
