"""Distributed runs: the same config on 1, 2 and 4 ranks gives the same file;
a rank killed with SIGKILL mid-run, then --resume, gives the uninterrupted
run's numbers; a sweep of two models on 4 ranks puts both in one file."""
import os
import signal
import subprocess
import time

import h5py
import numpy as np

from run_util import BUILD, TINY, make_eval, sink_run, write_config


def config(tmp, name, model="llama", out=None, n=8, **extra):
    ev = make_eval(tmp / f"eval_{name}.jsonl", n=n)
    cal = make_eval(tmp / f"cal_{name}.jsonl", start=20, n=3)
    kw = dict(model=os.path.join(TINY, model), eval_jsonl=ev, out=str(out or tmp / f"out_{name}"),
              max_total_tokens=160, layers_to_show=[0, 2], max_tokens_to_show=8, max_tokens_to_calc=64,
              intervention={"modes": ["ssp_bias", "ssp_drop", "zero", "random"], "calibration_jsonl": cal,
                            "seed": 3,
                            # the windowed modes, their μ_W calibration phases included
                            "window_eval": {"windows": [8, 32], "keep": [0, 4], "ssp": ["ssp_bias", "ssp_drop"]}})
    kw.update(extra)
    return write_config(tmp / f"{name}.yaml", **kw)


def datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda k, o: out.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset) else None)
        for k in list(out):
            pass
        attrs = {}
        f.visititems(lambda k, o: attrs.__setitem__(k, dict(o.attrs)))
    return out, attrs


def assert_same(a, b, exact=True):
    da, aa = datasets(a)
    db, ab = datasets(b)
    assert sorted(da) == sorted(db)
    for k in da:
        x, y = da[k], db[k]
        if x.dtype.kind in "fc":
            assert np.array_equal(x, y, equal_nan=True), k
        else:
            assert np.array_equal(x, y), k
    for k in aa:
        for name, v in aa[k].items():
            if name in ("model_path",):
                continue
            w = ab[k][name]
            if isinstance(v, np.ndarray):
                assert np.array_equal(v, w, equal_nan=True), (k, name)
            elif isinstance(v, float) and np.isnan(v):
                assert np.isnan(w)
            else:
                assert v == w, (k, name, v, w)


def test_ranks_give_identical_files(tmp_path):
    files = []
    for n in (1, 2, 4):
        cfg = config(tmp_path, f"r{n}", out=tmp_path / "same_out" / f"r{n}")
        sink_run(cfg, "--bucket-size", "1", "--threads", "1", mpi=n if n > 1 else 0)
        f = tmp_path / "same_out" / f"r{n}" / "results.h5"
        with h5py.File(f) as h:
            assert h.attrs["n_ranks"] == n and h.attrs["complete"] == 1
        files.append(f)
    # Root attributes naming the ranks, times and config path differ by construction; the data may not.
    for f in files[1:]:
        da, _ = datasets(files[0])
        db, _ = datasets(f)
        assert sorted(da) == sorted(db)
        for k in da:
            assert np.array_equal(da[k], db[k], equal_nan=da[k].dtype.kind == "f"), k
        with h5py.File(files[0]) as a, h5py.File(f) as b:
            for k in ("ssp/ssp_bias", "ssp/zero", "ssp/window_w8_keep4", "ssp/window_w8_ssp_drop", "summary"):
                for name, v in a["llama/" + k].attrs.items():
                    assert v == b["llama/" + k].attrs[name], (k, name)


def test_killed_rank_then_resume(tmp_path):
    ref_cfg = config(tmp_path, "ref", n=10)
    sink_run(ref_cfg, "--bucket-size", "1", "--threads", "1")
    cfg = config(tmp_path, "kill", n=10)
    out = tmp_path / "out_kill"
    env = dict(os.environ, SINK_FAULT_DELAY_MS="400")
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", os.path.join(BUILD, "sink-run"), cfg,
           "--bucket-size", "1", "--threads", "1", "--no-progress"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    partial = out / ".partial" / "llama"
    deadline = time.time() + 300
    while time.time() < deadline:
        done = list(partial.glob("doc_*.safetensors")) if partial.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.1)
    assert len(done) >= 3, "the run did not get going"
    # SIGKILL one rank (a sink-run process of this config), as a node failure would.
    pids = subprocess.run(["pgrep", "-f", f"sink-run {cfg}"], capture_output=True, text=True).stdout.split()
    assert pids
    os.kill(int(pids[-1]), signal.SIGKILL)
    p.wait(timeout=120)
    assert p.returncode != 0
    assert not (out / "results.h5").exists()  # nothing passed off as complete
    n_before = len(list(partial.glob("doc_*.safetensors")))
    assert n_before < 10
    # Resume with another number of ranks: only what is missing is computed.
    r = sink_run(cfg, "--resume", "--bucket-size", "1", "--threads", "1")
    assert (out / "results.h5").exists()
    da, _ = datasets(tmp_path / "out_ref" / "results.h5")
    db, _ = datasets(out / "results.h5")
    for k in da:
        assert np.array_equal(da[k], db[k], equal_nan=da[k].dtype.kind == "f"), k


def test_resume_refuses_another_config(tmp_path):
    cfg = config(tmp_path, "a", n=4)
    sink_run(cfg, "--keep-partial")  # .partial goes once results.h5 is complete, unless kept
    other = config(tmp_path, "b", n=4, out=tmp_path / "out_a", max_tokens_to_calc=32)
    r = sink_run(other, "--resume", check=False)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if "error" in l]  # log lines at info level may precede it
    assert len(lines) == 1 and "another config" in lines[0] and "manifest.json" in lines[0], r.stderr


def test_sweep_two_models_four_ranks(tmp_path):
    ev = make_eval(tmp_path / "eval.jsonl", n=6)
    common = dict(eval_jsonl=ev, max_total_tokens=160, layers_to_show=[0, 1], max_tokens_to_show=8,
                  max_tokens_to_calc=64)
    sweep = write_config(tmp_path / "sweep.yaml", out=str(tmp_path / "sweep_out"), defaults=common,
                         runs=[{"name": "tiny_llama", "model": os.path.join(TINY, "llama")},
                               {"name": "tiny_qwen3", "model": os.path.join(TINY, "qwen3"), "sink_policy": "prepend"}])
    sink_run(sweep, "--threads", "1", mpi=4)
    with h5py.File(tmp_path / "sweep_out" / "results.h5") as f:
        assert set(f.keys()) == {"tiny_llama", "tiny_qwen3"}
        assert f.attrs["n_ranks"] == 4
        for name, model in (("tiny_llama", "llama"), ("tiny_qwen3", "qwen3")):
            one = write_config(tmp_path / f"{name}.yaml", out=str(tmp_path / f"one_{name}"), name=name,
                               model=os.path.join(TINY, model), **common,
                               **({"sink_policy": "prepend"} if model == "qwen3" else {}))
            sink_run(one, "--threads", "1")
            with h5py.File(tmp_path / f"one_{name}" / "results.h5") as g:
                for k in ("basic/sink_score", "values/sink_share", "norms/hidden", "summary/geometry/pc1_share"):
                    assert np.array_equal(f[name][k][()], g[name][k][()], equal_nan=True), (name, k)
