//! A worker thread: its own current_thread runtime, its timers (requests' deadlines,
//! and one tick a second that sweeps idle connections and the upstream pools), its
//! accept loops, and its part of a graceful shutdown.

use super::listen::{accept_loop, Kind};
use crate::snapshot::Shared;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the control plane tells a worker.
pub(super) enum Cmd {
    Listen {
        name: Arc<str>,
        socket: std::net::TcpListener,
        kind: Kind,
        stop: watch::Receiver<bool>,
    },
    Shutdown {
        grace: Duration,
    },
}

/// Starts worker `id`'s thread, which serves what the control plane sends on `rx`.
pub(super) fn spawn(
    id: usize,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Cmd>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::runtime::thread(&format!("ninefold-w{id}"), move |rt| {
        crate::upstream::figures::set_shard(id);
        run(rt, shared, rx)
    })
}

fn run(rt: tokio::runtime::Runtime, shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    rt.block_on(async move {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let active = Arc::new(AtomicUsize::new(0));
        // The worker's upstream pool closes idle and dead connections on its own, so
        // those of endpoints a reload removed go within seconds, whatever the upstream
        // does with its side; idle client connections past their idle timeout are
        // woken to close (one timer for all of them).
        // Requests' route and per-try deadlines run on the worker's own timer.
        tokio::spawn(crate::timer::drive());
        tokio::spawn(async {
            let mut tick = tokio::time::interval(crate::timer::COARSE_STEP);
            loop {
                tick.tick().await;
                let now = tokio::time::Instant::now();
                crate::timer::set_coarse(now);
                crate::h1::pool::sweep();
                crate::proxy::forward::h2::sweep();
                super::h1::sweep_idle(now);
            }
        });
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Listen {
                    name,
                    socket,
                    kind,
                    stop,
                } => match tokio::net::TcpListener::from_std(socket) {
                    Ok(l) => {
                        tokio::spawn(accept_loop(
                            shared.clone(),
                            name,
                            l,
                            kind,
                            stop,
                            shutdown_rx.clone(),
                            active.clone(),
                        ));
                    }
                    Err(e) => tracing::error!(listener = %name, "cannot register socket: {e}"),
                },
                Cmd::Shutdown { grace } => {
                    let _ = shutdown_tx.send(true);
                    super::h1::close_idle();
                    let deadline = tokio::time::Instant::now() + grace;
                    // Poll the count: connections end on their own schedule, and this
                    // runs once per process life.
                    while active.load(Ordering::Acquire) > 0
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let left = active.load(Ordering::Acquire);
                    if left > 0 {
                        tracing::warn!(
                            connections = left,
                            "grace period over; closing connections still open"
                        );
                    }
                    break;
                }
            }
        }
    });
}
