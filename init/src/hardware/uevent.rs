//! Kernel uevents: the NETLINK_KOBJECT_UEVENT socket and the message format
//! (`action@devpath\0KEY=value\0KEY=value\0...`).
//!
//! Messages come from the kernel, but the parser still treats them as untrusted bytes:
//! anything malformed is rejected, never a panic.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::os::Os;

/// One kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    /// Relative to /sys, e.g. `/devices/pci0000:00/0000:00:03.0`.
    pub devpath: String,
    pub vars: Vec<(String, String)>,
}

impl Uevent {
    /// Parse one datagram. `None` for anything that is not a well-formed kernel uevent
    /// (udev's re-broadcasts start with `libudev\0` and have no `@` header).
    pub fn parse(bytes: &[u8]) -> Option<Uevent> {
        let mut fields = bytes.split(|b| *b == 0);
        let header = std::str::from_utf8(fields.next()?).ok()?;
        let (action, devpath) = header.split_once('@')?;
        if action.is_empty() || !devpath.starts_with('/') {
            return None;
        }
        let vars = fields
            .filter(|f| !f.is_empty())
            .filter_map(|f| std::str::from_utf8(f).ok())
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Uevent { action: action.to_string(), devpath: devpath.to_string(), vars })
    }

    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn modalias(&self) -> Option<&str> {
        self.var("MODALIAS").filter(|m| !m.is_empty())
    }
}

/// How often the reader looks at its stop flag.
pub const POLL: Duration = Duration::from_millis(50);

/// The uevent socket's reader thread.
pub struct UeventReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UeventReader {
    /// Read the socket that `os` opened and bound (so no event after the open is missed)
    /// on a thread, sending each parsed event through `wrap` into `tx`.
    pub fn start<E: Send + 'static>(os: &dyn Os, tx: Sender<E>, wrap: fn(Uevent) -> E) -> io::Result<UeventReader> {
        let mut receive = os.open_uevents(POLL)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("uevents".into()).spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while !flag.load(Ordering::Relaxed) {
                match receive(&mut buf[..]) {
                    Ok(n) => {
                        if let Some(event) = Uevent::parse(&buf[..n.min(buf.len())])
                            && tx.send(wrap(event)).is_err()
                        {
                            return;
                        }
                    }
                    // Timeouts let the loop see the stop flag; ENOBUFS means events
                    // were dropped, and the next ones are still worth reading.
                    Err(_) => continue,
                }
            }
        })?;
        Ok(UeventReader { stop, thread: Some(thread) })
    }

    /// Stop reading and close the socket.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kernel_add_event_is_parsed() {
        let msg = b"add@/devices/pci0000:00/0000:00:03.0/virtio0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:03.0/virtio0\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1234\0";
        let event = Uevent::parse(msg).unwrap();
        assert_eq!(event.action, "add");
        assert_eq!(event.devpath, "/devices/pci0000:00/0000:00:03.0/virtio0");
        assert_eq!(event.modalias(), Some("virtio:d00000001v00001AF4"));
        assert_eq!(event.var("SUBSYSTEM"), Some("virtio"));
        assert_eq!(event.var("SEQNUM"), Some("1234"));
        assert_eq!(event.var("DRIVER"), None);
    }

    #[test]
    fn malformed_messages_are_rejected() {
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b"@/devices/x\0"), None);
        assert_eq!(Uevent::parse(b"add@devices/x\0"), None);
        assert_eq!(Uevent::parse(b"add@/devices/\xff\0"), None);
    }

    #[test]
    fn odd_fields_are_dropped_not_fatal() {
        let event = Uevent::parse(b"bind@/devices/x\0garbage\0\xff\xfe=1\0DRIVER=e1000\0MODALIAS=\0").unwrap();
        assert_eq!(event.vars, [("DRIVER".to_string(), "e1000".to_string()), ("MODALIAS".to_string(), String::new())]);
        assert_eq!(event.modalias(), None, "an empty MODALIAS matches nothing");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Some(event) = Uevent::parse(&bytes) {
                prop_assert!(event.devpath.starts_with('/'));
                prop_assert!(!event.action.is_empty());
            }
        }

        #[test]
        fn structured_noise_never_panics(parts in proptest::collection::vec("[a-z@=/\\x00A-Z]{0,12}", 0..10)) {
            let bytes = parts.join("\0");
            let _ = Uevent::parse(bytes.as_bytes());
        }
    }
}
