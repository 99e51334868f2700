"""slurm/*.sbatch on a real one-node Slurm started on this machine
(tools/slurm/start_local_slurm.sh): observation with srun and with mpirun, a
requeued job that resumes, an intervention, and a two-model sweep as a job
array; each output opened with h5py."""
import os
import re
import subprocess

import h5py
import pytest

from slurm_util import (BUILD, ROOT, TINY, assert_completed, make_eval, read_log, requeue, sbatch, start_slurm,
                        stop_slurm, wait, write_yaml)

P, S, SHOW, MAXT, N = 64, 8, [0, 2], 200, 6
TINY_JOB = 600  # s per job; each takes seconds here
# Small jobs on the 2-core test node: no GPUs, one CPU per rank.
SMALL = ["--gres=none", "--cpus-per-task=1", "--time=00:20:00"]


@pytest.fixture(scope="module")
def slurm():
    was_running = start_slurm()
    yield
    if not was_running:
        stop_slurm()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("slurm")
    return d, make_eval(d / "eval.jsonl", n=N, chars=1500)


def run_config(d, ev, model, out, **extra):
    return write_yaml(d / f"{os.path.basename(out)}.yaml",
                      dict(model=model, eval_jsonl=ev, out=str(out), max_total_tokens=MAXT, max_tokens_to_calc=P,
                           max_tokens_to_show=S, layers_to_show=SHOW, **extra))


def check_results(out, run, n_ranks, L=3, H=4):
    path = os.path.join(out, "results.h5")
    assert os.path.exists(path), f"no {path}"
    with h5py.File(path, "r") as f:
        assert int(f.attrs["complete"]) == 1
        assert int(f.attrs["n_ranks"]) == n_ranks, (int(f.attrs["n_ranks"]), n_ranks)
        g = f[run]
        assert int(g.attrs["complete"]) == 1
        assert g["basic/sink_score"].shape == (N, L, H)
        assert g["basic/token_sink_score"].shape == (N, L, H, S)
        assert g["basic/attention_map"].shape == (len(SHOW), H, S, S)
        assert g["norms/hidden"].shape == (N, L + 1, P)
        assert g["docs/id"].shape == (N,)
        return set(f.keys())


def submit_and_wait(d, script, *args, name, env=None, timeout=TINY_JOB):
    log = str(d / f"{name}-%j.out")
    jobid = sbatch(f"--job-name={name}", f"--output={log}", *SMALL, *args[:-1], script, *args[-1], **(env or {}))
    log = log.replace("%j", jobid)
    recs = wait(jobid, timeout)
    return jobid, recs, log


def test_observe_srun_then_requeue(slurm, data):
    d, ev = data
    out = d / "observe_srun"
    cfg = run_config(d, ev, os.path.join(TINY, "llama"), out)
    jobid, recs, log = submit_and_wait(d, "slurm/observe.sbatch", "--ntasks-per-node=2", [cfg, "--keep-partial"],
                                       name="obs-srun", env=dict(SINK_LAUNCHER="srun"))
    assert_completed(recs, [log])
    text = read_log(log)
    assert "srun --mpi=pmix" in text and "--resume" not in text, text
    # the CPU build, found without SINK_BIN; progress lines from rank 0 in the job log (not a terminal)
    assert "build/release/sink-run" in text and "--no-progress" not in text, text
    progress = [line for line in text.splitlines() if re.search(rf"\] llama: \d+/{N} documents, .* tok/s", line)]
    assert len(progress) >= 2 and progress[-1].split("] llama: ")[1].startswith(f"{N}/{N} documents"), text
    check_results(out, "llama", 2)
    assert (out / ".partial" / "manifest.json").exists()  # kept (--keep-partial)
    # requeued after it finished: results.h5 is newer than the manifest, so the job does not resume a
    # finished run; it runs afresh (the same config: no --overwrite needed)
    requeue(jobid)
    recs = wait(jobid, TINY_JOB)
    assert_completed(recs, [log])
    assert int(recs[0]["Restarts"]) == 1, recs
    # requeued with the run incomplete (as after a node failure: partial results, no results.h5): it resumes
    os.unlink(out / "results.h5")
    requeue(jobid)
    recs = wait(jobid, TINY_JOB)
    assert_completed(recs, [log])
    assert int(recs[0]["Restarts"]) == 2, recs
    runs = [line for line in read_log(log).splitlines() if "running: " in line]
    assert len(runs) == 3 and "--resume" not in runs[0] and "--resume" not in runs[1] and "--resume" in runs[2], runs
    check_results(out, "llama", 2)


