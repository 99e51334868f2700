"""tools/plot_results.py end to end: sink-run writes a results.h5 with two runs on tiny
checkpoints (llama with every step and Static Sink Patching; qwen3 without viz, values and
intervention), then the plot tool makes its PNGs and index.html, one subfolder per run."""
import json
import os
import re
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

BUILD = os.environ.get("SINK_BUILD_DIR", "build/release")
FIXTURES = os.environ.get("SINK_FIXTURES", os.path.join(BUILD, "fixtures"))
SHARED = os.environ.get("SINK_SHARED_DATA", "../shared/data")
SOURCE = os.environ.get("SINK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(SOURCE, "tools", "plot_results.py")
SHOW = [0, 2]

BASIC = ["sink_score.png", "sink_score_wireframe.png", "entropy.png", "token_sink_score.png", "secondary_sinks.png",
         "norms.png", "massive_activations.png"]
FULL = BASIC + ["geometry.png", "mean_direction_pca.png", "values.png", "ssp_ppl.png", "ssp_resid.png",
                "ssp_kl.png"] + [f"attention_map_layer{l:02d}.png" for l in SHOW] + \
       [f"doc_attention_map_{k}_layer{l:02d}.png" for k in range(4) for l in SHOW]  # docs_to_show: 4 by default
# qwen3 runs without viz (no attention maps), values (no value metrics, no geometry) and SSP
PARTIAL = BASIC
EXPECTED = {"llama": FULL, "qwen3": PARTIAL}


def make_jsonl(path, start, n, chars=1500):
    docs = [json.loads(l) for l in open(os.path.join(SHARED, "corpora", "moby-dick.jsonl"))][start:start + n]
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps({"id": str(d["id"]), "text": d["text"][:chars]}) + "\n")
    return str(path)


