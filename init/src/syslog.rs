//! The boot's log on the lab's syslog server: every log line, and at the end the
//! machine's inventory ([`crate::inventory`]), as RFC 5424 messages over UDP (RFC 5426)
//! to the log servers of DHCP option 7, or to `diskless.syslog=HOST[:PORT]`.
//!
//! Sending never delays the boot: a message is one non-blocking `sendto` through
//! [`Os::send_udp`] from the thread that logs it, with no DNS lookup (the server is an
//! address) and no answer to wait for; a message the kernel cannot take at once is
//! counted and dropped. The lines logged before the network is up are kept (up to
//! [`BUFFER_LINES`]) and sent once the lease names the server, or dropped when no
//! server is known.
//!
//! What a message carries came partly from the network and from devices (host names,
//! DHCP options, sysfs strings): its text is escaped by the boot's one rule
//! ([`crate::text::Escaped`]), the header fields are reduced to the printable ASCII
//! RFC 5424 allows, and a message longer than [`MAX_MESSAGE`] is cut with a marker.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::os::Os;
use crate::text::Escaped;

/// The syslog port (RFC 5426).
pub const PORT: u16 = 514;
/// The longest message sent: RFC 5426 asks every receiver to take 2048 bytes over IPv4.
pub const MAX_MESSAGE: usize = 2048;
/// Appended to a message that was cut at [`MAX_MESSAGE`].
pub const TRUNCATED: &str = " [truncated]";
/// Log lines kept for the server while no lease has named one yet. A boot logs well
/// under a hundred lines before its lease; the bound keeps a boot that never gets one
/// from growing without end.
pub const BUFFER_LINES: usize = 1024;
/// APP-NAME of every message: rsyslog writes it as the tag (`diskless:`).
pub const APP_NAME: &str = "diskless";
/// MSGID of the boot's log lines.
pub const MSGID_LOG: &str = "log";
/// MSGID of the inventory messages sent at the end of the boot.
pub const MSGID_INVENTORY: &str = "inventory";
/// Facility `daemon` (3): the boot is the system's, not a user's.
const FACILITY: u8 = 3;

/// Severity of a message (RFC 5424 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Info = 6,
    Debug = 7,
}

impl Severity {
    /// The severity of a boot log line: the failure policy's `ERROR:` lines are errors,
    /// `warning:` lines warnings, detail lines debug, the rest information.
    pub fn of_line(line: &str, detail: bool) -> Severity {
        if line.starts_with("ERROR") {
            Severity::Error
        } else if line.starts_with("warning") || line.starts_with("WARNING") {
            Severity::Warning
        } else if detail {
            Severity::Debug
        } else {
            Severity::Info
        }
    }
}

/// Where the boot sends its log (the `syslog` configuration key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The log servers of DHCP option 7, when the lease has some.
    #[default]
    Dhcp,
    /// Nowhere.
    Off,
    /// This server, whatever the lease says.
    Server(SocketAddrV4),
}

impl Target {
    /// The servers to send to, given the log servers of the lease.
    pub fn servers(&self, lease_servers: &[Ipv4Addr]) -> Vec<SocketAddrV4> {
        match self {
            Target::Dhcp => lease_servers.iter().map(|ip| SocketAddrV4::new(*ip, PORT)).collect(),
            Target::Off => Vec::new(),
            Target::Server(addr) => vec![*addr],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dhcp => f.write_str("dhcp"),
            Target::Off => f.write_str("off"),
            Target::Server(addr) => write!(f, "{addr}"),
        }
    }
}

/// boot.json and `diskless check` keep the value as it is written.
impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a `syslog` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{value:?} is not dhcp, off or an IPv4 address with an optional :PORT (a host name would need DNS \
         before the network is up: give the server's address)"
    )]
    NotAServer { value: String },
    #[error("{value:?}: the port must be a number from 1 to 65535")]
    BadPort { value: String },
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(value: &str) -> Result<Target, TargetError> {
        let text = value.trim();
        match text {
            "dhcp" => return Ok(Target::Dhcp),
            "off" => return Ok(Target::Off),
            _ => {}
        }
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p != 0);
                (host, port.ok_or_else(|| TargetError::BadPort { value: value.into() })?)
            }
            None => (text, PORT),
        };
        let ip = host.parse::<Ipv4Addr>().map_err(|_| TargetError::NotAServer { value: value.into() })?;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(TargetError::NotAServer { value: value.into() });
        }
        Ok(Target::Server(SocketAddrV4::new(ip, port)))
    }
}

