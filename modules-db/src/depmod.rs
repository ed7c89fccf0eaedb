//! Parsers for the text files depmod and the kernel build leave in
//! `lib/modules/VERSION`. Each returns the 1-based number of the first line it
//! cannot read, so the caller can name file and line.

use std::collections::BTreeMap;

use crate::normalize_name;

/// The module name a path stands for: its file name without `.ko[.xz|.zst]`, normalised.
pub fn name_from_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    crate::modinfo::split_module_file_name(file).map(|(stem, _)| normalize_name(stem))
}

fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `modules.dep`: `path: dep-path dep-path ...` (all dependencies, in load order).
pub fn parse_modules_dep(text: &str) -> Result<Vec<(String, Vec<String>)>, usize> {
    content_lines(text)
        .map(|(n, line)| {
            let (path, deps) = line.split_once(':').ok_or(n)?;
            name_from_path(path.trim()).ok_or(n)?;
            Ok((path.trim().to_string(), deps.split_ascii_whitespace().map(str::to_string).collect()))
        })
        .collect()
}

/// `modules.alias`: `alias PATTERN MODULE`.
pub fn parse_modules_alias(text: &str) -> Result<Vec<(String, String)>, usize> {
    content_lines(text)
        .map(|(n, line)| {
            let mut words = line.split_ascii_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => Ok((pattern.to_string(), normalize_name(module))),
                _ => Err(n),
            }
        })
        .collect()
}

/// A module's soft dependencies: (module, pre, post).
pub type Softdep = (String, Vec<String>, Vec<String>);

/// `modules.softdep`: `softdep MODULE pre: a b post: c`.
pub fn parse_modules_softdep(text: &str) -> Result<Vec<Softdep>, usize> {
    content_lines(text)
        .map(|(n, line)| {
            let rest = line.strip_prefix("softdep").filter(|r| r.starts_with(char::is_whitespace)).ok_or(n)?;
            let rest = rest.trim_start();
            let (module, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if module.is_empty() {
                return Err(n);
            }
            let (pre, post) = crate::modinfo::parse_softdep(value);
            Ok((normalize_name(module), pre, post))
        })
        .collect()
}

/// `modules.builtin`: one path per built-in module.
pub fn parse_modules_builtin(text: &str) -> Result<Vec<String>, usize> {
    content_lines(text).map(|(n, line)| name_from_path(line).ok_or(n)).collect()
}

/// `modules.builtin.modinfo`: NUL-separated `module.key=value`. Returns every
/// built-in object named there with its aliases (possibly none).
pub fn parse_builtin_modinfo(bytes: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in crate::modinfo::modinfo_pairs(bytes) {
        let Some((module, field)) = key.split_once('.') else { continue };
        let aliases = out.entry(normalize_name(module)).or_default();
        if field == "alias" {
            aliases.push(value.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_dep_lines_give_path_and_dependency_paths() {
        let deps = parse_modules_dep("# c\nkernel/a/x-y.ko: kernel/b.ko.xz kernel/c.ko\nkernel/d.ko:\n").unwrap();
        assert_eq!(deps[0].0, "kernel/a/x-y.ko");
        assert_eq!(deps[0].1, ["kernel/b.ko.xz", "kernel/c.ko"]);
        assert!(deps[1].1.is_empty());
        assert_eq!(name_from_path(&deps[0].0).as_deref(), Some("x_y"));
        assert_eq!(parse_modules_dep("ok.ko:\nno colon here\n"), Err(2));
    }

    #[test]
    fn modules_alias_lines_need_exactly_three_words() {
        let a = parse_modules_alias("alias pci:v*d* e1000-x\n").unwrap();
        assert_eq!(a, [("pci:v*d*".to_string(), "e1000_x".to_string())]);
        assert_eq!(parse_modules_alias("alias only-two\n"), Err(1));
    }

    #[test]
    fn modules_softdep_lines_are_split_into_pre_and_post() {
        let s = parse_modules_softdep("softdep ab-c pre: x y post: z\n").unwrap();
        assert_eq!(s, [("ab_c".to_string(), vec!["x".to_string(), "y".to_string()], vec!["z".to_string()])]);
        assert_eq!(parse_modules_softdep("softdepx a\n"), Err(1));
    }

    #[test]
    fn builtin_modinfo_collects_aliases_per_module() {
        let b = parse_builtin_modinfo(b"rtc_cmos.alias=platform:rtc_cmos\0rtc_cmos.license=GPL\0mm-trace.parm=x:y\0");
        assert_eq!(b["rtc_cmos"], ["platform:rtc_cmos"]);
        assert!(b["mm_trace"].is_empty());
    }
}
