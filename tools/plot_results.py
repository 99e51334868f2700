#!/usr/bin/env python3
"""Plots of a sink-run results.h5: PNG files and an index.html that shows them.

    python tools/plot_results.py RESULTS.h5 [--out DIR] [--run NAME ...] [--format png|pdf|svg] [--dpi N]

One subfolder of DIR per run (the run's group name); DIR defaults to
`plots/` beside RESULTS.h5. Every plot is made only when its datasets are in
the file (a run without `ssp/`, without `basic/attention_map`, without
`values/` or `summary/geometry/` just has fewer plots; index.html says which
were skipped and why). Every mean over documents and positions ignores NaN
(the padding past a document's length).

Plots per run (file names are fixed, see PLOTS below; .png, or the --format given):
  sink_score.png               sink score and Gu et al.'s t64 score, layer x head, and the spread over documents
  sink_score_wireframe.png     the same as 3-D wireframes
  entropy.png                  attention entropy (and normalised entropy), layer x head
  token_sink_score.png         token sink score of the first S keys per layer, labelled with their tokens
  learned_sink_mass.png        GPT-OSS: mass on the learned sink, layer x head
  secondary_sinks.png          keys other than the sink among the top keys by attention mass, with their tokens
  attention_map_layerNN.png    mean attention map of the first S tokens, one per shown layer
  doc_attention_map_K_layerNN.png   one document's map (docs_to_show), labelled with its tokens
  geometry.png                 sink vectors C vs control R per layer
  mean_direction_pca.png       the layers' mean sink directions in their top-2 PCs, and their cosines
  norms.png                    ||hidden||, ||attn out||, ||mlp out|| at the sink vs other positions
  massive_activations.png      largest hidden-state entries at the sink per layer
  values.png                   sink share, ||v_sink||/||v_other||, ||k_sink||/||k_other||
  ssp_ppl.png, ssp_resid.png, ssp_kl.png   Static Sink Patching (intervention runs)
  ssp_window.png               perplexity against the window W per variant (intervention.window_eval)

Exit status: 0 when every plot whose data is present was made, 1 when a plot
failed (the others are still made), 2 for a bad command line or file.
"""
import argparse
import html
import os
import sys
import traceback
import warnings

import matplotlib

matplotlib.use("Agg")
import h5py  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors, patches, ticker  # noqa: E402
from mpl_toolkits.mplot3d import Axes3D  # noqa: E402,F401  (registers the 3-D projection)

DPI = 150
FORMAT = "png"  # --format: png | pdf | svg
FEW_DOCS = 10   # an interval or spread over fewer documents is flagged
SSP_MODES = ["ssp_bias", "ssp_drop", "zero", "random"]
MODE_COLORS = {"original": "black", "ssp_bias": "tab:blue", "ssp_drop": "tab:green", "zero": "tab:red",
               "random": "tab:purple"}
MAX_HEADS_SHOWN = 8


class Missing(Exception):
    """The datasets a plot needs are not in the file (not an error)."""


# ---------------------------------------------------------------- helpers

def nanmean(a, axis=None):
    """Mean that ignores NaN; an all-NaN slice gives NaN without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(np.asarray(a, dtype=np.float64), axis=axis)


def nanmedian(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmedian(np.asarray(a, dtype=np.float64), axis=axis)


def need(g, *paths):
    """The datasets at paths, as float64 arrays, or Missing naming what is absent."""
    absent = [p for p in paths if not isinstance(g.get(p), h5py.Dataset)]
    if absent:
        parents = {p.rsplit("/", 1)[0] for p in absent if "/" in p}
        if len(parents) == 1 and len(absent) > 1 and parents.pop() not in g:
            absent = [absent[0].rsplit("/", 1)[0] + "/"]
        raise Missing("no " + ", ".join(absent))
    out = [g[p][()] for p in paths]
    out = [a.astype(np.float64) if np.issubdtype(a.dtype, np.number) else a for a in out]
    return out[0] if len(out) == 1 else out


def attr(obj, name, default=None):
    if obj is None or name not in obj.attrs:
        return default
    v = obj.attrs[name]
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def out_name(name):
    """A plot's file name in the chosen --format (the code names them .png)."""
    return name[:-4] + "." + FORMAT if name.endswith(".png") else name


