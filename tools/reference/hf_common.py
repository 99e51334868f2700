"""What the HF references share: μ's statistics from HF's own attention weights, and registering a
patched eager attention under a name (transformers' attention-function registry)."""
import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def add_sink_stats(calib, l, module, value, w, rows, s):
    """c[h, i] = A_is W_O^h v_s^h summed over the query rows `rows` of layer l (μ, μ_head, ᾱ sums)."""
    H = w.shape[1]
    vs = value[0, :, s].repeat_interleave(H // value.shape[1], 0).double()  # [H, dh]
    wo = module.o_proj.weight.double().view(-1, H, vs.shape[1])  # [d, H, dh]
    a_sum = w[0, :, rows, s].double().sum(-1)  # [H]
    calib["head_sum"][l] += a_sum[:, None] * torch.einsum("dhk,hk->hd", wo, vs)
    calib["alpha_sum"][l] += a_sum
    calib["count"][l] += int(rows.sum())


def register_attention(model, name, fn):
    """Every layer of `model` attends with `fn` (eager attention's signature and additive mask)."""
    ALL_ATTENTION_FUNCTIONS.register(name, fn)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    model.config._attn_implementation = name
    for layer in model.model.layers:
        layer.self_attn.config._attn_implementation = name
