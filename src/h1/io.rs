//! The engine's I/O, on streams used through shared references: the engine never
//! holds a stream mutably, so a request's body reader, its interim-answer writer and
//! the connection loop can all use the one connection, and reads go straight into
//! pooled buffers.
//!
//! Two kinds of stream carry HTTP/1.x: a plain `TcpStream` (client and upstream
//! sides), read and written by readiness, and a client's TLS session ([`Client::Tls`]),
//! which rustls decrypts into the same buffers. Both are [`Stream`]s, so the server
//! side of the engine is one code for `http` and `https` listeners. A plain stream's
//! receives and sends go straight to the kernel (see `sys`: libc's wrappers are
//! thread-cancellation points, which cost atomics in a threaded process).

use super::buf::Buf;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client's TLS session. Behind a lock only because the engine shares the stream
/// between a request's parts; they all run in the connection's one task, so the lock
/// is never contended.
pub type TlsStream = Mutex<tokio_rustls::server::TlsStream<TcpStream>>;

/// What the engine reads and writes: polled through a shared reference.
pub trait Stream {
    /// Polls a read into the spare room of `buf` (at most `max` bytes waiting in it
    /// after the read); `Ok(0)` at the end of the stream.
    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Buf,
        max: usize,
    ) -> Poll<io::Result<usize>>;

    /// Polls a read into `buf`, for byte relays.
    fn poll_read_buf(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>>;

    /// Polls one write of (a prefix of) `a` then `b`; the count is of bytes taken.
    fn poll_write2(&self, cx: &mut Context<'_>, a: &[u8], b: &[u8]) -> Poll<io::Result<usize>>;

    /// Polls until what was written has gone to the socket.
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Polls the end of the sending side (for TLS, after a `close_notify`).
    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Polls one write of `b`.
    fn poll_write(&self, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write2(cx, b, &[])
    }
}

impl Stream for TcpStream {
    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Buf,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match try_read(self, buf.spare(max), usize::MAX) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_read_buf(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write2(&self, cx: &mut Context<'_>, a: &[u8], b: &[u8]) -> Poll<io::Result<usize>> {
        // The write is tried first (a socket nearly always has room; the try checks
        // the readiness tokio last saw, with no system call when it is not writable),
        // and the waker registered only when it would block.
        loop {
            let r = self.try_io(tokio::io::Interest::WRITABLE, || {
                if b.is_empty() {
                    sys::send(self, a)
                } else {
                    sys::writev(self, &[IoSlice::new(a), IoSlice::new(b)])
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write))
    }
}

/// A client connection the engine serves: plain, or TLS that negotiated HTTP/1.1.
pub enum Client {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (boxed: a plain connection does not pay for a TLS session's size).
    Tls(Box<TlsStream>),
}

impl Client {
    fn tls(s: &TlsStream) -> std::sync::MutexGuard<'_, tokio_rustls::server::TlsStream<TcpStream>> {
        s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Polls for the first bytes of a request on an idle connection: `true` when
    /// there is something to read (or the end of the stream), `false` when it failed.
    /// A plain connection only waits for readability, holding no buffer; a TLS one
    /// decrypts into `buf`, which is given back while nothing came.
    pub fn poll_request(&self, cx: &mut Context<'_>, buf: &mut Buf) -> Poll<bool> {
        match self {
            Client::Tcp(s) => s.poll_read_ready(cx).map(|r| r.is_ok()),
            Client::Tls(_) => match self.poll_read_into(cx, buf, super::buf::SIZE) {
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
                Poll::Pending => {
                    buf.release_if_empty();
                    Poll::Pending
                }
            },
        }
    }

    /// Polls whether the client went away while its answer is being made: `true` when
    /// its connection closed (or failed), `false` when it sent something (which is left
    /// for the reader). Looks at the socket itself, under any TLS.
    pub fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<bool> {
        match self {
            Client::Tcp(s) => poll_gone(s, cx),
            Client::Tls(t) => poll_gone(Self::tls(t).get_ref().0, cx),
        }
    }
}

fn poll_gone(s: &TcpStream, cx: &mut Context<'_>) -> Poll<bool> {
    loop {
        if ready!(s.poll_read_ready(cx)).is_err() {
            return Poll::Ready(true);
        }
        let peek = s.try_io(tokio::io::Interest::READABLE, || {
            let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            socket2::SockRef::from(s).peek(&mut b)
        });
        match peek {
            Ok(0) => return Poll::Ready(true),
            Ok(_) => return Poll::Ready(false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Poll::Ready(true),
        }
    }
}

impl Stream for Client {
    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Buf,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Client::Tcp(s) => s.poll_read_into(cx, buf, max),
            Client::Tls(t) => poll_read_spare(buf.spare(max), |rb| {
                Pin::new(&mut *Self::tls(t)).poll_read(cx, rb)
            }),
        }
    }

    fn poll_read_buf(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Client::Tcp(s) => s.poll_read_buf(cx, buf),
            Client::Tls(t) => Pin::new(&mut *Self::tls(t)).poll_read(cx, buf),
        }
    }

    fn poll_write2(&self, cx: &mut Context<'_>, a: &[u8], b: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Client::Tcp(s) => s.poll_write2(cx, a, b),
            Client::Tls(t) => Pin::new(&mut *Self::tls(t))
                .poll_write_vectored(cx, &[IoSlice::new(a), IoSlice::new(b)]),
        }
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Client::Tcp(_) => Poll::Ready(Ok(())),
            Client::Tls(t) => Pin::new(&mut *Self::tls(t)).poll_flush(cx),
        }
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Client::Tcp(s) => s.poll_shutdown(cx),
            Client::Tls(t) => Pin::new(&mut *Self::tls(t)).poll_shutdown(cx),
        }
    }
}

