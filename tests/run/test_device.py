"""The device each rank uses (src/run/device.cpp): --dry-run names it per rank, refuses what the run
would refuse (a GPU asked of a CPU build), a CPU build asked for `auto` on a machine whose NVIDIA driver
answers warns once with the command that builds for the GPU, and results.h5 records the devices used.
The GPU's presence is faked with an `nvidia-smi` put first on PATH (the probe sink-run and
tools/detect_gpu.sh share); the model is the real stories260K GGUF."""
import os
import stat

import h5py
import pytest

from run_util import SHARED, make_eval, sink_run, write_config

MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
# The ctest build is the release (CPU) one; the device kit says which it built.
CPU_BUILD = os.environ.get("SINK_BUILD_KIND", "cpu") == "cpu"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("device")
    ev = make_eval(d / "eval.jsonl", n=2, chars=400)
    return d, write_config(d / "c.yaml", name="st", model=MODEL, eval_jsonl=ev, out=str(d / "out"), max_total_tokens=64,
                           max_tokens_to_calc=16, max_tokens_to_show=4, layers_to_show=[0], device_map="auto")


def fake_gpu_env(d, answers=True):
    shim = d / "shim"
    shim.mkdir(exist_ok=True)
    p = shim / "nvidia-smi"
    if answers:
        p.write_text('#!/bin/sh\n[ "$1" = -L ] && echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-fake)"\n')
    else:  # a login node: the tool is there, the driver is not
        p.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\n'
                     'exit 9\n')
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")


@pytest.mark.skipif(not CPU_BUILD, reason="the CPU build's behaviour")
def test_dry_run_names_each_ranks_device(cfg):
    d, c = cfg
    r = sink_run(c, "--dry-run")
    lines = r.stdout.splitlines()
    assert lines[1].startswith("  device_map auto: rank 0 cpu ("), r.stdout
    r = sink_run(c, "--dry-run", "--set", "device_map=cpu", mpi=2)
    assert "device_map cpu: rank 0 cpu (" in r.stdout and ", rank 1 cpu (" in r.stdout, r.stdout
    assert "local rank 1)" in r.stdout, r.stdout


@pytest.mark.skipif(not CPU_BUILD, reason="the CPU build's behaviour")
def test_cuda_refused_by_dry_run_and_run_alike(cfg):
    d, c = cfg
    for extra in (["--dry-run"], []):
        r = sink_run(c, *extra, "--set", "device_map=cuda:0", check=False)
        assert r.returncode == 2, r.stderr
        err = [l for l in r.stderr.splitlines() if "error" in l]
        assert len(err) == 1 and "device_map" in err[0] and "needs a CUDA build" in err[0] and c in err[0], r.stderr
        assert not os.path.exists(os.path.join(d, "out", "results.h5"))


@pytest.mark.skipif(not CPU_BUILD, reason="the CPU build's behaviour")
def test_auto_warns_when_a_gpu_answers(cfg):
    d, c = cfg
    warn = "this sink-run is a CPU build"
    r = sink_run(c, "--dry-run", env=fake_gpu_env(d))
    lines = [l for l in r.stderr.splitlines() if warn in l]
    assert len(lines) == 1 and "SINK_BUILD=cuda bash tools/setup.sh build" in lines[0], r.stderr
    # two ranks on the node: still one line
    r = sink_run(c, "--dry-run", env=fake_gpu_env(d), mpi=2)
    assert sum(warn in l for l in r.stderr.splitlines()) == 1, r.stderr
    # no warning where the driver does not answer, nor when the CPU was asked for by name
    assert warn not in sink_run(c, "--dry-run", env=fake_gpu_env(d, answers=False)).stderr
    assert warn not in sink_run(c, "--dry-run", "--set", "device_map=cpu", env=fake_gpu_env(d)).stderr


def test_results_record_the_devices_used(cfg):
    d, c = cfg
    out = d / "out2"
    sink_run(c, "--set", f"out={out}", "--set", "device_map=cpu", "--threads", "1", mpi=2)
    with h5py.File(out / "results.h5") as f:
        g = f["st"]
        assert g.attrs["device_map"] == "cpu"
        devs = g.attrs["devices"].split(",")
        assert len(devs) == 2 and all(x.startswith("cpu@") for x in devs), devs


@pytest.mark.skipif(CPU_BUILD or os.environ.get("SINK_DEVICE") != "cuda",
                    reason="a CUDA build on a GPU machine (the device kit, tools/bench/gpu/device_run.sh)")
def test_cuda_devices(cfg):
    d, c = cfg
    r = sink_run(c, "--dry-run")
    assert "device_map auto: rank 0 cuda:0 (" in r.stdout, r.stdout
    r = sink_run(c, "--dry-run", mpi=2)  # two ranks, the one visible GPU: both on it
    assert "rank 0 cuda:0 (" in r.stdout and "rank 1 cuda:0 (" in r.stdout, r.stdout
    r = sink_run(c, "--dry-run", "--set", "device_map=cuda:7", check=False)
    assert r.returncode == 2 and "visible GPU" in r.stderr, r.stderr
    out = d / "out_cuda"
    sink_run(c, "--set", f"out={out}")
    with h5py.File(out / "results.h5") as f:
        assert f["st"].attrs["devices"].startswith("cuda:0@"), f["st"].attrs["devices"]
