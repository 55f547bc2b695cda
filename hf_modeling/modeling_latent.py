"""The latent reasoning backbones as transformers models.

Each class is the base causal LM (GPT-2 or Llama, unchanged weights and key
names, so released checkpoints load as they are) plus what it feeds back at a
latent step.  Everything else a backbone adds (``generate``, the prompt and
answer formats, ``forward`` with latent slots, ``save_pretrained`` with its
card) is one base, ``latent_backbone.LatentBackboneMixin``.  The class names
are those of the released checkpoints' ``architectures`` field.

Only torch, transformers and the sibling files are imported: this file is
copied next to saved checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from .configuration_latent import CodiConfig, CoconutConfig, ColarConfig
from .fast_gpt2 import gpt2_one_token, one_token_ready, use_fused_gelu
from .latent_backbone import LatentBackboneMixin


class _GPT2LatentMixin(LatentBackboneMixin):
    """What COCONUT and CODI share: GPT-2's dropout sites, context window and lean one-token step."""

    def post_init(self):
        super().post_init()
        use_fused_gelu(self)

    def one_token_forward(self, inputs_embeds, attention_mask, position_ids, cache):
        if one_token_ready(self.transformer):
            return gpt2_one_token(self.transformer, inputs_embeds, attention_mask, position_ids, cache)
        return super().one_token_forward(inputs_embeds, attention_mask, position_ids, cache)

    def dropout_sites(self) -> list[nn.Module]:
        # SPEC: residual dropout only (attention and embedding dropout stay off)
        sites = []
        for block in self.transformer.h:
            sites.append(block.attn.resid_dropout)
            sites.append(block.mlp.dropout)
        return sites

    def max_context_length(self) -> int:
        return self.config.n_positions


class COCONUTGPT2(_GPT2LatentMixin, GPT2LMHeadModel):
    """COCONUT: GPT-2 feeding back its last hidden state as is."""

    config_class = CoconutConfig
    latent_kind = "coconut"
    prompt_template = "{question}\n<|start-latent|>"
    explicit_continuation = True  # its curriculum's stage s writes the steps after s latent steps in tokens


class CODIGPT2(_GPT2LatentMixin, GPT2LMHeadModel):
    """CODI: GPT-2 feeding back ``projector(h)`` (or ``h`` when ``config.projector`` is false, as the reference)."""

    config_class = CodiConfig
    latent_kind = "codi"
    prompt_template = "{question}<|start-latent|>"

    def __init__(self, config):
        super().__init__(config)
        if config.projector:
            d, p = config.n_embd, config.projector_hidden_size
            self.projector = nn.Sequential(
                nn.Dropout(config.projector_dropout),
                nn.Linear(d, p),
                nn.GELU(),
                nn.Linear(p, d),
                nn.LayerNorm(d),
            )
        self.post_init()

    def latent_vector(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.projector(hidden) if self.config.projector else hidden


class LatentHead(nn.Module):
    """CoLaR's latent head, with the released parameter names: ``fc.{0,2,3}`` and ``mean``."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size),
            nn.GELU(),
            nn.Linear(intermediate_size, intermediate_size),
            nn.LayerNorm(intermediate_size),
        )
        self.mean = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mean(self.fc(hidden))


class ColarLlama(LatentBackboneMixin, LlamaForCausalLM):
    """CoLaR: Llama feeding back ``lt_head(h) * latent_embedding_std``.

    The number of latent steps is dynamic: a row stops when the language model
    head predicts the end marker ``###``.  Llama has no dropout layers; Monte
    Carlo dropout is applied to the output of every MLP ``down_proj``.
    """

    config_class = ColarConfig
    latent_kind = "colar"
    prompt_template = "Question: {question} Let's think step by step:(Thinking speed: 2)###"
    dynamic_latent_length = True

    def __init__(self, config):
        super().__init__(config)
        self.lt_head = LatentHead(config.hidden_size, config.latent_intermediate_size)
        self.post_init()

    def dropout_sites(self) -> list[nn.Module]:
        return [layer.mlp.down_proj for layer in self.model.layers]

    def latent_vector(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lt_head(hidden) * self.config.latent_embedding_std

    def start_marker_id(self) -> int | None:
        # The CoLaR prompt ends with the end marker "###", which also closes the latents.
        return self.config.end_marker_id

    def end_marker_id(self) -> int | None:
        return self.config.end_marker_id

    def latent_should_stop(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).argmax(-1) == self.config.end_marker_id


__all__ = ["COCONUTGPT2", "CODIGPT2", "ColarLlama", "LatentHead"]
