//! The load plan: which modules to load, and when each may start.
//!
//! A module starts only after all its `depends` and `softdep_pre` have finished; its
//! `softdep_post` start after it. A module whose hard dependency failed is skipped with
//! the reason; soft dependencies are wishes, so their failure does not block anyone.
//! Modules requested with [`Plan::request_first`] (the network path's) and their
//! prerequisites go first: while any of them is unfinished, no other module starts, so
//! that the NIC driver has the CPU to itself on a small machine.
//! The plan is pure bookkeeping: the stage runs the jobs it hands out (in parallel)
//! and reports each result back with [`Plan::finish`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::Arc;

use super::errno::load_error_meaning;
use super::index::{ModuleEntry, ModuleIndex};

/// Why a module did not load.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The database of the initramfs does not know it.
    #[error("it is not in the initramfs")]
    NotInInitramfs,
    /// finit_module failed; `meaning` says what its errno means for the administrator.
    /// Shared, because the plan and every load that asked for the module report it.
    #[error("{source} ({meaning})")]
    Load { source: Arc<io::Error>, meaning: &'static str },
}

impl Failure {
    /// The failure of a finit_module that returned `e`.
    pub fn load(e: io::Error) -> Failure {
        Failure::Load { meaning: load_error_meaning(&e), source: Arc::new(e) }
    }
}

/// Two load failures are the same when the kernel gave the same errno (`io::Error` has
/// no equality of its own).
impl PartialEq for Failure {
    fn eq(&self, other: &Failure) -> bool {
        match (self, other) {
            (Failure::NotInInitramfs, Failure::NotInInitramfs) => true,
            (Failure::Load { source: a, .. }, Failure::Load { source: b, .. }) => {
                a.kind() == b.kind() && a.raw_os_error() == b.raw_os_error()
            }
            _ => false,
        }
    }
}

impl Eq for Failure {}

/// Why a module was not attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("it needs {dependency}, and {dependency} failed: {failure}")]
    DependencyFailed {
        dependency: String,
        #[source]
        failure: Failure,
    },
    #[error("it needs {dependency}, which was skipped")]
    DependencySkipped { dependency: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Waiting for its prerequisites.
    Waiting,
    /// Prerequisites done; queued for a worker.
    Ready,
    Loading,
    Loaded,
    /// Built into the kernel: present, never loaded.
    Builtin,
    /// finit_module failed, or the file is not in the archive.
    Failed(Failure),
    /// Not attempted because a hard dependency is missing or failed.
    Skipped(Skip),
    /// Its file (or a hard dependency's) is in the root image, which is not mounted
    /// yet: the modules stage loads it.
    Deferred,
}

impl State {
    fn is_finished(&self) -> bool {
        matches!(self, State::Loaded | State::Builtin | State::Failed(_) | State::Skipped(_) | State::Deferred)
    }
    fn is_present(&self) -> bool {
        matches!(self, State::Loaded | State::Builtin)
    }
    /// Why a failed or skipped module is not there.
    pub fn why(&self) -> Option<&dyn std::error::Error> {
        match self {
            State::Failed(failure) => Some(failure),
            State::Skipped(skip) => Some(skip),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// `depends`: without it the module cannot load.
    Hard,
    /// `softdep pre:` or the module this one is a `softdep post:` of: only ordering.
    Soft,
}

#[derive(Debug)]
struct Node {
    /// `None` when the database does not know the module.
    entry: Option<ModuleEntry>,
    state: State,
    needs: Vec<(String, Need)>,
    /// Requested with [`Plan::request_first`].
    first: bool,
}

/// A module the stage should load now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub module: String,
    /// Relative to `lib/modules/VERSION`.
    pub path: String,
    /// `path` is under the root image's `lib/modules/VERSION`, not the archive's.
    pub in_image: bool,
}

/// Something the stage should log after a [`Plan::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `module` will not be loaded: `reason`.
    Skipped { module: String, reason: Skip },
}

#[derive(Debug, Default)]
pub struct Plan {
    nodes: BTreeMap<String, Node>,
    ready: VecDeque<String>,
    /// The root image's modules can be loaded (the modules stage found its directory).
    image: bool,
}

