#!/usr/bin/env python3
"""Checks data/model_specs/*/config.json against data/models.json and HF transformers.

    .venv/bin/python tools/data/check_model_specs.py            # parse + sizes
    .venv/bin/python tools/data/check_model_specs.py --engine   # also tiny random-weight parity with sink-lm

For every model in data/models.json with a spec_dir:
  1. transformers' AutoConfig parses the config.json;
  2. layers, heads, kv_heads, d_model and context agree with models.json;
  3. the model built on the meta device (no memory) has exactly models.json's
     `parameters` (the published counts);
  4. with --engine: a shrunk copy (4 layers, d_model 64, the same family, GQA ratio,
     RoPE kind, windows, softcaps, vocabulary) gets random weights from
     transformers, and build/release/sink-lm's float32 logits must match
     transformers' to 1e-4.
Exit status 1 when anything differs. Run from anywhere; paths are from the repo root.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def shrink(j):
    """A tiny config of the same structure (see the module docstring)."""
    j = dict(j)
    j.pop("quantization_config", None)  # random weights are written unquantized
    H = j["num_attention_heads"]
    g = H // j.get("num_key_value_heads", H)  # queries per KV head, kept (at most 8 in the seed models)
    j["num_attention_heads"] = 2 * g
    if "num_key_value_heads" in j:
        j["num_key_value_heads"] = 2
    j["hidden_size"] = 64 if "head_dim" in j else j["num_attention_heads"] * 16
    if "head_dim" in j:
        j["head_dim"] = min(j["head_dim"], 32)
    if j["model_type"] == "gemma2":
        j["query_pre_attn_scalar"] = j["head_dim"]
    j["intermediate_size"] = 64 if j["model_type"] == "gpt_oss" else 96
    L = 4
    j["num_hidden_layers"] = L
    if "layer_types" in j:
        j["layer_types"] = j["layer_types"][:L]
    if "max_window_layers" in j:
        j["max_window_layers"] = L
    if j.get("sliding_window") and j["model_type"] in ("mistral", "gemma2", "gpt_oss"):
        j["sliding_window"] = 16  # shorter than the test sequence, so windows matter
    if j.get("sliding_window_size"):
        j["sliding_window_size"] = 16
    if j["model_type"] == "gpt_oss":
        j.update(num_local_experts=4, num_experts_per_tok=2, experts_per_token=2)
    j["torch_dtype"] = "float32"
    return j


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", action="store_true", help="also compare sink-lm with transformers on tiny random weights")
    ap.add_argument("--sink-lm", default=os.path.join(ROOT, "build", "release", "sink-lm"))
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    models = json.load(open(os.path.join(ROOT, "data", "models.json")))["models"]
    failures = 0
    for m in models:
        if not m.get("spec_dir"):
            continue
        d = os.path.join(ROOT, m["spec_dir"])
        problems = []
        c = AutoConfig.from_pretrained(d)
        kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        for key, got in (("layers", c.num_hidden_layers), ("heads", c.num_attention_heads), ("kv_heads", kv),
                         ("d_model", c.hidden_size), ("context", c.max_position_embeddings)):
            if got != m[key]:
                problems.append(f"{key}: config.json {got}, models.json {m[key]}")
        if hasattr(c, "quantization_config"):
            del c.quantization_config
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(c)
        n = sum(p.numel() for p in model.parameters())
        if n != m["parameters"]:
            problems.append(f"parameters: config.json gives {n}, models.json {m['parameters']}")
        line = f"{m['name']}: {type(c).__name__}, {n / 1e9:.2f}B parameters"
        if args.engine:
            with tempfile.TemporaryDirectory() as tmp:
                tiny = shrink(json.load(open(os.path.join(d, "config.json"))))
                json.dump(tiny, open(os.path.join(tmp, "config.json"), "w"), indent=2)
                torch.manual_seed(0)
                tm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp), attn_implementation="eager")
                tm = tm.float().eval()
                with torch.no_grad():
                    for p in tm.parameters():
                        p.normal_(0, 0.2)
                tm.save_pretrained(tmp)
                ids = torch.randint(3, min(tiny["vocab_size"], 30000), (1, 40))
                with torch.no_grad():
                    ref = tm(ids).logits[0]
                out = os.path.join(tmp, "logits.safetensors")
                r = subprocess.run([args.sink_lm, "--model", tmp, "--ids", ",".join(map(str, ids[0].tolist())),
                                    "--logits-out", out, "--threads", "4"], capture_output=True, text=True)
                if r.returncode:
                    problems.append("sink-lm: " + r.stderr.strip().splitlines()[-1])
                else:
                    from safetensors.torch import load_file
                    diff = float((load_file(out)["logits"] - ref).abs().max())
                    line += f"; tiny copy: sink-lm vs transformers max |diff| {diff:.1e}"
                    if not diff <= 1e-4:
                        problems.append(f"tiny copy: logits differ by {diff}")
        print(line if not problems else line + "\n  " + "\n  ".join(problems))
        failures += bool(problems)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