/// Polls `read` (an `AsyncRead`'s `poll_read`) into the spare capacity of `v`, which
/// then holds what was read: the count of it, or the error.
///
/// `read` is handed a `&mut ReadBuf` and, being safe code, could put another buffer in
/// its place (`*rb = ReadBuf::new(..)`); the filled length would then count bytes that
/// are not in `v`, and `v` would take uninitialised memory as read. So the `ReadBuf` is
/// checked to still be `v`'s before its count is trusted, as tokio-util's
/// `poll_read_buf` does. rustls never swaps it: a swap is a bug, and fails the one
/// connection (an error) rather than the process (a panic).
fn poll_read_spare(
    v: &mut Vec<u8>,
    read: impl FnOnce(&mut ReadBuf<'_>) -> Poll<io::Result<()>>,
) -> Poll<io::Result<usize>> {
    let spare = v.spare_capacity_mut();
    let (start, room) = (spare.as_ptr().cast::<u8>(), spare.len());
    let mut rb = ReadBuf::uninit(spare);
    ready!(read(&mut rb))?;
    let n = rb.filled().len();
    if rb.filled().as_ptr() != start || n > room {
        return Poll::Ready(Err(io::Error::other(
            "a read put its bytes in another buffer than the one it was given",
        )));
    }
    // SAFETY: `rb` still reads into `v`'s spare room: checked just above (the same start,
    // and no more than that room; safe code cannot make another `ReadBuf` over this
    // memory, which only `rb` borrows). A `ReadBuf`'s filled part is initialised, so the
    // `n` bytes after `v.len()` are, and `v.len() + n` is within `v`'s capacity.
    unsafe { v.set_len(v.len() + n) };
    Poll::Ready(Ok(n))
}

/// Reads what is available into `buf` (waiting for readability); `Ok(0)` at the end of
/// the stream. `max` bounds the bytes waiting in `buf`.
pub async fn read<S: Stream + ?Sized>(io: &S, buf: &mut Buf, max: usize) -> io::Result<usize> {
    poll_fn(|cx| io.poll_read_into(cx, buf, max)).await
}

/// Reads like [`read`], waiting at most until `deadline` (set to `idle` from now when
/// the read first has to wait, so a read that finds bytes waiting costs no clock read
/// and no timer): `None` when the deadline passed.
pub async fn read_within<S: Stream + ?Sized>(
    io: &S,
    buf: &mut Buf,
    max: usize,
    deadline: &mut Option<tokio::time::Instant>,
    idle: std::time::Duration,
) -> Option<io::Result<usize>> {
    if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(io.poll_read_into(cx, buf, max))).await {
        return Some(r);
    }
    let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + idle);
    tokio::time::timeout_at(at, read(io, buf, max)).await.ok()
}

