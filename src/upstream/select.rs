//! The selection step: (cluster, live state, request key, endpoints this request
//! already tried) → one endpoint. Four stages, each narrowing the set:
//!
//! 1. **Eligibility**: endpoints that are available (not unhealthy, ejected, drained or
//!    circuit-open; a half-open breaker only while it has trials left) and, for a write with a `writes: {zone}` split, in that zone. If the available
//!    share of the cluster is below `panic_threshold`, health is ignored instead
//!    (drains and breakers still hold): panic mode, logged and exported, never silent.
//!    When every endpoint is out only because of its breaker, the answer is
//!    [`NoPick::CircuitOpen`].
//! 2. **Priority level**: Envoy's overprovisioning rule. Level `p`'s health is
//!    `min(100, 1.4 × available/total × 100)`; level 0 takes that share of traffic, the
//!    next level what is left up to its own health, and so on; if all levels together are
//!    below 100 the shares are normalised. So the backups take nothing while the
//!    primaries have ≥ 71.4% of their endpoints, then a growing share, then everything.
//! 3. **Zone**: with a `local_zone`, the level's local endpoints take all of its traffic
//!    while their available share is at least `zone_spill_below`; below that, the level's
//!    traffic spreads over all its zones by weight.
//! 4. **Balancer** over what is left, keeping each algorithm's property: round robin
//!    skips ineligible turns of its smooth sequence, weighted random and P2C draw among
//!    the eligible, Maglev probes past an ineligible slot so only the keys of endpoints
//!    that are out move.
//!
//! Endpoints this request already tried are avoided while any other eligible one
//! exists. A pick allocates nothing for clusters of up to 256 endpoints.

use super::balance::Balancer;
use super::endpoint::{ClusterLive, EndpointState, Out};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Envoy's overprovisioning factor: a level is "full" at 1/1.4 = 71.4% available.
pub const OVERPROVISIONING: f64 = 1.4;

/// Endpoints a request has already tried (bits by index; indices past 256 are not
/// remembered, which only weakens the "another endpoint" preference).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tried([u64; 4]);

/// Where an endpoint sits, for the level and zone stages.
#[derive(Debug, Clone)]
pub struct EndpointMeta {
    /// Zone label.
    pub zone: Option<Arc<str>>,
    /// Weight.
    pub weight: u32,
    /// Priority level, 0 first.
    pub priority: u8,
}

/// Everything the selection step reads of one cluster; built with the snapshot.
#[derive(Debug)]
pub struct Selector {
    /// Live state, in config order.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Config of each endpoint, same order.
    pub meta: Vec<EndpointMeta>,
    /// The load balancer over all endpoints.
    pub balancer: Balancer,
    /// Cluster-wide live state (ejection count, panic).
    pub live: Arc<ClusterLive>,
    /// The cluster's name, for log lines.
    pub name: Arc<str>,
    /// This gateway's zone.
    pub local_zone: Option<Arc<str>>,
    /// Available share (percent) of the local zone below which traffic spills.
    pub zone_spill_below: f64,
    /// Available share (percent) below which health is ignored.
    pub panic_threshold: Option<f64>,
    /// Number of priority levels (highest priority + 1).
    levels: usize,
}

/// Why no endpoint was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPick {
    /// The cluster has no endpoints at all.
    Empty,
    /// None is usable (all unhealthy, ejected or drained), and no panic mode.
    NoneHealthy,
    /// None is usable, and only because their circuit breakers reject.
    CircuitOpen,
}

/// A pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Endpoint index.
    pub index: usize,
    /// Whether panic mode chose it (health ignored).
    pub panic: bool,
}

/// A set of endpoint indices; on the stack up to 256.
enum Set {
    Small([u64; 4]),
    Large(Vec<u64>),
}

// === impl Tried ===

