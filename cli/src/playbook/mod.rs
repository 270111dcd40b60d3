//! The subset of Ansible's playbook language that c1m executes natively.
