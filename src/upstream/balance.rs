//! Load balancing: picking one endpoint of a cluster for a request.
//!
//! Everything that costs (weight expansion, the Maglev table) is computed once when a
//! snapshot is built; a pick is then a few atomic or arithmetic operations and never
//! takes a lock:
//! - `round_robin`: a precomputed smooth weighted sequence (nginx's interleaving, so
//!   weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`) walked by one atomic
//!   counter.
//! - `random`: weighted random over cumulative weights.
//! - `least_request`: power of two choices (two weighted random candidates, the one with
//!   fewer in-flight requests per unit of weight wins), as Envoy and Linkerd do.
//! - `consistent_hash`: Maglev (Eisenbud et al., NSDI 2016): a lookup table of prime
//!   size where each endpoint owns slots in proportion to its weight; adding or removing
//!   one of N endpoints moves about 1/N of keys.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Maglev table size: a prime well above 100 × the endpoints a cluster has in practice,
/// which keeps each endpoint's share within about 1% of its weight.
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

/// Cap on the round-robin sequence length; weights are scaled down past it.
const MAX_SEQUENCE: usize = 4096;

/// A compiled balancer for one cluster.
#[derive(Debug)]
pub enum Balancer {
    /// Weighted round robin.
    RoundRobin {
        /// Endpoint indices in smooth weighted order.
        sequence: Vec<u32>,
        /// Position in the sequence.
        next: AtomicUsize,
    },
    /// Weighted random.
    Random(Weighted),
    /// Power of two choices on in-flight counts.
    LeastRequest(Weighted),
    /// Maglev lookup table.
    Maglev {
        /// Slot → endpoint index.
        table: Vec<u32>,
        /// Used when a request carries no key.
        fallback: Weighted,
    },
}

/// Cumulative weights for weighted random draws.
#[derive(Debug, Clone)]
pub struct Weighted {
    cumulative: Vec<u64>,
    weights: Vec<u32>,
}

// === impl Weighted ===

impl Weighted {
    /// Builds from per-endpoint weights (each ≥ 1).
    pub fn new(weights: &[u32]) -> Self {
        let mut acc = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                acc += u64::from(w.max(1));
                acc
            })
            .collect();
        Weighted {
            cumulative,
            weights: weights.to_vec(),
        }
    }

    /// A weighted random index.
    pub fn pick(&self) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1);
        let r = fastrand::u64(0..total);
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// A weighted random index among those `ok` accepts: a few draws over all (cheap
    /// while most are eligible), then one exact draw over the eligible weights.
    pub fn pick_in(&self, ok: &impl Fn(usize) -> bool) -> usize {
        for _ in 0..4 {
            let i = self.pick();
            if ok(i) {
                return i;
            }
        }
        let total: u64 = (0..self.weights.len())
            .filter(|&i| ok(i))
            .map(|i| u64::from(self.weights[i].max(1)))
            .sum();
        if total == 0 {
            return self.pick();
        }
        let mut r = fastrand::u64(0..total);
        for i in (0..self.weights.len()).filter(|&i| ok(i)) {
            let w = u64::from(self.weights[i].max(1));
            if r < w {
                return i;
            }
            r -= w;
        }
        0
    }

    /// P2C among the eligible: two distinct weighted candidates when there are two.
    pub fn pick_p2c_in(&self, load: impl Fn(usize) -> u32, ok: &impl Fn(usize) -> bool) -> usize {
        let a = self.pick_in(ok);
        let mut b = self.pick_in(ok);
        if a == b {
            // A second draw excluding `a`, when anything else is eligible.
            let other = |i: usize| i != a && ok(i);
            if (0..self.weights.len()).any(other) {
                b = self.pick_in(&other);
            } else {
                return a;
            }
        }
        let la = u64::from(load(a)) * u64::from(self.weights[b].max(1));
        let lb = u64::from(load(b)) * u64::from(self.weights[a].max(1));
        if la <= lb {
            a
        } else {
            b
        }
    }

    /// Two weighted random candidates, compared by `load / weight`; lower wins.
    pub fn pick_p2c(&self, load: impl Fn(usize) -> u32) -> usize {
        let n = self.weights.len();
        if n <= 1 {
            return 0;
        }
        let a = self.pick();
        let mut b = self.pick();
        if a == b {
            // Distinct candidates keep the comparison meaningful with uneven weights.
            b = (a + 1 + fastrand::usize(0..n - 1)) % n;
        }
        // Compare la/wa < lb/wb as la*wb < lb*wa in integers.
        let la = u64::from(load(a)) * u64::from(self.weights[b].max(1));
        let lb = u64::from(load(b)) * u64::from(self.weights[a].max(1));
        if la <= lb {
            a
        } else {
            b
        }
    }
}

// === impl Balancer ===

impl Balancer {
    /// Weighted round robin.
    pub fn round_robin(weights: &[u32]) -> Self {
        Balancer::RoundRobin {
            sequence: smooth_sequence(weights),
            next: AtomicUsize::new(fastrand::usize(..)),
        }
    }

