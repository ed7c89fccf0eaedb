//! The diskless client: one function per boot stage, called in order from `boot()`.

pub mod admin;
pub mod boot;
pub mod cmdline;
pub mod config;
pub mod context;
pub mod early;
pub mod failure;
pub mod files;
pub mod fscache;
pub mod handoff;
pub mod hardware;
pub mod image;
pub mod inventory;
pub mod lab;
pub mod local;
pub mod log;
pub mod net;
pub mod os;
pub mod record;
pub mod relayer;
pub mod root;
pub mod scratch;
pub mod stage;
pub mod syslog;
pub mod text;
