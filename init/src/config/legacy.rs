//! The configuration file of the old shell scripts, `diskless.conf`: `DIRS="/etc /var"`
//! and `LOCALDIR=local` lines, read only when the image has no TOML file. Only the
//! shell that those files use is understood; anything that would need a shell to
//! evaluate is refused, line by line.

use std::path::Path;

use super::keys::{Input, find_key};
use super::{Config, ConfigWarning, Source};

/// Variables of the legacy `diskless.conf` and the key each one sets. Lists in the
/// legacy file are separated by white space (`DIRS="/etc /var"`).
pub(super) const LEGACY_VARIABLES: &[(&str, &str)] = &[("DIRS", "dirs"), ("LOCALDIR", "localdir")];

/// Why a line of the legacy file is not a plain `VAR=value` assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyLineError {
    /// A reason read back from a boot record, where it is kept as its text.
    #[error("{0}")]
    Recorded(String),
    #[error("not a VAR=value assignment")]
    NotAnAssignment,
    #[error("{name:?} is not a shell variable name")]
    VariableName { name: String },
    #[error("unterminated single quote")]
    UnterminatedSingleQuote,
    #[error("unterminated double quote")]
    UnterminatedDoubleQuote,
    #[error("variable or command substitution ($, `) is not supported: write the value out")]
    Substitution,
    #[error("line continuation (trailing \\) is not supported")]
    LineContinuation,
    #[error("shell syntax {character:?} is not supported: only VAR=value")]
    ShellSyntax { character: char },
    #[error("unquoted white space in the value: put the value in quotes")]
    UnquotedWhiteSpace,
}

fn split_spaces(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl Config {
    /// Applies the legacy shell-style file read from `path`.
    pub fn apply_legacy(&mut self, text: &str, path: &Path) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        self.file = Some(path.to_path_buf());
        let source = Source::File(path.to_path_buf());
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let (name, value) = match parse_legacy_line(raw) {
                Ok(Some(assignment)) => assignment,
                Ok(None) => continue,
                Err(reason) => {
                    warnings.push(ConfigWarning::ParseLegacyLine {
                        path: path.to_path_buf(),
                        line,
                        text: raw.trim().to_string(),
                        reason,
                    });
                    continue;
                }
            };
            let key = LEGACY_VARIABLES.iter().find(|(v, _)| *v == name).and_then(|(_, k)| find_key(k));
            match key {
                Some(key) => {
                    self.apply_key(key, Input::Text { text: &value, split: split_spaces }, &source, &mut warnings);
                }
                None => warnings.push(ConfigWarning::UnknownLegacyVariable { path: path.to_path_buf(), line, name }),
            }
        }
        warnings
    }
}

/// One line of the legacy file: `None` for blank and comment lines, else the variable
/// and its value with shell quoting removed.
fn parse_legacy_line(line: &str) -> Result<Option<(String, String)>, LegacyLineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_whitespace()) => rest.trim_start(),
        _ => line,
    };
    let Some((name, value)) = line.split_once('=') else {
        return Err(LegacyLineError::NotAnAssignment);
    };
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(LegacyLineError::VariableName { name: name.to_string() });
    }
    Ok(Some((name.to_string(), shell_word(value)?)))
}

/// The value of a shell word: `'...'` literal, `"..."` with `\"`, `\\`, `\$` and
/// `` \` `` escapes, `\x` outside quotes; a `#` after white space starts a comment.
fn shell_word(text: &str) -> Result<String, LegacyLineError> {
    let mut value = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(LegacyLineError::UnterminatedSingleQuote),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err(LegacyLineError::UnterminatedDoubleQuote),
                    },
                    Some('$' | '`') => return Err(LegacyLineError::Substitution),
                    Some(c) => value.push(c),
                    None => return Err(LegacyLineError::UnterminatedDoubleQuote),
                }
            },
            '\\' => match chars.next() {
                Some(c) => value.push(c),
                None => return Err(LegacyLineError::LineContinuation),
            },
            '$' | '`' => return Err(LegacyLineError::Substitution),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => return Err(LegacyLineError::ShellSyntax { character: c }),
            c if c.is_whitespace() => {
                let rest = chars.as_str().trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err(LegacyLineError::UnquotedWhiteSpace);
            }
            c => value.push(c),
        }
    }
    Ok(value)
}

/// boot.json keeps the reason as its text; read back, it stays text.
impl<'de> serde::Deserialize<'de> for LegacyLineError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(LegacyLineError::Recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{legacy, paths};

    #[test]
    fn legacy_file_sets_dirs_and_localdir() {
        let (c, w) =
            legacy("# diskless settings\n\nDIRS=\"/etc /var /srv\"   # the writable dirs\nexport LOCALDIR='site'\n");
        assert_eq!(w, []);
        assert_eq!(c.dirs, paths(&["/etc", "/var", "/srv"]));
        assert_eq!(c.localdir, "site");
        assert_eq!(c.file.as_deref(), Some(Path::new("/img/etc/diskless/diskless.conf")));
    }

    #[test]
    fn legacy_unquoted_and_escaped_values() {
        let (c, w) = legacy("LOCALDIR=lo\\cal\nDIRS=/etc\n");
        assert_eq!(w, []);
        assert_eq!(c.localdir, "local");
        assert_eq!(c.dirs, paths(&["/etc"]));
        assert_eq!(shell_word(r#""a\"b\\c\n""#), Ok("a\"b\\c\\n".into()));
        assert_eq!(shell_word("'a'\"b\"c"), Ok("abc".into()));
    }

    #[test]
    fn legacy_unknown_variables_are_warned_with_their_line() {
        let (c, w) = legacy("DIRS=\"/etc\"\nNFSROOT=server:/x\n");
        assert_eq!(c.dirs, paths(&["/etc"]));
        assert!(matches!(&w[..], [ConfigWarning::UnknownLegacyVariable { line: 2, name, .. }] if name == "NFSROOT"));
        assert!(w[0].to_string().contains("line 2: unknown variable NFSROOT"));
    }

    #[test]
    fn legacy_shell_constructs_are_refused_per_line() {
        let (c, w) = legacy(
            "DIRS=\"$HOME\"\nLOCALDIR='x\nDIRS=/etc /var\necho hi\n1X=2\nDIRS=`pwd`\nLOCALDIR=a;b\nLOCALDIR=\"ok\"\n",
        );
        assert_eq!(c.localdir, "ok");
        assert_eq!(c.dirs, Config::default().dirs);
        let lines: Vec<usize> = w
            .iter()
            .map(|w| match w {
                ConfigWarning::ParseLegacyLine { line, .. } => *line,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            w[6].to_string(),
            "/img/etc/diskless/diskless.conf line 7: \"LOCALDIR=a;b\": shell syntax ';' is not supported: only \
             VAR=value; line ignored"
        );
    }

    #[test]
    fn legacy_bad_value_is_a_bad_value() {
        let (c, w) = legacy("LOCALDIR=\"a/b\"\n");
        assert_eq!(c.localdir, "local");
        assert!(matches!(&w[..], [ConfigWarning::BadValue { key, .. }] if key == "localdir"));
    }
}
