//! Cell routing: a request key (header, cookie or query parameter) picks one cell of a
//! cell set, and the request then runs on that cell's cluster.
//!
//! The pick is rendezvous hashing (highest random weight): each cell scores the key's
//! hash mixed with a seed derived from the cell's *name*, and the highest score wins.
//! Adding a cell to N moves only the keys the new cell now wins, about 1/(N+1) of them,
//! and removing or reordering cells moves nothing else; `hash % N` would move almost
//! every key. A cell is live while its cluster has an available endpoint (health
//! checks, ejections and drains decide, as for any cluster: the snapshot, which knows
//! what a cluster is, says so).
//!
//! When a key's home cell is down, `on_cell_down` decides: `fail` answers 503
//! `cell-down` (the blast radius stays one cell: the others keep their users and their
//! load), `evacuate` sends the key to the best-scoring *live* cell, which is its home
//! in the set without the dead cells, so only the dead cell's keys move, and they go
//! back when it recovers. A request without the key gets 400 `no-cell-key`, unless the
//! set names a `default` cell.
//!
//! Everything is resolved when the snapshot is built: member seeds, clusters and the
//! per-cell request counters; a request costs one score per cell and an atomic add.

use crate::config::{CellSetConfig, HashKey, OnCellDown};
use crate::upstream::balance::hash_bytes;
use std::sync::Arc;

/// Labels of `ninefold_cell_requests_total{outcome}`, by [`Outcome`] index.
pub const OUTCOME_LABELS: [&str; 3] = ["home", "evacuated", "cell_down"];

/// A compiled cell set; `C` is what a cell routes to (the snapshot's cluster: this
/// module only carries it).
pub struct CellSet<C> {
    /// Name.
    pub name: Arc<str>,
    /// The request key.
    pub key: HashKey,
    /// What happens to a dead cell's keys.
    pub on_down: OnCellDown,
    /// Member taking requests without the key.
    pub default: Option<usize>,
    /// Members, in config order.
    pub members: Vec<Cell<C>>,
}

/// One member cell.
pub struct Cell<C> {
    /// Name.
    pub name: Arc<str>,
    /// Rendezvous seed: a hash of the name, so it survives reordering and reloads.
    pub seed: u64,
    /// The cluster serving the cell.
    pub cluster: Arc<C>,
    /// `ninefold_cell_requests_total{cells,cell,outcome}` of requests whose home is this
    /// cell, by [`Outcome`] index.
    pub requests: [prometheus::IntCounter; 3],
}

/// What happened to a request's home cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served by its home cell.
    Home = 0,
    /// Its home was down: served by another cell.
    Evacuated = 1,
    /// Its home was down and the set fails closed (or no cell was live).
    CellDown = 2,
}

/// Why no cell takes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCell {
    /// The request has no key and the set has no default.
    NoKey,
    /// The home cell is down (and `fail`, or every cell is down).
    Down,
}

// === impl CellSet ===

