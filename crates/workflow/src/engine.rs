//! The engine: starting workflows inside a caller's transaction, the worker loop that claims
//! and drives them, and waiting for an instance to change.

use roster_platform::stored_text::StoredText;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use roster_platform::clock::SharedClock;
use roster_platform::db::{Backend, Conn, Database, is_unique_violation};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, broadcast, watch};
use tracing::{debug, info, warn};

use crate::metrics::{Event, Metrics, MetricsSnapshot};
use crate::model::{Direction, Failure, Instance, ListFilter, NewWorkflow, State};
use crate::step::{Outcome, StepCtx, StepError, Workflow};
use crate::store::{self, Advance, Fenced, Start};
use roster_platform::saga_retry::SagaRetry;

/// Test hooks for injecting failures at a step. Production passes none.
pub trait Faults: Send + Sync {
    /// An error returned in place of the step's own answer, without running it.
    fn before_step(&self, kind: &str, step: usize, direction: Direction) -> Option<StepError>;
    /// True to simulate the worker dying after the step took effect but before its result was
    /// recorded: the step's transaction is rolled back and the lease is left to expire.
    fn crash_after_step(&self, kind: &str, step: usize, direction: Direction) -> bool;
}

#[derive(Clone)]
pub struct EngineConfig {
    /// Names this worker in leases; unique per process.
    pub worker_id: String,
    /// The lease (how long a claim lasts without progress; every recorded step renews it, so
    /// it only needs to outlast one step), the backoff between attempts, and how long a step
    /// is retried before the workflow fails for an operator to look at.
    pub retry: SagaRetry,
    /// The fallback wake-up when no notification arrives.
    pub poll_interval: Duration,
    /// Workflows driven at once by this worker.
    pub concurrency: usize,
    /// A PostgreSQL URL to `LISTEN` on, so a workflow started on another replica is picked
    /// up at once rather than at the next poll.
    pub listen_url: Option<String>,
    pub faults: Option<Arc<dyn Faults>>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("worker_id", &self.worker_id)
            .field("retry", &self.retry)
            .field("poll_interval", &self.poll_interval)
            .field("concurrency", &self.concurrency)
            .field("listen", &self.listen_url.is_some())
            .field("faults", &self.faults.is_some())
            .finish()
    }
}

