//! The circuit breaker: a three-state machine named by what traffic does.
//!
//! - **Closed** (passing): every request goes through; outcomes are counted. It opens
//!   on `consecutive_failures` failures in a row, or when the failure share over the
//!   rolling `window` reaches `failure_rate` with at least `min_requests` requests in it.
//! - **Open** (rejecting): nothing goes through, for `open_for`. Each open in a row
//!   (a failed probe re-opens it) doubles that time, up to `max_open_for`; closing
//!   starts over from `open_for`.
//! - **HalfOpen** (probing): once the open time has passed, exactly
//!   `half_open_probes` requests are admitted as trials, whatever the concurrency (a
//!   CAS on the permits left); the rest are rejected. All trials pass: Closed. Any
//!   fails: Open again, for longer.
//!
//! Why a state machine and not a connection cap: a cap (Envoy's "circuit breaking")
//! bounds load but keeps sending to a dependency that fails every request; the
//! breaker stops sending, answers at once, and probes sparingly. Caps are bulkheads.
//!
//! Everything is atomics, shared by all workers; Open turns HalfOpen lazily, on the
//! first `admit` after the open time, so no timer task is needed. Every method takes
//! `now` (ms of [`super::now_ms`]) so the policy is tested against a driven clock.
//! Transitions go through a short-lived `BUSY` state won by CAS, so the fields of the
//! new state are written by exactly one thread before anyone reads them; a request
//! that meets `BUSY` is rejected, which errs on the safe side for a few nanoseconds.
//!
//! An operator can force the breaker open or closed (the admin API); a forced state
//! holds until reset, and outcomes recorded meanwhile change nothing.

use super::ring::SecondRing;
use crate::config::BreakerConfig;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Slots of per-second history: the longest `window` (see
/// `config::MAX_BREAKER_WINDOW_SECS`).
const SLOTS: usize = crate::config::MAX_BREAKER_WINDOW_SECS as usize;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;
/// A transition is being written by the thread that won it.
const BUSY: u8 = 3;

const NOT_FORCED: u8 = 0;
const FORCED_OPEN: u8 = 1;
const FORCED_CLOSED: u8 = 2;

/// A breaker's state, by what traffic does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Passing: every request goes through.
    Closed,
    /// Rejecting: no request goes through.
    Open,
    /// Probing: a few trial requests go through.
    HalfOpen,
}

/// What `admit` decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go ahead.
    Pass,
    /// Half-open: go ahead as a trial; its outcome must be recorded as a probe.
    Probe,
    /// Open, or half-open without a trial left: answer without the upstream.
    Reject,
}

/// Why a breaker changed state, for the log line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Why {
    /// `n` failures in a row.
    Consecutive(u32),
    /// `failed` of `total` requests over `window_secs` seconds.
    Rate {
        /// Failed requests in the window.
        failed: u64,
        /// Requests in the window.
        total: u64,
        /// The window.
        window_secs: u64,
    },
    /// The open time passed.
    OpenForPassed,
    /// A trial request failed.
    ProbeFailed,
    /// A trial was abandoned before its answer (route timeout, client gone).
    ProbeAbandoned,
    /// All `n` trials passed.
    ProbesPassed(u32),
    /// An operator forced it.
    Admin,
    /// An operator reset it.
    Reset,
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why.
    pub why: Why,
    /// For a transition to Open: how long it stays open (ms).
    pub open_ms: u64,
}

/// One breaker (of an endpoint or of a cluster). Carried over reloads with the state it
/// belongs to; the config is passed in on every call, so a reload's new settings apply
/// at once.
#[derive(Debug)]
pub struct Breaker {
    state: AtomicU8,
    forced: AtomicU8,
    /// When the current state began (ms; 0: never changed).
    since: AtomicU64,
    /// End of the current open time (ms).
    open_until: AtomicU64,
    /// Length of the current (or last) open time (ms); 0 when closed, so the next open
    /// starts from `open_for`.
    open_len: AtomicU64,
    /// Trial admissions left in this half-open phase (set when it opens).
    probes_left: AtomicU32,
    /// Trials passed in this half-open phase.
    probes_passed: AtomicU32,
    /// Failures in a row while closed.
    consecutive: AtomicU32,
    /// Per-second (requests, failures), for the failure rate.
    history: SecondRing<SLOTS>,
}