impl Plan {
    /// A plan before the root image is mounted: its modules are [`State::Deferred`].
    pub fn new() -> Self {
        Plan::default()
    }

    /// A plan that loads the root image's modules too when `image`.
    pub fn with_image(image: bool) -> Self {
        Plan { image, ..Plan::default() }
    }

    /// Ask for `name` (and, transitively, its dependencies) to be loaded. Requesting a
    /// module that is already known does nothing. Returns notes for modules that can
    /// already be seen not to load (missing from the archive).
    pub fn request(&mut self, name: &str, index: &dyn ModuleIndex) -> Vec<Note> {
        let name = modules_db::normalize_name(name);
        let mut stack = Vec::new();
        self.add(&name, index, &mut stack);
        self.promote()
    }

    /// Like [`Plan::request`], and `name` with everything it waits for loads before any
    /// other module (also when it was requested before without priority).
    pub fn request_first(&mut self, name: &str, index: &dyn ModuleIndex) -> Vec<Note> {
        let notes = self.request(name, index);
        if let Some(node) = self.nodes.get_mut(&modules_db::normalize_name(name)) {
            node.first = true;
        }
        notes
    }

    /// Whether a module requested first is unfinished (then so is the first set).
    pub fn first_pending(&self) -> bool {
        self.nodes.values().any(|n| n.first && !n.state.is_finished())
    }

