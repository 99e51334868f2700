#!/usr/bin/env python3
"""The study's claims as numbers, from results.h5 alone: report.md and report.html.

    python tools/report.py OUT/results.h5 [MORE/results.h5 ...] [--out DIR]

Per run: the claims of SPEC §3 beside their control (the sink vectors C against
the rest of the attention output R, layer by layer: mean cosine to the mean
direction, share of variance on the first principal component, trace(cov)/‖mean‖²,
the norm ratio), both sink rates (Gu et al.'s protocol and the threshold of the
mean) and the per-layer profile, the massive-activation dimensions at the sink,
Static Sink Patching's perplexity per mode with its interval and KL, and the
published anchors where the run's model has one, each with its source. Several
runs (a sweep, or several files) also get a table side by side. Definitions:
docs/metrics.md; the file's schema: docs/results.md.

Nothing is read but the HDF5 files: rerunning on the same file gives the same
bytes. Every number is printed with fmt() below (6 significant digits)."""
import argparse
import html
import os
import re
import sys

import h5py
import numpy as np

# ------------------------------------------------------------------ published anchors
# Each: (pattern on the run's model name or path, quantity, published value, this run's counterpart, source).
GU = ("Gu et al. 2025, When Attention Sink Emerges in Language Models: An Empirical View (ICLR 2025, "
      "arXiv:2410.10781), Table 1: sink rate at ε = 0.3, first 64 tokens")
OWEN = ("Owen et al. 2025 (arXiv:2503.22329), the authors' released results_ppl.txt for Llama-2-7b-hf "
        "(github.com/bluorion-com/refine_massive_activations; WikiText, 10 samples of 4096 tokens, BOS added): "
        "the massive activations set to their mean, or to zero; the nearest analogues of ssp_bias and zero, "
        "not the same intervention")
STREAMING = ("Xiao et al. 2024, Efficient Streaming Language Models with Attention Sinks (StreamingLLM, ICLR 2024, "
             "arXiv:2309.17453)")
ANCHORS = [
    (r"llama-?2-?7b", "sink rate, Gu et al.'s protocol (%)", 92.47, "sink_rate_gu", GU),
    (r"mistral-?7b", "sink rate, Gu et al.'s protocol (%)", 97.49, "sink_rate_gu", GU),
    (r"(meta-)?llama-?3-?8b", "sink rate, Gu et al.'s protocol (%)", 99.02, "sink_rate_gu", GU),
    (r"llama-?2-?7b", "perplexity, original", 5.1327, "ppl:original", OWEN),
    (r"llama-?2-?7b", "perplexity, mean patch (here: ssp_bias)", 5.1371, "ppl:ssp_bias", OWEN),
    (r"llama-?2-?7b", "perplexity, zero patch (here: zero)", 8976.9, "ppl:zero", OWEN),
]
STREAMING_NOTE = ("The first tokens draw attention whatever their content; evicting them from the cache (window "
                  "attention) makes the perplexity explode, keeping four of them restores it. The `zero` mode "
                  "removes the sink's contribution in the same spirit; no number of theirs is transcribed here.")


