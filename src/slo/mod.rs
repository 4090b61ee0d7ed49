//! SLOs and error budgets: definitions (the types are `config::slo`'s) read from three
//! formats ([`spec`]); rolling windows, budgets, burn rates and multiwindow alerts
//! ([`window`]); the live engine of a running gateway ([`engine`]), its state on disk
//! (`persist`) and its Alertmanager sender ([`alerts`]); Prometheus rules for fleets
//! ([`rules`]); and the `ninefold slo` subcommands ([`cli`]).

pub mod alerts;
pub mod cli;
pub mod engine;
mod persist;
pub mod rules;
pub mod spec;
pub mod window;

pub use crate::config::{Indicator, SloDef};
pub use engine::{Counters, Engine};
