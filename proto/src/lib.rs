//! What `c1m-server`, `c1m-client` and the `c1m` orchestrator share: the greeting on the wire,
//! the JSON stats lines the binaries print every second, latency histograms, source addresses,
//! the fd-table layout arithmetic, and the binaries' launch specs and exit codes.
//! Kept free of SSH and async code: it is linked into the binaries shipped to test hosts.

pub mod addrs;
pub mod duration;
pub mod errors;
pub mod exit;
pub mod fanout;
pub mod greeting;
pub mod hist;
pub mod launch;
pub mod layout;
pub mod procfs;
pub mod signals;
pub mod stats;
pub mod sys;
