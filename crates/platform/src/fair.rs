//! A fair share of the server for each account, so a busy account (a flood of invitations
//! beside a bulk run) does not slow the others:
//! - [`AccountGates`]: at most a few changes of one account are handled at once in a process;
//!   the others of that account wait their turn (bounded by their callers' deadlines), holding
//!   no database connection and no core meanwhile.
//! - [`Activity`]: who has called lately, so work that can wait (a bulk run) slows down while
//!   others are being served, and runs at full speed alone.
//! - [`WriterTurns`]: SQLite has one writer, and whoever asks for it next gets it next. The
//!   turns put an account's waiting transactions in a line of their own ([`in_lane`]) and let
//!   the lines take the writer in rotation, a line that was empty going first, so a quiet
//!   account's transaction waits for the one under way, not for a busy account's backlog.
//!
//! Written here: no kept crate offers a round-robin queue across keys in front of a resource,
//! nor a map of semaphores that forgets one when its last holder is done.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// What a service shares out fairly: who is calling, and each account's turns.
#[derive(Debug)]
pub struct FairShare {
    pub activity: Activity,
    pub gates: AccountGates,
}

impl FairShare {
    /// Turns of `per_account` changes at once for an account while others are being served.
    pub fn new(per_account: usize) -> Self {
        Self { activity: Activity::default(), gates: AccountGates::new(per_account) }
    }

    /// Notes a call by `who` and waits, if others are being served, for one of `account`'s
    /// turns; alone, an account's changes go side by side.
    pub async fn turn(&self, who: &str, account: Option<&str>) -> Option<OwnedSemaphorePermit> {
        self.activity.seen(who);
        match account {
            Some(account) if self.activity.others_than(who) => Some(self.gates.enter(account).await),
            _ => None,
        }
    }
}

/// At most a few changes of one account at once (see the module doc).
#[derive(Debug)]
pub struct AccountGates {
    per_account: usize,
    gates: Mutex<HashMap<String, Weak<Semaphore>>>,
}

/// Gates nobody holds are swept out of the map once it holds this many.
const SWEEP_AT: usize = 1_024;

impl AccountGates {
    pub fn new(per_account: usize) -> Self {
        Self { per_account: per_account.max(1), gates: Mutex::new(HashMap::new()) }
    }

    /// Waits for one of `account`'s turns; it ends when the permit is dropped.
    pub async fn enter(&self, account: &str) -> OwnedSemaphorePermit {
        // The semaphores are never closed.
        self.gate(account).acquire_owned().await.expect("gates are never closed")
    }

    fn gate(&self, account: &str) -> Arc<Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = gates.get(account).and_then(Weak::upgrade) {
            return gate;
        }
        if gates.len() >= SWEEP_AT {
            gates.retain(|_, gate| gate.strong_count() > 0);
        }
        let gate = Arc::new(Semaphore::new(self.per_account));
        gates.insert(account.to_owned(), Arc::downgrade(&gate));
        gate
    }
}

tokio::task_local! {
    static LANE: Arc<str>;
}

/// The lane of work done outside any account's call (the outbox, housekeeping).
const BACKGROUND: &str = "";

/// Runs `work` with its database writes in `account`'s line at SQLite's writer.
pub async fn in_lane<F: Future>(account: &str, work: F) -> F::Output {
    LANE.scope(Arc::from(account), work).await
}

fn current_lane() -> Arc<str> {
    LANE.try_with(Arc::clone).unwrap_or_else(|_| Arc::from(BACKGROUND))
}

/// The order in which waiting transactions take a single writer: one line per lane, the lines
/// in rotation.
#[derive(Debug, Default)]
pub struct WriterTurns {
    state: Mutex<Turns>,
}

#[derive(Debug, Default)]
struct Turns {
    /// Someone was let through and has not yet got the writer.
    passing: bool,
    /// Lines with someone waiting, in the order they are served.
    rotation: VecDeque<Arc<str>>,
    waiting: HashMap<Arc<str>, VecDeque<oneshot::Sender<()>>>,
}

/// Let through to ask for the writer; the next is let through once this is dropped (when the
/// writer has been got).
#[derive(Debug)]
pub struct Turn<'a> {
    turns: &'a WriterTurns,
}

impl WriterTurns {
    /// Waits until the current lane's turn comes round.
    pub async fn turn(&self) -> Turn<'_> {
        let lane = current_lane();
        let waiting = {
            let mut turns = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !turns.passing {
                turns.passing = true;
                None
            } else {
                let (tell, told) = oneshot::channel();
                let turns = &mut *turns;
                let line = turns.waiting.entry(lane.clone()).or_default();
                // A line that had nobody waiting goes first (as FQ-CoDel serves new flows before
                // old ones): a quiet account's write waits for the one under way, not for a turn
                // of every busy line. A line served while others wait goes to the back.
                if line.is_empty() {
                    turns.rotation.push_front(lane);
                }
                line.push_back(tell);
                Some(told)
            }
        };
        if let Some(told) = waiting {
            let mut waiting = Waiting { turns: self, told: Some(told) };
            if let Some(told) = waiting.told.as_mut() {
                // Told, or the line was dropped: either way it is this waiter's turn now.
                let _ = told.await;
            }
            waiting.told = None;
        }
        Turn { turns: self }
    }

    /// Lets the next line's first waiter through, or nobody.
    fn pass(&self) {
        let mut turns = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(lane) = turns.rotation.pop_front() {
            let Some(line) = turns.waiting.get_mut(&lane) else { continue };
            let next = line.pop_front();
            if line.is_empty() {
                turns.waiting.remove(&lane);
            } else {
                turns.rotation.push_back(lane);
            }
            // A waiter whose caller went away is passed over.
            if let Some(next) = next
                && next.send(()).is_ok()
            {
                return;
            }
        }
        turns.passing = false;
    }
}

