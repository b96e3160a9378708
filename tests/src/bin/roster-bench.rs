//! Benchmark client for a running `roster up --demo`: drives a read (GetAccount) and a write
//! (InviteUser) with N concurrent callers for a fixed time and prints throughput and latency
//! percentiles. It prints figures; it asserts nothing.
//!
//! Usage: roster-bench <identity address> <data directory> [seconds per workload] [concurrency]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roster_e2e::{Error, authed, demo_env, wait_serving};
use roster_proto::identity::v1 as pb;
use tonic::transport::Channel;

#[tokio::main]
async fn main() {
    if let Err(error) = bench().await {
        eprintln!("benchmark failed: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    GetAccount,
    InviteUser,
}

async fn call(
    channel: &Channel,
    workload: Workload,
    env: &std::collections::HashMap<String, String>,
    n: &str,
) -> Result<(), tonic::Status> {
    let account = env["ACCOUNT"].clone();
    match workload {
        Workload::GetAccount => pb::account_service_client::AccountServiceClient::new(channel.clone())
            .get_account(authed(pb::GetAccountRequest { account_id: account }, &env["MEMBER_TOKEN"]))
            .await
            .map(drop),
        Workload::InviteUser => pb::user_service_client::UserServiceClient::new(channel.clone())
            .invite_user(authed(
                pb::InviteUserRequest {
                    request_id: format!("bench-{n}"),
                    account_id: account,
                    email: format!("bench-{n}@bench.example"),
                    ..Default::default()
                },
                &env["OWNER_TOKEN"],
            ))
            .await
            .map(drop),
    }
}

async fn run(
    channel: Channel,
    env: std::collections::HashMap<String, String>,
    workload: Workload,
    seconds: u64,
    concurrency: usize,
) -> Result<(), Error> {
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (channel, env) = (channel.clone(), env.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let started = Instant::now();
                match call(&channel, workload, &env, &format!("{run_id}-{worker}-{n}")).await {
                    Ok(()) => latencies.push(started.elapsed()),
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut worker_latencies, worker_errors) = worker.await?;
        latencies.append(&mut worker_latencies);
        errors += worker_errors;
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{:<12} {:>8} ok {:>5} err {:>9.0} rps   p50 {:>8.2?}  p90 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        format!("{workload:?}"),
        latencies.len(),
        errors,
        latencies.len() as f64 / seconds as f64,
        pick(0.50),
        pick(0.90),
        pick(0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    Ok(())
}

async fn bench() -> Result<(), Error> {
    let usage = "usage: roster-bench <address> <data dir> [seconds] [concurrency]";
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let data_dir = PathBuf::from(args.next().ok_or(usage)?);
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let concurrency: usize = args.next().map_or(Ok(16), |s| s.parse())?;
    let channel = wait_serving(addr, Duration::from_secs(60)).await?;
    let env = demo_env(&data_dir, Duration::from_secs(30)).await?;
    println!("{seconds} s per workload, {concurrency} concurrent callers, one HTTP/2 connection, against {addr}");
    for workload in [Workload::GetAccount, Workload::InviteUser] {
        run(channel.clone(), env.clone(), workload, seconds, concurrency).await?;
    }
    Ok(())
}
