//! Writing an answer to an HTTP/1.x client of the own engine: the head and a small
//! first piece of body in one write, the body framed by its length when known, else
//! chunked (HTTP/1.1) or by closing (HTTP/1.0). An HTTP/1.1 upstream's body is relayed
//! straight from the upstream's read buffer (no copy into a frame of its own), and
//! a long one to a plain-TCP client by `splice(2)` (`h1::splice`). What ends with the
//! body (the request's record, a stale copy: `proxy::Finish`) sees each piece as it
//! goes, and learns how the body ended from the connection driver.

use crate::h1::buf;
use crate::h1::chunked;
use crate::h1::io::{self, Client};
use crate::h1::splice::Pipe;
use crate::h1::write;
use crate::message::{Cut, Failure, RespBody, UpstreamBody};
use crate::proxy::Finish;
use http::header::{CONTENT_LENGTH, DATE};
use http::StatusCode;
use http_body::Body;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use tokio::net::TcpStream;

/// How a response body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length,
    Chunked,
    Close,
}

/// Writes an answer: head and body, the body framed by its length when known, else
/// chunked (HTTP/1.1) or by closing (HTTP/1.0). The head and a small first piece of
/// body go in one write. `finish`, what ends with the body, sees each piece and is
/// ended when the body has been read to its end (before its last bytes are written,
/// so the record is there by the time the client has them) or cut by the upstream;
/// it is left as it is when the client's side fails.
pub(super) async fn write_response(
    io: &Client,
    rp: &http::response::Parts,
    body: &mut RespBody,
    finish: &mut Option<Finish>,
    head_req: bool,
    v10: bool,
    keep_alive: &mut bool,
) -> std::io::Result<()> {
    let status = rp.status;
    let no_body = head_req
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = buf::take();
    write::write_status(&mut out, status);
    let map = &rp.headers;
    // An HTTP/1.1 upstream's fields go as they came (see `h1::fields::RawFields`); those
    // the pipeline set (a fault's mark, the ladder's) replace any of the same name.
    let raw = body.take_fields();
    let mut length = None;
    // Most answers come with no field set by the pipeline: no lookup then.
    let has = |name| !map.is_empty() && map.contains_key(name);
    let mut dated = has(DATE);
    if let Some(r) = &raw {
        if map.is_empty() {
            out.extend_from_slice(r.lines());
        } else {
            for (n, v) in r.iter() {
                if !std::str::from_utf8(n).is_ok_and(|n| map.contains_key(n)) {
                    write::line(&mut out, n, v);
                }
            }
        }
        if !has(CONTENT_LENGTH) {
            length = r.length;
        }
        dated |= r.date;
    }
    drop(raw);
    let mut b = [0; 20];
    let exact = body.size_hint().exact();
    let mode = if no_body {
        write::write_fields(&mut out, map);
        if let Some(n) = length {
            write::line(&mut out, b"content-length", write::fmt_u64(&mut b, n));
        }
        Out::None
    } else if let Some(n) = exact {
        for (name, value) in map {
            if name != CONTENT_LENGTH {
                write::line(&mut out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        write::line(&mut out, b"content-length", write::fmt_u64(&mut b, n));
        Out::Length
    } else if length.is_some() || has(CONTENT_LENGTH) {
        write::write_fields(&mut out, map);
        if let Some(n) = length {
            write::line(&mut out, b"content-length", write::fmt_u64(&mut b, n));
        }
        Out::Length
    } else if !v10 {
        write::write_fields(&mut out, map);
        write::line(&mut out, b"transfer-encoding", b"chunked");
        Out::Chunked
    } else {
        write::write_fields(&mut out, map);
        *keep_alive = false;
        Out::Close
    };
    if !*keep_alive {
        write::line(&mut out, b"connection", b"close");
    } else if v10 {
        write::line(&mut out, b"connection", b"keep-alive");
    }
    if !dated {
        date(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    let r = write_body(io, &mut out, body, finish, mode).await;
    buf::give(out);
    r
}

/// The body ended as the upstream framed it (`ok`), or cut by the upstream.
fn ended(finish: &mut Option<Finish>, ok: bool) {
    if let Some(f) = finish.take() {
        f.end(ok);
    }
}

async fn write_body(
    io: &Client,
    out: &mut Vec<u8>,
    body: &mut RespBody,
    finish: &mut Option<Finish>,
    mode: Out,
) -> std::io::Result<()> {
    if mode == Out::None || body.is_end_stream() {
        if mode == Out::Chunked {
            out.extend_from_slice(chunked::LAST_CHUNK);
        }
        return io::write_all(io, out).await;
    }
    if let RespBody::Upstream(b) = body {
        if b.lends() {
            return relay(io, out, b, finish, mode).await;
        }
    }
    // Whether any of the answer has gone out (until then the head is in `out`).
    let mut sent = false;
    loop {
        // Poll once; if the body has to wait, send what is gathered first.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
            Poll::Ready(f) => f,
            Poll::Pending => {
                flush(io, out, &mut sent).await?;
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        match frame {
            None => break,
            Some(Err(_)) => return broken(io, out, finish, sent).await,
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                if let Some(f) = finish {
                    f.data(&data);
                }
                put(io, out, &data, mode, &mut sent).await?;
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    ended(finish, true);
    end(io, out, mode).await
}

/// Relays an HTTP/1.1 upstream's body straight from the upstream's read buffer to the
/// client (`UpstreamBody::poll_piece`): no copy into a frame of its own, no allocation.
async fn relay(
    io: &Client,
    out: &mut Vec<u8>,
    b: &mut UpstreamBody,
    finish: &mut Option<Finish>,
    mode: Out,
) -> std::io::Result<()> {
    let mut sent = false;
    // A body copied for the stale cache is relayed through the gateway, never spliced.
    let copies = finish.as_ref().is_some_and(Finish::copies);
    loop {
        // The rest of a long body to a plain client goes by splice (`h1::splice`).
        if let Some(c) = splice_to(io, mode, b, copies) {
            if let Some(mut pipe) = Pipe::take() {
                let r = b.splice(c, &mut pipe, out, &mut sent).await;
                pipe.give();
                return match r {
                    Ok(()) => {
                        ended(finish, true);
                        end(io, out, mode).await
                    }
                    Err(Cut::Upstream) => broken(io, out, finish, sent).await,
                    Err(Cut::Client(e)) => Err(e),
                };
            }
        }
        // Poll once; if the body has to wait, send what is gathered first.
        let ready = match poll_fn(|cx| Poll::Ready(b.poll_piece(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => {
                flush(io, out, &mut sent).await?;
                poll_fn(|cx| b.poll_piece(cx)).await
            }
        };
        match ready {
            None => break,
            Some(Err(_)) => return broken(io, out, finish, sent).await,
            Some(Ok(())) => {
                put(io, out, b.piece(), mode, &mut sent).await?;
                if let Some(f) = finish {
                    f.data(b.piece());
                }
                b.advance();
                // All the upstream sent so far is gathered: it goes now, one write per
                // upstream read, so the client sees what the upstream sent whatever
                // comes next (a pause, or the connection cut).
                // (Unless the rest goes by splice: then with the first spliced bytes.)
                if !b.ended() && b.drained() && splice_to(io, mode, b, copies).is_none() {
                    flush(io, out, &mut sent).await?;
                }
            }
        }
        if b.ended() {
            break;
        }
    }
    ended(finish, true);
    end(io, out, mode).await
}

/// The client's socket, if the rest of `b` may go to it by splice: a plain client, a
/// body relayed as it came (not re-chunked) of which no copy is kept (`copies`), and
/// what `UpstreamBody::splice_left` asks.
fn splice_to<'a>(
    io: &'a Client,
    mode: Out,
    b: &mut UpstreamBody,
    copies: bool,
) -> Option<&'a TcpStream> {
    match io {
        Client::Tcp(c) if mode == Out::Length && !copies && b.splice_left().is_some() => Some(c),
        _ => None,
    }
}

/// Writes what `out` has gathered, if anything (`sent`: some of the answer has gone out).
async fn flush(io: &Client, out: &mut Vec<u8>, sent: &mut bool) -> std::io::Result<()> {
    if !out.is_empty() {
        io::write_all(io, out).await?;
        out.clear();
        *sent = true;
    }
    Ok(())
}

/// Adds a piece of body to the answer: gathered in `out` when small, else written
/// with what `out` holds in one write (`sent`: some of the answer has gone out).
async fn put(
    io: &Client,
    out: &mut Vec<u8>,
    data: &[u8],
    mode: Out,
    sent: &mut bool,
) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if mode == Out::Chunked {
        chunked::encode_size(out, data.len());
    }
    if data.len() > 4096 {
        io::write_all2(io, out, data).await?;
        out.clear();
        *sent = true;
    } else {
        out.extend_from_slice(data);
    }
    if mode == Out::Chunked {
        out.extend_from_slice(b"\r\n");
    }
    if out.len() >= buf::SIZE {
        flush(io, out, sent).await?;
    }
    Ok(())
}

/// The body has ended: the last chunk, and what `out` still holds.
async fn end(io: &Client, out: &mut Vec<u8>, mode: Out) -> std::io::Result<()> {
    if mode == Out::Chunked {
        out.extend_from_slice(chunked::LAST_CHUNK);
    }
    if !out.is_empty() {
        io::write_all(io, out).await?;
        out.clear();
    }
    Ok(())
}

/// The upstream broke the body. Before any of the answer left (`sent` false), the
/// client gets the 502 its record says (`upstream-body-cut`); after, it must see a
/// broken answer, not a short one that looks complete. The connection closes.
async fn broken(
    io: &Client,
    out: &mut Vec<u8>,
    finish: &mut Option<Finish>,
    sent: bool,
) -> std::io::Result<()> {
    ended(finish, false);
    if !sent {
        out.clear();
        let (rp, _) = Failure::UpstreamError.response().into_parts();
        write::write_status(out, rp.status);
        write::write_fields(out, &rp.headers);
        let body = Failure::UpstreamError.body();
        let mut b = [0; 20];
        write::line(
            out,
            b"content-length",
            write::fmt_u64(&mut b, body.len() as u64),
        );
        write::line(out, b"connection", b"close");
        date(out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
    }
    if !out.is_empty() {
        let _ = io::write_all(io, out).await;
    }
    Err(std::io::ErrorKind::BrokenPipe.into())
}

/// Appends a `date` field, formatted once per second per worker.
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() == 29 {
                c.1.copy_from_slice(s.as_bytes());
                c.0 = secs;
            }
        }
        if c.0 == secs {
            write::line(out, b"date", &c.1);
        }
    });
}
