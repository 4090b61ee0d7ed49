//! Availability arithmetic: nines and downtime, error budgets, k-of-n redundancy,
//! serial and parallel composition. Pure functions, no I/O; `ninefold calc` and the
//! HA lint in `ninefold check` are built on them.
//!
//! A probability is kept as a pair of natural logarithms, ln P(up) and ln P(down),
//! each computed from positive terms only. Near 1 the interesting number is the small
//! one, P(down): 1 − 0.9999999 loses digits in floating point, and P(down) = 1e-30
//! cannot be told apart from 0 once subtracted from 1. So nothing here ever computes a
//! failure probability as "1 − availability": k-of-n sums the failure side of the
//! binomial directly, in log space (no overflow of C(1000, 500), no underflow of
//! 0.01^1000), and serial/parallel compositions add positive terms.

use std::fmt;

/// Days in the year used by every "per year" figure (the seed's nines table uses 365).
pub const YEAR_DAYS: f64 = 365.0;

/// A probability of being up, held as ln P(up) and ln P(down).
///
/// Both logs are ≤ 0 and `exp(ln_up) + exp(ln_down) = 1` up to rounding; each side
/// keeps its own relative precision, so `down()` is accurate even when `up()` rounds
/// to exactly 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prob {
    /// Natural log of the probability of being up.
    pub ln_up: f64,
    /// Natural log of the probability of being down.
    pub ln_down: f64,
}

/// The allowed downtime of one period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodDowntime {
    /// `year`, `quarter`, `30 days`, `week` or `day`.
    pub period: &'static str,
    /// Length of the period in days.
    pub days: f64,
    /// Allowed downtime in seconds.
    pub seconds: f64,
}

/// The periods of the nines table: year (365 d), quarter (a quarter of that), 30 days,
/// week and day.
pub const PERIODS: [(&str, f64); 5] = [
    ("year", YEAR_DAYS),
    ("quarter", YEAR_DAYS / 4.0),
    ("30 days", 30.0),
    ("week", 7.0),
    ("day", 1.0),
];

