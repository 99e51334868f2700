"""Shared helpers for the parity tests: run our binaries, run HF eager, compare."""
import json
import os
import subprocess
import tempfile

import torch
from safetensors.torch import load_file

BUILD = os.environ.get("SINK_BUILD_DIR", "build/release")
FIXTURES = os.environ.get("SINK_FIXTURES", "build/release/fixtures")
SHARED = os.environ.get("SINK_SHARED_DATA", "../shared/data")
# Where both sides run: cpu here; cuda on a GPU machine (tools/bench/gpu/device_parity.sh).
DEVICE = os.environ.get("SINK_DEVICE", "cpu")
# Where the measured differences are written, so the closing note and docs can quote them.
REPORT = os.path.join(FIXTURES, "parity_report.jsonl")


def sink_lm(*args, check=True):
    r = subprocess.run([os.path.join(BUILD, "sink-lm"), *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"sink-lm failed ({r.returncode}): {r.stderr}")
    return r


def our_dump(model, ids, dtype="float32", extra=()):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "dump.safetensors")
        sink_lm("--model", model, "--ids", ",".join(map(str, ids)), "--dtype", dtype, "--dump", out,
                "--threads", "2", "--device", DEVICE, *extra)
        return load_file(out)


def hf_outputs(model, ids):
    with torch.no_grad():
        o = model(torch.tensor([ids], device=model.device), output_hidden_states=True, output_attentions=True)
    return o


def compare(name, ours, hf_out, n_layers):
    """Max abs differences: logits (relative to the logit scale), hidden states (relative to each
    state's scale) and attention probabilities (absolute)."""
    logits = hf_out.logits[0].float().cpu()
    d = {"case": name if DEVICE == "cpu" else f"{name}/{DEVICE}"}
    d["logits_scale"] = logits.abs().max().item()
    d["logits_max_abs"] = (ours["logits"] - logits).abs().max().item()
    d["logits_rel"] = d["logits_max_abs"] / d["logits_scale"]
    hs = [h.cpu() for h in hf_out.hidden_states]
    assert len(hs) == n_layers + 1
    d["hidden_rel"] = max(((ours[f"hidden.{i}"] - hs[i][0].float()).abs().max() /
                           hs[i][0].float().abs().max()).item() for i in range(n_layers + 1))
    d["attn_max_abs"] = max((ours[f"attn.{l}"] - hf_out.attentions[l][0].float().cpu()).abs().max().item()
                            for l in range(n_layers))
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "a") as f:
        f.write(json.dumps(d) + "\n")
    print(json.dumps(d))
    return d
