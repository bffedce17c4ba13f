//! The native CLI's argument grammar, table-driven: each command names its positional arguments
//! and flags, each flag says whether it takes a value and of what kind. Arguments arrive as raw
//! OS strings: paths may hold any bytes, text must be UTF-8 ("argument N is not valid UTF-8").
//! Lives in the library so tests and the fuzzer can drive it without a process.
//!
//! Adding a flag is one row in [`FLAGS`] plus its name in the commands that take it; adding a
//! command is one row in [`COMMANDS`].

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::error::{printable, quote};

/// What an argument holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A file path: any bytes the OS allows.
    Path,
    /// Text: must be valid UTF-8.
    Text,
    /// A flag without a value.
    Switch,
}

/// A command: its name, positional arguments `(NAME, kind)` in order, and the flags it accepts.
pub struct CommandSpec {
    pub name: &'static str,
    pub positionals: &'static [(&'static str, Kind)],
    pub flags: &'static [&'static str],
}

/// Every flag and what it takes.
pub const FLAGS: &[(&str, Kind)] = &[
    ("prompt", Kind::Text),
    ("chat", Kind::Switch),
    ("system", Kind::Text),
    ("max-tokens", Kind::Text),
    ("ignore-eos", Kind::Switch),
    ("json", Kind::Switch),
    ("context", Kind::Text),
    ("messages", Kind::Path),
    ("tokens", Kind::Text),
    ("top-k", Kind::Text),
    ("prompt-tokens", Kind::Text),
    ("gen-tokens", Kind::Text),
    ("rounds", Kind::Text),
    ("profile", Kind::Switch),
    ("temperature", Kind::Text),
    ("top-p", Kind::Text),
    ("min-p", Kind::Text),
    ("repeat-penalty", Kind::Text),
    ("presence-penalty", Kind::Text),
    ("frequency-penalty", Kind::Text),
    ("penalty-window", Kind::Text),
    ("seed", Kind::Text),
    ("stop", Kind::Text),
    ("kv-type", Kind::Text),
    ("kernel", Kind::Text),
    ("no-tune", Kind::Switch),
    ("no-pipeline", Kind::Switch),
    ("synthetic", Kind::Text),
    ("speculative", Kind::Text),
    ("draft", Kind::Path),
];

const MODEL: &[(&str, Kind)] = &[("MODEL", Kind::Path)];

/// Flags of every sampling command that loads the model (listed with the command's own flags).
macro_rules! sampling {
    ($($flag:literal),*) => {
        &[$($flag,)* "temperature", "top-k", "top-p", "min-p", "repeat-penalty", "presence-penalty",
          "frequency-penalty", "penalty-window", "seed", "stop", "context", "kv-type", "kernel", "no-tune"]
    };
}

/// Every command.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "inspect", positionals: MODEL, flags: &["context"] },
    CommandSpec { name: "tokenize", positionals: &[("MODEL", Kind::Path), ("TEXT", Kind::Text)], flags: &[] },
    CommandSpec {
        name: "generate",
        positionals: MODEL,
        flags: sampling!("prompt", "chat", "system", "max-tokens", "ignore-eos", "json", "no-pipeline", "speculative", "draft"),
    },
    CommandSpec { name: "render", positionals: MODEL, flags: &["messages"] },
    CommandSpec { name: "chat", positionals: MODEL, flags: sampling!("system", "max-tokens", "speculative", "draft") },
    CommandSpec { name: "score", positionals: MODEL, flags: &["tokens", "top-k", "context", "kv-type", "kernel", "no-tune"] },
    CommandSpec {
        name: "bench",
        positionals: MODEL,
        flags: &["prompt-tokens", "gen-tokens", "no-pipeline", "synthetic", "context", "kv-type", "kernel", "no-tune", "prompt", "speculative", "draft", "rounds", "profile"],
    },
    CommandSpec { name: "help", positionals: &[], flags: &[] },
];

/// A usage error: one line, naming the argument at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage<T>(message: String) -> Result<T, UsageError> {
    Err(UsageError(message))
}