// === impl State ===

impl State {
    /// The name used in logs and the state API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }

    /// The value of `ninefold_circuit_state`: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Why ===

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::Consecutive(n) => write!(f, "{n} failures in a row"),
            Why::Rate {
                failed,
                total,
                window_secs,
            } => write!(
                f,
                "{}% of {total} requests failed in {window_secs}s",
                failed * 100 / total.max(1)
            ),
            Why::OpenForPassed => f.write_str("open time over, probing"),
            Why::ProbeFailed => f.write_str("probe failed"),
            Why::ProbeAbandoned => f.write_str("probe abandoned before its answer"),
            Why::ProbesPassed(n) => write!(f, "{n} probes passed"),
            Why::Admin => f.write_str("forced by admin"),
            Why::Reset => f.write_str("reset by admin"),
        }
    }
}

// === impl Breaker ===

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

impl Breaker {
    /// A closed breaker with no history.
    pub fn new() -> Self {
        Breaker {
            state: AtomicU8::new(CLOSED),
            forced: AtomicU8::new(NOT_FORCED),
            since: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            open_len: AtomicU64::new(0),
            probes_left: AtomicU32::new(0),
            probes_passed: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            history: SecondRing::default(),
        }
    }

    /// Whether a request could be admitted now, without taking a trial permit: the
    /// selection step's eligibility test (no config needed: the permits left were set
    /// when the breaker opened).
    #[inline]
    pub fn may_pass(&self, now: u64) -> bool {
        match self.forced.load(Ordering::Relaxed) {
            FORCED_OPEN => return false,
            FORCED_CLOSED => return true,
            _ => {}
        }
        match self.state.load(Ordering::Acquire) {
            CLOSED => true,
            OPEN => {
                now >= self.open_until.load(Ordering::Relaxed)
                    && self.probes_left.load(Ordering::Relaxed) > 0
            }
            HALF_OPEN => self.probes_left.load(Ordering::Relaxed) > 0,
            _ => false,
        }
    }

