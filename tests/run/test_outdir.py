"""The end of a run and the output folder: sink-summary's numbers against the file (read with h5py), the
summary sink-run prints, .partial removed once results.h5 is complete, a complete results.h5 of another config
kept unless --overwrite, and the command line (--version, --help listing every option, one error prefix)."""
import csv
import io
import os
import re
import subprocess

import h5py
import numpy as np

from run_util import BUILD, TINY, make_eval, sink_run, write_config


def summary(*args):
    r = subprocess.run([os.path.join(BUILD, "sink-summary"), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def config(tmp_path, name, out, ev, cal, **kw):
    return write_config(tmp_path / f"{name}.yaml", model=os.path.join(TINY, "llama"), eval_jsonl=ev, out=str(out),
                        max_total_tokens=80, max_tokens_to_calc=32, max_tokens_to_show=4, layers_to_show=[0],
                        intervention={"modes": ["ssp_bias", "zero"], "calibration_jsonl": cal}, **kw)


def expected_rows(path):
    """What the summary must say, straight from the file."""
    rows = []
    with h5py.File(path) as f:
        for run in f.attrs["runs"].split(","):
            g = f[run]
            a = g["summary/sink_score_mean"][()]
            order = sorted(((-float(a[l, h]), l, h) for l in range(a.shape[0]) for h in range(a.shape[1])))[:3]
            row = {"run": run, "n_docs": int(g.attrs["n_docs"]), "epsilon": g["summary"].attrs["epsilon"],
                   "sink_rate": g["summary"].attrs["sink_rate"], "sink_rate_gu": g["summary"].attrs["sink_rate_gu"],
                   "top_heads": [(l, h, -v) for v, l, h in order], "ppl_original": g["ssp/original"].attrs["ppl"]}
            for m in ("ssp_bias", "zero"):
                s = g["ssp/" + m].attrs
                row.update({f"ppl_{m}": s["ppl"], f"ppl_ratio_{m}": s["ppl_ratio"],
                            f"ci95_low_{m}": s["ppl_ratio_ci95_low"], f"ci95_high_{m}": s["ppl_ratio_ci95_high"]})
            rows.append(row)
    return rows


def check_csv(text, paths):
    got = list(csv.DictReader(io.StringIO(text)))
    want = [dict(r, file=str(p)) for p in paths for r in expected_rows(p)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["file"] == w["file"] and g["run"] == w["run"] and int(g["n_docs"]) == w["n_docs"]
        for k, v in w.items():
            if k in ("file", "run", "n_docs", "top_heads"):
                continue
            assert float(g[k]) == float(v), (k, g[k], v)  # every digit: CSV keeps them
        heads = [re.fullmatch(r"L(\d+)H(\d+)=(\S+)", x).groups() for x in g["top_heads"].split()]
        assert [(int(l), int(h), float(a)) for l, h, a in heads] == [(l, h, float(a)) for l, h, a in w["top_heads"]]


def test_summary_and_output_folder(tmp_path):
    ev = make_eval(tmp_path / "eval.jsonl", n=3, chars=600)
    cal = make_eval(tmp_path / "cal.jsonl", start=30, n=1, chars=600)
    out = tmp_path / "out"
    cfg = config(tmp_path, "a", out, ev, cal)
    r = sink_run(cfg)
    res = out / "results.h5"
    # sink-run's last line is the path; before it, the summary (the text sink-summary prints)
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == str(res)
    assert "\n".join(lines[:-1]) + "\n" == summary(res)
    assert "sink rate" in r.stdout and "ssp_bias: perplexity" in r.stdout
    assert "intervals rest on 3 documents" in r.stdout  # fewer than 10: said so
    assert not (out / ".partial").exists()  # removed once results.h5 is complete
    check_csv(summary(res, "--csv"), [res])
    # the text and markdown forms round the same numbers
    w = expected_rows(res)[0]
    text = summary(res)
    assert f"ratio {w['ppl_ratio_zero']:.4g} [95% CI {w['ci95_low_zero']:.4g}, {w['ci95_high_zero']:.4g}]" in text
    md = summary(res, "--markdown").splitlines()
    assert md[0].startswith("| file | run |") and md[1].startswith("|---|")
    cells = [c.strip() for c in md[2].strip("|").split("|")]
    head = [c.strip() for c in md[0].strip("|").split("|")]
    assert cells[head.index("ppl_ratio_ssp_bias")] == f"{w['ppl_ratio_ssp_bias']:.4g}"

    # another config into the same folder: refused, the complete file kept as it was
    before = res.read_bytes()
    cfg_b = config(tmp_path, "b", out, ev, cal, epsilon=0.2)
    r = sink_run(cfg_b, check=False)
    assert r.returncode == 2 and r.stderr.count("error:") == 1, r.stderr
    assert str(res) in r.stderr and "--overwrite" in r.stderr
    assert res.read_bytes() == before
    # told to: replaced; --keep-partial keeps .partial
    sink_run(cfg_b, "--overwrite", "--keep-partial")
    assert (out / ".partial" / "manifest.json").exists()
    with h5py.File(res) as f:
        assert f["llama/summary"].attrs["epsilon"] == 0.2
    # the same config again needs no flag
    sink_run(cfg_b)

    # a sweep's files side by side
    out2 = tmp_path / "out2"
    sink_run(config(tmp_path, "c", out2, ev, cal, max_docs=2))
    check_csv(summary(res, out2 / "results.h5", "--csv"), [res, out2 / "results.h5"])

    # not a results file: one line, status 2
    bad = tmp_path / "bad.h5"
    bad.write_text("x")
    r = subprocess.run([os.path.join(BUILD, "sink-summary"), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(bad) in r.stderr


def test_command_line():
    exe = os.path.join(BUILD, "sink-run")
    v = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and re.fullmatch(r"sink-run \d+\.\d+\.\d+ \(\S+\)\n", v.stdout), v.stdout
    h = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    # every option the parser accepts is in --help
    src = open(os.path.join(os.environ.get("SINK_SOURCE_DIR", "."), "src", "cli", "sink_run.cpp")).read()
    options = set(re.findall(r'a == "(--[a-z-]+)"', src))
    assert {"--bucket-size", "--no-progress", "--version", "--overwrite", "--keep-partial"} <= options
    for o in options:
        assert o in h, o
    r = subprocess.run([exe], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("sink-run: error: ") and "sink-run: sink-run" not in r.stderr
    assert r.stderr.count("sink-run") == 1, r.stderr
