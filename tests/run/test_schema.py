"""A real results.h5 against the schema table in docs/results.md: every
documented dataset is there with its shape and dtype, and nothing undocumented."""
import os
import re

import h5py
import numpy as np

from run_util import TINY, make_eval, sink_run, write_config

DOC = os.path.join(os.environ.get("SINK_SOURCE_DIR", "."), "docs", "results.md")
DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "u8": np.uint8}


def schema():
    rows = []
    for line in open(DOC):
        m = re.match(r"\| ([a-z0-9_/]+) \| \[([A-Za-z0-9,]+)\] \| (\w+) \| (\w+) \|", line)
        if m:
            rows.append((m.group(1), m.group(2).split(","), m.group(3), m.group(4)))
    assert len(rows) > 30
    return rows


def check(g, sizes, conds):
    documented = set()
    for path, shape, dtype, when in schema():
        if when not in conds:
            continue
        paths = [path]
        if path.startswith("ssp/original/"):
            paths += [path.replace("original", m) for m in ("ssp_bias", "ssp_drop", "zero", "random")]
        for p in paths:
            documented.add(p)
            assert p in g, p
            ds = g[p]
            assert list(ds.shape) == [sizes[x] if not x.isdigit() else int(x) for x in shape], (p, ds.shape)
            if dtype == "str":
                assert ds.dtype.kind == "S", p
            else:
                assert ds.dtype == DTYPES[dtype], (p, ds.dtype)
    present = []
    g.visit(lambda k: present.append(k) if isinstance(g[k], h5py.Dataset) else None)
    extra = set(present) - documented - {"ssp/calibration_ids"}
    assert not extra, f"undocumented datasets: {sorted(extra)}"


def test_results_file_matches_schema(tmp_path):
    ev = make_eval(tmp_path / "eval.jsonl", n=5)
    cal = make_eval(tmp_path / "cal.jsonl", start=30, n=2)
    for fam, policy, conds in (("llama", "bos", {"always", "values", "ssp"}),
                               ("gpt_oss", "prepend", {"always", "values", "ssp", "gpt_oss"})):
        out = tmp_path / f"out_{fam}"
        cfg = write_config(tmp_path / f"{fam}.yaml", model=os.path.join(TINY, fam), eval_jsonl=ev, out=str(out),
                           max_total_tokens=100, max_tokens_to_calc=40, max_tokens_to_show=6, layers_to_show=[0, 1],
                           sink_policy=policy,
                           intervention={"modes": ["ssp_bias", "ssp_drop", "zero", "random"], "calibration_jsonl": cal})
        sink_run(cfg)
        with h5py.File(out / "results.h5") as f:
            assert f.attrs["complete"] == 1
            for a in ("tool", "version", "git_commit", "config", "start_time", "end_time", "n_ranks", "runs"):
                assert a in f.attrs, a
            g = f[fam]
            L, H, d = g.attrs["n_layers"], g.attrs["n_heads"], g.attrs["d_model"]
            sizes = dict(N=5, L=L, H=H, S=6, P=40, K=4, d=d, V=2, L1=L + 1)
            check(g, sizes, conds)
            for a in ("model", "device_map", "devices", "sink_policy", "sink_position", "eval_sha256", "weights_fingerprint",
                      "complete"):
                assert a in g.attrs, a
            for a in ("sink_rate_gu", "sink_rate_gu_n_docs", "sink_rate", "sink_rate_t64_of_mean", "epsilon"):
                assert a in g["summary"].attrs, a
            for m in ("ssp_bias", "ssp_drop", "zero", "random"):
                for a in ("ppl", "ppl_ratio", "ppl_ratio_ci95_low", "ppl_ratio_ci95_high"):
                    assert a in g["ssp/" + m].attrs, (m, a)
