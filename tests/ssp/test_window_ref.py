"""intervention.window_eval against HF transformers: the evaluation window added to HF's own eager
mask of each layer, the SSP variants' patches around HF's eager attention (tools/reference/window_hf.py,
float64 weights), μ_W, μ_W per head and ᾱ_W refitted from HF's attention; perplexity of every
variant equal to 10⁻⁶ relative, on tiny checkpoints and on the real SmolLM2-135M."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "run"))
from run_util import TINY, make_eval, sink_run, write_config  # noqa: E402

SMOLLM2 = "models/smollm2-135m-instruct.Q4_1.gguf"
SOTU = "data/eval/sotu_n50_ml4000_seed42/eval.jsonl"
AUSTEN = "data/eval/austen_n32_ml512_seed7/eval.jsonl"


def first_docs(src, dst, n):
    with open(src) as f, open(dst, "w") as g:
        for line in f.readlines()[:n]:
            g.write(line)
    return str(dst)


def check(tmp_path, model, name, ev, cal, windows, keep, granularity="layer", layers=(), ppl_tol=1e-6, **kw):
    iv = {"modes": ["zero"], "granularity": granularity, "calibration_jsonl": cal,
          "window_eval": {"windows": list(windows), "keep": list(keep), "ssp": ["ssp_bias", "ssp_drop"]}}
    if layers:
        iv["layers"] = list(layers)
    cfg = write_config(tmp_path / "c.yaml", model=model, name=name, eval_jsonl=ev, out=str(tmp_path / "out"),
                       intervention=iv, steps={"basic": True, "norms": False, "values": True, "viz": False}, **kw)
    sink_run(cfg)
    res = str(tmp_path / "out" / "results.h5")
    ref = str(tmp_path / "ref.h5")
    py = os.environ.get("SINK_PYTHON", sys.executable)
    r = subprocess.run([py, "tools/reference/window_hf.py", "--model", model, "--results", res, "--run", name,
                        "--eval", ev, "--out", ref, "--calibration", cal, "--dtype", "float64"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    names = [f"window_w{W}_{v}" for W in windows for v in [f"keep{k}" for k in keep] + ["ssp_bias", "ssp_drop"]]
    with h5py.File(res) as f, h5py.File(ref) as rf:
        sp = f[name]["ssp"]
        for W in windows:  # μ_W, μ_W per head, ᾱ_W: HF's attention under the same window, sink kept
            for k in ("mu", "mu_head", "alpha_bar"):
                ours, theirs = sp[f"window_mu/w{W}/{k}"][()], rf[f"calib/w{W}/{k}"][()]
                assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max() + 1e-12, (W, k)
        # The first window hides the sink from some rows (mistral's windows of 16 show it to no row past
        # 15, so W = 32 hides it from none: those variants then equal keep0).
        assert rf[f"calib/w{windows[0]}/count"][()].max() > 0
        for m in ["original"] + names:
            g = sp[m]
            rel = abs(g.attrs["ppl"] / rf[m].attrs["ppl"] - 1)
            print(name, m, "ppl", g.attrs["ppl"], "reference", rf[m].attrs["ppl"], "rel", rel)
            assert rel <= ppl_tol, (m, rel)
            if m != "original":
                assert np.allclose(g["kl"][()], rf[m + "/kl"][()], rtol=1e-3, atol=1e-6), m
                assert g.attrs["window"] in windows and g.attrs["ppl_ratio_ci95_low"] <= g.attrs["ppl_ratio"]
        # The window changes the model; keeping the sink, or μ, changes it differently.
        W = windows[0]
        for a, b in [("original", f"window_w{W}_keep0"), (f"window_w{W}_keep0", f"window_w{W}_ssp_bias"),
                     (f"window_w{W}_ssp_bias", f"window_w{W}_ssp_drop")]:
            assert not np.allclose(sp[a]["nll_sum"][()], sp[b]["nll_sum"][()]), (a, b)
    return res


# llama: full attention; mistral: windows of 16 (the window W = 8 hides the sink in rows 8…15 only),
# head granularity; gemma2: soft-capping (the explicit path); gemma3: sliding and global layers, q/k norms.
@pytest.mark.parametrize("family,policy,granularity", [("llama", "bos", "layer"), ("mistral", "bos", "head"),
                                                        ("gemma2", "bos", "layer"), ("gemma3", "bos", "layer")])
def test_window_matches_hf_tiny(tmp_path, family, policy, granularity):
    ev = make_eval(tmp_path / "eval.jsonl", n=3)
    cal = make_eval(tmp_path / "cal.jsonl", start=30, n=2)
    check(tmp_path, os.path.join(TINY, family), family, ev, cal, windows=[8, 32], keep=[0, 1, 4],
          granularity=granularity, layers=[0, 2] if family == "llama" else (), max_total_tokens=120,
          max_tokens_to_calc=64, max_tokens_to_show=8, sink_policy=policy)


# The real SmolLM2-135M (GGUF, dequantised by HF) on a State of the Union address: T = 512 here
# (HF float64 eager at T = 1024 took 6.7 min on the shared machine; the 1024 and 2048 checks are this
# test with SINK_WINDOW_T=1024 or 2048, run by hand: see docs/metrics.md).
@pytest.mark.skipif(not os.path.exists(SMOLLM2), reason="models/ not set up (tools/setup.sh)")
def test_window_matches_hf_smollm2(tmp_path):
    T = int(os.environ.get("SINK_WINDOW_T", "512"))
    ev = first_docs(SOTU, tmp_path / "eval.jsonl", 1)
    cal = first_docs(AUSTEN, tmp_path / "cal.jsonl", 1)
    res = check(tmp_path, SMOLLM2, "smollm2", ev, cal, windows=[64], keep=[0, 1], max_total_tokens=T,
                max_tokens_to_calc=64, max_tokens_to_show=8, sink_policy="prepend")
    with h5py.File(res) as f:
        assert int(f["smollm2/docs/n_tokens"][0]) == T
