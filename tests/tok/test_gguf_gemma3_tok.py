"""sink-tokenize on Gemma 3 270M's GGUF (models/, assembled by tools/setup.sh) against the
`sentencepiece` library encoding with a SentencePiece BPE model built here from the file's
own vocabulary (pieces, scores, types; gguf-py reads them): Gemma's tokenizer is a
SentencePiece BPE model, and this is how it encodes. Every document of the three corpora,
adversarial strings (whitespace runs, tabs, newlines, Gemma's user-defined pieces, characters
outside the vocabulary that fall back to bytes), ids with and without BOS, and decode.

Two things the reference is told, as the file and llama.cpp say:
- The GGUF stores Gemma's whitespace-run pieces with spaces ("  "); the original model has
  them as "▁▁" (HF's GGUF converter renames them back the same way), so the model here does.
- Control tokens (<bos>, <start_of_turn>, ...) written in the text are those tokens (as
  llama.cpp with special parsing and HF's own Gemma tokenizer); sentencepiece would spell
  them out, so the reference splits the text at them and encodes the rest.

Two known differences from sentencepiece, left out of the comparison and said where: a
literal "▁" in the text next to a space, and the decode of byte-piece runs that are not UTF-8
(we follow HF's ByteFallback decoder there).

Why not HF transformers' GGUF tokenizer: it reads this vocabulary as a Unigram model (its
GGUFGemmaConverter), whose Viterbi over these rank-like scores cuts text into about twice
as many pieces as the model's tokenizer does (measured: 631 against 283 tokens for 1500
characters of a State of the Union address), and the model is far worse on them (3.07
against 0.90 bits per byte). test_hf_gguf_tokenizer_differs shows the difference."""
import json
import os
import random
import struct

import pytest

from test_tokenize_ref import ADVERSARIAL, CORPORA, DATA, compare, decode_ids, encode_file, load_corpus, run_bin

