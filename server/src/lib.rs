//! `c1m-server`: an edge-triggered epoll echo server for the million-connection test.
//!
//! One event loop per worker thread. Each worker unshares its fd table first, so every worker
//! has an RLIMIT_NOFILE budget of its own, then opens its own epoll instance and its own
//! SO_REUSEPORT listener on every port; the kernel spreads connections over all listeners. No fd
//! ever crosses threads. Per connection, userspace keeps one byte: how much of the greeting
//! has arrived. Its command line is [`c1m_proto::launch::ServerSpec`].

pub mod counters;
pub mod worker;
