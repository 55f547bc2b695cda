"""Configurations of the latent reasoning backbones (COCONUT, CODI, CoLaR).

Each config is the base architecture's config (GPT-2 or Llama) plus the ids of
the latent special tokens and the few fields that say how a latent vector is
fed back.  The released checkpoints wrote these fields into a plain
``gpt2``/``llama`` config.json; ``hf_modeling.auto`` converts such a file into
one of these classes (fields it does not know, e.g. the released ``target_id``,
stay plain attributes).  This file imports only transformers, so that it can be
copied next to a saved checkpoint and loaded with ``trust_remote_code=True``.
"""

from dataclasses import dataclass

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config, LlamaConfig


@dataclass
class LatentTokenIds:
    """The latent special tokens of a checkpoint's tokenizer (SPEC: read from it, never hard-coded).

    Args:
        latent_id (`int`, *optional*): ``<|latent|>``, the token id held by every latent slot.
        latent_start_id (`int`, *optional*): ``<|start-latent|>``, the last prompt token.
        latent_end_id (`int`, *optional*): ``<|end-latent|>``, fed after the last latent step.
    """

    latent_id: int | None = None
    latent_start_id: int | None = None
    latent_end_id: int | None = None


@strict
class CoconutConfig(GPT2Config, LatentTokenIds):
    """GPT-2 that feeds its last hidden state back as the next input embedding.

    Args:
        latent_length (`int`, defaults to 6): latent steps before the answer.
    """

    model_type = "coconut_gpt2"

    latent_length: int = 6


@strict
class CodiConfig(GPT2Config, LatentTokenIds):
    """GPT-2 whose fed-back vector is ``projector(h)``.

    Args:
        latent_length (`int`, defaults to 6): latent steps before the answer.
        projector (`bool`, defaults to True): whether the fed-back vector goes through the projector
            (Dropout, Linear(d, p), GELU, Linear(p, d), LayerNorm); without it ``h`` is fed back as is.
        projector_hidden_size (`int`, defaults to 768): p, the projector's inner width.
        projector_dropout (`float`, defaults to 0.0): the projector's dropout (off at inference).
    """

    model_type = "codi_gpt2"

    latent_length: int = 6
    projector: bool = True
    projector_hidden_size: int = 768
    projector_dropout: float = 0.0


@strict
class ColarConfig(LlamaConfig, LatentTokenIds):
    """Llama whose fed-back vector is ``lt_head(h) * latent_embedding_std``.

    The number of latent steps is dynamic: reasoning stops when the language
    model head predicts the end marker (``###``), after at most
    ``max_latent_length`` steps.

    Args:
        end_marker_id (`int`, *optional*): the id of ``###``, which ends the prompt and the latent phase.
        latent_intermediate_size (`int`, defaults to 2048): the latent head's inner width.
        latent_embedding_std (`float`, defaults to 0.018): scale of the fed-back vector.
        max_latent_length (`int`, defaults to 64): the cap on latent steps.
    """

    model_type = "colar_llama"

    end_marker_id: int | None = None
    latent_intermediate_size: int = 2048
    latent_embedding_std: float = 0.018
    max_latent_length: int = 64


__all__ = ["CoconutConfig", "CodiConfig", "ColarConfig", "LatentTokenIds"]
