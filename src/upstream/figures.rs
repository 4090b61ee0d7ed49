//! Per-endpoint figures over the last minute: requests, errors and the latency
//! distribution of the exchanges the data path had with an endpoint, for the dashboard
//! and `/api/v1/state` (requests per second, error rate, p50 and p99).
//!
//! The data path writes them cheaply: each worker thread writes its own shard
//! ([`set_shard`]), a cache line apart from the others, so workers never contend; a
//! write is three relaxed increments into the current 10 s step (six steps make the
//! minute). Nothing is merged or computed until someone reads ([`Figures::read`]), so
//! they cost nothing more when nobody looks. An exchange is timed by a [`Timing`]: one
//! abandoned before its answer (the route's timeout fired, or the request was dropped)
//! counts as an error when the guard drops. Latency is the time to the answer's head,
//! in 40 half-octave buckets from 32 µs to about 33 s (quantiles are interpolated in
//! their bucket: a figure for people, not an SLI; the SLOs count exactly).
//!
//! Memory: about 1 KiB per endpoint and shard (one shard per worker, at most 8).

use std::cell::Cell;
use std::sync::atomic::{
    AtomicU32, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// Length of one step of the window.
pub const STEP_MS: u64 = 10_000;
/// Steps kept: the window is `STEP_MS × STEPS` (the current step partly filled).
const STEPS: usize = 6;
/// Latency buckets: bucket `i` starts at `FIRST_US × 2^(i/2)`.
const BUCKETS: usize = 40;
const FIRST_US: u64 = 32;
/// The most shards figures are kept in; workers beyond share them.
const MAX_SHARDS: usize = 8;

static SHARDS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Sets how many shards endpoint figures created from now on have: the number of
/// workers (capped at 8). Set once at start, before the first snapshot.
pub fn set_shards(workers: usize) {
    SHARDS.store(workers.clamp(1, MAX_SHARDS), Relaxed);
}

/// Makes the calling thread write shard `id` (mod the shard count): called by each
/// worker thread at its start.
pub fn set_shard(id: usize) {
    SHARD.with(|s| s.set(id));
}

/// One endpoint's figures: a shard per worker, made at the endpoint's first exchange
/// (about 1 KB per worker: an endpoint that never sees traffic, one of a thousand
/// clusters, holds none).
#[derive(Debug)]
pub struct Figures {
    shards: OnceLock<Box<[Shard]>>,
    count: usize,
}

/// One worker's steps, a cache line apart from the next worker's.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    steps: [Step; STEPS],
}

/// One 10 s step: which step it holds (0: none yet), and its counts.
#[derive(Debug)]
struct Step {
    epoch: AtomicU32,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; BUCKETS],
}

/// One exchange being timed: [`Timing::finish`] records it; dropped unfinished (the
/// exchange was abandoned: the route's timeout, the request dropped), it records an
/// error with the time it had taken.
#[derive(Debug)]
pub struct Timing<'a> {
    figures: &'a Figures,
    started: Instant,
    done: bool,
}

/// What [`Figures::read`] found over the last minute.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Minute {
    /// Seconds the figures cover (up to 60; less just after the start).
    pub seconds: f64,
    /// Exchanges that ended.
    pub requests: u64,
    /// Of them, failures: no answer (connect, reset, timeout) or a 5xx.
    pub errors: u64,
    /// Median time to the answer's head, in ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the same, in ms.
    pub p99_ms: Option<f64>,
}

// === impl Step ===

impl Default for Step {
    fn default() -> Self {
        Step {
            epoch: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

// === impl Figures ===

impl Default for Figures {
    fn default() -> Self {
        Figures::new()
    }
}

impl Figures {
    /// Empty figures, with as many shards as [`set_shards`] said.
    pub fn new() -> Self {
        Figures {
            shards: OnceLock::new(),
            count: SHARDS.load(Relaxed).max(1),
        }
    }

    /// Starts timing an exchange now.
    #[inline]
    pub fn start(&self) -> Timing<'_> {
        Timing {
            figures: self,
            started: Instant::now(),
            done: false,
        }
    }

    /// Records one exchange that ended at `now_ms` (of `upstream::now_ms`) after
    /// `took`, failed or not, in the calling worker's shard.
    #[inline]
    pub fn record(&self, now_ms: u64, took: Duration, error: bool) {
        let shards = self
            .shards
            .get_or_init(|| (0..self.count).map(|_| Shard::default()).collect());
        let shard = SHARD.with(Cell::get) % shards.len();
        let epoch = (now_ms / STEP_MS) as u32 + 1;
        let step = &shards[shard].steps[epoch as usize % STEPS];
        let held = step.epoch.load(Acquire);
        if held > epoch {
            // A newer step owns the slot (a reading taken long before): the sample is
            // older than the window anyway.
            return;
        }
        if held < epoch {
            // The first exchange of a new step on this shard: what the slot held is
            // a minute old. The epoch is published after the counts are cleared.
            step.requests.store(0, Relaxed);
            step.errors.store(0, Relaxed);
            for b in &step.latency {
                b.store(0, Relaxed);
            }
            step.epoch.store(epoch, Release);
        }
        step.requests.fetch_add(1, Relaxed);
        if error {
            step.errors.fetch_add(1, Relaxed);
        }
        step.latency[bucket(took)].fetch_add(1, Relaxed);
    }

    /// Merges the shards' steps of the last minute up to `now_ms`.
    pub fn read(&self, now_ms: u64) -> Minute {
        let current = (now_ms / STEP_MS) as u32 + 1;
        let oldest = current.saturating_sub(STEPS as u32 - 1).max(1);
        let mut m = Minute::default();
        let mut hist = [0u64; BUCKETS];
        for shard in self.shards.get().map_or(&[][..], |s| &s[..]) {
            for step in &shard.steps {
                let e = step.epoch.load(Acquire);
                if e < oldest || e > current {
                    continue;
                }
                m.requests += u64::from(step.requests.load(Relaxed));
                m.errors += u64::from(step.errors.load(Relaxed));
                for (h, b) in hist.iter_mut().zip(&step.latency) {
                    *h += u64::from(b.load(Relaxed));
                }
            }
        }
        // From the oldest step's start (or the process's), to now.
        let start = u64::from(oldest - 1) * STEP_MS;
        m.seconds = now_ms.saturating_sub(start).max(1) as f64 / 1000.0;
        m.p50_ms = quantile(&hist, 0.5);
        m.p99_ms = quantile(&hist, 0.99);
        m
    }
}

// === impl Timing ===

impl Timing<'_> {
    /// Records the exchange as ended now, failed (no answer, or a 5xx) or not.
    #[inline]
    pub fn finish(mut self, error: bool) {
        self.done = true;
        self.record(error);
    }

    fn record(&self, error: bool) {
        let end = Instant::now();
        let took = end.saturating_duration_since(self.started);
        self.figures.record(super::now_ms_at(end), took, error);
    }
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record(true);
        }
    }
}