def fmt(x, digits=6):
    """The one number format of the report (the test formats the file's values with it)."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if not np.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}"


def pct(x):
    return "–" if x is None or not np.isfinite(x) else fmt(100.0 * float(x), 4) + " %"


def attr(obj, key, default=None):
    if obj is None or key not in obj.attrs:
        return default
    v = obj.attrs[key]
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    return v


def ds(g, path):
    return g[path][()] if path in g else None


# ------------------------------------------------------------------ the document model
class Doc:
    """Blocks rendered to both Markdown and HTML: ('h', level, text), ('p', text), ('table', head, rows)."""

    def __init__(self):
        self.blocks = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text):
        self.blocks.append(("p", text))

    def table(self, head, rows):
        self.blocks.append(("table", head, [[str(c) for c in r] for r in rows]))

    def markdown(self):
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            else:
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in b[2]]
            out.append("")
        return "\n".join(out)

    def html(self, title):
        def inline(t):
            t = html.escape(t)
            t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
            return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)

        out = ["<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto;line-height:1.4}"
               "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.15em .5em;"
               "text-align:right}th{background:#eee}td:first-child{text-align:left}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{inline(b[1])}</p>")
            else:
                out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in b[1]) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in b[2]]
                out.append("</table>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


# ------------------------------------------------------------------ per run
def model_name(g):
    return f"{attr(g, 'model', '')} {attr(g, 'model_path', '')}".lower()


def run_value(g, key):
    """This run's counterpart of an anchor: a summary attribute or an SSP perplexity (ppl:MODE)."""
    if key.startswith("ppl:"):
        m = key[4:]
        return attr(g.get(f"ssp/{m}"), "ppl")
    v = attr(g.get("summary"), key)
    return None if v is None else 100.0 * float(v)


def geometry_section(doc, g):
    geo = g.get("summary/geometry")
    if geo is None:
        doc.p("No geometry in this run (the values step was off).")
        return None
    cos, pc1, var = geo["mean_cos_to_mean"][()], geo["pc1_share"][()], geo["var_over_mean_sq"][()]
    ratio, count = geo["norm_ratio"][()], geo["count"][()]
    L = cos.shape[0]
    doc.p("C[l,i] is what the sink writes into the residual stream through layer l's attention; the control "
          "R[l,i] is everything else the attention writes (docs/metrics.md). The claim: C has one direction "
          "(cosine to its mean near 1, one principal component), low variance relative to its mean, and a norm "
          f"comparable to R's. Principal components: {attr(geo, 'pca', '?')}. Rows: the positions that see the "
          "sink (a sliding window hides it from the others).")
    rows = []
    for l in range(L):
        rows.append([l, fmt(cos[l, 0]), fmt(cos[l, 1]), fmt(pc1[l, 0]), fmt(pc1[l, 1]), fmt(var[l, 0]),
                     fmt(var[l, 1]), fmt(ratio[l]), fmt(int(count[l, 0]))])
    doc.table(["layer", "cos to mean C", "cos to mean R", "PC1 share C", "PC1 share R", "tr(cov)/‖mean‖² C",
               "tr(cov)/‖mean‖² R", "‖C‖/‖R‖", "rows"], rows)
    ok = np.isfinite(cos).all(1)
    n = int(ok.sum())
    more_aligned = int((cos[ok, 0] > cos[ok, 1]).sum())
    more_pc1 = int((pc1[ok, 0] > pc1[ok, 1]).sum())
    less_var = int((var[ok, 0] < var[ok, 1]).sum())
    doc.p(f"Over the {n} layers: C is more aligned with its mean than R in {more_aligned}, has the larger PC1 "
          f"share in {more_pc1}, and the lower trace(cov)/‖mean‖² in {less_var}. Medians over layers: cosine "
          f"{fmt(np.median(cos[ok, 0]))} (C) against {fmt(np.median(cos[ok, 1]))} (R); PC1 share "
          f"{fmt(np.median(pc1[ok, 0]))} against {fmt(np.median(pc1[ok, 1]))}; trace(cov)/‖mean‖² "
          f"{fmt(np.median(var[ok, 0]))} against {fmt(np.median(var[ok, 1]))}; ‖C‖/‖R‖ {fmt(np.median(ratio[ok]))}.")
    return dict(cos_c=np.median(cos[ok, 0]), cos_r=np.median(cos[ok, 1]), pc1_c=np.median(pc1[ok, 0]),
                pc1_r=np.median(pc1[ok, 1]), ratio=np.median(ratio[ok]))