/// A waiter in its line. One dropped after being told its turn (its caller went away at that
/// moment) passes the turn on, so the writer is never left to nobody.
struct Waiting<'a> {
    turns: &'a WriterTurns,
    told: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut told) = self.told.take()
            && told.try_recv().is_ok()
        {
            self.turns.pass();
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.pass();
    }
}

/// Callers seen recently, so work that can wait (a bulk run) gives way while others are
/// being served.
#[derive(Debug, Default)]
pub struct Activity {
    seen: Mutex<HashMap<String, Instant>>,
}

/// How long a caller counts as active after a call.
const ACTIVE_FOR: Duration = Duration::from_secs(1);
/// Callers remembered at most; older ones are forgotten first.
const REMEMBERED: usize = 4_096;

impl Activity {
    /// Notes a call by `who` (a principal's audit name).
    pub fn seen(&self, who: &str) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= REMEMBERED && !seen.contains_key(who) {
            seen.retain(|_, at| now.duration_since(*at) < ACTIVE_FOR);
        }
        if seen.len() < REMEMBERED {
            seen.insert(who.to_owned(), now);
        }
    }

    /// Whether anyone but `who` made a call in the last second.
    pub fn others_than(&self, who: &str) -> bool {
        let now = Instant::now();
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter().any(|(caller, at)| caller != who && now.duration_since(*at) < ACTIVE_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_account_waits_its_turn_and_another_goes_at_once() {
        let gates = AccountGates::new(2);
        let (first, _second) = (gates.enter("a").await, gates.enter("a").await);
        let third = tokio::time::timeout(Duration::from_millis(10), gates.enter("a")).await;
        assert!(third.is_err(), "a third change of the same account waits");
        assert!(tokio::time::timeout(Duration::from_millis(10), gates.enter("b")).await.is_ok(), "b goes at once");
        drop(first);
        assert!(tokio::time::timeout(Duration::from_millis(10), gates.enter("a")).await.is_ok(), "a turn freed");
    }

    /// Alone, an account's changes go side by side; while another caller is served, they take
    /// turns.
    #[tokio::test(start_paused = true)]
    async fn an_account_takes_turns_only_while_others_are_served() {
        let fair = FairShare::new(1);
        let first = fair.turn("user:a", Some("acme")).await;
        assert!(first.is_none(), "alone: no turn needed");
        fair.activity.seen("user:b");
        let held = fair.turn("user:a", Some("acme")).await;
        assert!(held.is_some(), "beside b: a turn");
        let waits = tokio::time::timeout(Duration::from_millis(10), fair.turn("user:a", Some("acme"))).await;
        assert!(waits.is_err(), "the second change of acme waits for the first");
        assert!(fair.turn("user:b", Some("globex")).await.is_some(), "globex has turns of its own");
    }

    #[test]
    fn gates_nobody_holds_are_swept_out() {
        let gates = AccountGates::new(1);
        for n in 0..SWEEP_AT + 10 {
            drop(gates.gate(&format!("account-{n}")));
        }
        assert!(gates.gates.lock().expect("lock").len() <= 11);
    }

    #[test]
    fn others_count_as_active_for_a_second() {
        let activity = Activity::default();
        activity.seen("user:a");
        assert!(!activity.others_than("user:a"), "only oneself");
        assert!(activity.others_than("user:b"));
        activity.seen.lock().expect("lock").insert("user:old".into(), Instant::now() - ACTIVE_FOR * 2);
        assert!(!activity.others_than("user:a"), "a caller from long ago does not count");
    }

    /// Three waiting in account a's line, then one in b's: b's new line goes first, then a's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_goes_round_the_lines() {
        let turns = Arc::new(WriterTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.turn().await;
        let mut waiting = Vec::new();
        for (n, lane) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let (turns, order) = (turns.clone(), order.clone());
            waiting.push(tokio::spawn(in_lane(lane, async move {
                let _turn = turns.turn().await;
                order.lock().expect("order").push(format!("{lane}{n}"));
            })));
            // Each is in its line before the next comes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(first);
        for task in waiting {
            task.await.expect("a turn");
        }
        assert_eq!(*order.lock().expect("order"), ["b3", "a0", "a1", "a2"]);
    }

    /// A waiter cancelled in the instant it was told its turn hands it on.
    #[tokio::test]
    async fn a_turn_given_to_a_waiter_that_just_went_away_is_handed_on() {
        let turns = WriterTurns::default();
        let first = turns.turn().await;
        let mut cancelled = Box::pin(turns.turn());
        assert!(futures_util::poll!(&mut cancelled).is_pending(), "in its line");
        drop(first);
        drop(cancelled);
        assert!(tokio::time::timeout(Duration::from_millis(100), turns.turn()).await.is_ok(), "the turn came round");
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_is_passed_over() {
        let turns = WriterTurns::default();
        let first = turns.turn().await;
        let gone = tokio::time::timeout(Duration::from_millis(10), turns.turn()).await;
        assert!(gone.is_err(), "it waited, then went away");
        drop(first);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), turns.turn()).await.is_ok(),
            "the next is let through"
        );
    }
}
