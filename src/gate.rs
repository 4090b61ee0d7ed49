//! The breaker gate of an attempt: whether a request may pass a circuit breaker (its
//! cluster's, then its endpoint's), the trial permit a half-open breaker lends it
//! ([`Probe`]), and how the attempt's outcome counts for the breaker ([`counts`]).
//!
//! The breaker itself is `upstream::breaker`'s state machine, shared by all workers;
//! this is the one place the pipeline meets it, so every admission logs its
//! transition, every trial permit is given back or spent exactly once, and every
//! outcome is counted by the same rule (`circuit_breaker.on`).

use crate::config::{BreakerConfig, RetryOn};
use crate::message::Failure;
use crate::upstream::breaker::{self, Admit, Breaker, Transition};
use crate::upstream::now_ms;
use crate::upstream::retry::Cause;

/// One breaker as an attempt meets it: the breaker, its settings, and the names its
/// log lines carry.
#[derive(Clone, Copy)]
pub struct Gate<'a> {
    breaker: &'a Breaker,
    cfg: &'a BreakerConfig,
    cluster: &'a str,
    /// The endpoint's name; empty for the cluster's own breaker.
    endpoint: &'a str,
}

/// A breaker rejected the request: it is open (or half-open with every trial taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

/// A half-open breaker's trial permit held by a request. Its outcome is recorded by
/// [`Probe::finish`]; dropped unrecorded (the route's timeout fired, the client left,
/// the request failed before it was sent), the permit is given back if the upstream
/// never saw the request ([`Probe::sent`] not called), and otherwise the trial counts
/// as abandoned, so a half-open breaker never waits forever for an answer that will
/// not come.
pub struct Probe<'a> {
    gate: Gate<'a>,
    /// Whether the request was handed to the upstream.
    sent: bool,
    done: bool,
}

// === impl Gate ===

impl<'a> Gate<'a> {
    /// The gate of `breaker` (of `cluster`'s `endpoint`, or empty for the cluster's).
    pub fn new(
        breaker: &'a Breaker,
        cfg: &'a BreakerConfig,
        cluster: &'a str,
        endpoint: &'a str,
    ) -> Self {
        Gate {
            breaker,
            cfg,
            cluster,
            endpoint,
        }
    }

    /// Admits a request at `now` (ms): passing, with a trial permit (half-open), or
    /// not at all.
    pub fn admit(self, now: u64) -> Result<Option<Probe<'a>>, Rejected> {
        let (admit, t) = self.breaker.admit(now);
        self.log(t);
        match admit {
            Admit::Reject => Err(Rejected),
            Admit::Probe => Ok(Some(Probe {
                gate: self,
                sent: false,
                done: false,
            })),
            Admit::Pass => Ok(None),
        }
    }

    /// Records the outcome of a request it passed without a trial: `failed` as
    /// [`counts`] says (`None`: neither way).
    pub fn record(self, failed: Option<bool>, now: u64) {
        if let Some(f) = failed {
            self.log(self.breaker.record(self.cfg, f, false, now));
        }
    }

    fn log(&self, t: Option<Transition>) {
        if let Some(t) = t {
            breaker::log(self.cluster, self.endpoint, &t);
        }
    }
}

// === impl Probe ===

impl Probe<'_> {
    /// The request was handed to the upstream: from now on a dropped trial counts as
    /// abandoned.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// Records the trial's outcome (`None`: it counts neither way, so its permit goes
    /// back for another request).
    pub fn finish(mut self, failed: Option<bool>, now: u64) {
        self.done = true;
        let g = self.gate;
        match failed {
            Some(f) => g.log(g.breaker.record(g.cfg, f, true, now)),
            None => g.breaker.release_probe(),
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let g = self.gate;
        if self.sent {
            g.log(g.breaker.abandon_probe(g.cfg, now_ms()));
        } else {
            g.breaker.release_probe();
        }
    }
}

/// Whether an attempt's outcome is a failure for a breaker whose `on` is given:
/// `Ok(status)` for an answer, `Err((cause, failure))` for an attempt that failed.
/// `None` when it counts neither way: the client's own fault, a condition `on` does
/// not list, an h2 stream refused unprocessed. Any answer is a success unless its
/// status is listed.
pub fn counts(on: &RetryOn, outcome: Result<u16, (Option<Cause>, Failure)>) -> Option<bool> {
    let listed = |yes: bool| yes.then_some(true);
    match outcome {
        Ok(status) => Some(on.status(status)),
        Err((cause, failure)) => match cause {
            Some(Cause::ConnectFailure) => listed(on.connect_failure),
            Some(Cause::Reset) => listed(on.reset),
            Some(Cause::Timeout) => listed(on.timeout),
            Some(Cause::Status(s)) => Some(on.status(s)),
            Some(Cause::RefusedStream) => None,
            // An answer the upstream got wrong broke the exchange like a reset.
            None if failure == Failure::UpstreamError => listed(on.reset),
            None => None,
        },
    }
}
