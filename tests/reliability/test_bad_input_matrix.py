"""The bad-input matrix: broken inputs of every format, each through the
binary a user would run. Every case must end with exit status 2 and exactly
one stderr line with "error" that names the file (or key) and the problem:
no crash, no internal error, and nothing partial passed off as complete (no
results.h5, no dump file under its final name, an earlier results.h5 left
as it was). Cases already covered by tests/model/test_bad_inputs.py,
tests/run/test_configs.py, tests/io/test_gguf.cpp and tests/tok are not
repeated.

Weights, safetensors (sink-lm on a copy of the tiny llama checkpoint):
  w01 +Inf in an F32 weight              w02 -Inf in an F16 checkpoint
  w03 NaN in a BF16 checkpoint           w04 an integer (I32) weight
  w05 zero-length tensor (shape [0])     w06 empty model.safetensors (0 bytes)
  w07 header length 2^63                 w08 shape of 2^62 elements (huge declared size)
  w09 negative dimension                 w10 nine dimensions
  w11 data_offsets begin > end           w12 two tensors overlap
  w13 duplicate tensor name in the header
  w14 header is a JSON array             w15 header is not UTF-8
Sharded snapshots (model.safetensors.index.json):
  s01 shard path escapes the snapshot    s02 tensor missing from its shard
  s03 a tensor listed twice in weight_map   s04 weight_map is a list
  s05 shard file does not exist
config.json (sink-lm):
  c01 not UTF-8                          c02 number overflow (1e999)
  c03 GPT-NeoX rotary_pct 1e300 (was undefined behaviour)
  c04 Qwen2 max_window_layers -3 (was a write before the window array)
  c05 hidden_size given as a string
GGUF (sink-lm):
  g01 NaN in a tensor                    g02 architecture 'mamba'
  g03 block_count 2^40                   g04 scores count differs from tokens count
Tokenizers (sink-lm --prompt on the tiny llama with a broken tokenizer):
  t01 tokenizer.json not UTF-8           t02 vocabulary id 2^31-1 (a 2^31-entry table)
  t03 Metaspace with an empty replacement (was an endless loop)
  t04 bad split regex                    t05 truncated tokenizer.json
  t06 tokenizer_config.json number overflow
  t07 truncated tokenizer.model
Configs (sink-run):
  y01 alias bomb ("billion laughs")      y02 256 levels of nesting
  y03 config not UTF-8                   y04 two YAML documents
  y05 run name '../escape' (a path out of the output folder, via --set)
  y06 out: is a file                     y07 sweep run name with a slash
Eval sets (sink-run):
  e01 not UTF-8                          e02 number overflow in an id
  e03 eval_jsonl is a folder             e04 duplicate ids
intervention.window_eval (sink-run):
  v01 a window of 0                      v02 keep -1
  v03 an unknown ssp variant             v04 a document longer than the model's context
  v05 ssp variants without calibration_jsonl (mu_from holds no windowed mu)
Resume (sink-run --resume into a finished run's folder):
  r01 a results folder of another config (same eval set, other settings)
  r02 the same config over an edited eval set
  r03 manifest.json of the wrong JSON type
  r04 a torn per-document partial result
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model"))
from safetensors_edit import copy_model, header, write_st  # noqa: E402

BUILD = os.environ.get("SINK_BUILD_DIR", "build/release")
FIXTURES = os.environ.get("SINK_FIXTURES", "build/release/fixtures")
SHARED = os.environ.get("SINK_SHARED_DATA", "../shared/data")
TINY = os.path.join(FIXTURES, "tiny")
STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")


# --- running and checking --------------------------------------------------------------

def run(tool, *args, timeout=600):
    return subprocess.run([os.path.join(BUILD, tool), *map(str, args)], capture_output=True, text=True,
                          errors="replace", timeout=timeout)


def expect_bad(r, *words, absent=(), unchanged=None):
    """Exit 2, one 'error' line naming every word, no other failure, no output passed off as complete."""
    errs = [l for l in r.stderr.splitlines() if "error" in l]
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert len(errs) == 1, r.stderr[-3000:]
    assert "internal error" not in errs[0], errs[0]
    for w in words:
        assert str(w) in errs[0], (w, errs[0])
    for p in absent:
        assert not os.path.exists(p), f"{p} exists after a failed run"
    for p, digest in (unchanged or {}).items():
        assert sha(p) == digest, f"{p} changed by a failed run"
    return errs[0]


def sha(p):
    import hashlib
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


def lm(tmp_path, model, *words, ids="1,2,3", prompt=None):
    dump = tmp_path / "dump.safetensors"
    args = ["--model", model, "--dump", dump, "--threads", "1"]
    args += ["--prompt", prompt] if prompt is not None else ["--ids", ids]
    r = run("sink-lm", *args)
    return expect_bad(r, *words, absent=[dump, str(dump) + ".tmp"])


# --- safetensors helpers ------------------------------------------------------------------

def edit_header(d, fn):
    f = d / "model.safetensors"
    raw, n, h = header(f)
    fn(h)
    write_st(f, h, raw[8 + n:])
    return f


def first_f32(h):
    return next(k for k in h if k != "__metadata__" and h[k]["dtype"] == "F32")


def save_torch(d, change, dtype=None):
    import torch
    from safetensors.torch import load_file, save_file
    f = d / "model.safetensors"
    t = load_file(f)
    if dtype is not None:
        t = {k: v.to(dtype) for k, v in t.items()}
    change(t)
    save_file(t, f)
    return f


# --- weights ---------------------------------------------------------------------------------

def test_w01_inf_f32(tmp_path):
    d = copy_model(tmp_path)
    f = save_torch(d, lambda t: t["model.layers.0.self_attn.q_proj.weight"].view(-1).__setitem__(5, float("inf")))
    lm(tmp_path, d, f, "model.layers.0.self_attn.q_proj.weight", "NaN or Inf")


def test_w02_neg_inf_f16(tmp_path):
    import torch
    d = copy_model(tmp_path)
    f = save_torch(d, lambda t: t["model.norm.weight"].__setitem__(0, float("-inf")), dtype=torch.float16)
    lm(tmp_path, d, f, "model.norm.weight", "NaN or Inf")


def test_w03_nan_bf16(tmp_path):
    import torch
    d = copy_model(tmp_path)
    f = save_torch(d, lambda t: t["model.embed_tokens.weight"].view(-1).__setitem__(7, float("nan")),
                   dtype=torch.bfloat16)
    lm(tmp_path, d, f, "model.embed_tokens.weight", "NaN or Inf")


def test_w04_integer_weight(tmp_path):
    import torch
    d = copy_model(tmp_path)
    f = save_torch(d, lambda t: t.__setitem__("model.norm.weight", torch.ones(t["model.norm.weight"].shape, dtype=torch.int32)))
    lm(tmp_path, d, f, "model.norm.weight", "not a floating-point tensor")


def test_w05_zero_length_tensor(tmp_path):
    d = copy_model(tmp_path)

    def zero(h):
        b = h["model.norm.weight"]["data_offsets"][0]
        h["model.norm.weight"] = {"dtype": "F32", "shape": [0], "data_offsets": [b, b]}
    f = edit_header(d, zero)
    lm(tmp_path, d, f, "model.norm.weight", "shape [0]")


def test_w06_empty_file(tmp_path):
    d = copy_model(tmp_path)
    (d / "model.safetensors").write_bytes(b"")
    lm(tmp_path, d, d / "model.safetensors", "truncated", "0 bytes")


def test_w07_header_length_2_63(tmp_path):
    d = copy_model(tmp_path)
    f = d / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", 1 << 63) + raw[8:])
    lm(tmp_path, d, f, "exceeds the 100 MB limit")


def test_w08_huge_shape(tmp_path):
    d = copy_model(tmp_path)
    f = edit_header(d, lambda h: h[first_f32(h)].__setitem__("shape", [1 << 31, 1 << 31]))
    lm(tmp_path, d, f, "impossibly large")


def test_w09_negative_dimension(tmp_path):
    d = copy_model(tmp_path)
    f = edit_header(d, lambda h: h[first_f32(h)].__setitem__("shape", [-64]))
    lm(tmp_path, d, f, "negative")


def test_w10_nine_dimensions(tmp_path):
    d = copy_model(tmp_path)
    f = edit_header(d, lambda h: h[first_f32(h)].__setitem__("shape", [1] * 9))
    lm(tmp_path, d, f, "at most 8 dimensions")


def test_w11_offsets_reversed(tmp_path):
    d = copy_model(tmp_path)

    def rev(h):
        e = h[first_f32(h)]
        e["data_offsets"] = e["data_offsets"][::-1]
    f = edit_header(d, rev)
    lm(tmp_path, d, f, "begin > end")


def test_w12_overlap(tmp_path):
    d = copy_model(tmp_path)

    def overlap(h):
        names = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
        a, b = h[names[0]], h[names[1]]
        size = b["data_offsets"][1] - b["data_offsets"][0]
        b["data_offsets"] = [a["data_offsets"][1] - 4, a["data_offsets"][1] - 4 + size]
    f = edit_header(d, overlap)
    lm(tmp_path, d, f, "overlap")


def test_w13_duplicate_tensor_name(tmp_path):
    d = copy_model(tmp_path)
    f = d / "model.safetensors"
    raw, n, h = header(f)
    name = first_f32(h)
    text = json.dumps(h)
    # The same name again, pointing at the same bytes: JSON parsers keep one silently.
    dup = text[:-1] + ", " + json.dumps(name) + ": " + json.dumps(h[name]) + "}"
    write_st(f, None, raw[8 + n:], raw_header=dup.encode())
    lm(tmp_path, d, f, "duplicate tensor name", name)


def test_w14_header_array(tmp_path):
    d = copy_model(tmp_path)
    f = d / "model.safetensors"
    write_st(f, None, b"\0" * 64, raw_header=b"[1, 2, 3]")
    lm(tmp_path, d, f, "not a JSON object")


def test_w15_header_not_utf8(tmp_path):
    d = copy_model(tmp_path)
    f = d / "model.safetensors"
    raw, n, h = header(f)
    text = json.dumps(h).encode().replace(b"model.norm.weight", b"model.norm.w\xe9ight", 1)
    write_st(f, None, raw[8 + n:], raw_header=text)
    lm(tmp_path, d, f, "not valid JSON")


# --- sharded ---------------------------------------------------------------------------------

def shard(tmp_path):
    """The tiny llama split in two shards with an index."""
    d = copy_model(tmp_path)
    raw, n, h = header(d / "model.safetensors")
    names = [k for k in h if k != "__metadata__"]
    parts = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
             "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    wmap = {}
    for fname, ns in parts.items():
        hh, body = {}, b""
        for k in ns:
            b, e = h[k]["data_offsets"]
            hh[k] = {"dtype": h[k]["dtype"], "shape": h[k]["shape"], "data_offsets": [len(body), len(body) + e - b]}
            body += raw[8 + n + b:8 + n + e]
            wmap[k] = fname
        write_st(d / fname, hh, body)
    (d / "model.safetensors").unlink()
    index = d / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    return d, index, wmap


def test_s00_sharded_copy_loads(tmp_path):
    """The sharded copy itself is fine (so the cases below test only their fault)."""
    d, _, _ = shard(tmp_path)
    r = run("sink-lm", "--model", d, "--ids", "1,2,3", "--threads", "1")
    assert r.returncode == 0, r.stderr


def test_s01_shard_escapes(tmp_path):
    d, index, wmap = shard(tmp_path)
    k = next(iter(wmap))
    wmap[k] = "../" + wmap[k]
    index.write_text(json.dumps({"weight_map": wmap}))
    lm(tmp_path, d, index, "leaves the snapshot folder")


def test_s02_tensor_missing_from_shard(tmp_path):
    d, index, wmap = shard(tmp_path)
    k = next(iter(wmap))
    wmap[k] = next(v for v in wmap.values() if v != wmap[k])
    index.write_text(json.dumps({"weight_map": wmap}))
    lm(tmp_path, d, k, "missing from this shard")


def test_s03_tensor_listed_twice(tmp_path):
    d, index, wmap = shard(tmp_path)
    k = next(iter(wmap))
    other = next(v for v in wmap.values() if v != wmap[k])
    text = json.dumps({"weight_map": wmap})
    index.write_text(text[:-2] + ", " + json.dumps(k) + ": " + json.dumps(other) + "}}")
    lm(tmp_path, d, index, "twice", k)


def test_s04_weight_map_list(tmp_path):
    d, index, wmap = shard(tmp_path)
    index.write_text(json.dumps({"weight_map": list(wmap)}))
    lm(tmp_path, d, index, "no weight_map object")


def test_s05_missing_shard(tmp_path):
    d, index, wmap = shard(tmp_path)
    os.unlink(d / "model-00002-of-00002.safetensors")
    lm(tmp_path, d, "model-00002-of-00002.safetensors", "cannot open")


# --- config.json ---------------------------------------------------------------------------------

def edit_config(d, fn=None, raw=None):
    p = d / "config.json"
    if raw is not None:
        p.write_bytes(raw)
    else:
        c = json.loads(p.read_text())
        fn(c)
        p.write_text(json.dumps(c))
    return p


def test_c01_config_not_utf8(tmp_path):
    d = copy_model(tmp_path)
    p = edit_config(d, raw=(d / "config.json").read_bytes().replace(b'"llama"', b'"ll\xe1ma"', 1))
    lm(tmp_path, d, p, "not valid JSON")


def test_c02_config_number_overflow(tmp_path):
    d = copy_model(tmp_path)
    p = edit_config(d, raw=(d / "config.json").read_bytes().replace(b"{", b'{"rope_theta": 1e999, ', 1))
    lm(tmp_path, d, p, "not valid JSON")


def test_c03_neox_rotary_pct_huge(tmp_path):
    d = copy_model(tmp_path, "gpt_neox")
    def huge(c):  # the older form of the config (rotary_pct is read only without rope_parameters)
        c["rotary_emb_base"] = c.pop("rope_parameters", {}).get("rope_theta", 10000.0)
        c["rotary_pct"] = 1e300
    p = edit_config(d, huge)
    lm(tmp_path, d, p, "rotary_pct")


def test_c04_qwen2_negative_max_window_layers(tmp_path):
    d = copy_model(tmp_path, "qwen2")
    def negative(c):  # without layer_types, the windows come from max_window_layers
        c.pop("layer_types", None)
        c.update(use_sliding_window=True, sliding_window=16, max_window_layers=-3)
    p = edit_config(d, negative)
    lm(tmp_path, d, p, "max_window_layers")


def test_c05_hidden_size_string(tmp_path):
    d = copy_model(tmp_path)
    p = edit_config(d, lambda c: c.__setitem__("hidden_size", "64"))
    lm(tmp_path, d, p, "hidden_size", "expected an integer")


# --- GGUF ----------------------------------------------------------------------------------------

def gguf_kv(raw):
    """Offsets of each metadata value in a GGUF v2/v3 file: {key: (type, value_start, value_end)}."""
    pos = 24
    n_kv = struct.unpack_from("<Q", raw, 16)[0]
    out = {}

    def skip(t, p):
        fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
        if t in fixed:
            return p + fixed[t]
        if t == 8:
            return p + 8 + struct.unpack_from("<Q", raw, p)[0]
        et, n = struct.unpack_from("<IQ", raw, p)
        p += 12
        for _ in range(n):
            p = skip(et, p)
        return p
    for _ in range(n_kv):
        kl = struct.unpack_from("<Q", raw, pos)[0]
        key = raw[pos + 8:pos + 8 + kl].decode()
        pos += 8 + kl
        t = struct.unpack_from("<I", raw, pos)[0]
        pos += 4
        end = skip(t, pos)
        out[key] = (t, pos, end)
        pos = end
    return out, pos


def test_g01_gguf_nan_tensor(tmp_path):
    raw = bytearray(open(STORIES, "rb").read())
    # The last tensor's data ends the file; stories260K is F32, so its last 4 bytes are one float.
    raw[-4:] = struct.pack("<f", float("nan"))
    f = tmp_path / "nan.gguf"
    f.write_bytes(raw)
    lm(tmp_path, f, f, "NaN or Inf")


def set_gguf_string(raw, key, value):
    kv, _ = gguf_kv(raw)
    t, b, e = kv[key]
    v = value.encode()
    return raw[:b] + struct.pack("<Q", len(v)) + v + raw[e:]


def test_g02_gguf_architecture(tmp_path):
    raw = open(STORIES, "rb").read()
    f = tmp_path / "mamba.gguf"
    # A same-length architecture name keeps every offset (and the alignment) as it was.
    f.write_bytes(set_gguf_string(raw, "general.architecture", "mamba"))
    lm(tmp_path, f, f, "architecture 'mamba'")


def test_g03_gguf_block_count_huge(tmp_path):
    raw = bytearray(open(STORIES, "rb").read())
    kv, _ = gguf_kv(bytes(raw))
    t, b, e = kv["llama.block_count"]
    assert t == 4  # UINT32
    raw[b:e] = struct.pack("<I", 0xFFFFFFF0)
    f = tmp_path / "layers.gguf"
    f.write_bytes(raw)
    lm(tmp_path, f, f, "num_hidden_layers")


def test_g04_gguf_scores_count(tmp_path):
    raw = bytearray(open(STORIES, "rb").read())
    kv, _ = gguf_kv(bytes(raw))
    t, b, e = kv["tokenizer.ggml.scores"]
    et, n = struct.unpack_from("<IQ", raw, b)
    assert et == 6  # FLOAT32
    # The same bytes read as INT8: 4n scores for n tokens (every offset stays as it was).
    struct.pack_into("<IQ", raw, b, 1, 4 * n)
    f = tmp_path / "scores.gguf"
    f.write_bytes(raw)
    lm(tmp_path, f, f, "tokenizer.ggml.scores", prompt="Once upon a time")


# --- tokenizers ------------------------------------------------------------------------------------

def edit_tokenizer(d, fn=None, raw=None, name="tokenizer.json"):
    p = d / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        j = json.loads(p.read_text(encoding="utf-8"))
        fn(j)
        p.write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
    return p


def test_t01_tokenizer_not_utf8(tmp_path):
    d = copy_model(tmp_path)
    raw = (d / "tokenizer.json").read_bytes()
    p = edit_tokenizer(d, raw=raw.replace(b'"vocab"', b'"voc\xe0b"', 1))
    lm(tmp_path, d, p, "not valid JSON", prompt="hello world")


def test_t02_vocab_id_huge(tmp_path):
    d = copy_model(tmp_path)
    p = edit_tokenizer(d, lambda j: j["model"]["vocab"].__setitem__("zzzz-new-token", 2**31 - 1))
    lm(tmp_path, d, p, "2147483647", prompt="hello world")


def test_t03_metaspace_empty_replacement(tmp_path):
    d = copy_model(tmp_path)
    p = edit_tokenizer(d, lambda j: j.__setitem__("pre_tokenizer", {"type": "Metaspace", "replacement": "",
                                                                     "prepend_scheme": "always", "split": True}))
    lm(tmp_path, d, p, "replacement", prompt="hello world")


def test_t04_bad_regex(tmp_path):
    d = copy_model(tmp_path)
    p = edit_tokenizer(d, lambda j: j.__setitem__("pre_tokenizer", {
        "type": "Split", "pattern": {"Regex": "(unclosed[a-"}, "behavior": "Isolated", "invert": False}))
    lm(tmp_path, d, p, "regex", prompt="hello world")


def test_t05_truncated_tokenizer(tmp_path):
    d = copy_model(tmp_path)
    raw = (d / "tokenizer.json").read_bytes()
    p = edit_tokenizer(d, raw=raw[: len(raw) // 2])
    lm(tmp_path, d, p, "not valid JSON", prompt="hello world")


def test_t06_tokenizer_config_overflow(tmp_path):
    d = copy_model(tmp_path)
    p = d / "tokenizer_config.json"
    p.write_text('{"add_bos_token": true, "model_max_length": 1e999}')
    lm(tmp_path, d, p, "not valid JSON", prompt="hello world")


def test_t07_truncated_tokenizer_model(tmp_path):
    d = copy_model(tmp_path)
    (d / "tokenizer.json").unlink()
    src = os.path.join(SHARED, "tokenizers", "llama-2", "tokenizer.model")
    raw = open(src, "rb").read()
    p = d / "tokenizer.model"
    p.write_bytes(raw[: len(raw) // 3])
    lm(tmp_path, d, p, "not a SentencePiece model", prompt="hello world")


# --- configs and eval sets (sink-run) ---------------------------------------------------------------

def eval_set(path, n=3, lines=None):
    if lines is None:
        src = os.path.join(SHARED, "corpora", "moby-dick.jsonl")
        with open(src) as f:
            docs = [json.loads(next(f)) for _ in range(n)]
        lines = [json.dumps({"id": str(d["id"]), "text": d["text"][:400]}) for d in docs]
    data = b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines)
    open(path, "wb").write(data)
    return str(path)


def config_text(tmp_path, ev=None, out=None, extra=""):
    ev = ev or eval_set(tmp_path / "eval.jsonl")
    out = out or tmp_path / "out"
    return (f"model: {os.path.join(TINY, 'llama')}\neval_jsonl: {ev}\nout: {out}\nmax_total_tokens: 64\n"
            f"max_tokens_to_calc: 16\nmax_tokens_to_show: 4\n{extra}")


def sink_run(cfg, *args):
    return run("sink-run", cfg, "--no-progress", "--threads", "1", *args)


def run_bad(tmp_path, text, *words, args=(), raw=None):
    cfg = tmp_path / "bad.yaml"
    if raw is not None:
        cfg.write_bytes(raw)
    else:
        cfg.write_text(text)
    r = sink_run(cfg, *args)
    return expect_bad(r, *words, absent=[tmp_path / "out" / "results.h5"])


def test_y01_alias_bomb(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    run_bad(tmp_path, config_text(tmp_path) + "\n".join(lines) + "\n", "bad.yaml", "alias bomb")


def test_y02_deep_nesting(tmp_path):
    run_bad(tmp_path, config_text(tmp_path) + "steps: " + "[" * 256 + "]" * 256 + "\n", "bad.yaml")


def test_y03_config_not_utf8(tmp_path):
    raw = config_text(tmp_path, extra="sink_policy: bos\n").encode().replace(b"sink_policy: bos", b"sink_policy: b\xf6s")
    run_bad(tmp_path, None, "bad.yaml", raw=raw)


def test_y04_two_documents(tmp_path):
    run_bad(tmp_path, config_text(tmp_path) + "---\nout: elsewhere\n", "bad.yaml", "YAML documents")


def test_y05_name_escapes_output_folder(tmp_path):
    run_bad(tmp_path, config_text(tmp_path), "bad.yaml", "name", "../escape", args=("--set", "name=../escape"))
    assert not (tmp_path / "escape").exists()


def test_y06_out_is_a_file(tmp_path):
    f = tmp_path / "out"
    f.write_text("a file, not a folder")
    before = sha(f)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config_text(tmp_path))
    r = sink_run(cfg)
    expect_bad(r, "out", "not a folder", unchanged={f: before})


def test_y07_sweep_name_with_slash(tmp_path):
    ev = eval_set(tmp_path / "eval.jsonl")
    text = (f"out: {tmp_path / 'out'}\ndefaults:\n  model: {os.path.join(TINY, 'llama')}\n  eval_jsonl: {ev}\n"
            "runs:\n  - name: ok\n  - name: sub/dir\n")
    run_bad(tmp_path, text, "bad.yaml", "runs.1.name")


def window_config(tmp_path, window_eval, ev=None, extra=""):
    cal = eval_set(tmp_path / "cal.jsonl", lines=['{"id": "c", "text": "A calibration text, never evaluated."}'])
    return config_text(tmp_path, ev=ev, extra=extra) + (
        f"intervention:\n  modes: [ssp_bias]\n  calibration_jsonl: {cal}\n  window_eval: {window_eval}\n")


def test_v01_window_zero(tmp_path):
    run_bad(tmp_path, window_config(tmp_path, "{windows: [64, 0]}"), "bad.yaml", "intervention.window_eval.windows",
            "'0'")


def test_v02_keep_negative(tmp_path):
    run_bad(tmp_path, window_config(tmp_path, "{windows: [8], keep: [0, -1]}"), "bad.yaml",
            "intervention.window_eval.keep", "'-1'")


def test_v03_unknown_ssp_variant(tmp_path):
    run_bad(tmp_path, window_config(tmp_path, "{windows: [8], ssp: [ssp_bias, zero]}"), "bad.yaml",
            "intervention.window_eval.ssp", "'zero'")


def test_v04_document_longer_than_context(tmp_path):
    # The tiny llama has 512 positions; the evaluation window keeps absolute positions.
    src = os.path.join(SHARED, "corpora", "moby-dick.jsonl")
    with open(src) as f:
        d = json.loads(next(f))
    ev = eval_set(tmp_path / "long.jsonl", lines=[json.dumps({"id": "long", "text": d["text"][:6000]})])
    text = window_config(tmp_path, "{windows: [8]}", ev=ev).replace("max_total_tokens: 64", "max_total_tokens: 4096")
    run_bad(tmp_path, text, "bad.yaml", "intervention.window_eval", "context (512)")


def test_v05_ssp_variants_need_calibration(tmp_path):
    text = config_text(tmp_path) + "intervention:\n  modes: [zero]\n  window_eval: {windows: [8]}\n"
    run_bad(tmp_path, text, "bad.yaml", "intervention.window_eval", "calibration_jsonl")


def test_e01_eval_not_utf8(tmp_path):
    ev = eval_set(tmp_path / "latin1.jsonl", lines=['{"id": "a", "text": "fine"}', b'{"id": "b", "text": "caf\xe9"}'])
    run_bad(tmp_path, config_text(tmp_path, ev=ev), "latin1.jsonl:2", "invalid UTF-8")


def test_e02_eval_number_overflow(tmp_path):
    ev = eval_set(tmp_path / "big.jsonl", lines=['{"id": 1e999, "text": "some text"}'])
    run_bad(tmp_path, config_text(tmp_path, ev=ev), "big.jsonl:1", "not valid JSON")


def test_e03_eval_is_folder(tmp_path):
    (tmp_path / "evaldir").mkdir()
    run_bad(tmp_path, config_text(tmp_path, ev=str(tmp_path / "evaldir")), "evaldir", "folder")


def test_e04_duplicate_ids(tmp_path):
    ev = eval_set(tmp_path / "dup.jsonl", lines=['{"id": "x", "text": "one"}', '{"id": "x", "text": "two"}'])
    run_bad(tmp_path, config_text(tmp_path, ev=ev), "dup.jsonl:2", "duplicate id")


# --- resume ---------------------------------------------------------------------------------------------

@pytest.fixture
def finished(tmp_path):
    """A finished run in tmp/out (its .partial kept), and its config."""
    cfg = tmp_path / "a.yaml"
    cfg.write_text(config_text(tmp_path))
    r = sink_run(cfg, "--keep-partial")
    assert r.returncode == 0, r.stderr
    res = tmp_path / "out" / "results.h5"
    return cfg, res, sha(res)


def test_r01_resume_another_config(tmp_path, finished):
    cfg, res, digest = finished
    other = tmp_path / "b.yaml"
    other.write_text(config_text(tmp_path).replace("max_tokens_to_show: 4", "max_tokens_to_show: 8"))
    expect_bad(sink_run(other, "--resume"), "manifest.json", "another config", unchanged={res: digest})


def test_r02_resume_edited_eval_set(tmp_path, finished):
    cfg, res, digest = finished
    ev = tmp_path / "eval.jsonl"
    lines = ev.read_text().splitlines()
    d = json.loads(lines[1])
    d["text"] = d["text"][::-1]
    lines[1] = json.dumps(d)
    ev.write_text("\n".join(lines) + "\n")
    expect_bad(sink_run(cfg, "--resume"), "manifest.json", "eval_sha256", unchanged={res: digest})


def test_r03_resume_manifest_wrong_type(tmp_path, finished):
    cfg, res, digest = finished
    man = tmp_path / "out" / ".partial" / "manifest.json"
    man.write_text("[1, 2, 3]")
    expect_bad(sink_run(cfg, "--resume"), "manifest.json", "corrupt manifest", unchanged={res: digest})


def test_r04_resume_torn_partial_document(tmp_path, finished):
    cfg, res, digest = finished
    docs = sorted((tmp_path / "out" / ".partial").rglob("doc_*.safetensors"))
    assert docs
    raw = docs[0].read_bytes()
    docs[0].write_bytes(raw[: len(raw) // 2])
    os.unlink(res)  # a run killed before the end: only partial results
    expect_bad(sink_run(cfg, "--resume"), docs[0].name, absent=[res])
