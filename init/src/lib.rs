//! The diskless client: one function per boot stage, called in order from `boot()`.

pub mod net;
pub mod config;
pub mod local;
