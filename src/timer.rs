//! Worker-local deadlines for the request path: a request's route timeout and per-try
//! timeout are kept in a heap owned by the worker's thread, and one task per worker
//! ([`drive`]) sleeps until the earliest of them on a single tokio timer.
//!
//! Why not `tokio::time::timeout` per request: every one registers an entry in the
//! runtime's timer wheel and removes it again (under the time driver's lock), which is
//! a measurable part of a small request's CPU; here arming a deadline is a push on a
//! thread-local heap, and cancelling it (the usual end: the answer came first) marks
//! its slot free. Deadlines that most requests share (one route's timeout) come in
//! time order, so the driver's own timer is rarely moved.
//!
//! On a thread without a driver (tests, tools), [`timeout`] falls back to a tokio
//! timer of its own. Time is tokio's, so a paused test clock drives both.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::time::{Duration, Instant, Sleep};

/// A deadline passed before the future it bounded was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// No slot taken yet.
const NONE: u32 = u32::MAX;

struct Slot {
    /// Bumped each time the slot is taken, so heap entries of an earlier use are known.
    gen: u32,
    state: State,
    waker: Option<Waker>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Armed,
    Fired,
}

#[derive(Default)]
struct Timers {
    /// Whether a [`drive`] task runs on this thread.
    running: bool,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (deadline, slot, generation), earliest first.
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Heap entries whose slot was given back before they fired.
    stale: usize,
    driver: Option<Waker>,
    /// What the driver sleeps until.
    armed: Option<Instant>,
}

impl Timers {
    /// Whether a heap entry is still wanted: its slot holds the same deadline, armed.
    fn live(slots: &[Slot], slot: u32, gen: u32) -> bool {
        let s = &slots[slot as usize];
        s.gen == gen && s.state == State::Armed
    }

    /// Takes a slot for a deadline at `at`; wakes the driver when it is the earliest.
    fn arm(&mut self, at: Instant, waker: &Waker) -> (u32, u32) {
        let slot = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.gen = s.gen.wrapping_add(1);
                s.state = State::Armed;
                s.waker = Some(waker.clone());
                i
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    state: State::Armed,
                    waker: Some(waker.clone()),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let gen = self.slots[slot as usize].gen;
        self.heap.push(Reverse((at, slot, gen)));
        if self.armed.is_none_or(|a| at < a) {
            if let Some(d) = &self.driver {
                d.wake_by_ref();
            }
        }
        (slot, gen)
    }

    /// Gives a slot back. An entry still in the heap becomes stale; when stale entries
    /// outnumber live ones the heap is rebuilt, so it stays within twice the deadlines
    /// pending (a long deadline does not hold the memory of every one armed after it).
    fn disarm(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let armed = s.state == State::Armed;
        s.state = State::Free;
        s.waker = None;
        self.free.push(slot);
        if armed {
            self.stale += 1;
            if self.stale > 64 && self.stale * 2 > self.heap.len() {
                let slots = &self.slots;
                self.heap
                    .retain(|Reverse((_, i, g))| Self::live(slots, *i, *g));
                self.stale = 0;
            }
        }
    }

    /// Fires what is due at `now` (the wakers go to `due`, woken once the registry is
    /// no longer borrowed); returns the next deadline.
    fn fire(&mut self, now: Instant, due: &mut Vec<Waker>) -> Option<Instant> {
        while let Some(&Reverse((at, slot, gen))) = self.heap.peek() {
            if !Self::live(&self.slots, slot, gen) {
                self.heap.pop();
                self.stale = self.stale.saturating_sub(1);
                continue;
            }
            if at > now {
                return Some(at);
            }
            self.heap.pop();
            let s = &mut self.slots[slot as usize];
            s.state = State::Fired;
            due.extend(s.waker.take());
        }
        None
    }
}

thread_local! {
    static TIMERS: RefCell<Timers> = RefCell::new(Timers::default());
}

