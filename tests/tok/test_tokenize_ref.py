"""sink-tokenize against the reference tokenizers.

- every tokenizer.json in shared/data/tokenizers: HF `tokenizers` (the
  reference the data README names), over every document of the three corpora
  and over adversarial strings; ids with and without special tokens, and
  decode (with and without skip_special) of the ids;
- llama-2/tokenizer.model: the tokenizer HF's Llama conversion builds from it
  (transformers' generate_merges over the SentencePiece vocabulary, the legacy
  Prepend/Replace normalizer of Llama 2's own tokenizer.json), built here with
  `tokenizers`; and the `sentencepiece` library itself on text without
  special-token strings;
- stories260K.gguf: an independent Python port of llama2.c's run.c encode()
  and decode() over the vocabulary read with gguf-py;
- broken tokenizer files: one line on stderr, exit status 2.
"""
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

DATA = Path(os.environ.get("SINK_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
BUILD = Path(os.environ.get("SINK_BUILD_DIR", Path(__file__).resolve().parents[2] / "build" / "release"))
BIN = BUILD / "sink-tokenize"
TOKDIR = DATA / "tokenizers"
CORPORA = ["sotu", "austen", "moby-dick"]
JSON_TOKENIZERS = sorted(p.name for p in TOKDIR.iterdir() if (p / "tokenizer.json").exists())

ADVERSARIAL = [
    "", " ", "  ", "\n", "\n\n\n", "\t\t x", "   leading", "trailing   ", "a  b   c    d",
    "\r\n\r\n", " " * 100, "x" + " " * 24 + "y", "x" + " " * 5 + "\n" + " " * 7 + "y",
    "\u00a0 \u3000 \u2028 \u0085 \u180e \u200b \u1680 \u202f|",
    "Hello мир 世界 مرحبا שלום नमस्ते こんにちは 안녕하세요 ελληνικά ქართული",
    "👍🏽 👨‍👩‍👧‍👦 🇺🇸 😀😀😀 ❤️‍🔥",
    "e\u0301 a\u0308 o\u0302\u0323 \u0915\u094d\u0937 \u1100\u1161\u11a8 \u212b \ufb01 \u0041\u030a",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f A\u0334\u0335\u031c",
    "<|endoftext|>", "<s>", "</s>", "<unk>", "<pad>", "<bos>", "<eos>", "a<s>b", " <s> ", "x</s>y",
    "<|im_start|>user\nhi<|im_end|>\n", "<|begin_of_text|>Hi<|eot_id|>", "<start_of_turn>user\nhi<end_of_turn>",
    "[@BOS@]<mask><unused0>", "<|startoftext|><|return|>", "<|endoftext|><|endoftext|>", "<s><s></s>",
    "a" * 5000, "supercalifragilistic" * 200, "1234567890" * 100, "\u00e9" * 1000, "🙂" * 500,
    "https://example.com/a/very/long/path?with=query&and=more#fragment" * 20,
    "'s 'S 'ſ 'll don't I'M WE'RE they've", "3.14159 1,000,000 ١٢٣ ½ ² ⅷ 𝟙",
    "\u2581 leading metaspace\u2581\u2581x", "<0x0A> <0xFF>", "\x00 null \x01\x1f\x7f",
    "tab\tsep\tvalues\n\ttabbed", "\u00ad soft\u00adhyphen", "\ufeffBOM", "\U0001f9d1\u200d\U0001f4bb\U000e0067",
    "ǅungla ǈ ﬀ ẞ İstanbul ΣΑΣ", "   \n   \n   ", "!!!???...;;;", "C++ std::vector<int> x = {1,2};",
]
# Raw bytes that are not UTF-8: read as U+FFFD, as bytes.decode("utf-8", "replace").
INVALID_UTF8 = [b"abc\xff\xfe def \xc3", b"\xc3\x28 \xa0\xa1 \xe2\x28\xa1", b"\xed\xa0\x80 surrogate", b"\xf0\x90\x28\xbc"]


def run_bin(args, stdin=None, check=True):
    r = subprocess.run([str(BIN), *args], input=stdin, capture_output=True)
    if check and r.returncode != 0:
        raise AssertionError(f"sink-tokenize {args} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return r


def start_encode(tok_path, jsonl, no_special=False):
    """Starts sink-tokenize on a JSON Lines file; finish() collects its ids."""
    args = ["--tokenizer", str(tok_path), "--jsonl", str(jsonl)] + (["--no-special"] if no_special else [])
    return subprocess.Popen([str(BIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc):
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"sink-tokenize {proc.args} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return [json.loads(l) for l in out.decode().split("\n") if l]


def encode_file(tok_path, jsonl, no_special=False):
    return finish(start_encode(tok_path, jsonl, no_special))


def decode_ids(tok_path, ids_list, skip_special=False):
    payload = "".join(json.dumps(ids) + "\n" for ids in ids_list).encode()
    args = ["--tokenizer", str(tok_path), "--decode"] + (["--skip-special"] if skip_special else [])
    out = run_bin(args, stdin=payload).stdout.decode()
    return [json.loads(l) for l in out.split("\n") if l]


def load_corpus(name):
    with open(DATA / "corpora" / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f if l.strip()]


@pytest.fixture(scope="module")
def corpora():
    return {c: load_corpus(c) for c in CORPORA}


@pytest.fixture(scope="module")
def adversarial_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("adv")
    p = d / "adv.jsonl"
    with open(p, "wb") as f:
        for s in ADVERSARIAL:
            f.write(json.dumps({"text": s}).encode() + b"\n")
        for b in INVALID_UTF8:
            f.write(b'{"text": "' + b + b'"}\n')
    texts = ADVERSARIAL + [b.decode("utf-8", "replace") for b in INVALID_UTF8]
    return p, texts


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(name, what, texts, ours, ref):
    assert len(ours) == len(ref), f"{name} {what}: {len(ours)} outputs for {len(ref)} inputs"
    bad = [i for i in range(len(ref)) if ours[i] != ref[i]]
    if bad:
        i = bad[0]
        k = first_diff(ours[i], ref[i])
        raise AssertionError(
            f"{name} {what}: {len(bad)}/{len(ref)} differ; first: #{i} {texts[i][:80]!r} at position {k}: "
            f"ours {ours[i][max(0, k - 3):k + 5]} vs ref {ref[i][max(0, k - 3):k + 5]}")
    print(f"{name} {what}: {len(ref)} identical")


# --- tokenizer.json ------------------------------------------------------------------------------

def hf_tokenizer(name):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(TOKDIR / name / "tokenizer.json"))


def check_against(name, tok_path, ref, corpora, adversarial_file):
    """ref: a `tokenizers.Tokenizer`."""
    for c in CORPORA:
        texts = corpora[c]
        proc = start_encode(tok_path, DATA / "corpora" / f"{c}.jsonl")  # runs while HF encodes
        want = [e.ids for e in ref.encode_batch(texts, add_special_tokens=True)]
        compare(name, f"{c} ids", texts, finish(proc), want)
        got_text = decode_ids(tok_path, want)
        compare(name, f"{c} decode", texts, got_text, ref.decode_batch(want, skip_special_tokens=False))
    path, texts = adversarial_file
    for no_special in (False, True):
        ours = encode_file(tok_path, path, no_special=no_special)
        want = [ref.encode(t, add_special_tokens=not no_special).ids for t in texts]
        compare(name, f"adversarial ids (add_special={not no_special})", texts, ours, want)
    want = [ref.encode(t).ids for t in texts]
    for skip in (False, True):
        compare(name, f"adversarial decode (skip_special={skip})", texts, decode_ids(tok_path, want, skip),
                [ref.decode(ids, skip_special_tokens=skip) for ids in want])


@pytest.mark.parametrize("name", JSON_TOKENIZERS)
def test_tokenizer_json(name, corpora, adversarial_file):
    check_against(name, TOKDIR / name, hf_tokenizer(name), corpora, adversarial_file)


def test_text_argument_and_invalid_utf8_argument():
    ref = hf_tokenizer("gpt2")
    out = run_bin(["--tokenizer", str(TOKDIR / "gpt2"), "--text", "Hello\xa0world <|endoftext|>"]).stdout
    assert json.loads(out) == ref.encode("Hello\xa0world <|endoftext|>").ids
    raw = b"ab\xffcd \xe2\x82"
    out = subprocess.run([bytes(BIN), b"--tokenizer", bytes(TOKDIR / "gpt2"), b"--text", raw],
                         capture_output=True, check=True).stdout
    assert json.loads(out) == ref.encode(raw.decode("utf-8", "replace")).ids


# Variants of the real files with the other components that snapshots use (Metaspace
# pre-tokenizer instead of the Prepend normalizer, prefix spaces, other split behaviours).
META = "\u2581"
VARIANTS = {
    "metaspace-first": ("mistral-7b-v0.1", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": META, "prepend_scheme": "first", "split": False},
        "decoder": {"type": "Metaspace", "replacement": META, "prepend_scheme": "first", "split": False}}),
    "metaspace-always-split": ("mistral-7b-v0.1", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": META, "prepend_scheme": "always", "split": True}}),
    "bytelevel-prefix-space": ("gpt2", {
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}),
    "split-behaviours": ("gpt2", {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Replace",
                       "pattern": {"Regex": "[0-9]"}, "content": "#"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": "e"}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[aeiou]+"}, "behavior": "Contiguous", "invert": False},
            {"type": "Split", "pattern": {"String": ","}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tokenizer_json_variants(variant, corpora, adversarial_file, tmp_path):
    from tokenizers import Tokenizer
    base, changes = VARIANTS[variant]
    j = json.loads((TOKDIR / base / "tokenizer.json").read_text(encoding="utf-8"))
    j.update(changes)
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(j), encoding="utf-8")
    ref = Tokenizer.from_file(str(p))
    texts = corpora["moby-dick"]
    compare(variant, "moby-dick ids", texts, encode_file(p, DATA / "corpora" / "moby-dick.jsonl"),
            [e.ids for e in ref.encode_batch(texts)])
    path, texts = adversarial_file
    want = [ref.encode(t).ids for t in texts]
    compare(variant, "adversarial ids", texts, encode_file(p, path), want)
    compare(variant, "adversarial decode", texts, decode_ids(p, want),
            [ref.decode(ids, skip_special_tokens=False) for ids in want])


# --- tokenizer.model (Llama 2) -----------------------------------------------------------------------

def llama2_reference():
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers.tokenization_utils_base import generate_merges

    sp = spm.SentencePieceProcessor(model_file=str(TOKDIR / "llama-2" / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, None)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=sp.id_to_piece(sp.unk_id()),
                              fuse_unk=True, byte_fallback=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    specials = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = sp.id_to_piece(sp.bos_id())
    tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, sp.bos_id())])
    return sp, tk


def test_llama2_tokenizer_model(corpora, adversarial_file):
    sp, ref = llama2_reference()
    path = TOKDIR / "llama-2" / "tokenizer.model"
    check_against("llama-2", path, ref, corpora, adversarial_file)
    # sentencepiece itself, where it and HF's conversion mean the same thing: not on special-token
    # strings (HF matches them, sentencepiece does not) nor on runs of spaces or a literal "▁"
    # (sentencepiece splits "▁▁Every" into "▁" + "▁Every" before merging; HF's BPE merges "▁▁" first).
    def same_meaning(t):
        return all(x not in t for x in ("<s>", "</s>", "<unk>", "  ", "\u00a0 ", "\t ", "\u2581"))

    for c in CORPORA:
        texts = corpora[c]
        ours = encode_file(path, DATA / "corpora" / f"{c}.jsonl")
        keep = [i for i, t in enumerate(texts) if same_meaning(t)]
        compare("llama-2 vs sentencepiece", f"{c} ({len(texts) - len(keep)} docs with space runs left out)",
                [texts[i] for i in keep], [ours[i] for i in keep],
                [[sp.bos_id()] + x for x in sp.encode([texts[i] for i in keep])])
    adv_path, texts = adversarial_file
    ours = encode_file(path, adv_path)
    keep = [i for i, t in enumerate(texts) if same_meaning(t)]
    compare("llama-2 vs sentencepiece", "adversarial", [texts[i] for i in keep], [ours[i] for i in keep],
            [[sp.bos_id()] + sp.encode(texts[i]) for i in keep])


# --- GGUF (stories260K) vs llama2.c ----------------------------------------------------------------

GGUF = DATA / "models" / "stories260K" / "stories260K.gguf"
STORIES = [
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, "
    "she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, "
    "let's go to the park.\" Lily was sad and didn't know w",
    "Tom and Sue were friends. They liked to play with their toys in the garden. One day, Tom found a shiny "
    "rock. \"Look, Sue!\" he said. \"It is so pretty!\" Sue smiled and said, \"Can I hold it?\"",
    "The little dog was happy. He ran to the tree and barked at the bird.  The bird flew away.\n\nThe end.",
    "Zoë ate 3 crêpes 🙂 at 10:30!",
]


def llama2c_vocab():
    from gguf import GGUFReader
    r = GGUFReader(str(GGUF))
    f = r.fields["tokenizer.ggml.tokens"]
    # llama2.c's tokenizer export writes pieces with "▁" as " ".
    vocab = [bytes(f.parts[i]).decode("utf-8").replace("\u2581", " ").encode("utf-8") for i in f.data]
    s = r.fields["tokenizer.ggml.scores"]
    scores = [float(s.parts[i][0]) for i in s.data]
    return vocab, scores


def llama2c_encode(text, vocab, scores, bos=True):
    """A port of llama2.c run.c encode() (bos, no eos)."""
    lookup = {}
    for i, v in enumerate(vocab):
        lookup.setdefault(v, i)
    tokens = [1] if bos else []
    data = text.encode("utf-8")
    if data:
        tokens.append(lookup.get(b" ", -1))
    buf = b""
    for i, c in enumerate(data):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        nxt = data[i + 1] if i + 1 < len(data) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        tid = lookup.get(buf, -1)
        if tid != -1:
            tokens.append(tid)
        else:
            tokens.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            tid = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]], -1)
            if tid != -1 and scores[tid] > best_score:
                best_score, best_id, best_idx = scores[tid], tid, i
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def llama2c_decode(ids, vocab, prev=1):
    """run.c decode() of each id in turn, after `prev`, concatenated."""
    out = b""
    for t in ids:
        piece = vocab[t]
        if prev == 1 and piece.startswith(b" "):
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            piece = bytes([int(piece[3:5], 16)])
        out += piece
        prev = t
    return out.decode("utf-8", "replace")


