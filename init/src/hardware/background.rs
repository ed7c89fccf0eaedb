//! The coldplug thread: the stage returns once the network path is ready, and the
//! rest of the coldplug settles in the background until the boot joins it.

use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use super::coldplug::Event;
use super::{HardwareError, Summary};

/// Tells [`Background::spawn`] that the network path is ready.
pub struct Ready(Sender<()>);

impl Ready {
    pub fn signal(&self) {
        // The spawner waits on the other end; it is gone only if it panicked itself.
        let _ = self.0.send(());
    }
}

/// The coldplug still running in the background after the stage returned.
pub struct Background {
    state: BackgroundState,
    /// Where [`Background::hurry`] sends [`Event::Hurry`] (the coldplug's event queue).
    hurry: Option<Sender<Event>>,
}

enum BackgroundState {
    Running(JoinHandle<Summary>),
    /// The work ended before signalling (nothing on the network path was slower than
    /// the whole coldplug, or the overall cap was reached).
    Done(Summary),
}

impl Background {
    /// Run `work` in a thread and return once it called [`Ready`] or ended. A panic
    /// before the signal is resumed here, in the stage.
    pub fn spawn(work: impl FnOnce(Ready) -> Summary + Send + 'static) -> Result<Background, HardwareError> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("coldplug".into())
            .spawn(move || work(Ready(tx)))
            .map_err(HardwareError::Thread)?;
        if rx.recv().is_ok() {
            return Ok(Background { state: BackgroundState::Running(thread), hurry: None });
        }
        match thread.join() {
            Ok(summary) => Ok(Background { state: BackgroundState::Done(summary), hurry: None }),
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Wait for the hardware to settle. A panic of the thread becomes an error worded
    /// as a stage's panic, for the failure policy.
    pub fn join(self) -> Result<Summary, HardwareError> {
        let thread = match self.state {
            BackgroundState::Done(summary) => return Ok(summary),
            BackgroundState::Running(thread) => thread,
        };
        thread.join().map_err(|payload| HardwareError::Panicked { message: crate::early::panic_message(&*payload) })
    }

    /// Let [`Background::hurry`] reach the coldplug through `events`, its event queue.
    pub fn with_hurry(mut self, events: Sender<Event>) -> Background {
        self.hurry = Some(events);
        self
    }

    /// Ask the coldplug to settle as soon as no load runs and [`HURRIED_QUIET`](super::HURRIED_QUIET) passed,
    /// instead of the full settle time: the boot is about to wait for it.
    pub fn hurry(&self) {
        if let Some(events) = &self.hurry {
            // A coldplug that already ended has dropped its queue: nothing to hurry.
            let _ = events.send(Event::Hurry);
        }
    }

    /// Whether the hardware has settled already (joining will not wait).
    pub fn is_finished(&self) -> bool {
        match &self.state {
            BackgroundState::Done(_) => true,
            BackgroundState::Running(thread) => thread.is_finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::Cmdline;
    use crate::hardware::coldplug::tests::{loads, modules, settings, virtio_index};
    use crate::hardware::coldplug::{Env, run_coldplug};
    use crate::hardware::index::fake::FakeIndex;
    use crate::hardware::uevent::Uevent;
    use crate::hardware::{Settings, sysfs};
    use crate::log::{Capture, Log, captured};
    use crate::os::fake::FakeOs;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn ide_and_virtio_nic(sys: &Path) -> FakeIndex {
        use sysfs::fake::device;
        device(sys, "/devices/pci0000:00/0000:00:01.1", "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", None);
        device(sys, "/devices/pci0000:00/0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", None);
        let mut idx = virtio_index();
        idx.add("scsi_mod", &[], &[]);
        idx.add("libata", &["scsi_mod"], &[]);
        idx.add("ata_piix", &["libata"], &["pci:v00008086d00007010*"]);
        idx
    }

    fn env(idx: FakeIndex, sys: &Path, os: Arc<FakeOs>, log: Log, settle_ms: u64) -> Env {
        Env {
            sys: sys.to_path_buf(),
            modules: Arc::new(modules(idx, Cmdline::default(), os, log)),
            settings: Settings { settle: Duration::from_millis(settle_ms), ..settings() },
            started: Instant::now(),
        }
    }

    /// The coldplug of `env` in the background, as the boot runs it, with `tx` to send
    /// uevents from the test.
    fn background(env: Env) -> (Result<Background, HardwareError>, Sender<Event>) {
        let (tx, rx) = channel();
        let events = tx.clone();
        let spawned = Background::spawn(move |ready| run_coldplug(&env, (tx, rx), ready, || {}));
        (spawned, events)
    }

    #[test]
    fn the_stage_returns_once_the_nic_driver_is_in_and_the_rest_loads_in_the_background() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().to_path_buf();
        let idx = ide_and_virtio_nic(&sys);
        let os = Arc::new(FakeOs::default().with_load_time(Duration::from_millis(5)));
        // virtio_pci creates the virtio device in sysfs before its load returns, as the
        // kernel does; no uevent is sent, so only the look under the NIC finds it. The
        // first ATA load blocks until the test lets it go.
        let (release, released) = channel::<()>();
        let released = Mutex::new(released);
        let virtio0 = sys.join("devices/pci0000:00/0000:00:03.0/virtio0");
        *os.on_load.lock().unwrap() = Some(Box::new(move |file| match file {
            "virtio_pci.ko" => {
                std::fs::create_dir_all(&virtio0).unwrap();
                std::fs::write(virtio0.join("modalias"), "virtio:d00000001v00001AF4\n").unwrap();
            }
            "scsi_mod.ko" => released.lock().unwrap().recv().unwrap(),
            _ => {}
        }));
        let (log, console) = captured();
        let (spawned, _events) = background(env(idx, &sys, os.clone(), log, 50));
        let background = spawned.unwrap();
        let at_return = loads(&os);
        assert!(at_return.contains(&"load virtio_net.ko []".to_string()), "{at_return:?}");
        assert!(!at_return.iter().any(|l| l.contains("ata_piix") || l.contains("libata")), "{at_return:?}");
        assert!(!background.is_finished());
        let text = console.text();
        assert!(
            text.contains("diskless: network drivers ready in ")
                && text.contains(" ms; 3 more loads continue in the background\n"),
            "{text}"
        );
        assert!(!text.contains("hardware settled"), "{text}");
        release.send(()).unwrap();
        let summary = background.join().unwrap();
        assert!(summary.settled);
        assert_eq!(summary.modules_loaded, 9);
        let order = loads(&os);
        let last_net = order.iter().position(|l| l.starts_with("load virtio_net.ko")).unwrap();
        let first_ata = order.iter().position(|l| l.starts_with("load scsi_mod.ko")).unwrap();
        assert!(last_net < first_ata, "the NIC chain loads before the IDE controller's: {order:?}");
        assert!(order.iter().any(|l| l.starts_with("load ata_piix.ko")), "{order:?}");
        assert!(console.text().contains("diskless: hardware settled in "), "{}", console.text());
    }

    #[test]
    fn a_nic_that_appears_after_the_stage_returned_is_still_loaded_in_the_background() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().to_path_buf();
        let idx = virtio_index();
        let os = Arc::new(FakeOs::default());
        let (log, console) = captured();
        // Nothing on the network path at the scan: the stage returns at once.
        let (spawned, events) = background(env(idx, &sys, os.clone(), log, 300));
        let background = spawned.unwrap();
        assert!(console.text().contains("network drivers ready in "), "{}", console.text());
        assert_eq!(loads(&os), Vec::<String>::new());
        let msg =
            b"add@/devices/pci0000:00/0000:00:05.0\0MODALIAS=pci:v00008086d0000100Esv00008086sd00000000bc02sc00i00\0";
        events.send(Event::Uevent(Uevent::parse(msg).unwrap())).unwrap();
        let summary = background.join().unwrap();
        assert_eq!(summary.loaded, ["e1000"]);
        assert_eq!(loads(&os), ["load e1000.ko []"]);
    }

    /// The IDE controller and virtio NIC machine's coldplug in the background, with its
    /// event queue wired for [`Background::hurry`].
    fn hurriable_ide_and_nic(settle_ms: u64) -> (Background, Arc<FakeOs>, Capture, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let idx = ide_and_virtio_nic(tmp.path());
        let os = Arc::new(FakeOs::default());
        let (log, console) = captured();
        let (spawned, events) = background(env(idx, tmp.path(), os.clone(), log, settle_ms));
        (spawned.unwrap().with_hurry(events), os, console, tmp)
    }

    #[test]
    fn a_hurried_coldplug_settles_after_the_short_quiet_not_the_full_settle_time() {
        // The local stage waited out the full settle time after the last storage driver,
        // 0.3 s on the rig, although the disks were in when that load returned.
        let (background, os, console, _tmp) = hurriable_ide_and_nic(60_000);
        let asked = Instant::now();
        background.hurry();
        let summary = background.join().unwrap();
        assert!(asked.elapsed() < Duration::from_secs(20), "waited {:?}", asked.elapsed());
        assert!(summary.settled);
        assert!(loads(&os).iter().any(|l| l.starts_with("load ata_piix.ko")), "{:?}", loads(&os));
        assert!(console.text().contains("diskless: hardware settled in "), "{}", console.text());
    }

    #[test]
    fn an_unhurried_coldplug_still_waits_the_full_settle_time() {
        let (background, _os, _console, _tmp) = hurriable_ide_and_nic(400);
        let asked = Instant::now();
        background.join().unwrap();
        assert!(asked.elapsed() >= Duration::from_millis(300), "settled after {:?}", asked.elapsed());
    }

    #[test]
    fn a_panic_in_the_background_comes_back_when_joined_and_one_before_ready_in_the_stage() {
        let late = Background::spawn(|ready| {
            ready.signal();
            panic!("late trouble")
        });
        assert_eq!(
            late.unwrap().join().unwrap_err().to_string(),
            "stage hardware panicked in the background: late trouble: this is a bug in diskless; please report it with the console log"
        );
        let early = std::panic::catch_unwind(|| Background::spawn(|_| panic!("early trouble")));
        let payload = early.err().expect("the panic is resumed in the caller");
        assert_eq!(crate::early::panic_message(&*payload), "early trouble");
    }
}