/// Runs this thread's deadlines until dropped. Spawn it once on each worker's
/// (current-thread) runtime.
pub async fn drive() {
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            // Pending deadlines go back to tokio timers of their own.
            let wakers: Vec<Waker> = TIMERS
                .try_with(|t| {
                    let mut t = t.borrow_mut();
                    t.running = false;
                    t.driver = None;
                    t.armed = None;
                    t.slots.iter_mut().filter_map(|s| s.waker.take()).collect()
                })
                .unwrap_or_default();
            wakers.into_iter().for_each(Waker::wake);
        }
    }
    TIMERS.with(|t| t.borrow_mut().running = true);
    let _running = Running;
    let mut sleep = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
    let mut due = Vec::new();
    std::future::poll_fn(|cx| loop {
        let next = TIMERS.with(|t| {
            let mut t = t.borrow_mut();
            if !t.driver.as_ref().is_some_and(|d| d.will_wake(cx.waker())) {
                t.driver = Some(cx.waker().clone());
            }
            let next = t.fire(Instant::now(), &mut due);
            t.armed = next;
            next
        });
        // Woken outside the borrow: a wake may drop a task, and with it a deadline
        // that gives its slot back.
        due.drain(..).for_each(Waker::wake);
        let Some(at) = next else {
            return Poll::Pending;
        };
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// How far behind the real clock [`coarse_now`] may be on a worker: its tick.
pub const COARSE_STEP: Duration = Duration::from_secs(1);

thread_local! {
    static COARSE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Sets this thread's coarse clock; a worker calls it with the time on each tick.
pub fn set_coarse(now: Instant) {
    COARSE.with(|c| c.set(Some(now)));
}

/// The time as of this worker's last tick, at most [`COARSE_STEP`] behind (more only
/// while the worker is too busy to tick), read with no clock call: for bookkeeping
/// measured in seconds (idle deadlines, the upstream pool's ages). On a thread that
/// does not tick, the real time.
pub fn coarse_now() -> Instant {
    COARSE
        .with(std::cell::Cell::get)
        .unwrap_or_else(Instant::now)
}

/// Requires `fut` to finish within `d`, like `tokio::time::timeout`.
pub fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    timeout_at(Instant::now() + d, fut)
}

/// Requires `fut` to finish by `at`, like `tokio::time::timeout_at` (for a caller that
/// has read the clock already).
pub fn timeout_at<F: Future>(at: Instant, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        at,
        slot: NONE,
        gen: 0,
        home: 0,
        fallback: None,
    }
}

/// This thread's registry, as an address: a deadline armed on one thread is never
/// touched from another (a future moved between threads falls back to a tokio timer).
fn here() -> usize {
    TIMERS.with(|t| t as *const RefCell<Timers> as usize)
}

/// See [`timeout`].
pub struct Timeout<F> {
    fut: F,
    at: Instant,
    slot: u32,
    gen: u32,
    /// The thread whose registry holds `slot` (see [`here`]).
    home: usize,
    fallback: Option<Pin<Box<Sleep>>>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is the one field pinned with the struct (projected just below);
        // the others are used through `&mut` and are not pinned (the fallback `Sleep` is
        // pinned in its own box). Nothing moves `fut` out of a pinned `Timeout`: `Drop`
        // below touches only the slot fields, no method takes `fut` by value or
        // `mem::replace`s it, the struct is not `repr(packed)`, and it is `Unpin` only
        // when `F` is (the auto trait; its other fields are all `Unpin`).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `fut` is pinned with the struct (see above), which is pinned.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        if let Poll::Ready(v) = fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if this.fallback.is_none() {
            let on_driver = TIMERS.with(|t| {
                if this.slot != NONE && this.home != t as *const RefCell<Timers> as usize {
                    // Moved to another thread: the slot is left where it was armed
                    // (it fires there once; the task goes on with a tokio timer).
                    this.slot = NONE;
                    return None;
                }
                let mut t = t.borrow_mut();
                if !t.running {
                    if this.slot != NONE {
                        t.disarm(this.slot);
                        this.slot = NONE;
                    }
                    return None;
                }
                if this.slot == NONE {
                    (this.slot, this.gen) = t.arm(this.at, cx.waker());
                    this.home = here();
                    return Some(false);
                }
                let s = &mut t.slots[this.slot as usize];
                if s.state == State::Fired {
                    return Some(true);
                }
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Some(false)
            });
            match on_driver {
                Some(true) => return Poll::Ready(Err(Elapsed)),
                Some(false) => return Poll::Pending,
                None => this.fallback = Some(Box::pin(tokio::time::sleep_until(this.at))),
            }
        }
        match this.fallback.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(Elapsed)),
            _ => Poll::Pending,
        }
    }
}

