"""GPT-2 at inference, without the per-forward overhead: the one-token step and a fused tanh-GELU.

Latent rollouts run many forwards of one token per row (latent steps, answer
tokens, RM steps).  On small models transformers' generic forward (mask
construction, output capturing, per-module dispatch) costs more than the
arithmetic, so ``gpt2_one_token`` runs the same aten operations, in the same
order and on the same shapes, as ``GPT2Model.forward`` with SDPA attention
does for one token -- the same bits (``tests/test_fast_paths.py`` compares
them) -- and nothing else.

``gelu_new`` (GPT-2's ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``,
eight elementwise operations and six temporaries in transformers) runs at
inference as the one fused kernel of the same formula,
``F.gelu(x, approximate="tanh")``: 2 to 4 times faster, and the same numbers
to float32 rounding (about 1% of the values differ in the last bit or two).
With gradients (training) it is transformers' original.

Only torch and transformers are imported: this file is copied next to saved
checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks
from transformers.activations import NewGELUActivation


class TanhGELU(NewGELUActivation):
    """``gelu_new``: at inference the fused tanh-GELU kernel (see the module docstring), with gradients
    transformers' ``NewGELUActivation``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and input.requires_grad:
            return super().forward(input)
        return F.gelu(input, approximate="tanh")


def use_fused_gelu(model: torch.nn.Module) -> None:
    """Replace every ``gelu_new`` module of ``model`` by ``TanhGELU``."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, TanhGELU())


def one_token_ready(body: torch.nn.Module) -> bool:
    """Whether ``gpt2_one_token`` computes what ``body`` (a ``GPT2Model``) would and nothing can tell the
    difference: inference, SDPA attention, no cross-attention, no gradients, and no forward hook on the body
    or on a module it runs as a plain function (hooks on its dropout and position-embedding modules run, as
    the lean step calls those modules; the samplers' dropout hooks are such hooks)."""
    config = body.config
    if (body.training or torch.is_grad_enabled() or config._attn_implementation != "sdpa"
            or config.add_cross_attention or _global_forward_hooks or _global_forward_pre_hooks):
        return False
    return not any(module._forward_hooks or module._forward_pre_hooks for module in body.modules()
                   if not isinstance(module, (torch.nn.Dropout, torch.nn.Embedding)))


def _layer_norm(module, x):
    return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)


def _conv1d(module, x):
    """transformers' ``Conv1D.forward``."""
    return torch.addmm(module.bias, x.view(-1, x.size(-1)), module.weight).view(x.size()[:-1] + (module.nf,))


def gpt2_one_token(body: torch.nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                   position_ids: torch.Tensor, cache) -> torch.Tensor:
    """The last hidden state (rows, hidden) of one input per row through a ``GPT2Model`` ``body``.

    ``inputs_embeds`` (rows, hidden); ``attention_mask`` (rows, cached + 1), the 2-D mask of every cached
    position and the new one; ``position_ids`` (rows,); ``cache`` the KV cache, updated in place.  As
    ``body(inputs_embeds=inputs_embeds[:, None], attention_mask=..., position_ids=position_ids[:, None],
    cache=cache, use_cache=True).last_hidden_state[:, -1]`` when ``one_token_ready(body)``.
    """
    rows = inputs_embeds.shape[0]
    hidden = inputs_embeds[:, None, :] + body.wpe(position_ids[:, None])
    hidden = body.drop(hidden)
    padding = attention_mask.to(dtype=torch.bool)
    # transformers' SDPA mask: none when every cached position is real, else the rows' padding (a one-token query
    # sees every cached position, so the causal part is all True)
    mask = None if bool(padding.all()) else padding[:, None, None, :]
    for index, block in enumerate(body.h):
        attn, mlp = block.attn, block.mlp
        residual = hidden
        qkv = _conv1d(attn.c_attn, _layer_norm(block.ln_1, hidden))
        query, key, value = qkv.split(attn.split_size, dim=2)
        key = key.view(rows, 1, -1, attn.head_dim).transpose(1, 2)
        value = value.view(rows, 1, -1, attn.head_dim).transpose(1, 2)
        query = query.view(rows, 1, -1, attn.head_dim).transpose(1, 2)
        key, value = cache.update(key, value, index)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, scale=attn.scaling,
                                             is_causal=False)
        out = out.reshape(rows, -1, 1, value.shape[-1]).transpose(1, 2).contiguous()
        out = out.reshape(*out.shape[:-2], -1).contiguous()
        out = attn.resid_dropout(_conv1d(attn.c_proj, out))
        hidden = out + residual
        residual = hidden
        out = _conv1d(mlp.c_proj, mlp.act(_conv1d(mlp.c_fc, _layer_norm(block.ln_2, hidden))))
        hidden = residual + mlp.dropout(out)
    return _layer_norm(body.ln_f, hidden)[:, -1]


__all__ = ["TanhGELU", "gpt2_one_token", "one_token_ready", "use_fused_gelu"]
