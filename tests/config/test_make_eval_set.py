"""sink-make-eval-set against independent references.

- the same inputs give byte-identical eval.jsonl and manifest.json, run twice
  and from another working directory; another seed gives another set;
- every output text has at most max_length tokens by HF `tokenizers` (the
  reference), its n_tokens is HF's count, and it is the source text cut at a
  token boundary;
- the sampled documents are exactly those of a Python port of the documented
  algorithm (SplitMix64 + partial Fisher-Yates over the documents with at least
  min_length HF tokens);
- the manifest's hashes are hashlib's, its statistics are the rows';
- a folder of .txt files; bad input gives one error line and exit status 2.
"""
import hashlib
import json
import os
import statistics
import subprocess
from pathlib import Path

import pytest
from tokenizers import Tokenizer

DATA = Path(os.environ.get("SINK_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")).resolve()
BUILD = Path(os.environ.get("SINK_BUILD_DIR", Path(__file__).resolve().parents[2] / "build" / "release")).resolve()
BIN = BUILD / "sink-make-eval-set"
CORPUS = DATA / "corpora" / "sotu.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"
N, ML, SEED = 25, 512, 42

MASK = (1 << 64) - 1


class SplitMix64:
    """The generator of docs/config.md, as written there."""

    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, m):
        threshold = ((1 << 64) - m) % m
        while True:
            r = self.next()
            if r >= threshold:
                return r % m


def sample(counts, n, min_length, seed):
    cand = [i for i, c in enumerate(counts) if c >= min_length]
    rng = SplitMix64(seed)
    for i in range(n):
        j = i + rng.below(len(cand) - i)
        cand[i], cand[j] = cand[j], cand[i]
    return cand[:n]


def make(out, *, corpus=CORPUS, tokenizer=GPT2, n=N, ml=ML, seed=SEED, extra=(), cwd=None, check=True):
    args = [str(BIN), "--corpus", str(corpus), "--n_samples", str(n), "--max_length", str(ml), "--seed", str(seed),
            "--tokenizer", str(tokenizer), "--output", str(out), *extra]
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}): {r.stderr}")
    return r


def rows(out):
    return [json.loads(line) for line in (Path(out) / "eval.jsonl").read_text(encoding="utf-8").splitlines()]


def manifest(out):
    return json.loads((Path(out) / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hf():
    return Tokenizer.from_file(str(GPT2 / "tokenizer.json"))


@pytest.fixture(scope="module")
def source():
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_sets")
    other = tmp_path_factory.mktemp("elsewhere")
    make(base / "a")
    make(base / "b")
    make("c", cwd=other)  # a relative output from another working directory
    return base / "a", base / "b", other / "c"


def test_python_port_of_splitmix64():
    # The reference sequence for seed 1234567 (Vigna's splitmix64.c, as in Rust's rand_xoshiro tests).
    rng = SplitMix64(1234567)
    assert [rng.next() for _ in range(5)] == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                                             4593380528125082431, 16408922859458223821]


def test_byte_identical(made):
    a, b, c = made
    for name in ("eval.jsonl", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).read_bytes() == (c / name).read_bytes(), name
    assert not list(a.glob("*.tmp"))


def test_other_seed_differs(made, tmp_path):
    make(tmp_path / "s43", seed=SEED + 1)
    ids42 = [r["source_id"] for r in rows(made[0])]
    ids43 = [r["source_id"] for r in rows(tmp_path / "s43")]
    assert ids42 != ids43 and set(ids42) != set(ids43)
    assert manifest(tmp_path / "s43")["seed"] == SEED + 1


def test_texts_fit_and_are_source_prefixes(made, hf, source):
    by_id = {d["id"]: d["text"] for d in source}
    out = rows(made[0])
    assert [r["id"] for r in out] == list(range(N))
    for r in out:
        assert set(r) == {"id", "n_tokens", "source_id", "text"}
        ids = hf.encode(r["text"], add_special_tokens=False).ids
        assert len(ids) <= ML and len(ids) == r["n_tokens"], r["source_id"]
        full = by_id[r["source_id"]]
        assert full.startswith(r["text"])
        full_ids = hf.encode(full, add_special_tokens=False).ids
        # Cut at a token boundary: the text's ids are the document's first ids.
        assert full_ids[: len(ids)] == ids
        assert len(ids) == min(len(full_ids), ML) or len(ids) >= ML - 16


def test_sampling_is_the_documented_algorithm(made, hf, source):
    counts = [len(e.ids) for e in hf.encode_batch([d["text"] for d in source], add_special_tokens=False)]
    want = [source[i]["id"] for i in sample(counts, N, 1, SEED)]
    assert [r["source_id"] for r in rows(made[0])] == want


def test_min_length_and_prefix_property(made, hf, source, tmp_path):
    counts = [len(e.ids) for e in hf.encode_batch([d["text"] for d in source], add_special_tokens=False)]
    make(tmp_path / "long", n=10, extra=["--min_length", "9000"])
    got = [r["source_id"] for r in rows(tmp_path / "long")]
    assert got == [source[i]["id"] for i in sample(counts, 10, 9000, SEED)]
    assert manifest(tmp_path / "long")["counts"]["eligible"] == sum(c >= 9000 for c in counts)
    # The first k of a sample are the sample of size k (same seed and corpus).
    make(tmp_path / "ten", n=10)
    assert [r["source_id"] for r in rows(tmp_path / "ten")] == [r["source_id"] for r in rows(made[0])][:10]


def test_manifest(made):
    out = made[0]
    m = manifest(out)
    assert m["corpus"] == {"path": str(CORPUS), "kind": "jsonl", "field": "text", "n_documents": 233,
                           "sha256": hashlib.sha256(CORPUS.read_bytes()).hexdigest()}
    assert m["tokenizer"]["path"] == str(GPT2)
    assert m["tokenizer"]["files"] == {name: hashlib.sha256((GPT2 / name).read_bytes()).hexdigest()
                                       for name in ("tokenizer.json", "tokenizer_config.json")}
    assert m["output"] == {"eval_jsonl": "eval.jsonl",
                           "sha256": hashlib.sha256((out / "eval.jsonl").read_bytes()).hexdigest()}
    assert (m["seed"], m["n_samples"], m["min_length"], m["max_length"]) == (SEED, N, 1, ML)
    assert m["algorithm"] == "splitmix64-fisher-yates-v1"
    assert m["tool"]["name"] == "sink-make-eval-set"
    lengths = [r["n_tokens"] for r in rows(out)]
    assert m["n_tokens"] == {"min": min(lengths), "max": max(lengths), "mean": statistics.fmean(lengths),
                             "median": statistics.median(lengths)}
    assert m["counts"]["sampled"] == N and m["counts"]["corpus_documents"] == 233
    assert m["counts"]["reencode_mismatch"] == 0 and m["reencode_mismatch_ids"] == []
    text = (out / "manifest.json").read_text(encoding="utf-8")
    assert text == json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


HARD = ["日本語のテキストです。これは試験です。" * 3, "Emoji 🙂🙂🙂 family 👨‍👩‍👧‍👦 done " * 3,
        "café naïve résumé coöperate " * 5, "<|endoftext|> special then text " * 4, "  spaces\n\n\tand tabs " * 5]


@pytest.mark.parametrize("tok", ["gpt2", "mistral-7b-v0.1", "gemma2", "llama3"])
def test_cuts_inside_multibyte_characters(tmp_path, tok):
    corpus = tmp_path / "hard.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(HARD)),
                      encoding="utf-8")
    hf = Tokenizer.from_file(str(DATA / "tokenizers" / tok / "tokenizer.json"))
    for ml in (3, 5, 6, 7, 9, 13):
        out = tmp_path / f"out{ml}"
        make(out, corpus=corpus, tokenizer=DATA / "tokenizers" / tok, n=len(HARD), ml=ml, seed=3)
        for r in rows(out):
            ids = hf.encode(r["text"], add_special_tokens=False).ids
            assert len(ids) <= ml and len(ids) == r["n_tokens"], (ml, r)
            assert HARD[int(r["source_id"])].startswith(r["text"]), (ml, r)


