"""Pipeline stages (issue 18): a group's ranks hold consecutive layers and hand each document's
hidden state on. The same config run with 2 and 3 stages, in one and two pipelines, gives the
1-stage run's results.h5 bit for bit at a fixed --threads (every layer is computed by the same
code on the same numbers, only on another process); a stage killed with SIGKILL mid-run, then
--resume with another stage count, gives the uninterrupted run's file."""
import os
import signal
import subprocess
import time

import h5py
import pytest

from run_util import BUILD, SHARED, TINY, assert_same_data, make_eval, sink_run, write_config

SMOLLM2 = "models/smollm2-135m-instruct.Q4_1.gguf"
STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")


def config(tmp, name, model, n=6, stages=None, calib=True, modes=("ssp_bias", "ssp_drop", "zero", "random"), **extra):
    ev = make_eval(tmp / f"eval_{name}.jsonl", n=n)
    kw = dict(model=model, eval_jsonl=ev, out=str(tmp / f"out_{name}"), max_total_tokens=96,
              layers_to_show=[0, 1], max_tokens_to_show=8, max_tokens_to_calc=48)
    if stages:
        kw["stages"] = stages
    if modes:
        kw["intervention"] = {"modes": list(modes), "seed": 3}
        if calib:
            kw["intervention"]["calibration_jsonl"] = make_eval(tmp / f"cal_{name}.jsonl", start=20, n=3)
    kw.update(extra)
    return write_config(tmp / f"{name}.yaml", **kw), tmp / f"out_{name}" / "results.h5"


def run(cfg, n_ranks, *args, check=True, env=None):
    return sink_run(cfg, "--bucket-size", "1", "--threads", "1", *args, mpi=n_ranks if n_ranks > 1 else 0,
                    check=check, env=env)


def rank_pid(cfg, rank):
    """The pid of the sink-run process of this config with this MPI rank (not mpirun's)."""
    for pid in subprocess.run(["pgrep", "-f", f"sink-run {cfg}"], capture_output=True, text=True).stdout.split():
        try:
            argv0 = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv0.endswith(b"sink-run") and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            return int(pid)
    raise AssertionError(f"no rank {rank} of {cfg} running")


# (ranks, stages): one pipeline of 2, one of 3, two of 2.
LAYOUTS = [(2, 2), (3, 3), (4, 2)]


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma2", "gpt_oss"])
def test_tiny_families_stages_equal_one_stage(tmp_path, family):
    model = os.path.join(TINY, family)
    cfg, ref = config(tmp_path, "s1", model)
    run(cfg, 1)
    layouts = LAYOUTS if family == "llama" else [(2, 2)]
    for ranks, stages in layouts:
        cfg, out = config(tmp_path, f"r{ranks}s{stages}", model, stages=stages)
        run(cfg, ranks)
        with h5py.File(out) as f:
            assert f.attrs["complete"] == 1 and f.attrs["n_ranks"] == ranks
        assert_same_data(ref, out)


@pytest.mark.parametrize("model", [SMOLLM2, STORIES], ids=["smollm2", "stories260K"])
def test_real_gguf_stages_equal_one_stage(tmp_path, model):
    # Observation + two SSP modes (μ from calibration) on the real quantised checkpoints.
    cfg, ref = config(tmp_path, "s1", model, n=3, modes=("ssp_bias", "zero"))
    run(cfg, 1)
    for ranks, stages in ([(2, 2), (3, 3)] if model == STORIES else [(2, 2)]):
        cfg, out = config(tmp_path, f"r{ranks}s{stages}", model, n=3, stages=stages, modes=("ssp_bias", "zero"))
        run(cfg, ranks)
        assert_same_data(ref, out)


