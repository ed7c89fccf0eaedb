//! The machine's inventory, sent to the syslog server at the end of every boot (booted
//! or failed), and read back from the server's log into a fleet file
//! ([`modules_db::fleet`]) by `diskless inventory`.
//!
//! Each inventory message (MSGID `inventory`) is one line of text:
//!
//! ```text
//! inventory/1 nic machine=MAC interface=eth0 mac=MAC bus=pci modalias=pci:v... driver=e1000 module=e1000
//! inventory/1 device machine=MAC bus=pci name=0000:00:03.0 modalias=pci:v... driver=e1000
//! inventory/1 summary machine=MAC host=pc1 result=booted stage=handoff devices=12 modules=9 without_driver=0
//! ```
//!
//! `machine` is the MAC the boot came up on: the machine's key in the fleet. A `nic`
//! is every interface a driver made, and every PCI network controller no driver bound
//! (interface and mac empty, module the one the kernel has for it): the NICs a fleet
//! initrd must drive. `device` is every PCI, USB and virtio device with its driver.
//! The message text holds everything, so the inventory does not depend on the
//! server's file format (rsyslog's traditional one drops the MSGID).
//!
//! Values came from sysfs and from the network (the host name): each is written with
//! every character outside a small safe set as `%XX` (UTF-8 bytes), so no value can
//! hold a space, an `=` or a control character, and read back by the reverse rule.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use modules_db::fleet::{Fleet, Machine, Nic, device_id};

use crate::hardware::index::ModuleIndex;
use crate::hardware::sysfs;
use crate::syslog::{APP_NAME, MSGID_INVENTORY, Remote, Severity};

/// The first word of every inventory message: the grammar and its version.
pub const MARK: &str = "inventory/1";

/// Buses whose devices are listed (the buses whose devices all want a driver).
const LISTED_BUSES: &[&str] = &["pci", "usb", "virtio"];
/// PCI base class of network controllers, as a modalias writes it.
const NETWORK_CLASS: &str = "bc02";

/// How the boot ended, for the summary message.
pub struct Outcome<'a> {
    /// `booted` or `failed`.
    pub result: &'a str,
    /// The stage that ended the boot (handoff when it booted).
    pub stage: &'a str,
    pub devices: usize,
    pub modules_loaded: usize,
    pub without_driver: usize,
}

