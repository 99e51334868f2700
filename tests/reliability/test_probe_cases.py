"""Bad input from the hostile probe of issue 22, one rank (the multi-rank cases are in
test_rank_errors.py). Each case must end with exit status 2 and one stderr line that
names the file (or flag, or key) and the problem: no hang, no crash, no internal
error, no results.h5 that looks complete. Where a case is a rule (every hyper-parameter
range-checked, every resumed file checked against what the run must hold, regular
files only), a few instances of the rule stand for it."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_bad_input_matrix import (BUILD, STORIES, TINY, config_text, copy_model, edit_tokenizer,  # noqa: E402
                                   eval_set, expect_bad, gguf_kv, run, sha, sink_run)

LLAMA = os.path.join(TINY, "llama")


def lm_bad(*args, words=()):
    r = run("sink-lm", "--threads", "1", *args, timeout=120)
    return expect_bad(r, *words)


def fresh_config(tmp_path, extra="", name="a.yaml", ev=None, out=None):
    cfg = tmp_path / name
    cfg.write_text(config_text(tmp_path, ev=ev, out=out, extra=extra))
    return cfg


def assert_not_complete(res):
    if os.path.exists(res):
        with h5py.File(res) as f:
            assert f.attrs.get("complete", 0) != 1, f"{res} looks complete"


# --- intervention.mu_from: the dataset's type, not only its shape --------------------------------

@pytest.fixture(scope="module")
def mu_results(tmp_path_factory):
    """A finished run with an intervention: its results.h5 holds ssp/mu, mu_head, alpha_bar."""
    tmp = tmp_path_factory.mktemp("mu")
    cal = eval_set(tmp / "cal.jsonl", n=2)
    ev = tmp / "ev.jsonl"
    eval_set(ev, n=3)
    lines = ev.read_text().splitlines()
    ev.write_text("\n".join(l.replace('"id": "', '"id": "e') for l in lines) + "\n")
    # the calibration documents must differ from the evaluation ones
    cal_lines = [json.dumps({"id": f"c{i}", "text": f"calibration text number {i}, about whales."}) for i in range(2)]
    open(cal, "w").write("\n".join(cal_lines) + "\n")
    cfg = tmp / "mu.yaml"
    cfg.write_text(config_text(tmp, ev=str(ev), out=tmp / "out", extra=(
        f"name: run\nintervention:\n  modes: [ssp_bias]\n  calibration_jsonl: {cal}\n")))
    r = sink_run(cfg)
    assert r.returncode == 0, r.stderr
    return tmp, str(ev), tmp / "out" / "results.h5"


def mu_from_case(tmp_path, mu_results, change, *words):
    tmp, ev, res = mu_results
    bad = tmp_path / "mu.h5"
    shutil.copy(res, bad)
    with h5py.File(bad, "r+") as f:
        change(f)
    cfg = tmp_path / "use.yaml"
    cfg.write_text(config_text(tmp_path, ev=ev, extra=(
        f"name: run\nintervention:\n  modes: [ssp_bias]\n  mu_from: {bad}\n")))
    # Refused before the weights load: --dry-run sees it too.
    expect_bad(sink_run(cfg, "--dry-run"), str(bad), *words)
    expect_bad(sink_run(cfg), str(bad), *words, absent=[tmp_path / "out" / "results.h5"])


def test_p01_mu_from_string_dataset(tmp_path, mu_results):
    def change(f):
        shape = f["run/ssp/mu"].shape
        del f["run/ssp/mu"]
        f.create_dataset("run/ssp/mu", data=np.full(shape, b"abcdefghijklmnop", dtype="S16"))
    mu_from_case(tmp_path, mu_results, change, "run/ssp/mu")


def test_p02_mu_from_compound_dataset(tmp_path, mu_results):
    def change(f):
        shape = f["run/ssp/mu_head"].shape
        del f["run/ssp/mu_head"]
        f.create_dataset("run/ssp/mu_head", shape=shape, dtype=np.dtype([("a", "<f8"), ("b", "<i4")]))
    mu_from_case(tmp_path, mu_results, change, "run/ssp/mu_head")


def test_p03_mu_from_fingerprint_integer(tmp_path, mu_results):
    def change(f):
        f["run"].attrs["weights_fingerprint"] = np.int64(7)
    mu_from_case(tmp_path, mu_results, change, "weights_fingerprint")


# --- --resume: checkpoints and partial documents against what the run must hold -----------------------

@pytest.fixture
def killed(tmp_path):
    """A run of 4 documents, 1 per bucket, killed after document 2 was recorded."""
    ev = eval_set(tmp_path / "eval.jsonl", n=4)
    cfg = fresh_config(tmp_path, ev=ev)
    env = dict(os.environ, SINK_FAULT="kill@doc.recorded#2")
    r = subprocess.run([os.path.join(BUILD, "sink-run"), str(cfg), "--no-progress", "--threads", "1",
                        "--bucket-size", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])
    part = tmp_path / "out" / ".partial" / "llama"
    assert (part / "bucket_2.ckpt").exists()
    return cfg, part


def resume(cfg):
    return sink_run(cfg, "--resume", "--bucket-size", "1")


@pytest.mark.parametrize("count", [2**64 - 1, 2**64 - 3, 2])
def test_p04_checkpoint_done_count(tmp_path, killed, count):
    cfg, part = killed
    ck = part / "bucket_1.ckpt"
    raw = bytearray(ck.read_bytes())
    struct.pack_into("<Q", raw, 8, count)  # the bucket has 1 document
    ck.write_bytes(raw)
    expect_bad(resume(cfg), str(ck), "corrupt checkpoint", str(count), absent=[tmp_path / "out" / "results.h5"])


def test_p05_checkpoint_sums_of_another_size(tmp_path, killed):
    cfg, part = killed
    ck = part / "bucket_0.ckpt"
    raw = bytearray(ck.read_bytes())
    n_geo = struct.unpack_from("<Q", raw, 16)[0]
    assert n_geo > 8
    # 8 geometry values fewer, moved into the mu part: the file's own sizes still add up.
    struct.pack_into("<QQ", raw, 16, n_geo - 8, 8)
    ck.write_bytes(raw)
    expect_bad(resume(cfg), str(ck), "geometry sums", absent=[tmp_path / "out" / "results.h5"])


def rewrite_doc(path, change):
    from safetensors.numpy import load_file, save_file
    t = load_file(path)
    change(t)
    save_file(t, path)


def test_p06_partial_document_missing_a_tensor(tmp_path, killed):
    cfg, part = killed
    doc = part / "doc_1.safetensors"
    rewrite_doc(doc, lambda t: t.pop(sorted(t)[0]))
    expect_bad(resume(cfg), str(doc), "no tensor", absent=[tmp_path / "out" / "results.h5"])


def test_p07_partial_document_of_another_shape(tmp_path, killed):
    cfg, part = killed
    doc = part / "doc_0.safetensors"
    key = "basic/sink_score"

    def change(t):
        t[key] = np.concatenate([t[key], t[key]], axis=0)
    rewrite_doc(doc, change)
    expect_bad(resume(cfg), str(doc), key, absent=[tmp_path / "out" / "results.h5"])


def test_p08_resume_completes_after_the_checks(tmp_path, killed):
    """The checks refuse only what is wrong: the same killed run resumes to exit 0."""
    cfg, part = killed
    r = resume(cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    with h5py.File(tmp_path / "out" / "results.h5") as f:
        assert f.attrs["complete"] == 1
        assert f["llama/docs/n_tokens"].shape == (4,)


# --- hyper-parameters: config.json and GGUF metadata ----------------------------------------------------

@pytest.mark.parametrize("key,value", [("rms_norm_eps", -1.0), ("rms_norm_eps", 0.0),
                                       ("max_position_embeddings", 0), ("rope_theta", -5.0)])
def test_p09_config_json_ranges(tmp_path, key, value):
    d = copy_model(tmp_path)
    c = json.loads((d / "config.json").read_text())
    c[key] = value
    if key == "rope_theta":
        c.setdefault("rope_parameters", {})["rope_theta"] = value
    (d / "config.json").write_text(json.dumps(c))
    lm_bad("--model", d, "--ids", "1,2,3", words=[d / "config.json", key])


def gguf_with(tmp_path, key, fmt, value):
    raw = bytearray(open(STORIES, "rb").read())
    kv, _ = gguf_kv(bytes(raw))
    t, b, e = kv[key]
    assert e - b == struct.calcsize(fmt), (key, t)
    raw[b:e] = struct.pack(fmt, value)
    f = tmp_path / "m.gguf"
    f.write_bytes(raw)
    return f


@pytest.mark.parametrize("key,fmt,value", [("llama.attention.layer_norm_rms_epsilon", "<f", float("nan")),
                                           ("llama.attention.layer_norm_rms_epsilon", "<f", -1.0),
                                           ("llama.context_length", "<I", 0)])
def test_p10_gguf_ranges(tmp_path, key, fmt, value):
    f = gguf_with(tmp_path, key, fmt, value)
    lm_bad("--model", f, "--ids", "1,2,3", words=[f, key])


# --- flags and empty sequences --------------------------------------------------------------------------

@pytest.mark.parametrize("tool,args,flag", [
    ("sink-bench", ["--random-weights", os.path.join(LLAMA, "config.json"), "--lengths", "0"], "--lengths"),
    ("sink-bench", ["--random-weights", os.path.join(LLAMA, "config.json"), "--lengths", "-7"], "--lengths"),
    ("sink-bench", ["--random-weights", os.path.join(LLAMA, "config.json"), "--lengths", "64,x"], "--lengths"),
    ("sink-bench", ["--random-weights", os.path.join(LLAMA, "config.json"), "--threads", "abc"], "--threads"),
    ("sink-bench", ["--random-weights", os.path.join(LLAMA, "config.json"), "--keep", "0,-1"], "--keep"),
    ("sink-lm", ["--model", LLAMA, "--ids", "1,2", "--threads", "2x"], "--threads"),
    ("sink-run", ["CFG", "--threads", "abc"], "--threads"),
    ("sink-run", ["CFG", "--bucket-size", "3x"], "--bucket-size"),
    ("sink-run", ["CFG", "--bucket-size", "0"], "--bucket-size"),
])
def test_p11_bad_flags(tmp_path, tool, args, flag):
    cfg = fresh_config(tmp_path)
    args = [str(cfg) if a == "CFG" else a for a in args]
    expect_bad(run(tool, *args, timeout=120), flag, absent=[tmp_path / "out" / "results.h5"])


def test_p12_empty_prompt(tmp_path):
    # GPT-NeoX's tokenizer adds no BOS: an empty prompt is no sequence at all.
    lm_bad("--model", os.path.join(TINY, "gpt_neox"), "--prompt", "", words=["--prompt"])


def test_p13_run_name_too_long(tmp_path):
    cfg = fresh_config(tmp_path)
    expect_bad(sink_run(cfg, "--set", "name=" + "n" * 250), "name", "at most")


# --- tokenizers: a pathological pattern, a normalizer that explodes -------------------------------------------

def test_p14_regex_match_limit(tmp_path):
    d = copy_model(tmp_path)
    p = edit_tokenizer(d, lambda j: j.__setitem__("pre_tokenizer", {
        "type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}))
    r = run("sink-tokenize", "--tokenizer", p, "--text", "a" * 3000 + "b", timeout=120)
    expect_bad(r, p, "(a+)+$")


def test_p15_normalizer_output_capped(tmp_path):
    d = copy_model(tmp_path)
    steps = [{"type": "Replace", "pattern": {"String": "a"}, "content": "aa"} for _ in range(40)]
    p = edit_tokenizer(d, lambda j: j.__setitem__("normalizer", {"type": "Sequence", "normalizers": steps}))
    r = run("sink-tokenize", "--tokenizer", p, "--text", "banana", timeout=120)
    expect_bad(r, p, "normalizer")


# --- token ids against the vocabulary, when the documents are tokenised -----------------------------------------

def oov_model(tmp_path):
    """The tiny Llama with one added token whose id (384) is past the model's vocabulary (384)."""
    d = copy_model(tmp_path)
    p = edit_tokenizer(d, lambda j: j["added_tokens"].append({
        "id": 384, "content": "<oov>", "single_word": False, "lstrip": False, "rstrip": False,
        "normalized": False, "special": False}))
    return d, p


