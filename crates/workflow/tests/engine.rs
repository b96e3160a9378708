//! The engine against real SQLite and PostgreSQL: ordering, persistence, compensation,
//! retries, timers, crash recovery, fencing and concurrent workers. Effects are counted in
//! tables, never inferred from logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roster_platform::clock::{Clock, ManualClock, SharedClock};
use roster_platform::db::{Backend, Database, MigrationSql};
use roster_testkit::FreshDatabase;
use roster_workflow::backoff::Backoff;
use roster_workflow::{
    ControlError, Direction, Engine, EngineConfig, Failure, Faults, Instance, ListFilter, MIGRATIONS, NewWorkflow,
    NotCancellable, Outcome, StartError, State, StepCtx, StepError, StepFuture, Workflow, prune_finished,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

const EFFECTS: MigrationSql = MigrationSql {
    version: 1,
    description: "test effects",
    sql: "CREATE TABLE remote_effects (request_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, label TEXT NOT NULL);
          CREATE TABLE local_effects (workflow_id TEXT NOT NULL, label TEXT NOT NULL);",
};

const START_MS: i64 = 1_800_000_000_000;
const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(600);

/// reserve (remote, undone by release) -> charge (local, undone by a local refund) ->
/// ship (the pivot, remote) -> notify (remote). The input can make a step refuse, fail
/// transiently a number of times, or make `notify` wait for a timer.
struct Shop {
    /// When set, `charge` waits here before touching the database (the "paused worker").
    gate: Option<Arc<Gate>>,
    outage: Arc<AtomicUsize>,
    /// Whether the shop declares `charge`, its point of no return, local (it is).
    declares_charge_local: bool,
}

#[derive(Default)]
struct Gate {
    entered: Notify,
    open: Notify,
}

impl Shop {
    fn gated(gate: Arc<Gate>, declares_charge_local: bool) -> Arc<Self> {
        Arc::new(Self { gate: Some(gate), outage: Arc::new(AtomicUsize::new(0)), declares_charge_local })
    }

    fn plain() -> Arc<Self> {
        Arc::new(Self { gate: None, outage: Arc::new(AtomicUsize::new(0)), declares_charge_local: true })
    }
}

async fn remote(ctx: &StepCtx, db: &Database, label: &str) -> Result<Outcome, StepError> {
    // A remote service with idempotency keys: a replayed request id changes nothing.
    sqlx::query(
        "INSERT INTO remote_effects (request_id, workflow_id, label) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(ctx.request_id())
    .bind(&ctx.workflow_id)
    .bind(label)
    .execute(db.pool())
    .await?;
    Ok(Outcome::Done(json!({ "label": label, "request_id": ctx.request_id() })))
}

impl Shop {
    fn refusal(&self, ctx: &StepCtx, step: usize) -> Result<(), StepError> {
        let input: Value = ctx.input()?;
        if input["refuse_at"].as_u64() == Some(step as u64) {
            return Err(StepError::Refused(Failure {
                reason: "OUT_OF_STOCK".into(),
                code: Some("42".into()),
                message: format!("step {step} refused"),
            }));
        }
        if self.outage.load(Ordering::SeqCst) > 0 {
            self.outage.fetch_sub(1, Ordering::SeqCst);
            return Err(StepError::Transient("connection refused".into()));
        }
        Ok(())
    }
}

impl Workflow for Shop {
    fn kind(&self) -> &'static str {
        "test.shop"
    }

    fn steps(&self) -> &'static [&'static str] {
        &["reserve", "charge", "ship", "notify"]
    }

    fn pivot(&self) -> usize {
        2
    }

    fn is_local(&self, step: usize) -> bool {
        step == 1 && self.declares_charge_local
    }

    fn run<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            self.refusal(ctx, step)?;
            let db = ctx_db(ctx).await?;
            match step {
                0 => remote(ctx, &db, "reserve").await,
                1 => {
                    if let Some(gate) = &self.gate {
                        gate.entered.notify_one();
                        gate.open.notified().await;
                    }
                    let id = ctx.workflow_id.clone();
                    let tx = ctx.tx().await?;
                    sqlx::query("INSERT INTO local_effects (workflow_id, label) VALUES ($1, 'charge')")
                        .bind(&id)
                        .execute(&mut **tx)
                        .await?;
                    Ok(Outcome::Done(json!({ "charged": 100 })))
                }
                2 => remote(ctx, &db, "ship").await,
                _ => {
                    let input: Value = ctx.input()?;
                    match input["notify_at"].as_i64() {
                        Some(at) if ctx.now_ms < at => Ok(Outcome::WaitUntil(at)),
                        _ => remote(ctx, &db, "notify").await,
                    }
                }
            }
        })
    }

    fn compensate<'a>(&'a self, step: usize, ctx: &'a mut StepCtx) -> StepFuture<'a> {
        Box::pin(async move {
            let db = ctx_db(ctx).await?;
            match step {
                0 => remote(ctx, &db, "release").await,
                _ => {
                    let charged: Option<Value> = ctx.output(1)?;
                    assert!(charged.is_some(), "compensation sees the forward output");
                    let id = ctx.workflow_id.clone();
                    let tx = ctx.tx().await?;
                    sqlx::query("INSERT INTO local_effects (workflow_id, label) VALUES ($1, 'refund')")
                        .bind(&id)
                        .execute(&mut **tx)
                        .await?;
                    Ok(Outcome::Done(json!({})))
                }
            }
        })
    }

    fn result(&self, ctx: &StepCtx) -> Value {
        json!({ "shipped": ctx.output::<Value>(2).ok().flatten().is_some() })
    }
}

