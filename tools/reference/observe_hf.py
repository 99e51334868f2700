#!/usr/bin/env python3
"""Independent reference for the §3 observation metrics, computed with HF
transformers the way the seed study did: eager attention with
output_attentions and output_hidden_states, plus forward hooks for the
per-head outputs (o_proj's input) and the value/key states. Everything is
recomputed from HF's full attention tensors in float64, straight from the
definitions in docs/metrics.md — no code is shared with sink.

    python tools/reference/observe_hf.py --model DIR_OR_GGUF --eval eval.jsonl --out ref.h5 \
        [--policy bos|prepend|first] [--max-tokens-to-calc P] [--max-tokens-to-show S] \
        [--layers-to-show 0,1] [--max-docs N] [--max-total-tokens T]

Writes per-document arrays under the same names as results.h5 (without the
run group), summary/geometry/* computed with an exact covariance over the rows
that see the sink (HF's own attention mask says which), and the sink rates
(summary attributes): Gu et al.'s protocol as their code computes it, and the
thresholds of the means over documents."""
import argparse
import json
import math
import os

import h5py
import numpy as np
import torch
import transformers as tf


def load(model_path):
    if model_path.endswith(".gguf"):
        d, f = os.path.split(model_path)
        cfg = tf.AutoConfig.from_pretrained(d, gguf_file=f)
        if cfg.pad_token_id is not None and cfg.pad_token_id >= cfg.vocab_size:
            cfg.pad_token_id = None
        m = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, dtype=torch.float32,
                                                    attn_implementation="eager")
        tok = tf.AutoTokenizer.from_pretrained(d, gguf_file=f)
    else:
        m = tf.AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="eager")
        tok = tf.AutoTokenizer.from_pretrained(model_path) if (
            os.path.exists(os.path.join(model_path, "tokenizer.json"))) else None
    return m.eval(), tok


def layers_of(m):
    base = m.model if hasattr(m, "model") else m.gpt_neox
    return base.layers


def attn_parts(layer):
    a = layer.self_attn if hasattr(layer, "self_attn") else layer.attention
    o = a.o_proj if hasattr(a, "o_proj") else a.dense
    return a, o


