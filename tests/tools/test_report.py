"""tools/report.py on a real sink-run results.h5 (the two-run sweep of test_plot_results: llama with
SSP, qwen3 without values and SSP): report.md and report.html are written from the file alone (a copy
in an empty folder gives the same bytes), the numbers in report.md equal the file's (formatted by the
report's own fmt), the published anchors appear with their sources when the model has one, and bad
input is refused with one line and exit status 2."""
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

from test_plot_results import SOURCE, results  # noqa: F401  (the module-scoped sweep fixture)

TOOL = os.path.join(SOURCE, "tools", "report.py")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
from report import fmt, pct  # noqa: E402  (the number format is part of the report's contract)


def report(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True, timeout=300)


def tables(md, run):
    """The Markdown tables of one run's section, in order, as lists of rows (cells stripped)."""
    sec = md.split(f"\n## {run}\n", 1)[1].split("\n## ", 1)[0]
    out, cur = [], None
    for line in sec.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cur is None:
                cur = [cells]
            elif not all(set(c) <= {"-"} for c in cells):
                cur.append(cells)
        elif cur is not None:
            out.append(cur)
            cur = None
    if cur is not None:
        out.append(cur)
    return out


def test_report_numbers_equal_the_file(results, tmp_path):  # noqa: F811
    out = tmp_path / "a"
    r = report(results, "--out", out)
    assert r.returncode == 0, r.stderr
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html and "Runs side by side" in html
    # From results.h5 alone: a copy in an empty folder regenerates the same bytes.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(results, alone / "results.h5")
    assert report(alone / "results.h5").returncode == 0
    assert (alone / "report.md").read_bytes() == (out / "report.md").read_bytes()
    assert (alone / "report.html").read_bytes() == (out / "report.html").read_bytes()

    with h5py.File(results) as f:
        g = f["llama"]
        s = g["summary"]
        info, rates, profile, geo, massive, ssp, anchors = tables(md, "llama")
        assert rates[1][1] == pct(s.attrs["sink_rate_gu"]) and rates[1][2] == fmt(s.attrs["sink_rate_gu_n_docs"])
        assert rates[2][1] == pct(s.attrs["sink_rate_t64_of_mean"])
        assert rates[3][1] == pct(s.attrs["sink_rate"])
        L = g.attrs["n_layers"]
        assert len(profile) == L + 1 and len(geo) == L + 1
        for l in range(L):
            assert profile[l + 1] == [str(l), pct(g["summary/sink_rate_gu_by_layer"][l]),
                                      pct(g["summary/sink_rate_t64_of_mean_by_layer"][l]),
                                      pct(g["summary/sink_rate_by_layer"][l]),
                                      fmt(np.nanmean(g["summary/sink_score_mean"][l]))], l
            G = g["summary/geometry"]
            want = [str(l)] + [fmt(G[k][l, w]) for k in ("mean_cos_to_mean", "pc1_share", "var_over_mean_sq")
                               for w in (0, 1)] + [fmt(G["norm_ratio"][l]), fmt(int(G["count"][l, 0]))]
            assert geo[l + 1] == want, (l, geo[l + 1], want)
        assert len(massive) == L + 2  # header + L + 1 hidden states
        top0 = g["norms/massive_index"][:, 0, 0]
        assert str(int(np.bincount(top0.astype(int)).argmax())) in massive[1][1]
        for row in ssp[1:]:
            a = g["ssp/" + row[0]].attrs
            assert row[1] == fmt(a["ppl"]) and row[4] == fmt(a["kl_mean"]) and row[5] == fmt(a["n_tokens_scored"])
            if row[0] != "original":
                assert row[2] == fmt(a["ppl_ratio"])
                assert row[3] == f"[{fmt(a['ppl_ratio_ci95_low'])}, {fmt(a['ppl_ratio_ci95_high'])}]"
        assert [r[0] for r in ssp[1:]] == ["original", "ssp_bias", "ssp_drop", "zero", "random"]
        # A tiny checkpoint has no published number: the anchors are listed with their sources, none claimed.
        assert all(r[3] == "–" and ("arXiv:" in r[4]) for r in anchors[1:]), anchors
        # The run without values or SSP says so instead of inventing numbers.
        sec = md.split("\n## qwen3\n", 1)[1]
        assert "No geometry in this run" in sec and "No intervention in this run" in sec
        side = tables(md, "Runs side by side")[0]
        assert [r[0] for r in side[1:]] == ["llama", "qwen3"]
        assert side[1][3] == pct(s.attrs["sink_rate_gu"]) and side[1][8] == fmt(g["ssp/original"].attrs["ppl"])


def test_published_anchors_carry_their_sources(results, tmp_path):  # noqa: F811
    path = tmp_path / "results.h5"
    shutil.copy(results, path)
    with h5py.File(path, "r+") as f:  # the same numbers under a published model's name
        f["llama"].attrs["model"] = "meta-llama/Llama-2-7b-hf"
        f["llama"].attrs["model_path"] = "/models/Llama-2-7b-hf"
        rate, ppl = f["llama/summary"].attrs["sink_rate_gu"], f["llama/ssp/zero"].attrs["ppl"]
    assert report(path).returncode == 0
    anchors = tables((tmp_path / "report.md").read_text(), "llama")[-1]
    rows = {r[1]: r for r in anchors[1:]}
    gu = rows["sink rate, Gu et al.'s protocol (%)"]
    assert gu[2] == "92.47" and gu[3] == fmt(100 * rate) and "Gu et al. 2025" in gu[4] and "Table 1" in gu[4]
    zero = rows["perplexity, zero patch (here: zero)"]
    # Owen et al.'s values as their released results_ppl.txt gives them (8976.8955…, 5.1370730…), with that file named.
    assert zero[2] == "8976.9" and zero[3] == fmt(ppl) and "Owen et al. 2025" in zero[4] and "results_ppl.txt" in zero[4]
    assert rows["perplexity, mean patch (here: ssp_bias)"][2] == "5.1371"
    assert not any("Mistral" in r[4] or r[0] == "mistral-7b" for r in anchors[1:])


def test_bad_input(tmp_path):
    bad = tmp_path / "results.h5"
    bad.write_text("not hdf5")
    r = report(bad)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr
    assert not (tmp_path / "report.md").exists()
    r = report(tmp_path / "missing.h5")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_findings_page_numbers_equal_the_file(results, tmp_path):  # noqa: F811
    """tools/findings.py (docs/findings.md's generator) on the same file: the side-by-side row and the
    run's sentences carry the file's numbers in the report's format."""
    out = tmp_path / "findings.md"
    r = subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "findings.py"), str(results), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    md = out.read_text()
    with h5py.File(results) as f:
        s = f["llama/summary"].attrs
        row = next(l for l in md.splitlines() if l.startswith("| llama |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == pct(s["sink_rate_gu"]) and cells[3] == pct(s["sink_rate_t64_of_mean"]), cells
        assert cells[6] == fmt(f["llama/ssp/original"].attrs["ppl"], 5), cells
        assert cells[7] == "×" + fmt(f["llama/ssp/ssp_bias"].attrs["ppl_ratio"], 4), cells
        assert f"Gu et al.'s protocol {pct(s['sink_rate_gu'])}" in md
        w = f["llama"].attrs["sliding_window"]
        assert len(w) == f["llama"].attrs["n_layers"] and (w == 0).all()  # llama: full attention everywhere
    assert "## The full report" in md and "placeholder" not in md
