#!/usr/bin/env python3
"""HF transformers side of sink-bench: one forward of T tokens, timed, with
the peak resident memory it added. Modes: `sdpa` (HF's plain forward),
`eager_outputs` (eager attention with output_attentions and
output_hidden_states, as the seed study ran it), and `eager_job` (the same
forward plus forward hooks and every per-document §3 statistic computed from
its outputs in the model's dtype, as the seed study did: the job our
observation pass does, on HF). Prints one JSON line."""
import argparse
import ctypes
import json
import os
import time


def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1


def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return -1


def seed_statistics(m, r, captured, T, Tc=512, S=32, show=None):
    """The per-document §3 statistics from HF's outputs, straight from the definitions
    (docs/metrics.md), in the model's dtype: what the seed study computed after each
    forward. Llama-style attention modules (q/k/v/o_proj) only."""
    import torch
    cfg = m.config
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    Tc, s = min(T, Tc), 0
    show = show if show is not None else [0, L - 1]
    out = []
    for l in range(L):
        A = r.attentions[l][0]  # [H, T, T]
        a_s = A[:, s + 1:Tc, s]
        st = {"sink_score": a_s.mean(1), "t64": A[:, s:min(64, T), s].mean(1)}
        rows = A[:, 1:Tc, :]
        e = -torch.special.xlogy(rows, rows).sum(-1)
        st["entropy"] = e.mean(1)
        st["entropy_norm"] = (e / torch.log(torch.arange(2, Tc + 1, dtype=e.dtype, device=e.device))).mean(1)
        st["token_sink_score"] = torch.stack([A[:, j:Tc, j].mean(1) for j in range(min(S, Tc))], 1)
        if l in show:
            st["map"] = A[:, :S, :S].clone()
        att = m.model.layers[l].self_attn
        Wo = att.o_proj.weight
        dh = Wo.shape[1] // H
        kk, vv, z = captured[f"k{l}"][0], captured[f"v{l}"][0], captured[f"z{l}"][0].view(T, H, dh)
        nkv = kk.shape[-1] // dh
        kn = kk.view(T, nkv, dh).norm(dim=-1).repeat_interleave(H // nkv, 1)[:Tc]
        vn = vv.view(T, nkv, dh).norm(dim=-1).repeat_interleave(H // nkv, 1)[:Tc]
        st["k"] = (kn[s], (kn.sum(0) - kn[s]) / (Tc - 1))
        st["v"] = (vn[s], (vn.sum(0) - vn[s]) / (Tc - 1))
        vs = vv.view(T, nkv, dh)[s].repeat_interleave(H // nkv, 0)
        Woh = Wo.view(-1, H, dh)
        w_sink = torch.einsum("dhk,hk->hd", Woh, vs)
        u = torch.einsum("ihk,dhk->ihd", z[s + 1:Tc], Woh)  # the per-head updates [n, H, d]
        c = a_s.t().unsqueeze(-1) * w_sink.unsqueeze(0)
        un, cn = u.norm(dim=-1), c.norm(dim=-1)
        st["values"] = (cn.mean(0), un.mean(0), (cn / un).mean(0), (u - c).norm(dim=-1).mean(0))
        C = a_s.t() @ w_sink
        st["geometry"] = (C, captured[f"o{l}"][0][s + 1:Tc] - C)  # kept for the run's PCA
        st["norms"] = (captured[f"o{l}"][0][:Tc].norm(dim=-1), captured[f"m{l}"][0][:Tc].norm(dim=-1))
        out.append(st)
    out.append([h[0][:Tc].norm(dim=-1) for h in r.hidden_states])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mode", default="sdpa")
    a = ap.parse_args()
    import torch
    import transformers as tf
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[a.dtype]
    impl = "sdpa" if a.mode == "sdpa" else "eager"
    if a.random_weights:
        cfg = tf.AutoConfig.from_pretrained(os.path.dirname(a.model) if a.model.endswith(".json") else a.model)
        with torch.device(a.device):  # initialised where it runs: a 7B model's CPU init takes minutes
            m = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation=impl, dtype=dt)
    elif a.model.endswith(".gguf"):
        d, f = os.path.split(a.model)
        cfg = tf.AutoConfig.from_pretrained(d, gguf_file=f)
        if cfg.pad_token_id is not None and cfg.pad_token_id >= cfg.vocab_size:
            cfg.pad_token_id = None
        m = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, dtype=dt, attn_implementation=impl)
    else:
        m = tf.AutoModelForCausalLM.from_pretrained(a.model, dtype=dt, attn_implementation=impl)
    m.eval().to(a.device)
    ids = torch.tensor([[(i * 7919 + 13) % m.config.vocab_size for i in range(a.T)]], device=a.device)
    cuda = a.device.startswith("cuda")
    libc = ctypes.CDLL("libc.so.6")

    def reset_peak():  # as sink-bench's PeakMeter: free heap pages back to the kernel, then reset VmHWM
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated() / 2**20
        libc.malloc_trim(0)
        base = rss_mib()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return base

    def extra_peak(base):
        if cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20 - base
        return peak_mib() - base
    kw = dict(output_attentions=True, output_hidden_states=True) if a.mode != "sdpa" else {}
    captured = {}
    job = a.mode == "eager_job"
    if job:
        keep = lambda name: (lambda mod, inp, out: captured.__setitem__(name, out))
        for l, layer in enumerate(m.model.layers):
            at = layer.self_attn
            at.k_proj.register_forward_hook(keep(f"k{l}"))
            at.v_proj.register_forward_hook(keep(f"v{l}"))
            at.o_proj.register_forward_hook(lambda mod, inp, out, l=l: captured.__setitem__(f"z{l}", inp[0]))
            at.o_proj.register_forward_hook(keep(f"o{l}"))
            layer.mlp.register_forward_hook(keep(f"m{l}"))

    def run():
        r = m(ids, **kw)
        return (r, seed_statistics(m, r, captured, a.T)) if job else r

    try:
        run()
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            out = run()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            del out
            captured.clear()
        # Peak memory in one more, untimed run (as sink-bench: the heap trim makes it fault its pages in).
        base = reset_peak()
        out = run()
        peak = extra_peak(base)
        del out
        times.sort()
        print(json.dumps({"seconds": times[len(times) // 2], "peak_extra_mib": peak, "threads": torch.get_num_threads()}))
    except (RuntimeError, MemoryError) as e:
        print(json.dumps({"error": str(e)[:200]}))


if __name__ == "__main__":
    main()
