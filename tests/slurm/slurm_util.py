"""Helpers for the Slurm tests: start the one-node Slurm of tools/slurm, submit
with sbatch, poll squeue (not sbatch --wait), read a job's end state from
scontrol (the test cluster has no accounting database, so no sacct)."""
import json
import os
import re
import subprocess
import time

import pytest

ROOT = os.environ.get("SINK_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("SINK_BUILD_DIR", os.path.join(ROOT, "build", "release")))
FIXTURES = os.path.abspath(os.environ.get("SINK_FIXTURES", os.path.join(BUILD, "fixtures")))
SHARED = os.path.abspath(os.environ.get("SINK_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data")))
TINY = os.path.join(FIXTURES, "tiny")
PATH_EXTRA = "/usr/sbin:/sbin:/usr/bin:/bin"


def env(**extra):
    e = dict(os.environ)
    e["PATH"] = e.get("PATH", "") + ":" + PATH_EXTRA
    # The scripts find the build themselves (tools/detect_gpu.sh): SINK_BIN only for a build elsewhere.
    e.pop("SINK_BIN", None)
    if BUILD != os.path.join(ROOT, "build", "release"):
        e["SINK_BIN"] = os.path.join(BUILD, "sink-run")
    for k in ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS", "SLURM_CPUS_PER_TASK"):
        e.pop(k, None)  # a test run inside an allocation must not leak its job into ours
    e.update({k: str(v) for k, v in extra.items()})
    return e


def slurm_running():
    r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env())
    return r.returncode == 0 and "UP" in r.stdout


def start_slurm():
    """Start (or find running) the local Slurm; fails the test with the script's words if it cannot."""
    was_running = False
    try:
        was_running = slurm_running()
    except FileNotFoundError:
        pass
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "slurm", "start_local_slurm.sh")], cwd=ROOT,
                       capture_output=True, text=True, env=env(), timeout=900)
    if r.returncode != 0:
        pytest.fail(f"tools/slurm/start_local_slurm.sh failed ({r.returncode}):\n"
                    f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}", pytrace=False)
    return was_running


def stop_slurm():
    subprocess.run(["bash", os.path.join(ROOT, "tools", "slurm", "stop_local_slurm.sh")], cwd=ROOT,
                   capture_output=True, text=True, env=env(), timeout=300)


def sbatch(*args, **extra_env):
    """sbatch from the repository root; returns the job id (of the array, for an array)."""
    cmd = ["sbatch", "--parsable", *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env(**extra_env), timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout.strip().split(";")[0]


def requeue(jobid):
    """scontrol requeue, then no wait: Slurm holds a requeued job for about two minutes (BeginTime)."""
    for cmd in (["scontrol", "requeue", jobid], ["scontrol", "update", f"jobid={jobid}", "StartTime=now"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env())
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout}{r.stderr}"


def job_records(jobid):
    """scontrol's records of a job (one per array task), as dicts of KEY=VALUE."""
    r = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True, env=env())
    if r.returncode != 0:
        return []
    recs = []
    for line in r.stdout.splitlines():
        rec = {}
        for m in re.finditer(r"(\w+(?::\w+)?)=(\S*)", line):
            rec.setdefault(m.group(1), m.group(2))
        if rec:
            recs.append(rec)
    return recs


def wait(jobid, timeout):
    """Polls squeue until the job (every task of an array) has left the queue; returns scontrol's records."""
    t0 = time.time()
    while True:
        r = subprocess.run(["squeue", "-h", "-j", jobid, "-o", "%i %T %r"], capture_output=True, text=True, env=env())
        if r.returncode == 0 and not r.stdout.strip():
            break
        if time.time() - t0 > timeout:
            subprocess.run(["scancel", jobid], env=env())
            pytest.fail(f"job {jobid} still queued/running after {timeout}s:\n{r.stdout}\n{r.stderr}\n"
                        f"{json.dumps(job_records(jobid), indent=1)[:4000]}", pytrace=False)
        time.sleep(2)
    recs = job_records(jobid)
    assert recs, f"scontrol knows nothing of job {jobid} after it left the queue"
    return recs


def read_log(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"(no log: {e})"


def assert_completed(recs, logs):
    for rec in recs:
        state, code = rec.get("JobState"), rec.get("ExitCode")
        if state != "COMPLETED" or code != "0:0":
            text = "\n".join(f"--- {p}\n{read_log(p)[-6000:]}" for p in logs)
            pytest.fail(f"job {rec.get('JobId')} ended {state} (exit {code}), reason {rec.get('Reason')}\n{text}",
                        pytrace=False)


def make_eval(path, n=6, chars=1500, corpus="moby-dick.jsonl", start=0):
    with open(os.path.join(SHARED, "corpora", corpus)) as f:
        docs = [json.loads(line) for line in f if line.strip()][start:start + n]
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps({"id": str(d["id"]), "text": d["text"][:chars]}) + "\n")
    return str(path)


def write_yaml(path, data):
    import yaml
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return str(path)
