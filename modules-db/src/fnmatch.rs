//! Alias matching with the semantics kmod uses for `modules.alias`: glibc
//! `fnmatch(pattern, text, 0)` — `*`, `?`, `[...]` with ranges and `!`/`^`
//! negation, backslash escapes, and no special meaning for `/` or a leading `.`.
//! Matching is byte-wise, as in the C locale.

/// Characters that end the literal prefix of a pattern.
const SPECIAL: &[u8] = b"*?[\\";

/// The part of `pattern` before its first wildcard or escape: every text the
/// pattern matches starts with it.
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.bytes().position(|b| SPECIAL.contains(&b)).unwrap_or(pattern.len());
    &pattern[..end]
}

/// Normalises an alias (pattern or modalias) as kmod does before matching:
/// `-` becomes `_` outside bracket expressions. `None` for an unmatched bracket,
/// which kmod rejects (depmod leaves such patterns out of its index).
pub fn normalize_alias(alias: &str) -> Option<String> {
    let mut out = String::with_capacity(alias.len());
    let mut in_bracket = false;
    for c in alias.chars() {
        match c {
            '[' if !in_bracket => {
                in_bracket = true;
                out.push(c);
            }
            ']' if in_bracket => {
                in_bracket = false;
                out.push(c);
            }
            ']' => return None,
            '-' if !in_bracket => out.push('_'),
            _ => out.push(c),
        }
    }
    (!in_bracket).then_some(out)
}

/// Does `text` match the glob `pattern`?
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    fnmatch_bytes(pattern.as_bytes(), text.as_bytes())
}

/// One step of the pattern: what it consumes from the text.
enum Token {
    Star,
    /// Matches one byte for which the predicate over the bracket holds.
    One(OneByte),
}

enum OneByte {
    Any,
    Literal(u8),
    /// A bracket expression `pattern[start..end]` (without the brackets and the negation mark).
    Set {
        start: usize,
        end: usize,
        negated: bool,
    },
}

/// Reads the token at `p`, returning it and the index after it.
fn token(pattern: &[u8], p: usize) -> (Token, usize) {
    match pattern[p] {
        b'*' => (Token::Star, p + 1),
        b'?' => (Token::One(OneByte::Any), p + 1),
        b'\\' if p + 1 < pattern.len() => (Token::One(OneByte::Literal(pattern[p + 1])), p + 2),
        b'[' => match bracket_end(pattern, p) {
            Some((start, end, negated)) => (Token::One(OneByte::Set { start, end, negated }), end + 1),
            // An unterminated bracket is an ordinary character, as in glibc.
            None => (Token::One(OneByte::Literal(b'[')), p + 1),
        },
        b => (Token::One(OneByte::Literal(b)), p + 1),
    }
}