    /// Unfinished modules requested first and, transitively, the unfinished modules
    /// they wait for: these hold back all others.
    fn first_set(&self) -> BTreeSet<&str> {
        let mut todo: Vec<&str> =
            self.nodes.iter().filter(|(_, n)| n.first && !n.state.is_finished()).map(|(k, _)| k.as_str()).collect();
        let mut set = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if set.insert(name) {
                let needs = self.nodes[name].needs.iter().map(|(d, _)| d.as_str());
                todo.extend(needs.filter(|d| !self.nodes[*d].state.is_finished()));
            }
        }
        set
    }

    /// Modules not finished yet (waiting, queued or loading).
    pub fn pending(&self) -> usize {
        self.nodes.values().filter(|n| !n.state.is_finished()).count()
    }

    fn add(&mut self, name: &str, index: &dyn ModuleIndex, stack: &mut Vec<String>) {
        if self.nodes.contains_key(name) {
            return;
        }
        let entry = index.module(name);
        let state = match &entry {
            None => State::Failed(Failure::NotInInitramfs),
            Some(e) if e.is_builtin() => State::Builtin,
            Some(e) if e.in_image && !self.image => State::Deferred,
            Some(_) => State::Waiting,
        };
        let waiting = state == State::Waiting;
        self.nodes.insert(name.to_string(), Node { entry: entry.clone(), state, needs: Vec::new(), first: false });
        let Some(entry) = entry.filter(|_| waiting) else { return };
        stack.push(name.to_string());
        let prerequisites =
            entry.depends.iter().map(|d| (d, Need::Hard)).chain(entry.softdep_pre.iter().map(|d| (d, Need::Soft)));
        for (dep, need) in prerequisites {
            let dep = modules_db::normalize_name(dep);
            // A missing soft dependency is no reason to fail: kmod ignores it too.
            if need == Need::Soft && index.module(&dep).is_none() {
                continue;
            }
            // Dependency cycles cannot come from depmod, but a bad database must not
            // deadlock the boot: an edge back into the chain being added is dropped.
            if stack.contains(&dep) {
                continue;
            }
            self.add(&dep, index, stack);
            self.node_mut(name).needs.push((dep, need));
        }
        for post in &entry.softdep_post {
            let post = modules_db::normalize_name(post);
            if index.module(&post).is_none() || stack.contains(&post) {
                continue;
            }
            self.add(&post, index, stack);
            // Only a module still waiting can be held back, and never by something
            // that itself waits for it.
            if self.nodes[&post].state == State::Waiting && !self.depends_on(name, &post) {
                self.node_mut(&post).needs.push((name.to_string(), Need::Soft));
            }
        }
        stack.pop();
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.get_mut(name).expect("plan nodes are inserted before they are referenced")
    }

    /// Whether `from` waits, directly or through others, for `target`.
    fn depends_on(&self, from: &str, target: &str) -> bool {
        let mut todo = vec![from];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(n) = todo.pop() {
            if n == target {
                return true;
            }
            if seen.insert(n) {
                todo.extend(self.nodes.get(n).into_iter().flat_map(|node| node.needs.iter().map(|(d, _)| d.as_str())));
            }
        }
        false
    }

    /// Move waiting modules whose prerequisites are done to the ready queue, and skip
    /// those whose hard dependency can no longer be met. Repeats until nothing changes,
    /// because a skip can unblock or skip others.
    fn promote(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        loop {
            let mut changed = false;
            let waiting: Vec<String> =
                self.nodes.iter().filter(|(_, n)| n.state == State::Waiting).map(|(k, _)| k.clone()).collect();
            for name in waiting {
                let node = &self.nodes[&name];
                // What needs a module of the image waits for the image with it.
                if node.needs.iter().any(|(d, need)| *need == Need::Hard && self.nodes[d].state == State::Deferred) {
                    self.node_mut(&name).state = State::Deferred;
                    changed = true;
                    continue;
                }
                let blocker = node.needs.iter().find(|(d, need)| {
                    *need == Need::Hard && matches!(self.nodes[d].state, State::Failed(_) | State::Skipped(_))
                });
                if let Some((dep, _)) = blocker {
                    let dependency = dep.clone();
                    let reason = match &self.nodes[dep].state {
                        State::Failed(failure) => Skip::DependencyFailed { dependency, failure: failure.clone() },
                        _ => Skip::DependencySkipped { dependency },
                    };
                    notes.push(Note::Skipped { module: name.clone(), reason: reason.clone() });
                    self.node_mut(&name).state = State::Skipped(reason);
                    changed = true;
                } else if node.needs.iter().all(|(d, _)| self.nodes[d].state.is_finished()) {
                    self.node_mut(&name).state = State::Ready;
                    self.ready.push_back(name);
                    changed = true;
                }
            }
            if !changed {
                return notes;
            }
        }
    }

    /// The next module to load, marked as loading: one of the first set while that is
    /// not empty (none when all of those wait or load), else the oldest ready one.
    pub fn next_job(&mut self) -> Option<Job> {
        let at = {
            let first = self.first_set();
            if first.is_empty() { 0 } else { self.ready.iter().position(|m| first.contains(m.as_str()))? }
        };
        let module = self.ready.remove(at)?;
        let node = self.node_mut(&module);
        node.state = State::Loading;
        let path = node.entry.as_ref().and_then(|e| e.path.clone()).unwrap_or_default();
        let in_image = node.entry.as_ref().is_some_and(|e| e.in_image);
        Some(Job { module, path, in_image })
    }

    /// Record the result of a job; returns the modules this outcome skips.
    pub fn finish(&mut self, module: &str, result: Result<(), Failure>) -> Vec<Note> {
        if let Some(node) = self.nodes.get_mut(module) {
            node.state = match result {
                Ok(()) => State::Loaded,
                Err(why) => State::Failed(why),
            };
        }
        self.promote()
    }

    /// Whether anything is still waiting, queued or loading.
    pub fn busy(&self) -> bool {
        self.nodes.values().any(|n| matches!(n.state, State::Waiting | State::Ready | State::Loading))
    }

    pub fn state(&self, module: &str) -> Option<&State> {
        self.nodes.get(&modules_db::normalize_name(module)).map(|n| &n.state)
    }

    /// Record `module` as already in the kernel (loaded by someone else): it is never
    /// loaded, and what needs it may start. Only for a module the plan does not know yet.
    pub fn mark_present(&mut self, module: &str) {
        let name = modules_db::normalize_name(module);
        self.nodes.entry(name).or_insert(Node { entry: None, state: State::Loaded, needs: Vec::new(), first: false });
    }

    /// The modules that failed or were skipped, by name, with why.
    pub fn failed(&self) -> Vec<(&str, &dyn std::error::Error)> {
        self.nodes.iter().filter_map(|(k, n)| Some((k.as_str(), n.state.why()?))).collect()
    }

    /// The modules waiting for the root image, by name.
    pub fn deferred(&self) -> Vec<&str> {
        self.nodes.iter().filter(|(_, n)| n.state == State::Deferred).map(|(k, _)| k.as_str()).collect()
    }

    /// Every job of the plan in an order that loads each module after what it needs,
    /// one at a time, as if each load succeeded: for loads run outside the coldplug
    /// (see [`super::detached`]).
    pub fn into_order(mut self) -> Vec<Job> {
        let mut order = Vec::new();
        while let Some(job) = self.next_job() {
            self.finish(&job.module, Ok(()));
            order.push(job);
        }
        order
    }

    /// Loaded by us or built in.
    pub fn is_present(&self, module: &str) -> bool {
        self.state(module).is_some_and(State::is_present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::index::fake::FakeIndex;

    fn einval() -> Failure {
        Failure::load(io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error()))
    }

    /// Drive the plan sequentially: every job succeeds except those in `fail`;
    /// returns the load order in rounds (modules startable together share a round).
    fn run(plan: &mut Plan, fail: &[&str]) -> Vec<Vec<String>> {
        let mut rounds = Vec::new();
        loop {
            let mut round = Vec::new();
            while let Some(job) = plan.next_job() {
                round.push(job.module);
            }
            if round.is_empty() {
                return rounds;
            }
            for m in &round {
                let result = if fail.contains(&m.as_str()) { Err(einval()) } else { Ok(()) };
                plan.finish(m, result);
            }
            rounds.push(round);
        }
    }

    fn virtio_index() -> FakeIndex {
        let mut idx = FakeIndex::default();
        idx.add("virtio", &[], &[]);
        idx.add("virtio_ring", &[], &[]);
        idx.add("virtio_pci_modern_dev", &[], &[]);
        idx.add("virtio_pci_legacy_dev", &[], &[]);
        idx.add(
            "virtio_pci",
            &["virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev"],
            &["pci:v00001AF4d*"],
        );
        idx.add("failover", &[], &[]);
        idx.add("net_failover", &["failover"], &[]);
        idx.add("virtio_net", &["net_failover", "virtio", "virtio_ring"], &["virtio:d00000001v*"]);
        idx
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_load_first_and_independent_ones_together() {
        let idx = virtio_index();
        let mut plan = Plan::new();
        plan.request("virtio_pci", &idx);
        let rounds = run(&mut plan, &[]);
        assert_eq!(
            rounds,
            [
                strings(&["virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring"]),
                strings(&["virtio_pci"])
            ]
        );
        assert!(!plan.busy());
        assert!(plan.is_present("virtio-pci"));
    }

    #[test]
    fn modules_of_the_image_and_what_needs_them_wait_for_the_image_without_holding_the_settle() {
        let mut idx = virtio_index();
        idx.add_image("libahci", &[], &[]);
        idx.add_image("ahci", &["libahci"], &[]);
        // In the archive, but needing a module of the image: it waits too.
        idx.add("ahci_quirks", &["ahci"], &[]);
        let mut plan = Plan::new();
        plan.request("ahci_quirks", &idx);
        plan.request("virtio_net", &idx);
        let loaded: Vec<String> = run(&mut plan, &[]).concat();
        assert!(!loaded.iter().any(|m| m.contains("ahci")), "{loaded:?}");
        assert!(!plan.busy(), "deferred modules do not hold the settle");
        assert_eq!(plan.deferred(), ["ahci", "ahci_quirks"], "the image loads the dependencies with them");
        assert!(plan.failed().is_empty(), "deferred is no failure");

        let mut plan = Plan::with_image(true);
        plan.request("ahci_quirks", &idx);
        let jobs = [plan.next_job().unwrap()];
        assert_eq!(jobs[0], Job { module: "libahci".into(), path: "kernel/drivers/libahci.ko".into(), in_image: true });
        plan.finish("libahci", Ok(()));
        assert_eq!(run(&mut plan, &[]), [strings(&["ahci"]), strings(&["ahci_quirks"])]);
    }

    #[test]
    fn already_known_modules_are_not_loaded_twice() {
        let idx = virtio_index();
        let mut plan = Plan::new();
        plan.request("virtio_pci", &idx);
        run(&mut plan, &[]);
        plan.request("virtio_net", &idx);
        assert_eq!(run(&mut plan, &[]), [strings(&["failover"]), strings(&["net_failover"]), strings(&["virtio_net"])]);
    }

    #[test]
    fn a_failed_dependency_skips_its_dependents_transitively() {
        let idx = virtio_index();
        let mut plan = Plan::new();
        plan.request("virtio_net", &idx);
        let mut skipped = Vec::new();
        while let Some(job) = plan.next_job() {
            let result = if job.module == "failover" { Err(einval()) } else { Ok(()) };
            skipped.extend(plan.finish(&job.module, result));
        }
        assert_eq!(plan.state("failover"), Some(&State::Failed(einval())));
        let reasons: Vec<(String, String)> =
            skipped.into_iter().map(|Note::Skipped { module, reason }| (module, reason.to_string())).collect();
        assert_eq!(
            reasons,
            [
                (
                    "net_failover".to_string(),
                    "it needs failover, and failover failed: Invalid argument (os error 22) \
                     (the kernel rejected the module or its options; see dmesg)"
                        .to_string()
                ),
                ("virtio_net".to_string(), "it needs net_failover, which was skipped".to_string()),
            ]
        );
        assert!(plan.is_present("virtio"));
        assert!(!plan.busy());
    }

    #[test]
    fn a_dependency_missing_from_the_archive_skips_at_request_time() {
        let mut idx = FakeIndex::default();
        idx.add("nfs", &["sunrpc"], &[]);
        let mut plan = Plan::new();
        let notes = plan.request("nfs", &idx);
        assert_eq!(
            notes,
            [Note::Skipped {
                module: "nfs".into(),
                reason: Skip::DependencyFailed { dependency: "sunrpc".into(), failure: Failure::NotInInitramfs }
            }]
        );
        assert_eq!(plan.next_job(), None);
    }

    #[test]
    fn modules_already_in_the_kernel_are_not_loaded_again() {
        let mut idx = FakeIndex::default();
        idx.add("sunrpc", &[], &[]);
        idx.add("lockd", &["sunrpc"], &[]);
        idx.add("nfs", &["sunrpc", "lockd"], &[]);
        let mut plan = Plan::new();
        plan.mark_present("sunrpc");
        plan.mark_present("lockd");
        assert!(plan.request("nfs", &idx).is_empty());
        assert_eq!(run(&mut plan, &[]), [vec!["nfs".to_string()]]);
        assert!(plan.is_present("sunrpc") && plan.is_present("nfs"));
    }

    #[test]
    fn builtin_modules_are_present_and_never_loaded() {
        let mut idx = FakeIndex::default();
        idx.add_builtin("virtio", &[]);
        idx.add("virtio_blk", &["virtio"], &[]);
        let mut plan = Plan::new();
        plan.request("virtio_blk", &idx);
        assert_eq!(run(&mut plan, &[]), [strings(&["virtio_blk"])]);
        assert_eq!(plan.state("virtio"), Some(&State::Builtin));
    }

    #[test]
    fn softdeps_order_pre_before_and_post_after() {
        let mut idx = FakeIndex::default();
        idx.add("crc32c_generic", &[], &[]);
        idx.add("extra", &[], &[]);
        let ext4 = idx.add("ext4", &[], &[]);
        ext4.softdep_pre = strings(&["crc32c_generic", "not_in_archive"]);
        ext4.softdep_post = strings(&["extra"]);
        let mut plan = Plan::new();
        assert_eq!(plan.request("ext4", &idx), []);
        assert_eq!(run(&mut plan, &[]), [strings(&["crc32c_generic"]), strings(&["ext4"]), strings(&["extra"])]);
    }

    #[test]
    fn a_failed_soft_dependency_does_not_block() {
        let mut idx = FakeIndex::default();
        idx.add("helper", &[], &[]);
        idx.add("main", &[], &[]).softdep_pre = strings(&["helper"]);
        let mut plan = Plan::new();
        plan.request("main", &idx);
        assert_eq!(run(&mut plan, &["helper"]), [strings(&["helper"]), strings(&["main"])]);
        assert!(plan.is_present("main"));
    }

    #[test]
    fn cycles_in_a_bad_database_do_not_deadlock() {
        let mut idx = FakeIndex::default();
        idx.add("a", &["b"], &[]);
        idx.add("b", &["a"], &[]);
        idx.add("c", &[], &[]).softdep_post = strings(&["d"]);
        idx.add("d", &[], &[]).softdep_pre = strings(&["c"]);
        idx.add("e", &[], &[]).softdep_post = strings(&["f"]);
        idx.add("f", &["e"], &[]);
        let mut plan = Plan::new();
        for m in ["a", "c", "d", "e"] {
            plan.request(m, &idx);
        }
        let loaded: usize = run(&mut plan, &[]).iter().map(Vec::len).sum();
        assert_eq!(loaded, 6);
        assert!(!plan.busy());
    }

    #[test]
    fn softdep_post_waits_even_when_requested_later() {
        let mut idx = FakeIndex::default();
        idx.add("late", &[], &[]);
        idx.add("first", &[], &[]).softdep_post = strings(&["late"]);
        let mut plan = Plan::new();
        plan.request("first", &idx);
        plan.request("late", &idx);
        assert_eq!(run(&mut plan, &[]), [strings(&["first"]), strings(&["late"])]);
    }

    fn ata_index() -> FakeIndex {
        let mut idx = virtio_index();
        idx.add("scsi_mod", &[], &[]);
        idx.add("libata", &["scsi_mod"], &[]);
        idx.add("ata_piix", &["libata"], &["pci:v00008086d00007010*"]);
        idx
    }

    #[test]
    fn network_path_modules_and_their_dependencies_load_before_all_others() {
        let idx = ata_index();
        let mut plan = Plan::new();
        // The IDE controller comes first in the scan, the NIC after it.
        plan.request("ata_piix", &idx);
        plan.request_first("virtio_pci", &idx);
        assert!(plan.first_pending());
        let rounds = run(&mut plan, &[]);
        assert_eq!(
            rounds,
            [
                strings(&["virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring"]),
                strings(&["virtio_pci"]),
                strings(&["scsi_mod"]),
                strings(&["libata"]),
                strings(&["ata_piix"]),
            ]
        );
        assert!(!plan.first_pending());
    }

    #[test]
    fn no_other_module_starts_while_a_network_path_load_is_running() {
        let idx = ata_index();
        let mut plan = Plan::new();
        plan.request_first("virtio_pci", &idx);
        plan.request("scsi_mod", &idx);
        let mut started = Vec::new();
        while let Some(job) = plan.next_job() {
            started.push(job.module);
        }
        assert_eq!(started, ["virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring"]);
        for m in &started {
            plan.finish(m, Ok(()));
        }
        assert_eq!(plan.next_job().map(|j| j.module).as_deref(), Some("virtio_pci"));
        assert_eq!(plan.next_job(), None, "scsi_mod waits while virtio_pci loads");
        assert_eq!(plan.pending(), 2);
        plan.finish(
            "virtio_pci",
            Err(Failure::load(io::Error::from_raw_os_error(rustix::io::Errno::NODEV.raw_os_error()))),
        );
        assert_eq!(plan.next_job().map(|j| j.module).as_deref(), Some("scsi_mod"), "a failure also ends the wait");
    }

    #[test]
    fn a_module_queued_without_priority_is_promoted_when_the_network_path_needs_it() {
        let idx = ata_index();
        let mut plan = Plan::new();
        plan.request("virtio", &idx);
        plan.request("scsi_mod", &idx);
        plan.request_first("virtio_net", &idx);
        let first_round: Vec<String> = std::iter::from_fn(|| plan.next_job().map(|j| j.module)).collect();
        assert_eq!(first_round, ["virtio", "failover", "virtio_ring"], "no deadlock, scsi_mod held back");
    }
}
