"""Configurations of the LatentRM (latent trajectory reward model).

A LatentRM is a GPT-2 or Llama with a one-output token-classification head.
The released RM (``ModalityDance/latent-tts-rm``) wrote a plain ``gpt2``
config.json with ``architectures: ["COCONUTGPT2ForTokenClassification"]`` and
``num_labels = 1``; ``hf_modeling.auto`` converts it into
``LatentRMGPT2Config``.  Only transformers is imported: this file is copied
next to saved checkpoints for ``trust_remote_code`` loading.
"""

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config, LlamaConfig


@strict
class LatentRMGPT2Config(GPT2Config):
    """GPT-2 LatentRM: the latent token ids (for checks against the backbone) and one label."""

    model_type = "latent_rm_gpt2"
    # AutoLatentModel: ids missing from config.json and tokenizer are not an error (checked at scoring time if set)
    required_latent_ids = ()

    latent_id: int | None = None
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    target_id: int | None = None

    def __post_init__(self, **kwargs):
        if "num_labels" not in kwargs and "id2label" not in kwargs and self.id2label is None:
            kwargs["num_labels"] = 1
        super().__post_init__(**kwargs)


@strict
class LatentRMLlamaConfig(LlamaConfig):
    """Llama LatentRM (for CoLaR-style backbones)."""

    model_type = "latent_rm_llama"
    required_latent_ids = ()

    latent_id: int | None = None
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    target_id: int | None = None
    end_marker_id: int | None = None

    def __post_init__(self, **kwargs):
        if "num_labels" not in kwargs and "id2label" not in kwargs and self.id2label is None:
            kwargs["num_labels"] = 1
        super().__post_init__(**kwargs)


__all__ = ["LatentRMGPT2Config", "LatentRMLlamaConfig"]
