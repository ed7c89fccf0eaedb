//! What the hardware stage asks of the module database, as a small trait: the planning
//! and reporting logic is tested against [`fake::FakeIndex`], and the boot uses the
//! `modules-db` reader.

/// One module as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Normalised name.
    pub name: String,
    /// File relative to `lib/modules/VERSION`; `None` for a built-in driver.
    pub path: Option<String>,
    /// The file is in the root image's `lib/modules/VERSION`, not in the archive.
    pub in_image: bool,
    pub depends: Vec<String>,
    pub softdep_pre: Vec<String>,
    pub softdep_post: Vec<String>,
}

impl ModuleEntry {
    pub fn is_builtin(&self) -> bool {
        self.path.is_none()
    }
}

/// Queries on the module database of the initramfs.
pub trait ModuleIndex {
    /// Names of the modules (loadable or built-in) with an alias matching `modalias`.
    fn lookup(&self, modalias: &str) -> Vec<String>;
    /// The module called `name` (normalised), if the initramfs has it or it is built in.
    fn module(&self, name: &str) -> Option<ModuleEntry>;
    /// Modules of the kernel that would match `modalias` but were left out of the archive.
    fn hint(&self, modalias: &str) -> Vec<String>;
    fn pci_vendor_name(&self, vendor: u16) -> Option<String>;
    fn pci_device_name(&self, vendor: u16, device: u16) -> Option<String>;
}

/// The boot-time database written by mkinitramfs.
pub struct DbIndex<'a>(pub modules_db::Db<'a>);

impl DbIndex<'_> {
    fn names(&self, ids: impl Iterator<Item = modules_db::ModuleId>) -> Vec<String> {
        ids.filter_map(|id| self.0.module(id)).map(|m| m.name().to_string()).collect()
    }
}

impl ModuleIndex for DbIndex<'_> {
    fn lookup(&self, modalias: &str) -> Vec<String> {
        self.names(self.0.lookup(modalias).into_iter())
    }
    fn module(&self, name: &str) -> Option<ModuleEntry> {
        let m = self.0.module(self.0.find(name)?)?;
        Some(ModuleEntry {
            name: m.name().to_string(),
            path: (!m.is_builtin()).then(|| m.path().to_string()),
            in_image: m.in_image(),
            depends: self.names(m.depends()),
            softdep_pre: self.names(m.softdep_pre()),
            softdep_post: self.names(m.softdep_post()),
        })
    }
    fn hint(&self, modalias: &str) -> Vec<String> {
        self.0.hint(modalias).into_iter().map(str::to_string).collect()
    }
    fn pci_vendor_name(&self, vendor: u16) -> Option<String> {
        self.0.pci_vendor_name(vendor).map(str::to_string)
    }
    fn pci_device_name(&self, vendor: u16, device: u16) -> Option<String> {
        self.0.pci_device_name(vendor, device).map(str::to_string)
    }
}

/// An in-memory index for tests, with exact-or-`*`-suffix alias patterns.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeIndex {
        pub modules: BTreeMap<String, ModuleEntry>,
        /// (pattern, module); a pattern ending in `*` matches by prefix.
        pub aliases: Vec<(String, String)>,
        /// (pattern, module) of modules left out of the archive.
        pub hints: Vec<(String, String)>,
        pub vendors: BTreeMap<u16, String>,
        pub devices: BTreeMap<(u16, u16), String>,
    }

    fn matches(pattern: &str, modalias: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some(prefix) => modalias.starts_with(prefix),
            None => pattern == modalias,
        }
    }

    impl FakeIndex {
        /// Add a loadable module `name` with `depends`, matched by `aliases`.
        pub fn add(&mut self, name: &str, depends: &[&str], aliases: &[&str]) -> &mut ModuleEntry {
            for a in aliases {
                self.aliases.push((a.to_string(), name.to_string()));
            }
            self.modules.entry(name.to_string()).or_insert(ModuleEntry {
                name: name.to_string(),
                path: Some(format!("kernel/drivers/{name}.ko")),
                in_image: false,
                depends: depends.iter().map(|d| d.to_string()).collect(),
                softdep_pre: vec![],
                softdep_post: vec![],
            })
        }

        /// Add a module of the root image, loadable once the root is mounted.
        pub fn add_image(&mut self, name: &str, depends: &[&str], aliases: &[&str]) {
            self.add(name, depends, aliases).in_image = true;
        }

        pub fn add_builtin(&mut self, name: &str, aliases: &[&str]) {
            self.add(name, &[], aliases).path = None;
        }
    }

    impl ModuleIndex for FakeIndex {
        fn lookup(&self, modalias: &str) -> Vec<String> {
            let mut names: Vec<String> =
                self.aliases.iter().filter(|(p, _)| matches(p, modalias)).map(|(_, m)| m.clone()).collect();
            names.dedup();
            names
        }
        fn module(&self, name: &str) -> Option<ModuleEntry> {
            self.modules.get(name).cloned()
        }
        fn hint(&self, modalias: &str) -> Vec<String> {
            self.hints.iter().filter(|(p, _)| matches(p, modalias)).map(|(_, m)| m.clone()).collect()
        }
        fn pci_vendor_name(&self, vendor: u16) -> Option<String> {
            self.vendors.get(&vendor).cloned()
        }
        fn pci_device_name(&self, vendor: u16, device: u16) -> Option<String> {
            self.devices.get(&(vendor, device)).cloned()
        }
    }
}
