#!/usr/bin/env python3
"""docs/findings.md from results files: the study's findings for the real models of a run,
stated as numbers (each from tools/report.py's tables for the same file), with the commands
that made them. Run by tools/findings.sh.

    python tools/findings.py OUT/results.h5 [MORE.h5 ...] --out docs/findings.md"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import attr, build, fmt, pct  # noqa: E402

CONFIGS = ("small_models", "gemma3_270m")  # configs/findings/NAME.yaml → experiments/findings/NAME


def windows(g):
    """Where the sink is hidden: the layers with a sliding window shorter than the documents."""
    w = np.asarray(g.attrs.get("sliding_window", []), dtype=np.int64)
    if w.size == 0 or not (w > 0).any():
        return []
    T = int(attr(g, "max_total_tokens"))
    W = int(w[w > 0].min())
    if T <= W:
        return [f"- **Windows**: {int((w > 0).sum())} of {w.size} layers attend within a sliding window of "
                f"{W}, longer than these documents ({T} tokens): the sink is visible to every query."]
    return [f"- **Windows**: {int((w > 0).sum())} of {w.size} layers attend within a sliding window of {W}; "
            f"at up to {T} tokens, queries past position {W} of those layers do not see the sink, so their sink "
            "vectors and μ are averaged over the rows that do, and SSP adds μ only there (docs/metrics.md)."]


def claims(g):
    """The findings of one run, in sentences whose numbers come from the file."""
    s = g["summary"]
    out = windows(g) + [f"- **Sink rates** (ε = {fmt(attr(s, 'epsilon'))}): Gu et al.'s protocol {pct(attr(s, 'sink_rate_gu'))} "
           f"of (layer, head) over {fmt(attr(s, 'sink_rate_gu_n_docs'))} documents; the threshold of the mean "
           f"gives {pct(attr(s, 'sink_rate_t64_of_mean'))} for Gu et al.'s score and {pct(attr(s, 'sink_rate'))} "
           "for α."]
    prof = g["summary/sink_rate_gu_by_layer"][()] if "summary/sink_rate_gu_by_layer" in g else None
    if prof is not None:
        L = len(prof)
        thirds = [prof[: L // 3], prof[L // 3: 2 * L // 3], prof[2 * L // 3:]]
        out.append("- **Profile over depth** (Gu et al.'s protocol, mean over the layers of each third): "
                   + ", ".join(pct(np.mean(t)) if len(t) else "–" for t in thirds)
                   + f" (first, middle, last third of {L} layers); layers at 100 %: "
                   + (", ".join(str(l) for l in np.flatnonzero(prof >= 1.0)) or "none") + ".")
    if "summary/geometry" in g:
        G = g["summary/geometry"]
        cos, pc1, var, ratio = (G[k][()] for k in ("mean_cos_to_mean", "pc1_share", "var_over_mean_sq",
                                                    "norm_ratio"))
        ok = np.isfinite(cos).all(1)
        out.append(f"- **One direction, low variance** (SPEC §3, C against the control R, medians over "
                   f"{int(ok.sum())} layers): cosine to the mean {fmt(np.median(cos[ok, 0]))} against "
                   f"{fmt(np.median(cos[ok, 1]))}; PC1 share {fmt(np.median(pc1[ok, 0]))} against "
                   f"{fmt(np.median(pc1[ok, 1]))}; trace(cov)/‖mean‖² {fmt(np.median(var[ok, 0]))} against "
                   f"{fmt(np.median(var[ok, 1]))}. C is more aligned than R in {int((cos[ok, 0] > cos[ok, 1]).sum())} "
                   f"of {int(ok.sum())} layers. **Norm**: ‖C‖/‖R‖ median {fmt(np.median(ratio[ok]))}, "
                   f"largest {fmt(np.max(ratio[ok]))} (layer {int(np.argmax(np.where(ok, ratio, -np.inf)))}).")
    if "norms/massive_index" in g:
        idx, val = g["norms/massive_index"][()], g["norms/massive_value"][()]
        l = int(np.argmax(np.nanmedian(np.abs(val[:, :, 0]), 0)))
        d = int(np.bincount(idx[:, l, 0].astype(int)).argmax())
        out.append(f"- **Massive activations**: the largest |h| at the sink is dimension {d}, median "
                   f"{fmt(np.median(val[:, l, 0]), 4)} at hidden state {l} (see the report's table for every layer).")
    if "ssp" in g:
        sp = g["ssp"]
        o = attr(sp["original"], "ppl")
        parts = []
        for m in ("ssp_bias", "ssp_drop", "zero", "random"):
            if m in sp:
                a = sp[m]
                parts.append(f"{m} ×{fmt(attr(a, 'ppl_ratio'), 4)} [{fmt(attr(a, 'ppl_ratio_ci95_low'), 4)}, "
                             f"{fmt(attr(a, 'ppl_ratio_ci95_high'), 4)}] (KL {fmt(attr(a, 'kl_mean'), 3)})")
        out.append(f"- **Static Sink Patching** (all layers, {attr(sp, 'granularity')} granularity): perplexity "
                   f"{fmt(o)} originally; ratio with 95 % interval: " + "; ".join(parts) + ".")
    return out


def side_by_side(paths):
    """One row per run of every file: the study's claims as numbers, models next to each other."""
    rows = ["| run | layers | Gu et al.'s sink rate | threshold of the mean (Gu score) | cosine to mean, C / R "
            "| PC1 share, C / R | ppl | ssp_bias | ssp_drop | zero | random |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        with h5py.File(path, "r") as f:
            for name in str(attr(f, "runs", "")).split(","):
                g = f[name]
                s = g["summary"]
                cells = [name, fmt(attr(g, "n_layers")), pct(attr(s, "sink_rate_gu")),
                         pct(attr(s, "sink_rate_t64_of_mean"))]
                if "summary/geometry" in g:
                    G = g["summary/geometry"]
                    cos, pc1 = G["mean_cos_to_mean"][()], G["pc1_share"][()]
                    ok = np.isfinite(cos).all(1)
                    cells += [f"{fmt(np.median(cos[ok, 0]), 3)} / {fmt(np.median(cos[ok, 1]), 3)}",
                              f"{fmt(np.median(pc1[ok, 0]), 3)} / {fmt(np.median(pc1[ok, 1]), 3)}"]
                else:
                    cells += ["–", "–"]
                sp = g["ssp"] if "ssp" in g else None
                cells.append(fmt(attr(sp["original"], "ppl"), 5) if sp is not None else "–")
                for m in ("ssp_bias", "ssp_drop", "zero", "random"):
                    cells.append("×" + fmt(attr(sp[m], "ppl_ratio"), 4) if sp is not None and m in sp else "–")
                rows.append("| " + " | ".join(cells) + " |")
    return ["## Side by side", "",
            "Medians over layers for the geometry (C: the sink's vectors; R: the rest of the attention output, "
            "the control); perplexity ratios of each SSP mode to the original (intervals in each run's section).",
            ""] + rows + [""]


WINDOW_TITLE = "## Windowed attention without the sink (StreamingLLM's question)"
WINDOW_END = "<!-- window: end -->"


def window_section(paths):
    """docs/findings.md's section on intervention.window_eval (bash tools/findings.sh window), from its results files."""
    from report import window_table
    lines = [WINDOW_TITLE, "", "<!-- window: generated by `bash tools/findings.sh window` (tools/findings.py --window); "
             "kept as it is when the rest of the page is regenerated -->",
             "Every layer attends to the W most recent keys, absolute positions kept ("
             "[metrics.md](metrics.md#windowed-attention-without-the-sink-sspwindow_)): no sink key; the first 1 or 4 "
             "tokens kept as keys (StreamingLLM's sink tokens); or no sink key with μ_W (ssp_bias) and the "
             "1 − ᾱ_W rescale (ssp_drop) fitted under the same window, with the sink kept, on calibration documents "
             "never evaluated. Cells: perplexity (ratio to full attention [95 % bootstrap interval over documents]; "
             "mean KL to full attention, nats/token). Made by `bash tools/findings.sh window` "
             "(configs/findings/window_eval.yaml). Below each table, the share of the gap between dropping the sink "
             "key and keeping the first token that each variant closes, in log-perplexity (1: as good as keeping "
             "the sink; 0: no better than dropping it; below 0: worse than dropping it).", ""]
    for path in paths:
        with h5py.File(path, "r") as f:
            lines += [f"Results: `{path}` (sink {attr(f, 'version')} at {attr(f, 'git_commit')}, {attr(f, 'end_time')}).",
                      ""]
            for name in str(attr(f, "runs", "")).split(","):
                g = f[name]
                t = window_table(g)
                if t is None:
                    continue
                sp = g["ssp"]
                lines += [f"### {name}", "", f"{attr(g, 'model')} ({attr(g, 'n_layers')} layers), {attr(g, 'n_docs')} "
                          f"documents of `{attr(g, 'eval_jsonl')}` cut at {attr(g, 'max_total_tokens')} tokens "
                          f"({fmt(attr(sp['original'], 'n_tokens_scored'))} tokens scored), μ_W from "
                          f"{len(sp['calibration_ids']) if 'calibration_ids' in sp else 0} calibration documents.", ""]
                head, rows = t
                lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
                lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
                lines += window_claims(sp) + [""]
    lines += [WINDOW_END]
    return lines


def window_claims(sp):
    """What the table says for the study's claim, in sentences whose numbers come from the file: how much of the
    gap in log-perplexity between the plain window (no sink key) and the window with the first token kept each SSP
    variant closes (1 = as good as keeping the sink, 0 = no better than dropping it, < 0 = worse)."""
    def ppl(k):
        return attr(sp[k], "ppl") if k in sp else None
    out, shares = [], {}
    Ws = sorted({int(attr(sp[k], "window")) for k in sp if k.startswith("window_w") and "window" in sp[k].attrs})
    for W in Ws:
        p0, p1 = ppl(f"window_w{W}_keep0"), ppl(f"window_w{W}_keep1")
        if p0 is None or p1 is None or not np.isfinite(np.log(p0) - np.log(p1)) or abs(np.log(p0 / p1)) < 1e-9:
            continue
        parts = []
        for v in ("ssp_bias", "ssp_drop", "keep4"):
            pv = ppl(f"window_w{W}_{v}")
            if pv is not None:
                parts.append(f"{v} {fmt((np.log(p0) - np.log(pv)) / (np.log(p0) - np.log(p1)), 3)}")
        out.append(f"- W = {W}: no sink key ×{fmt(p0 / ppl('original'), 4)} of full attention, first token kept "
                   f"×{fmt(p1 / ppl('original'), 4)}; share of that gap (in log-perplexity) closed: "
                   + ", ".join(parts) + ".")
        for v in ("ssp_bias", "ssp_drop"):
            pv = ppl(f"window_w{W}_{v}")
            if pv is not None:
                shares.setdefault(v, []).append((np.log(p0) - np.log(pv)) / (np.log(p0) - np.log(p1)))
    if shares:  # the verdict, whichever way it comes out
        say = []
        for v, what in (("ssp_bias", "μ_W alone"), ("ssp_drop", "μ_W with the 1 − ᾱ_W rescale")):
            if v in shares:
                lo, hi = min(shares[v]), max(shares[v])
                verdict = ("is worse than dropping the sink at some window" if lo < 0 else
                           "stands in for the sink" if lo >= 0.9 else "recovers part of what keeping the sink does")
                say.append(f"{what} ({v}) closes {fmt(lo, 3)} to {fmt(hi, 3)} of the gap: it {verdict}")
        out.append("- **For the study's claim**: " + "; ".join(say) + ".")
    return out


def splice_window(text, section):
    """text with its window section replaced by `section` (appended if it has none)."""
    if WINDOW_TITLE in text:
        head, rest = text.split(WINDOW_TITLE, 1)
        tail = rest.split(WINDOW_END, 1)[1] if WINDOW_END in rest else ""
        return head + section + tail
    return text.rstrip() + "\n\n" + section + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--window", action="store_true", help="write only the windowed-attention section into --out")
    a = ap.parse_args(argv)
    old = open(a.out, encoding="utf-8").read() if os.path.exists(a.out) else ""
    if a.window:
        text = splice_window(old, "\n".join(window_section(a.results)))
        with open(a.out + ".writing", "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(a.out + ".writing", a.out)
        return 0
    lines = ["# Findings on the real models here", "",
             "Generated by `bash tools/findings.sh` (do not edit by hand): it runs", "", "```"]
    for c in CONFIGS:
        lines.append(f"build/release/sink-run configs/findings/{c}.yaml --no-progress")
    for c in CONFIGS:
        lines.append(f"python tools/report.py experiments/findings/{c}/results.h5")
    lines += ["python tools/findings.py " + " ".join(f"experiments/findings/{c}/results.h5" for c in CONFIGS)
              + " --out docs/findings.md", "```", "",
             "Definitions: [metrics.md](metrics.md). Every number below is in the run's `report.md` "
             "(tools/report.py), which is made from `results.h5` alone. These are small models on a few "
             "short documents (counts and lengths below): the numbers describe them, not the models the literature reports on "
             "(Gu et al. 2025 report 92.47 % for Llama-2-7B, 97.49 % for Mistral-7B and 99.02 % for Llama-3-8B "
             "with the same protocol; Table 1 of arXiv:2410.10781).", ""]
    lines += side_by_side(a.results)
    for path in a.results:
        with h5py.File(path, "r") as f:
            lines.append(f"Results: `{path}` (sink {attr(f, 'version')} at {attr(f, 'git_commit')}, "
                         f"{attr(f, 'end_time')}).")
            lines.append("")
            for name in str(attr(f, "runs", "")).split(","):
                g = f[name]
                lines += [f"## {name}", "",
                          f"{attr(g, 'model')} ({attr(g, 'architecture')}, {attr(g, 'n_layers')} layers × "
                          f"{attr(g, 'n_heads')} heads), {attr(g, 'n_docs')} documents of "
                          f"`{attr(g, 'eval_jsonl')}` cut at {attr(g, 'max_total_tokens')} tokens "
                          f"(T_c = {attr(g, 'max_tokens_to_calc')}), sink policy {attr(g, 'sink_policy')}.", ""]
                lines += claims(g) + [""]
    if WINDOW_TITLE in old:  # the windowed-attention section has its own run (--window): kept, before the report
        sec = old.split(WINDOW_TITLE, 1)[1]
        lines += (WINDOW_TITLE + sec.split(WINDOW_END, 1)[0] + WINDOW_END).splitlines() + [""]
    lines += ["## The full report", "", "The report the findings above are taken from, as "
              "tools/report.py writes it:", ""]
    body = build(a.results).markdown()
    lines += ["#" + l if l.startswith("#") else l for l in body.splitlines()[2:]]  # one level down, no title
    text = "\n".join(lines).rstrip() + "\n"
    tmp = a.out + ".writing"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