/// Parses an availability or objective: `99.95%` or `99.95` (a percentage, as in the
/// configuration). Bare numbers up to 1 are refused as ambiguous (`0.999` could mean
/// 0.999% or 99.9%). The complement is computed in decimal, so `99.999%` gives
/// P(down) = 1e-5 exactly rather than 1.0000000000047e-5.
pub fn parse_availability(s: &str) -> Result<Prob, String> {
    let t = s.trim();
    let (num, had_pct) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let bad = || format!("invalid availability {s:?} (write it as a percentage, e.g. 99.95%)");
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    if num.matches('.').count() > 1 {
        return Err(bad());
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    // Trailing zeros carry no value; keep at most 30 fractional digits.
    let frac = frac.trim_end_matches('0');
    if frac.len() > 30 || int.len() > 3 {
        return Err(bad());
    }
    let digits = format!("{int}{frac}");
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let scale = 10u128.pow(frac.len() as u32); // value% = mantissa / scale
    let hundred = 100 * scale;
    if mantissa > hundred {
        return Err(format!("availability must be at most 100%, got {s}"));
    }
    if !had_pct && mantissa <= scale {
        return Err(format!(
            "ambiguous availability {s:?}: write {s}% for a percentage, or {}% for a fraction",
            fixed(mantissa as f64 / scale as f64 * 100.0, 10)
        ));
    }
    let up = mantissa as f64 / hundred as f64;
    let down = (hundred - mantissa) as f64 / hundred as f64;
    Ok(Prob::from_parts(up, down))
}

/// An SLO's objective, in every format that holds one (the gateway config's `slos:`,
/// the seed's file, OpenSLO): a percentage above 0% and below 100%, `99.95%` or
/// `99.95`. A bare number up to 1 is refused as ambiguous (`0.999` may mean 99.9%).
pub fn parse_objective(text: &str) -> Result<Prob, String> {
    let o = parse_availability(text)?;
    if o.ln_down == f64::NEG_INFINITY || o.ln_up == f64::NEG_INFINITY {
        return Err(format!(
            "must be above 0% and below 100%, got {}",
            text.trim()
        ));
    }
    Ok(o)
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// `x` with at most `decimals` decimals and no trailing zeros: `fixed(99.95, 12)` is
/// `99.95`.
pub fn fixed(x: f64, decimals: usize) -> String {
    trim_zeros(&format!("{x:.decimals$}"))
}

/// Allowed downtime of `a` over each period of [`PERIODS`].
pub fn nines(a: Prob) -> Vec<PeriodDowntime> {
    PERIODS
        .iter()
        .map(|&(period, days)| PeriodDowntime {
            period,
            days,
            seconds: a.down() * days * 86_400.0,
        })
        .collect()
}

/// The availability that `downtime_secs` of downtime per `period_secs` means.
pub fn from_downtime(downtime_secs: f64, period_secs: f64) -> Result<Prob, String> {
    if period_secs.is_nan() || period_secs <= 0.0 || !period_secs.is_finite() {
        return Err("the period must be longer than zero".into());
    }
    if downtime_secs.is_nan() || downtime_secs < 0.0 || downtime_secs > period_secs {
        return Err("the downtime must be between zero and the period".into());
    }
    let down = downtime_secs / period_secs;
    Ok(Prob::from_parts(1.0 - down, down))
}

/// An error budget: what a target allows over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Allowed bad share, 1 − objective.
    pub allowed_bad_ratio: f64,
    /// Window length in seconds.
    pub window_secs: f64,
    /// (1 − objective) × window, in minutes.
    pub minutes: f64,
    /// Allowed bad requests for a given request count, if one was given.
    pub bad_requests: Option<f64>,
}

/// The error budget of `objective` over `window_secs`; `requests` (expected requests in
/// the window) also gives the allowed bad requests.
pub fn budget(objective: Prob, window_secs: f64, requests: Option<u64>) -> Budget {
    // Back to the decimal the user wrote: the log form is exact to ~1e-15 relative,
    // which would otherwise show as 0.0005000000000000001 or floor 3 to 2.
    let ratio = snap(objective.down());
    Budget {
        allowed_bad_ratio: ratio,
        window_secs,
        minutes: snap(ratio * window_secs / 60.0),
        bad_requests: requests.map(|n| snap(ratio * n as f64)),
    }
}

/// Rounds to 12 significant digits (removes the noise of the log representation).
pub fn snap(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// P(at least `k` of `n` independent nodes are up), each up with probability `a`.
///
/// Both tails of the binomial are summed separately in log space, each from positive
/// terms, so neither side suffers cancellation and n in the thousands neither
/// overflows nor underflows. Errors when k > n or n = 0.
pub fn k_of_n(a: Prob, n: u32, k: u32) -> Result<Prob, String> {
    check_kn(n, k)?;
    if k == 0 {
        return Ok(Prob::ALWAYS);
    }
    let ln_fact = ln_factorials(n);
    let ln_pmf = |j: u32| {
        let ln_choose = ln_fact[n as usize] - ln_fact[j as usize] - ln_fact[(n - j) as usize];
        ln_choose + times(j, a.ln_up) + times(n - j, a.ln_down)
    };
    let ln_up = log_sum_exp((k..=n).map(ln_pmf));
    let ln_down = log_sum_exp((0..k).map(ln_pmf));
    Ok(Prob { ln_up, ln_down })
}

/// P(at least `k` of the nodes are up) when node i is up with probability `nodes[i]`
/// (the Poisson binomial), by dynamic programming over the count of nodes up, in log
/// space. O(n²); n = 1000 takes a few milliseconds.
pub fn k_of_n_mixed(nodes: &[Prob], k: u32) -> Result<Prob, String> {
    let n = u32::try_from(nodes.len()).map_err(|_| "too many nodes".to_owned())?;
    if n > 10_000 {
        return Err(format!(
            "at most 10000 nodes with different availabilities, got {n} (group equal ones and use --availability --n)"
        ));
    }
    check_kn(n, k)?;
    if k == 0 {
        return Ok(Prob::ALWAYS);
    }
    // dist[j] = ln P(exactly j of the nodes seen so far are up)
    let mut dist = vec![f64::NEG_INFINITY; nodes.len() + 1];
    dist[0] = 0.0;
    for (i, p) in nodes.iter().enumerate() {
        for j in (0..=i + 1).rev() {
            let stay_down = dist[j] + p.ln_down;
            let came_up = if j > 0 {
                dist[j - 1] + p.ln_up
            } else {
                f64::NEG_INFINITY
            };
            dist[j] = log_add_exp(stay_down, came_up);
        }
    }
    let k = k as usize;
    Ok(Prob {
        ln_up: log_sum_exp(dist[k..].iter().copied()),
        ln_down: log_sum_exp(dist[..k].iter().copied()),
    })
}

/// Dependencies in series: up only while every one is up.
///
/// P(down) is accumulated as D ← D + d·U (U the product of the ups so far), a sum of
/// positive terms, so a chain of parts that are each down 1e-20 of the time is down
/// n·1e-20 of the time rather than 0.
pub fn serial(parts: &[Prob]) -> Prob {
    let mut acc = Prob::ALWAYS;
    for p in parts {
        acc = Prob {
            ln_down: log_add_exp(acc.ln_down, p.ln_down + acc.ln_up),
            ln_up: acc.ln_up + p.ln_up,
        };
    }
    acc
}

/// Redundant alternatives: up while at least one is up (the mirror image of [`serial`]).
pub fn parallel(parts: &[Prob]) -> Prob {
    let mut acc = Prob::NEVER;
    for p in parts {
        acc = Prob {
            ln_up: log_add_exp(acc.ln_up, p.ln_up + acc.ln_down),
            ln_down: acc.ln_down + p.ln_down,
        };
    }
    acc
}

fn check_kn(n: u32, k: u32) -> Result<(), String> {
    if n == 0 {
        return Err("n must be at least 1".into());
    }
    if n > 100_000 {
        return Err(format!("n must be at most 100000, got {n}"));
    }
    if k > n {
        return Err(format!("k ({k}) cannot exceed n ({n})"));
    }
    Ok(())
}

/// `j × ln p`, with 0 × ln 0 = 0 (a certain event repeated zero times).
fn times(j: u32, ln_p: f64) -> f64 {
    if j == 0 {
        0.0
    } else {
        f64::from(j) * ln_p
    }
}

fn ln_factorials(n: u32) -> Vec<f64> {
    let mut v = Vec::with_capacity(n as usize + 1);
    let mut acc = 0.0f64;
    v.push(0.0);
    for i in 1..=n {
        acc += f64::from(i).ln();
        v.push(acc);
    }
    v
}

/// ln(e^a + e^b) without overflow or underflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// ln Σ e^xᵢ without overflow or underflow; −∞ for an empty sum.
fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}

// === impl Prob ===

impl Prob {
    /// Always up.
    pub const ALWAYS: Prob = Prob {
        ln_up: 0.0,
        ln_down: f64::NEG_INFINITY,
    };
    /// Never up.
    pub const NEVER: Prob = Prob {
        ln_up: f64::NEG_INFINITY,
        ln_down: 0.0,
    };

    /// From P(up) and P(down), each given precisely (they should sum to 1).
    pub fn from_parts(up: f64, down: f64) -> Prob {
        Prob {
            ln_up: up.max(0.0).ln(),
            ln_down: down.max(0.0).ln(),
        }
    }

    /// From P(up) in [0, 1]; prefer [`Prob::from_parts`] or [`parse_availability`]
    /// when P(down) is known more precisely.
    pub fn from_up(up: f64) -> Prob {
        let up = up.clamp(0.0, 1.0);
        Prob::from_parts(up, 1.0 - up)
    }

    /// P(up).
    pub fn up(&self) -> f64 {
        self.ln_up.exp().min(1.0)
    }

    /// P(down), accurate even when P(up) rounds to 1.
    pub fn down(&self) -> f64 {
        self.ln_down.exp().min(1.0)
    }

    /// The number of nines, −log10 P(down): 3 for 99.9%, ∞ when never down.
    pub fn nines(&self) -> f64 {
        (-self.ln_down / std::f64::consts::LN_10).max(0.0) + 0.0
    }

    /// P(up) as a percentage string with enough digits to show the first non-nine:
    /// `99.95%`, `99.99987%`, `100% − 1.3e-30` past f64's resolution.
    pub fn percent(&self) -> String {
        let down = self.down();
        if self.ln_down == f64::NEG_INFINITY {
            return "100%".into();
        }
        if down < 1e-12 {
            return format!("100% − {}", sci(self.ln_down));
        }
        let up = self.up();
        if up < 0.5 {
            // Two significant digits of a small availability, rounded down.
            if self.ln_up == f64::NEG_INFINITY {
                return "0%".into();
            }
            let pct = up * 100.0;
            let mag = pct.log10().floor() as i32;
            let decimals = (1 - mag).clamp(0, 300) as usize;
            let f = 10f64.powi(decimals as i32);
            let v = (pct * f * (1.0 + 1e-12)).floor() / f;
            if v == 0.0 {
                return format!("{}%", sci(self.ln_up + std::f64::consts::LN_10 * 2.0));
            }
            return format!("{}%", fixed(v, decimals));
        }
        // Enough decimals to show two significant digits of the complement, and
        // rounded down, so a figure never shows more nines than it has.
        let down_pct = down * 100.0;
        let decimals = ((-down_pct.log10()).floor() as i32 + 2).clamp(2, 12) as usize;
        let f = 10f64.powi(decimals as i32);
        let v = ((100.0 - down_pct) * f * (1.0 + 1e-15)).floor() / f;
        let v = v.min(100.0 - 1.0 / f);
        format!("{}%", fixed(v, decimals))
    }

    /// P(down) in scientific notation from its log, so 1e-2000 prints as `1.0e-2000`.
    pub fn down_sci(&self) -> String {
        sci(self.ln_down)
    }
}

/// e^ln_x as `m.me-N`, from the log, so numbers below f64's range print too.
fn sci(ln_x: f64) -> String {
    if ln_x == f64::NEG_INFINITY {
        return "0".into();
    }
    let l10 = ln_x / std::f64::consts::LN_10;
    let mut exp = l10.floor();
    let mut mant = 10f64.powf(l10 - exp);
    if mant >= 9.995 {
        mant /= 10.0;
        exp += 1.0;
    }
    format!("{mant:.2}e{exp}")
}

impl fmt::Display for Prob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.percent())
    }
}

