//! The words every stage of the data path speaks: a request's [`Head`], the bodies
//! that go upstream and come back ([`ReqBody`], [`RespBody`]), and what went wrong
//! when the gateway answers instead of an upstream ([`Failure`]).
//!
//! They sit right above the engine (`h1`) and the endpoints (`upstream`), not below:
//! they are made of the engine's parts (a head holds the engine's raw field lines, an
//! answer's body is the engine's upstream reader or hyper's), while the engine itself
//! speaks only in its own terms and knows nothing of them. Policies, the snapshot, the
//! pipeline and the connection drivers all use them.

pub mod body;
pub mod failure;
pub mod head;

pub use crate::h1::BoxError;
pub use body::{Cut, ReqBody, RespBody, Tunnel, UpstreamBody};
pub use failure::{Failure, REASON};
pub use head::Head;