/// The database the test set up, reached through a global so steps can use the pool the
/// way a remote service would (outside the step's transaction).
static DB: std::sync::Mutex<Option<Database>> = std::sync::Mutex::new(None);

async fn ctx_db(_ctx: &StepCtx) -> Result<Database, StepError> {
    Ok(DB.lock().expect("db").clone().expect("set by the test"))
}

/// An operator's action on one workflow.
enum Act<'a> {
    Retry,
    Resolve(&'a str),
    Cancel(&'a str),
}

struct Harness {
    db: Database,
    clock: Arc<ManualClock>,
}

impl Harness {
    fn engine(&self, worker: &str, shop: Arc<Shop>, faults: Option<Arc<dyn Faults>>) -> Engine {
        let mut config = EngineConfig::new(worker);
        config.retry.lease = LEASE;
        config.retry.backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(5) };
        config.retry.window = WINDOW;
        config.faults = faults;
        let clock: SharedClock = self.clock.clone();
        Engine::new(self.db.clone(), clock, config, vec![shop])
    }

    /// Runs one operator action in a transaction of its own, committing what it did.
    async fn control(&self, engine: &Engine, id: &str, act: Act<'_>) -> Result<Instance, ControlError> {
        let mut tx = self.db.begin().await.expect("begin");
        let done = match act {
            Act::Retry => engine.retry(&mut tx, id).await,
            Act::Resolve(note) => engine.resolve(&mut tx, id, note, "operator:sam").await,
            Act::Cancel(by) => engine.cancel(&mut tx, id, by).await,
        };
        if done.is_ok() {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        done
    }

    async fn start(&self, engine: &Engine, input: Value) -> Instance {
        let mut tx = self.db.begin().await.expect("begin");
        let started = engine
            .start(
                &mut tx,
                NewWorkflow {
                    kind: "test.shop",
                    account_id: "acct".into(),
                    subject: uuid::Uuid::now_v7().to_string(),
                    started_by: "test".into(),
                    input,
                },
            )
            .await
            .expect("start");
        tx.commit().await.expect("commit");
        started
    }

    async fn get(&self, engine: &Engine, id: &str) -> Instance {
        engine.get(id).await.expect("get").expect("exists")
    }

    async fn remote_labels(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT label FROM remote_effects WHERE workflow_id = $1 ORDER BY label")
            .bind(id)
            .fetch_all(self.db.pool())
            .await
            .expect("remote effects")
    }

    async fn local_labels(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT label FROM local_effects WHERE workflow_id = $1 ORDER BY label")
            .bind(id)
            .fetch_all(self.db.pool())
            .await
            .expect("local effects")
    }

    /// On PostgreSQL, whether the workflow's final row version was written by the same
    /// transaction as its record of `step` in `direction` (both rows carry the writer's xid).
    /// SQLite has no such witness: `None`.
    async fn ended_with_step(&self, id: &str, step: i64, direction: &str) -> Option<bool> {
        if self.db.backend() != Backend::Postgres {
            return None;
        }
        let ended: String = sqlx::query_scalar("SELECT xmin::text FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await
            .expect("workflow xmin");
        let recorded: String = sqlx::query_scalar(
            "SELECT xmin::text FROM workflow_steps WHERE workflow_id = $1 AND step = $2 AND direction = $3",
        )
        .bind(id)
        .bind(step)
        .bind(direction)
        .fetch_one(self.db.pool())
        .await
        .expect("step xmin");
        Some(ended == recorded)
    }

    async fn recorded(&self, id: &str) -> Vec<(i64, String)> {
        sqlx::query_as("SELECT step, direction FROM workflow_steps WHERE workflow_id = $1 ORDER BY recorded_at_ms, direction DESC, step")
            .bind(id)
            .fetch_all(self.db.pool())
            .await
            .expect("steps")
    }
}

async fn prepare(db: Database) -> Harness {
    db.migrate(&[EFFECTS, MIGRATIONS[0], MIGRATIONS[1], MIGRATIONS[2]]).await.expect("migrate");
    *DB.lock().expect("db") = Some(db.clone());
    Harness { db, clock: Arc::new(ManualClock::starting_at(START_MS)) }
}

/// Runs a scenario on SQLite and on PostgreSQL, one after the other (the steps reach the
/// database through a global).
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let _serial = SERIAL.lock().await;
                let dir = tempfile::tempdir().expect("tempdir");
                let url = Database::sqlite_url(dir.path(), "workflow");
                let db = Database::connect(&url, 1).await.expect("sqlite");
                scenarios::$name(prepare(db).await).await;
                if let Some(fresh) = FreshDatabase::create().await {
                    let db = Database::connect(&fresh.url, 16).await.expect("postgres");
                    scenarios::$name(prepare(db.clone()).await).await;
                    db.close().await;
                    fresh.drop_database().await;
                }
            }
        )+
    };
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every line the engine logs in this test binary, as JSON, for the scenarios that check what
/// an operator would read (each picks its own workflow's lines by id).
static LOGGED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Logged;