/// The bucket of a latency: half-octaves from 32 µs.
fn bucket(took: Duration) -> usize {
    let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
    if us < FIRST_US {
        return 0;
    }
    let octave = 63 - u64::from(us.leading_zeros());
    // The upper half of the octave starts at 2^octave × √2 (181/128 ≈ 1.414).
    let upper = u128::from(us) * 128 >= (1u128 << octave) * 181;
    let first = u64::from(FIRST_US.trailing_zeros());
    (((octave - first) * 2) as usize + usize::from(upper)).min(BUCKETS - 1)
}

/// Where bucket `i` starts, in µs.
fn bucket_start(i: usize) -> f64 {
    FIRST_US as f64 * 2f64.powf(i as f64 / 2.0)
}

/// The `q` quantile of a histogram, in ms, interpolated geometrically in its bucket;
/// `None` when it is empty.
fn quantile(hist: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &n) in hist.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let next = seen + n as f64;
        if next >= rank {
            let (lo, hi) = (bucket_start(i), bucket_start(i + 1));
            let lo = if i == 0 { 0.0 } else { lo };
            let f = ((rank - seen) / n as f64).clamp(0.0, 1.0);
            let us = if lo == 0.0 {
                hi * f
            } else {
                lo * (hi / lo).powf(f)
            };
            return Some(us / 1000.0);
        }
        seen = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_grow_by_half_octaves() {
        assert_eq!(bucket(Duration::from_micros(10)), 0);
        assert_eq!(bucket(Duration::from_micros(32)), 0);
        assert_eq!(bucket(Duration::from_micros(46)), 1);
        assert_eq!(bucket(Duration::from_micros(64)), 2);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
        for i in 1..BUCKETS - 1 {
            let start = Duration::from_micros(bucket_start(i).ceil() as u64);
            assert_eq!(bucket(start), i, "bucket {i} starts at {start:?}");
        }
    }

    #[test]
    fn a_minute_of_exchanges_reads_back_as_rate_errors_and_quantiles() {
        let f = Figures::new();
        let t0 = 120_000;
        for i in 0..1000u64 {
            let took = if i < 990 { ms(2) } else { ms(200) };
            f.record(t0 + i * 50, took, i % 100 == 0);
        }
        let m = f.read(t0 + 50_000);
        assert_eq!(m.requests, 1000);
        assert_eq!(m.errors, 10);
        let p50 = m.p50_ms.unwrap();
        assert!((1.4..=2.9).contains(&p50), "p50 {p50}");
        let p99 = m.p99_ms.unwrap();
        assert!((1.4..=2.9).contains(&p99), "p99 sits at the 990th: {p99}");
        assert!((50.0..=60.0).contains(&m.seconds), "{}", m.seconds);
    }

    #[test]
    fn figures_older_than_a_minute_are_gone_and_a_reused_step_starts_empty() {
        let f = Figures::new();
        f.record(5_000, ms(1), true);
        assert_eq!(f.read(9_000).requests, 1);
        // 70 s later the step is out of the window...
        assert_eq!(f.read(75_000).requests, 0);
        assert_eq!(f.read(75_000).p50_ms, None);
        // ... and when its slot is written again, the old count is not added.
        f.record(65_000, ms(1), false);
        let m = f.read(66_000);
        assert_eq!((m.requests, m.errors), (1, 0));
    }

    #[test]
    fn an_abandoned_exchange_counts_as_an_error_and_a_finished_one_as_it_went() {
        let f = Figures::new();
        f.start().finish(false);
        drop(f.start());
        let m = f.read(crate::upstream::now_ms());
        assert_eq!((m.requests, m.errors), (2, 1));
    }

    #[test]
    fn a_sample_older_than_its_slot_is_dropped_not_mixed_in() {
        let f = Figures::new();
        f.record(65_000, ms(1), false);
        // 60 s older: the same slot, a step the window has left behind.
        f.record(5_000, ms(1), true);
        let m = f.read(66_000);
        assert_eq!((m.requests, m.errors), (1, 0));
    }

    #[test]
    fn shards_merge_when_read() {
        set_shards(3);
        let f = Figures::new();
        set_shards(1);
        for id in 0..3 {
            set_shard(id);
            f.record(1_000, ms(5), false);
        }
        set_shard(0);
        let shards = f.shards.get().unwrap();
        assert_eq!(shards.len(), 3);
        assert!(shards
            .iter()
            .all(|s| s.steps[1].requests.load(Relaxed) == 1));
        assert_eq!(f.read(2_000).requests, 3);
    }
}