/// A header field of RFC 5424 (HOSTNAME): printable US-ASCII without spaces, at most
/// 255 characters, `-` when empty. Anything else becomes `_`.
fn header_field(text: &str) -> String {
    let field: String = text.chars().take(255).map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    if field.is_empty() { "-".into() } else { field }
}

/// One RFC 5424 message: `<PRI>1 - HOSTNAME diskless - MSGID - TEXT`. The timestamp is
/// left to the server (NILVALUE): a client's clock is not set this early in the boot.
pub fn message(severity: Severity, hostname: &str, msgid: &str, text: &str) -> Vec<u8> {
    let pri = FACILITY * 8 + severity as u8;
    let mut out = format!("<{pri}>1 - {} {APP_NAME} - {} - ", header_field(hostname), header_field(msgid));
    let body = Escaped(text).to_string();
    if out.len() + body.len() <= MAX_MESSAGE {
        out.push_str(&body);
    } else {
        let mut room = MAX_MESSAGE.saturating_sub(out.len() + TRUNCATED.len());
        while !body.is_char_boundary(room) {
            room -= 1;
        }
        out.push_str(&body[..room]);
        out.push_str(TRUNCATED);
    }
    out.into_bytes()
}

/// Where the messages go once a server is known.
pub struct Sender {
    pub os: Arc<dyn Os>,
    pub servers: Vec<SocketAddrV4>,
    /// The HOSTNAME of the messages: the lease's address until the host name is chosen.
    pub hostname: String,
}

impl Sender {
    /// Hand one message to the kernel for every server; returns the sends that failed.
    fn send(&self, severity: Severity, msgid: &str, text: &str) -> usize {
        let bytes = message(severity, &self.hostname, msgid, text);
        self.servers.iter().filter(|to| self.os.send_udp(**to, &bytes).is_err()).count()
    }
}

enum State {
    /// No server known yet: the lines wait, up to [`BUFFER_LINES`].
    Buffering {
        lines: Vec<(Severity, String)>,
        dropped: usize,
    },
    Sending {
        sender: Sender,
        failed: usize,
    },
    Off,
}

/// The remote sink of the boot log ([`crate::log::Log`] feeds it every line).
pub struct Remote {
    state: Mutex<State>,
}

impl Default for Remote {
    fn default() -> Self {
        Remote { state: Mutex::new(State::Buffering { lines: Vec::new(), dropped: 0 }) }
    }
}

impl Remote {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One log line: sent when a server is known, kept until then.
    pub fn line(&self, severity: Severity, text: &str) {
        match &mut *self.lock() {
            State::Buffering { lines, dropped } => {
                if lines.len() < BUFFER_LINES {
                    lines.push((severity, text.to_string()));
                } else {
                    *dropped += 1;
                }
            }
            State::Sending { sender, failed } => *failed += sender.send(severity, MSGID_LOG, text),
            State::Off => {}
        }
    }

    /// A server is known: send the kept lines, then every line as it is logged.
    pub fn start(&self, sender: Sender) {
        let mut state = self.lock();
        let mut failed = 0;
        if let State::Buffering { lines, dropped } = &*state {
            if *dropped > 0 {
                let note = format!("{dropped} log lines before the lease were not kept for the syslog server");
                failed += sender.send(Severity::Warning, MSGID_LOG, &note);
            }
            for (severity, text) in lines {
                failed += sender.send(*severity, MSGID_LOG, text);
            }
        }
        *state = State::Sending { sender, failed };
    }

    /// No server: drop the kept lines and keep no more.
    pub fn stop(&self) {
        *self.lock() = State::Off;
    }

    /// The chosen host name becomes the HOSTNAME of the following messages.
    pub fn set_hostname(&self, hostname: &str) {
        if let State::Sending { sender, .. } = &mut *self.lock() {
            sender.hostname = hostname.to_string();
        }
    }

