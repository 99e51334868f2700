"""Which build a machine gets and which sink-run is launched (tools/detect_gpu.sh, used by
tools/setup.sh, tools/demo.sh and slurm/lib.sh), and the CUDA compile check's skip without a
toolkit (tools/ci/build_cuda.sh). A GPU's presence is faked with an `nvidia-smi` first on PATH
that answers as the driver does; its absence is this machine as it is (no GPU)."""
import os
import shutil
import stat
import subprocess

import pytest

ROOT = os.environ.get("SINK_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REAL_GPU = shutil.which("nvidia-smi") is not None and subprocess.run(
    ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def shim(d, answers=True):
    d.mkdir(exist_ok=True)
    p = d / "nvidia-smi"
    if answers:
        p.write_text('#!/bin/sh\ncase "$1" in\n  -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-fake)" ;;\n'
                     '  --query-gpu=compute_cap) echo "9.0" ;;\nesac\n')
    else:
        p.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\n"
                     "exit 9\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(d)


def run(cmd, cwd=ROOT, path=None, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("SINK_BUILD", "SINK_BIN")}
    if path:
        e["PATH"] = path + ":" + e["PATH"]
    e.update(env)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=e, timeout=120)


def preset(**kw):
    r = run(["bash", "tools/setup.sh", "preset"], **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), r.stderr


@pytest.mark.skipif(REAL_GPU, reason="this machine has a GPU")
def test_setup_picks_the_cpu_build_here():
    out, err = preset()
    assert out == "release" and "no NVIDIA GPU answers" in err, (out, err)


def test_setup_picks_cuda_where_a_gpu_answers(tmp_path):
    out, err = preset(path=shim(tmp_path / "gpu"))
    assert out == "cuda" and "NVIDIA H200" in err, (out, err)
    # nvidia-smi there, the driver not (a login node): the CPU build
    assert preset(path=shim(tmp_path / "nogpu", answers=False))[0] == "release"
    # the override, either way
    assert preset(path=shim(tmp_path / "gpu"), SINK_BUILD="cpu")[0] == "release"
    assert preset(SINK_BUILD="cuda")[0] == "cuda"
    r = run(["bash", "tools/setup.sh", "preset"], SINK_BUILD="gpu")
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1 and "SINK_BUILD" in r.stderr, r
    r = run(["bash", "tools/setup.sh", "nonsense"])
    assert r.returncode == 2 and "usage" in r.stderr, r


def test_the_launched_binary(tmp_path):
    """slurm/lib.sh and tools/demo.sh launch sink_pick_bin's choice (cwd: the submit directory)."""
    work = tmp_path / "repo"
    for b in ("release", "cuda"):
        (work / "build" / b).mkdir(parents=True)
    gpu, nogpu = shim(tmp_path / "gpu"), shim(tmp_path / "nogpu", answers=False)
    pick = ["bash", os.path.join(ROOT, "tools", "detect_gpu.sh"), "bin"]

    def exe(b):
        p = work / "build" / b / "sink-run"
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)

    exe("release")
    assert run(pick, cwd=work, path=gpu).stdout.strip() == "build/release/sink-run"  # no CUDA build yet
    exe("cuda")
    assert run(pick, cwd=work, path=gpu).stdout.strip() == "build/cuda/sink-run"
    assert run(pick, cwd=work, path=nogpu).stdout.strip() == "build/release/sink-run"  # a CPU node
    assert run(pick, cwd=work, path=nogpu, SINK_BIN="/opt/x/sink-run").stdout.strip() == "/opt/x/sink-run"
    os.remove(work / "build" / "release" / "sink-run")
    assert run(pick, cwd=work, path=nogpu).stdout.strip() == "build/cuda/sink-run"  # the only build


def test_cuda_check_skips_without_a_toolkit(tmp_path):
    r = run(["bash", "tools/ci/build_cuda.sh"], CUDA_HOME=str(tmp_path / "no-cuda"))
    assert r.returncode == 0 and r.stderr == "", r
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("build_cuda: skipped: no CUDA toolkit"), r.stdout
    r = run(["bash", "tools/ci/build_cuda.sh"], CUDA_HOME=str(tmp_path / "no-cuda"), SINK_REQUIRE_CUDA_BUILD="1")
    assert r.returncode == 2, r
