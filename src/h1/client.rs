//! The upstream side of the engine: the request's own task writes the request on a
//! pooled (or new) connection, reads the answer's head, and relays the body with
//! [`Reader`], which checks the connection back into the worker's pool when the body
//! has ended cleanly. No connection task, no channel: the attempt loop sees exactly
//! whether the request left.
//!
//! Interim answers (`1xx` other than `100` and `101`) are relayed to an HTTP/1.1
//! client as they come (103 Early Hints); `100 Continue` is the gateway's own business
//! with its client and is dropped.

use super::buf::{self, Buf};
use super::chunked::{self, Decoder};
use super::fields::{RawFields, RawRequest};
use super::io::{self, Client, Stream};
use super::parse::{self, Framing, ResponseHead};
use super::pool;
use super::write::{self, Forwarding};
use bytes::Bytes;
use http::request::Parts;
use http::StatusCode;
use http_body::{Body, SizeHint};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// Why writing a request failed.
#[derive(Debug)]
pub enum WriteError {
    /// The head could not be written: on a pooled connection, the upstream had closed
    /// it, and the request can go again on a new one.
    Head(std::io::Error),
    /// The upstream stopped taking the body.
    Body(std::io::Error),
    /// The client's body broke its own framing, or the client left.
    ClientBody,
}

/// Takes the first piece of body if it is there already (a replay's whole body, or
/// what arrived with the client's head), so it can ride in the head's write, and be
/// written again if a pooled connection turns out to be closed.
pub async fn first_piece<B>(body: &mut B) -> Result<Option<Bytes>, WriteError>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.is_end_stream() {
        return Ok(None);
    }
    match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
        Poll::Ready(Some(Ok(f))) => Ok(f.into_data().ok()),
        Poll::Ready(Some(Err(_))) => Err(WriteError::ClientBody),
        Poll::Ready(None) | Poll::Pending => Ok(None),
    }
}

/// Writes the request's head (see [`write::write_request`]: `raw` holds its fields when
/// the own engine read them, else they are `parts`' map; `fwd` is what the forwarding
/// fields say of the client), then `first` (from [`first_piece`]) in the same write.
/// The rest of the body follows with [`write_body`].
pub async fn write_head(
    stream: &TcpStream,
    parts: &Parts,
    raw: Option<&RawRequest>,
    fwd: Forwarding<'_>,
    first: Option<&Bytes>,
) -> Result<(), WriteError> {
    let mut out = buf::take();
    write::write_request(&mut out, parts, raw, fwd);
    let r = match first {
        Some(d) if !d.is_empty() => {
            if is_chunked(parts, raw) {
                chunked::encode_size(&mut out, d.len());
                match io::write_all2(stream, &out, d).await {
                    Ok(()) => io::write_all(stream, b"\r\n").await,
                    e => e,
                }
            } else {
                io::write_all2(stream, &out, d).await
            }
        }
        _ => io::write_all(stream, &out).await,
    };
    buf::give(out);
    r.map_err(WriteError::Head)
}

/// Whether the request's body goes chunked (decided by `proxy::forward::prepare`).
pub fn is_chunked(parts: &Parts, raw: Option<&RawRequest>) -> bool {
    match raw {
        Some(r) => r.chunked,
        None => parts
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked")),
    }
}