GEMMA3 = os.environ.get("SINK_GEMMA3_GGUF", "models/gemma-3-270m-q4_k_m.gguf")
BOS, EOS, UNK, PAD = 2, 1, 3, 0
CONTROL, UNKNOWN = 3, 2
GEMMA3_EXTRA = [
    "<start_of_turn>user\nWrite a poem<end_of_turn>\n<start_of_turn>model\n", "<bos><bos>x<eos>", "<pad><mask><unk>",
    "<unused0><unused99>[multimodal]", "<start_of_image><end_of_image>", "<bos", "bos>", "<<bos>>",
    "a  b   c    d" + " " * 40 + "e", "\t", "\t\t\t x\t", "\n\n\n\n\n\n\n\n\n\n", " \n \n  \n", "\u2581\u2581x \u2581",
    "<table><tr><td>1</td></tr></table>", "<0x41><0xE2>", "\ue000\ue001 \U000f0000 \U0010fffd private use",
    "\u0378\u0379 unassigned", "ᚠᛇᚻ᛫ᛒᛦᚦ ꦲꦏ ߒߞߏ", "𓀀𓀁𓀂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


# --- a SentencePiece ModelProto written by hand (the protobuf package is not installed) -------------

def _varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(num, wire, v):
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(v)
    if wire == 5:
        return key + struct.pack("<f", v)
    return key + _varint(len(v)) + v


def sentencepiece_model(pieces, scores, types):
    """ModelProto: pieces (1: piece, 2: score, 3: type); trainer_spec (3: model_type BPE = 2,
    4: vocab_size, 35: byte_fallback, 40-43: unk/bos/eos/pad ids); normalizer_spec (1: name
    identity, 3: add_dummy_prefix false, 4: remove_extra_whitespaces false, 5: escape_whitespaces)."""
    out = b"".join(_field(1, 2, _field(1, 2, p.encode()) + _field(2, 5, s) + _field(3, 0, t))
                   for p, s, t in zip(pieces, scores, types))
    out += _field(2, 2, _field(3, 0, 2) + _field(4, 0, len(pieces)) + _field(35, 0, 1) + _field(40, 0, UNK) +
                  _field(41, 0, BOS) + _field(42, 0, EOS) + _field(43, 0, PAD))
    out += _field(3, 2, _field(1, 2, b"identity") + _field(3, 0, 0) + _field(4, 0, 0) + _field(5, 0, 1))
    return out


class Reference:
    def __init__(self, path):
        import sentencepiece as spm
        from gguf import GGUFReader
        r = GGUFReader(path)
        f = r.fields["tokenizer.ggml.tokens"]
        toks = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        s, t = r.fields["tokenizer.ggml.scores"], r.fields["tokenizer.ggml.token_type"]
        scores = [float(s.parts[i][0]) for i in s.data]
        types = [int(t.parts[i][0]) for i in t.data]
        assert r.fields["tokenizer.ggml.add_space_prefix"].parts[-1][0] == 0  # no dummy prefix
        pieces = ["\u2581" * len(x) if " " in x and x.strip(" ") == "" else x for x in toks]
        # The control tokens as the file types them (<unk> among them).
        self.controls = sorted((x for x, ty in zip(toks, types) if ty == CONTROL), key=len, reverse=True)
        self.control_id = {x: i for i, x in enumerate(toks) if types[i] == CONTROL}
        types[UNK] = UNKNOWN  # sentencepiece needs its unknown piece typed so; the GGUF says control
        self.sp = spm.SentencePieceProcessor(model_proto=sentencepiece_model(pieces, scores, types))
        self.control_ids = set(self.control_id.values())
        self.n = len(toks)

    def encode(self, text, bos=True):
        ids, start, i = ([BOS] if bos else []), 0, 0
        while i < len(text):
            hit = next((c for c in self.controls if text.startswith(c, i)), None) if text[i] == "<" else None
            if hit is None:
                i += 1
                continue
            ids += self.sp.encode(text[start:i]) + [self.control_id[hit]]
            i += len(hit)
            start = i
        return ids + self.sp.encode(text[start:])

    def decode(self, ids):
        """Text of ids without control tokens (sentencepiece drops them)."""
        return self.sp.decode([i for i in ids if i not in self.control_ids])


@pytest.fixture(scope="module")
def ref():
    if not os.path.exists(GEMMA3):
        pytest.fail(f"{GEMMA3} missing (tools/setup.sh assembles it from the PyPI packages)")
    return Reference(GEMMA3)


def write_jsonl(path, texts):
    with open(path, "wb") as f:
        for s in texts:
            f.write(json.dumps({"text": s}).encode() + b"\n")


def check(name, jsonl, texts, ref):
    want = [ref.encode(t) for t in texts]
    compare("gemma3", f"{name} ids (with BOS)", texts, encode_file(GEMMA3, jsonl), want)
    compare("gemma3", f"{name} ids (no special)", texts, encode_file(GEMMA3, jsonl, no_special=True),
            [w[1:] for w in want])
    compare("gemma3", f"{name} decode (skip_special)", texts, decode_ids(GEMMA3, want, True),
            [ref.decode(w) for w in want])


def test_info(ref):
    info = json.loads(run_bin(["--tokenizer", GEMMA3, "--info"]).stdout)
    assert info["vocab_size"] == ref.n == 262144, info
    assert (info["bos_id"], info["eos_id"]) == (BOS, EOS), info
    assert info["adds_bos"] and not info["adds_eos"], info  # tokenizer.ggml.add_bos_token true


@pytest.mark.parametrize("corpus", CORPORA)
def test_corpus_matches_sentencepiece(ref, corpus):
    check(corpus, DATA / "corpora" / f"{corpus}.jsonl", load_corpus(corpus), ref)


def test_adversarial_matches_sentencepiece(ref, tmp_path):
    # Known difference, left out: a literal "▁" (U+2581) in the text next to spaces. sentencepiece
    # matches its user-defined "▁▁" pieces after escaping spaces, so "▁ " is one; we (as llama.cpp)
    # match the file's "  " in the raw text, so it is not.
    texts = [t for t in ADVERSARIAL + GEMMA3_EXTRA if "\u2581" not in t]
    write_jsonl(tmp_path / "adv.jsonl", texts)
    check("adversarial", tmp_path / "adv.jsonl", texts, ref)
    # The byte fallback and the user-defined whitespace pieces were really taken.
    ids = ref.encode(GEMMA3_EXTRA[16] + GEMMA3_EXTRA[8])
    assert any(ref.sp.id_to_piece(i).startswith("<0x") for i in ids) and 138 in ids


def test_random_ids_decode(ref):
    """Decode of random ids (split UTF-8 sequences, byte pieces, whitespace runs), as sentencepiece."""
    rng = random.Random(7)
    pool = [i for i in range(ref.n) if i not in ref.control_ids and i != UNK]
    seqs = [[rng.choice(pool) for _ in range(rng.randrange(0, 40))] for _ in range(200)]
    # Low ids (user-defined whitespace runs, tags) without byte pieces: a run of byte pieces that is
    # not UTF-8 decodes as HF's ByteFallback does (one U+FFFD per byte), sentencepiece keeps the
    # valid bytes in it; a known difference, left out here.
    low = [i for i in pool[:400] if not ref.sp.id_to_piece(i).startswith("<0x")]
    seqs += [[rng.choice(low) for _ in range(12)] for _ in range(40)] + [[138, 139, 255968, 236743, 107]]
    compare("gemma3", "random ids decode", [str(s) for s in seqs], decode_ids(GEMMA3, seqs, True),
            [ref.sp.decode(s) for s in seqs])


def test_hf_gguf_tokenizer_differs(ref):
    """HF transformers' GGUF tokenizer for this file (Unigram over the scores) is not the model's:
    on a plain English sentence it gives about twice the pieces (checked, so that a transformers
    that fixes this shows up here)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging
    logging.set_verbosity_error()
    hf = AutoTokenizer.from_pretrained(os.path.dirname(GEMMA3), gguf_file=os.path.basename(GEMMA3))
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune."
    ours = json.loads(run_bin(["--tokenizer", GEMMA3, "--text", text, "--no-special"]).stdout)
    theirs = hf(text, add_special_tokens=False).input_ids
    print("Gemma 3 GGUF: ours", len(ours), "pieces, HF's GGUF tokenizer", len(theirs))
    assert ours == ref.encode(text, bos=False) and len(theirs) > 1.5 * len(ours)
