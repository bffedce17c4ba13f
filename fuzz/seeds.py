#!/usr/bin/env python3
"""Seeds for the fuzz corpora (fuzz/corpus/TARGET/), from the repository's fixtures and models.

Run once from the repository root (after scripts/setup.sh); the fuzzer grows and `cargo fuzz cmin`
minimises what is committed. GGUF seeds are written by `cargo test --release --test hostile
write_gguf_fuzz_seeds -- --ignored` (they need the GGUF writer)."""
import glob, hashlib, json, os, struct, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "fuzz", "corpus")


def put(target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def gguf_string(path, key):
    """The string value of metadata `key` in a GGUF file (v3, little-endian), or None."""
    with open(path, "rb") as f:
        head = f.read(64 << 20)
    pos = 24
    n_kv = struct.unpack_from("<Q", head, 16)[0]
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(ty, pos):
        if ty in sizes:
            return pos + sizes[ty], None
        if ty == 8:
            n = struct.unpack_from("<Q", head, pos)[0]
            return pos + 8 + n, head[pos + 8:pos + 8 + n]
        if ty == 9:
            ety, n = struct.unpack_from("<IQ", head, pos)
            pos += 12
            for _ in range(n):
                pos, _ = skip(ety, pos)
            return pos, None
        raise ValueError(ty)

    for _ in range(n_kv):
        n = struct.unpack_from("<Q", head, pos)[0]
        k = head[pos + 8:pos + 8 + n].decode()
        ty = struct.unpack_from("<I", head, pos + 8 + n)[0]
        pos, val = skip(ty, pos + 12 + n)
        if k == key:
            return val.decode("utf-8", "replace") if val is not None else None
    return None


texts, messages = [], []
for fx in glob.glob(os.path.join(root, "tests/fixtures/*.json")):
    f = json.load(open(fx))
    texts += [c["text"] for c in f.get("tokenize", [])]
    for c in f.get("chat", []):
        messages.append(c["messages"])
vocab_dir = os.environ.get("FERROLM_VOCAB_DIR", os.path.join(root, "../shared/fixtures/vocab"))
for inp in glob.glob(os.path.join(vocab_dir, "*.inp")):
    texts += open(inp, encoding="utf-8", errors="replace").read().split("\n__ggml_vocab_test__\n")[:40:4]

# tokenizer: first byte = vocabulary (>> 2) and mode (& 3: encode, encode with specials, decode u16, decode u32).
for i, t in enumerate(texts):
    put("tokenizer", bytes([(i % 8) << 2 | (i % 2)]) + t.encode())
put("tokenizer", bytes([2]) + struct.pack("<8H", 1, 2, 3, 100, 260, 511, 49151, 65535))
put("tokenizer", bytes([3]) + struct.pack("<4I", 1, 2, 262143, 0xFFFFFFFF))

# template: source \0 role \0 content \0 ...
templates = []
for m in glob.glob(os.path.join(root, "models/*.gguf")) + glob.glob(os.path.join(vocab_dir, "*.gguf")):
    t = gguf_string(m, "tokenizer.chat_template")
    if t:
        templates.append(t)
templates += [
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{{ bos_token }}{% set ns = namespace(text='') %}{% for m in messages %}{% set ns.text = ns.text + m.content %}{% endfor %}{{ ns.text | trim | tojson }}",
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(5) }}{{ messages[0].content.strip().split(' ')|join(',') }}",
]
for t in templates:
    for ms in messages[:2] + [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]]:
        fields = [t] + [x for m in ms for x in (m["role"], m["content"])]
        put("template", "\0".join(fields).encode())

# cli: arguments separated by \0.
for line in [
    "inspect\0m.gguf", "tokenize\0m.gguf\0Hello world", "generate\0m.gguf\0--prompt\0hi\0--chat\0--system\0be kind\0--max-tokens\08\0--json",
    "generate\0m.gguf\0--prompt\0x\0--temperature\00.7\0--top-k\040\0--top-p\00.9\0--min-p\00.05\0--seed\07\0--stop\0.\0--stop\0!",
    "render\0m.gguf\0--messages\0m.json", "score\0m.gguf\0--tokens\01,2,3\0--top-k\05\0--context\064", "bench\0m.gguf\0--prompt-tokens\016\0--gen-tokens\04",
    "chat\0m.gguf\0--repeat-penalty\01.1\0--presence-penalty\00.5\0--frequency-penalty\00.1\0--penalty-window\032", "help", "-h",
]:
    put("cli", line.encode())
put("cli", b"tokenize\0m\xff.gguf\0\xfe\xff")

# config: arch, key count, (key index, value type, value bytes)..., tensor switches and shapes.
for arch in range(7):
    rec = bytes([arch, 8])
    for key, ty, val in [(0, 0, 2), (1, 0, 256), (2, 0, 512), (5, 0, 4), (6, 0, 2), (9, 2, struct.unpack("<I", struct.pack("<f", 1e-6))[0]), (14, 2, struct.unpack("<I", struct.pack("<f", 10000.0))[0]), (3, 0, 128)]:
        rec += bytes([key, ty]) + struct.pack("<I", val)
    rec += bytes([1, 7, 3] * 6)
    put("config", rec)
print("seeds:", {t: len(os.listdir(os.path.join(corpus, t))) for t in os.listdir(corpus)})
