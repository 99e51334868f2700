"""Every dataset of two results.h5 files, side by side (the device kit, device_run.sh):
  compare_results.py A.h5 B.h5 --rtol R --atol A [--label L] [--json OUT.jsonl]
A float dataset passes when |a - b| <= atol + rtol * |b| everywhere (NaN where both are NaN);
an integer or string one when equal. Prints one line per dataset that fails or differs at all
and a summary line; exit 0 when all pass, 1 otherwise. B is the reference."""
import argparse
import json
import sys

import h5py
import numpy as np


def datasets(f):
    out = {}
    f.visititems(lambda k, o: out.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a"), ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=1e-4), ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--label", default=""), ap.add_argument("--json")
    args = ap.parse_args()
    with h5py.File(args.a) as fa, h5py.File(args.b) as fb:
        da, db = datasets(fa), datasets(fb)
    rows, bad = [], 0
    for k in sorted(set(da) | set(db)):
        if k not in da or k not in db:
            rows.append(dict(dataset=k, ok=False, why="missing in " + ("A" if k not in da else "B")))
            continue
        a, b = np.asarray(da[k]), np.asarray(db[k])
        r = dict(dataset=k, shape=list(a.shape))
        if a.shape != b.shape:
            r.update(ok=False, why=f"shape {a.shape} vs {b.shape}")
        elif a.dtype.kind == "f":
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            nan_a, nan_b = np.isnan(a64), np.isnan(b64)
            both = ~nan_a & ~nan_b
            diff = np.abs(a64 - b64)[both]
            rel = diff / np.maximum(np.abs(b64[both]), 1e-30) if diff.size else diff
            r.update(max_abs=float(diff.max()) if diff.size else 0.0,
                     max_rel=float(rel[np.abs(b64[both]) > args.atol].max()) if (np.abs(b64[both]) > args.atol).any() else 0.0,
                     nan_mismatch=int((nan_a != nan_b).sum()), identical=bool(np.array_equal(a, b, equal_nan=True)))
            r["ok"] = r["nan_mismatch"] == 0 and bool(
                (np.abs(a64 - b64)[both] <= args.atol + args.rtol * np.abs(b64[both])).all())
        else:
            eq = a == b
            r.update(identical=bool(eq.all()), mismatches=int((~eq).sum()), ok=bool(eq.all()))
        rows.append(r)
    for r in rows:
        bad += not r["ok"]
        if not r["ok"] or not r.get("identical", False):
            print(("FAIL " if not r["ok"] else "diff ") + json.dumps(r))
    n_ident = sum(r.get("identical", False) for r in rows)
    worst = max((r.get("max_rel", 0.0) for r in rows), default=0.0)
    print(f"{args.label}: {len(rows)} datasets, {len(rows) - bad} within rtol={args.rtol:g} atol={args.atol:g}, "
          f"{n_ident} bit-identical, worst relative difference {worst:.2e}: {'PASS' if bad == 0 else 'FAIL'}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(dict(label=args.label, rtol=args.rtol, atol=args.atol, n=len(rows), failed=bad,
                                    identical=n_ident, worst_rel=worst, rows=rows)) + "\n")
    sys.exit(0 if bad == 0 else 1)


if __name__ == "__main__":
    main()
