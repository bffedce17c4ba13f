//! Bounds on untrusted chat templates (a template is metadata of a file written by a stranger).
//!
//! 1. Before minijinja parses a template, its source is checked on minijinja's own token stream
//!    (the lexer does not recurse): total size, tokens per tag (`{{ … }}` / `{% … %}`), bracket
//!    depth within a tag and block nesting. minijinja's parser and compiler recurse once per
//!    operator of a left-associative chain (`1 + 1 + …`), so these bounds keep the recursion
//!    shallow enough for wasm's ~1 MiB stack, natively and in the browser alike.
//! 2. While rendering: minijinja's fuel bounds the instructions, a recursion limit bounds macro
//!    calls, every printed value counts against one byte budget (into the output or into a
//!    `{% set %}` capture or macro result alike), and the output itself is capped.
//! 3. Growth inside the template: a `{% set %}` whose value concatenates (`~`, `+`, `*`) two
//!    mentions of assigned variables is refused (`ns.s ~ ns.s` doubles a string per iteration, so
//!    31 iterations ask for 2 GiB before any byte is printed); a whole namespace whose attributes
//!    are assigned counts twice (`ns.s = ns ~ x` re-escapes its own quotes every round: the
//!    fuzzer's find). This check is not a proof: see the
//!    README's reliability section for what it does not catch and what backs it up.

use minijinja::machinery::{tokenize, Token};
use minijinja::syntax::SyntaxConfig;

/// Largest template source in bytes (real ones are a few KiB; the largest we know ~ 30 KiB).
pub const MAX_SOURCE_BYTES: usize = 128 << 10;
/// Most tokens in one `{{ … }}` or `{% … %}` tag (real templates use under 80).
pub const MAX_TAG_TOKENS: usize = 256;
/// Deepest nesting of brackets within one tag, and of blocks (`for`, `if`, `macro`, …).
pub const MAX_NESTING: usize = 32;
/// Largest rendered output, and the budget of all bytes printed while rendering (captures
/// included).
pub const MAX_OUTPUT_BYTES: usize = 4 << 20;
/// Deepest macro call nesting (minijinja's default is 500, too deep for a 1 MiB stack).
pub const MAX_RECURSION: usize = 32;

/// Statements that open a block closed by `end…`.
const BLOCK_OPENERS: &[&str] = &["for", "if", "macro", "call", "filter", "with", "block", "autoescape"];

/// Checks `source` against the static limits; the error says which limit it passed.
pub fn check_source(source: &str, syntax: SyntaxConfig) -> Result<(), String> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!("the template is {} bytes; the limit is {MAX_SOURCE_BYTES}", source.len()));
    }
    let mut tag: Vec<Token> = Vec::new();
    let mut in_tag = false;
    let mut sets: Vec<Vec<Token>> = Vec::new();
    let mut blocks = 0usize;
    for token in tokenize(source, false, syntax) {
        let (token, span) = token.map_err(|e| e.to_string())?;
        match token {
            Token::VariableStart | Token::BlockStart => {
                in_tag = true;
                tag.clear();
            }
            Token::VariableEnd | Token::BlockEnd => {
                in_tag = false;
                let line = span.start_line;
                blocks = nest_blocks(&tag, blocks).ok_or_else(|| format!("blocks nest deeper than {MAX_NESTING} (line {line})"))?;
                if matches!(tag.first(), Some(Token::Ident("set"))) && tag.iter().any(|t| matches!(t, Token::Assign)) {
                    sets.push(std::mem::take(&mut tag));
                }
            }
            _ if in_tag => {
                tag.push(token);
                if tag.len() > MAX_TAG_TOKENS {
                    return Err(format!("a tag on line {} has more than {MAX_TAG_TOKENS} tokens", span.start_line));
                }
                if bracket_depth(&tag) > MAX_NESTING {
                    return Err(format!("brackets nest deeper than {MAX_NESTING} (line {})", span.start_line));
                }
            }
            _ => {}
        }
    }
    check_growth(&sets)
}