impl Tried {
    /// Remembers endpoint `i`.
    pub fn add(&mut self, i: usize) {
        if i < 256 {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }

    /// Whether endpoint `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        i < 256 && self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

// === impl Set ===

impl Set {
    fn new(n: usize) -> Set {
        if n <= 256 {
            Set::Small([0; 4])
        } else {
            Set::Large(vec![0; n.div_ceil(64)])
        }
    }

    fn words(&self) -> &[u64] {
        match self {
            Set::Small(w) => w,
            Set::Large(w) => w,
        }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        match self {
            Set::Small(w) => w,
            Set::Large(w) => w,
        }
    }

    fn insert(&mut self, i: usize) {
        self.words_mut()[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, i: usize) -> bool {
        self.words()[i / 64] & (1 << (i % 64)) != 0
    }

    fn is_empty(&self) -> bool {
        self.words().iter().all(|w| *w == 0)
    }
}

// === impl Selector ===

impl Selector {
    /// Builds a selector; `meta` and `endpoints` are in the same order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Arc<str>,
        endpoints: Vec<Arc<EndpointState>>,
        meta: Vec<EndpointMeta>,
        balancer: Balancer,
        live: Arc<ClusterLive>,
        local_zone: Option<Arc<str>>,
        zone_spill_below: f64,
        panic_threshold: Option<f64>,
    ) -> Self {
        let levels = meta
            .iter()
            .map(|m| usize::from(m.priority) + 1)
            .max()
            .unwrap_or(1);
        Selector {
            name,
            endpoints,
            meta,
            balancer,
            live,
            local_zone,
            zone_spill_below,
            panic_threshold,
            levels,
        }
    }

    /// How many endpoints are available now (for `/health` and the state API).
    pub fn available(&self, now: u64) -> usize {
        self.endpoints.iter().filter(|e| e.available(now)).count()
    }

    /// Whether a pick now would be in panic mode (for the state API and metrics, which
    /// must not wait for a request to notice).
    pub fn in_panic(&self, now: u64) -> bool {
        let n = self.endpoints.iter().filter(|e| !e.retiring()).count();
        n > 0
            && self
                .panic_threshold
                .is_some_and(|t| (self.available(now) as f64) * 100.0 / (n as f64) < t)
    }

    /// Picks an endpoint. `key` is the request's hash key (consistent hashing);
    /// `zone` restricts the pick to one zone (a write under `writes: {zone}`); `roll`
    /// is a uniform draw in `[0, 1)` that picks the priority level.
    pub fn pick(
        &self,
        key: Option<u64>,
        zone: Option<&str>,
        tried: &Tried,
        now: u64,
        roll: f64,
    ) -> Result<Pick, NoPick> {
        self.pick_with(key, zone, tried, &Tried::default(), now, roll)
    }

    /// [`Selector::pick`], never choosing an endpoint of `skip`: those whose breaker
    /// refused a trial permit after an earlier pick of this same request (another
    /// request took the last one), counted as out because of their breaker.
    pub fn pick_with(
        &self,
        key: Option<u64>,
        zone: Option<&str>,
        tried: &Tried,
        skip: &Tried,
        now: u64,
        roll: f64,
    ) -> Result<Pick, NoPick> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(NoPick::Empty);
        }
        // 1. Eligibility, counted per level.
        let mut avail = Set::new(n);
        let mut total = [0u32; 8];
        let mut up = [0u32; 8];
        let mut all_up = 0;
        let mut in_scope = 0;
        // Endpoints out only because of their breaker: when that is all of them, the
        // answer says so (`circuit-open`), not "unhealthy".
        let mut breaker_out = 0;
        for (i, (e, m)) in self.endpoints.iter().zip(&self.meta).enumerate() {
            if zone.is_some_and(|z| m.zone.as_deref() != Some(z)) {
                continue;
            }
            let out = e.out(now);
            // An endpoint discovery removed is on its way out: not part of the
            // cluster's size (shares, levels, panic), not only unavailable.
            if out == Some(Out::Drained) && e.retiring() {
                continue;
            }
            in_scope += 1;
            let l = usize::from(m.priority);
            total[l] += 1;
            match out {
                None if !skip.contains(i) => {
                    avail.insert(i);
                    up[l] += 1;
                    all_up += 1;
                }
                None | Some(Out::CircuitOpen) => breaker_out += 1,
                Some(_) => {}
            }
        }
        if in_scope == 0 {
            return Err(NoPick::NoneHealthy);
        }
        let none = if breaker_out == in_scope {
            NoPick::CircuitOpen
        } else {
            NoPick::NoneHealthy
        };
        let share = f64::from(all_up) * 100.0 / f64::from(in_scope);
        let panic = self.panic_threshold.is_some_and(|t| share < t);
        self.note_panic(panic, now);
        if panic {
            // Spread over every endpoint in scope but the drained ones and those whose
            // breaker rejects: panic mode overrides health, not an explicit stop.
            avail = Set::new(n);
            for (i, (e, m)) in self.endpoints.iter().zip(&self.meta).enumerate() {
                if zone.is_none_or(|z| m.zone.as_deref() == Some(z))
                    && !e.draining()
                    && e.breaker.may_pass(now)
                    && !skip.contains(i)
                {
                    avail.insert(i);
                }
            }
            if avail.is_empty() {
                return Err(none);
            }
            let index = self.balance(key, &avail, tried);
            return Ok(Pick { index, panic: true });
        }
        if all_up == 0 {
            return Err(none);
        }

        // 2. Priority level.
        let level = if self.levels == 1 {
            0
        } else {
            choose_level(&total[..self.levels], &up[..self.levels], roll)
        };
        let mut set = Set::new(n);
        for i in 0..n {
            if avail.contains(i) && usize::from(self.meta[i].priority) == level {
                set.insert(i);
            }
        }

        // 3. Zone, for reads (a write's zone was fixed in stage 1).
        if let (Some(local), None) = (&self.local_zone, zone) {
            let (mut zt, mut zu) = (0u32, 0u32);
            for (i, m) in self.meta.iter().enumerate() {
                if usize::from(m.priority) == level
                    && m.zone.as_deref() == Some(&**local)
                    && !self.endpoints[i].retiring()
                {
                    zt += 1;
                    zu += u32::from(avail.contains(i));
                }
            }
            if zu > 0 && f64::from(zu) * 100.0 / f64::from(zt) >= self.zone_spill_below {
                for i in 0..n {
                    if self.meta[i].zone.as_deref() != Some(&**local) {
                        set.words_mut()[i / 64] &= !(1 << (i % 64));
                    }
                }
            }
        }

        // 4. Balancer; another endpoint than those tried when there is one.
        let index = self.balance_avoiding(key, &set, &avail, tried);
        Ok(Pick {
            index,
            panic: false,
        })
    }