    /// Weighted random.
    pub fn random(weights: &[u32]) -> Self {
        Balancer::Random(Weighted::new(weights))
    }

    /// Least request (P2C).
    pub fn least_request(weights: &[u32]) -> Self {
        Balancer::LeastRequest(Weighted::new(weights))
    }

    /// Maglev consistent hashing; `names` identify endpoints stably (their addresses),
    /// so a table rebuilt after a change keeps most keys in place.
    pub fn maglev(names: &[String], weights: &[u32]) -> Self {
        Balancer::Maglev {
            table: maglev_table(names, weights, MAGLEV_TABLE_SIZE),
            fallback: Weighted::new(weights),
        }
    }

    /// Picks an endpoint index among those `ok` accepts (at least one must be), keeping
    /// each algorithm's property over the eligible set: round robin skips ineligible
    /// turns (so the others keep their smooth weighted order and share the skipped
    /// turns evenly), random and P2C draw among the eligible, Maglev probes the next
    /// slots past an ineligible one (so only keys of ineligible endpoints move).
    pub fn pick_in(
        &self,
        key: Option<u64>,
        load: impl Fn(usize) -> u32,
        ok: impl Fn(usize) -> bool,
    ) -> usize {
        match self {
            Balancer::RoundRobin { sequence, next } => {
                for _ in 0..sequence.len() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let e = sequence[i % sequence.len()] as usize;
                    if ok(e) {
                        return e;
                    }
                }
                // Nothing eligible in a whole round: the caller's set was empty.
                sequence[0] as usize
            }
            Balancer::Random(w) => w.pick_in(&ok),
            Balancer::LeastRequest(w) => w.pick_p2c_in(load, &ok),
            Balancer::Maglev { table, fallback } => match key {
                Some(k) => {
                    let start = (k % table.len() as u64) as usize;
                    for j in 0..table.len() {
                        let e = table[(start + j) % table.len()] as usize;
                        if ok(e) {
                            return e;
                        }
                    }
                    table[start] as usize
                }
                None => fallback.pick_in(&ok),
            },
        }
    }

    /// Picks an endpoint index among all. `key` is the request's hash key (consistent
    /// hashing only); `load(i)` is endpoint i's in-flight count (least request only).
    pub fn pick(&self, key: Option<u64>, load: impl Fn(usize) -> u32) -> usize {
        match self {
            Balancer::RoundRobin { sequence, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                sequence[i % sequence.len()] as usize
            }
            Balancer::Random(w) => w.pick(),
            Balancer::LeastRequest(w) => w.pick_p2c(load),
            Balancer::Maglev { table, fallback } => match key {
                Some(k) => table[(k % table.len() as u64) as usize] as usize,
                None => fallback.pick(),
            },
        }
    }
}

