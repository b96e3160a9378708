//! `roster-bench`: measures Roster against baselines on the same machine, and prints each
//! ratio beside its goal (issue "Performance"). It prints figures; it asserts nothing.
//!
//! It starts what it measures itself: `roster up --demo` (SQLite, or PostgreSQL with
//! `--postgres URL`), a plain tonic server of the same tonic version (the "echo" baseline:
//! `grpc.health.v1` and nothing else), and `pgbench` on the same PostgreSQL. Roster's runs and
//! the baselines alternate, each for the same time with the same number of callers. CPU per
//! call is the server process's user + system time from `/proc` over the run, divided by calls.
//!
//! Usage (the `roster` binary beside this one is measured; `ROSTER_BIN` names another):
//!   roster-bench [--postgres URL] [--seconds N]
//!   roster-bench echo-server ADDR        (the baseline server; started by the above)

mod baseline;
mod measure;
mod workloads;

use std::net::SocketAddr;
use std::time::Duration;

use roster_e2e::{Error, Process, demo_env, free_port, wait_serving};

use measure::{Figures, Server};
use workloads::{Setup, Workload};

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
    postgres: Option<String>,
    seconds: u64,
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut options = Options { postgres: None, seconds: 5 };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--postgres" => options.postgres = Some(value()?),
            "--seconds" => options.seconds = value()?.parse()?,
            other => return Err(format!("unknown argument {other}; see the module docs for usage").into()),
        }
    }
    Ok(options)
}

/// One comparison: Roster's figures, the baseline's, and the goal for their ratio.
struct Row {
    name: &'static str,
    roster: Figures,
    baseline: Option<(String, f64)>,
    goal: Option<f64>,
}

async fn bench(args: &[String]) -> Result<(), Error> {
    let options = options(args)?;
    let backend = if options.postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("roster");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(url) = &options.postgres {
        for (key, db) in [("ROSTER_IDENTITY_DATABASE_URL", "identity"), ("ROSTER_LICENSING_DATABASE_URL", "licensing")]
        {
            env.push((key.to_owned(), baseline::fresh_database(url, &format!("roster_bench_{db}")).await?));
        }
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut roster = Process::start(&data_dir, addr, &["up", "--demo", "--log", "warn"], &env_refs);
    let channel = wait_serving(addr, Duration::from_secs(60)).await?;
    let demo = demo_env(&data_dir, Duration::from_secs(30)).await?;
    let setup = Setup::new(channel, demo, &data_dir.join("keys")).await?;
    let roster_server = Server { pid: roster.child.id() };

    let echo_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut echo = std::process::Command::new(std::env::current_exe()?)
        .args(["echo-server", &echo_addr.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let echo_channel = wait_serving(echo_addr, Duration::from_secs(30)).await?;
    let echo_server = Server { pid: echo.id() };

    let seconds = options.seconds;
    println!(
        "roster-bench: {backend}, {seconds} s per run, Roster and baselines alternating, load generator on the same cores"
    );
    let mut rows = Vec::new();
    let echo_call = move |_| baseline::echo_call(echo_channel.clone());
    for (name, workload, goal) in [
        ("Health/Check, no auth", Workload::Health, None),
        ("authenticated, refused before the DB", Workload::AuthRefused, Some(0.70)),
    ] {
        // The baseline right before each run, so both see the machine in the same state.
        let echo_figures = measure::run(&echo_server, seconds, 10, echo_call.clone()).await;
        let figures = measure::run(&roster_server, seconds, 10, setup.caller(workload)).await;
        let baseline = Some(("tonic echo, 10 streams".into(), echo_figures.rps));
        rows.push(Row { name, roster: figures, baseline, goal });
    }
    let pg = match &options.postgres {
        Some(url) => Some(baseline::Pgbench::prepare(url, seconds).await?),
        None => None,
    };
    let select = match &pg {
        Some(pg) => Some(("pgbench -S, 8 clients".to_owned(), pg.select_only()?)),
        None => None,
    };
    for (name, workload) in [("GetAccount, 8 callers", Workload::GetAccount), ("GetUser, 8 callers", Workload::GetUser)]
    {
        let figures = measure::run(&roster_server, seconds, 8, setup.caller(workload)).await;
        rows.push(Row { name, roster: figures, baseline: select.clone(), goal: pg.as_ref().map(|_| 0.60) });
    }
    let insert = match &pg {
        Some(pg) => Some(("pgbench one-row INSERT, 8 clients".to_owned(), pg.one_row_insert()?)),
        None => None,
    };
    for (name, workload, goal) in [
        ("InviteUser, 8 callers on 8 accounts", Workload::InviteAcrossAccounts, Some(0.50)),
        ("InviteUser, 8 callers on 1 account", Workload::InviteOneAccount, None),
    ] {
        let figures = measure::run(&roster_server, seconds, 8, setup.caller(workload)).await;
        rows.push(Row { name, roster: figures, baseline: insert.clone(), goal: goal.filter(|_| pg.is_some()) });
    }
    report(&rows);

    let _ = echo.kill();
    let _ = echo.wait();
    roster.terminate(Duration::from_secs(20))?;
    Ok(())
}

fn report(rows: &[Row]) {
    println!();
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>10}  {:<34} {:>9} {:>7} {:>6}",
        "call", "calls/s", "p50", "p99", "CPU/call", "baseline", "base/s", "ratio", "goal"
    );
    for row in rows {
        let (base_name, base_rps) = row.baseline.clone().unwrap_or_else(|| ("-".into(), 0.0));
        let ratio = if base_rps > 0.0 { format!("{:.2}", row.roster.rps / base_rps) } else { "-".into() };
        let goal = row.goal.map_or("-".to_owned(), |g| format!(">={g:.2}"));
        println!(
            "{:<40} {:>9.0} {:>9.2?} {:>9.2?} {:>8.0}us  {:<34} {:>9.0} {:>7} {:>6}",
            row.name,
            row.roster.rps,
            row.roster.p50,
            row.roster.p99,
            row.roster.cpu_us_per_call,
            base_name,
            base_rps,
            ratio,
            goal
        );
        if row.roster.errors > 0 {
            println!("    ({} calls failed: {})", row.roster.errors, row.roster.first_error);
        }
    }
}
