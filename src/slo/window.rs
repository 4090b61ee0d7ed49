//! Rolling windows of (total, bad) event counts in fixed memory, and what is computed
//! from them: SLI, error budget, burn rates, multiwindow alert conditions.
//!
//! Counts go into three rings of time buckets at once: 10 s buckets for 6 h, 5 min
//! buckets for 3 d, 1 h buckets for the SLO window. A window is read from the finest
//! ring that covers it, as Σbad ÷ Σtotal over its buckets (never an average of
//! ratios). Buckets are addressed by absolute time (`unix_secs / bucket_secs`), so a
//! gap (a restart, no traffic) is just empty buckets. Every function takes `now`: the
//! clock is the caller's, and tests drive it.

use crate::availability::snap;
use crate::config::{AlertWindow, SloDef};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One ring of buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    /// Bucket length in seconds.
    pub secs: u64,
    /// Absolute index (`unix_secs / secs`) of the newest bucket.
    pub head: u64,
    /// Events per bucket, ring-indexed by `index % len`.
    pub total: Vec<u64>,
    /// Bad events per bucket.
    pub bad: Vec<u64>,
}

/// The rings of one SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// Finest first.
    pub tiers: Vec<Tier>,
}

/// Counts over one window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    /// Events.
    pub total: u64,
    /// Bad events.
    pub bad: u64,
}

impl Tier {
    fn new(secs: u64, len: usize) -> Tier {
        Tier {
            secs,
            head: 0,
            total: vec![0; len],
            bad: vec![0; len],
        }
    }

    fn len(&self) -> u64 {
        self.total.len() as u64
    }

    /// Moves the head to `now`, clearing the buckets that fell out of the ring.
    fn advance(&mut self, now: u64) {
        let idx = now / self.secs;
        if idx <= self.head {
            return;
        }
        let steps = (idx - self.head).min(self.len());
        for k in 1..=steps {
            let i = ((self.head + k) % self.len()) as usize;
            self.total[i] = 0;
            self.bad[i] = 0;
        }
        self.head = idx;
    }

    fn add(&mut self, now: u64, total: u64, bad: u64) {
        self.advance(now);
        // A clock that stepped back counts into the newest bucket.
        let i = (self.head % self.len()) as usize;
        self.total[i] += total;
        self.bad[i] += bad;
    }

    /// Sum of the `n` newest buckets up to `now`.
    fn sum(&self, now: u64, n: u64) -> Counts {
        let idx = now / self.secs;
        let mut c = Counts::default();
        let n = n.min(self.len());
        for k in 0..n {
            let Some(b) = idx.checked_sub(k) else { break };
            if b > self.head || self.head - b >= self.len() {
                continue; // in the future of the data, or already overwritten
            }
            let i = (b % self.len()) as usize;
            c.total += self.total[i];
            c.bad += self.bad[i];
        }
        c
    }

    fn covers(&self) -> u64 {
        self.secs * (self.len() - 1)
    }

    fn clear(&mut self, now: u64) {
        self.total.iter_mut().for_each(|x| *x = 0);
        self.bad.iter_mut().for_each(|x| *x = 0);
        self.head = now / self.secs;
    }

    /// Copies `old`'s buckets that this ring can hold, by absolute index.
    fn adopt(&mut self, old: &Tier) {
        if old.secs != self.secs || old.total.is_empty() {
            return;
        }
        self.head = old.head;
        let n = self.len().min(old.len());
        for k in 0..n {
            let Some(b) = old.head.checked_sub(k) else {
                break;
            };
            let (i, j) = ((b % self.len()) as usize, (b % old.len()) as usize);
            self.total[i] = old.total[j];
            self.bad[i] = old.bad[j];
        }
    }
}

impl Windows {
    /// Rings for an SLO of this window whose alerts look back at most `longest`.
    pub fn new(window: Duration, longest: Duration) -> Windows {
        let span = window.max(longest).as_secs().max(3600);
        Windows {
            tiers: vec![
                Tier::new(10, 6 * 360 + 1),
                Tier::new(300, 3 * 288 + 1),
                Tier::new(3600, span.div_ceil(3600) as usize + 1),
            ],
        }
    }

    /// Whether `other` has the same ring layout (so its counts can be taken over).
    pub fn same_layout(&self, other: &Windows) -> bool {
        self.tiers.len() == other.tiers.len()
            && self.tiers.iter().zip(&other.tiers).all(|(a, b)| {
                a.secs == b.secs && a.len() == b.len() && b.total.len() == b.bad.len()
            })
    }

