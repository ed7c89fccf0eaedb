//! The boot log: every line goes to the console as `diskless: <message>`, a copy to
//! `/dev/kmsg` as `<7>diskless: <message>`, and one to the lab's syslog server once the
//! lease names one ([`crate::syslog`]; kept until then).
//!
//! The kmsg copy uses the debug priority so that the kernel keeps it in its ring buffer
//! (visible in `dmesg` after the hand-off) without echoing it to the console a second
//! time. The logger is shared between stages, worker threads and the panic hook, so it
//! locks internally and never panics itself: a failing console or kmsg write is dropped,
//! because there is nowhere left to report it.
//!
//! Every line is written with its control characters escaped ([`crate::text`]), so
//! whatever a message quotes from a packet cannot act on the terminal. The logger
//! cannot tell a line feed inside a quoted value from the line breaks of the message
//! itself, so the places that put network text into a message wrap it in
//! [`crate::text::Escaped`] as well: that keeps a value's line feed from starting a
//! line of its own. Same rule, applied twice; escaping an escaped text changes nothing.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::syslog::{Remote, Severity};
use crate::text::Escaped;

/// Prefix of every console line; the QEMU tests match on it.
pub const PREFIX: &str = "diskless: ";

struct Sinks {
    console: Box<dyn Write + Send>,
    kmsg: Option<Box<dyn Write + Send>>,
}

/// Writes boot log lines to the console and to kmsg.
pub struct Log {
    sinks: Mutex<Sinks>,
    debug: AtomicBool,
    /// The syslog server's copy: locks on its own, so a send never waits for the console.
    pub remote: Remote,
}

impl Log {
    /// A logger writing to `console` only; kmsg is attached once `/dev` is mounted.
    pub fn new(console: Box<dyn Write + Send>) -> Self {
        Log {
            sinks: Mutex::new(Sinks { console, kmsg: None }),
            debug: AtomicBool::new(false),
            remote: Remote::default(),
        }
    }

    /// The logger of the real boot: the console is PID 1's stdout.
    pub fn stdout() -> Self {
        Log::new(Box::new(std::io::stdout()))
    }

    /// Send a copy of every following line to `kmsg` (normally an open `/dev/kmsg`).
    pub fn attach_kmsg(&self, kmsg: Box<dyn Write + Send>) {
        self.lock().kmsg = Some(kmsg);
    }

    /// `diskless.debug` turns on the extra detail lines.
    pub fn set_debug(&self, on: bool) {
        self.debug.store(on, Ordering::Relaxed);
    }

    pub fn debug_enabled(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// Log one message; a message with newlines becomes several lines, each prefixed,
    /// because kmsg takes one record per write and the tests match whole lines.
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.write(args, false);
    }

    /// Log a detail line (e.g. every device with its driver): always kept in kmsg, so
    /// `dmesg` on the booted machine has the whole story, but shown on the console
    /// only with `diskless.debug`, because every line on a 115200-baud serial console
    /// costs boot time.
    pub fn debug(&self, args: fmt::Arguments<'_>) {
        self.write(args, true);
    }

    fn write(&self, args: fmt::Arguments<'_>, detail: bool) {
        let text = args.to_string();
        let to_console = !detail || self.debug_enabled();
        for line in text.split_terminator('\n') {
            self.remote.line(Severity::of_line(line, detail), line);
        }
        let mut sinks = self.lock();
        // Not `lines()`: it would drop a carriage return before a line feed silently,
        // where the escaping shows it.
        for line in text.split_terminator('\n') {
            let line = Escaped(line);
            // One write_all per line and sink: a line is never interleaved with a
            // line of another thread, and kmsg sees exactly one record.
            if to_console {
                let _ = sinks.console.write_all(format!("{PREFIX}{line}\n").as_bytes());
                let _ = sinks.console.flush();
            }
            if let Some(kmsg) = sinks.kmsg.as_mut() {
                let _ = kmsg.write_all(format!("<7>{PREFIX}{line}\n").as_bytes());
            }
        }
    }

