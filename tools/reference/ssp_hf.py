#!/usr/bin/env python3
"""Independent reference for Static Sink Patching with HF transformers: each
mode is applied to HF's own eager attention (the model module's
eager_attention_forward, wrapped), with the μ, μ_head and ᾱ that a sink run
saved in results.h5, and the per-document NLL, KL and residual distances are
recomputed from HF's logits and hidden states.

    python tools/reference/ssp_hf.py --model DIR --results results.h5 --run NAME --out ref.h5

Token ids are taken from the evaluation text with HF's tokenizer and the
run's sink policy. In a patched layer, for queries i > s that see the sink
(HF's own attention mask for the layer, its sliding window included, is 0 at
key s; the other rows are left exactly as HF computes them):
  ssp_bias / zero / random: out_i = Σ_{j≠s} A_ij v_j   (eager weights, key s zeroed), then + bias after o_proj
  ssp_drop: out_i = (1 − ᾱ_h) Σ_{j≠s} A_ij v_j / (1 − A_is), then + μ after o_proj
Scores in float64 from HF's logits: NLL, perplexity exp(ΣNLL / Σn) (original/ppl
and <mode>/ppl attributes) and KL.
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


def random_bias(mu, mu_head, seed, head):
    L, d = mu.shape
    out = torch.zeros(L, d)
    for l in range(L):
        g = torch.Generator().manual_seed(seed * 1000003 + l)
        if head:
            r = torch.randn(mu_head[l].shape, generator=g)
            out[l] = (r / r.norm(dim=-1, keepdim=True) * mu_head[l].norm(dim=-1, keepdim=True)).sum(0)
        else:
            r = torch.randn((d,), generator=g)
            out[l] = r / r.norm() * mu[l].norm()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calibration", help="calibration JSONL: also recompute μ, μ_head and ᾱ (calib/*)")
    ap.add_argument("--ids", help="JSON Lines of token-id arrays, one per --eval document (sink-tokenize's output), "
                    "used instead of HF's tokenizer: for a model whose HF tokenizer is not the reference (Gemma 3 "
                    "GGUF, docs/models.md); sink policy bos only (the ids carry the BOS)")
    ap.add_argument("--calibration-ids", help="the same for --calibration")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    f = h5py.File(a.results)
    g = f[a.run]
    s = int(g.attrs["sink_position"])
    policy = g.attrs["sink_policy"]
    max_total = int(g.attrs["max_total_tokens"])
    mu = torch.tensor(g["ssp/mu"][()], dtype=torch.float32)
    mu_head = torch.tensor(g["ssp/mu_head"][()], dtype=torch.float32)
    alpha = torch.tensor(g["ssp/alpha_bar"][()], dtype=torch.float32)
    head = g["ssp"].attrs["granularity"] == "head"
    layers_attr = g["ssp"].attrs["layers"]
    seed = int(g["ssp"].attrs["random_seed"])
    modes = [k for k in g["ssp"].keys() if k not in ("mu", "mu_head", "alpha_bar", "calibration_ids", "original")]

    if a.model.endswith(".gguf"):  # the real model: HF dequantises the GGUF to float32
        d, fn = os.path.split(a.model)
        cfg = tf.AutoConfig.from_pretrained(d, gguf_file=fn)
        if cfg.pad_token_id is not None and cfg.pad_token_id >= cfg.vocab_size:
            cfg.pad_token_id = None
        model = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, config=cfg, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(d, gguf_file=fn)
    else:
        model = tf.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(a.model)
    L = model.config.num_hidden_layers
    patched = set(range(L)) if layers_attr == "all" else {int(x) for x in layers_attr.split(",")}
    eager = sys.modules[type(model).__module__].eager_attention_forward

    state = {"mode": None}
    calib = {}

    def patched_attention(module, query, key, value, attention_mask, **kw):
        out, w = eager(module, query, key, value, attention_mask, **kw)  # out [B, T, H, dh], w [B, H, T, T]
        l = module.layer_idx
        mode = state["mode"]
        if mode == "calib":  # μ statistics: c[h, i] = A_is W_O^h v_s^h over the rows that see the sink
            T, H = out.shape[1], query.shape[1]
            vis = torch.arange(T) > s
            if attention_mask is not None:
                vis = vis & (attention_mask[0, 0, :T, s] == 0)
            add_sink_stats(calib, l, module, value, w, vis, s)
            return out, w
        if mode is None or l not in patched:
            return out, w
        H = query.shape[1]
        rep = H // value.shape[1]
        T = out.shape[1]
        rows = torch.arange(T) > s
        if attention_mask is not None:  # additive float mask [B, 1, T, T]: 0 where key s is visible
            rows = rows & (attention_mask[0, 0, :T, s] == 0)
        state[f"rows{l}"] = rows
        # Σ_{j≠s} A_ij v_j as a product with key s's column zeroed, not eager out − A_is v_s: with
        # A_is near 1 that difference cancels to a few float32 digits (and 1 − A_is with it), which
        # ssp_drop's division by 1 − A_is then magnifies (Gemma 3 past its window: 1e-5 in ppl).
        w_rest = w.clone()
        w_rest[:, :, :, s] = 0
        new = torch.matmul(w_rest, value.repeat_interleave(rep, 1).to(w.dtype)).transpose(1, 2).to(out.dtype)
        if mode == "ssp_drop":
            # 1 − A_is as the other keys' weights, plus the learned sink logit's share where the layer
            # has one (gpt-oss: eager's weights over the real keys then sum to less than 1).
            rest = w_rest.sum(-1)
            if getattr(module, "sinks", None) is not None:
                rest = rest + (1 - w.sum(-1))
            scale = ((1 - alpha[l]).view(1, H, 1) / rest).transpose(1, 2).unsqueeze(-1)  # [B, T, H, 1]
            new = new * scale
        out = torch.where(rows.view(1, -1, 1, 1), new, out)
        return out, w

    register_attention(model, "sink_ssp_ref", patched_attention)  # the same additive float mask as eager

    bias = {"ssp_bias": mu_head.sum(1) if head else mu, "ssp_drop": mu_head.sum(1) if head else mu,
            "zero": torch.zeros_like(mu), "random": random_bias(mu, mu_head, seed, head)}

    def add_bias(l):
        def hook(mod, inp, out):
            m = state["mode"]
            if m not in bias or l not in patched:  # unpatched, or the calibration pass
                return out
            out = out.clone()
            rows = state[f"rows{l}"]  # the rows that see the sink in this layer
            out[:, rows] += bias[m][l].to(out.dtype)
            return out
        return hook

    for l, layer in enumerate(model.model.layers):
        layer.self_attn.o_proj.register_forward_hook(add_bias(l))

    given = {}
    if a.ids or a.calibration_ids:
        if policy != "bos":
            sys.exit("ssp_hf.py: --ids needs sink policy bos (the run's is " + str(policy) + ")")
        for key, path, texts in (("eval", a.ids, a.eval), ("calib", a.calibration_ids, a.calibration)):
            if path:
                docs = [json.loads(l)["text"] for l in open(texts) if l.strip()]
                arrays = [json.loads(l) for l in open(path) if l.strip()]
                if len(docs) != len(arrays):
                    sys.exit(f"ssp_hf.py: {path}: {len(arrays)} id arrays for {len(docs)} documents of {texts}")
                given.update(zip(docs, arrays))

    def token_ids(text):
        if text in given:
            return given[text][:max_total]
        if policy == "bos":
            ids = tok(text).input_ids
        else:
            ids = tok(text, add_special_tokens=False).input_ids
            if policy == "prepend":
                ids = [int(g.attrs["sink_token_prepended"])] + ids
        return ids[:max_total]

    res = {}
    if a.calibration:  # μ, μ per head and ᾱ recomputed from HF's attention on the calibration documents
        cfg = model.config
        H, d = cfg.num_attention_heads, cfg.hidden_size
        calib.update(head_sum=torch.zeros(L, H, d, dtype=torch.float64), alpha_sum=torch.zeros(L, H, dtype=torch.float64),
                     count=[0] * L)
        state["mode"] = "calib"
        rows = 0  # every row i > s, visible or not
        for line in open(a.calibration):
            if line.strip():
                ids = token_ids(json.loads(line)["text"])
                model(torch.tensor([ids]))
                rows += max(0, len(ids) - 1 - s)
        state["mode"] = None
        cnt = torch.tensor(calib["count"], dtype=torch.float64).clamp_min(1)
        res["calib/mu_head"] = (calib["head_sum"] / cnt[:, None, None]).numpy()
        res["calib/mu"] = res["calib/mu_head"].sum(1)
        res["calib/alpha_bar"] = (calib["alpha_sum"] / cnt[:, None]).numpy()
        res["calib/count"] = np.array(calib["count"])
        res["calib/rows"] = rows
    for line in open(a.eval):
        if not line.strip():
            continue
        ids = token_ids(json.loads(line)["text"])
        T = len(ids)
        res.setdefault("n_scored", []).append(max(0, T - 2 - s))
        x = torch.tensor([ids])
        state["mode"] = None
        o0 = model(x, output_hidden_states=True)
        lp0 = torch.log_softmax(o0.logits[0].double(), -1)
        tgt = torch.tensor(ids[s + 2:])
        pos = torch.arange(s + 1, T - 1)
        nll0 = -lp0[pos, tgt].sum().item()
        res.setdefault("original/nll_sum", []).append(nll0)
        for m in modes:
            state["mode"] = m
            o = model(x, output_hidden_states=True)
            lp = torch.log_softmax(o.logits[0].double(), -1)
            res.setdefault(m + "/nll_sum", []).append(-lp[pos, tgt].sum().item())
            kl = (lp0[pos].exp() * (lp0[pos] - lp[pos])).sum(-1).mean().item()
            res.setdefault(m + "/kl", []).append(kl)
            rel = []
            for h0, h1 in zip(o0.hidden_states, o.hidden_states):
                a0, a1 = h0[0, s + 1:].double(), h1[0, s + 1:].double()
                rel.append(((a1 - a0).norm(dim=-1) / a0.norm(dim=-1)).mean().item())
            res.setdefault(m + "/resid_rel_l2", []).append(rel)
    with h5py.File(a.out, "w") as out:
        for k, v in res.items():
            out[k] = np.array(v)
        n = float(np.sum(res["n_scored"]))
        for m in ["original"] + modes:  # perplexity over all documents, float64 throughout
            out[m].attrs["ppl"] = math.exp(float(np.sum(res[m + "/nll_sum"])) / n)


if __name__ == "__main__":
    main()
