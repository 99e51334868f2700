#!/usr/bin/env python3
"""HF transformers side of sink-bench: one forward of T tokens, timed, with
the peak resident memory it added. Modes: `sdpa` (HF's plain forward) and
`eager_outputs` (eager attention with output_attentions and
output_hidden_states, as the seed study ran it). Prints one JSON line."""
import argparse
import json
import os
import resource
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
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
        m = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation=impl, dtype=dt)
    elif a.model.endswith(".gguf"):
        d, f = os.path.split(a.model)
        cfg = tf.AutoConfig.from_pretrained(d, gguf_file=f)
        if cfg.pad_token_id is not None and cfg.pad_token_id >= cfg.vocab_size:
            cfg.pad_token_id = None
        m = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, dtype=dt, attn_implementation=impl)
    else:
        m = tf.AutoModelForCausalLM.from_pretrained(a.model, dtype=dt, attn_implementation=impl)
    m.eval()
    ids = torch.tensor([[(i * 7919 + 13) % m.config.vocab_size for i in range(a.T)]])
    kw = dict(output_attentions=True, output_hidden_states=True) if a.mode == "eager_outputs" else {}
    try:
        m(ids, **kw)
        times, peak = [], 0
        for _ in range(a.reps):
            base = rss_mib()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            t0 = time.perf_counter()
            out = m(ids, **kw)
            times.append(time.perf_counter() - t0)
            peak = max(peak, peak_mib() - base)
            del out
        times.sort()
        print(json.dumps({"seconds": times[len(times) // 2], "peak_extra_mib": peak, "threads": torch.get_num_threads()}))
    except (RuntimeError, MemoryError) as e:
        print(json.dumps({"error": str(e)[:200]}))


if __name__ == "__main__":
    main()
