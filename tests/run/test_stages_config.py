"""The config key `stages` (issue 18) through sink-run --dry-run: the plan printed per run (layers
per stage covering the model's num_hidden_layers from its config.json, the embedding on the first,
the head on the last, GiB per stage, the activation estimate, the memory seen), `auto` resolved to
one stage where the model fits, and the refusals: more stages than layers, stages that do not divide
the group of ranks, a value that is neither an integer >= 1 nor auto. Each a one-line error naming
the config, exit status 2, before any weights load."""
import json
import os
import re

from run_util import TINY, make_eval, sink_run, write_config


def cfg(tmp_path, **kw):
    ev = make_eval(tmp_path / "eval.jsonl", n=2, chars=400)
    d = dict(model=os.path.join(TINY, "llama"), eval_jsonl=ev, out=str(tmp_path / "out"), max_total_tokens=48,
             max_tokens_to_calc=16, max_tokens_to_show=4)
    d.update(kw)
    return write_config(tmp_path / "c.yaml", **d)


def one_line_error(r, path, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    errs = [l for l in r.stderr.splitlines() if "error" in l]
    assert len(errs) == 1 and str(path) in errs[0], r.stderr
    for w in words:
        assert w in errs[0], (w, errs[0])
    assert not os.path.exists(os.path.join(os.path.dirname(path), "out", "results.h5"))


def stage_lines(stdout):
    return [l.strip() for l in stdout.splitlines() if l.strip().startswith("stage ")]


def test_plan_printed_per_stage(tmp_path):
    n_layers = json.load(open(os.path.join(TINY, "llama", "config.json")))["num_hidden_layers"]
    c = cfg(tmp_path, stages=3)
    r = sink_run(c, "--dry-run", mpi=3)
    head = [l for l in r.stdout.splitlines() if l.startswith("  stages ")]
    assert len(head) == 1 and head[0].startswith("  stages 3, for ") and "1 pipeline(s)" in head[0], r.stdout
    assert re.search(r"activations ~\d+\.\d\d GiB per rank", head[0]) and "cpu memory" in head[0], head[0]
    st = stage_lines(r.stdout)
    assert len(st) == 3, r.stdout
    covered = []
    for k, line in enumerate(st):
        m = re.match(r"stage (\d+): layers (\d+)-(\d+) \((\d+)\)", line)
        assert m and int(m[1]) == k, line
        l0, l1, n = int(m[2]), int(m[3]), int(m[4])
        assert n == l1 - l0 + 1 >= 1, line
        covered += range(l0, l1 + 1)
        assert ("+ embedding" in line) == (k == 0) and ("final norm, head" in line) == (k == 2), line
        assert re.search(r"weights \d+\.\d\d GiB$", line), line
    assert covered == list(range(n_layers))
    # Six ranks, three stages: two pipelines.
    r = sink_run(c, "--dry-run", mpi=6)
    assert "2 pipeline(s)" in r.stdout, r.stdout


def test_auto_and_default(tmp_path):
    r = sink_run(cfg(tmp_path, stages="auto"), "--dry-run")
    assert "  stages 1 (auto), for " in r.stdout, r.stdout  # a tiny model fits any machine
    assert len(stage_lines(r.stdout)) == 1
    r = sink_run(cfg(tmp_path), "--dry-run")
    assert "  stages 1, for " in r.stdout, r.stdout


def test_refusals(tmp_path):
    n_layers = json.load(open(os.path.join(TINY, "llama", "config.json")))["num_hidden_layers"]
    c = cfg(tmp_path, stages=n_layers + 1)
    for args in (["--dry-run"], []):
        one_line_error(sink_run(c, *args, check=False), c, "key 'stages'", f"{n_layers} layers")
    c = cfg(tmp_path, stages=2)
    for args in (["--dry-run"], []):
        one_line_error(sink_run(c, *args, check=False, mpi=3), c, "key 'stages'", "do not divide the group of 3")
    for bad in (0, "two", 1.5):
        c = cfg(tmp_path, stages=bad)
        one_line_error(sink_run(c, "--dry-run", check=False), c, "key 'stages'", "expected an integer >= 1 or auto")