def save(fig, path):
    fig.savefig(out_name(path), dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def doc_tokens(g):
    """docs/tokens [N, P] as str, or None."""
    if not isinstance(g.get("docs/tokens"), h5py.Dataset):
        return None
    return g["docs/tokens"].asstr()[()]


def position_labels(g, n, docs=None):
    """Tick labels for positions 0..n-1: "j token" where every document (of docs) has the same token there,
    else the position alone."""
    toks = doc_tokens(g)
    labels = [str(j) for j in range(n)]
    if toks is None:
        return labels
    rows = toks if docs is None else toks[docs]
    for j in range(min(n, rows.shape[1])):
        col = set(rows[:, j].tolist())
        if len(col) == 1 and (t := col.pop()) != "":
            labels[j] = f"{j} {t!r}"[: 24]
    return labels


def few_docs_note(n):
    return (f" Warning: this rests on {n} documents (fewer than {FEW_DOCS}); read it as rough."
            if isinstance(n, (int, np.integer)) and n < FEW_DOCS else "")


def mean_over_docs(g, path):
    return nanmean(need(g, path), axis=0)


def sink_scores(g):
    """(α[L,H], t64[L,H] or None, documents): the means over documents of the per-document scores, or the
    summary tables sink-run wrote when the per-document rows are absent."""
    out = []
    for name in ("sink_score", "sink_score_t64"):
        if f"basic/{name}" in g:
            out.append(mean_over_docs(g, f"basic/{name}"))
        elif f"summary/{name}_mean" in g:
            out.append(need(g, f"summary/{name}_mean"))
        else:
            out.append(None)
    if out[0] is None:
        raise Missing("no basic/sink_score")
    n = g["basic/sink_score"].shape[0] if "basic/sink_score" in g else attr(g, "n_docs", "?")
    return out[0], out[1], n


def heatmap(ax, m, title, cmap="viridis", norm=None, annotate=True, cbar_label=None, fmt_cell="{:.2f}"):
    """m[L,H] as an image: layers down, heads across."""
    L, H = m.shape
    im = ax.imshow(np.ma.masked_invalid(m), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(ticks(H))
    ax.set_yticks(ticks(L))
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if isinstance(norm, colors.LogNorm):
        plain_log_ticks(cb.ax.yaxis)
    if cbar_label:
        cb.set_label(cbar_label)
    if annotate and L * H <= 150:
        for l in range(L):
            for h in range(H):
                if np.isfinite(m[l, h]):
                    rgba = im.cmap(im.norm(m[l, h]))
                    lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
                    ax.text(h, l, fmt_cell.format(m[l, h]), ha="center", va="center", fontsize=7,
                            color="black" if lum > 0.5 else "white")
    return im


def set_log(ax, which="y"):
    """Log scale with plain numbers (20, 30, 0.5) instead of 2×10¹ on the ticks."""
    getattr(ax, f"set_{which}scale")("log")
    plain_log_ticks(getattr(ax, f"{which}axis"))


class PlainLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, written as 0.9 or 20 rather than 9e-01 or 2×10¹."""

    def _num_to_string(self, x, vmin, vmax):
        if 1 <= x < 1e5 and abs(x - round(x)) < 1e-9 * x:
            return f"{x:.0f}"
        return f"{x:.3g}"


def plain_log_ticks(axis):
    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def outline_cells(ax, mask, color="red", lw=1.5):
    """Outline each cell where mask[row, col] is true with its own box, a little inset (cell centres at
    integers). Boxes per cell, not the region's boundary: a boundary around most of the grid would draw boxes
    around the cells *outside* it (the heads below ε), which is what the eye reads."""
    inset = 0.08
    for r, c in zip(*np.nonzero(mask)):
        ax.add_patch(patches.Rectangle((c - 0.5 + inset, r - 0.5 + inset), 1 - 2 * inset, 1 - 2 * inset, fill=False,
                                       edgecolor=color, linewidth=lw, gid=f"above-eps:{r},{c}"))


def ticks(n, most=16):
    step = max(1, int(np.ceil(n / most)))
    return list(range(0, n, step))


def ratio_norm(r):
    """A log colour scale centred on 1 (equal norms), symmetric in log."""
    finite = r[np.isfinite(r) & (r > 0)]
    m = float(np.max(np.abs(np.log(finite)))) if finite.size else 1.0
    m = max(m, np.log(1.05))
    return colors.LogNorm(vmin=np.exp(-m), vmax=np.exp(m))


# ---------------------------------------------------------------- plots
# Each returns a list of (file name, caption) and raises Missing when its data is absent.

def plot_sink_score(g, out, run):
    fig, cap = sink_score_figure(g, run)
    save(fig, os.path.join(out, "sink_score.png"))
    return [("sink_score.png", cap)]


def sink_score_figure(g, run):
    """The sink-score figure and its caption (tests inspect the outlines on the figure itself)."""
    s, t, n_docs = sink_scores(g)
    summ = g.get("summary")
    eps = attr(summ, "epsilon", attr(g, "epsilon", 0.3))
    rate = attr(summ, "sink_rate", float(np.mean(s > eps)))
    rate_t = attr(summ, "sink_rate_t64_of_mean", float(np.mean(t > eps)) if t is not None else None)
    panels = [(s, f"sink score α (mean over s<i<T_c)\nsink rate {rate:.1%} (ε = {eps:g})")]
    if t is not None:
        panels.append((t, f"Gu et al. score (first 64 tokens)\nrate of the mean {rate_t:.1%}, Gu protocol {attr(summ, 'sink_rate_gu', float('nan')):.1%}"))
    vmax = max(eps, max(float(np.nanmax(p)) if np.isfinite(p).any() else 0.0 for p, _ in panels))
    spread = None  # the spread over documents beside the means
    if isinstance(g.get("basic/sink_score"), h5py.Dataset) and g["basic/sink_score"].shape[0] > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            spread = np.nanstd(need(g, "basic/sink_score"), axis=0)
    ncol = len(panels) + (spread is not None)
    fig, axes = plt.subplots(1, ncol, figsize=(5.6 * ncol, 0.32 * s.shape[0] + 2.8), squeeze=False,
                             layout="constrained")
    for ax, (m, title) in zip(axes[0], panels):
        heatmap(ax, m, title, norm=colors.Normalize(0, vmax), cbar_label="attention to the sink")
        outline_cells(ax, np.nan_to_num(m) > eps, lw=1.5 if m.size <= 256 else 0.9)
    if spread is not None:
        top_sd = float(np.nanmax(spread)) if np.isfinite(spread).any() else 0.0
        heatmap(axes[0, -1], spread, f"spread of α over the {n_docs} documents\n(standard deviation)",
                cmap="cividis", norm=colors.Normalize(0, max(top_sd, 1e-6)), cbar_label="std of α", fmt_cell="{:.2g}")
    fig.suptitle(f"{run}: sink score per layer and head, mean over {n_docs} documents")
    top = np.unravel_index(np.nanargmax(s), s.shape) if np.isfinite(s).any() else None
    cap = "Attention mass on the sink per layer × head, mean over documents: the sink score α"
    cap += (", and Gu et al.'s score over the first 64 tokens (sink row included) on the right." if t is not None
            else " (no t64 score in this run).")
    cap += (f" Each head above ε = {eps:g} has its own red box; sink rate "
            f"{rate:.1%} (α)" + (f" and {rate_t:.1%} (t64)" if rate_t is not None else "") +
            ". Colour scale 0 … max(ε, largest score).")
    if top is not None:
        cap += f" Largest α = {s[top]:.3f} at layer {top[0]}, head {top[1]}."
    if spread is not None:
        cap += " Right: the standard deviation of α over the documents (how much the mean hides)."
    cap += few_docs_note(n_docs)
    return fig, cap


def plot_wireframe(g, out, run):
    s, t, _ = sink_scores(g)
    L, H = s.shape
    panels = [(s, "sink score α")] + ([(t, "Gu et al. t64 score")] if t is not None else [])
    fig = plt.figure(figsize=(6 * len(panels), 5), layout="constrained")
    hh, ll = np.meshgrid(np.arange(H), np.arange(L))
    zmax = max(float(np.nanmax(p)) if np.isfinite(p).any() else 1.0 for p, _ in panels)
    for k, (m, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="3d")
        ax.plot_wireframe(ll, hh, np.nan_to_num(m), color="tab:blue", linewidth=0.8,
                          rstride=1, cstride=1)
        ax.set_xlabel("layer")
        ax.set_ylabel("head")
        ax.set_zlabel("score")
        ax.set_zlim(0, zmax * 1.05 if zmax > 0 else 1)
        ax.set_xlim(0, max(L - 1, 1))
        ax.set_ylim(0, max(H - 1, 1))
        ax.set_title(title)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=min(L, 12), integer=True))
        ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=min(H, 12), integer=True))
        ax.view_init(elev=28, azim=-60)
    fig.suptitle(f"{run}: sink score over layer and head (mean over documents)")
    save(fig, os.path.join(out, "sink_score_wireframe.png"))
    return [("sink_score_wireframe.png",
             "The layer × head sink scores of the heatmap as 3-D wireframes (z = mean attention to the sink); "
             "ridges along the layer axis show layers where many heads sink.")]


def plot_attention_maps(g, out, run):
    maps = need(g, "basic/attention_map")  # [len(layers_to_show), H, S, S]
    layers = attr(g, "layers_to_show")
    layers = list(np.atleast_1d(layers)) if layers is not None else list(range(maps.shape[0]))
    if maps.shape[0] == 0:
        raise Missing("basic/attention_map is empty (layers_to_show = [])")
    n_show, H, S, _ = maps.shape
    s_pos = int(attr(g, "sink_position", 0))
    try:
        score = sink_scores(g)[0]
    except Missing:
        score = None
    res = []
    labels = position_labels(g, S)  # a token where all documents share it (the BOS, a fixed prefix)
    for li in range(n_show):
        l = int(layers[li]) if li < len(layers) else li
        if H <= MAX_HEADS_SHOWN:
            heads = list(range(H))
            which = "all heads"
        elif score is not None and l < score.shape[0]:
            heads = sorted(np.argsort(-np.nan_to_num(score[l], nan=-1))[:MAX_HEADS_SHOWN].tolist())
            which = f"the {MAX_HEADS_SHOWN} heads with the largest sink score"
        else:
            heads = list(range(MAX_HEADS_SHOWN))
            which = f"heads 0–{MAX_HEADS_SHOWN - 1}"
        ncol = min(4, len(heads))
        nrow = int(np.ceil(len(heads) / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol + 1.2, 2.9 * nrow + 0.6), squeeze=False,
                                 layout="constrained")
        causal = np.tril(np.ones((S, S), bool))
        norm = colors.LogNorm(vmin=1e-3, vmax=1.0)
        im = None
        for k, ax in enumerate(axes.flat):
            if k >= len(heads):
                ax.axis("off")
                continue
            h = heads[k]
            m = np.where(causal, np.clip(maps[li, h], 1e-3, 1.0), np.nan)
            im = ax.imshow(np.ma.masked_invalid(m), cmap="magma", norm=norm, interpolation="nearest")
            t = f"head {h}"
            if score is not None and l < score.shape[0]:
                t += f"  (α = {score[l, h]:.2f})"
            ax.set_title(t, fontsize=9)
            label_positions(ax, labels)
            ax.set_xlabel("key position j", fontsize=8)
            ax.set_ylabel("query position i", fontsize=8)
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="attention (log)")
        fig.suptitle(f"{run}: mean attention map, layer {l}, first {S} tokens")
        name = f"attention_map_layer{l:02d}.png"
        save(fig, os.path.join(out, name))
        res.append((name, f"Layer {l}: attention of query i to key j over the first {S} tokens, mean over "
                          f"documents, {which}; log colour scale clipped at 10⁻³, blank above the diagonal "
                          f"(causal). A bright column {s_pos} is the sink. Positions where every document has "
                          f"the same token are labelled with it; per-document maps with their own tokens follow.",
                    f"layer {l}"))
    return res


def label_positions(ax, labels, most=16):
    """Ticks at positions, labelled with their tokens (every position when there are few)."""
    n = len(labels)
    pos = list(range(n)) if n <= most else ticks(n, 8)
    ax.set_xticks(pos, [labels[p] for p in pos], rotation=90, fontsize=6 if n > 8 else 7)
    ax.set_yticks(pos, [labels[p] for p in pos], fontsize=6 if n > 8 else 7)


def pick_heads(score, l, H):
    if H <= MAX_HEADS_SHOWN:
        return list(range(H)), "all heads"
    if score is not None and l < score.shape[0]:
        return (sorted(np.argsort(-np.nan_to_num(score[l], nan=-1))[:MAX_HEADS_SHOWN].tolist()),
                f"the {MAX_HEADS_SHOWN} heads with the largest mean sink score")
    return list(range(MAX_HEADS_SHOWN)), f"heads 0–{MAX_HEADS_SHOWN - 1}"


def plot_doc_attention_maps(g, out, run):
    """One document's own attention maps (docs_to_show), labelled with its tokens: no mean hides anything."""
    maps = need(g, "basic/doc_attention_map")  # [M, V, H, S, S]
    idx = g["basic/shown_doc_index"][()] if "basic/shown_doc_index" in g else np.arange(maps.shape[0])
    ids = g["docs/id"].asstr()[()] if "docs/id" in g else [str(i) for i in range(max(idx) + 1)]
    layers = attr(g, "layers_to_show")
    layers = list(np.atleast_1d(layers)) if layers is not None else list(range(maps.shape[1]))
    M, V, H, S, _ = maps.shape
    if M == 0 or V == 0:
        raise Missing("basic/doc_attention_map is empty")
    try:
        score = sink_scores(g)[0]
    except Missing:
        score = None
    causal = np.tril(np.ones((S, S), bool))
    norm = colors.LogNorm(vmin=1e-3, vmax=1.0)
    res = []
    for k in range(M):
        n = int(idx[k])
        labels = position_labels(g, S, docs=[n])
        for li in range(V):
            l = int(layers[li]) if li < len(layers) else li
            heads, which = pick_heads(score, l, H)
            ncol = min(4, len(heads))
            nrow = int(np.ceil(len(heads) / ncol))
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol + 1.2, 3.3 * nrow + 0.6), squeeze=False,
                                     layout="constrained")
            im = None
            for a, ax in enumerate(axes.flat):
                if a >= len(heads):
                    ax.axis("off")
                    continue
                h = heads[a]
                im = ax.imshow(np.ma.masked_invalid(np.where(causal, np.clip(maps[k, li, h], 1e-3, 1.0), np.nan)),
                               cmap="magma", norm=norm, interpolation="nearest")
                ax.set_title(f"head {h}", fontsize=9)
                label_positions(ax, labels)
            fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="attention (log)")
            fig.suptitle(f"{run}: document {ids[n]}, layer {l}, first {S} tokens")
            name = f"doc_attention_map_{k}_layer{l:02d}.png"
            save(fig, os.path.join(out, name))
            res.append((name, f"Document {ids[n]} alone (docs_to_show), layer {l}, {which}: attention of query i "
                              f"to key j, labelled with this document's tokens; log scale clipped at 10⁻³.",
                        f"document {ids[n]}, layer {l}"))
    return res