/// nginx's smooth weighted round robin, unrolled once into a sequence.
fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w.max(1)));
    let mut w: Vec<i64> = weights
        .iter()
        .map(|&x| i64::from(x.max(1) / g.max(1)))
        .collect();
    let total: i64 = w.iter().sum();
    if total as usize > MAX_SEQUENCE {
        let scale = MAX_SEQUENCE as f64 / total as f64;
        for x in &mut w {
            *x = ((*x as f64 * scale).round() as i64).max(1);
        }
    }
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        seq.push(best as u32);
    }
    if seq.is_empty() {
        seq.push(0);
    }
    seq
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// FNV-1a with a seed, enough to spread endpoint names and request keys.
pub fn hash_bytes(seed: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalizer (splitmix64) so that nearby keys land far apart.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Builds a Maglev lookup table of size `m` (prime). Weighted endpoints take turns in
/// proportion to their weight.
pub fn maglev_table(names: &[String], weights: &[u32], m: usize) -> Vec<u32> {
    let n = names.len();
    if n == 0 {
        return vec![0];
    }
    let m64 = m as u64;
    let perms: Vec<(u64, u64)> = names
        .iter()
        .map(|name| {
            let offset = hash_bytes(0x5eed_0001, name.as_bytes()) % m64;
            let skip = hash_bytes(0x5eed_0002, name.as_bytes()) % (m64 - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_w = weights.iter().copied().max().unwrap_or(1).max(1) as u64;
    let mut next = vec![0u64; n];
    let mut credit = vec![0u64; n];
    let mut table = vec![u32::MAX; m];
    let mut filled = 0;
    while filled < m {
        for i in 0..n {
            // Weighted Maglev: an endpoint takes a slot each time its credit reaches max_w.
            credit[i] += u64::from(weights.get(i).copied().unwrap_or(1).max(1));
            if credit[i] < max_w {
                continue;
            }
            credit[i] -= max_w;
            let (offset, skip) = perms[i];
            loop {
                let c = ((offset + next[i] * skip) % m64) as usize;
                next[i] += 1;
                if table[c] == u32::MAX {
                    table[c] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == m {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn smooth_round_robin_interleaves() {
        let seq = smooth_sequence(&[5, 1, 1]);
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_sequence(&[2, 2]), vec![0, 1]);
    }

    #[test]
    fn round_robin_is_fair() {
        let b = Balancer::round_robin(&[1, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[b.pick(None, |_| 0)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn least_request_prefers_idle() {
        let b = Balancer::least_request(&[1, 1]);
        for _ in 0..100 {
            assert_eq!(b.pick(None, |i| if i == 0 { 10 } else { 0 }), 1);
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn maglev_remaps_about_one_nth() {
        let n = 10;
        let before = maglev_table(&names(n), &vec![1; n], MAGLEV_TABLE_SIZE);
        // Remove endpoint 3: keys on other endpoints must stay.
        let mut fewer = names(n);
        fewer.remove(3);
        let after = maglev_table(&fewer, &vec![1; n - 1], MAGLEV_TABLE_SIZE);
        let keys = 20_000u64;
        let mut moved = 0;
        for k in 0..keys {
            let h = hash_bytes(7, &k.to_le_bytes()) as usize % MAGLEV_TABLE_SIZE;
            let a = &names(n)[before[h] as usize];
            let b = &fewer[after[h] as usize];
            if a != b {
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        // Ideal is 1/10; Maglev's minimal disruption is near-ideal.
        assert!(share > 0.08 && share < 0.14, "moved share {share}");

        // Add an 11th endpoint.
        let more = names(n + 1);
        let after = maglev_table(&more, &vec![1; n + 1], MAGLEV_TABLE_SIZE);
        let mut moved = 0;
        for k in 0..keys {
            let h = hash_bytes(7, &k.to_le_bytes()) as usize % MAGLEV_TABLE_SIZE;
            if names(n)[before[h] as usize] != more[after[h] as usize] {
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!(share > 0.07 && share < 0.13, "moved share {share}");
    }

    #[test]
    fn maglev_respects_weights() {
        let t = maglev_table(&names(2), &[3, 1], MAGLEV_TABLE_SIZE);
        let zeros = t.iter().filter(|&&x| x == 0).count() as f64 / t.len() as f64;
        assert!((zeros - 0.75).abs() < 0.01, "share {zeros}");
    }

    #[test]
    fn round_robin_over_a_subset_shares_the_skipped_turns() {
        let b = Balancer::round_robin(&[1, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[b.pick_in(None, |_| 0, |i| i != 2)] += 1;
        }
        assert_eq!(counts, [150, 150, 0]);
    }

    #[test]
    fn maglev_moves_only_the_keys_of_an_endpoint_that_is_out() {
        let b = Balancer::maglev(&names(5), &[1; 5]);
        let mut moved_other = 0;
        let mut moved = 0;
        for k in 0..5000u64 {
            let h = hash_bytes(3, &k.to_le_bytes());
            let before = b.pick_in(Some(h), |_| 0, |_| true);
            let after = b.pick_in(Some(h), |_| 0, |i| i != 1);
            assert_ne!(after, 1);
            if before != 1 && before != after {
                moved_other += 1;
            }
            if before == 1 {
                moved += 1;
            }
        }
        assert_eq!(moved_other, 0, "keys of live endpoints stay put");
        assert!(moved > 700 && moved < 1300, "{moved}");
    }

    #[test]
    fn p2c_and_random_stay_in_the_subset() {
        let lr = Balancer::least_request(&[1, 1, 1, 1]);
        let r = Balancer::random(&[1, 1, 1, 1]);
        for _ in 0..200 {
            assert!(lr.pick_in(None, |_| 0, |i| i == 3) == 3);
            assert!(r.pick_in(None, |_| 0, |i| i >= 2) >= 2);
        }
    }

    proptest! {
        #[test]
        fn weighted_picks_in_range(ws in proptest::collection::vec(1u32..100, 1..20)) {
            let w = Weighted::new(&ws);
            for _ in 0..50 {
                prop_assert!(w.pick() < ws.len());
                prop_assert!(w.pick_p2c(|i| i as u32) < ws.len());
            }
            let seq = smooth_sequence(&ws);
            let g = ws.iter().fold(0, |g, &x| gcd(g, x));
            let total: u32 = ws.iter().map(|x| x / g).sum();
            if total as usize <= MAX_SEQUENCE {
                // Each endpoint appears exactly weight/gcd times per round.
                for (i, &x) in ws.iter().enumerate() {
                    prop_assert_eq!(seq.iter().filter(|&&s| s as usize == i).count() as u32, x / g);
                }
            }
        }

        #[test]
        fn maglev_table_is_full(n in 1usize..12) {
            let t = maglev_table(&names(n), &vec![1; n], 1009);
            prop_assert!(t.iter().all(|&x| (x as usize) < n));
        }
    }
}