def plot(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, MPLBACKEND="Agg"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    sink_run = os.path.join(BUILD, "sink-run")
    assert os.path.exists(sink_run), f"{sink_run} is missing: build the project first"
    for fam in EXPECTED:
        assert os.path.isdir(os.path.join(FIXTURES, "tiny", fam)), "tiny checkpoints missing (fixture tiny_models)"
    d = tmp_path_factory.mktemp("plots")
    cfg = {"out": str(d / "out"),
           "defaults": {"eval_jsonl": make_jsonl(d / "eval.jsonl", 0, 6), "max_total_tokens": 200,
                        "layers_to_show": SHOW, "max_tokens_to_show": 8, "max_tokens_to_calc": 64},
           "runs": [{"model": os.path.join(FIXTURES, "tiny", "llama"),
                     "intervention": {"modes": ["ssp_bias", "ssp_drop", "zero", "random"],
                                      "calibration_jsonl": make_jsonl(d / "calib.jsonl", 6, 2), "seed": 7}},
                    {"model": os.path.join(FIXTURES, "tiny", "qwen3"), "steps": {"viz": False, "values": False}}]}
    with open(d / "sweep.yaml", "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    r = subprocess.run([sink_run, str(d / "sweep.yaml"), "--no-progress"], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]
    path = d / "out" / "results.h5"
    with h5py.File(path) as f:
        assert sorted(f.keys()) == ["llama", "qwen3"]
        assert "ssp" in f["llama"] and "ssp" not in f["qwen3"]
    return path


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails unless the file is a PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    assert head[12:16] == b"IHDR", f"{path}: no IHDR"
    return struct.unpack(">II", head[16:24])


def check_png(path):
    import matplotlib.image as mpimg
    assert os.path.isfile(path), f"{path} missing"
    size = os.path.getsize(path)
    assert 8_000 < size < 8_000_000, (path, size)
    w, h = png_size(path)
    assert 300 <= w <= 6000 and 200 <= h <= 6000, (path, w, h)
    img = mpimg.imread(path)  # decodes the whole file
    assert img.shape[:2] == (h, w)
    assert float(np.std(img[..., :3])) > 0.02, f"{path}: looks blank"


def test_plots_every_run(results, tmp_path):
    out = tmp_path / "plots"
    r = plot(results, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    index = out / "index.html"
    assert r.stdout.strip().splitlines()[-1] == str(index)
    html = index.read_text()
    srcs = set(re.findall(r"<img src='([^']+)'", html))
    on_disk = set()
    for run, names in EXPECTED.items():
        files = sorted(os.listdir(out / run))
        assert sorted(names) == files, (run, files)
        for n in names:
            check_png(out / run / n)
            on_disk.add(f"{run}/{n}")
    assert srcs == on_disk, srcs ^ on_disk
    # every figure has a caption, and the partial run says what it lacks
    assert html.count("<figcaption>") == len(on_disk)
    assert "no ssp/ group" in html and "no basic/attention_map" in html
    assert "Failed" not in html
    # a table of contents linking every figure; the warning on 6 documents (fewer than 10)
    assert "<nav id='contents'>" in html
    assert len(re.findall(r"<li><a href='#(llama|qwen3)-\d+'>", html)) == len(on_disk)
    assert "rests on 6 documents" in html


def test_outline_marks_heads_above_epsilon(results, tmp_path):
    """Each head whose mean α exceeds ε gets its own box, and no other: on a file with known heads above ε (the
    real run's α with three heads set above ε), and on the real run itself (ε lowered so that some are above)."""
    sys.path.insert(0, os.path.dirname(TOOL))
    import plot_results as pr
    known = tmp_path / "known.h5"
    with h5py.File(results) as f, h5py.File(known, "w") as k:
        f.copy("llama", k)
        g = k["llama"]
        a = g["basic/sink_score"][()]
        a[:] = 0.05
        for l, h in ((0, 1), (1, 3), (2, 0)):
            a[:, l, h] = 0.9
        g["basic/sink_score"][...] = a
        g["summary"].attrs["epsilon"] = 0.3
        with h5py.File(results) as f2:
            eps_real = float(np.median(f2["llama/summary/sink_score_mean"][()]))
    cases = [(known, "llama", {(0, 1), (1, 3), (2, 0)})]
    with h5py.File(results) as f:
        m = np.nanmean(f["llama/basic/sink_score"][()], axis=0)
    real = tmp_path / "real.h5"
    with h5py.File(results) as f, h5py.File(real, "w") as k:
        f.copy("llama", k)
        k["llama/summary"].attrs["epsilon"] = eps_real
    cases.append((real, "llama", {(int(l), int(h)) for l, h in zip(*np.nonzero(m > eps_real))}))
    for path, run, want in cases:
        assert want and len(want) < m.size  # some above, some below
        with h5py.File(path) as f:
            fig, cap = pr.sink_score_figure(f[run], run)
        ax = fig.axes[0]  # the α panel
        got = {tuple(int(x) for x in p.get_gid().split(":")[1].split(",")) for p in ax.patches
               if (p.get_gid() or "").startswith("above-eps:")}
        assert got == want, (path, got, want)
        for p in ax.patches:  # each box is one cell, inside it
            if (p.get_gid() or "").startswith("above-eps:"):
                r, c = map(int, p.get_gid().split(":")[1].split(","))
                assert c - 0.5 < p.get_x() < c and r - 0.5 < p.get_y() < r and p.get_width() < 1
        assert "own red box" in cap
        import matplotlib.pyplot as plt
        plt.close(fig)


@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_vector_formats(results, tmp_path, fmt, magic):
    out = tmp_path / fmt
    r = plot(results, "--out", out, "--run", "llama", "--format", fmt)
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted(os.listdir(out / "llama"))
    assert files == sorted(n[:-4] + "." + fmt for n in FULL), files
    for n in files:
        assert (out / "llama" / n).read_bytes()[:5].startswith(magic[:4]), n
    html = (out / "index.html").read_text()
    assert f"llama/sink_score.{fmt}" in html


def test_screenshot_in_headless_chromium(results, tmp_path):
    """The plots page as a browser renders it (Debian's chromium, headless): the page and its images load."""
    import shutil
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is missing (tools/setup.sh installs it: apt-get install chromium)"
    out = tmp_path / "plots"
    assert plot(results, "--out", out, "--run", "llama").returncode == 0
    shot = tmp_path / "page.png"
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1300,2000", f"--screenshot={shot}", (out / "index.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[:2] == (2000, 1300)
    # the first figure (the sink-score heatmap) is drawn: many distinct colours, not a page of text and broken images
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 500, len(colours)


def test_plots_one_run_and_default_out(results, tmp_path):
    # --run picks one run; without --out the plots go to plots/ beside the file
    r = plot(results, "--run", "qwen3")
    assert r.returncode == 0, r.stdout + r.stderr
    out = results.parent / "plots"
    assert r.stdout.strip().splitlines()[-1] == str(out / "index.html")
    assert sorted(os.listdir(out)) == ["index.html", "qwen3"]
    html = (out / "index.html").read_text()
    assert "llama/" not in html and len(re.findall(r"<img src=", html)) == len(PARTIAL)


def test_bad_input(results, tmp_path):
    r = plot(results, "--run", "nope", "--out", tmp_path / "x")
    assert r.returncode == 2 and "no run nope" in r.stderr and "llama" in r.stderr
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    r = plot(bad, "--out", tmp_path / "y")
    assert r.returncode == 2 and "cannot open" in r.stderr
