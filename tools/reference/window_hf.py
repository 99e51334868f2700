#!/usr/bin/env python3
"""Independent reference for intervention.window_eval (docs/metrics.md, "Windowed attention
without the sink") with HF transformers: HF's own eager attention (the model module's
eager_attention_forward) under HF's own mask for each layer, with the evaluation window added
to it, and the SSP variants' patches applied around it; NLL, perplexity and KL recomputed from
HF's logits in float64.

    python tools/reference/window_hf.py --model DIR|FILE.gguf --results results.h5 --run NAME \\
        --eval EVAL.jsonl --out ref.h5 [--calibration CAL.jsonl] [--dtype float64]

For a variant (W, k): key j is hidden from query i when i − j ≥ W and j ≥ k (on top of HF's
causal/sliding mask). ssp_bias / ssp_drop (k = 0): in the rows where the window hides the
sink s although the layer's mask shows it (i − s ≥ W, HF's mask 0 at key s), μ_W is added
after o_proj and, for ssp_drop, each head's output is scaled by 1 − ᾱ_W (both read from the
run's ssp/window_mu/w<W>). With --calibration, μ_W, μ_W per head and ᾱ_W are recomputed: a pass
with the window and the first s + 1 tokens kept, A[i, s]·W_O v_s averaged over the same rows.
"""
import argparse
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
import transformers as tf
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_common import add_sink_stats, register_attention  # noqa: E402


