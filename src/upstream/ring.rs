//! A lock-free ring of per-second slots, each holding two counters packed in one
//! `u64` (high and low 32 bits), so one `fetch_add` counts both: the history behind the
//! retry budget (requests, retries) and the breaker's failure rate (requests,
//! failures).
//!
//! A slot remembers which second it counts; the first writer of a new second swaps it
//! in by CAS and zeroes it. A count added by a racing writer in between may be lost:
//! both users take the sums as estimates that err by a request. Time is passed in (ms),
//! so the ring is tested with a driven clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// `N` one-second slots of two counters.
#[derive(Debug)]
pub struct SecondRing<const N: usize> {
    slots: [Slot; N],
}

#[derive(Debug, Default)]
struct Slot {
    /// The second this slot counts (ms / 1000).
    second: AtomicU64,
    /// `(a << 32) | b`.
    counts: AtomicU64,
}

// === impl SecondRing ===

impl<const N: usize> Default for SecondRing<N> {
    fn default() -> Self {
        SecondRing {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

impl<const N: usize> SecondRing<N> {
    /// Adds `a` and `b` to the counters of the second of `now_ms`.
    #[inline]
    pub fn add(&self, now_ms: u64, a: u32, b: u32) {
        let sec = now_ms / 1000;
        let slot = &self.slots[(sec % N as u64) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != sec
            && slot
                .second
                .compare_exchange(seen, sec, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.counts.store(0, Ordering::Relaxed);
        }
        slot.counts
            .fetch_add((u64::from(a) << 32) | u64::from(b), Ordering::Relaxed);
    }

    /// The sums of both counters over the last `secs` seconds (at most `N`), the
    /// current one included.
    pub fn sum(&self, now_ms: u64, secs: u64) -> (u64, u64) {
        let sec = now_ms / 1000;
        let (mut a, mut b) = (0, 0);
        for s in &self.slots {
            let at = s.second.load(Ordering::Acquire);
            if at <= sec && at + secs > sec {
                let c = s.counts.load(Ordering::Relaxed);
                a += c >> 32;
                b += c & 0xffff_ffff;
            }
        }
        (a, b)
    }

    /// Forgets all history.
    pub fn clear(&self) {
        for s in &self.slots {
            s.counts.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_window_and_forgets_old_seconds() {
        let r: SecondRing<10> = SecondRing::default();
        r.add(1_000, 1, 0);
        r.add(1_500, 1, 1);
        r.add(2_000, 3, 2);
        assert_eq!(r.sum(2_500, 10), (5, 3));
        assert_eq!(r.sum(2_500, 1), (3, 2));
        // Ten seconds on, the slot of second 1 is reused and starts from zero.
        r.add(11_000, 1, 1);
        assert_eq!(r.sum(11_000, 10), (4, 3));
        r.clear();
        assert_eq!(r.sum(11_000, 10), (0, 0));
    }
}
