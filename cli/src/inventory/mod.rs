//! Ansible YAML inventories (`all`/`children`/`hosts`/`vars`), resolved into hosts with their
//! merged variables.
