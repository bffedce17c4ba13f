//! Chat templates: the model's own `tokenizer.chat_template` rendered with a real Jinja engine
//! (minijinja) the way llama.cpp and Hugging Face render it — `trim_blocks`, `lstrip_blocks`,
//! `add_generation_prompt`, `bos_token`/`eos_token`, `raise_exception`, Python string methods
//! (`.strip()`, `.startswith()`, ...) and filters such as `tojson` and `trim`.
//!
//! A model without a template gets a fallback chosen from its architecture and vocabulary:
//! Gemma turns for `gemma*`, Phi-3 tags for `phi3`, Llama 3 headers when the vocabulary has
//! `<|start_header_id|>`, and ChatML (`<|im_start|>`, Qwen/SmolLM style) otherwise.

mod limits;

pub use limits::{MAX_NESTING, MAX_OUTPUT_BYTES, MAX_RECURSION, MAX_SOURCE_BYTES, MAX_TAG_TOKENS};

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, Value};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into() }
    }
}

/// Where the template came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateOrigin {
    /// `tokenizer.chat_template` of the file.
    Model,
    /// A built-in fallback (named).
    Fallback(&'static str),
}

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const GEMMA: &str = "{{ bos_token }}{% set system = namespace(text='') %}\
{% for m in messages %}{% if m.role == 'system' %}{% set system.text = system.text + m.content + '\n\n' %}{% else %}\
<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n\
{% if m.role != 'assistant' and system.text %}{{ system.text }}{% set system.text = '' %}{% endif %}\
{{ m.content | trim }}<end_of_turn>\n{% endif %}{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

const LLAMA3: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n\
{{ m.content | trim }}<|eot_id|>{% endfor %}\
{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

const PHI3: &str = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}\
{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// Tokens that close a turn in the common template families; those present in the vocabulary
/// and used by the template end generation.
const TURN_END_MARKERS: &[&str] = &["<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<|eom_id|>"];

/// Template execution budget (minijinja fuel): bounds hostile or runaway templates.
const FUEL: u64 = 50_000_000;

/// A model's chat template, ready to render conversations.
pub struct ChatTemplate {
    source: String,
    pub origin: TemplateOrigin,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The file's template, or the architecture's fallback when it has none.
    pub fn from_gguf(file: &GgufFile, tokenizer: &Tokenizer) -> Result<ChatTemplate> {
        let text = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or("").to_string();
        let (source, origin) = match file.get_str("tokenizer.chat_template")? {
            Some(t) if !t.trim().is_empty() => (t.to_string(), TemplateOrigin::Model),
            _ => {
                let (name, source) = fallback_for(file.architecture().unwrap_or(""), tokenizer);
                (source.to_string(), TemplateOrigin::Fallback(name))
            }
        };
        let template = ChatTemplate { source, origin, bos_token: text(tokenizer.bos_id()), eos_token: text(tokenizer.eos_id()) };
        // Compile once now so a broken template is reported at load, not at the first message.
        template.environment(Arc::default())?;
        Ok(template)
    }

    /// A template from its source (tests, or a caller-provided template).
    pub fn from_source(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let template = ChatTemplate {
            source: source.to_string(),
            origin: TemplateOrigin::Model,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        };
        template.environment(Arc::default())?;
        Ok(template)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// A minijinja environment holding the template, with every limit of [`limits`] set; values
    /// printed while rendering count against `printed`.
    fn environment(&self, printed: Arc<AtomicUsize>) -> Result<Environment<'_>> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(template_error)?;
        limits::check_source(&self.source, syntax.clone()).map_err(|e| Error::BadRequest(format!("chat template: {e}")))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(MAX_RECURSION);
        env.set_formatter(move |out, state, value| {
            use std::fmt::Write;
            if write!(limits::Budget(&printed), "{value}").is_err() {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("the template prints more than {MAX_OUTPUT_BYTES} bytes"),
                ));
            }
            minijinja::escape_formatter(out, state, value)
        });
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| -> String { strftime_now(&format) });
        env.add_template("chat", &self.source).map_err(template_error)?;
        Ok(env)
    }

    /// Renders `messages` (with the assistant prompt opened when `add_generation_prompt`).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let env = self.environment(Arc::default())?;
        let template = env.get_template("chat").map_err(template_error)?;
        let mut output = limits::CappedOutput::default();
        let rendered = template.render_captured_to(
            minijinja::context! {
                messages => Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
            &mut output,
        );
        if output.full {
            return Err(Error::BadRequest(format!("chat template: the rendered prompt exceeds {MAX_OUTPUT_BYTES} bytes")));
        }
        rendered.map_err(template_error)?;
        String::from_utf8(output.bytes).map_err(|_| Error::BadRequest("chat template: the output is not valid UTF-8".into()))
    }

    /// Control tokens of the vocabulary that close a turn in this template (e.g. `<|im_end|>`):
    /// generation stops on them as on EOS.
    pub fn turn_end_tokens(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        TURN_END_MARKERS
            .iter()
            .filter(|m| self.source.contains(*m))
            .filter_map(|m| tokenizer.token_id(m))
            .collect()
    }
}