def sink_rate_section(doc, g):
    s = g.get("summary")
    eps = attr(s, "epsilon")
    doc.table(["definition", "sink rate", "documents"], [
        ["Gu et al.'s protocol: per document, (l, h) with the 64-token score > ε; mean over documents, layers "
         "and heads (`sink_rate_gu`)", pct(attr(s, "sink_rate_gu")), fmt(attr(s, "sink_rate_gu_n_docs"))],
        ["threshold of the mean, Gu et al.'s score (`sink_rate_t64_of_mean`)",
         pct(attr(s, "sink_rate_t64_of_mean", attr(s, "sink_rate_t64"))), fmt(attr(g, "n_docs"))],
        ["threshold of the mean, α over s < i < T_c (`sink_rate`)", pct(attr(s, "sink_rate")),
         fmt(attr(g, "n_docs"))],
    ])
    doc.p(f"ε = {fmt(eps)}. Per layer (the fraction of the layer's heads; `summary/*_by_layer`), with the mean α "
          "over the layer's heads:")
    gu, t64, al = (ds(g, f"summary/{k}_by_layer") for k in ("sink_rate_gu", "sink_rate_t64_of_mean", "sink_rate"))
    mean = ds(g, "summary/sink_score_mean")
    if al is None:  # a file written before the per-layer profiles
        if mean is None:
            return
        al = (mean > eps).mean(1)
    rows = []
    for l in range(len(al)):
        rows.append([l, pct(gu[l]) if gu is not None else "–", pct(t64[l]) if t64 is not None else "–", pct(al[l]),
                     fmt(np.nanmean(mean[l])) if mean is not None else "–"])
    doc.table(["layer", "Gu et al.'s protocol", "threshold of the mean (Gu's score)", "threshold of the mean (α)",
               "mean α"], rows)


def massive_section(doc, g):
    idx, val = ds(g, "norms/massive_index"), ds(g, "norms/massive_value")
    if idx is None:
        doc.p("No norms in this run.")
        return
    N, L1, K = idx.shape
    doc.p(f"The {K} largest |h| dimensions of the hidden state at the sink position (HF's L + 1 convention: "
          "0 = embeddings), over the documents: each dimension that is among them in at least half of the "
          "documents, with that share and its median signed value.")
    rows = []
    for l in range(L1):
        ii, vv = idx[:, l, :].reshape(-1), val[:, l, :].reshape(-1)
        ok = ii >= 0
        dims, counts = np.unique(ii[ok].astype(np.int64), return_counts=True)
        keep = [(int(d), c) for d, c in zip(dims, counts) if c >= N / 2]
        keep.sort(key=lambda dc: (-dc[1], -float(np.median(np.abs(vv[ok][ii[ok] == dc[0]])))))
        cells = [f"{d} ({fmt(c / N, 3)}, {fmt(np.median(vv[ok][ii[ok] == d]), 4)})" for d, c in keep[:K]]
        rows.append([l, "; ".join(cells) if cells else "–"])
    doc.table(["hidden state", "dimension (share of documents, median value)"], rows)


def ssp_section(doc, g):
    sp = g.get("ssp")
    if sp is None:
        doc.p("No intervention in this run.")
        return None
    ncal = len(sp["calibration_ids"]) if "calibration_ids" in sp else 0
    doc.p(f"Granularity {attr(sp, 'granularity')}, layers {attr(sp, 'layers')}, μ from {ncal} calibration "
          "documents (never evaluated). Token NLL from the logits in float64 on identical tokens for every mode; "
          f"ratio = ppl / ppl(original), {attr(sp['ssp_bias'] if 'ssp_bias' in sp else sp, 'bootstrap', '')}.")
    rows, out = [], {}
    for m in ("original", "ssp_bias", "ssp_drop", "zero", "random"):
        if m not in sp:
            continue
        a = sp[m]
        ci = (f"[{fmt(attr(a, 'ppl_ratio_ci95_low'))}, {fmt(attr(a, 'ppl_ratio_ci95_high'))}]"
              if m != "original" else "–")
        rows.append([m, fmt(attr(a, "ppl")), fmt(attr(a, "ppl_ratio")) if m != "original" else "1", ci,
                     fmt(attr(a, "kl_mean")), fmt(attr(a, "n_tokens_scored"))])
        out[m] = (attr(a, "ppl"), attr(a, "ppl_ratio"), attr(a, "ppl_ratio_ci95_low"), attr(a, "ppl_ratio_ci95_high"))
    doc.table(["mode", "perplexity", "ratio", "95 % interval", "KL (nats/token)", "tokens"], rows)
    return out