/// A value written so that it can be read back: see the module doc.
fn field(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || "._:/*+,@-".contains(c) {
            out.push(c);
        } else {
            let mut bytes = [0; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The reverse of [`field`]; `None` for a malformed escape or bytes that are not UTF-8.
fn unfield(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn line(kind: &str, machine: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = format!("{MARK} {kind} machine={}", field(machine));
    for (key, value) in pairs {
        let _ = write!(out, " {key}={}", field(value));
    }
    out
}

/// The module that provides a bound driver (`SYS/.../driver/module`), else the
/// driver's own name.
fn module_of(device_dir: &Path, driver: &str) -> String {
    std::fs::read_link(device_dir.join("driver/module"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| modules_db::normalize_name(driver))
}

/// The inventory messages of the machine whose sysfs is at `sys`, booted on the
/// interface with MAC `machine`. `index` names the module of a NIC no driver bound.
pub fn messages(sys: &Path, index: &dyn ModuleIndex, machine: &str, host: &str, outcome: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(sys.join("class/net")).into_iter().flatten().flatten() {
        let Ok(dir) = std::fs::canonicalize(entry.path().join("device")) else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let read = |p: &Path| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        let modalias = read(&dir.join("modalias"));
        let driver = sysfs::driver_of(&dir).unwrap_or_default();
        let module = if driver.is_empty() { String::new() } else { module_of(&dir, &driver) };
        let bus = modalias.split_once(':').map_or("", |(bus, _)| bus).to_string();
        let mac = read(&entry.path().join("address"));
        out.push(line(
            "nic",
            machine,
            &[
                ("interface", &name),
                ("mac", &mac),
                ("bus", &bus),
                ("modalias", &modalias),
                ("driver", &driver),
                ("module", &module),
            ],
        ));
    }
    out.sort();
    for device in sysfs::scan_devices(sys) {
        if !LISTED_BUSES.contains(&device.bus()) {
            continue;
        }
        let driver = device.driver.clone().unwrap_or_default();
        if driver.is_empty() && device.bus() == "pci" && device.modalias.contains(NETWORK_CLASS) {
            let module = index.lookup(&device.modalias).into_iter().chain(index.hint(&device.modalias)).next();
            out.push(line(
                "nic",
                machine,
                &[
                    ("interface", ""),
                    ("mac", ""),
                    ("bus", "pci"),
                    ("modalias", &device.modalias),
                    ("driver", ""),
                    ("module", module.as_deref().unwrap_or("")),
                ],
            ));
        }
        out.push(line(
            "device",
            machine,
            &[("bus", device.bus()), ("name", device.name()), ("modalias", &device.modalias), ("driver", &driver)],
        ));
    }
    let counts = [outcome.devices, outcome.modules_loaded, outcome.without_driver].map(|n| n.to_string());
    out.push(line(
        "summary",
        machine,
        &[
            ("host", host),
            ("result", outcome.result),
            ("stage", outcome.stage),
            ("devices", &counts[0]),
            ("modules", &counts[1]),
            ("without_driver", &counts[2]),
        ],
    ));
    out
}

/// Send the inventory to the syslog server, if one is known; returns the messages sent.
pub fn send(remote: &Remote, messages: &[String]) -> usize {
    messages.iter().take_while(|m| remote.send(Severity::Info, MSGID_INVENTORY, m)).count()
}

/// One inventory message read back from a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub machine: String,
    pub fields: BTreeMap<String, String>,
}

impl Record {
    fn get(&self, key: &str) -> String {
        self.fields.get(key).cloned().unwrap_or_default()
    }
}

/// The message text of a line of the syslog server's file: RFC 5424 lines
/// (`<PRI>1 TIMESTAMP HOST diskless PROCID inventory SD MSG`, rsyslog's
/// `RSYSLOG_SyslogProtocol23Format`) and rsyslog's file lines (`TIMESTAMP HOST TAG MSG`,
/// its default, with an RFC 3339 timestamp or the traditional `Mmm dd hh:mm:ss`, and the
/// tag `diskless`, `diskless:` or `diskless[PID]:`).
fn message_text(line: &str) -> Option<&str> {
    if line.starts_with('<') {
        let mut rest = line;
        let mut fields = Vec::with_capacity(6);
        for _ in 0..6 {
            let (field, tail) = rest.split_once(' ')?;
            fields.push(field);
            rest = tail;
        }
        if fields[3] != APP_NAME || fields[5] != MSGID_INVENTORY {
            return None;
        }
        // Structured data: the boot sends none (`-`).
        return rest.strip_prefix("- ");
    }
    // The header by its shape, never by searching the text: a message may quote anything.
    let traditional = line.get(..3).is_some_and(|m| m.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest = skip_words(line, if traditional { 4 } else { 2 })?;
    let (tag, message) = rest.split_once(' ')?;
    let tag = tag.strip_suffix(':').unwrap_or(tag);
    let tag = match tag.strip_suffix(']') {
        Some(with_pid) => with_pid.split_once('[')?.0,
        None => tag,
    };
    (tag == APP_NAME).then_some(message)
}

/// `text` after `n` words and the spaces after them.
fn skip_words(text: &str, n: usize) -> Option<&str> {
    let mut rest = text;
    for _ in 0..n {
        rest = rest.trim_start_matches(' ').split_once(' ')?.1.trim_start_matches(' ');
    }
    Some(rest)
}

/// The inventory message of a log line, if it holds one; lines of other programs, the
/// boot's log lines and malformed messages give `None`.
pub fn parse_line(line: &str) -> Option<Record> {
    let text = message_text(line.trim_end_matches(['\r', '\n']))?;
    let mut words = text.split(' ');
    if words.next()? != MARK {
        return None;
    }
    let kind = words.next()?.to_string();
    let mut fields = BTreeMap::new();
    for word in words.filter(|w| !w.is_empty()) {
        let (key, value) = word.split_once('=')?;
        let value = unfield(value)?;
        if value.chars().any(char::is_control) {
            return None;
        }
        fields.insert(key.to_string(), value);
    }
    let machine = fields.remove("machine")?;
    Some(Record { kind, machine, fields })
}

/// What [`fleet`] could not use, in words for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// A NIC without a module: its driver is not known to the kernel the client ran.
    NicWithoutModule { machine: String, modalias: String },
    /// A machine that sent NIC lines but no summary: the name is its MAC.
    NoSummary { machine: String },
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::NicWithoutModule { machine, modalias } => write!(
                f,
                "machine {machine}: NIC {modalias} has no module in the kernel it booted: left out; find its driver \
                 and add it with mkinitramfs --add-modules"
            ),
            Skipped::NoSummary { machine } => write!(
                f,
                "machine {machine}: no summary message (the end of its boot was not received): named by its MAC"
            ),
        }
    }
}

/// The fleet of the machines whose inventory is in `lines`: one machine per boot MAC,
/// named by its last summary, with every NIC any of its boots reported.
pub fn fleet<'a>(lines: impl IntoIterator<Item = &'a str>) -> (Fleet, Vec<Skipped>) {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut nics: BTreeMap<String, Vec<Nic>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for record in lines.into_iter().filter_map(parse_line) {
        match record.kind.as_str() {
            "summary" => {
                names.insert(record.machine.clone(), record.get("host"));
            }
            "nic" => {
                let modalias = record.get("modalias");
                let module = record.get("module");
                if module.is_empty() {
                    let skip = Skipped::NicWithoutModule { machine: record.machine.clone(), modalias };
                    if !skipped.contains(&skip) {
                        skipped.push(skip);
                    }
                    continue;
                }
                let nic = Nic {
                    interface: record.get("interface"),
                    mac: record.get("mac"),
                    bus: record.get("bus"),
                    id: device_id(&modalias),
                    modalias,
                    module,
                };
                let list = nics.entry(record.machine).or_default();
                if !list.contains(&nic) {
                    list.push(nic);
                }
            }
            _ => {}
        }
    }
    let mut machines: Vec<Machine> = nics
        .into_iter()
        .map(|(mac, mut nics)| {
            nics.sort();
            let name = match names.get(&mac).filter(|n| !n.is_empty()) {
                Some(name) => name.clone(),
                None => {
                    skipped.push(Skipped::NoSummary { machine: mac.clone() });
                    mac.clone()
                }
            };
            Machine { name, mac, nics }
        })
        .collect();
    machines.sort_by(|a, b| (&a.name, &a.mac).cmp(&(&b.name, &b.mac)));
    (Fleet::new(machines), skipped)
}

/// Why `diskless inventory` could not make a fleet file.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading {}: {source}: give the file rsyslog writes the clients' messages to", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {}: {source}: check the directory exists and is writable", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "no inventory message in {files}: the clients send one at the end of each boot to the log servers of DHCP \
         option 7 or diskless.syslog=; check that they boot with one and that rsyslog writes what it receives over \
         UDP to this file"
    )]
    Empty { files: String },
}

