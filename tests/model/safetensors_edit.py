"""Copies of the tiny test checkpoints with hand-edited safetensors files, for the
bad-input tests (tests/model/test_bad_inputs.py, tests/reliability/test_bad_input_matrix.py)."""
import json
import os
import shutil
import struct

TINY = os.path.join(os.environ.get("SINK_FIXTURES", "build/release/fixtures"), "tiny")


def copy_model(tmp_path, src="llama"):
    """A writable copy of a tiny checkpoint folder."""
    d = tmp_path / src
    shutil.copytree(os.path.join(TINY, src), d)
    return d


def header(path):
    """(the file's bytes, the header length, the parsed header)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return raw, n, json.loads(raw[8:8 + n])


def write_st(path, hdr, body, raw_header=None):
    """A safetensors file from a header (or raw header bytes) and the data that follows it."""
    h = raw_header if raw_header is not None else json.dumps(hdr).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + body)