/// A parsed command line. Text arguments are checked to be UTF-8 at parse time.
///
/// A command whose first positional is MODEL takes one model file or the shards of a split model
/// in order: the positionals after the first that end in `.gguf` are further shards, as long as
/// the command's other positionals still get theirs.
#[derive(Debug)]
pub struct Args {
    pub command: &'static str,
    positional: Vec<OsString>,
    /// How many leading positionals are model files.
    models: usize,
    /// `(flag, value)` in order; flags may repeat (the last value wins unless read with `all`).
    options: Vec<(&'static str, Option<OsString>)>,
}

/// Parses the arguments after the program name.
pub fn parse(raw: Vec<OsString>) -> Result<Args, UsageError> {
    let mut it = raw.into_iter().enumerate().map(|(i, a)| (i + 1, a));
    let Some((n, command)) = it.next() else { return usage("missing command".into()) };
    let command = utf8(n, &command)?;
    let name = if matches!(command, "--help" | "-h") { "help" } else { command };
    let Some(spec) = COMMANDS.iter().find(|c| c.name == name) else {
        return usage(format!("unknown command {}", quote(command)));
    };
    let mut args = Args { command: spec.name, positional: Vec::new(), models: 0, options: Vec::new() };
    let mut numbers = Vec::new();
    while let Some((n, arg)) = it.next() {
        match arg.as_encoded_bytes().strip_prefix(b"--") {
            Some(_) => {
                let name = &utf8(n, &arg)?[2..];
                let Some(&(flag, kind)) = FLAGS.iter().find(|(f, _)| *f == name).filter(|(f, _)| spec.flags.contains(f)) else {
                    return usage(format!("unknown option --{}", printable(name, 64)));
                };
                let value = match kind {
                    Kind::Switch => None,
                    _ => {
                        let Some((m, value)) = it.next() else { return usage(format!("--{flag} needs a value")) };
                        if kind == Kind::Text {
                            utf8(m, &value)?;
                        }
                        Some(value)
                    }
                };
                args.options.push((flag, value));
            }
            None => {
                numbers.push(n);
                args.positional.push(arg);
            }
        }
    }
    // Model files first (several when shards), then the command's other positionals in order.
    let takes_models = spec.positionals.first().is_some_and(|(name, _)| *name == "MODEL");
    let others = &spec.positionals[takes_models as usize..];
    if takes_models && !args.positional.is_empty() {
        let shards = args.positional[1..].iter().take_while(|a| a.as_encoded_bytes().ends_with(b".gguf")).count();
        args.models = 1 + shards.min((args.positional.len() - 1).saturating_sub(others.len()));
    }
    for (j, arg) in args.positional[args.models..].iter().enumerate() {
        let Some(&(_, kind)) = others.get(j) else {
            return usage(format!("unexpected argument {}", quote(&arg.to_string_lossy())));
        };
        if kind == Kind::Text {
            utf8(numbers[args.models + j], arg)?;
        }
    }
    Ok(args)
}

/// The argument as UTF-8, or "argument N is not valid UTF-8".
fn utf8(n: usize, arg: &OsStr) -> Result<&str, UsageError> {
    arg.to_str().ok_or_else(|| UsageError(format!("argument {n} is not valid UTF-8")))
}

impl Args {
    /// The positional argument `i` (named `what` in the error when missing).
    fn positional(&self, i: usize, what: &str) -> Result<&OsString, UsageError> {
        self.positional.get(i).ok_or_else(|| UsageError(format!("missing {what}")))
    }

    /// A positional path argument.
    pub fn path(&self, i: usize, what: &str) -> Result<PathBuf, UsageError> {
        self.positional(i, what).map(PathBuf::from)
    }

    /// The model's files: one, or the shards of a split model in order.
    pub fn model_paths(&self) -> Result<Vec<PathBuf>, UsageError> {
        if self.models == 0 {
            return usage("missing MODEL".into());
        }
        Ok(self.positional[..self.models].iter().map(PathBuf::from).collect())
    }

    /// The `j`-th text positional after the model files (UTF-8, checked by [`parse`]).
    pub fn text(&self, j: usize, what: &str) -> Result<&str, UsageError> {
        Ok(self.positional(self.models + j, what)?.to_str().unwrap_or_default())
    }

    pub fn has(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| *n == name)
    }

