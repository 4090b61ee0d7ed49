//! ninefold's own HTTP/1.1 engine: the codec and the exchanges of the data path's
//! HTTP/1.x client connections (plain TCP, and TLS that negotiated HTTP/1.1 or nothing
//! by ALPN) and of every HTTP/1.1 upstream connection.
//!
//! Why not hyper here: hyper keeps an 8 KiB read buffer, an 8 KiB write buffer and a
//! header map per connection for the connection's whole life, and hands each upstream
//! request to a connection task over channels. This engine parses heads with
//! `httparse` ([`parse`]) into raw field lines ([`fields`]) and writes them back out
//! (`write`), decodes bodies with its own strict framing ([`chunked`]), takes buffers
//! from a worker-local pool only while bytes are in flight ([`buf`]), reuses each
//! request's state allocations within the worker ([`pooled`]), reads a client's body as
//! the pipeline asks for it ([`inbound`]), and writes a request upstream and reads its
//! answer in the request's own task ([`client`]) over the worker's idle keep-alive
//! connections ([`pool`]). A long body from an upstream to a plain-TCP client goes by
//! `splice(2)`, never entering the gateway ([`splice`]).
//!
//! The engine speaks in its own terms (raw lines, framing, sockets, a [`parse::Refusal`])
//! and imports nothing of the gateway but its limits (`config::Limits`): the request
//! head and the bodies the pipeline passes around are built from its parts one floor
//! up (`message`), and the connection loop that runs the pipeline is the server's
//! (`server::h1`). h2 and h2c client connections stay on hyper, which hands its
//! requests to the same pipeline; the choice is made per connection, after ALPN or by
//! the h2c preface.

pub mod buf;
pub mod chunked;
pub mod client;
pub mod fields;
pub mod inbound;
pub mod io;
pub mod parse;
pub mod pool;
pub mod pooled;
pub mod splice;
pub mod write;

/// The error type of every body the data path streams (the engine's, hyper's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