    /// The balancer over `set` minus what was tried; if that is empty, over everything
    /// available minus what was tried; if that is empty too, over `set`.
    fn balance_avoiding(&self, key: Option<u64>, set: &Set, avail: &Set, tried: &Tried) -> usize {
        let fresh =
            |s: &Set| (0..self.endpoints.len()).any(|i| s.contains(i) && !tried.contains(i));
        if fresh(set) {
            self.balance(key, set, tried)
        } else if fresh(avail) {
            self.balance(key, avail, tried)
        } else {
            self.balance(key, set, &Tried::default())
        }
    }

    fn balance(&self, key: Option<u64>, set: &Set, tried: &Tried) -> usize {
        let ok = |i: usize| set.contains(i) && !tried.contains(i);
        let load = |i: usize| {
            let e = &self.endpoints[i];
            e.in_flight.load(Ordering::Relaxed) + e.failures()
        };
        self.balancer.pick_in(key, load, ok)
    }

    fn note_panic(&self, panic: bool, now: u64) {
        if self.live.panic.load(Ordering::Relaxed) == panic {
            return;
        }
        if self
            .live
            .panic
            .compare_exchange(!panic, panic, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if panic {
                self.live.panic_since.store(now, Ordering::Relaxed);
                tracing::warn!(
                    cluster = %self.name,
                    endpoints = self.endpoints.len(),
                    "panic mode: too few endpoints available, spreading over all of them, health ignored"
                );
                crate::events::emit("panic_begin", Some(&self.name), None, "panic mode: too few endpoints available, spreading over all of them, health ignored".into());
            } else {
                tracing::info!(cluster = %self.name, "panic mode over: enough endpoints available again");
                crate::events::emit(
                    "panic_end",
                    Some(&self.name),
                    None,
                    "panic mode over: enough endpoints available again".into(),
                );
            }
        }
    }
}

