"""An error on one rank of a multi-rank sink-run must end every rank promptly, with its
one line printed once and exit status 2 (issue 22: the job used to hang until the
allocation ran out). Each case runs under a time limit that a hang would exceed.

- a token id outside the model's vocabulary in the document that lands on rank 1 of 2
  (found when the documents are tokenised, on every rank alike, before the split);
- an input error that only rank 1 meets after the ranks split (injected with
  SINK_FAULT=input@doc.start#J:rank=1, the stand-in for any such error): that rank
  prints the line and ends the job through MPI_Abort;
- a corrupt bucket checkpoint on --resume with 2 ranks (checked before the split);
- a NaN weight, met by both ranks while loading after the split: agreed on, printed once;
- an Inf weight in one of two runs, a group of one rank per run: that group ends the job."""
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_bad_input_matrix import (BUILD, TINY, config_text, copy_model, edit_tokenizer, eval_set,  # noqa: E402
                                   save_torch)

LLAMA = os.path.join(TINY, "llama")
HANG = 90  # seconds: each case ends in a few; a hang is killed here and fails


def mpirun(cfg, *args, n=2, fault=None):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(n), os.path.join(BUILD, "sink-run"),
           str(cfg), "--no-progress", "--threads", "1", "--bucket-size", "1", *args]
    env = dict(os.environ)
    env.pop("SINK_FAULT", None)
    if fault:
        env["SINK_FAULT"] = fault
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sink-run with {n} ranks hung (killed after {HANG} s)")
    return r, time.time() - t0


def one_line(r, *words):
    """Exit 2; sink-run's own error line exactly once (Open MPI adds its abort notice after it)."""
    assert r.returncode == 2, (r.returncode, r.stderr[-4000:])
    assert "internal error" not in r.stderr, r.stderr[-4000:]
    lines = [l for l in r.stderr.splitlines() if l.startswith("sink-run") and "error" in l]
    assert len(lines) == 1, r.stderr[-4000:]
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


def docs(path, texts):
    return eval_set(path, lines=[json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)])


LONG = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money " * 2
SHORT = "the whale swam"


def test_m01_token_outside_vocabulary_on_rank_1(tmp_path):
    d = copy_model(tmp_path)
    tok = edit_tokenizer(d, lambda j: j["added_tokens"].append({
        "id": 384, "content": "<oov>", "single_word": False, "lstrip": False, "rstrip": False,
        "normalized": False, "special": False}))
    # Buckets go longest first: the long document to rank 0, the short one (with the id) to rank 1.
    ev = docs(tmp_path / "ev.jsonl", [LONG, SHORT + " <oov>"])
    cfg = tmp_path / "oov.yaml"
    cfg.write_text(config_text(tmp_path, ev=ev).replace(f"model: {LLAMA}", f"model: {d}"))
    r, took = mpirun(cfg)
    one_line(r, tok, "token id 384", "'d1'")
    assert not (tmp_path / "out" / "results.h5").exists()


def test_m02_input_error_on_rank_1_after_the_split(tmp_path):
    ev = docs(tmp_path / "ev.jsonl", [LONG, SHORT, LONG[:60], SHORT + " again"])
    for j in range(4):  # whichever documents rank 1 holds: the first of them fails there
        out = tmp_path / f"out{j}"
        cfg = tmp_path / f"a{j}.yaml"
        cfg.write_text(config_text(tmp_path, ev=ev, out=out))
        r, took = mpirun(cfg, fault=f"input@doc.start#{j}:rank=1")
        if r.returncode == 0:
            continue  # document j is rank 0's
        one_line(r, f"doc.start#{j}", "rank 1")
        assert not (out / "results.h5").exists()
        break
    else:
        pytest.fail("no document of the four was on rank 1")


def test_m03_corrupt_checkpoint_on_resume(tmp_path):
    ev = docs(tmp_path / "ev.jsonl", [LONG, SHORT, LONG[:60], SHORT + " again"])
    cfg = tmp_path / "a.yaml"
    cfg.write_text(config_text(tmp_path, ev=ev))
    r, _ = mpirun(cfg, fault="kill@doc.recorded#3")  # some documents recorded, then a rank dies
    assert r.returncode != 0
    cks = sorted((tmp_path / "out" / ".partial" / "llama").glob("bucket_*.ckpt"))
    assert cks, r.stderr[-3000:]
    for ck in cks:  # every recorded bucket, whichever rank gets it on resume
        raw = bytearray(ck.read_bytes())
        struct.pack_into("<Q", raw, 8, 2**64 - 1)
        ck.write_bytes(raw)
    r, _ = mpirun(cfg, "--resume")
    one_line(r, "corrupt checkpoint", "bucket_")
    assert not (tmp_path / "out" / "results.h5").exists()


def test_m04_bad_weights_met_by_every_rank(tmp_path):
    d = copy_model(tmp_path)
    f = save_torch(d, lambda t: t["model.embed_tokens.weight"].view(-1).__setitem__(7, float("nan")))
    ev = docs(tmp_path / "ev.jsonl", [LONG, SHORT])
    cfg = tmp_path / "nan.yaml"
    cfg.write_text(config_text(tmp_path, ev=ev).replace(f"model: {LLAMA}", f"model: {d}"))
    r, _ = mpirun(cfg)
    one_line(r, f, "NaN or Inf")
    assert not (tmp_path / "out" / "results.h5").exists()


def test_m05_bad_weights_in_one_group_of_two(tmp_path):
    """Two runs on 2 ranks: a group of one rank per run. The run whose weights are bad ends the
    whole job (the other group is mid-run) with its line, once."""
    d = copy_model(tmp_path)
    f = save_torch(d, lambda t: t["model.norm.weight"].view(-1).__setitem__(3, float("inf")))
    ev = docs(tmp_path / "ev.jsonl", [LONG, SHORT, LONG[:60]])
    cfg = tmp_path / "two.yaml"
    cfg.write_text(f"out: {tmp_path / 'out'}\ndefaults:\n  eval_jsonl: {ev}\n  max_total_tokens: 64\n"
                   f"  max_tokens_to_calc: 16\n  max_tokens_to_show: 4\n"
                   f"runs:\n  - model: {LLAMA}\n    name: good\n  - model: {d}\n    name: bad\n")
    r, _ = mpirun(cfg)
    one_line(r, f, "NaN or Inf")
    assert not (tmp_path / "out" / "results.h5").exists()
