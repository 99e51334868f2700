#!/usr/bin/env python3
"""Plots of a sink-run results.h5: PNG files and an index.html that shows them.

    python tools/plot_results.py RESULTS.h5 [--out DIR] [--run NAME ...]

One subfolder of DIR per run (the run's group name); DIR defaults to
`plots/` beside RESULTS.h5. Every plot is made only when its datasets are in
the file (a run without `ssp/`, without `basic/attention_map`, without
`values/` or `summary/geometry/` just has fewer plots; index.html says which
were skipped and why). Every mean over documents and positions ignores NaN
(the padding past a document's length).

Plots per run (file names are fixed, see PLOTS below):
  sink_score.png               sink score and Gu et al.'s t64 score, layer x head
  sink_score_wireframe.png     the same as 3-D wireframes
  attention_map_layerNN.png    mean attention map of the first S tokens, one per shown layer
  geometry.png                 sink vectors C vs control R per layer
  mean_direction_pca.png       the layers' mean sink directions in their top-2 PCs, and their cosines
  norms.png                    ||hidden||, ||attn out||, ||mlp out|| at the sink vs other positions
  massive_activations.png      largest hidden-state entries at the sink per layer
  values.png                   sink share, ||v_sink||/||v_other||, ||k_sink||/||k_other||
  ssp_ppl.png, ssp_resid.png, ssp_kl.png   Static Sink Patching (intervention runs)

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
from matplotlib import colors, ticker  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from mpl_toolkits.mplot3d import Axes3D  # noqa: E402,F401  (registers the 3-D projection)

DPI = 110
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


def save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


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
    """Draw the boundary of the region of cells where mask[row, col] is true (cell centres at integers)."""
    R, C = mask.shape
    pad = np.zeros((R + 2, C + 2), bool)
    pad[1:-1, 1:-1] = mask
    segs = []
    for r, c in zip(*np.nonzero(mask)):
        y, x = r - 0.5, c - 0.5
        if not pad[r, c + 1]:  # row above
            segs.append([(x, y), (x + 1, y)])
        if not pad[r + 2, c + 1]:  # row below
            segs.append([(x, y + 1), (x + 1, y + 1)])
        if not pad[r + 1, c]:  # left column
            segs.append([(x, y), (x, y + 1)])
        if not pad[r + 1, c + 2]:  # right column
            segs.append([(x + 1, y), (x + 1, y + 1)])
    if segs:
        ax.add_collection(LineCollection(segs, colors=color, linewidths=lw))


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
    s, t, n_docs = sink_scores(g)
    summ = g.get("summary")
    eps = attr(summ, "epsilon", attr(g, "epsilon", 0.3))
    rate = attr(summ, "sink_rate", float(np.mean(s > eps)))
    rate_t = attr(summ, "sink_rate_t64_of_mean", float(np.mean(t > eps)) if t is not None else None)
    panels = [(s, f"sink score α (mean over s<i<T_c)\nsink rate {rate:.1%} (ε = {eps:g})")]
    if t is not None:
        panels.append((t, f"Gu et al. score (first 64 tokens)\nrate of the mean {rate_t:.1%}, Gu protocol {attr(summ, 'sink_rate_gu', float('nan')):.1%}"))
    vmax = max(eps, max(float(np.nanmax(p)) if np.isfinite(p).any() else 0.0 for p, _ in panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 0.32 * s.shape[0] + 2.8), squeeze=False,
                             layout="constrained")
    for ax, (m, title) in zip(axes[0], panels):
        heatmap(ax, m, title, norm=colors.Normalize(0, vmax), cbar_label="attention to the sink")
        outline_cells(ax, np.nan_to_num(m) > eps, lw=1.5 if m.size <= 256 else 0.9)
    fig.suptitle(f"{run}: sink score per layer and head, mean over {n_docs} documents")
    save(fig, os.path.join(out, "sink_score.png"))
    top = np.unravel_index(np.nanargmax(s), s.shape) if np.isfinite(s).any() else None
    cap = "Attention mass on the sink per layer × head, mean over documents: the sink score α"
    cap += (", and Gu et al.'s score over the first 64 tokens (sink row included) on the right." if t is not None
            else " (no t64 score in this run).")
    cap += (f" Heads above ε = {eps:g} are outlined in red; sink rate "
            f"{rate:.1%} (α)" + (f" and {rate_t:.1%} (t64)" if rate_t is not None else "") +
            ". Colour scale 0 … max(ε, largest score).")
    if top is not None:
        cap += f" Largest α = {s[top]:.3f} at layer {top[0]}, head {top[1]}."
    return [("sink_score.png", cap)]


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
            ax.set_xticks(ticks(S, 8))
            ax.set_yticks(ticks(S, 8))
            ax.set_xlabel("key position j", fontsize=8)
            ax.set_ylabel("query position i", fontsize=8)
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="attention (log)")
        fig.suptitle(f"{run}: mean attention map, layer {l}, first {S} tokens")
        name = f"attention_map_layer{l:02d}.png"
        save(fig, os.path.join(out, name))
        res.append((name, f"Layer {l}: attention of query i to key j over the first {S} tokens, mean over "
                          f"documents, {which}; log colour scale clipped at 10⁻³, blank above the diagonal "
                          f"(causal). A bright column {s_pos} is the sink."))
    return res


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
    modes += sorted(k for k in ssp if isinstance(ssp[k], h5py.Group) and k not in modes and k != "original")
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
    save(fig, os.path.join(out, "ssp_ppl.png"))
    boot = attr(ssp[modes[0]], "bootstrap", "bootstrap over documents")
    ci = [f"[{lo[i]:.3f}, {hi[i]:.3f}]" if np.isfinite(lo[i]) and np.isfinite(hi[i]) else "(no CI)"
          for i in range(len(modes))]
    parts = [f"{m} {r[i]:.3f} {ci[i]}" for i, m in enumerate(modes)]
    return [("ssp_ppl.png", f"Perplexity of each mode on the same evaluation tokens (left) and its ratio to the "
                            f"unpatched original with the 95% CI ({boot}) (right). Ratios: " + "; ".join(parts) +
                            ".")]


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
    ("Attention maps", plot_attention_maps),
    ("Geometry of the sink vectors", plot_geometry),
    ("Mean sink directions", plot_mean_direction_pca),
    ("Norms by layer", plot_norms),
    ("Massive activations", plot_massive),
    ("Value and key metrics", plot_values),
    ("SSP perplexity", plot_ssp_ppl),
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
            made += [(title, name, cap) for name, cap in fn(g, out, run)]
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
    if len(sections) > 1:
        out.append("<ul>" + "".join(f"<li><a href='#{esc(r)}'>{esc(r)}</a></li>" for r, *_ in sections) + "</ul>")
    for run, info, made, skipped, failed in sections:
        out.append(f"<h2 id='{esc(run)}'>{esc(run)}</h2><table>")
        out += [f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in info]
        out.append("</table>")
        for title, name, cap in made:
            src = f"{run}/{name}"
            out.append(f"<figure><h3>{esc(title)}</h3><a href='{esc(src)}'><img src='{esc(src)}' "
                       f"alt='{esc(title)}'></a><figcaption>{esc(cap)}</figcaption></figure>")
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
    a = ap.parse_args(argv)
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