/// Seconds as a short human duration: `52.6 min`, `8.76 h`, `4.3 s`.
pub fn human_secs(s: f64) -> String {
    if s >= 86_400.0 * 2.0 {
        format!("{} d", sig3(s / 86_400.0))
    } else if s >= 3600.0 {
        format!("{} h", sig3(s / 3600.0))
    } else if s >= 60.0 {
        format!("{} min", sig3(s / 60.0))
    } else if s >= 1.0 {
        format!("{} s", sig3(s))
    } else if s >= 0.001 {
        format!("{} ms", sig3(s * 1000.0))
    } else if s >= 1e-6 {
        format!("{} µs", sig3(s * 1e6))
    } else if s > 0.0 {
        format!("{s:.2e} s")
    } else {
        "0 s".into()
    }
}

/// Three significant digits, without trailing zeros.
pub fn sig3(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    fixed(x, digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pct(s: &str) -> Prob {
        parse_availability(s).unwrap()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        if a == b {
            return true;
        }
        ((a - b) / b.abs().max(f64::MIN_POSITIVE)).abs() <= rel
    }

    #[test]
    fn the_seed_nines_table() {
        let year = |s: &str| nines(pct(s))[0].seconds;
        // 99.0% → 87.6 h/yr, 99.9% → 8.76 h, 99.95% → 4.38 h, 99.99% → 52.56 min,
        // 99.999% → 5.256 min.
        assert!(close(year("99%") / 3600.0, 87.6, 1e-12));
        assert!(close(year("99.9%") / 3600.0, 8.76, 1e-12));
        assert!(close(year("99.95%") / 3600.0, 4.38, 1e-12));
        assert!(close(year("99.99%") / 60.0, 52.56, 1e-12));
        assert!(close(year("99.999%") / 60.0, 5.256, 1e-12));
        assert_eq!(human_secs(year("99.99%")), "52.6 min");
        assert_eq!(human_secs(year("99.999%")), "5.26 min");
        assert_eq!(human_secs(year("99.9%")), "8.76 h");
        let n = nines(pct("99.9%"));
        assert_eq!(n[1].period, "quarter");
        assert!(close(n[1].seconds / 3600.0, 2.19, 1e-12));
        assert!(close(n[2].seconds / 60.0, 43.2, 1e-12));
        assert!(close(n[3].seconds / 60.0, 10.08, 1e-12));
        assert!(close(n[4].seconds, 86.4, 1e-12));
    }

    #[test]
    fn downtime_to_availability() {
        let a = from_downtime(52.0 * 60.0, YEAR_DAYS * 86_400.0).unwrap();
        assert!(close(a.down(), 52.0 / (365.0 * 24.0 * 60.0), 1e-12));
        assert_eq!(a.percent(), "99.9901%");
        assert!(from_downtime(2.0, 1.0).is_err());
        assert!(from_downtime(1.0, 0.0).is_err());
    }

    #[test]
    fn the_seed_budget_is_21_6_minutes() {
        let b = budget(pct("99.95%"), 30.0 * 86_400.0, Some(1_000_000));
        assert!(close(b.minutes, 21.6, 1e-12), "{}", b.minutes);
        assert!(close(b.bad_requests.unwrap(), 500.0, 1e-12));
        assert_eq!(b.allowed_bad_ratio, 0.0005);
        // Whole numbers stay whole: 0.3% of 1000 is 3, not 2.999….
        assert_eq!(
            budget(pct("99.7%"), 86400.0, Some(1000)).bad_requests,
            Some(3.0)
        );
        assert_eq!(
            budget(pct("99.4%"), 86400.0, Some(1_000_000)).bad_requests,
            Some(6000.0)
        );
    }

    #[test]
    fn parsing_is_decimal_exact() {
        // Exact in decimal, then within |ln x|·ε through the logarithm (f64's
        // 99.999 would be off by 5e-12 relative).
        assert!(close(pct("99.999%").down(), 1e-5, 1e-15));
        assert!(close(pct("99.999").down(), 1e-5, 1e-15));
        assert!(close(pct("99.9999999999999999999%").down(), 1e-21, 1e-13));
        assert_eq!(pct("100%").ln_down, f64::NEG_INFINITY);
        assert_eq!(pct("0%").ln_up, f64::NEG_INFINITY);
        assert!(parse_availability("0.999")
            .unwrap_err()
            .contains("ambiguous"));
        assert!(parse_availability("101%").is_err());
        assert!(parse_availability("abc").is_err());
        assert!(parse_availability("1.2.3%").is_err());
        assert!(parse_availability("").is_err());
        assert!(parse_availability("-5%").is_err());
    }

    #[test]
    fn two_of_three_at_99_percent() {
        // P(≥2 of 3) = p³ + 3p²q = 0.970299 + 0.029403 = 0.999702
        let r = k_of_n(pct("99%"), 3, 2).unwrap();
        assert!(close(r.up(), 0.999702, 1e-12), "{}", r.up());
        assert!(close(r.down(), 0.000298, 1e-9), "{}", r.down());
        // The seed's formula with k = 1: 1 − q³.
        let r = k_of_n(pct("99%"), 3, 1).unwrap();
        assert!(close(r.down(), 1e-6, 1e-9), "{}", r.down());
    }

    #[test]
    fn large_n_neither_overflows_nor_cancels() {
        // 1 of 1000 at 99%: down = 0.01^1000 = 1e-2000, far below f64's range; the log
        // keeps it.
        let r = k_of_n(pct("99%"), 1000, 1).unwrap();
        assert!(close(r.nines(), 2000.0, 1e-9), "{}", r.nines());
        assert_eq!(r.down_sci(), "1.00e-2000");
        // All 1000 of 1000 at 99.99%: up = 0.9999^1000 = 0.904833...
        let r = k_of_n(pct("99.99%"), 1000, 1000).unwrap();
        assert!(close(r.up(), 0.9999f64.powi(1000), 1e-9), "{}", r.up());
        // 500 of 1000 at 99.999%: down is P(≥ 501 failures) ≈ C(1000,501)·1e-2505;
        // tiny but positive, and not rounded to 0.
        let r = k_of_n(pct("99.999%"), 1000, 500).unwrap();
        assert!(
            r.ln_down.is_finite() && r.ln_down < -5000.0,
            "{}",
            r.ln_down
        );
        assert_eq!(r.up(), 1.0);
        // Near-one availability, small n: 2 of 3 at 99.9999999%: down ≈ 3q² = 3e-18,
        // which 1 − up can never show.
        let r = k_of_n(pct("99.9999999%"), 3, 2).unwrap();
        assert!(close(r.down(), 3e-18, 1e-6), "{}", r.down());
        // Mixed availabilities at n = 1000 agree with the binomial.
        let nodes = vec![pct("99.5%"); 1000];
        let a = k_of_n_mixed(&nodes, 990).unwrap();
        let b = k_of_n(pct("99.5%"), 1000, 990).unwrap();
        assert!(
            close(a.ln_down, b.ln_down, 1e-9),
            "{} {}",
            a.ln_down,
            b.ln_down
        );
        assert!(close(a.ln_up, b.ln_up, 1e-9));
    }

    #[test]
    fn mixed_hand_computed() {
        // 2 of {99%, 99.5%, 98%}: down = P(≤1 up)
        let (a, b, c) = (0.99f64, 0.995f64, 0.98f64);
        let (qa, qb, qc) = (0.01, 0.005, 0.02);
        let down = qa * qb * qc + a * qb * qc + qa * b * qc + qa * qb * c;
        let r = k_of_n_mixed(&[pct("99%"), pct("99.5%"), pct("98%")], 2).unwrap();
        assert!(close(r.down(), down, 1e-12), "{} {}", r.down(), down);
    }

    #[test]
    fn bad_k_and_n() {
        assert!(k_of_n(pct("99%"), 3, 4).is_err());
        assert!(k_of_n(pct("99%"), 0, 0).is_err());
        assert_eq!(k_of_n(pct("99%"), 3, 0).unwrap(), Prob::ALWAYS);
        assert!(k_of_n_mixed(&[], 1).is_err());
    }

    #[test]
    fn serial_and_parallel_hand_computed() {
        let s = serial(&[pct("99.9%"), pct("99.95%")]);
        assert!(close(s.up(), 0.999 * 0.9995, 1e-12));
        assert!(close(s.down(), 1.0 - 0.999 * 0.9995, 1e-9));
        let p = parallel(&[pct("99%"), pct("99%")]);
        assert!(close(p.down(), 1e-4, 1e-12));
        // Tiny downs add up in series instead of vanishing.
        let tiny = Prob::from_parts(1.0, 1e-20);
        let s = serial(&[tiny, tiny, tiny]);
        assert!(close(s.down(), 3e-20, 1e-9), "{}", s.down());
        assert_eq!(serial(&[]), Prob::ALWAYS);
        assert_eq!(parallel(&[]), Prob::NEVER);
    }

    #[test]
    fn percent_formatting() {
        assert_eq!(pct("99.95%").percent(), "99.95%");
        assert_eq!(pct("99%").percent(), "99%");
        assert_eq!(k_of_n(pct("99%"), 3, 2).unwrap().percent(), "99.97%");
        assert_eq!(Prob::from_parts(1.0, 1e-30).percent(), "100% − 1.00e-30");
        assert_eq!(Prob::ALWAYS.percent(), "100%");
        // Rounded down: never more nines than there are.
        assert_eq!(serial(&[pct("99.9%"), pct("99.995%")]).percent(), "99.89%");
        assert_eq!(pct("98.95%").percent(), "98.95%");
        assert_eq!(Prob::from_up(0.98951).percent(), "98.95%");
        assert_eq!(Prob::from_up(0.989999).percent(), "98.99%");
        assert_eq!(pct("0.04%").percent(), "0.04%");
        assert_eq!(k_of_n(pct("99%"), 1000, 1000).unwrap().percent(), "0.0043%");
        assert_eq!(pct("0%").percent(), "0%");
        assert_eq!(pct("0%").nines().to_string(), "0");
    }

    fn brute_force(ps: &[f64], k: usize) -> f64 {
        let n = ps.len();
        let mut total = 0.0;
        for mask in 0u32..(1 << n) {
            if (mask.count_ones() as usize) < k {
                continue;
            }
            let mut p = 1.0;
            for (i, &pi) in ps.iter().enumerate() {
                p *= if mask & (1 << i) != 0 { pi } else { 1.0 - pi };
            }
            total += p;
        }
        total
    }

    fn avail() -> impl Strategy<Value = f64> {
        prop_oneof![0.0f64..=1.0, 0.9f64..1.0, Just(1.0), Just(0.0)]
    }

    proptest! {
        #[test]
        fn k_of_n_equals_enumeration(p in avail(), n in 1u32..=10, k in 0u32..=10) {
            prop_assume!(k <= n);
            let r = k_of_n(Prob::from_up(p), n, k).unwrap();
            let want = brute_force(&vec![p; n as usize], k as usize);
            prop_assert!((r.up() - want).abs() <= 1e-12, "{} vs {}", r.up(), want);
            prop_assert!((r.up() + r.down() - 1.0).abs() <= 1e-12);
        }

        #[test]
        fn mixed_equals_enumeration(ps in prop::collection::vec(avail(), 1..=10), k in 0usize..=10) {
            prop_assume!(k <= ps.len());
            let nodes: Vec<Prob> = ps.iter().map(|&p| Prob::from_up(p)).collect();
            let r = k_of_n_mixed(&nodes, k as u32).unwrap();
            let want = brute_force(&ps, k);
            prop_assert!((r.up() - want).abs() <= 1e-12, "{} vs {}", r.up(), want);
        }

        #[test]
        fn monotone_in_k_and_availability(p in 0.0f64..1.0, dp in 0.0f64..0.1, n in 1u32..200, k in 1u32..200) {
            prop_assume!(k < n);
            let lo = Prob::from_up(p);
            let hi = Prob::from_up((p + dp).min(1.0));
            let at = |a, k| k_of_n(a, n, k).unwrap();
            // Needing more nodes can only lower availability.
            prop_assert!(at(lo, k + 1).ln_up <= at(lo, k).ln_up + 1e-12);
            // Better nodes can only raise it.
            prop_assert!(at(hi, k).ln_up >= at(lo, k).ln_up - 1e-12);
            prop_assert!(at(hi, k).ln_down <= at(lo, k).ln_down + 1e-12);
        }

        #[test]
        fn serial_parallel_identities(a in avail(), b in avail(), c in avail()) {
            let (pa, pb, pc) = (Prob::from_up(a), Prob::from_up(b), Prob::from_up(c));
            let s = serial(&[pa, pb]);
            let p = parallel(&[pa, pb]);
            prop_assert!((s.up() - a * b).abs() <= 1e-12);
            prop_assert!((p.down() - (1.0 - a) * (1.0 - b)).abs() <= 1e-12);
            // Identity elements and a single part.
            prop_assert!((serial(&[pa, Prob::ALWAYS]).up() - a).abs() <= 1e-12);
            prop_assert!((parallel(&[pa, Prob::NEVER]).up() - a).abs() <= 1e-12);
            prop_assert!((serial(&[pa]).up() - a).abs() <= 1e-12);
            // Order does not matter, and grouping does not matter.
            prop_assert!((serial(&[pa, pb, pc]).up() - serial(&[pc, pa, pb]).up()).abs() <= 1e-12);
            prop_assert!((parallel(&[parallel(&[pa, pb]), pc]).up() - parallel(&[pa, pb, pc]).up()).abs() <= 1e-12);
            // Parallel is 1-of-n, serial is n-of-n.
            let mixed = [pa, pb, pc];
            prop_assert!((parallel(&mixed).up() - k_of_n_mixed(&mixed, 1).unwrap().up()).abs() <= 1e-12);
            prop_assert!((serial(&mixed).up() - k_of_n_mixed(&mixed, 3).unwrap().up()).abs() <= 1e-12);
            // Redundancy never hurts; a dependency never helps.
            prop_assert!(p.up() >= a.max(b) - 1e-12);
            prop_assert!(s.up() <= a.min(b) + 1e-12);
        }
    }
}