    /// Takes over `old`'s counts, ring by ring, as far as the rings overlap (a window
    /// change on reload keeps what still fits).
    pub fn adopt(&mut self, old: &Windows) {
        for t in &mut self.tiers {
            if let Some(o) = old.tiers.iter().find(|o| o.secs == t.secs) {
                t.adopt(o);
            }
        }
    }

    /// Clears every ring whose newest bucket lies in the future of `now` by more than
    /// a bucket (saved while the clock was ahead, or the clock stepped back): such
    /// counts would never be read. Returns whether anything was cleared.
    pub fn drop_future(&mut self, now: u64) -> bool {
        let mut cleared = false;
        for t in &mut self.tiers {
            if t.head > now / t.secs + 1 {
                t.clear(now);
                cleared = true;
            }
        }
        cleared
    }

    /// Whether the counts are consistent (bad ≤ total in every bucket, sane rings).
    pub fn is_valid(&self) -> bool {
        !self.tiers.is_empty()
            && self.tiers.iter().all(|t| {
                t.secs > 0
                    && !t.total.is_empty()
                    && t.total.len() == t.bad.len()
                    && t.total.iter().zip(&t.bad).all(|(a, b)| b <= a)
            })
    }

    /// Bytes of counts held.
    pub fn bytes(&self) -> usize {
        self.tiers.iter().map(|t| t.total.len() * 16).sum()
    }

    /// Counts `total` events of which `bad` were bad, at `now`.
    pub fn add(&mut self, now: u64, total: u64, bad: u64) {
        for t in &mut self.tiers {
            t.add(now, total, bad);
        }
    }

    /// Counts over the last `d` up to `now`, from the finest ring that covers it.
    pub fn over(&self, now: u64, d: Duration) -> Counts {
        let secs = d.as_secs().max(1);
        let tier = self
            .tiers
            .iter()
            .find(|t| t.covers() >= secs)
            .unwrap_or_else(|| &self.tiers[self.tiers.len() - 1]);
        tier.sum(now, secs.div_ceil(tier.secs))
    }
}

/// Burn rate over `c`: the bad share divided by the allowed bad share. `None` without
/// events (no traffic is not a burn, and never NaN).
pub fn burn_rate(c: Counts, allowed_bad: f64) -> Option<f64> {
    (c.total > 0 && allowed_bad > 0.0).then(|| c.bad as f64 / c.total as f64 / allowed_bad)
}

/// The budget of an SLO over its window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// Events in the window.
    pub total: u64,
    /// Bad events in the window.
    pub bad: u64,
    /// Good share; `None` without events.
    pub sli: Option<f64>,
    /// Bad events the objective allows for this many events.
    pub allowed_bad_events: f64,
    /// (1 − objective) × window, in minutes.
    pub budget_minutes: f64,
    /// Share of the budget left (1 untouched, 0 spent, below 0 overspent).
    pub remaining_ratio: f64,
    /// The remaining share in minutes.
    pub remaining_minutes: f64,
}

/// The budget of `def` at `now`.
pub fn budget(def: &SloDef, w: &Windows, now: u64) -> Budget {
    let allowed = def.objective.down();
    let c = w.over(now, def.window);
    let allowed_bad_events = allowed * c.total as f64;
    let remaining_ratio = if c.total == 0 {
        1.0
    } else {
        1.0 - c.bad as f64 / allowed_bad_events
    };
    let budget_minutes = allowed * def.window.as_secs_f64() / 60.0;
    // Rounded to 12 significant digits: 43.2 minutes, not 43.20000000000001.
    Budget {
        total: c.total,
        bad: c.bad,
        sli: (c.total > 0).then(|| snap(c.total.saturating_sub(c.bad) as f64 / c.total as f64)),
        allowed_bad_events: snap(allowed_bad_events),
        budget_minutes: snap(budget_minutes),
        remaining_ratio: snap(remaining_ratio),
        remaining_minutes: snap(remaining_ratio * budget_minutes),
    }
}

/// One alert's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEval {
    /// Severity.
    pub severity: String,
    /// Long window, e.g. `1h`.
    pub long_window: String,
    /// Short window, e.g. `5m`.
    pub short_window: String,
    /// Threshold.
    pub burn_rate_threshold: f64,
    /// Burn rate over the long window (`None` without events).
    pub long_burn_rate: Option<f64>,
    /// Burn rate over the short window.
    pub short_burn_rate: Option<f64>,
    /// Events in the long window.
    pub long_events: u64,
    /// Whether the condition holds.
    pub firing: bool,
    /// At the long window's burn rate, seconds until the budget left is spent.
    pub time_to_exhaustion_seconds: Option<f64>,
}