@pytest.mark.parametrize("victim", [0, 1], ids=["first_stage", "last_stage"])
def test_killed_stage_then_resume_with_other_stage_count(tmp_path, victim):
    model = os.path.join(TINY, "llama")
    ref_cfg, ref = config(tmp_path, "ref", model, n=10)
    run(ref_cfg, 1)
    cfg, out = config(tmp_path, "kill", model, n=10, stages=2)
    env = dict(os.environ, SINK_FAULT_DELAY_MS="300")
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", os.path.join(BUILD, "sink-run"), cfg,
           "--bucket-size", "1", "--threads", "1", "--no-progress"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    partial = out.parent / ".partial" / "llama"
    deadline = time.time() + 120
    done = []
    while time.time() < deadline:
        done = list(partial.glob("doc_*.safetensors")) if partial.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    assert len(done) >= 3, "the run did not get going"
    # SIGKILL one stage, as a node failure would: the first (it writes nothing) or the last (the writer).
    os.kill(rank_pid(cfg, victim), signal.SIGKILL)
    p.communicate(timeout=120)
    assert p.returncode != 0
    assert not out.exists()  # nothing passed off as complete
    n_before = len(list(partial.glob("doc_*.safetensors")))
    assert 3 <= n_before < 10
    # Resume as three stages in one pipeline: only what is missing is computed, the file is the same.
    # The stage count is not among what --resume checks (it places the work, it does not change it).
    run(cfg, 3, "--resume", "--set", "stages=3")
    assert_same_data(ref, out)


def test_stages_that_do_not_divide_the_ranks_are_refused(tmp_path):
    cfg, out = config(tmp_path, "bad", os.path.join(TINY, "llama"), n=2, stages=2, modes=())
    r = run(cfg, 3, check=False)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if "error" in l]
    assert len(lines) == 1 and "stages" in lines[0] and "bad.yaml" in lines[0], r.stderr
    assert not out.exists()


def test_bfloat16_stages_equal_one_stage(tmp_path):
    # The hidden state crosses in the compute dtype (2 bytes here), bit for bit.
    model = os.path.join(TINY, "llama")
    cfg, ref = config(tmp_path, "b1", model, n=4, dtype="bfloat16")
    run(cfg, 1)
    cfg, out = config(tmp_path, "b2", model, n=4, stages=2, dtype="bfloat16")
    run(cfg, 2)
    assert_same_data(ref, out)


# Every tiny checkpoint family (gpt_oss_mxfp4, a weight format, has no tokenizer: test_stage_load chains it),
# and the real Gemma 3 270M, as one sweep: with 2 ranks and 2 stages
# each run takes both ranks as one pipeline in turn (a sweep needs a pipeline per run to split).
SWEEP = ["llama", "llama3", "mistral", "qwen2", "qwen3", "phi3", "gpt_neox", "gpt_neox_seq", "gemma2",
         "gemma2_w4096", "gemma3", "gemma3_capped", "gpt_oss", "gpt_oss_w128"]
GEMMA3 = "models/gemma-3-270m-q4_k_m.gguf"


TWO_LAYERS = {"gpt_neox_seq", "gemma2_w4096"}  # too few layers for 3 stages


def sweep_config(tmp, name, stages, families=SWEEP):
    ev = make_eval(tmp / "eval_sweep.jsonl", n=2)
    cal = make_eval(tmp / "cal_sweep.jsonl", start=20, n=2)
    runs = [{"model": os.path.join(TINY, f), "name": f} for f in families] + [{"model": GEMMA3, "name": "gemma3_270m"}]
    defaults = dict(eval_jsonl=ev, max_total_tokens=40, max_tokens_to_show=8, max_tokens_to_calc=32,
                    intervention={"modes": ["ssp_bias", "ssp_drop"], "seed": 3, "calibration_jsonl": cal})
    if stages:
        defaults["stages"] = stages
    return write_config(tmp / f"{name}.yaml", out=str(tmp / f"out_{name}"), defaults=defaults, runs=runs), \
        tmp / f"out_{name}" / "results.h5"


@pytest.fixture(scope="module")
def sweep_one_stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    cfg, ref = sweep_config(tmp, "one", None)
    run(cfg, 1)
    return tmp, ref


# One pipeline of 2 stages, one of 3 (the 3-layer families), two pipelines of 2.
@pytest.mark.parametrize("ranks,stages", [(2, 2), (3, 3), (4, 2)])
def test_every_family_and_gemma3_in_stages_equal_one_stage(sweep_one_stage, ranks, stages):
    tmp, ref = sweep_one_stage
    families = [f for f in SWEEP if stages < 3 or f not in TWO_LAYERS]
    cfg, out = sweep_config(tmp, f"r{ranks}s{stages}", stages, families)
    run(cfg, ranks)
    with h5py.File(out) as f:
        assert sorted(str(f.attrs["runs"]).split(",")) == sorted(families + ["gemma3_270m"])
        assert all(f[name].attrs["stages"] == stages for name in families + ["gemma3_270m"])
    for name in families + ["gemma3_270m"]:
        assert_same_data(ref, out, name)
