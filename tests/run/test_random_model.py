"""model: random:CONFIG (src/model/random.cpp): a published shape with seeded random weights, so a
7B-shaped run needs no download. The 7B shape through --dry-run (its tokenizer from data/models.json);
a tiny shape (the tiny llama checkpoint's config.json and tokenizer, weights not copied) run for real:
the same numbers on 1 and 2 ranks and run after run (the weights depend on the seed alone), and not
the trained checkpoint's numbers (the weights really are drawn)."""
import os
import shutil

import h5py
import numpy as np

from run_util import TINY, make_eval, sink_run, write_config


def test_7b_shape_dry_run(tmp_path):
    ev = make_eval(tmp_path / "eval.jsonl", n=2, chars=800)
    cfg = write_config(tmp_path / "c.yaml", model="random:data/model_specs/llama2_7b_hf/config.json", eval_jsonl=ev,
                       out=str(tmp_path / "out"), dtype="bfloat16")
    r = sink_run(cfg, "--dry-run")
    assert r.stdout.startswith("llama2_7b_hf_random: data/model_specs/llama2_7b_hf (llama, 32 layers, 32 heads, "
                               "d=4096), 2 documents"), r.stdout
    bad = write_config(tmp_path / "bad.yaml", model="random:data/model_specs/none/config.json", eval_jsonl=ev,
                       out=str(tmp_path / "out"))
    r = sink_run(bad, "--dry-run", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "random:data/model_specs/none" in r.stderr, r.stderr


def test_tiny_shape_runs_the_same_on_any_ranks(tmp_path):
    shape = tmp_path / "shape"
    shape.mkdir()
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(TINY, "llama", f), shape / f)
    ev = make_eval(tmp_path / "eval.jsonl", n=3, chars=600)
    common = dict(eval_jsonl=ev, max_total_tokens=48, max_tokens_to_calc=16, max_tokens_to_show=4, layers_to_show=[0])
    files = {}
    for key, model, mpi in (("r1", f"random:{shape}", 0), ("r2", f"random:{shape}/config.json", 2),
                            ("again", f"random:{shape}", 0), ("trained", os.path.join(TINY, "llama"), 0)):
        cfg = write_config(tmp_path / f"{key}.yaml", name="m", model=model, out=str(tmp_path / key), **common)
        sink_run(cfg, "--threads", "1", "--bucket-size", "1", mpi=mpi)
        files[key] = h5py.File(tmp_path / key / "results.h5")
    g = files["r1"]["m"]
    assert g.attrs["model"] == f"random:{shape}" and g.attrs["weights_fingerprint"].startswith("random:")
    for k in ("basic/sink_score", "norms/hidden", "basic/entropy"):
        a = g[k][()]
        assert np.isfinite(a[~np.isnan(a)]).all()
        np.testing.assert_array_equal(a, files["r2"]["m"][k][()], err_msg=k)
        np.testing.assert_array_equal(a, files["again"]["m"][k][()], err_msg=k)
        assert not np.array_equal(a, files["trained"]["m"][k][()], equal_nan=True), k