def plot_entropy(g, out, run):
    ent = mean_over_docs(g, "basic/entropy")
    panels = [(ent, "attention entropy (nats)\nmean over 0<i<T_c", "nats")]
    if "basic/entropy_norm" in g:
        panels.append((mean_over_docs(g, "basic/entropy_norm"), "normalised entropy H_i / log(i+1)", "fraction"))
    L = ent.shape[0]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 0.32 * L + 2.8), squeeze=False,
                             layout="constrained")
    for ax, (m, title, lab) in zip(axes[0], panels):
        hi = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
        heatmap(ax, m, title, cmap="plasma", norm=colors.Normalize(0, max(hi, 1e-6)), cbar_label=lab)
    n = g["basic/entropy"].shape[0]
    fig.suptitle(f"{run}: attention entropy per layer and head, mean over {n} documents")
    save(fig, os.path.join(out, "entropy.png"))
    low = np.unravel_index(np.nanargmin(ent), ent.shape) if np.isfinite(ent).any() else None
    cap = ("Entropy of each head's attention rows, mean over rows 0 < i < T_c and documents (left), and divided by "
           "log(i + 1), its largest possible value, so 1 = uniform over the visible keys (right). Sink heads "
           "concentrate their rows: low entropy.")
    if low is not None:
        cap += f" Lowest: {ent[low]:.3f} nats at layer {low[0]}, head {low[1]}."
    return [("entropy.png", cap + few_docs_note(n))]