fn fallback_for(arch: &str, tokenizer: &Tokenizer) -> (&'static str, &'static str) {
    if arch.starts_with("gemma") {
        ("gemma", GEMMA)
    } else if arch == "phi3" {
        ("phi3", PHI3)
    } else if tokenizer.token_id("<|start_header_id|>").is_some() {
        ("llama3", LLAMA3)
    } else {
        ("chatml", CHATML)
    }
}

fn template_error(e: minijinja::Error) -> Error {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message = format!("{message} (template line {line})");
    }
    // minijinja quotes the template's own text (and raise_exception's message) in its messages:
    // escape it like any file content.
    Error::BadRequest(format!("chat template: {}", crate::error::printable(&message, 200)))
}

/// `strftime_now(format)` for templates that print today's date: supports %d %m %Y %y %b %B %H %M.
fn strftime_now(format: &str) -> String {
    let secs = now_seconds();
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm) = (secs.rem_euclid(86_400) / 3600, secs.rem_euclid(3600) / 60);
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    let month = MONTHS[(m - 1) as usize];
    format
        .replace("%d", &format!("{d:02}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%Y", &y.to_string())
        .replace("%y", &format!("{:02}", y % 100))
        .replace("%B", month)
        .replace("%b", &month[..3])
        .replace("%H", &format!("{hh:02}"))
        .replace("%M", &format!("{mm:02}"))
}

