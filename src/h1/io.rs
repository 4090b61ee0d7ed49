//! Readiness-based I/O on a shared `&TcpStream`: the engine never holds a stream
//! mutably, so a request's body reader, its interim-answer writer and the connection
//! loop can all use the one socket, and reads go straight into pooled buffers.

use super::buf::Buf;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Reads what is available into `buf` (waiting for readability); `Ok(0)` at the end of
/// the stream. `max` bounds the bytes waiting in `buf`.
pub async fn read(io: &TcpStream, buf: &mut Buf, max: usize) -> io::Result<usize> {
    poll_fn(|cx| poll_read(io, cx, buf, max)).await
}

/// Polls a read into `buf`; see [`read`].
pub fn poll_read(
    io: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut Buf,
    max: usize,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(io.poll_read_ready(cx))?;
        match try_read(io, buf.spare(max)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

/// One receive into the spare capacity of `v`. A read that did not fill the room it
/// had drained the socket, so the stream's readiness is cleared with it, as tokio's
/// own `AsyncRead` does: the next read waits for the next readiness event instead of
/// first making a system call that fails with `EAGAIN` (two per request otherwise).
fn try_read(io: &TcpStream, v: &mut Vec<u8>) -> io::Result<usize> {
    let mut got = None;
    let r = io.try_io(tokio::io::Interest::READABLE, || {
        let spare = v.spare_capacity_mut();
        let room = spare.len();
        let n = socket2::SockRef::from(io).recv(spare)?;
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
            // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
            unsafe { v.set_len(v.len() + n) };
            Ok(n)
        }
        (r, None) => r,
    }
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

/// Writes all of `b`.
pub async fn write_all(io: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        let n = poll_fn(|cx| poll_write(io, cx, b)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        b = &b[n..];
    }
    Ok(())
}

/// Writes all of `a` then all of `b`, in one system call when the socket takes them.
pub async fn write_all2(io: &TcpStream, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() && !b.is_empty() {
        let n = poll_fn(|cx| loop {
            ready!(io.poll_write_ready(cx))?;
            match io.try_write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    write_all(io, a).await?;
    write_all(io, b).await
}

/// Polls one write of `b`.
pub fn poll_write(io: &TcpStream, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(io.poll_write_ready(cx))?;
        match io.try_write(b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

/// A shared stream as `AsyncRead + AsyncWrite`, for tunnels.
pub struct Shared<'a>(pub &'a TcpStream);

impl AsyncRead for Shared<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.0.try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Shared<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(self.0, cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sock = socket2::SockRef::from(self.0);
        Poll::Ready(sock.shutdown(std::net::Shutdown::Write))
    }
}