def plot_token_sink_score(g, out, run):
    tss = need(g, "basic/token_sink_score")  # [N, L, H, S]
    N, L, H, S = tss.shape
    m = nanmean(tss, axis=(0, 2))  # [L, S]: mean over documents and heads
    mx = nanmean(np.nanmax(np.where(np.isnan(tss), -np.inf, tss), axis=2), axis=0)  # strongest head, doc mean
    mx = np.where(np.isfinite(mx), mx, np.nan)
    labels = position_labels(g, S)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.45 * S + 4) * 2 / 1.4, 0.32 * L + 3.4), squeeze=False,
                             layout="constrained")
    for ax, (a, title) in zip(axes[0], ((m, "mean over heads"), (mx, "the strongest head"))):
        hi = float(np.nanmax(a)) if np.isfinite(a).any() else 1.0
        im = ax.imshow(np.ma.masked_invalid(a), aspect="auto", cmap="viridis", norm=colors.Normalize(0, max(hi, 1e-6)),
                       interpolation="nearest")
        ax.set_title(f"token sink score, {title}", fontsize=10)
        ax.set_ylabel("layer")
        ax.set_yticks(ticks(L))
        ax.set_xticks(range(S) if S <= 40 else ticks(S, 20),
                      [labels[j] for j in (range(S) if S <= 40 else ticks(S, 20))], rotation=90, fontsize=7)
        ax.set_xlabel("key position j (token where all documents share it)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mean attention to key j")
    fig.suptitle(f"{run}: attention each of the first {S} keys receives, mean over {N} documents")
    save(fig, os.path.join(out, "token_sink_score.png"))
    per_key = nanmean(m, axis=0)
    order = [int(j) for j in np.argsort(-np.nan_to_num(per_key, nan=-1))[:3]]
    cap = (f"For each of the first {S} keys j, the mean over queries j ≤ i < T_c of A[i,j] (the token sink score), "
           f"per layer: averaged over heads (left) and for the head where it is largest (right), then over documents."
           f" Keys receiving most over all layers: " + ", ".join(f"{labels[j]} ({per_key[j]:.3f})" for j in order) +
           ". For keys past the first S, see secondary_sinks.")
    return [("token_sink_score.png", cap + few_docs_note(N))]


def plot_learned_sink_mass(g, out, run):
    m = mean_over_docs(g, "basic/learned_sink_mass")
    fig, ax = plt.subplots(figsize=(6.2, 0.32 * m.shape[0] + 2.8), layout="constrained")
    hi = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
    heatmap(ax, m, "mass on the learned sink\n(mean over s<i<T_c)", norm=colors.Normalize(0, max(hi, 1e-6)),
            cbar_label="attention mass")
    n = g["basic/learned_sink_mass"].shape[0]
    fig.suptitle(f"{run}: learned attention sinks (GPT-OSS), mean over {n} documents")
    save(fig, os.path.join(out, "learned_sink_mass.png"))
    return [("learned_sink_mass.png", f"GPT-OSS's learned sink logit per head takes this share of each row's "
                                      f"attention (mean over rows and documents); mean {nanmean(m):.3f}, largest "
                                      f"{hi:.3f}." + few_docs_note(n))]


def plot_secondary_sinks(g, out, run, min_mass=0.05):
    pos, mass = need(g, "basic/top_key_position", "basic/top_key_mass")  # [N, L, H, k]
    N, L, H, k = pos.shape
    s = int(attr(g, "sink_position", 0))
    ok = np.isfinite(mass) & (pos >= 0) & (pos != s)
    # the strongest key other than the sink, per document, layer and head
    other = np.where(ok, mass, -np.inf).max(axis=3)
    other = np.where(np.isfinite(other), other, np.nan)
    strong = nanmean(other, axis=0)  # [L, H]
    toks = doc_tokens(g)
    counts = {}
    for n, l, h, r in zip(*np.nonzero(ok & (mass >= min_mass))):
        j = int(pos[n, l, h, r])
        t = toks[n, j] if toks is not None and j < toks.shape[1] else f"#{j}"
        e = counts.setdefault(t, [0.0, 0, set()])
        e[0] += float(mass[n, l, h, r])
        e[1] += 1
        e[2].add(int(l))
    top = sorted(counts.items(), key=lambda kv: -kv[1][0])[:15]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 0.32 * L + 3.2), layout="constrained")
    hi = float(np.nanmax(strong)) if np.isfinite(strong).any() else 1.0
    heatmap(a1, strong, "mass on the strongest key other than the sink\n(mean over documents)",
            norm=colors.Normalize(0, max(hi, 1e-6)), cbar_label="attention mass m[j]")
    if top:
        names = [repr(t)[:20] for t, _ in top][::-1]
        vals = [v[0] / N for _, v in top][::-1]
        a2.barh(names, vals, color="tab:orange")
        for y, (_, v) in enumerate(top[::-1]):
            a2.annotate(f"{v[1]}× in layers {min(v[2])}–{max(v[2])}", (vals[y], y), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)
        a2.set_xlabel("summed mass over layers and heads, per document")
    else:
        a2.text(0.5, 0.5, f"no key other than the sink reaches m ≥ {min_mass}", ha="center", va="center")
        a2.axis("off")
    a2.set_title(f"tokens that act as secondary sinks (m ≥ {min_mass} in a head's top {k})", fontsize=10)
    fig.suptitle(f"{run}: secondary sinks over all keys j < T_c ({N} documents)")
    save(fig, os.path.join(out, "secondary_sinks.png"))
    cap = (f"Attention mass m[j] = mean over s < i < T_c of A[i,j], over every key j < T_c (basic/top_key_*). Left: "
           f"per layer × head, the mass of the strongest key other than the sink s = {s}. Right: the tokens at the "
           f"keys (other than s) with m ≥ {min_mass} among each head's top {k}, by their summed mass.")
    if top:
        cap += " Strongest: " + ", ".join(f"{t!r} ({v[0] / N:.3f})" for t, v in top[:3]) + "."
    return [("secondary_sinks.png", cap + few_docs_note(N))]