def tokenize(tok, m, text, policy):
    if policy == "bos":
        return tok(text).input_ids
    ids = tok(text, add_special_tokens=False).input_ids
    if policy == "prepend":
        first = tok.bos_token_id if tok.bos_token_id is not None else m.config.bos_token_id
        if first is None:
            first = tok.eos_token_id
        ids = [first] + ids
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--ids-from", help="results.h5 group whose docs/ ids to use instead of tokenizing (tiny models)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--policy", default="bos")
    ap.add_argument("--max-tokens-to-calc", type=int, default=512)
    ap.add_argument("--max-tokens-to-show", type=int, default=32)
    ap.add_argument("--layers-to-show", default="")
    ap.add_argument("--max-docs", type=int, default=0)
    ap.add_argument("--max-total-tokens", type=int, default=4096)
    ap.add_argument("--epsilon", type=float, default=0.3)
    ap.add_argument("--token-ids", help="JSON file with a list of token-id lists (overrides tokenizing)")
    ap.add_argument("--top-keys", type=int, default=8, help="k of basic/top_key_mass (sink-run's top_keys)")
    a = ap.parse_args()
    torch.manual_seed(0)
    m, tok = load(a.model)
    cfg = m.config
    L = cfg.num_hidden_layers
    H = cfg.num_attention_heads
    P, S = a.max_tokens_to_calc, a.max_tokens_to_show
    show = [int(x) for x in a.layers_to_show.split(",") if x != ""]
    s = 0
    if a.token_ids:
        docs = json.load(open(a.token_ids))
    else:
        docs = []
        for line in open(a.eval):
            if line.strip():
                docs.append(tokenize(tok, m, json.loads(line)["text"], a.policy)[: a.max_total_tokens])
        if a.max_docs:
            docs = docs[: a.max_docs]

    captured = {}

    def keep(name):
        def hook(mod, inp, out):
            captured[name] = (inp[0] if isinstance(inp, tuple) and name.endswith("z") else out).detach()
        return hook

    handles = []
    for l, layer in enumerate(layers_of(m)):
        att, o = attn_parts(layer)
        # The additive mask HF's eager attention gets in this layer (its sliding window included):
        # which query rows see the sink key, without re-deriving the window rule here.
        handles.append(att.register_forward_pre_hook(
            lambda mod, args, kw, l=l: captured.__setitem__(f"mask{l}", kw.get("attention_mask")), with_kwargs=True))
        handles.append(o.register_forward_hook(lambda mod, inp, out, l=l: captured.__setitem__(f"z{l}", inp[0].detach())))
        handles.append(o.register_forward_hook(lambda mod, inp, out, l=l: captured.__setitem__(f"o{l}", out.detach())))
        mlp = layer.mlp
        if hasattr(layer, "post_feedforward_layernorm"):  # Gemma 2: the MLP output as added to the residual
            mlp = layer.post_feedforward_layernorm
        handles.append(mlp.register_forward_hook(
            lambda mod, inp, out, l=l: captured.__setitem__(f"m{l}", (out[0] if isinstance(out, tuple) else out).detach())))

    out = {}
    geo = {w: {l: [] for l in range(L)} for w in (0, 1)}
    gu = []  # per document with >= 64 tokens: Gu et al.'s importance score of token 0, [L, H]
    maps = {l: [] for l in show}

    def put(k, v):
        out.setdefault(k, []).append(np.asarray(v, dtype=np.float64))

    torch.set_grad_enabled(False)
    for ids in docs:
        T = len(ids)
        Tc = min(T, P)
        with torch.no_grad():
            r = m(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
        ss, t64, ent, entn, toks, topm = [], [], [], [], [], []
        vals = {k: [] for k in ("sink_out_norm", "update_norm", "sink_share", "update_minus_sink_norm",
                                "v_sink_norm", "v_other_norm", "k_sink_norm", "k_other_norm")}
        attn_n, mlp_n = [], []
        gu_doc = []
        for l in range(L):
            A = r.attentions[l][0].double()  # [H, T, T]
            if T >= 64:
                # Gu et al.'s compute_attention_sink (sail-sg/Attention-Sink, eval_sink_open_source.py) on
                # the first 64 tokens (the attention is causal: the same as a 64-token input):
                # importance[j] = sum_i A[i, j] / (64 - j); the sink rate thresholds token 0's.
                A64 = A[:, :64, :64]
                ratios = torch.arange(64, 0, -1, dtype=torch.float64)[None, None, :]
                gu_doc.append((A64 / ratios).sum(-2)[:, 0].numpy())
            ss.append(A[:, s + 1:Tc, s].mean(1).numpy() if Tc > s + 1 else np.full(H, np.nan))
            t64.append(A[:, s:min(64, T), s].mean(1).numpy())
            rows = A[:, 1:Tc, :]
            e = -(torch.special.xlogy(rows, rows)).sum(-1)  # [H, Tc-1]
            ent.append(e.mean(1).numpy())
            entn.append((e / torch.log(torch.arange(2, Tc + 1, dtype=torch.float64))).mean(1).numpy())
            ts = np.full((H, S), np.nan)
            for j in range(min(S, Tc)):
                ts[:, j] = A[:, j:Tc, j].mean(1).numpy()
            toks.append(ts)
            # top keys by attention mass over every key j < T_c: m[j] = mean over s < i < T_c of A[i, j]
            tm = np.full((H, a.top_keys), np.nan)
            if Tc > s + 1:
                mass = np.sort(A[:, s + 1:Tc, :Tc].mean(1).numpy(), axis=1)[:, ::-1][:, :a.top_keys]
                tm[:, :mass.shape[1]] = mass
            topm.append(tm)
            if l in show:
                mp = np.full((H, S, S), np.nan)
                k = min(S, T)
                mp[:, :k, :k] = A[:, :k, :k].numpy()
                maps[l].append(mp)
            # values: W_O per head, v_s, z
            att, o = attn_parts(layers_of(m)[l])
            Wo = o.weight.double()  # [d, H*dh]
            dh = Wo.shape[1] // H
            z = captured[f"z{l}"][0].double().view(T, H, dh)
            # v and k: recompute from the layer input (hidden_states[l] is the layer input)
            x = r.hidden_states[l][0]
            ln = layers_of(m)[l].input_layernorm
            hnorm = ln(x.unsqueeze(0))[0]
            if hasattr(att, "query_key_value"):  # GPT-NeoX: interleaved per head
                qkv = att.query_key_value(hnorm).view(T, H, 3 * dh)
                kk, vv = qkv[..., dh:2 * dh], qkv[..., 2 * dh:]
                nkv = H
            elif hasattr(att, "qkv_proj"):  # Phi-3: [Q | K | V]
                qkv = att.qkv_proj(hnorm)
                nkv = cfg.num_key_value_heads
                kk = qkv[:, H * dh:(H + nkv) * dh].view(T, nkv, dh)
                vv = qkv[:, (H + nkv) * dh:].view(T, nkv, dh)
            else:
                nkv = cfg.num_key_value_heads
                kk = att.k_proj(hnorm).view(T, nkv, dh)
                vv = att.v_proj(hnorm).view(T, nkv, dh)
                if hasattr(att, "k_norm"):
                    kk = att.k_norm(kk)
            rep = H // nkv
            # Keys as attention uses them: RoPE rotates (norms unchanged) and scales by the
            # rotary embedding's attention_scaling (YaRN's mscale; 1 otherwise).
            rot = (m.model.rotary_emb if hasattr(m, "model") else m.gpt_neox.rotary_emb)
            kscale = float(getattr(rot, "attention_scaling", 1.0))
            kn = kk.double().norm(dim=-1).repeat_interleave(rep, 1)[:Tc]
            kn = kn * kscale  # (no supported model combines partial rotary with a scaling != 1)
            vn = vv.double().norm(dim=-1).repeat_interleave(rep, 1)[:Tc]
            vals["k_sink_norm"].append(kn[s].numpy())
            vals["v_sink_norm"].append(vn[s].numpy())
            vals["k_other_norm"].append(((kn.sum(0) - kn[s]) / (Tc - 1)).numpy())
            vals["v_other_norm"].append(((vn.sum(0) - vn[s]) / (Tc - 1)).numpy())
            vs = vv[s].double().repeat_interleave(rep, 0)  # [H, dh]
            Woh = Wo.view(-1, H, dh)
            w_sink = torch.einsum("dhk,hk->hd", Woh, vs)  # [H, d]
            u = torch.einsum("ihk,dhk->ihd", z[s + 1:Tc], Woh)  # [n, H, d]
            a_s = A[:, s + 1:Tc, s].t()  # [n, H]
            c = a_s.unsqueeze(-1) * w_sink.unsqueeze(0)
            un, cn = u.norm(dim=-1), c.norm(dim=-1)
            vals["sink_out_norm"].append(cn.mean(0).numpy())
            vals["update_norm"].append(un.mean(0).numpy())
            vals["sink_share"].append((cn / un).mean(0).numpy())
            vals["update_minus_sink_norm"].append((u - c).norm(dim=-1).mean(0).numpy())
            C = a_s @ w_sink  # [n, d]
            Rv = captured[f"o{l}"][0].double()[s + 1:Tc] - C
            # C and R over the rows that see the sink under the layer's window (HF's mask is 0 there).
            mask = captured.get(f"mask{l}")
            vis = (torch.ones(Tc - s - 1, dtype=torch.bool) if mask is None
                   else mask[0, 0, s + 1:Tc, s] == 0) if Tc > s + 1 else torch.zeros(0, dtype=torch.bool)
            geo[0][l].append(C[vis].numpy())
            geo[1][l].append(Rv[vis].numpy())
            an = np.full(P, np.nan)
            an[:min(T, P)] = captured[f"o{l}"][0].double().norm(dim=-1)[:P].numpy()
            attn_n.append(an)
            mn = np.full(P, np.nan)
            mn[:min(T, P)] = captured[f"m{l}"][0].double().norm(dim=-1)[:P].numpy()
            mlp_n.append(mn)
        if gu_doc:
            gu.append(np.stack(gu_doc))
        put("basic/sink_score", ss)
        put("basic/sink_score_t64", t64)
        put("basic/entropy", ent)
        put("basic/entropy_norm", entn)
        put("basic/token_sink_score", toks)
        put("basic/top_key_mass", topm)
        for k, v in vals.items():
            put("values/" + k, v)
        put("norms/attn_out", attn_n)
        put("norms/mlp_out", mlp_n)
        hn = np.full((L + 1, P), np.nan)
        for i, h in enumerate(r.hidden_states):
            hn[i, :min(T, P)] = h[0].double().norm(dim=-1)[:P].numpy()
        put("norms/hidden", hn)
        put("docs/n_tokens", T)

    with h5py.File(a.out, "w") as f:
        for k, v in out.items():
            f[k] = np.stack(v)
        # Sink rates at epsilon: Gu et al.'s (per document, then the mean over documents, layers and
        # heads), and the thresholds of the means over documents (alpha, and Gu's score).
        eps = a.epsilon
        summ = f.create_group("summary")
        if gu:
            ind = (np.stack(gu) > eps).astype(np.float64)  # [N64, L, H]
            summ.attrs["sink_rate_gu"] = ind.mean()
            summ["sink_rate_gu_by_layer"] = ind.mean(axis=(0, 2))
            summ["gu_score_per_doc"] = np.stack(gu)
        summ.attrs["sink_rate_gu_n_docs"] = len(gu)
        ss_mean = np.nanmean(np.stack(out["basic/sink_score"]), 0)
        t_mean = np.nanmean(np.stack(out["basic/sink_score_t64"]), 0)
        summ.attrs["sink_rate"] = (ss_mean > eps).mean()
        summ.attrs["sink_rate_t64_of_mean"] = (t_mean > eps).mean()
        summ["sink_rate_by_layer"] = (ss_mean > eps).mean(1)
        summ["sink_rate_t64_of_mean_by_layer"] = (t_mean > eps).mean(1)
        summ["sink_score_mean"] = ss_mean
        summ["sink_score_t64_mean"] = t_mean
        for l in show:
            f.create_dataset(f"viz/attention_map/{l}", data=np.nanmean(np.stack(maps[l]), 0))
        for key in ("mean_cos_to_mean", "pc1_share", "var_over_mean_sq", "mean_norm"):
            f.create_dataset("summary/geometry/" + key, shape=(L, 2), dtype="f8")
        for l in range(L):
            for w in (0, 1):
                V = np.concatenate(geo[w][l])
                mu = V.mean(0)
                mun = np.linalg.norm(mu)
                nrm = np.linalg.norm(V, axis=1)
                nz = nrm > 0  # zero vectors have no direction (the sink outside a window)
                f["summary/geometry/mean_cos_to_mean"][l, w] = ((V[nz] / nrm[nz, None]) @ mu).mean() / mun
                cov = np.cov(V.T, bias=True)
                ev = np.linalg.eigvalsh(cov)
                f["summary/geometry/pc1_share"][l, w] = ev[-1] / np.trace(cov)
                f["summary/geometry/var_over_mean_sq"][l, w] = np.trace(cov) / mun ** 2
                f["summary/geometry/mean_norm"][l, w] = nrm.mean()


if __name__ == "__main__":
    main()
