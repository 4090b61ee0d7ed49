//! Bulkheads: a limit on the requests a route or a cluster has in progress, so that one
//! slow dependency cannot take every connection, task and byte of the gateway.
//!
//! A [`Bulkhead`] admits up to `max_concurrent` requests; up to `max_queue` more wait, in
//! arrival order, at most `queue_timeout`; anything beyond is shed with 503
//! `bulkhead-full` and `Retry-After: 1` (see `Failure::BulkheadFull`).
//!
//! The fast path takes no lock: while the bulkhead is below its limit (and nobody is
//! queued), admission is one load of the queue length and a CAS on the in-flight count,
//! and release is one atomic subtraction. Only the overflow touches a
//! `tokio::sync::Semaphore`, whose FIFO waiter list (behind its mutex) keeps queued
//! requests in order: the semaphore starts with no permits, and a finishing request hands
//! its in-flight slot to the oldest waiter by adding one permit. A waiter that gives up
//! (its `queue_timeout` passed) and a finisher that hands off at the same moment could
//! strand a slot in the semaphore; both sides therefore reconcile after acting (see
//! `Bulkhead::reclaim`), so a slot is never lost.
//!
//! A [`Permit`] gives its slot back on drop (RAII, like pingora's inflight `Guard`). The
//! request's `Record` holds the permits until the response body has ended, so a slow
//! body still counts as in progress. A reload keeps a bulkhead whose settings did not
//! change (by scope and name), so in-flight counts are not reset by it.

use crate::config::BulkheadConfig;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a bulkhead guards: a route or a cluster (the `scope` label of its metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A route's own limit; the listener the route belongs to (two listeners may have
    /// routes of one name).
    Route(Arc<str>),
    /// A cluster's limit, shared by every route to it.
    Cluster,
}

/// A concurrency limit with a bounded FIFO queue.
#[derive(Debug)]
pub struct Bulkhead {
    /// Route or cluster.
    pub scope: Scope,
    /// Name of the route or cluster.
    pub name: Arc<str>,
    /// The limits.
    pub config: BulkheadConfig,
    in_flight: AtomicU32,
    queued: AtomicU32,
    shed: AtomicU64,
    /// Slots handed to waiters; starts empty (see the module doc).
    handoff: Semaphore,
}

/// The request was shed: the bulkhead and its queue were full, or the wait timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

/// One admitted request's slot; given back on drop.
#[derive(Debug)]
pub struct Permit {
    bulkhead: Arc<Bulkhead>,
}

// === impl Scope ===

impl Scope {
    /// The `scope` label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Route(_) => "route",
            Scope::Cluster => "cluster",
        }
    }

    /// The `listener` label value: the route's listener, empty for a cluster.
    pub fn listener(&self) -> &str {
        match self {
            Scope::Route(l) => l,
            Scope::Cluster => "",
        }
    }
}

// === impl Bulkhead ===

impl Bulkhead {
    /// A bulkhead with nothing in flight.
    pub fn new(scope: Scope, name: Arc<str>, config: BulkheadConfig) -> Self {
        Bulkhead {
            scope,
            name,
            config,
            in_flight: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            shed: AtomicU64::new(0),
            handoff: Semaphore::new(0),
        }
    }

    /// The bulkhead for `config`: `prev` when its settings are the same (it keeps its
    /// counts across a reload), else a new one.
    pub fn carry(
        scope: Scope,
        name: &str,
        config: BulkheadConfig,
        prev: Option<&Arc<Bulkhead>>,
    ) -> Arc<Bulkhead> {
        match prev {
            Some(p) if p.config == config => Arc::clone(p),
            _ => Arc::new(Bulkhead::new(scope, name.into(), config)),
        }
    }

