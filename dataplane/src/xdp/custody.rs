//! The link keeper's protocol and the keeper itself now live in the
//! `tapline-segment` crate (`tapline_segment::custody`), so the sidecar
//! needs nothing of the dataplane to hold the inline links; these
//! re-exports keep the old paths compiling.

pub use tapline_segment::custody::{
    Bundle, Header, Keeper, KeeperClient, KeeperStatus, PortRecord, SOCKET_NAME,
};
