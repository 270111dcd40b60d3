//! `epoll` (the course's pure asynchronous model, as Redis and HAProxy run): one thread, one
//! epoll instance over every port, in the process's one fd table — the same loop as
//! `epoll-threads`, once. It holds what one table holds: the hard RLIMIT_NOFILE is its ceiling.

use super::{one_loop, Ctx};
use crate::counters::Counters;
use crate::event_loop::Listening;
use std::sync::Arc;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    one_loop(ctx, Listening::Own)
}
