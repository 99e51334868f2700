#!/usr/bin/env python3
"""Tokenizer throughput: sink-tokenize against HF `tokenizers`, single thread,
same documents (encode with special tokens, once each, caches cold).

  .venv/bin/python tools/bench/bench_tokenize.py [--build build/release]
      [--corpus ../shared/data/corpora/sotu.jsonl] [--tokenizers gpt2 mistral-7b-v0.1] [--repeat 3]

Prints docs/s and MB/s of encoding (loading excluded, reported apart) and
our speed-up over HF; the best of --repeat runs for each side.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SINK_SHARED_DATA", ROOT.parent / "shared" / "data"))


def ours(binary, tok_path, corpus, repeat):
    best = None
    for _ in range(repeat):
        r = subprocess.run([str(binary), "--tokenizer", str(tok_path), "--jsonl", str(corpus), "--bench"],
                           capture_output=True, text=True, check=True)
        res = json.loads(r.stdout)
        if best is None or res["encode_s"] < best["encode_s"]:
            best = res
    return best


def hf(tok_path, texts, repeat):
    from tokenizers import Tokenizer
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(str(Path(tok_path) / "tokenizer.json"))
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        n = sum(len(tok.encode(t).ids) for t in texts)
        s = time.perf_counter() - t1
        if best is None or s < best["encode_s"]:
            best = {"load_s": load, "encode_s": s, "tokens": n}
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build" / "release"))
    ap.add_argument("--corpus", default=str(DATA / "corpora" / "sotu.jsonl"))
    ap.add_argument("--tokenizers", nargs="+", default=["gpt2", "mistral-7b-v0.1"])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    binary = Path(a.build) / "sink-tokenize"
    texts = [json.loads(l)["text"] for l in open(a.corpus, encoding="utf-8") if l.strip()]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"corpus {a.corpus}: {len(texts)} docs, {mb:.2f} MB; single thread, best of {a.repeat}")
    print(f"{'tokenizer':18} {'impl':6} {'load s':>7} {'docs/s':>9} {'MB/s':>8} {'Mtok/s':>8}  speed-up")
    for name in a.tokenizers:
        path = DATA / "tokenizers" / name
        o = ours(binary, path, a.corpus, a.repeat)
        h = hf(path, texts, a.repeat)
        if o["tokens"] != h["tokens"]:
            print(f"warning: {name}: {o['tokens']} tokens from us, {h['tokens']} from HF", file=sys.stderr)
        for impl, r in (("HF", h), ("sink", o)):
            s = r["encode_s"]
            extra = f"  x{h['encode_s'] / o['encode_s']:.1f}" if impl == "sink" else ""
            print(f"{name:18} {impl:6} {r['load_s']:7.2f} {len(texts) / s:9.1f} {mb / s:8.2f} "
                  f"{r['tokens'] / s / 1e6:8.2f}{extra}")


if __name__ == "__main__":
    main()
