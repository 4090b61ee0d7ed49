//! Zero-copy relay of an answer's body from an HTTP/1.1 upstream to a plain-TCP client:
//! `splice(2)` moves the bytes socket → pipe → socket inside the kernel, so a long
//! body is never copied into the gateway and out again (HAProxy's `option splice-*`
//! does the same). Linux only; elsewhere [`Pipe::take`] finds no pipe and the body is
//! copied as before.
//!
//! What is spliced: the rest of a `Content-Length` body, once the first read (at most
//! [`FIRST_READ`] bytes, so the gateway sees the head and only the start of the body)
//! has been relayed, when at least [`MIN`] bytes are still to come. Chunked bodies are
//! decoded and copied (their framing is checked), as are bodies to TLS and h2 clients,
//! and bodies the stale cache keeps a copy of. The head and the first bytes go with
//! `MSG_MORE`, so they leave in the same packets as the spliced bytes.
//!
//! The pipe is filled only when empty and drained to empty before the next fill: a
//! fill that finds no room in the pipe would fail like an empty socket and clear a
//! readiness that is still true. Pipes come from a worker-local, bounded free list,
//! like the buffers; one that still holds bytes (a client went away mid-body) is
//! closed, never reused.

use std::io;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// Body bytes still to come, at least, for a body to be spliced: below, the two system
/// calls a splice adds cost more than copying the bytes in and out.
pub const MIN: u64 = 8 * 1024;

/// Room of the first read of an answer that may be spliced: a head, and the start of
/// its body.
pub const FIRST_READ: usize = 4 * 1024;

/// Pipes kept per worker at most.
#[cfg(target_os = "linux")]
const KEEP: usize = 64;

/// A pipe for splicing, and how many bytes it holds.
#[derive(Debug)]
pub struct Pipe {
    #[cfg(target_os = "linux")]
    r: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    w: std::os::fd::OwnedFd,
    held: usize,
}

#[cfg(target_os = "linux")]
thread_local! {
    static FREE: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Pipe {
    /// An empty pipe from the worker's free list, or a new one; `None` when none can
    /// be made (out of file descriptors: the body is copied instead).
    #[cfg(target_os = "linux")]
    pub fn take() -> Option<Pipe> {
        use std::os::fd::{FromRawFd, OwnedFd};
        if let Some(p) = FREE.with(|f| f.borrow_mut().pop()) {
            return Some(p);
        }
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors the call writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: the call succeeded: both are open descriptors that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Some(Pipe { r, w, held: 0 })
    }

    /// No pipes elsewhere than Linux.
    #[cfg(not(target_os = "linux"))]
    pub fn take() -> Option<Pipe> {
        None
    }

    /// Returns the pipe to the worker's free list if it is empty; closes it if not.
    pub fn give(self) {
        #[cfg(target_os = "linux")]
        if self.held == 0 {
            FREE.with(|f| {
                let mut f = f.borrow_mut();
                if f.len() < KEEP {
                    f.push(self);
                }
            });
        }
    }

    /// Bytes in the pipe, not yet sent on.
    pub fn held(&self) -> usize {
        self.held
    }

    /// One try at moving up to `max` bytes from `from` into the (empty) pipe, without
    /// waiting: `WouldBlock` when the socket has nothing, `Ok(0)` at its end.
    pub fn try_fill(&mut self, from: &TcpStream, max: u64) -> io::Result<usize> {
        debug_assert_eq!(self.held, 0);
        let n = from.try_io(tokio::io::Interest::READABLE, || {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                splice(from.as_raw_fd(), self.w.as_raw_fd(), max)
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = max;
                Err::<usize, _>(io::Error::from(io::ErrorKind::Unsupported))
            }
        })?;
        self.held += n;
        Ok(n)
    }

    /// Polls [`Pipe::try_fill`] until the socket has bytes (or ends, or fails).
    pub fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        max: u64,
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(from.poll_read_ready(cx))?;
            match self.try_fill(from, max) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Polls moving what the pipe holds on to `to`, waiting while it has no room:
    /// some bytes moved, or the error.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>, to: &TcpStream) -> Poll<io::Result<usize>> {
        loop {
            let r = to.try_io(tokio::io::Interest::WRITABLE, || {
                #[cfg(target_os = "linux")]
                {
                    use std::os::fd::AsRawFd;
                    splice(self.r.as_raw_fd(), to.as_raw_fd(), self.held as u64)
                }
                #[cfg(not(target_os = "linux"))]
                {
                    Err::<usize, _>(io::Error::from(io::ErrorKind::Unsupported))
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(to.poll_write_ready(cx))?;
                }
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.held -= n;
                    return Poll::Ready(Ok(n));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// `splice(2)` of up to `len` bytes from `from` to `to`, one of them a pipe, without
/// blocking on the pipe (the sockets are non-blocking already).
#[cfg(target_os = "linux")]
fn splice(from: std::os::fd::RawFd, to: std::os::fd::RawFd, len: u64) -> io::Result<usize> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    // SAFETY: the call reads and writes no memory of ours: the offsets are null (both
    // ends are a socket or a pipe, which have none) and the rest are plain values. The
    // descriptors are those of a socket and a pipe that the callers borrow across the
    // call, so they are open and are the ones meant.
    super::io::sys::retried(|| unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        ) as libc::c_long
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn bytes_go_through_the_pipe_and_it_is_reused_only_when_empty() {
        let (mut up_far, up) = pair().await;
        let (client, mut client_far) = pair().await;
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let send = {
            let body = body.clone();
            tokio::spawn(async move {
                up_far.write_all(&body).await.unwrap();
                up_far
            })
        };
        let recv = tokio::spawn(async move {
            let mut got = vec![0; 100_000];
            client_far.read_exact(&mut got).await.unwrap();
            got
        });
        let mut pipe = Pipe::take().unwrap();
        let mut left = body.len() as u64;
        while left > 0 {
            let n = poll_fn(|cx| pipe.poll_fill(cx, &up, left)).await.unwrap();
            assert!(n > 0);
            left -= n as u64;
            while pipe.held() > 0 {
                poll_fn(|cx| pipe.poll_drain(cx, &client)).await.unwrap();
            }
        }
        let up_far = send.await.unwrap();
        assert_eq!(recv.await.unwrap(), body);
        // Nothing waits on the upstream: a try finds nothing, and says so; at the
        // upstream's end, a fill moves nothing.
        let e = pipe.try_fill(&up, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(up_far);
        assert_eq!(poll_fn(|cx| pipe.poll_fill(cx, &up, 10)).await.unwrap(), 0);
        pipe.give();
        let again = Pipe::take().unwrap();
        assert_eq!(again.held(), 0);
        // A pipe that still holds bytes is closed, not kept.
        let before = FREE.with(|f| f.borrow().len());
        Pipe { held: 1, ..again }.give();
        assert_eq!(FREE.with(|f| f.borrow().len()), before);
    }
}