    /// Send a message that is not a log line (the inventory); nothing when no server is
    /// known. Returns whether a server was known.
    pub fn send(&self, severity: Severity, msgid: &str, text: &str) -> bool {
        match &mut *self.lock() {
            State::Sending { sender, failed } => {
                *failed += sender.send(severity, msgid, text);
                true
            }
            _ => false,
        }
    }

    /// The servers messages go to (empty before [`Remote::start`] and after [`Remote::stop`]).
    pub fn servers(&self) -> Vec<SocketAddrV4> {
        match &*self.lock() {
            State::Sending { sender, .. } => sender.servers.clone(),
            _ => Vec::new(),
        }
    }

    /// Sends the kernel did not take (full socket buffer, no route).
    pub fn failed(&self) -> usize {
        match &*self.lock() {
            State::Sending { failed, .. } => *failed,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::fake::{Call, FakeOs};

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn message_has_the_rfc5424_header_with_nil_timestamp_and_structured_data() {
        let m = message(Severity::Info, "pc1.lab", MSGID_LOG, "stage early done in 3 ms");
        assert_eq!(text(&m), "<30>1 - pc1.lab diskless - log - stage early done in 3 ms");
        let m = message(Severity::Error, "", MSGID_INVENTORY, "x");
        assert_eq!(text(&m), "<27>1 - - diskless - inventory - x");
    }

    #[test]
    fn severity_follows_the_line() {
        assert_eq!(Severity::of_line("ERROR: mounting: retry", false), Severity::Error);
        assert_eq!(Severity::of_line("warning: no carrier on eth1", false), Severity::Warning);
        assert_eq!(Severity::of_line("WARNING: configuration: x", true), Severity::Warning);
        assert_eq!(Severity::of_line("device x driver y", true), Severity::Debug);
        assert_eq!(Severity::of_line("stage early done", false), Severity::Info);
    }

    #[test]
    fn hostile_text_is_escaped_and_hostile_host_names_cannot_break_the_header() {
        let m = text(&message(Severity::Info, "evil host\n<0>1", MSGID_LOG, "name \"a\0b\x1b[2J\r\n<0>1 x\u{9b}\""));
        assert_eq!(m, "<30>1 - evil_host_<0>1 diskless - log - name \"a\\0b\\u{1b}[2J\\r\\n<0>1 x\\u{9b}\"");
        assert!(!m.bytes().any(|b| b.is_ascii_control()), "{m:?}");
        let long_host = "h".repeat(300);
        let m = text(&message(Severity::Info, &long_host, MSGID_LOG, "x"));
        assert!(m.contains(&format!(" {} diskless ", "h".repeat(255))), "{m}");
    }

    #[test]
    fn long_messages_are_cut_at_the_limit_with_a_marker_on_a_character_boundary() {
        let fits = "a".repeat(MAX_MESSAGE - "<30>1 - h diskless - log - ".len());
        let m = message(Severity::Info, "h", MSGID_LOG, &fits);
        assert_eq!(m.len(), MAX_MESSAGE);
        assert!(!text(&m).ends_with(TRUNCATED));
        let m = message(Severity::Info, "h", MSGID_LOG, &format!("{fits}b"));
        assert_eq!(m.len(), MAX_MESSAGE);
        assert!(text(&m).ends_with(&format!("aaa{TRUNCATED}")));
        // Two-byte characters: the cut never splits one.
        let m = message(Severity::Info, "h", MSGID_LOG, &"é".repeat(MAX_MESSAGE));
        let m = text(&m);
        assert!(m.len() <= MAX_MESSAGE && m.len() >= MAX_MESSAGE - 1, "{}", m.len());
        assert!(m.ends_with(&format!("é{TRUNCATED}")));
        // Escapes count: a line of control characters grows fourfold and is cut after escaping.
        let m = text(&message(Severity::Info, "h", MSGID_LOG, &"\x1b".repeat(MAX_MESSAGE)));
        assert_eq!(m.len(), MAX_MESSAGE);
        assert!(m.ends_with(TRUNCATED) && m.contains("\\u{1b}\\u{1b}"), "{m}");
        assert!(!m.bytes().any(|b| b.is_ascii_control()));
    }

    #[test]
    fn target_values() {
        assert_eq!("dhcp".parse(), Ok(Target::Dhcp));
        assert_eq!("off".parse(), Ok(Target::Off));
        assert_eq!("10.0.0.5".parse(), Ok(Target::Server("10.0.0.5:514".parse().unwrap())));
        assert_eq!("10.0.0.5:1514".parse(), Ok(Target::Server("10.0.0.5:1514".parse().unwrap())));
        assert_eq!("10.0.0.5:0".parse::<Target>(), Err(TargetError::BadPort { value: "10.0.0.5:0".into() }));
        let e = "loghost.lab".parse::<Target>().unwrap_err();
        assert!(e.to_string().contains("give the server's address"), "{e}");
        assert!("255.255.255.255".parse::<Target>().is_err());
        assert_eq!(Target::Server("10.0.0.5:1514".parse().unwrap()).to_string(), "10.0.0.5:1514");
        let lease = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        assert_eq!(Target::Dhcp.servers(&lease), ["10.0.0.1:514".parse().unwrap(), "10.0.0.2:514".parse().unwrap()]);
        assert_eq!(Target::Off.servers(&lease), []);
        assert_eq!(Target::Server("10.9.9.9:600".parse().unwrap()).servers(&lease), ["10.9.9.9:600".parse().unwrap()]);
    }

    fn sent(os: &FakeOs) -> Vec<(SocketAddrV4, String)> {
        os.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::SendUdp { to, payload } => Some((to, payload)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lines_before_the_lease_are_kept_and_sent_first_to_every_server() {
        let os = Arc::new(FakeOs::default());
        let remote = Remote::default();
        remote.line(Severity::Info, "stage early done");
        assert!(!remote.send(Severity::Info, MSGID_INVENTORY, "not yet"));
        let servers: Vec<SocketAddrV4> = vec!["10.0.0.1:514".parse().unwrap(), "10.0.0.2:514".parse().unwrap()];
        remote.start(Sender { os: os.clone(), servers: servers.clone(), hostname: "10.0.0.9".into() });
        remote.set_hostname("pc1");
        remote.line(Severity::Error, "ERROR: mounting failed");
        let got = sent(&os);
        assert_eq!(
            got,
            [
                (servers[0], "<30>1 - 10.0.0.9 diskless - log - stage early done".to_string()),
                (servers[1], "<30>1 - 10.0.0.9 diskless - log - stage early done".to_string()),
                (servers[0], "<27>1 - pc1 diskless - log - ERROR: mounting failed".to_string()),
                (servers[1], "<27>1 - pc1 diskless - log - ERROR: mounting failed".to_string()),
            ]
        );
        assert_eq!(remote.servers(), servers);
    }

    #[test]
    fn the_buffer_is_bounded_and_says_what_it_dropped() {
        let os = Arc::new(FakeOs::default());
        let remote = Remote::default();
        for n in 0..BUFFER_LINES + 5 {
            remote.line(Severity::Info, &format!("line {n}"));
        }
        remote.start(Sender { os: os.clone(), servers: vec!["10.0.0.1:514".parse().unwrap()], hostname: "h".into() });
        let got = sent(&os);
        assert_eq!(got.len(), BUFFER_LINES + 1);
        assert!(got[0].1.ends_with("5 log lines before the lease were not kept for the syslog server"), "{got:?}");
        assert!(got[BUFFER_LINES].1.ends_with(&format!("line {}", BUFFER_LINES - 1)));
    }

    #[test]
    fn without_a_server_nothing_is_kept_or_sent() {
        let os = Arc::new(FakeOs::default());
        let remote = Remote::default();
        remote.line(Severity::Info, "a");
        remote.stop();
        remote.line(Severity::Info, "b");
        remote.start(Sender { os: os.clone(), servers: vec!["10.0.0.1:514".parse().unwrap()], hostname: "h".into() });
        assert_eq!(sent(&os), []);
    }

    #[test]
    fn failed_sends_are_counted_not_retried() {
        let os = Arc::new(FakeOs::default());
        os.fail_nth(crate::os::fake::Kind::SendUdp, 1, libc::EAGAIN);
        let remote = Remote::default();
        remote.start(Sender { os: os.clone(), servers: vec!["10.0.0.1:514".parse().unwrap()], hostname: "h".into() });
        remote.line(Severity::Info, "a");
        remote.line(Severity::Info, "b");
        assert_eq!(remote.failed(), 1);
        assert_eq!(sent(&os).len(), 2, "the failed call is recorded too");
    }
}
