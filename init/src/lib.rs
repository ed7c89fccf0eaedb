//! The diskless client: one function per boot stage, called in order from `boot()`.

pub mod boot;
pub mod cmdline;
pub mod early;
pub mod hardware;
pub mod log;
pub mod net;
pub mod os;
pub mod config;
pub mod local;
pub mod scratch;
pub mod root;
pub mod handoff;
pub mod admin;
