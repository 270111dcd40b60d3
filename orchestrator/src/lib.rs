//! The orchestrator: `c1m check` (the capacity plan of a run and every limit that would stop
//! it) and `c1m run` (preflight, deploy, the run engine, the run directory).
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`check`] | host facts, the capacity plan, findings with their fixes |
//! | [`run`] | the run itself: deploy, start, follow, hold, tear down, write the run directory |

pub mod check;
pub mod run;
