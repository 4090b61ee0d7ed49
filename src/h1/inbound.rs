//! A request body as the pipeline reads it: lazily, straight from the client
//! connection's own buffer and socket, decoded from its framing ([`Inbound`]).
//! `Expect: 100-continue` is answered when the body is first wanted. A body nobody
//! read is drained ([`drain`], up to [`DRAIN_LIMIT`]) before the next request is read,
//! or the connection is closed.

use super::buf::{self, Buf};
use super::chunked::Decoder;
use super::io::{Client, Stream};
use super::parse::Framing;
use crate::config::Limits;
use bytes::Bytes;
use http_body::SizeHint;
use std::future::poll_fn;
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// A request body left unread after its answer is read and dropped up to this size;
/// more, and the connection is closed instead.
pub const DRAIN_LIMIT: u64 = 64 * 1024;

/// Answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where `Expect: 100-continue` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// Not asked for, or already answered.
    No,
    /// Asked for; sent when the body is first read.
    Waiting,
    /// Being written; this many bytes went (all of them: being flushed).
    Sending(usize),
}

/// A request body's progress, owned by the connection loop and lent to [`Inbound`].
pub struct InState {
    /// The connection's read buffer (it may hold the next pipelined request too).
    buf: Buf,
    framing: Framing,
    decoder: Decoder,
    done: bool,
    failed: bool,
    cont: Continue,
}

// === impl InState ===

impl InState {
    /// Whether what is left of the body may be read and dropped (see [`drain`]).
    fn drainable(&self) -> bool {
        !matches!(self.framing, Framing::Length(n) if n > DRAIN_LIMIT)
    }

    /// The state of a body framed by `framing` (`expect`: the client waits for
    /// `100 Continue`), with `buf`, the connection's read buffer past the head.
    pub fn new(framing: Framing, expect: bool, buf: Buf, limits: &Limits) -> Self {
        let done = framing == Framing::Empty;
        InState {
            buf,
            framing,
            decoder: Decoder::new(limits.max_chunk_extension, limits.max_request_head),
            done,
            failed: false,
            cont: if expect && !done {
                Continue::Waiting
            } else {
                Continue::No
            },
        }
    }

    /// The body as the pipeline reads it, from `io`.
    pub fn reader<'a>(&'a mut self, io: &'a Client) -> Inbound<'a> {
        Inbound { io, st: self }
    }

    /// Whether the body has been read to its end (or broke).
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether the connection cannot carry another request after this one: a body
    /// nobody read on a request whose `100 Continue` was not sent (the client may or
    /// may not send it), one too long to drain, or one that broke its framing (where
    /// the next request starts is unknown).
    pub fn blocks_reuse(&self) -> bool {
        (!self.done && (self.cont == Continue::Waiting || !self.drainable())) || self.failed
    }

    /// Whether the client may still be sending: a body nobody read, or bytes after
    /// this request.
    pub fn unread(&self) -> bool {
        (!self.done && !self.failed) || !self.buf.is_empty()
    }

    /// Takes the connection's read buffer back (what the client sent after the body).
    pub fn take_buf(&mut self) -> Buf {
        std::mem::take(&mut self.buf)
    }
}

/// The request body as the pipeline reads it: straight from the client connection's
/// buffer and socket, decoded from its framing (see the module doc).
pub struct Inbound<'a> {
    io: &'a Client,
    st: &'a mut InState,
}

/// Why a request body could not be read.
#[derive(Debug)]
pub struct BodyError(&'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BodyError {}

// === impl Inbound ===

impl Inbound<'_> {
    fn fail(&mut self, why: &'static str) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.st.failed = true;
        self.st.done = true;
        Poll::Ready(Some(Err(BodyError(why))))
    }

    /// The next piece of the body (answering `Expect: 100-continue` first); `None` at
    /// its end. (The pipeline reads it as `message::ReqBody`, whose `Body` this is.)
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        let this = self;
        loop {
            if this.st.done {
                return Poll::Ready(None);
            }
            // The client waits for our go-ahead before it sends the body.
            // (Sent even when some of the body came early, as nginx does: the client
            // may be waiting for it to send the rest.)
            while let Continue::Waiting | Continue::Sending(_) = this.st.cont {
                let sent = match this.st.cont {
                    Continue::Sending(n) => n,
                    _ => 0,
                };
                if sent == CONTINUE.len() {
                    match ready!(this.io.poll_flush(cx)) {
                        Ok(()) => this.st.cont = Continue::No,
                        Err(_) => return this.fail("client connection closed"),
                    }
                    continue;
                }
                match ready!(this.io.poll_write(cx, &CONTINUE[sent..])) {
                    Ok(n) if n > 0 => this.st.cont = Continue::Sending(sent + n),
                    _ => return this.fail("client connection closed"),
                }
            }
            if !this.st.buf.is_empty() {
                let data = this.st.buf.data();
                match &mut this.st.framing {
                    Framing::Length(left) => {
                        let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        let chunk = Bytes::copy_from_slice(&data[..n]);
                        this.st.buf.consume(n);
                        *left -= n as u64;
                        this.st.done = *left == 0;
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    Framing::Chunked => match this.st.decoder.decode(data) {
                        Ok(d) => {
                            let chunk = d.data.map(|r| Bytes::copy_from_slice(&data[r]));
                            this.st.buf.consume(d.consumed);
                            this.st.done = d.done;
                            if let Some(c) = chunk {
                                return Poll::Ready(Some(Ok(c)));
                            }
                            if d.done {
                                return Poll::Ready(None);
                            }
                        }
                        Err(_) => return this.fail("malformed chunked body"),
                    },
                    Framing::Empty | Framing::Close => {
                        this.st.done = true;
                        return Poll::Ready(None);
                    }
                }
            }
            match ready!(this.io.poll_read_into(cx, &mut this.st.buf, buf::SIZE)) {
                Ok(0) => return this.fail("client closed the connection inside the body"),
                Ok(_) => {}
                Err(_) => return this.fail("client connection failed"),
            }
        }
    }

    /// Whether the body has been read to its end (or broke).
    pub fn is_done(&self) -> bool {
        self.st.done
    }

    /// The bytes still to come, when known.
    pub fn size_hint(&self) -> SizeHint {
        match self.st.framing {
            _ if self.st.done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for Inbound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

/// Reads and drops the rest of a request body the pipeline left unread: up to
/// [`DRAIN_LIMIT`] bytes within `idle`. False: close the connection instead.
pub async fn drain(io: &Client, st: &mut InState, idle: Duration) -> bool {
    if st.failed || !st.drainable() {
        return false;
    }
    let mut budget = DRAIN_LIMIT;
    let mut body = st.reader(io);
    let run = async {
        while let Some(f) = poll_fn(|cx| body.poll_data(cx)).await {
            match f {
                Ok(d) => {
                    let n = d.len() as u64;
                    if n > budget {
                        return false;
                    }
                    budget -= n;
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(idle, run).await.unwrap_or(false)
}
