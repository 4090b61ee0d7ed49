//! The shape of every thread ninefold starts: a named thread with its own
//! current_thread tokio runtime (the data-path workers, the admin API, the health
//! checks, the SLO engine, the demo's backends). One runtime per thread, never a
//! shared multi-threaded one: a slow health probe or an admin call never shares a
//! scheduler with client requests, and a worker's tasks never move between threads
//! (see `server`).

use std::io;
use std::thread::JoinHandle;
use tokio::runtime::{Builder, Runtime};

/// Starts thread `name` running `f` with the thread's runtime. A runtime that cannot
/// be built (out of file descriptors for its driver, say) is logged, and the thread
/// ends without running `f`.
pub fn thread<F>(name: &str, f: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce(Runtime) + Send + 'static,
{
    let owned = name.to_owned();
    std::thread::Builder::new().name(owned.clone()).spawn(
        move || match Builder::new_current_thread().enable_all().build() {
            Ok(rt) => f(rt),
            Err(e) => tracing::error!(thread = %owned, "cannot build the thread's runtime: {e}"),
        },
    )
}
