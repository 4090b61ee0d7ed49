//! `ninefold calc`: availability arithmetic on the command line (nines ↔ downtime,
//! error budgets, k-of-n, serial/parallel, a config's topology), as text or `--json`.
//! The arithmetic is in [`crate::availability`] and [`crate::topology`]; this module
//! parses arguments and renders answers.

use crate::availability::{
    self as av, budget, from_downtime, human_secs, k_of_n, k_of_n_mixed, nines, parse_availability,
    sig3, Prob, YEAR_DAYS,
};
use crate::config::parse_duration;
use crate::topology::{self, Assumptions};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Availability arithmetic.
#[derive(Debug, Subcommand)]
pub enum Calc {
    /// Allowed downtime of an availability per year (365 days), quarter, 30 days, week
    /// and day: `ninefold calc nines 99.95%`.
    Nines {
        /// Availability, e.g. `99.95%`.
        #[arg(value_parser = parse_availability)]
        availability: Prob,
    },
    /// The availability a downtime means: `ninefold calc downtime 52m --per year`.
    Downtime {
        /// Downtime, e.g. `52m`, `4h`, `30s`.
        #[arg(value_parser = parse_secs)]
        downtime: f64,
        /// The period: year (365 d), quarter, month (30 d), week, day, or a duration
        /// such as `30d`.
        #[arg(long, default_value = "year", value_parser = parse_period)]
        per: f64,
    },
    /// The error budget of an objective over a window: `ninefold calc budget 99.95% 30d`
    /// gives 21.6 minutes.
    Budget {
        /// Objective, e.g. `99.95%`.
        #[arg(value_parser = parse_availability)]
        objective: Prob,
        /// Window, e.g. `30d` or `28d`.
        #[arg(value_parser = parse_secs)]
        window: f64,
        /// Requests expected in the window: also print the allowed bad requests.
        #[arg(long, value_name = "N")]
        requests: Option<u64>,
    },
    /// P(at least k of n independent nodes are up): `--availability 99% --n 3 --k 2`, or
    /// nodes with different availabilities: `--availabilities 99%,99.5%,98% --k 2`.
    Kofn {
        /// Availability of every node.
        #[arg(long, value_parser = parse_availability, conflicts_with = "availabilities", required_unless_present = "availabilities")]
        availability: Option<Prob>,
        /// Number of nodes (with --availability).
        #[arg(long, required_unless_present = "availabilities")]
        n: Option<u32>,
        /// Availability of each node, comma-separated (Poisson binomial).
        #[arg(long, value_delimiter = ',', value_parser = parse_availability)]
        availabilities: Vec<Prob>,
        /// Nodes that must be up.
        #[arg(long, default_value_t = 1)]
        k: u32,
    },
    /// Dependencies in series: up only while all are up.
    Serial {
        /// Availabilities, e.g. `99.9% 99.95%`.
        #[arg(required = true, value_parser = parse_availability)]
        parts: Vec<Prob>,
    },
    /// Redundant alternatives: up while any one is up.
    Parallel {
        /// Availabilities, e.g. `99% 99%`.
        #[arg(required = true, value_parser = parse_availability)]
        parts: Vec<Prob>,
    },
    /// Endpoints a load needs: `ninefold calc capacity --rps 12000 --per-endpoint 800
    /// --zones 3 --target 60%` prints the count at target, with and without zone
    /// headroom (losing the largest zone keeps the rest at target, as `autoscale`'s
    /// `zone_headroom` does), and the availability of each: P(enough endpoints up to
    /// carry the load at full capacity), zones sharing their endpoints' fate.
    Capacity {
        /// Requests per second to carry.
        #[arg(long)]
        rps: f64,
        /// Requests per second one endpoint carries at full capacity.
        #[arg(long)]
        per_endpoint: f64,
        /// Zones the endpoints spread over, evenly.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
        zones: u32,
        /// Utilisation to run at (as autoscale's target).
        #[arg(long, default_value = "100%", value_parser = parse_target)]
        target: f64,
        /// Availability of one endpoint.
        #[arg(long, value_name = "A", default_value = topology::DEFAULT_ENDPOINT, value_parser = parse_availability)]
        endpoint_availability: Prob,
        /// Availability of one zone.
        #[arg(long, value_name = "A", default_value = topology::DEFAULT_ZONE, value_parser = parse_availability)]
        zone_availability: Prob,
    },
    /// Estimate each route's availability from a config's topology, with every step
    /// explained.
    Topology {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The model's assumptions.
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// The assumptions of the topology model, shared by `calc topology` and `check`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Availability of one endpoint.
    #[arg(long, value_name = "A", default_value = topology::DEFAULT_ENDPOINT, value_parser = parse_availability)]
    pub endpoint_availability: Prob,
    /// Availability of one zone: its endpoints share its fate (100% gives the pure,
    /// independent k-of-n model).
    #[arg(long, value_name = "A", default_value = topology::DEFAULT_ZONE, value_parser = parse_availability)]
    pub zone_availability: Prob,
    /// Availability of one gateway instance (default: the endpoint availability).
    #[arg(long, value_name = "A", value_parser = parse_availability)]
    pub gateway_availability: Option<Prob>,
    /// How many gateway instances run (any one can serve).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub gateways: u32,
}

impl ModelArgs {
    /// The model these arguments describe.
    pub fn assumptions(&self) -> Assumptions {
        Assumptions {
            endpoint: self.endpoint_availability,
            zone: self.zone_availability,
            gateway: self
                .gateway_availability
                .unwrap_or(self.endpoint_availability),
            gateways: self.gateways,
        }
    }
}

/// What a calc command produced: text for people and JSON for tools.
pub struct Output {
    /// The text rendering.
    pub text: String,
    /// The JSON rendering.
    pub json: Value,
}

/// Runs one calc command. Errors are messages for stderr (exit 2).
pub fn run(cmd: &Calc) -> Result<Output, String> {
    match cmd {
        Calc::Nines { availability } => Ok(nines_out(*availability)),
        Calc::Downtime { downtime, per } => {
            let a = from_downtime(*downtime, *per)?;
            let text = format!(
                "{} of downtime per {} is an availability of {}\n  unavailability {}, {} nines\n",
                human_secs(*downtime),
                period_name(*per),
                a,
                a.down_sci(),
                sig3(a.nines())
            );
            Ok(Output {
                text,
                json: json!({
                    "downtime_seconds": downtime,
                    "period_seconds": per,
                    "availability": a.up(),
                    "unavailability": a.down(),
                    "availability_percent": a.percent(),
                    "nines": finite(a.nines()),
                }),
            })
        }
        Calc::Budget {
            objective,
            window,
            requests,
        } => {
            if *window <= 0.0 {
                return Err("the window must be longer than zero".into());
            }
            let b = budget(*objective, *window, *requests);
            let mut text = format!(
                "objective {objective} over {}:\n  allowed bad ratio  {} ({}%)\n  error budget       {} minutes ({} s)\n",
                human_secs(*window),
                sig3(b.allowed_bad_ratio),
                sig3(b.allowed_bad_ratio * 100.0),
                sig3(b.minutes),
                sig3(b.minutes * 60.0)
            );
            if let (Some(n), Some(bad)) = (requests, b.bad_requests) {
                let _ = writeln!(
                    text,
                    "  bad requests       {} of {n} (allowed share: {})",
                    bad.floor(),
                    bad
                );
            }
            Ok(Output {
                text,
                json: json!({
                    "objective": objective.up(),
                    "objective_percent": objective.percent(),
                    "window_seconds": window,
                    "allowed_bad_ratio": b.allowed_bad_ratio,
                    "budget_minutes": b.minutes,
                    "requests": requests,
                    "allowed_bad_requests": b.bad_requests.map(f64::floor),
                }),
            })
        }
        Calc::Kofn {
            availability,
            n,
            availabilities,
            k,
        } => {
            let (p, what) = match availability {
                Some(a) => {
                    let n = n.ok_or("--n is required with --availability")?;
                    (
                        k_of_n(*a, n, *k)?,
                        format!("at least {k} of {n} nodes up, each up {a} (binomial)"),
                    )
                }
                None => {
                    if n.is_some_and(|n| n as usize != availabilities.len()) {
                        return Err(format!(
                            "--n {} does not match the {} availabilities given",
                            n.unwrap_or_default(),
                            availabilities.len()
                        ));
                    }
                    let mut list: Vec<String> =
                        availabilities.iter().take(8).map(Prob::percent).collect();
                    if availabilities.len() > 8 {
                        list.push(format!("… ({} more)", availabilities.len() - 8));
                    }
                    (
                        k_of_n_mixed(availabilities, *k)?,
                        format!(
                            "at least {k} of {} nodes up, up {} (Poisson binomial)",
                            availabilities.len(),
                            list.join(", ")
                        ),
                    )
                }
            };
            Ok(prob_out(&what, p))
        }
        Calc::Capacity {
            rps,
            per_endpoint,
            zones,
            target,
            endpoint_availability,
            zone_availability,
        } => capacity_out(
            *rps,
            *per_endpoint,
            *zones,
            *target,
            *endpoint_availability,
            *zone_availability,
        ),
        Calc::Serial { parts } => Ok(prob_out(
            &format!("{} in series (all must be up)", list(parts)),
            av::serial(parts),
        )),
        Calc::Parallel { parts } => Ok(prob_out(
            &format!("{} in parallel (any one up)", list(parts)),
            av::parallel(parts),
        )),
        Calc::Topology { config, model } => {
            let cfg = crate::config::load(config).map_err(|e| e.to_string())?;
            Ok(topology_out(&cfg, &model.assumptions()))
        }
    }
}

fn list(parts: &[Prob]) -> String {
    parts
        .iter()
        .map(Prob::percent)
        .collect::<Vec<_>>()
        .join(", ")
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn nines_out(a: Prob) -> Output {
    let rows = nines(a);
    let mut text = format!(
        "{a} allows this much downtime (unavailability {}, {} nines; a year is {YEAR_DAYS} days):\n",
        a.down_sci(),
        sig3(a.nines())
    );
    for r in &rows {
        let label = format!("per {} ({} d)", r.period, r.days);
        let _ = writeln!(
            text,
            "  {label:<24}{:>12}  ({} s)",
            human_secs(r.seconds),
            sig3(r.seconds)
        );
    }
    let json = json!({
        "availability": a.up(),
        "unavailability": a.down(),
        "availability_percent": a.percent(),
        "nines": finite(a.nines()),
        "year_days": YEAR_DAYS,
        "downtime": rows.iter().map(|r| json!({
            "period": r.period, "days": r.days, "seconds": r.seconds,
        })).collect::<Vec<_>>(),
    });
    Output { text, json }
}

/// Endpoints needed at target, with zone headroom, and their availabilities.
fn capacity_out(
    rps: f64,
    per_endpoint: f64,
    zones: u32,
    target: f64,
    endpoint: Prob,
    zone: Prob,
) -> Result<Output, String> {
    if !(rps.is_finite() && rps > 0.0 && per_endpoint.is_finite() && per_endpoint > 0.0) {
        return Err("--rps and --per-endpoint must be greater than zero".into());
    }
    let at_target = (rps / (per_endpoint * target) - 1e-9).ceil().max(1.0);
    let full = (rps / per_endpoint - 1e-9).ceil().max(1.0);
    if at_target > 100_000.0 {
        return Err(format!(
            "{at_target} endpoints: more than this calculator counts (100000)"
        ));
    }
    let (at_target, full) = (at_target as u32, full as u32);
    let headroom = crate::autoscale::headroom(at_target, 1.0 / f64::from(zones));
    let plain = capacity_availability(at_target, zones, full, endpoint, zone)?;
    let with = capacity_availability(headroom, zones, full, endpoint, zone)?;
    let per_zone = |n: u32| n.div_ceil(zones);
    let mut text = format!(
        "{rps} requests/s at {per_endpoint} per endpoint, run at {}: {at_target} endpoints ({full} carry it at full capacity)\n",
        pct(target)
    );
    if zones >= 2 {
        let _ = writeln!(
            text,
            "with zone headroom over {zones} zones: {headroom} endpoints (up to {} per zone); losing a zone leaves {}, at or under target",
            per_zone(headroom),
            headroom - per_zone(headroom)
        );
        let _ = writeln!(
            text,
            "without it, losing a zone leaves {} of {at_target}: {} each",
            at_target - per_zone(at_target),
            pct(rps / per_endpoint / f64::from((at_target - per_zone(at_target)).max(1)))
        );
    } else {
        let _ = writeln!(text, "one zone: no zone headroom is possible");
    }
    let _ = writeln!(
        text,
        "availability of carrying the load (at least {full} endpoints up; endpoint {endpoint}, zone {zone}, a zone's endpoints share its fate):"
    );
    let _ = writeln!(
        text,
        "  {at_target} endpoints: {} ({} nines)",
        plain,
        sig3(plain.nines())
    );
    if zones >= 2 {
        let _ = writeln!(
            text,
            "  {headroom} endpoints (zone headroom): {} ({} nines)",
            with,
            sig3(with.nines())
        );
    }
    let json = json!({
        "rps": rps,
        "per_endpoint": per_endpoint,
        "target": target,
        "zones": zones,
        "endpoints_at_target": at_target,
        "endpoints_at_full_capacity": full,
        "endpoints_with_zone_headroom": headroom,
        "availability": plain.up(),
        "availability_percent": plain.percent(),
        "availability_with_zone_headroom": with.up(),
        "availability_with_zone_headroom_percent": with.percent(),
    });
    Ok(Output { text, json })
}

/// P(at least `k` of `n` endpoints up), the endpoints spread evenly over `zones`, each
/// zone up with `zone` and its endpoints with `endpoint` while it is.
fn capacity_availability(
    n: u32,
    zones: u32,
    k: u32,
    endpoint: Prob,
    zone: Prob,
) -> Result<Prob, String> {
    let sizes: Vec<u32> = (0..zones)
        .map(|i| n / zones + u32::from(i < n % zones))
        .collect();
    // Sum P(this set of zones up) × P(not enough endpoints in it), over every set.
    let mut down = 0.0;
    for mask in 0u32..(1 << zones) {
        let mut p = 1.0;
        let mut endpoints = 0;
        for (i, s) in sizes.iter().enumerate() {
            if mask & (1 << i) != 0 {
                p *= zone.up();
                endpoints += s;
            } else {
                p *= zone.down();
            }
        }
        let short = if endpoints < k || endpoints == 0 {
            1.0
        } else {
            k_of_n(endpoint, endpoints, k)?.down()
        };
        down += p * short;
    }
    Ok(Prob::from_parts(1.0 - down, down))
}

fn pct(x: f64) -> String {
    let v = (x * 1000.0).round() / 10.0;
    format!("{v}%")
}

fn parse_target(s: &str) -> Result<f64, String> {
    let p = crate::config::parse_percent(s)?;
    if p <= 0.0 || p > 100.0 {
        return Err(format!("must be in (0%, 100%], got {p}%"));
    }
    Ok(p / 100.0)
}

fn prob_out(what: &str, p: Prob) -> Output {
    let year = p.down() * YEAR_DAYS * 86_400.0;
    let text = format!(
        "{what}:\n  availability     {p}\n  unavailability   {}\n  nines            {}\n  downtime/year    {}\n",
        p.down_sci(),
        sig3(p.nines()),
        human_secs(year)
    );
    let json = json!({
        "what": what,
        "availability": p.up(),
        "unavailability": p.down(),
        "unavailability_log10": finite(p.ln_down / std::f64::consts::LN_10),
        "availability_percent": p.percent(),
        "nines": finite(p.nines()),
        "downtime_per_year_seconds": year,
    });
    Output { text, json }
}

fn topology_out(cfg: &crate::config::Config, a: &Assumptions) -> Output {
    let est = topology::estimate(cfg, a);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "assumptions: endpoint {}, zone {} (a zone's endpoints share its fate), gateway {} × {} instance{}; failures otherwise independent",
        a.endpoint,
        a.zone,
        a.gateway,
        a.gateways,
        if a.gateways == 1 { "" } else { "s" }
    );
    if est.is_empty() {
        let _ = writeln!(text, "no HTTP routes to estimate");
    }
    for e in &est {
        let _ = writeln!(
            text,
            "\nroute {}/{} → {}: {} ({} nines, {}/year down)",
            e.listener,
            e.route,
            e.target,
            e.availability_percent,
            sig3(e.nines),
            human_secs(e.downtime_per_year_seconds)
        );
        for (i, s) in e.steps.iter().enumerate() {
            let _ = writeln!(text, "  {}. {s}", i + 1);
        }
        if let Some(s) = &e.slo {
            let _ = writeln!(
                text,
                "  SLO {} is {}: {}",
                s.name,
                s.objective_text,
                if s.reachable {
                    "the estimate reaches it"
                } else {
                    "the estimate does NOT reach it"
                }
            );
        }
    }
    let json = json!({
        "file": cfg.source,
        "assumptions": {
            "endpoint_availability": a.endpoint.up(),
            "zone_availability": a.zone.up(),
            "gateway_availability": a.gateway.up(),
            "gateways": a.gateways,
        },
        "routes": est,
    });
    Output { text, json }
}

fn period_name(secs: f64) -> String {
    match av::PERIODS
        .iter()
        .find(|(_, days)| (secs - days * 86_400.0).abs() < 1e-6)
    {
        Some(&("year", days)) => format!("year ({days} d)"),
        Some(&(name, _)) => name.into(),
        None => human_secs(secs),
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    parse_duration(s).map(|d| d.as_secs_f64())
}

fn parse_period(s: &str) -> Result<f64, String> {
    let days = match s.trim() {
        "year" | "yr" | "y" => YEAR_DAYS,
        "quarter" | "q" => YEAR_DAYS / 4.0,
        "month" | "30d" => 30.0,
        "week" | "wk" | "w" => 7.0,
        "day" => 1.0,
        other => {
            return parse_secs(other)
                .map_err(|e| format!("{e}; or one of year, quarter, month (30 d), week, day"))
        }
    };
    Ok(days * 86_400.0)
}
