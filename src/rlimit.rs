//! Raises the soft open-files limit (`RLIMIT_NOFILE`) to the hard limit at start.
//!
//! A gateway holds two sockets per proxied connection plus pooled upstream ones, so
//! the usual soft limit of 1024 caps it at a few hundred clients, while the hard limit
//! the administrator granted is often a million. The soft limit exists for programs
//! that still use `select(2)`, which ninefold does not, so we take the hard limit, as
//! Go's runtime and nginx's `worker_rlimit_nofile` do. Failing is never fatal: the
//! gateway runs with the limit it has, and says so.

/// Sets the soft `RLIMIT_NOFILE` to the hard one and logs the figure once (info), or
/// logs a warning when the limit cannot be read or raised.
pub fn raise_nofile_limit() {
    match raise() {
        Ok((old, new)) if old == new => {
            tracing::info!("open files limit is {new} (the hard limit)");
        }
        Ok((old, new)) => tracing::info!("open files limit raised from {old} to {new}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

/// Returns the soft limit before and after.
fn raise() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if old >= lim.rlim_max {
        return Ok((figure(old), figure(old)));
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("soft {old}, hard {}: {e}", figure(lim.rlim_max)),
        ));
    }
    Ok((figure(old), figure(lim.rlim_max)))
}

/// An `rlim_t` as a plain number (it is `u64` on the platforms we build for; the
/// conversion keeps this compiling where it is narrower).
#[allow(clippy::useless_conversion)]
fn figure(v: libc::rlim_t) -> u64 {
    u64::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_ends_at_the_hard_limit() {
        let (old, new) = raise().unwrap();
        assert!(new >= old);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