def load(model_path, dtype):
    if model_path.endswith(".gguf"):  # the real model: HF dequantises the GGUF
        d, fn = os.path.split(model_path)
        cfg = tf.AutoConfig.from_pretrained(d, gguf_file=fn)
        if cfg.pad_token_id is not None and cfg.pad_token_id >= cfg.vocab_size:
            cfg.pad_token_id = None
        model = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, config=cfg, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(d, gguf_file=fn)
    else:
        model = tf.AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(model_path)
    return model.to(dtype), tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calibration")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    dtype = getattr(torch, a.dtype)
    f = h5py.File(a.results)
    g = f[a.run]
    s = int(g.attrs["sink_position"])
    policy = g.attrs["sink_policy"]
    max_total = int(g.attrs["max_total_tokens"])
    sp = g["ssp"]
    head = sp.attrs["granularity"] == "head"
    layers_attr = sp.attrs["layers"]
    variants = []  # (name, W, keep, ssp)
    for k in sp.keys():
        if k.startswith("window_w") and "window" in sp[k].attrs:
            at = sp[k].attrs
            ssp = at["ssp"] if isinstance(at["ssp"], str) else at["ssp"].decode()
            variants.append((k, int(at["window"]), int(at["keep"]), None if ssp == "none" else ssp))
    wmu = {}
    if "window_mu" in sp:
        for w in sp["window_mu"]:
            grp = sp["window_mu"][w]
            mu = torch.tensor(grp["mu_head"][()]).sum(1) if head else torch.tensor(grp["mu"][()])
            wmu[int(w[1:])] = (mu.to(dtype), torch.tensor(grp["alpha_bar"][()]).to(dtype))

    model, tok = load(a.model, dtype)
    L = model.config.num_hidden_layers
    patched = set(range(L)) if layers_attr == "all" else {int(x) for x in layers_attr.split(",")}
    eager = sys.modules[type(model).__module__].eager_attention_forward
    state = {"W": 0, "keep": 0, "ssp": None, "calib": False}
    calib = {}

    def windowed_attention(module, query, key, value, attention_mask, **kw):
        W, keep = state["W"], state["keep"]
        l = module.layer_idx
        T, Tk = query.shape[2], key.shape[2]
        base = attention_mask[:, :, :, :Tk] if attention_mask is not None else \
            torch.zeros(1, 1, T, Tk, dtype=query.dtype)
        shows_sink = base[0, 0, :, s] == 0  # HF's mask for this layer shows key s to row i
        mask = base
        if W > 0:
            i = torch.arange(T).unsqueeze(1)
            j = torch.arange(Tk).unsqueeze(0)
            mask = base.masked_fill((i - j >= W) & (j >= keep), torch.finfo(base.dtype).min)
        out, w = eager(module, query, key, value, mask, **kw)  # out [B, T, H, dh], w [B, H, T, Tk]
        rows = (torch.arange(T) - s >= W) & shows_sink  # the rows the window hides the sink from
        state[f"rows{l}"] = rows
        if state["calib"]:  # μ_W statistics from the pass with the sink kept
            add_sink_stats(calib, l, module, value, w, rows, s)
        elif state["ssp"] == "ssp_drop" and l in patched:
            alpha = wmu[W][1][l]
            out = out.clone()
            out[:, rows] = out[:, rows] * (1 - alpha).view(1, 1, -1, 1).to(out.dtype)
        return out, w

    register_attention(model, "sink_window_ref", windowed_attention)

    def add_bias(l):
        def hook(mod, inp, out):
            if state["ssp"] is None or state["calib"] or l not in patched:
                return out
            out = out.clone()
            out[:, state[f"rows{l}"]] += wmu[state["W"]][0][l].to(out.dtype)
            return out
        return hook

    for l, layer in enumerate(model.model.layers):
        layer.self_attn.o_proj.register_forward_hook(add_bias(l))

    def token_ids(text):
        if policy == "bos":
            ids = tok(text).input_ids
        else:
            ids = tok(text, add_special_tokens=False).input_ids
            if policy == "prepend":
                ids = [int(g.attrs["sink_token_prepended"])] + ids
        return ids[:max_total]

    def docs(path):
        for line in open(path):
            if line.strip():
                yield token_ids(json.loads(line)["text"])

    res = {}
    if a.calibration:
        cfg = model.config
        H, d = cfg.num_attention_heads, cfg.hidden_size
        for W in sorted(wmu):
            calib.update(head_sum=torch.zeros(L, H, d, dtype=torch.float64),
                         alpha_sum=torch.zeros(L, H, dtype=torch.float64), count=[0] * L)
            state.update(W=W, keep=s + 1, ssp=None, calib=True)
            for ids in docs(a.calibration):
                model(torch.tensor([ids]))
            cnt = torch.tensor(calib["count"], dtype=torch.float64).clamp_min(1)
            res[f"calib/w{W}/mu_head"] = (calib["head_sum"] / cnt[:, None, None]).numpy()
            res[f"calib/w{W}/mu"] = res[f"calib/w{W}/mu_head"].sum(1)
            res[f"calib/w{W}/alpha_bar"] = (calib["alpha_sum"] / cnt[:, None]).numpy()
            res[f"calib/w{W}/count"] = np.array(calib["count"])
        state["calib"] = False
    for ids in docs(a.eval):
        T = len(ids)
        res.setdefault("n_scored", []).append(max(0, T - 2 - s))
        x = torch.tensor([ids])
        tgt = torch.tensor(ids[s + 2:])
        pos = torch.arange(s + 1, T - 1)
        state.update(W=0, keep=0, ssp=None)
        lp0 = torch.log_softmax(model(x).logits[0].double(), -1)
        res.setdefault("original/nll_sum", []).append(-lp0[pos, tgt].sum().item())
        for name, W, keep, ssp in variants:
            state.update(W=W, keep=keep, ssp=ssp)
            lp = torch.log_softmax(model(x).logits[0].double(), -1)
            res.setdefault(name + "/nll_sum", []).append(-lp[pos, tgt].sum().item())
            res.setdefault(name + "/kl", []).append((lp0[pos].exp() * (lp0[pos] - lp[pos])).sum(-1).mean().item())
    with h5py.File(a.out, "w") as out:
        for k, v in res.items():
            out[k] = np.array(v)
        n = float(np.sum(res["n_scored"]))
        for m in ["original"] + [v[0] for v in variants]:
            out[m].attrs["ppl"] = math.exp(float(np.sum(res[m + "/nll_sum"])) / n)


if __name__ == "__main__":
    main()
