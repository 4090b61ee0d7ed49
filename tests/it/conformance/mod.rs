//! Differential HTTP/1.1 conformance suite (in progress).

mod framing;
mod vectors;
