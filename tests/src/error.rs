//! The rig's error type: every variant names what was being done, with which path or
//! command, and what the person running the tests can do about it.

use std::fmt;
use std::path::PathBuf;

/// An error of the rig. `Debug` prints the same text as `Display`, so a test returning
/// `Result<(), Error>` shows a readable message rather than a struct dump.
pub enum Error {
    /// A rig prerequisite is absent (tool, package, kernel); `hint` says how to get it.
    Missing { what: String, path: PathBuf, hint: String },
    /// A file system operation on `path` failed.
    Io { action: String, path: PathBuf, source: std::io::Error },
    /// An external command could not start or exited unsuccessfully.
    Command { command: String, detail: String, hint: String },
    /// Something did not happen within the time allowed.
    Timeout { what: String, seconds: f64, log: Option<PathBuf> },
    /// A value given to the rig is unusable (e.g. an interface name too long).
    Invalid { what: String, reason: String },
}

impl Error {
    pub(crate) fn io(action: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action: action.into(), path: path.into(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing { what, path, hint } => write!(f, "{what} not found at {}: {hint}", path.display()),
            Error::Io { action, path, source } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Command { command, detail, hint } => {
                write!(f, "command `{command}` failed: {detail}")?;
                if !hint.is_empty() {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            Error::Timeout { what, seconds, log } => {
                write!(f, "{what} did not happen within {seconds:.0} s")?;
                if let Some(log) = log {
                    write!(f, "; see {}", log.display())?;
                }
                Ok(())
            }
            Error::Invalid { what, reason } => write!(f, "invalid {what}: {reason}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
