"""Fault injection: a rank killed before, during and after the HDF5 writes; a
full disk (a small tmpfs); a read-only output and a read-only results file; an
out-of-memory allocation. Each run must end with one clear line and an exit
status (3 for the machine's faults), never leave a results.h5 that is not
whole, and leave what --resume completes to the uninterrupted run's numbers
(or refuses with a reason).

Faults are placed with SINK_FAULT=ACTION@POINT[#INDEX][:rank=R]
(include/sink/util/fault.hpp). The disk faults need root (mount); CI runs as
root."""
import contextlib
import os
import subprocess
import sys

import h5py
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "run"))
from run_util import BUILD, TINY, assert_same_data, make_eval, write_config  # noqa: E402

N_DOCS = 6


def config(tmp, name, out, n=N_DOCS):
    ev = make_eval(tmp / "eval.jsonl", n=n)
    cal = make_eval(tmp / "cal.jsonl", start=20, n=2)
    return write_config(tmp / f"{name}.yaml", model=os.path.join(TINY, "llama"), eval_jsonl=ev, out=str(out),
                        max_total_tokens=160, layers_to_show=[0, 2], max_tokens_to_show=8, max_tokens_to_calc=64,
                        intervention={"modes": ["ssp_bias", "zero"], "calibration_jsonl": cal, "seed": 3})


def run(cfg, *args, fault=None, mpi=0, timeout=600):
    cmd = [os.path.join(BUILD, "sink-run"), str(cfg), "--bucket-size", "1", "--threads", "1", "--no-progress", *args]
    if mpi:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(mpi)] + cmd
    env = dict(os.environ)
    env.pop("SINK_FAULT", None)
    if fault:
        env["SINK_FAULT"] = fault
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def error_lines(stderr):
    """sink-run's own error lines (mpirun and Open MPI's I/O layer add theirs after an abort)."""
    assert "internal error" not in stderr, stderr[-4000:]
    return [l for l in stderr.splitlines() if l.startswith("sink-run") and "error" in l]


def assert_no_torn_results(out):
    """results.h5 exists only whole. A kill while writing may leave results.h5.writing (whole
    or not): never under the final name, and removed by the next run."""
    res = out / "results.h5"
    if res.exists():
        with h5py.File(res) as f:
            assert f.attrs["complete"] == 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    cfg = config(tmp, "ref", tmp / "out")
    r = run(cfg)
    assert r.returncode == 0, r.stderr
    return tmp / "out" / "results.h5"


# ---- a rank killed at points before, during and after the HDF5 writes -------------------------------

KILL_POINTS = [
    ("kill@doc.computed#2", False),  # document 2 computed, not recorded: lost, then recomputed
    ("kill@doc.recorded#3", False),  # document 3 recorded: kept
    ("kill@results.created:rank=1", False),  # results file created (collectively), nothing written
    ("kill@results.run#0:rank=0", False),  # the run's datasets written, the file not closed
    ("kill@results.closed:rank=0", False),  # the file whole under its temporary name, not renamed
    ("kill@results.renamed:rank=1", True),  # the file under its final name: the run is complete
]


@pytest.mark.parametrize("fault,complete", KILL_POINTS, ids=[f for f, _ in KILL_POINTS])
def test_rank_killed_then_resume(tmp_path, reference, fault, complete):
    out = tmp_path / "out"
    cfg = config(tmp_path, "run", out)
    r = run(cfg, fault=fault, mpi=2)
    assert r.returncode != 0, "the killed run must not report success"
    assert_no_torn_results(out)
    assert (out / "results.h5").exists() == complete
    resume_gives_reference(cfg, out, reference)  # on another number of ranks: only what is missing


# ---- a full disk ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of `size` at `path` for the test's output (a disk that can fill up or go read-only)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def resume_gives_reference(cfg, out, reference):
    r = run(cfg, "--resume")
    assert r.returncode == 0, r.stderr
    assert not (out / "results.h5.writing").exists()
    assert_same_data(reference, out / "results.h5")


