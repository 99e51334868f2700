"""Every shipped config passes `sink-run --dry-run`; broken configs and eval
sets are one-line errors (exit status 2) that leave no results.h5."""
import glob
import json
import os

import pytest

from run_util import TINY, make_eval, sink_run, write_config

SRC = os.environ.get("SINK_SOURCE_DIR", ".")


@pytest.mark.parametrize("cfg", sorted(glob.glob(os.path.join(SRC, "configs", "**", "*.yaml"), recursive=True)))
def test_shipped_config_dry_run(cfg):
    r = sink_run(cfg, "--dry-run", check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "documents" in r.stdout


def base(tmp, **kw):
    ev = kw.pop("eval_jsonl", None) or make_eval(tmp / "eval.jsonl", n=3)
    d = dict(model=os.path.join(TINY, "llama"), eval_jsonl=ev, out=str(tmp / "out"), max_total_tokens=100,
             max_tokens_to_calc=32, max_tokens_to_show=4)
    d.update(kw)
    return d


def expect_error(tmp, cfg_dict, *words, raw=None):
    path = tmp / "bad.yaml"
    if raw is not None:
        path.write_text(raw)
    else:
        write_config(path, **cfg_dict)
    r = sink_run(str(path), check=False)
    errs = [l for l in r.stderr.splitlines() if "error" in l]
    assert r.returncode == 2, r.stderr
    assert len(errs) == 1, r.stderr
    for w in words:
        assert w in errs[0], (w, errs[0])
    assert not (tmp / "out" / "results.h5").exists()


def test_unknown_key(tmp_path):
    expect_error(tmp_path, base(tmp_path, max_tokens_to_clac=3), "bad.yaml", "max_tokens_to_clac")


def test_wrong_type(tmp_path):
    expect_error(tmp_path, base(tmp_path, steps={"basic": "yes please"}), "bad.yaml", "steps.basic")


def test_missing_eval_file(tmp_path):
    expect_error(tmp_path, base(tmp_path, eval_jsonl=str(tmp_path / "nope.jsonl")), "nope.jsonl")


def test_yaml_syntax(tmp_path):
    expect_error(tmp_path, None, "bad.yaml", raw="model: [unclosed\n")


def test_malformed_json_line(tmp_path):
    ev = tmp_path / "broken.jsonl"
    ev.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    expect_error(tmp_path, base(tmp_path, eval_jsonl=str(ev)), "broken.jsonl", ":2")


def test_empty_document(tmp_path):
    ev = tmp_path / "empty.jsonl"
    ev.write_text('{"id": "a", "text": "fine text"}\n{"id": "b", "text": ""}\n')
    expect_error(tmp_path, base(tmp_path, eval_jsonl=str(ev)), "empty.jsonl")


def test_long_document_error_policy(tmp_path):
    expect_error(tmp_path, base(tmp_path, long_documents="error"), "max_total_tokens")


def test_layer_out_of_range(tmp_path):
    expect_error(tmp_path, base(tmp_path, layers_to_show=[0, 7]), "layers_to_show", "out of range")


def test_intervention_errors(tmp_path):
    cal = make_eval(tmp_path / "cal.jsonl", start=20, n=2)
    expect_error(tmp_path, base(tmp_path, intervention={"modes": ["ssp_bais"], "calibration_jsonl": cal}), "ssp_bais")
    expect_error(tmp_path, base(tmp_path, intervention={"modes": ["zero"], "layers": [9], "calibration_jsonl": cal}),
                 "intervention.layers")
    ev = make_eval(tmp_path / "eval.jsonl", n=3)
    overlap = tmp_path / "overlap.jsonl"
    overlap.write_text(open(ev).readline())
    expect_error(tmp_path, base(tmp_path, eval_jsonl=ev, intervention={"modes": ["zero"], "calibration_jsonl": str(overlap)}),
                 "also an evaluation document")
    empty = tmp_path / "nocal.jsonl"
    empty.write_text("\n")
    expect_error(tmp_path, base(tmp_path, intervention={"modes": ["zero"], "calibration_jsonl": str(empty)}), "nocal.jsonl")


def test_mu_from_another_model(tmp_path):
    cal = make_eval(tmp_path / "cal.jsonl", start=20, n=2)
    first = base(tmp_path, out=str(tmp_path / "first"), intervention={"modes": ["ssp_bias"], "calibration_jsonl": cal})
    write_config(tmp_path / "first.yaml", **first)
    sink_run(str(tmp_path / "first.yaml"))
    other = base(tmp_path, model=os.path.join(TINY, "llama3"), name="llama",
                 intervention={"modes": ["ssp_bias"], "mu_from": str(tmp_path / "first" / "results.h5")})
    expect_error(tmp_path, other, "another model")


def test_mu_from_previous_run_reused(tmp_path):
    cal = make_eval(tmp_path / "cal.jsonl", start=20, n=2)
    first = base(tmp_path, out=str(tmp_path / "first"), intervention={"modes": ["ssp_bias", "zero"], "calibration_jsonl": cal})
    write_config(tmp_path / "first.yaml", **first)
    sink_run(str(tmp_path / "first.yaml"))
    again = base(tmp_path, out=str(tmp_path / "again"),
                 intervention={"modes": ["ssp_bias", "zero"], "mu_from": str(tmp_path / "first" / "results.h5")})
    write_config(tmp_path / "again.yaml", **again)
    sink_run(str(tmp_path / "again.yaml"))
    import h5py
    import numpy as np
    with h5py.File(tmp_path / "first" / "results.h5") as a, h5py.File(tmp_path / "again" / "results.h5") as b:
        assert np.array_equal(a["llama/ssp/mu"][()], b["llama/ssp/mu"][()])
        assert np.array_equal(a["llama/ssp/ssp_bias/nll_sum"][()], b["llama/ssp/ssp_bias/nll_sum"][()])


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_windowed_model_without_the_values_step(tmp_path, family):
    """A model whose windows bind (tiny mistral and gemma2: 16 keys) with steps.values off ran into
    Observer::finish asking for W_O v_s, which only the values step keeps. The sink scores are those
    of the same documents with the values step on."""
    import h5py
    import numpy as np
    ev = make_eval(tmp_path / "eval.jsonl", n=2)
    out = {}
    for values in (False, True):
        d = base(tmp_path, eval_jsonl=ev, model=os.path.join(TINY, family), out=str(tmp_path / f"out{values}"),
                 max_total_tokens=60, max_tokens_to_calc=48,
                 steps={"basic": True, "norms": True, "values": values, "viz": False})
        sink_run(write_config(tmp_path / f"c{values}.yaml", **d))
        with h5py.File(tmp_path / f"out{values}" / "results.h5") as f:
            out[values] = f[family]["basic/sink_score"][()]
    assert np.array_equal(out[False], out[True])
