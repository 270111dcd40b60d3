//! What `c1m-server`, `c1m-client` and the `c1m` orchestrator share: the greeting on the wire,
//! the JSON stats lines the binaries print every second and how they merge, latency histograms,
//! the fd-table layout arithmetic, the binaries' launch specs (the client's protocol options
//! among them) and exit codes, and the starting of their worker threads and supervision of their
//! worker processes. Kept free of SSH and async code: it is linked into the binaries shipped to
//! test hosts.

pub mod addrs;
pub mod ceiling;
pub mod duration;
pub mod errors;
pub mod exit;
pub mod fanout;
pub mod fmt;
pub mod greeting;
pub mod hist;
pub mod launch;
pub mod layout;
pub mod model;
pub mod procfs;
pub mod protocol;
pub mod signals;
pub mod stats;
pub mod supervise;
pub mod sys;
pub mod threads;