def test_gguf_stories260k_matches_llama2c():
    vocab, scores = llama2c_vocab()
    for text in STORIES:
        want = llama2c_encode(text, vocab, scores)
        got = json.loads(run_bin(["--tokenizer", str(GGUF), "--text", text]).stdout)
        assert got == want, f"{text[:40]!r}: ours {got} vs llama2.c {want}"
        # Decode of the ids after BOS is llama2.c's printed text (leading space stripped).
        assert decode_ids(GGUF, [want[1:]]) == [llama2c_decode(want[1:], vocab)]
        assert decode_ids(GGUF, [want[1:]])[0] == text
    print(f"stories260K: {len(STORIES)} texts identical to llama2.c")


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,needle", [
    ("{not json", "not valid JSON"),
    ('{"model": {"type": "WordPiece", "vocab": {}}}', "unsupported model type 'WordPiece'"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}}}', "model.merges is missing"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}', "not in the vocabulary"),
])
def test_broken_tokenizer_file(tmp_path, content, needle):
    p = tmp_path / "tokenizer.json"
    p.write_text(content)
    r = run_bin(["--tokenizer", str(p), "--text", "hi"], check=False)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("sink-tokenize: ") and str(p) in err and needle in err, err
    assert r.stdout == b""


def test_broken_model_and_gguf(tmp_path):
    for name, data in [("tokenizer.model", b"\x0a\xff\xff\xff"), ("x.gguf", b"GGUF\x03\x00")]:
        p = tmp_path / name
        p.write_bytes(data)
        r = run_bin(["--tokenizer", str(p), "--text", "hi"], check=False)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and str(p) in err, err
