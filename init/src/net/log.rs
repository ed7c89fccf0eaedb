//! Where the network stages write their lines: any [`NetLog`], called from several
//! threads; in the boot, the boot log.

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Debug,
}

/// Where the network stages write their lines (console and kmsg in PID 1).
pub trait NetLog: Sync {
    fn log(&self, level: Level, line: &str);
}

impl<F: Fn(Level, &str) + Sync> NetLog for F {
    fn log(&self, level: Level, line: &str) {
        self(level, line)
    }
}

/// In the boot the network's lines go to the boot log; warnings say so.
impl NetLog for crate::log::Log {
    fn log(&self, level: Level, line: &str) {
        match level {
            Level::Info => crate::info!(self, "{line}"),
            Level::Warn => crate::info!(self, "warning: {line}"),
            Level::Debug => crate::debug!(self, "{line}"),
        }
    }
}