def test_full_disk_then_resume(tmp_path, reference):
    # The 6 documents' partial results take ~1.5 MB and results.h5 ~1 MB; 1 MiB fills up mid-run.
    with tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        cfg = config(tmp_path, "full", out)
        r = run(cfg)
        assert r.returncode == 3, (r.returncode, r.stderr[-6000:])
        lines = error_lines(r.stderr)
        assert len(lines) == 1 and "no space left on device" in lines[0] and str(disk) in lines[0], r.stderr
        assert_no_torn_results(out)
        assert not (out / "results.h5").exists()
        assert list((out / ".partial" / "llama").glob("doc_*.safetensors")), "documents recorded before it filled"
        remount(disk, "size=64m")  # space freed: --resume completes with the uninterrupted run's numbers
        resume_gives_reference(cfg, out, reference)


def test_full_disk_while_writing_results(tmp_path, reference):
    """Space runs out in the HDF5 writer itself (the partial results fit, results.h5 does not)."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        out = disk / "out"
        cfg = config(tmp_path, "fullh5", out)
        assert run(cfg, "--keep-partial").returncode == 0  # resumed below
        (out / "results.h5").unlink()
        used = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        # Leave the partial results' room plus a little: resume computes nothing, then the HDF5 write fails.
        remount(disk, f"size={used + 64 * 1024}")
        # The free-space check refuses before HDF5 starts; skipped, the disk fills inside HDF5
        # (one rank, and two ranks writing collectively through MPI-IO).
        for fault, mpi, where in ((None, 0, "needs about"), ("skip@results.space_check", 0, "in H5"),
                                  ("skip@results.space_check", 2, "in H5")):
            r = run(cfg, "--resume", fault=fault, mpi=mpi, timeout=300)
            assert r.returncode == 3, (fault, mpi, r.returncode, r.stderr[-6000:])
            lines = error_lines(r.stderr)
            assert len(lines) == 1, (fault, mpi, r.stderr[-6000:])
            assert "no space left on device" in lines[0] and "results.h5" in lines[0] and where in lines[0], lines
            assert not (out / "results.h5").exists() and not (out / "results.h5.writing").exists()
        remount(disk, "size=64m")
        resume_gives_reference(cfg, out, reference)


# ---- read-only output and results file -------------------------------------------------------------

def test_read_only_output(tmp_path, reference):
    with tmpfs(tmp_path / "disk", "64m") as disk:
        out = disk / "out"
        cfg = config(tmp_path, "ro", out)
        assert run(cfg, "--keep-partial").returncode == 0  # resumed below
        before = (out / "results.h5").read_bytes()
        remount(disk, "ro")
        for args in ((), ("--resume",)):
            r = run(cfg, *args)
            assert r.returncode == 3, (args, r.returncode, r.stderr)
            lines = error_lines(r.stderr)
            assert len(lines) == 1 and "read-only file system" in lines[0] and str(out) in lines[0], r.stderr
            assert (out / "results.h5").read_bytes() == before
        remount(disk, "rw")
        resume_gives_reference(cfg, out, reference)


def test_read_only_results_file(tmp_path, reference):
    out = tmp_path / "out"
    cfg = config(tmp_path, "rof", out)
    assert run(cfg, "--keep-partial").returncode == 0  # resumed below
    res = out / "results.h5"
    before = res.read_bytes()
    res.chmod(0o444)
    r = run(cfg)
    assert r.returncode == 3, r.stderr
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and "read-only" in lines[0] and "results.h5" in lines[0], r.stderr
    assert res.read_bytes() == before
    res.chmod(0o644)
    resume_gives_reference(cfg, out, reference)


# ---- out of memory ---------------------------------------------------------------------------------------

def test_out_of_memory_then_resume(tmp_path, reference):
    out = tmp_path / "out"
    cfg = config(tmp_path, "oom", out)
    # Document 4 asks libtorch's allocator for 4 TiB: a real failed allocation on one rank of two.
    r = run(cfg, fault="oom@doc.start#4", mpi=2)
    assert r.returncode == 3, (r.returncode, r.stderr[-6000:])
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and "out of memory" in lines[0] and "document" in lines[0], r.stderr
    assert "internal error" not in r.stderr
    assert not (out / "results.h5").exists()
    resume_gives_reference(cfg, out, reference)


def test_out_of_memory_one_rank(tmp_path):
    out = tmp_path / "out"
    cfg = config(tmp_path, "oom1", out)
    r = run(cfg, fault="oom@doc.start#0")
    assert r.returncode == 3, (r.returncode, r.stderr[-6000:])
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and "out of memory" in lines[0] and "allocate" in lines[0], r.stderr
    assert not (out / "results.h5").exists()