def test_p16_token_id_outside_vocabulary(tmp_path):
    d, tok = oov_model(tmp_path)
    ev = eval_set(tmp_path / "ev.jsonl", lines=[json.dumps({"id": "a", "text": "the whale <oov> swam"})])
    cfg = tmp_path / "oov.yaml"
    cfg.write_text(config_text(tmp_path, ev=ev).replace(f"model: {LLAMA}", f"model: {d}"))
    # Found with the documents, before any weights load: --dry-run refuses it too.
    for args in (["--dry-run"], []):
        expect_bad(sink_run(cfg, *args), tok, "token id 384", "'a'", absent=[tmp_path / "out" / "results.h5"])
    # sink-lm: ids the tokenizer made are not blamed on --ids.
    line = lm_bad("--model", d, "--prompt", "x <oov>", words=[tok, "384"])
    assert "--ids" not in line


# --- regular files only; the eval set read once ------------------------------------------------------------------

def test_p17_fifo_and_device_inputs(tmp_path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    cfg = fresh_config(tmp_path, ev=str(fifo))  # eval_jsonl a FIFO: nobody writes, it must not block
    expect_bad(run("sink-run", cfg, "--no-progress", timeout=60), "eval_jsonl", "not a regular file")
    cfg = fresh_config(tmp_path, ev="/dev/zero")
    expect_bad(run("sink-run", cfg, "--no-progress", timeout=60), "/dev/zero", "not a regular file")
    expect_bad(run("sink-run", fifo, timeout=60), str(fifo), "not a regular file")  # the config itself
    expect_bad(run("sink-tokenize", "--tokenizer", os.path.join(LLAMA, "tokenizer.json"), "--jsonl", "/dev/zero",
                   timeout=60), "/dev/zero", "not a regular file")
    expect_bad(run("sink-tokenize", "--tokenizer", fifo, "--text", "x", timeout=60), str(fifo), "not a regular file")


def test_p18_eval_set_through_a_pipe(tmp_path):
    """<(cat ...) as eval_jsonl: it was read twice, its hash was of nothing, and --resume over an edited
    set was accepted. A pipe is refused, like any other file that is not a regular one."""
    ev = eval_set(tmp_path / "ev.jsonl")
    tmpl = tmp_path / "pipe.tmpl"
    tmpl.write_text(config_text(tmp_path, ev="PIPE"))
    cfg = tmp_path / "pipe.yaml"
    script = (f'f() {{ sed "s|PIPE|$1|" {tmpl} > {cfg}; exec {os.path.join(BUILD, "sink-run")} {cfg} '
              f'--no-progress; }}; f <(cat {ev})')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert "/dev/fd/" in cfg.read_text()
    expect_bad(r, "eval_jsonl", "not a regular file", absent=[tmp_path / "out" / "results.h5"])


# --- one run at a time per output folder ---------------------------------------------------------------------------

def test_p19_output_folder_locked(tmp_path):
    ev = eval_set(tmp_path / "ev.jsonl", n=3)
    cfg = fresh_config(tmp_path, ev=ev)
    env = dict(os.environ, SINK_FAULT_DELAY_MS="1500")
    first = subprocess.Popen([os.path.join(BUILD, "sink-run"), str(cfg), "--no-progress", "--threads", "1",
                              "--bucket-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    part = tmp_path / "out" / ".partial" / "llama"
    deadline = time.time() + 120
    while not (part / "doc_0.safetensors").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    assert first.poll() is None, first.communicate()
    second = sink_run(cfg)
    expect_bad(second, str(tmp_path / "out"), "another sink-run", str(first.pid))
    assert (part / "doc_0.safetensors").exists()  # the first run's partial results are kept
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    # The lock file outlives its run (and a killed run's): no obstacle to the next run.
    assert (tmp_path / "out" / ".lock").exists()
    r = sink_run(cfg)
    assert r.returncode == 0, r.stderr[-3000:]
