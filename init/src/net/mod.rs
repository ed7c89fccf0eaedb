//! Network stage (placeholder while being written).
pub mod config;
pub mod dhcp;
