"""A real results.h5 against the schema table in docs/results.md: every
documented dataset is there with its shape and dtype, and nothing undocumented;
xarray (through h5netcdf) finds named dimensions and coordinates on each of
them; the per-document tokens and top keys against HF transformers."""
import json
import os
import re
import sys

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


# The dimension names a shape symbol of the table stands for.
DIMS = {"N": {"doc"}, "L": {"layer"}, "H": {"head"}, "S": {"query", "key"}, "P": {"position"}, "K": {"massive_rank"},
        "d": {"model_dim"}, "V": {"shown_layer"}, "L1": {"hidden_state"}, "k": {"top"}, "M": {"shown_doc"},
        "2": {"vector_set"}, "n": {"calibration_doc"}}


# The llama run's intervention.window_eval: W = 64 (docs/results.md's window rows name w64), no sink key and ssp_bias.
WINDOW_EVAL = {"windows": [64], "keep": [0], "ssp": ["ssp_bias"]}
WINDOW_MODES = ["window_w64_keep0", "window_w64_ssp_bias"]


def documented_paths(conds):
    for path, shape, dtype, when in schema():
        if when not in conds:
            continue
        paths = [path]
        if path.startswith("ssp/original/"):
            modes = ["ssp_bias", "ssp_drop", "zero", "random"] + (WINDOW_MODES if "window" in conds else [])
            paths += [path.replace("original", m) for m in modes]
        for p in paths:
            yield p, shape, dtype


def check_xarray(path, run, sizes, conds, f):
    """Every documented dataset through xarray/h5netcdf: named dimensions (no phony_dim), each with a coordinate
    of the right length and values, and a long_name."""
    import xarray as xr
    dt = xr.open_datatree(path, engine="h5netcdf")  # h5netcdf refuses unlabeled dimensions unless told phony_dims
    g = f[run]
    for p, shape, _ in documented_paths(conds):
        if isinstance(g[p], h5py.Dataset) and g[p].attrs.get("CLASS") == b"DIMENSION_SCALE":
            continue
        node, _, leaf = (run + "/" + p).rpartition("/")
        v = dt[node][leaf]
        assert len(v.dims) == len(shape), (p, v.dims)
        for dim, sym in zip(v.dims, shape):
            assert dim in DIMS[sym], (p, v.dims, shape)
            assert dim in v.coords and v.coords[dim].size == v.sizes[dim], (p, dim)
        assert v.attrs.get("long_name"), p
    r = dt[run]
    assert list(r["layer"].values) == list(range(sizes["L"]))
    assert list(r["hidden_state"].values) == list(range(sizes["L1"]))
    assert list(r["shown_layer"].values) == list(g.attrs["layers_to_show"])
    assert list(r["doc"].values) == list(g["docs/id"].asstr()[()])
    assert list(r["shown_doc"].values) == list(g["docs/id"].asstr()[()][g["basic/shown_doc_index"][()]])
    # documents and query positions never share a dimension, even when N = S
    assert dt[run + "/basic"]["attention_map"].dims == ("shown_layer", "head", "query", "key")
    assert dt[run + "/basic"]["sink_score"].attrs["symbol"] == "α"
    assert dt[run + "/basic"]["entropy"].attrs["units"] == "nats"
    # the eval set's extra field, labelled by document
    assert list(dt[run + "/docs"]["source_id"].values) == [f"src-{i}" for i in range(sizes["N"])]
    # one group on its own opens too
    ds = xr.open_dataset(path, engine="h5netcdf", group=run + "/basic")
    assert ds["sink_score"].dims == ("doc", "layer", "head")


def check_tokens_and_top_keys(g, model, ev, sizes, k):
    """docs/token_ids and docs/tokens against HF's tokenizer, the top keys against HF's eager attention in float64
    (the mass of every key j < T_c, recomputed from output_attentions)."""
    import torch
    import transformers as tf
    tok = tf.AutoTokenizer.from_pretrained(model)
    m = tf.AutoModelForCausalLM.from_pretrained(model, dtype=torch.float64, attn_implementation="eager").eval()
    P, s = sizes["P"], int(g.attrs["sink_position"])
    texts = [json.loads(line)["text"] for line in open(ev)]
    ids_file, toks_file = g["docs/token_ids"][()], g["docs/tokens"].asstr()[()]
    pos_file, mass_file = g["basic/top_key_position"][()], g["basic/top_key_mass"][()]
    for n, text in enumerate(texts):
        ids = tok(text)["input_ids"][:g.attrs["max_total_tokens"]]
        T = len(ids)
        assert list(ids_file[n, :min(T, P)]) == ids[:P], n
        assert (ids_file[n, min(T, P):] == -1).all()
        assert list(toks_file[n, :min(T, P)]) == [tok.decode([i]) for i in ids[:P]], n
        with torch.no_grad():
            att = m(torch.tensor([ids]), output_attentions=True).attentions  # L x [1, H, T, T]
        Tc = min(T, P)
        for l, a in enumerate(att):
            mass = a[0, :, s + 1:Tc, :Tc].mean(1).numpy()  # [H, Tc]: mean over s < i < T_c of A[i, j]
            for h in range(mass.shape[0]):
                ref = np.sort(mass[h])[::-1][:k]
                assert np.allclose(mass_file[n, l, h, :len(ref)], ref, atol=2e-6), (n, l, h)
                # the positions hold that mass (ties aside)
                assert np.allclose(mass[h][pos_file[n, l, h, :len(ref)]], ref, atol=2e-6), (n, l, h)
            assert np.allclose(mass_file[n, l, :, 0], mass.max(1), atol=2e-6)
        # key s's mass is the sink score α
        ss = g["basic/sink_score"][n]
        hit = pos_file[n] == s
        assert np.allclose(mass_file[n][hit], np.broadcast_to(ss[..., None], hit.shape)[hit], atol=1e-6)