/// Reads like [`read`], but at most `room` bytes: the first read of an answer whose
/// body may be spliced (see `h1::splice`) takes its head and no more than a little of
/// its body into the gateway.
pub async fn read_at_most(io: &TcpStream, buf: &mut Buf, room: usize) -> io::Result<usize> {
    poll_fn(|cx| loop {
        ready!(io.poll_read_ready(cx))?;
        match try_read(io, buf.spare(room), room) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    })
    .await
}

/// One receive into the spare capacity of `v`, at most `limit` bytes. A read that did
/// not fill the room it had drained the socket, so the stream's readiness is cleared
/// with it, as tokio's own `AsyncRead` does: the next read waits for the next
/// readiness event instead of first making a system call that fails with `EAGAIN`
/// (two per request otherwise).
fn try_read(io: &TcpStream, v: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let mut got = None;
    let r = io.try_io(tokio::io::Interest::READABLE, || {
        let spare = v.spare_capacity_mut();
        let room = spare.len().min(limit);
        let n = sys::recv(io, &mut spare[..room])?;
        got = Some(n);
        if n > 0 && n < room {
            // Clears the readiness this read was made under (a newer event stays).
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (r, got) {
        (_, Some(n)) => {
            // SAFETY: `recv` returned `n`, the bytes the kernel wrote at the start of the
            // spare capacity, which it never makes more than the `room` it was given:
            // they are initialised, and `v.len() + n` is within the capacity.
            unsafe { v.set_len(v.len() + n) };
            Ok(n)
        }
        (r, None) => r,
    }
}

/// The socket calls of the engine's plain-TCP reads and writes, made straight to the
/// kernel: glibc's `recv`, `send` and `writev` are thread-cancellation points, and in a
/// process of several threads each call takes two atomic operations around the system
/// call for that (about 2% of a small request's CPU, four calls per request). The
/// gateway never cancels a thread. Elsewhere than Linux, the usual calls.
pub(super) mod sys {
    use std::io::{self, IoSlice};
    use std::mem::MaybeUninit;
    use tokio::net::TcpStream;

    /// Makes the call `call` until it is not interrupted; its count, or the error.
    #[cfg(target_os = "linux")]
    pub(in crate::h1) fn retried(mut call: impl FnMut() -> libc::c_long) -> io::Result<usize> {
        loop {
            let r = call();
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// `recv(2)` into `buf`.
    #[cfg(target_os = "linux")]
    pub fn recv(io: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` is valid for writes of its length; the other arguments are
        // plain values, each passed as the `long` the call takes.
        retried(|| unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                libc::c_long::from(io.as_raw_fd()),
                buf.as_mut_ptr(),
                buf.len(),
                0 as libc::c_long,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        })
    }

    /// `send(2)` of `b`, with no `SIGPIPE`.
    #[cfg(target_os = "linux")]
    pub fn send(io: &TcpStream, b: &[u8]) -> io::Result<usize> {
        send_flags(io, b, libc::MSG_NOSIGNAL)
    }

    /// `send(2)` of `b` with `MSG_MORE`: more follows at once (a splice), so the kernel
    /// holds these bytes to go out with it.
    #[cfg(target_os = "linux")]
    pub fn send_more(io: &TcpStream, b: &[u8]) -> io::Result<usize> {
        send_flags(io, b, libc::MSG_NOSIGNAL | libc::MSG_MORE)
    }

    #[cfg(target_os = "linux")]
    fn send_flags(io: &TcpStream, b: &[u8], flags: libc::c_int) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `b` is valid for reads of its length; as in `recv`.
        retried(|| unsafe {
            libc::syscall(
                libc::SYS_sendto,
                libc::c_long::from(io.as_raw_fd()),
                b.as_ptr(),
                b.len(),
                libc::c_long::from(flags),
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::c_long,
            )
        })
    }

    /// A gathering write of `bufs`, as `writev(2)` makes it, but by `sendmsg(2)` with
    /// `MSG_NOSIGNAL`: a write to a connection whose peer is gone fails with `EPIPE`
    /// (or `ECONNRESET`) and raises no `SIGPIPE`, as with `send`. A Rust binary ignores
    /// `SIGPIPE` from its start, but the engine does not lean on that: a host program
    /// of the library may not, and a thread that blocks the signal would find it
    /// pending. Counts, errors and `EINTR` retries are those of `writev`.
    #[cfg(target_os = "linux")]
    pub fn writev(io: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: all zeros is a valid `msghdr` (null pointers and zero lengths: no
        // address, no iovecs, no control data); it is plain data with no invariants.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // An `IoSlice` is an `iovec` on Unix (std's guarantee); the kernel only reads them.
        msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
        // `size_t` with glibc, `c_int` with musl; two slices here, far below `IOV_MAX`.
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: `msg` lives across the call and points at `bufs`, whose iovecs are
        // each valid for reads of their length for as long as `bufs` is borrowed; the
        // kernel reads `msg` and the iovecs and writes neither (no address, no control
        // data to fill in). The other arguments are plain values, as in `recv`.
        retried(|| unsafe {
            libc::syscall(
                libc::SYS_sendmsg,
                libc::c_long::from(io.as_raw_fd()),
                &msg as *const libc::msghdr,
                libc::c_long::from(libc::MSG_NOSIGNAL),
            )
        })
    }

    /// `recv(2)` into `buf`.
    #[cfg(not(target_os = "linux"))]
    pub fn recv(io: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        socket2::SockRef::from(io).recv(buf)
    }

    /// `send(2)` of `b`.
    #[cfg(not(target_os = "linux"))]
    pub fn send(io: &TcpStream, b: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(io).send(b)
    }

    /// `send(2)` of `b` (no `MSG_MORE` to ask for).
    #[cfg(not(target_os = "linux"))]
    pub fn send_more(io: &TcpStream, b: &[u8]) -> io::Result<usize> {
        send(io, b)
    }

    /// `writev(2)` of `bufs`.
    #[cfg(not(target_os = "linux"))]
    pub fn writev(io: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(io).send_vectored(bufs)
    }
}

/// Writes all of `b` to a plain connection with `MSG_MORE` (see `sys::send_more`):
/// the bytes wait in the kernel for what is written next, to leave with it.
pub async fn write_more(io: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        let n = poll_fn(|cx| loop {
            match io.try_io(tokio::io::Interest::WRITABLE, || sys::send_more(io, b)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(io.poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        b = &b[n..];
    }
    Ok(())
}

/// Whether the stream has had no readiness event since its last read drained it: an
/// idle connection that the peer has neither closed nor written to. Costs a system
/// call only when an event came (then the receive tells what it was).
pub fn is_quiet(io: &TcpStream) -> bool {
    if io.try_io(tokio::io::Interest::READABLE, || Ok(())).is_err() {
        return true;
    }
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Writes all of `b`, and flushes.
pub async fn write_all<S: Stream + ?Sized>(io: &S, b: &[u8]) -> io::Result<()> {
    write_all2(io, b, &[]).await
}

/// Writes all of `a` then all of `b`, in one system call when the socket takes them,
/// and flushes.
pub async fn write_all2<S: Stream + ?Sized>(io: &S, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let (x, y) = if a.is_empty() { (b, &[][..]) } else { (a, b) };
        let n = poll_fn(|cx| io.poll_write2(cx, x, y)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if a.is_empty() {
            b = &b[n..];
        } else if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    poll_fn(|cx| io.poll_flush(cx)).await
}

/// Ends the sending side (for TLS, with a `close_notify` first), so the peer reads the
/// end of the answer and then the close; bounded, as a peer that reads nothing could
/// hold a TLS shutdown forever.
pub async fn shutdown<S: Stream + ?Sized>(io: &S) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        poll_fn(|cx| io.poll_shutdown(cx)),
    )
    .await;
}

/// Reads and drops what the peer sends until it closes, an error, `idle` without a
/// byte, or `total` in all (see `server::h1`'s lingering close). A pooled buffer is
/// held only while bytes are read.
pub async fn linger<S: Stream + ?Sized>(
    io: &S,
    idle: std::time::Duration,
    total: std::time::Duration,
) {
    let run = async {
        let mut buf = Buf::new();
        loop {
            match tokio::time::timeout(idle, read(io, &mut buf, super::buf::SIZE)).await {
                Ok(Ok(n)) if n > 0 => {
                    buf.consume(buf.len());
                    buf.release_if_empty();
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(total, run).await;
}

/// A shared stream as `AsyncRead + AsyncWrite`, for tunnels.
pub struct Shared<'a, S: ?Sized>(pub &'a S);

impl<S: Stream + ?Sized> AsyncRead for Shared<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read_buf(cx, buf)
    }
}

impl<S: Stream + ?Sized> AsyncWrite for Shared<'_, S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_into_spare_room_counts_its_bytes() {
        let mut v = Vec::with_capacity(16);
        v.push(b'>');
        let r = poll_read_spare(&mut v, |rb| {
            rb.put_slice(b"abc");
            Poll::Ready(Ok(()))
        });
        assert!(matches!(r, Poll::Ready(Ok(3))), "{r:?}");
        assert_eq!(v, b">abc");
    }

    #[test]
    fn a_read_that_swaps_its_buffer_fails_and_counts_nothing() {
        let mut v = Vec::with_capacity(16);
        let r = poll_read_spare(&mut v, |rb| {
            // Safe code can do this: a buffer that lives long enough, filled, in place
            // of the one it was given.
            let other: &'static mut [u8] = Box::leak(vec![1u8; 8].into_boxed_slice());
            *rb = ReadBuf::new(other);
            rb.set_filled(8);
            Poll::Ready(Ok(()))
        });
        assert!(matches!(r, Poll::Ready(Err(_))), "{r:?}");
        assert!(v.is_empty(), "no bytes counted that are not in the buffer");
    }

    /// Blocks `SIGPIPE` in this thread while it lives, so one raised here stays pending
    /// where `sigpending` sees it (the test harness, like any Rust binary, ignores
    /// `SIGPIPE`, and an ignored signal that is not blocked is dropped unseen). On drop
    /// it takes a pending one and puts the old mask back.
    #[cfg(target_os = "linux")]
    struct SigpipeBlocked {
        old: libc::sigset_t,
    }

    #[cfg(target_os = "linux")]
    impl SigpipeBlocked {
        fn sigpipe() -> libc::sigset_t {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: `sigemptyset` initialises the set it is given (it cannot fail on
            // a valid pointer), then `sigaddset` adds a valid signal to it.
            unsafe {
                libc::sigemptyset(set.as_mut_ptr());
                libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
                set.assume_init()
            }
        }

        fn new() -> Self {
            let set = Self::sigpipe();
            let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: `set` is initialised; the call writes the old mask into `old`.
            let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
            assert_eq!(r, 0, "pthread_sigmask");
            SigpipeBlocked {
                // SAFETY: the call succeeded, so it wrote `old`.
                old: unsafe { old.assume_init() },
            }
        }

        fn pending(&self) -> bool {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: `sigpending` writes the set it is given.
            assert_eq!(unsafe { libc::sigpending(set.as_mut_ptr()) }, 0);
            // SAFETY: written by the call above, which succeeded.
            unsafe { libc::sigismember(set.as_ptr(), libc::SIGPIPE) == 1 }
        }
    }

    #[cfg(target_os = "linux")]
    impl Drop for SigpipeBlocked {
        fn drop(&mut self) {
            let set = Self::sigpipe();
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `set` and `now` are initialised and only read; no `siginfo` is
            // asked for. Takes a pending `SIGPIPE`, if any, without waiting.
            unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &now) };
            // SAFETY: `self.old` is the mask `new` read; the old-mask out pointer may
            // be null.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_gathered_write_to_a_peer_that_is_gone_fails_without_sigpipe() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        // A close with a zero linger resets the connection.
        socket2::SockRef::from(&peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(peer);
        // The writes are made in this thread (the runtime is the test's own thread).
        let blocked = SigpipeBlocked::new();
        let bufs = [IoSlice::new(b"head"), IoSlice::new(b"body")];
        // Once the reset has come, the first write reports it (`ECONNRESET`, no
        // signal) and the next ones fail with `EPIPE`: those raise `SIGPIPE` unless
        // told not to.
        let mut errors = Vec::new();
        for _ in 0..1000 {
            match sys::writev(&ours, &bufs) {
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(e) => {
                    errors.push(e.raw_os_error());
                    if e.raw_os_error() == Some(libc::EPIPE) {
                        break;
                    }
                }
            }
        }
        let sigpipe = blocked.pending();
        drop(blocked);
        assert_eq!(errors.last(), Some(&Some(libc::EPIPE)), "{errors:?}");
        assert!(
            errors
                .iter()
                .all(|e| matches!(*e, Some(libc::EPIPE | libc::ECONNRESET))),
            "{errors:?}"
        );
        assert!(!sigpipe, "the write raised SIGPIPE");
    }
}
