"""Our forward pass against HF transformers' eager forward on tiny random
checkpoints that transformers itself wrote (tools/fixtures/make_tiny_models.py):
logits, every hidden state (HF's L+1 convention) and every attention pattern,
in float32 and bfloat16, in one attention chunk and in several."""
import json
import os

import pytest
import torch
import transformers as tf

from parity_util import DEVICE, FIXTURES, compare, our_dump, hf_outputs

TINY = os.path.join(FIXTURES, "tiny")
NAMES = ["llama", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gemma3_capped", "phi3", "gpt_neox",
         "gpt_neox_seq", "gpt_oss"]


def load_hf(name, dtype):
    m = tf.AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), attn_implementation="eager",
                                                dtype=dtype)
    return m.eval().to(DEVICE)


def ids_for(name):
    fx = json.load(open(os.path.join(TINY, name, "fixture.json")))
    g = torch.Generator().manual_seed(7)
    cfg = json.load(open(os.path.join(TINY, name, "config.json")))
    return torch.randint(0, cfg["vocab_size"], (fx["seq_len"],), generator=g).tolist(), cfg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk", [0, 7])
def test_float32(name, chunk):
    ids, cfg = ids_for(name)
    hf = hf_outputs(load_hf(name, torch.float32), ids)
    ours = our_dump(os.path.join(TINY, name), ids, "float32", extra=("--attn-chunk", chunk))
    d = compare(f"{name}/float32/chunk{chunk}", ours, hf, cfg["num_hidden_layers"])
    assert d["logits_rel"] <= 1e-4
    assert d["hidden_rel"] <= 1e-4
    assert d["attn_max_abs"] <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16(name):
    ids, cfg = ids_for(name)
    hf = hf_outputs(load_hf(name, torch.bfloat16), ids)
    ours = our_dump(os.path.join(TINY, name), ids, "bfloat16")
    d = compare(f"{name}/bfloat16", ours, hf, cfg["num_hidden_layers"])
    # bf16 has 8 bits of mantissa: agree to a few bf16 ulps of the scale.
    assert d["logits_rel"] <= 2e-2
    assert d["hidden_rel"] <= 2e-2
    assert d["attn_max_abs"] <= 2e-2


def test_gpt_oss_sink_mass():
    """The mass each query row gives GPT-OSS's learned sink equals 1 - (row sum of HF's attention)."""
    ids, cfg = ids_for("gpt_oss")
    hf = hf_outputs(load_hf("gpt_oss", torch.float32), ids)
    ours = our_dump(os.path.join(TINY, "gpt_oss"), ids, "float32", extra=("--attn-chunk", 13))
    worst = 0.0
    for l in range(cfg["num_hidden_layers"]):
        missing = 1.0 - hf.attentions[l][0].double().cpu().sum(-1)  # [H, T]
        worst = max(worst, (ours[f"sink_mass.{l}"].double() - missing).abs().max().item())
        assert missing.mean().item() > 1e-2  # the sink really takes mass
    print("gpt_oss sink mass max |diff|:", worst)
    assert worst <= 2e-6


def test_gpt_oss_mxfp4_experts():
    """MXFP4 experts dequantised by us give HF's outputs on transformers' own dequantisation."""
    ids, cfg = ids_for("gpt_oss_mxfp4")
    hf = hf_outputs(load_hf("gpt_oss_mxfp4_ref", torch.float32), ids)
    ours = our_dump(os.path.join(TINY, "gpt_oss_mxfp4"), ids, "float32")
    d = compare("gpt_oss_mxfp4/float32", ours, hf, cfg["num_hidden_layers"])
    assert d["logits_rel"] <= 1e-4 and d["hidden_rel"] <= 1e-4 and d["attn_max_abs"] <= 1e-5


@pytest.mark.parametrize("name", ["gemma2_w4096", "gpt_oss_w128"])
def test_real_windows_bind(name):
    """Gemma 2's 4096 window past 4096 tokens and GPT-OSS's 128 past 128: logits equal HF's,
    and differ from what full attention would give (so the window really binds)."""
    ids, cfg = ids_for(name)
    assert len(ids) > cfg["sliding_window"]
    m = load_hf(name, torch.float32)
    with torch.no_grad():
        ref = m(torch.tensor([ids], device=m.device)).logits[0].cpu()
    import tempfile
    from safetensors.torch import load_file
    from parity_util import sink_lm
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "l.safetensors")
        sink_lm("--model", os.path.join(TINY, name), "--ids", ",".join(map(str, ids)), "--logits-out", out,
                "--threads", "2", "--device", DEVICE)
        ours = load_file(out)["logits"]
    rel = ((ours - ref).abs().max() / ref.abs().max()).item()
    print(name, "logits_rel", rel)
    assert rel <= 1e-4
    # Control: the last rows differ from a full-attention run of the same weights.
    full = tf.AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), attn_implementation="eager",
                                                   dtype=torch.float32, sliding_window=10**6)
    with torch.no_grad():
        nowin = full(torch.tensor([ids])).logits[0]
    assert (nowin[-1] - ref[-1]).abs().max().item() > 1e-3