/// For a `[` at `open`, finds the body of the bracket expression and its closing `]`.
/// A `]` right after `[`, `[!` or `[^` is a member, not the end.
fn bracket_end(pattern: &[u8], open: usize) -> Option<(usize, usize, bool)> {
    let mut i = open + 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let start = i;
    if pattern.get(i) == Some(&b']') {
        i += 1;
    }
    while i < pattern.len() {
        match pattern[i] {
            b']' => return Some((start, i, negated)),
            b'\\' => i += 2,
            b'[' if pattern.get(i + 1) == Some(&b':') => {
                // A character class `[:name:]` may contain `]` only at its end.
                let rest = &pattern[i + 2..];
                match rest.windows(2).position(|w| w == b":]") {
                    Some(k) => i += 2 + k + 2,
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether a byte belongs to a character class.
type ClassTest = fn(&u8) -> bool;

/// Named classes of bracket expressions (`[[:digit:]]`).
const CLASSES: &[(&str, ClassTest)] = &[
    ("alnum", u8::is_ascii_alphanumeric),
    ("alpha", u8::is_ascii_alphabetic),
    ("blank", |b| *b == b' ' || *b == b'\t'),
    ("cntrl", u8::is_ascii_control),
    ("digit", u8::is_ascii_digit),
    ("graph", u8::is_ascii_graphic),
    ("lower", u8::is_ascii_lowercase),
    ("print", |b| b.is_ascii_graphic() || *b == b' '),
    ("punct", u8::is_ascii_punctuation),
    ("space", u8::is_ascii_whitespace),
    ("upper", u8::is_ascii_uppercase),
    ("xdigit", u8::is_ascii_hexdigit),
];

fn set_contains(body: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < body.len() {
        // The first member of a set may be a literal `]`.
        let (lo, next) = match body[i] {
            b'\\' if i + 1 < body.len() => (body[i + 1], i + 2),
            b'[' if body.get(i + 1) == Some(&b':') => {
                let rest = &body[i + 2..];
                if let Some(k) = rest.windows(2).position(|w| w == b":]") {
                    let name = &rest[..k];
                    if CLASSES.iter().any(|(n, f)| n.as_bytes() == name && f(&c)) {
                        return true;
                    }
                    i += 2 + k + 2;
                    continue;
                }
                (b'[', i + 1)
            }
            b => (b, i + 1),
        };
        // A range `a-z`; a `-` first or last is a literal member.
        if body.get(next) == Some(&b'-') && next + 1 < body.len() {
            let (hi, after) = match body[next + 1] {
                b'\\' if next + 2 < body.len() => (body[next + 2], next + 3),
                b => (b, next + 2),
            };
            if lo <= c && c <= hi {
                return true;
            }
            i = after;
        } else {
            if lo == c {
                return true;
            }
            i = next;
        }
    }
    false
}

fn one_matches(pattern: &[u8], one: &OneByte, c: u8) -> bool {
    match *one {
        OneByte::Any => true,
        OneByte::Literal(l) => l == c,
        OneByte::Set { start, end, negated } => set_contains(&pattern[start..end], c) != negated,
    }
}

/// Greedy matching with backtracking to the most recent `*` only: a later `*`
/// can absorb anything an earlier one would, so this is complete and linear
/// in practice.
fn fnmatch_bytes(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            let (tok, next) = token(pattern, p);
            match tok {
                Token::Star => {
                    resume = Some((next, t));
                    p = next;
                    continue;
                }
                Token::One(one) => {
                    if t < text.len() && one_matches(pattern, &one, text[t]) {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `*` take one more byte, if there is one.
        match resume {
            Some((star_next, star_t)) if star_t < text.len() => {
                resume = Some((star_next, star_t + 1));
                p = star_next;
                t = star_t + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_question_marks_match_exactly_one_byte_each() {
        assert!(fnmatch("abc", "abc"));
        assert!(!fnmatch("abc", "abcd"));
        assert!(!fnmatch("abcd", "abc"));
        assert!(fnmatch("a?c", "abc"));
        assert!(!fnmatch("a?c", "ac"));
        assert!(fnmatch("", ""));
        assert!(!fnmatch("", "a"));
        assert!(!fnmatch("?", ""));
    }

    #[test]
    fn stars_match_any_run_including_empty_and_slashes() {
        assert!(fnmatch("*", ""));
        assert!(fnmatch("*", "any/thing"));
        assert!(fnmatch("a*c", "ac"));
        assert!(fnmatch("a*c", "abbbc"));
        assert!(!fnmatch("a*c", "abbbd"));
        assert!(fnmatch("a*b*c", "axxbyyc"));
        assert!(fnmatch("a*b*c", "abcbc"));
        assert!(!fnmatch("a*b*c", "acb"));
        assert!(fnmatch("**a", "a"));
        assert!(fnmatch("*.ko", ".ko"));
        assert!(fnmatch("a/*", "a/b/c"));
    }

    #[test]
    fn pci_alias_patterns_match_real_modaliases() {
        let pattern = "pci:v00008086d0000100Esv*sd*bc*sc*i*";
        assert!(fnmatch(pattern, "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"));
        assert!(!fnmatch(pattern, "pci:v00008086d0000100Fsv00001AF4sd00001100bc02sc00i00"));
        assert!(fnmatch("pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"));
    }

    #[test]
    fn brackets_support_ranges_negation_and_literal_close_bracket() {
        assert!(fnmatch("[abc]", "b"));
        assert!(!fnmatch("[abc]", "d"));
        assert!(fnmatch("[a-c]x", "bx"));
        assert!(!fnmatch("[a-c]x", "dx"));
        assert!(fnmatch("[!a-c]", "d"));
        assert!(!fnmatch("[!a-c]", "a"));
        assert!(fnmatch("[^a-c]", "z"));
        assert!(!fnmatch("[^a-c]", "c"));
        assert!(fnmatch("[]]", "]"));
        assert!(fnmatch("[!]]", "a"));
        assert!(!fnmatch("[!]]", "]"));
        assert!(fnmatch("[a-]", "-"));
        assert!(fnmatch("[-a]", "-"));
        assert!(fnmatch("[0-9A-F][0-9A-F]", "7E"));
        assert!(!fnmatch("[0-9A-F]", "g"));
        assert!(!fnmatch("[ab]", ""));
    }

    #[test]
    fn bracket_classes_and_escapes_work_like_glibc() {
        assert!(fnmatch("[[:digit:]]x", "5x"));
        assert!(!fnmatch("[[:digit:]]x", "ax"));
        assert!(fnmatch("[[:xdigit:][:space:]]", " "));
        assert!(fnmatch("a\\*", "a*"));
        assert!(!fnmatch("a\\*", "ab"));
        assert!(fnmatch("[\\]]", "]"));
    }

    #[test]
    fn an_unterminated_bracket_is_a_literal() {
        assert!(fnmatch("a[b", "a[b"));
        assert!(!fnmatch("a[b", "ab"));
    }

    #[test]
    fn stars_next_to_brackets_backtrack() {
        assert!(fnmatch("*[0-9]", "abc7"));
        assert!(!fnmatch("*[0-9]", "abc7x"));
        assert!(fnmatch("usb:v*p*d*dc*dsc*dp*ic03isc01ip01in*", "usb:v0627p0001d0000dc00dsc00dp00ic03isc01ip01in00"));
    }

    #[test]
    fn literal_prefix_stops_at_the_first_special_character() {
        assert_eq!(literal_prefix("pci:v00008086d*"), "pci:v00008086d");
        assert_eq!(literal_prefix("acpi*:PNP0C0A:*"), "acpi");
        assert_eq!(literal_prefix("fs-nfs"), "fs-nfs");
        assert_eq!(literal_prefix("a\\*b"), "a");
        assert_eq!(literal_prefix("[ab]"), "");
    }

    #[test]
    fn normalize_alias_maps_dashes_outside_brackets_only() {
        assert_eq!(normalize_alias("platform:leds-gpio").as_deref(), Some("platform:leds_gpio"));
        assert_eq!(normalize_alias("of:N*T*Cfoo-bar[a-z]").as_deref(), Some("of:N*T*Cfoo_bar[a-z]"));
        assert_eq!(normalize_alias("a[b"), None);
        assert_eq!(normalize_alias("a]b"), None);
    }
}
