"""Broken weight files and configs: each is exit status 2 and one line on
stderr naming the file and the problem, never a crash."""
import json
import os
import shutil

import pytest

from parity_util import FIXTURES, SHARED, sink_lm
from safetensors_edit import copy_model as broken_copy, header, write_st as write

TINY = os.path.join(FIXTURES, "tiny")


def expect_error(model, *words, ids="1,2,3"):
    r = sink_lm("--model", model, "--ids", ids, check=False)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_truncated_safetensors(tmp_path):
    d = broken_copy(tmp_path)
    f = d / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    expect_error(str(d), str(f), "past the end")


def test_header_only_four_bytes(tmp_path):
    d = broken_copy(tmp_path)
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00")
    expect_error(str(d), "model.safetensors", "truncated")


def test_offsets_past_end(tmp_path):
    d = broken_copy(tmp_path)
    f = d / "model.safetensors"
    raw, n, h = header(f)
    name = next(k for k in h if k != "__metadata__")
    h[name]["data_offsets"] = [h[name]["data_offsets"][0], h[name]["data_offsets"][1] + 10**9]
    write(f, h, raw[8 + n:])
    expect_error(str(d), str(f), name)


def test_unknown_dtype(tmp_path):
    d = broken_copy(tmp_path)
    f = d / "model.safetensors"
    raw, n, h = header(f)
    name = next(k for k in h if k != "__metadata__")
    h[name]["dtype"] = "F7"
    write(f, h, raw[8 + n:])
    expect_error(str(d), str(f), "unknown dtype 'F7'")


def test_dtype_lies_about_size(tmp_path):
    d = broken_copy(tmp_path)
    f = d / "model.safetensors"
    raw, n, h = header(f)
    name = next(k for k in h if k != "__metadata__" and h[k]["dtype"] == "F32")
    h[name]["dtype"] = "F16"
    write(f, h, raw[8 + n:])
    expect_error(str(d), str(f), "bytes")


def test_missing_tensor(tmp_path):
    d = broken_copy(tmp_path)
    f = d / "model.safetensors"
    raw, n, h = header(f)
    del h["model.layers.1.mlp.up_proj.weight"]
    write(f, h, raw[8 + n:])
    expect_error(str(d), "missing tensor 'model.layers.1.mlp.up_proj.weight'")


def test_shape_mismatch(tmp_path):
    d = broken_copy(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (d / "config.json").write_text(json.dumps(cfg))
    expect_error(str(d), "model.safetensors", "shape", "expected")


def test_nan_weights(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file
    d = broken_copy(tmp_path)
    t = load_file(d / "model.safetensors")
    t["model.norm.weight"][3] = float("nan")
    save_file(t, d / "model.safetensors")
    expect_error(str(d), "model.norm.weight", "NaN")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights(tmp_path, dtype, value):
    """One non-finite element anywhere in a tensor, stored as float32 or bfloat16, is refused."""
    import torch
    from safetensors.torch import load_file, save_file
    d = broken_copy(tmp_path)
    t = load_file(d / "model.safetensors")
    t = {k: v.to(getattr(torch, dtype)) for k, v in t.items()}
    t["model.layers.1.mlp.up_proj.weight"][100, 17] = value
    save_file(t, d / "model.safetensors")
    expect_error(str(d), "model.layers.1.mlp.up_proj.weight", "NaN or Inf")


def test_unknown_architecture(tmp_path):
    d = broken_copy(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "mamba"
    (d / "config.json").write_text(json.dumps(cfg))
    expect_error(str(d), "config.json", "unsupported architecture 'mamba'")


def test_config_not_json(tmp_path):
    d = broken_copy(tmp_path)
    (d / "config.json").write_text("{ not json")
    expect_error(str(d), "config.json", "not valid JSON")


@pytest.mark.parametrize("src,key,value,words", [
    ("llama", "num_attention_heads", 5, ["hidden_size 64 is not divisible by 5"]),
    ("llama", "num_key_value_heads", 3, ["num_key_value_heads", "does not divide"]),
    ("gpt_oss", "num_experts_per_tok", 9, ["num_experts_per_tok", "exceeds num_local_experts"]),
    ("llama", "rope_parameters", {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
     ["unsupported RoPE scaling 'dynamic'"]),
    ("llama", "hidden_size", -64, ["hidden_size", "positive"]),
    ("gemma2", "layer_types", ["sliding_attention"], ["layer_types"]),
    ("gemma3", "final_logit_softcapping", 0.0, ["final_logit_softcapping", "positive"]),
    ("gemma3", "use_bidirectional_attention", True, ["use_bidirectional_attention", "not supported"]),
    ("gemma3", "sliding_window", None, ["sliding_window"]),
    ("gemma3", "model_type", "gemma3", ["multimodal", "gemma3_text"]),
    ("gemma3", "rope_parameters", {"full_attention": {"rope_type": "dynamic", "factor": 2.0}},
     ["unsupported RoPE scaling 'dynamic'"]),
])
def test_inconsistent_configs(tmp_path, src, key, value, words):
    d = broken_copy(tmp_path, src)
    cfg = json.loads((d / "config.json").read_text())
    if key == "num_attention_heads":
        cfg.pop("head_dim", None)
    cfg[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    expect_error(str(d), "config.json", *words)


def test_gguf_bad_magic(tmp_path):
    f = tmp_path / "bad.gguf"
    raw = open(os.path.join(SHARED, "models", "stories260K", "stories260K.gguf"), "rb").read()
    f.write_bytes(b"GGUX" + raw[4:])
    expect_error(str(f), str(f), "magic")


def test_gguf_truncated_tensor_data(tmp_path):
    f = tmp_path / "short.gguf"
    raw = open(os.path.join(SHARED, "models", "stories260K", "stories260K.gguf"), "rb").read()
    f.write_bytes(raw[: len(raw) - 4096])
    expect_error(str(f), str(f), "truncated")


def test_missing_model_path(tmp_path):
    expect_error(str(tmp_path / "nope"), "nope")


def test_hf_id_not_in_cache(tmp_path, monkeypatch):
    os.environ["HF_HUB_CACHE"] = str(tmp_path)
    try:
        expect_error("Qwen/Qwen3-8B-Base", "Qwen/Qwen3-8B-Base", "HF cache")
    finally:
        del os.environ["HF_HUB_CACHE"]


def test_hf_id_resolves_through_cache(tmp_path):
    """An HF id found in a local cache layout loads with no network."""
    snap = tmp_path / "models--tiny--llama" / "snapshots" / "abc123"
    shutil.copytree(os.path.join(TINY, "llama"), snap)
    (tmp_path / "models--tiny--llama" / "refs").mkdir()
    (tmp_path / "models--tiny--llama" / "refs" / "main").write_text("abc123")
    os.environ["HF_HUB_CACHE"] = str(tmp_path)
    try:
        a = sink_lm("--model", "tiny/llama", "--ids", "1,2,3").stdout
    finally:
        del os.environ["HF_HUB_CACHE"]
    b = sink_lm("--model", os.path.join(TINY, "llama"), "--ids", "1,2,3").stdout
    assert a == b and a.strip()