/// Block depth after one tag, or None past [`MAX_NESTING`].
fn nest_blocks(tag: &[Token], depth: usize) -> Option<usize> {
    match tag.first() {
        Some(Token::Ident(word)) if BLOCK_OPENERS.contains(word) => Some(depth + 1).filter(|&d| d <= MAX_NESTING),
        // `{% set x %}…{% endset %}` (no `=`) captures a block.
        Some(Token::Ident("set")) if !tag.iter().any(|t| matches!(t, Token::Assign)) => Some(depth + 1).filter(|&d| d <= MAX_NESTING),
        Some(Token::Ident(word)) if word.starts_with("end") => Some(depth.saturating_sub(1)),
        _ => Some(depth),
    }
}

/// Current bracket depth at the end of a tag's tokens so far.
fn bracket_depth(tag: &[Token]) -> usize {
    let mut depth = 0usize;
    for t in tag {
        match t {
            Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => depth += 1,
            Token::ParenClose | Token::BracketClose | Token::BraceClose => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth
}

/// A variable path: `x` or `ns.attr`.
fn path_at(tokens: &[Token], i: usize) -> Option<(String, usize)> {
    let Some(Token::Ident(first)) = tokens.get(i) else { return None };
    if i > 0 && matches!(tokens[i - 1], Token::Dot) {
        return None;
    }
    match (tokens.get(i + 1), tokens.get(i + 2)) {
        (Some(Token::Dot), Some(Token::Ident(attr))) => Some((format!("{first}.{attr}"), 3)),
        _ => Some((first.to_string(), 1)),
    }
}

/// True when some assignment target is an attribute of `path` (`ns.s` for `ns`).
fn assigns_attributes_of(targets: &[String], path: &str) -> bool {
    let prefix = format!("{path}.");
    targets.iter().any(|t| t.starts_with(&prefix))
}

/// Refuses a `set` whose value concatenates two mentions of assigned variables (see the module
/// doc). `sets` holds the tokens of every `{% set target = value %}` tag.
fn check_growth(sets: &[Vec<Token>]) -> Result<(), String> {
    let assign = |tag: &Vec<Token>| tag.iter().position(|t| matches!(t, Token::Assign)).unwrap_or(0);
    let targets: Vec<String> = sets.iter().filter_map(|tag| path_at(&tag[..assign(tag)], 1).map(|(p, _)| p)).collect();
    let concat = |t: Option<&Token>| matches!(t, Some(Token::Tilde | Token::Plus | Token::Mul));
    for tag in sets {
        let value = &tag[assign(tag) + 1..];
        let mut mentions = 0;
        let mut i = 0;
        while i < value.len() {
            match path_at(value, i) {
                Some((path, len)) if targets.contains(&path) || assigns_attributes_of(&targets, &path) => {
                    let before = i.checked_sub(1).and_then(|j| value.get(j));
                    if concat(before) || concat(value.get(i + len)) {
                        // A whole namespace (`ns ~ …` while `ns.s` is assigned) prints its
                        // attributes quoted and escaped: every round escapes the last one's
                        // escapes again, which grows exponentially even from one mention.
                        let whole_namespace = targets.contains(&path) && !path.contains('.') && assigns_attributes_of(&targets, &path);
                        mentions += if whole_namespace { 2 } else { 1 };
                    }
                    i += len;
                }
                _ => i += 1,
            }
        }
        if mentions >= 2 {
            let target = path_at(&tag[..assign(tag)], 1).map(|(p, _)| p).unwrap_or_default();
            return Err(format!(
                "{{% set {target} = … %}} concatenates assigned variables with each other, which can grow a value exponentially"
            ));
        }
    }
    Ok(())
}

/// An `io::Write` that fails past [`MAX_OUTPUT_BYTES`] (and remembers that it did).
#[derive(Default)]
pub struct CappedOutput {
    pub bytes: Vec<u8>,
    pub full: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT_BYTES {
            self.full = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes a value prints and fails once the shared budget is spent, without building
/// the text (a list that holds itself many times prints exponentially long).
pub struct Budget<'a>(pub &'a std::sync::atomic::AtomicUsize);

impl std::fmt::Write for Budget<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        use std::sync::atomic::Ordering;
        let spent = self.0.fetch_add(s.len(), Ordering::Relaxed) + s.len();
        if spent > MAX_OUTPUT_BYTES {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}
