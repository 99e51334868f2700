"""The CI check `sbatch slurm/observe.sbatch configs/demo.yaml` runs to
completion on the local one-node Slurm, exactly as typed at the repository
root, with the script's own #SBATCH defaults (4 ranks; the test node
advertises the CPUs and GPUs those ask for, see tools/slurm/start_local_slurm.sh).
Slow on a 2-core machine: a real model (SmolLM2-135M) on 4 ranks."""
import os
import re
import subprocess

import h5py
import pytest

from slurm_util import ROOT, assert_completed, env, read_log, start_slurm, stop_slurm, wait

CONFIG = "configs/demo.yaml"
MODEL = "models/smollm2-135m-instruct.Q4_1.gguf"
DEMO_JOB = 5000  # s; about 20-30 min on 2 cores


@pytest.fixture(scope="module")
def slurm():
    was_running = start_slurm()
    yield
    if not was_running:
        stop_slurm()


def test_demo_config_runs_under_slurm(slurm):
    missing = [p for p in (CONFIG, MODEL) if not os.path.exists(os.path.join(ROOT, p))]
    if missing:
        pytest.fail("the demo job cannot run: missing " + " and ".join(missing) +
                    f" (under {ROOT}; the demo config and the model file come from the setup/demo steps)",
                    pytrace=False)
    import yaml
    with open(os.path.join(ROOT, CONFIG)) as f:
        out = yaml.safe_load(f)["out"]
    out = os.path.join(ROOT, out)
    os.makedirs(os.path.join(ROOT, "logs"), exist_ok=True)  # #SBATCH --output=logs/%x-%j.out

    # exactly the command of the CI check; SINK_RESUME=0: never continue a stale OUT/.partial of an older demo.yaml
    r = subprocess.run(["sbatch", "slurm/observe.sbatch", CONFIG], cwd=ROOT, capture_output=True, text=True,
                       env=env(SINK_RESUME=0), timeout=120)
    assert r.returncode == 0, f"sbatch failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    m = re.search(r"Submitted batch job (\d+)", r.stdout)
    assert m, r.stdout
    jobid = m.group(1)
    recs = wait(jobid, DEMO_JOB)
    log = os.path.join(ROOT, "logs", f"sink-observe-{jobid}.out")
    assert_completed(recs, [log])
    ntasks = int(recs[0]["NumTasks"])

    path = os.path.join(out, "results.h5")
    assert os.path.exists(path), f"no {path}; log:\n{read_log(log)[-4000:]}"
    with h5py.File(path, "r") as f:
        assert int(f.attrs["complete"]) == 1
        assert int(f.attrs["n_ranks"]) == ntasks
        runs = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
        assert runs, "no run group in results.h5"
        for run in runs:
            g = f[run]
            assert int(g.attrs["complete"]) == 1
            n = g["docs/id"].shape[0]
            assert n > 0 and g["basic/sink_score"].shape[0] == n
