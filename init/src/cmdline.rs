//! The kernel command line (`/proc/cmdline`), split the way the kernel splits it.
//!
//! The keys init itself acts on are a table ([`KEYS`]); module options
//! (`<module>.<param>[=<value>]`) are collected per module for `finit_module`; every
//! other parameter (`ip=`, `BOOTIF=`, `root=`, `nfsroot=`, `diskless.<key>=`, ...) is
//! kept in order as raw key/value pairs for the later stages.

/// One `<module>.<param>[=<value>]` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleParam {
    /// Module name, normalised (`-` -> `_`) as kmod does.
    pub module: String,
    pub param: String,
    /// `None` for a bare `<module>.<flag>` (a boolean parameter set to true).
    pub value: Option<String>,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub module_params: Vec<ModuleParam>,
    /// `modprobe.blacklist=a,b` (may repeat), normalised module names.
    pub blacklist: Vec<String>,
    /// `diskless.debug`: extra detail lines.
    pub debug: bool,
    /// `diskless.break=<stage>`: stop before that stage.
    pub break_before: Option<String>,
    /// `diskless.shell`: a failure may start the rescue shell.
    pub shell: bool,
    /// `init=PATH`: the image's init.
    pub init: Option<String>,
    /// Every other parameter, in command-line order; `None` value for a bare word.
    pub raw: Vec<(String, Option<String>)>,
    /// Words after `--`: the kernel hands them to init as arguments.
    pub init_args: Vec<String>,
    /// Values that were understood only partly (e.g. `diskless.debug=maybe`), for the log.
    pub warnings: Vec<CmdlineWarning>,
}

/// A parameter of a known key that was understood only partly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineWarning {
    #[error("{key}={value}: not a boolean (use {key}, {key}=1 or {key}=0); taken as on")]
    NotABoolean { key: String, value: String },
    #[error("{key} needs a value ({key}=...); ignored")]
    NoValue { key: String },
}

/// What a known key does with its value.
enum Handler {
    /// A switch: bare word or a boolean value.
    Flag(fn(&mut Cmdline, bool)),
    /// A key that needs a value.
    Value(fn(&mut Cmdline, &str)),
}

/// The keys init acts on itself. `diskless.*` keys not listed here are not module
/// options: they stay in `raw` for the stage that owns them.
const KEYS: &[(&str, Handler)] = &[
    ("diskless.debug", Handler::Flag(|c, on| c.debug = on)),
    ("diskless.shell", Handler::Flag(|c, on| c.shell = on)),
    ("diskless.break", Handler::Value(|c, v| c.break_before = Some(v.to_string()))),
    ("init", Handler::Value(|c, v| c.init = Some(v.to_string()))),
    (
        "modprobe.blacklist",
        Handler::Value(|c, v| {
            c.blacklist.extend(v.split(',').filter(|n| !n.is_empty()).map(modules_db::normalize_name))
        }),
    ),
];

/// Prefixes of dotted keys that belong to init or to kmod, never to a kernel module.
const NOT_MODULES: &[&str] = &["diskless", "modprobe"];

/// Boolean spellings accepted for flags, as the kernel's `kstrtobool` does.
const TRUE_WORDS: &[&str] = &["1", "y", "yes", "true", "on"];
const FALSE_WORDS: &[&str] = &["0", "n", "no", "false", "off"];

impl Cmdline {
    /// Parse the content of `/proc/cmdline`. Never fails: a word init cannot use is kept
    /// raw or reported in `warnings`.
    pub fn parse(text: &str) -> Cmdline {
        let mut cmdline = Cmdline::default();
        let mut rest = text.trim_start_matches(is_space);
        while !rest.is_empty() {
            let (param, value, next) = next_arg(rest);
            rest = next;
            if param == "--" && value.is_none() {
                cmdline.init_args = split_words(rest);
                break;
            }
            cmdline.add(param, value);
        }
        cmdline
    }

    fn add(&mut self, key: &str, value: Option<&str>) {
        if let Some((_, handler)) = KEYS.iter().find(|(k, _)| *k == key) {
            match (handler, value) {
                (Handler::Flag(set), None) => set(self, true),
                (Handler::Flag(set), Some(v)) => match parse_bool(v) {
                    Some(on) => set(self, on),
                    None => {
                        self.warnings.push(CmdlineWarning::NotABoolean { key: key.into(), value: v.into() });
                        set(self, true);
                    }
                },
                (Handler::Value(set), Some(v)) => set(self, v),
                (Handler::Value(_), None) => self.warnings.push(CmdlineWarning::NoValue { key: key.into() }),
            }
        } else if let Some((module, param)) = module_option(key) {
            self.module_params.push(ModuleParam { module, param: param.to_string(), value: value.map(str::to_string) });
        } else {
            self.raw.push((key.to_string(), value.map(str::to_string)));
        }
    }