/// Writes the rest of a request body after [`write_head`], frame by frame (chunked
/// when `chunked`), ending a chunked body with the last chunk.
pub async fn write_body<B>(
    stream: &TcpStream,
    body: &mut B,
    chunked: bool,
) -> Result<(), WriteError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut out = Vec::new();
    loop {
        if body.is_end_stream() {
            break;
        }
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !out.is_empty() {
                    io::write_all(stream, &out)
                        .await
                        .map_err(WriteError::Body)?;
                    out.clear();
                }
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        match frame {
            None => break,
            Some(Err(_)) => return Err(WriteError::ClientBody),
            Some(Ok(f)) => {
                let Ok(d) = f.into_data() else { continue };
                if d.is_empty() {
                    continue;
                }
                if chunked {
                    chunked::encode_size(&mut out, d.len());
                }
                io::write_all2(stream, &out, &d)
                    .await
                    .map_err(WriteError::Body)?;
                out.clear();
                if chunked {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if chunked {
        out.extend_from_slice(chunked::LAST_CHUNK);
    }
    if !out.is_empty() {
        io::write_all(stream, &out)
            .await
            .map_err(WriteError::Body)?;
    }
    Ok(())
}

/// Why reading an answer's head failed.
#[derive(Debug)]
pub enum ReadError {
    /// The connection closed or failed before a whole head arrived.
    Closed,
    /// The head is malformed, ambiguous or too large (the cause, for the log).
    Invalid(&'static str),
    /// The upstream went silent for longer than allowed.
    Idle,
}

/// Reads the answer's head into `rbuf` (which keeps any body bytes after it),
/// relaying interim answers to `interim`, the client, when it takes them (see the
/// module doc). `first`, when set, bounds the first receive (see
/// `h1::splice::FIRST_READ`).
pub async fn read_head(
    interim: Option<&Client>,
    stream: &TcpStream,
    rbuf: &mut Buf,
    head_req: bool,
    max_head: usize,
    mut first: Option<usize>,
) -> Result<ResponseHead, ReadError> {
    loop {
        if !rbuf.is_empty() {
            match parse::parse_response(rbuf.data(), head_req, max_head) {
                Ok(Some(h)) => {
                    let code = h.status.as_u16();
                    if (100..200).contains(&code) && code != 101 {
                        rbuf.consume(h.len);
                        if let (true, Some(client)) = (code != 100, interim) {
                            relay_interim(client, h.status, &h.fields).await;
                        }
                        continue;
                    }
                    rbuf.consume(h.len);
                    return Ok(h);
                }
                Ok(None) => {}
                Err(why) => return Err(ReadError::Invalid(why)),
            }
        }
        let read = match first.take() {
            Some(room) => io::read_at_most(stream, rbuf, room).await,
            None => io::read(stream, rbuf, max_head.max(buf::SIZE)).await,
        };
        match read {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => {}
        }
    }
}

/// Relays an interim answer (103 Early Hints and the like) to the client; a failed
/// write is left for the final answer to find.
async fn relay_interim(client: &Client, status: StatusCode, fields: &RawFields) {
    let mut out = Vec::with_capacity(128);
    write::write_status(&mut out, status);
    out.extend_from_slice(fields.lines());
    out.extend_from_slice(b"\r\n");
    let _ = io::write_all(client, &out).await;
}

/// After a first read bounded for a splice (see `read_head`): when that read filled
/// its room (more may be waiting) and the body will not be spliced after all (chunked,
/// or too short), reads what more is already waiting, without waiting, so the body
/// still goes to the client in one write as it would have without the bound. An answer
/// that came whole in the first read costs nothing here.
pub async fn read_rest_if_copied(stream: &TcpStream, rbuf: &mut Buf, head: &ResponseHead) {
    if head.len + rbuf.len() < super::splice::FIRST_READ {
        return;
    }
    let spliced = match head.framing {
        Framing::Length(n) => n.saturating_sub(rbuf.len() as u64) >= super::splice::MIN,
        Framing::Empty => true,
        _ => false,
    };
    if !spliced {
        let _ = poll_fn(|cx| Poll::Ready(stream.poll_read_into(cx, rbuf, buf::ANSWER_SIZE))).await;
    }
}

/// Reads until `rbuf` holds `len` bytes (an answer's whole `Content-Length` body, held
/// before its head goes on: see `proxy::forward`); the connection closing or failing
/// first is [`ReadError::Closed`], and `idle` of silence [`ReadError::Idle`].
pub async fn read_body_whole(
    stream: &TcpStream,
    rbuf: &mut Buf,
    len: usize,
    idle: std::time::Duration,
) -> Result<(), ReadError> {
    while rbuf.len() < len {
        match io::read_within(stream, rbuf, len, &mut None, idle).await {
            Some(Ok(0)) | Some(Err(_)) => return Err(ReadError::Closed),
            Some(Ok(_)) => {}
            None => return Err(ReadError::Idle),
        }
    }
    Ok(())
}

/// An answer's body being read from its upstream connection; see the module doc.
pub struct Reader {
    stream: Option<TcpStream>,
    buf: Buf,
    framing: Framing,
    decoder: Decoder,
    done: bool,
    /// A piece ready to relay (see [`Reader::poll_piece`]).
    pending: Option<Piece>,
    /// Where the connection goes back at a clean end; `None`: it is closed.
    keep: Option<(usize, SocketAddr)>,
}

impl Reader {
    /// A reader of a body framed by `framing`, with `buf` holding what arrived after the
    /// head; a chunked one may carry `ext_limit` bytes of chunk extensions and a
    /// trailer section of `trailer_limit` bytes (the answer head's own limit).
    pub fn new(
        stream: TcpStream,
        buf: Buf,
        framing: Framing,
        (ext_limit, trailer_limit): (usize, usize),
        keep: Option<(usize, SocketAddr)>,
    ) -> Self {
        let mut r = Reader {
            stream: Some(stream),
            buf,
            framing,
            decoder: Decoder::new(ext_limit, trailer_limit),
            done: false,
            pending: None,
            keep,
        };
        if framing == Framing::Empty {
            r.finish();
        }
        r
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes still to come, when known.
    pub fn size_hint(&self) -> SizeHint {
        match self.framing {
            _ if self.done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }

    /// Never pool this connection (the body was cut or timed out).
    pub fn discard(&mut self) {
        self.keep = None;
        self.stream = None;
    }

    /// The body ended as framed: the connection goes back to the pool if it may be
    /// reused and nothing follows the body on it.
    fn finish(&mut self) {
        self.done = true;
        let stream = self.stream.take();
        if let (Some(s), Some((slot, addr)), true) = (stream, self.keep, self.buf.is_empty()) {
            pool::checkin(slot, addr, s);
        }
        self.buf.release_if_empty();
    }

    /// The next piece of body, copied out; `None` at its end.
    pub fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        match ready!(self.poll_piece(cx)) {
            Some(Ok(())) => {
                let d = Bytes::copy_from_slice(self.piece());
                self.advance();
                Poll::Ready(Some(Ok(d)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }

    /// Waits for the next piece of body, which is then lent from the read buffer by
    /// [`Reader::piece`] until [`Reader::advance`]: the HTTP/1.1 writer relays it
    /// from there, with no copy and no allocation. `None` at the body's end.
    pub fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(), std::io::Error>>> {
        loop {
            if self.pending.is_some() {
                return Poll::Ready(Some(Ok(())));
            }
            if self.done {
                return Poll::Ready(None);
            }
            if !self.buf.is_empty() {
                let data = self.buf.data();
                match self.framing {
                    Framing::Length(left) => {
                        let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        self.pending = Some(Piece {
                            data: 0..n,
                            consumed: n,
                            done: n as u64 == left,
                        });
                    }
                    Framing::Close => {
                        self.pending = Some(Piece {
                            data: 0..data.len(),
                            consumed: data.len(),
                            done: false,
                        });
                    }
                    Framing::Chunked => match self.decoder.decode(data) {
                        Ok(d) => match d.data {
                            Some(r) => {
                                self.pending = Some(Piece {
                                    data: r,
                                    consumed: d.consumed,
                                    done: d.done,
                                })
                            }
                            None => {
                                self.buf.consume(d.consumed);
                                if d.done {
                                    self.finish();
                                }
                            }
                        },
                        Err(_) => {
                            self.discard();
                            return Poll::Ready(Some(Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "malformed chunked body from upstream",
                            ))));
                        }
                    },
                    Framing::Empty => self.finish(),
                }
                continue;
            }
            let Some(stream) = &self.stream else {
                return Poll::Ready(Some(Err(std::io::ErrorKind::NotConnected.into())));
            };
            match ready!(stream.poll_read_into(cx, &mut self.buf, buf::SIZE)) {
                Ok(0) if self.framing == Framing::Close => {
                    self.keep = None;
                    self.finish();
                }
                Ok(0) => {
                    self.discard();
                    return Poll::Ready(Some(Err(std::io::ErrorKind::UnexpectedEof.into())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.discard();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// The bytes of a `Content-Length` body still to come when none is waiting in the
    /// read buffer: what may be spliced (see `h1::splice`). The read buffer goes back
    /// to the pool meanwhile.
    pub fn splice_left(&mut self) -> Option<u64> {
        match self.framing {
            Framing::Length(left)
                if !self.done && self.stream.is_some() && self.is_drained() && left > 0 =>
            {
                self.buf.release_if_empty();
                Some(left)
            }
            _ => None,
        }
    }

    /// The upstream connection, while the body is being read.
    pub fn stream(&self) -> Option<&TcpStream> {
        self.stream.as_ref()
    }

    /// `n` bytes of the body went by splice; at its end the connection is checked in.
    pub fn spliced(&mut self, n: u64) {
        if let Framing::Length(left) = &mut self.framing {
            *left -= n.min(*left);
            if *left == 0 {
                self.finish();
            }
        }
    }

    /// Whether everything read from the upstream so far has been relayed (the next piece
    /// needs a read from the socket).
    pub fn is_drained(&self) -> bool {
        self.pending.is_none() && self.buf.is_empty()
    }

    /// The piece [`Reader::poll_piece`] made ready (empty if none is).
    pub fn piece(&self) -> &[u8] {
        match &self.pending {
            Some(p) => &self.buf.data()[p.data.clone()],
            None => &[],
        }
    }

    /// The ready piece is relayed: it and its framing are consumed.
    pub fn advance(&mut self) {
        let Some(p) = self.pending.take() else { return };
        self.buf.consume(p.consumed);
        if let Framing::Length(left) = &mut self.framing {
            *left -= p.data.len() as u64;
        }
        if p.done {
            self.finish();
        }
    }
}

/// A piece of body ready in the read buffer: its data, and the bytes (data and
/// framing) to consume once it is relayed.
struct Piece {
    data: std::ops::Range<usize>,
    consumed: usize,
    /// The body ends with it.
    done: bool,
}