/// Evaluates every alert of `def` at `now`: firing while both windows burn faster than
/// the threshold and the long window holds at least `min_events` events.
pub fn evaluate(def: &SloDef, w: &Windows, now: u64) -> Vec<AlertEval> {
    let allowed = def.objective.down();
    let b = budget(def, w, now);
    def.alerts
        .windows
        .iter()
        .map(|a| eval_one(def, a, w, now, allowed, &b))
        .collect()
}

fn eval_one(
    def: &SloDef,
    a: &AlertWindow,
    w: &Windows,
    now: u64,
    allowed: f64,
    b: &Budget,
) -> AlertEval {
    let long = w.over(now, a.long);
    let short = w.over(now, a.short);
    let lb = burn_rate(long, allowed);
    let sb = burn_rate(short, allowed);
    let firing = long.total >= def.alerts.min_events.max(1)
        && lb.is_some_and(|x| x > a.burn_rate)
        && sb.is_some_and(|x| x > a.burn_rate);
    let tte = lb
        .filter(|x| *x > 0.0)
        .map(|x| (b.remaining_ratio.max(0.0) * def.window.as_secs_f64()) / x);
    AlertEval {
        severity: a.severity.clone(),
        long_window: fmt_dur(a.long),
        short_window: fmt_dur(a.short),
        burn_rate_threshold: a.burn_rate,
        // For people: 12 significant digits, not 499.9999999999999.
        long_burn_rate: lb.map(snap),
        short_burn_rate: sb.map(snap),
        long_events: long.total,
        firing,
        time_to_exhaustion_seconds: tte,
    }
}