WINDOW_LABELS = {"keep0": "no sink key", "keep1": "first token kept", "keep4": "first 4 tokens kept",
                 "ssp_bias": "no sink key + μ_W (ssp_bias)", "ssp_drop": "no sink key + μ_W, 1 − ᾱ_W (ssp_drop)"}


def window_table(g):
    """intervention.window_eval: (head, rows) of perplexity against W per variant, or None."""
    sp = g.get("ssp")
    if sp is None:
        return None
    by = {}
    for k in sp:
        a = sp[k]
        if k.startswith("window_w") and "window" in a.attrs:
            by.setdefault(k.split("_", 2)[2], {})[int(attr(a, "window"))] = a
    if not by:
        return None
    Ws = sorted({W for v in by.values() for W in v})
    order = [v for v in WINDOW_LABELS if v in by] + sorted(v for v in by if v not in WINDOW_LABELS)
    rows = [["full attention (original)"] + [fmt(attr(sp["original"], "ppl"), 4)] * len(Ws)]
    for v in order:
        cells = []
        for W in Ws:
            a = by[v].get(W)
            cells.append("–" if a is None else
                         f"{fmt(attr(a, 'ppl'), 4)} (×{fmt(attr(a, 'ppl_ratio'), 4)} [{fmt(attr(a, 'ppl_ratio_ci95_low'), 4)}, "
                         f"{fmt(attr(a, 'ppl_ratio_ci95_high'), 4)}]; KL {fmt(attr(a, 'kl_mean'), 3)})")
        rows.append([WINDOW_LABELS.get(v, v)] + cells)
    return ["variant"] + [f"W = {W}" for W in Ws], rows


def window_section(doc, g):
    t = window_table(g)
    if t is None:
        return
    doc.p("Every layer attends to the W most recent keys, positions kept (intervention.window_eval; "
          "docs/metrics.md): perplexity (ratio to full attention [95 % interval]; KL to full attention, nats/token).")
    doc.table(*t)


def anchor_section(doc, g):
    name = model_name(g)
    mine = [a for a in ANCHORS if re.search(a[0], name)]
    if mine:
        doc.p("This run's model has published numbers; beside them, this run's (other data, same definition "
              "where the row says so):")
    else:
        doc.p("No published number for this model; the anchors for the models that have one:")
    rows = []
    for pattern, what, published, key, source in (mine or ANCHORS):
        model = pattern.replace("-?", "-").replace("(meta-)?", "")
        rows.append([model, what, fmt(published), fmt(run_value(g, key)) if mine else "–", source])
    doc.table(["model", "quantity", "published", "this run", "source"], rows)
    doc.p(f"StreamingLLM ({STREAMING}): {STREAMING_NOTE}")


def run_report(doc, label, g):
    doc.h(2, label)
    info = [("model", attr(g, "model")), ("architecture", attr(g, "architecture")), ("family", attr(g, "family")),
            ("layers × heads", f"{attr(g, 'n_layers')} × {attr(g, 'n_heads')} (KV {attr(g, 'n_kv_heads')})"),
            ("d_model", attr(g, "d_model")), ("dtype", attr(g, "dtype")), ("documents", attr(g, "n_docs")),
            ("evaluation set", f"{attr(g, 'eval_jsonl')} (sha256 {str(attr(g, 'eval_sha256', ''))[:12]})"),
            ("sink policy", f"{attr(g, 'sink_policy')} (s = {attr(g, 'sink_position')})"),
            ("T_c", attr(g, "max_tokens_to_calc"))]
    doc.table(["", ""], [[k, fmt(v) if not isinstance(v, str) else v] for k, v in info])
    doc.h(3, "Sink rates")
    sink_rate_section(doc, g)
    doc.h(3, "The sink vectors against their control (SPEC §3)")
    geo = geometry_section(doc, g)
    doc.h(3, "Massive activations at the sink")
    massive_section(doc, g)
    doc.h(3, "Static Sink Patching")
    ssp = ssp_section(doc, g)
    if window_table(g) is not None:
        doc.h(3, "Windowed attention without the sink")
        window_section(doc, g)
    doc.h(3, "Published anchors")
    anchor_section(doc, g)
    return geo, ssp