impl<F> Drop for Timeout<F> {
    fn drop(&mut self) {
        if self.slot != NONE {
            let (slot, gen, home) = (self.slot, self.gen, self.home);
            let _ = TIMERS.try_with(|t| {
                if home != t as *const RefCell<Timers> as usize {
                    return;
                }
                let mut t = t.borrow_mut();
                if t.slots[slot as usize].gen == gen {
                    t.disarm(slot);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_the_last_tick_or_the_real_time() {
        std::thread::spawn(|| {
            let before = Instant::now();
            let t = coarse_now();
            assert!(t >= before && t <= Instant::now(), "no tick: the real time");
            let tick = before - Duration::from_millis(700);
            set_coarse(tick);
            assert_eq!(coarse_now(), tick);
        })
        .join()
        .unwrap();
    }

    /// (heap entries, slots taken) on this thread.
    fn pending() -> (usize, usize) {
        TIMERS.with(|t| {
            let t = t.borrow();
            (t.heap.len(), t.slots.len() - t.free.len())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_fire_in_order_and_answers_win() {
        let driver = tokio::spawn(drive());
        tokio::task::yield_now().await;
        let start = Instant::now();
        // A future that finishes first is its own answer.
        assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
        let quick = timeout(
            Duration::from_secs(5),
            tokio::time::sleep(Duration::from_secs(1)),
        );
        assert_eq!(quick.await, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // A later, then an earlier deadline: each fires at its own time.
        let late = tokio::spawn(timeout(
            Duration::from_secs(30),
            std::future::pending::<()>(),
        ));
        let t0 = Instant::now();
        let early = timeout(Duration::from_millis(250), std::future::pending::<()>()).await;
        assert_eq!(early, Err(Elapsed));
        assert_eq!(t0.elapsed(), Duration::from_millis(250));
        assert_eq!(late.await.unwrap(), Err(Elapsed));
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
        driver.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_deadlines_do_not_pile_up() {
        let driver = tokio::spawn(drive());
        tokio::task::yield_now().await;
        // One long deadline pending, and many short-lived ones armed after it.
        let long = tokio::spawn(timeout(
            Duration::from_secs(60),
            std::future::pending::<()>(),
        ));
        tokio::task::yield_now().await;
        for _ in 0..10_000 {
            let mut t = Box::pin(timeout(
                Duration::from_secs(30),
                std::future::pending::<()>(),
            ));
            let waker = noop_waker();
            let _ = t.as_mut().poll(&mut Context::from_waker(&waker));
        }
        let (heap, live) = pending();
        assert_eq!(live, 1, "only the long deadline is pending");
        assert!(heap <= 2 * 64 + 2, "heap keeps {heap} entries");
        long.abort();
        driver.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_driver_a_tokio_timer_serves() {
        let t0 = Instant::now();
        let r = timeout(Duration::from_millis(40), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(t0.elapsed(), Duration::from_millis(40));
        // And a driver that stops hands its pending deadlines over.
        let driver = tokio::spawn(drive());
        tokio::task::yield_now().await;
        let waiting = tokio::spawn(timeout(
            Duration::from_secs(2),
            std::future::pending::<()>(),
        ));
        tokio::task::yield_now().await;
        driver.abort();
        let _ = driver.await;
        assert_eq!(waiting.await.unwrap(), Err(Elapsed));
        assert_eq!(t0.elapsed(), Duration::from_millis(2040));
    }

    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        Waker::from(std::sync::Arc::new(Noop))
    }
}