def plot_geometry(g, out, run):
    cos, pc1, var, mnorm = need(g, "summary/geometry/mean_cos_to_mean", "summary/geometry/pc1_share",
                                "summary/geometry/var_over_mean_sq", "summary/geometry/mean_norm")
    ratio = need(g, "summary/geometry/norm_ratio") if "summary/geometry/norm_ratio" in g else None
    L = cos.shape[0]
    x = np.arange(L)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), layout="constrained")
    spec = [(cos, "mean cosine to the mean direction", False), (pc1, "first-PC share of variance", False),
            (var, "trace(cov) / ‖mean‖²", True), (mnorm, "‖mean vector‖", True)]
    for ax, (m, title, logy) in zip(axes.flat, spec):
        ax.plot(x, m[:, 0], "o-", color="tab:red", label="sink vectors C")
        ax.plot(x, m[:, 1], "s--", color="tab:gray", label="control R (rest of attn out)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
        if logy and np.nanmin(m) > 0:
            set_log(ax)
        ax.set_xticks(ticks(L))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylim(min(0, np.nanmin(cos) - 0.05) if np.isfinite(cos).any() else 0, 1.02)
    axes[0, 1].set_ylim(0, 1.02)
    axes[0, 0].legend(fontsize=8)
    ax = axes[1, 1]
    if ratio is not None:
        ax.plot(x, ratio, "o-", color="tab:orange")
        ax.axhline(1, color="gray", lw=0.8, ls=":")
        ax.set_title("norm ratio ‖C‖ / ‖rest of attn out‖", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_xticks(ticks(L))
        ax.grid(alpha=0.3)
        if np.nanmin(ratio) > 0:
            set_log(ax)
    else:
        ax.axis("off")
    axes[1, 2].axis("off")
    geo = g.get("summary/geometry")
    note = attr(geo, "pca", "")
    if "summary/geometry/count" in g:
        cnt = need(g, "summary/geometry/count")
        note += f"; vectors per layer: {int(np.nanmin(cnt))}–{int(np.nanmax(cnt))}"
    axes[1, 2].text(0, 0.5, "C[l,i] = what the sink writes\n(Σ over heads) at position i\n\n"
                            "R[l,i] = attention output − C[l,i]\n\nPC share: " + note, fontsize=9,
                    va="center", wrap=True)
    fig.suptitle(f"{run}: geometry of the sink output vectors per layer")
    save(fig, os.path.join(out, "geometry.png"))
    cap = ("Per layer, over all documents and positions: the sink's output vectors C (red) against the control R = "
           "the rest of the attention output (grey). A single direction shows as mean cosine and first-PC share "
           "near 1, low variance as a small trace(cov)/‖mean‖²; the norm ratio compares ‖C‖ with ‖R‖.")
    if np.isfinite(cos).all():
        cap += (f" Mean over layers: cosine {nanmean(cos[:, 0]):.2f} (C) vs {nanmean(cos[:, 1]):.2f} (R), "
                f"PC1 share {nanmean(pc1[:, 0]):.2f} vs {nanmean(pc1[:, 1]):.2f}.")
    return [("geometry.png", cap)]


def plot_mean_direction_pca(g, out, run):
    md = need(g, "summary/geometry/mean_direction")  # [L, 2, d]
    dirs = md[:, 0, :]
    ok = np.isfinite(dirs).all(axis=1) & (np.linalg.norm(np.nan_to_num(dirs), axis=1) > 0)
    layers = np.nonzero(ok)[0]
    if layers.size < 2:
        raise Missing("fewer than two layers with a mean sink direction")
    X = dirs[layers] / np.linalg.norm(dirs[layers], axis=1, keepdims=True)
    Xc = X - X.mean(axis=0, keepdims=True)
    U, sv, Vt = np.linalg.svd(Xc, full_matrices=False)
    k = min(2, Vt.shape[0])
    proj = Xc @ Vt[:k].T
    if k < 2:
        proj = np.hstack([proj, np.zeros((proj.shape[0], 1))])
    var = sv ** 2
    share = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    share = np.concatenate([share, np.zeros(2)])[:2]
    cosm = X @ X.T
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained")
    a1.plot(proj[:, 0], proj[:, 1], "-", color="lightgray", lw=0.8, zorder=1)  # layer order
    a1.scatter(proj[:, 0], proj[:, 1], c=layers, cmap="viridis", s=45, zorder=2)
    for (px, py), l in zip(proj, layers):
        a1.annotate(str(l), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    a1.set_xlabel(f"PC1 ({share[0]:.0%} of the across-layer variance)")
    a1.set_ylabel(f"PC2 ({share[1]:.0%})")
    a1.set_title("mean sink direction per layer, top-2 PCs", fontsize=10)
    a1.grid(alpha=0.3)
    heatmap(a2, cosm, "cosine between layers' mean sink directions", cmap="RdBu_r",
            norm=colors.Normalize(-1, 1), annotate=len(layers) <= 12)
    a2.set_xlabel("layer")
    pos = ticks(len(layers))
    a2.set_xticks(pos, [str(layers[p]) for p in pos])
    a2.set_yticks(pos, [str(layers[p]) for p in pos])
    fig.suptitle(f"{run}: where the layers' sinks point (d = {X.shape[1]})")
    save(fig, os.path.join(out, "mean_direction_pca.png"))
    off = cosm[~np.eye(len(layers), dtype=bool)]
    cap = (f"Left: each point is one layer's mean sink direction (unit mean of C[l,i], column 0 of "
           f"mean_direction), projected on the top two principal components of the {len(layers)} × {X.shape[1]} "
           f"stack of these directions (centred across layers); PC1 and PC2 hold {share[0]:.0%} and {share[1]:.0%} "
           f"of the variance between layers. With {len(layers)} points there are at most {len(layers) - 1} "
           f"non-trivial components, so this only shows how the layers' directions differ from each other — not the "
           f"spread of C within a layer (see geometry) nor anything about the residual basis. Right: their cosines; "
           f"off-diagonal mean {nanmean(off):.2f}, range {np.min(off):.2f} … {np.max(off):.2f}.")
    return [("mean_direction_pca.png", cap)]


def _sink_vs_other(a, s):
    """a[N, L, P] -> (mean at position s, mean over the other valid positions), each [L]."""
    at = nanmean(a[:, :, s], axis=0)
    rest = np.delete(a, s, axis=2)
    return at, nanmean(rest, axis=(0, 2))


def plot_norms(g, out, run):
    have = [p for p in ("norms/hidden", "norms/attn_out", "norms/mlp_out") if p in g]
    if not have:
        raise Missing("no norms/ datasets")
    s = int(attr(g, "sink_position", 0))
    titles = {"norms/hidden": "‖hidden state‖ (0 = embeddings)", "norms/attn_out": "‖attention block output‖",
              "norms/mlp_out": "‖MLP output‖"}
    fig, axes = plt.subplots(1, len(have), figsize=(5 * len(have), 4.2), squeeze=False, layout="constrained")
    facts = []
    for ax, p in zip(axes[0], have):
        a = need(g, p)
        if s >= a.shape[2]:
            raise Missing(f"sink position {s} outside {p}")
        at, rest = _sink_vs_other(a, s)
        x = np.arange(a.shape[1])
        ax.plot(x, at, "o-", color="tab:red", label=f"sink position {s}")
        ax.plot(x, rest, "s--", color="tab:gray", label="other positions")
        if np.nanmin(np.concatenate([at, rest])) > 0:
            set_log(ax)
        ax.set_title(titles[p], fontsize=10)
        ax.set_xlabel("layer")
        ax.set_xticks(ticks(a.shape[1]))
        ax.grid(alpha=0.3, which="both")
        r = at / rest
        if np.isfinite(r).any():
            i = int(np.nanargmax(r))
            facts.append(f"{p.split('/')[1]} at most {r[i]:.1f}× the others (layer {i})")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{run}: norms at the sink vs other positions (mean over documents and positions)")
    save(fig, os.path.join(out, "norms.png"))
    return [("norms.png", f"Per layer, the L2 norm at the sink position s = {s} (mean over documents, red) against "
                          f"the mean over all other positions < T_c (grey), log scale. " + "; ".join(facts) + ".")]


def plot_massive(g, out, run):
    idx, val = need(g, "norms/massive_index", "norms/massive_value")  # [N, L+1, K]
    N, L1, K = val.shape
    mag = nanmedian(np.abs(val), axis=0)  # [L+1, K]
    x = np.arange(L1)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * L1 + 3), 4.5), layout="constrained")
    for k in range(K):
        ax.plot(x, mag[:, k], "o-" if k == 0 else ".-", alpha=1 if k == 0 else 0.6, label=f"top-{k + 1}")
    # the dimension index of the top entry: the one most documents agree on
    for l in range(L1):
        col = idx[:, l, 0]
        col = col[np.isfinite(col)].astype(int)
        if col.size and np.isfinite(mag[l, 0]):
            vals, cnt = np.unique(col, return_counts=True)
            d = vals[np.argmax(cnt)]
            ax.annotate(f"d{d}", (l, mag[l, 0]), textcoords="offset points", xytext=(0, 6), fontsize=7,
                        ha="center")
    ref_txt = ""
    if "norms/hidden" in g and "d_model" in g.attrs:
        hid = need(g, "norms/hidden")
        s = int(attr(g, "sink_position", 0))
        rms = np.delete(hid, s, axis=2) / np.sqrt(float(attr(g, "d_model")))
        ref = nanmean(rms, axis=(0, 2))
        ax.plot(x, ref, ":", color="gray", label="RMS entry, other positions")
        ref_txt = " The dotted line is the typical entry of the other positions' hidden states (‖h‖/√d)."
    if np.nanmin(mag) > 0:
        set_log(ax)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("|value| (median over documents)")
    ax.set_xticks(ticks(L1))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{run}: largest hidden-state entries at the sink")
    save(fig, os.path.join(out, "massive_activations.png"))
    return [("massive_activations.png",
             f"Massive activations: the {K} largest-magnitude entries of the hidden state at the sink per layer "
             f"(median |value| over documents), labelled with the dimension of the largest." + ref_txt)]


