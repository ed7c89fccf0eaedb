//! Text from the network, made safe to print: the one escaping rule of the boot.
//!
//! A DHCP option, a PTR name or a root path may carry any byte. Printed raw, a NUL
//! or an escape sequence (`ESC [2J` clears the screen) acts on the admin's terminal
//! instead of being read, and a line feed starts a line that looks like the boot's own.
//!
//! The rule ([`Escaped`]): every control character, i.e. C0 (U+0000–U+001F), DEL
//! (U+007F) and C1 (U+0080–U+009F), is written as Rust writes it in a string literal:
//! `\0`, `\t`, `\n`, `\r`, and `\u{hex}` for the others (`\u{1b}`, `\u{8}`, `\u{7f}`,
//! `\u{9b}`). Everything else, non-ASCII letters included, is written as it is.
//! This is the form `{:?}` gives a string's controls too, so messages that quote an
//! input with `{:?}` show the same escapes.
//!
//! Bytes that are not UTF-8 cannot even be held in a `String`; [`lossy`] turns each
//! into `\xNN` (a byte-string escape) instead of a silent U+FFFD, so the console
//! shows which byte came.
//!
//! Backslashes are not escaped: a line without control characters prints unchanged
//! (the QEMU tests match console lines), at the price that a name which holds the
//! four characters `\x00` reads like one that held a NUL. The escapes are for people
//! to read, not to be parsed back; every name check rejects both anyway.

use std::fmt;

/// Displays a string with its control characters escaped (the rule above).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(char::is_control) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", c.escape_debug())?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `text` with the control characters of each line escaped, its line feeds kept: for
/// a report printed to a terminal whose values came from the network (`diskless
/// status` prints boot.json, whose strings a DHCP server chose).
pub fn escape_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = line.strip_suffix('\n').map_or((line, ""), |body| (body, "\n"));
        out.push_str(&Escaped(body).to_string());
        out.push_str(end);
    }
    out
}

/// Decodes bytes from a packet: UTF-8 as it is, every byte that is not part of
/// valid UTF-8 as `\xNN`.
pub fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        Escaped(s).to_string()
    }

    #[test]
    fn a_report_keeps_its_lines_and_loses_the_controls_inside_them() {
        assert_eq!(
            escape_lines("root  10.0.0.1:/x\u{1b}[2J\nboot  a\0b\n"),
            "root  10.0.0.1:/x\\u{1b}[2J\nboot  a\\0b\n"
        );
        assert_eq!(escape_lines("no final line feed"), "no final line feed");
    }

    #[test]
    fn controls_are_escaped_as_rust_string_escapes() {
        assert_eq!(esc("a\0b"), r"a\0b");
        assert_eq!(esc("\x1b[2J\x1b[31mred"), r"\u{1b}[2J\u{1b}[31mred");
        assert_eq!(esc("back\x08\x08"), r"back\u{8}\u{8}");
        assert_eq!(esc("del\x7f"), r"del\u{7f}");
        assert_eq!(esc("csi\u{9b}2J"), r"csi\u{9b}2J");
        assert_eq!(esc("\u{80}\u{9f}"), r"\u{80}\u{9f}");
        assert_eq!(esc("one\ntwo\r\tthree"), r"one\ntwo\r\tthree");
    }

    #[test]
    fn printable_text_is_unchanged() {
        for s in ["", "lab3-12.example.edu", "10.77.0.1:/export,vers=3", r"back\slash \x00", "Grüße, 東京 ½ \u{a0}"]
        {
            assert_eq!(esc(s), s);
        }
    }

    #[test]
    fn invalid_utf8_becomes_visible_byte_escapes() {
        assert_eq!(lossy(b"plain"), "plain");
        assert_eq!(lossy(b"bad\xff\xfeutf8"), r"bad\xff\xfeutf8");
        assert_eq!(lossy("Grüße".as_bytes()), "Grüße");
        // A truncated sequence: the lone lead byte, then the text goes on.
        assert_eq!(lossy(b"a\xc3b"), r"a\xc3b");
        // Controls are kept for Escaped to show; lossy only deals with the encoding.
        assert_eq!(lossy(b"\x00\x1b"), "\0\x1b");
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_no_control_characters(s in "\\PC*|[\\x00-\\x{9f}]{0,40}") {
            let out = esc(&s);
            proptest::prop_assert!(!out.chars().any(char::is_control), "{out:?}");
        }

        #[test]
        fn lossy_keeps_valid_utf8_and_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let out = lossy(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                proptest::prop_assert_eq!(out, s);
            } else {
                proptest::prop_assert!(out.contains("\\x"));
            }
        }
    }
}
