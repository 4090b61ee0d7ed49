//! The allocator's side of memory: gives back to the system the pages freed by a
//! configuration load or reload.
//!
//! The binary allocates with jemalloc (the `jemalloc` feature, on by default; see
//! `main.rs`), which keeps freed pages ("dirty") for about ten seconds so the request
//! path does not hand pages to the kernel and fault them in again. A configuration
//! load is the one time a lot is freed at once (the parsed file, the old snapshot),
//! so after one the gateway asks jemalloc to purge now: 10,000 routes then add 16 MiB
//! of RSS instead of 32, and a reload no longer doubles it (bench/README.md, "What
//! grows with the configuration"). Without the feature this does nothing.

/// Returns the pages every jemalloc arena holds freed to the system (`arena.<all>.purge`).
/// Costs a few system calls; call it after a configuration load, not per request.
pub fn release_freed() {
    #[cfg(feature = "jemalloc")]
    {
        // `MALLCTL_ARENAS_ALL` (4096) names every arena.
        const PURGE: &[u8] = b"arena.4096.purge\0";
        // SAFETY: `PURGE` is a NUL-terminated name jemalloc knows; a purge reads and
        // writes nothing (null old/new pointers, zero length), as the mallctl contract
        // for a void control allows. The return code only says whether it ran.
        let _ = unsafe {
            tikv_jemalloc_sys::mallctl(
                PURGE.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn releasing_freed_pages_can_be_asked_at_any_time() {
        let v = vec![0u8; 8 << 20];
        drop(v);
        super::release_freed();
        super::release_freed();
    }
}
