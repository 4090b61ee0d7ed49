//! ninefold's own HTTP/1.1 engine: the data path's HTTP/1.x client connections (plain
//! TCP, and TLS that negotiated HTTP/1.1 or nothing by ALPN) and every HTTP/1.1
//! upstream connection.
//!
//! Why not hyper here: hyper keeps an 8 KiB read buffer, an 8 KiB write buffer and a
//! header map per connection for the connection's whole life, and hands each upstream
//! request to a connection task over channels. This engine parses heads with
//! `httparse` ([`head`]), decodes bodies with its own strict framing ([`chunked`]),
//! takes buffers from a worker-local pool only while bytes are in flight ([`buf`]),
//! reuses each request's state allocations within the worker ([`pooled`]),
//! and runs the whole request, client side and upstream side, in the connection's own
//! task ([`server`], [`client`]). A long body from an upstream to a plain-TCP client
//! goes by `splice(2)`, never entering the gateway ([`splice`]). h2 and h2c client connections stay on hyper, which
//! hands its requests to the same pipeline; the choice is made per connection, after
//! ALPN or by the h2c preface.

pub mod buf;
pub mod chunked;
pub mod client;
pub mod head;
pub mod io;
pub mod pooled;
pub mod server;
pub mod splice;