    /// Admits a request or not. Open turns HalfOpen here once its time has passed (the
    /// transition is returned, to be logged); in HalfOpen exactly the permits left are
    /// handed out, by CAS.
    pub fn admit(&self, now: u64) -> (Admit, Option<Transition>) {
        match self.forced.load(Ordering::Relaxed) {
            FORCED_OPEN => return (Admit::Reject, None),
            FORCED_CLOSED => return (Admit::Pass, None),
            _ => {}
        }
        let mut transition = None;
        match self.state.load(Ordering::Acquire) {
            CLOSED => return (Admit::Pass, None),
            OPEN => {
                if now < self.open_until.load(Ordering::Relaxed) {
                    return (Admit::Reject, None);
                }
                // The permits were set before the state became Open, so whoever wins
                // this CAS finds them ready, and so does everyone after.
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.since.store(now, Ordering::Relaxed);
                    transition = Some(Transition {
                        from: State::Open,
                        to: State::HalfOpen,
                        why: Why::OpenForPassed,
                        open_ms: 0,
                    });
                } else if self.state.load(Ordering::Acquire) != HALF_OPEN {
                    return (Admit::Reject, None);
                }
            }
            HALF_OPEN => {}
            _ => return (Admit::Reject, None),
        }
        let took = self
            .probes_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        (if took { Admit::Probe } else { Admit::Reject }, transition)
    }

    /// Gives an unused trial permit back (the request ended before it was sent), so the
    /// half-open phase is not stuck waiting for an outcome that never comes.
    pub fn release_probe(&self) {
        if self.state.load(Ordering::Acquire) == HALF_OPEN {
            self.probes_left.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records the outcome of a request this breaker admitted (`probe`: as a trial).
    /// Returns the transition it caused, if any. Late answers of requests admitted in
    /// an earlier state change nothing.
    pub fn record(
        &self,
        cfg: &BreakerConfig,
        failure: bool,
        probe: bool,
        now: u64,
    ) -> Option<Transition> {
        if self.forced.load(Ordering::Relaxed) != NOT_FORCED {
            return None;
        }
        let state = self.state.load(Ordering::Acquire);
        if probe {
            if state != HALF_OPEN {
                return None;
            }
            if failure {
                return self.reopen(cfg, Why::ProbeFailed, now);
            }
            let passed = self.probes_passed.fetch_add(1, Ordering::AcqRel) + 1;
            if passed < cfg.half_open_probes {
                return None;
            }
            return self.close(HALF_OPEN, Why::ProbesPassed(passed), now);
        }
        if state != CLOSED {
            return None;
        }
        self.count(failure, now);
        if !failure {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let streak = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let why = if streak >= cfg.consecutive_failures {
            Why::Consecutive(streak)
        } else if let Some(rate) = cfg.failure_rate {
            let (total, failed) = self.window(cfg.window_secs, now);
            if total < u64::from(cfg.min_requests) || (failed as f64) * 100.0 < rate * total as f64
            {
                return None;
            }
            Why::Rate {
                failed,
                total,
                window_secs: cfg.window_secs,
            }
        } else {
            return None;
        };
        self.trip(cfg, CLOSED, why, now)
    }

    /// Records a trial abandoned after it was sent (route timeout, client gone): a
    /// failure when `on` counts timeouts, else its permit goes back.
    pub fn abandon_probe(&self, cfg: &BreakerConfig, now: u64) -> Option<Transition> {
        if cfg.on.timeout {
            if self.forced.load(Ordering::Relaxed) != NOT_FORCED
                || self.state.load(Ordering::Acquire) != HALF_OPEN
            {
                return None;
            }
            self.reopen(cfg, Why::ProbeAbandoned, now)
        } else {
            self.release_probe();
            None
        }
    }

    /// Forces it open until reset.
    pub fn force_open(&self, now: u64) -> Option<Transition> {
        self.force(FORCED_OPEN, State::Open, now)
    }

    /// Forces it closed until reset.
    pub fn force_closed(&self, now: u64) -> Option<Transition> {
        self.force(FORCED_CLOSED, State::Closed, now)
    }

    /// Ends any forced state and starts over: closed, no history, the next open from
    /// `open_for`.
    pub fn reset(&self, now: u64) -> Option<Transition> {
        let from = self.state(now);
        self.forced.store(NOT_FORCED, Ordering::Relaxed);
        self.clear_history();
        self.open_len.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Relaxed);
        let was = self.state.swap(CLOSED, Ordering::AcqRel);
        if was != CLOSED {
            self.since.store(now, Ordering::Relaxed);
        }
        (from != State::Closed).then_some(Transition {
            from,
            to: State::Closed,
            why: Why::Reset,
            open_ms: 0,
        })
    }

    /// The state as traffic sees it now (a forced state wins; an Open whose time has
    /// passed reads as HalfOpen, which it becomes at the next request).
    pub fn state(&self, now: u64) -> State {
        match self.forced.load(Ordering::Relaxed) {
            FORCED_OPEN => return State::Open,
            FORCED_CLOSED => return State::Closed,
            _ => {}
        }
        match self.state.load(Ordering::Acquire) {
            CLOSED => State::Closed,
            OPEN if now >= self.open_until.load(Ordering::Relaxed) => State::HalfOpen,
            HALF_OPEN => State::HalfOpen,
            _ => State::Open,
        }
    }

    /// Whether an operator forced the state.
    pub fn forced(&self) -> Option<State> {
        match self.forced.load(Ordering::Relaxed) {
            FORCED_OPEN => Some(State::Open),
            FORCED_CLOSED => Some(State::Closed),
            _ => None,
        }
    }

    /// When the current state began (ms; 0: never changed).
    pub fn since(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }

    /// End of the open time (ms) while Open, else 0.
    pub fn open_until(&self) -> u64 {
        if self.state.load(Ordering::Acquire) == OPEN {
            self.open_until.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Failures in a row while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// (requests, failures) over the last `window_secs` seconds.
    pub fn window(&self, window_secs: u64, now: u64) -> (u64, u64) {
        self.history.sum(now, window_secs)
    }

    fn count(&self, failure: bool, now: u64) {
        self.history.add(now, 1, u32::from(failure));
    }

    fn clear_history(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.history.clear();
    }

    /// Closed → Open, for `open_for`.
    fn trip(&self, cfg: &BreakerConfig, from: u8, why: Why, now: u64) -> Option<Transition> {
        self.state
            .compare_exchange(from, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let len = (cfg.open_for.as_millis() as u64).max(1);
        Some(self.open(cfg, len, State::Closed, why, now))
    }

    /// HalfOpen → Open, for twice the last open time, capped.
    fn reopen(&self, cfg: &BreakerConfig, why: Why, now: u64) -> Option<Transition> {
        self.state
            .compare_exchange(HALF_OPEN, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let base = cfg.open_for.as_millis() as u64;
        let max = cfg.max_open_for.as_millis() as u64;
        let len = self
            .open_len
            .load(Ordering::Relaxed)
            .max(base)
            .saturating_mul(2)
            .min(max.max(base))
            .max(1);
        Some(self.open(cfg, len, State::HalfOpen, why, now))
    }

    /// Writes an Open phase; the caller holds `BUSY`.
    fn open(&self, cfg: &BreakerConfig, len: u64, from: State, why: Why, now: u64) -> Transition {
        self.open_len.store(len, Ordering::Relaxed);
        self.open_until.store(now + len, Ordering::Relaxed);
        self.probes_left
            .store(cfg.half_open_probes.max(1), Ordering::Relaxed);
        self.probes_passed.store(0, Ordering::Relaxed);
        self.since.store(now, Ordering::Relaxed);
        self.state.store(OPEN, Ordering::Release);
        Transition {
            from,
            to: State::Open,
            why,
            open_ms: len,
        }
    }

    /// → Closed with a clean history; the next open starts from `open_for`.
    fn close(&self, from: u8, why: Why, now: u64) -> Option<Transition> {
        self.state
            .compare_exchange(from, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.clear_history();
        self.open_len.store(0, Ordering::Relaxed);
        self.since.store(now, Ordering::Relaxed);
        self.state.store(CLOSED, Ordering::Release);
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed,
            why,
            open_ms: 0,
        })
    }

    fn force(&self, how: u8, to: State, now: u64) -> Option<Transition> {
        let from = self.state(now);
        let was = self.forced.swap(how, Ordering::AcqRel);
        if was != how {
            self.since.store(now, Ordering::Relaxed);
        }
        (was != how).then_some(Transition {
            from,
            to,
            why: Why::Admin,
            open_ms: 0,
        })
    }
}

/// The log line of a transition: one per change, naming the cluster, the endpoint
/// (empty for the cluster's own breaker), both states and why.
pub fn log(cluster: &str, endpoint: &str, t: &Transition) {
    let kind = match t.to {
        State::Open => "breaker_open",
        State::HalfOpen => "breaker_half_open",
        State::Closed => "breaker_closed",
    };
    let ep = (!endpoint.is_empty()).then_some(endpoint);
    crate::events::emit(
        kind,
        Some(cluster),
        ep,
        format!("circuit {} → {}: {}", t.from, t.to, t.why),
    );
    if t.to == State::Open {
        tracing::warn!(
            cluster,
            endpoint,
            from = t.from.as_str(),
            to = t.to.as_str(),
            open_ms = t.open_ms,
            "circuit {} → {}: {}",
            t.from,
            t.to,
            t.why
        );
    } else {
        tracing::info!(
            cluster,
            endpoint,
            from = t.from.as_str(),
            to = t.to.as_str(),
            "circuit {} → {}: {}",
            t.from,
            t.to,
            t.why
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: None,
            window_secs: 10,
            min_requests: 10,
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_millis(3_500),
            half_open_probes: 2,
            ..BreakerConfig::default()
        }
    }

    fn trip(b: &Breaker, c: &BreakerConfig, now: u64) -> Transition {
        for _ in 1..c.consecutive_failures {
            assert_eq!(b.record(c, true, false, now), None);
        }
        b.record(c, true, false, now).expect("trips")
    }

    #[test]
    fn closed_opens_after_consecutive_failures_and_a_success_resets_the_streak() {
        let (b, c) = (Breaker::new(), cfg());
        assert_eq!(b.admit(0), (Admit::Pass, None));
        b.record(&c, true, false, 0);
        b.record(&c, true, false, 0);
        b.record(&c, false, false, 0);
        assert_eq!(b.record(&c, true, false, 0), None);
        assert_eq!(b.consecutive_failures(), 1);
        b.record(&c, true, false, 5);
        let t = b.record(&c, true, false, 10).unwrap();
        assert_eq!(
            t,
            Transition {
                from: State::Closed,
                to: State::Open,
                why: Why::Consecutive(3),
                open_ms: 1_000
            }
        );
        assert_eq!(t.why.to_string(), "3 failures in a row");
        assert_eq!(b.state(10), State::Open);
        assert_eq!(b.since(), 10);
        assert_eq!(b.admit(500), (Admit::Reject, None));
        assert!(!b.may_pass(1_009));
        // A late answer of a request admitted while closed changes nothing.
        assert_eq!(b.record(&c, true, false, 20), None);
        assert_eq!(b.record(&c, false, false, 20), None);
    }

    #[test]
    fn open_turns_half_open_lazily_then_probes_pass_and_close() {
        let (b, c) = (Breaker::new(), cfg());
        trip(&b, &c, 0);
        assert_eq!(b.state(999), State::Open);
        assert_eq!(b.state(1_000), State::HalfOpen);
        assert!(b.may_pass(1_000));
        let (a, t) = b.admit(1_000);
        assert_eq!(a, Admit::Probe);
        assert_eq!(
            t.map(|t| (t.from, t.to)),
            Some((State::Open, State::HalfOpen))
        );
        assert_eq!(b.admit(1_001), (Admit::Probe, None));
        // Two probes, both out: the rest are rejected.
        assert_eq!(b.admit(1_002), (Admit::Reject, None));
        assert!(!b.may_pass(1_002));
        // A non-probe outcome while half-open is a late answer: ignored.
        assert_eq!(b.record(&c, false, false, 1_003), None);
        assert_eq!(b.record(&c, false, true, 1_010), None);
        let t = b.record(&c, false, true, 1_020).unwrap();
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
        assert_eq!(t.why.to_string(), "2 probes passed");
        assert_eq!(b.admit(1_030), (Admit::Pass, None));
        // Closing starts over: the streak and the open time.
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(trip(&b, &c, 2_000).open_ms, 1_000);
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
        let (b, c) = (Breaker::new(), cfg());
        trip(&b, &c, 0);
        let mut now = 1_000;
        for want in [2_000, 3_500, 3_500] {
            assert_eq!(b.admit(now).0, Admit::Probe);
            let t = b.record(&c, true, true, now).unwrap();
            assert_eq!(
                (t.from, t.to, t.why),
                (State::HalfOpen, State::Open, Why::ProbeFailed)
            );
            assert_eq!(t.open_ms, want);
            assert_eq!(b.open_until(), now + want);
            assert_eq!(b.admit(now + want - 1), (Admit::Reject, None));
            now += want;
        }
        // The second probe's failure after the first re-opened it changes nothing.
        assert_eq!(b.record(&c, true, true, now), None);
    }

    #[test]
    fn failure_rate_needs_min_requests_and_reads_the_window() {
        let c = BreakerConfig {
            consecutive_failures: 1_000,
            failure_rate: Some(50.0),
            min_requests: 10,
            ..cfg()
        };
        let b = Breaker::new();
        // 4 failures of 4: 100%, but below min_requests.
        for _ in 0..4 {
            assert_eq!(b.record(&c, true, false, 0), None);
        }
        // 5 successes: 4 of 9.
        for _ in 0..5 {
            assert_eq!(b.record(&c, false, false, 1_000), None);
        }
        // The 10th request, a failure: 5 of 10 = 50% → open.
        let t = b.record(&c, true, false, 2_000).unwrap();
        assert_eq!(
            t.why,
            Why::Rate {
                failed: 5,
                total: 10,
                window_secs: 10
            }
        );
        assert_eq!(t.why.to_string(), "50% of 10 requests failed in 10s");
    }

    #[test]
    fn the_window_rolls_over() {
        let c = BreakerConfig {
            consecutive_failures: 1_000,
            failure_rate: Some(50.0),
            min_requests: 4,
            window_secs: 2,
            ..cfg()
        };
        let b = Breaker::new();
        for _ in 0..3 {
            b.record(&c, true, false, 0);
        }
        assert_eq!(b.window(2, 1_999), (3, 3));
        // Two seconds on, second 0 has left the window: 1 of 1, below min_requests.
        assert_eq!(b.record(&c, true, false, 2_000), None);
        assert_eq!(b.window(2, 2_000), (1, 1));
        // A slot reused 60 s later starts from zero.
        b.record(&c, false, false, 60_000);
        assert_eq!(b.window(2, 60_000), (1, 0));
    }

    #[test]
    fn exactly_n_probes_under_concurrency() {
        let c = BreakerConfig {
            half_open_probes: 3,
            ..cfg()
        };
        for _round in 0..20 {
            let b = Arc::new(Breaker::new());
            trip(&b, &c, 0);
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || {
                        (0..100)
                            .filter(|_| b.admit(1_000).0 == Admit::Probe)
                            .count()
                    })
                })
                .collect();
            let probes: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            assert_eq!(probes, 3);
        }
    }

    #[test]
    fn a_released_permit_can_be_taken_again() {
        let (b, c) = (Breaker::new(), cfg());
        trip(&b, &c, 0);
        assert_eq!(b.admit(1_000).0, Admit::Probe);
        assert_eq!(b.admit(1_000).0, Admit::Probe);
        assert_eq!(b.admit(1_000).0, Admit::Reject);
        b.release_probe();
        assert_eq!(b.admit(1_000).0, Admit::Probe);
        // Abandoned after it was sent: a failure, since `on` counts timeouts.
        let t = b.abandon_probe(&c, 1_100).unwrap();
        assert_eq!(t.why, Why::ProbeAbandoned);
    }

    #[test]
    fn forced_states_hold_until_reset() {
        let (b, c) = (Breaker::new(), cfg());
        let t = b.force_open(5).unwrap();
        assert_eq!(
            (t.from, t.to, t.why),
            (State::Closed, State::Open, Why::Admin)
        );
        assert_eq!(t.why.to_string(), "forced by admin");
        assert_eq!(b.force_open(6), None);
        assert_eq!(b.admit(1_000_000), (Admit::Reject, None));
        assert_eq!(b.state(1_000_000), State::Open);
        assert_eq!(b.forced(), Some(State::Open));
        // Outcomes change nothing while forced.
        for _ in 0..10 {
            assert_eq!(b.record(&c, false, true, 10), None);
        }
        let t = b.force_closed(20).unwrap();
        assert_eq!((t.from, t.to), (State::Open, State::Closed));
        for _ in 0..10 {
            assert_eq!(b.record(&c, true, false, 30), None);
        }
        assert_eq!(b.admit(40), (Admit::Pass, None));
        // Reset: back to the machine, closed with no history.
        assert_eq!(b.reset(50), None, "it was (forced) closed already");
        assert_eq!(b.forced(), None);
        trip(&b, &c, 60);
        let t = b.reset(70).unwrap();
        assert_eq!(
            (t.from, t.to, t.why),
            (State::Open, State::Closed, Why::Reset)
        );
        assert_eq!(b.admit(71), (Admit::Pass, None));
        assert_eq!(b.consecutive_failures(), 0);
    }
}
