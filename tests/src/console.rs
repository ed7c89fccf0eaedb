//! A VM's saved serial console and assertions on its lines.
//!
//! Patterns are regular expressions matched against each line anywhere (not anchored),
//! because a line the init also sends to `/dev/kmsg` can appear with a kernel
//! timestamp in front. Every failed assertion names the log file and shows its tail.

use std::ops::Index;
use std::path::{Path, PathBuf};

use regex::Regex;

/// The console output of one VM run.
#[derive(Clone, Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    text: String,
}

/// One line that matched a pattern, with its capture groups. `m[0]` is the whole
/// match, `m[1]` the first group, `m["name"]` a named group; an unmatched optional
/// group reads as "".
#[derive(Clone, Debug)]
pub struct LineMatch {
    /// The whole line.
    pub line: String,
    groups: Vec<Option<String>>,
    names: Vec<Option<String>>,
}

impl LineMatch {
    /// Group `i`, or `None` if it did not participate.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.groups.get(i).and_then(|g| g.as_deref())
    }

    /// Named group `name`, or `None` if it did not participate.
    pub fn name(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| n.as_deref() == Some(name))?;
        self.get(i)
    }
}

impl Index<usize> for LineMatch {
    type Output = str;
    fn index(&self, i: usize) -> &str {
        assert!(i < self.groups.len(), "no capture group {i} in match of line {:?}", self.line);
        self.get(i).unwrap_or("")
    }
}

impl Index<&str> for LineMatch {
    type Output = str;
    fn index(&self, name: &str) -> &str {
        assert!(
            self.names.iter().any(|n| n.as_deref() == Some(name)),
            "no capture group named {name} in match of line {:?}",
            self.line
        );
        self.name(name).unwrap_or("")
    }
}

impl ConsoleLog {
    /// Reads a saved log; a missing file reads as empty (QEMU never started the guest).
    pub fn read(path: &Path) -> ConsoleLog {
        let bytes = std::fs::read(path).unwrap_or_default();
        // Serial output carries \r\n and may hold stray bytes from early boot.
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        ConsoleLog { path: path.to_path_buf(), text }
    }

    /// A log from text, for testing assertions without a VM.
    pub fn from_text(path: &Path, text: &str) -> ConsoleLog {
        ConsoleLog { path: path.to_path_buf(), text: text.replace('\r', "") }
    }

    /// Where the log is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole console text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The console lines.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines()
    }

    /// The first line matching `pattern`.
    pub fn find_line(&self, pattern: &str) -> Option<LineMatch> {
        self.find_all(pattern).into_iter().next()
    }

    /// Every line matching `pattern`, in order.
    pub fn find_all(&self, pattern: &str) -> Vec<LineMatch> {
        let re = self.compile(pattern);
        let names: Vec<Option<String>> = re.capture_names().map(|n| n.map(str::to_string)).collect();
        self.lines()
            .filter_map(|line| {
                re.captures(line).map(|c| LineMatch {
                    line: line.to_string(),
                    groups: c.iter().map(|g| g.map(|m| m.as_str().to_string())).collect(),
                    names: names.clone(),
                })
            })
            .collect()
    }

    /// The first line matching `pattern`; panics naming the log if there is none.
    #[track_caller]
    pub fn assert_line(&self, pattern: &str) -> LineMatch {
        match self.find_line(pattern) {
            Some(m) => m,
            None => panic!("console log {} has no line matching /{pattern}/\n{}", self.path.display(), self.tail(40)),
        }
    }

    /// Panics naming the log and the offending line if any line matches `pattern`.
    #[track_caller]
    pub fn assert_no_line(&self, pattern: &str) {
        if let Some(m) = self.find_line(pattern) {
            panic!(
                "console log {} has a line matching /{pattern}/: {:?}\n{}",
                self.path.display(),
                m.line,
                self.tail(40)
            );
        }
    }

    /// The last `n` lines, framed, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.lines().collect();
        let start = lines.len().saturating_sub(n);
        format!(
            "--- last {} lines of {} ---\n{}\n---",
            lines.len() - start,
            self.path.display(),
            lines[start..].join("\n")
        )
    }

    #[track_caller]
    fn compile(&self, pattern: &str) -> Regex {
        Regex::new(pattern)
            .unwrap_or_else(|e| panic!("bad pattern /{pattern}/ for console log {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> ConsoleLog {
        ConsoleLog::from_text(
            Path::new("/logs/x.log"),
            "[    3.1] Run /init as init process\r\ndiskless: loaded e1000 in 12 ms\r\n[ 4.0] diskless: interface eth0 52:54:00:12:34:56 driver e1000\n",
        )
    }

    #[test]
    fn assert_line_returns_captures_and_matches_after_timestamp() {
        let m = log().assert_line(r"diskless: interface (\S+) (?P<mac>\S+) driver (\S+)$");
        assert_eq!(&m[1], "eth0");
        assert_eq!(&m["mac"], "52:54:00:12:34:56");
        assert_eq!(&m[3], "e1000");
    }

    #[test]
    fn assert_line_failure_names_log_path() {
        let err = std::panic::catch_unwind(|| log().assert_line("powering off")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("/logs/x.log") && msg.contains("loaded e1000"), "{msg}");
    }

    #[test]
    fn assert_no_line_panics_on_match_and_passes_otherwise() {
        log().assert_no_line("ERROR");
        assert!(std::panic::catch_unwind(|| log().assert_no_line("loaded e1000")).is_err());
    }

    #[test]
    fn find_all_keeps_order() {
        let all = log().find_all(r"diskless: (\w+)");
        let words: Vec<&str> = all.iter().map(|m| &m[1]).collect();
        assert_eq!(words, ["loaded", "interface"]);
    }
}
