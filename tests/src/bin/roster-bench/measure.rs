//! Running one workload: N callers for a fixed time, latencies kept per call, and the server
//! process's CPU time read from `/proc` before and after.
//!
//! No crate for either: a run keeps at most a few hundred thousand latencies, so they are
//! kept whole and sorted for exact percentiles (a histogram such as `hdrhistogram` would only
//! approximate them), and the CPU time is two fields of `/proc/<pid>/stat`, which `procfs`
//! would parse with many dependencies more.

use std::future::Future;
use std::time::{Duration, Instant};

/// The process that serves the calls, whose CPU time is counted.
pub struct Server {
    /// Every process whose CPU time counts: one for `roster up` or a baseline, one per
    /// service for `roster serve`.
    pub pids: Vec<u32>,
}

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl Server {
    /// User plus system CPU seconds the processes have used so far.
    fn cpu_seconds(&self) -> f64 {
        self.pids.iter().map(|pid| Self::cpu_seconds_of(*pid)).sum()
    }

    fn cpu_seconds_of(pid: u32) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
        // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        (ticks(11) + ticks(12)) / TICKS_PER_SECOND
    }
}

#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Calls made, failed ones included.
    pub calls: usize,
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub cpu_us_per_call: f64,
    pub errors: usize,
    pub first_error: String,
}

/// How a run is driven.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub callers: usize,
    pub seconds: u64,
    /// Calls per second in all, spread evenly over the callers; `None` for as fast as they go.
    pub pace: Option<f64>,
    /// Calls per caller before it stops early (work that is used up, like users to unlink).
    pub calls_per_caller: Option<u64>,
}

impl Load {
    pub fn flat_out(callers: usize, seconds: u64) -> Self {
        Self { callers, seconds, pace: None, calls_per_caller: None }
    }
}

/// Runs `call` as `load` says; `call` gets a number unique within the run (for request ids
/// and e-mail addresses): the caller's number times 10^9 plus its count of calls so far.
pub async fn run<F, Fut>(server: &Server, load: Load, call: F) -> Figures
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(load.seconds);
    // Each paced caller starts its calls on a fixed beat (without catching up after a slow one),
    // the callers' beats spread evenly over it: in step, eight callers at half the maximum rate
    // would arrive as bursts of eight at once, and measure those instead of a steady half load.
    let beat = load.pace.map(|rate| Duration::from_secs_f64(load.callers as f64 / rate.max(1e-3)));
    let tasks: Vec<_> = (0..load.callers as u64)
        .map(|caller| {
            let call = call.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, String::new());
                let mut n = 0u64;
                let offset = beat.map_or(Duration::ZERO, |beat| beat.mul_f64(caller as f64 / load.callers as f64));
                let mut next = Instant::now() + offset;
                while Instant::now() < deadline && load.calls_per_caller.is_none_or(|limit| n < limit) {
                    if let Some(beat) = beat {
                        tokio::time::sleep_until(next.into()).await;
                        next = Instant::now().max(next + beat);
                    }
                    let began = Instant::now();
                    match call(caller * 1_000_000_000 + n).await {
                        Ok(()) => latencies.push(began.elapsed()),
                        Err(error) => {
                            errors += 1;
                            if first_error.is_empty() {
                                first_error = error;
                            }
                        }
                    }
                    n += 1;
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut figures = Figures::default();
    let mut latencies = Vec::new();
    for task in tasks {
        let Ok((mut some, errors, first_error)) = task.await else { continue };
        latencies.append(&mut some);
        figures.errors += errors;
        if figures.first_error.is_empty() {
            figures.first_error = first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    latencies.sort();
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    let calls = latencies.len() + figures.errors;
    figures.calls = calls;
    figures.rps = latencies.len() as f64 / elapsed;
    figures.p50 = at(0.50).unwrap_or_default();
    figures.p99 = at(0.99).unwrap_or_default();
    figures.cpu_us_per_call = if calls > 0 { cpu * 1e6 / calls as f64 } else { 0.0 };
    figures
}