/// Envoy's priority load: the level for a uniform draw `roll` in `[0, 1)`.
pub fn choose_level(total: &[u32], up: &[u32], roll: f64) -> usize {
    let mut health = [0f64; 8];
    let mut sum = 0.0;
    for l in 0..total.len() {
        if total[l] > 0 {
            health[l] =
                (OVERPROVISIONING * f64::from(up[l]) * 100.0 / f64::from(total[l])).min(100.0);
        }
        sum += health[l];
    }
    if sum <= 0.0 {
        return 0;
    }
    // Level loads: each takes up to its health from what the levels above left.
    let scale = if sum < 100.0 { 100.0 / sum } else { 1.0 };
    let mut left = 100.0;
    let mut acc = 0.0;
    let target = roll * 100.0;
    let mut last = 0;
    for (l, h) in health.iter().enumerate().take(total.len()) {
        let load = (h * scale).min(left);
        left -= load;
        if load > 0.0 {
            last = l;
            acc += load;
            if target < acc {
                return l;
            }
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Health;

    fn selector(spec: &[(&str, u8)], local: Option<&str>, panic: Option<f64>) -> Selector {
        let eps: Vec<_> = (0..spec.len())
            .map(|i| {
                Arc::new(EndpointState::new(
                    i,
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                ))
            })
            .collect();
        let meta = spec
            .iter()
            .map(|(z, p)| EndpointMeta {
                zone: Some((*z).into()),
                weight: 1,
                priority: *p,
            })
            .collect();
        Selector::new(
            "c".into(),
            eps,
            meta,
            Balancer::round_robin(&vec![1; spec.len()]),
            Arc::default(),
            local.map(Into::into),
            100.0 / 1.4,
            panic,
        )
    }

    fn share(s: &Selector, n: usize) -> Vec<usize> {
        let mut c = vec![0; s.endpoints.len()];
        for k in 0..n {
            let roll = (k as f64 + 0.5) / n as f64;
            c[s.pick(None, None, &Tried::default(), 1, roll)
                .unwrap()
                .index] += 1;
        }
        c
    }

    #[test]
    fn levels_follow_the_overprovisioning_rule() {
        // 4 primaries, 0 up → 100% to the backups.
        assert_eq!(choose_level(&[4, 2], &[0, 2], 0.0), 1);
        // All up: everything on level 0.
        assert_eq!(choose_level(&[4, 2], &[4, 2], 0.99), 0);
        // 3 of 4 up: 1.4 × 75% = 105% → still all on level 0.
        assert_eq!(choose_level(&[4, 2], &[3, 2], 0.99), 0);
        // 2 of 4 up: 70% on level 0, 30% spills to level 1.
        assert_eq!(choose_level(&[4, 2], &[2, 2], 0.69), 0);
        assert_eq!(choose_level(&[4, 2], &[2, 2], 0.71), 1);
        // Both degraded: 1.4×25=35 and 1.4×50=70 → 35:65 after normalising... 35 + 65.
        assert_eq!(choose_level(&[4, 2], &[1, 1], 0.30), 0);
        assert_eq!(choose_level(&[4, 2], &[1, 1], 0.40), 1);
    }

    #[test]
    fn backups_take_traffic_only_when_primaries_degrade() {
        let s = selector(&[("a", 0), ("a", 0), ("b", 1)], None, None);
        assert_eq!(share(&s, 300), vec![150, 150, 0]);
        s.endpoints[0].set_health(Health::Unhealthy, 1);
        // 1 of 2 primaries: 70% stays, 30% to the backup.
        let c = share(&s, 1000);
        assert_eq!(c[0], 0);
        assert_eq!(c[1], 700);
        assert_eq!(c[2], 300);
        s.endpoints[1].set_health(Health::Unhealthy, 1);
        assert_eq!(share(&s, 100), vec![0, 0, 100]);
        // Failback.
        s.endpoints[0].set_health(Health::Healthy, 2);
        s.endpoints[1].set_health(Health::Healthy, 2);
        assert_eq!(share(&s, 100), vec![50, 50, 0]);
    }

    #[test]
    fn zone_spill_and_return() {
        let s = selector(
            &[("a", 0), ("a", 0), ("a", 0), ("b", 0), ("b", 0)],
            Some("a"),
            None,
        );
        let c = share(&s, 300);
        assert_eq!(c, vec![100, 100, 100, 0, 0]);
        // 2 of 3 local = 66.7% < 71.4%: spill over every zone.
        s.endpoints[0].set_health(Health::Unhealthy, 1);
        let c = share(&s, 400);
        assert_eq!(c[0], 0);
        assert!(c[3] > 0 && c[4] > 0, "{c:?}");
        s.endpoints[0].set_health(Health::Healthy, 1);
        assert_eq!(share(&s, 300), vec![100, 100, 100, 0, 0]);
        // Writes pinned to zone b.
        let p = s.pick(None, Some("b"), &Tried::default(), 1, 0.5).unwrap();
        assert!(p.index >= 3);
    }

    #[test]
    fn nothing_usable_and_panic() {
        let s = selector(&[("a", 0), ("a", 0)], None, None);
        s.endpoints[0].set_health(Health::Unhealthy, 1);
        s.endpoints[1].set_health(Health::Unhealthy, 1);
        assert_eq!(
            s.pick(None, None, &Tried::default(), 1, 0.5),
            Err(NoPick::NoneHealthy)
        );
        let s = selector(&[("a", 0), ("a", 0)], None, Some(50.0));
        s.endpoints[0].set_health(Health::Unhealthy, 1);
        s.endpoints[1].set_health(Health::Unhealthy, 1);
        let p = s.pick(None, None, &Tried::default(), 1, 0.5).unwrap();
        assert!(p.panic);
        assert!(s.live.panic.load(Ordering::Relaxed));
        s.endpoints[1].set_health(Health::Healthy, 2);
        let p = s.pick(None, None, &Tried::default(), 1, 0.5).unwrap();
        assert!(!p.panic, "50% available is not below 50%");
        assert!(!s.live.panic.load(Ordering::Relaxed));
    }

    #[test]
    fn endpoints_discovery_removed_are_not_part_of_the_shares() {
        // 4 endpoints, 3 of them draining out after a discovery update: the one left
        // is the whole cluster, not a 25% share that trips panic mode or spills to
        // the next priority level.
        let s = selector(
            &[("a", 0), ("a", 0), ("a", 0), ("a", 0), ("a", 1)],
            None,
            Some(50.0),
        );
        for e in &s.endpoints[1..4] {
            e.set_retiring(true);
        }
        for _ in 0..100 {
            let p = s.pick(None, None, &Tried::default(), 1, 0.99).unwrap();
            assert_eq!((p.index, p.panic), (0, false));
        }
        assert!(!s.in_panic(1));
        // An operator's drain is a lost endpoint, as before.
        s.endpoints[1].set_retiring(false);
        s.endpoints[1].set_drained(true, 1);
        assert_eq!(s.available(1), 2);
    }

    #[test]
    fn a_fast_failing_endpoint_does_not_look_idle_to_least_request() {
        let eps: Vec<_> = (0..2)
            .map(|i| {
                Arc::new(EndpointState::new(
                    i,
                    format!("127.0.0.1:{}", 1 + i).parse().unwrap(),
                ))
            })
            .collect();
        let meta = (0..2)
            .map(|_| EndpointMeta {
                zone: None,
                weight: 1,
                priority: 0,
            })
            .collect();
        let s = Selector::new(
            "c".into(),
            eps,
            meta,
            Balancer::least_request(&[1, 1]),
            Arc::default(),
            None,
            70.0,
            None,
        );
        // Endpoint 0 fails at once (nothing in flight), endpoint 1 is busy.
        let cfg = crate::config::OutlierConfig {
            consecutive_failures: 1000,
            ..Default::default()
        };
        for _ in 0..5 {
            s.endpoints[0].failure(&cfg, &s.live, 2, 1);
        }
        s.endpoints[1].in_flight.store(3, Ordering::Relaxed);
        for _ in 0..50 {
            let p = s.pick(None, None, &Tried::default(), 1, 0.5).unwrap();
            assert_eq!(
                p.index, 1,
                "five failures in a row weigh more than three in flight"
            );
        }
    }

    #[test]
    fn a_retry_goes_elsewhere() {
        let s = selector(&[("a", 0), ("a", 0), ("a", 0)], None, None);
        for _ in 0..30 {
            let first = s.pick(None, None, &Tried::default(), 1, 0.5).unwrap().index;
            let mut t = Tried::default();
            t.add(first);
            let second = s.pick(None, None, &t, 1, 0.5).unwrap().index;
            assert_ne!(first, second);
        }
        // With one endpoint, the retry goes to it again.
        let s = selector(&[("a", 0)], None, None);
        let mut t = Tried::default();
        t.add(0);
        assert_eq!(s.pick(None, None, &t, 1, 0.5).unwrap().index, 0);
    }

    #[test]
    fn breakers_hold_even_in_panic_mode_and_say_circuit_open() {
        let s = selector(&[("a", 0), ("a", 0)], None, Some(50.0));
        s.endpoints[0].breaker.force_open(1);
        for _ in 0..10 {
            assert_eq!(
                s.pick(None, None, &Tried::default(), 1, 0.5).unwrap().index,
                1
            );
        }
        s.endpoints[1].breaker.force_open(1);
        assert_eq!(
            s.pick(None, None, &Tried::default(), 1, 0.5),
            Err(NoPick::CircuitOpen)
        );
        // One of them also unhealthy: not only breakers any more.
        s.endpoints[0].set_health(Health::Unhealthy, 2);
        assert_eq!(
            s.pick(None, None, &Tried::default(), 2, 0.5),
            Err(NoPick::NoneHealthy)
        );
    }

    #[test]
    fn a_skipped_endpoint_is_not_picked_and_counts_as_breaker_out() {
        let s = selector(&[("a", 0), ("a", 0)], None, None);
        let mut skip = Tried::default();
        skip.add(0);
        for _ in 0..10 {
            let p = s.pick_with(None, None, &Tried::default(), &skip, 1, 0.5);
            assert_eq!(p.unwrap().index, 1);
        }
        s.endpoints[1].breaker.force_open(1);
        assert_eq!(
            s.pick_with(None, None, &Tried::default(), &skip, 1, 0.5),
            Err(NoPick::CircuitOpen)
        );
    }
}