def test_txt_folder(tmp_path, hf):
    folder = tmp_path / "txt"
    folder.mkdir()
    texts = {f"doc{i:02d}.txt": f"Document number {i}. " * (5 + 7 * i) for i in range(6)}
    texts["empty.txt"] = ""  # zero tokens: never eligible
    for name, t in texts.items():
        (folder / name).write_text(t, encoding="utf-8")
    (folder / "notes.md").write_text("not a .txt file", encoding="utf-8")
    make(tmp_path / "o1", corpus=folder, n=4, ml=40, seed=9)
    make(tmp_path / "o2", corpus=folder, n=4, ml=40, seed=9)
    assert (tmp_path / "o1" / "eval.jsonl").read_bytes() == (tmp_path / "o2" / "eval.jsonl").read_bytes()
    names = sorted(texts)
    counts = [len(hf.encode(texts[n], add_special_tokens=False).ids) for n in names]
    assert [r["source_id"] for r in rows(tmp_path / "o1")] == [names[i] for i in sample(counts, 4, 1, 9)]
    m = manifest(tmp_path / "o1")
    listing = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    assert m["corpus"]["kind"] == "txt_folder" and m["corpus"]["field"] is None
    assert m["corpus"]["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert m["counts"]["eligible"] == 6 and m["corpus"]["n_documents"] == 7


def expect_bad_input(r, *needles):
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("sink-make-eval-set: error: "), r.stderr
    for n in needles:
        assert n in last, last


def test_bad_input(tmp_path):
    expect_bad_input(make(tmp_path / "o", n=1000, check=False), "only 233 of 233 documents", "asked for 1000")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": \n', encoding="utf-8")
    expect_bad_input(make(tmp_path / "o", corpus=bad, n=1, check=False), f"{bad}:2: not valid JSON")
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', encoding="utf-8")
    expect_bad_input(make(tmp_path / "o", corpus=dup, n=1, check=False), "duplicate id '1'")
    tokdir = tmp_path / "tok"
    tokdir.mkdir()
    (tokdir / "tokenizer.json").write_text("{ not json", encoding="utf-8")
    expect_bad_input(make(tmp_path / "o", tokenizer=tokdir, check=False), "tokenizer.json")
    expect_bad_input(make(tmp_path / "o", tokenizer=tmp_path / "none", check=False), "none")
    expect_bad_input(make(tmp_path / "o", corpus=tmp_path / "none.jsonl", check=False), "none.jsonl")
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"caf\xe9\n")
    expect_bad_input(make(tmp_path / "o", corpus=folder, n=1, check=False), "a.txt: invalid UTF-8 at byte 4")
    expect_bad_input(make(tmp_path / "o", ml=0, check=False), "--max_length")
    expect_bad_input(make(tmp_path / "o", extra=["--min_length", "0"], check=False), "--min_length: expected a positive integer")
    expect_bad_input(make(tmp_path / "o", seed=-1, check=False), "--seed")
    expect_bad_input(make(tmp_path / "o", extra=["--colour", "red"], check=False), "--colour")
    r = subprocess.run([str(BIN), "--corpus", str(CORPUS)], capture_output=True, text=True)
    expect_bad_input(r, "is required")
    assert not (tmp_path / "o").exists()