    /// Log a failure in the shape of the failure policy:
    /// `ERROR: <what failed, with what input>: <what to do>`.
    pub fn error(&self, what: &dyn fmt::Display, advice: &str) {
        self.info(format_args!("ERROR: {what}: {advice}"));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sinks> {
        // A panic while the lock was held (in a sink's write) must not silence the
        // log for the rest of the boot: take the poisoned guard as it is.
        self.sinks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `info!(log, "...", args)`: one console + kmsg line.
#[macro_export]
macro_rules! info {
    ($log:expr, $($arg:tt)*) => { $log.info(format_args!($($arg)*)) };
}

/// `debug!(log, "...", args)`: a detail line, in kmsg always and on the console with
/// `diskless.debug`.
#[macro_export]
macro_rules! debug {
    ($log:expr, $($arg:tt)*) => { $log.debug(format_args!($($arg)*)) };
}

/// Seconds of CLOCK_MONOTONIC: the time base of the kernel's printk timestamps, so a
/// benchmark can subtract the kernel's `Run /init as init process` time from ours.
pub fn monotonic_secs() -> f64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Measures one stage (or any step) and logs `stage <name> done in <ms> ms (t=<secs> s)`.
pub struct StageTimer {
    name: &'static str,
    started: Instant,
}

impl StageTimer {
    pub fn start(name: &'static str) -> Self {
        StageTimer { name, started: Instant::now() }
    }

    pub fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    pub fn done(self, log: &Log) {
        info!(log, "stage {} done in {} ms (t={:.3} s)", self.name, self.elapsed_ms(), monotonic_secs());
    }
}

/// A `Write` that appends to a shared buffer: lets tests (and the dry-run mode) read
/// back exactly what the logger wrote.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A logger writing into a [`Capture`], for tests: returns both.
pub fn captured() -> (Log, Capture) {
    let capture = Capture::default();
    (Log::new(Box::new(capture.clone())), capture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_and_kmsg_lines_have_their_prefixes() {
        let (log, console) = captured();
        let kmsg = Capture::default();
        log.attach_kmsg(Box::new(kmsg.clone()));
        info!(log, "loaded {} in {} ms", "virtio_net", 12);
        assert_eq!(console.text(), "diskless: loaded virtio_net in 12 ms\n");
        assert_eq!(kmsg.text(), "<7>diskless: loaded virtio_net in 12 ms\n");
    }

    #[test]
    fn multi_line_messages_become_prefixed_lines() {
        let (log, console) = captured();
        info!(log, "first\nsecond");
        assert_eq!(console.text(), "diskless: first\ndiskless: second\n");
    }

    #[test]
    fn control_characters_are_escaped_in_console_and_kmsg_lines_but_line_breaks_kept() {
        let (log, console) = captured();
        let kmsg = Capture::default();
        log.attach_kmsg(Box::new(kmsg.clone()));
        info!(log, "name \"a\0b\x1b[2J\u{8}\x7f\u{9b}\" rejected\r\nnext line\n");
        assert_eq!(
            console.text(),
            "diskless: name \"a\\0b\\u{1b}[2J\\u{8}\\u{7f}\\u{9b}\" rejected\\r\ndiskless: next line\n"
        );
        assert_eq!(
            kmsg.text().lines().map(|l| l.replacen("<7>", "", 1)).collect::<Vec<_>>(),
            console.text().lines().collect::<Vec<_>>()
        );
    }

    #[test]
    fn debug_lines_reach_the_console_only_when_enabled_but_kmsg_always() {
        let (log, console) = captured();
        let kmsg = Capture::default();
        log.attach_kmsg(Box::new(kmsg.clone()));
        debug!(log, "device virtio0 driver virtio_net");
        log.set_debug(true);
        debug!(log, "shown");
        assert_eq!(console.text(), "diskless: shown\n");
        assert_eq!(kmsg.text(), "<7>diskless: device virtio0 driver virtio_net\n<7>diskless: shown\n");
    }

    #[test]
    fn error_lines_follow_the_failure_policy_shape() {
        let (log, console) = captured();
        log.error(&"reading /lib/modules/6.1/modules.db", "rebuild the initramfs");
        assert_eq!(console.text(), "diskless: ERROR: reading /lib/modules/6.1/modules.db: rebuild the initramfs\n");
    }

    #[test]
    fn stage_timer_line_names_stage_and_monotonic_time() {
        let (log, console) = captured();
        let before = monotonic_secs();
        StageTimer::start("early").done(&log);
        let text = console.text();
        let rest = text.strip_prefix("diskless: stage early done in ").expect(&text);
        let (ms, t) = rest.split_once(" ms (t=").expect(&text);
        assert!(ms.parse::<u64>().is_ok(), "{text}");
        let secs: f64 = t.trim_end().strip_suffix(" s)").expect(&text).parse().expect(&text);
        assert!(secs + 0.001 >= before, "{secs} < {before}");
        assert_eq!(t.split_once('.').map(|(_, frac)| frac.len()), Some(3 + " s)\n".len()));
    }
}
