//! `c1m-client`: the load client of the million-connection test.
//!
//! Worker threads, each with an fd table of its own (`unshare(CLONE_FILES)`), open non-blocking
//! connections from the source IPs to the server ports, keep a bounded window in flight, send
//! the opening request of their protocol (`--protocol`: the greeting by default), verify the
//! answer, and then hold the connection (or send a message every interval and time the round
//! trip). Its command line is [`c1m_proto::launch::ClientSpec`].

pub mod counters;
pub mod pacer;
pub mod progress;
pub mod protocol;
pub mod targets;
pub mod worker;

// The histograms live in c1m-proto; the worker and the orchestrator still name them from here.
pub use c1m_proto::hist;