def plot_values(g, out, run):
    panels = []
    if "values/sink_share" in g:
        panels.append(("sink share ‖c‖/‖u‖", mean_over_docs(g, "values/sink_share"), "share"))
    if "values/v_sink_norm" in g and "values/v_other_norm" in g:
        vs, vo = need(g, "values/v_sink_norm", "values/v_other_norm")
        panels.append(("‖v_sink‖ / mean ‖v_other‖", nanmean(vs / vo, axis=0), "ratio"))
    if "values/k_sink_norm" in g and "values/k_other_norm" in g:
        ks, ko = need(g, "values/k_sink_norm", "values/k_other_norm")
        panels.append(("‖k_sink‖ / mean ‖k_other‖", nanmean(ks / ko, axis=0), "ratio"))
    if not panels:
        raise Missing("no values/ datasets")
    L = panels[0][1].shape[0]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 0.32 * L + 2.8), squeeze=False,
                             layout="constrained")
    facts = []
    for ax, (title, m, kind) in zip(axes[0], panels):
        if kind == "share":
            vmax = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
            heatmap(ax, m, title, cmap="viridis", norm=colors.Normalize(0, max(vmax, 1e-6)))
            facts.append(f"sink share mean {nanmean(m):.2f}, max {np.nanmax(m):.2f}")
        else:
            heatmap(ax, m, title + "\n(log scale, centred on 1)", cmap="coolwarm", norm=ratio_norm(m))
            facts.append(f"{title.split(' ')[0]} ratio mean {nanmean(m):.2f}")
    fig.suptitle(f"{run}: the sink's value and key vectors (mean over documents)")
    save(fig, os.path.join(out, "values.png"))
    return [("values.png", "Per layer × head, mean over documents: the sink share ‖c‖/‖u‖ of what the head "
                           "writes (c = the sink's part of the value update u), and the sink's value and key norms "
                           "relative to the mean over the other tokens (red > 1 > blue). " + "; ".join(facts) + ".")]


def ssp_modes(g):
    ssp = g.get("ssp")
    if not isinstance(ssp, h5py.Group):
        raise Missing("no ssp/ group (not an intervention run)")
    modes = [m for m in SSP_MODES if isinstance(ssp.get(m), h5py.Group)]
    # window_eval's variants and μ_W have their own plot (plot_ssp_window)
    modes += sorted(k for k in ssp if isinstance(ssp[k], h5py.Group) and k not in modes and k != "original"
                    and not k.startswith("window_"))
    if not modes:
        raise Missing("no patched modes under ssp/")
    return ssp, modes


