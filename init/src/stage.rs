//! The boot's stages, in order: the one list from which the stage names, the order of
//! `run()`, the timings of boot.json and the break points of `diskless.break=` derive.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One stage of the boot (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Early,
    Hardware,
    Network,
    Identity,
    Root,
    Modules,
    Local,
    Handoff,
}

impl Stage {
    /// Every stage in boot order.
    pub const ALL: [Stage; 8] = [
        Stage::Early,
        Stage::Hardware,
        Stage::Network,
        Stage::Identity,
        Stage::Root,
        Stage::Modules,
        Stage::Local,
        Stage::Handoff,
    ];

    /// The name used on the console, in boot.json and by `diskless.break=`.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Early => "early",
            Stage::Hardware => "hardware",
            Stage::Network => "network",
            Stage::Identity => "identity",
            Stage::Root => "root",
            Stage::Modules => "modules",
            Stage::Local => "local",
            Stage::Handoff => "handoff",
        }
    }

    /// The stage called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// "early, hardware, …": for messages that list the valid names.
    pub fn names() -> String {
        Stage::ALL.map(Stage::name).join(", ")
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_boot_order() {
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(Stage::from_name(stage.name()), Some(stage));
            assert!(i == 0 || Stage::ALL[i - 1] < stage, "ALL is in boot order");
        }
        assert_eq!(Stage::names(), "early, hardware, network, identity, root, modules, local, handoff");
        assert_eq!(Stage::from_name("netwrok"), None);
        assert_eq!(serde_json::to_string(&Stage::Handoff).unwrap(), "\"handoff\"");
    }
}