    fn raw(&self, name: &str) -> Option<&OsString> {
        self.options.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_ref())
    }

    /// The last value given for the text flag `--name`.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.raw(name).and_then(|v| v.to_str())
    }

    /// The last value given for the path flag `--name`.
    pub fn path_flag(&self, name: &str) -> Option<PathBuf> {
        self.raw(name).map(PathBuf::from)
    }

    /// Every value given for a repeatable text flag `--name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.options.iter().filter(|(n, _)| *n == name).filter_map(|(_, v)| v.as_ref()?.to_str().map(String::from)).collect()
    }

    /// The number given with `--name`, or `default`.
    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, UsageError> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| UsageError(format!("--{name}: {} is not a valid number", quote(v)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::ffi::OsStringExt;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn positionals_flags_and_errors() {
        let a = parse(os(&["generate", "m.gguf", "--prompt", "hi", "--json", "--stop", "a", "--stop", "b"])).unwrap();
        assert_eq!((a.command, a.path(0, "MODEL").unwrap()), ("generate", PathBuf::from("m.gguf")));
        assert_eq!((a.string("prompt"), a.has("json"), a.all("stop")), (Some("hi"), true, vec!["a".into(), "b".into()]));
        assert_eq!(parse(os(&["tokenize", "m", "a", "b"])).unwrap_err().0, "unexpected argument 'b'");
        assert_eq!(parse(os(&["tokenize", "m", "a", "x\n\u{1b}"])).unwrap_err().0, "unexpected argument 'x\\n\\u{1b}'");
        assert_eq!(parse(os(&["inspect", "m", "--prompt", "x"])).unwrap_err().0, "unknown option --prompt");
        assert_eq!(parse(os(&["generate", "m", "--prompt"])).unwrap_err().0, "--prompt needs a value");
        assert_eq!(parse(os(&[])).unwrap_err().0, "missing command");
        assert_eq!(parse(os(&["-h"])).unwrap().command, "help");
        assert_eq!(parse(os(&["score", "m", "--top-k", "x"])).unwrap().number("top-k", 1u32).unwrap_err().0, "--top-k: 'x' is not a valid number");
    }

    #[test]
    fn shards_are_several_model_paths() {
        let a = parse(os(&["score", "a-00001-of-00002.gguf", "a-00002-of-00002.gguf", "--tokens", "1"])).unwrap();
        assert_eq!(a.model_paths().unwrap(), [PathBuf::from("a-00001-of-00002.gguf"), PathBuf::from("a-00002-of-00002.gguf")]);
        let a = parse(os(&["tokenize", "a.gguf", "b.gguf", "hello"])).unwrap();
        assert_eq!((a.model_paths().unwrap().len(), a.text(0, "TEXT").unwrap()), (2, "hello"));
        // The text may end in .gguf too: the command's own positionals come first.
        let a = parse(os(&["tokenize", "a.gguf", "b.gguf"])).unwrap();
        assert_eq!((a.model_paths().unwrap().len(), a.text(0, "TEXT").unwrap()), (1, "b.gguf"));
        assert_eq!(parse(os(&["score", "a.gguf", "notes.txt"])).unwrap_err().0, "unexpected argument 'notes.txt'");
        assert_eq!(parse(os(&["inspect"])).unwrap().model_paths().unwrap_err().0, "missing MODEL");
    }

    #[cfg(unix)]
    #[test]
    fn paths_take_any_bytes_and_text_must_be_utf8() {
        let bad = || OsString::from_vec(vec![0xff, 0xfe]);
        let a = parse(vec!["tokenize".into(), bad(), "t".into()]).unwrap();
        assert_eq!(a.text(0, "TEXT").unwrap(), "t");
        assert_eq!(a.path(0, "MODEL").unwrap().as_os_str().as_encoded_bytes(), [0xff, 0xfe]);
        assert_eq!(parse(vec!["tokenize".into(), "m".into(), bad()]).unwrap_err().0, "argument 3 is not valid UTF-8");
        assert_eq!(parse(vec!["generate".into(), "m".into(), "--prompt".into(), bad()]).unwrap_err().0, "argument 4 is not valid UTF-8");
        assert_eq!(parse(vec![bad()]).unwrap_err().0, "argument 1 is not valid UTF-8");
        let a = parse(vec!["render".into(), "m".into(), "--messages".into(), bad()]).unwrap();
        assert_eq!(a.path_flag("messages").unwrap().as_os_str().as_encoded_bytes(), [0xff, 0xfe]);
    }
}