impl<C> CellSet<C> {
    /// Compiles a cell set; `cluster` finds a member's cluster by name, and `counter`
    /// resolves a member's counter for an outcome label.
    pub fn build(
        c: &CellSetConfig,
        cluster: impl Fn(&str) -> Option<Arc<C>>,
        counter: impl Fn(&str, &str) -> prometheus::IntCounter,
    ) -> Result<CellSet<C>, String> {
        let members = c
            .members
            .iter()
            .map(|m| {
                let cl = cluster(&m.cluster).ok_or_else(|| {
                    format!("cells {:?}: unknown cluster {:?}", c.name, m.cluster)
                })?;
                Ok(Cell {
                    name: m.name.as_str().into(),
                    seed: seed(&m.name),
                    cluster: cl,
                    requests: OUTCOME_LABELS.map(|o| counter(&m.name, o)),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(CellSet {
            name: c.name.as_str().into(),
            key: c.key.clone(),
            on_down: c.on_cell_down,
            default: c.default,
            members,
        })
    }

    /// The cell a request goes to: `key` is the hash of its key (`None`: absent), `live`
    /// says whether member `i` is up now. Returns the serving cell's index, the home
    /// cell's index, and the outcome, which the caller counts once the cell is known.
    pub fn pick(
        &self,
        key: Option<u64>,
        live: impl Fn(usize) -> bool,
    ) -> Result<(usize, usize, Outcome), (Option<usize>, NoCell)> {
        let own = match key {
            Some(k) => home(k, self.members.iter().map(|m| m.seed), |_| true),
            None => self.default,
        }
        .ok_or((None, NoCell::NoKey))?;
        if live(own) {
            return Ok((own, own, Outcome::Home));
        }
        match (self.on_down, key) {
            (OnCellDown::Evacuate, Some(k)) => home(k, self.members.iter().map(|m| m.seed), &live)
                .map(|to| (to, own, Outcome::Evacuated))
                .ok_or((Some(own), NoCell::Down)),
            // A keyless request on the default cell has no score to re-home by: the
            // first live cell takes it, so it still gets an answer.
            (OnCellDown::Evacuate, None) => (0..self.members.len())
                .find(|&i| live(i))
                .map(|to| (to, own, Outcome::Evacuated))
                .ok_or((Some(own), NoCell::Down)),
            (OnCellDown::Fail, _) => Err((Some(own), NoCell::Down)),
        }
    }
}

/// The seed of a cell named `name`.
pub fn seed(name: &str) -> u64 {
    hash_bytes(0x9e37_79b9_7f4a_7c15, name.as_bytes())
}

/// Rendezvous: the index of the highest score among the seeds `keep` allows; ties
/// (astronomically rare) go to the first.
fn home(key: u64, seeds: impl Iterator<Item = u64>, keep: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (i, s) in seeds.enumerate() {
        if !keep(i) {
            continue;
        }
        let score = mix(key ^ s);
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// SplitMix64's finalizer: a bijection that spreads every input bit over the output,
/// so a key's scores under different seeds are independent.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(names: &[&str]) -> Vec<u64> {
        names.iter().map(|n| seed(n)).collect()
    }

    fn keys() -> impl Iterator<Item = u64> {
        (0..10_000u64).map(|i| hash_bytes(0, format!("user-{i}").as_bytes()))
    }

    #[test]
    fn keys_spread_evenly_over_cells() {
        let s = seeds(&["cell-1", "cell-2", "cell-3", "cell-4"]);
        let mut counts = [0u32; 4];
        for k in keys() {
            counts[home(k, s.iter().copied(), |_| true).unwrap()] += 1;
        }
        for c in counts {
            assert!((2000..3000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_fifth_cell_moves_about_a_fifth_of_keys() {
        let four = seeds(&["cell-1", "cell-2", "cell-3", "cell-4"]);
        let five = seeds(&["cell-1", "cell-2", "cell-3", "cell-4", "cell-5"]);
        let mut moved = 0;
        for k in keys() {
            let a = home(k, four.iter().copied(), |_| true).unwrap();
            let b = home(k, five.iter().copied(), |_| true).unwrap();
            if a != b {
                // A key only ever moves to the new cell.
                assert_eq!(b, 4);
                moved += 1;
            }
        }
        let share = f64::from(moved) / 10_000.0;
        eprintln!("adding a fifth cell moved {moved} of 10000 keys ({share})");
        assert!((0.15..=0.25).contains(&share), "moved {share}");
    }

    #[test]
    fn evacuation_moves_only_the_dead_cells_keys() {
        let s = seeds(&["cell-1", "cell-2", "cell-3", "cell-4"]);
        let dead = 2;
        let mut moved = 0;
        for k in keys() {
            let before = home(k, s.iter().copied(), |_| true).unwrap();
            let after = home(k, s.iter().copied(), |i| i != dead).unwrap();
            if before == dead {
                assert_ne!(after, dead);
                moved += 1;
            } else {
                assert_eq!(before, after, "a live cell's key moved");
            }
        }
        assert!(moved > 2000 && moved < 3000, "{moved}");
    }

    #[test]
    fn order_of_members_does_not_matter() {
        let a = seeds(&["x", "y", "z"]);
        let b = seeds(&["z", "x", "y"]);
        for k in keys().take(1000) {
            let ia = home(k, a.iter().copied(), |_| true).unwrap();
            let ib = home(k, b.iter().copied(), |_| true).unwrap();
            assert_eq!(a[ia], b[ib]);
        }
    }
}
