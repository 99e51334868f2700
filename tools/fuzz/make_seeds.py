#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/*.cpp), made from real files.

    tools/fuzz/make_seeds.py OUT [--fixtures build/release/fixtures] [--shared ../shared/data]

Writes OUT/<target>/* (standard library only; missing sources are skipped).
Large real files are cut down to small valid ones so that the fuzzer mutates
their structure quickly: safetensors files keep their real header entries and
bytes for the smallest tensors, tokenizers keep their whole pipeline with the
first few hundred vocabulary entries (and the merges among them), GGUF files
keep their metadata (stories260K's vocabulary included) without the tensors.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def put(out, target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- safetensors ------------------------------------------------------------------

def st_read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return raw, n, json.loads(raw[8:8 + n])


def st_write(hdr, body):
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + body


def seeds_safetensors(out, fixtures):
    for path in sorted(glob.glob(os.path.join(fixtures, "tiny", "*", "model.safetensors"))):
        raw, n, h = st_read(path)
        base = 8 + n
        meta = h.get("__metadata__")
        entries = sorted(((k, v) for k, v in h.items() if k != "__metadata__"),
                         key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
        small, body = {}, b""
        if meta is not None:
            small["__metadata__"] = meta
        for k, v in entries[:6]:
            b, e = v["data_offsets"]
            if e - b > 4096:
                break
            small[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [len(body), len(body) + e - b]}
            body += raw[base + b:base + e]
        put(out, "fuzz_safetensors", st_write(small, body))
        # The real header without the data (every entry then lies past the end).
        put(out, "fuzz_safetensors", raw[:base])


def seeds_index(out, fixtures):
    real = sorted(glob.glob(os.path.join(fixtures, "**", "*.safetensors.index.json"), recursive=True))
    for p in real[:4]:
        put(out, "fuzz_safetensors_index", open(p, "rb").read())
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    put(out, "fuzz_safetensors_index", json.dumps(
        {"metadata": {"total_size": 42}, "weight_map": {"a": s1, "b": s1, "c": s2, "d": s2}}, indent=2))
    put(out, "fuzz_safetensors_index", json.dumps({"weight_map": {"c": s2}}))
    put(out, "fuzz_safetensors_index", json.dumps({"weight_map": {"a": s1, "x": "broken.safetensors"}}))


# --- GGUF ---------------------------------------------------------------------------

class GGUFReader:
    """Enough of GGUF to copy a file's metadata (v2/v3, little-endian)."""
    SIZES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def __init__(self, raw):
        self.raw, self.pos = raw, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.raw, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.raw[self.pos:self.pos + n]
        self.pos += n
        return s

    def value(self, t):
        if t in self.SIZES:
            return self.take(self.SIZES[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError(t)

    def metadata(self):
        assert self.raw[:4] == b"GGUF"
        self.pos = 4
        version, n_tensors, n_kv = self.take("I"), self.take("Q"), self.take("Q")
        kv = []
        for _ in range(n_kv):
            k = self.string()
            t = self.take("I")
            kv.append((k, t, self.value(t)))
        return version, kv


def gguf_value(t, v):
    if t in GGUFReader.SIZES:
        return struct.pack("<" + GGUFReader.SIZES[t], v)
    if t == 8:
        v = v.encode() if isinstance(v, str) else v
        return struct.pack("<Q", len(v)) + v
    et, items = v
    return struct.pack("<IQ", et, len(items)) + b"".join(gguf_value(et, x) for x in items)


def gguf_file(kv, version=3):
    out = b"GGUF" + struct.pack("<IQQ", version, 0, len(kv))
    for k, t, v in kv:
        k = k.encode() if isinstance(k, str) else k
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + gguf_value(t, v)
    return out


def gpt2_vocab_gguf(tok_json, arch, n_tokens=400):
    """A gpt2 (byte-level BPE) GGUF vocabulary from a tokenizer.json."""
    j = json.load(open(tok_json, encoding="utf-8"))
    m = j.get("model") or {}
    if m.get("type") != "BPE" or not isinstance(m.get("vocab"), dict):
        return None
    vocab = sorted(m["vocab"].items(), key=lambda kv: kv[1])[:n_tokens]
    tokens = [t for t, _ in vocab]
    have = set(tokens)
    merges = []
    for mg in m.get("merges", []):
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in have and b in have and a + b in have:
            merges.append(a + " " + b)
    kv = [("general.architecture", 8, arch), ("general.name", 8, "seed"), ("tokenizer.ggml.model", 8, "gpt2"),
          ("tokenizer.ggml.pre", 8, "default"),
          ("tokenizer.ggml.tokens", 9, (8, tokens)), ("tokenizer.ggml.merges", 9, (8, merges)),
          ("tokenizer.ggml.token_type", 9, (5, [3 if t.startswith("<") and t.endswith(">") else 1 for t in tokens])),
          ("tokenizer.ggml.bos_token_id", 4, 0), ("tokenizer.ggml.eos_token_id", 4, 1)]
    return gguf_file(kv)


def seeds_gguf(out, fixtures, shared):
    stories = os.path.join(shared, "models", "stories260K", "stories260K.gguf")
    if os.path.exists(stories):
        raw = open(stories, "rb").read()
        version, kv = GGUFReader(raw).metadata()
        meta_only = gguf_file(kv, version)
        for target in ("fuzz_gguf", "fuzz_config_json"):
            put(out, target, meta_only, "stories260K-metadata")
        put(out, "fuzz_gguf", raw[:65536], "stories260K-first64k")
    for p in sorted(glob.glob(os.path.join(fixtures, "gguf", "*.gguf")) + glob.glob(os.path.join(fixtures, "gguf", "bad", "*.gguf"))):
        put(out, "fuzz_gguf", open(p, "rb").read()[:65536])
    tiny_tok = sorted(glob.glob(os.path.join(fixtures, "tiny", "*", "tokenizer.json")))
    for arch, src in (("gpt2", "gpt_neox"), ("qwen2", "qwen2"), ("llama", "llama3")):
        p = os.path.join(fixtures, "tiny", src, "tokenizer.json")
        if not os.path.exists(p) and tiny_tok:
            p = tiny_tok[0]
        if os.path.exists(p):
            g = gpt2_vocab_gguf(p, arch)
            if g:
                put(out, "fuzz_gguf", g, "gpt2-vocab-" + arch)


# --- config.json ----------------------------------------------------------------------

def seeds_config_json(out, fixtures):
    for p in sorted(glob.glob(os.path.join(fixtures, "tiny", "*", "config.json"))):
        put(out, "fuzz_config_json", open(p, "rb").read())


# --- tokenizer.json ------------------------------------------------------------------------

def shrink_tokenizer_json(path, n_tokens=300):
    j = json.load(open(path, encoding="utf-8"))
    m = j.get("model") or {}
    if isinstance(m.get("vocab"), dict):
        vocab = dict(sorted(m["vocab"].items(), key=lambda kv: kv[1])[:n_tokens])
        keep = set(vocab)
        merges = []
        for mg in m.get("merges", []):
            a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
            if a in keep and b in keep and a + b in keep:
                merges.append(mg)
        m["vocab"], m["merges"] = vocab, merges
    j["added_tokens"] = (j.get("added_tokens") or [])[:16]
    return json.dumps(j, ensure_ascii=False).encode()


def seeds_tokenizer_json(out, fixtures, shared):
    for p in sorted(glob.glob(os.path.join(fixtures, "tiny", "*", "tokenizer.json"))):
        put(out, "fuzz_tokenizer_json", open(p, "rb").read())
    for p in sorted(glob.glob(os.path.join(shared, "tokenizers", "*", "tokenizer.json"))):
        put(out, "fuzz_tokenizer_json", shrink_tokenizer_json(p), os.path.basename(os.path.dirname(p)))


# --- tokenizer.model (SentencePiece protobuf) ---------------------------------------------

def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def shrink_spm(raw, n_pieces=400):
    """Keeps the first n pieces (field 1) and every other field."""
    out, i, kept = b"", 0, 0
    while i < len(raw):
        start = i
        key, i = varint(raw, i)
        wt = key & 7
        if wt == 0:
            _, i = varint(raw, i)
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        elif wt == 2:
            n, i = varint(raw, i)
            i += n
        else:
            raise ValueError(wt)
        if key >> 3 == 1:
            kept += 1
            if kept > n_pieces:
                continue
        out += raw[start:i]
    return out


def seeds_tokenizer_model(out, shared):
    for p in sorted(glob.glob(os.path.join(shared, "tokenizers", "*", "tokenizer.model"))):
        raw = open(p, "rb").read()
        put(out, "fuzz_tokenizer_model", shrink_spm(raw, 400), os.path.basename(os.path.dirname(p)))
        put(out, "fuzz_tokenizer_model", shrink_spm(raw, 40), os.path.basename(os.path.dirname(p)) + "-40")


# --- YAML configs ----------------------------------------------------------------------------

def seeds_config_yaml(out):
    paths = sorted(glob.glob(os.path.join(SRC, "configs", "**", "*.yaml"), recursive=True))
    for p in paths:
        text = open(p, encoding="utf-8").read()
        # The fuzz target reads configs in a folder with eval.jsonl, cal.jsonl and mu.h5.
        text = re.sub(r"(eval_jsonl:\s*)\S+", r"\1eval.jsonl", text)
        text = re.sub(r"(calibration_jsonl:\s*)\S+", r"\1cal.jsonl", text)
        text = re.sub(r"(mu_from:\s*)\S+", r"\1mu.h5", text)
        put(out, "fuzz_config_yaml", text, os.path.relpath(p, os.path.join(SRC, "configs")).replace("/", "_"))
    put(out, "fuzz_config_yaml", "out: o\nmodel: m\neval_jsonl: eval.jsonl\n\0max_docs=3\0steps.viz=false", "with-set")
    put(out, "fuzz_config_yaml",
        "out: o\ndefaults: &d\n  model: m\n  eval_jsonl: eval.jsonl\n  steps: {basic: true}\n"
        "runs:\n  - {<<: *d, name: a}\n  - <<: *d\n    name: b\n    intervention: {modes: [zero]}\n", "anchors")


# --- eval JSON Lines ---------------------------------------------------------------------------

def seeds_eval_jsonl(out, shared):
    srcs = sorted(glob.glob(os.path.join(SRC, "data", "eval", "*", "eval.jsonl")))
    srcs += sorted(glob.glob(os.path.join(shared, "corpora", "*.jsonl")))
    for p in srcs:
        lines = []
        with open(p, encoding="utf-8") as f:
            for _, line in zip(range(3), f):
                d = json.loads(line)
                d["text"] = d.get("text", "")[:300]
                lines.append(json.dumps(d, ensure_ascii=False))
        put(out, "fuzz_eval_jsonl", "\n".join(lines) + "\n", os.path.basename(os.path.dirname(p)) + "-" + os.path.basename(p))


# --- texts for the encoders --------------------------------------------------------------------

def seeds_tokenize_text(out, shared, n_tokenizers=8):
    texts = []
    for p in sorted(glob.glob(os.path.join(shared, "corpora", "*.jsonl"))):
        with open(p, encoding="utf-8") as f:
            texts.append(json.loads(f.readline())["text"][:400].encode())
    texts += ["  leading spaces\n\n\ttabs  and trailing   ".encode(), "caf\u00e9 e\u0301 \u4e2d\u6587 \U0001F600 \u2581x".encode(),
              b"<s>[INST] <|endoftext|><|im_start|>user\n</s>", b"\xff\xfe invalid \xc3 bytes \xe2\x82", b"12345 67.89 1e10"]
    for i in range(n_tokenizers):
        for k, t in enumerate(texts):
            put(out, "fuzz_tokenize_text", bytes([i, k & 3]) + t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--fixtures", default=os.path.join(SRC, "build", "release", "fixtures"))
    ap.add_argument("--shared", default=os.environ.get("SINK_SHARED_DATA", os.path.join(SRC, "..", "shared", "data")))
    a = ap.parse_args()
    seeds_safetensors(a.out, a.fixtures)
    seeds_index(a.out, a.fixtures)
    seeds_gguf(a.out, a.fixtures, a.shared)
    seeds_config_json(a.out, a.fixtures)
    seeds_tokenizer_json(a.out, a.fixtures, a.shared)
    seeds_tokenizer_model(a.out, a.shared)
    seeds_config_yaml(a.out)
    seeds_eval_jsonl(a.out, a.shared)
    seeds_tokenize_text(a.out, a.shared)
    for t in sorted(os.listdir(a.out)):
        files = os.listdir(os.path.join(a.out, t))
        size = sum(os.path.getsize(os.path.join(a.out, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    sys.exit(main())