impl EngineConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            retry: SagaRetry::default(),
            poll_interval: Duration::from_secs(1),
            concurrency: 8,
            listen_url: None,
            faults: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("operation {operation_id} is still working on {subject}")]
    Busy { subject: String, operation_id: String },
    #[error("no workflow of kind {0} is registered")]
    UnknownKind(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// A workflow inserted already leased to this worker (see [`Engine::start_leased`]). It is
/// not `Clone`: one driver per lease.
#[derive(Debug)]
pub struct Started {
    instance: Instance,
}

impl Started {
    pub fn instance(&self) -> &Instance {
        &self.instance
    }
}

/// Steps a driver has done on other services whose records wait for its next write.
struct Unrecorded {
    records: Vec<store::Record>,
    /// When the lease was last renewed: every write renews it.
    lease_renewed_at_ms: i64,
}

impl Unrecorded {
    /// The records went out with a write at `now`.
    fn recorded(&mut self, now: i64) {
        self.records.clear();
        self.lease_renewed_at_ms = now;
    }
}

/// What the driver does after one step.
enum Next {
    Continue,
    Stop,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

struct Inner {
    db: Database,
    clock: SharedClock,
    config: EngineConfig,
    workflows: HashMap<&'static str, Arc<dyn Workflow>>,
    wake: Notify,
    changes: broadcast::Sender<String>,
    metrics: Metrics,
    stopping: AtomicBool,
    /// One per workflow driven at once on this replica, by the worker loop or
    /// [`Engine::drive_started`].
    permits: Arc<Semaphore>,
    /// Which retries get a log line: one per saga kind and step every [`RETRY_LOG_PERIOD`], so
    /// an outage that sets thousands of sagas retrying writes a few lines, not thousands.
    retry_log: RetryLog,
}

type RetryLog = governor::RateLimiter<
    (String, &'static str),
    governor::state::keyed::HashMapStateStore<(String, &'static str)>,
    governor::clock::DefaultClock,
>;

const RETRY_LOG_PERIOD: Duration = Duration::from_secs(10);
/// From this attempt on, a step's retries are logged as warnings: a peer that has been away
/// for about a minute (with the default backoff) is worth a look.
const WARN_FROM_ATTEMPT: i64 = 6;

impl Engine {
    pub fn new(db: Database, clock: SharedClock, config: EngineConfig, workflows: Vec<Arc<dyn Workflow>>) -> Self {
        let workflows = workflows.into_iter().map(|w| (w.kind(), w)).collect();
        let (changes, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                db,
                clock,
                workflows,
                wake: Notify::new(),
                changes,
                metrics: Metrics::default(),
                stopping: AtomicBool::new(false),
                permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
                retry_log: governor::RateLimiter::hashmap(
                    governor::Quota::with_period(RETRY_LOG_PERIOD).expect("a period above zero"),
                ),
                config,
            }),
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn workflow(&self, kind: &str) -> Option<&Arc<dyn Workflow>> {
        self.inner.workflows.get(kind)
    }

    pub(crate) fn backend_is_postgres(&self) -> bool {
        self.inner.db.backend() == Backend::Postgres
    }

    /// How long a claim lasts without a recorded step. A step that works for a while (a bulk
    /// operation's pass) must record well within it, or its writes are fenced out.
    pub fn lease(&self) -> Duration {
        self.inner.config.retry.lease
    }

    /// The engine's clock, in ms since the epoch (a test's manual clock, in tests).
    pub fn now_ms(&self) -> i64 {
        self.now()
    }

    fn lease_until(&self) -> i64 {
        self.now() + i64::try_from(self.inner.config.retry.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Where the engine's own reads go: on SQLite, beside the single writer rather than in
    /// its line (each read there held up every account's writes).
    fn reader(&self) -> &sqlx::AnyPool {
        self.inner.db.readers()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Inserts a workflow in the caller's transaction; it runs once that commits, on whichever
    /// worker claims it first. For a starter that will not drive it itself (one running no
    /// worker, or a test that drives with [`Engine::drain`]); a server's own starts use
    /// [`Engine::start_leased`]. Call [`Engine::wake`] after the commit for it to start at once
    /// on this replica.
    pub async fn start(&self, tx: &mut Conn, new: NewWorkflow) -> Result<Instance, StartError> {
        self.insert(tx, new, None).await
    }

    /// [`Engine::start`], with the workflow already leased to this worker in the same insert:
    /// the claim costs no commit of its own. Hand the answer to [`Engine::drive_started`] once
    /// the transaction has committed. If it is dropped instead (the transaction rolled back,
    /// or this process stopped), the lease simply expires and any worker claims it.
    pub async fn start_leased(&self, tx: &mut Conn, new: NewWorkflow) -> Result<Started, StartError> {
        let lease_until_ms = self.lease_until();
        self.insert(tx, new, Some(lease_until_ms)).await.map(|instance| Started { instance })
    }

    async fn insert(
        &self,
        tx: &mut Conn,
        new: NewWorkflow,
        lease_until_ms: Option<i64>,
    ) -> Result<Instance, StartError> {
        let workflow = self.inner.workflows.get(new.kind).ok_or_else(|| StartError::UnknownKind(new.kind.into()))?;
        // Checked first so the usual refusal leaves the caller's transaction usable; the
        // unique index settles a race between two starts.
        if let Some(operation_id) = store::unfinished_on(tx, &new.subject).await? {
            return Err(StartError::Busy { subject: new.subject, operation_id });
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.now();
        let steps = workflow.steps();
        let first_step = steps.first().copied().unwrap_or("done");
        let lease = lease_until_ms.map(|until_ms| store::Lease { owner: &self.inner.config.worker_id, until_ms });
        let trace_parent = roster_platform::traces::current_traceparent();
        let start = Start {
            id: &id,
            new: &new,
            steps_total: steps.len() as i64,
            first_step,
            now_ms: now,
            lease,
            trace_parent: trace_parent.as_deref(),
        };
        store::insert(tx, self.inner.db.backend(), start).await.map_err(|error| {
            if is_unique_violation(&error) {
                StartError::Busy { subject: new.subject.clone(), operation_id: String::new() }
            } else {
                StartError::Db(error)
            }
        })?;
        self.inner.metrics.record(Event::Started);
        Ok(Instance {
            id,
            kind: new.kind.to_owned(),
            account_id: new.account_id,
            subject: new.subject,
            started_by: new.started_by,
            state: State::Running,
            input: new.input,
            cursor: 0,
            steps_total: steps.len() as i64,
            current_step: first_step.to_owned(),
            attempt: 0,
            last_error: None,
            due_at_ms: now,
            lease_token: if lease.is_some() { store::FIRST_LEASE_TOKEN } else { 0 },
            result: None,
            failure: None,
            step_started_at_ms: now,
            retried_at_ms: None,
            failed_from: None,
            cancel_requested_by: None,
            resolution: None,
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: None,
            trace_parent,
        })
    }

    /// Drives a workflow [`Engine::start_leased`] started, now that its transaction has
    /// committed, on a task of its own as soon as this replica has room for it.
    pub fn drive_started(&self, started: Started) {
        self.inner.metrics.record(Event::Claimed);
        let engine = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = engine.inner.permits.clone().acquire_owned().await else { return };
            engine.drive(started.instance).await;
        });
    }

    /// Makes a workflow waiting on a timer due now, in the caller's transaction: what its
    /// step waits for (a decision, say) has happened. Other replicas are woken at commit;
    /// call [`Engine::wake`] after it for this one.
    pub async fn due_now(&self, tx: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
        store::due_now(tx, self.inner.db.backend(), id, self.now()).await
    }

    /// Wakes this replica's worker: something became due.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Tells this replica's watchers that `id` changed outside the worker (an operator's
    /// retry, resolve or cancel, once committed).
    pub fn announce(&self, id: &str) {
        let _ = self.inner.changes.send(id.to_owned());
    }

    /// The database the workflows live in.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    pub async fn get(&self, id: &str) -> Result<Option<Instance>, sqlx::Error> {
        store::get(self.reader(), id).await
    }

    /// The unfinished workflow on `subject`, if any: what [`Engine::start`] would refuse as
    /// busy, for a dry run that must answer as the start would, without starting.
    pub async fn running_on(&self, conn: &mut Conn, subject: &str) -> Result<Option<String>, sqlx::Error> {
        store::unfinished_on(conn, subject).await
    }

    /// Those of `ids` that exist, read in one query (at most a few hundred ids).
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Instance>, sqlx::Error> {
        store::get_many(self.reader(), ids).await
    }

    pub async fn list(
        &self,
        filter: &ListFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Instance>, sqlx::Error> {
        store::list(self.reader(), filter, before, limit).await
    }

    /// Ids of instances as they change on this replica. Changes made by other replicas are
    /// not announced here; watchers poll as well.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.changes.subscribe()
    }

    /// The instance once it is final, or once a step of it failed and waits to be retried (an
    /// outage of the other service is not the caller's to wait out), or as it stands when
    /// `within` runs out.
    pub async fn wait_final(&self, id: &str, within: Duration) -> Result<Option<Instance>, sqlx::Error> {
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let current = self.get(id).await?;
            let settled = |i: &Instance| i.state.is_final() || i.attempt > 0;
            if current.as_ref().is_none_or(settled) || tokio::time::Instant::now() >= deadline {
                return Ok(current);
            }
            let poll = deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
            Self::change_of(&mut changes, id, poll).await;
        }
    }

    /// Returns when `id` is announced on `changes` (from [`Engine::subscribe`]), when
    /// announcements were missed, or at `until`, whichever is first. Other instances' changes
    /// are passed over, so a waiter re-reads only when its own instance may have moved.
    pub async fn change_of(changes: &mut broadcast::Receiver<String>, id: &str, until: tokio::time::Instant) {
        let own = async {
            loop {
                match changes.recv().await {
                    Ok(changed) if changed != id => {}
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout_at(until, own).await;
    }

    /// Claims and drives due workflows on the calling task until none is due. Returns the
    /// number of claims. For tests and one-shot tools; servers use [`Engine::run`].
    pub async fn drain(&self) -> Result<usize, sqlx::Error> {
        let mut claims = 0;
        while let Some(instance) = self.claim().await? {
            claims += 1;
            self.drive(instance).await;
        }
        Ok(claims)
    }

    /// The worker loop, until `shutdown` turns true. Then it lets running steps finish (up to
    /// the lease), hands its leases back and returns.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let listener = self.inner.config.listen_url.clone().map(|url| tokio::spawn(self.clone().listen(url)));
        let concurrency = self.inner.config.concurrency.max(1);
        let permits = self.inner.permits.clone();
        info!(worker = %self.inner.config.worker_id, concurrency, "workflow worker started");
        let claims = roster_platform::incident::Incident::new("claiming workflows");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = shutdown.changed() => break,
            };
            match claims.note(self.claim().await) {
                Ok(Some(instance)) => {
                    let engine = self.clone();
                    tokio::spawn(async move {
                        engine.drive(instance).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    self.idle(&mut shutdown).await;
                }
                // Logged once per outage by `claims`; retried after the poll interval.
                Err(_) => {
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(self.inner.config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(self.inner.config.retry.lease, permits.acquire_many(all)).await;
        let released =
            async { store::release_leases(&mut *self.inner.db.writer().await?, &self.inner.config.worker_id).await };
        match released.await {
            Ok(released) => {
                let m = self.metrics();
                info!(
                    released,
                    started = m.started,
                    claimed = m.claimed,
                    steps_completed = m.steps_completed,
                    steps_retried = m.steps_retried,
                    compensations = m.compensations,
                    completed = m.completed,
                    compensated = m.compensated,
                    failed = m.failed,
                    fenced = m.fenced,
                    "workflow worker stopped"
                );
            }
            Err(error) => warn!(%error, "workflow worker stopped without releasing its leases; they will expire"),
        }
        if let Some(listener) = listener {
            listener.abort();
        }
    }

    /// Sleeps until a wake-up, the next due instant, the poll interval, or shutdown.
    async fn idle(&self, shutdown: &mut watch::Receiver<bool>) {
        let poll = self.inner.config.poll_interval;
        let until_due = match store::next_due(self.reader()).await {
            Ok(Some(due)) => Duration::from_millis(u64::try_from(due - self.now()).unwrap_or(0).max(5)),
            _ => poll,
        };
        tokio::select! {
            () = self.inner.wake.notified() => {}
            () = tokio::time::sleep(until_due.min(poll)) => {}
            _ = shutdown.changed() => {}
        }
    }

    async fn listen(self, url: String) {
        // Polling covers for lost notifications; an outage is logged once, and its end.
        let listening = roster_platform::incident::Incident::new("listening for workflow notifications");
        loop {
            let connected = sqlx::postgres::PgListener::connect(&url).await;
            if let Ok(mut listener) = listening.note(connected)
                && listening.note(listener.listen(store::CHANNEL).await).is_ok()
            {
                loop {
                    match listener.recv().await {
                        Ok(_) => self.inner.wake.notify_one(),
                        Err(error) => {
                            listening.failed(&error);
                            break;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    async fn claim(&self) -> Result<Option<Instance>, sqlx::Error> {
        let backend: Backend = self.inner.db.backend();
        let claimed = store::claim(
            &mut *self.inner.db.writer().await?,
            backend,
            &self.inner.config.worker_id,
            self.now(),
            self.lease_until(),
        )
        .await?;
        if claimed.is_some() {
            self.inner.metrics.record(Event::Claimed);
        }
        Ok(claimed)
    }

    /// Runs one claimed instance step by step until it is final, parked, or fenced out, its
    /// writes in its account's line at SQLite's writer (`roster_platform::fair`).
    async fn drive(&self, instance: Instance) {
        let account = instance.account_id.clone();
        roster_platform::fair::in_lane(&account, self.drive_steps(instance)).await;
    }

    async fn drive_steps(&self, mut instance: Instance) {
        let Some(workflow) = self.inner.workflows.get(instance.kind.as_str()).cloned() else {
            // A newer replica started a kind this one does not know: leave it to them.
            warn!(id = %instance.id, kind = %instance.kind, "unknown workflow kind; released for another worker");
            let retry_at = self.now() + 60_000;
            let (id, token, attempt, now) = (&instance.id, instance.lease_token, instance.attempt, self.now());
            let parked = async {
                store::park(&mut *self.inner.db.writer().await?, id, token, retry_at, attempt, None, now).await
            };
            let _ = parked.await;
            return;
        };
        let mut unrecorded = Unrecorded { records: Vec::new(), lease_renewed_at_ms: self.now() };
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) && !instance.state.is_final() {
                let (at, attempt, error) = (self.now(), instance.attempt, instance.last_error.clone());
                let _ = self.park(&mut instance, &mut unrecorded, at, attempt, error.as_deref()).await;
                return;
            }
            match self.step(workflow.as_ref(), &mut instance, &mut unrecorded).await {
                Ok(Next::Continue) => {}
                Ok(Next::Stop) => break,
                Err(error) => {
                    warn!(id = %instance.id, %error, "workflow bookkeeping failed; the lease will expire and it resumes");
                    break;
                }
            }
        }
        let _ = self.inner.changes.send(instance.id.clone());
    }

    async fn context(
        &self,
        instance: &Instance,
        unrecorded: &Unrecorded,
        step: usize,
        direction: Direction,
    ) -> Result<StepCtx, sqlx::Error> {
        let total = usize::try_from(instance.steps_total).unwrap_or(0);
        let mut outputs = store::outputs(self.reader(), &instance.id, total).await?;
        for record in &unrecorded.records {
            if let Some(slot) = usize::try_from(record.step).ok().and_then(|s| outputs.get_mut(s)) {
                *slot = Some(record.output.clone());
            }
        }
        Ok(StepCtx {
            workflow_id: instance.id.clone(),
            account_id: instance.account_id.clone(),
            now_ms: self.now(),
            step,
            direction,
            input: instance.input.clone(),
            outputs,
            db: self.inner.db.clone(),
            engine: self.clone(),
            tx: std::sync::Mutex::new(None),
        })
    }

    async fn answer(
        &self,
        workflow: &dyn Workflow,
        ctx: &mut StepCtx,
        step: usize,
        direction: Direction,
    ) -> Result<Outcome, StepError> {
        if let Some(injected) =
            self.inner.config.faults.as_ref().and_then(|f| f.before_step(workflow.kind(), step, direction))
        {
            return Err(injected);
        }
        match direction {
            Direction::Forward => workflow.run(step, ctx).await,
            Direction::Compensate => workflow.compensate(step, ctx).await,
        }
    }

    fn crashes_after(&self, workflow: &dyn Workflow, step: usize, direction: Direction) -> bool {
        self.inner.config.faults.as_ref().is_some_and(|f| f.crash_after_step(workflow.kind(), step, direction))
    }

    async fn step(
        &self,
        workflow: &dyn Workflow,
        instance: &mut Instance,
        unrecorded: &mut Unrecorded,
    ) -> Result<Next, sqlx::Error> {
        let steps = workflow.steps();
        let cursor = usize::try_from(instance.cursor).unwrap_or(0);
        let pivot = workflow.pivot();
        let (step, direction) = match instance.state {
            State::Running if cursor >= steps.len() => {
                let ctx = self.context(instance, unrecorded, cursor, Direction::Forward).await?;
                let result = workflow.result(&ctx);
                return self.finish(instance, unrecorded, State::Completed, Some(result), None).await;
            }
            State::Compensating if cursor == 0 => {
                let failure = instance.failure.clone();
                return self.finish(instance, unrecorded, State::Compensated, None, failure).await;
            }
            // A cancel is honoured at a step boundary: a step already sent (attempt > 0) may
            // have taken effect, so it is seen through first.
            State::Running if instance.cancel_requested_by.is_some() && instance.attempt == 0 && cursor < pivot => {
                let by = instance.cancel_requested_by.clone().unwrap_or_default();
                let failure = Failure {
                    reason: "OPERATION_CANCELLED".to_owned(),
                    code: None,
                    message: format!("cancelled by {by}; the steps done so far were undone"),
                };
                return self.compensate_from(instance, unrecorded, failure).await;
            }
            State::Running => (cursor, Direction::Forward),
            State::Compensating => (cursor - 1, Direction::Compensate),
            State::Completed | State::Compensated | State::Failed | State::Resolved => return Ok(Next::Stop),
        };
        let mut ctx = self.context(instance, unrecorded, step, direction).await?;
        // A span of the trace of the RPC that started the workflow, whichever replica runs it.
        let name = format!("{}/{}", workflow.kind(), steps[step]);
        let span = tracing::info_span!(
            "saga_step",
            "otel.name" = name.as_str(),
            workflow_id = %instance.id,
            direction = direction.as_str(),
            attempt = instance.attempt,
        );
        roster_platform::traces::set_parent(&span, instance.trace_parent.as_deref());
        let answering = tracing::Instrument::instrument(self.answer(workflow, &mut ctx, step, direction), span);
        let answer = roster_platform::traces::continuing(instance.trace_parent.clone(), answering).await;
        debug!(id = %instance.id, step = steps[step], direction = direction.as_str(), ?answer, "step answered");
        match answer {
            Ok(Outcome::Done(output)) => {
                if self.crashes_after(workflow, step, direction) {
                    return Ok(Next::Stop);
                }
                let (next_state, next_cursor, next_name) = match direction {
                    Direction::Forward => (State::Running, step + 1, steps.get(step + 1).copied().unwrap_or("done")),
                    Direction::Compensate => {
                        (State::Compensating, step, steps.get(step.wrapping_sub(1)).copied().unwrap_or("compensated"))
                    }
                };
                let record = store::Record { step: step as i64, direction, name: steps[step], output };
                let local = ctx.take_tx();
                let now = self.now();
                // A step done on another service is recorded with the next step's commit, so
                // a saga of remote steps commits about once per step in all. Until then a
                // crash loses only the record: the step runs again with the same request id
                // and the other side answers as the first time. Not right before a remote
                // point of no return: the write that moves the cursor onto it is where a
                // cancel is seen (or, once written, refused). A local one sees it itself.
                let last = direction == Direction::Forward && next_cursor == steps.len();
                let point_of_no_return_next = next_cursor + 1 == pivot && !workflow.is_local(next_cursor);
                let defer = local.is_none() && direction == Direction::Forward && !last && !point_of_no_return_next;
                if defer && self.lease_holds(unrecorded, now) {
                    unrecorded.records.push(record);
                    self.inner.metrics.record(Event::StepCompleted);
                    instance.step_started_at_ms = now;
                    instance.cursor = next_cursor as i64;
                    instance.current_step = next_name.to_owned();
                    instance.attempt = 0;
                    instance.last_error = None;
                    return Ok(Next::Continue);
                }
                // The last step (forward, or the last undo) ends the workflow in the same
                // commit that records it.
                let ending = match direction {
                    Direction::Forward if last => {
                        if let Some(slot) = ctx.outputs.get_mut(step) {
                            *slot = Some(record.output.clone());
                        }
                        Some((State::Completed, Some(workflow.result(&ctx)), None))
                    }
                    Direction::Compensate if step == 0 => Some((State::Compensated, None, instance.failure.clone())),
                    _ => None,
                };
                let mut tx = match local {
                    Some(tx) => tx,
                    None => self.inner.db.begin().await?,
                };
                unrecorded.records.push(record);
                let to = (next_state, next_cursor as i64, next_name);
                let advanced = self.record(&mut tx, instance, &unrecorded.records, to, now).await?;
                let Fenced::Written(cancel_requested_by) = advanced else {
                    tx.rollback().await?;
                    return Ok(self.fenced(instance));
                };
                let point_of_no_return = direction == Direction::Forward && step + 1 == pivot;
                if point_of_no_return && workflow.is_local(step) && cancel_requested_by.is_some() {
                    // A cancel came while the steps before were unrecorded: it wins, and this
                    // step's writes go with the rollback, so it never took effect.
                    tx.rollback().await?;
                    unrecorded.records.pop();
                    instance.cancel_requested_by = cancel_requested_by;
                    instance.attempt = 0;
                    return Ok(Next::Continue);
                }
                if let Some((state, result, failure)) = &ending {
                    let ended = store::finish(
                        &mut *tx,
                        &instance.id,
                        instance.lease_token,
                        *state,
                        result.as_ref(),
                        failure.as_ref(),
                        now,
                    )
                    .await?;
                    if !ended {
                        tx.rollback().await?;
                        return Ok(self.fenced(instance));
                    }
                }
                tx.commit().await?;
                unrecorded.recorded(now);
                self.inner.metrics.record(Event::StepCompleted);
                if let Some((state, result, failure)) = ending {
                    return Ok(self.ended(instance, state, result, failure, now));
                }
                instance.cancel_requested_by = cancel_requested_by;
                instance.step_started_at_ms = now;
                instance.state = next_state;
                instance.cursor = next_cursor as i64;
                instance.current_step = next_name.to_owned();
                instance.attempt = 0;
                instance.last_error = None;
                let _ = self.inner.changes.send(instance.id.clone());
                Ok(Next::Continue)
            }
            Ok(Outcome::WaitUntil(at)) => {
                // What the step wrote while deciding to wait (a reminder sent, say) commits
                // with the parking, under the lease fence: once, however often it runs.
                let local = ctx.take_tx();
                drop(ctx);
                self.park_in(local, instance, unrecorded, at, 0, None).await
            }
            Err(StepError::Transient(message)) => {
                drop(ctx);
                let window_start = instance.step_started_at_ms.max(instance.retried_at_ms.unwrap_or(0));
                if self.inner.config.retry.window_closed(window_start, self.now()) {
                    // Whether the step took effect is unknown, so neither undoing the steps
                    // before it nor going on is safe: an operator decides.
                    let failure = Failure {
                        reason: "STEP_RETRIES_EXHAUSTED".to_owned(),
                        code: None,
                        message: format!(
                            "step {} kept failing for {} s: {message}",
                            steps[step],
                            self.inner.config.retry.window.as_secs()
                        ),
                    };
                    return self.finish(instance, unrecorded, State::Failed, None, Some(failure)).await;
                }
                let attempt = instance.attempt + 1;
                let delay = self
                    .inner
                    .config
                    .retry
                    .backoff
                    .delay(u32::try_from(attempt - 1).unwrap_or(u32::MAX), &mut rand::thread_rng());
                let due = self.now() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                let parked = self.park(instance, unrecorded, due, attempt, Some(&message)).await?;
                if instance.attempt == attempt {
                    self.inner.metrics.record(Event::StepRetried);
                    self.log_retry(instance, steps[step], attempt, delay, &message);
                }
                Ok(parked)
            }
            Err(StepError::Refused(failure)) => {
                drop(ctx);
                match direction {
                    Direction::Forward if step < pivot => self.compensate_from(instance, unrecorded, failure).await,
                    Direction::Forward => self.finish(instance, unrecorded, State::Failed, None, Some(failure)).await,
                    Direction::Compensate => {
                        let failure = Failure {
                            message: format!("undoing step {} was refused: {}", steps[step], failure.message),
                            ..failure
                        };
                        self.finish(instance, unrecorded, State::Failed, None, Some(failure)).await
                    }
                }
            }
        }
    }

    /// A retry's line, at `info`, or `warn` once a step keeps failing; rate limited per kind
    /// and step (see [`Inner::retry_log`]), so a line stands for all the retries like it.
    fn log_retry(&self, instance: &Instance, step: &'static str, attempt: i64, delay: Duration, message: &str) {
        if self.inner.retry_log.check_key(&(instance.kind.clone(), step)).is_err() {
            return;
        }
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let (id, kind) = (instance.id.as_str(), instance.kind.as_str());
        if attempt >= WARN_FROM_ATTEMPT {
            warn!(id, kind, step, attempt, delay_ms, error = message, "saga step keeps failing; will retry");
        } else {
            info!(id, kind, step, attempt, delay_ms, error = message, "saga step failed; will retry");
        }
    }

    /// Whether the lease, renewed by every write, still has half its length to run: long
    /// enough for another step before the records must be written.
    fn lease_holds(&self, unrecorded: &Unrecorded, now: i64) -> bool {
        let half = i64::try_from(self.inner.config.retry.lease.as_millis() / 2).unwrap_or(i64::MAX);
        now < unrecorded.lease_renewed_at_ms.saturating_add(half)
    }

    /// Writes `records` and moves the instance to `to` (state, cursor, step name), renewing
    /// the lease; the step at the new cursor began at `step_started_at_ms`.
    async fn record(
        &self,
        tx: &mut Conn,
        instance: &Instance,
        records: &[store::Record],
        to: (State, i64, &str),
        step_started_at_ms: i64,
    ) -> Result<Fenced<Option<String>>, sqlx::Error> {
        let (next_state, next_cursor, next_step_name) = to;
        let advance = Advance {
            id: &instance.id,
            token: instance.lease_token,
            records,
            next_state,
            next_cursor,
            next_step_name,
            step_started_at_ms,
            now_ms: self.now(),
            lease_until_ms: self.lease_until(),
        };
        store::advance(tx, advance).await
    }

    /// A transaction that first writes the records of steps done since the last write (if
    /// any), with the cursor where the instance stands now; `None` if another worker has taken
    /// the instance over.
    async fn write_unrecorded(
        &self,
        instance: &mut Instance,
        unrecorded: &Unrecorded,
    ) -> Result<Option<roster_platform::db::Tx>, sqlx::Error> {
        let tx = self.inner.db.begin().await?;
        self.write_unrecorded_in(tx, instance, unrecorded).await
    }

    /// [`Engine::write_unrecorded`] in a transaction the caller already holds.
    async fn write_unrecorded_in(
        &self,
        mut tx: roster_platform::db::Tx,
        instance: &mut Instance,
        unrecorded: &Unrecorded,
    ) -> Result<Option<roster_platform::db::Tx>, sqlx::Error> {
        if unrecorded.records.is_empty() {
            return Ok(Some(tx));
        }
        let to = (instance.state, instance.cursor, instance.current_step.as_str());
        let advanced = self.record(&mut tx, instance, &unrecorded.records, to, instance.step_started_at_ms).await?;
        match advanced {
            Fenced::Written(cancel_requested_by) => {
                instance.cancel_requested_by = cancel_requested_by;
                Ok(Some(tx))
            }
            Fenced::Lost => {
                tx.rollback().await?;
                Ok(None)
            }
        }
    }

    /// Gives the lease up until `due_at_ms` (a timer, a retry after backoff, or shutdown).
    async fn park(
        &self,
        instance: &mut Instance,
        unrecorded: &mut Unrecorded,
        due_at_ms: i64,
        attempt: i64,
        last_error: Option<&str>,
    ) -> Result<Next, sqlx::Error> {
        self.park_in(None, instance, unrecorded, due_at_ms, attempt, last_error).await
    }

    /// [`Engine::park`] in the step's own transaction when it has one, so its writes commit
    /// with the parking.
    async fn park_in(
        &self,
        local: Option<roster_platform::db::Tx>,
        instance: &mut Instance,
        unrecorded: &mut Unrecorded,
        due_at_ms: i64,
        attempt: i64,
        last_error: Option<&str>,
    ) -> Result<Next, sqlx::Error> {
        let tx = match local {
            Some(tx) => tx,
            None => self.inner.db.begin().await?,
        };
        let Some(mut tx) = self.write_unrecorded_in(tx, instance, unrecorded).await? else {
            return Ok(self.fenced(instance));
        };
        let now = self.now();
        let parked =
            store::park(&mut *tx, &instance.id, instance.lease_token, due_at_ms, attempt, last_error, now).await?;
        if !parked {
            tx.rollback().await?;
            return Ok(self.fenced(instance));
        }
        tx.commit().await?;
        unrecorded.recorded(now);
        instance.attempt = attempt;
        instance.last_error = last_error.map(str::to_owned);
        if due_at_ms <= now {
            // Due at once (a long step yielding between passes): the idle worker must not
            // sleep out its poll interval before taking it again.
            self.inner.wake.notify_one();
        }
        Ok(Next::Stop)
    }

    /// Turns to undoing the completed steps, in reverse order.
    async fn compensate_from(
        &self,
        instance: &mut Instance,
        unrecorded: &mut Unrecorded,
        failure: Failure,
    ) -> Result<Next, sqlx::Error> {
        let Some(mut tx) = self.write_unrecorded(instance, unrecorded).await? else { return Ok(self.fenced(instance)) };
        let now = self.now();
        if !store::begin_compensation(&mut tx, &instance.id, instance.lease_token, &failure, now).await? {
            tx.rollback().await?;
            return Ok(self.fenced(instance));
        }
        tx.commit().await?;
        unrecorded.recorded(now);
        self.inner.metrics.record(Event::Compensation);
        instance.state = State::Compensating;
        instance.failure = Some(failure);
        instance.attempt = 0;
        instance.step_started_at_ms = now;
        Ok(Next::Continue)
    }

    async fn finish(
        &self,
        instance: &mut Instance,
        unrecorded: &mut Unrecorded,
        state: State,
        result: Option<Value>,
        failure: Option<Failure>,
    ) -> Result<Next, sqlx::Error> {
        let Some(mut tx) = self.write_unrecorded(instance, unrecorded).await? else { return Ok(self.fenced(instance)) };
        let now = self.now();
        let done =
            store::finish(&mut *tx, &instance.id, instance.lease_token, state, result.as_ref(), failure.as_ref(), now)
                .await?;
        if !done {
            tx.rollback().await?;
            return Ok(self.fenced(instance));
        }
        tx.commit().await?;
        unrecorded.recorded(now);
        Ok(self.ended(instance, state, result, failure, now))
    }

    /// Brings the in-memory instance up to the final state just committed.
    fn ended(
        &self,
        instance: &mut Instance,
        state: State,
        result: Option<Value>,
        failure: Option<Failure>,
        now: i64,
    ) -> Next {
        self.inner.metrics.record(match state {
            State::Completed => Event::Completed,
            State::Compensated => Event::Compensated,
            _ => Event::Failed,
        });
        info!(id = %instance.id, kind = %instance.kind, state = state.as_str(), "workflow finished");
        instance.failed_from = (state == State::Failed).then_some(instance.state);
        instance.state = state;
        instance.result = result;
        instance.failure = failure;
        instance.finished_at_ms = Some(now);
        Next::Stop
    }

    fn fenced(&self, instance: &Instance) -> Next {
        self.inner.metrics.record(Event::Fenced);
        warn!(id = %instance.id, token = instance.lease_token, "lease was taken over by another worker; write refused");
        Next::Stop
    }
}
