"""Reads files written by test_store with h5py, as the project's users will.

    h5py_check.py rows FILE N RANKS  rows written collectively by the ranks
    h5py_check.py attrs FILE         attributes and string datasets, with their Python types
    h5py_check.py write-vlen FILE    writes a file the way h5py users do (variable-length strings)
    h5py_check.py scales FILE        dimension scales attached by sink::h5, and [N, P] string rows

Exits non-zero with a message on the first mismatch.
"""

import sys

import h5py
import numpy as np


def check_scales(path):
    with h5py.File(path, "r") as f:
        x = f["run/basic/score"]
        assert [len(d) for d in x.dims] == [1, 1]
        assert x.dims[0][0].name == "/run/doc" and x.dims[1][0].name == "/run/head"
        assert list(x.dims[0][0].asstr()[()]) == ["a", "bb"] and list(x.dims[1][0][()]) == [0, 1, 2]
        assert f["run/doc"].attrs["CLASS"] == b"DIMENSION_SCALE" and f["run/doc"].attrs["NAME"] == b"doc"
        t = f["run/docs/tokens"]
        assert t.shape == (2, 3)
        assert t.asstr()[()].tolist() == [["<s>", " the", ""], ["x", "ü", "end"]], t.asstr()[()]


def check_rows(path, n, n_ranks):
    with h5py.File(path, "r") as f:
        s = f["run/basic/sink_score"]
        assert s.shape == (n, 3, 4) and s.dtype == np.float32, (s.shape, s.dtype)
        row, j, k = np.meshgrid(np.arange(n), np.arange(3), np.arange(4), indexing="ij")
        np.testing.assert_array_equal(s[()], (row * 100 + j * 10 + k).astype(np.float32))
        ids = f["run/docs/n_tokens"]
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids[()], np.arange(n, dtype=np.int32) * 7)
        nll = f["run/ssp/original/nll"]
        assert nll.dtype == np.float64
        np.testing.assert_array_equal(nll[()], np.arange(n) / 3.0)
        padded = f["run/norms/hidden"]
        assert padded.shape == (n + 2, 3)
        np.testing.assert_array_equal(padded[:n], np.ones((n, 3), np.float32))
        assert np.isnan(padded[n:]).all(), "unwritten rows must read as the NaN fill value"
        assert np.isnan(padded.fillvalue)
        doc = f["run/docs/id"]
        assert h5py.check_string_dtype(doc.dtype).encoding == "utf-8"
        assert h5py.check_string_dtype(doc.dtype).length == 12
        want = [f"döc-{i}" for i in range(n)]
        assert list(doc.asstr()[()]) == want, list(doc.asstr()[()])
        assert list(doc[()]) == [w.encode() for w in want]
        empty = f["run/empty"]
        assert empty.shape == (0, 3)
        assert f.attrs["n_ranks"] == n_ranks


def check_attrs(path):
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert type(a["tool"]) is str and a["tool"] == "sink 0.1.0", repr(a["tool"])
        assert type(a["config"]) is str and len(a["config"]) == 100_000 * len("ü") + len("model: x\n")
        assert a["config"].startswith("model: x\nü")
        assert type(a["empty"]) is str and a["empty"] == ""
        assert isinstance(a["ppl"], (float, np.floating)) and a["ppl"] == 12.5
        assert isinstance(a["n_ranks"], (int, np.integer)) and a["n_ranks"] == -(2**40)
        assert a["overwritten"] == "second"
        np.testing.assert_array_equal(a["layers"], np.array([0, 5, 7], np.int64))
        assert a["layers"].dtype == np.int64
        assert a["n_layers"] == 36 and a["n_layers"].dtype == np.int64 and a["n_heads"] == 32
        assert a["mu"].dtype == np.float64 and a["mu"].shape == (20_000,)
        np.testing.assert_array_equal(a["mu"], np.arange(20_000) * 0.5)
        g = f["qwen3_8b_base"]
        assert g.attrs["model_id"] == "Qwen/Qwen3-8B-Base"
        assert type(g.attrs["model_id"]) is str
        names = f["qwen3_8b_base/docs/id"]
        assert h5py.check_string_dtype(names.dtype).encoding == "utf-8"
        assert list(names.asstr()[()]) == ["a", "", "ünïcode", "x" * 40]
        assert names[0] == b"a"
        assert f["qwen3_8b_base/nothing"].shape == (0,)
        assert f["qwen3_8b_base/docs/id"].attrs["units"] == "tokens"


def write_vlen(path):
    with h5py.File(path, "w") as f:
        f["names"] = np.array(["α", "beta", ""], dtype=h5py.string_dtype())
        f.attrs["note"] = "written by h5py"
        f.attrs["fixed"] = np.bytes_(b"fixed-len")
        f["grid"] = np.arange(6, dtype=np.float32).reshape(2, 3)


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "rows":
        check_rows(path, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "attrs":
        check_attrs(path)
    elif mode == "write-vlen":
        write_vlen(path)
    elif mode == "scales":
        check_scales(path)
    else:
        sys.exit(f"unknown mode {mode}")