def test_observe_mpirun(slurm, data):
    d, ev = data
    out = d / "observe_mpirun"
    cfg = run_config(d, ev, os.path.join(TINY, "llama"), out)
    _, recs, log = submit_and_wait(d, "slurm/observe.sbatch", "--ntasks-per-node=2", [cfg], name="obs-mpirun",
                                   env=dict(SINK_LAUNCHER="mpirun"))
    assert_completed(recs, [log])
    assert "mpirun -n 2" in read_log(log)
    check_results(out, "llama", 2)


def test_intervene(slurm, data):
    d, ev = data
    out = d / "intervene"
    cfg = run_config(d, ev, os.path.join(TINY, "llama"), out)
    # a config without intervention: refused before anything runs
    _, recs, log = submit_and_wait(d, "slurm/intervene.sbatch", "--ntasks-per-node=1", [cfg], name="int-refused")
    assert recs[0]["JobState"] == "FAILED", recs
    assert "has no intervention" in read_log(log), read_log(log)
    # with one given by --set (extra sink-run arguments); calibration documents follow the evaluation ones
    calib = make_eval(d / "calib.jsonl", n=4, chars=1500, start=N)
    _, recs, log = submit_and_wait(d, "slurm/intervene.sbatch", "--ntasks-per-node=2",
                                   [cfg, "--set", "intervention.modes=[ssp_bias,zero]",
                                    "--set", f"intervention.calibration_jsonl={calib}"], name="int-zero")
    assert_completed(recs, [log])
    check_results(out, "llama", 2)
    with h5py.File(out / "results.h5", "r") as f:
        assert f["llama/ssp/zero/nll"].shape == (N,)
        assert f["llama/ssp/ssp_bias/nll"].shape == (N,)
        assert f["llama/ssp/original/nll"].shape == (N,)


def test_sweep_array(slurm, data):
    d, ev = data
    out = d / "sweep"
    sweep = write_yaml(d / "sweep.yaml", dict(
        out=str(out),
        defaults=dict(eval_jsonl=ev, max_total_tokens=MAXT, max_tokens_to_calc=P, max_tokens_to_show=S,
                      layers_to_show=SHOW),
        runs=[dict(model=os.path.join(TINY, "llama")), dict(model=os.path.join(TINY, "qwen2"), name="tiny_qwen2")]))
    r = subprocess.run(["bash", "slurm/sweep.sbatch", "--array-range", sweep], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.strip() == "0-1", (r.stdout, r.stderr)
    log = str(d / "sweep-%A_%a.out")
    jobid = sbatch("--job-name=sweep", f"--output={log}", *SMALL, "--ntasks-per-node=1", "--array=0-1",
                   "slurm/sweep.sbatch", sweep)
    recs = wait(jobid, 2 * TINY_JOB)
    logs = [log.replace("%A", jobid).replace("%a", str(i)) for i in range(2)]
    assert len(recs) == 2, recs
    assert_completed(recs, logs)
    assert check_results(out / "llama", "llama", 1) == {"llama"}
    assert check_results(out / "tiny_qwen2", "tiny_qwen2", 1) == {"tiny_qwen2"}
    # each task's file records the sweep file it came from
    with h5py.File(out / "llama" / "results.h5", "r") as f:
        assert f.attrs["config_path"] in (sweep, sweep.encode())


def test_sweep_selection_passes_overrides(data):
    """sweep.sbatch's selection of run i (slurm/lib.sh): --set on run i reaches it, on other runs is dropped,
    defaults.* pass through, out moves; sink-run accepts the result (--dry-run). No Slurm needed."""
    d, ev = data
    sweep = write_yaml(d / "sweep_sel.yaml", dict(
        out=str(d / "sel"), defaults=dict(eval_jsonl=ev, max_total_tokens=MAXT),
        runs=[dict(model=os.path.join(TINY, "llama")), dict(model=os.path.join(TINY, "qwen2"), name="q")]))
    script = ('source slurm/lib.sh; mapfile -d "" A < <(sink_yaml select "$1" "$2" --set runs.1.max_docs=2 '
              '--set runs.0.max_docs=1 --set defaults.max_total_tokens=100 --set out="$3"); '
              'printf "%s\\n" "${A[@]}" >&2; "$4" "$1" "${A[@]}" --dry-run')
    for i, (name, docs) in enumerate([("llama", 1), ("q", 2)]):
        r = subprocess.run(["bash", "-c", script, "sel", sweep, str(i), str(d / "moved"),
                            os.path.join(BUILD, "sink-run")],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert f'out="{d / "moved" / name}"' in r.stderr, r.stderr
        assert r.stdout.startswith(f"{name}: ") and f"{docs} documents" in r.stdout, r.stdout
    r = subprocess.run(["bash", "slurm/sweep.sbatch", sweep], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--array=0-1" in r.stderr, r.stderr