/// What `diskless inventory` made.
pub struct Report {
    pub fleet: Fleet,
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// The fleet file's text, with what was left out as comments at its end.
    pub fn fleet_file(&self) -> String {
        let mut text = self.fleet.to_toml();
        for skip in &self.skipped {
            let _ = writeln!(text, "# note: {}", crate::text::Escaped(&skip.to_string()));
        }
        text
    }

    /// The summary printed when the file is written elsewhere.
    pub fn summary(&self, written: &Path) -> String {
        let modules: Vec<String> = self.fleet.nic_modules().into_iter().collect();
        let mut text = format!(
            "{} machines, NIC modules {}: written to {}\nbuild the fleet's initrd with mkinitramfs --fleet {}\n",
            self.fleet.machines.len(),
            modules.join(","),
            written.display(),
            written.display()
        );
        for skip in &self.skipped {
            let _ = writeln!(text, "note: {}", crate::text::Escaped(&skip.to_string()));
        }
        text
    }
}

/// `diskless inventory LOGFILE...`: the fleet of every machine whose inventory the
/// files hold (bytes that are not UTF-8 are read as U+FFFD: they are never part of a
/// message the boot sent).
pub fn inventory(logs: &[PathBuf]) -> Result<Report, InventoryError> {
    let mut texts = Vec::with_capacity(logs.len());
    for path in logs {
        let bytes = std::fs::read(path).map_err(|source| InventoryError::Read { path: path.clone(), source })?;
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    let (fleet, skipped) = fleet(texts.iter().flat_map(|t| t.lines()));
    if fleet.machines.is_empty() && skipped.is_empty() {
        let files = logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(InventoryError::Empty { files });
    }
    Ok(Report { fleet, skipped })
}

/// Write the fleet file of `report` to `path`.
pub fn write(report: &Report, path: &Path) -> Result<(), InventoryError> {
    std::fs::write(path, report.fleet_file()).map_err(|source| InventoryError::Write { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::index::fake::FakeIndex;
    use crate::hardware::sysfs::fake;

    const E1000: &str = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00";
    const RTL8139: &str = "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00";
    const MAC: &str = "52:54:00:12:34:56";

    fn outcome() -> Outcome<'static> {
        Outcome { result: "booted", stage: "handoff", devices: 3, modules_loaded: 2, without_driver: 1 }
    }

    fn machine_sys() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        fake::device(sys, "/devices/pci0000:00/0000:00:03.0", E1000, Some("e1000"));
        fake::interface(sys, "eth0", MAC, "/devices/pci0000:00/0000:00:03.0");
        fake::device(sys, "/devices/pci0000:00/0000:00:04.0", RTL8139, None);
        fake::device(sys, "/devices/platform/rtc_cmos", "platform:rtc_cmos", None);
        tmp
    }

    fn index() -> FakeIndex {
        let mut idx = FakeIndex::default();
        idx.hints.push(("pci:v000010ECd00008139*".into(), "8139too".into()));
        idx
    }

    #[test]
    fn messages_list_nics_bound_and_unbound_devices_and_the_summary() {
        let tmp = machine_sys();
        let got = messages(tmp.path(), &index(), MAC, "pc1.lab", &outcome());
        assert_eq!(
            got,
            [
                format!(
                    "inventory/1 nic machine={MAC} interface=eth0 mac={MAC} bus=pci modalias={E1000} driver=e1000 module=e1000"
                ),
                format!("inventory/1 device machine={MAC} bus=pci name=0000:00:03.0 modalias={E1000} driver=e1000"),
                format!(
                    "inventory/1 nic machine={MAC} interface= mac= bus=pci modalias={RTL8139} driver= module=8139too"
                ),
                format!("inventory/1 device machine={MAC} bus=pci name=0000:00:04.0 modalias={RTL8139} driver="),
                format!(
                    "inventory/1 summary machine={MAC} host=pc1.lab result=booted stage=handoff devices=3 modules=2 \
                     without_driver=1"
                ),
            ]
        );
    }

    #[test]
    fn hostile_values_are_escaped_and_read_back() {
        let host = "pc1 result=failed\n\u{1b}[2J%é";
        let text = line("summary", MAC, &[("host", host)]);
        assert_eq!(text, format!("inventory/1 summary machine={MAC} host=pc1%20result%3Dfailed%0A%1B%5B2J%25%C3%A9"));
        // Read back, the spaces and `=` stay inside the value; the control characters make
        // the whole message unusable.
        assert_eq!(parse_line(&format!("<30>1 - h diskless - inventory - {text}")), None);
        let plain = line("summary", MAC, &[("host", "pc 1%é")]);
        let record = parse_line(&format!("<30>1 - h diskless - inventory - {plain}")).unwrap();
        assert_eq!(record.fields["host"], "pc 1%é");
    }

    #[test]
    fn values_with_control_characters_or_bad_escapes_are_not_read() {
        let text = line("summary", MAC, &[("host", "a\u{1b}b")]);
        assert_eq!(parse_line(&format!("<30>1 - h diskless - inventory - {text}")), None);
        assert_eq!(parse_line(&format!("<30>1 - h diskless - inventory - {MARK} summary machine=a host=%G1")), None);
        assert_eq!(parse_line(&format!("<30>1 - h diskless - inventory - {MARK} summary machine=a host=%C3")), None);
        assert_eq!(parse_line(&format!("<30>1 - h diskless - inventory - {MARK} summary host=a")), None, "no machine");
    }

    #[test]
    fn lines_of_both_rsyslog_formats_are_read_and_others_ignored() {
        let text = format!("{MARK} summary machine={MAC} host=pc1");
        let rfc = format!("<30>1 2026-12-05T22:00:00.1+00:00 pc1 diskless - inventory - {text}");
        let traditional = format!("Dec  5 22:00:00 pc1 diskless: {text}");
        let with_pid = format!("Dec  5 22:00:00 pc1 diskless[1]: {text}");
        // Debian's default file format: RFC 3339 time, the tag without a colon.
        let debian = format!("2026-12-05T22:24:20.595197+00:00 pc1 diskless {text}");
        let named_diskless = format!("2026-12-05T22:24:20.595197+00:00 diskless diskless {text}");
        for l in [&rfc, &traditional, &with_pid, &debian, &named_diskless] {
            let r = parse_line(l).unwrap_or_else(|| panic!("{l}"));
            assert_eq!((r.kind.as_str(), r.machine.as_str(), r.fields["host"].as_str()), ("summary", MAC, "pc1"));
        }
        // A log line that quotes the mark (a host name from DHCP) is not an inventory message.
        assert_eq!(parse_line(&format!("<30>1 - pc1 diskless - log - host name {text}")), None);
        assert_eq!(parse_line(&format!("Dec  5 22:00:00 pc1 diskless: host name {text}")), None);
        assert_eq!(parse_line(&format!("Dec  5 22:00:00 pc1 sshd[9]: {text}")), None);
        assert_eq!(parse_line(&format!("Dec  5 22:00:00 pc1 sshd[9]: x diskless {text}")), None);
        assert_eq!(parse_line(&format!("2026-12-05T22:24:20Z pc1 diskless host name diskless {text}")), None);
        assert_eq!(parse_line("<30>1 - short"), None);
    }

    #[test]
    fn fleet_has_one_machine_per_boot_mac_with_every_nic_it_reported() {
        let tmp = machine_sys();
        let mut log: Vec<String> = Vec::new();
        // Two boots of pc1 (the second with its new name), one of a machine without a summary.
        for host in ["old-name", "pc1.lab"] {
            for m in messages(tmp.path(), &index(), MAC, host, &outcome()) {
                log.push(format!("<30>1 2026-12-05T22:00:00Z {host} diskless - inventory - {m}"));
                log.push(format!("<30>1 2026-12-05T22:00:00Z {host} diskless - log - stage early done"));
            }
        }
        log.push(format!(
            "Dec  5 22:00:00 x diskless: {MARK} nic machine=52:54:00:00:00:02 interface=eth0 mac=52:54:00:00:00:02 \
             bus=virtio modalias=virtio:d00000001v00001AF4 driver=virtio_net module=virtio_net"
        ));
        log.push(format!(
            "Dec  5 22:00:00 x diskless: {MARK} nic machine=52:54:00:00:00:02 bus=pci modalias=pci:x module="
        ));
        let (fleet, skipped) = fleet(log.iter().map(String::as_str));
        assert_eq!(fleet.machines.len(), 2);
        let pc1 = &fleet.machines[1];
        assert_eq!((pc1.name.as_str(), pc1.mac.as_str()), ("pc1.lab", MAC));
        assert_eq!(pc1.nics.len(), 2, "{:?}", pc1.nics);
        assert_eq!(
            (pc1.nics[0].module.as_str(), pc1.nics[0].id.as_str(), pc1.nics[0].interface.as_str()),
            ("8139too", "10ec:8139", "")
        );
        assert_eq!((pc1.nics[1].module.as_str(), pc1.nics[1].id.as_str()), ("e1000", "8086:100e"));
        assert_eq!(fleet.machines[0].name, "52:54:00:00:00:02");
        assert_eq!(fleet.machines[0].nics[0].module, "virtio_net");
        assert_eq!(
            skipped,
            [
                Skipped::NicWithoutModule { machine: "52:54:00:00:00:02".into(), modalias: "pci:x".into() },
                Skipped::NoSummary { machine: "52:54:00:00:00:02".into() },
            ]
        );
        // What the inventory writes, mkinitramfs reads.
        assert_eq!(Fleet::parse(&fleet.to_toml()).unwrap(), fleet);
        assert_eq!(fleet.nic_modules().into_iter().collect::<Vec<_>>(), ["8139too", "e1000", "virtio_net"]);
    }

    #[test]
    fn inventory_reads_files_and_says_when_they_hold_no_inventory() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("syslog.log");
        std::fs::write(&log, b"2026-12-05T22:00:00Z h sshd[1]: hello\n\xff\xfe\n").unwrap();
        let e = inventory(std::slice::from_ref(&log)).err().unwrap();
        assert!(e.to_string().starts_with(&format!("no inventory message in {}: ", log.display())), "{e}");
        let missing = tmp.path().join("nope.log");
        let e = inventory(&[log.clone(), missing.clone()]).err().unwrap();
        assert!(e.to_string().starts_with(&format!("reading {}: ", missing.display())), "{e}");
        let mut text = std::fs::read(&log).unwrap();
        text.extend_from_slice(
            format!(
                "2026-12-05T22:00:00Z pc1 diskless {MARK} nic machine={MAC} interface=eth0 mac={MAC} bus=pci \
                 modalias={E1000} driver=e1000 module=e1000\n\
                 2026-12-05T22:00:00Z pc1 diskless {MARK} nic machine={MAC} bus=pci modalias={RTL8139} module=\n"
            )
            .as_bytes(),
        );
        std::fs::write(&log, text).unwrap();
        let report = inventory(&[log]).unwrap();
        let file = report.fleet_file();
        assert!(file.ends_with(&format!("# note: {}\n", report.skipped[1])), "{file}");
        assert_eq!(Fleet::parse(&file).unwrap(), report.fleet);
        let summary = report.summary(Path::new("/srv/fleet.toml"));
        assert!(
            summary.starts_with(
                "1 machines, NIC modules e1000: written to /srv/fleet.toml\n\
                 build the fleet's initrd with mkinitramfs --fleet /srv/fleet.toml\nnote: machine "
            ),
            "{summary}"
        );
    }

    #[test]
    fn send_goes_through_the_remote_only_with_a_server() {
        let os = std::sync::Arc::new(crate::os::fake::FakeOs::default());
        let remote = Remote::default();
        assert_eq!(send(&remote, &["a".into()]), 0);
        remote.start(crate::syslog::Sender {
            os: os.clone(),
            servers: vec!["10.0.0.1:514".parse().unwrap()],
            hostname: "pc1".into(),
        });
        assert_eq!(send(&remote, &["inventory/1 summary machine=m".into()]), 1);
        let calls = os.calls_of(crate::os::fake::Kind::SendUdp);
        assert!(
            matches!(&calls[..], [crate::os::fake::Call::SendUdp { payload, .. }]
                if payload == "<30>1 - pc1 diskless - inventory - inventory/1 summary machine=m"),
            "{calls:?}"
        );
    }
}
