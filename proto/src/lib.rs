//! What `c1m-server`, `c1m-client` and the `c1m` orchestrator share: the greeting on the wire,
//! the JSON stats lines the binaries print every second, the fd-table layout arithmetic, and the
//! client's protocol options.
//! Kept free of SSH and async code: it is linked into the binaries shipped to test hosts.

pub mod duration;
pub mod errors;
pub mod fanout;
pub mod fmt;
pub mod greeting;
pub mod layout;
pub mod procfs;
pub mod protocol;
pub mod signals;
pub mod stats;
pub mod sys;