impl std::io::Write for Logged {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `(level, attempt, message)` of each retry line logged for workflow `id`.
fn retry_lines(id: &str) -> Vec<(String, i64, String)> {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = json_subscriber::fmt().with_writer(|| Logged).with_max_level(tracing::Level::INFO).try_init();
    });
    let logged = LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    String::from_utf8_lossy(&logged)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["fields"]["id"] == id && line["fields"]["message"].as_str().is_some_and(|m| m.contains("retry"))
        })
        .map(|line| {
            let level = line["level"].as_str().unwrap_or_default().to_owned();
            (
                level,
                line["fields"]["attempt"].as_i64().unwrap_or(-1),
                line["fields"]["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

on_both_backends!(
    steps_run_in_order_once_and_the_result_is_kept,
    a_rolled_back_start_leaves_nothing_and_one_subject_runs_one_workflow,
    a_refusal_before_the_pivot_undoes_completed_steps_in_reverse,
    a_refusal_after_the_pivot_fails_forward_without_undoing,
    transient_errors_retry_with_growing_backoff_until_the_outage_ends,
    retries_are_logged_at_info_then_warn_and_at_most_once_a_period,
    a_timer_holds_the_step_until_its_instant,
    a_crash_after_any_step_resumes_elsewhere_without_a_second_effect,
    a_paused_worker_whose_lease_expired_cannot_write,
    concurrent_workers_never_run_a_step_twice,
    finished_workflows_are_pruned_after_retention_and_unfinished_ones_never,
    a_step_failing_past_its_retry_window_fails_and_an_operator_retry_finishes_it_once,
    a_retry_is_refused_once_the_request_ids_may_be_forgotten_and_for_anything_not_failed,
    a_failed_workflow_resolved_by_an_operator_stays_closed,
    a_cancel_undoes_the_steps_done_at_the_next_step_boundary,
    a_cancel_is_refused_past_the_point_of_no_return,
    a_cancel_while_a_remote_point_of_no_return_runs_is_refused,
    a_cancel_while_a_local_point_of_no_return_runs_wins,
    a_leased_start_is_driven_by_its_starter_without_a_claim,
    a_leased_start_whose_starter_never_drove_it_is_claimed_after_the_lease,
);

mod scenarios {
    use super::*;

    fn shop_order(subject: &str) -> NewWorkflow {
        NewWorkflow {
            kind: "test.shop",
            account_id: "acct".into(),
            subject: subject.into(),
            started_by: "test".into(),
            input: json!({}),
        }
    }

    pub async fn a_leased_start_is_driven_by_its_starter_without_a_claim(h: Harness) {
        let (engine, other) = (h.engine("w1", Shop::plain(), None), h.engine("w2", Shop::plain(), None));
        let mut tx = h.db.begin().await.expect("begin");
        let rolled_back = engine.start_leased(&mut tx, shop_order("order-1")).await.expect("start");
        tx.rollback().await.expect("rollback");
        assert!(engine.get(&rolled_back.instance().id).await.expect("get").is_none());
        drop(rolled_back);

        let mut tx = h.db.begin().await.expect("begin");
        let started = engine.start_leased(&mut tx, shop_order("order-1")).await.expect("start");
        tx.commit().await.expect("commit");
        let id = started.instance().id.clone();
        assert_eq!(other.drain().await.expect("drain"), 0, "leased to its starter from the first commit");
        engine.drive_started(started);
        let done = engine.wait_final(&id, Duration::from_secs(20)).await.expect("wait").expect("exists");
        assert_eq!(done.state, State::Completed);
        assert_eq!(done.lease_token, 1, "no claim was made: the start's lease drove it");
        assert_eq!(h.remote_labels(&id).await, ["notify", "reserve", "ship"]);
        assert_eq!(h.local_labels(&id).await, ["charge"]);
        assert_eq!(h.recorded(&id).await.len(), 4);
        assert_ne!(h.ended_with_step(&id, 3, "forward").await, Some(false));
    }

    pub async fn a_leased_start_whose_starter_never_drove_it_is_claimed_after_the_lease(h: Harness) {
        let (engine, other) = (h.engine("w1", Shop::plain(), None), h.engine("w2", Shop::plain(), None));
        let mut tx = h.db.begin().await.expect("begin");
        let started = engine.start_leased(&mut tx, shop_order("order-2")).await.expect("start");
        tx.commit().await.expect("commit");
        let id = started.instance().id.clone();
        // The starter stops between its commit and driving the workflow.
        drop(started);
        assert_eq!(other.drain().await.expect("drain"), 0);
        h.clock.advance_ms(LEASE.as_millis() as i64);
        assert_eq!(other.drain().await.expect("drain"), 1, "the lease ran out, so another worker claims it");
        let done = h.get(&other, &id).await;
        assert_eq!(done.state, State::Completed);
        assert_eq!(h.remote_labels(&id).await, ["notify", "reserve", "ship"]);
    }

    pub async fn steps_run_in_order_once_and_the_result_is_kept(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let started = h.start(&engine, json!({})).await;
        assert_eq!(started.state, State::Running);
        assert_eq!(engine.drain().await.expect("drain"), 1);
        let done = h.get(&engine, &started.id).await;
        assert_eq!(done.state, State::Completed);
        assert_eq!(done.result, Some(json!({ "shipped": true })));
        assert_eq!(done.cursor, 4);
        assert!(done.finished_at_ms.is_some());
        assert_eq!(h.remote_labels(&started.id).await, ["notify", "reserve", "ship"]);
        assert_eq!(h.local_labels(&started.id).await, ["charge"]);
        let recorded = h.recorded(&started.id).await;
        let forward: Vec<i64> = recorded.iter().map(|(s, _)| *s).collect();
        assert_eq!(forward, [0, 1, 2, 3]);
        assert!(recorded.iter().all(|(_, d)| d == "forward"));
        let listed = engine.list(&ListFilter { state: Some(State::Completed), ..Default::default() }, None, 10).await;
        assert!(listed.expect("list").iter().any(|i| i.id == started.id));
        let metrics = engine.metrics();
        assert_eq!((metrics.started, metrics.completed, metrics.steps_completed), (1, 1, 4));
        assert_ne!(h.ended_with_step(&started.id, 3, "forward").await, Some(false), "the last step ends it");
        assert_ne!(
            h.ended_with_step(&started.id, 2, "forward").await,
            Some(false),
            "the remote step before it is recorded in the same commit"
        );
    }

    pub async fn a_rolled_back_start_leaves_nothing_and_one_subject_runs_one_workflow(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let new = |subject: &str| NewWorkflow {
            kind: "test.shop",
            account_id: "acct".into(),
            subject: subject.into(),
            started_by: "test".into(),
            input: json!({}),
        };
        let mut tx = h.db.begin().await.expect("begin");
        let rolled_back = engine.start(&mut tx, new("user-1")).await.expect("start");
        tx.rollback().await.expect("rollback");
        assert!(engine.get(&rolled_back.id).await.expect("get").is_none(), "the start went with the rollback");
        assert_eq!(engine.drain().await.expect("drain"), 0);

        let mut tx = h.db.begin().await.expect("begin");
        let first = engine.start(&mut tx, new("user-1")).await.expect("start");
        tx.commit().await.expect("commit");
        let mut tx = h.db.begin().await.expect("begin");
        match engine.start(&mut tx, new("user-1")).await {
            Err(StartError::Busy { operation_id, .. }) => assert_eq!(operation_id, first.id),
            other => panic!("expected Busy, got {other:?}"),
        }
        tx.rollback().await.expect("rollback");
        engine.drain().await.expect("drain");
        let mut tx = h.db.begin().await.expect("begin");
        engine.start(&mut tx, new("user-1")).await.expect("a finished workflow frees its subject");
        tx.commit().await.expect("commit");
    }

    pub async fn a_refusal_before_the_pivot_undoes_completed_steps_in_reverse(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let at_charge = h.start(&engine, json!({ "refuse_at": 1 })).await;
        let at_reserve = h.start(&engine, json!({ "refuse_at": 0 })).await;
        engine.drain().await.expect("drain");

        let undone = h.get(&engine, &at_charge.id).await;
        assert_eq!(undone.state, State::Compensated);
        let failure = undone.failure.expect("failure reported");
        assert_eq!((failure.reason.as_str(), failure.code.as_deref()), ("OUT_OF_STOCK", Some("42")));
        assert_eq!(h.remote_labels(&at_charge.id).await, ["release", "reserve"]);
        assert!(h.local_labels(&at_charge.id).await.is_empty(), "the refused local step left nothing");
        assert_eq!(h.recorded(&at_charge.id).await, [(0, "forward".to_owned()), (0, "compensate".to_owned())]);
        assert_ne!(h.ended_with_step(&at_charge.id, 0, "compensate").await, Some(false), "the last undo ends it");

        let nothing = h.get(&engine, &at_reserve.id).await;
        assert_eq!(nothing.state, State::Compensated);
        assert!(h.remote_labels(&at_reserve.id).await.is_empty());
    }

    pub async fn a_refusal_after_the_pivot_fails_forward_without_undoing(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let started = h.start(&engine, json!({ "refuse_at": 3 })).await;
        engine.drain().await.expect("drain");
        let failed = h.get(&engine, &started.id).await;
        assert_eq!(failed.state, State::Failed);
        assert_eq!(failed.failure.expect("failure").reason, "OUT_OF_STOCK");
        assert_eq!(h.remote_labels(&started.id).await, ["reserve", "ship"], "nothing after the pivot is undone");
        assert_eq!(h.local_labels(&started.id).await, ["charge"]);
    }

    pub async fn transient_errors_retry_with_growing_backoff_until_the_outage_ends(h: Harness) {
        let shop = Shop::plain();
        let engine = h.engine("w1", shop.clone(), None);
        let started = h.start(&engine, json!({})).await;
        shop.outage.store(3, Ordering::SeqCst);
        let mut delays = Vec::new();
        for attempt in 1..=3 {
            engine.drain().await.expect("drain");
            let waiting = h.get(&engine, &started.id).await;
            assert_eq!(waiting.state, State::Running);
            assert_eq!(waiting.attempt, attempt);
            assert_eq!(waiting.last_error.as_deref(), Some("connection refused"));
            delays.push(waiting.due_at_ms - h.clock.now_ms());
            assert_eq!(engine.drain().await.expect("drain"), 0, "nothing runs before the backoff is over");
            h.clock.advance_ms(waiting.due_at_ms - h.clock.now_ms());
        }
        assert!(delays[0] >= 50 && delays[0] <= 100, "first retry within [base/2, base]: {delays:?}");
        assert!(delays[2] >= 200 && delays[2] <= 400, "third retry within [2 base, 4 base]: {delays:?}");
        engine.drain().await.expect("drain");
        assert_eq!(h.get(&engine, &started.id).await.state, State::Completed);
        assert_eq!(h.remote_labels(&started.id).await, ["notify", "reserve", "ship"]);
        assert_eq!(engine.metrics().steps_retried, 3);
    }

    /// What an operator reads while a step keeps failing: the first retry at `info`; the many
    /// like it within 10 s, nothing (a line stands for them); from the sixth attempt, `warn`.
    pub async fn retries_are_logged_at_info_then_warn_and_at_most_once_a_period(h: Harness) {
        retry_lines("");
        let shop = Shop::plain();
        let first = h.engine("w1", shop.clone(), None);
        let started = h.start(&first, json!({})).await;
        shop.outage.store(7, Ordering::SeqCst);
        for _ in 1..=5 {
            first.drain().await.expect("drain");
            let waiting = h.get(&first, &started.id).await;
            h.clock.advance_ms(waiting.due_at_ms - h.clock.now_ms());
        }
        assert_eq!(
            retry_lines(&started.id),
            [("INFO".to_owned(), 1, "saga step failed; will retry".to_owned())],
            "five failures within the period, one line"
        );
        // Another replica (its own rate limit) takes over at the sixth attempt.
        let second = h.engine("w2", shop.clone(), None);
        for _ in 6..=7 {
            second.drain().await.expect("drain");
            let waiting = h.get(&second, &started.id).await;
            h.clock.advance_ms(waiting.due_at_ms - h.clock.now_ms());
        }
        second.drain().await.expect("drain");
        assert_eq!(h.get(&second, &started.id).await.state, State::Completed);
        assert_eq!(
            retry_lines(&started.id)[1..],
            [("WARN".to_owned(), 6, "saga step keeps failing; will retry".to_owned())],
            "the sixth attempt warns; the seventh, within the period, is quiet"
        );
    }

    pub async fn a_timer_holds_the_step_until_its_instant(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let at = START_MS + 168 * 3_600_000;
        let started = h.start(&engine, json!({ "notify_at": at })).await;
        engine.drain().await.expect("drain");
        let sleeping = h.get(&engine, &started.id).await;
        assert_eq!((sleeping.state, sleeping.cursor, sleeping.due_at_ms), (State::Running, 3, at));
        h.clock.advance_ms(at - START_MS - 1);
        assert_eq!(engine.drain().await.expect("drain"), 0, "one millisecond early");
        h.clock.advance_ms(1);
        engine.drain().await.expect("drain");
        assert_eq!(h.get(&engine, &started.id).await.state, State::Completed);
    }

    /// Crashes once after the given step (either direction) took effect.
    struct CrashOnce {
        step: usize,
        direction: Direction,
        armed: AtomicBool,
    }

    impl Faults for CrashOnce {
        fn before_step(&self, _: &str, _: usize, _: Direction) -> Option<StepError> {
            None
        }
        fn crash_after_step(&self, _: &str, step: usize, direction: Direction) -> bool {
            step == self.step && direction == self.direction && self.armed.swap(false, Ordering::SeqCst)
        }
    }

    pub async fn a_crash_after_any_step_resumes_elsewhere_without_a_second_effect(h: Harness) {
        for step in 0..4 {
            let crash = Arc::new(CrashOnce { step, direction: Direction::Forward, armed: AtomicBool::new(true) });
            let doomed = h.engine("doomed", Shop::plain(), Some(crash.clone()));
            let survivor = h.engine("survivor", Shop::plain(), None);
            let started = h.start(&doomed, json!({})).await;
            doomed.drain().await.expect("drain");
            assert!(!crash.armed.load(Ordering::SeqCst), "the crash after step {step} happened");
            assert_eq!(survivor.drain().await.expect("drain"), 0, "the dead worker's lease still holds");
            h.clock.advance_ms(LEASE.as_millis() as i64);
            survivor.drain().await.expect("drain");
            assert_eq!(h.get(&survivor, &started.id).await.state, State::Completed, "crash after step {step}");
            assert_eq!(h.remote_labels(&started.id).await, ["notify", "reserve", "ship"], "crash after step {step}");
            assert_eq!(h.local_labels(&started.id).await, ["charge"], "crash after step {step}");
        }
        // And while compensating: refused at `charge`, the worker dies after undoing `reserve`.
        let crash = Arc::new(CrashOnce { step: 0, direction: Direction::Compensate, armed: AtomicBool::new(true) });
        let doomed = h.engine("doomed", Shop::plain(), Some(crash.clone()));
        let survivor = h.engine("survivor", Shop::plain(), None);
        let started = h.start(&doomed, json!({ "refuse_at": 1 })).await;
        doomed.drain().await.expect("drain");
        assert!(!crash.armed.load(Ordering::SeqCst));
        h.clock.advance_ms(LEASE.as_millis() as i64);
        survivor.drain().await.expect("drain");
        assert_eq!(h.get(&survivor, &started.id).await.state, State::Compensated);
        assert_eq!(h.remote_labels(&started.id).await, ["release", "reserve"], "release ran once");
    }

    pub async fn a_paused_worker_whose_lease_expired_cannot_write(h: Harness) {
        let gate = Arc::new(Gate::default());
        let paused_shop = Shop::gated(gate.clone(), true);
        let paused = h.engine("paused", paused_shop, None);
        let other = h.engine("other", Shop::plain(), None);
        let started = h.start(&paused, json!({})).await;
        let run = tokio::spawn({
            let paused = paused.clone();
            async move { paused.drain().await }
        });
        gate.entered.notified().await;
        h.clock.advance_ms(LEASE.as_millis() as i64 + 1);
        other.drain().await.expect("drain");
        assert_eq!(h.get(&other, &started.id).await.state, State::Completed);
        gate.open.notify_one();
        run.await.expect("join").expect("drain");
        assert_eq!(paused.metrics().fenced, 1, "the paused worker's write was refused");
        assert_eq!(h.local_labels(&started.id).await, ["charge"], "its local write was rolled back");
        assert_eq!(h.remote_labels(&started.id).await, ["notify", "reserve", "ship"]);
        let done = h.get(&other, &started.id).await;
        assert_eq!((done.state, done.cursor), (State::Completed, 4), "the takeover's record stands");
    }

    pub async fn concurrent_workers_never_run_a_step_twice(h: Harness) {
        let workers: Vec<Engine> = (0..3).map(|n| h.engine(&format!("w{n}"), Shop::plain(), None)).collect();
        let mut ids = Vec::new();
        for n in 0..30 {
            let input = if n % 5 == 0 { json!({ "refuse_at": 1 }) } else { json!({}) };
            ids.push(h.start(&workers[0], input).await.id);
        }
        let runs: Vec<_> = workers
            .iter()
            .map(|w| {
                let w = w.clone();
                tokio::spawn(async move { w.drain().await })
            })
            .collect();
        let mut claims = 0;
        for run in runs {
            claims += run.await.expect("join").expect("drain");
        }
        assert_eq!(claims, 30, "each workflow claimed once");
        for (n, id) in ids.iter().enumerate() {
            let instance = h.get(&workers[0], id).await;
            if n % 5 == 0 {
                assert_eq!(instance.state, State::Compensated);
                assert_eq!(h.remote_labels(id).await, ["release", "reserve"]);
            } else {
                assert_eq!(instance.state, State::Completed);
                assert_eq!(h.local_labels(id).await, ["charge"]);
            }
        }
        let fenced: u64 = workers.iter().map(|w| w.metrics().fenced).sum();
        assert_eq!(fenced, 0);
        // Runs unattended too: the worker loop picks up a new start after a wake-up.
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let looping = tokio::spawn({
            let w = workers[1].clone();
            async move { w.run(shutdown).await }
        });
        let late = h.start(&workers[0], json!({})).await;
        workers[1].wake();
        let finished = workers[0].wait_final(&late.id, Duration::from_secs(10)).await.expect("wait").expect("exists");
        assert_eq!(finished.state, State::Completed);
        stop.send(true).expect("stop");
        looping.await.expect("worker stops on shutdown");
    }

    pub async fn finished_workflows_are_pruned_after_retention_and_unfinished_ones_never(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let done = h.start(&engine, json!({})).await;
        engine.drain().await.expect("drain");
        let waiting = h.start(&engine, json!({ "notify_at": START_MS + 1_000_000 })).await;
        engine.drain().await.expect("drain");
        assert_eq!(prune_finished(&h.db, START_MS).await.expect("prune"), 0, "nothing finished before now");
        h.clock.advance_ms(2_000_000);
        assert_eq!(prune_finished(&h.db, h.clock.now_ms()).await.expect("prune"), 1);
        assert!(engine.get(&done.id).await.expect("get").is_none());
        assert!(h.recorded(&done.id).await.is_empty(), "its step records went with it");
        assert!(engine.get(&waiting.id).await.expect("get").is_some(), "an unfinished one stays");
    }

    /// Drains and moves the clock to each retry until the instance is final.
    async fn retry_until_final(h: &Harness, engine: &Engine, id: &str) -> Vec<i64> {
        let mut attempts_at = Vec::new();
        loop {
            attempts_at.push(h.clock.now_ms());
            engine.drain().await.expect("drain");
            let now = h.get(engine, id).await;
            if now.state.is_final() {
                return attempts_at;
            }
            h.clock.advance_ms((now.due_at_ms - h.clock.now_ms()).max(1));
        }
    }

    pub async fn a_step_failing_past_its_retry_window_fails_and_an_operator_retry_finishes_it_once(h: Harness) {
        let shop = Shop::plain();
        let engine = h.engine("w1", shop.clone(), None);
        let started = h.start(&engine, json!({})).await;
        shop.outage.store(usize::MAX, Ordering::SeqCst);
        let attempts_at = retry_until_final(&h, &engine, &started.id).await;
        let failed = h.get(&engine, &started.id).await;
        assert_eq!((failed.state, failed.failed_from), (State::Failed, Some(State::Running)));
        let failure = failed.failure.expect("failure");
        assert_eq!(failure.reason, "STEP_RETRIES_EXHAUSTED");
        assert!(failure.message.contains("reserve"), "{}", failure.message);
        assert!(h.remote_labels(&started.id).await.is_empty(), "nothing was undone or done");
        // Automatic attempts stayed within the horizon licensing's retention is derived from.
        let retry = roster_platform::saga_retry::SagaRetry { window: WINDOW, ..engine_retry() };
        let last = *attempts_at.last().expect("attempts");
        assert!(last - START_MS >= WINDOW.as_millis() as i64, "it retried for the whole window");
        assert!(last - START_MS <= retry.horizon().as_millis() as i64, "and not past the horizon");

        shop.outage.store(0, Ordering::SeqCst);
        let id = started.id.clone();
        let resumed = h.control(&engine, &id, Act::Retry).await.expect("retry");
        assert_eq!((resumed.state, resumed.cursor, resumed.attempt), (State::Running, 0, 0));
        assert!(resumed.failure.is_none() && resumed.finished_at_ms.is_none());
        engine.drain().await.expect("drain");
        assert_eq!(h.get(&engine, &started.id).await.state, State::Completed);
        assert_eq!(h.remote_labels(&started.id).await, ["notify", "reserve", "ship"], "each step once");
    }

    fn engine_retry() -> roster_platform::saga_retry::SagaRetry {
        roster_platform::saga_retry::SagaRetry {
            lease: LEASE,
            window: WINDOW,
            backoff: Backoff { base: Duration::from_millis(100), max: Duration::from_secs(5) },
        }
    }

    pub async fn a_retry_is_refused_once_the_request_ids_may_be_forgotten_and_for_anything_not_failed(h: Harness) {
        let shop = Shop::plain();
        let engine = h.engine("w1", shop.clone(), None);
        let done = h.start(&engine, json!({})).await;
        engine.drain().await.expect("drain");
        let id = done.id.clone();
        match h.control(&engine, &id, Act::Retry).await {
            Err(ControlError::NotFailed(State::Completed)) => {}
            other => panic!("a completed workflow is not retried: {other:?}"),
        }
        let missing = uuid::Uuid::now_v7().to_string();
        assert!(matches!(h.control(&engine, &missing, Act::Retry).await, Err(ControlError::NotFound)));

        let stuck = h.start(&engine, json!({ "refuse_at": 3 })).await;
        engine.drain().await.expect("drain");
        let retention = engine_retry().idempotency_retention().as_millis() as i64;
        let step_started = h.get(&engine, &stuck.id).await.step_started_at_ms;
        h.clock
            .advance_ms(step_started + retention - engine_retry().horizon().as_millis() as i64 + 1 - h.clock.now_ms());
        let id = stuck.id.clone();
        match h.control(&engine, &id, Act::Retry).await {
            Err(ControlError::RetryTooLate { step, .. }) => assert_eq!(step, "notify"),
            other => panic!("too late to retry safely: {other:?}"),
        }
        assert_eq!(h.get(&engine, &stuck.id).await.state, State::Failed, "a refused retry changes nothing");
    }

    pub async fn a_failed_workflow_resolved_by_an_operator_stays_closed(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let running = h.start(&engine, json!({ "notify_at": START_MS + 60_000 })).await;
        engine.drain().await.expect("drain");
        let id = running.id.clone();
        match h.control(&engine, &id, Act::Resolve("note")).await {
            Err(ControlError::NotFailed(State::Running)) => {}
            other => panic!("only a failed workflow is resolved: {other:?}"),
        }
        let failed = h.start(&engine, json!({ "refuse_at": 3 })).await;
        engine.drain().await.expect("drain");
        let id = failed.id.clone();
        let resolved = h.control(&engine, &id, Act::Resolve("shipped by hand, ticket 7")).await.expect("resolve");
        assert_eq!(resolved.state, State::Resolved);
        let resolution = resolved.resolution.expect("resolution");
        assert_eq!((resolution.note.as_str(), resolution.by.as_str()), ("shipped by hand, ticket 7", "operator:sam"));
        assert_eq!(resolved.failure.expect("the failure stays on record").reason, "OUT_OF_STOCK");
        assert!(resolved.state.is_final());
        match h.control(&engine, &id, Act::Retry).await {
            Err(ControlError::NotFailed(State::Resolved)) => {}
            other => panic!("a resolved workflow is closed: {other:?}"),
        }
        assert_eq!(engine.drain().await.expect("drain"), 0, "nothing runs it again");
    }

    pub async fn a_cancel_undoes_the_steps_done_at_the_next_step_boundary(h: Harness) {
        let shop = Shop::plain();
        let engine = h.engine("w1", shop.clone(), None);
        // Before anything ran: nothing to undo.
        let fresh = h.start(&engine, json!({})).await;
        let id = fresh.id.clone();
        let asked = h.control(&engine, &id, Act::Cancel("operator:sam")).await.expect("cancel");
        assert_eq!(asked.cancel_requested_by.as_deref(), Some("operator:sam"));
        engine.drain().await.expect("drain");
        let cancelled = h.get(&engine, &fresh.id).await;
        assert_eq!(cancelled.state, State::Compensated);
        assert_eq!(cancelled.failure.expect("failure").reason, "OPERATION_CANCELLED");
        assert!(h.remote_labels(&fresh.id).await.is_empty());

        // While its first step is being retried: that step is seen through (it may already
        // have taken effect), then undone.
        let retrying = h.start(&engine, json!({})).await;
        shop.outage.store(1, Ordering::SeqCst);
        engine.drain().await.expect("drain");
        assert_eq!(h.get(&engine, &retrying.id).await.attempt, 1);
        let id = retrying.id.clone();
        h.control(&engine, &id, Act::Cancel("user:u1")).await.expect("cancel");
        let again = h.control(&engine, &id, Act::Cancel("operator:sam")).await.expect("again");
        assert_eq!(again.cancel_requested_by.as_deref(), Some("user:u1"), "the first asker is kept");
        assert!(again.due_at_ms <= h.clock.now_ms(), "the retry is brought forward");
        engine.drain().await.expect("drain");
        let undone = h.get(&engine, &retrying.id).await;
        assert_eq!(undone.state, State::Compensated);
        assert_eq!(h.remote_labels(&retrying.id).await, ["release", "reserve"]);
        assert!(h.local_labels(&retrying.id).await.is_empty(), "charge never ran");
    }

    pub async fn a_cancel_is_refused_past_the_point_of_no_return(h: Harness) {
        let engine = h.engine("w1", Shop::plain(), None);
        let waiting = h.start(&engine, json!({ "notify_at": START_MS + 60_000 })).await;
        engine.drain().await.expect("drain");
        let id = waiting.id.clone();
        match h.control(&engine, &id, Act::Cancel("operator:sam")).await {
            Err(ControlError::NotCancellable(NotCancellable::PastPointOfNoReturn { step })) => {
                assert_eq!(step, "notify")
            }
            other => panic!("past the pivot: {other:?}"),
        }
        h.clock.advance_ms(60_000);
        engine.drain().await.expect("drain");
        assert_eq!(h.get(&engine, &waiting.id).await.state, State::Completed, "it went on untouched");
        match h.control(&engine, &id, Act::Cancel("operator:sam")).await {
            Err(ControlError::NotCancellable(NotCancellable::Finished(State::Completed))) => {}
            other => panic!("a finished workflow: {other:?}"),
        }
    }

    /// Runs an order until `charge`, the point of no return, is under way, cancels it there,
    /// and lets it finish. Returns the cancel's answer and the order's id.
    async fn cancel_during_charge(
        h: &Harness,
        declares_charge_local: bool,
    ) -> (Result<Instance, ControlError>, String) {
        let gate = Arc::new(Gate::default());
        let engine = h.engine("w1", Shop::gated(gate.clone(), declares_charge_local), None);
        let started = h.start(&engine, json!({})).await;
        let run = tokio::spawn({
            let engine = engine.clone();
            async move { engine.drain().await }
        });
        gate.entered.notified().await;
        let cancelled = h.control(&engine, &started.id, Act::Cancel("operator:sam")).await;
        gate.open.notify_one();
        run.await.expect("join").expect("drain");
        (cancelled, started.id)
    }

    /// The step before a point of no return that is not local is recorded before that step
    /// starts, so a cancel arriving while it runs is refused.
    pub async fn a_cancel_while_a_remote_point_of_no_return_runs_is_refused(h: Harness) {
        let (cancelled, id) = cancel_during_charge(&h, false).await;
        match cancelled {
            Err(ControlError::NotCancellable(NotCancellable::PastPointOfNoReturn { step })) => {
                assert_eq!(step, "charge")
            }
            other => panic!("the point of no return is running: {other:?}"),
        }
        assert_eq!(h.get(&h.engine("w2", Shop::plain(), None), &id).await.state, State::Completed);
        assert_eq!(h.remote_labels(&id).await, ["notify", "reserve", "ship"]);
        assert_eq!(h.local_labels(&id).await, ["charge"]);
    }

    /// A local point of no return runs with the step before it unrecorded; a cancel arriving
    /// meanwhile wins: the step's own transaction sees it and rolls back, and the steps before
    /// it are undone.
    pub async fn a_cancel_while_a_local_point_of_no_return_runs_wins(h: Harness) {
        let (cancelled, id) = cancel_during_charge(&h, true).await;
        assert!(cancelled.is_ok(), "{cancelled:?}");
        let done = h.get(&h.engine("w2", Shop::plain(), None), &id).await;
        assert_eq!(done.state, State::Compensated);
        assert_eq!(done.failure.map(|f| f.reason).as_deref(), Some("OPERATION_CANCELLED"));
        assert!(h.local_labels(&id).await.is_empty(), "the charge was rolled back");
        assert_eq!(h.remote_labels(&id).await, ["release", "reserve"]);
    }
}

/// PostgreSQL `NOTIFY` wakes another replica's idle worker: with a one-minute poll, the
/// workflow still runs at once when it is started elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_on_one_replica_wakes_the_others_through_notify() {
    let _serial = SERIAL.lock().await;
    let Some(fresh) = FreshDatabase::create().await else { return };
    let db = Database::connect(&fresh.url, 8).await.expect("postgres");
    let h = prepare(db.clone()).await;
    let starter = h.engine("starter", Shop::plain(), None);
    let mut config = EngineConfig::new("listener");
    config.poll_interval = Duration::from_secs(60);
    config.listen_url = Some(fresh.url.clone());
    let clock: SharedClock = h.clock.clone();
    let listener = Engine::new(h.db.clone(), clock, config, vec![Shop::plain()]);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn({
        let listener = listener.clone();
        async move { listener.run(shutdown).await }
    });
    // Let the worker go idle (its first poll finds nothing) and its LISTEN connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = h.start(&starter, json!({})).await;
    let finished = starter.wait_final(&started.id, Duration::from_secs(20)).await.expect("wait").expect("exists");
    assert_eq!(finished.state, State::Completed, "woken long before the next poll");
    assert_eq!(listener.metrics().completed, 1, "the listening replica ran it");
    stop.send(true).expect("stop");
    worker.await.expect("worker stops");
    db.close().await;
    fresh.drop_database().await;
}
