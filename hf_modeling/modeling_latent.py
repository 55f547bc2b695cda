"""The latent reasoning backbones as transformers models.

Each class is the base causal LM (GPT-2 or Llama, unchanged weights and key
names, so released checkpoints load as they are) plus what it feeds back at a
latent step.  ``generate`` comes from ``LatentGenerationMixin``.  The class
names are those of the released checkpoints' ``architectures`` field.

Only torch, transformers and the sibling files are imported: this file is
copied next to saved checkpoints for ``trust_remote_code`` loading.
"""

import torch
from torch import nn
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from .configuration_latent import CodiConfig, CoconutConfig, ColarConfig
from .latent_generation import LatentGenerationMixin


class _GPT2LatentMixin(LatentGenerationMixin):
    def backbone(self):
        return self.transformer

    def dropout_sites(self):
        # SPEC: residual dropout only (attention and embedding dropout stay off)
        sites = []
        for block in self.transformer.h:
            sites.append(block.attn.resid_dropout)
            sites.append(block.mlp.dropout)
        return sites

    def max_context_length(self):
        return self.config.n_positions


class COCONUTGPT2(_GPT2LatentMixin, GPT2LMHeadModel):
    """COCONUT: GPT-2 feeding back its last hidden state as is."""

    config_class = CoconutConfig
    latent_kind = "coconut"
    prompt_template = "{question}\n<|start-latent|>"


class CODIGPT2(_GPT2LatentMixin, GPT2LMHeadModel):
    """CODI: GPT-2 feeding back ``projector(h)``."""

    config_class = CodiConfig
    latent_kind = "codi"
    prompt_template = "{question}<|start-latent|>"

    def __init__(self, config):
        super().__init__(config)
        d, p = config.n_embd, config.projector_hidden_size
        self.projector = nn.Sequential(
            nn.Dropout(config.projector_dropout),
            nn.Linear(d, p),
            nn.GELU(),
            nn.Linear(p, d),
            nn.LayerNorm(d),
        )
        self.post_init()

    def latent_vector(self, hidden):
        return self.projector(hidden)


class ColarLlama(LatentGenerationMixin, LlamaForCausalLM):
    """CoLaR: Llama feeding back ``latent_head(h) * latent_embedding_std``.

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
        d, i = config.hidden_size, config.latent_intermediate_size
        self.latent_head = nn.Sequential(
            nn.Linear(d, i),
            nn.GELU(),
            nn.Linear(i, i),
            nn.LayerNorm(i),
            nn.Linear(i, d),
        )
        self.post_init()

    def backbone(self):
        return self.model

    def dropout_sites(self):
        return [layer.mlp.down_proj for layer in self.model.layers]

    def latent_vector(self, hidden):
        return self.latent_head(hidden) * self.config.latent_embedding_std

    def start_marker_id(self):
        # The CoLaR prompt ends with the end marker "###", which also closes the latents.
        return self.config.end_marker_id

    def end_marker_id(self):
        return self.config.end_marker_id

    def latent_should_stop(self, hidden):
        return self.lm_head(hidden).argmax(-1) == self.config.end_marker_id


LATENT_BACKBONES = {cls.__name__: cls for cls in (COCONUTGPT2, CODIGPT2, ColarLlama)}

__all__ = ["COCONUTGPT2", "CODIGPT2", "ColarLlama", "LATENT_BACKBONES"]
