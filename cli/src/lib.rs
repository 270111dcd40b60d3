//! The `c1m` library: everything behind the `c1m` command.
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`inventory`] | Ansible YAML inventories: groups, hosts, inherited vars |
//! | [`playbook`] | Ansible playbook subset: parsing with positions, templating, modules |
//! | [`provision`] | `c1m provision`: runs playbooks over transports, prints the recap |
//! | [`transport`] | running commands and moving files on a host: local or SSH |
//! | [`run`] | `c1m run`: preflight, start server and clients, live view, run directory |
//! | [`fmt`] | numbers for people: `1,234,567`, `6.4 MiB` |
//! | [`check`] | `c1m check`: capacity plan and limits |
//! | [`rundir`] | the run directory layout: `run.json`, `events.jsonl` |
//! | [`report`] | `c1m report`: tables, charts and exports of run directories |
//! | [`lab`] | `c1m lab`: the four-VM QEMU lab |

pub mod check;
pub mod fmt;
pub mod inventory;
pub mod lab;
pub mod playbook;
pub mod provision;
pub mod report;
pub mod run;
pub mod rundir;
pub mod transport;