    /// Requests admitted and not finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests shed since the bulkhead was created.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Admits a request arriving at `now`: at once while below `max_concurrent`, else
    /// after waiting in the queue until `now + queue_timeout` at most, else [`Shed`].
    pub async fn acquire(self: &Arc<Self>, now: Instant) -> Result<Permit, Shed> {
        // Fast path: nobody waiting (so arriving now overtakes no one) and room.
        if self.queued.load(Ordering::SeqCst) == 0 && self.try_take() {
            return Ok(self.permit());
        }
        // Overflow: join the queue if it has room.
        let max_queue = self.config.max_queue;
        let joined = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < max_queue).then_some(q + 1)
            })
            .is_ok();
        if !joined {
            return Err(self.shed_one());
        }
        // A slot may have freed between the fast path and joining: a finisher that saw
        // no waiter gave it back to the count instead of handing it off.
        if self.try_take() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Ok(self.permit());
        }
        let deadline = now + self.config.queue_timeout;
        match tokio::time::timeout_at(deadline, self.handoff.acquire()).await {
            Ok(Ok(p)) => {
                // The finisher already counted the slot for us: keep it.
                p.forget();
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Ok(self.permit())
            }
            _ => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                self.reclaim();
                Err(self.shed_one())
            }
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            bulkhead: Arc::clone(self),
        }
    }

    fn shed_one(&self) -> Shed {
        self.shed.fetch_add(1, Ordering::Relaxed);
        Shed
    }

    /// Takes an in-flight slot if one is free.
    fn try_take(&self) -> bool {
        let max = self.config.max_concurrent;
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back: to the oldest waiter if there is one, else to the count.
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) == 0 {
            return;
        }
        // Someone waits: take the slot again on their behalf and hand it over. (A new
        // arrival may have taken it first; then the waiter is served by its release.)
        if self.try_take() {
            self.handoff.add_permits(1);
            self.reclaim();
        }
    }

    /// Returns slots handed off to waiters that are all gone (they timed out between
    /// the finisher's look at the queue and the handoff). Both the finisher and the
    /// leaving waiter call it after acting; the fences make sure at least one of them
    /// sees the other's action.
    fn reclaim(&self) {
        fence(Ordering::SeqCst);
        while self.queued.load(Ordering::SeqCst) == 0 {
            let Ok(p) = self.handoff.try_acquire() else {
                return;
            };
            p.forget();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
    }
}

// === impl Permit ===

impl Drop for Permit {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bulkhead(max_concurrent: u32, max_queue: u32, queue_ms: u64) -> Arc<Bulkhead> {
        Arc::new(Bulkhead::new(
            Scope::Route("l".into()),
            "r".into(),
            BulkheadConfig {
                max_concurrent,
                max_queue,
                queue_timeout: Duration::from_millis(queue_ms),
            },
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_the_limit_then_sheds() {
        let b = bulkhead(2, 0, 50);
        let p1 = b.acquire(Instant::now()).await.unwrap();
        let _p2 = b.acquire(Instant::now()).await.unwrap();
        assert_eq!(b.in_flight(), 2);
        assert_eq!(b.acquire(Instant::now()).await.unwrap_err(), Shed);
        assert_eq!(b.shed(), 1);
        drop(p1);
        assert_eq!(b.in_flight(), 1);
        let _p3 = b.acquire(Instant::now()).await.unwrap();
        assert_eq!(b.in_flight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn permits_are_released_on_drop() {
        let b = bulkhead(3, 0, 50);
        {
            let _a = b.acquire(Instant::now()).await.unwrap();
            let _b = b.acquire(Instant::now()).await.unwrap();
            assert_eq!(b.in_flight(), 2);
        }
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_times_out_after_queue_timeout() {
        let b = bulkhead(1, 1, 50);
        let _held = b.acquire(Instant::now()).await.unwrap();
        let start = Instant::now();
        let r = b.acquire(Instant::now()).await;
        assert_eq!(r.unwrap_err(), Shed);
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert_eq!(b.queued(), 0);
        assert_eq!(b.in_flight(), 1);
        assert_eq!(b.shed(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_sheds_at_once() {
        let b = bulkhead(1, 1, 1000);
        let _held = b.acquire(Instant::now()).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire(Instant::now()).await.map(drop) });
        tokio::task::yield_now().await;
        assert_eq!(b.queued(), 1);
        let start = Instant::now();
        assert_eq!(b.acquire(Instant::now()).await.unwrap_err(), Shed);
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(_held);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let b = bulkhead(1, 10, 10_000);
        let held = b.acquire(Instant::now()).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = b.acquire(Instant::now()).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(p);
            }));
            // Let each waiter join the queue before the next arrives.
            tokio::task::yield_now().await;
        }
        assert_eq!(b.queued(), 5);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.queued(), 0);
        assert_eq!(b.shed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_waiter_does_not_strand_a_slot() {
        let b = bulkhead(1, 1, 20);
        let held = b.acquire(Instant::now()).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire(Instant::now()).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(waiter.await.unwrap().is_err());
        drop(held);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.handoff.available_permits(), 0);
        // Simulate the race: a handoff whose waiter left before taking it.
        assert!(b.try_take());
        b.handoff.add_permits(1);
        b.reclaim();
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.handoff.available_permits(), 0);
    }

    #[test]
    fn carry_keeps_a_bulkhead_whose_settings_did_not_change() {
        let b = bulkhead(2, 0, 50);
        assert!(b.try_take());
        let same = Bulkhead::carry(Scope::Route("l".into()), "r", b.config, Some(&b));
        assert!(Arc::ptr_eq(&same, &b));
        assert_eq!(same.in_flight(), 1);
        let changed = BulkheadConfig {
            max_concurrent: 3,
            ..b.config
        };
        let new = Bulkhead::carry(Scope::Route("l".into()), "r", changed, Some(&b));
        assert!(!Arc::ptr_eq(&new, &b));
        assert_eq!(new.in_flight(), 0);
    }
}
