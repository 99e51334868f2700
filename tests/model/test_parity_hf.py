"""Our forward pass against HF transformers' eager forward on tiny random
checkpoints that transformers itself wrote (tools/fixtures/make_tiny_models.py):
logits, every hidden state (HF's L+1 convention) and every attention pattern,
in float32 and bfloat16, in one attention chunk and in several."""
import json
import os

import pytest
import torch
import transformers as tf

from parity_util import FIXTURES, compare, our_dump, hf_outputs

TINY = os.path.join(FIXTURES, "tiny")
NAMES = ["llama", "llama3", "mistral", "qwen2", "qwen3"]


def load_hf(name, dtype):
    m = tf.AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), attn_implementation="eager",
                                                dtype=dtype)
    return m.eval()


def ids_for(name):
    fx = json.load(open(os.path.join(TINY, name, "fixture.json")))
    g = torch.Generator().manual_seed(7)
    cfg = json.load(open(os.path.join(TINY, name, "config.json")))
    return torch.randint(0, cfg["vocab_size"], (fx["seq_len"],), generator=g).tolist(), cfg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk", [0, 7])
def test_float32(name, chunk):
    ids, cfg = ids_for(name)
    hf = hf_outputs(load_hf(name, torch.float32), ids)
    ours = our_dump(os.path.join(TINY, name), ids, "float32", extra=("--attn-chunk", chunk))
    d = compare(f"{name}/float32/chunk{chunk}", ours, hf, cfg["num_hidden_layers"])
    assert d["logits_rel"] <= 1e-4
    assert d["hidden_rel"] <= 1e-4
    assert d["attn_max_abs"] <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16(name):
    ids, cfg = ids_for(name)
    hf = hf_outputs(load_hf(name, torch.bfloat16), ids)
    ours = our_dump(os.path.join(TINY, name), ids, "bfloat16")
    d = compare(f"{name}/bfloat16", ours, hf, cfg["num_hidden_layers"])
    # bf16 has 8 bits of mantissa: agree to a few bf16 ulps of the scale.
    assert d["logits_rel"] <= 2e-2
    assert d["hidden_rel"] <= 2e-2
    assert d["attn_max_abs"] <= 2e-2


def test_sliding_window_binds():
    """Mistral's window (16) is shorter than the sequence (48): a pattern row past the
    window must have zeros before i - 15, as HF's has."""
    ids, cfg = ids_for("mistral")
    ours = our_dump(os.path.join(TINY, "mistral"), ids, "float32")
    a = ours["attn.0"]
    assert cfg["sliding_window"] < len(ids)
    assert a[:, 40, : 40 - 16 + 1].abs().max().item() == 0.0
    assert a[:, 40, 40 - 16 + 1:].sum(-1).sub(1).abs().max().item() < 1e-5
