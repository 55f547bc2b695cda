"""Configurations of the latent reasoning backbones (COCONUT, CODI, CoLaR).

Each config is the base architecture's config (GPT-2 or Llama) plus the ids of
the latent special tokens and the few fields that say how a latent vector is
fed back.  The released checkpoints wrote these fields into a plain
``gpt2``/``llama`` config.json; ``hf_modeling.auto`` converts such a file into
one of these classes.  This file imports only transformers, so that it can be
copied next to a saved checkpoint and loaded with ``trust_remote_code=True``.
"""

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config, LlamaConfig


@strict
class CoconutConfig(GPT2Config):
    """GPT-2 that feeds its last hidden state back as the next input embedding."""

    model_type = "coconut_gpt2"

    latent_id: int | None = None
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    target_id: int | None = None
    latent_length: int = 6


@strict
class CodiConfig(GPT2Config):
    """GPT-2 whose fed-back vector is ``projector(h)``."""

    model_type = "codi_gpt2"

    latent_id: int | None = None
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    target_id: int | None = None
    latent_length: int = 6
    projector: bool = True
    projector_hidden_size: int = 768
    projector_dropout: float = 0.0


@strict
class ColarConfig(LlamaConfig):
    """Llama whose fed-back vector is ``latent_head(h) * latent_embedding_std``.

    The number of latent steps is dynamic: reasoning stops when the language
    model head predicts the end marker (``###``, id ``end_marker_id``), after at
    most ``max_latent_length`` steps.
    """

    model_type = "colar_llama"

    latent_id: int | None = None
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    target_id: int | None = None
    end_marker_id: int | None = None
    latent_intermediate_size: int = 2048
    latent_embedding_std: float = 0.018
    max_latent_length: int = 64


__all__ = ["CoconutConfig", "CodiConfig", "ColarConfig"]