fn now_seconds() -> i64 {
    #[cfg(not(target_arch = "wasm32"))]
    return std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    #[cfg(target_arch = "wasm32")]
    return (js_sys::Date::now() / 1000.0) as i64;
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_and_lstrip_blocks_like_jinja() {
        let t = ChatTemplate::from_source(
            "{% for m in messages %}\n  {% if m.role == 'user' %}\nU:{{ m.content | trim }}\n  {% endif %}\n{% endfor %}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(t.render(&[Message::new("user", "  hi ")], false).unwrap(), "U:hi\n");
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_errors() {
        let t = ChatTemplate::from_source("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], true).unwrap_err().to_string();
        assert!(e.contains("roles must alternate"), "{e}");
        assert!(ChatTemplate::from_source("{% for %}", "", "").is_err());
        // Runaway loops run out of fuel instead of hanging.
        let t = ChatTemplate::from_source("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "", "")
            .unwrap();
        assert!(t.render(&[], false).is_err());
    }

    #[test]
    fn python_methods_and_tojson() {
        let t = ChatTemplate::from_source(
            "{% for m in messages %}{{ m.content.strip() }}|{{ m.role.startswith('us') }}|{{ m | tojson }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[Message::new("user", " a ")], false).unwrap(),
            // Python's str(True) and json.dumps separators, as Hugging Face renders them.
            "a|True|{\"role\": \"user\", \"content\": \" a \"}"
        );
    }

    fn render(source: &str) -> Result<String> {
        ChatTemplate::from_source(source, "", "")?.render(&[Message::new("user", "hi")], true)
    }

    /// Runs `f` on a thread with wasm's ~1 MiB stack: every limit must hold there too.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(1 << 20).spawn(f).unwrap().join().expect("no stack overflow")
    }

    #[test]
    fn parse_limits_hold_on_a_one_mib_stack() {
        on_small_stack(|| {
            let sum = |n: usize| format!("{{{{ {} }}}}", vec!["1"; n].join(" + "));
            assert_eq!(render(&sum(MAX_TAG_TOKENS / 2)).unwrap(), (MAX_TAG_TOKENS / 2).to_string());
            for n in [MAX_TAG_TOKENS, 25_000, 200_000] {
                let e = render(&sum(n)).unwrap_err().to_string();
                assert!(e.contains("tokens") || e.contains("bytes"), "{n} terms: {e}");
            }
            let parens = |n: usize| format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n));
            assert_eq!(render(&parens(MAX_NESTING)).unwrap(), "1");
            assert!(render(&parens(MAX_NESTING + 1)).unwrap_err().to_string().contains("nest"));
            let ifs = |n: usize| format!("{}x{}", "{% if true %}".repeat(n), "{% endif %}".repeat(n));
            assert_eq!(render(&ifs(MAX_NESTING)).unwrap(), "x");
            assert!(render(&ifs(MAX_NESTING + 1)).unwrap_err().to_string().contains("nest"));
            let nots = format!("{{{{ {}true }}}}", "not ".repeat(MAX_TAG_TOKENS - 1));
            assert_eq!(render(&nots).unwrap(), "False");
            let filters = format!("{{{{ ' a '{} }}}}", "|trim".repeat(MAX_TAG_TOKENS / 2 - 1));
            assert_eq!(render(&filters).unwrap(), "a");
            // Macro recursion stops at the limit instead of exhausting the stack.
            let e = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err().to_string();
            assert!(e.contains("recursion"), "{e}");
            assert!(render(&"x".repeat(MAX_SOURCE_BYTES + 1)).unwrap_err().to_string().contains("limit"));
        });
    }

    #[test]
    fn growth_is_bounded() {
        on_small_stack(|| {
            let looped = |body: &str| format!("{{% set ns = namespace(a='ab', b='cd') %}}{{% for i in range(40) %}}{body}{{% endfor %}}{{{{ ns.a|length }}}}");
            for body in ["{% set ns.a = ns.a ~ ns.a %}", "{% set ns.a = ns.a + ns.a %}", "{% set ns.a = ns.a ~ ns.b %}{% set ns.b = ns.b ~ ns.a %}"] {
                let e = render(&looped(body)).unwrap_err().to_string();
                assert!(e.contains("concatenates"), "{body}: {e}");
            }
            // Growth through printing (a macro that prints its argument twice) is bounded by the
            // budget of printed bytes.
            let e = render(
                "{% macro d(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(a='ab') %}\
                 {% for i in range(40) %}{% set t = d(ns.a) %}{% set ns.a = t %}{% endfor %}{{ ns.a|length }}",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("prints more than"), "{e}");
            let e = render("{{ 'x' * 50000000 }}").unwrap_err().to_string();
            assert!(e.contains("prints more than"), "{e}");
            // A list that holds itself twice per level prints 2^40 items: refused without building it.
            let e = render("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set t = [ns.l] %}{% set ns.l = t * 2 %}{% endfor %}{{ ns.l }}")
                .unwrap_err()
                .to_string();
            assert!(e.contains("prints more than"), "{e}");
            let e = render("{% for i in range(100000) %}{% for j in range(100) %}0123456789{% endfor %}{% endfor %}").unwrap_err().to_string();
            assert!(e.contains("exceeds"), "{e}");
            // Linear accumulation, as real templates do, is fine.
            let ok = "{% set ns = namespace(text='') %}{% for m in messages %}{% set ns.text = ns.text + m.content + '\\n' %}{% endfor %}{{ ns.text }}";
            assert_eq!(render(ok).unwrap(), "hi\n");
        });
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }
}
