//! Ansible's language, executed natively: what `c1m provision` runs, and how every c1m command
//! reads an inventory. It knows nothing of runs.
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`yaml`] | YAML with a position on every node, for `file:line:col` errors |
//! | [`template`] | `{{ }}` Jinja2 templating of values (minijinja) |
//! | [`config`] | `ansible.cfg` and the `ANSIBLE_*` environment |
//! | [`inventory`] | Ansible inventories: groups, hosts, inherited vars, `--limit` |
//! | [`connect`] | opening the transport an inventory host asks for (local or SSH) |
//! | [`playbook`] | plays, tasks and modules: parsing with positions, execution per host |
//! | [`provision`] | running playbooks over hosts in parallel and printing the recap |
//!
//! Layers, lowest first (a module uses only those before it): `yaml`, `template`, `config`, `inventory`,
//! `connect`, `playbook`, `provision`.

pub mod config;
pub mod connect;
pub mod inventory;
pub mod playbook;
pub mod provision;
pub mod template;
pub mod yaml;
