//! syncbox core: everything but the command line. The applets in
//! `applets/` parse arguments, call into this library and print.

pub mod cluster;
pub mod cluster_key;
pub mod control;
pub mod dispatch;
pub mod engine_api;
pub mod engine_config;
pub mod engine_info;
pub mod error;
pub mod faults;
pub mod file_rule;
pub mod fsutil;
pub mod host_mount;
pub mod keeper;
pub mod keys;
pub mod layout;
pub mod name;
pub mod ops;
pub mod ownership;
pub mod procfs;
pub mod read_only;
pub mod registry;
pub mod server;
pub mod settings;
pub mod supervisor;
pub mod sync_state;
pub mod sys;
pub mod trash_limit;
pub mod user_db;
pub mod volume_plugin;
pub mod waiting;

pub use error::{Error, Result};