def side_by_side(doc, summaries):
    doc.h(2, "Runs side by side")
    rows = []
    for label, g, geo, ssp in summaries:
        s = g.get("summary")

        def ratio(m):
            if not ssp or m not in ssp:
                return "–"
            _, r, lo, hi = ssp[m]
            return f"{fmt(r)} [{fmt(lo)}, {fmt(hi)}]"

        rows.append([label, attr(g, "model"), fmt(attr(g, "n_docs")), pct(attr(s, "sink_rate_gu")),
                     pct(attr(s, "sink_rate_t64_of_mean", attr(s, "sink_rate_t64"))), pct(attr(s, "sink_rate")),
                     f"{fmt(geo['cos_c'])} / {fmt(geo['cos_r'])}" if geo else "–",
                     f"{fmt(geo['pc1_c'])} / {fmt(geo['pc1_r'])}" if geo else "–",
                     fmt(ssp["original"][0]) if ssp and "original" in ssp else "–", ratio("ssp_bias"),
                     ratio("ssp_drop"), ratio("zero")])
    doc.table(["run", "model", "docs", "Gu rate", "t64 of mean", "α of mean", "median cos C / R",
               "median PC1 C / R", "ppl original", "ssp_bias ratio [95 %]", "ssp_drop ratio [95 %]",
               "zero ratio [95 %]"], rows)


def build(paths):
    doc = Doc()
    doc.h(1, "Attention sinks: the report")
    doc.p("Generated by `python tools/report.py " + " ".join(os.path.basename(p) for p in paths) +
          "` from the results file(s) alone.")
    files = [h5py.File(p, "r") for p in paths]
    try:
        summaries = []
        for path, f in zip(paths, files):
            if attr(f, "complete") != 1:
                raise ValueError(f"{path}: not a complete results.h5 (root attribute complete != 1)")
            doc.p(f"`{os.path.basename(path)}`: sink {attr(f, 'version')} at {attr(f, 'git_commit')}, {attr(f, 'n_ranks')} rank(s), "
                  f"config {attr(f, 'config_path')}, {attr(f, 'start_time')} – {attr(f, 'end_time')}.")
            for name in str(attr(f, "runs", "")).split(","):
                if name not in f:
                    raise ValueError(f"{path}: run '{name}' listed in 'runs' is missing")
                label = name if len(paths) == 1 else \
                    f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}/{name}"
                geo, ssp = run_report(doc, label, f[name])
                summaries.append((label, f[name], geo, ssp))
        if len(summaries) > 1:
            side_by_side(doc, summaries)
    finally:
        for f in files:
            f.close()
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results.h5 files (each may hold several runs)")
    ap.add_argument("--out", help="folder for report.md and report.html (default: the first file's folder)")
    a = ap.parse_args(argv)
    for p in a.results:
        if not os.path.isfile(p):
            print(f"{p}: no such file", file=sys.stderr)
            return 2
    try:
        doc = build(a.results)
    except (OSError, ValueError, KeyError) as e:
        print(f"{a.results[0]}: cannot report: {e}", file=sys.stderr)
        return 2
    out = a.out or os.path.dirname(os.path.abspath(a.results[0]))
    os.makedirs(out, exist_ok=True)
    md = doc.markdown()
    for name, text in (("report.md", md), ("report.html", doc.html("sink report"))):
        tmp = os.path.join(out, name + ".writing")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(out, name))
    print(os.path.join(out, "report.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
