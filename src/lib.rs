//! syncbox core: everything but the command line. The applets in
//! `applets/` parse arguments, call into this library and print.

pub mod control;
pub mod dispatch;
pub mod engine_config;
pub mod error;
pub mod fsutil;
pub mod keys;
pub mod layout;
pub mod name;
pub mod registry;
pub mod supervisor;
pub mod sys;

pub use error::{Error, Result};
