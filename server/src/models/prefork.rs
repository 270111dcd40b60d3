//! `prefork` (the course's multi-process asynchronous model, as nginx runs): the master opens
//! one listener per port and starts K worker processes that inherit them; each worker has its
//! own fd table and epoll instance and waits on the shared listeners with EPOLLEXCLUSIVE, so a
//! new connection wakes one worker, not all. A worker whose table is full stops listening
//! until a connection closes (nginx's `worker_connections`), leaving new ones to the others.
//! This module is the worker's part; the master is the binary's supervisor
//! ([`super::worker_specs`] hands the listeners down).

use super::{one_loop, Ctx};
use crate::counters::Counters;
use crate::event_loop::Listening;
use std::sync::Arc;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    one_loop(ctx, Listening::Shared)
}