/// Prometheus-style duration: `5m`, `1h`, `3d`, `90s`.
pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s % 86400 == 0 {
        format!("{}d", s / 86400)
    } else if s > 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s > 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(objective: &str) -> SloDef {
        crate::config::slo::test_def(objective)
    }

    const T0: u64 = 1_800_000_000;

    fn w() -> Windows {
        Windows::new(
            Duration::from_secs(30 * 86400),
            Duration::from_secs(3 * 86400),
        )
    }

    #[test]
    fn a_30_day_slo_costs_under_60_kib() {
        // 2161 + 865 + 721 buckets of two u64 counters.
        assert_eq!(w().bytes(), (2161 + 865 + 721) * 16);
        assert!(w().bytes() < 60 * 1024);
    }

    #[test]
    fn windows_sum_counts_not_ratios() {
        let mut w = w();
        // An hour ago: 1000 events, 100 bad. Now: 10 events, 10 bad.
        w.add(T0 - 3600 + 10, 1000, 100);
        w.add(T0, 10, 10);
        let c = w.over(T0, Duration::from_secs(2 * 3600));
        assert_eq!(
            c,
            Counts {
                total: 1010,
                bad: 110
            }
        );
        // The average of the two ratios would be 55%; the true ratio is 10.9%.
        assert!((c.bad as f64 / c.total as f64 - 110.0 / 1010.0).abs() < 1e-12);
        assert_eq!(
            w.over(T0, Duration::from_secs(300)),
            Counts { total: 10, bad: 10 }
        );
        // Thirty days later only the last events are still in the 30-day window.
        let later = T0 + 30 * 86400 - 1800;
        assert_eq!(w.over(later, Duration::from_secs(30 * 86400)).total, 10);
        assert_eq!(w.over(later, Duration::from_secs(3600)).total, 0);
    }

    #[test]
    fn gaps_and_ring_wraps() {
        let mut w = w();
        w.add(T0, 5, 1);
        // Far beyond every ring: everything old is gone, nothing panics.
        w.add(T0 + 400 * 86400, 7, 0);
        assert_eq!(
            w.over(T0 + 400 * 86400, Duration::from_secs(30 * 86400)),
            Counts { total: 7, bad: 0 }
        );
        // A clock step back counts into the newest bucket.
        w.add(T0, 1, 1);
        assert_eq!(w.over(T0 + 400 * 86400, Duration::from_secs(60)).total, 8);
    }

    #[test]
    fn the_seed_budget_and_remaining() {
        let d = def("99.95%");
        let mut w = w();
        w.add(T0, 1_000_000, 250);
        let b = budget(&d, &w, T0);
        assert!((b.budget_minutes - 21.6).abs() < 1e-9);
        assert!((b.allowed_bad_events - 500.0).abs() < 1e-6);
        assert!((b.remaining_ratio - 0.5).abs() < 1e-9);
        assert!((b.remaining_minutes - 10.8).abs() < 1e-9);
        // People read these: 43.2 minutes, not 43.20000000000001.
        let b = budget(&def("99.9%"), &w, T0);
        assert_eq!(serde_json::to_value(b).unwrap()["budget_minutes"], 43.2);
        assert_eq!(b.remaining_minutes, 32.4);
        // No traffic: untouched budget, no SLI, no burn, no alert.
        let empty = budget(&d, &Windows::new(d.window, d.window), T0);
        assert_eq!(empty.remaining_ratio, 1.0);
        assert_eq!(empty.sli, None);
        assert!(evaluate(&d, &Windows::new(d.window, d.window), T0)
            .iter()
            .all(|a| !a.firing && a.long_burn_rate.is_none()));
    }

    #[test]
    fn page_fires_at_14_4x_and_resets_with_the_short_window() {
        let d = def("99.9%");
        let mut w = w();
        // Ten days ago, 100 M good events: the budget is nearly untouched.
        w.add(T0 - 10 * 86400, 100_000_000, 0);
        // An hour of steady traffic burning at 15× (1.5% bad): both page alerts fire.
        for m in 0..60 {
            w.add(T0 + m * 60, 1000, 15);
        }
        let now = T0 + 59 * 60;
        let e = evaluate(&d, &w, now);
        assert!(e[0].firing && e[1].firing, "{e:?}");
        assert!((e[0].long_burn_rate.unwrap() - 15.0).abs() < 1e-9);
        // 15× with 99% of the budget left: 0.99 × 30 d / 15 ≈ 1.98 days to exhaustion.
        let tte = e[0].time_to_exhaustion_seconds.unwrap();
        assert!(tte < 2.0 * 86400.0 && tte > 1.9 * 86400.0, "{tte}");
        // At 1×, only the ticket fires.
        let mut w1 = super::Windows::new(d.window, Duration::from_secs(3 * 86400));
        for m in 0..(6 * 60) {
            w1.add(T0 + m * 60, 1000, 1);
        }
        let e = evaluate(&d, &w1, T0 + (6 * 60 - 1) * 60);
        assert!(!e[0].firing && !e[1].firing, "{e:?}");
        assert!(!e[2].firing, "exactly 1× is not above 1×");
        // The burning stops: ten clean minutes reset the 5 m window, the page clears
        // while the hour still looks bad.
        for m in 60..70 {
            w.add(T0 + m * 60, 1000, 0);
        }
        let e = evaluate(&d, &w, T0 + 69 * 60);
        assert!(!e[0].firing, "{e:?}");
        assert!(e[0].long_burn_rate.unwrap() > 10.0);
    }

    #[test]
    fn low_traffic_gate() {
        let mut d = def("99.9%");
        d.alerts.min_events = 100;
        let mut w = w();
        w.add(T0, 3, 3); // three requests, all bad: a burn of 1000×
        assert!(evaluate(&d, &w, T0).iter().all(|a| !a.firing));
        d.alerts.min_events = 1;
        assert!(evaluate(&d, &w, T0)[0].firing);
    }

    #[test]
    fn a_window_change_keeps_what_fits_and_future_counts_are_dropped() {
        let mut old = w();
        old.add(T0 - 86400, 100, 1);
        old.add(T0, 10, 1);
        let mut new = Windows::new(
            Duration::from_secs(7 * 86400),
            Duration::from_secs(3 * 86400),
        );
        new.adopt(&old);
        assert_eq!(
            new.over(T0, Duration::from_secs(7 * 86400)),
            Counts { total: 110, bad: 2 }
        );
        assert_eq!(
            new.over(T0, Duration::from_secs(300)),
            Counts { total: 10, bad: 1 }
        );
        // Saved two days in the future: those rings are cleared, counting resumes.
        let mut fut = w();
        fut.add(T0 + 2 * 86400, 5, 5);
        assert!(fut.drop_future(T0));
        fut.add(T0, 3, 1);
        assert_eq!(
            fut.over(T0, Duration::from_secs(3600)),
            Counts { total: 3, bad: 1 }
        );
        assert!(!fut.drop_future(T0));
        assert!(fut.is_valid());
        fut.tiers[0].bad[0] = 99;
        assert!(!fut.is_valid());
    }

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(fmt_dur(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_dur(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_dur(Duration::from_secs(3 * 86400)), "3d");
        assert_eq!(fmt_dur(Duration::from_secs(90)), "90s");
    }
}