    /// The last value of a raw parameter (later words override earlier ones, as in the kernel).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.as_deref())
    }

    /// Whether a raw parameter appears at all (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.raw.iter().any(|(k, _)| k == key)
    }

    /// The option string `finit_module` takes for `module` (normalised name), e.g.
    /// `debug=1 name="a b"`; empty when the command line names none.
    pub fn module_options(&self, module: &str) -> String {
        let module = modules_db::normalize_name(module);
        let mut out = String::new();
        for p in self.module_params.iter().filter(|p| p.module == module) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&p.param);
            if let Some(v) = &p.value {
                out.push('=');
                // The kernel splits module options with the same quote rules as the
                // command line, so a value with spaces must be quoted again.
                if v.contains(is_space) {
                    out.push('"');
                    out.push_str(v);
                    out.push('"');
                } else {
                    out.push_str(v);
                }
            }
        }
        out
    }

    pub fn is_blacklisted(&self, module: &str) -> bool {
        let module = modules_db::normalize_name(module);
        self.blacklist.contains(&module)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    let v = v.to_ascii_lowercase();
    if TRUE_WORDS.contains(&v.as_str()) {
        Some(true)
    } else if FALSE_WORDS.contains(&v.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// `<module>.<param>` with a plausible module name -> (normalised module, param).
fn module_option(key: &str) -> Option<(String, &str)> {
    let (module, param) = key.split_once('.')?;
    let plausible = !module.is_empty()
        && !param.is_empty()
        && module.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !NOT_MODULES.contains(&module);
    plausible.then(|| (modules_db::normalize_name(module), param))
}

fn is_space(c: char) -> bool {
    // The kernel's isspace(); only ASCII, so multi-byte UTF-8 is never split.
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn split_words(text: &str) -> Vec<String> {
    text.split(is_space).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// One word of the command line, as the kernel's `next_arg` (lib/cmdline.c) cuts it:
/// spaces inside double quotes do not split; a quote right after `=` (or at the very
/// start) and the matching quote at the end of the word are removed; other quotes stay.
/// Returns (param, value, rest after the word and its trailing spaces).
fn next_arg(args: &str) -> (&str, Option<&str>, &str) {
    let bytes = args.as_bytes();
    let (start, mut in_quote, quoted) = if bytes.first() == Some(&b'"') { (1, true, true) } else { (0, false, false) };
    let mut equals = None;
    let mut end = start;
    while end < bytes.len() {
        let b = bytes[end];
        if b.is_ascii() && is_space(b as char) && !in_quote {
            break;
        }
        if equals.is_none() && b == b'=' && end > start {
            equals = Some(end);
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
        end += 1;
    }
    // All positions compared or cut at are ASCII bytes, so every slice below falls on
    // a char boundary.
    let word_end_trimmed = if end > start && bytes[end - 1] == b'"' { end - 1 } else { end };
    let (param, value) = match equals {
        None => {
            let stop = if quoted { word_end_trimmed } else { end };
            (&args[start..stop], None)
        }
        Some(eq) => {
            let mut vstart = eq + 1;
            let mut vend = end;
            if bytes.get(vstart) == Some(&b'"') {
                vstart += 1;
                vend = word_end_trimmed.max(vstart);
            } else if quoted {
                vend = word_end_trimmed.max(vstart);
            }
            (&args[start..eq], Some(&args[vstart..vend]))
        }
    };
    let rest = args[end..].trim_start_matches(is_space);
    (param, value, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(text: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let mut rest = text.trim_start_matches(is_space);
        while !rest.is_empty() {
            let (p, v, next) = next_arg(rest);
            out.push((p.to_string(), v.map(str::to_string)));
            rest = next;
        }
        out
    }

    fn kv(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    /// Inputs and the words the kernel's next_arg makes of them.
    #[test]
    fn splitting_follows_the_kernel_quote_rules() {
        type Words<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(&str, Words)] = &[
            ("a b=c", &[("a", None), ("b", Some("c"))]),
            ("  a \t\n b  ", &[("a", None), ("b", None)]),
            (r#"x="one two" y"#, &[("x", Some("one two")), ("y", None)]),
            (r#""x=one two" y"#, &[("x", Some("one two")), ("y", None)]),
            (r#""quoted word" z"#, &[("quoted word", None), ("z", None)]),
            (r#"a=b"c d"e f"#, &[("a", Some(r#"b"c d"e"#)), ("f", None)]),
            ("k==v", &[("k", Some("=v"))]),
            ("=v", &[("=v", None)]),
            ("k=", &[("k", Some(""))]),
            (r#"k=""#, &[("k", Some(""))]),
            (r#"""#, &[("", None)]),
            (r#"k="unterminated rest"#, &[("k", Some("unterminated rest"))]),
        ];
        for (input, expected) in cases {
            let expected: Vec<_> = expected.iter().map(|(k, v)| kv(k, *v)).collect();
            assert_eq!(words(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn known_keys_fill_their_fields() {
        let c = Cmdline::parse(
            "console=ttyS0 diskless.debug diskless.break=network diskless.shell init=/bin/sh modprobe.blacklist=e1000,8139-too modprobe.blacklist=nvme",
        );
        assert!(c.debug);
        assert!(c.shell);
        assert_eq!(c.break_before.as_deref(), Some("network"));
        assert_eq!(c.init.as_deref(), Some("/bin/sh"));
        assert_eq!(c.blacklist, ["e1000", "8139_too", "nvme"]);
        assert_eq!(c.raw, [kv("console", Some("ttyS0"))]);
        assert!(c.is_blacklisted("8139-too"));
        assert!(!c.is_blacklisted("e1000e"));
    }

    #[test]
    fn flags_take_boolean_values() {
        assert!(!Cmdline::parse("diskless.debug=0").debug);
        assert!(Cmdline::parse("diskless.debug=yes").debug);
        assert!(!Cmdline::parse("diskless.debug diskless.debug=off").debug);
        let odd = Cmdline::parse("diskless.shell=maybe");
        assert!(odd.shell);
        assert_eq!(odd.warnings.len(), 1, "{:?}", odd.warnings);
        assert!(odd.warnings[0].to_string().contains("diskless.shell=maybe"));
    }

    #[test]
    fn value_keys_without_value_warn() {
        let c = Cmdline::parse("diskless.break init");
        assert_eq!(c.break_before, None);
        assert_eq!(c.init, None);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn module_options_are_collected_per_normalised_module() {
        let c = Cmdline::parse(r#"virtio-net.napi_tx=1 e1000.debug=3 virtio_net.csum e1000.name="a b" ip=dhcp"#);
        assert_eq!(c.module_options("virtio_net"), "napi_tx=1 csum");
        assert_eq!(c.module_options("virtio-net"), "napi_tx=1 csum");
        assert_eq!(c.module_options("e1000"), r#"debug=3 name="a b""#);
        assert_eq!(c.module_options("nvme"), "");
        assert_eq!(c.raw, [kv("ip", Some("dhcp"))]);
    }

    #[test]
    fn diskless_and_modprobe_keys_are_not_module_options() {
        let c = Cmdline::parse("diskless.settle_ms=500 diskless.layers=/diskless modprobe.other=x .x=y");
        assert!(c.module_params.is_empty(), "{:?}", c.module_params);
        assert_eq!(c.get("diskless.settle_ms"), Some("500"));
        assert_eq!(c.get("diskless.layers"), Some("/diskless"));
        assert_eq!(c.get("modprobe.other"), Some("x"));
        assert_eq!(c.get(".x"), Some("y"));
    }

    #[test]
    fn raw_parameters_keep_order_and_last_one_wins() {
        let c = Cmdline::parse(
            "root=/dev/nfs nfsroot=10.0.0.1:/export,vers=4 ip=dhcp BOOTIF=01-52-54-00-12-34-56 ip=off ro",
        );
        let keys: Vec<_> = c.raw.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["root", "nfsroot", "ip", "BOOTIF", "ip", "ro"]);
        assert_eq!(c.get("ip"), Some("off"));
        assert_eq!(c.get("nfsroot"), Some("10.0.0.1:/export,vers=4"));
        assert_eq!(c.get("ro"), None);
        assert!(c.has("ro"));
        assert!(!c.has("rw"));
    }

    #[test]
    fn words_after_double_dash_go_to_init() {
        let c = Cmdline::parse("quiet -- single  emergency=1");
        assert_eq!(c.raw, [kv("quiet", None)]);
        assert_eq!(c.init_args, ["single", "emergency=1"]);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let c = Cmdline::parse(&text);
            // Every word lands somewhere: the parse is total, nothing is silently lost
            // except spaces and the quotes the kernel strips.
            let _ = c.module_options("x");
        }

        #[test]
        fn quote_and_space_heavy_text_never_panics(text in "[a-z=\" .\t_-]{0,40}") {
            let c = Cmdline::parse(&text);
            for (k, v) in &c.raw {
                prop_assert!(!k.contains(is_space) || text.contains('"'));
                if let Some(v) = v { prop_assert!(!v.contains(is_space) || text.contains('"')); }
            }
        }

        #[test]
        fn plain_words_round_trip(words in proptest::collection::vec("[a-zA-Z0-9_/:,]{1,8}(=[a-zA-Z0-9_/:,.]{0,8})?", 0..8)) {
            prop_assume!(!words.iter().any(|w| w.split('=').next() == Some("init")));
            let c = Cmdline::parse(&words.join(" "));
            let got: Vec<String> = c.raw.iter().map(|(k, v)| match v { Some(v) => format!("{k}={v}"), None => k.clone() }).collect();
            prop_assert_eq!(got, words);
        }
    }
}
