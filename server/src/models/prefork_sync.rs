//! `prefork-sync` (the course's multi-process synchronous model, as a FastCGI pool runs): the
//! master opens the listeners and starts K worker processes that inherit them; each is a
//! blocking accept loop serving one connection at a time to completion (until the peer
//! closes). So it holds K connections at once; the others wait in the accept queue unanswered.
//! This module is the worker's part; the master is the binary's supervisor
//! ([`super::worker_specs`] hands the listeners down).

use super::sync::one_at_a_time;
use super::Ctx;
use crate::conn::After;
use crate::counters::Counters;
use std::sync::Arc;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    one_at_a_time(ctx, After::Serve)
}
