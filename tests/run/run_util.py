"""Helpers for the sink-run tests: small eval sets from the shared corpora, configs, running."""
import json
import os
import subprocess

BUILD = os.environ.get("SINK_BUILD_DIR", "build/release")
FIXTURES = os.environ.get("SINK_FIXTURES", "build/release/fixtures")
SHARED = os.environ.get("SINK_SHARED_DATA", "../shared/data")
TINY = os.path.join(FIXTURES, "tiny")


def make_eval(path, corpus="moby-dick.jsonl", start=0, n=6, chars=1500):
    docs = [json.loads(l) for l in open(os.path.join(SHARED, "corpora", corpus))][start:start + n]
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps({"id": str(d["id"]), "text": d["text"][:chars]}) + "\n")
    return str(path)


def write_config(path, **kw):
    import yaml
    with open(path, "w") as f:
        yaml.safe_dump(kw, f, sort_keys=False)
    return str(path)


def sink_run(*args, check=True, env=None, mpi=0, timeout=1800):
    cmd = [os.path.join(BUILD, "sink-run"), *map(str, args), "--no-progress"]
    if mpi:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(mpi)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"sink-run failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r


def reference(model, eval_jsonl, out, policy, P, S, show, max_total):
    import sys
    py = os.environ.get("SINK_PYTHON", sys.executable)
    subprocess.run([py, "tools/reference/observe_hf.py", "--model", model, "--eval", eval_jsonl, "--out", out,
                    "--policy", policy, "--max-tokens-to-calc", str(P), "--max-tokens-to-show", str(S),
                    "--layers-to-show", ",".join(map(str, show)), "--max-total-tokens", str(max_total)],
                   check=True, capture_output=True)
    return out


def datasets(path, group=None):
    """Every dataset of a complete results.h5 (or of one run's group), by path."""
    import h5py
    out = {}
    with h5py.File(path) as f:
        assert f.attrs["complete"] == 1, path
        g = f[group] if group else f
        g.visititems(lambda k, o: out.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def assert_same_data(a, b, group=None):
    """The two files (or their runs' groups) hold the same datasets, bit for bit."""
    import numpy as np
    da, db = datasets(a, group), datasets(b, group)
    assert sorted(da) == sorted(db), group
    for k in da:
        x, y = da[k], db[k]
        assert x.dtype == y.dtype and x.shape == y.shape, (group, k)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), (group, k)