def plot_ssp_ppl(g, out, run):
    ssp, modes = ssp_modes(g)
    orig = attr(ssp.get("original"), "ppl")
    r = np.array([attr(ssp[m], "ppl_ratio", np.nan) for m in modes], float)
    lo = np.array([attr(ssp[m], "ppl_ratio_ci95_low", np.nan) for m in modes], float)
    hi = np.array([attr(ssp[m], "ppl_ratio_ci95_high", np.nan) for m in modes], float)
    ppl = [attr(ssp[m], "ppl") for m in modes]
    if orig is not None:
        r = np.where(np.isfinite(r), r, np.array([p / orig if p is not None else np.nan for p in ppl]))
    x = np.arange(len(modes))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    a1.bar(["original"] + modes, [orig if orig is not None else np.nan] + [p if p is not None else np.nan
                                                                         for p in ppl],
           color=[MODE_COLORS.get(m, "tab:olive") for m in ["original"] + modes])
    a1.set_ylabel("perplexity")
    a1.set_title("perplexity by mode", fontsize=10)
    for i, p in enumerate([orig] + ppl):
        if p is not None:
            a1.annotate(f"{p:.4g}", (i, p), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    err = np.vstack([np.where(np.isfinite(lo), r - lo, 0), np.where(np.isfinite(hi), hi - r, 0)])
    a2.errorbar(x, r, yerr=np.abs(err), fmt="o", capsize=6, color="black", ecolor="gray")
    for i, m in enumerate(modes):
        a2.scatter([i], [r[i]], color=MODE_COLORS.get(m, "tab:olive"), s=60, zorder=3)
        a2.annotate(f"{r[i]:.3f}", (i, r[i]), textcoords="offset points", xytext=(8, 0), fontsize=8)
    a2.axhline(1, color="gray", ls=":", lw=1)
    a2.set_xticks(x)
    a2.set_xticklabels(modes)
    a2.set_ylabel("ppl(mode) / ppl(original)")
    a2.set_title("perplexity ratio, 95% bootstrap CI", fontsize=10)
    a2.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{run}: Static Sink Patching — perplexity")
    boot = attr(ssp[modes[0]], "bootstrap", "bootstrap over documents")
    ci = [f"[{lo[i]:.3f}, {hi[i]:.3f}]" if np.isfinite(lo[i]) and np.isfinite(hi[i]) else "(no CI)"
          for i in range(len(modes))]
    parts = [f"{m} {r[i]:.3f} {ci[i]}" for i, m in enumerate(modes)]
    n_docs = ssp["original/nll"].shape[0] if "original/nll" in ssp else attr(g, "n_docs")
    warn = few_docs_note(n_docs)
    if warn:
        a2.set_title(f"perplexity ratio, 95% bootstrap CI\n(only {n_docs} documents: rough)", fontsize=10,
                     color="darkred")
    save(fig, os.path.join(out, "ssp_ppl.png"))
    return [("ssp_ppl.png", f"Perplexity of each mode on the same evaluation tokens (left) and its ratio to the "
                            f"unpatched original with the 95% CI ({boot}) (right). Ratios: " + "; ".join(parts) +
                            "." + warn)]


WINDOW_VARIANTS = [("keep0", "no sink key", "tab:red"), ("keep1", "first token kept", "tab:orange"),
                   ("keep4", "first 4 tokens kept", "tab:brown"), ("ssp_bias", "no sink key + μ_W", "tab:blue"),
                   ("ssp_drop", "no sink key + μ_W, 1 − ᾱ_W", "tab:green")]


def window_modes(ssp):
    """window_eval's variants: {variant: [(W, group), ...]} sorted by W."""
    out = {}
    for k in ssp:
        g = ssp[k]
        if k.startswith("window_w") and isinstance(g, h5py.Group) and "window" in g.attrs:
            out.setdefault(k.split("_", 2)[2], []).append((int(g.attrs["window"]), g))
    return {v: sorted(x, key=lambda t: t[0]) for v, x in out.items()}


def plot_ssp_window(g, out, run):
    ssp = g.get("ssp")
    if not isinstance(ssp, h5py.Group):
        raise Missing("no ssp/ group (not an intervention run)")
    wm = window_modes(ssp)
    if not wm:
        raise Missing("no window_eval variants under ssp/")
    orig = attr(ssp.get("original"), "ppl")
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    parts = []
    known = {v for v, _, _ in WINDOW_VARIANTS}
    for v, label, color in WINDOW_VARIANTS + [(v, v, "tab:olive") for v in wm if v not in known]:
        if v not in wm:
            continue
        Ws = np.array([w for w, _ in wm[v]], float)
        ppl = np.array([attr(x, "ppl", np.nan) for _, x in wm[v]], float)
        r = np.array([attr(x, "ppl_ratio", np.nan) for _, x in wm[v]], float)
        lo = np.array([attr(x, "ppl_ratio_ci95_low", np.nan) for _, x in wm[v]], float) * ppl / r
        hi = np.array([attr(x, "ppl_ratio_ci95_high", np.nan) for _, x in wm[v]], float) * ppl / r
        ax.errorbar(Ws, ppl, yerr=np.abs(np.vstack([ppl - lo, hi - ppl])), fmt="o-", capsize=4, color=color,
                    label=label)
        parts.append(f"{label}: " + ", ".join(f"W={int(w)} {p:.4g}" for w, p in zip(Ws, ppl)))
    if orig is not None:
        ax.axhline(orig, color="black", ls=":", lw=1, label=f"full attention ({orig:.4g})")
    ax.set_xscale("log", base=2)
    allW = sorted({w for x in wm.values() for w, _ in x})
    ax.set_xticks(allW)
    ax.set_xticklabels([str(w) for w in allW])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    set_log(ax, "y")
    ax.set_xlabel("window W (most recent keys)")
    ax.set_ylabel("perplexity")
    ax.set_title("perplexity against the window, per variant (95% bootstrap CI of the ratio)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{run}: windowed attention without the sink")
    save(fig, os.path.join(out, "ssp_window.png"))
    return [("ssp_window.png", "Every layer attends to the W most recent keys (positions kept): with no sink key, "
                               "with the first 1 or 4 tokens kept (StreamingLLM), or with no sink key and μ_W "
                               "(and the 1 − ᾱ_W rescale) fitted under the same window where it hides the sink. "
                               + "; ".join(parts) + ".")]


def plot_ssp_resid(g, out, run):
    ssp, modes = ssp_modes(g)
    have = [m for m in modes if "resid_rel_l2" in ssp[m]]
    if not have:
        raise Missing("no ssp/<mode>/resid_rel_l2")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    for m in have:
        d = ssp[m]["resid_rel_l2"][()].astype(float)
        a1.plot(np.arange(d.size), d, "o-", color=MODE_COLORS.get(m), label=m)
        if "resid_cos" in ssp[m]:
            c = ssp[m]["resid_cos"][()].astype(float)
            a2.plot(np.arange(c.size), c, "o-", color=MODE_COLORS.get(m), label=m)
    n = ssp[have[0]]["resid_rel_l2"].shape[0]
    for ax, t, yl in ((a1, "relative L2 distance ‖h′ − h‖ / ‖h‖", "rel. L2"),
                      (a2, "cosine(h′, h)", "cosine")):
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel(yl)
        ax.set_title(t, fontsize=10)
        ax.set_xticks(ticks(n))
        ax.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle(f"{run}: Static Sink Patching — residual stream against the original")
    save(fig, os.path.join(out, "ssp_resid.png"))
    last = {m: float(ssp[m]["resid_rel_l2"][-1]) for m in have}
    return [("ssp_resid.png", "Per layer, how far each patched run's hidden states move from the original's: "
                              "relative L2 distance (left) and cosine (right), over the evaluation documents. "
                              "At the last layer: " + ", ".join(f"{m} {v:.3f}" for m, v in last.items()) + ".")]


def plot_ssp_kl(g, out, run):
    ssp, modes = ssp_modes(g)
    have = [m for m in modes if "kl" in ssp[m]]
    if not have:
        raise Missing("no ssp/<mode>/kl")
    kl = [ssp[m]["kl"][()].astype(float) for m in have]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(have) + 2), 4.3), layout="constrained")
    rng = np.random.default_rng(0)
    for i, (m, k) in enumerate(zip(have, kl)):
        k = k[np.isfinite(k)]
        ax.scatter(i + rng.uniform(-0.12, 0.12, k.size), k, s=14, alpha=0.6, color=MODE_COLORS.get(m))
        ax.hlines(nanmean(k) if k.size else np.nan, i - 0.3, i + 0.3, color="black", lw=2)
        km = attr(ssp[m], "kl_mean")
        if km is not None:
            ax.annotate(f"{km:.3g}", (i + 0.3, km), fontsize=8, va="center")
    ax.set_xticks(range(len(have)))
    ax.set_xticklabels(have)
    ax.set_ylabel("KL(p_orig ‖ p_patched), nats / token")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"{run}: next-token KL to the original, per document")
    save(fig, os.path.join(out, "ssp_kl.png"))
    return [("ssp_kl.png", "Mean next-token KL(p_orig ‖ p_patched) per document (dots) and its mean (bar; the "
                           "number is the token-weighted kl_mean attribute where present), per mode.")]