def test_sliding_window_binds():
    """Mistral's window (16) is shorter than the sequence (48): a pattern row past the
    window must have zeros before i - 15, as HF's has."""
    ids, cfg = ids_for("mistral")
    ours = our_dump(os.path.join(TINY, "mistral"), ids, "float32")
    a = ours["attn.0"]
    assert cfg["sliding_window"] < len(ids)
    assert a[:, 40, : 40 - 16 + 1].abs().max().item() == 0.0
    assert a[:, 40, 40 - 16 + 1:].sum(-1).sub(1).abs().max().item() < 1e-5


def test_sharded_checkpoint(tmp_path):
    """A checkpoint that transformers saves in several shards (with model.safetensors.index.json)."""
    ids, cfg = ids_for("qwen2")
    m = load_hf("qwen2", torch.float32)
    m.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 3
    d = compare("qwen2/sharded", our_dump(str(tmp_path), ids), hf_outputs(m, ids), cfg["num_hidden_layers"])
    assert d["logits_rel"] <= 1e-4 and d["hidden_rel"] <= 1e-4


def edited_copy(name, dst, **changes):
    """The checkpoint `name` with its config.json changed (None deletes a key); weights linked."""
    src = os.path.join(TINY, name)
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f != "config.json":
            os.symlink(os.path.join(src, f), os.path.join(dst, f))
    cfg = json.load(open(os.path.join(src, "config.json")))
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)
    return dst


def rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def hf_logits(m, ids):
    with torch.no_grad():
        return m(torch.tensor([ids], device=m.device)).logits[0].float().cpu()


def test_gemma3_porting_traps(tmp_path):
    """The three ways a Gemma 3 port commonly goes wrong, each made in HF itself: RMSNorm as
    x·w instead of x·(1 + w), one RoPE base for every layer, and the attention scale taken
    from head_dim instead of query_pre_attn_scalar. Each wrong variant moves HF's logits far
    beyond our tolerance (so the parity test would catch it), ours match the right one, and
    where the trap is a config value, ours with that value match HF's wrong variant (so the
    key is read, not assumed)."""
    import types
    ids, cfg = ids_for("gemma3")
    ref = hf_logits(load_hf("gemma3", torch.float32), ids)
    ours = our_dump(os.path.join(TINY, "gemma3"), ids)["logits"]
    assert rel(ours, ref) <= 1e-4

    def norm_times_w(self, x):
        return (self._norm(x.float()) * self.weight.float()).type_as(x)

    m = load_hf("gemma3", torch.float32)
    for mod in m.modules():
        if type(mod).__name__ == "Gemma3RMSNorm":
            mod.forward = types.MethodType(norm_times_w, mod)
    wrong = {"norm x*w": (hf_logits(m, ids), None)}
    rp = cfg["rope_parameters"]
    glob_all = dict(rope_parameters=dict(rp, sliding_attention=dict(rp["full_attention"])))
    local_all = dict(rope_parameters=dict(rp, full_attention=dict(rp["sliding_attention"])))
    for label, change in (("global RoPE base in every layer", glob_all),
                          ("local RoPE base in every layer", local_all),
                          ("scale head_dim^-1/2", dict(query_pre_attn_scalar=cfg["head_dim"]))):
        d = edited_copy("gemma3", str(tmp_path / label.replace(" ", "_").replace("/", "")), **change)
        wrong[label] = (hf_logits(tf.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                                         dtype=torch.float32).eval(), ids), d)
    for label, (w, d) in wrong.items():
        r = rel(w, ref)
        print(f"gemma3 trap '{label}': logits_rel vs HF {r:.3g}")
        assert r > 1e-2  # at least 100x the parity tolerance
        if d is not None:
            assert rel(our_dump(d, ids)["logits"], w) <= 1e-4


def test_gemma3_older_config_keys(tmp_path):
    """Configs on the Hub carry the older keys: rope_theta (global), rope_local_base_freq,
    rope_scaling (applied to the global layers only) and sliding_window_pattern instead of
    layer_types. Unusual values, so that a default taken instead of the key shows."""
    ids, cfg = ids_for("gemma3")
    d = edited_copy("gemma3", str(tmp_path / "old"), rope_parameters=None, layer_types=None,
                    rope_theta=50000.0, rope_local_base_freq=500.0, sliding_window_pattern=2,
                    rope_scaling={"rope_type": "linear", "factor": 4.0})
    m = tf.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
    assert m.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert m.config.rope_parameters["full_attention"]["rope_type"] == "linear"
    dd = compare("gemma3/older-config-keys", our_dump(d, ids), hf_outputs(m, ids), cfg["num_hidden_layers"])
    assert dd["logits_rel"] <= 1e-4 and dd["hidden_rel"] <= 1e-4 and dd["attn_max_abs"] <= 1e-5
    # ...and they matter: the same weights under the saved config give other logits.
    assert rel(hf_logits(load_hf("gemma3", torch.float32), ids), hf_logits(m, ids)) > 1e-2