def check(g, sizes, conds):
    documented = set()
    for p, shape, dtype in documented_paths(conds):
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
    extra = set(present) - documented - {"ssp/calibration_ids", "docs/source_id"}
    assert not extra, f"undocumented datasets: {sorted(extra)}"


def with_source_ids(path):
    lines = [json.loads(line) for line in open(path)]
    with open(path, "w") as f:
        for i, d in enumerate(lines):
            f.write(json.dumps({"id": d["id"], "source_id": f"src-{i}", "text": d["text"]}) + "\n")
    return str(path)


def test_results_file_matches_schema(tmp_path):
    ev = with_source_ids(make_eval(tmp_path / "eval.jsonl", n=5))
    cal = make_eval(tmp_path / "cal.jsonl", start=30, n=2)
    for fam, policy, conds in (("llama", "bos", {"always", "values", "ssp", "window"}),
                               ("gpt_oss", "prepend", {"always", "values", "ssp", "gpt_oss"})):
        out = tmp_path / f"out_{fam}"
        cfg = write_config(tmp_path / f"{fam}.yaml", model=os.path.join(TINY, fam), eval_jsonl=ev, out=str(out),
                           max_total_tokens=100, max_tokens_to_calc=40, max_tokens_to_show=6, layers_to_show=[0, 1],
                           sink_policy=policy, docs_to_show=["moby-dick-ch004", "moby-dick-ch002"] if fam == "llama" else 2,
                           intervention={"modes": ["ssp_bias", "ssp_drop", "zero", "random"], "calibration_jsonl": cal,
                                         **({"window_eval": WINDOW_EVAL} if "window" in conds else {})})
        sink_run(cfg)
        with h5py.File(out / "results.h5") as f:
            assert f.attrs["complete"] == 1
            for a in ("tool", "version", "git_commit", "config", "start_time", "end_time", "n_ranks", "runs"):
                assert a in f.attrs, a
            g = f[fam]
            L, H, d = g.attrs["n_layers"], g.attrs["n_heads"], g.attrs["d_model"]
            sizes = dict(N=5, L=L, H=H, S=6, P=40, K=4, d=d, V=2, L1=L + 1, k=8, M=2, n=2)
            check(g, sizes, conds)
            for a in ("model", "device_map", "devices", "sink_policy", "sink_position", "eval_sha256", "weights_fingerprint",
                      "complete"):
                assert a in g.attrs, a
            for a in ("sink_rate_gu", "sink_rate_gu_n_docs", "sink_rate", "sink_rate_t64_of_mean", "epsilon"):
                assert a in g["summary"].attrs, a
            for m in ["ssp_bias", "ssp_drop", "zero", "random"] + (WINDOW_MODES if "window" in conds else []):
                for a in ("ppl", "ppl_ratio", "ppl_ratio_ci95_low", "ppl_ratio_ci95_high"):
                    assert a in g["ssp/" + m].attrs, (m, a)
            if "window" in conds:
                assert g["ssp/window_w64_ssp_bias"].attrs["window"] == 64
                assert g["ssp/window_w64_ssp_bias"].attrs["ssp"] == "ssp_bias"
                assert g["ssp/window_w64_keep0"].attrs["keep"] == 0
            check_xarray(out / "results.h5", fam, sizes, conds, f)
            if fam == "llama":
                ids = g["docs/id"].asstr()[()]
                assert [ids[i] for i in g["basic/shown_doc_index"][()]] == ["moby-dick-ch004", "moby-dick-ch002"]
                # each shown document's own map
                maps = g["basic/doc_attention_map"][()]
                assert maps.shape == (2, 2, H, 6, 6) and not np.isnan(maps).all()
                check_tokens_and_top_keys(g, os.path.join(TINY, fam), ev, sizes, 8)