PLOTS = [
    ("Sink score", plot_sink_score),
    ("Sink score wireframe", plot_wireframe),
    ("Attention entropy", plot_entropy),
    ("Token sink scores", plot_token_sink_score),
    ("Learned sinks (GPT-OSS)", plot_learned_sink_mass),
    ("Secondary sinks", plot_secondary_sinks),
    ("Attention maps", plot_attention_maps),
    ("Attention maps of single documents", plot_doc_attention_maps),
    ("Geometry of the sink vectors", plot_geometry),
    ("Mean sink directions", plot_mean_direction_pca),
    ("Norms by layer", plot_norms),
    ("Massive activations", plot_massive),
    ("Value and key metrics", plot_values),
    ("SSP perplexity", plot_ssp_ppl),
    ("Windowed attention without the sink", plot_ssp_window),
    ("SSP residual distance", plot_ssp_resid),
    ("SSP KL", plot_ssp_kl),
]


# ---------------------------------------------------------------- driver

def list_runs(f):
    names = attr(f, "runs")
    listed = [n for n in str(names).split(",") if n] if names else []
    groups = [k for k in f if isinstance(f[k], h5py.Group)]
    runs = [n for n in listed if n in groups] + [k for k in groups if k not in listed]
    return [r for r in runs if "basic" in f[r] or "n_layers" in f[r].attrs]


def plot_run(g, run, out):
    os.makedirs(out, exist_ok=True)
    made, skipped, failed = [], [], []
    for title, fn in PLOTS:
        try:
            # a plot may add a label for the table of contents (which layer, which document)
            made += [(title + (f" — {more[0]}" if more else ""), out_name(name), cap)
                     for name, cap, *more in fn(g, out, run)]
        except Missing as e:
            skipped.append((title, str(e)))
        except Exception as e:  # one broken plot must not cost the others
            plt.close("all")
            traceback.print_exc()
            failed.append((title, f"{type(e).__name__}: {e}"))
    return made, skipped, failed


def write_index(path, results_path, sections):
    esc = html.escape
    out = ["<!doctype html>", "<html><head><meta charset='utf-8'>",
           f"<title>sink plots: {esc(os.path.basename(results_path))}</title>",
           "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
           "figure{margin:1.5em 0;border-top:1px solid #ddd;padding-top:.8em}"
           "img{max-width:100%}figcaption{max-width:1000px;color:#333;font-size:.95em}"
           "table{border-collapse:collapse;font-size:.9em}td{padding:2px 10px;border-bottom:1px solid #eee}"
           ".skip{color:#777;font-size:.9em}.fail{color:#b00}</style></head><body>",
           f"<h1>sink plots</h1><p>From <code>{esc(os.path.abspath(results_path))}</code></p>"]
    # A table of contents: each run and its figures.
    out.append("<nav id='contents'><h2>Contents</h2><ol>")
    for run, info, made, skipped, failed in sections:
        out.append(f"<li><a href='#{esc(run)}'>{esc(run)}</a><ol>" +
                   "".join(f"<li><a href='#{esc(run)}-{k}'>{esc(title)}</a></li>"
                           for k, (title, name, cap) in enumerate(made)) + "</ol></li>")
    out.append("</ol></nav>")
    for run, info, made, skipped, failed in sections:
        out.append(f"<h2 id='{esc(run)}'>{esc(run)}</h2><table>")
        out += [f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in info]
        out.append("</table>")
        for k, (title, name, cap) in enumerate(made):
            src = f"{run}/{name}"
            if name.endswith(".pdf"):  # browsers show a PDF in an object, not an img
                body = f"<object data='{esc(src)}' type='application/pdf' width='100%' height='600'></object>"
            else:
                body = f"<a href='{esc(src)}'><img src='{esc(src)}' alt='{esc(title)}'></a>"
            out.append(f"<figure id='{esc(run)}-{k}'><h3>{esc(title)}</h3>{body}"
                       f"<figcaption>{esc(cap)}</figcaption></figure>")
        if skipped:
            out.append("<p class='skip'>Not in this run: " +
                       "; ".join(f"{esc(t)} ({esc(why)})" for t, why in skipped) + "</p>")
        if failed:
            out.append("<p class='fail'>Failed: " + "; ".join(f"{esc(t)} ({esc(why)})" for t, why in failed) +
                       "</p>")
    out.append("</body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")


def run_info(g):
    keys = ["complete", "model", "architecture", "dtype", "n_layers", "n_heads", "n_kv_heads", "d_model", "n_docs",
            "sink_policy", "sink_position", "layers_to_show", "max_tokens_to_calc", "max_tokens_to_show"]
    info = [(k, attr(g, k)) for k in keys if k in g.attrs]
    summ = g.get("summary")
    for k in ("epsilon", "sink_rate", "sink_rate_t64_of_mean", "sink_rate_gu"):
        if summ is not None and k in summ.attrs:
            info.append((k, fmt(attr(summ, k), 4)))
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="a results.h5 written by sink-run")
    ap.add_argument("--out", help="output folder (default: plots/ beside RESULTS.h5)")
    ap.add_argument("--run", action="append", help="plot only this run (group name); may be given more than once")
    ap.add_argument("--format", choices=["png", "pdf", "svg"], default="png",
                    help="file format of the plots (default png; pdf and svg are vector graphics for papers)")
    ap.add_argument("--dpi", type=int, default=DPI, help=f"resolution of raster output (default {DPI})")
    a = ap.parse_args(argv)
    globals().update(FORMAT=a.format, DPI=a.dpi)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.results)), "plots")
    try:
        f = h5py.File(a.results, "r")
    except OSError as e:
        print(f"{a.results}: cannot open: {e}", file=sys.stderr)
        return 2
    with f:
        runs = list_runs(f)
        if a.run:
            bad = [r for r in a.run if not isinstance(f.get(r), h5py.Group)]
            if bad:
                print(f"{a.results}: no run {', '.join(bad)} (runs: {', '.join(runs) or 'none'})", file=sys.stderr)
                return 2
            runs = a.run
        if not runs:
            print(f"{a.results}: no runs in this file", file=sys.stderr)
            return 2
        os.makedirs(out, exist_ok=True)
        sections, n_failed = [], 0
        for run in runs:
            made, skipped, failed = plot_run(f[run], run, os.path.join(out, run))
            n_failed += len(failed)
            sections.append((run, run_info(f[run]), made, skipped, failed))
            print(f"{run}: {len(made)} plots" + (f", skipped {len(skipped)}" if skipped else "") +
                  (f", FAILED {len(failed)}" if failed else ""), file=sys.stderr)
        index = os.path.join(out, "index.html")
        write_index(index, a.results, sections)
    print(index)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
